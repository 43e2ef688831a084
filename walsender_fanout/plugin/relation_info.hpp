// What the output plugin knows about a relation while decoding: whether it is distributed, its
// tenant column, its key columns, how each column's values are encoded, and whether its RELATION
// message went out already. Read from edgeshard.distributed_tables with the historic snapshot
// decoding provides (the table is a user_catalog_table), cached per relation until a relcache
// invalidation of that relation or of the shard map.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "extension/pg_cxx.hpp"

extern "C" {
#include "utils/relcache.h"
}

namespace edgeshard::plugin {

// How one column's values are written.
struct ColumnCodec {
  bool dropped;    // dropped or generated column: not sent
  bool binary;     // typsend exists: binary send format; else text output
  bool varlena;    // may be TOASTed (unchanged TOAST values are sent as a marker)
  FmgrInfo output;  // typsend or typoutput
};

// One relation as the plugin sees it.
struct RelationInfo {
  bool valid = false;        // false after a relcache invalidation: rebuilt by the next get()
  MemoryContext context = nullptr;  // this entry's FmgrInfo state, deleted on rebuild
  bool distributed = false;
  AttrNumber tenant_attnum = 0;
  Oid tenant_typid = InvalidOid;
  bool relation_sent = false;  // RELATION message emitted since the last invalidation
  std::vector<ColumnCodec> columns;  // by attnum - 1
  std::vector<bool> key_columns;     // primary key columns, by attnum - 1
};

// The plugin's cache of RelationInfo, one per decoding session. An invalidation only marks
// entries stale (a caller may hold one while a catalog read absorbs the invalidation, as
// pgoutput's RelationSyncEntry); get() rebuilds a stale entry in place.
class RelationCache {
 public:
  // Entry contexts are children of `parent`, which outlives the cache.
  explicit RelationCache(MemoryContext parent) : parent_(parent) {}

  // Info for `rel`, read on first use or after an invalidation; raises on a broken catalog.
  RelationInfo& get(Relation rel);

  // Marks `relid` (InvalidOid: everything) stale; registered as a relcache callback.
  void invalidate(Oid relid) noexcept;

 private:
  // Reads rel's distribution and codecs into `info` (whose context is fresh).
  void build(Relation rel, RelationInfo& info);

  MemoryContext parent_;
  std::unordered_map<Oid, RelationInfo> entries_;
};

}  // namespace edgeshard::plugin

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
  bool distributed = false;
  AttrNumber tenant_attnum = 0;
  Oid tenant_typid = InvalidOid;
  bool relation_sent = false;  // RELATION message emitted since the last invalidation
  std::vector<ColumnCodec> columns;  // by attnum - 1
  std::vector<bool> key_columns;     // replica identity columns, by attnum - 1
};

// The plugin's cache of RelationInfo, one per decoding session.
class RelationCache {
 public:
  // `context` holds the FmgrInfo state; it outlives the cache.
  explicit RelationCache(MemoryContext context) : context_(context) {}

  // Info for `rel`, read on first use; raises on a broken catalog.
  RelationInfo& get(Relation rel);

  // Forgets `relid` (InvalidOid: everything); registered as a relcache callback.
  void invalidate(Oid relid);

 private:
  MemoryContext context_;
  std::unordered_map<Oid, RelationInfo> entries_;
};

}  // namespace edgeshard::plugin

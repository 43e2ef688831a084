// The output plugin's relation cache: see relation_info.hpp.
#include <cstring>
#include <unordered_map>
#include <vector>

#include "extension/routing.hpp"
#include "walsender_fanout/plugin/relation_info.hpp"

extern "C" {
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_type.h"
#include "nodes/bitmapset.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/rel.h"
}

namespace edgeshard::plugin {

namespace {

// Tenant column of `relid` per edgeshard.distributed_tables (historic snapshot), or "" if the
// table is not distributed or the extension is not installed. Runs inside pg::call.
void lookup_distribution(Oid relid, char (&column)[NAMEDATALEN]) {
  column[0] = '\0';
  Oid nsp = get_namespace_oid("edgeshard", true);
  Oid catalog = OidIsValid(nsp) ? get_relname_relid("distributed_tables", nsp) : InvalidOid;
  if (!OidIsValid(catalog)) return;
  Relation rel = table_open(catalog, AccessShareLock);
  ScanKeyData key;
  ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
  Oid index = RelationGetPrimaryKeyIndex(rel);
  SysScanDesc scan = systable_beginscan(rel, index, OidIsValid(index), nullptr, 1, &key);
  HeapTuple tup = systable_getnext(scan);
  if (HeapTupleIsValid(tup)) {
    bool isnull;
    Datum name = heap_getattr(tup, 2, RelationGetDescr(rel), &isnull);
    if (!isnull) strlcpy(column, NameStr(*DatumGetName(name)), NAMEDATALEN);
  }
  systable_endscan(scan);
  table_close(rel, AccessShareLock);
}

}  // namespace

RelationInfo& RelationCache::get(Relation rel) {
  RelationInfo& info = entries_[RelationGetRelid(rel)];
  if (info.valid) return info;
  // (Re)build in place: the entry's address stays the same for callers that hold it.
  MemoryContext old_context = info.context;
  info = RelationInfo();
  info.context = pg::call([this, old_context] {
    if (old_context != nullptr) MemoryContextDelete(old_context);
    return AllocSetContextCreate(parent_, "edgeshard relation", ALLOCSET_SMALL_SIZES);
  });
  build(rel, info);
  info.valid = true;
  return info;
}

void RelationCache::build(Relation rel, RelationInfo& info) {
  Oid relid = RelationGetRelid(rel);
  char column[NAMEDATALEN];
  TupleDesc desc = RelationGetDescr(rel);
  info.columns.resize(desc->natts);
  info.key_columns.assign(desc->natts, false);
  pg::call([&] {
    // A partition's changes arrive under the partition: distribution is the root's.
    Oid root = relid;
    if (rel->rd_rel->relispartition) {
      List* ancestors = get_partition_ancestors(relid);
      if (ancestors != NIL) root = llast_oid(ancestors);
    }
    lookup_distribution(root, column);
    if (column[0] == '\0') return;
    for (int i = 0; i < desc->natts; i++) {
      Form_pg_attribute att = TupleDescAttr(desc, i);
      ColumnCodec& codec = info.columns[i];
      codec.dropped = att->attisdropped || att->attgenerated;
      if (codec.dropped) continue;
      if (strcmp(NameStr(att->attname), column) == 0) {
        info.tenant_attnum = att->attnum;
        info.tenant_typid = att->atttypid;
      }
      // getTypeBinaryOutputInfo() raises an ERROR for a type without a send function (aclitem,
      // gtsvector): look at typsend first and fall back to the text output for those.
      HeapTuple type = SearchSysCache1(TYPEOID, ObjectIdGetDatum(att->atttypid));
      if (!HeapTupleIsValid(type)) elog(ERROR, "cache lookup failed for type %u", att->atttypid);
      codec.binary = OidIsValid(reinterpret_cast<Form_pg_type>(GETSTRUCT(type))->typsend);
      ReleaseSysCache(type);
      Oid fn;
      if (codec.binary) {
        getTypeBinaryOutputInfo(att->atttypid, &fn, &codec.varlena);
      } else {
        getTypeOutputInfo(att->atttypid, &fn, &codec.varlena);
      }
      fmgr_info_cxt(fn, &codec.output, info.context);
    }
    // Rows are keyed by the primary key at the edges (distribute_table requires one, with the
    // tenant column in it); the replica identity (DEFAULT or FULL) logs at least those columns.
    Bitmapset* key = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
    int member = -1;
    while ((member = bms_next_member(key, member)) >= 0) {
      int attnum = member + FirstLowInvalidHeapAttributeNumber;
      if (attnum > 0) info.key_columns[attnum - 1] = true;
    }
  });
  if (info.tenant_attnum != 0 && !routing::is_tenant_type(info.tenant_typid))
    info.tenant_attnum = 0;  // distribute_table refuses such columns; be safe with old catalogs
  info.distributed = info.tenant_attnum != 0;
}

void RelationCache::invalidate(Oid relid) noexcept {
  if (relid == InvalidOid) {
    for (auto& [id, info] : entries_) info.valid = false;
  } else if (auto it = entries_.find(relid); it != entries_.end()) {
    it->second.valid = false;
  }
}

}  // namespace edgeshard::plugin

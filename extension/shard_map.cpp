// The per-backend shard map cache: see shard_map.hpp.
#include <algorithm>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "common/ring.hpp"
#include "extension/pg_cxx.hpp"
#include "extension/shard_map.hpp"

extern "C" {
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
}

namespace edgeshard::shard_map {

namespace {

// Up to this many rows, edgeshard.tenants is read whole with the map: routing then needs no
// lookup at all. Bigger catalogs are looked up per tenant and cached up to kMaxCachedPlacements.
constexpr size_t kFullLoadLimit = 50000;
constexpr size_t kMaxCachedPlacements = 1 << 18;

// Backend-local cache state: plain data, set up lazily.
MemoryContext g_context = nullptr;
Map* g_map = nullptr;
bool g_valid = false;
uint64_t g_generation = 1;  // 0 never matches: zeroed per-call-site caches start empty
Oid g_map_epoch_relid = InvalidOid;

// OIDs of the catalog relations, looked up by name.
struct CatalogOids {
  Oid shards;
  Oid tenants;
  Oid map_epoch;
};

// Finds the catalog tables; raises a clear error where the extension is not installed.
CatalogOids find_catalog() {
  return pg::call([] {
    Oid nsp = get_namespace_oid("edgeshard", true);
    CatalogOids oids{InvalidOid, InvalidOid, InvalidOid};
    if (OidIsValid(nsp)) {
      oids.shards = get_relname_relid("shards", nsp);
      oids.tenants = get_relname_relid("tenants", nsp);
      oids.map_epoch = get_relname_relid("map_epoch", nsp);
    }
    if (!OidIsValid(oids.shards) || !OidIsValid(oids.tenants) || !OidIsValid(oids.map_epoch))
      ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                      errmsg("extension \"edgeshard\" is not installed in this database"),
                      errhint("Run CREATE EXTENSION edgeshard.")));
    return oids;
  });
}

// Attribute number of column `name` of `rel` (inside pg::call: raises if it is missing).
AttrNumber attnum_of(Relation rel, const char* name) {
  TupleDesc desc = RelationGetDescr(rel);
  for (int i = 0; i < desc->natts; i++) {
    Form_pg_attribute att = TupleDescAttr(desc, i);
    if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0) return att->attnum;
  }
  ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
                  errmsg("edgeshard catalog table \"%s\" has no column \"%s\"",
                         RelationGetRelationName(rel), name),
                  errhint("Update the extension: ALTER EXTENSION edgeshard UPDATE.")));
  pg_unreachable();
}

// The text value of a text column as a string_view into the (possibly detoasted) datum.
std::string_view text_view(Datum d) {
  text* t = DatumGetTextPP(d);
  return {VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)};
}

// Frees the Map living in g_context when the context is reset or deleted.
void destroy_map(void* arg) {
  static_cast<Map*>(arg)->~Map();
  if (g_map == arg) g_map = nullptr;
}

// Relcache callback: a change of edgeshard.map_epoch (or a full reset) makes the map stale. The
// generation moves at once too, so per-call-site memos stop matching before the next rebuild.
void on_relcache_invalidation(Datum /*arg*/, Oid relid) {
  if (relid == InvalidOid || relid == g_map_epoch_relid) {
    g_valid = false;
    g_generation++;
  }
}

// Indexes (into shards) of the shards that take hashed tenants, in ring member order.
std::vector<int32_t> ring_member_shards(const std::vector<Shard>& shards) {
  std::vector<int32_t> members;
  for (size_t i = 0; i < shards.size(); i++)
    if (shards[i].active && shards[i].weight > 0) members.push_back(static_cast<int32_t>(i));
  return members;
}

// Builds the ring over the given member shards.
HashRing make_ring(const std::vector<Shard>& shards, const std::vector<int32_t>& members) {
  std::vector<RingMember> ring_members;
  ring_members.reserve(members.size());
  for (int32_t i : members) ring_members.push_back(RingMember{shards[i].name, shards[i].weight});
  return HashRing(ring_members);
}

}  // namespace

// A row of edgeshard.tenants with its shard still as a shard_id.
struct TenantRow {
  std::string tenant;
  int32_t shard_id;  // -1 when NULL
  bool moving;
};

struct Map::Catalog {
  CatalogOids oids;
  int64_t epoch = 0;
  std::vector<Shard> shards;
  std::vector<TenantRow> tenants;  // all of them, or empty with tenants_complete false
  bool tenants_complete = false;
  Oid tenants_pkey = InvalidOid;
  int16_t tenant_id_attnum = 0;
  int16_t tenant_shard_attnum = 0;
  int16_t tenant_state_attnum = 0;
};

// Reads the epoch, every shard, and the tenants (all, or what lookups need) in one snapshot taken
// after the three relations are locked, so that they agree with each other and with every
// invalidation absorbed while locking.
static Map::Catalog read_catalog() {
  Map::Catalog c;
  c.oids = find_catalog();
  // From here on an invalidation of this map_epoch marks the map being built stale.
  g_map_epoch_relid = c.oids.map_epoch;
  pg::call([&] {
    Relation epoch_rel = table_open(c.oids.map_epoch, AccessShareLock);
    Relation shards_rel = table_open(c.oids.shards, AccessShareLock);
    Relation tenants_rel = table_open(c.oids.tenants, AccessShareLock);
    // For a non-catalog relation this is a fresh MVCC snapshot (allowed in parallel mode, unlike
    // GetLatestSnapshot); during logical decoding it is the historic snapshot.
    Snapshot snapshot = RegisterSnapshot(GetCatalogSnapshot(c.oids.map_epoch));

    AttrNumber a_epoch = attnum_of(epoch_rel, "epoch");
    SysScanDesc scan = systable_beginscan(epoch_rel, InvalidOid, false, snapshot, 0, nullptr);
    HeapTuple tup = systable_getnext(scan);
    if (HeapTupleIsValid(tup)) {
      bool isnull;
      Datum d = heap_getattr(tup, a_epoch, RelationGetDescr(epoch_rel), &isnull);
      if (!isnull) c.epoch = DatumGetInt64(d);
    }
    systable_endscan(scan);

    TupleDesc desc = RelationGetDescr(shards_rel);
    AttrNumber a_id = attnum_of(shards_rel, "shard_id");
    AttrNumber a_name = attnum_of(shards_rel, "name");
    AttrNumber a_weight = attnum_of(shards_rel, "weight");
    AttrNumber a_state = attnum_of(shards_rel, "state");
    scan = systable_beginscan(shards_rel, InvalidOid, false, snapshot, 0, nullptr);
    while (HeapTupleIsValid(tup = systable_getnext(scan))) {
      bool null_id, null_name, null_weight, null_state;
      Datum id = heap_getattr(tup, a_id, desc, &null_id);
      Datum name = heap_getattr(tup, a_name, desc, &null_name);
      Datum weight = heap_getattr(tup, a_weight, desc, &null_weight);
      Datum state = heap_getattr(tup, a_state, desc, &null_state);
      if (null_id || null_name || null_weight || null_state) continue;  // NOT NULL columns
      // Detoast before any std::string exists: detoasting may raise.
      bool active = text_view(state) == "active";
      std::string_view name_text = text_view(name);
      c.shards.push_back(Shard{DatumGetInt32(id), std::string(name_text),
                               static_cast<uint32_t>(std::max(0, DatumGetInt32(weight))), active});
    }
    systable_endscan(scan);

    desc = RelationGetDescr(tenants_rel);
    c.tenants_pkey = RelationGetPrimaryKeyIndex(tenants_rel);
    c.tenant_id_attnum = attnum_of(tenants_rel, "tenant_id");
    c.tenant_shard_attnum = attnum_of(tenants_rel, "shard_id");
    c.tenant_state_attnum = attnum_of(tenants_rel, "state");
    scan = systable_beginscan(tenants_rel, InvalidOid, false, snapshot, 0, nullptr);
    c.tenants_complete = true;
    while (HeapTupleIsValid(tup = systable_getnext(scan))) {
      if (c.tenants.size() == kFullLoadLimit) {
        c.tenants_complete = false;
        c.tenants.clear();
        break;
      }
      bool null_id, null_shard, null_state;
      Datum id = heap_getattr(tup, c.tenant_id_attnum, desc, &null_id);
      Datum shard = heap_getattr(tup, c.tenant_shard_attnum, desc, &null_shard);
      Datum state = heap_getattr(tup, c.tenant_state_attnum, desc, &null_state);
      if (null_id) continue;  // primary key
      bool moving = !null_state && text_view(state) == "moving";
      std::string_view tenant = text_view(id);
      c.tenants.push_back(
          TenantRow{std::string(tenant), null_shard ? -1 : DatumGetInt32(shard), moving});
    }
    systable_endscan(scan);

    UnregisterSnapshot(snapshot);
    table_close(tenants_rel, AccessShareLock);
    table_close(shards_rel, AccessShareLock);
    table_close(epoch_rel, AccessShareLock);
  });
  std::sort(c.shards.begin(), c.shards.end(),
            [](const Shard& a, const Shard& b) { return a.name < b.name; });
  return c;
}

Map::Map() : Map(read_catalog()) {}

Map::Map(Catalog&& c)
    : epoch_(c.epoch),
      shards_(std::move(c.shards)),
      ring_shards_(ring_member_shards(shards_)),
      ring_(make_ring(shards_, ring_shards_)),
      complete_(c.tenants_complete),
      tenants_relid_(c.oids.tenants),
      tenants_pkey_(c.tenants_pkey),
      tenant_id_attnum_(c.tenant_id_attnum),
      tenant_shard_attnum_(c.tenant_shard_attnum),
      tenant_state_attnum_(c.tenant_state_attnum) {
  placements_.reserve(c.tenants.size());
  for (TenantRow& row : c.tenants)
    placements_.emplace(std::move(row.tenant),
                        Placement{shard_index_of_id(row.shard_id), row.moving});
}

// Index into shards_ of the shard with this shard_id, or -1 (also for -1, a NULL shard_id).
int32_t Map::shard_index_of_id(int32_t shard_id) const noexcept {
  for (size_t i = 0; i < shards_.size(); i++)
    if (shards_[i].shard_id == shard_id) return static_cast<int32_t>(i);
  return -1;
}

int32_t Map::find_shard(std::string_view name) const noexcept {
  for (size_t i = 0; i < shards_.size(); i++)
    if (shards_[i].name == name) return static_cast<int32_t>(i);
  return -1;
}

Map::Placement Map::lookup_placement(std::string_view key) const {
  bool found = false;
  bool moving = false;
  int32_t shard_id = -1;
  pg::call([&] {
    Relation rel = table_open(tenants_relid_, AccessShareLock);
    TupleDesc desc = RelationGetDescr(rel);
    text* key_text = cstring_to_text_with_len(key.data(), static_cast<int>(key.size()));
    ScanKeyData skey;
    ScanKeyInit(&skey, tenant_id_attnum_, BTEqualStrategyNumber, F_TEXTEQ,
                PointerGetDatum(key_text));
    SysScanDesc scan = systable_beginscan(rel, tenants_pkey_, OidIsValid(tenants_pkey_), nullptr,
                                          1, &skey);
    HeapTuple tup = systable_getnext(scan);
    if (HeapTupleIsValid(tup)) {
      bool isnull;
      found = true;
      Datum shard = heap_getattr(tup, tenant_shard_attnum_, desc, &isnull);
      if (!isnull) shard_id = DatumGetInt32(shard);
      Datum state = heap_getattr(tup, tenant_state_attnum_, desc, &isnull);
      moving = !isnull && text_view(state) == "moving";
    }
    systable_endscan(scan);
    table_close(rel, AccessShareLock);
    pfree(key_text);
  });
  if (!found || shard_id < 0) return Placement{-1, moving};
  if (int32_t index = shard_index_of_id(shard_id); index >= 0) return Placement{index, moving};
  // The placement names a shard added after this map was read: the map changed under us.
  pg::raise(ERRCODE_T_R_SERIALIZATION_FAILURE,
            "shard map changed while routing tenant \"" + std::string(key.substr(0, 64)) + "\"",
            {}, "Retry the statement.");
}

Owner Map::owner_of(std::string_view key) {
  Placement p;
  if (complete_ && placements_.empty()) {  // the common case: nobody is placed explicitly
    p = Placement{-1, false};
  } else if (auto it = placements_.find(key); it != placements_.end()) {
    p = it->second;
  } else if (complete_) {
    p = Placement{-1, false};
  } else {
    p = lookup_placement(key);
    if (placements_.size() >= kMaxCachedPlacements) placements_.clear();
    placements_.emplace(std::string(key), p);
  }
  if (p.shard_index >= 0) return Owner{p.shard_index, p.moving, true};
  int32_t member = ring_.owner_of_key(key);
  return Owner{member < 0 ? -1 : ring_shards_[member], p.moving, false};
}

Map& current() {
  if (g_map != nullptr && g_valid) return *g_map;
  pg::call([] {
    if (g_context == nullptr)
      g_context = AllocSetContextCreate(CacheMemoryContext, "edgeshard shard map",
                                        ALLOCSET_SMALL_SIZES);
    else
      MemoryContextReset(g_context);  // runs destroy_map on the previous map
  });
  // Invalidations that arrive while the catalog is read flip this back and force another read.
  g_valid = true;
  static_assert(alignof(Map) <= MAXIMUM_ALIGNOF, "palloc alignment is enough for a Map");
  void* storage = pg::call([] { return MemoryContextAlloc(g_context, sizeof(Map)); });
  Map* map = new (storage) Map();
  pg::call([map] {
    auto* cb = static_cast<MemoryContextCallback*>(
        MemoryContextAlloc(g_context, sizeof(MemoryContextCallback)));
    cb->func = destroy_map;
    cb->arg = map;
    MemoryContextRegisterResetCallback(g_context, cb);
  });
  g_map = map;
  g_generation++;
  return *map;
}

uint64_t generation() noexcept { return g_generation; }

void register_invalidation() {
  CacheRegisterRelcacheCallback(on_relcache_invalidation, PointerGetDatum(nullptr));
}

void invalidate_everywhere() {
  pg::call([] {
    Oid nsp = get_namespace_oid("edgeshard", false);
    Oid relid = get_relname_relid("map_epoch", nsp);
    if (OidIsValid(relid)) CacheInvalidateRelcacheByRelid(relid);
  });
}

}  // namespace edgeshard::shard_map

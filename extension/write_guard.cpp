// The write guard: refuses rows of tenants this node does not own (SQLSTATE SH001) or that are
// being moved (SH002). distribute_table() installs three pieces on a table:
//   - CHECK (edgeshard.guard_tenant(col, 'tbl'::regclass)) NOT VALID, named edgeshard_write_guard:
//     the new row of every INSERT, UPDATE, COPY FROM, ON CONFLICT and MERGE. A constraint costs an
//     expression call per row where a BEFORE ROW trigger would cost a trigger call, a formed heap
//     tuple and COPY's batched inserts. NOT VALID so that pg_dump restores it after the data.
//   - BEFORE DELETE FOR EACH ROW trigger edgeshard_guard_delete: the deleted row's tenant.
//   - BEFORE UPDATE OF col FOR EACH ROW WHEN (OLD.col IS DISTINCT FROM NEW.col) trigger
//     edgeshard_guard_update: the old tenant of a row whose tenant changes.
#include <cstring>
#include <string>
#include <string_view>

#include "extension/shard_map.hpp"
#include "extension/pg_cxx.hpp"
#include "extension/routing.hpp"
#include "extension/settings.hpp"
#include "extension/sqlstate.hpp"

extern "C" {
#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
}

namespace edgeshard::write_guard {

namespace {

// Longest key the per-call-site memo remembers.
constexpr size_t kMemoKeySize = 64;
// Integer tenants found local, per call site: a direct-mapped cache (2^11 slots, 32 KiB).
constexpr int kIntCacheBits = 11;

// Per-call-site state (one per constraint or trigger in a statement), palloc'ed in fn_mcxt.
struct GuardState {
  Oid relid;            // trigger: the relation the column was resolved for
  AttrNumber attnum;    // trigger: the tenant column
  Oid typid;            // trigger: its type
  uint64_t generation;  // shard-map generation the memo belongs to
  size_t memo_len;      // last key found local: bulk loads repeat the same tenant
  bool memo_valid;
  char memo_key[kMemoKeySize];
  // Slot i holds int_keys[i], found local at shard-map generation int_generation[i] (0: empty;
  // generations start at 1 once a map was built).
  uint64_t int_generation[1 << kIntCacheBits];
  int64_t int_keys[1 << kIntCacheBits];
};

// Slot of an integer tenant in GuardState's cache (Fibonacci hashing).
inline size_t int_slot(int64_t tenant) noexcept {
  return static_cast<size_t>((static_cast<uint64_t>(tenant) * 0x9E3779B97F4A7C15ull) >>
                             (64 - kIntCacheBits));
}

// The call site's state, created zeroed on first use.
GuardState* state_of(FunctionCallInfo fcinfo) {
  if (fcinfo->flinfo->fn_extra == nullptr)
    fcinfo->flinfo->fn_extra = pg::call([fcinfo] {
      return MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(GuardState));
    });
  return static_cast<GuardState*>(fcinfo->flinfo->fn_extra);
}

// The name of a relation for messages.
std::string relation_name(Oid relid) {
  return pg::call([relid] {
    char* name = get_rel_name(relid);
    return std::string(name != nullptr ? name : "?");
  });
}

// Raises unless this node may write rows of tenant `key` into relation `relid`.
void check_key(GuardState* state, std::string_view key, Oid relid) {
  if (edgeshard_bypass_write_guard) return;
  if (state->memo_valid && state->generation == shard_map::generation() &&
      state->memo_len == key.size() && memcmp(state->memo_key, key.data(), key.size()) == 0)
    return;

  shard_map::Map& map = shard_map::current();
  shard_map::Owner owner;
  const shard_map::Shard& shard = routing::owner_shard(map, key, &owner);
  if (owner.moving)
    pg::raise(sqlstate::kTenantMoving,
              pg::format("tenant \"%s\" is being moved between shards (shard map epoch %lld)",
                         routing::display_key(key).c_str(), static_cast<long long>(map.epoch())),
              "Writes to the tenant are fenced while its rows are copied.",
              "Retry the write after a short backoff.");
  if (edgeshard_node_name == nullptr || edgeshard_node_name[0] == '\0')
    pg::raise(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
              "edgeshard.node_name is not set, so the write guard cannot tell which tenants are "
              "local",
              {}, "Set edgeshard.node_name in postgresql.conf to this server's shard name and reload.");
  if (shard.name != edgeshard_node_name)
    pg::raise(sqlstate::kWrongShard,
              pg::format("tenant \"%s\" belongs to shard \"%s\", not to this node \"%s\" (shard "
                         "map epoch %lld)",
                         routing::display_key(key).c_str(), shard.name.c_str(),
                         edgeshard_node_name, static_cast<long long>(map.epoch())),
              pg::format("Table \"%s\" is distributed by tenant; this node only accepts rows of "
                         "its own tenants.",
                         relation_name(relid).c_str()),
              pg::format("Send the write to shard \"%s\"; a router on an older map should refresh "
                         "it from edgeshard.shard_map.",
                         shard.name.c_str()));
  state->generation = shard_map::generation();
  state->memo_valid = key.size() <= kMemoKeySize;
  if (state->memo_valid) {
    memcpy(state->memo_key, key.data(), key.size());
    state->memo_len = key.size();
  }
}

// Checks a guard_tenant() call: argument 0 the tenant of type `typid`, argument 1 the table.
Datum guard_tenant(FunctionCallInfo fcinfo, Oid typid) {
  Oid relid = PG_ARGISNULL(1) ? InvalidOid : PG_GETARG_OID(1);
  if (PG_ARGISNULL(0))
    pg::raise(ERRCODE_NOT_NULL_VIOLATION,
              "tenant column of distributed table \"" + relation_name(relid) +
                  "\" must not be null");
  GuardState* state = state_of(fcinfo);
  char buffer[routing::kKeyBufferSize];
  if (typid != INT8OID) {
    check_key(state, routing::tenant_key(PG_GETARG_DATUM(0), typid, buffer), relid);
    return BoolGetDatum(true);
  }
  // Integer tenants (the common case) skip the key text and the map once found local.
  int64_t tenant = PG_GETARG_INT64(0);
  size_t slot = int_slot(tenant);
  uint64_t generation = shard_map::generation();
  if (state->int_generation[slot] == generation && state->int_keys[slot] == tenant &&
      !edgeshard_bypass_write_guard)
    return BoolGetDatum(true);
  check_key(state, routing::tenant_key(PG_GETARG_DATUM(0), typid, buffer), relid);
  if (!edgeshard_bypass_write_guard) {
    state->int_generation[slot] = shard_map::generation();
    state->int_keys[slot] = tenant;
  }
  return BoolGetDatum(true);
}

// Finds the tenant column named by the trigger argument; raises if it is gone or mistyped.
void resolve_column(GuardState* state, Relation rel, const Trigger* trigger) {
  const char* column = trigger->tgnargs == 1 ? trigger->tgargs[0] : "";
  TupleDesc desc = RelationGetDescr(rel);
  for (int i = 0; i < desc->natts; i++) {
    Form_pg_attribute att = TupleDescAttr(desc, i);
    if (att->attisdropped || strcmp(NameStr(att->attname), column) != 0) continue;
    if (!routing::is_tenant_type(att->atttypid)) break;
    state->relid = RelationGetRelid(rel);
    state->attnum = att->attnum;
    state->typid = att->atttypid;
    return;
  }
  pg::raise(ERRCODE_UNDEFINED_COLUMN,
            pg::format("tenant column \"%s\" of distributed table \"%s\" is missing or no longer "
                       "a tenant id type",
                       column, RelationGetRelationName(rel)),
            {}, "Run edgeshard.undistribute_table() and edgeshard.distribute_table() again.");
}

}  // namespace
}  // namespace edgeshard::write_guard

using namespace edgeshard;

// edgeshard.guard_tenant(bigint, regclass) -> true, or raises: the CHECK of integer tenant columns.
EDGESHARD_FUNCTION(guard_tenant_bigint) { return write_guard::guard_tenant(fcinfo, INT8OID); }

// edgeshard.guard_tenant(text, regclass) -> true, or raises: text and varchar tenant columns.
EDGESHARD_FUNCTION(guard_tenant_text) { return write_guard::guard_tenant(fcinfo, TEXTOID); }

// edgeshard.guard_tenant(uuid, regclass) -> true, or raises: uuid tenant columns.
EDGESHARD_FUNCTION(guard_tenant_uuid) { return write_guard::guard_tenant(fcinfo, UUIDOID); }

// edgeshard.write_guard(column) trigger: BEFORE DELETE, or BEFORE UPDATE of the tenant column,
// FOR EACH ROW; checks the old row's tenant (the CHECK constraint covers new rows).
EDGESHARD_FUNCTION(write_guard) {
  if (!CALLED_AS_TRIGGER(fcinfo))
    pg::raise(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
              "edgeshard.write_guard() must be called as a trigger");
  auto* trigdata = reinterpret_cast<TriggerData*>(fcinfo->context);
  TriggerEvent event = trigdata->tg_event;
  if (!TRIGGER_FIRED_BEFORE(event) || !TRIGGER_FIRED_FOR_ROW(event) ||
      TRIGGER_FIRED_BY_INSERT(event))
    pg::raise(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
              "edgeshard.write_guard() must fire BEFORE UPDATE or DELETE, FOR EACH ROW");
  HeapTuple result =
      TRIGGER_FIRED_BY_UPDATE(event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
  if (edgeshard_bypass_write_guard) return PointerGetDatum(result);

  Relation rel = trigdata->tg_relation;
  write_guard::GuardState* state = write_guard::state_of(fcinfo);
  if (state->relid != RelationGetRelid(rel))
    write_guard::resolve_column(state, rel, trigdata->tg_trigger);
  bool isnull;
  Datum value =
      heap_getattr(trigdata->tg_trigtuple, state->attnum, RelationGetDescr(rel), &isnull);
  if (isnull) return PointerGetDatum(result);  // cannot be: the column is in the primary key
  char buffer[routing::kKeyBufferSize];
  std::string_view old_key = routing::tenant_key(value, state->typid, buffer);
  write_guard::check_key(state, old_key, RelationGetRelid(rel));
  if (TRIGGER_FIRED_BY_UPDATE(event)) {
    // A row that changes tenant would leave the old tenant's edge replicas without its unchanged
    // TOASTed values: the change stream carries a row per tenant, not a move between tenants.
    bool new_null;
    Datum new_value =
        heap_getattr(trigdata->tg_newtuple, state->attnum, RelationGetDescr(rel), &new_null);
    char new_buffer[routing::kKeyBufferSize];
    if (!new_null && routing::tenant_key(new_value, state->typid, new_buffer) != old_key)
      pg::raise(ERRCODE_FEATURE_NOT_SUPPORTED,
                pg::format("an UPDATE of distributed table \"%s\" cannot change a row's tenant",
                           RelationGetRelationName(rel)),
                {}, "Delete the row and insert it for the new tenant.");
  }
  return PointerGetDatum(result);
}

// The write guard: a BEFORE ROW trigger on every distributed table that refuses rows of tenants
// this node does not own (SQLSTATE SH001) or that are being moved (SH002).
//
// distribute_table() installs it as edgeshard_write_guard with the tenant column's name as its
// argument. It fires for INSERT (including COPY FROM and INSERT ... ON CONFLICT), UPDATE (the old
// and the new tenant must both be local) and DELETE.
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
#include "commands/trigger.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
}

namespace edgeshard::write_guard {

namespace {

// Longest key the per-statement memo remembers.
constexpr size_t kMemoKeySize = 64;

// Per-statement state of one trigger call site, palloc'ed in fn_mcxt (plain data only).
struct GuardState {
  Oid relid;
  AttrNumber attnum;
  Oid typid;
  uint64_t generation;  // shard-map generation the memo belongs to
  size_t memo_len;      // last key found local; bulk loads repeat the same tenant
  bool memo_valid;
  char memo_key[kMemoKeySize];
};

// Finds the tenant column named by the trigger argument; raises if it is gone or mistyped.
void resolve_column(GuardState* state, Relation rel, const Trigger* trigger) {
  if (trigger->tgnargs != 1)
    pg::raise(ERRCODE_TRIGGERED_ACTION_EXCEPTION,
              "edgeshard write guard on table \"" + std::string(RelationGetRelationName(rel)) +
                  "\" must have the tenant column as its only argument",
              {}, "Reinstall it with edgeshard.distribute_table().");
  const char* column = trigger->tgargs[0];
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

// Raises unless this node may write rows of the tenant in `tuple`.
void check_tuple(GuardState* state, Relation rel, HeapTuple tuple) {
  bool isnull;
  Datum value = heap_getattr(tuple, state->attnum, RelationGetDescr(rel), &isnull);
  if (isnull)
    pg::raise(ERRCODE_NOT_NULL_VIOLATION,
              pg::format("tenant column of distributed table \"%s\" must not be null",
                         RelationGetRelationName(rel)));
  char buffer[routing::kKeyBufferSize];
  std::string_view key = routing::tenant_key(value, state->typid, buffer);

  uint64_t generation = shard_map::generation();
  if (state->memo_valid && state->generation == generation && state->memo_len == key.size() &&
      memcmp(state->memo_key, key.data(), key.size()) == 0)
    return;

  shard_map::Map& map = shard_map::current();
  shard_map::Owner owner;
  const shard_map::Shard& shard = routing::owner_shard(map, key, &owner);
  std::string shown = routing::display_key(key);
  if (owner.moving)
    pg::raise(sqlstate::kTenantMoving,
              pg::format("tenant \"%s\" is being moved between shards (shard map epoch %lld)",
                         shown.c_str(), static_cast<long long>(map.epoch())),
              pg::format("Writes to the tenant are fenced while its rows are copied."),
              "Retry the write after a short backoff.");
  if (edgeshard_node_name == nullptr || edgeshard_node_name[0] == '\0')
    pg::raise(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
              "edgeshard.node_name is not set, so the write guard cannot tell which tenants are local",
              {}, "Set edgeshard.node_name in postgresql.conf to this server's shard name and reload.");
  if (shard.name != edgeshard_node_name)
    pg::raise(sqlstate::kWrongShard,
              pg::format("tenant \"%s\" belongs to shard \"%s\", not to this node \"%s\" (shard "
                         "map epoch %lld)",
                         shown.c_str(), shard.name.c_str(), edgeshard_node_name,
                         static_cast<long long>(map.epoch())),
              pg::format("Table \"%s\" is distributed by tenant; this node only accepts rows of "
                         "its own tenants.",
                         RelationGetRelationName(rel)),
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

}  // namespace
}  // namespace edgeshard::write_guard

using namespace edgeshard;

// edgeshard.write_guard() trigger: BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW.
EDGESHARD_FUNCTION(write_guard) {
  if (!CALLED_AS_TRIGGER(fcinfo))
    pg::raise(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
              "edgeshard.write_guard() must be called as a trigger");
  auto* trigdata = reinterpret_cast<TriggerData*>(fcinfo->context);
  TriggerEvent event = trigdata->tg_event;
  if (!TRIGGER_FIRED_BEFORE(event) || !TRIGGER_FIRED_FOR_ROW(event))
    pg::raise(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
              "edgeshard.write_guard() must fire BEFORE ... FOR EACH ROW");
  HeapTuple result = TRIGGER_FIRED_BY_UPDATE(event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
  if (edgeshard_bypass_write_guard) return PointerGetDatum(result);

  Relation rel = trigdata->tg_relation;
  auto* state = static_cast<write_guard::GuardState*>(fcinfo->flinfo->fn_extra);
  if (state == nullptr || state->relid != RelationGetRelid(rel)) {
    state = static_cast<write_guard::GuardState*>(pg::call([fcinfo] {
      return MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(write_guard::GuardState));
    }));
    write_guard::resolve_column(state, rel, trigdata->tg_trigger);
    fcinfo->flinfo->fn_extra = state;
  }
  // INSERT and DELETE: the one row; UPDATE: the old row's tenant and the new one's.
  write_guard::check_tuple(state, rel, trigdata->tg_trigtuple);
  if (TRIGGER_FIRED_BY_UPDATE(event)) write_guard::check_tuple(state, rel, trigdata->tg_newtuple);
  return PointerGetDatum(result);
}

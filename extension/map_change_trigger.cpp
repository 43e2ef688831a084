// edgeshard.on_map_change(): trigger on the catalog tables. Bumps the map epoch once per
// transaction and sends the invalidation that makes every backend re-read the map, whether the
// change came through an edgeshard function, plain DML on the catalog, or a restore.
#include "extension/shard_map.hpp"
#include <cstring>

#include "extension/pg_cxx.hpp"

extern "C" {
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
}

namespace {

// One bump per transaction: the row remembers which transaction bumped it last. (ON CONFLICT is
// not allowed on user catalog tables, hence update-then-insert; the insert runs once per database.)
constexpr const char* kBumpEpoch =
    "UPDATE edgeshard.map_epoch SET "
    "epoch = CASE WHEN changed_by_xact = pg_current_xact_id() THEN epoch ELSE epoch + 1 END, "
    "changed_at = now(), changed_by_xact = pg_current_xact_id()";
constexpr const char* kFirstEpoch =
    "INSERT INTO edgeshard.map_epoch (singleton, epoch, changed_at, changed_by_xact) "
    "VALUES (true, 1, now(), pg_current_xact_id())";

}  // namespace

using namespace edgeshard;

// Trigger AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW, and AFTER TRUNCATE FOR EACH STATEMENT,
// on the catalog tables.
EDGESHARD_FUNCTION(on_map_change) {
  if (!CALLED_AS_TRIGGER(fcinfo))
    pg::raise(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
              "edgeshard.on_map_change() must be called as a trigger");
  // Only edgeshard's own catalog may bump the epoch (the function runs as its owner).
  auto* trigdata = reinterpret_cast<TriggerData*>(fcinfo->context);
  bool in_catalog = pg::call([trigdata] {
    char* nsp = get_namespace_name(RelationGetNamespace(trigdata->tg_relation));
    return nsp != nullptr && strcmp(nsp, "edgeshard") == 0;
  });
  if (!in_catalog)
    pg::raise(ERRCODE_INSUFFICIENT_PRIVILEGE,
              "edgeshard.on_map_change() only runs on edgeshard's catalog tables");
  pg::call([] {
    SPI_connect();
    int rc = SPI_execute(kBumpEpoch, false, 0);
    if (rc == SPI_OK_UPDATE && SPI_processed == 0) rc = SPI_execute(kFirstEpoch, false, 0);
    if (rc != SPI_OK_UPDATE && rc != SPI_OK_INSERT)
      elog(ERROR, "edgeshard: bumping the map epoch failed: %s", SPI_result_code_string(rc));
    SPI_finish();
  });
  shard_map::invalidate_everywhere();
  return PointerGetDatum(nullptr);
}

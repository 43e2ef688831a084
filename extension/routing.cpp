// Routing functions: the canonical tenant key, shard_for(), ring_ownership(), bookmark().
#include <string>
#include <string_view>
#include <vector>

#include "common/ring.hpp"
#include "extension/shard_map.hpp"
#include "extension/pg_cxx.hpp"
#include "extension/routing.hpp"
#include "extension/settings.hpp"

extern "C" {
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"
}

namespace edgeshard::routing {

bool is_tenant_type(Oid typid) noexcept {
  switch (typid) {
    case INT2OID:
    case INT4OID:
    case INT8OID:
    case TEXTOID:
    case VARCHAROID:
    case UUIDOID:
      return true;
    default:
      return false;
  }
}

// Writes the canonical text of a uuid (8-4-4-4-12 lowercase hex, as uuid_out does).
static std::string_view uuid_key(const pg_uuid_t* uuid, char (&buffer)[kKeyBufferSize]) {
  static const char kHex[] = "0123456789abcdef";
  size_t pos = 0;
  for (int i = 0; i < UUID_LEN; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) buffer[pos++] = '-';
    buffer[pos++] = kHex[uuid->data[i] >> 4];
    buffer[pos++] = kHex[uuid->data[i] & 0xF];
  }
  return {buffer, pos};
}

std::string_view tenant_key(Datum value, Oid typid, char (&buffer)[kKeyBufferSize]) {
  switch (typid) {
    case INT2OID:
      return {buffer, static_cast<size_t>(pg_ltoa(DatumGetInt16(value), buffer))};
    case INT4OID:
      return {buffer, static_cast<size_t>(pg_ltoa(DatumGetInt32(value), buffer))};
    case INT8OID:
      return {buffer, static_cast<size_t>(pg_lltoa(DatumGetInt64(value), buffer))};
    case UUIDOID:
      return uuid_key(DatumGetUUIDP(value), buffer);
    default: {
      // text and varchar; only compressed or out-of-line values need detoasting (it pallocs in
      // the caller's context, per tuple in the write guard)
      auto* t = reinterpret_cast<struct varlena*>(DatumGetPointer(value));
      if (VARATT_IS_COMPRESSED(t) || VARATT_IS_EXTERNAL(t))
        t = pg::call([t] { return pg_detoast_datum_packed(t); });
      return {VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)};
    }
  }
}

std::string display_key(std::string_view key) {
  constexpr size_t kMaxShown = 64;
  if (key.size() <= kMaxShown) return std::string(key);
  size_t cut = kMaxShown;
  while (cut > 0 && (static_cast<unsigned char>(key[cut]) & 0xC0) == 0x80) cut--;
  return std::string(key.substr(0, cut)) + "...";
}

const shard_map::Shard& owner_shard(shard_map::Map& map, std::string_view key,
                                    shard_map::Owner* owner_out) {
  shard_map::Owner owner = map.owner_of(key);
  if (owner.shard_index < 0)
    pg::raise(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
              "no shard can take tenant \"" + display_key(key) + "\"",
              pg::format("No active shard has a weight above zero (shard map epoch %lld).",
                         static_cast<long long>(map.epoch())),
              "Add a shard with edgeshard.add_shard() or raise a weight with "
              "edgeshard.set_shard_weight().");
  if (owner_out != nullptr) *owner_out = owner;
  return map.shards()[owner.shard_index];
}

// Returns the owner's name as a text Datum.
static Datum owner_name_datum(std::string_view key) {
  const shard_map::Shard& shard = owner_shard(shard_map::current(), key);
  return pg::call([&] {
    return PointerGetDatum(cstring_to_text_with_len(shard.name.data(),
                                                    static_cast<int>(shard.name.size())));
  });
}

// Raises the error for a NULL tenant argument.
[[noreturn]] static void raise_null_tenant() {
  pg::raise(ERRCODE_NULL_VALUE_NOT_ALLOWED, "tenant id must not be null", {},
            "Pass the tenant's id (bigint or text).");
}

}  // namespace edgeshard::routing

using namespace edgeshard;

// edgeshard.shard_for(bigint) -> text: the shard owning an integer tenant id.
EDGESHARD_FUNCTION(shard_for_bigint) {
  if (PG_ARGISNULL(0)) routing::raise_null_tenant();
  char buffer[routing::kKeyBufferSize];
  return routing::owner_name_datum(routing::tenant_key(PG_GETARG_DATUM(0), INT8OID, buffer));
}

// edgeshard.shard_for(text) -> text: the shard owning a text tenant id.
EDGESHARD_FUNCTION(shard_for_text) {
  if (PG_ARGISNULL(0)) routing::raise_null_tenant();
  char buffer[routing::kKeyBufferSize];
  return routing::owner_name_datum(routing::tenant_key(PG_GETARG_DATUM(0), TEXTOID, buffer));
}

// edgeshard.ring_ownership() -> setof (shard_id, points, share): each shard's part of the ring.
EDGESHARD_FUNCTION(ring_ownership) {
  shard_map::Map& map = shard_map::current();
  std::vector<double> shares = map.ring().ownership();
  std::vector<uint32_t> points(shares.size(), 0);
  for (int32_t owner : map.ring().point_owners()) points[owner]++;
  pg::call([&] {
    InitMaterializedSRF(fcinfo, 0);
    auto* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
    for (size_t member = 0; member < shares.size(); member++) {
      Datum values[3];
      bool nulls[3] = {false, false, false};
      values[0] = Int32GetDatum(map.shards()[map.shard_of_member(member)].shard_id);
      values[1] = Int32GetDatum(static_cast<int32>(points[member]));
      values[2] = Float8GetDatum(shares[member]);
      tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
  });
  return static_cast<Datum>(0);
}

// edgeshard.current_epoch() -> bigint: the map epoch this backend routes with.
EDGESHARD_FUNCTION(current_epoch) {
  return Int64GetDatum(shard_map::current().epoch());
}

// edgeshard.bookmark() -> text: "node/LSN" for read-your-writes at the edges, taken after a commit.
EDGESHARD_FUNCTION(bookmark) {
  if (edgeshard_node_name == nullptr || edgeshard_node_name[0] == '\0')
    pg::raise(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "edgeshard.node_name is not set", {},
              "Set edgeshard.node_name in postgresql.conf to this server's shard name and reload.");
  return pg::call([] {
    if (RecoveryInProgress())
      ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                      errmsg("recovery is in progress"),
                      errhint("Take bookmarks on the shard primary, after the write commits.")));
    // The insert position, not the write position: with synchronous_commit = off the caller's
    // commit record may not be written yet, and the bookmark must still cover it.
    XLogRecPtr lsn = GetXLogInsertRecPtr();
    char* out = psprintf("%s/%X/%X", edgeshard_node_name, static_cast<uint32>(lsn >> 32),
                         static_cast<uint32>(lsn));
    return PointerGetDatum(cstring_to_text(out));
  });
}

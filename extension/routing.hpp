// Routing a tenant id to its shard: the canonical tenant key of a column value, and the owner
// lookup shared by shard_for() and the write guard.
#pragma once

#include <string>
#include <string_view>

#include "extension/shard_map.hpp"
#include "extension/pg_cxx.hpp"

namespace edgeshard::routing {

// Room for the canonical text of any fixed-width tenant id (bigint or uuid).
inline constexpr size_t kKeyBufferSize = 40;

// True if a column of this type can hold tenant ids (int2/4/8, text, varchar, uuid).
bool is_tenant_type(Oid typid) noexcept;

// The canonical key of a tenant value: decimal text for integers, the text itself for strings,
// lowercase hyphenated hex for uuids. `buffer` holds the text of fixed-width types.
std::string_view tenant_key(Datum value, Oid typid, char (&buffer)[kKeyBufferSize]);

// The key as messages show it: at most 64 bytes (cut on a UTF-8 boundary), then "...".
std::string display_key(std::string_view key);

// The shard that owns `key`; raises when no shard can take it.
const shard_map::Shard& owner_shard(shard_map::Map& map, std::string_view key,
                                    shard_map::Owner* owner = nullptr);

}  // namespace edgeshard::routing

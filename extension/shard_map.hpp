// The per-backend shard map: shards, the consistent hash ring over them, and explicit tenant
// placements, read from the edgeshard catalog and cached until the map epoch changes.
//
// Every change to the catalog goes through a trigger (extension/map_change_trigger.cpp) that bumps
// edgeshard.map_epoch and sends a relcache invalidation for it; the callback registered here only
// marks the cache stale, and the next current() rebuilds it. A Map stays valid (not freed) until
// that next current() call, so a caller may keep using one for the length of one check even if an
// invalidation arrives meanwhile.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/ring.hpp"

namespace edgeshard::shard_map {

// One row of edgeshard.shards, as routing needs it.
struct Shard {
  int32_t shard_id;
  std::string name;
  uint32_t weight;
  bool active;  // state = 'active'; a draining shard keeps explicit tenants but gets no hashed ones
};

// Where a tenant goes, and whether writes to it are currently fenced.
struct Owner {
  int32_t shard_index;  // index into Map::shards(), or -1 when no shard can take the tenant
  bool moving;          // tenants.state = 'moving'
  bool explicit_placement;
};

// Transparent string hash so lookups by string_view allocate nothing.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// A snapshot of the shard map at one epoch.
class Map {
 public:
  // What the constructor reads from the catalog.
  struct Catalog;

  // Reads the catalog; throws pg::Error when the extension is missing or the catalog unreadable.
  Map();
  explicit Map(Catalog&& catalog);

  int64_t epoch() const noexcept { return epoch_; }
  const std::vector<Shard>& shards() const noexcept { return shards_; }
  const HashRing& ring() const noexcept { return ring_; }
  // Index into shards() of ring member i.
  int32_t shard_of_member(int32_t member) const noexcept { return ring_shards_[member]; }
  // Index into shards() of the shard named `name`, or -1.
  int32_t find_shard(std::string_view name) const noexcept;

  // Owner of the tenant with canonical key `key` (explicit placement first, else the ring).
  Owner owner_of(std::string_view key);

  // A row of edgeshard.tenants as routing needs it.
  struct Placement {
    int32_t shard_index;  // -1: no explicit placement (the ring decides)
    bool moving;
  };

 private:
  Placement lookup_placement(std::string_view key) const;
  int32_t shard_index_of_id(int32_t shard_id) const noexcept;

  int64_t epoch_ = 0;
  std::vector<Shard> shards_;  // sorted by name: ring member order is part of the ring's contract
  std::vector<int32_t> ring_shards_;
  HashRing ring_;
  // Every row of edgeshard.tenants when it has at most kFullLoadLimit rows (complete_), so a
  // tenant missing here follows the ring without a lookup; else a bounded cache of lookups.
  std::unordered_map<std::string, Placement, StringHash, std::equal_to<>> placements_;
  bool complete_ = false;
  unsigned int tenants_relid_ = 0;
  unsigned int tenants_pkey_ = 0;
  int16_t tenant_id_attnum_ = 0;
  int16_t tenant_shard_attnum_ = 0;
  int16_t tenant_state_attnum_ = 0;
};

// The current map, rebuilt if the catalog changed since it was read.
Map& current();

// Counts rebuilds; per-call-site memos compare it to know whether they are still valid.
uint64_t generation() noexcept;

// Registers the relcache callback that marks the map stale (once per backend, from _PG_init).
void register_invalidation();

// Sends the invalidation that makes every backend re-read the map after this transaction commits
// (and this backend after the current command).
void invalidate_everywhere();

}  // namespace edgeshard::shard_map

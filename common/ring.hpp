// Consistent hash ring that maps tenant keys to shards. The exact definition is a contract shared
// with the extension, the daemons and client libraries in other languages: see common/RING.md.
#pragma once

#include "common/no_postgres.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard {

// Points each unit of weight owns on the ring; part of the contract, changing it moves tenants.
inline constexpr uint32_t kRingVnodesPerWeight = 128;

// Most points a ring may hold, so point indexes fit the 32-bit acceleration table.
inline constexpr uint64_t kRingMaxPoints = uint64_t{1} << 24;

// One shard as the ring sees it; the name is only read during construction.
struct RingMember {
  std::string_view name;
  uint32_t weight;
};

// Hashes a tenant key (the canonical text of the tenant id) to its position on the ring.
uint64_t hash_tenant_key(std::string_view key) noexcept;

// Canonical key of an integer tenant id: its decimal text, so tenant 42 and tenant '42' agree.
std::string tenant_key_from_int(int64_t v);

// Immutable ring built from a member list; lookups return the member's index in that list.
class HashRing {
 public:
  // Builds the points of every member; throws std::length_error above kRingMaxPoints points.
  explicit HashRing(std::span<const RingMember> members,
                    uint32_t vnodes_per_weight = kRingVnodesPerWeight);

  // Owner of a ring position: the first point clockwise (hash >= h), or -1 if the ring is empty.
  int32_t owner_of_hash(uint64_t h) const noexcept;

  // Owner of a tenant key, or -1 if the ring is empty.
  int32_t owner_of_key(std::string_view key) const noexcept;

  // Number of points on the ring (0 when every weight is 0).
  size_t point_count() const noexcept { return hashes_.size(); }

  // Sorted point hashes, exposed so tests and benchmarks can check lookups against a plain search.
  std::span<const uint64_t> point_hashes() const noexcept { return hashes_; }

  // Member index of each point, parallel to point_hashes().
  std::span<const int32_t> point_owners() const noexcept { return owners_; }

  // Fraction of the 2^64 hash space each member owns (sums to 1 unless the ring is empty).
  std::vector<double> ownership() const;

 private:
  size_t member_count_;
  // Points as a struct of arrays: the lookup scans hashes only and reads one owner at the end.
  std::vector<uint64_t> hashes_;
  std::vector<int32_t> owners_;
  // bucket_start_[b] = first point whose top (64 - table_shift_) bits are >= b; one extra entry
  // at the end so bucket b's candidates always end at bucket_start_[b + 1].
  int table_shift_ = 64;
  std::vector<uint32_t> bucket_start_;
};

}  // namespace edgeshard

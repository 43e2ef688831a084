// Consistent hash ring: construction of the points and the accelerated lookup (see RING.md).
#include "common/ring.hpp"

#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <utility>

namespace edgeshard {

namespace {

// The acceleration table indexes points by the top 16 bits of their hash: 2^16 buckets of 4 bytes
// (256 KiB, fits L2). With a few thousand points almost every bucket is empty or holds one point,
// so a lookup is one table read and at most a couple of comparisons, and the branches stay
// predictable (a smaller table with more points per bucket measured ~25% slower).
constexpr int kTableShift = 64 - 16;
constexpr size_t kTableBuckets = size_t{1} << 16;

// Hashes bytes exactly as the contract says: XXH3 64-bit, seed 0.
uint64_t ring_hash(std::string_view bytes) noexcept {
  return XXH3_64bits(bytes.data(), bytes.size());
}

}  // namespace

uint64_t hash_tenant_key(std::string_view key) noexcept { return ring_hash(key); }

std::string tenant_key_from_int(int64_t v) {
  char buf[20];  // "-9223372036854775808" is 20 characters
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;  // cannot fail: the buffer fits every int64_t
  return std::string(buf, end);
}

HashRing::HashRing(std::span<const RingMember> members, uint32_t vnodes_per_weight)
    : member_count_(members.size()) {
  uint64_t total = 0;
  for (const RingMember& m : members) {
    total += uint64_t{m.weight} * vnodes_per_weight;
  }
  if (total > kRingMaxPoints) {
    throw std::length_error("hash ring would have more than 2^24 points");
  }

  // Hash "name#j" for every point, reusing one buffer: only the digits change between points.
  std::vector<std::pair<uint64_t, int32_t>> points;
  points.reserve(total);
  std::string label;
  for (size_t i = 0; i < members.size(); ++i) {
    const uint64_t count = uint64_t{members[i].weight} * vnodes_per_weight;
    label.assign(members[i].name);
    label.push_back('#');
    const size_t prefix = label.size();
    for (uint64_t j = 0; j < count; ++j) {
      char digits[20];
      auto [end, ec] = std::to_chars(digits, digits + sizeof digits, j);
      (void)ec;  // cannot fail: the buffer fits every uint64_t
      label.resize(prefix);
      label.append(digits, end);
      points.emplace_back(ring_hash(label), static_cast<int32_t>(i));
    }
  }
  // Pairs sort by (hash, member index): ties go to the lower index, as every client must do.
  std::sort(points.begin(), points.end());

  hashes_.reserve(points.size());
  owners_.reserve(points.size());
  for (const auto& [hash, owner] : points) {
    hashes_.push_back(hash);
    owners_.push_back(owner);
  }

  // One merge pass over the sorted points fills every bucket's first candidate.
  bucket_start_.resize(kTableBuckets + 1);
  uint32_t p = 0;
  for (size_t b = 0; b < bucket_start_.size(); ++b) {
    while (p < hashes_.size() && (hashes_[p] >> kTableShift) < b) {
      ++p;
    }
    bucket_start_[b] = p;
  }
}

int32_t HashRing::owner_of_hash(uint64_t h) const noexcept {
  if (hashes_.empty()) {
    return -1;
  }
  // Every point before bucket_start_[b] hashes below h, and the point at bucket_start_[b + 1]
  // (if any) hashes above h, so the answer lies in [bucket_start_[b], bucket_start_[b + 1]].
  const uint64_t b = h >> kTableShift;
  const uint64_t* first = hashes_.data() + bucket_start_[b];
  const uint64_t* last = hashes_.data() + bucket_start_[b + 1];
  const uint64_t* it = std::lower_bound(first, last, h);
  size_t index = static_cast<size_t>(it - hashes_.data());
  if (index == hashes_.size()) {
    index = 0;  // past the last point: wrap around to the first
  }
  return owners_[index];
}

int32_t HashRing::owner_of_key(std::string_view key) const noexcept {
  return owner_of_hash(hash_tenant_key(key));
}

std::vector<double> HashRing::ownership() const {
  std::vector<double> share(member_count_, 0.0);
  if (hashes_.empty()) {
    return share;
  }
  // Point i owns the hashes in (hashes_[i - 1], hashes_[i]]; point 0 also owns everything above
  // the last point, because lookups past the last point wrap around.
  constexpr double kSpace = 0x1p64;
  share[owners_[0]] +=
      (kSpace - static_cast<double>(hashes_.back()) + static_cast<double>(hashes_.front())) /
      kSpace;
  for (size_t i = 1; i < hashes_.size(); ++i) {
    share[owners_[i]] += static_cast<double>(hashes_[i] - hashes_[i - 1]) / kSpace;
  }
  return share;
}

}  // namespace edgeshard

// Consistent hash ring: construction of the points and the accelerated lookup (see RING.md).
#include "common/ring.hpp"

#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <utility>

namespace edgeshard {

namespace {

// The acceleration table indexes points by the top bits of their hash, about four buckets per
// point (2^11 buckets of 4 bytes for a 512-point ring, 2^16 at most): almost every bucket is empty
// or holds one point, so a lookup is one table read and a comparison or two. Sized to the ring it
// stays in L1/L2 next to the executor's own working set inside PostgreSQL, where a fixed 2^16 table
// (256 KiB) showed up as cache misses in profiles of guarded INSERTs.
constexpr int kMinTableBits = 4;
constexpr int kMaxTableBits = 16;

// Bits of the acceleration table for a ring of `points` points.
int table_bits(size_t points) noexcept {
  int bits = kMinTableBits;
  while (bits < kMaxTableBits && (size_t{1} << bits) < points * 4) ++bits;
  return bits;
}

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
  table_shift_ = 64 - table_bits(hashes_.size());
  bucket_start_.resize((size_t{1} << (64 - table_shift_)) + 1);
  uint32_t p = 0;
  for (size_t b = 0; b < bucket_start_.size(); ++b) {
    while (p < hashes_.size() && (hashes_[p] >> table_shift_) < b) {
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
  const uint64_t b = h >> table_shift_;
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

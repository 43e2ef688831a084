// Cache of decompressed replica-file blocks: open addressing and CLOCK (block_cache.hpp).
#include "edge_apply/block_cache.hpp"

#include <utility>

namespace edgeshard::replica {

namespace {

// Hash of a key (a multiplicative mix: file ids and block numbers are small integers).
inline size_t hash_key(uint64_t file_id, uint32_t block_no) noexcept {
  uint64_t h = file_id * 0x9E3779B97F4A7C15ull ^ (block_no * 0xC2B2AE3D27D4EB4Full);
  h ^= h >> 31;
  h *= 0xBF58476D1CE4E5B9ull;
  return static_cast<size_t>(h ^ (h >> 29));
}

}  // namespace

BlockCache::BlockCache(size_t capacity_bytes) : capacity_(capacity_bytes) {}

BlockCache::~BlockCache() = default;

size_t BlockCache::probe(uint64_t file_id, uint32_t block_no) const noexcept {
  const size_t mask = table_.size() - 1;
  size_t i = hash_key(file_id, block_no) & mask;
  while (table_[i].entry != 0 && (table_[i].file_id != file_id || table_[i].block_no != block_no)) {
    i = (i + 1) & mask;
  }
  return i;
}

BlockBytes BlockCache::find(uint64_t file_id, uint32_t block_no) noexcept {
  if (count_ > 0) {
    const Slot& s = table_[probe(file_id, block_no)];
    if (s.entry != 0) {
      ++hits_;
      referenced_[s.entry - 1] = 1;
      return BlockBytes{s.data, s.size};
    }
  }
  ++misses_;
  return BlockBytes{};
}

std::shared_ptr<const CachedBlock> BlockCache::find_shared(uint64_t file_id,
                                                           uint32_t block_no) noexcept {
  if (count_ > 0) {
    const Slot& s = table_[probe(file_id, block_no)];
    if (s.entry != 0) {
      ++hits_;
      referenced_[s.entry - 1] = 1;
      return entries_[s.entry - 1].block;
    }
  }
  ++misses_;
  return nullptr;
}

void BlockCache::erase_slot(size_t slot) noexcept {
  // Backward-shift deletion: move each later slot of the run into the hole when its home position
  // does not lie cyclically in (hole, slot].
  const size_t mask = table_.size() - 1;
  size_t hole = slot;
  size_t i = (slot + 1) & mask;
  while (table_[i].entry != 0) {
    const size_t home = hash_key(table_[i].file_id, table_[i].block_no) & mask;
    const bool stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
    if (!stays) {
      table_[hole] = table_[i];
      hole = i;
    }
    i = (i + 1) & mask;
  }
  table_[hole] = Slot{};
}

void BlockCache::grow_table() {
  std::vector<Slot> old = std::move(table_);
  try {
    table_.assign(old.empty() ? 16 : old.size() * 2, Slot{});
  } catch (...) {
    table_ = std::move(old);
    throw;
  }
  for (const Slot& s : old) {
    if (s.entry != 0) table_[probe(s.file_id, s.block_no)] = s;
  }
}

void BlockCache::evict(uint32_t keep) noexcept {
  while (charged_ > capacity_) {
    if (hand_ >= entries_.size()) hand_ = 0;
    const size_t e = hand_++;
    if (entries_[e].charge == 0 || e == keep) continue;
    if (referenced_[e] != 0) {
      referenced_[e] = 0;  // second chance
      continue;
    }
    Entry& victim = entries_[e];
    erase_slot(probe(victim.file_id, victim.block_no));
    charged_ -= victim.charge;
    victim = Entry{};
    free_.push_back(static_cast<uint32_t>(e));  // capacity reserved in insert()
    --count_;
    ++evictions_;
  }
}

BlockBytes BlockCache::insert(uint64_t file_id, uint32_t block_no,
                              std::shared_ptr<const CachedBlock> block) {
  const size_t charge = block->size + kCacheEntryOverhead;
  if (charge > capacity_) {
    oversized_ = std::move(block);
    return BlockBytes{oversized_->bytes.get(), oversized_->size};
  }
  // Allocate everything first, so that a bad_alloc leaves the cache unchanged.
  if (2 * (count_ + 1) > table_.size()) grow_table();
  uint32_t e;
  if (!free_.empty()) {
    e = free_.back();
    free_.pop_back();
  } else {
    entries_.emplace_back();
    try {
      referenced_.push_back(0);
      free_.reserve(entries_.size());  // evict() pushes without allocating
    } catch (...) {
      entries_.pop_back();
      if (referenced_.size() > entries_.size()) referenced_.pop_back();
      throw;
    }
    e = static_cast<uint32_t>(entries_.size() - 1);
  }
  const BlockBytes bytes{block->bytes.get(), block->size};
  Slot& slot = table_[probe(file_id, block_no)];
  slot = Slot{file_id, block_no, e + 1, bytes.data, bytes.size};
  entries_[e] = Entry{file_id, block_no, charge, std::move(block)};
  referenced_[e] = 1;
  charged_ += charge;
  ++count_;
  oversized_.reset();
  evict(e);
  return bytes;
}

void BlockCache::clear() noexcept {
  table_.clear();
  entries_.clear();
  referenced_.clear();
  free_.clear();
  hand_ = 0;
  count_ = 0;
  charged_ = 0;
  oversized_.reset();
}

}  // namespace edgeshard::replica

// Cache of decompressed replica-file blocks, bounded in bytes (edge_apply/FORMAT.md; DESIGN.md
// section 9: the reader's L1 cache, above the OS page cache over the mmapped files).
//
// Only LZ4-compressed data blocks go through the cache: a block stored raw is used in place from
// the file's mapping. Entries are keyed by (file identity, block number), where the identity is
// the process-unique ReplicaFile::id() of an open file, so one cache can serve every file of a
// tenant (base and deltas) and an entry can never be mistaken for a block of another file, even
// one later opened at the same path.
//
// Replacement is CLOCK (second chance), the usual approximation of LRU: a hit only sets the
// entry's reference bit, so a lookup costs one probe of an open-addressing table and no list
// splicing (which, at a million rows, costs a lookup more than the rest of it). Eviction sweeps
// the entries, clearing reference bits, and evicts the first entry not referenced since the last
// sweep.
//
// Not thread-safe: one cache per thread (or per isolate). ReplicaFile itself may be shared by
// threads, each with its own cache.
#pragma once

#include "common/no_postgres.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace edgeshard::replica {

// A decompressed block as kept in the cache (immutable once built).
struct CachedBlock {
  std::unique_ptr<uint8_t[]> bytes;
  size_t size = 0;
};

// A cached block's bytes; empty (data == nullptr) when absent.
struct BlockBytes {
  const uint8_t* data = nullptr;
  size_t size = 0;
};

// Default byte bound of a cache.
inline constexpr size_t kDefaultCacheBytes = 64u << 20;

// Bytes a cache charges for an entry on top of its block's size (table slot, entry, block
// object), so that a cache of tiny blocks stays bounded too.
inline constexpr size_t kCacheEntryOverhead = 128;

// Cache of decompressed blocks; charged_bytes() never exceeds capacity().
class BlockCache {
 public:
  // A cache holding at most capacity_bytes (blocks plus kCacheEntryOverhead each).
  explicit BlockCache(size_t capacity_bytes = kDefaultCacheBytes);
  ~BlockCache();
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // The cached block's bytes, marked as recently used, or empty. They stay valid until the next
  // insert() or clear().
  BlockBytes find(uint64_t file_id, uint32_t block_no) noexcept;

  // Like find(), but shares ownership: the block stays alive as long as the caller holds it,
  // whatever the cache evicts (scans hold their current block this way); nullptr when absent.
  std::shared_ptr<const CachedBlock> find_shared(uint64_t file_id, uint32_t block_no) noexcept;

  // Inserts a block that find() did not return, evicting entries until the bound holds again
  // (never the new one). A block whose charge exceeds the capacity is not cached; the cache keeps
  // it only until the next insert(). Returns the block's bytes, valid until the next insert() or
  // clear(). May throw std::bad_alloc (the cache is then unchanged).
  BlockBytes insert(uint64_t file_id, uint32_t block_no, std::shared_ptr<const CachedBlock> block);

  // Drops every entry.
  void clear() noexcept;

  // The byte bound.
  size_t capacity() const noexcept { return capacity_; }
  // Bytes currently charged (block sizes plus per-entry overhead).
  size_t charged_bytes() const noexcept { return charged_; }
  // Number of cached blocks.
  size_t entries() const noexcept { return count_; }
  // Lookups that found their block.
  uint64_t hits() const noexcept { return hits_; }
  // Lookups that did not.
  uint64_t misses() const noexcept { return misses_; }
  // Entries dropped to keep the bound.
  uint64_t evictions() const noexcept { return evictions_; }

 private:
  // One slot of the open-addressing table (linear probing); `entry` 0 marks an empty slot.
  struct Slot {
    uint64_t file_id = 0;
    uint32_t block_no = 0;
    uint32_t entry = 0;  // index into entries_, plus one
    const uint8_t* data = nullptr;
    size_t size = 0;
  };
  // One cached block.
  struct Entry {
    uint64_t file_id = 0;
    uint32_t block_no = 0;
    size_t charge = 0;  // 0 for a free entry
    std::shared_ptr<const CachedBlock> block;
  };

  // The table slot of a key, or of the empty slot where it would go.
  size_t probe(uint64_t file_id, uint32_t block_no) const noexcept;
  // Removes a key's slot, shifting later slots of its probe run back (no tombstones).
  void erase_slot(size_t slot) noexcept;
  // Doubles the table (or creates it) and reinserts every entry.
  void grow_table();
  // Evicts entries (never `keep`) until the bound holds.
  void evict(uint32_t keep) noexcept;

  size_t capacity_;
  size_t charged_ = 0;
  size_t count_ = 0;
  std::vector<Slot> table_;          // size a power of two, at most half full
  std::vector<Entry> entries_;       // CLOCK order
  std::vector<uint8_t> referenced_;  // per entry: used since the hand last passed
  std::vector<uint32_t> free_;       // free entry indexes
  size_t hand_ = 0;
  std::shared_ptr<const CachedBlock> oversized_;  // the last block too big to cache
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  uint64_t evictions_ = 0;
};

}  // namespace edgeshard::replica

// A shard's position file, data_dir/shards/<shard>.position (edge_apply/FORMAT.md, "Shard
// position file"): how far the apply daemon has published *every* tenant of the data directory
// for that shard. After each flush round (every tenant's pending rows published), the daemon
// stores the shard's stream position there, so a tenant whose rows did not change is known to be
// fresh without rewriting its manifest: readers take max(manifest position, shard position),
// which is what lets wait_for(bookmark) return for quiet tenants within a flush interval.
//
// 64 bytes, mapped by the daemon (read-write) and by readers (read-only), updated under a
// sequence counter (odd while being written): readers retry until they see the same even value
// before and after reading the fields. Never fsynced: after a machine crash it may show an older
// position, never a newer one (it is written after the manifests it vouches for are durable).
#pragma once

#include "common/no_postgres.hpp"

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

namespace edgeshard::apply {

// Size of a shard position file.
inline constexpr size_t kShardPositionBytes = 64;

// What a shard position file says.
struct ShardProgress {
  uint64_t position = 0;          // every transaction of the shard below it is published
  uint64_t upstream = 0;          // the relay's position as it last reported it
  int64_t upstream_time_us = 0;   // when the relay reported it (its clock)
};

// The path of shard's position file under data_dir.
std::filesystem::path shard_position_path(const std::filesystem::path& data_dir, std::string_view shard);

// The daemon's side: creates the file and publishes progress.
class ShardPositionWriter {
 public:
  ShardPositionWriter() = default;
  ~ShardPositionWriter();
  ShardPositionWriter(const ShardPositionWriter&) = delete;
  ShardPositionWriter& operator=(const ShardPositionWriter&) = delete;

  // Opens (creating) the shard's file; false with why.
  bool open(const std::filesystem::path& data_dir, std::string_view shard, std::string& why);
  // Stores progress (positions never go back: a smaller position is ignored).
  void publish(const ShardProgress& progress) noexcept;
  // What was last published (or read at open).
  const ShardProgress& last() const noexcept { return last_; }

 private:
  void* map_ = nullptr;
  ShardProgress last_;
};

// A reader's side: maps the file read-only.
class ShardPositionReader {
 public:
  ShardPositionReader() = default;
  ~ShardPositionReader();
  ShardPositionReader(ShardPositionReader&& other) noexcept : map_(std::exchange(other.map_, nullptr)) {}
  ShardPositionReader& operator=(ShardPositionReader&& other) noexcept;
  ShardPositionReader(const ShardPositionReader&) = delete;
  ShardPositionReader& operator=(const ShardPositionReader&) = delete;

  // Maps the shard's file; false (with why) when it is missing or not a shard position file.
  bool open(const std::filesystem::path& data_dir, std::string_view shard, std::string& why);
  // Whether open() succeeded.
  bool is_open() const noexcept { return map_ != nullptr; }
  // A consistent reading of the file (zeros before open()).
  ShardProgress read() const noexcept;

 private:
  const void* map_ = nullptr;
};

}  // namespace edgeshard::apply

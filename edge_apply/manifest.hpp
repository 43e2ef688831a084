// A tenant replica's manifest and head file (edge_apply/FORMAT.md, "Manifest" and "Head file").
// The manifest lists the live replica files (one base, then deltas, oldest first) and how far the
// replica has applied each shard's stream; the apply daemon replaces it atomically (write a temp
// file, fsync, rename, fsync the directory), then bumps the generation in the small `head` file.
// Readers map `head` and compare its generation with an atomic load: they re-read the manifest
// only when it changed, with no system call per lookup.
#pragma once

#include "common/no_postgres.hpp"

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edgeshard::apply {

// How far a replica has applied one shard's stream.
struct ShardPosition {
  std::string shard;          // shard name (edgeshard.shards.name)
  uint64_t applied = 0;       // every transaction below this position is in the files
  int64_t commit_time_us = 0; // commit time of the newest applied transaction (0: none yet)
  uint64_t upstream = 0;      // the upstream's position as it last reported it
  int64_t upstream_time_us = 0;  // when the upstream reported it (its clock)
};

// Base (the full sorted copy) or delta (changes on top, newest last).
enum class FileKind { kBase, kDelta };

// One live replica file.
struct FileEntry {
  FileKind kind = FileKind::kDelta;
  std::string name;  // file name inside the tenant directory
  uint64_t records = 0;
  uint64_t bytes = 0;
};

// The manifest's content.
struct Manifest {
  uint64_t generation = 0;  // grows by one with every replacement
  std::string tenant;       // canonical tenant key (common/RING.md)
  bool published = false;   // the initial copy is complete: readers may serve the tenant
  std::vector<ShardPosition> shards;
  std::vector<FileEntry> files;  // base first, then deltas oldest first
};

// The manifest's text (with its checksum line).
std::string encode_manifest(const Manifest& m);

// Parses encode_manifest()'s text; false with why (naming the line) when it is damaged.
bool decode_manifest(std::string_view text, Manifest& out, std::string& why);

// fsyncs a directory so that the renames and unlinks in it are durable; false with why.
bool fsync_directory(const std::filesystem::path& dir, std::string& why);

// Writes dir/manifest atomically and durably; false with why on an I/O error (and the failed
// call's errno in *sys_errno when given: ENOSPC for a full disk). With sync false the rename is
// atomic but nothing is fsynced: the caller makes it durable (syncfs).
bool write_manifest(const std::filesystem::path& dir, const Manifest& m, std::string& why, bool sync = true,
                    int* sys_errno = nullptr);

// Reads dir/manifest; false with why when it is missing or damaged.
bool read_manifest(const std::filesystem::path& dir, Manifest& out, std::string& why);

// Size of the head file.
inline constexpr size_t kHeadBytes = 64;

// The writer's side of dir/head: creates it when missing, bumps its generation.
class HeadWriter {
 public:
  HeadWriter() = default;
  ~HeadWriter();
  HeadWriter(const HeadWriter&) = delete;
  HeadWriter& operator=(const HeadWriter&) = delete;

  // Opens (creating) dir/head; false with why.
  bool open(const std::filesystem::path& dir, std::string& why);
  // Stores generation (after the manifest holding it was renamed into place).
  void publish(uint64_t generation) noexcept;

 private:
  int fd_ = -1;
  void* map_ = nullptr;
};

// The readers' side of dir/head: one atomic load per check.
class HeadReader {
 public:
  HeadReader() = default;
  ~HeadReader();
  HeadReader(const HeadReader&) = delete;
  HeadReader& operator=(const HeadReader&) = delete;
  // Takes other's mapping.
  HeadReader(HeadReader&& other) noexcept : map_(std::exchange(other.map_, nullptr)) {}
  // Takes other's mapping, releasing this one's.
  HeadReader& operator=(HeadReader&& other) noexcept;

  // Maps dir/head read-only; false with why when it is missing or not a head file.
  bool open(const std::filesystem::path& dir, std::string& why);
  // The generation last published (0 before open()).
  uint64_t generation() const noexcept;

 private:
  const void* map_ = nullptr;
};

}  // namespace edgeshard::apply

// Shard position files: a seqlock over three fields in a mapped 64-byte file.
#include "edge_apply/shard_position.hpp"

#include "edge_apply/dir_name.hpp"
#include "edge_apply/manifest.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace edgeshard::apply {

namespace {

// Layout (little-endian, FORMAT.md): magic "ESSP", u8 version, 3 reserved, then u64 fields.
constexpr char kMagic[4] = {'E', 'S', 'S', 'P'};
constexpr uint8_t kVersion = 1;
constexpr size_t kSeqOffset = 8;
constexpr size_t kPositionOffset = 16;
constexpr size_t kUpstreamOffset = 24;
constexpr size_t kUpstreamTimeOffset = 32;

// The u64 at offset of a mapping, as an atomic.
std::atomic_ref<uint64_t> field(const void* map, size_t offset) {
  auto* p = reinterpret_cast<uint64_t*>(const_cast<char*>(static_cast<const char*>(map)) + offset);
  return std::atomic_ref<uint64_t>(*p);
}

// Reads the fields under the sequence counter (retrying while a write is in progress).
ShardProgress read_fields(const void* map) noexcept {
  ShardProgress p;
  for (;;) {
    const uint64_t before = field(map, kSeqOffset).load(std::memory_order_acquire);
    if ((before & 1) == 0) {
      p.position = field(map, kPositionOffset).load(std::memory_order_relaxed);
      p.upstream = field(map, kUpstreamOffset).load(std::memory_order_relaxed);
      p.upstream_time_us = static_cast<int64_t>(field(map, kUpstreamTimeOffset).load(std::memory_order_relaxed));
      std::atomic_thread_fence(std::memory_order_acquire);
      if (field(map, kSeqOffset).load(std::memory_order_relaxed) == before) return p;
    }
  }
}

// Maps the open file fd (closed here) of path and checks its magic and version; nullptr with
// why on failure.
void* map_checked(int fd, const std::filesystem::path& path, bool writable, std::string& why) {
  void* map = ::mmap(nullptr, kShardPositionBytes, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    why = "could not map " + path.string() + ": " + std::strerror(errno);
    return nullptr;
  }
  if (std::memcmp(map, kMagic, 4) != 0 || static_cast<const uint8_t*>(map)[4] != kVersion) {
    ::munmap(map, kShardPositionBytes);
    why = path.string() + " is not a version 1 shard position file";
    return nullptr;
  }
  return map;
}

}  // namespace

std::filesystem::path shard_position_path(const std::filesystem::path& data_dir, std::string_view shard) {
  return shard_file_path(data_dir, shard, ".position");
}

ShardPositionWriter::~ShardPositionWriter() {
  if (map_ != nullptr) ::munmap(map_, kShardPositionBytes);
}

bool ShardPositionWriter::open(const std::filesystem::path& data_dir, std::string_view shard, std::string& why) {
  const std::filesystem::path path = shard_position_path(data_dir, shard);
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    why = "could not open " + path.string() + ": " + std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return false;
  }
  if (st.st_size != static_cast<off_t>(kShardPositionBytes)) {
    char bytes[kShardPositionBytes] = {};
    std::memcpy(bytes, kMagic, 4);
    bytes[4] = static_cast<char>(kVersion);
    if (::pwrite(fd, bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes) || ::fsync(fd) != 0) {
      why = "could not initialise " + path.string() + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (!fsync_directory(path.parent_path(), why)) {
      ::close(fd);
      return false;
    }
  }
  map_ = map_checked(fd, path, true, why);
  if (map_ == nullptr) return false;
  last_ = read_fields(map_);
  return true;
}

void ShardPositionWriter::publish(const ShardProgress& progress) noexcept {
  if (map_ == nullptr || progress.position < last_.position) return;
  if (progress.position == last_.position && progress.upstream == last_.upstream &&
      progress.upstream_time_us == last_.upstream_time_us) {
    return;
  }
  auto seq = field(map_, kSeqOffset);
  const uint64_t s = seq.load(std::memory_order_relaxed);
  seq.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  field(map_, kPositionOffset).store(progress.position, std::memory_order_relaxed);
  field(map_, kUpstreamOffset).store(progress.upstream, std::memory_order_relaxed);
  field(map_, kUpstreamTimeOffset).store(static_cast<uint64_t>(progress.upstream_time_us), std::memory_order_relaxed);
  seq.store(s + 2, std::memory_order_release);
  last_ = progress;
}

ShardPositionReader::~ShardPositionReader() {
  if (map_ != nullptr) ::munmap(const_cast<void*>(map_), kShardPositionBytes);
}

ShardPositionReader& ShardPositionReader::operator=(ShardPositionReader&& other) noexcept {
  if (this != &other) {
    if (map_ != nullptr) ::munmap(const_cast<void*>(map_), kShardPositionBytes);
    map_ = std::exchange(other.map_, nullptr);
  }
  return *this;
}

bool ShardPositionReader::open(const std::filesystem::path& data_dir, std::string_view shard, std::string& why) {
  const std::filesystem::path path = shard_position_path(data_dir, shard);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || st.st_size != static_cast<off_t>(kShardPositionBytes)) {
    why = path.string() + " is missing or not a shard position file";
    if (fd >= 0) ::close(fd);
    return false;
  }
  void* map = map_checked(fd, path, false, why);
  if (map == nullptr) return false;
  if (map_ != nullptr) ::munmap(const_cast<void*>(map_), kShardPositionBytes);
  map_ = map;
  return true;
}

ShardProgress ShardPositionReader::read() const noexcept {
  return map_ == nullptr ? ShardProgress{} : read_fields(map_);
}

}  // namespace edgeshard::apply

// Small RAII wrappers over POSIX files for code shared by edgeshard.so and the tools: an owned file
// descriptor, a read-only mapping of a whole file, and the durable-write steps (write everything,
// fsync a directory). Failures come back as errno values; nothing here throws except
// std::bad_alloc.
#pragma once

#include "common/no_postgres.hpp"

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace edgeshard::posix {

// An owned file descriptor, closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  // Takes ownership of fd (-1 for none).
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  // Closes the descriptor.
  ~UniqueFd() { reset(); }
  // Takes other's descriptor.
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  // The descriptor, or -1.
  int get() const noexcept { return fd_; }
  // Whether it holds a descriptor.
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Gives the descriptor up without closing it.
  int release() noexcept;
  // Closes the descriptor (if any); returns close()'s errno, 0 when it succeeded.
  int reset() noexcept;

 private:
  int fd_ = -1;
};

// A whole file mapped read-only and private; an empty file maps to an empty span.
class MappedFile {
 public:
  MappedFile() = default;
  // Unmaps.
  ~MappedFile() { unmap(); }
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // Maps the file open as fd (read from its start to its current size); returns 0 or an errno.
  // `sequential` asks the kernel to read ahead (the file is about to be read once, in order).
  int map(int fd, bool sequential) noexcept;
  // Opens and maps path; returns 0 or an errno (ENOENT when it does not exist).
  int open(const std::string& path, bool sequential) noexcept;
  // The mapped bytes.
  std::span<const uint8_t> bytes() const noexcept { return {data_, size_}; }
  // Releases the mapping.
  void unmap() noexcept;

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;  // data_ came from mmap (an empty file is not mapped)
};

// Writes all of head then body at the file's offset; returns 0 or an errno (EIO for a zero write).
int write_all(int fd, std::span<const uint8_t> head, std::span<const uint8_t> body = {}) noexcept;

// fsyncs a directory, so that renames and unlinks in it are durable; returns 0 or an errno.
int fsync_directory(const std::string& dir) noexcept;

// strerror(err) as a string.
std::string errno_text(int err);

// Whether err says the file system has no room left (ENOSPC, or EDQUOT: the user's quota): a
// condition time can heal (space freed), so a daemon backs off and retries rather than exits.
bool is_out_of_space(int err) noexcept;

// Test seam (fault injection, never set outside tests): a process-wide budget of bytes that the
// project's file writers may still store before they fail with ENOSPC, as on a disk that fills
// up. kUnlimitedWrites (the default) turns it off.
inline constexpr uint64_t kUnlimitedWrites = UINT64_MAX;
// Sets the budget (kUnlimitedWrites: space is back).
void set_write_budget(uint64_t bytes) noexcept;
// Takes up to n bytes from the budget and returns how many of them a write may store; fewer than
// n means the disk is full after those: the writer stores them and fails with ENOSPC.
size_t take_write_budget(size_t n) noexcept;

// The directory part of path ("." when it has none), for fsyncing after a rename in it.
std::string parent_directory(const std::string& path);

}  // namespace edgeshard::posix

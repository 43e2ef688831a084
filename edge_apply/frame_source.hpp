// Where a frame group comes from when it is applied (TenantWriter::apply_group): the frames one at
// a time, in sequence order, rewound for each pass (headers, then messages), so that a group far
// bigger than memory never has to be held whole. MemoryFrameSource walks frames held in memory;
// FileFrameSource reads a frame log (each frame preceded by its length, u32 little-endian, as
// FrameLogWriter writes it: a group the shard stream spilled to disk) one frame at a time with
// pread into one reused buffer (not mmap: touched mapped pages would count in the daemon's RSS).
#pragma once

#include "common/no_postgres.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace edgeshard::apply {

// A frame group's frames, one at a time.
class FrameSource {
 public:
  virtual ~FrameSource() = default;

  // Goes back to the first frame.
  virtual void rewind() = 0;

  // The next frame in `out` (valid until the next call); false at the end or on a read failure
  // (then error() is not empty).
  virtual bool next(std::span<const uint8_t>& out) = 0;

  // Why the last next() failed ("" when it just reached the end).
  virtual const std::string& error() const noexcept = 0;
};

// Frames held in memory.
class MemoryFrameSource final : public FrameSource {
 public:
  // A source over frames (which must outlive it).
  explicit MemoryFrameSource(std::span<const std::span<const uint8_t>> frames) : frames_(frames) {}

  void rewind() override { at_ = 0; }
  bool next(std::span<const uint8_t>& out) override;
  const std::string& error() const noexcept override { return error_; }

 private:
  std::span<const std::span<const uint8_t>> frames_;
  size_t at_ = 0;
  std::string error_;
};

// Frames of a frame log file, read with pread from an open descriptor (not owned).
class FileFrameSource final : public FrameSource {
 public:
  // A source over the first `bytes` bytes of the frame log open as fd.
  FileFrameSource(int fd, uint64_t bytes, std::string path) : fd_(fd), bytes_(bytes), path_(std::move(path)) {}

  void rewind() override {
    offset_ = 0;
    error_.clear();
  }
  bool next(std::span<const uint8_t>& out) override;
  const std::string& error() const noexcept override { return error_; }

 private:
  // Reads exactly n bytes at offset into dst; false (error_ set) otherwise.
  bool read_at(uint64_t offset, uint8_t* dst, size_t n);

  int fd_;
  uint64_t bytes_;
  std::string path_;
  uint64_t offset_ = 0;
  std::vector<uint8_t> buffer_;  // the current frame, reused
  std::string error_;
};

// Appends frames to a frame log file (the format FileFrameSource reads); owns nothing.
// Returns "" or the OS's reason; `bytes` grows by what was written.
std::string append_frame(int fd, std::span<const uint8_t> frame, uint64_t& bytes);

}  // namespace edgeshard::apply

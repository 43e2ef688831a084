// Frame sources: frames in memory, or read one at a time from a frame log file.
#include "edge_apply/frame_source.hpp"

#include <errno.h>
#include <string.h>
#include <unistd.h>

namespace edgeshard::apply {

namespace {

// The largest frame a log may hold (frames are far smaller; this only bounds a damaged length).
constexpr uint32_t kMaxFrame = uint32_t{1} << 30;

}  // namespace

bool MemoryFrameSource::next(std::span<const uint8_t>& out) {
  if (at_ >= frames_.size()) return false;
  out = frames_[at_++];
  return true;
}

bool FileFrameSource::read_at(uint64_t offset, uint8_t* dst, size_t n) {
  while (n > 0) {
    const ssize_t got = ::pread(fd_, dst, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      error_ = "could not read " + path_ + ": " + ::strerror(errno);
      return false;
    }
    if (got == 0) {
      error_ = path_ + ": frame log ends early at offset " + std::to_string(offset);
      return false;
    }
    dst += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<size_t>(got);
  }
  return true;
}

bool FileFrameSource::next(std::span<const uint8_t>& out) {
  if (offset_ >= bytes_) return false;
  uint8_t len[4];
  if (!read_at(offset_, len, 4)) return false;
  const uint32_t n = uint32_t{len[0]} | uint32_t{len[1]} << 8 | uint32_t{len[2]} << 16 | uint32_t{len[3]} << 24;
  if (n > kMaxFrame || offset_ + 4 + n > bytes_) {
    error_ = path_ + ": bad frame length " + std::to_string(n) + " at offset " + std::to_string(offset_);
    return false;
  }
  buffer_.resize(n);
  if (!read_at(offset_ + 4, buffer_.data(), n)) return false;
  offset_ += 4 + uint64_t{n};
  out = std::span<const uint8_t>(buffer_.data(), n);
  return true;
}

std::string append_frame(int fd, std::span<const uint8_t> frame, uint64_t& bytes) {
  if (frame.size() > kMaxFrame) return "frame too large for a frame log";
  const auto n = static_cast<uint32_t>(frame.size());
  const uint8_t len[4] = {static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n >> 16),
                          static_cast<uint8_t>(n >> 24)};
  auto write_all = [&](const uint8_t* p, size_t left) -> std::string {
    while (left > 0) {
      const ssize_t w = ::write(fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return ::strerror(errno);
      p += w;
      left -= static_cast<size_t>(w);
    }
    return {};
  };
  if (std::string why = write_all(len, 4); !why.empty()) return why;
  if (std::string why = write_all(frame.data(), frame.size()); !why.empty()) return why;
  bytes += 4 + uint64_t{n};
  return {};
}

}  // namespace edgeshard::apply

// A frame group too big to hold in memory while it arrives (shard_stream.cpp): its frames are
// appended to a file under data_dir/spill (a frame log, edge_apply/frame_source.hpp) and the
// applier reads them back one at a time. One file per group in progress, removed when the object
// goes (the group applied, or dropped with its connection); start-up empties the directory.
#pragma once

#include "common/no_postgres.hpp"

#include "edge_apply/frame_source.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

namespace edgeshard::apply::daemon {

// One spilled group's file.
class GroupSpill {
 public:
  ~GroupSpill();
  GroupSpill(const GroupSpill&) = delete;
  GroupSpill& operator=(const GroupSpill&) = delete;

  // Creates a new spill file in dir (created if missing); nullptr with why set on failure.
  static std::unique_ptr<GroupSpill> create(const std::filesystem::path& dir, std::string& why);

  // Appends a frame; "" or the OS's reason.
  std::string append(std::span<const uint8_t> frame);

  // A source reading the frames appended so far (valid while this object lives).
  FileFrameSource source() const { return FileFrameSource(fd_, bytes_, path_.string()); }

  // Bytes in the file.
  uint64_t bytes() const noexcept { return bytes_; }

  // Frames appended.
  size_t frames() const noexcept { return frames_; }

  // Removes every file in dir (left by an earlier run: groups never applied); "" or why not.
  static std::string clear_dir(const std::filesystem::path& dir);

 private:
  GroupSpill() = default;
  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;
  size_t frames_ = 0;
};

}  // namespace edgeshard::apply::daemon

// The shard's RELATION frames on disk.
#include "edge_apply/daemon/relation_store.hpp"

#include "common/frame_reader.hpp"
#include "edge_apply/dir_name.hpp"
#include "common/posix_file.hpp"
#include "edge_apply/manifest.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <variant>

namespace edgeshard::apply::daemon {

namespace fs = std::filesystem;

namespace {

// Writes all of bytes to fd; false on an error.
bool write_all(int fd, const uint8_t* p, size_t n) {
  if (const size_t room = posix::take_write_budget(n); room < n) {
    if (room > 0 && ::write(fd, p, room) < 0) return false;
    errno = ENOSPC;  // a test's full disk (common/posix_file.hpp)
    return false;
  }
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

bool RelationStore::open(const fs::path& data_dir, std::string_view shard, RelationMap& relations,
                         std::string& why) {
  dir_ = data_dir / "shards";
  path_ = shard_file_path(data_dir, shard, ".relations");
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) {
    why = "cannot create " + dir_.string() + ": " + ec.message();
    return false;
  }
  std::ifstream in(path_, std::ios::binary);
  if (!in) return true;  // none yet
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::span<const uint8_t> rest(bytes);
  frame::Reader reader;
  while (!rest.empty()) {
    if (frame::Status st = reader.open(rest); !st.ok()) {
      why = path_.string() + ": " + frame::error_name(st.error) + ": " + st.message;
      return false;
    }
    const size_t len = reader.header().frame_length;
    frame::MessageCursor cursor = reader.messages();
    frame::Message m;
    while (cursor.next(m)) {
      if (auto* r = std::get_if<frame::Relation>(&m)) {
        relations.update(*r, {reader.header().commit_lsn, reader.header().first_lsn});
      }
    }
    if (!cursor.status().ok()) {
      why = path_.string() + ": " + cursor.status().message;
      return false;
    }
    frames_.emplace_back(rest.begin(), rest.begin() + static_cast<ptrdiff_t>(len));
    last_key_ = reader.header().commit_lsn;
    last_seq_ = reader.header().sequence;
    any_ = true;
    rest = rest.subspan(len);
  }
  return true;
}

bool RelationStore::add(uint64_t key, uint32_t seq, std::span<const uint8_t> frame, std::string& why) {
  if (any_ && (key < last_key_ || (key == last_key_ && seq <= last_seq_))) return true;
  if (!append(frame, why)) return false;
  last_key_ = key;
  last_seq_ = seq;
  any_ = true;
  return true;
}

bool RelationStore::add_copied(std::span<const uint8_t> frame, std::string& why) {
  return append(frame, why);
}

bool RelationStore::append(std::span<const uint8_t> frame, std::string& why) {
  frames_.emplace_back(frame.begin(), frame.end());
  const fs::path tmp = path_.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    last_errno_ = errno;
    why = "cannot create " + tmp.string() + ": " + std::strerror(last_errno_);
    frames_.pop_back();
    return false;
  }
  bool ok = true;
  for (const auto& f : frames_) ok = ok && write_all(fd, f.data(), f.size());
  ok = ok && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (ok && std::rename(tmp.c_str(), path_.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    last_errno_ = err;
    why = "cannot write " + path_.string() + ": " + std::strerror(err);
    frames_.pop_back();
    ::unlink(tmp.c_str());  // give the space back; the frame is written again on retry
    return false;
  }
  if (!fsync_directory(dir_, why)) {
    last_errno_ = errno;
    return false;
  }
  return true;
}

}  // namespace edgeshard::apply::daemon

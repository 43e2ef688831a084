// GroupSpill: a frame group's frames in a file while it arrives.
#include "edge_apply/daemon/group_spill.hpp"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

namespace edgeshard::apply::daemon {

namespace fs = std::filesystem;

GroupSpill::~GroupSpill() {
  if (fd_ >= 0) ::close(fd_);
  std::error_code ec;
  if (!path_.empty()) fs::remove(path_, ec);
}

std::unique_ptr<GroupSpill> GroupSpill::create(const fs::path& dir, std::string& why) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    why = "could not create " + dir.string() + ": " + ec.message();
    return nullptr;
  }
  std::string tmpl = (dir / "group-XXXXXX").string();
  const int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0) {
    why = "could not create a spill file in " + dir.string() + ": " + ::strerror(errno);
    return nullptr;
  }
  std::unique_ptr<GroupSpill> g(new GroupSpill());
  g->fd_ = fd;
  g->path_ = tmpl;
  return g;
}

std::string GroupSpill::append(std::span<const uint8_t> frame) {
  if (std::string why = append_frame(fd_, frame, bytes_); !why.empty()) {
    return "could not write " + path_.string() + ": " + why;
  }
  ++frames_;
  return {};
}

std::string GroupSpill::clear_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return {};
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code rec;
    fs::remove_all(it->path(), rec);
    if (rec) return "could not remove " + it->path().string() + ": " + rec.message();
  }
  return ec ? "could not read " + dir.string() + ": " + ec.message() : std::string();
}

}  // namespace edgeshard::apply::daemon

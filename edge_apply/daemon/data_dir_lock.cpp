// The data directory's lock file.
#include "edge_apply/daemon/data_dir_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace edgeshard::apply::daemon {

DataDirLock::~DataDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

bool DataDirLock::acquire(const std::filesystem::path& data_dir, std::string& why) {
  const std::filesystem::path path = data_dir / "lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    why = "cannot open " + path.string() + ": " + std::strerror(errno);
    return false;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    char holder[32] = {};
    const ssize_t n = ::pread(fd, holder, sizeof holder - 1, 0);
    ::close(fd);
    why = e == EWOULDBLOCK ? "data_dir " + data_dir.string() + " is in use by another edgeshard-apply" +
                                 (n > 0 ? std::string(" (pid ") + std::string(holder, static_cast<size_t>(n)) + ")" : "") +
                                 ": stop it, or give this one its own data_dir"
                           : "cannot lock " + path.string() + ": " + std::strerror(e);
    while (!why.empty() && (why.back() == '\n')) why.pop_back();
    return false;
  }
  // The holder's pid, for the message above (informative only: the lock is the flock).
  const std::string pid = std::to_string(::getpid());
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    // Not fatal: the lock is held either way.
  }
  fd_ = fd;
  return true;
}

}  // namespace edgeshard::apply::daemon

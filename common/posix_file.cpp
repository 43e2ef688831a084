// POSIX file helpers: see posix_file.hpp.
#include "common/posix_file.hpp"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

namespace edgeshard::posix {

namespace {

// Bytes writes may still store (set_write_budget); kUnlimitedWrites outside fault-injection tests.
std::atomic<uint64_t> write_budget{kUnlimitedWrites};

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

int UniqueFd::release() noexcept {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

int UniqueFd::reset() noexcept {
  if (fd_ < 0) return 0;
  const int rc = ::close(fd_);
  fd_ = -1;
  return rc == 0 ? 0 : errno;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, false)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    unmap();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, false);
  }
  return *this;
}

int MappedFile::map(int fd, bool sequential) noexcept {
  unmap();
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno;
  if (!S_ISREG(st.st_mode)) return EINVAL;
  if (st.st_size == 0) return 0;
  const size_t size = static_cast<size_t>(st.st_size);
  // MAP_POPULATE reads the whole file in one go instead of faulting page by page.
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | (sequential ? MAP_POPULATE : 0), fd, 0);
  if (p == MAP_FAILED) return errno;
  if (sequential) (void)::madvise(p, size, MADV_SEQUENTIAL);
  data_ = static_cast<const uint8_t*>(p);
  size_ = size;
  mapped_ = true;
  return 0;
}

int MappedFile::open(const std::string& path, bool sequential) noexcept {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno;
  return map(fd.get(), sequential);  // the mapping outlives the descriptor
}

void MappedFile::unmap() noexcept {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
  mapped_ = false;
}

int write_all(int fd, std::span<const uint8_t> head, std::span<const uint8_t> body) noexcept {
  struct iovec iov[2] = {{const_cast<uint8_t*>(head.data()), head.size()},
                         {const_cast<uint8_t*>(body.data()), body.size()}};
  int first = 0;
  while (first < 2) {
    if (iov[first].iov_len == 0) {
      ++first;
      continue;
    }
    const size_t want = iov[first].iov_len + (first == 0 ? iov[1].iov_len : 0);
    if (const size_t room = take_write_budget(want); room < want) {
      // A test's full disk: store what fits, then fail as the kernel would.
      size_t fits = room;
      for (int i = first; i < 2 && fits > 0; ++i) {
        const size_t part = std::min(fits, iov[i].iov_len);
        if (part > 0 && ::write(fd, iov[i].iov_base, part) != static_cast<ssize_t>(part)) return EIO;
        fits -= part;
      }
      return ENOSPC;
    }
    const ssize_t n = ::writev(fd, iov + first, 2 - first);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    size_t left = static_cast<size_t>(n);
    while (first < 2 && left >= iov[first].iov_len) {
      left -= iov[first].iov_len;
      iov[first].iov_len = 0;
      ++first;
    }
    if (first < 2) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return 0;
}

int fsync_directory(const std::string& dir) noexcept {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno;
  if (::fsync(fd.get()) != 0) return errno;
  return fd.reset();
}

std::string errno_text(int err) { return std::strerror(err); }

bool is_out_of_space(int err) noexcept { return err == ENOSPC || err == EDQUOT; }

void set_write_budget(uint64_t bytes) noexcept { write_budget.store(bytes); }

size_t take_write_budget(size_t n) noexcept {
  uint64_t left = write_budget.load(std::memory_order_relaxed);
  for (;;) {
    if (left == kUnlimitedWrites) return n;
    const uint64_t take = std::min<uint64_t>(left, n);
    if (write_budget.compare_exchange_weak(left, left - take)) return static_cast<size_t>(take);
  }
}

std::string parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace edgeshard::posix

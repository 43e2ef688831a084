// The WAL archive repository: see archive_repo.hpp.
#include "common/archive_repo.hpp"

#include "common/posix_file.hpp"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <span>
#include <utility>

namespace edgeshard::archive {
namespace {

using posix::errno_text;
using posix::UniqueFd;

// A RepoError for a failed system call on path.
RepoError io_error(const char* doing, const std::string& path, int err) {
  return {Failure::kIo,
          err,
          std::string("could not ") + doing + " \"" + path + "\": " + errno_text(err),
          {}};
}

// fsyncs and closes a finished temporary file; false with error set when either fails.
bool sync_and_close(UniqueFd& fd, const std::string& path, RepoError& error) {
  if (::fsync(fd.get()) != 0) {
    error = io_error("fsync", path, errno);
    return false;
  }
  if (int err = fd.reset(); err != 0) {
    error = io_error("close", path, err);
    return false;
  }
  return true;
}

// The error for a name the repository cannot store.
RepoError invalid_name(std::string_view name) {
  std::string message = "\"";
  message.append(name);
  message.append("\" is not a wal file name the repository can store");
  return {Failure::kInvalidName, 0, std::move(message), {}};
}

// Writes the archive file to a descriptor, asking the kernel to start writing each block back at
// once, so that the final fsync finds little left to do while the next blocks compress.
class FdSink : public ByteSink {
 public:
  // Writes to fd (not owned), from its current offset.
  explicit FdSink(int fd) noexcept : fd_(fd) {}
  // Writes head and body at the end of what was written.
  bool append(std::span<const uint8_t> head, std::span<const uint8_t> body) noexcept override {
    err_ = posix::write_all(fd_, head, body);
    if (err_ != 0) return false;
    const uint64_t len = head.size() + body.size();
#ifdef SYNC_FILE_RANGE_WRITE
    if (len >= 65536)
      (void)::sync_file_range(fd_, static_cast<off_t>(written_), static_cast<off_t>(len),
                              SYNC_FILE_RANGE_WRITE);
#endif
    written_ += len;
    return true;
  }
  // errno of the failed write, 0 when none failed.
  int error() const noexcept { return err_; }

 private:
  int fd_;
  int err_ = 0;
  uint64_t written_ = 0;
};


// Compares decoded blocks with the bytes of the file being archived.
class CompareSink : public BlockSink {
 public:
  // Compares with expected, which must outlive the sink.
  explicit CompareSink(std::span<const uint8_t> expected) noexcept : expected_(expected) {}
  // Whether the block equals the same range of the expected bytes; remembers the first difference.
  bool consume(uint64_t raw_offset, std::span<const uint8_t> raw) noexcept override {
    if (raw_offset + raw.size() > expected_.size()) {
      difference_ = expected_.size();
      return false;
    }
    const uint8_t* e = expected_.data() + raw_offset;
    if (std::memcmp(e, raw.data(), raw.size()) == 0) return true;
    size_t i = 0;
    while (e[i] == raw[i]) ++i;
    difference_ = raw_offset + i;
    return false;
  }
  // Offset of the first differing byte (after consume() returned false).
  uint64_t difference() const noexcept { return difference_; }

 private:
  std::span<const uint8_t> expected_;
  uint64_t difference_ = 0;
};

// Unlinks a temporary file when the operation did not complete.
class TempFile {
 public:
  // Takes charge of path (the file may not exist yet).
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  // Unlinks the file unless released.
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  // Its path.
  const std::string& path() const noexcept { return path_; }
  // Keeps the file (it was renamed into place).
  void release() noexcept { path_.clear(); }

 private:
  std::string path_;
};

// A name unique to this process and call, so that concurrent or crashed writers never collide.
std::string unique_suffix() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  const uint64_t ns =
      static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
  return std::to_string(::getpid()) + "." + std::to_string(ns);
}

// Checks that repo exists and is a directory.
bool check_repo(const std::string& repo, RepoError& error) {
  struct stat st;
  if (::stat(repo.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      error = {
          Failure::kRepoMissing, ENOENT, "archive directory \"" + repo + "\" does not exist", {}};
    } else {
      error = io_error("access archive directory", repo, errno);
    }
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    error = {Failure::kRepoMissing,
             ENOTDIR,
             "archive directory \"" + repo + "\" is not a directory",
             {}};
    return false;
  }
  return true;
}

// Creates repo/wal when it is missing (and makes its creation durable).
bool ensure_wal_directory(const std::string& repo, const std::string& wal, RepoError& error) {
  if (::mkdir(wal.c_str(), 0750) == 0) {
    if (int err = posix::fsync_directory(repo); err != 0) {
      error = io_error("fsync directory", repo, err);
      return false;
    }
    return true;
  }
  if (errno == EEXIST) return true;
  error = io_error("create directory", wal, errno);
  return false;
}

// Compares the existing archive file at path with `source`: ok when it holds exactly those bytes
// (then fsynced, in case the crash that made us archive it twice came before its fsync).
bool compare_existing(const std::string& path, std::string_view name,
                      std::span<const uint8_t> source, const std::string& wal, PushResult& result) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    result.error = io_error("open", path, errno);
    return false;
  }
  posix::MappedFile existing;
  if (int err = existing.map(fd.get(), true); err != 0) {
    result.error = io_error("map", path, err);
    return false;
  }
  Reader reader;
  Status st = reader.open_named(existing.bytes(), name);
  if (!st.ok()) {
    result.error = {Failure::kCorrupt, 0, "existing " + describe(st, path), {}};
    return false;
  }
  if (reader.trailer().original_length != source.size()) {
    result.error = {Failure::kConflict, 0,
                    "archive file \"" + path + "\" already exists with different content",
                    "It holds " + std::to_string(reader.trailer().original_length) +
                        " bytes, the file to archive has " + std::to_string(source.size()) + "."};
    return false;
  }
  CompareSink compare(source);
  st = reader.decode(compare);
  if (st.code == Code::kSinkFailed) {
    result.error = {
        Failure::kConflict, 0,
        "archive file \"" + path + "\" already exists with different content",
        "The first difference is at byte " + std::to_string(compare.difference()) + "."};
    return false;
  }
  if (!st.ok()) {
    result.error = {st.code == Code::kOutOfMemory ? Failure::kOutOfMemory : Failure::kCorrupt,
                    0,
                    "existing " + describe(st, path),
                    {}};
    return false;
  }
  if (::fsync(fd.get()) != 0) {
    result.error = io_error("fsync", path, errno);
    return false;
  }
  if (int err = posix::fsync_directory(wal); err != 0) {
    result.error = io_error("fsync directory", wal, err);
    return false;
  }
  result.ok = true;
  result.already_archived = true;
  result.bytes_out = existing.bytes().size();
  return true;
}

// Renames tmp to path unless path exists (EEXIST then); falls back to a plain rename on file
// systems without RENAME_NOREPLACE. Returns 0 or an errno.
int rename_no_replace(const std::string& tmp, const std::string& path) {
#ifdef RENAME_NOREPLACE
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return errno;
#endif
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return EEXIST;
  return ::rename(tmp.c_str(), path.c_str()) == 0 ? 0 : errno;
}

}  // namespace

std::string wal_directory(const std::string& repo) { return repo + "/" + kWalSubdir; }

std::string repo_file_path(const std::string& repo, std::string_view name) {
  return wal_directory(repo) + "/" + std::string(name) + kFileSuffix;
}

PushResult push_file(const std::string& repo, std::string_view name, const std::string& source_path,
                     Writer& writer) {
  PushResult result;
  if (!valid_name(name)) {
    result.error = invalid_name(name);
    return result;
  }
  if (!check_repo(repo, result.error)) return result;
  const std::string wal = wal_directory(repo);
  if (!ensure_wal_directory(repo, wal, result.error)) return result;

  posix::MappedFile source;
  if (int err = source.open(source_path, true); err != 0) {
    result.error = io_error("read", source_path, err);
    return result;
  }
  result.bytes_in = source.bytes().size();

  const std::string path = repo_file_path(repo, name);
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    compare_existing(path, name, source.bytes(), wal, result);
    return result;
  }
  if (errno != ENOENT) {
    result.error = io_error("access", path, errno);
    return result;
  }

  TempFile tmp(wal + "/" + kTempPrefix + std::string(name) + "." + unique_suffix());
  UniqueFd fd(::open(tmp.path().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640));
  if (!fd) {
    const int err = errno;
    tmp.release();  // not ours: nothing was created
    result.error = io_error("create", tmp.path(), err);
    return result;
  }
  FdSink sink(fd.get());
  const Status st_encode = writer.encode(name, source.bytes(), sink);
  if (!st_encode.ok()) {
    if (st_encode.code == Code::kSinkFailed) {
      result.error = io_error("write", tmp.path(), sink.error());
    } else {
      result.error = {
          st_encode.code == Code::kOutOfMemory ? Failure::kOutOfMemory : Failure::kInvalidArgument,
          0,
          std::string("could not encode \"") + std::string(name) + "\": " + st_encode.what,
          {}};
    }
    return result;
  }
  if (!sync_and_close(fd, tmp.path(), result.error)) return result;
  if (int err = rename_no_replace(tmp.path(), path); err != 0) {
    if (err == EEXIST) {  // another archiver got there since the stat above
      compare_existing(path, name, source.bytes(), wal, result);
      return result;
    }
    result.error = io_error("rename", tmp.path(), err);
    return result;
  }
  tmp.release();
  if (int err = posix::fsync_directory(wal); err != 0) {
    result.error = io_error("fsync directory", wal, err);
    return result;
  }
  result.ok = true;
  result.bytes_out = writer.encoded_size();
  return result;
}

FetchResult fetch_file(const std::string& repo, std::string_view name,
                       const std::string& dest_path) {
  FetchResult result;
  if (!valid_name(name)) {
    result.error = invalid_name(name);
    return result;
  }
  if (!check_repo(repo, result.error)) return result;
  const std::string wal = wal_directory(repo);
  struct stat st;
  if (::stat(wal.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    result.error = {
        Failure::kRepoMissing,
        ENOENT,
        "\"" + repo + "\" is not an edgeshard archive repository (it has no wal/ directory)",
        {}};
    return result;
  }
  const std::string path = repo_file_path(repo, name);
  posix::MappedFile archived;
  if (int err = archived.open(path, true); err != 0) {
    if (err == ENOENT) {
      result.outcome = FetchOutcome::kMissing;
      return result;
    }
    result.error = io_error("read", path, err);
    return result;
  }
  Reader reader;
  Status st_read = reader.open_named(archived.bytes(), name);
  if (!st_read.ok()) {
    result.error = {Failure::kCorrupt, 0, describe(st_read, path), {}};
    return result;
  }

  TempFile tmp(dest_path + ".edgeshard-tmp." + std::to_string(::getpid()));
  UniqueFd fd(::open(tmp.path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) {
    const int err = errno;
    tmp.release();
    result.error = io_error("create", tmp.path(), err);
    return result;
  }
  FdBlockSink sink(fd.get());
  st_read = reader.decode(sink);
  if (!st_read.ok()) {
    if (st_read.code == Code::kSinkFailed) {
      result.error = io_error("write", tmp.path(), sink.error());
    } else if (st_read.code == Code::kOutOfMemory) {
      result.error = {Failure::kOutOfMemory, 0, "out of memory decoding \"" + path + "\"", {}};
    } else {
      result.error = {Failure::kCorrupt, 0, describe(st_read, path), {}};
    }
    return result;
  }
  if (!sync_and_close(fd, tmp.path(), result.error)) return result;
  if (::rename(tmp.path().c_str(), dest_path.c_str()) != 0) {
    result.error = io_error("rename", tmp.path(), errno);
    return result;
  }
  tmp.release();
  const std::string dest_dir = posix::parent_directory(dest_path);
  if (int err = posix::fsync_directory(dest_dir); err != 0) {
    result.error = io_error("fsync directory", dest_dir, err);
    return result;
  }
  result.outcome = FetchOutcome::kRestored;
  result.bytes = reader.trailer().original_length;
  return result;
}

int remove_stale_temps(const std::string& repo, int64_t min_age_seconds, std::string& why) {
  const std::string wal = wal_directory(repo);
  DIR* dir = ::opendir(wal.c_str());
  if (dir == nullptr) {
    if (errno == ENOENT) return 0;
    why = "could not open directory \"" + wal + "\": " + errno_text(errno);
    return -1;
  }
  struct Closer {
    DIR* d;
    // Closes the directory.
    ~Closer() { ::closedir(d); }
  } closer{dir};
  const time_t now = ::time(nullptr);
  const size_t prefix_len = std::strlen(kTempPrefix);
  int removed = 0;
  while (struct dirent* e = ::readdir(dir)) {
    if (std::strncmp(e->d_name, kTempPrefix, prefix_len) != 0) continue;
    struct stat st;
    if (::fstatat(::dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
      continue;
    if (now - st.st_mtime < min_age_seconds) continue;
    if (::unlinkat(::dirfd(dir), e->d_name, 0) == 0) ++removed;
  }
  return removed;
}

FdBlockSink::FdBlockSink(int fd) noexcept : fd_(fd) {}

bool FdBlockSink::consume(uint64_t, std::span<const uint8_t> raw) noexcept {
  err_ = posix::write_all(fd_, raw);
  return err_ == 0;
}

}  // namespace edgeshard::archive

// The WAL archive repository: a directory (local or mounted storage) holding one archive file
// (common/ARCHIVE_FORMAT.md) per archived WAL file, as `wal/<name>.eswa`. push_file() is the
// archive module's work, fetch_file() the restore command's; both are plain POSIX code shared by
// edgeshard.so and edgeshard-wal (layout and durability rules: ARCHIVE_FORMAT.md, "Repository").
//
//   archive::Writer writer({.level = 0});
//   PushResult r = push_file("/backups/s1", "000000010000000000000001", "pg_wal/0000...01",
//   writer); if (!r.ok) log(r.error.message);            // r.error.failure says which kind of
//   failure
//
//   FetchResult f = fetch_file("/backups/s1", "000000010000000000000001", "pg_wal/RECOVERYXLOG");
//   f.outcome: kRestored, kMissing (not archived), kFailed (f.error)
//
// Nothing here throws except std::bad_alloc.
#pragma once

#include "common/no_postgres.hpp"

#include "common/archive_file.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace edgeshard::archive {

inline constexpr char kWalSubdir[] = "wal";
inline constexpr char kFileSuffix[] = ".eswa";
inline constexpr char kTempPrefix[] = ".tmp.";

// Kinds of failure, for the caller to pick a SQLSTATE or an exit status.
enum class Failure : uint8_t {
  kNone = 0,
  kInvalidName,  // the WAL file name is not one the repository can store
  kRepoMissing,  // the repository directory (or its wal/ directory, when reading) is absent
  kIo,           // a system call failed (sys_errno)
  kConflict,     // the repository already holds this name with different content
  kCorrupt,      // a repository file fails its checks (SQLSTATE XX001)
  kOutOfMemory,
  kInvalidArgument,  // a bad writer setting (block size, level)
};

// What went wrong; message is lower-case, names the file, no trailing period.
struct RepoError {
  Failure failure = Failure::kNone;
  int sys_errno = 0;
  std::string message;
  std::string detail;  // may be empty
};

// Outcome of archiving one file.
struct PushResult {
  bool ok = false;
  bool already_archived = false;  // the repository held the same content already
  uint64_t bytes_in = 0;          // size of the WAL file
  uint64_t bytes_out = 0;         // size of the archive file
  RepoError error;                // when !ok
};

// Archives the file at source_path under `name` into repo: write a temporary file in repo/wal/,
// fsync it, rename it to wal/<name>.eswa (never over an existing file), fsync the directory. When
// wal/<name>.eswa exists already, it is decoded and compared with the source byte for byte: the
// same content succeeds (after fsyncing it), different content fails with kConflict, and a file
// that fails its checks with kCorrupt (never overwritten). wal/ is created when missing; repo
// itself must exist (a missing mount point is not papered over).
PushResult push_file(const std::string& repo, std::string_view name, const std::string& source_path,
                     Writer& writer);

// Whether fetch_file() restored the file.
enum class FetchOutcome : uint8_t { kRestored, kMissing, kFailed };

// Outcome of restoring one file.
struct FetchResult {
  FetchOutcome outcome = FetchOutcome::kFailed;
  uint64_t bytes = 0;  // original bytes written
  RepoError error;     // when kFailed
};

// Restores wal/<name>.eswa of repo to dest_path: decodes and checks it block by block into a
// temporary file next to dest_path, then (everything verified) fsyncs it, renames it over
// dest_path and fsyncs that directory. A file absent from wal/ is kMissing (nothing written); a
// repo without a wal/ directory is kFailed (kRepoMissing): an unmounted or wrong repository must
// not look like the end of the archive.
FetchResult fetch_file(const std::string& repo, std::string_view name,
                       const std::string& dest_path);

// Writes decoded blocks to a file descriptor (a temporary file, a pipe), in order.
class FdBlockSink : public BlockSink {
 public:
  // Writes to fd (not owned).
  explicit FdBlockSink(int fd) noexcept;
  // Appends the block; false (error() set) when the write failed.
  bool consume(uint64_t raw_offset, std::span<const uint8_t> raw) noexcept override;
  // errno of the failed write, 0 when none failed.
  int error() const noexcept { return err_; }

 private:
  int fd_;
  int err_ = 0;
};

// repo/wal.
std::string wal_directory(const std::string& repo);
// repo/wal/<name>.eswa.
std::string repo_file_path(const std::string& repo, std::string_view name);

// Removes the temporary files (".tmp.*") in repo/wal/ whose last change is at least min_age_seconds
// old: what archivers that crashed mid-write left. Returns how many it removed, -1 with why when
// the directory cannot be read. Removing a live writer's temporary file costs it a retry, never
// data: its rename then fails.
int remove_stale_temps(const std::string& repo, int64_t min_age_seconds, std::string& why);

}  // namespace edgeshard::archive

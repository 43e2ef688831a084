// The archive module's counters (edgeshard.archive_status): kept by the archiver process in a small
// text file of the data directory, `edgeshard_archive.status`, which it replaces atomically after
// every archived or failed file, and which SQL reads (extension/archive_status_sql.cpp). A file,
// not shared memory, because the archiver is a separate process and edgeshard.so need not be in
// shared_preload_libraries. Format: common/ARCHIVE_FORMAT.md, "Status file".
#pragma once

#include "common/no_postgres.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace edgeshard::archive {

// The status file's name, in the data directory.
inline constexpr char kStatusFileName[] = "edgeshard_archive.status";
// Longest failure reason kept (bytes).
inline constexpr size_t kMaxReasonBytes = 1000;

// Counters since stats_since. Times are Unix microseconds, 0 when never.
struct ArchiveStats {
  int64_t stats_since_us = 0;
  uint64_t archived_count = 0;
  std::string last_archived_wal;
  int64_t last_archived_time_us = 0;
  uint64_t failed_count = 0;
  std::string last_failed_wal;
  int64_t last_failed_time_us = 0;
  std::string last_failure_reason;
  uint64_t bytes_in = 0;   // original bytes of the files archived
  uint64_t bytes_out = 0;  // bytes of their archive files

  // Whether two are equal.
  bool operator==(const ArchiveStats&) const = default;
};

// Counts an archived file.
void note_archived(ArchiveStats& stats, std::string_view wal, uint64_t bytes_in, uint64_t bytes_out,
                   int64_t now_us);
// Counts a failed attempt; the reason is kept on one line, at most kMaxReasonBytes.
void note_failed(ArchiveStats& stats, std::string_view wal, std::string_view reason,
                 int64_t now_us);

// The file's text.
std::string encode_stats(const ArchiveStats& stats);
// Parses the file's text; false with why when it is not exactly what encode_stats() writes.
bool decode_stats(std::string_view text, ArchiveStats& out, std::string& why);

// Replaces path atomically (path.tmp, rename). Not fsynced: the counters are statistics, and a
// torn file after a machine crash is detected by its checksum. Returns 0 or an errno.
int write_stats_file(const std::string& path, const ArchiveStats& stats);

// What read_stats_file() found.
enum class StatsRead : uint8_t { kOk, kMissing, kCorrupt, kIo };
// Reads and checks path; why says what is wrong for kCorrupt and kIo.
StatsRead read_stats_file(const std::string& path, ArchiveStats& out, std::string& why);

// The time now, Unix microseconds.
int64_t now_unix_us() noexcept;

}  // namespace edgeshard::archive

// The relay's segmented frame log (byte layout and crash recovery: walsender_fanout/relay/
// LOG_FORMAT.md). edgeshard-relay appends every frame received from the primary, with the WAL
// position of its XLogData message, syncs in groups, confirms upstream only durable(), and serves
// every subscriber from its own Cursor.
//
// Thread safety: one writer thread calls append(), sync(), drop_segments_before() and
// enforce_max_bytes(). Any number of Cursors, each used by one thread at a time, may run
// concurrently with the writer on other threads: they only ever return records at or below
// durable(), which is published atomically after the fdatasync that made it true. durable(),
// written() and oldest_lsn() may be called from any thread. A Cursor keeps the log's shared state
// alive, so it may outlive the FrameLog object.
//
//   auto log = relay::FrameLog::open("/var/lib/edgeshard/relay", {});   // throws on start-up
//   errors if (auto st = log.append(lsn, frame); !st.ok()) fail(st); if (auto st = log.sync();
//   !st.ok()) fail(st);                        // then confirm durable().lsn
//   relay::FrameLog::Cursor cursor;
//   if (auto st = log.open_cursor(start_lsn, cursor); !st.ok()) resync(st);  // kBehindRetention
//   relay::FrameLog::Record rec;
//   while (cursor.next(rec).ok()) send(rec.lsn, rec.frame);              // kEnd: wait for more
#pragma once

#include "common/no_postgres.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace edgeshard::relay {

// Outcome classes of the log's calls.
enum class LogError {
  kOk = 0,
  kEnd,              // cursor: no further durable record yet (not an error; retry after sync())
  kBehindRetention,  // cursor: the start LSN or the cursor's position was dropped: resync required
  kLsnDecreasing,    // append: LSN below the last appended LSN
  kBadRecord,        // append: empty frame or frame longer than kMaxRecordBytes
  kCorrupt,          // a record or segment failed its checks (message names file and offset)
  kIo,               // a system call failed (message names the call, file and errno text)
  kFailed,           // an earlier write or sync failed: the log refuses writes until reopened
};

// Outcome of a log call; message is empty on kOk, lower-case, no trailing period.
struct LogStatus {
  LogError error = LogError::kOk;
  std::string message;

  // Whether the call succeeded.
  bool ok() const noexcept { return error == LogError::kOk; }
};

// Short stable name of an error ("behind_retention"), for logs and metrics.
const char* log_error_name(LogError e) noexcept;

// Start-up failure of FrameLog::open(): carries the status (kIo or kCorrupt).
class LogOpenError : public std::runtime_error {
 public:
  // Wraps the status that made open() fail.
  explicit LogOpenError(LogStatus status)
      : std::runtime_error(status.message), status_(std::move(status)) {}
  // Why open() failed.
  const LogStatus& status() const noexcept { return status_; }

 private:
  LogStatus status_;
};

// Longest frame one record may hold (a frame's raw payload is at most 64 MiB, plus its header).
inline constexpr uint32_t kMaxRecordBytes = 128u << 20;

namespace detail {
struct LogState;
struct Segment;
}  // namespace detail

// Append-only log of (lsn, frame) records in numbered segment files of one directory.
class FrameLog {
 public:
  // Configuration; open() throws std::invalid_argument on a bad value.
  struct Options {
    uint64_t segment_bytes = 64u << 20;  // a segment is sealed once it would grow past this
    uint32_t index_every = 64;           // records per sparse index entry (cursor seeks)
  };

  // A position in the log: the LSN of the last record and the number of records up to it,
  // counted from the oldest record found by open() (so it only grows while the log is open).
  struct Position {
    uint64_t lsn = 0;      // 0 when there is no record
    uint64_t records = 0;  // records up to and including this position
  };

  // One record read by a Cursor; frame's buffer is reused by the next call.
  struct Record {
    uint64_t lsn = 0;
    std::vector<uint8_t> frame;
  };

  // Reads records with lsn >= start in order, across segments, never past durable().
  class Cursor {
   public:
    Cursor();
    ~Cursor();
    Cursor(Cursor&&) noexcept;
    Cursor& operator=(Cursor&&) noexcept;

    // kOk fills out with the next record; kEnd when no further durable record exists yet (call
    // again later); kBehindRetention when the next record's segment was dropped; kCorrupt/kIo
    // when a record cannot be read (never returned as data).
    LogStatus next(Record& out);

   private:
    friend class FrameLog;
    std::shared_ptr<detail::LogState> state_;
    std::shared_ptr<detail::Segment> segment_;  // segment holding the next record
    uint64_t offset_ = 0;                       // file offset of the next record in segment_
    uint64_t ordinal_ = 0;                      // log-wide index of the next record
    uint64_t segment_end_ = 0;                  // ordinal past segment_'s last record, as last seen
    uint64_t start_lsn_ = 0;                    // records below are skipped
    std::vector<uint8_t> header_;
  };

  // Opens the log in dir (created if missing), recovering from a crash as LOG_FORMAT.md says: the
  // torn tail of the last segment is cut. Throws LogOpenError when a sealed segment is damaged,
  // a file cannot be read, or another process holds the directory; std::invalid_argument on bad
  // options.
  static FrameLog open(const std::filesystem::path& dir, Options options);
  // Same, with default options.
  static FrameLog open(const std::filesystem::path& dir) { return open(dir, Options{}); }

  FrameLog(FrameLog&&) noexcept;
  FrameLog& operator=(FrameLog&&) noexcept;
  ~FrameLog();

  // Appends one record (not yet durable). LSNs must not decrease; equal LSNs are allowed (several
  // frames of one XLogData message) and are never split across segments.
  LogStatus append(uint64_t lsn, std::span<const uint8_t> frame);

  // Makes every appended record durable (fdatasync of the active segment, and of the directory
  // when a segment file was created), then advances durable() to written().
  LogStatus sync();

  // Everything appended so far.
  Position written() const;
  // Everything made durable by sync() (or found by open()); what may be confirmed upstream.
  Position durable() const;
  // Smallest LSN a cursor may start at: the first retained record's LSN (0 for an empty log).
  uint64_t oldest_lsn() const;
  // Bytes of all retained segment files.
  uint64_t total_bytes() const;
  // Number of retained segment files.
  size_t segment_count() const;

  // Positions cursor before the first record with lsn >= start. kBehindRetention when start is
  // below oldest_lsn(): the log cannot show it holds everything from start on (records were
  // dropped, or never received), so the relay tells the subscriber to resync. A start beyond the
  // end is fine: the cursor waits for records with lsn >= start.
  LogStatus open_cursor(uint64_t start, Cursor& cursor) const;

  // Removes, oldest first, whole segments whose every record is below lsn, never the active (last)
  // one; dropped counts them.
  LogStatus drop_segments_before(uint64_t lsn, size_t* dropped = nullptr);
  // Removes, oldest first, whole segments (never the active one) while total_bytes() > max_bytes.
  LogStatus enforce_max_bytes(uint64_t max_bytes, size_t* dropped = nullptr);

 private:
  explicit FrameLog(std::shared_ptr<detail::LogState> state);
  // Drops the oldest segment if keep_going says so, until it does not or only one is left.
  template <typename Pred>
  LogStatus drop_front_while(Pred keep_going, size_t* dropped);

  std::shared_ptr<detail::LogState> state_;
};

}  // namespace edgeshard::relay

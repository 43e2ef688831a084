// The relay's segmented frame log (byte layout and crash recovery: walsender_fanout/relay/
// LOG_FORMAT.md). edgeshard-relay appends every frame received from the primary with its stream
// key -- the commit LSN of the frame's transaction, or the LSN of a KEEPALIVE frame the relay
// writes as a transaction-boundary marker -- syncs right after such a marker, confirms upstream
// only durable(), and serves every subscriber from its own Cursor. At start-up and after the
// upstream connection drops it cuts what follows the last marker with truncate_to().
//
// Thread safety: one writer thread calls append(), sync(), truncate_to(), drop_segments_before()
// and enforce_max_bytes(). Any number of Cursors, each used by one thread at a time, may run
// concurrently with the writer on other threads: they only ever return records at or below
// durable(), which is published atomically after the fdatasync that made it true. durable(),
// written(), oldest() and oldest_lsn() may be called from any thread. A Cursor keeps the log's
// shared state alive, so it may outlive the FrameLog object (it also keeps the directory locked:
// the log cannot be reopened until every Cursor is gone).
//
//   auto log = relay::FrameLog::open("/var/lib/edgeshard/relay", {});  // throws on start-up errors
//   if (auto st = log.append(key, frame); !st.ok()) fail(st);
//   if (auto st = log.append(keepalive_lsn, marker); !st.ok()) fail(st);  // after a whole run
//   if (auto st = log.sync(); !st.ok()) fail(st);  // then confirm durable().lsn upstream
//   relay::FrameLog::Cursor cursor;
//   if (auto st = log.open_cursor(start_key, cursor); !st.ok()) resync(st);  // kBehindRetention
//   relay::FrameLog::Record rec;
//   while (cursor.next(rec).ok()) send(rec.lsn, rec.frame);  // kEnd: wait for more
//   // The upstream connection dropped: forget what is not durable, then reconnect.
//   if (auto st = log.truncate_to(log.durable()); !st.ok()) fail(st);
//   // A write failed (disk full): cut back to what is durable, back off, and write again.
//   if (log.failed() && log.repair().ok()) reconnect_upstream_from(log.durable());
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
  kLsnDecreasing,    // append: key (lsn) below the last appended one
  kBadRecord,        // append: empty frame or frame longer than kMaxRecordBytes; truncate_to: a
                     // position the log does not hold (beyond written(), below oldest(), or
                     // whose lsn is not the lsn of its last record)
  kCorrupt,          // a record or segment failed its checks (message names file and offset)
  kIo,               // a system call failed (message names the call, file and errno text)
  kFailed,           // an earlier write or sync failed: the log refuses writes until repair()
                     // or a reopen
};

// Outcome of a log call; message is empty on kOk, lower-case, no trailing period.
struct LogStatus {
  LogError error = LogError::kOk;
  std::string message;
  int sys_errno = 0;  // kIo: the failed call's errno (ENOSPC: the disk is full)
  std::string path;   // kIo: the file or directory it failed on

  LogStatus() = default;
  // A status of class e saying why.
  LogStatus(LogError e, std::string why) : error(e), message(std::move(why)) {}

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

// Append-only log of (lsn, frame) records in numbered segment files of one directory. A record's
// `lsn` is its frame's stream key (see the top of this file and LOG_FORMAT.md); keys never
// decrease.
class FrameLog {
 public:
  // Configuration; open() throws std::invalid_argument on a bad value.
  struct Options {
    uint64_t segment_bytes = 64u << 20;  // a segment is sealed once it would grow past this
    uint32_t index_every = 64;           // records per sparse index entry (cursor seeks)
  };

  // A position in the log: the key (lsn) of the last record and the number of records up to it,
  // counted from the oldest record found by open(). The record appended when written().records
  // is n has ordinal n; a position with records = n lies right after the record with ordinal n-1.
  // The count only grows while the log is open, except when truncate_to() cuts records.
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

    // Ordinal (numbered as Position::records counts) of the next record the cursor reads: after
    // next() returned the record with ordinal n, position() is n + 1, so Position{rec.lsn,
    // cursor.position()} is the position right after that record (what truncate_to() takes).
    // Right after open_cursor() it may be below the first returned record's ordinal, as records
    // with keys below the start are still to be skipped, but it is never above durable().records
    // then; 0 for a cursor that is not open.
    uint64_t position() const noexcept { return ordinal_ < resume_at_ ? resume_at_ : ordinal_; }

   private:
    friend class FrameLog;
    // Seeks to the record with ordinal target after truncate_to() cut the log (under the lock).
    LogStatus relocate_after_cut(uint64_t target);

    std::shared_ptr<detail::LogState> state_;
    std::shared_ptr<detail::Segment> segment_;  // segment holding the next record
    uint64_t offset_ = 0;                       // file offset of the next record in segment_
    uint64_t ordinal_ = 0;                      // log-wide index of the next record read
    uint64_t resume_at_ = 0;                    // after a re-seek: records below are skipped
    uint64_t segment_end_ = 0;                  // ordinal past segment_'s last record, as last seen
    uint64_t start_lsn_ = 0;                    // records below are skipped
    uint64_t truncations_ = 0;                  // truncate_to() cuts seen: re-seek after a new one
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

  // Appends one record (not yet durable). Keys (lsn) must not decrease; equal keys are allowed
  // (several frames of one transaction) and are never split across segments.
  LogStatus append(uint64_t lsn, std::span<const uint8_t> frame);

  // Makes every appended record durable (fdatasync of the active segment, and of the directory
  // when a segment file was created), then advances durable() to written().
  LogStatus sync();

  // Everything appended so far.
  Position written() const;
  // Everything made durable by sync() (or found by open()); what may be confirmed upstream.
  Position durable() const;
  // Smallest key a cursor may start at: the first retained record's key (0 for an empty log).
  uint64_t oldest_lsn() const;
  // The position right before the oldest retained record ({0, its ordinal}), or written() when no
  // record is retained: the lowest position truncate_to() accepts (which then empties the log).
  Position oldest() const;
  // Bytes of all retained segment files.
  uint64_t total_bytes() const;
  // Number of retained segment files.
  size_t segment_count() const;
  // One retained segment file, for retention decisions.
  struct SegmentInfo {
    uint64_t base_lsn = 0;  // key of its first record
    uint64_t bytes = 0;     // file size
  };
  // The retained segments, oldest first (the last one is the active segment).
  std::vector<SegmentInfo> segments() const;

  // Positions cursor before the first record with lsn >= start, seeking no further than durable()
  // (the cursor skips forward as records become durable). kBehindRetention when start is
  // below oldest_lsn(): the log cannot show it holds everything from start on (records were
  // dropped, or never received), so the relay tells the subscriber to resync. A start beyond the
  // end is fine: the cursor waits for records with lsn >= start.
  LogStatus open_cursor(uint64_t start, Cursor& cursor) const;

  // Removes every record after keep: the log keeps the records with ordinals below keep.records
  // (oldest().records <= keep.records <= written().records, else kBadRecord; keep.lsn must be the
  // key of the record with ordinal keep.records - 1 when that record is retained, else
  // kBadRecord), then written() = keep and durable() = the lower of durable() and keep (keep when
  // no retained record is left: retention only drops sealed, hence durable, segments). The cut is
  // durable on return: the segment holding it is ftruncated at the record boundary and
  // fdatasynced, later segment files (and one left with no record) are removed, the directory is
  // fsynced. keep == written() changes nothing. The relay calls it at start-up to cut what follows
  // the last KEEPALIVE marker, and after the upstream connection drops with durable(). Callers
  // must ensure no cursor has read past keep (the relay cuts only records no cursor may see yet:
  // above durable()); cursors at or before keep go on reading what is appended afterwards.
  // kFailed/kIo as for append (a failed cut leaves the log refusing writes until reopened).
  LogStatus truncate_to(Position keep);

  // After a failed write or sync (kFailed from then on): cuts the log back to durable(), as a
  // reopen's crash recovery would -- records appended since the last sync, a record written in
  // part (the active segment is ftruncated right after its last record) and a segment whose
  // creation failed or that holds no record go -- and accepts writes again. A failed sync may have
  // dropped only pages beyond durable(): those are cut. kIo when the cut itself fails (the log
  // stays failed; call again later). Nothing to do on a log that did not fail.
  LogStatus repair();
  // Whether an earlier write or sync failed (repair() or a reopen needed).
  bool failed() const;

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

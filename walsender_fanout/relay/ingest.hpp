// The relay's write path, between an upstream (a primary's slot or a parent relay) and the frame
// log: checks each frame's header and payload checksum, orders frames by their stream key (the
// commit LSN), skips what a reconnected upstream sends again, and makes whole transactions
// visible in groups: at a transaction boundary, at most every sync interval, it appends a marker
// (a KEEPALIVE frame at the boundary's position), fsyncs the log, and publishes the new records to
// the subscribers. So the log's durable end is always a marker, that marker's key is what is
// confirmed upstream, and subscribers only ever see whole transactions. Network-free: the upstream
// adapters feed it, GoogleTests drive it directly. Used by the upstream thread only (other
// threads read stats(), whose position mirrors position()).
#pragma once

#include "common/no_postgres.hpp"

#include "common/frame_writer.hpp"
#include "walsender_fanout/relay/frame_log.hpp"
#include "walsender_fanout/relay/publication.hpp"
#include "walsender_fanout/relay/relay_state.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

namespace edgeshard::relay {

using Clock = std::chrono::steady_clock;

// Outcome of an Ingest call.
struct IngestResult {
  enum Kind {
    kOk,
    kBadInput,   // upstream sent something wrong: drop the connection, reconnect
    kLogFailed,   // the log cannot be written: stop the relay (restart runs recovery)
    kLogBlocked,  // the disk is full (ENOSPC, EDQUOT): drop the upstream, back off, retry;
                  // on_disconnect() cuts the log back to its durable end
  };
  Kind kind = kOk;
  std::string message;
  int sys_errno = 0;  // kLogBlocked: the failed call's errno
  std::string path;   // kLogBlocked: the file it failed on

  IngestResult() = default;
  // A result of kind k saying why.
  IngestResult(Kind k, std::string why) : kind(k), message(std::move(why)) {}

  // Whether the call succeeded.
  bool ok() const noexcept { return kind == kOk; }
};

// Counters read by the metrics endpoint (any thread).
struct IngestStats {
  std::atomic<uint64_t> frames_in{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> duplicates_skipped{0};
  std::atomic<uint64_t> syncs{0};
  std::atomic<uint64_t> received_key{0};  // key of the newest frame or position received
  std::atomic<uint64_t> position{0};      // durable, visible, confirmable position
  std::atomic<int64_t> commit_time_us{0};
  std::atomic<uint64_t> log_write_errors{0};  // log writes that failed for lack of space
  std::atomic<bool> log_blocked{false};       // from such a failure until a sync succeeds again
};

// See the file comment.
class Ingest {
 public:
  // Tuning.
  struct Options {
    std::chrono::milliseconds sync_interval{10};
    uint64_t window_bytes = 64u << 20;  // frames kept in memory for the next publication at most
  };

  // Writes to log, records the floor in registry, publishes to queue.
  Ingest(FrameLog& log, Registry& registry, PublicationQueue& queue, Options options);

  // Start-up: cuts whatever follows the last marker (a transaction that may be incomplete),
  // restores the position and publishes the visible end. Before any other call.
  IngestResult recover();

  // An upstream stream starts at `start` (the slot's confirmed position or the parent relay's
  // effective start). On an empty log this is the floor: recorded, and a first marker written.
  IngestResult begin_stream(uint64_t start, Clock::time_point now);

  // A frame from upstream.
  IngestResult on_frame(std::span<const uint8_t> frame, Clock::time_point now);

  // Upstream says every transaction below `position` has been sent (a primary keepalive's WAL end,
  // a parent relay's KEEPALIVE); upstream_time_us is its clock (0: unknown).
  IngestResult on_position(uint64_t position, int64_t upstream_time_us, Clock::time_point now);

  // Commits a pending boundary once the sync interval has passed.
  IngestResult tick(Clock::time_point now);

  // Whether records are waiting for a boundary the upstream has not shown yet: the adapter should
  // ask upstream for its position (primary: status update with reply requested).
  bool wants_position(Clock::time_point now) const;

  // The upstream connection ended: cuts the records appended since the last marker (the rest of
  // their transactions will be sent again), repairing the log first if a write failed
  // (kLogBlocked while the disk is still full: call again after a pause).
  IngestResult on_disconnect();

  // Retention: drops whole segments whose records are all below min(acked, position) while the
  // log is above min_bytes, and the oldest segments beyond max_bytes; raises the floor first.
  IngestResult apply_retention(uint64_t acked, uint64_t min_bytes, uint64_t max_bytes);

  // Whether the log holds no record yet (a new relay).
  bool log_empty() const { return log_.written().records == 0; }
  // The durable, visible position (what may be confirmed upstream).
  uint64_t position() const noexcept { return position_; }
  // Counters.
  const IngestStats& stats() const noexcept { return stats_; }

 private:
  // Appends a marker at `position`, syncs, publishes; the log's records up to it become visible.
  IngestResult commit(uint64_t position, int64_t upstream_time_us, Clock::time_point now);
  // Whether the sync interval (or the in-memory budget) says commit now.
  bool due(Clock::time_point now) const;
  // The result for a failed log call: kLogBlocked (counted) when the disk is full, else kLogFailed.
  IngestResult log_failed(const std::string& what, const LogStatus& st);
  // Appends one record and keeps it for the next publication.
  IngestResult append(uint64_t key, std::span<const uint8_t> frame, bool marker,
                      const frame::Header& header);

  FrameLog& log_;
  Registry& registry_;
  PublicationQueue& queue_;
  Options options_;
  frame::Writer marker_writer_{frame::Compression::kNone};

  uint64_t position_ = 0;  // key of the last durable marker
  uint64_t last_key_ = 0;  // key of the last appended record
  uint64_t pending_records_ = 0;  // appended since the last marker
  uint64_t pending_bytes_ = 0;
  uint64_t candidate_ = 0;   // a boundary known since the last append (0: none)
  int64_t candidate_time_ = 0;
  int64_t last_commit_time_ = 0;
  Clock::time_point last_sync_{};
  Clock::time_point first_pending_{};
  std::deque<FrameRef> unpublished_;  // the newest appended frames, within window_bytes
  uint64_t unpublished_bytes_ = 0;
  IngestStats stats_;
  std::string retention_error_;  // the last retention failure logged (logged once, not per try)
};

}  // namespace edgeshard::relay

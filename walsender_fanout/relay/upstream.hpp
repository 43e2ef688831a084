// The relay's upstream thread: keeps one stream from a shard primary (a logical replication slot
// of the output plugin edgeshard, through libpq) or from a parent relay (PROTOCOL.md) flowing into
// Ingest, reconnecting with exponential backoff and jitter when it breaks (libpq's multi-host
// conninfo, or the parent list, picks the next server), confirming upstream only the durable
// position, and applying the log's retention.
#pragma once

#include "common/no_postgres.hpp"

#include "walsender_fanout/relay/ingest.hpp"
#include "walsender_fanout/relay/relay_config.hpp"

#include <atomic>
#include <cstdint>
#include <random>
#include <string>

namespace edgeshard::relay {

// Upstream connection state for metrics (any thread).
struct UpstreamStats {
  std::atomic<bool> connected{false};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<uint64_t> confirmed{0};  // position last confirmed upstream
};

// Outcome of one upstream session.
struct SessionEnd {
  bool fatal = false;  // the relay must stop (log failure, or a slot that moved past the log)
  bool progressed = false;  // data arrived: the next reconnect starts from the shortest delay
  bool blocked = false;     // the disk is full: back off (log_blocked_min_ms..) before the next
  int sys_errno = 0;        // blocked: errno of the failed write
  std::string path;         // blocked: the file it failed on
  std::string reason;

  // Ends the session as an Ingest failure says: blocked (disk full) or fatal.
  void set_log_failure(const IngestResult& r) {
    blocked = r.kind == IngestResult::kLogBlocked;
    fatal = r.kind == IngestResult::kLogFailed;
    sys_errno = r.sys_errno;
    path = r.path;
    reason = r.message;
  }
};

// See the file comment.
class Upstream {
 public:
  // Streams into ingest according to config.
  Upstream(const RelayConfig& config, Ingest& ingest, Registry& registry);

  // Runs sessions until stop is set or a fatal error; returns false after a fatal error.
  bool run(const std::atomic<bool>& stop);

  // Counters.
  const UpstreamStats& stats() const noexcept { return stats_; }

 private:
  // One session with a primary (upstream_primary.cpp).
  SessionEnd run_primary(const std::atomic<bool>& stop);
  // One session with a parent relay (upstream_relay.cpp).
  SessionEnd run_parent(const std::atomic<bool>& stop);
  // Writes relay.state when acks changed (logs a failure).
  void save_registry();
  // Retention, registry expiry and saving, at most once a second.
  IngestResult housekeeping(Clock::time_point now);
  // The log cannot be written (disk full): says so once per backoff step, waits (retention goes
  // on) and repairs the log, until the repair succeeds or stop; false when the relay must stop
  // (a failure that is not the disk's).
  bool wait_for_space(const SessionEnd& end, int64_t& delay_ms, std::mt19937_64& rng,
                      const std::atomic<bool>& stop);

  const RelayConfig& config_;
  Ingest& ingest_;
  Registry& registry_;
  UpstreamStats stats_;
  Clock::time_point last_housekeeping_{};
  bool state_save_failing_ = false;  // a relay.state save failure was logged (once until it works)
};

// Backoff while the log cannot be written for lack of space: 100 ms doubling to 10 s, jittered.
inline constexpr int64_t kLogBlockedMinMs = 100;
inline constexpr int64_t kLogBlockedMaxMs = 10000;

}  // namespace edgeshard::relay

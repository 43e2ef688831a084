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
  std::string reason;
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

  const RelayConfig& config_;
  Ingest& ingest_;
  Registry& registry_;
  UpstreamStats stats_;
  Clock::time_point last_housekeeping_{};
};

}  // namespace edgeshard::relay

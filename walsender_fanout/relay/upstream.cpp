// The upstream thread's reconnect loop and retention.
#include "walsender_fanout/relay/upstream.hpp"

#include "common/lsn.hpp"
#include "walsender_fanout/relay/log_line.hpp"

#include <algorithm>
#include <cstring>
#include <random>
#include <thread>

namespace edgeshard::relay {

Upstream::Upstream(const RelayConfig& config, Ingest& ingest, Registry& registry)
    : config_(config), ingest_(ingest), registry_(registry) {}

bool Upstream::run(const std::atomic<bool>& stop) {
  std::mt19937_64 rng(std::random_device{}());
  int64_t delay_ms = config_.reconnect_min_ms;
  int64_t blocked_ms = 0;        // the disk-full backoff's current step (0: not blocked)
  uint64_t syncs_blocked = 0;    // the log's syncs when that backoff last waited
  while (!stop.load()) {
    SessionEnd end = config_.upstream.empty() ? run_parent(stop) : run_primary(stop);
    stats_.connected = false;
    if (IngestResult r = ingest_.on_disconnect(); r.kind == IngestResult::kLogBlocked) {
      if (!end.blocked) end.set_log_failure(r);
    } else if (!r.ok()) {
      log(Level::kError, "log_failed", {{"error", r.message}});
      return false;
    }
    if (end.fatal) {
      log(Level::kError, "upstream_fatal", {{"error", end.reason}});
      return false;
    }
    if (stop.load()) break;
    if (end.blocked) {
      // Nothing beyond the log's durable end was confirmed: upstream sends it again when the
      // next session starts from there, once there is room. A new episode (the log synced
      // since the last wait) starts the backoff from its shortest step.
      if (ingest_.stats().syncs.load() != syncs_blocked) blocked_ms = 0;
      if (!wait_for_space(end, blocked_ms, rng, stop)) return false;
      syncs_blocked = ingest_.stats().syncs.load();
      continue;
    }
    if (end.progressed) delay_ms = config_.reconnect_min_ms;
    // Full jitter around the current delay: many relays losing one primary do not return in step.
    std::uniform_int_distribution<int64_t> jitter(delay_ms / 2, delay_ms + delay_ms / 2);
    const int64_t wait_ms = jitter(rng);
    stats_.reconnects.fetch_add(1);
    log(Level::kWarning, "upstream_lost",
        {{"reason", end.reason}, {"retry_in_ms", std::to_string(wait_ms)}});
    for (int64_t waited = 0; waited < wait_ms && !stop.load(); waited += 20) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (waited % 1000 == 0) save_registry();
    }
    delay_ms = std::min(delay_ms * 2, config_.reconnect_max_ms);
  }
  save_registry();
  return true;
}

bool Upstream::wait_for_space(const SessionEnd& end, int64_t& delay_ms, std::mt19937_64& rng,
                              const std::atomic<bool>& stop) {
  SessionEnd why = end;
  while (!stop.load()) {
    delay_ms = delay_ms == 0 ? kLogBlockedMinMs : std::min(delay_ms * 2, kLogBlockedMaxMs);
    std::uniform_int_distribution<int64_t> jitter(delay_ms / 2, delay_ms + delay_ms / 2);
    const int64_t wait_ms = jitter(rng);
    // One line per backoff step (at most one every 5..15 s once at the longest step).
    log(Level::kWarning, "log_write_blocked",
        {{"error", std::strerror(why.sys_errno)}, {"path", why.path}, {"detail", why.reason},
         {"durable", format_lsn(ingest_.position())}, {"retry_in_ms", std::to_string(wait_ms)},
         {"action", "confirming upstream only what is durable; subscribers still served"}});
    const Clock::time_point until = Clock::now() + std::chrono::milliseconds(wait_ms);
    while (!stop.load() && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      // Retention may free the space (subscribers acked old segments).
      if (IngestResult r = housekeeping(Clock::now()); r.kind == IngestResult::kLogFailed) {
        log(Level::kError, "log_failed", {{"error", r.message}});
        return false;
      }
    }
    // A log whose repair failed too (it cut nothing yet) is repaired before the next session.
    IngestResult r = ingest_.on_disconnect();
    if (r.ok()) return true;
    if (r.kind != IngestResult::kLogBlocked) {
      log(Level::kError, "log_failed", {{"error", r.message}});
      return false;
    }
    why.set_log_failure(r);
  }
  return true;
}

void Upstream::save_registry() {
  // Acks are saved here, off the server's event loop (the file is fsynced). A failure that lasts
  // (a full disk) is logged once, and once more when saving works again.
  try {
    registry_.save_if_dirty();
    if (state_save_failing_) log(Level::kInfo, "state_saved");
    state_save_failing_ = false;
  } catch (const StateError& e) {
    if (!state_save_failing_) log(Level::kError, "state_save_failed", {{"error", e.what()}});
    state_save_failing_ = true;
  }
}

IngestResult Upstream::housekeeping(Clock::time_point now) {
  if (now - last_housekeeping_ < std::chrono::seconds(1)) return {};
  last_housekeeping_ = now;
  const int64_t now_unix = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  registry_.expire(now_unix - config_.subscriber_expiry_s);
  save_registry();
  return ingest_.apply_retention(registry_.min_acked(),
                                 static_cast<uint64_t>(config_.retention_min_bytes),
                                 static_cast<uint64_t>(config_.retention_max_bytes));
}

}  // namespace edgeshard::relay

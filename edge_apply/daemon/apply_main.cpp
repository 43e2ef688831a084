// edgeshard-apply: keeps an edge's tenant replicas up to date from one relay per shard (DESIGN.md
// section 6). Threads: one stream per shard (relay connection, frame checks, group assembly,
// acks), one applier (initial copies from the primaries, tenant writers, flushes), metrics; the
// main thread waits for SIGTERM/SIGINT.
#include "common/daemon/daemon_main.hpp"
#include "common/daemon/prometheus.hpp"
#include "common/daemon/signals.hpp"
#include "common/lsn.hpp"
#include "edge_apply/daemon/applier.hpp"
#include "edge_apply/daemon/apply_config.hpp"
#include "edge_apply/daemon/apply_metrics.hpp"
#include "edge_apply/daemon/data_dir_lock.hpp"
#include "edge_apply/daemon/event_queue.hpp"
#include "edge_apply/daemon/shard_stream.hpp"
#include "walsender_fanout/relay/fanout_server.hpp"
#include "walsender_fanout/relay/log_line.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <thread>
#include <vector>

namespace {

using namespace edgeshard::apply::daemon;
using edgeshard::relay::Level;
using edgeshard::relay::log;

using edgeshard::daemon::kExitFailed;
using edgeshard::daemon::kExitOk;
using edgeshard::daemon::kExitUsage;

// Runs the daemon after the configuration was read; returns the exit status.
int run_apply(const ApplyConfig& config) {
  Level level = Level::kInfo;
  if (!edgeshard::relay::parse_log_level(config.log_level, level)) {
    std::fprintf(stderr, "edgeshard-apply: invalid log_level \"%s\"\n", config.log_level.c_str());
    return kExitUsage;
  }
  edgeshard::relay::set_log_level(level);

  // Signals are taken by the main thread only: block them before any thread starts.
  const sigset_t signals = edgeshard::daemon::block_signals({SIGTERM, SIGINT});

  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(config.data_dir) / "tenants", ec);
  if (ec) {
    log(Level::kError, "startup_failed", {{"error", "cannot create data_dir: " + ec.message()}});
    return kExitFailed;
  }
  DataDirLock lock;
  if (std::string why; !lock.acquire(config.data_dir, why)) {
    log(Level::kError, "startup_failed", {{"error", why}});
    return kExitFailed;
  }
  // Groups spilled by an earlier run were never applied (the relay sends them again).
  if (std::string why = GroupSpill::clear_dir(std::filesystem::path(config.data_dir) / "spill"); !why.empty()) {
    log(Level::kError, "startup_failed", {{"error", why}});
    return kExitFailed;
  }
  std::deque<ShardState> shards;  // a deque: ShardState holds atomics and never moves
  for (const ShardUpstream& u : config.shards) {
    ShardState& s = shards.emplace_back();
    s.shard = u.shard;
    s.hosts = u.hosts;
  }
  EventQueue queue(static_cast<size_t>(config.queue_bytes));
  Applier applier(config, shards, queue);
  if (!applier.open_existing()) return kExitFailed;

  int metrics_fd = -1;
  try {
    if (!config.metrics_listen.empty()) metrics_fd = edgeshard::relay::listen_on(config.metrics_listen);
  } catch (const std::exception& e) {
    log(Level::kError, "startup_failed", {{"error", e.what()}});
    return kExitFailed;
  }
  log(Level::kInfo, "apply_started",
      {{"name", config.name}, {"data_dir", config.data_dir}, {"shards", std::to_string(shards.size())},
       {"tenants", config.tenants}, {"metrics", config.metrics_listen},
       {"flush_interval_ms", std::to_string(config.flush_interval_ms)},
       {"primaries", std::to_string(config.primaries.size())}});

  std::atomic<bool> stop{false};
  std::atomic<bool> applier_done{false};
  std::atomic<bool> failed{false};
  std::thread applier_thread([&] {
    bool ok = false;
    try {
      ok = applier.run(stop, applier_done);
    } catch (const std::exception& e) {
      // Beyond the per-tenant guards (out of memory, a bug outside any tenant): stop cleanly.
      log(Level::kError, "apply_failed", {{"error", e.what()}, {"action", "stopping: a restart resumes from the manifests"}});
      queue.close();
    } catch (...) {
      log(Level::kError, "apply_failed", {{"error", "unknown exception"}, {"action", "stopping"}});
      queue.close();
    }
    if (!ok) {
      failed = true;
      ::kill(::getpid(), SIGTERM);
    }
  });
  std::vector<std::thread> streams;
  const std::vector<std::string> tenants = config.tenant_list();
  for (size_t i = 0; i < shards.size(); ++i) {
    StreamOptions o;
    o.shard_index = i;
    o.name = config.name;
    o.token = config.token;
    o.tenants = tenants;
    o.start = shards[i].acked.load();
    if (config.shards[i].from_primary()) {
      o.primary_conninfo = config.primary_of(config.shards[i].shard);
      o.slot = config.slot_name();
    }
    o.connect_timeout_ms = static_cast<int>(config.connect_timeout_ms);
    o.reconnect_min_ms = static_cast<int>(config.reconnect_min_ms);
    o.reconnect_max_ms = static_cast<int>(config.reconnect_max_ms);
    o.spill_dir = (std::filesystem::path(config.data_dir) / "spill").string();
    o.group_memory_bytes = static_cast<size_t>(config.group_memory_bytes);
    streams.emplace_back([&shards, &queue, &stop, &applier_done, o, i] {
      run_shard_stream(o, shards[i], queue, stop, applier_done);
    });
  }
  MetricsSources sources{config.name, &shards, &applier.stats(), &queue};
  std::thread metrics_thread;
  if (metrics_fd >= 0) {
    metrics_thread = std::thread([&] {
      try {
        edgeshard::daemon::serve_metrics(metrics_fd, [&] { return render_metrics(sources); }, stop);
      } catch (const std::exception& e) {
        log(Level::kError, "metrics_failed", {{"error", e.what()}, {"action", "serving without /metrics"}});
      }
    });
  }

  edgeshard::daemon::wait_for_stop(signals);
  log(Level::kInfo, "apply_stopping", {{"reason", failed ? "fatal error" : "signal"}});
  stop = true;
  applier_thread.join();
  for (std::thread& t : streams) t.join();
  if (metrics_thread.joinable()) metrics_thread.join();
  std::string acked;
  for (const ShardState& s : shards) {
    acked += (acked.empty() ? "" : ",") + s.shard + "@" + edgeshard::format_lsn(s.acked.load());
  }
  log(Level::kInfo, "apply_stopped", {{"acked", acked}});
  return failed ? kExitFailed : kExitOk;
}

}  // namespace

// Parses the command line and runs the daemon.
int main(int argc, char** argv) {
  CommandLine cl;
  return edgeshard::daemon::run_main(
      "edgeshard-apply",
      [&] {
        cl = parse_command_line(argc, argv);
        return cl.help;
      },
      usage_text, [&] { return run_apply(cl.config); });
}

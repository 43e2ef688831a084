// edgeshard-relay: decode once, fan out to many (DESIGN.md section 5). Threads: upstream (slot or
// parent relay -> frame log), server (subscribers), metrics, edge_status reporter; the main
// thread waits for signals (SIGTERM/SIGINT stop, SIGHUP re-reads tokens_file).
#include "common/daemon/daemon_main.hpp"
#include "common/daemon/prometheus.hpp"
#include "common/daemon/signals.hpp"
#include "common/lsn.hpp"
#include "walsender_fanout/relay/fanout_server.hpp"
#include "walsender_fanout/relay/frame_log.hpp"
#include "walsender_fanout/relay/ingest.hpp"
#include "walsender_fanout/relay/log_line.hpp"
#include "walsender_fanout/relay/metrics.hpp"
#include "walsender_fanout/relay/relay_config.hpp"
#include "walsender_fanout/relay/relay_state.hpp"
#include "walsender_fanout/relay/status_reporter.hpp"
#include "walsender_fanout/relay/token_store.hpp"
#include "walsender_fanout/relay/upstream.hpp"

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

namespace {

using namespace edgeshard::relay;

using edgeshard::daemon::kExitFailed;
using edgeshard::daemon::kExitOk;
using edgeshard::daemon::kExitUsage;

// Runs the relay after the configuration was read; returns the exit status.
int run_relay(const RelayConfig& config) {
  Level level = Level::kInfo;
  if (!parse_log_level(config.log_level, level)) {
    std::fprintf(stderr, "edgeshard-relay: invalid log_level \"%s\"\n", config.log_level.c_str());
    return kExitUsage;
  }
  set_log_level(level);

  // Signals are taken by the main thread only: block them before any thread starts.
  const sigset_t signals = edgeshard::daemon::block_signals({SIGTERM, SIGINT, SIGHUP});

  const std::filesystem::path data_dir(config.data_dir);
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  FrameLog::Options log_options;
  log_options.segment_bytes = static_cast<uint64_t>(config.segment_bytes);
  std::optional<FrameLog> log_holder;
  std::optional<Registry> registry_holder;
  TokenStore tokens;
  try {
    log_holder.emplace(FrameLog::open(data_dir / "log", log_options));
    registry_holder.emplace(data_dir);
    tokens.load(config.token, config.tokens_file);
  } catch (const std::exception& e) {
    log(Level::kError, "startup_failed", {{"error", e.what()}});
    return kExitFailed;
  }
  FrameLog& frame_log = *log_holder;
  Registry& registry = *registry_holder;

  PublicationQueue queue;
  Ingest::Options ingest_options;
  ingest_options.sync_interval = std::chrono::milliseconds(config.sync_interval_ms);
  ingest_options.window_bytes = static_cast<uint64_t>(config.window_bytes);
  Ingest ingest(frame_log, registry, queue, ingest_options);
  if (IngestResult r = ingest.recover(); !r.ok()) {
    log(Level::kError, "startup_failed", {{"error", r.message}});
    return kExitFailed;
  }

  ServerOptions server_options;
  server_options.listen = config.listen;
  server_options.relay_name = config.name;
  server_options.keepalive_interval = std::chrono::milliseconds(config.keepalive_interval_ms);
  server_options.send_timeout = std::chrono::milliseconds(config.send_timeout_ms);
  server_options.handshake_timeout = std::chrono::milliseconds(config.handshake_timeout_ms);
  server_options.receive_timeout = std::chrono::milliseconds(config.receive_timeout_ms);
  server_options.window_bytes = static_cast<uint64_t>(config.window_bytes);
  server_options.max_subscribers = static_cast<size_t>(config.max_subscribers);
  StatusBoard board;
  std::optional<FanoutServer> server;
  int metrics_fd = -1;
  try {
    server.emplace(server_options, frame_log, registry, queue, tokens, board);
    if (!config.metrics_listen.empty()) metrics_fd = listen_on(config.metrics_listen);
  } catch (const std::exception& e) {
    log(Level::kError, "startup_failed", {{"error", e.what()}});
    return kExitFailed;
  }
  log(Level::kInfo, "relay_started",
      {{"name", config.name}, {"listen", config.listen}, {"port", std::to_string(server->port())},
       {"metrics", config.metrics_listen}, {"position", edgeshard::format_lsn(ingest.position())},
       {"log_bytes", std::to_string(frame_log.total_bytes())}});

  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  Upstream upstream(config, ingest, registry);
  // No exception leaves a thread: what escapes the per-subscriber and per-stream handling (out
  // of memory, a bug) stops the relay cleanly, logged, as a fatal error does.
  auto guarded = [&](const char* thread, auto&& body) {
    try {
      if (body()) return;
    } catch (const std::exception& e) {
      log(Level::kError, "relay_failed", {{"thread", thread}, {"error", e.what()}});
    } catch (...) {
      log(Level::kError, "relay_failed", {{"thread", thread}, {"error", "unknown exception"}});
    }
    failed = true;
    ::kill(::getpid(), SIGTERM);
  };
  std::thread upstream_thread([&] { guarded("upstream", [&] { return upstream.run(stop); }); });
  std::thread server_thread([&] {
    guarded("server", [&] {
      server->run(stop);
      return true;
    });
  });
  MetricsSources sources{config.name, &ingest.stats(), &upstream.stats(), &frame_log, &board};
  std::thread metrics_thread;
  if (metrics_fd >= 0) {
    metrics_thread = std::thread([&] {
      guarded("metrics", [&] {
        edgeshard::daemon::serve_metrics(metrics_fd, [&] { return render_metrics(sources); }, stop);
        return true;
      });
    });
  }
  std::string status_conninfo = config.status_conninfo.empty() ? config.upstream : config.status_conninfo;
  if (status_conninfo == "off") status_conninfo.clear();
  std::thread reporter_thread;
  if (!status_conninfo.empty()) {
    reporter_thread = std::thread([&] {
      guarded("status_reporter", [&] {
        run_status_reporter(status_conninfo, config.name,
                            std::chrono::milliseconds(config.status_interval_ms), board, stop);
        return true;
      });
    });
  }

  // SIGHUP re-reads tokens_file and keeps running; SIGTERM/SIGINT stop.
  edgeshard::daemon::wait_for_stop(signals, [&](int sig) {
    if (sig != SIGHUP) return false;
    try {
      tokens.load(config.token, config.tokens_file);
      log(Level::kInfo, "tokens_reloaded");
    } catch (const std::exception& e) {
      log(Level::kError, "tokens_reload_failed", {{"error", e.what()}, {"kept", "previous tokens"}});
    }
    return true;
  });
  log(Level::kInfo, "relay_stopping", {{"reason", failed ? "fatal error" : "signal"}});
  stop = true;
  upstream_thread.join();
  server_thread.join();
  if (metrics_thread.joinable()) metrics_thread.join();
  if (reporter_thread.joinable()) reporter_thread.join();
  log(Level::kInfo, "relay_stopped", {{"position", edgeshard::format_lsn(ingest.position())}});
  return failed ? kExitFailed : kExitOk;
}

}  // namespace

// Parses the command line and runs the relay.
int main(int argc, char** argv) {
  CommandLine cl;
  return edgeshard::daemon::run_main(
      "edgeshard-relay",
      [&] {
        cl = parse_command_line(argc, argv);
        return cl.help;
      },
      usage_text, [&] { return run_relay(cl.config); });
}

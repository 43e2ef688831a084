// The relay's settings table, config-file reader and flag parser.
#include "walsender_fanout/relay/relay_config.hpp"

#include "walsender_fanout/relay/protocol.hpp"

#include <fstream>
#include <sstream>

namespace edgeshard::relay {

namespace {

using daemon::boolean;
using daemon::integer;
using daemon::text;
using daemon::trim;

// The settings table: every setting, its unit and what it does.
const daemon::SettingsTable<RelayConfig>& settings() {
  static const daemon::SettingsTable<RelayConfig> table = {
      text("name", "this relay's name: in logs, metrics, WELCOME, and as its subscriber name upstream",
           &RelayConfig::name),
      text("data_dir", "directory of the frame log and relay.state (required)", &RelayConfig::data_dir),
      text("listen", "host:port subscribers connect to", &RelayConfig::listen),
      text("metrics_listen", "host:port of the HTTP /metrics endpoint (empty: off)",
           &RelayConfig::metrics_listen),
      text("upstream", "libpq connection string of the shard primary (host=a,b for failover)",
           &RelayConfig::upstream),
      text("upstream_relay", "host:port[,host:port...] of a parent relay, instead of upstream",
           &RelayConfig::upstream_relay),
      text("upstream_token", "token for the parent relay (or env EDGESHARD_RELAY_TOKEN)",
           &RelayConfig::upstream_token),
      text("slot", "logical replication slot on the primary", &RelayConfig::slot),
      boolean("create_slot", "create the slot (plugin edgeshard) when it does not exist",
              &RelayConfig::create_slot),
      text("tenants", "comma-separated tenant keys to request upstream (empty: all)",
           &RelayConfig::tenants),
      text("compression", "output plugin compression: lz4 or none", &RelayConfig::compression),
      integer("frame_bytes", "bytes", "output plugin target frame size", &RelayConfig::frame_bytes),
      text("token", "token every subscriber name may use (empty: only tokens_file)",
           &RelayConfig::token),
      text("tokens_file", "file of `name token` lines, one per subscriber (re-read on SIGHUP)",
           &RelayConfig::tokens_file),
      integer("sync_interval_ms", "ms", "group fsync interval of the frame log",
              &RelayConfig::sync_interval_ms),
      integer("keepalive_interval_ms", "ms", "KEEPALIVE interval to subscribers",
              &RelayConfig::keepalive_interval_ms),
      integer("send_timeout_ms", "ms", "disconnect a subscriber that reads nothing for this long",
              &RelayConfig::send_timeout_ms),
      integer("handshake_timeout_ms", "ms", "disconnect a connection that sends no HELLO for this long",
              &RelayConfig::handshake_timeout_ms),
      integer("receive_timeout_ms", "ms",
              "disconnect a subscriber that sends nothing (no ACK) for this long",
              &RelayConfig::receive_timeout_ms),
      integer("upstream_timeout_ms", "ms",
              "reconnect when upstream sends nothing for this long (asked for a reply at half)",
              &RelayConfig::upstream_timeout_ms),
      integer("segment_bytes", "bytes", "frame log segment size", &RelayConfig::segment_bytes),
      integer("retention_min_bytes", "bytes",
              "keep at least this much log even when every subscriber has acked it",
              &RelayConfig::retention_min_bytes),
      integer("retention_max_bytes", "bytes",
              "never keep more log than this, even for a lagging subscriber (which must resync)",
              &RelayConfig::retention_max_bytes),
      integer("subscriber_expiry_s", "s",
              "forget a registered subscriber not connected for this long (retention stops waiting)",
              &RelayConfig::subscriber_expiry_s),
      integer("window_bytes", "bytes", "recent frames kept in memory, shared by all subscribers",
              &RelayConfig::window_bytes),
      integer("max_subscribers", "", "connected subscribers at most", &RelayConfig::max_subscribers),
      integer("reconnect_min_ms", "ms", "first upstream reconnect delay (doubles, with jitter)",
              &RelayConfig::reconnect_min_ms),
      integer("reconnect_max_ms", "ms", "longest upstream reconnect delay",
              &RelayConfig::reconnect_max_ms),
      text("status_conninfo",
           "SQL connection to the primary for edgeshard.edge_status reports (default: upstream; "
           "\"off\": none)",
           &RelayConfig::status_conninfo),
      integer("status_interval_ms", "ms", "edge_status report interval",
              &RelayConfig::status_interval_ms),
      text("log_level", "debug, info, warning or error", &RelayConfig::log_level),
  };
  return table;
}

}  // namespace

void set_setting(RelayConfig& config, const std::string& key, const std::string& value) {
  daemon::set_setting(settings(), config, key, value);
}

void read_config_file(const std::string& path, RelayConfig& config) {
  daemon::read_config_file(settings(), path, config);
}

void validate(const RelayConfig& c) {
  if (c.data_dir.empty()) throw ConfigError("data_dir is not set: set it in the file or with --data_dir");
  if (c.upstream.empty() == c.upstream_relay.empty()) {
    throw ConfigError("set exactly one of upstream (a primary's conninfo) and upstream_relay (a parent relay)");
  }
  if (!proto::valid_name(c.name)) {
    throw ConfigError("invalid name \"" + c.name + "\": 1-63 characters of A-Z a-z 0-9 _ . -");
  }
  if (c.compression != "lz4" && c.compression != "none") {
    throw ConfigError("invalid compression \"" + c.compression + "\": lz4 or none");
  }
  if (c.frame_bytes < 1024 || c.frame_bytes > (int64_t{16} << 20)) {
    throw ConfigError("frame_bytes must be between 1kB and 16MB");
  }
  if (c.token.empty() && c.tokens_file.empty()) {
    throw ConfigError("no subscriber can authenticate: set token or tokens_file");
  }
  if (c.sync_interval_ms < 0 || c.keepalive_interval_ms < 10 || c.send_timeout_ms < 100 ||
      c.handshake_timeout_ms < 100 || c.receive_timeout_ms < 100 || c.upstream_timeout_ms < 100) {
    throw ConfigError(
        "sync_interval_ms >= 0, keepalive_interval_ms >= 10, and every *_timeout_ms >= 100");
  }
  if (c.segment_bytes < 4096) throw ConfigError("segment_bytes must be at least 4kB");
  if (c.retention_max_bytes < 2 * c.segment_bytes || c.retention_min_bytes > c.retention_max_bytes) {
    throw ConfigError("retention_max_bytes must be at least 2 segments and at least retention_min_bytes");
  }
  if (c.window_bytes < (int64_t{1} << 20)) throw ConfigError("window_bytes must be at least 1MB");
  if (c.max_subscribers < 1) throw ConfigError("max_subscribers must be at least 1");
  if (c.reconnect_min_ms < 1 || c.reconnect_max_ms < c.reconnect_min_ms) {
    throw ConfigError("reconnect_min_ms >= 1 and reconnect_max_ms >= reconnect_min_ms");
  }
  if (c.status_interval_ms < 100) throw ConfigError("status_interval_ms must be at least 100");
}

CommandLine parse_command_line(int argc, const char* const* argv) {
  CommandLine cl;
  const daemon::Arguments args = daemon::parse_arguments(argc, argv);
  cl.help = args.help;
  if (cl.help) return cl;
  if (!args.config_file.empty()) read_config_file(args.config_file, cl.config);
  for (const auto& [k, v] : args.settings) set_setting(cl.config, k, v);
  validate(cl.config);
  return cl;
}

std::string usage_text() {
  std::ostringstream out;
  out << "usage: edgeshard-relay [--config FILE] [--SETTING=VALUE ...]\n"
         "\n"
         "Holds one logical replication connection to a shard primary (output plugin edgeshard),\n"
         "or subscribes to a parent relay, keeps the frames in a local log and serves them to\n"
         "subscribers over TCP (walsender_fanout/relay/PROTOCOL.md). SIGTERM/SIGINT stop it\n"
         "cleanly; SIGHUP re-reads tokens_file.\n"
         "\n"
         "Settings (file: `key = value` lines; flags override the file):\n";
  out << daemon::settings_usage(settings());
  return out.str();
}

std::vector<std::pair<std::string, std::string>> read_tokens_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("could not read tokens_file \"" + path + "\"");
  std::vector<std::pair<std::string, std::string>> out;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    line = trim(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string name, token, extra;
    fields >> name >> token;
    if (token.empty() || (fields >> extra) || !proto::valid_name(name)) {
      throw ConfigError(path + ":" + std::to_string(lineno) + ": expected `name token`");
    }
    out.emplace_back(name, token);
  }
  return out;
}

}  // namespace edgeshard::relay

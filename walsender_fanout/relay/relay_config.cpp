// The relay's settings table, config-file reader and flag parser.
#include "walsender_fanout/relay/relay_config.hpp"

#include "walsender_fanout/relay/protocol.hpp"

#include <charconv>
#include <fstream>
#include <functional>
#include <sstream>

namespace edgeshard::relay {

namespace {

// One row of the settings table.
struct Setting {
  const char* key;
  const char* unit;  // "", "ms", "s", "bytes", "bool"
  const char* help;
  std::function<void(RelayConfig&, const std::string&)> set;
  std::function<std::string(const RelayConfig&)> get;
};

// Parses a whole decimal integer with an optional unit suffix for bytes (kB, MB, GB).
int64_t parse_integer(const std::string& key, const std::string& text, bool bytes) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr == text.data()) {
    throw ConfigError("invalid value for " + key + ": \"" + text + "\" (expected an integer)");
  }
  std::string_view suffix(ptr, static_cast<size_t>(end - ptr));
  int64_t mult = 1;
  if (bytes && (suffix == "kB" || suffix == "KB")) mult = int64_t{1} << 10;
  else if (bytes && suffix == "MB") mult = int64_t{1} << 20;
  else if (bytes && suffix == "GB") mult = int64_t{1} << 30;
  else if (!suffix.empty()) {
    throw ConfigError("invalid value for " + key + ": \"" + text + "\"" +
                      (bytes ? " (units: kB, MB, GB)" : " (expected an integer)"));
  }
  if (v < 0 || v > INT64_MAX / mult) {
    throw ConfigError("invalid value for " + key + ": \"" + text + "\" (out of range)");
  }
  return v * mult;
}

// Parses on/off/true/false/1/0.
bool parse_bool(const std::string& key, const std::string& text) {
  if (text == "on" || text == "true" || text == "1" || text == "yes") return true;
  if (text == "off" || text == "false" || text == "0" || text == "no") return false;
  throw ConfigError("invalid value for " + key + ": \"" + text + "\" (expected on or off)");
}

// A string setting.
Setting text(const char* key, const char* help, std::string RelayConfig::*field) {
  return {key, "", help, [field](RelayConfig& c, const std::string& v) { c.*field = v; },
          [field](const RelayConfig& c) { return c.*field; }};
}

// An integer setting (unit "bytes" accepts kB/MB/GB suffixes).
Setting integer(const char* key, const char* unit, const char* help, int64_t RelayConfig::*field) {
  const bool bytes = std::string_view(unit) == "bytes";
  return {key, unit, help,
          [key, bytes, field](RelayConfig& c, const std::string& v) {
            c.*field = parse_integer(key, v, bytes);
          },
          [field](const RelayConfig& c) { return std::to_string(c.*field); }};
}

// A boolean setting.
Setting boolean(const char* key, const char* help, bool RelayConfig::*field) {
  return {key, "bool", help,
          [key, field](RelayConfig& c, const std::string& v) { c.*field = parse_bool(key, v); },
          [field](const RelayConfig& c) { return std::string(c.*field ? "on" : "off"); }};
}

// The settings table: every setting, its unit and what it does.
const std::vector<Setting>& settings() {
  static const std::vector<Setting> table = {
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

// Removes blanks at both ends.
std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

}  // namespace

void set_setting(RelayConfig& config, const std::string& key, const std::string& value) {
  for (const Setting& s : settings()) {
    if (key == s.key) {
      s.set(config, value);
      return;
    }
  }
  throw ConfigError("unknown setting \"" + key + "\" (see --help)");
}

void read_config_file(const std::string& path, RelayConfig& config) {
  std::ifstream in(path);
  if (!in) throw ConfigError("could not read configuration file \"" + path + "\"");
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    std::string body = line;
    // A '#' outside quotes starts a comment.
    bool quoted = false;
    for (size_t i = 0; i < body.size(); ++i) {
      if (body[i] == '\'') quoted = !quoted;
      if (body[i] == '#' && !quoted) {
        body.resize(i);
        break;
      }
    }
    body = trim(body);
    if (body.empty()) continue;
    const size_t eq = body.find('=');
    const std::string where = path + ":" + std::to_string(lineno);
    if (eq == std::string::npos) throw ConfigError(where + ": expected key = value");
    const std::string key = trim(body.substr(0, eq));
    std::string value = trim(body.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '\'' && value.back() == '\'') {
      std::string unquoted;
      for (size_t i = 1; i + 1 < value.size(); ++i) {
        unquoted += value[i];
        if (value[i] == '\'' && value[i + 1] == '\'') ++i;
      }
      value = unquoted;
    }
    try {
      set_setting(config, key, value);
    } catch (const ConfigError& e) {
      throw ConfigError(where + ": " + e.what());
    }
  }
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
  std::vector<std::pair<std::string, std::string>> flags;
  std::string config_file;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      cl.help = true;
      return cl;
    }
    if (arg.rfind("--", 0) != 0) throw ConfigError("unexpected argument \"" + arg + "\" (see --help)");
    arg = arg.substr(2);
    std::string value;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      throw ConfigError("--" + arg + " needs a value");
    }
    for (char& ch : arg) ch = ch == '-' ? '_' : ch;
    if (arg == "config") config_file = value;
    else flags.emplace_back(arg, value);
  }
  if (!config_file.empty()) read_config_file(config_file, cl.config);
  for (const auto& [k, v] : flags) set_setting(cl.config, k, v);
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
  const RelayConfig defaults;
  for (const Setting& s : settings()) {
    out << "  " << s.key;
    if (*s.unit != 0 && std::string_view(s.unit) != "bool") out << " (" << s.unit << ")";
    const std::string d = s.get(defaults);
    out << "  [default: " << (d.empty() ? "none" : d) << "]\n      " << s.help << "\n";
  }
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

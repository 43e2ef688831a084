// edgeshard-apply's settings table, config-file reader and flag parser (the relay's
// relay_config.cpp is the model).
#include "edge_apply/daemon/apply_config.hpp"

#include "walsender_fanout/relay/protocol.hpp"

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

namespace edgeshard::apply::daemon {

namespace {

// One row of the settings table.
struct Setting {
  const char* key;
  const char* unit;  // "", "ms", "bytes", "bool", "list"
  const char* help;
  std::function<void(ApplyConfig&, const std::string&)> set;
  std::function<std::string(const ApplyConfig&)> get;
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

// Removes blanks at both ends.
std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// A string setting.
Setting text(const char* key, const char* help, std::string ApplyConfig::*field) {
  return {key, "", help, [field](ApplyConfig& c, const std::string& v) { c.*field = v; },
          [field](const ApplyConfig& c) { return c.*field; }};
}

// An integer setting (unit "bytes" accepts kB/MB/GB suffixes).
Setting integer(const char* key, const char* unit, const char* help, int64_t ApplyConfig::*field) {
  const bool bytes = std::string_view(unit) == "bytes";
  return {key, unit, help,
          [key, bytes, field](ApplyConfig& c, const std::string& v) {
            c.*field = parse_integer(key, v, bytes);
          },
          [field](const ApplyConfig& c) { return std::to_string(c.*field); }};
}

// A boolean setting.
Setting boolean(const char* key, const char* help, bool ApplyConfig::*field) {
  return {key, "bool", help,
          [key, field](ApplyConfig& c, const std::string& v) { c.*field = parse_bool(key, v); },
          [field](const ApplyConfig& c) { return std::string(c.*field ? "on" : "off"); }};
}

// Appends one `NAME=HOST:PORT[,HOST:PORT...]` upstream.
void add_shard(ApplyConfig& c, const std::string& value) {
  const size_t eq = value.find('=');
  ShardUpstream s;
  if (eq != std::string::npos) {
    s.shard = trim(value.substr(0, eq));
    s.hosts = trim(value.substr(eq + 1));
  }
  if (s.shard.empty() || s.hosts.empty()) {
    throw ConfigError("invalid value for shard: \"" + value + "\" (expected NAME=HOST:PORT[,HOST:PORT...])");
  }
  for (char ch : s.shard) {
    if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) {
      throw ConfigError("invalid shard name \"" + s.shard + "\": no blank or control character");
    }
  }
  c.shards.push_back(std::move(s));
}

// The settings table: every setting, its unit and what it does.
const std::vector<Setting>& settings() {
  static const std::vector<Setting> table = {
      text("name", "subscriber name at every relay (1-63 of A-Z a-z 0-9 _ . -); the relays keep its acked position",
           &ApplyConfig::name),
      text("data_dir", "directory of the replicas: tenants/<key>/ (required)", &ApplyConfig::data_dir),
      {"shard", "list",
       "one upstream per shard, NAME=HOST:PORT[,HOST:PORT...] (relays tried in order); repeat the "
       "setting for several shards (required)",
       add_shard,
       [](const ApplyConfig& c) {
         std::string out;
         for (const auto& s : c.shards) out += (out.empty() ? "" : " ") + s.shard + "=" + s.hosts;
         return out;
       }},
      text("token", "token presented to the relays (or env EDGESHARD_RELAY_TOKEN)", &ApplyConfig::token),
      text("tenants", "'all', or comma-separated tenant keys (sent to the relays as the tenant filter)",
           &ApplyConfig::tenants),
      integer("flush_interval_ms", "ms",
              "publish applied changes (one delta file and manifest per changed tenant) and ack this often",
              &ApplyConfig::flush_interval_ms),
      integer("position_flush_interval_ms", "ms",
              "tenants without changes get their position moved (a manifest write) at most this often",
              &ApplyConfig::position_flush_interval_ms),
      integer("compact_deltas", "", "merge a tenant's files into a new base once it has this many deltas",
              &ApplyConfig::compact_deltas),
      boolean("compress", "LZ4 blocks in the replica files", &ApplyConfig::compress),
      integer("queue_bytes", "bytes",
              "frames received and not applied yet, at most (the shard streams wait beyond it)",
              &ApplyConfig::queue_bytes),
      integer("connect_timeout_ms", "ms", "bound of each relay connect and handshake",
              &ApplyConfig::connect_timeout_ms),
      integer("reconnect_min_ms", "ms", "first reconnect delay after a relay connection ends (doubles)",
              &ApplyConfig::reconnect_min_ms),
      integer("reconnect_max_ms", "ms", "longest reconnect delay", &ApplyConfig::reconnect_max_ms),
      text("metrics_listen", "host:port of the HTTP /metrics endpoint (empty: off)",
           &ApplyConfig::metrics_listen),
      text("log_level", "debug, info, warning or error", &ApplyConfig::log_level),
  };
  return table;
}

}  // namespace

std::vector<std::string> ApplyConfig::tenant_list() const {
  std::vector<std::string> out;
  if (trim(tenants) == "all") return out;
  std::string item;
  std::istringstream in(tenants);
  while (std::getline(in, item, ',')) {
    item = trim(item);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

void set_setting(ApplyConfig& config, const std::string& key, const std::string& value) {
  for (const Setting& s : settings()) {
    if (key == s.key) {
      s.set(config, value);
      return;
    }
  }
  throw ConfigError("unknown setting \"" + key + "\" (see --help)");
}

void read_config_file(const std::string& path, ApplyConfig& config) {
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

void validate(const ApplyConfig& c) {
  if (c.data_dir.empty()) throw ConfigError("data_dir is not set: set it in the file or with --data_dir");
  if (c.shards.empty()) throw ConfigError("no shard: set shard = NAME=HOST:PORT (once per shard)");
  std::set<std::string> names;
  for (const auto& s : c.shards) {
    if (!names.insert(s.shard).second) throw ConfigError("shard \"" + s.shard + "\" is listed twice");
  }
  if (!relay::proto::valid_name(c.name)) {
    throw ConfigError("invalid name \"" + c.name + "\": 1-63 characters of A-Z a-z 0-9 _ . -");
  }
  if (c.token.empty()) throw ConfigError("no token: set token or env EDGESHARD_RELAY_TOKEN");
  if (trim(c.tenants).empty()) throw ConfigError("tenants is empty: 'all' or a comma list of tenant keys");
  if (c.flush_interval_ms < 1 || c.flush_interval_ms > 60000) {
    throw ConfigError("flush_interval_ms must be between 1 and 60000");
  }
  if (c.position_flush_interval_ms < c.flush_interval_ms) {
    throw ConfigError("position_flush_interval_ms must be at least flush_interval_ms");
  }
  if (c.compact_deltas < 2) throw ConfigError("compact_deltas must be at least 2");
  if (c.queue_bytes < (int64_t{1} << 20)) throw ConfigError("queue_bytes must be at least 1MB");
  if (c.connect_timeout_ms < 100) throw ConfigError("connect_timeout_ms must be at least 100");
  if (c.reconnect_min_ms < 1 || c.reconnect_max_ms < c.reconnect_min_ms) {
    throw ConfigError("reconnect_min_ms >= 1 and reconnect_max_ms >= reconnect_min_ms");
  }
}

CommandLine parse_command_line(int argc, const char* const* argv) {
  CommandLine cl;
  std::vector<std::pair<std::string, std::string>> flags;
  std::string config_file;
  bool shard_flags = false;
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
    shard_flags = shard_flags || arg == "shard";
  }
  if (!config_file.empty()) read_config_file(config_file, cl.config);
  // Flags override the file: --shard flags replace its shard list rather than extend it.
  if (shard_flags) cl.config.shards.clear();
  for (const auto& [k, v] : flags) set_setting(cl.config, k, v);
  if (cl.config.token.empty()) {
    if (const char* env = std::getenv("EDGESHARD_RELAY_TOKEN")) cl.config.token = env;
  }
  validate(cl.config);
  return cl;
}

std::string usage_text() {
  std::ostringstream out;
  out << "usage: edgeshard-apply [--config FILE] [--SETTING=VALUE ...]\n"
         "\n"
         "Keeps an edge's tenant replicas (edge_apply/FORMAT.md) up to date: subscribes to one\n"
         "relay per shard (walsender_fanout/relay/PROTOCOL.md), applies each transaction's frame\n"
         "group per tenant atomically, publishes a delta file and manifest per changed tenant every\n"
         "flush_interval_ms, and acks the relay with what is durable. On restart every tenant\n"
         "resumes from its manifest. SIGTERM/SIGINT: flush, ack, exit 0.\n"
         "\n"
         "Streaming only: the initial copy of a new tenant is not implemented yet. A tenant is\n"
         "replicated from the changes streamed after the daemon first saw its shard (a new data_dir\n"
         "starts at the relay's current position); rows older than that are not on the edge.\n"
         "\n"
         "Settings (file: `key = value` lines; flags override the file):\n";
  const ApplyConfig defaults;
  for (const Setting& s : settings()) {
    out << "  " << s.key;
    const std::string_view unit(s.unit);
    if (!unit.empty() && unit != "bool" && unit != "list") out << " (" << unit << ")";
    const std::string d = s.get(defaults);
    out << "  [default: " << (d.empty() ? "none" : d) << "]\n      " << s.help << "\n";
  }
  return out.str();
}

}  // namespace edgeshard::apply::daemon

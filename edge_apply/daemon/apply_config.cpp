// edgeshard-apply's settings table, config-file reader and flag parser (the relay's
// relay_config.cpp is the model).
#include "edge_apply/daemon/apply_config.hpp"

#include "edge_apply/tenant_text.hpp"
#include "walsender_fanout/relay/protocol.hpp"

#include <cstdlib>
#include <set>
#include <sstream>

namespace edgeshard::apply::daemon {

namespace {

using ::edgeshard::daemon::boolean;
using ::edgeshard::daemon::integer;
using ::edgeshard::daemon::text;
using ::edgeshard::daemon::trim;

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

// Appends one `NAME=CONNINFO` primary (split at the first '=': a conninfo has its own).
void add_primary(ApplyConfig& c, const std::string& value) {
  const size_t eq = value.find('=');
  ShardPrimary p;
  if (eq != std::string::npos) {
    p.shard = trim(value.substr(0, eq));
    p.conninfo = trim(value.substr(eq + 1));
  }
  if (p.shard.empty() || p.conninfo.empty()) {
    throw ConfigError("invalid value for primary: \"" + value +
                      "\" (expected NAME=CONNINFO, e.g. s1=host=10.0.0.5 dbname=app user=edge)");
  }
  c.primaries.push_back(std::move(p));
}

// The settings table: every setting, its unit and what it does.
const ::edgeshard::daemon::SettingsTable<ApplyConfig>& settings() {
  static const ::edgeshard::daemon::SettingsTable<ApplyConfig> table = {
      text("name", "subscriber name at every relay (1-63 of A-Z a-z 0-9 _ . -); the relays keep its acked position",
           &ApplyConfig::name),
      text("data_dir", "directory of the replicas: tenants/<key>/ (required)", &ApplyConfig::data_dir),
      {"shard", "list",
       "one upstream per shard, NAME=HOST:PORT[,HOST:PORT...] (relays tried in order), or "
       "NAME=primary to stream from the shard's `primary` through this edge's own slot (no relay); "
       "repeat the setting for several shards (required)",
       add_shard,
       [](const ApplyConfig& c) {
         std::string out;
         for (const auto& s : c.shards) out += (out.empty() ? "" : " ") + s.shard + "=" + s.hosts;
         return out;
       }},
      {"primary", "list",
       "a shard's primary for initial copies, NAME=CONNINFO (libpq; a role that may SELECT the "
       "distributed tables); repeat per shard. Tenants without a replica are copied from it in one "
       "snapshot and published once the stream passes the copy's end; without it they are built "
       "from the stream alone",
       add_primary,
       [](const ApplyConfig& c) {
         std::string out;
         for (const auto& p : c.primaries) out += (out.empty() ? "" : " ") + p.shard + "=(conninfo)";
         return out;
       }},
      text("token", "token presented to the relays (or env EDGESHARD_RELAY_TOKEN)", &ApplyConfig::token),
      text("slot", "logical replication slot on the primaries of shards set to NAME=primary, created "
           "when missing (default: edgeshard_apply_<name>); one per edge",
           &ApplyConfig::slot),
      text("tenants",
           "'all', or comma-separated tenant keys (sent to the relays as the tenant filter); in a key, "
           "%XX stands for byte XX: write ',' as %2C, '%' as %25, a space at either end as %20, a "
           "newline as %0A",
           &ApplyConfig::tenants),
      integer("flush_interval_ms", "ms",
              "publish applied changes (one delta file and manifest per changed tenant) and ack this often",
              &ApplyConfig::flush_interval_ms),
      integer("flush_backlog_max_ms", "ms",
              "while received changes are queued (catching up), a due flush waits for the queue to "
              "drain, at most this long: fewer, larger deltas when behind, flush_interval_ms when not",
              &ApplyConfig::flush_backlog_max_ms),
      integer("position_flush_interval_ms", "ms",
              "tenants without changes get their own manifest's position moved at most this often "
              "(readers learn it every flush from the shard position files; this bounds what a restart "
              "streams again)",
              &ApplyConfig::position_flush_interval_ms),
      integer("compact_deltas", "", "merge a tenant's files into a new base once it has this many deltas",
              &ApplyConfig::compact_deltas),
      integer("max_open_tenants", "",
              "tenant writers kept open (mappings, block cache, descriptors); beyond it the least "
              "recently changed idle ones are closed after a flush and reopened by their next change",
              &ApplyConfig::max_open_tenants),
      boolean("compress", "LZ4 blocks in the replica files", &ApplyConfig::compress),
      integer("queue_bytes", "bytes",
              "frames received and not applied yet, at most (the shard streams wait beyond it)",
              &ApplyConfig::queue_bytes),
      integer("group_memory_bytes", "bytes",
              "frames of transactions still arriving held in memory per shard stream, at most; a "
              "transaction's frames beyond it are written to a file under data_dir/spill",
              &ApplyConfig::group_memory_bytes),
      integer("tenant_memory_bytes", "bytes",
              "a tenant's changes not yet published held in memory, at most; beyond it they are "
              "written to an unlisted replica file (a spill run) that the next publish lists with "
              "the rest, so readers still see each transaction whole",
              &ApplyConfig::tenant_memory_bytes),
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
  std::string item, key;
  std::istringstream in(tenants);
  while (std::getline(in, item, ',')) {
    item = trim(item);
    // validate() refused malformed escapes: a key here is the item unescaped.
    if (!item.empty() && unescape_tenant_text(item, key)) out.push_back(key);
  }
  return out;
}

std::string ApplyConfig::primary_of(std::string_view shard) const {
  for (const ShardPrimary& p : primaries) {
    if (p.shard == shard) return p.conninfo;
  }
  return {};
}

std::string ApplyConfig::slot_name() const {
  if (!slot.empty()) return slot;
  std::string out = "edgeshard_apply_";
  for (char ch : name) {
    const bool keep = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
    out += keep ? ch : (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch - 'A' + 'a') : '_';
  }
  return out.substr(0, 63);
}

void set_setting(ApplyConfig& config, const std::string& key, const std::string& value) {
  ::edgeshard::daemon::set_setting(settings(), config, key, value);
}

void read_config_file(const std::string& path, ApplyConfig& config) {
  ::edgeshard::daemon::read_config_file(settings(), path, config);
}

void validate(const ApplyConfig& c) {
  if (c.data_dir.empty()) throw ConfigError("data_dir is not set: set it in the file or with --data_dir");
  if (c.shards.empty()) throw ConfigError("no shard: set shard = NAME=HOST:PORT (once per shard)");
  std::set<std::string> names;
  for (const auto& s : c.shards) {
    if (!names.insert(s.shard).second) throw ConfigError("shard \"" + s.shard + "\" is listed twice");
  }
  if (c.shards.size() > 64) throw ConfigError("at most 64 shards per apply daemon");
  std::set<std::string> with_primary;
  for (const auto& p : c.primaries) {
    if (names.count(p.shard) == 0) {
      throw ConfigError("primary \"" + p.shard + "\" names no configured shard (add shard = " + p.shard + "=HOST:PORT)");
    }
    if (!with_primary.insert(p.shard).second) throw ConfigError("primary \"" + p.shard + "\" is listed twice");
  }
  if (!relay::proto::valid_name(c.name)) {
    throw ConfigError("invalid name \"" + c.name + "\": 1-63 characters of A-Z a-z 0-9 _ . -");
  }
  bool any_relay = false;
  for (const auto& s : c.shards) {
    any_relay |= !s.from_primary();
    if (s.from_primary() && c.primary_of(s.shard).empty()) {
      throw ConfigError("shard " + s.shard + " streams from its primary: set primary = " + s.shard + "=CONNINFO");
    }
  }
  for (char ch : c.slot) {
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_') || c.slot.size() > 63) {
      throw ConfigError("invalid slot \"" + c.slot + "\": 1-63 of a-z 0-9 _");
    }
  }
  if (any_relay && c.token.empty()) throw ConfigError("no token: set token or env EDGESHARD_RELAY_TOKEN");
  if (trim(c.tenants).empty()) throw ConfigError("tenants is empty: 'all' or a comma list of tenant keys");
  {
    std::string item, key;
    std::istringstream in(c.tenants);
    while (std::getline(in, item, ',')) {
      if (!unescape_tenant_text(trim(item), key)) {
        throw ConfigError("invalid tenant \"" + trim(item) + "\" in tenants: write a '%' as %25 (%XX escapes a byte)");
      }
    }
  }
  if (c.flush_interval_ms < 1 || c.flush_interval_ms > 60000) {
    throw ConfigError("flush_interval_ms must be between 1 and 60000");
  }
  if (c.flush_backlog_max_ms < 0 || c.flush_backlog_max_ms > 60000) {
    throw ConfigError("flush_backlog_max_ms must be between 0 and 60000");
  }
  if (c.position_flush_interval_ms < c.flush_interval_ms) {
    throw ConfigError("position_flush_interval_ms must be at least flush_interval_ms");
  }
  if (c.compact_deltas < 2) throw ConfigError("compact_deltas must be at least 2");
  if (c.max_open_tenants < 1) throw ConfigError("max_open_tenants must be at least 1");
  if (c.queue_bytes < (int64_t{1} << 20)) throw ConfigError("queue_bytes must be at least 1MB");
  if (c.group_memory_bytes < (int64_t{64} << 10)) throw ConfigError("group_memory_bytes must be at least 64kB");
  if (c.tenant_memory_bytes < (int64_t{64} << 10)) throw ConfigError("tenant_memory_bytes must be at least 64kB");
  if (c.connect_timeout_ms < 100) throw ConfigError("connect_timeout_ms must be at least 100");
  if (c.reconnect_min_ms < 1 || c.reconnect_max_ms < c.reconnect_min_ms) {
    throw ConfigError("reconnect_min_ms >= 1 and reconnect_max_ms >= reconnect_min_ms");
  }
}

CommandLine parse_command_line(int argc, const char* const* argv) {
  CommandLine cl;
  const ::edgeshard::daemon::Arguments args = ::edgeshard::daemon::parse_arguments(argc, argv);
  cl.help = args.help;
  if (cl.help) return cl;
  if (!args.config_file.empty()) read_config_file(args.config_file, cl.config);
  // Flags override the file: --shard flags replace its shard list rather than extend it.
  for (const auto& [k, v] : args.settings) {
    if (k == "shard") cl.config.shards.clear();
    if (k == "primary") cl.config.primaries.clear();
  }
  for (const auto& [k, v] : args.settings) set_setting(cl.config, k, v);
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
         "relay per shard (walsender_fanout/relay/PROTOCOL.md) or to the shard primary through a\n"
         "slot of its own (shard = NAME=primary), applies each transaction's frame group per tenant\n"
         "atomically, publishes a delta file and manifest per changed tenant every\n"
         "flush_interval_ms, and acks upstream what is durable. On restart every tenant\n"
         "resumes from its manifest. SIGTERM/SIGINT: flush, ack, exit 0.\n"
         "\n"
         "Initial copy: with `primary` set for a shard, tenants that have no replica yet (a new\n"
         "data_dir, a tenant added to `tenants`, a copy cut by a crash) are copied from that primary\n"
         "in one REPEATABLE READ snapshot while the stream is held, then the stream is applied on\n"
         "top (transactions the snapshot already shows are skipped) and the tenants are published\n"
         "once the stream passes the copy's end LSN. Without `primary`, a tenant is built from the\n"
         "stream alone (a new data_dir starts at the relay's current position).\n"
         "\n"
         "Settings (file: `key = value` lines; flags override the file):\n";
  out << ::edgeshard::daemon::settings_usage(settings());
  return out.str();
}

}  // namespace edgeshard::apply::daemon

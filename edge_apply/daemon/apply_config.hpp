// edgeshard-apply's configuration: one table of settings with defaults and descriptions (as
// edgeshard-relay's relay_config.hpp), read from a file of `key = value` lines ('#' comments)
// and overridden by `--key=value` flags (parsed by common/daemon/settings.hpp). `shard` may be
// given several times (one upstream relay per shard); --shard flags replace the file's shard
// list. Start-up errors throw ConfigError.
#pragma once

#include "common/daemon/settings.hpp"
#include "common/no_postgres.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::apply::daemon {

// A bad configuration file, flag or value.
using ConfigError = ::edgeshard::daemon::ConfigError;

// The upstream value that means "this shard's primary, through the edge's own slot".
inline constexpr std::string_view kPrimaryUpstream = "primary";

// One shard's upstream: `NAME=HOST:PORT[,HOST:PORT...]` (relays tried in order), or
// `NAME=primary` (the shard's `primary` conninfo, through the slot slot_name()).
struct ShardUpstream {
  std::string shard;  // shard name (edgeshard.shards.name), as the manifests record it
  std::string hosts;  // RelayClient host list, or kPrimaryUpstream

  // Whether the shard streams from its primary's slot rather than from a relay.
  bool from_primary() const noexcept { return hosts == kPrimaryUpstream; }
};

// One shard's primary for initial copies: `NAME=CONNINFO` (a libpq connection string).
struct ShardPrimary {
  std::string shard;
  std::string conninfo;
};

// Every setting of the apply daemon (the table in apply_config.cpp documents each one).
struct ApplyConfig {
  std::string name = "edge";
  std::string data_dir;
  std::vector<ShardUpstream> shards;
  std::vector<ShardPrimary> primaries;
  std::string token;
  std::string slot;  // slot on primaries streamed directly ("": edgeshard_apply_<name>)
  std::string tenants = "all";
  int64_t flush_interval_ms = 20;
  int64_t flush_backlog_max_ms = 1000;
  int64_t position_flush_interval_ms = 10000;
  int64_t compact_deltas = 8;
  int64_t max_open_tenants = 1000;
  bool compress = true;
  int64_t queue_bytes = int64_t{64} << 20;
  int64_t group_memory_bytes = int64_t{8} << 20;
  int64_t tenant_memory_bytes = int64_t{32} << 20;
  int64_t connect_timeout_ms = 5000;
  int64_t reconnect_min_ms = 100;
  int64_t reconnect_max_ms = 5000;
  std::string metrics_listen;
  std::string log_level = "info";

  // The tenant keys of `tenants` (empty for "all").
  std::vector<std::string> tenant_list() const;
  // The conninfo of shard's primary ("" when none is configured: no initial copy).
  std::string primary_of(std::string_view shard) const;
  // The slot name used on primaries streamed directly.
  std::string slot_name() const;
};

// What the command line asked for.
struct CommandLine {
  bool help = false;
  ApplyConfig config;
};

// Parses argv: --config FILE is read first, then every --key=value / --key value overrides it;
// the token falls back to env EDGESHARD_RELAY_TOKEN; then the whole configuration is validated.
// Throws ConfigError.
CommandLine parse_command_line(int argc, const char* const* argv);

// Reads `key = value` lines of file into config (values may be single-quoted, '' for a quote).
void read_config_file(const std::string& path, ApplyConfig& config);

// Sets one setting from its text (`shard` appends); throws ConfigError on an unknown key or a
// bad value.
void set_setting(ApplyConfig& config, const std::string& key, const std::string& value);

// Checks the settings together (required ones, ranges); throws ConfigError.
void validate(const ApplyConfig& config);

// The --help text, generated from the settings table.
std::string usage_text();

}  // namespace edgeshard::apply::daemon

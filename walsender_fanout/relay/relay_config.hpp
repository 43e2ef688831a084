// edgeshard-relay's configuration: one table of settings with defaults and descriptions, read
// from a file of `key = value` lines (postgresql.conf style, '#' comments) and overridden by
// `--key=value` flags (parsed by common/daemon/settings.hpp). Start-up errors throw ConfigError
// with a message naming the setting.
#pragma once

#include "common/daemon/settings.hpp"
#include "common/no_postgres.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace edgeshard::relay {

// A bad configuration file, flag or value.
using ConfigError = daemon::ConfigError;

// Every setting of the relay (the table in relay_config.cpp documents each one).
struct RelayConfig {
  std::string name = "relay";
  std::string data_dir;
  std::string listen = "127.0.0.1:5499";
  std::string metrics_listen;
  std::string upstream;
  std::string upstream_relay;
  std::string upstream_token;
  std::string slot = "edgeshard_relay";
  bool create_slot = true;
  std::string tenants;
  std::string compression = "lz4";
  int64_t frame_bytes = 65536;
  std::string token;
  std::string tokens_file;
  int64_t sync_interval_ms = 10;
  int64_t keepalive_interval_ms = 1000;
  int64_t send_timeout_ms = 60000;
  int64_t handshake_timeout_ms = 10000;
  int64_t receive_timeout_ms = 60000;
  int64_t upstream_timeout_ms = 60000;
  int64_t segment_bytes = int64_t{64} << 20;
  int64_t retention_min_bytes = int64_t{256} << 20;
  int64_t retention_max_bytes = int64_t{8} << 30;
  int64_t subscriber_expiry_s = 7 * 24 * 3600;
  int64_t window_bytes = int64_t{64} << 20;
  int64_t max_subscribers = 1000;
  int64_t reconnect_min_ms = 100;
  int64_t reconnect_max_ms = 10000;
  std::string status_conninfo;
  int64_t status_interval_ms = 5000;
  std::string log_level = "info";
};

// What the command line asked for.
struct CommandLine {
  bool help = false;
  RelayConfig config;
};

// Parses argv: --config FILE is read first, then every --key=value / --key value overrides it;
// then the whole configuration is validated. Throws ConfigError.
CommandLine parse_command_line(int argc, const char* const* argv);

// Reads `key = value` lines of file into config (values may be single-quoted, '' for a quote).
void read_config_file(const std::string& path, RelayConfig& config);

// Sets one setting from its text; throws ConfigError on an unknown key or a bad value.
void set_setting(RelayConfig& config, const std::string& key, const std::string& value);

// Checks the settings together (required ones, ranges, one upstream); throws ConfigError.
void validate(const RelayConfig& config);

// The --help text, generated from the settings table.
std::string usage_text();

// Reads a tokens file: one `name token` pair a line, '#' comments. Throws ConfigError.
std::vector<std::pair<std::string, std::string>> read_tokens_file(const std::string& path);

}  // namespace edgeshard::relay

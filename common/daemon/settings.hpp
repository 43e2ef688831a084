// The daemons' settings: a table of {key, unit, help, setter, getter} over a daemon's config
// struct, read from a file of `key = value` lines (postgresql.conf style: '#' comments, values
// may be single-quoted with '' for a quote) and overridden by `--key=value` / `--key value`
// flags; the --help text is generated from the same table. Errors throw ConfigError with a
// message naming the setting (and the file:line). Shared by edgeshard-relay and edgeshard-apply;
// not part of edgeshard.so.
#pragma once

#include "common/no_postgres.hpp"

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace edgeshard::daemon {

// A bad configuration file, flag or value.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One row of a settings table over Config.
template <typename Config>
struct Setting {
  const char* key;
  const char* unit;  // "", "ms", "s", "bytes", "bool", "list" (bool and list not shown in --help)
  const char* help;
  std::function<void(Config&, const std::string&)> set;
  std::function<std::string(const Config&)> get;
};

// A daemon's settings table.
template <typename Config>
using SettingsTable = std::vector<Setting<Config>>;

// Parses a whole decimal integer >= 0; with bytes, also a kB/MB/GB suffix. Throws ConfigError.
int64_t parse_integer(const std::string& key, const std::string& text, bool bytes);

// Parses on/off/true/false/yes/no/1/0. Throws ConfigError.
bool parse_bool(const std::string& key, const std::string& text);

// Removes blanks (space, tab, CR) at both ends.
std::string trim(const std::string& s);

// The error for a key no table row has.
ConfigError unknown_setting(const std::string& key);

// Reads the `key = value` lines of path, calling set for each; errors thrown by set come back
// prefixed with path:line. Throws ConfigError.
void read_config_lines(const std::string& path,
                       const std::function<void(const std::string&, const std::string&)>& set);

// What argv asked for, before any setting is applied.
struct Arguments {
  bool help = false;        // --help or -h (the rest of argv is ignored)
  std::string config_file;  // --config FILE
  std::vector<std::pair<std::string, std::string>> settings;  // --key=value in order, '-' -> '_'
};

// Splits argv into --help, --config and settings. Throws ConfigError.
Arguments parse_arguments(int argc, const char* const* argv);

// Appends one setting's --help entry (its key, unit, default and help line).
void append_usage(std::string& out, const char* key, const char* unit, const char* help,
                  const std::string& default_value);

// A string setting (a table row; integer and boolean below are the others).
template <typename Config>
Setting<Config> text(const char* key, const char* help, std::string Config::*field) {
  return {key, "", help, [field](Config& c, const std::string& v) { c.*field = v; },
          [field](const Config& c) { return c.*field; }};
}

// An integer setting (unit "bytes" accepts kB/MB/GB suffixes).
template <typename Config>
Setting<Config> integer(const char* key, const char* unit, const char* help,
                        int64_t Config::*field) {
  const bool bytes = std::string_view(unit) == "bytes";
  return {key, unit, help,
          [key, bytes, field](Config& c, const std::string& v) {
            c.*field = parse_integer(key, v, bytes);
          },
          [field](const Config& c) { return std::to_string(c.*field); }};
}

// A boolean setting (shown as on/off).
template <typename Config>
Setting<Config> boolean(const char* key, const char* help, bool Config::*field) {
  return {key, "bool", help,
          [key, field](Config& c, const std::string& v) { c.*field = parse_bool(key, v); },
          [field](const Config& c) { return std::string(c.*field ? "on" : "off"); }};
}

// Sets one setting from its text; throws ConfigError on an unknown key or a bad value.
template <typename Config>
void set_setting(const SettingsTable<Config>& table, Config& config, const std::string& key,
                 const std::string& value) {
  for (const Setting<Config>& s : table) {
    if (key == s.key) {
      s.set(config, value);
      return;
    }
  }
  throw unknown_setting(key);
}

// Reads a configuration file into config through the table. Throws ConfigError.
template <typename Config>
void read_config_file(const SettingsTable<Config>& table, const std::string& path, Config& config) {
  read_config_lines(path, [&](const std::string& key, const std::string& value) {
    set_setting(table, config, key, value);
  });
}

// The settings part of --help: every row with its default (a default-constructed Config's value).
template <typename Config>
std::string settings_usage(const SettingsTable<Config>& table) {
  const Config defaults{};
  std::string out;
  for (const Setting<Config>& s : table) append_usage(out, s.key, s.unit, s.help, s.get(defaults));
  return out;
}

}  // namespace edgeshard::daemon

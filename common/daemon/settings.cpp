// The daemons' shared settings parsing: values, config files, flags and --help entries.
#include "common/daemon/settings.hpp"

#include <charconv>
#include <cstdint>
#include <fstream>

namespace edgeshard::daemon {

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

bool parse_bool(const std::string& key, const std::string& text) {
  if (text == "on" || text == "true" || text == "1" || text == "yes") return true;
  if (text == "off" || text == "false" || text == "0" || text == "no") return false;
  throw ConfigError("invalid value for " + key + ": \"" + text + "\" (expected on or off)");
}

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

ConfigError unknown_setting(const std::string& key) {
  return ConfigError("unknown setting \"" + key + "\" (see --help)");
}

void read_config_lines(const std::string& path,
                       const std::function<void(const std::string&, const std::string&)>& set) {
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
      set(key, value);
    } catch (const ConfigError& e) {
      throw ConfigError(where + ": " + e.what());
    }
  }
}

Arguments parse_arguments(int argc, const char* const* argv) {
  Arguments out;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      out.help = true;
      return out;
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
    if (arg == "config") out.config_file = value;
    else out.settings.emplace_back(arg, value);
  }
  return out;
}

void append_usage(std::string& out, const char* key, const char* unit, const char* help,
                  const std::string& default_value) {
  out += "  ";
  out += key;
  const std::string_view u(unit);
  if (!u.empty() && u != "bool" && u != "list") out += " (" + std::string(u) + ")";
  out += "  [default: " + (default_value.empty() ? std::string("none") : default_value) + "]\n      ";
  out += help;
  out += '\n';
}

}  // namespace edgeshard::daemon

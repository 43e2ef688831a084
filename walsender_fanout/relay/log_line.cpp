// key=value log lines.
#include "walsender_fanout/relay/log_line.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace edgeshard::relay {

namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

// The level's name in a log line.
const char* level_name(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarning: return "warning";
    case Level::kError: return "error";
  }
  return "info";
}

// Appends value, quoted when it needs to be.
void append_value(std::string& line, std::string_view value) {
  bool plain = !value.empty();
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      plain = false;
      break;
    }
  }
  if (plain) {
    line += value;
    return;
  }
  line += '"';
  for (char c : value) {
    if (c == '"' || c == '\\') {
      line += '\\';
      line += c;
    } else if (c == '\n') {
      line += "\\n";
    } else if (c == '\t') {
      line += "\\t";
    } else if (c == '\r') {
      line += "\\r";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
      // Any other control byte as \xHH: the line stays one line and the value is recoverable.
      static constexpr char kHex[] = "0123456789abcdef";
      line += "\\x";
      line += kHex[static_cast<unsigned char>(c) >> 4];
      line += kHex[c & 0x0F];
    } else {
      line += c;
    }
  }
  line += '"';
}

}  // namespace

void set_log_level(Level level) noexcept { g_level.store(static_cast<int>(level)); }

bool parse_log_level(std::string_view text, Level& out) noexcept {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarning, Level::kError}) {
    if (text == level_name(l)) {
      out = l;
      return true;
    }
  }
  return false;
}

void log(Level level, std::string_view event, std::initializer_list<LogField> fields) {
  if (static_cast<int>(level) < g_level.load(std::memory_order_relaxed)) return;
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
  const std::time_t secs = static_cast<std::time_t>(ms.count() / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[64];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms.count() % 1000));
  std::string line = "ts=";
  line += ts;
  line += " level=";
  line += level_name(level);
  line += " event=";
  append_value(line, event);
  for (const LogField& f : fields) {
    line += ' ';
    line += f.first;
    line += '=';
    append_value(line, f.second);
  }
  line += '\n';
  // One write per line; a short write to a pipe of this size does not happen in practice, and a
  // failed log write has nowhere to be reported.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace edgeshard::relay

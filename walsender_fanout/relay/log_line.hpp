// One-line key=value logs of the daemons: "ts=2026-11-24T10:00:00.123Z level=info
// event=upstream_connected slot=edgeshard_relay lsn=0/16B3748". One write(2) per line, so lines of
// several threads never interleave.
#pragma once

#include "common/no_postgres.hpp"

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace edgeshard::relay {

// Severity of a log line.
enum class Level { kDebug, kInfo, kWarning, kError };

// Lines below this level are not written (set once at start-up, before threads start).
void set_log_level(Level level) noexcept;

// Parses "debug", "info", "warning", "error"; false on anything else.
bool parse_log_level(std::string_view text, Level& out) noexcept;

// A field of a log line.
using LogField = std::pair<std::string_view, std::string>;

// Writes one line to standard error: time, level, event, then the fields. Values with spaces,
// quotes, '=' or control characters are double-quoted with \" and \\ escapes, newline, tab and
// carriage return as \n \t \r, other control bytes as \xHH: a value never breaks the line.
void log(Level level, std::string_view event, std::initializer_list<LogField> fields = {});

}  // namespace edgeshard::relay

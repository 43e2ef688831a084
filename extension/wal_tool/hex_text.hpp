// Hexadecimal fields of the repository's text: WAL file names (upper case), LSNs (either case),
// checksums in backup manifests (lower case).
#pragma once

#include "common/no_postgres.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace edgeshard::wal_tool {

// Which letters a hex field may use.
enum class HexCase { kUpper, kLower, kEither };

// Parses 1 to max_digits (at most 16) hex digits of the given case; nullopt for anything else.
inline std::optional<uint64_t> parse_hex(std::string_view text, size_t max_digits, HexCase hex_case) {
  if (text.empty() || text.size() > max_digits || max_digits > 16) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    uint64_t digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint64_t>(c - '0');
    } else if (hex_case != HexCase::kLower && c >= 'A' && c <= 'F') {
      digit = static_cast<uint64_t>(c - 'A' + 10);
    } else if (hex_case != HexCase::kUpper && c >= 'a' && c <= 'f') {
      digit = static_cast<uint64_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    value = value * 16 + digit;
  }
  return value;
}

}  // namespace edgeshard::wal_tool

// PostgreSQL's textual LSN form ("16/B374D848": two hex numbers, high and low 32 bits), shared by
// the tools and daemons.
#pragma once

#include "common/no_postgres.hpp"

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace edgeshard {

// An LSN as PostgreSQL prints it (X/X, upper-case hex).
inline std::string format_lsn(uint64_t lsn) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32),
                static_cast<unsigned>(lsn & 0xFFFFFFFFu));
  return buf;
}

// Parses X/X (each part 1-8 hex digits); false on anything else.
inline bool parse_lsn(std::string_view text, uint64_t& out) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash > 8 || text.size() - slash - 1 == 0 ||
      text.size() - slash - 1 > 8) {
    return false;
  }
  uint32_t hi = 0;
  uint32_t lo = 0;
  const char* end = text.data() + text.size();
  auto r1 = std::from_chars(text.data(), text.data() + slash, hi, 16);
  auto r2 = std::from_chars(text.data() + slash + 1, end, lo, 16);
  if (r1.ec != std::errc() || r1.ptr != text.data() + slash || r2.ec != std::errc() ||
      r2.ptr != end) {
    return false;
  }
  out = (uint64_t{hi} << 32) | lo;
  return true;
}

}  // namespace edgeshard

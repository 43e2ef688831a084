// WAL file names and LSNs: see wal_segment.hpp.
#include "extension/wal_tool/wal_segment.hpp"

#include "extension/wal_tool/hex_text.hpp"

#include <cinttypes>
#include <cstdio>

namespace edgeshard::wal_tool {

namespace {

// Parses exactly 8 upper-case hex digits (a WAL file name's field).
std::optional<uint32_t> parse_hex8(std::string_view text) {
  if (text.size() != 8) return std::nullopt;
  const auto v = parse_hex(text, 8, HexCase::kUpper);
  return v ? std::optional<uint32_t>(static_cast<uint32_t>(*v)) : std::nullopt;
}

// Parses 1 to 8 hex digits of either case (an LSN's half).
std::optional<uint32_t> parse_hex_word(std::string_view text) {
  const auto v = parse_hex(text, 8, HexCase::kEither);
  return v ? std::optional<uint32_t>(static_cast<uint32_t>(*v)) : std::nullopt;
}

// Segments in one 4 GiB "xlogid".
uint64_t segments_per_id(uint64_t segment_size) { return 0x100000000ull / segment_size; }

}  // namespace

std::optional<Segment> parse_segment_name(std::string_view name, uint64_t segment_size) {
  if (name.size() != 24) return std::nullopt;
  const auto tl = parse_hex8(name.substr(0, 8));
  const auto hi = parse_hex8(name.substr(8, 8));
  const auto lo = parse_hex8(name.substr(16, 8));
  if (!tl || !hi || !lo || *tl == 0) return std::nullopt;
  if (*lo >= segments_per_id(segment_size)) return std::nullopt;
  return Segment{*tl, *hi * segments_per_id(segment_size) + *lo};
}

std::optional<Segment> segment_of_wal_file(std::string_view name, uint64_t segment_size) {
  if (name.size() < 24) return std::nullopt;
  const std::string_view rest = name.substr(24);
  const bool known = rest.empty() || rest == ".partial" ||
                     (rest.size() == 16 && rest.substr(9) == ".backup" && rest[0] == '.' &&
                      parse_hex8(rest.substr(1, 8)).has_value());
  if (!known) return std::nullopt;
  return parse_segment_name(name.substr(0, 24), segment_size);
}

std::string segment_name(const Segment& segment, uint64_t segment_size) {
  const uint64_t per_id = segments_per_id(segment_size);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08X%08X%08X", segment.timeline,
                static_cast<uint32_t>(segment.segno / per_id),
                static_cast<uint32_t>(segment.segno % per_id));
  return buf;
}

Segment next_segment(const Segment& segment) noexcept {
  return Segment{segment.timeline, segment.segno + 1};
}

std::optional<uint64_t> parse_lsn(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto hi = parse_hex_word(text.substr(0, slash));
  const auto lo = parse_hex_word(text.substr(slash + 1));
  if (!hi || !lo) return std::nullopt;
  return (static_cast<uint64_t>(*hi) << 32) | *lo;
}

std::string format_lsn(uint64_t lsn) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<uint32_t>(lsn >> 32),
                static_cast<uint32_t>(lsn));
  return buf;
}

Segment segment_of_lsn(uint32_t timeline, uint64_t lsn, uint64_t segment_size) noexcept {
  return Segment{timeline, lsn / segment_size};
}

}  // namespace edgeshard::wal_tool

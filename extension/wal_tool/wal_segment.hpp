// WAL file names and LSNs as edgeshard-wal reasons about them: a segment name is
// TTTTTTTTXXXXXXXXYYYYYYYY (timeline, then the segment number split into segments-per-4-GiB
// "xlogid" and the rest), an LSN is written "X/Y". Only arithmetic: nothing here touches files.
#pragma once

#include "common/no_postgres.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace edgeshard::wal_tool {

// PostgreSQL's default WAL segment size (the archive holds clusters initialised with it).
inline constexpr uint64_t kDefaultSegmentSize = 16ull << 20;

// One WAL segment: its timeline and segment number.
struct Segment {
  uint32_t timeline = 0;
  uint64_t segno = 0;

  // Orders by timeline, then segment number.
  auto operator<=>(const Segment&) const = default;
};

// Parses a 24-hex-digit segment name (upper case, as PostgreSQL writes it); nullopt otherwise.
std::optional<Segment> parse_segment_name(std::string_view name,
                                          uint64_t segment_size = kDefaultSegmentSize);
// The segment a WAL file name starts with: a segment, "<seg>.partial" or "<seg>.<off>.backup";
// nullopt for anything else (timeline history files included).
std::optional<Segment> segment_of_wal_file(std::string_view name,
                                           uint64_t segment_size = kDefaultSegmentSize);
// The 24-character name of a segment.
std::string segment_name(const Segment& segment, uint64_t segment_size = kDefaultSegmentSize);
// The segment after this one on the same timeline.
Segment next_segment(const Segment& segment) noexcept;

// Parses "X/Y" (hex halves) into an LSN; nullopt when malformed.
std::optional<uint64_t> parse_lsn(std::string_view text);
// Formats an LSN as "X/Y".
std::string format_lsn(uint64_t lsn);
// The segment holding lsn on timeline.
Segment segment_of_lsn(uint32_t timeline, uint64_t lsn,
                       uint64_t segment_size = kDefaultSegmentSize) noexcept;

}  // namespace edgeshard::wal_tool

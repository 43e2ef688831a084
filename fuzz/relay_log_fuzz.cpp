// libFuzzer target for the relay's frame log (walsender_fanout/relay/frame_log.hpp, layout in
// walsender_fanout/relay/LOG_FORMAT.md): whatever segment files it finds, FrameLog::open() must
// either refuse them (LogOpenError) or recover a log that reads back consistently -- never crash,
// read out of bounds, leak, or hit undefined behaviour. The input is cut into segment files at
// every "ESRL" magic after its start (so a seed is a concatenation of segments, at most
// kMaxSegments), each named after the number and base LSN in its own header, and tried twice:
//   1. exactly as given (header and record checks);
//   2. with the segments renumbered consecutively and every header and record checksum
//      recomputed, so mutations get past the checksums and reach the length, order and recovery
//      rules.
// When open() succeeds, the log is read with cursors (all of it, and from a middle key), cut in
// the middle with truncate_to(), appended to, and reopened; every step must agree with the first
// read. Build and run: see fuzz/README.md.
#include "walsender_fanout/relay/frame_log.hpp"

#include "common/frame_codec.hpp"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace relay = edgeshard::relay;
using edgeshard::frame::load_u32;
using edgeshard::frame::load_u64;
using edgeshard::frame::store_u32;
using edgeshard::frame::store_u64;

constexpr size_t kSegmentHeaderSize = 32;
constexpr size_t kRecordHeaderSize = 24;
constexpr size_t kMaxSegments = 4;
constexpr uint8_t kMagic[4] = {'E', 'S', 'R', 'L'};
// Small segments and a dense index, so appends seal segments and seeks use the index.
constexpr relay::FrameLog::Options kOptions{1024, 3};

// Stops the run with a finding when an invariant of the log does not hold, naming its line.
void require(bool ok, int line = __builtin_LINE()) {
  if (ok) return;
  std::fprintf(stderr, "relay_log_fuzz: invariant at line %d does not hold\n", line);
  __builtin_trap();
}

// One record as read back.
struct Rec {
  uint64_t lsn;
  std::vector<uint8_t> frame;

  // Whether two records are equal.
  bool operator==(const Rec&) const = default;
};

// The directory the log is written into: one per process, on tmpfs when there is one (open()
// fsyncs), emptied before every input.
const fs::path& work_dir() {
  static const fs::path dir = [] {
    std::string base = fs::exists("/dev/shm") ? "/dev/shm" : fs::temp_directory_path().string();
    std::string tmpl = base + "/relay_log_fuzz_XXXXXX";
    require(::mkdtemp(tmpl.data()) != nullptr);
    return fs::path(tmpl);
  }();
  static const bool cleanup = [] {
    // libFuzzer ends with exit(): remove the directory then.
    return std::atexit([] {
             std::error_code ec;
             fs::remove_all(work_dir(), ec);
           }) == 0;
  }();
  (void)cleanup;
  return dir;
}

// Removes every file of the work directory.
void clear_dir() {
  for (const auto& e : fs::directory_iterator(work_dir())) fs::remove_all(e.path());
}

// Cuts the input at every segment magic after its start.
std::vector<std::vector<uint8_t>> split(std::span<const uint8_t> in) {
  std::vector<std::vector<uint8_t>> out;
  size_t begin = 0;
  for (size_t i = 1; i + sizeof kMagic <= in.size() && out.size() + 1 < kMaxSegments; ++i) {
    if (std::memcmp(in.data() + i, kMagic, sizeof kMagic) == 0) {
      out.emplace_back(in.begin() + static_cast<std::ptrdiff_t>(begin),
                       in.begin() + static_cast<std::ptrdiff_t>(i));
      begin = i;
    }
  }
  out.emplace_back(in.begin() + static_cast<std::ptrdiff_t>(begin), in.end());
  return out;
}

// Renumbers segment i as first + i and recomputes its header and record checksums as far as its
// record lengths fit (the same checksums as frame_log.cpp, written out again on purpose).
void fix_segment(std::vector<uint8_t>& seg, uint32_t number) {
  if (seg.size() < kSegmentHeaderSize) return;
  store_u32(seg.data() + 8, number);
  store_u64(seg.data() + 24, XXH3_64bits(seg.data(), 24));
  size_t offset = kSegmentHeaderSize;
  while (seg.size() - offset >= kRecordHeaderSize) {
    uint8_t* h = seg.data() + offset;
    const uint32_t length = load_u32(h);
    if (length == 0 || seg.size() - offset - kRecordHeaderSize < length) return;
    uint8_t context[12];
    store_u32(context, number);
    store_u64(context + 4, offset);
    XXH3_state_t state;
    XXH3_64bits_reset(&state);
    XXH3_64bits_update(&state, context, sizeof context);
    XXH3_64bits_update(&state, h, 16);
    XXH3_64bits_update(&state, h + kRecordHeaderSize, length);
    store_u64(h + 16, XXH3_64bits_digest(&state));
    offset += kRecordHeaderSize + length;
  }
}

// Writes the segments into the work directory, each named after its header's number and base LSN
// (or, when too short for a header, after its index).
void write_segments(const std::vector<std::vector<uint8_t>>& segments) {
  clear_dir();
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::vector<uint8_t>& seg = segments[i];
    const bool has_header = seg.size() >= kSegmentHeaderSize;
    const uint32_t number = has_header ? load_u32(seg.data() + 8) : static_cast<uint32_t>(i);
    const uint64_t base = has_header ? load_u64(seg.data() + 16) : 0;
    char name[40];
    std::snprintf(name, sizeof name, "%016llx-%08x.log", static_cast<unsigned long long>(base),
                  number);
    std::ofstream out(work_dir() / name, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(seg.data()), static_cast<std::streamsize>(seg.size()));
    require(out.good());
  }
}

// Reads every record from start with a fresh cursor; the status must end as kEnd.
std::vector<Rec> read_from(const relay::FrameLog& log, uint64_t start) {
  std::vector<Rec> out;
  relay::FrameLog::Cursor cursor;
  require(log.open_cursor(start, cursor).ok());
  require(cursor.position() <= log.durable().records);
  relay::FrameLog::Record rec;
  relay::LogStatus st;
  while ((st = cursor.next(rec)).ok()) {
    require(rec.frame.size() >= 1 && rec.frame.size() <= relay::kMaxRecordBytes);
    require(rec.lsn >= start);
    out.push_back({rec.lsn, rec.frame});
  }
  require(st.error == relay::LogError::kEnd);
  require(cursor.position() == log.durable().records);
  return out;
}

// Checks a log that open() accepted, then cuts, extends and reopens it.
void exercise(relay::FrameLog log) {
  const relay::FrameLog::Position written = log.written();
  const relay::FrameLog::Position oldest = log.oldest();
  require(log.durable().records == written.records && log.durable().lsn == written.lsn);
  require(oldest.records == 0);  // counted from the oldest record found
  const std::vector<Rec> all = read_from(log, log.oldest_lsn());
  require(all.size() == written.records);
  require(all.empty() == (log.segment_count() == 0));
  for (size_t i = 1; i < all.size(); ++i) require(all[i].lsn >= all[i - 1].lsn);
  if (!all.empty()) {
    require(all.front().lsn == log.oldest_lsn() && all.back().lsn == written.lsn);
    // From a middle key: exactly the records with that key or above.
    const uint64_t mid = all[all.size() / 2].lsn;
    const std::vector<Rec> tail = read_from(log, mid);
    size_t first = 0;
    while (all[first].lsn < mid) ++first;
    require(tail.size() == all.size() - first);
    for (size_t i = 0; i < tail.size(); ++i) require(tail[i] == all[first + i]);
  }

  // Cut to the middle, then go on appending; a cursor that has read part of what is kept goes on
  // across the cut.
  const size_t keep = all.size() / 2;
  const relay::FrameLog::Position cut{keep > 0 ? all[keep - 1].lsn : 0, keep};
  relay::FrameLog::Cursor reader;
  relay::FrameLog::Record rec;
  require(log.open_cursor(log.oldest_lsn(), reader).ok());
  for (size_t i = 0; i < keep / 2; ++i) require(reader.next(rec).ok() && rec.frame == all[i].frame);
  require(log.truncate_to(cut).ok());
  require(log.written().records == keep && log.durable().records == keep);
  std::vector<Rec> expect(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(keep));
  // Keys from the last kept one on, and never below the reader's start key (a cursor skips
  // records below it, even when the cut emptied the log).
  const uint64_t base = keep > 0 ? cut.lsn : (all.empty() ? 0 : all.front().lsn);
  for (uint64_t i = 0; i < 3; ++i) {
    // Growing keys (equal ones at the top of the range), frames big enough to seal a segment.
    uint64_t key = base;
    if (__builtin_add_overflow(base, 1 + i * 400, &key)) key = base;
    Rec r{key, std::vector<uint8_t>(static_cast<size_t>(300 + 100 * i), static_cast<uint8_t>(i))};
    require(log.append(r.lsn, r.frame).ok());
    expect.push_back(std::move(r));
  }
  require(log.sync().ok());
  const uint64_t start = expect.front().lsn;
  require(read_from(log, start) == expect);
  for (size_t i = keep / 2; i < expect.size(); ++i) {
    require(reader.next(rec).ok() && rec.lsn == expect[i].lsn && rec.frame == expect[i].frame);
    require(reader.position() == i + 1);
  }
  require(reader.next(rec).error == relay::LogError::kEnd);
  reader = relay::FrameLog::Cursor();  // it keeps the log, and its lock, alive

  // The cut and the appends survive a reopen.
  { relay::FrameLog closing = std::move(log); }
  relay::FrameLog again = relay::FrameLog::open(work_dir(), kOptions);
  require(again.written().records == expect.size());
  require(read_from(again, start) == expect);
}

// Opens the log the segments make, and exercises it if open() accepts it.
void try_segments(const std::vector<std::vector<uint8_t>>& segments) {
  write_segments(segments);
  try {
    relay::FrameLog log = relay::FrameLog::open(work_dir(), kOptions);
    exercise(std::move(log));
  } catch (const relay::LogOpenError& e) {
    const relay::LogError error = e.status().error;
    require(error == relay::LogError::kCorrupt || error == relay::LogError::kIo);
    require(!e.status().message.empty());
  }
}

}  // namespace

// libFuzzer's entry point: one input.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::vector<uint8_t>> segments = split(std::span<const uint8_t>(data, size));
  try_segments(segments);
  const uint32_t first =
      segments[0].size() >= kSegmentHeaderSize ? load_u32(segments[0].data() + 8) : 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    fix_segment(segments[i], first + static_cast<uint32_t>(i));
  }
  try_segments(segments);
  return 0;
}

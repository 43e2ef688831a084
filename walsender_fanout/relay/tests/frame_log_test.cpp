// Unit tests for the relay's segmented frame log: round trips across segments, cursors, reopen,
// crash recovery of a torn tail, corruption reports, key order, retention, truncate_to(), and the
// checked-in golden log (walsender_fanout/relay/testdata/). After an intended format change,
// regenerate the golden log with
//   EDGESHARD_REGENERATE_TESTDATA=1 build/edgeshard_relay_tests --gtest_filter='GoldenLog.*'
// and rebuild the fuzzer's seeds in fuzz/corpus/relay_log/ from it (see fuzz/README.md).
#include "common/posix_file.hpp"
#include "common/testing/temp_dir.hpp"
#include "walsender_fanout/relay/frame_log.hpp"

#include "common/frame_reader.hpp"
#include "common/frame_writer.hpp"

#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace edgeshard::relay {
namespace {

namespace fs = std::filesystem;

using edgeshard::testing_support::TempDir;

// An expected record.
struct Expected {
  uint64_t lsn;
  std::vector<uint8_t> frame;
};

// Frame bytes for record i: lengths vary, contents depend on i.
std::vector<uint8_t> make_frame(int i) {
  std::vector<uint8_t> f(static_cast<size_t>(40 + (i * 37) % 200));
  for (size_t k = 0; k < f.size(); ++k) f[k] = static_cast<uint8_t>(i * 31 + static_cast<int>(k));
  return f;
}

// n records starting at record `first`; three consecutive records share one LSN.
std::vector<Expected> make_records(int n, int first = 0) {
  std::vector<Expected> out;
  for (int i = first; i < first + n; ++i) {
    out.push_back({1000 + static_cast<uint64_t>(i / 3) * 8, make_frame(i)});
  }
  return out;
}

// Appends every record, failing the test on an error.
void append_all(FrameLog& log, const std::vector<Expected>& records) {
  for (const Expected& r : records) {
    LogStatus st = log.append(r.lsn, r.frame);
    ASSERT_TRUE(st.ok()) << st.message;
  }
}

// Small segments, so a few hundred records span several.
constexpr FrameLog::Options kSmall{4096, 4};

// Writes `records` to a new log in dir, syncs and closes it.
void write_log(const fs::path& dir, const std::vector<Expected>& records) {
  FrameLog log = FrameLog::open(dir, kSmall);
  append_all(log, records);
  ASSERT_TRUE(log.sync().ok());
}

// Every record a cursor from start yields until kEnd; other statuses land in *last.
std::vector<Expected> read_from(const FrameLog& log, uint64_t start, LogStatus* last = nullptr) {
  std::vector<Expected> out;
  FrameLog::Cursor cursor;
  LogStatus st = log.open_cursor(start, cursor);
  if (st.ok()) {
    FrameLog::Record rec;
    while ((st = cursor.next(rec)).ok()) out.push_back({rec.lsn, rec.frame});
  }
  if (last != nullptr) *last = st;
  return out;
}

// Records of `all` with lsn >= start.
std::vector<Expected> suffix(const std::vector<Expected>& all, uint64_t start) {
  std::vector<Expected> out;
  for (const Expected& r : all) {
    if (r.lsn >= start) out.push_back(r);
  }
  return out;
}

// Whether two record lists are equal (gtest prints only a summary on failure).
::testing::AssertionResult same(const std::vector<Expected>& got,
                                const std::vector<Expected>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << "got " << got.size() << " records, want " << want.size();
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].lsn != want[i].lsn || got[i].frame != want[i].frame) {
      return ::testing::AssertionFailure()
             << "record " << i << " differs (lsn " << got[i].lsn << " vs " << want[i].lsn << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

// Segment files of dir, in name (= number) order.
std::vector<fs::path> segment_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".log") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().string().substr(17) < b.filename().string().substr(17);
  });
  return out;
}

// XORs one byte of a file.
void flip_byte(const fs::path& file, uint64_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
  ASSERT_TRUE(f.good());
}

// Appends bytes to a file.
void append_bytes(const fs::path& file, const std::vector<uint8_t>& bytes) {
  std::ofstream f(file, std::ios::binary | std::ios::app);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good());
}
constexpr uint64_t kSegmentHeader = 32;
constexpr uint64_t kRecordHeader = 24;

TEST(FrameLog, RoundTripAcrossSegments) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  EXPECT_EQ(log.written().records, 0u);
  EXPECT_EQ(log.segment_count(), 0u);
  const auto records = make_records(300);
  append_all(log, records);
  EXPECT_EQ(log.written().records, 300u);
  EXPECT_EQ(log.written().lsn, records.back().lsn);
  EXPECT_EQ(log.durable().records, 0u);
  ASSERT_TRUE(log.sync().ok());
  EXPECT_EQ(log.durable().records, 300u);
  EXPECT_EQ(log.durable().lsn, records.back().lsn);
  EXPECT_GE(log.segment_count(), 5u);
  EXPECT_EQ(segment_files(dir.path()).size(), log.segment_count());
  EXPECT_EQ(log.oldest_lsn(), 1000u);
  LogStatus last;
  EXPECT_TRUE(same(read_from(log, 1000, &last), records));
  EXPECT_EQ(last.error, LogError::kEnd);
  // Segment file names carry their first record's LSN and their number.
  EXPECT_EQ(segment_files(dir.path()).front().filename(), "00000000000003e8-00000000.log");
}

TEST(FrameLog, EqualLsnsStayInOneSegment) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(log.append(500, make_frame(i)).ok());
  EXPECT_EQ(log.segment_count(), 1u);  // grew past segment_bytes rather than split LSN 500
  ASSERT_TRUE(log.append(501, make_frame(1)).ok());
  EXPECT_EQ(log.segment_count(), 2u);
  ASSERT_TRUE(log.sync().ok());
  EXPECT_EQ(read_from(log, 500).size(), 101u);
  EXPECT_EQ(read_from(log, 501).size(), 1u);
}

TEST(FrameLog, CursorNeverPassesDurable) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto records = make_records(60);
  append_all(log, std::vector<Expected>(records.begin(), records.begin() + 40));
  FrameLog::Cursor cursor;
  ASSERT_TRUE(log.open_cursor(1000, cursor).ok());
  FrameLog::Record rec;
  EXPECT_EQ(cursor.next(rec).error, LogError::kEnd);
  ASSERT_TRUE(log.sync().ok());
  append_all(log, std::vector<Expected>(records.begin() + 40, records.end()));
  std::vector<Expected> got;
  LogStatus st;
  while ((st = cursor.next(rec)).ok()) got.push_back({rec.lsn, rec.frame});
  EXPECT_EQ(st.error, LogError::kEnd);
  EXPECT_TRUE(same(got, std::vector<Expected>(records.begin(), records.begin() + 40)));
  ASSERT_TRUE(log.sync().ok());
  while ((st = cursor.next(rec)).ok()) got.push_back({rec.lsn, rec.frame});
  EXPECT_TRUE(same(got, records));
}

TEST(FrameLog, CursorFromTheMiddle) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto records = make_records(300);
  append_all(log, records);
  ASSERT_TRUE(log.sync().ok());
  // Every LSN of the log, and values between LSNs, around index entries and segment boundaries.
  for (uint64_t start = 1000; start <= records.back().lsn + 1; start += 3) {
    SCOPED_TRACE(start);
    EXPECT_TRUE(same(read_from(log, start), suffix(records, start)));
  }
}

TEST(FrameLog, CursorBeforeOldestAndBeyondEnd) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto records = make_records(50);
  append_all(log, records);
  ASSERT_TRUE(log.sync().ok());
  FrameLog::Cursor cursor;
  EXPECT_EQ(log.open_cursor(999, cursor).error, LogError::kBehindRetention);

  const uint64_t end = records.back().lsn;
  ASSERT_TRUE(log.open_cursor(end + 100, cursor).ok());
  FrameLog::Record rec;
  EXPECT_EQ(cursor.next(rec).error, LogError::kEnd);
  ASSERT_TRUE(log.append(end + 50, make_frame(1)).ok());
  ASSERT_TRUE(log.append(end + 100, make_frame(2)).ok());
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(log.append(end + 200 + i, make_frame(i)).ok());
  ASSERT_TRUE(log.sync().ok());
  ASSERT_TRUE(cursor.next(rec).ok());
  EXPECT_EQ(rec.lsn, end + 100);
  EXPECT_EQ(rec.frame, make_frame(2));
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(cursor.next(rec).ok());
    EXPECT_EQ(rec.lsn, end + 200 + i);
  }
  EXPECT_EQ(cursor.next(rec).error, LogError::kEnd);
}

TEST(FrameLog, ReopenGivesTheSameRecords) {
  TempDir dir;
  const auto records = make_records(200);
  write_log(dir.path(), records);
  {
    FrameLog log = FrameLog::open(dir.path(), kSmall);
    EXPECT_EQ(log.written().records, 200u);
    EXPECT_EQ(log.durable().records, 200u);
    EXPECT_EQ(log.durable().lsn, records.back().lsn);
    EXPECT_TRUE(same(read_from(log, 1000), records));
    EXPECT_TRUE(same(read_from(log, 1200), suffix(records, 1200)));
    // The order is kept across a restart, and appending goes on.
    EXPECT_EQ(log.append(records.back().lsn - 1, make_frame(0)).error, LogError::kLsnDecreasing);
    const auto more = make_records(100, 200);
    append_all(log, more);
    ASSERT_TRUE(log.sync().ok());
  }
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  auto all = records;
  const auto more = make_records(100, 200);
  all.insert(all.end(), more.begin(), more.end());
  EXPECT_TRUE(same(read_from(log, 1000), all));
}

TEST(FrameLog, SecondOpenOfTheSameDirectoryIsRefused) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  EXPECT_THROW(FrameLog::open(dir.path(), kSmall), LogOpenError);
}

// Opens a log of `n` records in dir, damages its last segment with `damage`, reopens, and checks
// exactly the first `keep` records come back and that appending still works.
void check_torn_tail(int n, int keep, const std::function<void(const fs::path&)>& damage) {
  TempDir dir;
  const auto records = make_records(n);
  write_log(dir.path(), records);
  damage(segment_files(dir.path()).back());
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const std::vector<Expected> kept(records.begin(), records.begin() + keep);
  EXPECT_EQ(log.written().records, static_cast<uint64_t>(keep));
  EXPECT_EQ(log.durable().lsn, kept.back().lsn);
  EXPECT_TRUE(same(read_from(log, 0 + 1000), kept));
  ASSERT_TRUE(log.append(kept.back().lsn + 1, make_frame(7)).ok());
  ASSERT_TRUE(log.sync().ok());
  { FrameLog closing = std::move(log); }
  FrameLog reopened = FrameLog::open(dir.path(), kSmall);
  auto got = read_from(reopened, 1000);
  ASSERT_EQ(got.size(), static_cast<size_t>(keep + 1));
  EXPECT_EQ(got.back().frame, make_frame(7));
}

TEST(FrameLog, TornTailTruncatedMidFrame) {
  check_torn_tail(100, 99, [](const fs::path& f) { fs::resize_file(f, fs::file_size(f) - 5); });
}

TEST(FrameLog, TornTailTruncatedMidHeader) {
  const uint64_t last_len = make_frame(99).size();
  check_torn_tail(100, 99, [&](const fs::path& f) {
    fs::resize_file(f, fs::file_size(f) - last_len - kRecordHeader + 10);
  });
}

TEST(FrameLog, TornTailWithGarbage) {
  check_torn_tail(100, 100,
                  [](const fs::path& f) { append_bytes(f, std::vector<uint8_t>(300, 0xab)); });
  check_torn_tail(100, 100, [](const fs::path& f) {
    append_bytes(f, std::vector<uint8_t>(4096, 0));  // a zero-filled extension
  });
}

TEST(FrameLog, TornTailWithFlippedLastRecord) {
  check_torn_tail(100, 99, [](const fs::path& f) { flip_byte(f, fs::file_size(f) - 3); });
}

TEST(FrameLog, TornCreationOfLastSegmentIsRemoved) {
  TempDir dir;
  const auto records = make_records(100);
  write_log(dir.path(), records);
  const auto files = segment_files(dir.path());
  fs::resize_file(files.back(), 10);  // even its header is incomplete
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  EXPECT_EQ(log.segment_count(), files.size() - 1);
  EXPECT_FALSE(fs::exists(files.back()));
  const auto got = read_from(log, 1000);
  ASSERT_LT(got.size(), records.size());
  EXPECT_TRUE(same(got, std::vector<Expected>(records.begin(), records.begin() + got.size())));
}

TEST(FrameLog, FlippedByteInSealedSegmentFailsOpen) {
  TempDir dir;
  write_log(dir.path(), make_records(200));
  const auto files = segment_files(dir.path());
  ASSERT_GE(files.size(), 3u);
  // Second record of the second segment: offset = header + first record.
  const uint64_t second = kSegmentHeader + kRecordHeader;
  std::ifstream in(files[1], std::ios::binary);
  uint8_t len[4];
  in.seekg(static_cast<std::streamoff>(kSegmentHeader));
  in.read(reinterpret_cast<char*>(len), 4);
  const uint64_t offset = second + (len[0] | (len[1] << 8) | (len[2] << 16));
  flip_byte(files[1], offset + kRecordHeader + 3);
  try {
    FrameLog::open(dir.path(), kSmall);
    FAIL() << "open accepted a damaged sealed segment";
  } catch (const LogOpenError& e) {
    EXPECT_EQ(e.status().error, LogError::kCorrupt);
    const std::string what = e.what();
    EXPECT_NE(what.find(files[1].filename().string()), std::string::npos) << what;
    EXPECT_NE(what.find("offset " + std::to_string(offset)), std::string::npos) << what;
  }
}

TEST(FrameLog, FlippedSegmentHeaderFailsOpen) {
  TempDir dir;
  write_log(dir.path(), make_records(200));
  const auto files = segment_files(dir.path());
  flip_byte(files[0], 17);  // inside the base LSN
  try {
    FrameLog::open(dir.path(), kSmall);
    FAIL() << "open accepted a damaged segment header";
  } catch (const LogOpenError& e) {
    EXPECT_EQ(e.status().error, LogError::kCorrupt);
    EXPECT_NE(std::string(e.what()).find(files[0].filename().string()), std::string::npos);
  }
}

TEST(FrameLog, CorruptionSeenByACursorIsReportedNotReturned) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto records = make_records(200);
  append_all(log, records);
  ASSERT_TRUE(log.sync().ok());
  const auto files = segment_files(dir.path());
  flip_byte(files[0], kSegmentHeader + kRecordHeader + 1);  // first record's frame
  LogStatus st;
  const auto got = read_from(log, 1000, &st);
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(st.error, LogError::kCorrupt);
  EXPECT_NE(st.message.find(files[0].filename().string()), std::string::npos) << st.message;
  EXPECT_NE(st.message.find("offset 32"), std::string::npos) << st.message;
}

TEST(FrameLog, DecreasingLsnIsRefused) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  ASSERT_TRUE(log.append(100, make_frame(1)).ok());
  ASSERT_TRUE(log.append(100, make_frame(2)).ok());
  LogStatus st = log.append(99, make_frame(3));
  EXPECT_EQ(st.error, LogError::kLsnDecreasing);
  EXPECT_FALSE(st.message.empty());
  EXPECT_EQ(log.written().records, 2u);
  EXPECT_EQ(log.append(100, {}).error, LogError::kBadRecord);
  ASSERT_TRUE(log.append(101, make_frame(4)).ok());
  ASSERT_TRUE(log.sync().ok());
  EXPECT_EQ(read_from(log, 0 + 100).size(), 3u);
}

TEST(FrameLog, RetentionDropsOnlyWholeOldSegments) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto records = make_records(300);
  append_all(log, records);
  ASSERT_TRUE(log.sync().ok());
  const size_t before = log.segment_count();
  ASSERT_GE(before, 5u);

  // A cursor inside the first segment, which is about to be dropped.
  FrameLog::Cursor slow;
  ASSERT_TRUE(log.open_cursor(1000, slow).ok());
  FrameLog::Record rec;
  ASSERT_TRUE(slow.next(rec).ok());

  const uint64_t cut = records[150].lsn;
  size_t dropped = 0;
  ASSERT_TRUE(log.drop_segments_before(cut, &dropped).ok());
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(log.segment_count(), before - dropped);
  EXPECT_EQ(segment_files(dir.path()).size(), log.segment_count());
  const uint64_t oldest = log.oldest_lsn();
  EXPECT_GT(oldest, 1000u);
  EXPECT_LE(oldest, cut);  // the segment holding `cut` is kept whole
  // Every record at or above the oldest retained LSN is still there, nothing at or above cut lost.
  EXPECT_TRUE(same(read_from(log, oldest), suffix(records, oldest)));
  FrameLog::Cursor cursor;
  EXPECT_EQ(log.open_cursor(oldest - 1, cursor).error, LogError::kBehindRetention);
  EXPECT_EQ(log.open_cursor(1000, cursor).error, LogError::kBehindRetention);
  // The slow cursor finishes the segment it holds, then is told it fell behind.
  LogStatus st;
  while ((st = slow.next(rec)).ok()) EXPECT_LT(rec.lsn, oldest);
  EXPECT_EQ(st.error, LogError::kBehindRetention);

  // Never the active segment.
  ASSERT_TRUE(log.drop_segments_before(UINT64_MAX, &dropped).ok());
  EXPECT_EQ(log.segment_count(), 1u);
  EXPECT_TRUE(same(read_from(log, log.oldest_lsn()), suffix(records, log.oldest_lsn())));
  EXPECT_EQ(read_from(log, log.oldest_lsn()).back().lsn, records.back().lsn);
}

TEST(FrameLog, EnforceMaxBytes) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto records = make_records(400);
  append_all(log, records);
  ASSERT_TRUE(log.sync().ok());
  const uint64_t total = log.total_bytes();
  ASSERT_GT(total, 3 * 4096u);
  size_t dropped = 0;
  ASSERT_TRUE(log.enforce_max_bytes(total, &dropped).ok());
  EXPECT_EQ(dropped, 0u);
  ASSERT_TRUE(log.enforce_max_bytes(2 * 4096, &dropped).ok());
  EXPECT_GT(dropped, 0u);
  EXPECT_LE(log.total_bytes(), 2 * 4096u);
  EXPECT_TRUE(same(read_from(log, log.oldest_lsn()), suffix(records, log.oldest_lsn())));
  ASSERT_TRUE(log.enforce_max_bytes(0, &dropped).ok());
  EXPECT_EQ(log.segment_count(), 1u);
  // Retention survives a restart.
  const uint64_t oldest = log.oldest_lsn();
  { FrameLog closing = std::move(log); }
  FrameLog again = FrameLog::open(dir.path(), kSmall);
  EXPECT_EQ(again.oldest_lsn(), oldest);
  EXPECT_TRUE(same(read_from(again, oldest), suffix(records, oldest)));
}

TEST(FrameLog, ConcurrentReaderSeesOnlyDurableRecordsInOrder) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto records = make_records(3000);
  FrameLog::Cursor cursor;
  ASSERT_TRUE(log.open_cursor(0, cursor).ok());
  std::atomic<bool> done{false};
  std::vector<Expected> got;
  bool beyond_durable = false;
  std::thread reader([&] {
    FrameLog::Record rec;
    while (true) {
      const bool finished = done.load();
      LogStatus st;
      while ((st = cursor.next(rec)).ok()) {
        got.push_back({rec.lsn, rec.frame});
        if (got.size() > log.durable().records) beyond_durable = true;
      }
      if (st.error != LogError::kEnd || finished) break;
    }
  });
  // No ASSERT while the reader runs: it must be joined whatever happens.
  bool writes_ok = true;
  for (size_t i = 0; i < records.size() && writes_ok; ++i) {
    writes_ok = log.append(records[i].lsn, records[i].frame).ok();
    if (writes_ok && i % 7 == 0) writes_ok = log.sync().ok();
    if (writes_ok && i % 500 == 0) writes_ok = log.drop_segments_before(0).ok();  // takes the lock
  }
  if (writes_ok) writes_ok = log.sync().ok();
  done.store(true);
  reader.join();
  ASSERT_TRUE(writes_ok);
  EXPECT_FALSE(beyond_durable);
  EXPECT_TRUE(same(got, records));
}

TEST(FrameLog, BadOptionsThrow) {
  TempDir dir;
  EXPECT_THROW(FrameLog::open(dir.path(), FrameLog::Options{10, 4}), std::invalid_argument);
  EXPECT_THROW(FrameLog::open(dir.path(), FrameLog::Options{4096, 0}), std::invalid_argument);
}

// --- truncate_to() and Cursor::position() --------------------------------------------------------

// Every record of the log, from its oldest retained key on.
std::vector<Expected> read_all(const FrameLog& log, LogStatus* last = nullptr) {
  return read_from(log, log.oldest_lsn(), last);
}

// The position right after the first n records of `records` (n = 0: an empty log's).
FrameLog::Position after(const std::vector<Expected>& records, size_t n) {
  return n == 0 ? FrameLog::Position{} : FrameLog::Position{records[n - 1].lsn, n};
}

// The first n records.
std::vector<Expected> prefix(const std::vector<Expected>& records, size_t n) {
  return std::vector<Expected>(records.begin(), records.begin() + static_cast<std::ptrdiff_t>(n));
}

// Appends records one by one to log and returns the indexes of those that opened a segment.
std::vector<size_t> append_watching_segments(FrameLog& log, const std::vector<Expected>& records) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < records.size(); ++i) {
    const size_t before = log.segment_count();
    EXPECT_TRUE(log.append(records[i].lsn, records[i].frame).ok());
    if (log.segment_count() != before) starts.push_back(i);
  }
  return starts;
}

// Records appended after a cut: keys from `key` on, frames unlike any of make_records().
std::vector<Expected> after_cut_records(int n, uint64_t key) {
  std::vector<Expected> out;
  for (int i = 0; i < n; ++i) {
    std::vector<uint8_t> f(static_cast<size_t>(30 + (i * 53) % 170),
                           static_cast<uint8_t>(0xc0 + i));
    out.push_back({key + static_cast<uint64_t>(i / 2) * 8, std::move(f)});
  }
  return out;
}

// Sum of the sizes of dir's segment files.
uint64_t bytes_on_disk(const fs::path& dir) {
  uint64_t total = 0;
  for (const fs::path& f : segment_files(dir)) total += fs::file_size(f);
  return total;
}

// Writes `total` records, cuts to the first `keep`, checks the log, appends more, reads everything
// back, and checks the cut survives a reopen.
void check_truncate(size_t total, size_t keep) {
  TempDir dir;
  const auto records = make_records(static_cast<int>(total));
  std::vector<Expected> all;
  {
    FrameLog log = FrameLog::open(dir.path(), kSmall);
    append_all(log, records);
    ASSERT_TRUE(log.sync().ok());
    const FrameLog::Position cut = after(records, keep);
    LogStatus st = log.truncate_to(cut);
    ASSERT_TRUE(st.ok()) << st.message;
    EXPECT_EQ(log.written().records, keep);
    EXPECT_EQ(log.written().lsn, cut.lsn);
    EXPECT_EQ(log.durable().records, keep);
    EXPECT_EQ(log.durable().lsn, cut.lsn);
    EXPECT_EQ(segment_files(dir.path()).size(), log.segment_count());
    EXPECT_EQ(bytes_on_disk(dir.path()), log.total_bytes());
    uint64_t record_bytes = 0;
    for (size_t i = 0; i < keep; ++i) record_bytes += kRecordHeader + records[i].frame.size();
    EXPECT_EQ(log.total_bytes(), record_bytes + kSegmentHeader * log.segment_count());
    LogStatus last;
    EXPECT_TRUE(same(read_all(log, &last), prefix(records, keep)));
    EXPECT_EQ(last.error, LogError::kEnd);
    // The log goes on from the cut: order is checked against the last kept key.
    if (keep > 0) {
      EXPECT_EQ(log.append(cut.lsn - 1, make_frame(0)).error, LogError::kLsnDecreasing);
    }
    const auto more = after_cut_records(150, keep > 0 ? cut.lsn : 5);
    append_all(log, more);
    ASSERT_TRUE(log.sync().ok());
    all = prefix(records, keep);
    all.insert(all.end(), more.begin(), more.end());
    EXPECT_TRUE(same(read_all(log), all));
    EXPECT_EQ(log.written().records, all.size());
    // Every start key still finds its suffix (the sparse index of the cut segment was trimmed).
    for (size_t i = 0; i < all.size(); i += 7) {
      SCOPED_TRACE(i);
      EXPECT_TRUE(same(read_from(log, all[i].lsn), suffix(all, all[i].lsn)));
    }
  }
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  EXPECT_EQ(log.written().records, all.size());
  EXPECT_TRUE(same(read_all(log), all));
}

TEST(FrameLogTruncate, InTheMiddleOfASegment) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto starts = append_watching_segments(log, make_records(300));
  ASSERT_GE(starts.size(), 5u);
  // In the second segment, off the sparse index (every 4 records) and inside a run of one key.
  const size_t keep = starts[1] + 6;
  ASSERT_LT(keep + 1, starts[2]);
  check_truncate(300, keep);
  check_truncate(300, starts[1] + 4);  // right after an index entry's record
  check_truncate(300, starts[0] + 1);  // only the very first record left
  check_truncate(300, 299);            // the last record only
}

TEST(FrameLogTruncate, ExactlyAtASegmentBoundary) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto starts = append_watching_segments(log, make_records(300));
  ASSERT_GE(starts.size(), 5u);
  check_truncate(300, starts[2]);          // the third segment and all later ones go
  check_truncate(300, starts.back());      // only the active segment goes
  check_truncate(300, starts.back() + 1);  // the active segment keeps one record
}

TEST(FrameLogTruncate, AcrossSeveralSegments) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto starts = append_watching_segments(log, make_records(600));
  ASSERT_GE(starts.size(), 8u);
  check_truncate(600, starts[1] + 3);  // most segments removed, the second one cut
}

TEST(FrameLogTruncate, EverythingAndRestartNumbering) {
  check_truncate(300, 0);
  // A cut right to oldest(): the segment numbers start again where the removed ones did.
  TempDir dir;
  const auto records = make_records(120);
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  append_all(log, records);
  EXPECT_EQ(log.oldest().records, 0u);
  ASSERT_TRUE(log.truncate_to(log.oldest()).ok());  // not even synced
  EXPECT_EQ(log.segment_count(), 0u);
  EXPECT_TRUE(segment_files(dir.path()).empty());
  EXPECT_EQ(log.written().records, 0u);
  EXPECT_EQ(log.durable().records, 0u);
  ASSERT_TRUE(log.sync().ok());
  append_all(log, records);
  ASSERT_TRUE(log.sync().ok());
  EXPECT_EQ(segment_files(dir.path()).front().filename(), "00000000000003e8-00000000.log");
}

TEST(FrameLogTruncate, AfterRetentionAndBelowOldestIsRefused) {
  TempDir dir;
  const auto records = make_records(300);
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto starts = append_watching_segments(log, records);
  ASSERT_TRUE(log.sync().ok());
  ASSERT_TRUE(log.drop_segments_before(records[starts[2]].lsn).ok());
  const FrameLog::Position oldest = log.oldest();
  EXPECT_EQ(oldest.records, starts[2]);
  EXPECT_EQ(oldest.lsn, 0u);
  LogStatus st = log.truncate_to(after(records, starts[2] - 1));
  EXPECT_EQ(st.error, LogError::kBadRecord);
  EXPECT_NE(st.message.find("below the oldest retained record"), std::string::npos) << st.message;
  // At the oldest retained record: the log is emptied, the ordinals go on from there.
  ASSERT_TRUE(log.truncate_to(oldest).ok());
  EXPECT_EQ(log.segment_count(), 0u);
  EXPECT_EQ(log.written().records, starts[2]);
  EXPECT_EQ(log.durable().records, starts[2]);
  EXPECT_EQ(log.oldest().records, starts[2]);
  const auto more = after_cut_records(80, 5000);
  append_all(log, more);
  ASSERT_TRUE(log.sync().ok());
  EXPECT_EQ(log.written().records, starts[2] + more.size());
  EXPECT_TRUE(same(read_from(log, 5000), more));
  {
    FrameLog::Cursor cursor;  // a cursor keeps the log (and its lock) alive: close it first
    ASSERT_TRUE(log.open_cursor(5000, cursor).ok());
    EXPECT_EQ(cursor.position(), starts[2]);
  }
  { FrameLog closing = std::move(log); }
  FrameLog again = FrameLog::open(dir.path(), kSmall);
  EXPECT_EQ(again.written().records, more.size());  // counted from the oldest record again
  EXPECT_TRUE(same(read_from(again, 5000), more));
}

TEST(FrameLogTruncate, KeepEqualToWrittenChangesNothing) {
  TempDir dir;
  const auto records = make_records(200);
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  append_all(log, prefix(records, 150));
  ASSERT_TRUE(log.sync().ok());
  append_all(log, std::vector<Expected>(records.begin() + 150, records.end()));  // not synced
  const uint64_t bytes = bytes_on_disk(dir.path());
  const size_t segments = log.segment_count();
  ASSERT_TRUE(log.truncate_to(log.written()).ok());
  EXPECT_EQ(log.written().records, 200u);
  EXPECT_EQ(log.durable().records, 150u);  // a no-op does not sync
  EXPECT_EQ(bytes_on_disk(dir.path()), bytes);
  EXPECT_EQ(log.segment_count(), segments);
  ASSERT_TRUE(log.sync().ok());
  EXPECT_TRUE(same(read_all(log), records));
  // An empty log: its written() is its oldest().
  TempDir empty;
  FrameLog none = FrameLog::open(empty.path(), kSmall);
  EXPECT_TRUE(none.truncate_to(none.written()).ok());
  EXPECT_TRUE(none.truncate_to(none.oldest()).ok());
  EXPECT_EQ(none.truncate_to(FrameLog::Position{1000, 1}).error, LogError::kBadRecord);
}

TEST(FrameLogTruncate, PositionsTheLogDoesNotHoldAreRefused) {
  TempDir dir;
  const auto records = make_records(100);
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  append_all(log, records);
  ASSERT_TRUE(log.sync().ok());
  LogStatus st = log.truncate_to(FrameLog::Position{records.back().lsn, 101});
  EXPECT_EQ(st.error, LogError::kBadRecord);
  EXPECT_NE(st.message.find("beyond the last written record"), std::string::npos) << st.message;
  // The key must be that of the last kept record (a stale or made-up position is refused).
  st = log.truncate_to(FrameLog::Position{records[49].lsn + 1, 50});
  EXPECT_EQ(st.error, LogError::kBadRecord);
  EXPECT_NE(st.message.find("that record's lsn is"), std::string::npos) << st.message;
  EXPECT_EQ(log.truncate_to(FrameLog::Position{records.back().lsn - 8, 100}).error,
            LogError::kBadRecord);
  // Refusals change nothing and the log still takes writes.
  EXPECT_EQ(log.written().records, 100u);
  EXPECT_TRUE(same(read_all(log), records));
  ASSERT_TRUE(log.truncate_to(after(records, 50)).ok());
  EXPECT_TRUE(same(read_all(log), prefix(records, 50)));
}

TEST(FrameLogTruncate, ToDurableDropsOnlyWhatWasNotSynced) {
  TempDir dir;
  const auto records = make_records(300);
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  append_all(log, prefix(records, 100));
  ASSERT_TRUE(log.sync().ok());
  const size_t segments = log.segment_count();
  // A subscriber caught up with everything durable, and one opened at a key not yet durable.
  FrameLog::Cursor caught_up;
  ASSERT_TRUE(log.open_cursor(log.oldest_lsn(), caught_up).ok());
  FrameLog::Record rec;
  for (size_t i = 0; i < 100; ++i) {
    ASSERT_TRUE(caught_up.next(rec).ok());
    EXPECT_EQ(caught_up.position(), i + 1);
  }
  EXPECT_EQ(caught_up.next(rec).error, LogError::kEnd);
  // The upstream sends more, including whole new segments, then the connection drops.
  append_all(log, std::vector<Expected>(records.begin() + 100, records.end()));
  ASSERT_GT(log.segment_count(), segments + 1);
  // Record 99 (durable) shares its key with records 100 and 101; record 102 starts the next key.
  ASSERT_EQ(records[101].lsn, records[99].lsn);
  ASSERT_GT(records[102].lsn, records[101].lsn);
  FrameLog::Cursor ahead;
  ASSERT_TRUE(log.open_cursor(records[102].lsn, ahead).ok());
  EXPECT_LE(ahead.position(), 100u);  // the seek stops at durable()
  ASSERT_TRUE(log.truncate_to(log.durable()).ok());
  EXPECT_EQ(log.written().records, 100u);
  EXPECT_EQ(log.segment_count(), segments);
  EXPECT_EQ(caught_up.next(rec).error, LogError::kEnd);
  EXPECT_EQ(ahead.next(rec).error, LogError::kEnd);
  // After reconnecting, the upstream resends from the durable key, here with other frames.
  const auto resent = after_cut_records(200, records[102].lsn);
  append_all(log, resent);
  ASSERT_TRUE(log.sync().ok());
  std::vector<Expected> got;
  while (caught_up.next(rec).ok()) {
    got.push_back({rec.lsn, rec.frame});
    EXPECT_EQ(caught_up.position(), 100 + got.size());
  }
  EXPECT_TRUE(same(got, resent));
  got.clear();
  while (ahead.next(rec).ok()) got.push_back({rec.lsn, rec.frame});
  EXPECT_TRUE(same(got, resent));
  EXPECT_EQ(ahead.position(), 300u);
  auto all = prefix(records, 100);
  all.insert(all.end(), resent.begin(), resent.end());
  EXPECT_TRUE(same(read_all(log), all));
}

// A cursor opened at the first record of a segment that truncate_to() then removes whole, fed
// with `more` (keys from the removed segment's first key on) once the cut is done.
void check_cursor_at_removed_segment(
    const std::function<std::vector<Expected>(uint64_t, uint64_t)>& make_more) {
  TempDir dir;
  const auto records = make_records(300);
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const auto starts = append_watching_segments(log, records);
  ASSERT_GE(starts.size(), 5u);
  ASSERT_TRUE(log.sync().ok());
  const size_t keep = starts[3];
  FrameLog::Cursor cursor;
  ASSERT_TRUE(log.open_cursor(records[keep].lsn, cursor).ok());
  EXPECT_EQ(cursor.position(), keep);
  ASSERT_TRUE(log.truncate_to(after(records, keep)).ok());
  EXPECT_EQ(log.segment_count(), 3u);
  FrameLog::Record rec;
  EXPECT_EQ(cursor.next(rec).error, LogError::kEnd);
  const auto more = make_more(records[keep - 1].lsn, records[keep].lsn);
  append_all(log, more);
  ASSERT_TRUE(log.sync().ok());
  std::vector<Expected> got;
  LogStatus st;
  while ((st = cursor.next(rec)).ok()) got.push_back({rec.lsn, rec.frame});
  EXPECT_EQ(st.error, LogError::kEnd) << st.message;
  EXPECT_TRUE(same(got, suffix(more, records[keep].lsn)));
}

TEST(FrameLogTruncate, CursorAtARemovedSegmentFollowsTheCutSegment) {
  // The first new records share the last kept key, so they go on in the cut segment.
  check_cursor_at_removed_segment(
      [](uint64_t last_kept, uint64_t) { return after_cut_records(40, last_kept); });
}

TEST(FrameLogTruncate, CursorAtARemovedSegmentFollowsANewSegment) {
  // A first new record too big for the cut segment opens a new one.
  check_cursor_at_removed_segment([](uint64_t, uint64_t first_removed) {
    auto more = after_cut_records(40, first_removed + 8);
    more.insert(more.begin(), Expected{first_removed, std::vector<uint8_t>(5000, 0x77)});
    return more;
  });
}

TEST(FrameLogTruncate, ConcurrentReaderAcrossCutsToDurable) {
  // The relay's pattern: runs of records, a sync after most runs, and after some a dropped
  // upstream connection (truncate_to(durable())). A reader must see exactly the synced runs.
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  FrameLog::Cursor cursor;
  ASSERT_TRUE(log.open_cursor(0, cursor).ok());
  std::atomic<bool> done{false};
  std::vector<Expected> got;
  LogStatus reader_status;
  std::thread reader([&] {
    FrameLog::Record rec;
    while (true) {
      const bool finished = done.load();
      LogStatus st;
      while ((st = cursor.next(rec)).ok()) {
        got.push_back({rec.lsn, rec.frame});
        if (cursor.position() != got.size()) reader_status = {LogError::kCorrupt, "position"};
      }
      if (st.error != LogError::kEnd || finished) {
        if (st.error != LogError::kEnd) reader_status = st;
        break;
      }
    }
  });
  // No ASSERT while the reader runs: it must be joined whatever happens.
  std::vector<Expected> synced;
  bool writes_ok = true;
  uint64_t key = 100;
  for (int run = 0; run < 400 && writes_ok; ++run) {
    const auto records = make_records(1 + run % 13, run * 13);
    std::vector<Expected> pending;
    for (const Expected& r : records) {
      pending.push_back({key, r.frame});
      writes_ok = writes_ok && log.append(key, r.frame).ok();
      key += (run % 2 == 0) ? 0 : 8;  // runs of one key, and runs of growing keys
    }
    key += 8;
    if (run % 5 == 3) {
      writes_ok = writes_ok && log.truncate_to(log.durable()).ok();
    } else {
      writes_ok = writes_ok && log.sync().ok();
      synced.insert(synced.end(), pending.begin(), pending.end());
    }
  }
  done.store(true);
  reader.join();
  ASSERT_TRUE(writes_ok);
  EXPECT_TRUE(reader_status.ok()) << reader_status.message;
  EXPECT_TRUE(same(got, synced));
  EXPECT_TRUE(same(read_all(log), synced));
  EXPECT_EQ(segment_files(dir.path()).size(), log.segment_count());
}

TEST(FrameLogCursor, PositionCountsRecords) {
  TempDir dir;
  const auto records = make_records(300);
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  FrameLog::Cursor closed;
  EXPECT_EQ(closed.position(), 0u);
  append_all(log, records);
  ASSERT_TRUE(log.sync().ok());
  FrameLog::Cursor cursor;
  ASSERT_TRUE(log.open_cursor(log.oldest_lsn(), cursor).ok());
  EXPECT_EQ(cursor.position(), 0u);
  FrameLog::Record rec;
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_TRUE(cursor.next(rec).ok());
    EXPECT_EQ(cursor.position(), i + 1);
  }
  EXPECT_EQ(cursor.next(rec).error, LogError::kEnd);
  EXPECT_EQ(cursor.position(), records.size());
  // From the middle: skipped records count too, so position() - 1 is the returned one's ordinal.
  for (size_t first : {size_t{3}, size_t{40}, size_t{151}, size_t{299}}) {
    SCOPED_TRACE(first);
    const uint64_t start = records[first].lsn;
    ASSERT_TRUE(log.open_cursor(start, cursor).ok());
    const size_t want =
        static_cast<size_t>(std::find_if(records.begin(), records.end(),
                                         [&](const Expected& r) { return r.lsn >= start; }) -
                            records.begin());
    EXPECT_LE(cursor.position(), want);
    ASSERT_TRUE(cursor.next(rec).ok());
    EXPECT_EQ(cursor.position(), want + 1);
    // Position{rec.lsn, position()} is a position truncate_to() accepts.
    EXPECT_EQ(rec.lsn, after(records, want + 1).lsn);
  }
  // Beyond the end: the next record to come.
  ASSERT_TRUE(log.open_cursor(records.back().lsn + 1, cursor).ok());
  EXPECT_EQ(cursor.position(), records.size());
}

TEST(FrameLogTruncate, StartUpCutAfterTheLastMarker) {
  // What the relay does at start-up: find the last marker with a cursor, cut what follows it.
  TempDir dir;
  const std::vector<uint8_t> marker = {'K'};
  std::vector<Expected> records;
  for (int txn = 0; txn < 40; ++txn) {
    const uint64_t commit = 2000 + static_cast<uint64_t>(txn) * 16;
    for (int f = 0; f < 1 + txn % 4; ++f) records.push_back({commit, make_frame(txn * 4 + f)});
    if (txn % 3 == 2) records.push_back({commit + 8, marker});
  }
  size_t markers_end = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i].frame == marker) markers_end = i + 1;
  }
  ASSERT_LT(markers_end, records.size());
  write_log(dir.path(), records);  // as if the process died after writing more than it synced
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  FrameLog::Position last_marker = log.oldest();
  {
    FrameLog::Cursor cursor;
    ASSERT_TRUE(log.open_cursor(log.oldest_lsn(), cursor).ok());
    FrameLog::Record rec;
    while (cursor.next(rec).ok()) {
      if (rec.frame == marker) last_marker = FrameLog::Position{rec.lsn, cursor.position()};
    }
  }
  EXPECT_EQ(last_marker.records, markers_end);
  ASSERT_TRUE(log.truncate_to(last_marker).ok());
  EXPECT_TRUE(same(read_all(log), prefix(records, markers_end)));
  { FrameLog closing = std::move(log); }
  FrameLog again = FrameLog::open(dir.path(), kSmall);
  EXPECT_EQ(again.durable().records, markers_end);
  EXPECT_EQ(again.durable().lsn, records[markers_end - 1].lsn);
}

// --- Golden log (walsender_fanout/relay/testdata/) -----------------------------------------------

// Options the golden log was written with: two segments of three records each.
constexpr FrameLog::Options kGoldenOptions{640, 2};
constexpr uint32_t kOrders = 16384;
constexpr int64_t kCommitTime = 1714564800123456;  // 2024-05-01T12:00:00.123456Z

// One record of the golden log and what it stands for (for testdata/README.md).
struct GoldenRecord {
  uint64_t key;
  std::vector<uint8_t> frame;
  std::string description;
};

// An int8 value in its binary send format (big-endian).
void value_int8(frame::Writer& w, int64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(static_cast<uint64_t>(v) >> (56 - 8 * i));
  w.value_binary(b, sizeof b);
}

// Seals w's payload into a frame.
std::vector<uint8_t> seal(frame::Writer& w, const frame::Fields& f) {
  const std::span<const uint8_t> s = w.seal(f);
  return std::vector<uint8_t>(s.begin(), s.end());
}

// A one-frame tenant transaction: BEGIN, one INSERT into public.orders, COMMIT.
std::vector<uint8_t> txn_frame(uint32_t xid, uint64_t commit, std::string_view tenant, int64_t id) {
  frame::Writer w(frame::Compression::kNone);
  w.begin(xid, commit, kCommitTime);
  w.insert_begin(kOrders, 2);
  value_int8(w, 42);
  value_int8(w, id);
  w.commit(commit, commit + 0x38, kCommitTime);
  frame::Fields f;
  f.tenant_key = tenant;
  f.last = true;
  f.xid = xid;
  f.first_lsn = f.last_lsn = commit - 0x100;
  f.commit_lsn = commit;
  f.commit_time_us = kCommitTime;
  return seal(w, f);
}

// A KEEPALIVE frame at lsn: the relay's transaction-boundary marker.
std::vector<uint8_t> marker_frame(uint64_t lsn) {
  frame::Writer w;
  w.keepalive(lsn, kCommitTime + 1);
  frame::Fields f;
  f.many_tenants = true;
  f.last = true;
  f.first_lsn = f.last_lsn = lsn;
  return seal(w, f);
}

// A many-tenants TRUNCATE transaction.
std::vector<uint8_t> truncate_frame(uint32_t xid, uint64_t commit) {
  frame::Writer w(frame::Compression::kNone);
  w.begin(xid, commit, kCommitTime);
  const uint32_t relids[] = {kOrders};
  w.truncate(relids, false, false);
  w.commit(commit, commit + 0x38, kCommitTime);
  frame::Fields f;
  f.many_tenants = true;
  f.last = true;
  f.xid = xid;
  f.first_lsn = f.last_lsn = commit - 0x100;
  f.commit_lsn = commit;
  f.commit_time_us = kCommitTime;
  return seal(w, f);
}

// The golden log's records, in order.
std::vector<GoldenRecord> golden_records() {
  return {
      {0x16B3900, txn_frame(750, 0x16B3900, "42", 1),
       "transaction 750 (commit 0/16B3900), tenant \"42\": BEGIN, INSERT, COMMIT"},
      {0x16B3900, txn_frame(750, 0x16B3900, "acme", 2),
       "transaction 750 (commit 0/16B3900), tenant \"acme\": BEGIN, INSERT, COMMIT"},
      {0x16B3938, marker_frame(0x16B3938), "marker: KEEPALIVE at 0/16B3938"},
      {0x16B4000, truncate_frame(751, 0x16B4000),
       "transaction 751 (commit 0/16B4000), many tenants: BEGIN, TRUNCATE, COMMIT"},
      {0x16B4038, marker_frame(0x16B4038), "marker: KEEPALIVE at 0/16B4038"},
      {0x16B5000, txn_frame(752, 0x16B5000, "42", 3),
       "transaction 752 (commit 0/16B5000), tenant \"42\", with no marker after it: the relay "
       "cuts it at start-up"},
  };
}

// Reads a whole file ("" if it cannot be read).
std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Writes a whole file.
void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

// testdata/README.md, generated from the records above so it cannot drift.
std::string golden_readme(const std::vector<fs::path>& segments) {
  std::string s =
      "# Relay log test vectors\n\n"
      "A relay log in the format of `walsender_fanout/relay/LOG_FORMAT.md`, written and pinned\n"
      "byte for byte by the `GoldenLog` tests of "
      "`walsender_fanout/relay/tests/frame_log_test.cpp`\n"
      "(do not edit by hand; segment_bytes 640, index_every 2). The frames are in the format of\n"
      "`common/FORMAT.md`. Segments: ";
  for (size_t i = 0; i < segments.size(); ++i) {
    s += (i > 0 ? ", `" : "`") + segments[i].filename().string() + "`";
  }
  s += ".\n\n| record | key | frame |\n|---|---|---|\n";
  const auto records = golden_records();
  for (size_t i = 0; i < records.size(); ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "%X/%X", static_cast<unsigned>(records[i].key >> 32),
                  static_cast<unsigned>(records[i].key));
    s += "| " + std::to_string(i) + " | " + key + " | " + records[i].description + " (" +
         std::to_string(records[i].frame.size()) + " bytes) |\n";
  }
  return s;
}

// Runs body with a "disk" that takes only budget more bytes (posix::set_write_budget), then
// gives the space back, also when body fails an assertion.
class FullDisk {
 public:
  // The disk is full after budget more bytes.
  explicit FullDisk(uint64_t budget) { posix::set_write_budget(budget); }
  // Space is back.
  ~FullDisk() { posix::set_write_budget(posix::kUnlimitedWrites); }
  // Space is back now.
  void free_space() { posix::set_write_budget(posix::kUnlimitedWrites); }
};

// Writes records until an append or a sync fails with ENOSPC (every 3 records a sync, as the
// relay syncs after each marker); returns the index of the record that failed.
size_t append_until_full(FrameLog& log, const std::vector<Expected>& records, LogStatus& failure) {
  for (size_t i = 0; i < records.size(); ++i) {
    failure = log.append(records[i].lsn, records[i].frame);
    if (failure.ok() && i % 3 == 2) failure = log.sync();
    if (!failure.ok()) return i;
  }
  return records.size();
}

// The disk fills in the middle of a record (and for some budgets in the middle of a new segment's
// header or its first record): the log says ENOSPC with the path, refuses writes, repair() cuts
// it back to the last synced record, and once space is back the same records are written again:
// every record exactly once, and a reopen (crash recovery) finds the same log.
TEST(FrameLogDiskFull, WriteFailsMidwayThenRepairAndRetryLoseAndDuplicateNothing) {
  const std::vector<Expected> all = make_records(120);
  // Budgets that end inside a record header, a frame, a segment header, a first record.
  for (uint64_t budget : {100u, 1000u, 4090u, 4100u, 4130u, 9000u}) {
    SCOPED_TRACE("budget " + std::to_string(budget));
    TempDir dir;
    {
      FrameLog log = FrameLog::open(dir.path(), kSmall);
      LogStatus failure;
      size_t failed_at = 0;
      {
        FullDisk disk(budget);
        failed_at = append_until_full(log, all, failure);
        ASSERT_LT(failed_at, all.size());
        EXPECT_EQ(failure.error, LogError::kIo);
        EXPECT_EQ(failure.sys_errno, ENOSPC);
        EXPECT_NE(failure.message.find("No space left on device"), std::string::npos) << failure.message;
        EXPECT_FALSE(failure.path.empty());
        EXPECT_TRUE(log.failed());
        EXPECT_EQ(log.append(all[failed_at].lsn, all[failed_at].frame).error, LogError::kFailed);
        // Still full: repair needs no space (it only cuts).
        LogStatus repaired = log.repair();
        ASSERT_TRUE(repaired.ok()) << repaired.message;
        EXPECT_FALSE(log.failed());
        disk.free_space();
      }
      // Only whole synced runs survive: durable == written, each file ends after a record.
      const FrameLog::Position durable = log.durable();
      EXPECT_EQ(durable.records, log.written().records);
      EXPECT_EQ(durable.records % 3, 0u);
      std::vector<Expected> kept(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(durable.records));
      EXPECT_TRUE(same(read_from(log, 1000), kept));
      uint64_t on_disk = 0;
      for (const fs::path& f : segment_files(dir.path())) on_disk += fs::file_size(f);
      EXPECT_EQ(on_disk, log.total_bytes());
      // The upstream sends again from the durable position: the rest, once.
      for (size_t i = durable.records; i < all.size(); ++i) {
        ASSERT_TRUE(log.append(all[i].lsn, all[i].frame).ok());
      }
      ASSERT_TRUE(log.sync().ok());
      EXPECT_TRUE(same(read_from(log, 1000), all));
    }
    FrameLog again = FrameLog::open(dir.path(), kSmall);
    EXPECT_TRUE(same(read_from(again, 1000), all));
  }
}

// A sync that fails (the pages of unsynced records may be gone) leaves the log failed until
// repair(), which keeps only what an earlier sync made durable.
TEST(FrameLogDiskFull, RepairAfterAFailedAppendKeepsCursorsAtDurable) {
  TempDir dir;
  FrameLog log = FrameLog::open(dir.path(), kSmall);
  const std::vector<Expected> all = make_records(30);
  append_all(log, std::vector<Expected>(all.begin(), all.begin() + 9));
  ASSERT_TRUE(log.sync().ok());
  FrameLog::Cursor cursor;
  ASSERT_TRUE(log.open_cursor(1000, cursor).ok());
  FrameLog::Record rec;
  std::vector<Expected> seen;
  while (cursor.next(rec).ok()) seen.push_back({rec.lsn, rec.frame});
  EXPECT_EQ(seen.size(), 9u);
  {
    FullDisk disk(300);
    append_all(log, std::vector<Expected>(all.begin() + 9, all.begin() + 10));  // fits
    EXPECT_FALSE(log.append(all[10].lsn, all[10].frame).ok());
    EXPECT_EQ(log.sync().error, LogError::kFailed);
    ASSERT_TRUE(log.repair().ok());
  }
  EXPECT_EQ(log.written().records, 9u);
  EXPECT_TRUE(log.repair().ok());  // nothing to do on a log that did not fail
  append_all(log, std::vector<Expected>(all.begin() + 9, all.end()));
  ASSERT_TRUE(log.sync().ok());
  while (cursor.next(rec).ok()) seen.push_back({rec.lsn, rec.frame});
  EXPECT_TRUE(same(seen, all));
}

TEST(GoldenLog, CheckedInSegmentsMatchTheWriter) {
  const fs::path testdata = EDGESHARD_TESTDATA_DIR;
  TempDir dir;
  {
    FrameLog log = FrameLog::open(dir.path(), kGoldenOptions);
    for (const GoldenRecord& r : golden_records()) ASSERT_TRUE(log.append(r.key, r.frame).ok());
    ASSERT_TRUE(log.sync().ok());
    ASSERT_EQ(log.segment_count(), 2u);
  }
  const auto written = segment_files(dir.path());
  ASSERT_EQ(written[1].filename(), "00000000016b4000-00000001.log");  // the marker ends segment 0
  if (std::getenv("EDGESHARD_REGENERATE_TESTDATA") != nullptr) {
    fs::create_directories(testdata);
    for (const fs::path& old : segment_files(testdata)) fs::remove(old);
    for (const fs::path& f : written) fs::copy_file(f, testdata / f.filename());
    write_file(testdata / "README.md", golden_readme(written));
    return;
  }
  const auto pinned = segment_files(testdata);
  ASSERT_EQ(pinned.size(), written.size());
  for (size_t i = 0; i < written.size(); ++i) {
    EXPECT_EQ(pinned[i].filename(), written[i].filename());
    EXPECT_TRUE(read_file(pinned[i]) == read_file(written[i])) << pinned[i] << ": bytes differ";
  }
  EXPECT_EQ(read_file(testdata / "README.md"), golden_readme(written));
}

TEST(GoldenLog, CheckedInLogReads) {
  // open() takes a lock and may recover, so it works on a copy.
  TempDir dir;
  for (const fs::path& f : segment_files(EDGESHARD_TESTDATA_DIR)) {
    fs::copy_file(f, dir.path() / f.filename());
  }
  const auto want = golden_records();
  FrameLog log = FrameLog::open(dir.path());
  EXPECT_EQ(log.segment_count(), 2u);
  EXPECT_EQ(log.written().records, want.size());
  EXPECT_EQ(log.durable().lsn, 0x16B5000u);
  EXPECT_EQ(log.oldest_lsn(), 0x16B3900u);
  FrameLog::Cursor cursor;
  ASSERT_TRUE(log.open_cursor(log.oldest_lsn(), cursor).ok());
  FrameLog::Record rec;
  FrameLog::Position last_marker = log.oldest();
  frame::Reader reader;
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    LogStatus st = cursor.next(rec);
    ASSERT_TRUE(st.ok()) << st.message;
    EXPECT_EQ(rec.lsn, want[i].key);
    EXPECT_EQ(rec.frame, want[i].frame);
    // Every frame is whole and valid; a marker is a KEEPALIVE frame outside any transaction.
    ASSERT_TRUE(reader.open(rec.frame).ok());
    if (reader.header().commit_lsn == 0) {
      frame::MessageCursor messages = reader.messages();
      frame::Message m;
      ASSERT_TRUE(messages.next(m));
      ASSERT_TRUE(std::holds_alternative<frame::Keepalive>(m));
      EXPECT_EQ(std::get<frame::Keepalive>(m).lsn, rec.lsn);
      last_marker = FrameLog::Position{rec.lsn, cursor.position()};
    } else {
      EXPECT_EQ(reader.header().commit_lsn, rec.lsn);
    }
  }
  EXPECT_EQ(cursor.next(rec).error, LogError::kEnd);
  // The start-up cut: transaction 752 has no marker after it.
  EXPECT_EQ(last_marker.records, 5u);
  EXPECT_EQ(last_marker.lsn, 0x16B4038u);
  ASSERT_TRUE(log.truncate_to(last_marker).ok());
  EXPECT_EQ(log.written().records, 5u);
  EXPECT_EQ(log.segment_count(), 2u);
  EXPECT_EQ(fs::file_size(segment_files(dir.path()).back()),
            kSegmentHeader + 2 * kRecordHeader + want[3].frame.size() + want[4].frame.size());
}

}  // namespace
}  // namespace edgeshard::relay

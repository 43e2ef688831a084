// Unit tests for the relay's segmented frame log: round trips across segments, cursors, reopen,
// crash recovery of a torn tail, corruption reports, LSN order and retention.
#include "walsender_fanout/relay/frame_log.hpp"

#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace edgeshard::relay {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the test temp directory, removed at the end of the test.
class TempDir {
 public:
  // Creates the directory.
  TempDir() {
    std::string tmpl = (fs::path(testing::TempDir()) / "frame_log_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  // The directory.
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

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

}  // namespace
}  // namespace edgeshard::relay

// The archive status file (common/archive_status.hpp): round trip, counting, one-line reasons, and
// refusal of torn or edited files.
#include "common/archive_status.hpp"

#include "common/testing/temp_dir.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

namespace edgeshard::archive {
namespace {

using testing_support::TempDir;

TEST(ArchiveStatus, CountsAndRoundTrips) {
  ArchiveStats s;
  s.stats_since_us = 1714564800000000;
  note_archived(s, "000000010000000000000001", 16777216, 4000000, 1714564801000000);
  note_archived(s, "000000010000000000000002", 16777216, 5000000, 1714564802000000);
  note_failed(s, "000000010000000000000003", "could not archive:\nline two\tand a tab",
              1714564803000000);
  EXPECT_EQ(s.archived_count, 2u);
  EXPECT_EQ(s.last_archived_wal, "000000010000000000000002");
  EXPECT_EQ(s.last_archived_time_us, 1714564802000000);
  EXPECT_EQ(s.bytes_in, 2u * 16777216);
  EXPECT_EQ(s.bytes_out, 9000000u);
  EXPECT_EQ(s.failed_count, 1u);
  EXPECT_EQ(s.last_failure_reason, "could not archive: line two and a tab");

  const std::string text = encode_stats(s);
  EXPECT_EQ(text.substr(0, text.find('\n')), "edgeshard-archive-status 1");
  ArchiveStats back;
  std::string why;
  ASSERT_TRUE(decode_stats(text, back, why)) << why;
  EXPECT_EQ(back, s);

  ArchiveStats fresh;
  ASSERT_TRUE(decode_stats(encode_stats(fresh), back, why)) << why;
  EXPECT_EQ(back, fresh) << "empty names and reason survive";
}

TEST(ArchiveStatus, LongReasonsAreCutAtACharacter) {
  ArchiveStats s;
  std::string reason(kMaxReasonBytes - 1, 'a');
  reason += "é and more";  // the 2-byte character straddles the limit
  note_failed(s, "x", reason, 1);
  EXPECT_EQ(s.last_failure_reason, std::string(kMaxReasonBytes - 1, 'a'));
}

TEST(ArchiveStatus, TornOrEditedFilesAreRefused) {
  ArchiveStats s;
  note_archived(s, "000000010000000000000001", 10, 5, 2);
  const std::string text = encode_stats(s);
  ArchiveStats out;
  std::string why;
  for (size_t len = 0; len < text.size(); ++len) {
    EXPECT_FALSE(decode_stats(text.substr(0, len), out, why)) << len;
  }
  std::string edited = text;
  edited[text.find("archived_count 1") + 15] = '9';
  EXPECT_FALSE(decode_stats(edited, out, why));
  EXPECT_EQ(why, "checksum mismatch");
}

TEST(ArchiveStatus, FileIsReplacedAtomically) {
  TempDir dir("archive_status");
  const std::string path = dir.file(kStatusFileName);
  ArchiveStats s, out;
  std::string why;
  EXPECT_EQ(read_stats_file(path, out, why), StatsRead::kMissing);
  s.stats_since_us = now_unix_us();
  note_archived(s, "000000010000000000000001", 100, 40, now_unix_us());
  ASSERT_EQ(write_stats_file(path, s), 0);
  ASSERT_EQ(read_stats_file(path, out, why), StatsRead::kOk) << why;
  EXPECT_EQ(out, s);
  EXPECT_FALSE(std::ifstream(path + ".tmp").good()) << "the temporary file is renamed away";
  std::ofstream(path, std::ios::trunc) << "garbage\n";
  EXPECT_EQ(read_stats_file(path, out, why), StatsRead::kCorrupt);
}

}  // namespace
}  // namespace edgeshard::archive

// The backup catalog (extension/wal_tool/backup_catalog.hpp) and WAL names
// (extension/wal_tool/wal_segment.hpp) without a server: segment arithmetic, the manifest's text
// (round trip, corruption refused), backup history files, the WAL chain check and expire's
// selection on a synthetic repository in a temporary directory.
#include "extension/wal_tool/backup_catalog.hpp"
#include "extension/wal_tool/wal_segment.hpp"

#include "common/archive_file.hpp"
#include "common/archive_repo.hpp"
#include "common/testing/temp_dir.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace edgeshard::wal_tool {
namespace {

namespace fs = std::filesystem;
using testing_support::TempDir;

TEST(WalSegment, NamesAndArithmetic) {
  const auto s = parse_segment_name("0000000100000000000000FF");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->timeline, 1u);
  EXPECT_EQ(s->segno, 255u);
  EXPECT_EQ(segment_name(next_segment(*s)), "000000010000000100000000")
      << "after ...FF comes the next xlogid";
  EXPECT_EQ(segment_name(next_segment(*parse_segment_name("00000002000000000000000A"))),
            "00000002000000000000000B");
  EXPECT_FALSE(parse_segment_name("000000010000000000000100")) << "low part beyond 0xFF";
  EXPECT_FALSE(parse_segment_name("00000001000000000000000a")) << "lower case";
  EXPECT_FALSE(parse_segment_name("000000000000000000000001")) << "timeline 0";
  EXPECT_FALSE(parse_segment_name("00000001.history"));
  EXPECT_TRUE(segment_of_wal_file("000000010000000000000002.00000028.backup"));
  EXPECT_TRUE(segment_of_wal_file("000000010000000000000002.partial"));
  EXPECT_FALSE(segment_of_wal_file("00000002.history"));
  EXPECT_EQ(parse_lsn("0/2000028"), 0x2000028u);
  EXPECT_EQ(parse_lsn("1/FF000000"), 0x1FF000000u);
  EXPECT_FALSE(parse_lsn("02000028"));
  EXPECT_EQ(format_lsn(0x1FF000000u), "1/FF000000");
  EXPECT_EQ(segment_name(segment_of_lsn(1, 0x1FF000000u)), "0000000100000001000000FF");
  EXPECT_EQ(segment_of_lsn(1, 16u << 20).segno, 1u) << "16 MiB segments";
}

// A manifest as backup writes it.
Manifest sample_manifest(const std::string& id, const std::string& start_wal,
                         const std::string& stop_wal, uint32_t timeline = 1) {
  Manifest m;
  m.id = id;
  m.label = "nightly";
  m.timeline = timeline;
  m.start_lsn = "0/2000028";
  m.start_wal = start_wal;
  m.start_time = "2026-11-25 06:00:00 UTC";
  m.stop_lsn = "0/2000100";
  m.stop_wal = stop_wal;
  m.stop_time = "2026-11-25 06:00:01 UTC";
  m.history_file = start_wal + ".00000028.backup";
  m.parts.push_back({"base.tar.00001", 67108864, 1234567, 0x0123456789abcdefull});
  m.parts.push_back({"base.tar.00002", 100, 80, 0xfedcba9876543210ull});
  return m;
}

TEST(Manifest, RoundTrip) {
  const Manifest m =
      sample_manifest("20261125T060000Z", "000000010000000000000002", "000000010000000000000003");
  const std::string text = encode_manifest(m);
  Manifest back;
  std::string why;
  ASSERT_TRUE(parse_manifest(text, back, why)) << why << "\n" << text;
  EXPECT_EQ(back.id, m.id);
  EXPECT_EQ(back.label, "nightly");
  EXPECT_EQ(back.stop_wal, m.stop_wal);
  EXPECT_EQ(back.timeline, 1u);
  ASSERT_EQ(back.parts.size(), 2u);
  EXPECT_EQ(back.parts[0].raw_size, 67108864u);
  EXPECT_EQ(back.parts[1].xxh3, 0xfedcba9876543210ull);
  EXPECT_EQ(back.raw_size(), 67108964u);
  EXPECT_EQ(encode_manifest(back), text);
}

TEST(Manifest, CorruptionRefused) {
  const std::string text = encode_manifest(
      sample_manifest("20261125T060000Z", "000000010000000000000002", "000000010000000000000003"));
  Manifest back;
  std::string why;
  for (size_t i = 0; i < text.size(); i += 7) {
    std::string bad = text;
    bad[i] ^= 0x01;
    EXPECT_FALSE(parse_manifest(bad, back, why)) << "flipped byte " << i;
  }
  EXPECT_FALSE(parse_manifest(text.substr(0, text.size() - 1), back, why)) << "truncated";
  EXPECT_FALSE(parse_manifest(text.substr(0, text.find("checksum")), back, why)) << "no checksum";
  EXPECT_FALSE(parse_manifest("", back, why));
}

TEST(BackupHistory, Parses) {
  const std::string text =
      "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
      "STOP WAL LOCATION: 0/3000100 (file 000000010000000000000003)\n"
      "CHECKPOINT LOCATION: 0/2000060\n"
      "BACKUP METHOD: streamed\n"
      "BACKUP FROM: primary\n"
      "START TIME: 2026-11-25 06:00:00 UTC\n"
      "LABEL: edgeshard-20261125T060000Z\n"
      "START TIMELINE: 1\n"
      "STOP TIME: 2026-11-25 06:00:02 UTC\n"
      "STOP TIMELINE: 1\n";
  BackupHistory h;
  std::string why;
  ASSERT_TRUE(parse_backup_history(text, h, why)) << why;
  EXPECT_EQ(h.start_lsn, "0/2000028");
  EXPECT_EQ(h.start_wal, "000000010000000000000002");
  EXPECT_EQ(h.stop_lsn, "0/3000100");
  EXPECT_EQ(h.stop_wal, "000000010000000000000003");
  EXPECT_EQ(h.start_time, "2026-11-25 06:00:00 UTC");
  EXPECT_EQ(h.stop_time, "2026-11-25 06:00:02 UTC");
  EXPECT_EQ(h.label, "edgeshard-20261125T060000Z");
  EXPECT_EQ(h.timeline, 1u);
  std::string no_stop = text;
  no_stop.erase(no_stop.find("STOP WAL"), no_stop.find("CHECKPOINT") - no_stop.find("STOP WAL"));
  EXPECT_FALSE(parse_backup_history(no_stop, h, why));
  EXPECT_FALSE(parse_backup_history("START WAL LOCATION: zz (file x)\n", h, why));
}

TEST(BackupId, FormatAndParse) {
  EXPECT_EQ(backup_id_for(0), "19700101T000000Z");
  EXPECT_EQ(time_of_backup_id("19700101T000100Z"), 60);
  const std::time_t t = 1795000000;
  EXPECT_EQ(time_of_backup_id(backup_id_for(t)), t);
  EXPECT_FALSE(time_of_backup_id("20261125T0600Z"));
  EXPECT_FALSE(time_of_backup_id("20261325T060000Z"));
}

// A synthetic repository: archive files for WAL names and backups with manifests.
class SyntheticRepo {
 public:
  SyntheticRepo() { fs::create_directories(dir_.path() / "wal"); }
  // The repository directory.
  std::string repo() const { return dir_.path().string(); }
  // Archives a small file under name.
  void add_wal(const std::string& name) {
    std::string bytes;
    const std::string original = "wal " + name;
    ASSERT_TRUE(
        archive::encode_to_string(
            name, {reinterpret_cast<const uint8_t*>(original.data()), original.size()}, {}, bytes)
            .ok());
    std::ofstream(archive::repo_file_path(repo(), name), std::ios::binary) << bytes;
  }
  // A complete backup (manifest only) starting and stopping at the given segments.
  void add_backup(const std::string& id, const std::string& start, const std::string& stop,
                  uint32_t timeline = 1) {
    fs::create_directories(backup_directory(repo(), id));
    std::string why;
    ASSERT_TRUE(write_file_durably(backup_directory(repo(), id) + "/" + kManifestName,
                                   encode_manifest(sample_manifest(id, start, stop, timeline)),
                                   why))
        << why;
  }

 private:
  TempDir dir_{"backup_catalog"};
};

// The names of segments from..to (inclusive) on timeline 1, low parts only.
std::vector<std::string> segments(uint64_t from, uint64_t to, uint32_t timeline = 1) {
  std::vector<std::string> out;
  for (uint64_t s = from; s <= to; ++s) out.push_back(segment_name(Segment{timeline, s}));
  return out;
}

TEST(Chain, MissingAndGaps) {
  SyntheticRepo r;
  for (const std::string& s : segments(2, 5)) r.add_wal(s);
  for (const std::string& s : segments(8, 9)) r.add_wal(s);
  r.add_wal("00000001000000000000000B");
  r.add_backup("20261125T060000Z", segment_name({1, 2}), segment_name({1, 3}));
  const auto backups = load_backups(r.repo());
  ASSERT_EQ(backups.size(), 1u);
  ASSERT_TRUE(backups[0].complete) << backups[0].problem;
  ChainReport c = check_chain(backups[0].manifest, list_wal_files(r.repo()));
  EXPECT_TRUE(c.missing.empty());
  EXPECT_EQ(c.last_contiguous, segment_name({1, 5}));
  EXPECT_EQ(c.gaps_after, (std::vector<std::string>{segment_name({1, 6}), segment_name({1, 10})}));

  Manifest wide = backups[0].manifest;
  wide.stop_wal = segment_name({1, 9});
  c = check_chain(wide, list_wal_files(r.repo()));
  EXPECT_EQ(c.missing, (std::vector<std::string>{segment_name({1, 6}), segment_name({1, 7})}));
}

TEST(Chain, CrossesXlogIdBoundary) {
  SyntheticRepo r;
  r.add_wal("0000000100000000000000FE");
  r.add_wal("0000000100000000000000FF");
  r.add_wal("000000010000000100000000");
  r.add_backup("20261125T060000Z", "0000000100000000000000FE", "000000010000000100000000");
  const auto backups = load_backups(r.repo());
  const ChainReport c = check_chain(backups.at(0).manifest, list_wal_files(r.repo()));
  EXPECT_TRUE(c.missing.empty());
  EXPECT_EQ(c.last_contiguous, "000000010000000100000000");
}

TEST(Catalog, IncompleteBackups) {
  SyntheticRepo r;
  fs::create_directories(backup_directory(r.repo(), "20261125T050000Z"));
  r.add_backup("20261125T060000Z", segment_name({1, 2}), segment_name({1, 2}));
  fs::create_directories(backup_directory(r.repo(), "20261125T070000Z"));
  std::ofstream(backup_directory(r.repo(), "20261125T070000Z") + "/" + kManifestName) << "junk";
  const auto b = load_backups(r.repo());
  ASSERT_EQ(b.size(), 3u);
  EXPECT_FALSE(b[0].complete);
  EXPECT_EQ(b[0].problem, "no manifest");
  EXPECT_TRUE(b[1].complete);
  EXPECT_FALSE(b[2].complete);
  EXPECT_NE(b[2].problem.find("bad manifest"), std::string::npos);
}

TEST(Expire, KeepsWhatKeptBackupsNeed) {
  SyntheticRepo r;
  for (const std::string& s : segments(1, 12)) r.add_wal(s);
  r.add_wal(segment_name({1, 2}) + ".00000028.backup");
  r.add_wal(segment_name({1, 6}) + ".00000028.backup");
  r.add_wal(segment_name({1, 10}) + ".00000028.backup");
  r.add_wal("00000002.history");
  r.add_wal(segment_name({2, 3}));  // a later timeline: stays
  r.add_backup("20261120T000000Z", segment_name({1, 2}), segment_name({1, 3}));
  r.add_backup("20261122T000000Z", segment_name({1, 6}), segment_name({1, 6}));
  r.add_backup("20261124T000000Z", segment_name({1, 10}), segment_name({1, 11}));
  fs::create_directories(backup_directory(r.repo(), "20261101T000000Z"));  // incomplete, old
  fs::create_directories(backup_directory(r.repo(), "20261124T230000Z"));  // incomplete, new
  const std::time_t now = *time_of_backup_id("20261125T000000Z");
  const auto backups = load_backups(r.repo());
  const auto wal = list_wal_files(r.repo());

  ExpirePlan p = plan_expire(backups, wal, 2, -1, now);
  EXPECT_EQ(p.keep_backups, (std::vector<std::string>{"20261122T000000Z", "20261124T000000Z"}));
  EXPECT_EQ(p.remove_backups, (std::vector<std::string>{"20261101T000000Z", "20261120T000000Z"}));
  std::vector<std::string> expected = segments(1, 5);
  expected.push_back(segment_name({1, 2}) + ".00000028.backup");
  std::sort(expected.begin(), expected.end());
  std::vector<std::string> got = p.remove_wal;
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, expected);

  p = plan_expire(backups, wal, 1, -1, now);
  EXPECT_EQ(p.keep_backups, (std::vector<std::string>{"20261124T000000Z"}));
  EXPECT_EQ(std::count(p.remove_wal.begin(), p.remove_wal.end(), segment_name({1, 10})), 0);
  EXPECT_EQ(std::count(p.remove_wal.begin(), p.remove_wal.end(), segment_name({1, 9})), 1);
  EXPECT_EQ(std::count(p.remove_wal.begin(), p.remove_wal.end(), "00000002.history"), 0);
  EXPECT_EQ(std::count(p.remove_wal.begin(), p.remove_wal.end(), segment_name({2, 3})), 0);

  // Younger than 3.5 days: the last two; 0 days: still the newest one.
  p = plan_expire(backups, wal, 0, 3.5, now);
  EXPECT_EQ(p.keep_backups, (std::vector<std::string>{"20261122T000000Z", "20261124T000000Z"}));
  p = plan_expire(backups, wal, 0, 0, now);
  EXPECT_EQ(p.keep_backups, (std::vector<std::string>{"20261124T000000Z"}));

  // No complete backup: nothing of WAL goes.
  std::vector<BackupEntry> none;
  EXPECT_TRUE(plan_expire(none, wal, 1, -1, now).remove_wal.empty());
}

}  // namespace
}  // namespace edgeshard::wal_tool

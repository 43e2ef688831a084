// edgeshard-wal verify (extension/wal_tool/verify.hpp) on synthetic repositories: a sound one, a
// flipped byte in a segment, a part that does not match its manifest, a missing part, a segment
// missing between a backup's start and stop, and a gap after the stop segment (a warning only).
#include "extension/wal_tool/verify.hpp"

#include "common/archive_file.hpp"
#include "common/archive_repo.hpp"
#include "common/testing/temp_dir.hpp"
#include "extension/wal_tool/backup_catalog.hpp"
#include "extension/wal_tool/wal_segment.hpp"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace edgeshard::wal_tool {
namespace {

namespace fs = std::filesystem;
using testing_support::TempDir;

constexpr char kId[] = "20261125T060000Z";

// Writes the archive file of `original` named name to path.
void write_archive(const std::string& path, const std::string& name, const std::string& original) {
  std::string bytes;
  ASSERT_TRUE(
      archive::encode_to_string(
          name, {reinterpret_cast<const uint8_t*>(original.data()), original.size()}, {}, bytes)
          .ok());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A repository with segments 2..6 on timeline 1 and one backup (start 2, stop 3, two parts).
class VerifyRepo : public ::testing::Test {
 protected:
  // Builds the repository.
  void SetUp() override {
    fs::create_directories(dir_.path() / "wal");
    for (uint64_t s = 2; s <= 6; ++s) add_segment(s);
    fs::create_directories(backup_directory(repo(), kId));
    Manifest m;
    m.id = kId;
    m.label = "test";
    m.timeline = 1;
    m.start_lsn = "0/2000028";
    m.start_wal = segment_name({1, 2});
    m.start_time = "2026-11-25 06:00:00 UTC";
    m.stop_lsn = "0/3000100";
    m.stop_wal = segment_name({1, 3});
    m.stop_time = "2026-11-25 06:00:01 UTC";
    m.history_file = segment_name({1, 2}) + ".00000028.backup";
    for (const char* name : {"base.tar.00001", "base.tar.00002"}) {
      const std::string raw = std::string("tar bytes of ") + name;
      const std::string path = backup_directory(repo(), kId) + "/" + name;
      write_archive(path, name, raw);
      m.parts.push_back(
          {name, raw.size(), fs::file_size(path), XXH3_64bits(raw.data(), raw.size())});
    }
    std::string why;
    ASSERT_TRUE(write_file_durably(backup_directory(repo(), kId) + "/" + kManifestName,
                                   encode_manifest(m), why))
        << why;
  }
  // Archives segment segno of timeline 1.
  void add_segment(uint64_t segno) {
    const std::string name = segment_name({1, segno});
    write_archive(archive::repo_file_path(repo(), name), name, "wal " + name);
  }
  // The repository directory.
  std::string repo() const { return dir_.path().string(); }
  // Runs verify; returns the problem count and its output.
  int verify(std::string& out) {
    std::FILE* f = std::tmpfile();
    const int problems = verify_repository(repo(), f, false);
    std::rewind(f);
    out.clear();
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
    std::fclose(f);
    return problems;
  }

  TempDir dir_{"verify"};
};

TEST_F(VerifyRepo, SoundRepository) {
  std::string out;
  EXPECT_EQ(verify(out), 0) << out;
  EXPECT_NE(out.find("ok: 7 archive files, 1 backups, 0 problem(s)"), std::string::npos) << out;
}

TEST_F(VerifyRepo, FlippedByteInSegment) {
  const std::string path = archive::repo_file_path(repo(), segment_name({1, 5}));
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(60);
  f.put('\x7f');
  f.close();
  std::string out;
  EXPECT_EQ(verify(out), 1) << out;
  EXPECT_NE(out.find("bad: " + path), std::string::npos) << out;
}

TEST_F(VerifyRepo, PartsAgainstManifest) {
  const std::string dir = backup_directory(repo(), kId);
  write_archive(dir + "/base.tar.00002", "base.tar.00002", "other tar bytes");
  write_archive(dir + "/base.tar.00003", "base.tar.00003", "stray");
  std::string out;
  EXPECT_EQ(verify(out), 2) << out;
  EXPECT_NE(out.find("part base.tar.00002 does not match the manifest"), std::string::npos) << out;
  EXPECT_NE(out.find("part base.tar.00003 is not in the manifest"), std::string::npos) << out;
  fs::remove(dir + "/base.tar.00001");
  fs::remove(dir + "/base.tar.00003");
  EXPECT_EQ(verify(out), 2) << out;
  EXPECT_NE(out.find("part base.tar.00001 is missing"), std::string::npos) << out;
}

TEST_F(VerifyRepo, WalChain) {
  fs::remove(archive::repo_file_path(repo(), segment_name({1, 5})));
  std::string out;
  EXPECT_EQ(verify(out), 0) << "a gap after the stop segment is a warning: " << out;
  EXPECT_NE(out.find("warning: backup " + std::string(kId) + ": the archive has a gap at " +
                     segment_name({1, 5})),
            std::string::npos)
      << out;
  fs::remove(archive::repo_file_path(repo(), segment_name({1, 3})));
  EXPECT_EQ(verify(out), 1) << out;
  EXPECT_NE(out.find("WAL segment " + segment_name({1, 3}) + " is missing"), std::string::npos)
      << out;
}

TEST_F(VerifyRepo, IncompleteBackupIsAWarning) {
  fs::create_directories(backup_directory(repo(), "20261125T070000Z"));
  std::string out;
  EXPECT_EQ(verify(out), 0) << out;
  EXPECT_NE(out.find("warning: backup 20261125T070000Z is incomplete (no manifest)"),
            std::string::npos)
      << out;
}

TEST(Verify, NotARepository) {
  TempDir dir("verify_empty");
  std::FILE* f = std::tmpfile();
  EXPECT_EQ(verify_repository(dir.path().string(), f, false), 1);
  std::fclose(f);
}

}  // namespace
}  // namespace edgeshard::wal_tool

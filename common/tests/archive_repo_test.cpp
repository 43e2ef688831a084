// The WAL archive repository (common/archive_repo.hpp): archiving, archiving the same name again
// (same content: ok; different: refused; corrupt: refused, kept), restoring, and the failures
// restore must not mistake for "not archived".
#include "common/archive_repo.hpp"

#include "common/testing/fake_wal.hpp"
#include "common/testing/temp_dir.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace edgeshard::archive {
namespace {

namespace fs = std::filesystem;
using testing_support::fake_wal;
using testing_support::TempDir;

constexpr char kSeg[] = "000000010000000000000001";

// The whole content of a file.
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Replaces a file's content.
void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The names in a directory, sorted.
std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A repository directory and a pg_wal-like source directory.
struct Fixture {
  TempDir tmp{"archive_repo"};
  std::string repo = tmp.file("repo");
  std::string pg_wal = tmp.file("pg_wal");
  Writer writer;

  Fixture() {
    fs::create_directory(repo);
    fs::create_directory(pg_wal);
  }
  // Writes a source file and archives it.
  PushResult push(const std::string& name, const std::string& content) {
    write_file(pg_wal + "/" + name, content);
    return push_file(repo, name, pg_wal + "/" + name, writer);
  }
};

TEST(ArchiveRepo, PushThenFetch) {
  Fixture f;
  const std::string wal = fake_wal(16 << 20, 1);
  const PushResult r = f.push(kSeg, wal);
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_FALSE(r.already_archived);
  EXPECT_EQ(r.bytes_in, wal.size());
  EXPECT_EQ(r.bytes_out, fs::file_size(repo_file_path(f.repo, kSeg)));
  EXPECT_LT(r.bytes_out * 5 / 2, r.bytes_in) << "ratio above 2.5";
  EXPECT_EQ(names_in(wal_directory(f.repo)), std::vector<std::string>{std::string(kSeg) + ".eswa"})
      << "no temporary file left";

  const std::string dest = f.tmp.file("RECOVERYXLOG");
  write_file(dest, "an older file PostgreSQL left here");
  const FetchResult got = fetch_file(f.repo, kSeg, dest);
  ASSERT_EQ(got.outcome, FetchOutcome::kRestored) << got.error.message;
  EXPECT_EQ(got.bytes, wal.size());
  EXPECT_EQ(read_file(dest), wal);
  EXPECT_EQ(names_in(f.tmp.path().string()),
            (std::vector<std::string>{"RECOVERYXLOG", "pg_wal", "repo"}));
}

TEST(ArchiveRepo, SameContentTwiceSucceeds) {
  Fixture f;
  const std::string wal = fake_wal(100000, 2);
  ASSERT_TRUE(f.push(kSeg, wal).ok);
  const std::string before = read_file(repo_file_path(f.repo, kSeg));
  const PushResult again = f.push(kSeg, wal);
  ASSERT_TRUE(again.ok) << again.error.message;
  EXPECT_TRUE(again.already_archived);
  EXPECT_EQ(again.bytes_out, before.size());
  EXPECT_EQ(read_file(repo_file_path(f.repo, kSeg)), before);
  // Whatever the level: the comparison is of the content, not of the archive file's bytes.
  Writer hc({.level = 9});
  const PushResult hc_again = push_file(f.repo, kSeg, f.pg_wal + "/" + kSeg, hc);
  EXPECT_TRUE(hc_again.ok && hc_again.already_archived) << hc_again.error.message;
}

TEST(ArchiveRepo, DifferentContentIsRefused) {
  Fixture f;
  std::string wal = fake_wal(100000, 3);
  ASSERT_TRUE(f.push(kSeg, wal).ok);
  const std::string before = read_file(repo_file_path(f.repo, kSeg));
  wal[77777] ^= 1;
  PushResult r = f.push(kSeg, wal);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error.failure, Failure::kConflict);
  EXPECT_NE(r.error.message.find("already exists with different content"), std::string::npos);
  EXPECT_NE(r.error.message.find(repo_file_path(f.repo, kSeg)), std::string::npos);
  EXPECT_EQ(r.error.detail, "The first difference is at byte 77777.");
  r = f.push(kSeg, wal.substr(0, 5000));
  EXPECT_EQ(r.error.failure, Failure::kConflict);
  EXPECT_NE(r.error.detail.find("100000 bytes"), std::string::npos);
  EXPECT_EQ(read_file(repo_file_path(f.repo, kSeg)), before) << "never overwritten";
}

TEST(ArchiveRepo, CorruptExistingFileIsNeitherIdenticalNorOverwritten) {
  Fixture f;
  const std::string wal = fake_wal(100000, 4);
  ASSERT_TRUE(f.push(kSeg, wal).ok);
  const std::string path = repo_file_path(f.repo, kSeg);
  std::string bad = read_file(path);
  bad[bad.size() / 2] ^= 0x40;
  write_file(path, bad);
  const PushResult r = f.push(kSeg, wal);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error.failure, Failure::kCorrupt);
  EXPECT_NE(r.error.message.find("block checksum mismatch"), std::string::npos) << r.error.message;
  EXPECT_EQ(read_file(path), bad);

  // Another file's archive copied under this name: sound, but not this file.
  ASSERT_TRUE(f.push("000000010000000000000002", wal).ok);
  fs::copy_file(repo_file_path(f.repo, "000000010000000000000002"), path,
                fs::copy_options::overwrite_existing);
  const PushResult wrong = f.push(kSeg, wal);
  EXPECT_EQ(wrong.error.failure, Failure::kCorrupt);
  EXPECT_NE(wrong.error.message.find("another wal file"), std::string::npos) << wrong.error.message;
}

TEST(ArchiveRepo, RepositoryMustExist) {
  Fixture f;
  write_file(f.pg_wal + "/" + kSeg, "x");
  PushResult r = push_file(f.tmp.file("absent"), kSeg, f.pg_wal + "/" + kSeg, f.writer);
  EXPECT_EQ(r.error.failure, Failure::kRepoMissing);
  EXPECT_NE(r.error.message.find("does not exist"), std::string::npos);
  r = push_file(f.pg_wal + "/" + kSeg, kSeg, f.pg_wal + "/" + kSeg, f.writer);
  EXPECT_EQ(r.error.failure, Failure::kRepoMissing);
  EXPECT_NE(r.error.message.find("is not a directory"), std::string::npos);
  r = push_file(f.repo, kSeg, f.pg_wal + "/absent", f.writer);
  EXPECT_EQ(r.error.failure, Failure::kIo);
  EXPECT_EQ(r.error.sys_errno, ENOENT);
  r = push_file(f.repo, "../escape", f.pg_wal + "/" + kSeg, f.writer);
  EXPECT_EQ(r.error.failure, Failure::kInvalidName);
  EXPECT_FALSE(fs::exists(f.tmp.file("escape.eswa")));
}

TEST(ArchiveRepo, FetchMissingCorruptAndNoRepository) {
  Fixture f;
  const std::string dest = f.tmp.file("RECOVERYXLOG");
  // No wal/ directory yet: not a repository, which must not read as "not archived".
  FetchResult r = fetch_file(f.repo, kSeg, dest);
  EXPECT_EQ(r.outcome, FetchOutcome::kFailed);
  EXPECT_EQ(r.error.failure, Failure::kRepoMissing);
  r = fetch_file(f.tmp.file("absent"), kSeg, dest);
  EXPECT_EQ(r.error.failure, Failure::kRepoMissing);

  const std::string wal = fake_wal(50000, 5);
  ASSERT_TRUE(f.push(kSeg, wal).ok);
  r = fetch_file(f.repo, "000000010000000000000009", dest);
  EXPECT_EQ(r.outcome, FetchOutcome::kMissing);
  EXPECT_FALSE(fs::exists(dest));

  const std::string path = repo_file_path(f.repo, kSeg);
  std::string bad = read_file(path);
  bad[bad.size() - 60] ^= 1;  // in the last block
  write_file(path, bad);
  r = fetch_file(f.repo, kSeg, dest);
  EXPECT_EQ(r.outcome, FetchOutcome::kFailed);
  EXPECT_EQ(r.error.failure, Failure::kCorrupt);
  EXPECT_NE(r.error.message.find(path), std::string::npos) << "names the file: " << r.error.message;
  EXPECT_FALSE(fs::exists(dest));
  EXPECT_EQ(names_in(f.tmp.path().string()), (std::vector<std::string>{"pg_wal", "repo"}))
      << "no temporary file left";

  r = fetch_file(f.repo, "bad/name", dest);
  EXPECT_EQ(r.error.failure, Failure::kInvalidName);
}

TEST(ArchiveRepo, StaleTemporaryFilesAreRemoved) {
  Fixture f;
  ASSERT_TRUE(f.push(kSeg, "segment").ok);
  const std::string wal = wal_directory(f.repo);
  write_file(wal + "/.tmp.000000010000000000000002.123.1", "torn");
  write_file(wal + "/.tmp.000000010000000000000003.456.2", "being written");
  const struct timespec old[2] = {{time(nullptr) - 3600, 0}, {time(nullptr) - 3600, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, (wal + "/.tmp.000000010000000000000002.123.1").c_str(), old, 0), 0);
  std::string why;
  EXPECT_EQ(remove_stale_temps(f.repo, 60, why), 1);
  EXPECT_EQ(names_in(wal), (std::vector<std::string>{".tmp.000000010000000000000003.456.2",
                                                     std::string(kSeg) + ".eswa"}));
  EXPECT_EQ(remove_stale_temps(f.tmp.file("absent"), 60, why), 0);
}

TEST(ArchiveRepo, ArchivesHistoryBackupAndPartialFiles) {
  Fixture f;
  for (const char* name : {"00000002.history", "000000010000000000000002.00000028.backup",
                           "000000010000000000000003.partial"}) {
    const std::string content = std::string("content of ") + name;
    ASSERT_TRUE(f.push(name, content).ok) << name;
    const std::string dest = f.tmp.file("out");
    ASSERT_EQ(fetch_file(f.repo, name, dest).outcome, FetchOutcome::kRestored) << name;
    EXPECT_EQ(read_file(dest), content);
  }
}

}  // namespace
}  // namespace edgeshard::archive

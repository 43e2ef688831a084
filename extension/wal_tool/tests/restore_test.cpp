// edgeshard-wal restore (extension/wal_tool/restore.hpp): argument parsing (--repo, the
// environment), and the exit status and message PostgreSQL's restore_command gets for a restored,
// missing, corrupt or unreachable file.
#include "extension/wal_tool/restore.hpp"

#include "common/archive_repo.hpp"
#include "common/testing/fake_wal.hpp"
#include "common/testing/temp_dir.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace edgeshard::wal_tool {
namespace {

namespace fs = std::filesystem;
using testing_support::TempDir;

constexpr char kSeg[] = "000000010000000000000001";

// Parses a command line given as strings (argv[0] = "restore").
bool parse(std::vector<std::string> args, const char* env, RestoreArgs& out, std::string& why) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return parse_restore_args(static_cast<int>(argv.size()), argv.data(), env, out, why);
}

// The whole content of a file.
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs restore with stderr captured.
int restore(const RestoreArgs& args, std::string& err) {
  std::FILE* f = std::tmpfile();
  const int status = run_restore(args, f);
  std::rewind(f);
  err.clear();
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) err.append(buf, n);
  std::fclose(f);
  return status;
}

TEST(RestoreArgs, RepoFromOptionOrEnvironment) {
  RestoreArgs a;
  std::string why;
  ASSERT_TRUE(parse({"restore", "--repo", "/r", kSeg, "pg_wal/RECOVERYXLOG"}, nullptr, a, why))
      << why;
  EXPECT_EQ(a.repo, "/r");
  EXPECT_EQ(a.wal_file, kSeg);
  EXPECT_EQ(a.dest, "pg_wal/RECOVERYXLOG");
  ASSERT_TRUE(parse({"restore", kSeg, "p", "--repo=/opt"}, "/env", a, why)) << why;
  EXPECT_EQ(a.repo, "/opt") << "--repo wins over the environment";
  ASSERT_TRUE(parse({"restore", kSeg, "p"}, "/env", a, why)) << why;
  EXPECT_EQ(a.repo, "/env");
  ASSERT_TRUE(parse({"restore", "--repo", "/r", "--", "-odd", "p"}, nullptr, a, why));
  EXPECT_EQ(a.wal_file, "-odd");
  ASSERT_TRUE(parse({"restore", "--help"}, nullptr, a, why));
  EXPECT_TRUE(a.help);
}

TEST(RestoreArgs, UsageErrors) {
  RestoreArgs a;
  std::string why;
  EXPECT_FALSE(parse({"restore", kSeg, "p"}, nullptr, a, why));
  EXPECT_NE(why.find("EDGESHARD_ARCHIVE_DIR"), std::string::npos);
  EXPECT_FALSE(parse({"restore", "--repo", "/r", kSeg}, nullptr, a, why));
  EXPECT_FALSE(parse({"restore", "--repo", "/r", kSeg, "p", "extra"}, nullptr, a, why));
  EXPECT_FALSE(parse({"restore", kSeg, "p", "--repo"}, nullptr, a, why));
  EXPECT_FALSE(parse({"restore", "--frob", kSeg, "p"}, "/env", a, why));
  EXPECT_FALSE(parse({"restore", kSeg, "p"}, "", a, why));
}

// A repository holding one archived segment.
struct Repo {
  TempDir tmp{"wal_restore"};
  std::string repo = tmp.file("repo");
  std::string wal = testing_support::fake_wal(3 << 20, 9);

  Repo() {
    fs::create_directory(repo);
    const std::string src = tmp.file("src");
    std::ofstream(src, std::ios::binary)
        .write(wal.data(), static_cast<std::streamsize>(wal.size()));
    archive::Writer writer;
    EXPECT_TRUE(archive::push_file(repo, kSeg, src, writer).ok);
  }
};

TEST(Restore, RestoredMissingCorruptAndUnreachable) {
  Repo r;
  const std::string dest = r.tmp.file("RECOVERYXLOG");
  std::string err;
  EXPECT_EQ(restore({r.repo, kSeg, dest}, err), kRestoreOk);
  EXPECT_EQ(err, "");
  EXPECT_EQ(read_file(dest), r.wal);
  fs::remove(dest);

  EXPECT_EQ(restore({r.repo, "000000010000000000000002", dest}, err), kRestoreMissing);
  EXPECT_EQ(err, "") << "a missing file is not an error to report";
  EXPECT_FALSE(fs::exists(dest));

  const std::string path = archive::repo_file_path(r.repo, kSeg);
  std::string bytes = read_file(path);
  bytes[1000] ^= 0x01;
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  EXPECT_EQ(restore({r.repo, kSeg, dest}, err), kRestoreFailed);
  EXPECT_NE(err.find("edgeshard-wal restore: could not restore \"" + std::string(kSeg) + "\""),
            std::string::npos)
      << err;
  EXPECT_NE(err.find(path), std::string::npos) << "names the archive file: " << err;
  EXPECT_NE(err.find("checksum mismatch"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(dest)) << "nothing handed to PostgreSQL";

  EXPECT_EQ(restore({r.tmp.file("absent"), kSeg, dest}, err), kRestoreFailed);
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
  EXPECT_EQ(restore({r.tmp.path().string(), kSeg, dest}, err), kRestoreFailed)
      << "a directory without wal/ is not a repository";
  EXPECT_NE(err.find("not an edgeshard archive repository"), std::string::npos) << err;
  EXPECT_EQ(restore({r.repo, kSeg, r.tmp.file("no/such/dir/RECOVERYXLOG")}, err), kRestoreFailed);
}

}  // namespace
}  // namespace edgeshard::wal_tool

// edgeshard-wal verify: see verify.hpp.
#include "extension/wal_tool/verify.hpp"

#include "common/archive_file.hpp"
#include "common/archive_repo.hpp"
#include "common/posix_file.hpp"
#include "extension/wal_tool/backup_catalog.hpp"
#include "extension/wal_tool/options.hpp"
#include "extension/wal_tool/subcommand.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <system_error>

namespace edgeshard::wal_tool {

namespace fs = std::filesystem;

const char kVerifyUsage[] =
    "usage: edgeshard-wal verify [--repo DIR]\n"
    "\n"
    "Checks the whole repository DIR: every archive file in wal/ and backups/ is decoded with\n"
    "every checksum; each backup's parts must match its backup.manifest; the WAL from each\n"
    "backup's start segment through its stop segment must be archived. Gaps after a backup's stop\n"
    "segment (which end its point-in-time window) are warnings. Progress on a terminal.\n"
    "\n"
    "Exit status: 0 all sound; 1 problems found (each printed); 2 usage error.\n";

namespace {

// One archive file to check and the name its header must hold.
struct FileToCheck {
  std::string path;
  std::string name;
};

// Facts about a checked archive file, for the manifest comparison.
struct CheckedFile {
  uint64_t size = 0;
  uint64_t original_length = 0;
  uint64_t content_checksum = 0;
};

// Decodes one archive file fully; false with why.
bool check_file(const FileToCheck& f, CheckedFile& facts, std::string& why) {
  posix::MappedFile file;
  const int err = file.open(f.path, true);
  if (err != 0) {
    why = "could not open: " + posix::errno_text(err);
    return false;
  }
  archive::Reader reader;
  archive::Status st = reader.open_named(file.bytes(), f.name);
  if (st.ok()) st = reader.verify();
  if (!st.ok()) {
    why = archive::describe(st, f.path);
    return false;
  }
  facts.size = file.bytes().size();
  facts.original_length = reader.trailer().original_length;
  facts.content_checksum = reader.trailer().content_checksum;
  return true;
}

}  // namespace

int verify_repository(const std::string& repo, std::FILE* out, bool progress) {
  int problems = 0;
  const auto problem = [&](const std::string& text) {
    if (progress) std::fputs("\r\033[K", stderr);
    std::fprintf(out, "bad: %s\n", text.c_str());
    ++problems;
  };
  std::error_code ec;
  if (!fs::is_directory(archive::wal_directory(repo), ec)) {
    problem("\"" + archive::wal_directory(repo) + "\" is not a directory: not a repository");
    return problems;
  }
  const std::vector<std::string> wal_files = list_wal_files(repo);
  const std::vector<BackupEntry> backups = load_backups(repo);
  std::vector<FileToCheck> files;
  for (const std::string& name : wal_files)
    files.push_back({archive::repo_file_path(repo, name), name});
  for (const BackupEntry& b : backups) {
    const std::string dir = backup_directory(repo, b.id);
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(kPartPrefix, 0) == 0) files.push_back({e.path().string(), name});
    }
  }
  std::map<std::string, CheckedFile> checked;  // path -> facts, for sound files
  uint64_t bytes = 0;
  const auto started = std::chrono::steady_clock::now();
  for (size_t i = 0; i < files.size(); ++i) {
    CheckedFile facts;
    std::string why;
    if (check_file(files[i], facts, why)) {
      checked[files[i].path] = facts;
      bytes += facts.size;
    } else {
      problem(files[i].path + ": " + why);
    }
    if (progress) {
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::fprintf(stderr, "\r\033[Kverified %zu/%zu files, %.1f MiB, %.1f MiB/s", i + 1,
                   files.size(), static_cast<double>(bytes) / 1048576.0,
                   s > 0 ? static_cast<double>(bytes) / 1048576.0 / s : 0.0);
    }
  }
  if (progress) std::fputs("\r\033[K", stderr);
  for (const BackupEntry& b : backups) {
    if (!b.complete) {
      std::fprintf(out, "warning: backup %s is incomplete (%s)\n", b.id.c_str(), b.problem.c_str());
      continue;
    }
    const std::string dir = backup_directory(repo, b.id);
    std::set<std::string> listed;
    for (const BackupPart& p : b.manifest.parts) {
      listed.insert(p.name);
      const std::string path = dir + "/" + p.name;
      auto it = checked.find(path);
      if (it == checked.end()) {
        if (!fs::exists(path, ec)) problem("backup " + b.id + ": part " + p.name + " is missing");
        continue;
      }
      if (it->second.size != p.stored_size || it->second.original_length != p.raw_size ||
          it->second.content_checksum != p.xxh3)
        problem("backup " + b.id + ": part " + p.name + " does not match the manifest");
    }
    for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(kPartPrefix, 0) == 0 && listed.count(name) == 0)
        problem("backup " + b.id + ": part " + name + " is not in the manifest");
    }
    const ChainReport chain = check_chain(b.manifest, wal_files);
    for (const std::string& seg : chain.missing)
      problem("backup " + b.id + ": WAL segment " + seg + " is missing from the archive");
    for (const std::string& seg : chain.gaps_after)
      std::fprintf(out,
                   "warning: backup %s: the archive has a gap at %s (recovery stops before it)\n",
                   b.id.c_str(), seg.c_str());
  }
  std::fprintf(out, "%s: %zu archive files, %zu backups, %d problem(s)\n",
               problems == 0 ? "ok" : "failed", files.size(), backups.size(), problems);
  return problems;
}

int verify_main(int argc, char** argv) {
  Options options;
  std::string repo;
  if (auto done = start_subcommand(argc, argv, "verify", kVerifyUsage, {}, {}, options, repo)) return *done;
  if (!options.positional.empty()) {
    std::fprintf(stderr, "edgeshard-wal verify: unexpected argument %s\n%s",
                 options.positional[0].c_str(), kVerifyUsage);
    return kExitUsage;
  }
  try {
    return verify_repository(repo, stdout, ::isatty(STDERR_FILENO) != 0) == 0 ? 0 : 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "edgeshard-wal verify: out of memory\n");
    return 1;
  }
}

}  // namespace edgeshard::wal_tool

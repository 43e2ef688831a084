// edgeshard-wal expire: see expire.hpp.
#include "extension/wal_tool/expire.hpp"

#include "common/archive_repo.hpp"
#include "common/posix_file.hpp"
#include "extension/wal_tool/backup_catalog.hpp"
#include "extension/wal_tool/options.hpp"
#include "extension/wal_tool/subcommand.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <system_error>

namespace edgeshard::wal_tool {

namespace fs = std::filesystem;

const char kExpireUsage[] =
    "usage: edgeshard-wal expire [--repo DIR] (--keep N | --keep-days D) [--dry-run]\n"
    "\n"
    "Keeps the newest N complete backups of DIR (or those younger than D days, and always the\n"
    "newest complete one) and removes the older backups, incomplete backups older than a day, and\n"
    "the archived WAL older than the oldest kept backup's start segment (on its timeline and\n"
    "earlier ones; timeline history files stay). Prints each removal; --dry-run only prints.\n"
    "\n"
    "Exit status: 0 done; 1 a removal failed; 2 usage error.\n";

int expire_main(int argc, char** argv) {
  Options options;
  std::string why, repo;
  if (auto done = start_subcommand(argc, argv, "expire", kExpireUsage, {"--keep", "--keep-days"}, {"--dry-run"}, options, repo)) return *done;
  const bool has_keep = options.values.count("--keep") != 0;
  const bool has_days = options.values.count("--keep-days") != 0;
  int keep = 0;
  double keep_days = -1;
  char* end = nullptr;
  if (has_keep == has_days || !options.positional.empty()) {
    why = "give exactly one of --keep N and --keep-days D";
  } else if (has_keep) {
    const long v = std::strtol(options.values["--keep"].c_str(), &end, 10);
    if (*end != '\0' || v < 1 || v > 1000000) why = "--keep must be a positive integer";
    keep = static_cast<int>(v);
  } else {
    keep_days = std::strtod(options.values["--keep-days"].c_str(), &end);
    if (*end != '\0' || !(keep_days >= 0)) why = "--keep-days must be a number of days, 0 or more";
  }
  if (!why.empty()) {
    std::fprintf(stderr, "edgeshard-wal expire: %s\n%s", why.c_str(), kExpireUsage);
    return kExitUsage;
  }
  const bool dry_run = options.flags.count("--dry-run") != 0;
  const char* verb = dry_run ? "would remove" : "removed";
  try {
    const ExpirePlan plan =
        plan_expire(load_backups(repo), list_wal_files(repo), keep, keep_days, std::time(nullptr));
    int failures = 0;
    for (const std::string& id : plan.remove_backups) {
      std::error_code ec;
      if (!dry_run) fs::remove_all(backup_directory(repo, id), ec);
      if (ec) {
        std::fprintf(stderr, "edgeshard-wal expire: could not remove backup %s: %s\n", id.c_str(),
                     ec.message().c_str());
        ++failures;
      } else {
        std::printf("%s backup %s\n", verb, id.c_str());
      }
    }
    if (!dry_run && !plan.remove_backups.empty() &&
        posix::fsync_directory(backups_directory(repo)) != 0)
      std::fprintf(stderr,
                   "edgeshard-wal expire: warning: could not fsync the backups directory\n");
    for (const std::string& name : plan.remove_wal) {
      const std::string path = archive::repo_file_path(repo, name);
      if (!dry_run && ::unlink(path.c_str()) != 0 && errno != ENOENT) {
        std::fprintf(stderr, "edgeshard-wal expire: could not remove \"%s\": %s\n", path.c_str(),
                     posix::errno_text(errno).c_str());
        ++failures;
      } else {
        std::printf("%s wal %s\n", verb, name.c_str());
      }
    }
    if (!dry_run && !plan.remove_wal.empty() &&
        posix::fsync_directory(archive::wal_directory(repo)) != 0)
      std::fprintf(stderr, "edgeshard-wal expire: warning: could not fsync the wal directory\n");
    std::printf("kept %zu backup(s)%s%s\n", plan.keep_backups.size(),
                plan.keep_backups.empty() ? "" : ", oldest ",
                plan.keep_backups.empty() ? "" : plan.keep_backups.front().c_str());
    return failures == 0 ? 0 : 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "edgeshard-wal expire: out of memory\n");
    return 1;
  }
}

}  // namespace edgeshard::wal_tool

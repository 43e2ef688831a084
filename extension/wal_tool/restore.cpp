// edgeshard-wal restore: see restore.hpp.
#include "extension/wal_tool/restore.hpp"

#include "common/archive_repo.hpp"
#include "extension/wal_tool/options.hpp"

#include <cstdlib>
#include <new>

namespace edgeshard::wal_tool {

const char kRestoreUsage[] =
    "usage: edgeshard-wal restore [--repo DIR] WALFILE DEST\n"
    "\n"
    "Restores WALFILE from the archive repository DIR (default: $EDGESHARD_ARCHIVE_DIR) to DEST,\n"
    "for PostgreSQL's restore_command:\n"
    "  restore_command = 'edgeshard-wal restore --repo /path/to/repo %f %p'\n"
    "Every block and whole-file checksum is verified before DEST appears (written to a temporary\n"
    "name next to it, fsynced, renamed).\n"
    "\n"
    "Exit status: 0 restored; 1 WALFILE is not in the archive (nothing printed); 255 anything "
    "else\n"
    "(corrupt archive file, missing or unreadable repository, I/O error, bad arguments): above "
    "125,\n"
    "so that PostgreSQL stops recovery instead of taking the file for the end of the archive.\n";

bool parse_restore_args(int argc, char** argv, const char* env_repo, RestoreArgs& out,
                        std::string& why) {
  Options options;
  if (!parse_options(argc, argv, options, why)) return false;
  out = RestoreArgs{};
  if (options.help) {
    out.help = true;
    return true;
  }
  if (options.positional.size() != 2) {
    why = "expected WALFILE and DEST, got " + std::to_string(options.positional.size()) +
          " arguments";
    return false;
  }
  if (!resolve_repo(options, env_repo, out.repo, why)) return false;
  out.wal_file = options.positional[0];
  out.dest = options.positional[1];
  if (out.dest.empty()) {
    why = "DEST is empty";
    return false;
  }
  return true;
}

int run_restore(const RestoreArgs& args, std::FILE* err) {
  archive::FetchResult r;
  try {
    r = archive::fetch_file(args.repo, args.wal_file, args.dest);
  } catch (const std::bad_alloc&) {
    std::fprintf(err, "edgeshard-wal restore: out of memory restoring \"%s\"\n",
                 args.wal_file.c_str());
    return kRestoreFailed;
  }
  switch (r.outcome) {
    case archive::FetchOutcome::kRestored:
      return kRestoreOk;
    case archive::FetchOutcome::kMissing:
      return kRestoreMissing;
    case archive::FetchOutcome::kFailed:
      break;
  }
  std::fprintf(err, "edgeshard-wal restore: could not restore \"%s\": %s\n", args.wal_file.c_str(),
               r.error.message.c_str());
  if (!r.error.detail.empty())
    std::fprintf(err, "edgeshard-wal restore: %s\n", r.error.detail.c_str());
  return kRestoreFailed;
}

int restore_main(int argc, char** argv) {
  RestoreArgs args;
  std::string why;
  if (!parse_restore_args(argc, argv, std::getenv(kRepoEnv), args, why)) {
    std::fprintf(stderr, "edgeshard-wal restore: %s\n%s", why.c_str(), kRestoreUsage);
    return kRestoreFailed;
  }
  if (args.help) {
    std::fputs(kRestoreUsage, stdout);
    return kRestoreOk;
  }
  return run_restore(args, stderr);
}

}  // namespace edgeshard::wal_tool

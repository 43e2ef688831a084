// `edgeshard-wal restore [--repo DIR] WALFILE DEST`: PostgreSQL's restore_command
// (restore_command = 'edgeshard-wal restore --repo /backups/s1 %f %p'). Reads the repository's
// wal/WALFILE.eswa, checks and decompresses it block by block into a temporary file next to DEST,
// and renames it to DEST (fsynced) only once every checksum passed (common/archive_repo.hpp).
//
// Exit status, chosen for PostgreSQL's reading of restore_command (a status above 125 makes it
// stop recovery with a FATAL error; any other failure it takes for "not archived"):
//   0    restored
//   1    WALFILE is not in the archive; prints nothing (PostgreSQL asks for files past the end)
//   255  anything else: a corrupt archive file, an unreadable or absent repository, an I/O error,
//        bad arguments. Recovery must stop here, not end early and promote with WAL missing.
#pragma once

#include "common/no_postgres.hpp"

#include <cstdio>
#include <string>

namespace edgeshard::wal_tool {

inline constexpr int kRestoreOk = 0;
inline constexpr int kRestoreMissing = 1;
inline constexpr int kRestoreFailed = 255;

// restore's help text.
extern const char kRestoreUsage[];

// What restore is asked to do.
struct RestoreArgs {
  std::string repo;
  std::string wal_file;  // %f
  std::string dest;      // %p
  bool help = false;
};

// Parses restore's arguments (argv[0] is "restore"); env_repo is EDGESHARD_ARCHIVE_DIR's value or
// null. False with why on a usage error.
bool parse_restore_args(int argc, char** argv, const char* env_repo, RestoreArgs& out,
                        std::string& why);

// Restores; errors go to err as one line "edgeshard-wal restore: ..." naming the file. Returns the
// exit status.
int run_restore(const RestoreArgs& args, std::FILE* err);

// The subcommand's entry point (wal_main.cpp's table).
int restore_main(int argc, char** argv);

}  // namespace edgeshard::wal_tool

// edgeshard-wal: the WAL archive's command-line tool (DESIGN.md section 7). A dispatcher: each
// subcommand is one file pair of this folder and one row of kSubcommands below.
#include "extension/wal_tool/backup.hpp"
#include "extension/wal_tool/expire.hpp"
#include "extension/wal_tool/list.hpp"
#include "extension/wal_tool/restore.hpp"
#include "extension/wal_tool/restore_backup.hpp"
#include "extension/wal_tool/subcommand.hpp"
#include "extension/wal_tool/verify.hpp"

#include <cstdio>
#include <cstring>
#include <string_view>

namespace {

using edgeshard::wal_tool::Subcommand;

// Every subcommand; add new ones here.
const Subcommand kSubcommands[] = {
    {"restore", "restore one WAL file from the repository (restore_command)",
     edgeshard::wal_tool::kRestoreUsage, edgeshard::wal_tool::restore_main},
    {"backup", "take a full base backup into the repository (pg_basebackup)",
     edgeshard::wal_tool::kBackupUsage, edgeshard::wal_tool::backup_main},
    {"restore-backup", "unpack a base backup into an empty data directory",
     edgeshard::wal_tool::kRestoreBackupUsage, edgeshard::wal_tool::restore_backup_main},
    {"list", "list the backups and their point-in-time recovery windows",
     edgeshard::wal_tool::kListUsage, edgeshard::wal_tool::list_main},
    {"verify", "check every archive file, backup manifest and WAL chain",
     edgeshard::wal_tool::kVerifyUsage, edgeshard::wal_tool::verify_main},
    {"expire", "remove old backups and the WAL only they needed", edgeshard::wal_tool::kExpireUsage,
     edgeshard::wal_tool::expire_main},
};

// Prints the list of subcommands to out.
void print_usage(std::FILE* out) {
  std::fputs(
      "usage: edgeshard-wal COMMAND [--repo DIR] ARGS...\n"
      "       edgeshard-wal COMMAND --help\n"
      "\n"
      "The WAL archive repository written by the archive module (archive_library = 'edgeshard',\n"
      "edgeshard.archive_dir). DIR defaults to $EDGESHARD_ARCHIVE_DIR.\n"
      "\n"
      "commands:\n",
      out);
  for (const Subcommand& s : kSubcommands) std::fprintf(out, "  %-15s %s\n", s.name, s.summary);
  std::fputs("\nExit status: see each command's --help; 2 for an unknown command.\n", out);
}

}  // namespace

// Dispatches to the subcommand named by argv[1].
int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return edgeshard::wal_tool::kExitUsage;
  }
  const std::string_view command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    if (argc > 2) {
      for (const Subcommand& s : kSubcommands) {
        if (std::strcmp(argv[2], s.name) == 0) {
          std::fputs(s.usage, stdout);
          return 0;
        }
      }
    }
    print_usage(stdout);
    return 0;
  }
  for (const Subcommand& s : kSubcommands) {
    if (command == s.name) return s.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "edgeshard-wal: unknown command \"%s\"\n", argv[1]);
  print_usage(stderr);
  return edgeshard::wal_tool::kExitUsage;
}

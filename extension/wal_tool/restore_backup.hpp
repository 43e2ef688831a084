// `edgeshard-wal restore-backup --repo DIR [--backup ID|latest] --target DATADIR`: unpacks a
// complete base backup into an empty (or absent) data directory. Every part is checked against
// its own checksums and against the manifest (raw size, stored size, XXH3) while it streams into
// `tar -x` (fork/exec, a pipe); the directory is then chmod 0700 and the next steps printed
// (restore_command, a recovery target, recovery.signal). Named apart from `restore`, which is
// PostgreSQL's restore_command.
//
// Exit status: 0 restored; 1 failed (no such backup, a bad part, tar failed: the target's content
// is removed again); 2 usage error or a non-empty target.
#pragma once

#include "common/no_postgres.hpp"

namespace edgeshard::wal_tool {

// restore-backup's help text.
extern const char kRestoreBackupUsage[];

// The subcommand's entry point (wal_main.cpp's table).
int restore_backup_main(int argc, char** argv);

}  // namespace edgeshard::wal_tool

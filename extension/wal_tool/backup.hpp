// `edgeshard-wal backup --repo DIR --conninfo CONNINFO [--label TEXT] [--part-size-mb N]`: a full
// base backup into the repository's backups/<id>/ (id: the UTC start time, YYYYMMDDTHHMMSSZ).
// Runs pg_basebackup -D - -F tar -X none (fork/exec, its stdout through a pipe), cuts the tar
// stream into parts stored as archive files (base.tar.00001, ...; temp name, fsync, rename), waits
// for the server to archive the backup history file and the stop segment (the WAL the backup
// needs comes from the archive), and writes backup.manifest last: a backup without one is
// incomplete.
//
// Exit status: 0 backup complete; 1 failed (pg_basebackup failed, the archive did not receive the
// history file or the stop segment in time, I/O error): the partial directory is removed;
// 2 usage error.
#pragma once

#include "common/no_postgres.hpp"

namespace edgeshard::wal_tool {

// backup's help text.
extern const char kBackupUsage[];

// The subcommand's entry point (wal_main.cpp's table).
int backup_main(int argc, char** argv);

}  // namespace edgeshard::wal_tool

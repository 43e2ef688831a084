// `edgeshard-wal list --repo DIR`: every backup of the repository, oldest first: id, label,
// start/stop time and LSN, timeline, size raw/stored, complete or not, and its point-in-time
// recovery window (from its stop time to the end of the newest segment reachable without a gap on
// its timeline from its start segment).
//
// Exit status: 0 listed (also when there are no backups); 2 usage error.
#pragma once

#include "common/no_postgres.hpp"

#include "extension/wal_tool/backup_catalog.hpp"

#include <cstdio>
#include <string>
#include <vector>

namespace edgeshard::wal_tool {

// list's help text.
extern const char kListUsage[];

// Prints the catalog (backups, archived WAL files) to out.
void print_backups(const std::vector<BackupEntry>& backups,
                   const std::vector<std::string>& wal_files, std::FILE* out);

// The subcommand's entry point (wal_main.cpp's table).
int list_main(int argc, char** argv);

}  // namespace edgeshard::wal_tool

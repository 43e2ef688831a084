// The subcommands of edgeshard-wal. Each lives in its own file pair (restore, backup,
// restore_backup, list, verify, expire) and is listed once in wal_main.cpp's table; a subcommand
// gets the arguments after its name and returns the process's exit status.
#pragma once

#include "common/no_postgres.hpp"

namespace edgeshard::wal_tool {

// One row of the dispatcher's table.
struct Subcommand {
  const char* name;                   // as typed: "restore"
  const char* summary;                // one line for `edgeshard-wal --help`
  const char* usage;                  // the full help of `edgeshard-wal COMMAND --help`
  int (*run)(int argc, char** argv);  // argv[0] is the subcommand's name
};

// Exit status of a usage error (any subcommand may choose another: see restore.hpp).
inline constexpr int kExitUsage = 2;

}  // namespace edgeshard::wal_tool

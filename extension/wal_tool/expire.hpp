// `edgeshard-wal expire --repo DIR (--keep N | --keep-days D) [--dry-run]`: retention. Keeps the
// newest N complete backups (or those younger than D days, always at least the newest complete
// one), removes the older ones and incomplete backups older than a day, then the WAL files
// (segments, partial segments, backup history files; never timeline history files) that come
// before the oldest kept backup's start segment on its timeline or earlier ones: never WAL a kept
// backup needs. Prints what it removes (with --dry-run: would remove).
//
// Exit status: 0 done; 1 a removal failed; 2 usage error.
#pragma once

#include "common/no_postgres.hpp"

namespace edgeshard::wal_tool {

// expire's help text.
extern const char kExpireUsage[];

// The subcommand's entry point (wal_main.cpp's table).
int expire_main(int argc, char** argv);

}  // namespace edgeshard::wal_tool

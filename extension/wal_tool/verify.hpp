// `edgeshard-wal verify --repo DIR`: every archive file of wal/ and backups/ fully decodes and
// passes every check; each complete backup's parts match its manifest (sizes, XXH3, no part
// missing); the WAL chain from each complete backup's start segment through its stop segment is
// archived (missing segments named); gaps after the stop segment are reported as warnings (they
// end the point-in-time window, not the backup). Progress on a terminal.
//
// Exit status: 0 all sound; 1 a problem found (each printed, naming the file); 2 usage error.
#pragma once

#include "common/no_postgres.hpp"

#include <cstdio>
#include <string>

namespace edgeshard::wal_tool {

// verify's help text.
extern const char kVerifyUsage[];

// Verifies repo, printing problems and warnings to out (progress to stderr when `progress`);
// returns the number of problems.
int verify_repository(const std::string& repo, std::FILE* out, bool progress);

// The subcommand's entry point (wal_main.cpp's table).
int verify_main(int argc, char** argv);

}  // namespace edgeshard::wal_tool

// The daemons' main(): parse the command line, print --help, or run; with the exit statuses
// every daemon uses. Shared by edgeshard-relay and edgeshard-apply; not part of edgeshard.so.
#pragma once

#include "common/no_postgres.hpp"

#include <functional>
#include <string>

namespace edgeshard::daemon {

// Exit statuses.
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Runs parse (true: --help was asked for); a ConfigError from it is printed as "program: message"
// and exits kExitUsage; --help prints usage() and exits kExitOk; otherwise returns run().
int run_main(const char* program, const std::function<bool()>& parse,
             const std::function<std::string()>& usage, const std::function<int()>& run);

}  // namespace edgeshard::daemon

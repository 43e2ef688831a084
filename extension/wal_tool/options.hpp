// Command-line options shared by edgeshard-wal's subcommands: --repo DIR (or the environment's
// EDGESHARD_ARCHIVE_DIR), --help, and positional arguments.
#pragma once

#include "common/no_postgres.hpp"

#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace edgeshard::wal_tool {

// The environment variable naming the repository when --repo is not given.
inline constexpr char kRepoEnv[] = "EDGESHARD_ARCHIVE_DIR";

// What parse_options() found.
struct Options {
  std::optional<std::string> repo;            // --repo DIR / --repo=DIR
  bool help = false;                          // --help / -h
  std::vector<std::string> positional;        // everything else, in order ("--" ends the options)
  std::map<std::string, std::string> values;  // subcommand options with a value ("--keep" -> "3")
  std::set<std::string> flags;                // subcommand options without one ("--dry-run")
};

// Parses argv like parse_options() below, also accepting the subcommand's own options: those in
// value_names take a value (--name V or --name=V), those in flag_names none.
bool parse_options(int argc, char** argv, Options& out, std::string& why,
                   std::initializer_list<const char*> value_names,
                   std::initializer_list<const char*> flag_names);

// Parses argv[1..argc-1] (argv[0] is the subcommand's name); false with why on an unknown option
// or a --repo without its value.
bool parse_options(int argc, char** argv, Options& out, std::string& why);

// The repository: --repo, else env_value (the environment variable's value, may be null); false
// with why when neither is given or the value is empty.
bool resolve_repo(const Options& options, const char* env_value, std::string& repo,
                  std::string& why);

// The common start of a subcommand that works on a repository: parses argv (with the
// subcommand's own options) and resolves the repository into `repo`. Returns the exit status when
// the command is over already — kExitUsage after printing why and `usage` to stderr, 0 after
// printing `usage` for --help — and nullopt when the subcommand goes on.
std::optional<int> start_subcommand(int argc, char** argv, const char* name, const char* usage,
                                    std::initializer_list<const char*> value_names,
                                    std::initializer_list<const char*> flag_names, Options& options,
                                    std::string& repo);

}  // namespace edgeshard::wal_tool

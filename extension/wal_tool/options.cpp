// Shared command-line options of edgeshard-wal: see options.hpp.
#include "extension/wal_tool/options.hpp"

#include "extension/wal_tool/subcommand.hpp"

#include <cstdio>
#include <cstdlib>

#include <cstring>

namespace edgeshard::wal_tool {

bool parse_options(int argc, char** argv, Options& out, std::string& why) {
  return parse_options(argc, argv, out, why, {}, {});
}

bool parse_options(int argc, char** argv, Options& out, std::string& why,
                   std::initializer_list<const char*> value_names,
                   std::initializer_list<const char*> flag_names) {
  out = Options{};
  bool options_done = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (options_done || arg.empty() || arg[0] != '-' || arg == "-") {
      out.positional.push_back(arg);
    } else if (arg == "--") {
      options_done = true;
    } else if (arg == "--help" || arg == "-h") {
      out.help = true;
    } else if (arg == "--repo") {
      if (i + 1 == argc) {
        why = "--repo needs a directory";
        return false;
      }
      out.repo = argv[++i];
    } else if (arg.rfind("--repo=", 0) == 0) {
      out.repo = arg.substr(std::strlen("--repo="));
    } else {
      const size_t eq = arg.find('=');
      const std::string name = arg.substr(0, eq);
      bool known = false;
      for (const char* v : value_names) {
        if (name != v) continue;
        known = true;
        if (eq != std::string::npos) {
          out.values[name] = arg.substr(eq + 1);
        } else if (i + 1 == argc) {
          why = name + " needs a value";
          return false;
        } else {
          out.values[name] = argv[++i];
        }
      }
      for (const char* f : flag_names) {
        if (name != f || eq != std::string::npos) continue;
        known = true;
        out.flags.insert(name);
      }
      if (!known) {
        why = "unknown option " + arg;
        return false;
      }
    }
  }
  return true;
}

bool resolve_repo(const Options& options, const char* env_value, std::string& repo,
                  std::string& why) {
  if (options.repo.has_value()) {
    repo = *options.repo;
  } else if (env_value != nullptr) {
    repo = env_value;
  } else {
    why = std::string("no repository: give --repo DIR or set ") + kRepoEnv;
    return false;
  }
  if (repo.empty()) {
    why = "the repository directory is empty";
    return false;
  }
  return true;
}

std::optional<int> start_subcommand(int argc, char** argv, const char* name, const char* usage,
                                    std::initializer_list<const char*> value_names,
                                    std::initializer_list<const char*> flag_names, Options& options,
                                    std::string& repo) {
  std::string why;
  if (!parse_options(argc, argv, options, why, value_names, flag_names) ||
      (!options.help && !resolve_repo(options, std::getenv(kRepoEnv), repo, why))) {
    std::fprintf(stderr, "edgeshard-wal %s: %s\n%s", name, why.c_str(), usage);
    return kExitUsage;
  }
  if (options.help) {
    std::fputs(usage, stdout);
    return 0;
  }
  return std::nullopt;
}

}  // namespace edgeshard::wal_tool

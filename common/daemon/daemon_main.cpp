// The daemons' shared main(): configuration errors, --help, then the daemon itself.
#include "common/daemon/daemon_main.hpp"

#include "common/daemon/settings.hpp"

#include <cstdio>

namespace edgeshard::daemon {

int run_main(const char* program, const std::function<bool()>& parse,
             const std::function<std::string()>& usage, const std::function<int()>& run) {
  bool help = false;
  try {
    help = parse();
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return kExitUsage;
  }
  if (help) {
    std::fputs(usage().c_str(), stdout);
    return kExitOk;
  }
  return run();
}

}  // namespace edgeshard::daemon

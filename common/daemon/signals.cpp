// The daemons' signal mask and wait loop.
#include "common/daemon/signals.hpp"

#include <pthread.h>

namespace edgeshard::daemon {

sigset_t block_signals(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : signals) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  return set;
}

int wait_for_stop(const sigset_t& set, const std::function<bool(int)>& handled) {
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (handled && handled(sig)) continue;
    return sig;
  }
}

}  // namespace edgeshard::daemon

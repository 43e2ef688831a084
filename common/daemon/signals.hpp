// The daemons' signal handling: the main thread blocks the signals it takes before any other
// thread starts (so every thread inherits the mask), then waits for them synchronously.
// Shared by edgeshard-relay and edgeshard-apply; not part of edgeshard.so.
#pragma once

#include "common/no_postgres.hpp"

#include <signal.h>

#include <functional>
#include <initializer_list>

namespace edgeshard::daemon {

// Blocks signals in the calling thread (call before starting threads) and ignores SIGPIPE;
// returns the set to wait on.
sigset_t block_signals(std::initializer_list<int> signals);

// Waits for the signals of set until one is not handled: handled(sig) returning true (e.g. a
// SIGHUP reload) keeps waiting; without handled every signal stops. Returns the stopping signal.
int wait_for_stop(const sigset_t& set, const std::function<bool(int)>& handled = nullptr);

}  // namespace edgeshard::daemon

// The relay's server thread: accepts subscribers (PROTOCOL.md), authenticates them, and streams
// each its frames from one shared in-memory window of recent records (the same buffers for every
// subscriber, written with writev) or, when it is behind that window, from its own cursor over the
// log on disk. Non-blocking sockets and one epoll loop: a subscriber that does not read only
// fills its own socket and is cut after send_timeout; nobody waits for it.
#pragma once

#include "common/no_postgres.hpp"

#include "walsender_fanout/relay/frame_log.hpp"
#include "walsender_fanout/relay/publication.hpp"
#include "walsender_fanout/relay/relay_state.hpp"
#include "walsender_fanout/relay/status_board.hpp"
#include "walsender_fanout/relay/token_store.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace edgeshard::relay {

// Settings of the server thread.
struct ServerOptions {
  std::string listen = "127.0.0.1:5499";
  std::string relay_name = "relay";
  std::chrono::milliseconds keepalive_interval{1000};
  std::chrono::milliseconds send_timeout{60000};
  std::chrono::milliseconds receive_timeout{60000};
  std::chrono::milliseconds handshake_timeout{10000};
  uint64_t window_bytes = 64u << 20;
  size_t max_subscribers = 1000;
};

// Binds a "host:port" TCP listener (non-blocking, SO_REUSEADDR); throws std::runtime_error.
int listen_on(const std::string& host_port);

class FanoutServer {
 public:
  // Binds the listener now (throws std::runtime_error when it cannot); serves from log.
  FanoutServer(ServerOptions options, const FrameLog& log, Registry& registry,
               PublicationQueue& queue, const TokenStore& tokens, StatusBoard& board);
  ~FanoutServer();
  FanoutServer(const FanoutServer&) = delete;
  FanoutServer& operator=(const FanoutServer&) = delete;

  // The bound port (useful with port 0).
  int port() const noexcept;

  // Serves until stop is set; then tells every subscriber shutting_down and returns.
  void run(const std::atomic<bool>& stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgeshard::relay

// One shard's subscription (one thread each): a RelayClient connection to the shard's relay, or
// the edge's own slot on the shard's primary (PrimaryClient), reconnecting with backoff. Every frame is checked completely (frame::Reader: header, checksum,
// every message) before it goes anywhere; a tenant's frames are held until its group's LAST frame
// and then handed to the applier whole, so the applier never sees half a transaction. Held in
// memory up to group_memory_bytes for all the groups in progress; past it a group's frames go to
// a spill file (group_spill.hpp) that the event carries instead. Corrupt
// frames and broken group rules drop the connection (never applied): the relay resends from the
// ack. The shard's ack is whatever the applier made durable (ShardState::acked), sent whenever
// it moves and whenever the relay asks.
#pragma once

#include "common/no_postgres.hpp"

#include "edge_apply/daemon/event_queue.hpp"

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace edgeshard::apply::daemon {

// What a shard's stream and the applier share about the shard (read by /metrics).
struct ShardState {
  std::string shard;
  std::string hosts;
  std::atomic<bool> connected{false};
  std::atomic<uint64_t> received{0};  // highest position received (frame key or KEEPALIVE)
  std::atomic<uint64_t> acked{0};     // durable on every tenant of the shard (set by the applier)
  std::atomic<uint64_t> sessions{0};  // connections established
  std::atomic<uint64_t> frames{0};    // frames received and checked
  std::atomic<uint64_t> frame_bytes{0};
  std::atomic<uint64_t> corrupt{0};   // connections dropped for a corrupt frame or a broken rule
  std::atomic<uint64_t> spilled_groups{0};  // frame groups written to a spill file as they arrived
  std::atomic<bool> quiet{false};     // the stream stopped and pushes nothing more
};

// Settings of a shard stream.
struct StreamOptions {
  size_t shard_index = 0;
  std::string name;                  // subscriber name
  std::string token;
  std::vector<std::string> tenants;  // relay tenant filter (empty: all)
  uint64_t start = 0;                // first connection's start (0: the relay's registered position)
  std::string primary_conninfo;      // set: stream from this primary's slot instead of a relay
  std::string slot;                  // the slot on that primary
  int connect_timeout_ms = 5000;
  int reconnect_min_ms = 100;
  int reconnect_max_ms = 5000;
  std::string spill_dir;                     // where groups past the budget go ("": never spilled)
  size_t group_memory_bytes = size_t{8} << 20;  // frames of groups in progress held in memory, at most
};

// Runs the shard's subscription until `stop`; then waits (at most a few seconds) for
// `applier_done` and sends the applier's final ack before closing.
void run_shard_stream(const StreamOptions& options, ShardState& state, EventQueue& queue,
                      const std::atomic<bool>& stop, const std::atomic<bool>& applier_done);

}  // namespace edgeshard::apply::daemon

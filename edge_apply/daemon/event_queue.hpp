// What the shard streams hand to the applier thread: checked frames and positions, in stream
// order per shard, through one bounded queue (many producers, one consumer). Every shard feeds
// the same applier, so tenant writers are only ever touched by one thread.
#pragma once

#include "common/no_postgres.hpp"

#include "edge_apply/daemon/group_spill.hpp"

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace edgeshard::apply::daemon {

// One item of a shard's stream, already checked by the stream thread (frame::Reader).
struct ApplyEvent {
  enum Kind {
    kManyTenants,  // one MANY_TENANTS frame (RELATION, TRUNCATE): frames[0]
    kGroup,        // one tenant's complete frame group of one transaction: frames in sequence
    kPosition,     // a KEEPALIVE: everything below `key` was sent
  };
  Kind kind = kPosition;
  size_t shard = 0;      // index into the configured shards
  uint64_t key = 0;      // commit LSN (frames) or the KEEPALIVE's position
  std::string tenant;    // kGroup
  std::vector<std::vector<uint8_t>> frames;  // kGroup: empty when the group is in `spill`
  std::shared_ptr<GroupSpill> spill;         // kGroup: a group too big for memory, on disk
  int64_t relay_time_us = 0;   // kPosition: the relay's clock
  int64_t commit_time_us = 0;  // kPosition: commit time of the newest transaction below key

  // Bytes the event holds in memory (for the queue's bound; a spilled group's are on disk).
  size_t bytes() const noexcept {
    size_t n = 64 + tenant.size();
    for (const auto& f : frames) n += f.size();
    return n;
  }
};

// Bounded FIFO of events: push() waits while the queue holds more than its byte bound.
class EventQueue {
 public:
  // A queue holding at most about max_bytes (one event is always accepted when empty).
  explicit EventQueue(size_t max_bytes) : max_bytes_(max_bytes) {}

  // Appends an event, waiting for room; false (event dropped) once close() was called.
  bool push(ApplyEvent&& event);

  // Takes the oldest event, waiting until deadline; false when none came in time.
  bool pop(std::chrono::steady_clock::time_point deadline, ApplyEvent& out);

  // Takes the oldest event if there is one; never waits.
  bool try_pop(ApplyEvent& out);

  // Makes push() refuse from now on (and wakes waiting producers).
  void close();

  // Events queued.
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<ApplyEvent> items_;
  size_t bytes_ = 0;
  size_t max_bytes_;
  bool closed_ = false;
};

}  // namespace edgeshard::apply::daemon

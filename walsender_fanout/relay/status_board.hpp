// What the relay knows about itself and its subscribers, as a snapshot the server thread refreshes
// a few times a second and the metrics endpoint and the edge_status reporter read.
#pragma once

#include "common/no_postgres.hpp"

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace edgeshard::relay {

// One subscriber, connected now or registered earlier.
struct SubscriberStatus {
  std::string name;
  std::string peer;     // address of the connection, empty when disconnected
  std::string tenants;  // comma-separated filter, "*" for every tenant
  bool connected = false;
  bool catching_up = false;     // served from the log on disk rather than the shared window
  uint64_t acked = 0;           // position acked
  uint64_t sent = 0;            // position sent
  uint64_t lag_bytes = 0;       // relay position - acked
  double lag_seconds = 0;       // since the oldest unacked transaction became visible here
  uint64_t frames_sent = 0;
  uint64_t bytes_sent = 0;
};

// The relay as a whole.
struct RelayStatus {
  uint64_t position = 0;  // visible position
  uint64_t connections_total = 0;
  uint64_t refused_total = 0;  // connections refused with an ERROR
  std::vector<SubscriberStatus> subscribers;
};

// A mutex-protected RelayStatus.
class StatusBoard {
 public:
  // Replaces the snapshot.
  void update(RelayStatus status) {
    std::lock_guard lock(mutex_);
    status_ = std::move(status);
  }
  // A copy of the snapshot.
  RelayStatus read() const {
    std::lock_guard lock(mutex_);
    return status_;
  }

 private:
  mutable std::mutex mutex_;
  RelayStatus status_;
};

}  // namespace edgeshard::relay

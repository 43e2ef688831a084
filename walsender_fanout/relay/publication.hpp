// Hand-off of newly visible log records from the upstream (log writer) thread to the server
// thread: a mutex-protected queue plus an eventfd the server's epoll waits on.
#pragma once

#include "common/no_postgres.hpp"

#include "walsender_fanout/relay/shared_frame.hpp"

#include <cstdint>
#include <mutex>
#include <vector>

namespace edgeshard::relay {

// Records [.., end_ordinal) of the log became visible (durable, ending at a marker).
struct Publication {
  // The newest records, contiguous ordinals ending at end_ordinal; possibly fewer than what became
  // visible (the writer keeps a bounded number in memory): older ones are read from the log.
  std::vector<FrameRef> frames;
  uint64_t end_ordinal = 0;
  uint64_t position = 0;        // the marker's key: every transaction below it is visible
  int64_t commit_time_us = 0;   // commit time of the newest transaction below position (0: unknown)
  int64_t upstream_time_us = 0; // when upstream said so (its clock), 0 when unknown
};

// Single-producer, single-consumer queue of publications with an eventfd wake-up.
class PublicationQueue {
 public:
  // Creates the eventfd; throws std::system_error.
  PublicationQueue();
  ~PublicationQueue();
  PublicationQueue(const PublicationQueue&) = delete;
  PublicationQueue& operator=(const PublicationQueue&) = delete;

  // Queues p and wakes the consumer.
  void push(Publication p);
  // Moves everything queued into out (appending) and clears the wake-up; false if none.
  bool drain(std::vector<Publication>& out);
  // The eventfd to poll for input.
  int fd() const noexcept { return fd_; }

 private:
  std::mutex mutex_;
  std::vector<Publication> queue_;
  int fd_ = -1;
};

}  // namespace edgeshard::relay

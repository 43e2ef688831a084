// The bounded event queue between the shard streams and the applier.
#include "edge_apply/daemon/event_queue.hpp"

namespace edgeshard::apply::daemon {

bool EventQueue::push(ApplyEvent&& event) {
  const size_t n = event.bytes();
  std::unique_lock lock(mu_);
  not_full_.wait(lock, [&] { return closed_ || items_.empty() || bytes_ + n <= max_bytes_; });
  if (closed_) return false;
  bytes_ += n;
  items_.push_back(std::move(event));
  not_empty_.notify_one();
  return true;
}

bool EventQueue::pop(std::chrono::steady_clock::time_point deadline, ApplyEvent& out) {
  std::unique_lock lock(mu_);
  if (!not_empty_.wait_until(lock, deadline, [&] { return !items_.empty(); })) return false;
  out = std::move(items_.front());
  items_.pop_front();
  bytes_ -= out.bytes();
  not_full_.notify_all();
  return true;
}

bool EventQueue::try_pop(ApplyEvent& out) {
  std::lock_guard lock(mu_);
  if (items_.empty()) return false;
  out = std::move(items_.front());
  items_.pop_front();
  bytes_ -= out.bytes();
  not_full_.notify_all();
  return true;
}

void EventQueue::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  not_full_.notify_all();
}

size_t EventQueue::size() const {
  std::lock_guard lock(mu_);
  return items_.size();
}

}  // namespace edgeshard::apply::daemon

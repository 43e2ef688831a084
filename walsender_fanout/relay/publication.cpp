// PublicationQueue: mutex + eventfd.
#include "walsender_fanout/relay/publication.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace edgeshard::relay {

PublicationQueue::PublicationQueue() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

PublicationQueue::~PublicationQueue() { ::close(fd_); }

void PublicationQueue::push(Publication p) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(p));
  }
  const uint64_t one = 1;
  // EAGAIN only when the counter is about to overflow: the consumer is already due to wake.
  ssize_t ignored = ::write(fd_, &one, sizeof one);
  (void)ignored;
}

bool PublicationQueue::drain(std::vector<Publication>& out) {
  uint64_t count = 0;
  ssize_t ignored = ::read(fd_, &count, sizeof count);
  (void)ignored;
  std::lock_guard lock(mutex_);
  if (queue_.empty()) return false;
  for (Publication& p : queue_) out.push_back(std::move(p));
  queue_.clear();
  return true;
}

}  // namespace edgeshard::relay

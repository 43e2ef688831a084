// The compaction thread of edgeshard-apply.
#include "edge_apply/daemon/compactor.hpp"

namespace edgeshard::apply::daemon {

Compactor::Compactor() : thread_([this] { loop(); }) {}

Compactor::~Compactor() { stop(); }

void Compactor::submit(std::string tenant, std::unique_ptr<Compaction> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    todo_.emplace_back(std::move(tenant), std::move(job));
  }
  wake_.notify_one();
}

void Compactor::take_finished(std::vector<Job>& out) {
  std::lock_guard<std::mutex> lock(mu_);
  for (Job& j : finished_) out.push_back(std::move(j));
  finished_.clear();
}

void Compactor::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  todo_.clear();
}

size_t Compactor::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return todo_.size() + running_ + finished_.size();
}

void Compactor::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !todo_.empty(); });
    if (stopping_) return;
    Job job = std::move(todo_.front());
    todo_.pop_front();
    ++running_;
    lock.unlock();
    job.second->run();  // its status travels with the job
    lock.lock();
    --running_;
    finished_.push_back(std::move(job));
  }
}

}  // namespace edgeshard::apply::daemon

// The apply daemon's compaction thread: merges tenants' files into new bases (Compaction::run)
// off the applier thread, so a large tenant's compaction never holds up applying and publishing
// the others. The applier starts a job (TenantWriter::start_compaction), submits it here, and
// later takes the finished jobs back to install them (TenantWriter::finish_compaction) on its own
// thread: tenant writers stay single-threaded.
#pragma once

#include "common/no_postgres.hpp"

#include "edge_apply/tenant_writer.hpp"

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace edgeshard::apply::daemon {

class Compactor {
 public:
  // A tenant's job, submitted or finished.
  using Job = std::pair<std::string, std::unique_ptr<Compaction>>;

  Compactor();
  // Stops the thread (after the job it runs) and drops the jobs not started.
  ~Compactor();
  Compactor(const Compactor&) = delete;
  Compactor& operator=(const Compactor&) = delete;

  // Queues tenant's job.
  void submit(std::string tenant, std::unique_ptr<Compaction> job);
  // Moves the jobs that finished running (successfully or not) into out.
  void take_finished(std::vector<Job>& out);
  // Waits for the running job, stops the thread; queued jobs that did not start are dropped.
  void stop();
  // Jobs submitted and not yet taken back.
  size_t in_flight() const;

 private:
  // The thread: runs jobs in order until stop().
  void loop();

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job> todo_;
  std::vector<Job> finished_;
  size_t running_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace edgeshard::apply::daemon

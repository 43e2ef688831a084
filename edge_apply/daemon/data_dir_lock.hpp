// An exclusive lock on an apply daemon's data directory (flock on data_dir/lock, held for the
// process's life): a second edgeshard-apply started on the same directory is refused at start
// instead of writing the same tenants' files and manifests as the first.
#pragma once

#include "common/no_postgres.hpp"

#include <filesystem>
#include <string>

namespace edgeshard::apply::daemon {

class DataDirLock {
 public:
  DataDirLock() = default;
  ~DataDirLock();
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;

  // Takes the lock without waiting; false with why (naming the holder's pid when it is known).
  bool acquire(const std::filesystem::path& data_dir, std::string& why);

 private:
  int fd_ = -1;
};

}  // namespace edgeshard::apply::daemon

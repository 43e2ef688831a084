// A child process started with fork/exec (no shell), one end of a pipe to it: its stdout for us to
// read (pg_basebackup -D -) or its stdin for us to write (tar -x). Killed and reaped on destruction
// when the caller did not wait for it.
#pragma once

#include "common/no_postgres.hpp"

#include "common/posix_file.hpp"

#include <sys/types.h>

#include <string>
#include <vector>

namespace edgeshard::wal_tool {

// Which of the child's standard streams is the pipe.
enum class PipeTo : uint8_t { kChildStdout, kChildStdin };

// A running child and our end of its pipe.
class ChildProcess {
 public:
  ChildProcess() = default;
  // Kills (SIGTERM) and reaps a child not waited for.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Starts argv[0] (searched in PATH) with the pipe on `pipe_to`; false with why.
  bool start(const std::vector<std::string>& argv, PipeTo pipe_to, std::string& why);
  // Our end of the pipe (read end for kChildStdout, write end for kChildStdin).
  int fd() const noexcept { return pipe_.get(); }
  // Closes our end (the child sees EOF on its stdin).
  void close_pipe() noexcept { pipe_.reset(); }
  // Waits for the child; returns its exit status, 128 + signal when killed, -1 on error.
  int wait() noexcept;

 private:
  pid_t pid_ = -1;
  posix::UniqueFd pipe_;
};

// Reads up to n bytes, retrying on EINTR and short reads until n or EOF; returns the count read,
// -1 with errno set on error.
ssize_t read_full(int fd, void* buf, size_t n) noexcept;

}  // namespace edgeshard::wal_tool

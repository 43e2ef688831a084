// A child process behind a pipe: see child_process.hpp.
#include "extension/wal_tool/child_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace edgeshard::wal_tool {

ChildProcess::~ChildProcess() {
  pipe_.reset();
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

bool ChildProcess::start(const std::vector<std::string>& argv, PipeTo pipe_to, std::string& why) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    why = "could not create a pipe: " + posix::errno_text(errno);
    return false;
  }
  posix::UniqueFd read_end(fds[0]), write_end(fds[1]);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    why = "could not fork: " + posix::errno_text(errno);
    return false;
  }
  if (pid == 0) {
    // The child: only async-signal-safe calls until exec.
    const int child_fd = pipe_to == PipeTo::kChildStdout ? write_end.get() : read_end.get();
    const int target = pipe_to == PipeTo::kChildStdout ? STDOUT_FILENO : STDIN_FILENO;
    if (::dup2(child_fd, target) < 0) ::_exit(127);
    ::signal(SIGPIPE, SIG_DFL);
    ::execvp(args[0], args.data());
    const char msg[] = "edgeshard-wal: could not run a child program\n";
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(127);
  }
  pid_ = pid;
  pipe_ = pipe_to == PipeTo::kChildStdout ? std::move(read_end) : std::move(write_end);
  return true;
}

int ChildProcess::wait() noexcept {
  if (pid_ <= 0) return -1;
  int status = 0;
  pid_t r;
  while ((r = ::waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  if (r < 0) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

ssize_t read_full(int fd, void* buf, size_t n) noexcept {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::read(fd, static_cast<char*>(buf) + done, n - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

}  // namespace edgeshard::wal_tool

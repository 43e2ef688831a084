// relay.state: encode/decode and the atomic replacement of the file.
#include "walsender_fanout/relay/relay_state.hpp"

#include "common/lsn.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <fstream>
#include <sstream>

namespace edgeshard::relay {

namespace {

constexpr char kHeaderLine[] = "edgeshard-relay-state 1";

// The text of errno for messages.
std::string errno_text() { return std::strerror(errno); }

// Writes all of data to fd; false on error.
bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string encode_state(const RelayState& state) {
  std::string out = kHeaderLine;
  out += "\nfloor " + format_lsn(state.floor) + "\n";
  if (!state.upstream.empty()) out += "upstream " + state.upstream + "\n";
  for (const auto& [name, rec] : state.subscribers) {
    out += "subscriber " + name + " " + format_lsn(rec.acked) + " " +
           std::to_string(rec.last_seen_unix) + "\n";
  }
  char sum[40];
  std::snprintf(sum, sizeof sum, "checksum %016" PRIx64 "\n", XXH3_64bits(out.data(), out.size()));
  return out + sum;
}

RelayState decode_state(const std::string& text) {
  const size_t last = text.rfind("checksum ");
  if (last == std::string::npos) throw StateError("relay.state has no checksum line");
  const std::string body = text.substr(0, last);
  char expected[40];
  std::snprintf(expected, sizeof expected, "checksum %016" PRIx64 "\n",
                XXH3_64bits(body.data(), body.size()));
  if (text.substr(last) != expected) throw StateError("relay.state fails its checksum");
  std::istringstream in(body);
  std::string line;
  if (!std::getline(in, line) || line != kHeaderLine) {
    throw StateError("relay.state: unknown header (expected \"" + std::string(kHeaderLine) + "\")");
  }
  RelayState state;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string kind, a, b, c;
    fields >> kind >> a;
    if (kind == "floor" && parse_lsn(a, state.floor)) continue;
    if (kind == "upstream" && !a.empty()) {
      state.upstream = a;
      continue;
    }
    if (kind == "subscriber" && (fields >> b >> c)) {
      SubscriberRecord rec;
      if (parse_lsn(b, rec.acked)) {
        rec.last_seen_unix = std::strtoll(c.c_str(), nullptr, 10);
        state.subscribers[a] = rec;
        continue;
      }
    }
    throw StateError("relay.state: bad line \"" + line + "\"");
  }
  return state;
}

Registry::Registry(std::filesystem::path dir) : path_(std::move(dir) / "relay.state") {
  std::ifstream in(path_, std::ios::binary);
  if (!in) return;  // first start
  std::ostringstream text;
  text << in.rdbuf();
  state_ = decode_state(text.str());
}

RelayState Registry::snapshot() const {
  std::lock_guard lock(mutex_);
  return state_;
}

uint64_t Registry::floor() const {
  std::lock_guard lock(mutex_);
  return state_.floor;
}

void Registry::raise_floor(uint64_t floor) {
  std::lock_guard save(save_mutex_);
  RelayState copy;
  {
    std::lock_guard lock(mutex_);
    if (floor <= state_.floor) return;
    state_.floor = floor;
    copy = state_;
    dirty_ = false;
  }
  write_file(copy);
}

bool Registry::bind_upstream(const std::string& identity, std::string& recorded) {
  std::lock_guard save(save_mutex_);
  RelayState copy;
  {
    std::lock_guard lock(mutex_);
    recorded = state_.upstream.empty() ? identity : state_.upstream;
    if (!state_.upstream.empty()) return recorded == identity;
    state_.upstream = identity;
    copy = state_;
    dirty_ = false;
  }
  write_file(copy);
  return true;
}

void Registry::restart(const std::string& name, uint64_t start, int64_t now_unix) {
  std::lock_guard lock(mutex_);
  state_.subscribers[name] = {start, now_unix};
  dirty_ = true;
}

void Registry::touch(const std::string& name, uint64_t acked, int64_t now_unix) {
  std::lock_guard lock(mutex_);
  SubscriberRecord& rec = state_.subscribers[name];
  rec.acked = std::max(rec.acked, acked);
  rec.last_seen_unix = now_unix;
  dirty_ = true;
}

bool Registry::acked(const std::string& name, uint64_t& out) const {
  std::lock_guard lock(mutex_);
  auto it = state_.subscribers.find(name);
  if (it == state_.subscribers.end()) return false;
  out = it->second.acked;
  return true;
}

void Registry::expire(int64_t cutoff_unix) {
  std::lock_guard lock(mutex_);
  dirty_ |= std::erase_if(state_.subscribers,
                          [&](const auto& kv) { return kv.second.last_seen_unix < cutoff_unix; }) > 0;
}

uint64_t Registry::min_acked() const {
  std::lock_guard lock(mutex_);
  uint64_t m = UINT64_MAX;
  for (const auto& [name, rec] : state_.subscribers) m = std::min(m, rec.acked);
  return m;
}

void Registry::save_if_dirty() {
  std::lock_guard save(save_mutex_);
  RelayState copy;
  {
    // Copied under the lock, written outside it: acks never wait for an fsync.
    std::lock_guard lock(mutex_);
    if (!dirty_) return;
    copy = state_;
    dirty_ = false;
  }
  try {
    write_file(copy);
  } catch (...) {
    std::lock_guard lock(mutex_);
    dirty_ = true;
    throw;
  }
}

void Registry::write_file(const RelayState& state) {
  const std::string text = encode_state(state);
  const std::filesystem::path tmp = path_.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw StateError("could not create \"" + tmp.string() + "\": " + errno_text(), errno);
  const bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) throw StateError("could not write \"" + tmp.string() + "\": " + std::strerror(err), err);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    throw StateError("could not rename \"" + tmp.string() + "\": " + errno_text(), errno);
  }
  const int dfd = ::open(path_.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) {
    const int derr = errno;
    if (dfd >= 0) ::close(dfd);
    throw StateError("could not fsync the directory of \"" + path_.string() + "\": " + std::strerror(derr), derr);
  }
  ::close(dfd);
}

}  // namespace edgeshard::relay

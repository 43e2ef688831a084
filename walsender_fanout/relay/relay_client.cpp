// Subscriber connection to a relay: non-blocking sockets driven by poll(), so every wait has a
// deadline; one receive buffer, read in big chunks, compacted only when it runs out of room.
#include "walsender_fanout/relay/relay_client.hpp"

#include "common/frame_codec.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

namespace edgeshard::relay {

namespace {

// Largest message a relay may send (header and body).
constexpr size_t kMaxRelayMessage = proto::kMessageHeaderBytes + proto::kMaxRelayBody;
// Largest receive buffer: the largest message and one read chunk after it.
constexpr size_t kMaxBuffer = kMaxRelayMessage + RelayClient::kReadChunk;
// An empty receive buffer larger than this is freed, so one huge frame does not pin its memory
// for the rest of the connection.
constexpr size_t kShrinkAbove = size_t{16} << 20;

// Milliseconds on the monotonic clock.
int64_t now_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The deadline timeout_ms from now; -1 (no deadline) for a negative timeout.
int64_t deadline_after(int timeout_ms) noexcept {
  return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

// Milliseconds left until deadline_ms, for poll(): -1 without a deadline, 0 once it has passed.
int poll_timeout(int64_t deadline_ms) noexcept {
  if (deadline_ms < 0) return -1;
  return static_cast<int>(std::clamp<int64_t>(deadline_ms - now_ms(), 0, 1 << 30));
}

// Microseconds since the Unix epoch (protocol `time`).
int64_t now_unix_us() noexcept {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// An LSN (position) in PostgreSQL's X/X form, for messages.
std::string format_lsn(uint64_t lsn) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32),
                static_cast<unsigned>(lsn & 0xffffffffu));
  return buf;
}

// A message type byte for messages: 'F' when printable, else its code ("0x01").
std::string type_text(uint8_t type) {
  char buf[16];
  if (type >= 0x21 && type < 0x7f) {
    std::snprintf(buf, sizeof buf, "'%c'", static_cast<char>(type));
  } else {
    std::snprintf(buf, sizeof buf, "0x%02x", static_cast<unsigned>(type));
  }
  return buf;
}

// strerror(err) as a std::string.
std::string errno_text(int err) { return std::strerror(err); }

// A status of class error.
ClientStatus status(ClientError error, std::string message) {
  return {error, std::move(message), {}};
}

// Splits one "host:port" entry ("[v6]:port" for an IPv6 literal); false when malformed.
bool parse_host_port(std::string_view entry, std::string& host, std::string& port) {
  size_t colon;
  if (!entry.empty() && entry.front() == '[') {
    const size_t close = entry.find(']');
    if (close == std::string_view::npos || close + 1 >= entry.size() || entry[close + 1] != ':') {
      return false;
    }
    host.assign(entry.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = entry.rfind(':');
    if (colon == std::string_view::npos) return false;
    host.assign(entry.substr(0, colon));
    if (host.find(':') != std::string::npos) return false;  // IPv6 literal without brackets
  }
  const std::string_view p = entry.substr(colon + 1);
  if (host.empty() || p.empty() || p.size() > 5) return false;
  unsigned value = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  port.assign(p);
  return true;
}

// The host list split at commas, blanks around each entry removed.
std::vector<std::string> split_hosts(std::string_view hosts) {
  std::vector<std::string> out;
  size_t pos = 0;
  for (;;) {
    const size_t comma = hosts.find(',', pos);
    std::string_view e = hosts.substr(pos, comma == std::string_view::npos ? comma : comma - pos);
    while (!e.empty() && (e.front() == ' ' || e.front() == '\t')) e.remove_prefix(1);
    while (!e.empty() && (e.back() == ' ' || e.back() == '\t')) e.remove_suffix(1);
    out.emplace_back(e);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

// Frees a getaddrinfo() result.
struct AddrinfoFreer {
  void operator()(addrinfo* ai) const noexcept { freeaddrinfo(ai); }
};

// The numeric address of ai, for messages ("127.0.0.1", "::1").
std::string numeric_host(const addrinfo& ai) {
  char host[NI_MAXHOST];
  if (getnameinfo(ai.ai_addr, ai.ai_addrlen, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0) {
    return "?";
  }
  return host;
}

// Opens a non-blocking TCP connection to ai within timeout_ms; the socket, or -1 with why set.
UniqueFd connect_address(const addrinfo& ai, int timeout_ms, std::string& why) {
  UniqueFd fd(
      ::socket(ai.ai_family, ai.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai.ai_protocol));
  if (fd.get() < 0) {
    why = "socket: " + errno_text(errno);
    return UniqueFd();
  }
  if (::connect(fd.get(), ai.ai_addr, ai.ai_addrlen) != 0) {
    if (errno != EINPROGRESS && errno != EINTR) {
      why = errno_text(errno);
      return UniqueFd();
    }
    const int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
      pollfd pfd{fd.get(), POLLOUT, 0};
      const int n = ::poll(&pfd, 1, poll_timeout(deadline));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        why = "poll: " + errno_text(errno);
        return UniqueFd();
      }
      if (n == 0) {
        why = "timed out after " + std::to_string(timeout_ms) + " ms";
        return UniqueFd();
      }
      break;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      why = errno_text(err);
      return UniqueFd();
    }
  }
  // Acks and HELLO are small and must not wait for Nagle's algorithm.
  const int one = 1;
  if (::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    why = "TCP_NODELAY: " + errno_text(errno);
    return UniqueFd();
  }
  return fd;
}

}  // namespace

const char* client_error_name(ClientError error) noexcept {
  switch (error) {
    case ClientError::kOk:
      return "ok";
    case ClientError::kTimeout:
      return "timeout";
    case ClientError::kConnect:
      return "connect";
    case ClientError::kClosed:
      return "closed";
    case ClientError::kProtocol:
      return "protocol";
    case ClientError::kRefused:
      return "refused";
    case ClientError::kBadOptions:
      return "bad_options";
  }
  return "unknown";
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int UniqueFd::release() noexcept { return std::exchange(fd_, -1); }

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

ClientStatus RelayClient::connect(const ClientOptions& options) {
  close();
  // Check everything before the first connection, so a typo never reaches a relay.
  if (!proto::valid_name(options.name)) {
    return status(ClientError::kBadOptions, "invalid subscriber name \"" + options.name +
                                                "\" (1-63 bytes of A-Z a-z 0-9 _ . -)");
  }
  for (const std::string& t : options.tenants) {
    if (t.empty() || t.size() > 0xFFFF) {
      return status(ClientError::kBadOptions,
                    "invalid tenant key of " + std::to_string(t.size()) + " bytes (1 to 65535)");
    }
  }
  if (options.token.size() > 0xFFFF) {
    return status(ClientError::kBadOptions, "token longer than 65535 bytes");
  }
  if (options.connect_timeout_ms <= 0) {
    return status(ClientError::kBadOptions, "connect_timeout_ms must be positive");
  }
  const std::vector<std::string> entries = split_hosts(options.hosts);
  for (const std::string& e : entries) {
    std::string host, port;
    if (!parse_host_port(e, host, port)) {
      return status(ClientError::kBadOptions,
                    "invalid relay address \"" + e + "\" (use host:port, [v6]:port)");
    }
  }
  proto::Hello hello;
  hello.name = options.name;
  hello.token = options.token;
  hello.start = options.start;
  hello.tenants = options.tenants;
  std::vector<uint8_t> hello_bytes;
  proto::encode(hello, hello_bytes);
  if (hello_bytes.size() - proto::kMessageHeaderBytes > proto::kMaxSubscriberBody) {
    return status(ClientError::kBadOptions, "HELLO exceeds 1 MiB (too many tenant keys)");
  }

  ClientStatus result;
  std::string all;  // every host's failure
  bool refused = false;
  for (const std::string& entry : entries) {
    ClientStatus st = connect_host(entry, options, hello_bytes);
    if (st.ok()) return st;
    if (!all.empty()) all += "; ";
    all += entry + ": " + (st.relay_code.empty() ? "" : st.relay_code + ": ") + st.message;
    // A refusal is the relay's own answer: more telling than another host being down.
    if (st.error == ClientError::kRefused) {
      refused = true;
      result = std::move(st);
    } else if (!refused) {
      result = std::move(st);
    }
  }
  if (result.error != ClientError::kRefused) result.message = std::move(all);
  return result;
}

ClientStatus RelayClient::connect_host(const std::string& entry, const ClientOptions& options,
                                       const std::vector<uint8_t>& hello) {
  std::string host, port;
  parse_host_port(entry, host, port);  // checked by connect()
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* raw = nullptr;
  const int gai = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &raw);
  std::unique_ptr<addrinfo, AddrinfoFreer> addresses(raw);
  if (gai != 0) {
    return status(ClientError::kConnect,
                  std::string("could not resolve \"") + host +
                      "\": " + (gai == EAI_SYSTEM ? errno_text(errno) : gai_strerror(gai)));
  }
  std::string why;
  for (const addrinfo* ai = addresses.get(); ai != nullptr && fd_.get() < 0; ai = ai->ai_next) {
    std::string attempt;
    fd_ = connect_address(*ai, options.connect_timeout_ms, attempt);
    if (fd_.get() < 0) {
      if (!why.empty()) why += ", ";
      why += "connect to " + numeric_host(*ai) + ": " + attempt;
    }
  }
  if (fd_.get() < 0) return status(ClientError::kConnect, why);
  peer_ = entry;
  io_timeout_ms_ = options.connect_timeout_ms;

  ClientStatus st = send_all(hello, options.connect_timeout_ms);
  if (!st.ok()) return st;
  proto::MessageView m;
  st = next_message(deadline_after(options.connect_timeout_ms), /*stop_on_signal=*/false, m);
  if (st.error == ClientError::kTimeout) {
    return fail(ClientError::kTimeout,
                "no WELCOME within " + std::to_string(options.connect_timeout_ms) + " ms");
  }
  if (!st.ok()) return st;
  std::string bad;
  if (m.type == proto::Type::kError) {
    proto::Error e;
    if (!proto::decode(m.body, e, bad)) return fail(ClientError::kProtocol, bad);
    ClientStatus refused = fail(ClientError::kRefused, std::move(e.message));
    refused.relay_code = std::move(e.code);
    return refused;
  }
  if (m.type != proto::Type::kWelcome) {
    return fail(ClientError::kProtocol, "expected WELCOME or ERROR, got message type " +
                                            type_text(static_cast<uint8_t>(m.type)));
  }
  proto::Welcome w;
  if (!proto::decode(m.body, w, bad)) return fail(ClientError::kProtocol, bad);
  if (w.version != proto::kVersion) {
    return fail(ClientError::kProtocol,
                "WELCOME names version " + std::to_string(w.version) + ", not one offered");
  }
  // A relay that starts elsewhere than asked would leave a gap or send duplicates.
  if (options.start != 0 && w.start != options.start) {
    return fail(ClientError::kProtocol, "WELCOME starts at " + format_lsn(w.start) +
                                            ", not at the requested " + format_lsn(options.start));
  }
  welcome_ = std::move(w);
  last_key_ = 0;
  min_key_ = welcome_.start;
  return {};
}

ClientStatus RelayClient::read(int timeout_ms, Incoming& out) {
  if (!connected()) return status(ClientError::kClosed, "not connected");
  proto::MessageView m;
  ClientStatus st = next_message(deadline_after(timeout_ms), /*stop_on_signal=*/true, m);
  if (!st.ok()) return st;
  std::string bad;
  switch (m.type) {
    case proto::Type::kFrame: {
      uint64_t key = 0;
      std::span<const uint8_t> frame;
      if (!proto::decode_frame(m.body, key, frame, bad)) return fail(ClientError::kProtocol, bad);
      if (frame.empty()) return fail(ClientError::kProtocol, "FRAME message holds no frame");
      if (key < last_key_) {
        return fail(ClientError::kProtocol, "frame key " + format_lsn(key) +
                                                " is below the previous frame's " +
                                                format_lsn(last_key_));
      }
      if (key < min_key_) {
        return fail(ClientError::kProtocol, "frame key " + format_lsn(key) + " is below " +
                                                format_lsn(min_key_) +
                                                ", which the start or a KEEPALIVE already passed");
      }
      last_key_ = key;
      out.type = proto::Type::kFrame;
      out.key = key;
      out.frame = frame;
      out.keepalive = {};
      return st;
    }
    case proto::Type::kKeepalive: {
      proto::Keepalive k;
      if (!proto::decode(m.body, k, bad)) return fail(ClientError::kProtocol, bad);
      min_key_ = std::max(min_key_, k.position);
      out.type = proto::Type::kKeepalive;
      out.key = 0;
      out.frame = {};
      out.keepalive = k;
      return st;
    }
    case proto::Type::kError: {
      proto::Error e;
      if (!proto::decode(m.body, e, bad)) return fail(ClientError::kProtocol, bad);
      ClientStatus refused = fail(ClientError::kRefused, std::move(e.message));
      refused.relay_code = std::move(e.code);
      return refused;
    }
    default:
      return fail(
          ClientError::kProtocol,
          "unexpected message type " + type_text(static_cast<uint8_t>(m.type)) + " after WELCOME");
  }
}

ClientStatus RelayClient::send_ack(uint64_t position) {
  if (!connected()) return status(ClientError::kClosed, "not connected");
  std::vector<uint8_t> msg;
  proto::encode(proto::Ack{position, now_unix_us()}, msg);
  return send_all(msg, io_timeout_ms_);
}

void RelayClient::close() noexcept {
  fd_.reset();
  peer_.clear();
  welcome_ = {};
  buf_.reset();
  capacity_ = begin_ = end_ = pending_ = 0;
  last_key_ = min_key_ = 0;
}

ClientStatus RelayClient::next_message(int64_t deadline_ms, bool stop_on_signal,
                                       proto::MessageView& out) {
  // The message returned last is consumed now: its views were valid until this call.
  begin_ += std::exchange(pending_, 0);
  if (begin_ == end_) {
    begin_ = end_ = 0;
    if (capacity_ > kShrinkAbove) {
      buf_.reset();
      capacity_ = 0;
    }
  }
  for (;;) {
    const std::span<const uint8_t> avail(buf_.get() + begin_, end_ - begin_);
    size_t consumed = 0;
    switch (proto::split_message(avail, proto::kMaxRelayBody, out, consumed)) {
      case proto::Split::kMessage:
        pending_ = consumed;
        return {};
      case proto::Split::kTooLong:
        return fail(ClientError::kProtocol,
                    "message of type " + type_text(avail[0]) + " declares a body of " +
                        std::to_string(frame::load_u32(avail.data() + 1)) + " bytes (at most " +
                        std::to_string(proto::kMaxRelayBody) + ")");
      case proto::Split::kNeedMore:
        break;
    }
    const size_t need = avail.size() >= proto::kMessageHeaderBytes
                            ? proto::kMessageHeaderBytes + frame::load_u32(avail.data() + 1)
                            : proto::kMessageHeaderBytes;
    reserve_receive(need);
    if (ClientStatus st = receive(deadline_ms, stop_on_signal); !st.ok()) return st;
  }
}

void RelayClient::reserve_receive(size_t need) {
  const size_t live = end_ - begin_;
  const size_t want = std::max(need, live) + kReadChunk;
  if (capacity_ - begin_ >= want) return;  // the message fits where it is, with a chunk to spare
  if (capacity_ >= want) {
    std::memmove(buf_.get(), buf_.get() + begin_, live);
  } else {
    const size_t grown = std::max(want, std::min(capacity_ * 2, kMaxBuffer));
    auto bigger = std::make_unique_for_overwrite<uint8_t[]>(grown);
    if (live > 0) std::memcpy(bigger.get(), buf_.get() + begin_, live);
    buf_ = std::move(bigger);
    capacity_ = grown;
  }
  begin_ = 0;
  end_ = live;
}

ClientStatus RelayClient::receive(int64_t deadline_ms, bool stop_on_signal) {
  for (;;) {
    const ssize_t n = ::recv(fd_.get(), buf_.get() + end_, capacity_ - end_, 0);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      return {};
    }
    if (n == 0) {
      return fail(ClientError::kClosed, end_ > begin_
                                            ? "the relay closed the connection inside a message"
                                            : "the relay closed the connection");
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return fail(ClientError::kClosed, "receive failed: " + errno_text(errno));
    }
    const int wait = poll_timeout(deadline_ms);
    if (wait == 0) return status(ClientError::kTimeout, "no whole message in time");
    pollfd pfd{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&pfd, 1, wait);
    if (ready == 0) return status(ClientError::kTimeout, "no whole message in time");
    if (ready < 0) {
      if (errno == EINTR) {
        if (stop_on_signal) return status(ClientError::kTimeout, "interrupted by a signal");
        continue;
      }
      return fail(ClientError::kClosed, "poll failed: " + errno_text(errno));
    }
  }
}

ClientStatus RelayClient::send_all(std::span<const uint8_t> bytes, int timeout_ms) {
  const int64_t deadline = deadline_after(timeout_ms);
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd_.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n >= 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return fail(ClientError::kClosed, "send failed: " + errno_text(errno));
    }
    const int wait = poll_timeout(deadline);
    if (wait == 0) {
      return fail(ClientError::kTimeout, "could not send within " + std::to_string(timeout_ms) +
                                             " ms (relay not reading)");
    }
    pollfd pfd{fd_.get(), POLLOUT, 0};
    if (::poll(&pfd, 1, wait) < 0 && errno != EINTR) {
      return fail(ClientError::kClosed, "poll failed: " + errno_text(errno));
    }
  }
  return {};
}

ClientStatus RelayClient::fail(ClientError error, std::string message) {
  close();
  return status(error, std::move(message));
}

}  // namespace edgeshard::relay

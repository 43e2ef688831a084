// The server thread: epoll loop, subscriber state machines, shared window, log catch-up.
#include "walsender_fanout/relay/fanout_server.hpp"

#include "common/frame_reader.hpp"
#include "common/lsn.hpp"
#include "walsender_fanout/relay/log_line.hpp"
#include "walsender_fanout/relay/protocol.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <boost/intrusive/list.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace edgeshard::relay {

namespace bi = boost::intrusive;

namespace {

using Clock = std::chrono::steady_clock;

// Bytes queued per subscriber before writing (then refilled as the socket drains).
constexpr size_t kFillBytes = 512u << 10;
// iovecs per writev.
constexpr int kMaxIov = 64;
// Receive buffer limit of a subscriber (its messages are at most 1 MiB).
constexpr size_t kMaxInput = proto::kMaxSubscriberBody + proto::kMessageHeaderBytes;
// Longest wait between loop passes (timeouts and keepalives are checked each pass).
constexpr int kTickMs = 50;
// Log records a catch-up subscriber may read per turn before the loop serves others.
constexpr int kCatchupBudget = 2048;
// Connections that have not sent their HELLO yet, at most (more are closed at once).
constexpr size_t kMaxHandshakes = 256;
// Publication samples kept for lag-in-seconds estimates.
constexpr size_t kMaxSamples = 100000;
// epoll tags of the two non-subscriber descriptors.
constexpr uint64_t kListenTag = UINT64_MAX;
constexpr uint64_t kQueueTag = UINT64_MAX - 1;

// Microseconds since the Unix epoch.
int64_t unix_time_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Transparent hash so tenant keys from frame headers (string_view) are looked up without a copy.
struct StringHash {
  using is_transparent = void;
  // Hash of s.
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// Bytes queued for a subscriber: a shared frame message or bytes of its own.
struct OutItem {
  FrameRef shared;
  std::vector<uint8_t> own;
  size_t offset = 0;

  // The whole message.
  std::span<const uint8_t> bytes() const noexcept {
    return shared ? std::span<const uint8_t>(shared->wire) : std::span<const uint8_t>(own);
  }
};

// One connection and where it is in the stream.
struct Subscriber : bi::list_base_hook<bi::link_mode<bi::auto_unlink>> {
  enum class State { kHandshake, kStreaming, kClosing };

  int fd = -1;
  std::string peer;
  State state = State::kHandshake;
  bool dead = false;
  Clock::time_point connected_at;
  Clock::time_point last_progress;   // last write that made progress, or when data was queued
  Clock::time_point last_keepalive;
  Clock::time_point closing_since;
  Clock::time_point last_input;      // last bytes received
  bool write_closed = false;         // closing: ERROR sent and SHUT_WR done, waiting for EOF
  bool ready = false;                // queued on the ready list (more to do after a yield)
  std::vector<uint8_t> in;

  std::string name;
  bool all_tenants = true;
  std::unordered_set<std::string, StringHash, std::equal_to<>> tenants;
  std::string tenants_text = "*";

  uint64_t start = 0;
  uint64_t next_ordinal = 0;   // next log record to consider
  uint64_t last_key = 0;       // key of the last record considered
  uint64_t sent = 0;           // every matching frame below it is queued
  uint64_t keepalive_sent = 0; // position of the last KEEPALIVE
  uint64_t acked = 0;
  int64_t commit_time_us = 0;
  bool live = true;            // reading the shared window (else its own cursor)
  bool reseek = false;         // the cursor was reopened: its first record must be next_ordinal
  FrameLog::Cursor cursor;
  FrameLog::Record record;

  std::deque<OutItem> out;
  size_t out_bytes = 0;
  bool want_out = false;  // EPOLLOUT registered
  uint64_t frames_sent = 0;
  uint64_t bytes_sent = 0;
};

using WaitList = bi::list<Subscriber, bi::constant_time_size<false>>;

// Splits "host:port" ("[v6]:port" too); throws std::runtime_error.
std::pair<std::string, std::string> split_host_port(const std::string& s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon + 1 == s.size()) {
    throw std::runtime_error("invalid address \"" + s + "\": expected host:port");
  }
  std::string host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return {host, s.substr(colon + 1)};
}

// The address of a connected peer, "host:port".
std::string peer_name(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

}  // namespace

int listen_on(const std::string& host_port) {
  const auto [host, port] = split_host_port(host_port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    throw std::runtime_error("cannot resolve \"" + host_port + "\": " + ::gai_strerror(rc));
  }
  std::string why = "no address";
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 512) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) throw std::runtime_error("cannot listen on \"" + host_port + "\": " + why);
  return fd;
}

struct FanoutServer::Impl {
  ServerOptions options;
  const FrameLog& frames;
  Registry& registry;
  PublicationQueue& queue;
  const TokenStore& tokens;
  StatusBoard& board;
  int listen_fd = -1;
  int epoll_fd = -1;
  Clock::time_point now;

  std::unordered_map<int, std::unique_ptr<Subscriber>> subscribers;
  WaitList waiting;  // streaming, idle at the visible end: woken by the next publication
  std::vector<int> ready;  // subscribers that yielded with more to do
  Clock::time_point accept_paused_until{};  // out of descriptors: the listener rests
  bool accept_paused = false;

  std::deque<FrameRef> window;  // shared recent records, ordinals window_first ..
  uint64_t window_first = 0;
  uint64_t window_bytes = 0;
  uint64_t visible_end = 0;       // records below this ordinal are visible
  uint64_t visible_position = 0;  // and every transaction below this key
  int64_t visible_commit_time = 0;
  std::deque<std::pair<uint64_t, Clock::time_point>> samples;  // (position, when visible)

  uint64_t connections_total = 0;
  uint64_t refused_total = 0;
  Clock::time_point last_board{};

  // Sets up epoll with the listener and the publication queue.
  Impl(ServerOptions o, const FrameLog& l, Registry& r, PublicationQueue& q, const TokenStore& t,
       StatusBoard& b)
      : options(std::move(o)), frames(l), registry(r), queue(q), tokens(t), board(b) {
    listen_fd = listen_on(options.listen);
    epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
    add_fd(listen_fd, kListenTag, EPOLLIN);
    add_fd(queue.fd(), kQueueTag, EPOLLIN);
  }

  // Closes every descriptor.
  ~Impl() {
    waiting.clear();
    for (auto& [fd, s] : subscribers) ::close(fd);
    ::close(epoll_fd);
    ::close(listen_fd);
  }

  // Registers fd with epoll under tag.
  void add_fd(int fd, uint64_t tag, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      throw std::runtime_error(std::string("epoll_ctl: ") + std::strerror(errno));
    }
  }

  // Ordinal past the window's last record.
  uint64_t window_end() const { return window_first + window.size(); }

  // The loop.
  void run(const std::atomic<bool>& stop) {
    epoll_event events[256];
    while (!stop.load(std::memory_order_relaxed)) {
      const int n = ::epoll_wait(epoll_fd, events, 256, ready.empty() ? kTickMs : 0);
      now = Clock::now();
      for (int i = 0; i < n; ++i) {
        const uint64_t tag = events[i].data.u64;
        if (tag == kListenTag) {
          accept_all();
        } else if (tag == kQueueTag) {
          apply_publications();
        } else {
          auto it = subscribers.find(static_cast<int>(tag));
          if (it == subscribers.end()) continue;
          Subscriber& s = *it->second;
          for_subscriber(s, [&] {
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) on_readable(s);
            if (!s.dead && (events[i].events & EPOLLOUT)) pump(s);
          });
        }
      }
      run_ready();
      housekeeping();
      sweep();
    }
    for (auto& [fd, s] : subscribers) {
      if (s->state == Subscriber::State::kStreaming) fail(*s, proto::kShuttingDown, "the relay is stopping");
      flush(*s);
    }
    update_board();
  }

  // Runs one subscriber's work; an exception out of it (a bug, an input nothing checked) drops
  // that subscriber only, logged. Out of memory is the machine's: it goes on to the thread.
  template <typename Fn>
  void for_subscriber(Subscriber& s, Fn&& fn) {
    try {
      fn();
    } catch (const std::bad_alloc&) {
      throw;
    } catch (const std::exception& e) {
      log(Level::kError, "subscriber_failed", {{"subscriber", s.name}, {"peer", s.peer}, {"error", e.what()}});
      close_quietly(s, std::string("unexpected exception: ") + e.what());
    }
  }

  // Accepts every pending connection; closes at once what exceeds the handshake cap, and rests
  // the listener for a second when the process is out of descriptors.
  void accept_all() {
    for (;;) {
      const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          log(Level::kWarning, "accept_paused", {{"error", std::strerror(errno)}, {"for_ms", "1000"}});
          ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
          accept_paused = true;
          accept_paused_until = now + std::chrono::seconds(1);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          log(Level::kWarning, "accept_failed", {{"error", std::strerror(errno)}});
        }
        return;
      }
      size_t handshaking = 0;
      for (const auto& [other_fd, other] : subscribers) {
        handshaking += other->state == Subscriber::State::kHandshake;
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = static_cast<uint64_t>(fd);
      if (handshaking >= kMaxHandshakes || ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        ++refused_total;
        ::close(fd);
        continue;
      }
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto s = std::make_unique<Subscriber>();
      s->fd = fd;
      s->peer = peer_name(fd);
      s->connected_at = s->last_progress = s->last_keepalive = s->last_input = now;
      ++connections_total;
      subscribers.emplace(fd, std::move(s));
    }
  }

  // Pumps the subscribers that yielded in the previous pass.
  void run_ready() {
    std::vector<int> fds;
    fds.swap(ready);
    for (int fd : fds) {
      auto it = subscribers.find(fd);
      if (it == subscribers.end()) continue;
      it->second->ready = false;
      for_subscriber(*it->second, [&] { pump(*it->second); });
    }
  }

  // Takes the upstream thread's publications into the window and wakes waiting subscribers.
  void apply_publications() {
    std::vector<Publication> pubs;
    if (!queue.drain(pubs)) return;
    for (Publication& p : pubs) {
      const uint64_t first = p.frames.empty() ? p.end_ordinal : p.frames.front()->ordinal;
      if (first != window_end()) {
        // A gap (the writer kept only the newest frames) or the first publication: restart the
        // window there; subscribers behind it read the log.
        window.clear();
        window_bytes = 0;
        window_first = first;
      }
      for (FrameRef& f : p.frames) {
        window_bytes += f->wire.size();
        window.push_back(std::move(f));
      }
      visible_end = p.end_ordinal;
      visible_position = p.position;
      visible_commit_time = p.commit_time_us;
      samples.emplace_back(p.position, now);
    }
    while (window_bytes > options.window_bytes && !window.empty()) {
      window_bytes -= window.front()->wire.size();
      window.pop_front();
      ++window_first;
    }
    while (samples.size() > kMaxSamples) samples.pop_front();
    // Pump every subscriber that was waiting for new records.
    WaitList woken;
    woken.splice(woken.end(), waiting);
    while (!woken.empty()) {
      Subscriber& s = woken.front();
      woken.pop_front();
      pump(s);
    }
  }

  // Reads what the subscriber sent and handles each whole message.
  void on_readable(Subscriber& s) {
    uint8_t buf[64 << 10];
    if (s.state == Subscriber::State::kClosing) {
      // Its ERROR is on the way: discard what it sends until it closes (closing before that
      // would reset the connection and could destroy the ERROR).
      for (;;) {
        const ssize_t n = ::read(s.fd, buf, sizeof buf);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) s.dead = true;
        return;
      }
    }
    bool peer_closed = false;
    std::string read_error;
    for (;;) {
      const ssize_t n = ::read(s.fd, buf, sizeof buf);
      if (n > 0) {
        s.last_input = now;
        s.in.insert(s.in.end(), buf, buf + n);
        if (s.in.size() > 2 * kMaxInput) {
          fail(s, proto::kBadRequest, "too much input without a whole message");
          return;
        }
        continue;
      }
      if (n == 0) {
        peer_closed = true;  // handle what it sent last (a final ACK) first
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      read_error = std::strerror(errno);
      break;
    }
    size_t pos = 0;
    while (!s.dead && s.state != Subscriber::State::kClosing) {
      proto::MessageView m;
      size_t used = 0;
      const auto split = proto::split_message(std::span<const uint8_t>(s.in).subspan(pos),
                                              proto::kMaxSubscriberBody, m, used);
      if (split == proto::Split::kNeedMore) break;
      if (split == proto::Split::kTooLong) {
        fail(s, proto::kBadRequest, "message too long or not this protocol (expected a HELLO)");
        return;
      }
      pos += used;
      handle_message(s, m);
    }
    s.in.erase(s.in.begin(), s.in.begin() + static_cast<std::ptrdiff_t>(std::min(pos, s.in.size())));
    if (peer_closed) close_quietly(s, "peer closed the connection");
    if (!read_error.empty()) close_quietly(s, read_error);
  }

  // One message from a subscriber.
  void handle_message(Subscriber& s, const proto::MessageView& m) {
    std::string why;
    if (s.state == Subscriber::State::kHandshake) {
      proto::Hello hello;
      if (m.type != proto::Type::kHello) {
        fail(s, proto::kBadRequest, "the first message must be a HELLO");
      } else if (!proto::decode(m.body, hello, why)) {
        fail(s, proto::kBadRequest, why);
      } else {
        on_hello(s, hello);
      }
      return;
    }
    if (m.type != proto::Type::kAck) {
      fail(s, proto::kBadRequest, "unexpected message type after HELLO (only ACK)");
      return;
    }
    proto::Ack ack;
    if (!proto::decode(m.body, ack, why)) {
      fail(s, proto::kBadRequest, why);
      return;
    }
    if (ack.position > s.sent) {
      fail(s, proto::kBadRequest, "ack " + format_lsn(ack.position) + " beyond what was sent (" +
                                      format_lsn(s.sent) + ")");
      return;
    }
    if (ack.position > s.acked) {
      s.acked = ack.position;
      registry.touch(s.name, s.acked, unix_time_us() / 1000000);
    }
  }

  // Checks a HELLO; on success sends WELCOME and starts streaming.
  void on_hello(Subscriber& s, const proto::Hello& h) {
    if (h.min_version > proto::kVersion || h.max_version < proto::kVersion) {
      fail(s, proto::kUnsupportedVersion,
           "this relay speaks protocol version 1 only; the subscriber asked for " +
               std::to_string(h.min_version) + ".." + std::to_string(h.max_version));
      return;
    }
    if (!proto::valid_name(h.name)) {
      fail(s, proto::kBadRequest, "invalid subscriber name: 1-63 characters of A-Z a-z 0-9 _ . -");
      return;
    }
    s.name = h.name;
    if (h.flags != 0) {
      fail(s, proto::kBadRequest, "unknown HELLO flags");
      return;
    }
    if (!tokens.check(h.name, h.token)) {
      fail(s, proto::kAuthFailed, "wrong or missing token for subscriber \"" + h.name + "\"");
      return;
    }
    for (const auto& [fd, other] : subscribers) {
      if (other.get() != &s && !other->dead && other->state == Subscriber::State::kStreaming &&
          other->name == h.name) {
        fail(s, proto::kNameInUse, "subscriber \"" + h.name + "\" is already connected from " + other->peer);
        return;
      }
    }
    size_t streaming = 0;
    for (const auto& [fd, other] : subscribers) streaming += other->state == Subscriber::State::kStreaming;
    if (streaming >= options.max_subscribers) {
      fail(s, proto::kTooManySubscribers, "the relay serves " + std::to_string(streaming) + " subscribers already");
      return;
    }
    uint64_t start = h.start;
    if (start == 0 && !registry.acked(h.name, start)) start = visible_position;
    const uint64_t floor = registry.floor();
    if (visible_position == 0 || start > visible_position) {
      fail(s, proto::kStartInFuture,
           "start " + format_lsn(start) + " is ahead of this relay's position " +
               format_lsn(visible_position) + "; retry later or use a relay further ahead");
      return;
    }
    if (start < floor) {
      fail(s, proto::kResyncRequired,
           "start " + format_lsn(start) + " is below the oldest position this relay holds (" +
               format_lsn(floor) + "); rebuild the replica, then start at a position taken before the copy");
      return;
    }
    // Not moved up to the oldest record: a start the log cannot show it holds is refused.
    if (LogStatus st = frames.open_cursor(start, s.cursor); !st.ok()) {
      fail(s, st.error == LogError::kBehindRetention ? proto::kResyncRequired : proto::kLogCorrupt,
           st.message);
      return;
    }
    s.start = s.last_key = s.sent = s.keepalive_sent = s.acked = start;
    s.live = false;
    s.next_ordinal = 0;
    s.all_tenants = h.tenants.empty();
    s.tenants.clear();
    s.tenants_text = s.all_tenants ? "*" : "";
    for (const std::string& t : h.tenants) {
      s.tenants.insert(t);
      if (!s.tenants_text.empty()) s.tenants_text += ',';
      s.tenants_text += t;
    }
    // Its retention hold is where it starts now (lower than an earlier ack after a restore).
    registry.restart(s.name, start, unix_time_us() / 1000000);
    s.state = Subscriber::State::kStreaming;
    OutItem welcome;
    proto::encode(proto::Welcome{proto::kVersion, start, visible_position, options.relay_name}, welcome.own);
    queue_item(s, std::move(welcome));
    log(Level::kInfo, "subscriber_connected",
        {{"subscriber", s.name}, {"peer", s.peer}, {"start", format_lsn(start)},
         {"tenants", s.tenants_text}});
    pump(s);
  }

  // Queues bytes for s.
  void queue_item(Subscriber& s, OutItem item) {
    if (s.out.empty()) s.last_progress = now;
    s.out_bytes += item.bytes().size();
    s.out.push_back(std::move(item));
  }

  // Queues a KEEPALIVE at s's position.
  void queue_keepalive(Subscriber& s, bool reply_requested) {
    OutItem k;
    proto::encode(proto::Keepalive{s.sent, unix_time_us(), s.commit_time_us, reply_requested}, k.own);
    queue_item(s, std::move(k));
    s.keepalive_sent = s.sent;
    s.last_keepalive = now;
  }

  // Sends ERROR and closes once it is written (or the peer stops reading).
  void fail(Subscriber& s, std::string_view code, const std::string& message) {
    if (s.state == Subscriber::State::kClosing || s.dead) return;
    ++refused_total;
    log(s.state == Subscriber::State::kHandshake ? Level::kWarning : Level::kInfo, "subscriber_error",
        {{"subscriber", s.name}, {"peer", s.peer}, {"code", std::string(code)}, {"message", message}});
    // Keep a partly written message (the stream must stay well framed), drop the rest.
    while (s.out.size() > 1 || (!s.out.empty() && s.out.front().offset == 0)) {
      s.out_bytes -= s.out.back().bytes().size();
      s.out.pop_back();
    }
    OutItem e;
    proto::encode(proto::Error{std::string(code), message}, e.own);
    queue_item(s, std::move(e));
    s.state = Subscriber::State::kClosing;
    s.closing_since = now;
    s.unlink();
    s.cursor = FrameLog::Cursor();
    pump(s);
  }

  // Closes without a message (the peer left or the socket failed).
  void close_quietly(Subscriber& s, const std::string& why) {
    if (s.dead) return;
    if (s.state == Subscriber::State::kStreaming) {
      log(Level::kInfo, "subscriber_disconnected", {{"subscriber", s.name}, {"peer", s.peer}, {"reason", why}});
    }
    s.dead = true;
    s.unlink();
  }

  // Removes closed subscribers.
  void sweep() {
    for (auto it = subscribers.begin(); it != subscribers.end();) {
      if (it->second->dead) {
        ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, it->first, nullptr);
        ::close(it->first);
        it = subscribers.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Whether s wants the record; updates its position (records are considered in order).
  bool consider(Subscriber& s, uint64_t key, bool marker, bool many_tenants, std::string_view tenant,
                int64_t commit_time_us) {
    s.last_key = key;
    if (key < s.start) return false;
    s.sent = std::max(s.sent, key);
    if (marker) {
      // Between transactions: keep the subscriber's view of time moving on long streams.
      if (now - s.last_keepalive >= options.keepalive_interval) queue_keepalive(s, true);
      return false;
    }
    s.commit_time_us = commit_time_us;
    return many_tenants || s.all_tenants || s.tenants.contains(tenant);
  }

  // Re-reads s from the log from its next record on (it fell behind the window); resync when
  // retention dropped records it has not been sent.
  bool start_catchup(Subscriber& s) {
    LogStatus st;
    if (frames.oldest().records > s.next_ordinal) {
      st = {LogError::kBehindRetention, "records the subscriber has not received yet were dropped by retention"};
    } else {
      st = frames.open_cursor(s.last_key, s.cursor);
    }
    if (!st.ok()) {
      fail(s, st.error == LogError::kBehindRetention ? proto::kResyncRequired : proto::kLogCorrupt, st.message);
      return false;
    }
    s.live = false;
    s.reseek = true;
    return true;
  }

  // Outcome of produce().
  enum class Produced { kQueued, kIdle, kYield, kFailed };

  // Queues s's next wanted frame, if one is visible.
  Produced produce(Subscriber& s) {
    for (int budget = kCatchupBudget;; --budget) {
      if (budget == 0) return Produced::kYield;
      if (s.live) {
        const bool behind = s.next_ordinal < window_first ||
                            (s.next_ordinal >= window_end() && s.next_ordinal < visible_end);
        if (behind) {
          if (!start_catchup(s)) return Produced::kFailed;
          continue;
        }
        if (s.next_ordinal >= visible_end) return Produced::kIdle;
        const FrameRef& f = window[s.next_ordinal - window_first];
        ++s.next_ordinal;
        if (consider(s, f->key, f->marker, f->many_tenants, f->tenant, f->commit_time_us)) {
          queue_item(s, OutItem{f, {}, 0});
          ++s.frames_sent;
          return Produced::kQueued;
        }
        continue;
      }
      const LogStatus st = s.cursor.next(s.record);
      if (st.error == LogError::kEnd) {
        if (s.reseek && s.cursor.position() > s.next_ordinal) {
          fail(s, proto::kResyncRequired, "records the subscriber has not received yet were dropped by retention");
          return Produced::kFailed;
        }
        s.next_ordinal = std::max(s.next_ordinal, s.cursor.position());
        if (s.next_ordinal >= window_first) {
          s.live = true;
          s.cursor = FrameLog::Cursor();
          continue;
        }
        return Produced::kIdle;
      }
      if (!st.ok()) {
        fail(s, st.error == LogError::kBehindRetention ? proto::kResyncRequired : proto::kLogCorrupt,
             st.message);
        return Produced::kFailed;
      }
      const uint64_t ordinal = s.cursor.position() - 1;
      if (ordinal < s.next_ordinal) continue;  // re-read after falling behind: already considered
      if (s.reseek && ordinal > s.next_ordinal) {
        fail(s, proto::kResyncRequired, "records the subscriber has not received yet were dropped by retention");
        return Produced::kFailed;
      }
      s.reseek = false;
      if (ordinal >= window_first && ordinal < window_end()) {
        // Caught up with the shared window: take this record from there.
        s.next_ordinal = ordinal;
        s.live = true;
        s.cursor = FrameLog::Cursor();
        continue;
      }
      s.next_ordinal = ordinal + 1;
      frame::Header h;
      if (frame::Status fs = frame::parse_header(s.record.frame, h); !fs.ok()) {
        fail(s, proto::kLogCorrupt, std::string("a logged frame has a bad header: ") + fs.message);
        return Produced::kFailed;
      }
      if (consider(s, s.record.lsn, h.commit_lsn == 0, h.many_tenants, h.tenant_key, h.commit_time_us)) {
        OutItem item;
        item.own.resize(proto::kFramePrefixBytes + s.record.frame.size());
        proto::encode_frame_prefix(s.record.lsn, s.record.frame.size(), item.own.data());
        std::copy(s.record.frame.begin(), s.record.frame.end(),
                  item.own.begin() + proto::kFramePrefixBytes);
        queue_item(s, std::move(item));
        ++s.frames_sent;
        return Produced::kQueued;
      }
    }
  }

  // Outcome of flush().
  enum class Flushed { kDone, kBlocked, kError };

  // Writes s's queue with writev until it is empty or the socket is full.
  Flushed flush(Subscriber& s) {
    while (!s.out.empty()) {
      iovec iov[kMaxIov];
      int n = 0;
      for (auto it = s.out.begin(); it != s.out.end() && n < kMaxIov; ++it, ++n) {
        const auto b = it->bytes().subspan(it->offset);
        iov[n].iov_base = const_cast<uint8_t*>(b.data());
        iov[n].iov_len = b.size();
      }
      const ssize_t w = ::writev(s.fd, iov, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          set_want_out(s, true);
          return Flushed::kBlocked;
        }
        close_quietly(s, std::string("write failed: ") + std::strerror(errno));
        return Flushed::kError;
      }
      s.last_progress = now;
      s.bytes_sent += static_cast<uint64_t>(w);
      size_t left = static_cast<size_t>(w);
      while (left > 0) {
        OutItem& head = s.out.front();
        const size_t rest = head.bytes().size() - head.offset;
        if (left < rest) {
          head.offset += left;
          break;
        }
        left -= rest;
        s.out_bytes -= head.bytes().size();
        s.out.pop_front();
      }
    }
    set_want_out(s, false);
    return Flushed::kDone;
  }

  // Registers or unregisters interest in EPOLLOUT.
  void set_want_out(Subscriber& s, bool want) {
    if (s.want_out == want || s.dead) return;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u);
    ev.data.u64 = static_cast<uint64_t>(s.fd);
    ::epoll_ctl(epoll_fd, EPOLL_CTL_MOD, s.fd, &ev);
    s.want_out = want;
  }

  // Moves s forward: fills its queue from the window or the log and writes until the socket is
  // full or nothing is due; idle subscribers wait for the next publication.
  void pump(Subscriber& s) {
    if (s.dead) return;
    if (s.state == Subscriber::State::kClosing) {
      if (!s.write_closed && flush(s) == Flushed::kDone && !s.dead) {
        ::shutdown(s.fd, SHUT_WR);
        s.write_closed = true;  // dead at its EOF, or after the closing grace period
      }
      return;
    }
    if (s.state != Subscriber::State::kStreaming) return;
    for (;;) {
      bool idle = false;
      bool yielded = false;
      while (s.out_bytes < kFillBytes) {
        const Produced p = produce(s);
        if (p == Produced::kFailed) return;
        if (p == Produced::kIdle || p == Produced::kYield) {
          idle = p == Produced::kIdle;
          yielded = p == Produced::kYield;
          // Its position moved over frames it did not want: tell it.
          if (s.sent > s.keepalive_sent) queue_keepalive(s, false);
          break;
        }
      }
      const Flushed f = flush(s);
      if (f != Flushed::kDone) return;
      if (yielded) {
        // A long stretch of the log without a frame for it: let the others have a turn.
        if (!s.ready) {
          s.ready = true;
          ready.push_back(s.fd);
        }
        return;
      }
      if (idle) {
        if (!s.is_linked()) waiting.push_back(s);
        return;
      }
    }
  }

  // Timeouts, periodic keepalives, the status board and the registry file.
  void housekeeping() {
    for (auto& [fd, sp] : subscribers) {
      Subscriber& s = *sp;
      if (s.dead) continue;
      switch (s.state) {
        case Subscriber::State::kHandshake:
          if (now - s.connected_at > options.handshake_timeout) {
            fail(s, proto::kBadRequest, "no HELLO within the handshake timeout");
          }
          break;
        case Subscriber::State::kClosing:
          if (now - s.closing_since > std::chrono::seconds(2)) s.dead = true;
          break;
        case Subscriber::State::kStreaming:
          if (!s.out.empty() && now - s.last_progress > options.send_timeout) {
            fail(s, proto::kSendTimeout, "the subscriber read nothing for " +
                                             std::to_string(options.send_timeout.count()) + " ms");
          } else if (now - s.last_input > options.receive_timeout) {
            fail(s, proto::kReceiveTimeout, "no message (ACK) from the subscriber for " +
                                                std::to_string(options.receive_timeout.count()) + " ms");
          } else if (s.out.empty() && now - s.last_keepalive >= options.keepalive_interval) {
            queue_keepalive(s, true);
            pump(s);
          }
          break;
      }
    }
    if (accept_paused && now >= accept_paused_until) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = kListenTag;
      accept_paused = ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev) != 0;
      if (accept_paused) accept_paused_until = now + std::chrono::seconds(1);
    }
    if (now - last_board >= std::chrono::milliseconds(250)) {
      update_board();
      last_board = now;
    }
  }

  // Seconds since the oldest transaction above `acked` became visible here.
  double lag_seconds(uint64_t acked) const {
    if (acked >= visible_position) return 0;
    auto it = std::upper_bound(samples.begin(), samples.end(), acked,
                               [](uint64_t a, const auto& sample) { return a < sample.first; });
    if (it == samples.end()) return 0;
    return std::chrono::duration<double>(now - it->second).count();
  }

  // Publishes the snapshot read by /metrics and the edge_status reporter.
  void update_board() {
    RelayStatus st;
    st.position = visible_position;
    st.connections_total = connections_total;
    st.refused_total = refused_total;
    const RelayState reg = registry.snapshot();
    std::unordered_map<std::string, size_t> index;
    for (const auto& [fd, sp] : subscribers) {
      const Subscriber& s = *sp;
      if (s.state != Subscriber::State::kStreaming || s.dead) continue;
      SubscriberStatus ss;
      ss.name = s.name;
      ss.peer = s.peer;
      ss.tenants = s.tenants_text;
      ss.connected = true;
      ss.catching_up = !s.live;
      ss.acked = s.acked;
      ss.sent = s.sent;
      ss.frames_sent = s.frames_sent;
      ss.bytes_sent = s.bytes_sent;
      index[ss.name] = st.subscribers.size();
      st.subscribers.push_back(std::move(ss));
    }
    for (const auto& [name, rec] : reg.subscribers) {
      if (index.contains(name)) continue;
      SubscriberStatus ss;
      ss.name = name;
      ss.acked = rec.acked;
      st.subscribers.push_back(std::move(ss));
    }
    for (SubscriberStatus& ss : st.subscribers) {
      ss.lag_bytes = visible_position > ss.acked ? visible_position - ss.acked : 0;
      ss.lag_seconds = lag_seconds(ss.acked);
    }
    board.update(std::move(st));
  }
};

FanoutServer::FanoutServer(ServerOptions options, const FrameLog& log, Registry& registry,
                           PublicationQueue& queue, const TokenStore& tokens, StatusBoard& board)
    : impl_(std::make_unique<Impl>(std::move(options), log, registry, queue, tokens, board)) {}

FanoutServer::~FanoutServer() = default;

int FanoutServer::port() const noexcept {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(impl_->listen_fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

void FanoutServer::run(const std::atomic<bool>& stop) { impl_->run(stop); }

}  // namespace edgeshard::relay

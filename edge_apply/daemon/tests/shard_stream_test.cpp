// A shard stream against a fake relay that sends a corrupt frame: the frame is refused by its
// checksum, the half-received group it belongs to is dropped with the connection (nothing of it
// reaches the applier), and the stream reconnects and receives the group whole the second time.
// A group past group_memory_bytes goes to a spill file, delivered whole, dropped on a reconnect.
#include "common/frame_writer.hpp"
#include "edge_apply/daemon/event_queue.hpp"
#include "edge_apply/daemon/shard_stream.hpp"
#include "walsender_fanout/relay/protocol.hpp"
#include "walsender_fanout/relay/tests/test_frames.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

namespace edgeshard::apply::daemon {
namespace {

namespace proto = relay::proto;
using Bytes = std::vector<uint8_t>;

// One frame of tenant's group at commit key (the relay tests' frames: one row each).
Bytes tenant_frame(const std::string& tenant, uint64_t key, uint32_t seq, bool last) {
  return relay::make_frame(key, tenant, seq, last);
}

// A FRAME message carrying frame at key.
Bytes frame_message(uint64_t key, const Bytes& frame) {
  Bytes out(proto::kFramePrefixBytes);
  proto::encode_frame_prefix(key, frame.size(), out.data());
  out.insert(out.end(), frame.begin(), frame.end());
  return out;
}

// Writes all of bytes to fd.
void send_all(int fd, const Bytes& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// Reads until a whole HELLO arrived; false when the peer closed first.
bool read_hello(int fd, proto::Hello& hello) {
  Bytes buf;
  uint8_t chunk[4096];
  for (;;) {
    proto::MessageView m;
    size_t used = 0;
    if (proto::split_message(buf, proto::kMaxSubscriberBody, m, used) == proto::Split::kMessage) {
      std::string why;
      return m.type == proto::Type::kHello && proto::decode(m.body, hello, why);
    }
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buf.insert(buf.end(), chunk, chunk + n);
  }
}

// A listening socket on a free loopback port.
int listen_loopback(int& port) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener, 4) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(listener);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return listener;
}

// A fake relay: accepts one connection per entry of sessions, reads its HELLO (start recorded),
// sends the entry's bytes (after a WELCOME), and keeps it open until the subscriber hangs up or
// stop is set.
void fake_relay(int listener, const std::vector<std::pair<uint64_t, Bytes>>& sessions,
                std::vector<uint64_t>& hello_starts, const std::atomic<bool>& stop) {
  for (const auto& [start, bytes] : sessions) {
    const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    proto::Hello hello;
    if (!read_hello(fd, hello)) {
      ::close(fd);
      return;
    }
    hello_starts.push_back(hello.start);
    Bytes out;
    proto::Welcome welcome;
    welcome.start = start;
    welcome.position = 300;
    welcome.relay_name = "fake";
    proto::encode(welcome, out);
    out.insert(out.end(), bytes.begin(), bytes.end());
    send_all(fd, out);
    uint8_t sink[512];
    while (!stop.load()) {
      timeval tv{0, 50000};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      const ssize_t n = ::recv(fd, sink, sizeof sink, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) break;
    }
    ::close(fd);
  }
}

// Collects the stream's events until a KEEPALIVE's (or 20 s).
std::vector<ApplyEvent> events_until_position(EventQueue& queue) {
  std::vector<ApplyEvent> events;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    ApplyEvent ev;
    if (!queue.pop(std::chrono::steady_clock::now() + std::chrono::milliseconds(50), ev)) continue;
    events.push_back(std::move(ev));
    if (events.back().kind == ApplyEvent::kPosition) break;
  }
  return events;
}

// A KEEPALIVE message at position.
Bytes keepalive(uint64_t position) {
  Bytes out;
  proto::Keepalive k;
  k.position = position;
  k.relay_time_us = 5000;
  proto::encode(k, out);
  return out;
}

// Points a shard stream at the fake relay on port: shard s1, quick reconnects.
void stream_to_fake_relay(int port, ShardState& state, StreamOptions& options) {
  state.shard = "s1";
  state.hosts = "127.0.0.1:" + std::to_string(port);
  options.name = "edge-test";
  options.token = "t";
  options.reconnect_min_ms = 10;
  options.reconnect_max_ms = 50;
}

TEST(ShardStream, CorruptFrameDropsTheConnectionAndItsGroup) {
  int port = 0;
  const int listener = listen_loopback(port);
  ASSERT_GE(listener, 0);

  const Bytes a = tenant_frame("a", 100, 0, true);
  const Bytes b0 = tenant_frame("b", 200, 0, false);
  const Bytes b1 = tenant_frame("b", 200, 1, true);
  Bytes b1_corrupt = b1;
  b1_corrupt[b1_corrupt.size() - 3] ^= 0x20;  // a payload byte: the header's checksum no longer matches

  Bytes first, second;
  for (const Bytes& m : {frame_message(100, a), frame_message(200, b0), frame_message(200, b1_corrupt)}) {
    first.insert(first.end(), m.begin(), m.end());
  }
  for (const Bytes& m : {frame_message(200, b0), frame_message(200, b1), keepalive(300)}) {
    second.insert(second.end(), m.begin(), m.end());
  }
  std::atomic<bool> stop{false};
  std::vector<uint64_t> hello_starts;
  const std::vector<std::pair<uint64_t, Bytes>> sessions = {{100, first}, {200, second}};
  std::thread relay([&] { fake_relay(listener, sessions, hello_starts, stop); });

  EventQueue queue(size_t{1} << 20);
  ShardState state;
  StreamOptions options;
  stream_to_fake_relay(port, state, options);
  std::atomic<bool> applier_done{true};
  std::thread stream([&] { run_shard_stream(options, state, queue, stop, applier_done); });

  std::vector<ApplyEvent> events = events_until_position(queue);
  stop = true;
  stream.join();
  ::shutdown(listener, SHUT_RDWR);
  ::close(listener);
  relay.join();

  // Tenant a's group, then tenant b's group exactly once and whole (from the second session),
  // then the keepalive: the corrupt frame and the half group it ended never reached the queue.
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kind, ApplyEvent::kGroup);
  EXPECT_EQ(events[0].tenant, "a");
  EXPECT_EQ(events[0].key, 100u);
  EXPECT_EQ(events[1].kind, ApplyEvent::kGroup);
  EXPECT_EQ(events[1].tenant, "b");
  EXPECT_EQ(events[1].key, 200u);
  ASSERT_EQ(events[1].frames.size(), 2u);
  EXPECT_EQ(events[1].frames[1], b1);
  EXPECT_EQ(events[2].kind, ApplyEvent::kPosition);
  EXPECT_EQ(events[2].key, 300u);
  EXPECT_EQ(state.corrupt.load(), 1u);
  EXPECT_EQ(state.sessions.load(), 2u);
  ASSERT_EQ(hello_starts.size(), 2u);
  EXPECT_EQ(hello_starts[1], 0u);  // nothing acked yet: resume from the relay's registered position
}

}  // namespace
}  // namespace edgeshard::apply::daemon

namespace edgeshard::apply::daemon {
namespace {

// Files in a directory (0 when it does not exist).
size_t files_in(const std::filesystem::path& dir) {
  std::error_code ec;
  size_t n = 0;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) ++n;
  return n;
}

TEST(ShardStream, GroupPastTheBudgetIsSpilledDeliveredWholeAndDroppedOnReconnect) {
  int port = 0;
  const int listener = listen_loopback(port);
  ASSERT_GE(listener, 0);
  char tmpl[] = "/tmp/spill_test_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path spill_dir = std::filesystem::path(tmpl) / "spill";

  // Tenant a's small group stays in memory; tenant b's 20 frames go past the budget (4 frames).
  const Bytes a = tenant_frame("a", 100, 0, true);
  std::vector<Bytes> b;
  for (uint32_t i = 0; i < 20; ++i) b.push_back(tenant_frame("b", 200, i, i == 19));
  // Session 0 breaks a rule in the middle of b's group (a keepalive inside it), after b spilled.
  Bytes first = frame_message(100, a);
  for (uint32_t i = 0; i < 10; ++i) {
    const Bytes m = frame_message(200, b[i]);
    first.insert(first.end(), m.begin(), m.end());
  }
  const Bytes inside = keepalive(250);
  first.insert(first.end(), inside.begin(), inside.end());
  // Session 1 sends the group whole, then a keepalive.
  Bytes second;
  for (const Bytes& f : b) {
    const Bytes m = frame_message(200, f);
    second.insert(second.end(), m.begin(), m.end());
  }
  const Bytes after = keepalive(300);
  second.insert(second.end(), after.begin(), after.end());

  std::atomic<bool> stop{false};
  std::vector<uint64_t> hello_starts;
  const std::vector<std::pair<uint64_t, Bytes>> sessions = {{100, first}, {200, second}};
  std::thread relay([&] { fake_relay(listener, sessions, hello_starts, stop); });

  EventQueue queue(size_t{1} << 20);
  ShardState state;
  StreamOptions options;
  stream_to_fake_relay(port, state, options);
  options.spill_dir = spill_dir.string();
  options.group_memory_bytes = 4 * b[0].size();
  std::atomic<bool> applier_done{true};
  std::thread stream([&] { run_shard_stream(options, state, queue, stop, applier_done); });
  std::vector<ApplyEvent> events = events_until_position(queue);
  stop = true;
  stream.join();
  ::shutdown(listener, SHUT_RDWR);
  ::close(listener);
  relay.join();

  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].tenant, "a");
  ASSERT_EQ(events[0].frames.size(), 1u);  // small: in memory
  EXPECT_FALSE(events[0].spill);
  // b: once, whole, from its spill file; the event holds almost no memory.
  EXPECT_EQ(events[1].kind, ApplyEvent::kGroup);
  EXPECT_EQ(events[1].tenant, "b");
  EXPECT_EQ(events[1].key, 200u);
  EXPECT_TRUE(events[1].frames.empty());
  ASSERT_TRUE(events[1].spill);
  EXPECT_LT(events[1].bytes(), b[0].size());
  FileFrameSource source = events[1].spill->source();
  std::span<const uint8_t> got;
  size_t n = 0;
  for (; source.next(got); ++n) {
    ASSERT_LT(n, b.size());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), b[n].begin(), b[n].end())) << "frame " << n;
  }
  EXPECT_EQ(source.error(), "");
  EXPECT_EQ(n, b.size());
  EXPECT_EQ(events[2].kind, ApplyEvent::kPosition);
  // The first session's half group was spilled too, and its file went with the connection.
  EXPECT_EQ(state.spilled_groups.load(), 2u);
  EXPECT_EQ(state.corrupt.load(), 1u);
  EXPECT_EQ(files_in(spill_dir), 1u);  // the delivered group's, until its event goes
  events.clear();
  EXPECT_EQ(files_in(spill_dir), 0u);
  // Start-up empties the directory of whatever an earlier run left.
  { std::ofstream(spill_dir / "group-left") << "x"; }
  EXPECT_EQ(GroupSpill::clear_dir(spill_dir), "");
  EXPECT_EQ(files_in(spill_dir), 0u);
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace edgeshard::apply::daemon

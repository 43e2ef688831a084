// FanoutServer in-process: a real server thread over a FrameLog in a temporary directory, fed
// through Ingest (as the upstream thread feeds it), with subscribers as RelayClients or raw
// loopback sockets. Tenant filtering and key order, start=0 (new name / known name), catch-up
// from the log into the shared window, protocol errors (ack beyond sent, receive timeout, name in
// use, shutdown), the status board, and the two regressions of the relay review: a slow
// subscriber whose unsent records retention dropped, and a HELLO below the log's oldest record,
// must get resync_required, never a silent gap.
#include "walsender_fanout/relay/tests/test_frames.hpp"
#include "common/testing/temp_dir.hpp"
#include "walsender_fanout/relay/fanout_server.hpp"

#include "common/frame_writer.hpp"
#include "walsender_fanout/relay/ingest.hpp"
#include "walsender_fanout/relay/protocol.hpp"
#include "walsender_fanout/relay/relay_client.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace edgeshard::relay {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Token every subscriber presents (the shared token).
constexpr char kToken[] = "secret";
// Where a new log starts (begin_stream's position, the first marker and the floor).
constexpr uint64_t kFloor = 100;
// Longest any single wait of a test lasts, so a broken server fails a test instead of hanging it.
constexpr auto kWait = 5s;

using edgeshard::testing_support::TempDir;

// Polls pred until it holds or timeout passes; whether it held.
template <typename Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout = kWait) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(1ms);
  }
  return true;
}


// A frame fed to the relay: the reference every subscriber's stream is checked against.
struct Fed {
  uint64_t key = 0;
  std::string tenant;  // empty: MANY_TENANTS
  std::vector<uint8_t> bytes;
};

// What a subscriber received: frames (key, bytes) and KEEPALIVE positions, in arrival order.
struct Stream {
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> frames;
  std::vector<uint64_t> keepalives;
};

// Checks that got's frames are exactly want, in order (no gap, no duplicate, no stray frame).
void expect_frames(const Stream& got, const std::vector<const Fed*>& want, const std::string& who) {
  EXPECT_EQ(got.frames.size(), want.size()) << who << ": number of frames";
  const size_t n = std::min(got.frames.size(), want.size());
  for (size_t i = 0; i < n; ++i) {
    if (got.frames[i].first != want[i]->key || got.frames[i].second != want[i]->bytes) {
      ADD_FAILURE() << who << ": frame " << i << " has key " << got.frames[i].first << ", expected "
                    << want[i]->key << " (tenant \"" << want[i]->tenant << "\")"
                    << (got.frames[i].first == want[i]->key ? ", other bytes" : "");
      return;
    }
  }
}

// Reads c's stream into s until a KEEPALIVE at or past `until` (kOk), an error, max_messages
// messages (kOk), or the wait limit (kTimeout). Answers each reply_requested with an ACK of that
// KEEPALIVE's position when ack. Checks that KEEPALIVE positions never decrease.
ClientStatus read_until(RelayClient& c, uint64_t until, Stream& s, bool ack = true,
                        size_t max_messages = SIZE_MAX) {
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  for (size_t n = 0; n < max_messages;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return {ClientError::kTimeout, "no KEEPALIVE at " + std::to_string(until) + " in time", ""};
    }
    Incoming in;
    const ClientStatus st = c.read(static_cast<int>(left.count()), in);
    if (st.error == ClientError::kTimeout) continue;
    if (!st.ok()) return st;
    ++n;
    if (in.type == proto::Type::kFrame) {
      s.frames.emplace_back(in.key, std::vector<uint8_t>(in.frame.begin(), in.frame.end()));
      continue;
    }
    const uint64_t position = in.keepalive.position;
    if (!s.keepalives.empty()) {
      EXPECT_GE(position, s.keepalives.back()) << "a KEEPALIVE position went backwards";
    }
    s.keepalives.push_back(position);
    if (ack && in.keepalive.reply_requested) {
      if (ClientStatus a = c.send_ack(position); !a.ok()) return a;
    }
    if (position >= until) return {};
  }
  return {};
}

// A subscriber on a raw loopback socket: sends what the test builds, parses what the relay sends.
class RawSubscriber {
 public:
  // Outcome of next().
  enum class Got { kMessage, kEof, kTimeout, kError };

  // Connects to 127.0.0.1:port; rcvbuf > 0 sets SO_RCVBUF first (a small TCP window).
  RawSubscriber(int port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket failed");
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      throw std::runtime_error(std::string("connect failed: ") + std::strerror(errno));
    }
  }
  // Closes the socket.
  ~RawSubscriber() { ::close(fd_); }
  RawSubscriber(const RawSubscriber&) = delete;
  RawSubscriber& operator=(const RawSubscriber&) = delete;

  // Sends a HELLO for name at start.
  void send_hello(const std::string& name, uint64_t start) {
    proto::Hello h;
    h.name = name;
    h.token = kToken;
    h.start = start;
    std::vector<uint8_t> bytes;
    proto::encode(h, bytes);
    send_all(bytes);
  }

  // Sends bytes (blocking).
  void send_all(std::span<const uint8_t> bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ADD_FAILURE() << "send failed: " << std::strerror(errno);
        return;
      }
      off += static_cast<size_t>(n);
    }
  }

  // The next whole message (type, body) within timeout, reading at most chunk bytes per read().
  Got next(std::chrono::milliseconds timeout, proto::Type& type, std::vector<uint8_t>& body,
           size_t chunk = 64 << 10) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<uint8_t> tmp(chunk);
    for (;;) {
      proto::MessageView m;
      size_t used = 0;
      const auto split = proto::split_message(buf_, proto::kMaxRelayBody, m, used);
      if (split == proto::Split::kTooLong) return Got::kError;
      if (split == proto::Split::kMessage) {
        type = m.type;
        body.assign(m.body.begin(), m.body.end());
        buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(used));
        return Got::kMessage;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return Got::kTimeout;
      pollfd p{fd_, POLLIN, 0};
      const int pr = ::poll(&p, 1, static_cast<int>(left.count()));
      if (pr < 0 && errno == EINTR) continue;
      if (pr <= 0) return pr == 0 ? Got::kTimeout : Got::kError;
      const ssize_t n = ::read(fd_, tmp.data(), tmp.size());
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) return buf_.empty() ? Got::kEof : Got::kError;
      if (n < 0) return Got::kError;
      buf_.insert(buf_.end(), tmp.begin(), tmp.begin() + n);
    }
  }

 private:
  int fd_ = -1;
  std::vector<uint8_t> buf_;
};

// Decodes an ERROR body's code ("" when it is malformed).
std::string error_code(std::span<const uint8_t> body) {
  proto::Error e;
  std::string why;
  return proto::decode(body, e, why) ? e.code : std::string();
}

// A relay's log, registry, write path and server thread over a temporary directory.
class FanoutServerTest : public testing::Test {
 protected:
  // Shared token for every name; quick keepalives so idle subscribers are told positions soon.
  FanoutServerTest() {
    tokens_.load(kToken, "");
    server_options_.listen = "127.0.0.1:0";
    server_options_.relay_name = "test_relay";
    server_options_.keepalive_interval = 100ms;
    ingest_options_.sync_interval = 0ms;
  }

  // Stops the server thread whatever the test's outcome.
  void TearDown() override { stop_server(); }

  // Opens log, registry and write path on the data directory, recovers what is there, and
  // starts a new log at kFloor.
  void open_relay() {
    log_.emplace(FrameLog::open(dir_.path() / "log", log_options_));
    registry_.emplace(dir_.path());
    queue_ = std::make_unique<PublicationQueue>();
    ingest_.emplace(*log_, *registry_, *queue_, ingest_options_);
    const IngestResult r = ingest_->recover();
    ASSERT_TRUE(r.ok()) << r.message;
    const IngestResult b = ingest_->begin_stream(kFloor, Clock::now());
    ASSERT_TRUE(b.ok()) << b.message;
  }

  // Stops the server and closes everything, as a relay that exits.
  void close_relay() {
    stop_server();
    ingest_.reset();
    registry_.reset();
    log_.reset();
    queue_.reset();
  }

  // Starts the server thread and waits until it has taken the write path's publications.
  void start_server() {
    server_ = std::make_unique<FanoutServer>(server_options_, *log_, *registry_, *queue_, tokens_, board_);
    stop_ = false;
    thread_ = std::thread([this] { server_->run(stop_); });
    ASSERT_NO_FATAL_FAILURE(wait_visible());
  }

  // open_relay() and start_server().
  void start() {
    ASSERT_NO_FATAL_FAILURE(open_relay());
    ASSERT_NO_FATAL_FAILURE(start_server());
  }

  // Stops the server thread (it tells its subscribers shutting_down) and destroys the server.
  void stop_server() {
    if (!thread_.joinable()) return;
    stop_ = true;
    thread_.join();
    server_.reset();
  }

  // Waits until the status board shows the write path's position (the server thread has taken
  // every publication so far; the board is refreshed every 250 ms).
  void wait_visible() {
    const uint64_t want = ingest_->position();
    ASSERT_TRUE(wait_until([&] { return board_.read().position == want; }))
        << "the server never showed position " << want << " (board: " << board_.read().position << ")";
  }

  // Feeds one transaction at the next key, one frame per tenant ("" = MANY_TENANTS), and makes it
  // visible (on_position past it); returns its key.
  uint64_t commit_tx(const std::vector<std::string>& tenants, size_t value_bytes = 16) {
    const uint64_t key = next_key_;
    next_key_ += 1000;
    for (size_t i = 0; i < tenants.size(); ++i) {
      std::vector<uint8_t> bytes =
          make_frame(key, tenants[i], static_cast<uint32_t>(i), i + 1 == tenants.size(), value_bytes);
      const IngestResult r = ingest_->on_frame(bytes, Clock::now());
      EXPECT_TRUE(r.ok()) << r.message;
      fed_.push_back({key, tenants[i], std::move(bytes)});
    }
    const IngestResult r = ingest_->on_position(key + 1, 0, Clock::now());
    EXPECT_TRUE(r.ok()) << r.message;
    return key;
  }

  // Feeds count transactions of a mixed stream (one-tenant, multi-frame, MANY_TENANTS, mixed and
  // unwanted ones), pattern continued from offset.
  void feed_mixed(int count, int offset) {
    for (int i = offset; i < offset + count; ++i) {
      switch (i % 5) {
        case 0: commit_tx({"1"}); break;
        case 1: commit_tx({"2", "2"}); break;
        case 2: commit_tx({""}); break;
        case 3: commit_tx({"3", "", "1"}); break;
        default: commit_tx({"4"}); break;
      }
    }
  }

  // Feeds ~800 KB (64 KiB segments in these tests) and lets max_bytes retention keep 256 KiB.
  void fill_and_drop() {
    for (int i = 0; i < 200; ++i) commit_tx({"1"}, 4000);
    const IngestResult r = ingest_->apply_retention(UINT64_MAX, 0, 256u << 10);
    ASSERT_TRUE(r.ok()) << r.message;
  }

  // The fed frames a subscriber starting at start with filter tenants (empty: all) must get.
  std::vector<const Fed*> expected(uint64_t start, const std::vector<std::string>& tenants = {}) const {
    std::vector<const Fed*> out;
    for (const Fed& f : fed_) {
      if (f.key < start) continue;
      if (f.tenant.empty() || tenants.empty() ||
          std::find(tenants.begin(), tenants.end(), f.tenant) != tenants.end()) {
        out.push_back(&f);
      }
    }
    return out;
  }

  // Options of a RelayClient subscribing to this relay.
  ClientOptions client_options(const std::string& name, uint64_t start,
                               std::vector<std::string> tenants = {}) const {
    ClientOptions o;
    o.hosts = "127.0.0.1:" + std::to_string(server_->port());
    o.name = name;
    o.token = kToken;
    o.start = start;
    o.tenants = std::move(tenants);
    o.connect_timeout_ms = 5000;
    return o;
  }

  // Connects c; when the previous connection of that name is still being closed by the server
  // (name_in_use), tries again until kWait has passed.
  ClientStatus connect_retrying(RelayClient& c, const ClientOptions& o) {
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    for (;;) {
      ClientStatus st = c.connect(o);
      if (st.relay_code != proto::kNameInUse || std::chrono::steady_clock::now() >= deadline) return st;
      std::this_thread::sleep_for(2ms);
    }
  }

  // The board's entry for name, if it has one.
  std::optional<SubscriberStatus> board_entry(const std::string& name) const {
    RelayStatus status = board_.read();
    for (SubscriberStatus& s : status.subscribers) {
      if (s.name == name) return std::move(s);
    }
    return std::nullopt;
  }

  // The registry's position for name (0 when unknown).
  uint64_t registered(const std::string& name) const {
    uint64_t acked = 0;
    return registry_->acked(name, acked) ? acked : 0;
  }

  TempDir dir_;
  FrameLog::Options log_options_;
  Ingest::Options ingest_options_;
  ServerOptions server_options_;
  TokenStore tokens_;
  StatusBoard board_;
  std::optional<FrameLog> log_;
  std::optional<Registry> registry_;
  std::unique_ptr<PublicationQueue> queue_;
  std::optional<Ingest> ingest_;
  std::unique_ptr<FanoutServer> server_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  uint64_t next_key_ = 1000;
  std::vector<Fed> fed_;
};

// Every subscriber gets exactly the frames of its tenants plus the MANY_TENANTS frames, in key
// order (and, within a key, in the order fed), with KEEPALIVE positions that never decrease; the
// first round is served from the log (it was fed before the connections), the later ones live.
TEST_F(FanoutServerTest, TenantFiltersGetExactlyTheirFramesInKeyOrder) {
  ASSERT_NO_FATAL_FAILURE(start());
  feed_mixed(20, 0);

  struct Sub {
    std::string name;
    std::vector<std::string> tenants;
    RelayClient client;
    Stream stream;
  };
  std::vector<Sub> subs;
  subs.push_back({"only_1", {"1"}, {}, {}});
  subs.push_back({"two_and_three", {"2", "3"}, {}, {}});
  subs.push_back({"everything", {}, {}, {}});
  subs.push_back({"nobody_9", {"9"}, {}, {}});
  for (Sub& s : subs) {
    const ClientStatus st = s.client.connect(client_options(s.name, kFloor, s.tenants));
    ASSERT_TRUE(st.ok()) << s.name << ": " << st.message;
    EXPECT_EQ(s.client.welcome().start, kFloor);
    EXPECT_EQ(s.client.welcome().relay_name, "test_relay");
  }
  for (int round = 0; round < 3; ++round) {
    if (round > 0) feed_mixed(25, 20 + 25 * (round - 1));
    const uint64_t position = ingest_->position();
    for (Sub& s : subs) {
      const ClientStatus st = read_until(s.client, position, s.stream);
      ASSERT_TRUE(st.ok()) << s.name << " round " << round << ": " << st.message;
      EXPECT_EQ(s.stream.keepalives.back(), position) << s.name << ": position told after the round";
    }
  }
  for (const Sub& s : subs) expect_frames(s.stream, expected(kFloor, s.tenants), s.name);
  // The reference itself is not trivial: the filters select different, non-empty streams.
  const size_t many = expected(kFloor, {"9"}).size();
  EXPECT_GT(many, 0u);
  EXPECT_EQ(subs[3].stream.frames.size(), many) << "MANY_TENANTS frames only";
  EXPECT_LT(subs[0].stream.frames.size(), subs[2].stream.frames.size());
}

// start = 0 for a name the relay has never seen starts at the relay's current position: only
// transactions committed afterwards are sent.
TEST_F(FanoutServerTest, StartZeroForANewNameStartsAtTheCurrentPosition) {
  ASSERT_NO_FATAL_FAILURE(start());
  for (int i = 0; i < 10; ++i) commit_tx({"1"});
  ASSERT_NO_FATAL_FAILURE(wait_visible());
  const uint64_t position = ingest_->position();

  RelayClient c;
  const ClientStatus st = c.connect(client_options("fresh", 0));
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(c.welcome().start, position);
  EXPECT_EQ(c.welcome().position, position);
  EXPECT_EQ(registered("fresh"), position);

  for (int i = 0; i < 5; ++i) commit_tx({"1", ""});
  Stream s;
  const ClientStatus rs = read_until(c, ingest_->position(), s);
  ASSERT_TRUE(rs.ok()) << rs.message;
  expect_frames(s, expected(position), "fresh");
  EXPECT_EQ(s.frames.size(), 10u);
}

// start = 0 for a known name resumes from its last ACK: nothing it acked is sent again, nothing
// after it is skipped.
TEST_F(FanoutServerTest, StartZeroForAKnownNameResumesFromItsLastAck) {
  ASSERT_NO_FATAL_FAILURE(start());
  std::vector<uint64_t> keys;
  for (int i = 0; i < 10; ++i) keys.push_back(commit_tx({"1", "2"}));

  RelayClient c;
  ClientStatus st = c.connect(client_options("edge", kFloor));
  ASSERT_TRUE(st.ok()) << st.message;
  Stream first;
  st = read_until(c, ingest_->position(), first, /*ack=*/false);
  ASSERT_TRUE(st.ok()) << st.message;
  expect_frames(first, expected(kFloor), "edge, first connection");
  // It applied the first five transactions: it acks the fifth's key + 1 (PROTOCOL.md).
  const uint64_t ack = keys[4] + 1;
  ASSERT_TRUE(c.send_ack(ack).ok());
  ASSERT_TRUE(wait_until([&] { return registered("edge") == ack; })) << registered("edge");
  c.close();

  for (int i = 0; i < 3; ++i) commit_tx({"2"});
  st = connect_retrying(c, client_options("edge", 0));
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(c.welcome().start, ack);
  Stream second;
  st = read_until(c, ingest_->position(), second);
  ASSERT_TRUE(st.ok()) << st.message;
  expect_frames(second, expected(ack), "edge, resumed");
  ASSERT_FALSE(second.frames.empty());
  EXPECT_EQ(second.frames.front().first, keys[5]);
}

// A subscriber that starts far behind the shared window reads the log, picks up publications that
// arrive meanwhile, and ends in the window: every frame exactly once, in order.
TEST_F(FanoutServerTest, ABehindSubscriberCatchesUpFromTheLogThenSwitchesToTheWindow) {
  log_options_.segment_bytes = 256u << 10;
  ingest_options_.window_bytes = 64u << 10;
  server_options_.window_bytes = 64u << 10;
  ASSERT_NO_FATAL_FAILURE(start());
  for (int i = 0; i < 300; ++i) commit_tx({"1", i % 3 == 0 ? "" : "2"}, 1000);  // ~600 KB
  ASSERT_GT(log_->segment_count(), 1u);

  RelayClient c;
  ClientStatus st = c.connect(client_options("behind", kFloor));
  ASSERT_TRUE(st.ok()) << st.message;
  Stream s;
  // Catch-up and new publications interleave: a transaction every 40 messages read (once it is
  // caught up, each read ends at the KEEPALIVE that tells it the current position).
  for (int i = 0; i < 20; ++i) {
    st = read_until(c, ingest_->position(), s, /*ack=*/true, /*max_messages=*/40);
    ASSERT_TRUE(st.ok()) << st.message;
    commit_tx({"2", "1"}, 1000);
  }
  st = read_until(c, ingest_->position(), s);
  ASSERT_TRUE(st.ok()) << st.message;
  expect_frames(s, expected(kFloor), "behind");

  // Caught up: it is served from the shared window now, and stays exact there.
  const uint64_t position = ingest_->position();
  EXPECT_TRUE(wait_until([&] {
    const auto e = board_entry("behind");
    return e && e->connected && !e->catching_up && e->sent == position;
  })) << "the subscriber never showed as served from the window";
  for (int i = 0; i < 5; ++i) commit_tx({"1"}, 1000);
  st = read_until(c, ingest_->position(), s);
  ASSERT_TRUE(st.ok()) << st.message;
  expect_frames(s, expected(kFloor), "behind, live");
}

// A transaction larger than the write path's in-memory budget is published with its newest
// frames only (the window restarts there): live subscribers read its first frames from the log
// and continue in the window, every frame exactly once.
TEST_F(FanoutServerTest, APublicationWithOnlyTheNewestFramesIsCompletedFromTheLog) {
  ingest_options_.window_bytes = 64u << 10;
  ASSERT_NO_FATAL_FAILURE(start());
  commit_tx({"1"});
  RelayClient all;
  RelayClient two;
  ASSERT_TRUE(all.connect(client_options("all", kFloor)).ok());
  ASSERT_TRUE(two.connect(client_options("two", kFloor, {"2"})).ok());
  Stream s_all;
  Stream s_two;
  ASSERT_TRUE(read_until(all, ingest_->position(), s_all).ok());
  ASSERT_TRUE(read_until(two, ingest_->position(), s_two).ok());

  std::vector<std::string> big;
  for (int i = 0; i < 40; ++i) big.push_back(i % 4 == 3 ? "" : (i % 2 == 0 ? "1" : "2"));
  commit_tx(big, 4000);  // ~160 KB: only the newest ~64 KiB are published in memory
  commit_tx({"2"});
  commit_tx({"1", "2"});
  const uint64_t position = ingest_->position();
  ClientStatus st = read_until(all, position, s_all);
  ASSERT_TRUE(st.ok()) << st.message;
  st = read_until(two, position, s_two);
  ASSERT_TRUE(st.ok()) << st.message;
  expect_frames(s_all, expected(kFloor), "all");
  expect_frames(s_two, expected(kFloor, {"2"}), "two");
}

// A filtered subscriber catching up over a long stretch of records it does not want (more than
// one turn's scanning budget) gets its frames exactly, with KEEPALIVEs that never go backwards,
// while another subscriber is served alongside it.
TEST_F(FanoutServerTest, AFilteredSubscriberScanningALongUnwantedStretchStaysExact) {
  ASSERT_NO_FATAL_FAILURE(start());
  commit_tx({"2"});
  for (int i = 0; i < 800; ++i) commit_tx({"1", "1"});  // 2400 records without a frame for "2"
  commit_tx({"2", "1", "2"});
  RelayClient two;
  RelayClient all;
  ASSERT_TRUE(two.connect(client_options("two", kFloor, {"2"})).ok());
  ASSERT_TRUE(all.connect(client_options("all", kFloor)).ok());
  commit_tx({"1", "2"});
  const uint64_t position = ingest_->position();
  Stream s_two;
  Stream s_all;
  ClientStatus st = read_until(two, position, s_two);
  ASSERT_TRUE(st.ok()) << st.message;
  st = read_until(all, position, s_all);
  ASSERT_TRUE(st.ok()) << st.message;
  expect_frames(s_two, expected(kFloor, {"2"}), "two");
  expect_frames(s_all, expected(kFloor), "all");
}

// An ACK above what the relay sent is refused with bad_request; one at the sent position is not.
TEST_F(FanoutServerTest, AnAckBeyondWhatWasSentIsABadRequest) {
  ASSERT_NO_FATAL_FAILURE(start());
  for (int i = 0; i < 3; ++i) commit_tx({"1"});
  RelayClient c;
  ClientStatus st = c.connect(client_options("acker", kFloor));
  ASSERT_TRUE(st.ok()) << st.message;
  Stream s;
  const uint64_t position = ingest_->position();
  st = read_until(c, position, s, /*ack=*/false);
  ASSERT_TRUE(st.ok()) << st.message;
  ASSERT_TRUE(c.send_ack(position).ok());
  ASSERT_TRUE(wait_until([&] { return registered("acker") == position; }));
  ASSERT_TRUE(c.send_ack(position + 1000).ok());
  st = read_until(c, UINT64_MAX, s, /*ack=*/false);
  EXPECT_EQ(st.error, ClientError::kRefused) << st.message;
  EXPECT_EQ(st.relay_code, proto::kBadRequest) << st.message;
  EXPECT_EQ(registered("acker"), position) << "the refused ack was not recorded";
}

// A subscriber that sends HELLO and then never ACKs is cut with receive_timeout, while one that
// answers reply_requested over the same time stays connected.
TEST_F(FanoutServerTest, ASubscriberThatNeverAcksGetsReceiveTimeout) {
  server_options_.receive_timeout = 250ms;
  server_options_.keepalive_interval = 50ms;
  ASSERT_NO_FATAL_FAILURE(start());
  RelayClient acking;
  ClientStatus st = acking.connect(client_options("acking", 0));
  ASSERT_TRUE(st.ok()) << st.message;

  RawSubscriber silent(server_->port());
  const auto hello_at = std::chrono::steady_clock::now();
  silent.send_hello("silent", 0);
  proto::Type type{};
  std::vector<uint8_t> body;
  ASSERT_EQ(silent.next(kWait, type, body), RawSubscriber::Got::kMessage);
  ASSERT_EQ(type, proto::Type::kWelcome);
  bool asked = false;
  std::string code;
  for (;;) {
    // Keep the acking subscriber answering while the silent one waits for its fate.
    Stream ignored;
    st = read_until(acking, UINT64_MAX, ignored, /*ack=*/true, /*max_messages=*/1);
    ASSERT_TRUE(st.ok()) << "the acking subscriber was cut: " << st.relay_code << " " << st.message;
    const auto got = silent.next(10ms, type, body);
    if (got == RawSubscriber::Got::kTimeout) continue;
    ASSERT_EQ(got, RawSubscriber::Got::kMessage);
    if (type == proto::Type::kKeepalive) {
      proto::Keepalive k;
      std::string why;
      ASSERT_TRUE(proto::decode(body, k, why)) << why;
      asked = asked || k.reply_requested;
      continue;
    }
    ASSERT_EQ(type, proto::Type::kError);
    code = error_code(body);
    break;
  }
  EXPECT_EQ(code, proto::kReceiveTimeout);
  EXPECT_TRUE(asked) << "the relay never asked for an ACK before cutting";
  EXPECT_GE(std::chrono::steady_clock::now() - hello_at, server_options_.receive_timeout);
  EXPECT_EQ(silent.next(kWait, type, body), RawSubscriber::Got::kEof) << "nothing after ERROR";

  // The acking one outlives the timeout twice over.
  const auto until = std::chrono::steady_clock::now() + 2 * server_options_.receive_timeout;
  while (std::chrono::steady_clock::now() < until) {
    Stream ignored;
    st = read_until(acking, UINT64_MAX, ignored, /*ack=*/true, /*max_messages=*/1);
    ASSERT_TRUE(st.ok()) << "the acking subscriber was cut: " << st.relay_code << " " << st.message;
  }
}

// A second connection under a connected name is refused with name_in_use; the first one goes on,
// and the name is free again once it disconnects.
TEST_F(FanoutServerTest, ASecondConnectionWithTheSameNameGetsNameInUse) {
  ASSERT_NO_FATAL_FAILURE(start());
  RelayClient first;
  ClientStatus st = first.connect(client_options("edge", kFloor));
  ASSERT_TRUE(st.ok()) << st.message;
  RelayClient second;
  st = second.connect(client_options("edge", kFloor));
  EXPECT_EQ(st.error, ClientError::kRefused);
  EXPECT_EQ(st.relay_code, proto::kNameInUse) << st.message;
  EXPECT_FALSE(second.connected());

  commit_tx({"1"});
  Stream s;
  st = read_until(first, ingest_->position(), s);
  ASSERT_TRUE(st.ok()) << st.message;
  expect_frames(s, expected(kFloor), "first");

  first.close();
  st = connect_retrying(second, client_options("edge", kFloor));
  EXPECT_TRUE(st.ok()) << st.relay_code << " " << st.message;
}

// Stopping the server tells every streaming subscriber shutting_down.
TEST_F(FanoutServerTest, ShutdownSendsShuttingDownToEverySubscriber) {
  ASSERT_NO_FATAL_FAILURE(start());
  commit_tx({"1"});
  RelayClient a;
  RelayClient b;
  ASSERT_TRUE(a.connect(client_options("a", kFloor, {"1"})).ok());
  ASSERT_TRUE(b.connect(client_options("b", kFloor)).ok());
  Stream sa;
  Stream sb;
  // Read without acking: nothing of theirs is left unread by the relay when it closes.
  ASSERT_TRUE(read_until(a, ingest_->position(), sa, /*ack=*/false).ok());
  ASSERT_TRUE(read_until(b, ingest_->position(), sb, /*ack=*/false).ok());
  stop_server();
  for (RelayClient* c : {&a, &b}) {
    Stream rest;
    const ClientStatus st = read_until(*c, UINT64_MAX, rest, /*ack=*/false);
    EXPECT_EQ(st.error, ClientError::kRefused) << st.message;
    EXPECT_EQ(st.relay_code, proto::kShuttingDown) << st.message;
  }
}

// The status board lists connected subscribers (peer, filter, acked and sent positions) and,
// after one disconnects, its registered ack.
TEST_F(FanoutServerTest, TheStatusBoardShowsConnectedSubscribersWithTheirAcks) {
  ASSERT_NO_FATAL_FAILURE(start());
  std::vector<uint64_t> keys;
  for (int i = 0; i < 6; ++i) keys.push_back(commit_tx({i % 2 == 0 ? "1" : "2"}));
  const uint64_t position = ingest_->position();
  RelayClient a;
  RelayClient b;
  ASSERT_TRUE(a.connect(client_options("board_a", kFloor, {"1", "2"})).ok());
  ASSERT_TRUE(b.connect(client_options("board_b", kFloor)).ok());
  Stream sa;
  Stream sb;
  ASSERT_TRUE(read_until(a, position, sa, /*ack=*/false).ok());
  ASSERT_TRUE(read_until(b, position, sb, /*ack=*/false).ok());
  const uint64_t ack_a = keys[2] + 1;
  ASSERT_TRUE(a.send_ack(ack_a).ok());
  ASSERT_TRUE(b.send_ack(position).ok());

  const bool shown = wait_until([&] {
    const RelayStatus st = board_.read();
    const auto ea = board_entry("board_a");
    const auto eb = board_entry("board_b");
    return st.position == position && ea && eb && ea->acked == ack_a && eb->acked == position;
  });
  ASSERT_TRUE(shown) << "the board never showed both acks";
  const RelayStatus st = board_.read();
  EXPECT_EQ(st.connections_total, 2u);
  const auto ea = board_entry("board_a");
  const auto eb = board_entry("board_b");
  EXPECT_TRUE(ea->connected);
  EXPECT_TRUE(eb->connected);
  EXPECT_EQ(ea->tenants, "1,2");
  EXPECT_EQ(eb->tenants, "*");
  EXPECT_EQ(ea->peer.rfind("127.0.0.1:", 0), 0u) << ea->peer;
  EXPECT_EQ(ea->sent, position);
  EXPECT_EQ(eb->sent, position);
  EXPECT_EQ(ea->lag_bytes, position - ack_a);
  EXPECT_EQ(eb->lag_bytes, 0u);
  EXPECT_EQ(ea->frames_sent, sa.frames.size());
  EXPECT_EQ(eb->frames_sent, sb.frames.size());
  EXPECT_FALSE(ea->catching_up);

  a.close();
  EXPECT_TRUE(wait_until([&] {
    const auto e = board_entry("board_a");
    return e && !e->connected && e->acked == ack_a && e->peer.empty();
  })) << "the board never showed board_a disconnected with its ack";
  const auto still = board_entry("board_b");
  ASSERT_TRUE(still.has_value());
  EXPECT_TRUE(still->connected);
}

// Reads everything a raw subscriber is sent, chunk bytes per read() (a slow reader), until the
// relay closes the connection: frames into got, checked one by one against want (a prefix of it,
// contiguous: no gap, no duplicate; the first mismatch fails the test and ends the read), and the
// ERROR's code into code. Also ends, without an ERROR, once every wanted frame and a KEEPALIVE at
// `end` arrived (a subscriber that was never cut).
void read_to_end(RawSubscriber& sub, const std::vector<const Fed*>& want, uint64_t end, Stream& got,
                 std::string& code, size_t chunk) {
  for (;;) {
    proto::Type type{};
    std::vector<uint8_t> body;
    const auto r = sub.next(kWait, type, body, chunk);
    if (r == RawSubscriber::Got::kEof) return;
    if (r != RawSubscriber::Got::kMessage) {
      ADD_FAILURE() << "the stream ended without EOF (timeout or a broken message)";
      return;
    }
    if (!code.empty()) {
      ADD_FAILURE() << "a message after the ERROR";
      return;
    }
    std::string why;
    if (type == proto::Type::kFrame) {
      uint64_t key = 0;
      std::span<const uint8_t> frame;
      ASSERT_TRUE(proto::decode_frame(body, key, frame, why)) << why;
      const size_t i = got.frames.size();
      got.frames.emplace_back(key, std::vector<uint8_t>(frame.begin(), frame.end()));
      if (i >= want.size() || key != want[i]->key || got.frames[i].second != want[i]->bytes) {
        ADD_FAILURE() << "gap, duplicate or disorder at received frame " << i << ": key " << key
                      << ", expected " << (i < want.size() ? std::to_string(want[i]->key) : "none");
        return;
      }
    } else if (type == proto::Type::kKeepalive) {
      proto::Keepalive k;
      ASSERT_TRUE(proto::decode(body, k, why)) << why;
      if (!got.keepalives.empty()) {
        EXPECT_GE(k.position, got.keepalives.back()) << "a KEEPALIVE position went backwards";
      }
      got.keepalives.push_back(k.position);
      if (k.position >= end && got.frames.size() == want.size()) return;
    } else if (type == proto::Type::kError) {
      code = error_code(body);
      EXPECT_FALSE(code.empty());
    } else {
      ADD_FAILURE() << "unexpected message type " << static_cast<int>(type);
      return;
    }
  }
}

// Regression (review, gap.cpp): a live subscriber that reads slowly (tiny receive buffer) while
// the 1 MiB window moves on and max_bytes retention drops segments it has not been sent must get
// resync_required, never a stream with a silent gap.
TEST_F(FanoutServerTest, RegressionSlowLiveSubscriberBehindRetentionGetsResyncNotAGap) {
  log_options_.segment_bytes = 64u << 10;
  ingest_options_.window_bytes = 1u << 20;
  server_options_.window_bytes = 1u << 20;
  ASSERT_NO_FATAL_FAILURE(start());
  RawSubscriber sub(server_->port(), /*rcvbuf=*/4096);
  sub.send_hello("slow", kFloor);
  proto::Type type{};
  std::vector<uint8_t> body;
  ASSERT_EQ(sub.next(kWait, type, body), RawSubscriber::Got::kMessage);
  ASSERT_EQ(type, proto::Type::kWelcome);

  // Phase 1: the subscriber reads nothing; its socket and its queue in the relay fill up.
  for (int i = 0; i < 400; ++i) commit_tx({"1"}, 4000);
  ASSERT_NO_FATAL_FAILURE(wait_visible());
  // Phase 2: far more than the window and the retention limit, with max_bytes retention.
  for (int i = 0; i < 3000; ++i) {
    commit_tx({"1"}, 4000);
    if (i % 50 == 0) {
      const IngestResult r = ingest_->apply_retention(registry_->min_acked(), 0, 1u << 20);
      ASSERT_TRUE(r.ok()) << r.message;
    }
  }
  const uint64_t oldest = log_->oldest_lsn();
  ASSERT_GT(oldest, fed_[fed_.size() / 2].key) << "retention did not drop what the test needs";

  // Phase 3: it reads, slowly, to the end.
  Stream got;
  std::string code;
  read_to_end(sub, expected(kFloor), ingest_->position(), got, code, 1024);
  EXPECT_EQ(code, proto::kResyncRequired);
  EXPECT_LT(got.frames.size(), fed_.size());
  ASSERT_FALSE(got.frames.empty());
  EXPECT_LT(got.frames.back().first, oldest) << "it got past the dropped records";
}

// The same while the subscriber is still catching up from the log (its own cursor) when
// retention drops the segments ahead of it.
TEST_F(FanoutServerTest, RegressionSlowCatchingUpSubscriberBehindRetentionGetsResyncNotAGap) {
  log_options_.segment_bytes = 256u << 10;
  ingest_options_.window_bytes = 1u << 20;
  server_options_.window_bytes = 1u << 20;
  ASSERT_NO_FATAL_FAILURE(start());
  // ~8 MB before it connects: more than its socket buffers and relay queue can take, so it is
  // still reading the log when it blocks.
  const std::vector<std::string> tx(4, "1");
  for (int i = 0; i < 128; ++i) commit_tx(tx, 16000);
  RawSubscriber sub(server_->port(), /*rcvbuf=*/4096);
  sub.send_hello("slow_catchup", kFloor);
  proto::Type type{};
  std::vector<uint8_t> body;
  ASSERT_EQ(sub.next(kWait, type, body), RawSubscriber::Got::kMessage);
  ASSERT_EQ(type, proto::Type::kWelcome);
  for (int i = 0; i < 200; ++i) {
    commit_tx(tx, 16000);
    if (i % 5 == 0) {
      const IngestResult r = ingest_->apply_retention(registry_->min_acked(), 0, 1u << 20);
      ASSERT_TRUE(r.ok()) << r.message;
    }
  }
  const uint64_t oldest = log_->oldest_lsn();
  ASSERT_GT(oldest, fed_[fed_.size() / 2].key) << "retention did not drop what the test needs";

  Stream got;
  std::string code;
  read_to_end(sub, expected(kFloor), ingest_->position(), got, code, 1024);
  EXPECT_EQ(code, proto::kResyncRequired);
  EXPECT_LT(got.frames.size(), fed_.size());
}

// Sends a HELLO at start on a raw socket; the code of the ERROR that answers it ("" after a
// WELCOME), and in first_key the key of the first frame after a WELCOME.
std::string hello_outcome(int port, const std::string& name, uint64_t start, uint64_t* first_key = nullptr) {
  RawSubscriber sub(port);
  sub.send_hello(name, start);
  proto::Type type{};
  std::vector<uint8_t> body;
  if (sub.next(kWait, type, body) != RawSubscriber::Got::kMessage) return "<no answer>";
  if (type == proto::Type::kError) return error_code(body);
  if (type != proto::Type::kWelcome) return "<unexpected message>";
  while (first_key != nullptr) {
    if (sub.next(kWait, type, body) != RawSubscriber::Got::kMessage) return "<no frame>";
    if (type != proto::Type::kFrame) continue;
    std::span<const uint8_t> frame;
    std::string why;
    if (!proto::decode_frame(body, *first_key, frame, why)) return "<bad frame>";
    break;
  }
  return "";
}

// Regression (review, hello_gap.cpp): a HELLO whose start is below the log's oldest record
// after retention dropped segments gets resync_required; one at the oldest record streams from
// there, exactly.
TEST_F(FanoutServerTest, RegressionHelloBelowTheOldestRecordAfterRetentionGetsResync) {
  log_options_.segment_bytes = 64u << 10;
  ASSERT_NO_FATAL_FAILURE(start());
  // A subscriber acked early; max_bytes retention drops its records anyway.
  RelayClient early;
  ASSERT_TRUE(early.connect(client_options("early", kFloor)).ok());
  early.close();
  ASSERT_NO_FATAL_FAILURE(fill_and_drop());
  const uint64_t oldest = log_->oldest_lsn();
  ASSERT_GT(oldest, 5000u);
  ASSERT_GE(registry_->floor(), oldest);
  ASSERT_NO_FATAL_FAILURE(wait_visible());

  EXPECT_EQ(hello_outcome(server_->port(), "low", 5000), proto::kResyncRequired);
  EXPECT_EQ(hello_outcome(server_->port(), "just_below", oldest - 1), proto::kResyncRequired);
  ASSERT_TRUE(wait_until([&] { return !board_entry("early") || !board_entry("early")->connected; }));
  EXPECT_EQ(hello_outcome(server_->port(), "early", 0), proto::kResyncRequired)
      << "start=0 resumes from an ack retention has dropped";

  RelayClient c;
  ClientStatus st = c.connect(client_options("at_oldest", oldest));
  ASSERT_TRUE(st.ok()) << st.relay_code << " " << st.message;
  Stream s;
  st = read_until(c, ingest_->position(), s);
  ASSERT_TRUE(st.ok()) << st.message;
  expect_frames(s, expected(oldest), "at_oldest");
}

// Regression (review, hello_gap.cpp): relay.state lost before a restart (a new Registry on the
// same directory after Ingest::recover()): a HELLO below the log's oldest record still gets
// resync_required, never frames that start later than asked.
TEST_F(FanoutServerTest, RegressionHelloBelowTheOldestRecordAfterStateLossGetsResync) {
  log_options_.segment_bytes = 64u << 10;
  ASSERT_NO_FATAL_FAILURE(open_relay());
  ASSERT_NO_FATAL_FAILURE(fill_and_drop());
  const uint64_t oldest = log_->oldest_lsn();
  ASSERT_GT(oldest, 5000u);
  close_relay();
  ASSERT_TRUE(fs::remove(dir_.path() / "relay.state"));

  ASSERT_NO_FATAL_FAILURE(open_relay());  // recover() on the existing log
  EXPECT_EQ(log_->oldest_lsn(), oldest);
  ASSERT_NO_FATAL_FAILURE(start_server());
  EXPECT_EQ(hello_outcome(server_->port(), "edge1", 5000), proto::kResyncRequired);
  uint64_t first_key = 0;
  EXPECT_EQ(hello_outcome(server_->port(), "edge2", oldest, &first_key), "");
  EXPECT_EQ(first_key, expected(oldest).front()->key);
}

// The server's own check, without the floor recover() raises: the log is served as it is (its
// visible end published by hand, relay.state gone) and a HELLO below its oldest record is still
// refused with resync_required.
TEST_F(FanoutServerTest, RegressionHelloBelowTheOldestRecordWithoutAFloorGetsResync) {
  log_options_.segment_bytes = 64u << 10;
  ASSERT_NO_FATAL_FAILURE(open_relay());
  ASSERT_NO_FATAL_FAILURE(fill_and_drop());
  const uint64_t oldest = log_->oldest_lsn();
  close_relay();
  ASSERT_TRUE(fs::remove(dir_.path() / "relay.state"));

  log_.emplace(FrameLog::open(dir_.path() / "log", log_options_));
  registry_.emplace(dir_.path());
  ASSERT_EQ(registry_->floor(), 0u);
  queue_ = std::make_unique<PublicationQueue>();
  const FrameLog::Position end = log_->written();  // ends at a marker: every transaction committed
  queue_->push({{}, end.records, end.lsn, 0, 0});
  server_ = std::make_unique<FanoutServer>(server_options_, *log_, *registry_, *queue_, tokens_, board_);
  stop_ = false;
  thread_ = std::thread([this] { server_->run(stop_); });
  ASSERT_TRUE(wait_until([&] { return board_.read().position == end.lsn; }));

  EXPECT_EQ(hello_outcome(server_->port(), "edge1", 5000), proto::kResyncRequired);
  EXPECT_EQ(hello_outcome(server_->port(), "edge2", oldest - 1), proto::kResyncRequired);
  uint64_t first_key = 0;
  EXPECT_EQ(hello_outcome(server_->port(), "edge3", oldest, &first_key), "");
  EXPECT_EQ(first_key, expected(oldest).front()->key);
}

}  // namespace
}  // namespace edgeshard::relay

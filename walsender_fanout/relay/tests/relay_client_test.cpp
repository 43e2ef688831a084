// Unit tests of RelayClient against an in-process fake relay: a thread accepting one connection on
// a loopback socket (port 0) and playing a script of protocol messages, byte by byte if need be.
#include "walsender_fanout/relay/relay_client.hpp"

#include "walsender_fanout/relay/protocol.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace edgeshard::relay {
namespace {

using proto::Type;

// Longest the fake relay waits for the client at any step, so a broken test fails, not hangs.
constexpr int kServerWaitMs = 10000;

// Writes all of bytes to fd (blocking).
void write_all(int fd, std::span<const uint8_t> bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ADD_FAILURE() << "fake relay: send failed: " << std::strerror(errno);
      return;
    }
    off += static_cast<size_t>(n);
  }
}

// Reads exactly n bytes from fd; false at EOF, error or after kServerWaitMs.
bool read_exact(int fd, uint8_t* out, size_t n) {
  size_t got = 0;
  while (got < n) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, kServerWaitMs) <= 0) return false;
    const ssize_t r = ::recv(fd, out + got, n - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return true;
}

// Reads one protocol message from fd; false at EOF or error.
bool read_message(int fd, uint8_t& type, std::vector<uint8_t>& body) {
  uint8_t header[proto::kMessageHeaderBytes];
  if (!read_exact(fd, header, sizeof header)) return false;
  type = header[0];
  const uint32_t length =
      static_cast<uint32_t>(header[1]) | (static_cast<uint32_t>(header[2]) << 8) |
      (static_cast<uint32_t>(header[3]) << 16) | (static_cast<uint32_t>(header[4]) << 24);
  body.resize(length);
  return read_exact(fd, body.data(), length);
}

// Reads the client's HELLO into hello; false (after a test failure) when it is not one.
bool expect_hello(int fd, proto::Hello& hello) {
  uint8_t type = 0;
  std::vector<uint8_t> body;
  if (!read_message(fd, type, body)) {
    ADD_FAILURE() << "fake relay: no HELLO";
    return false;
  }
  std::string why;
  if (type != 'H' || !proto::decode(body, hello, why)) {
    ADD_FAILURE() << "fake relay: bad HELLO (type " << type << "): " << why;
    return false;
  }
  return true;
}

// Reads the client's next ACK into ack; false (after a test failure) when it is not one.
bool expect_ack(int fd, proto::Ack& ack) {
  uint8_t type = 0;
  std::vector<uint8_t> body;
  if (!read_message(fd, type, body)) {
    ADD_FAILURE() << "fake relay: no ACK";
    return false;
  }
  std::string why;
  if (type != 'A' || !proto::decode(body, ack, why)) {
    ADD_FAILURE() << "fake relay: bad ACK (type " << type << "): " << why;
    return false;
  }
  return true;
}

// Waits until the client sends an ACK: how a script waits for the test's go-ahead.
void wait_for_go(int fd) {
  proto::Ack ack;
  expect_ack(fd, ack);
}

// Waits until the client closes its end (the fake relay reads and drops anything it sends).
void wait_for_close(int fd) {
  uint8_t type = 0;
  std::vector<uint8_t> body;
  while (read_message(fd, type, body)) {
  }
}

// Encodes a WELCOME.
std::vector<uint8_t> welcome_bytes(uint64_t start, uint64_t position = 0x9000,
                                   const std::string& name = "fake-relay") {
  std::vector<uint8_t> out;
  proto::encode(proto::Welcome{proto::kVersion, start, position, name}, out);
  return out;
}

// Encodes a FRAME message carrying frame at key.
std::vector<uint8_t> frame_bytes(uint64_t key, const std::vector<uint8_t>& frame) {
  // Sized once and filled in place (vector::insert here trips GCC 12's -Warray-bounds).
  std::vector<uint8_t> out(proto::kFramePrefixBytes + frame.size());
  proto::encode_frame_prefix(key, frame.size(), out.data());
  std::copy(frame.begin(), frame.end(), out.begin() + proto::kFramePrefixBytes);
  return out;
}

// Encodes a KEEPALIVE.
std::vector<uint8_t> keepalive_bytes(uint64_t position, bool reply_requested = false) {
  std::vector<uint8_t> out;
  proto::encode(proto::Keepalive{position, 1714564800000000, 1714564799000000, reply_requested},
                out);
  return out;
}

// Encodes an ERROR.
std::vector<uint8_t> error_bytes(std::string_view code, const std::string& message) {
  std::vector<uint8_t> out;
  proto::encode(proto::Error{std::string(code), message}, out);
  return out;
}

// Frame-like test bytes (the client does not look inside frames).
std::vector<uint8_t> payload(size_t n, uint8_t seed) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 9));
  return out;
}

// Reads HELLO and answers WELCOME at the start asked for (0x1000 when 0).
void accept_hello(int fd) {
  proto::Hello hello;
  if (!expect_hello(fd, hello)) return;
  const std::vector<uint8_t> w = welcome_bytes(hello.start != 0 ? hello.start : 0x1000);
  write_all(fd, w);
}

// A fake relay: listens on a loopback port and runs a script on the first connection.
class FakeRelay {
 public:
  using Script = std::function<void(int fd)>;

  // Listens on 127.0.0.1 (or ::1 when ipv6) and runs script on the first connection in a thread.
  explicit FakeRelay(Script script, bool ipv6 = false) : script_(std::move(script)) {
    listener_.reset(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (listener_.get() < 0) return;
    sockaddr_storage ss{};
    socklen_t len;
    if (ipv6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      len = sizeof *a;
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *a;
    }
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
        ::listen(listener_.get(), 4) != 0 ||
        ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
      listener_.reset();
      return;
    }
    port_ = ntohs(ipv6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                       : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    address_ = (ipv6 ? "[::1]:" : "127.0.0.1:") + std::to_string(port_);
    thread_ = std::thread([this] { run(); });
  }
  // Waits for the script to end.
  ~FakeRelay() { join(); }
  // Waits for the script to end (what it recorded is then complete).
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  FakeRelay(const FakeRelay&) = delete;
  FakeRelay& operator=(const FakeRelay&) = delete;

  // Whether the listening socket is up.
  bool listening() const { return port_ != 0; }
  // "127.0.0.1:port" or "[::1]:port".
  const std::string& address() const { return address_; }

 private:
  // Accepts one connection and runs the script on it.
  void run() {
    pollfd pfd{listener_.get(), POLLIN, 0};
    if (::poll(&pfd, 1, kServerWaitMs) <= 0) {
      ADD_FAILURE() << "fake relay: no connection";
      return;
    }
    UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (conn.get() < 0) {
      ADD_FAILURE() << "fake relay: accept failed: " << std::strerror(errno);
      return;
    }
    script_(conn.get());
  }

  Script script_;
  UniqueFd listener_;
  uint16_t port_ = 0;
  std::string address_;
  std::thread thread_;
};

// A loopback port nothing listens on (bound, not listening, so a connect is refused), held until
// the object is destroyed so nobody else takes it.
class DeadPort {
 public:
  // Binds 127.0.0.1:0.
  DeadPort() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), len) == 0 &&
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      address_ = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    }
  }
  // "127.0.0.1:port".
  const std::string& address() const { return address_; }

 private:
  UniqueFd fd_;
  std::string address_;
};

// Options for a connection to hosts.
ClientOptions options_for(const std::string& hosts, uint64_t start = 0) {
  ClientOptions o;
  o.hosts = hosts;
  o.name = "edge-1";
  o.token = "t0ken";
  o.start = start;
  o.connect_timeout_ms = 5000;
  return o;
}

// Milliseconds since an arbitrary point, for timing checks.
int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The bytes of a span, for comparisons.
std::vector<uint8_t> to_vector(std::span<const uint8_t> s) { return {s.begin(), s.end()}; }

TEST(RelayClientTest, ConnectSendsHelloAndReadsWelcome) {
  proto::Hello hello;
  FakeRelay relay([&](int fd) {
    if (!expect_hello(fd, hello)) return;
    write_all(fd, welcome_bytes(0x16B3748, 0x2000000, "regional-1"));
    wait_for_close(fd);
  });
  ASSERT_TRUE(relay.listening());
  RelayClient client;
  ClientOptions o = options_for(relay.address(), 0x16B3748);
  o.tenants = {"42", "acme"};
  const ClientStatus st = client.connect(o);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_TRUE(client.connected());
  EXPECT_GE(client.fd(), 0);
  EXPECT_EQ(client.peer(), relay.address());
  EXPECT_EQ(client.welcome().version, proto::kVersion);
  EXPECT_EQ(client.welcome().start, 0x16B3748u);
  EXPECT_EQ(client.welcome().position, 0x2000000u);
  EXPECT_EQ(client.welcome().relay_name, "regional-1");
  client.close();
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(client.fd(), -1);
  EXPECT_EQ(client.peer(), "");
  relay.join();
  EXPECT_EQ(hello.min_version, proto::kVersion);
  EXPECT_EQ(hello.max_version, proto::kVersion);
  EXPECT_EQ(hello.name, "edge-1");
  EXPECT_EQ(hello.token, "t0ken");
  EXPECT_EQ(hello.start, 0x16B3748u);
  EXPECT_EQ(hello.flags, 0u);
  EXPECT_EQ(hello.tenants, (std::vector<std::string>{"42", "acme"}));
}

TEST(RelayClientTest, StartZeroTakesTheRelaysEffectiveStart) {
  FakeRelay relay([](int fd) {
    proto::Hello hello;
    if (!expect_hello(fd, hello)) return;
    EXPECT_EQ(hello.start, 0u);
    EXPECT_TRUE(hello.tenants.empty());
    write_all(fd, welcome_bytes(0x5000));
    write_all(fd, frame_bytes(0x4FFF, payload(10, 1)));  // below the effective start
    wait_for_close(fd);
  });
  RelayClient client;
  ASSERT_TRUE(client.connect(options_for(relay.address())).ok());
  EXPECT_EQ(client.welcome().start, 0x5000u);
  Incoming in;
  const ClientStatus st = client.read(5000, in);
  EXPECT_EQ(st.error, ClientError::kProtocol);
  EXPECT_NE(st.message.find("below 0/5000"), std::string::npos) << st.message;
  EXPECT_FALSE(client.connected());
}

TEST(RelayClientTest, IPv6Loopback) {
  FakeRelay relay(
      [](int fd) {
        accept_hello(fd);
        write_all(fd, keepalive_bytes(0x1234));
        wait_for_close(fd);
      },
      /*ipv6=*/true);
  if (!relay.listening()) GTEST_SKIP() << "no IPv6 loopback here";
  RelayClient client;
  const ClientStatus st = client.connect(options_for(relay.address()));
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(client.peer(), relay.address());
  Incoming in;
  ASSERT_TRUE(client.read(5000, in).ok());
  EXPECT_EQ(in.keepalive.position, 0x1234u);
}

TEST(RelayClientTest, ReadsFramesAndKeepalives) {
  const std::vector<uint8_t> f1 = payload(100, 1), f2 = payload(3000, 2), f3 = payload(1, 3);
  FakeRelay relay([&](int fd) {
    accept_hello(fd);
    write_all(fd, frame_bytes(0x1000, f1));
    write_all(fd, frame_bytes(0x1000, f2));
    write_all(fd, keepalive_bytes(0x1001));
    write_all(fd, frame_bytes(0x2000, f3));
    write_all(fd, keepalive_bytes(0x3000, /*reply_requested=*/true));
    wait_for_close(fd);
  });
  RelayClient client;
  ASSERT_TRUE(client.connect(options_for(relay.address(), 0x1000)).ok());
  Incoming in;
  ASSERT_TRUE(client.read(5000, in).ok());
  EXPECT_EQ(in.type, Type::kFrame);
  EXPECT_EQ(in.key, 0x1000u);
  EXPECT_EQ(to_vector(in.frame), f1);
  ASSERT_TRUE(client.read(5000, in).ok());
  EXPECT_EQ(in.type, Type::kFrame);
  EXPECT_EQ(in.key, 0x1000u);
  EXPECT_EQ(to_vector(in.frame), f2);
  ASSERT_TRUE(client.read(5000, in).ok());
  EXPECT_EQ(in.type, Type::kKeepalive);
  EXPECT_EQ(in.keepalive.position, 0x1001u);
  EXPECT_EQ(in.keepalive.relay_time_us, 1714564800000000);
  EXPECT_EQ(in.keepalive.commit_time_us, 1714564799000000);
  EXPECT_FALSE(in.keepalive.reply_requested);
  EXPECT_TRUE(in.frame.empty());
  ASSERT_TRUE(client.read(-1, in).ok());
  EXPECT_EQ(in.type, Type::kFrame);
  EXPECT_EQ(in.key, 0x2000u);
  EXPECT_EQ(to_vector(in.frame), f3);
  EXPECT_EQ(in.keepalive.position, 0u);
  ASSERT_TRUE(client.read(5000, in).ok());
  EXPECT_EQ(in.type, Type::kKeepalive);
  EXPECT_EQ(in.keepalive.position, 0x3000u);
  EXPECT_TRUE(in.keepalive.reply_requested);
}

TEST(RelayClientTest, ManyMessagesInOneWrite) {
  constexpr int kCount = 2000;
  FakeRelay relay([&](int fd) {
    proto::Hello hello;
    if (!expect_hello(fd, hello)) return;
    // WELCOME and everything after it in one write: nothing may be lost behind the WELCOME.
    std::vector<uint8_t> all = welcome_bytes(hello.start);
    for (int i = 0; i < kCount; ++i) {
      const std::vector<uint8_t> m =
          i % 2 == 0 ? frame_bytes(0x1000 + i, payload(50 + i % 300, static_cast<uint8_t>(i)))
                     : keepalive_bytes(0x1000 + i);
      all.insert(all.end(), m.begin(), m.end());
    }
    write_all(fd, all);
    wait_for_close(fd);
  });
  RelayClient client;
  ASSERT_TRUE(client.connect(options_for(relay.address(), 0x1000)).ok());
  Incoming in;
  for (int i = 0; i < kCount; ++i) {
    const ClientStatus st = client.read(5000, in);
    ASSERT_TRUE(st.ok()) << i << ": " << st.message;
    if (i % 2 == 0) {
      ASSERT_EQ(in.type, Type::kFrame) << i;
      EXPECT_EQ(in.key, 0x1000u + i);
      EXPECT_EQ(to_vector(in.frame), payload(50 + i % 300, static_cast<uint8_t>(i))) << i;
    } else {
      ASSERT_EQ(in.type, Type::kKeepalive) << i;
      EXPECT_EQ(in.keepalive.position, 0x1000u + i);
    }
  }
  EXPECT_EQ(client.read(0, in).error, ClientError::kTimeout);
}

TEST(RelayClientTest, FrameSplitAcrossManySmallWrites) {
  const std::vector<uint8_t> small = payload(200, 9);
  const std::vector<uint8_t> big = payload(3 * RelayClient::kReadChunk + 12345, 4);
  FakeRelay relay([&](int fd) {
    accept_hello(fd);
    // A small frame one byte per write, with pauses so each byte arrives on its own.
    const std::vector<uint8_t> m1 = frame_bytes(0x1000, small);
    for (size_t i = 0; i < m1.size(); ++i) {
      write_all(fd, std::span<const uint8_t>(m1).subspan(i, 1));
      if (i < 20) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    // A frame larger than the initial buffer in odd-sized pieces; the keepalive after it shares
    // the last piece.
    std::vector<uint8_t> m2 = frame_bytes(0x2000, big);
    const std::vector<uint8_t> k = keepalive_bytes(0x2001);
    m2.insert(m2.end(), k.begin(), k.end());
    size_t off = 0;
    for (size_t piece = 1; off < m2.size(); piece = piece * 3 % 65521 + 1) {
      const size_t n = std::min(piece, m2.size() - off);
      write_all(fd, std::span<const uint8_t>(m2).subspan(off, n));
      off += n;
    }
    wait_for_close(fd);
  });
  RelayClient client;
  ASSERT_TRUE(client.connect(options_for(relay.address(), 0x1000)).ok());
  Incoming in;
  ClientStatus st = client.read(5000, in);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(in.key, 0x1000u);
  EXPECT_EQ(to_vector(in.frame), small);
  st = client.read(5000, in);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(in.type, Type::kFrame);
  EXPECT_EQ(in.key, 0x2000u);
  EXPECT_EQ(in.frame.size(), big.size());
  EXPECT_TRUE(to_vector(in.frame) == big);
  st = client.read(5000, in);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(in.type, Type::kKeepalive);
  EXPECT_EQ(in.keepalive.position, 0x2001u);
}

// Size of test frame i of BufferCompactsAndGrows: from 1 byte to a few read chunks.
size_t varied_size(int i) {
  return 1 + static_cast<size_t>(i) * 104729 % (3 * RelayClient::kReadChunk);
}

TEST(RelayClientTest, BufferCompactsAndGrows) {
  constexpr int kFrames = 60;
  constexpr size_t kHuge = size_t{20} << 20;  // beyond the size an idle buffer is kept at
  FakeRelay relay([&](int fd) {
    accept_hello(fd);
    std::vector<uint8_t> all;
    for (int i = 0; i < kFrames; ++i) {
      const std::vector<uint8_t> m =
          frame_bytes(0x1000 + i, payload(varied_size(i), static_cast<uint8_t>(i)));
      all.insert(all.end(), m.begin(), m.end());
    }
    write_all(fd, all);
    write_all(fd, frame_bytes(0x2000, payload(kHuge, 7)));
    write_all(fd, frame_bytes(0x2001, payload(10, 8)));
    wait_for_close(fd);
  });
  RelayClient client;
  ASSERT_TRUE(client.connect(options_for(relay.address(), 0x1000)).ok());
  Incoming in;
  for (int i = 0; i < kFrames; ++i) {
    const ClientStatus st = client.read(5000, in);
    ASSERT_TRUE(st.ok()) << i << ": " << st.message;
    ASSERT_EQ(in.key, 0x1000u + i);
    ASSERT_TRUE(to_vector(in.frame) == payload(varied_size(i), static_cast<uint8_t>(i))) << i;
  }
  ClientStatus st = client.read(5000, in);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(in.frame.size(), kHuge);
  EXPECT_TRUE(to_vector(in.frame) == payload(kHuge, 7));
  st = client.read(5000, in);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(in.key, 0x2001u);
  EXPECT_EQ(to_vector(in.frame), payload(10, 8));
}

TEST(RelayClientTest, SendsAcks) {
  std::vector<proto::Ack> acks;
  FakeRelay relay([&](int fd) {
    accept_hello(fd);
    for (int i = 0; i < 2; ++i) {
      proto::Ack a;
      if (expect_ack(fd, a)) acks.push_back(a);
    }
    wait_for_close(fd);
  });
  RelayClient client;
  ASSERT_TRUE(client.connect(options_for(relay.address(), 0x1000)).ok());
  const int64_t before = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  ASSERT_TRUE(client.send_ack(0x1000).ok());
  ASSERT_TRUE(client.send_ack(0x16B3749).ok());
  const int64_t after = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  client.close();
  relay.join();
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(acks[0].position, 0x1000u);
  EXPECT_EQ(acks[1].position, 0x16B3749u);
  for (const proto::Ack& a : acks) {
    EXPECT_GE(a.client_time_us, before);
    EXPECT_LE(a.client_time_us, after);
  }
  EXPECT_EQ(client.send_ack(1).error, ClientError::kClosed);  // not connected
}

TEST(RelayClientTest, ErrorDuringHandshakeIsRefused) {
  FakeRelay relay([](int fd) {
    proto::Hello hello;
    if (!expect_hello(fd, hello)) return;
    write_all(fd, error_bytes(proto::kAuthFailed, "wrong token for \"edge-1\""));
  });
  RelayClient client;
  const ClientStatus st = client.connect(options_for(relay.address()));
  EXPECT_EQ(st.error, ClientError::kRefused);
  EXPECT_EQ(st.relay_code, "auth_failed");
  EXPECT_EQ(st.message, "wrong token for \"edge-1\"");
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(client.peer(), "");
}

TEST(RelayClientTest, ErrorWhileStreamingIsRefusedAfterWhatCameBefore) {
  FakeRelay relay([](int fd) {
    accept_hello(fd);
    std::vector<uint8_t> m = frame_bytes(0x1000, payload(10, 1));
    const std::vector<uint8_t> e = error_bytes(proto::kSendTimeout, "read nothing for 60 s");
    m.insert(m.end(), e.begin(), e.end());
    write_all(fd, m);
    // The relay closes right after ERROR.
  });
  RelayClient client;
  ASSERT_TRUE(client.connect(options_for(relay.address(), 0x1000)).ok());
  relay.join();  // ERROR sent and the connection closed before the client reads anything
  Incoming in;
  ASSERT_TRUE(client.read(5000, in).ok());
  EXPECT_EQ(in.type, Type::kFrame);
  const ClientStatus st = client.read(5000, in);
  EXPECT_EQ(st.error, ClientError::kRefused);
  EXPECT_EQ(st.relay_code, "send_timeout");
  EXPECT_EQ(st.message, "read nothing for 60 s");
  EXPECT_FALSE(client.connected());
  EXPECT_EQ(client.read(0, in).error, ClientError::kClosed);
}

TEST(RelayClientTest, ReadTimesOutAndTheConnectionStays) {
  FakeRelay relay([](int fd) {
    accept_hello(fd);
    // Half a keepalive, then the rest once the client has timed out.
    const std::vector<uint8_t> k = keepalive_bytes(0x4242);
    write_all(fd, std::span<const uint8_t>(k).first(7));
    wait_for_go(fd);
    write_all(fd, std::span<const uint8_t>(k).subspan(7));
    wait_for_close(fd);
  });
  RelayClient client;
  ASSERT_TRUE(client.connect(options_for(relay.address(), 0x1000)).ok());
  Incoming in;
  const int64_t t0 = steady_ms();
  ClientStatus st = client.read(150, in);
  const int64_t waited = steady_ms() - t0;
  EXPECT_EQ(st.error, ClientError::kTimeout) << st.message;
  EXPECT_GE(waited, 140);
  EXPECT_LT(waited, 3000);
  EXPECT_TRUE(client.connected());
  EXPECT_EQ(client.read(0, in).error, ClientError::kTimeout);
  ASSERT_TRUE(client.send_ack(0x1000).ok());  // the go-ahead
  st = client.read(5000, in);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(in.type, Type::kKeepalive);
  EXPECT_EQ(in.keepalive.position, 0x4242u);
}

TEST(RelayClientTest, HandshakeTimesOutWithoutWelcome) {
  FakeRelay relay([](int fd) {
    proto::Hello hello;
    expect_hello(fd, hello);
    wait_for_close(fd);
  });
  RelayClient client;
  ClientOptions o = options_for(relay.address());
  o.connect_timeout_ms = 200;
  const int64_t t0 = steady_ms();
  const ClientStatus st = client.connect(o);
  EXPECT_EQ(st.error, ClientError::kTimeout);
  EXPECT_NE(st.message.find("no WELCOME within 200 ms"), std::string::npos) << st.message;
  EXPECT_LT(steady_ms() - t0, 3000);
  EXPECT_FALSE(client.connected());
}

TEST(RelayClientTest, RefusedConnectionThenSecondHost) {
  DeadPort dead;
  ASSERT_FALSE(dead.address().empty());
  FakeRelay relay([](int fd) {
    accept_hello(fd);
    wait_for_close(fd);
  });
  RelayClient client;
  const ClientStatus st = client.connect(options_for(dead.address() + ", " + relay.address()));
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(client.peer(), relay.address());
}

TEST(RelayClientTest, EveryHostFailing) {
  DeadPort dead1, dead2;
  RelayClient client;
  const ClientStatus st = client.connect(options_for(dead1.address() + "," + dead2.address()));
  EXPECT_EQ(st.error, ClientError::kConnect);
  // Both hosts' failures are reported.
  EXPECT_NE(st.message.find(dead1.address() + ": connect to 127.0.0.1: Connection refused"),
            std::string::npos)
      << st.message;
  EXPECT_NE(st.message.find(dead2.address()), std::string::npos) << st.message;
  EXPECT_FALSE(client.connected());
}

TEST(RelayClientTest, RefusalOnFirstHostThenSecondHost) {
  FakeRelay first([](int fd) {
    proto::Hello hello;
    if (!expect_hello(fd, hello)) return;
    write_all(fd, error_bytes(proto::kStartInFuture, "start 0/2000 is above 0/1800"));
  });
  FakeRelay second([](int fd) {
    accept_hello(fd);
    wait_for_close(fd);
  });
  RelayClient client;
  const ClientStatus st =
      client.connect(options_for(first.address() + "," + second.address(), 0x2000));
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(client.peer(), second.address());
}

TEST(RelayClientTest, ARefusalIsReportedOverALaterConnectFailure) {
  FakeRelay first([](int fd) {
    proto::Hello hello;
    if (!expect_hello(fd, hello)) return;
    write_all(fd, error_bytes(proto::kResyncRequired, "start 0/10 is below the oldest 0/2000"));
  });
  DeadPort dead;
  RelayClient client;
  const ClientStatus st = client.connect(options_for(first.address() + "," + dead.address(), 0x10));
  EXPECT_EQ(st.error, ClientError::kRefused);
  EXPECT_EQ(st.relay_code, "resync_required");
  EXPECT_EQ(st.message, "start 0/10 is below the oldest 0/2000");
}

TEST(RelayClientTest, PeerClosingIsClosed) {
  FakeRelay relay([](int fd) {
    accept_hello(fd);
    write_all(fd, keepalive_bytes(0x1001));
  });
  RelayClient client;
  ASSERT_TRUE(client.connect(options_for(relay.address(), 0x1000)).ok());
  Incoming in;
  ASSERT_TRUE(client.read(5000, in).ok());
  const ClientStatus st = client.read(5000, in);
  EXPECT_EQ(st.error, ClientError::kClosed);
  EXPECT_EQ(st.message, "the relay closed the connection");
  EXPECT_FALSE(client.connected());
}

TEST(RelayClientTest, PeerClosingInsideAMessageIsClosed) {
  FakeRelay relay([](int fd) {
    accept_hello(fd);
    const std::vector<uint8_t> f = frame_bytes(0x1000, payload(1000, 1));
    write_all(fd, std::span<const uint8_t>(f).first(500));
  });
  RelayClient client;
  ASSERT_TRUE(client.connect(options_for(relay.address(), 0x1000)).ok());
  Incoming in;
  const ClientStatus st = client.read(5000, in);
  EXPECT_EQ(st.error, ClientError::kClosed);
  EXPECT_NE(st.message.find("inside a message"), std::string::npos) << st.message;
}

TEST(RelayClientTest, PeerClosingDuringHandshakeIsClosed) {
  FakeRelay relay([](int fd) {
    proto::Hello hello;
    expect_hello(fd, hello);
  });
  RelayClient client;
  const ClientStatus st = client.connect(options_for(relay.address()));
  EXPECT_EQ(st.error, ClientError::kClosed) << st.message;
}

// Runs one connection that sends `after_welcome` then closes; returns what read() ends with.
ClientStatus read_after(std::vector<uint8_t> after_welcome, uint64_t start = 0x1000) {
  FakeRelay relay([&](int fd) {
    accept_hello(fd);
    write_all(fd, after_welcome);  // then close
  });
  RelayClient client;
  ClientStatus st = client.connect(options_for(relay.address(), start));
  if (!st.ok()) return st;
  Incoming in;
  do {
    st = client.read(5000, in);
  } while (st.ok());
  EXPECT_FALSE(client.connected());
  return st;
}

// Concatenates messages.
std::vector<uint8_t> concat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

TEST(RelayClientTest, ProtocolViolations) {
  struct Case {
    const char* what;
    std::vector<uint8_t> bytes;
    const char* message;  // part of the expected message
  };
  std::vector<uint8_t> too_long = {'F', 0, 0, 0, 0};
  too_long[1] = too_long[2] = too_long[3] = too_long[4] = 0xFF;
  std::vector<uint8_t> short_keepalive = keepalive_bytes(0x2000);
  short_keepalive.pop_back();
  short_keepalive[1] -= 1;
  const Case cases[] = {
      {"unknown type", {'Z', 0, 0, 0, 0}, "unexpected message type 'Z'"},
      {"second WELCOME", welcome_bytes(0x1000), "unexpected message type 'W'"},
      {"HELLO from the relay", {'H', 1, 0, 0, 0, 0}, "unexpected message type 'H'"},
      {"body too long", too_long, "declares a body of 4294967295 bytes"},
      {"truncated keepalive", short_keepalive, "KEEPALIVE message is truncated"},
      {"frame without key", {'F', 3, 0, 0, 0, 1, 2, 3}, "FRAME message is truncated"},
      {"empty frame", frame_bytes(0x1000, {}), "holds no frame"},
      {"decreasing keys",
       concat({frame_bytes(0x2000, payload(5, 1)), frame_bytes(0x1FFF, payload(5, 2))}),
       "frame key 0/1FFF is below the previous frame's 0/2000"},
      {"frame below a keepalive",
       concat({keepalive_bytes(0x3000), frame_bytes(0x2FFF, payload(5, 1))}),
       "frame key 0/2FFF is below 0/3000"},
  };
  for (const Case& c : cases) {
    const ClientStatus st = read_after(c.bytes);
    EXPECT_EQ(st.error, ClientError::kProtocol) << c.what << ": " << st.message;
    EXPECT_NE(st.message.find(c.message), std::string::npos) << c.what << ": " << st.message;
  }
  // A frame at a keepalive's position is fine, and so is one at the previous frame's key.
  const ClientStatus st = read_after(
      concat({keepalive_bytes(0x3000), frame_bytes(0x3000, {1}), frame_bytes(0x3000, {2})}));
  EXPECT_EQ(st.error, ClientError::kClosed) << st.message;
}

TEST(RelayClientTest, BadWelcome) {
  // Another version.
  {
    FakeRelay relay([](int fd) {
      proto::Hello hello;
      if (!expect_hello(fd, hello)) return;
      std::vector<uint8_t> w;
      proto::encode(proto::Welcome{2, hello.start, 0, "r"}, w);
      write_all(fd, w);
      wait_for_close(fd);
    });
    RelayClient client;
    const ClientStatus st = client.connect(options_for(relay.address(), 0x1000));
    EXPECT_EQ(st.error, ClientError::kProtocol);
    EXPECT_NE(st.message.find("version 2"), std::string::npos) << st.message;
  }
  // Another start than the one asked for.
  {
    FakeRelay relay([](int fd) {
      proto::Hello hello;
      if (!expect_hello(fd, hello)) return;
      write_all(fd, welcome_bytes(hello.start + 1));
      wait_for_close(fd);
    });
    RelayClient client;
    const ClientStatus st = client.connect(options_for(relay.address(), 0x1000));
    EXPECT_EQ(st.error, ClientError::kProtocol);
    EXPECT_NE(st.message.find("starts at 0/1001, not at the requested 0/1000"), std::string::npos)
        << st.message;
  }
  // A keepalive before WELCOME.
  {
    FakeRelay relay([](int fd) {
      proto::Hello hello;
      if (!expect_hello(fd, hello)) return;
      write_all(fd, keepalive_bytes(0x1000));
      wait_for_close(fd);
    });
    RelayClient client;
    const ClientStatus st = client.connect(options_for(relay.address(), 0x1000));
    EXPECT_EQ(st.error, ClientError::kProtocol);
    EXPECT_NE(st.message.find("expected WELCOME or ERROR"), std::string::npos) << st.message;
  }
}

TEST(RelayClientTest, BadOptions) {
  RelayClient client;
  const std::vector<std::string> bad_hosts = {"",          "localhost",  "localhost:", ":5499",
                                              "host:0",    "host:65536", "host:54a9",  "::1:5499",
                                              "[::1]5499", "[::1]",      "a:1,,b:2",   "a:1,"};
  for (const std::string& hosts : bad_hosts) {
    const ClientStatus st = client.connect(options_for(hosts));
    EXPECT_EQ(st.error, ClientError::kBadOptions) << "\"" << hosts << "\": " << st.message;
  }
  ClientOptions o = options_for("127.0.0.1:1");
  o.name = "bad name";
  EXPECT_EQ(client.connect(o).error, ClientError::kBadOptions);
  o.name = "";
  EXPECT_EQ(client.connect(o).error, ClientError::kBadOptions);
  o = options_for("127.0.0.1:1");
  o.tenants = {"42", ""};
  EXPECT_EQ(client.connect(o).error, ClientError::kBadOptions);
  o = options_for("127.0.0.1:1");
  o.connect_timeout_ms = 0;
  EXPECT_EQ(client.connect(o).error, ClientError::kBadOptions);
  o = options_for("127.0.0.1:1");
  o.tenants.assign(20000, std::string(60, 'k'));  // HELLO above 1 MiB
  const ClientStatus st = client.connect(o);
  EXPECT_EQ(st.error, ClientError::kBadOptions);
  EXPECT_NE(st.message.find("1 MiB"), std::string::npos) << st.message;
  EXPECT_FALSE(client.connected());
}

TEST(RelayClientTest, ReadWithoutConnection) {
  RelayClient client;
  Incoming in;
  EXPECT_EQ(client.read(0, in).error, ClientError::kClosed);
  EXPECT_EQ(client.fd(), -1);
  EXPECT_STREQ(client_error_name(ClientError::kRefused), "refused");
  EXPECT_STREQ(client_error_name(ClientError::kTimeout), "timeout");
}

TEST(RelayClientTest, ReconnectAfterClose) {
  FakeRelay first([](int fd) {
    accept_hello(fd);
    write_all(fd, keepalive_bytes(0x1500));
    wait_for_close(fd);
  });
  FakeRelay second([](int fd) {
    proto::Hello hello;
    if (!expect_hello(fd, hello)) return;
    EXPECT_EQ(hello.start, 0x1500u);
    write_all(fd, welcome_bytes(hello.start));
    write_all(fd, frame_bytes(0x1500, payload(3, 3)));
    wait_for_close(fd);
  });
  RelayClient client;
  ASSERT_TRUE(client.connect(options_for(first.address(), 0x1000)).ok());
  Incoming in;
  ASSERT_TRUE(client.read(5000, in).ok());
  ASSERT_EQ(in.keepalive.position, 0x1500u);
  // connect() closes the first connection; the ordering checks start over from the new start.
  ASSERT_TRUE(client.connect(options_for(second.address(), 0x1500)).ok());
  ASSERT_TRUE(client.read(5000, in).ok());
  EXPECT_EQ(in.key, 0x1500u);
  EXPECT_EQ(to_vector(in.frame), payload(3, 3));
}

}  // namespace
}  // namespace edgeshard::relay

// Client side of the relay's subscriber protocol (walsender_fanout/relay/PROTOCOL.md): one TCP
// connection to a relay, blocking calls with timeouts, no threads. Used by edgeshard-relay to
// subscribe to its parent relay and by edgeshard-dump --relay (edge apply daemons too).
//
//   relay::RelayClient client;
//   relay::ClientOptions opts{.hosts = "10.0.0.5:5499,10.0.0.6:5499", .name = "edge_17",
//                             .token = token, .start = resume_at};
//   if (auto st = client.connect(opts); !st.ok()) fail(st);          // kRefused: st.relay_code
//   relay::Incoming in;
//   for (;;) {
//     auto st = client.read(1000, in);
//     if (st.error == relay::ClientError::kTimeout) continue;         // nothing whole arrived yet
//     if (!st.ok()) fail(st);                                          // the connection is closed
//     if (in.type == relay::proto::Type::kFrame) apply(in.key, in.frame);  // frame::Reader checks
//     else if (in.keepalive.reply_requested) client.send_ack(applied_below);
//   }
//
// Every call returns a status value and throws nothing but std::bad_alloc. After any error except
// read()'s kTimeout the connection is closed (fd() is -1); connect() again to resume from an ack.
#pragma once

#include "common/no_postgres.hpp"

#include "walsender_fanout/relay/protocol.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace edgeshard::relay {

// What to connect to and what to ask for in HELLO.
struct ClientOptions {
  std::string hosts;  // "host:port[,host:port...]", tried in order; IPv6 literals as "[::1]:5499"
  std::string name;   // subscriber name (proto::valid_name)
  std::string token;
  uint64_t start = 0;                // 0: resume from the position the relay registered for name
  std::vector<std::string> tenants;  // canonical tenant keys; empty: every tenant
  // Bound of each TCP connect attempt (per address) and, separately, of the HELLO/WELCOME
  // exchange that follows it; also bounds send_ack().
  int connect_timeout_ms = 5000;
};

// Outcome classes of the client's calls.
enum class ClientError {
  kOk = 0,
  kTimeout,     // nothing whole arrived (or could be sent) in time; read(): the connection stays
  kConnect,     // no host could be reached (resolution or TCP connect failed)
  kClosed,      // the relay closed the connection (or it broke) without an ERROR
  kProtocol,    // the relay sent something PROTOCOL.md does not allow
  kRefused,     // the relay sent ERROR: relay_code and message say why
  kBadOptions,  // ClientOptions are invalid (host list, name, tenant keys); nothing was sent
};

// Result of a client call.
struct ClientStatus {
  ClientError error = ClientError::kOk;
  std::string message;     // lower-case, no period; for kRefused the relay's own message
  std::string relay_code;  // the ERROR's code (proto::kAuthFailed, ...) when kRefused

  // Whether the call succeeded.
  bool ok() const noexcept { return error == ClientError::kOk; }
};

// Name of a ClientError ("timeout", "connect", ...), for logs.
const char* client_error_name(ClientError error) noexcept;

// A message read from the relay: a FRAME (key, frame) or a KEEPALIVE (keepalive). frame views the
// client's receive buffer: valid until the next read(), connect() or close().
struct Incoming {
  proto::Type type = proto::Type::kKeepalive;
  uint64_t key = 0;                // FRAME: its transaction's commit LSN
  std::span<const uint8_t> frame;  // FRAME: one whole frame (common/FORMAT.md), unchecked
  proto::Keepalive keepalive;      // KEEPALIVE
};

// Owns a file descriptor (closed on destruction).
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  // Takes ownership of fd (-1: none).
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  // Takes other's descriptor.
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  // Closes the current descriptor and takes other's.
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  // Closes the descriptor.
  ~UniqueFd() { reset(); }

  // The descriptor, or -1.
  int get() const noexcept { return fd_; }
  // Gives up ownership and returns the descriptor.
  int release() noexcept;
  // Closes the descriptor (if any) and takes fd.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// One subscriber connection to a relay.
class RelayClient {
 public:
  // Bytes asked of recv() at least (and the initial receive buffer).
  static constexpr size_t kReadChunk = size_t{256} << 10;

  RelayClient() = default;
  RelayClient(RelayClient&&) noexcept = default;
  RelayClient& operator=(RelayClient&&) noexcept = default;
  RelayClient(const RelayClient&) = delete;
  RelayClient& operator=(const RelayClient&) = delete;
  ~RelayClient() = default;

  // Closes any current connection, then tries each host of options.hosts in order (each address
  // getaddrinfo gives for it): TCP connect, HELLO, and WELCOME. Returns kOk at the first WELCOME.
  // Otherwise every host was tried; the result is the last refusal (kRefused) if any relay sent
  // ERROR, else the last host's failure, with every host's failure in message. Name resolution
  // is not bounded by connect_timeout_ms.
  ClientStatus connect(const ClientOptions& options);

  // The WELCOME of the current connection (its start is the effective start position).
  const proto::Welcome& welcome() const noexcept { return welcome_; }

  // Waits up to timeout_ms (-1: no limit, 0: only what is already there) for the next FRAME or
  // KEEPALIVE. kTimeout when no whole message arrived in time or a signal interrupted the wait
  // (a partial message stays buffered, the connection stays open). An ERROR from the relay is
  // kRefused. Also refuses (kProtocol) frame keys that decrease or fall below a KEEPALIVE's
  // position or the effective start, as PROTOCOL.md rules them out.
  ClientStatus read(int timeout_ms, Incoming& out);

  // Sends ACK of position (the subscriber applied everything below it) stamped with the current
  // time; waits at most connect_timeout_ms for room in the socket buffer (kTimeout then closes
  // the connection: an ACK cut in half cannot be completed later).
  ClientStatus send_ack(uint64_t position);

  // The connection's socket (for poll() alongside other descriptors), or -1 when not connected.
  // Bytes may already be buffered: call read(0, ...) until kTimeout before waiting on it.
  int fd() const noexcept { return fd_.get(); }

  // Whether a connection is open.
  bool connected() const noexcept { return fd_.get() >= 0; }

  // Closes the connection (if any) and frees the receive buffer.
  void close() noexcept;

  // "host:port" of the current connection as written in ClientOptions::hosts ("" when none).
  const std::string& peer() const noexcept { return peer_; }

 private:
  // Connects to one "host:port" entry and runs HELLO/WELCOME.
  ClientStatus connect_host(const std::string& entry, const ClientOptions& options,
                            const std::vector<uint8_t>& hello);
  // Returns the next whole message in the buffer, reading as needed until deadline_ms (or, when
  // stop_on_signal, until a signal interrupts the wait: kTimeout).
  ClientStatus next_message(int64_t deadline_ms, bool stop_on_signal, proto::MessageView& out);
  // Makes room to receive: for the whole message of `need` bytes at the buffer's start plus a
  // read chunk, compacting or growing the buffer.
  void reserve_receive(size_t need);
  // One recv() into the buffer, waiting with poll() until deadline_ms when nothing is there
  // (kTimeout early on a signal when stop_on_signal).
  ClientStatus receive(int64_t deadline_ms, bool stop_on_signal);
  // Sends all of bytes within timeout_ms; closes the connection on failure (a message cut in
  // half cannot be resumed).
  ClientStatus send_all(std::span<const uint8_t> bytes, int timeout_ms);
  // Closes the connection and returns a status of class error with message.
  ClientStatus fail(ClientError error, std::string message);

  UniqueFd fd_;
  std::string peer_;
  proto::Welcome welcome_;
  int io_timeout_ms_ = 5000;
  // Receive buffer: bytes [begin_, end_) are received and not consumed yet; pending_ bytes at
  // begin_ belong to the message last returned and are consumed at the next read().
  std::unique_ptr<uint8_t[]> buf_;
  size_t capacity_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
  size_t pending_ = 0;
  // Ordering checks of read(): frame keys never decrease and never fall below min_key_.
  uint64_t last_key_ = 0;
  uint64_t min_key_ = 0;
};

}  // namespace edgeshard::relay

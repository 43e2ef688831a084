// Codec of the relay's subscriber protocol (walsender_fanout/relay/PROTOCOL.md): message framing,
// the encoders and decoders of each message, subscriber-name rules and the constant-time token
// comparison. Pure functions on byte buffers; no socket here (relay_client and fanout_server own
// the sockets).
#pragma once

#include "common/no_postgres.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::relay::proto {

// "ESRP" as bytes 45 53 52 50, read as a little-endian u32.
inline constexpr uint32_t kMagic = 0x50525345;
// The only protocol version this code speaks.
inline constexpr uint16_t kVersion = 1;
// type (u8) + body length (u32).
inline constexpr size_t kMessageHeaderBytes = 5;
// Largest body a subscriber may send.
inline constexpr uint32_t kMaxSubscriberBody = 1u << 20;
// Largest body a relay may send: a key and a log record's largest frame (128 MiB).
inline constexpr uint32_t kMaxRelayBody = 8 + (128u << 20);
// Bytes before the frame in a FRAME message: header and key.
inline constexpr size_t kFramePrefixBytes = kMessageHeaderBytes + 8;
// Longest subscriber name.
inline constexpr size_t kMaxNameBytes = 63;

// Message types (PROTOCOL.md).
enum class Type : uint8_t {
  kHello = 'H',
  kAck = 'A',
  kWelcome = 'W',
  kFrame = 'F',
  kKeepalive = 'K',
  kError = 'E',
};

// HELLO: who the subscriber is, where it starts, which tenants it wants.
struct Hello {
  uint16_t min_version = kVersion;
  uint16_t max_version = kVersion;
  std::string name;
  std::string token;
  uint64_t start = 0;  // 0: resume from the registered ack (or the relay's position if new)
  uint32_t flags = 0;
  std::vector<std::string> tenants;  // empty: every tenant
};

// ACK: the subscriber applied everything below position.
struct Ack {
  uint64_t position = 0;
  int64_t client_time_us = 0;
};

// WELCOME: the relay accepted the HELLO.
struct Welcome {
  uint16_t version = kVersion;
  uint64_t start = 0;
  uint64_t position = 0;
  std::string relay_name;
};

// KEEPALIVE: every frame below position that matches the filter was sent.
struct Keepalive {
  uint64_t position = 0;
  int64_t relay_time_us = 0;
  int64_t commit_time_us = 0;
  bool reply_requested = false;
};

// ERROR: why the relay closes the connection (codes in PROTOCOL.md, "Errors").
struct Error {
  std::string code;
  std::string message;
};

// A whole message found in a receive buffer; body points into that buffer.
struct MessageView {
  Type type = Type::kHello;
  std::span<const uint8_t> body;
};

// Outcome of split_message().
enum class Split { kMessage, kNeedMore, kTooLong };

// Finds the message at the start of buf. kMessage: out and consumed (header + body) are set;
// kNeedMore: buf ends inside it; kTooLong: its declared body exceeds max_body (the peer is broken).
Split split_message(std::span<const uint8_t> buf, uint32_t max_body, MessageView& out,
                    size_t& consumed) noexcept;

// Appends the whole message (header and body) to out.
void encode(const Hello& m, std::vector<uint8_t>& out);
// Appends the whole ACK message to out.
void encode(const Ack& m, std::vector<uint8_t>& out);
// Appends the whole WELCOME message to out.
void encode(const Welcome& m, std::vector<uint8_t>& out);
// Appends the whole KEEPALIVE message to out.
void encode(const Keepalive& m, std::vector<uint8_t>& out);
// Appends the whole ERROR message to out (code and message cut to 65535 bytes).
void encode(const Error& m, std::vector<uint8_t>& out);
// Writes the kFramePrefixBytes that precede a frame of frame_bytes bytes sent at key.
void encode_frame_prefix(uint64_t key, size_t frame_bytes, uint8_t out[kFramePrefixBytes]) noexcept;

// Decoders of a message body; false with why set (lower-case, no period) when it is malformed.
bool decode(std::span<const uint8_t> body, Hello& out, std::string& why);
// Decodes an ACK body.
bool decode(std::span<const uint8_t> body, Ack& out, std::string& why);
// Decodes a WELCOME body.
bool decode(std::span<const uint8_t> body, Welcome& out, std::string& why);
// Decodes a KEEPALIVE body.
bool decode(std::span<const uint8_t> body, Keepalive& out, std::string& why);
// Decodes an ERROR body.
bool decode(std::span<const uint8_t> body, Error& out, std::string& why);
// Splits a FRAME body into its key and frame bytes; false when shorter than the key.
bool decode_frame(std::span<const uint8_t> body, uint64_t& key, std::span<const uint8_t>& frame,
                  std::string& why);

// Whether name is a valid subscriber name (1-63 bytes of A-Z a-z 0-9 _ . -).
bool valid_name(std::string_view name) noexcept;

// Compares a presented token with the configured one in time independent of where they differ
// (and of the presented token's content when lengths differ).
bool tokens_equal(std::string_view presented, std::string_view expected) noexcept;

// Error codes (PROTOCOL.md).
inline constexpr std::string_view kBadRequest = "bad_request";
inline constexpr std::string_view kUnsupportedVersion = "unsupported_version";
inline constexpr std::string_view kAuthFailed = "auth_failed";
inline constexpr std::string_view kResyncRequired = "resync_required";
inline constexpr std::string_view kStartInFuture = "start_in_future";
inline constexpr std::string_view kNameInUse = "name_in_use";
inline constexpr std::string_view kTooManySubscribers = "too_many_subscribers";
inline constexpr std::string_view kShuttingDown = "shutting_down";
inline constexpr std::string_view kLogCorrupt = "log_corrupt";
inline constexpr std::string_view kSendTimeout = "send_timeout";
inline constexpr std::string_view kReceiveTimeout = "receive_timeout";

}  // namespace edgeshard::relay::proto

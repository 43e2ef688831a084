// Codec of the subscriber protocol: explicit little-endian fields, bounds-checked decoding.
#include "walsender_fanout/relay/protocol.hpp"

#include "common/frame_codec.hpp"

#include <algorithm>

namespace edgeshard::relay::proto {

namespace {

using frame::load_u16;
using frame::load_u32;
using frame::load_u64;

// Builds one message: reserves its header, lets the caller append the body, then fills the length.
class MessageBuilder {
 public:
  // Starts a message of the given type at the end of out.
  MessageBuilder(std::vector<uint8_t>& out, Type type) : out_(out), start_(out.size()) {
    out_.push_back(static_cast<uint8_t>(type));
    out_.resize(out_.size() + 4);
  }
  // Writes the body length into the header.
  ~MessageBuilder() {
    frame::store_u32(out_.data() + start_ + 1,
                     static_cast<uint32_t>(out_.size() - start_ - kMessageHeaderBytes));
  }
  MessageBuilder(const MessageBuilder&) = delete;
  MessageBuilder& operator=(const MessageBuilder&) = delete;

  // Appends a u8.
  void u8(uint8_t v) { out_.push_back(v); }
  // Appends a little-endian u16.
  void u16(uint16_t v) { append(v, 2); }
  // Appends a little-endian u32.
  void u32(uint32_t v) { append(v, 4); }
  // Appends a little-endian u64.
  void u64(uint64_t v) { append(v, 8); }
  // Appends a str (u16 length, bytes), cut to 65535 bytes.
  void str(std::string_view s) {
    const size_t n = std::min<size_t>(s.size(), 0xFFFF);
    u16(static_cast<uint16_t>(n));
    out_.insert(out_.end(), s.begin(), s.begin() + static_cast<std::ptrdiff_t>(n));
  }

 private:
  // Appends the low `bytes` bytes of v, least significant first.
  void append(uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }

  std::vector<uint8_t>& out_;
  size_t start_;
};

// Bounds-checked reader of a message body.
class BodyReader {
 public:
  // Reads body from its start.
  explicit BodyReader(std::span<const uint8_t> body) : body_(body) {}
  // Reads a u8.
  bool u8(uint8_t& v) {
    if (!need(1)) return false;
    v = body_[pos_++];
    return true;
  }
  // Reads a u16.
  bool u16(uint16_t& v) {
    if (!need(2)) return false;
    v = load_u16(body_.data() + pos_);
    pos_ += 2;
    return true;
  }
  // Reads a u32.
  bool u32(uint32_t& v) {
    if (!need(4)) return false;
    v = load_u32(body_.data() + pos_);
    pos_ += 4;
    return true;
  }
  // Reads a u64.
  bool u64(uint64_t& v) {
    if (!need(8)) return false;
    v = load_u64(body_.data() + pos_);
    pos_ += 8;
    return true;
  }
  // Reads an i64.
  bool i64(int64_t& v) {
    uint64_t u = 0;
    if (!u64(u)) return false;
    v = static_cast<int64_t>(u);
    return true;
  }
  // Reads a str.
  bool str(std::string& v) {
    uint16_t n = 0;
    if (!u16(n) || !need(n)) return false;
    v.assign(reinterpret_cast<const char*>(body_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  // Bytes not read yet.
  size_t left() const { return body_.size() - pos_; }

 private:
  // Whether n more bytes are there.
  bool need(size_t n) const { return body_.size() - pos_ >= n; }

  std::span<const uint8_t> body_;
  size_t pos_ = 0;
};

// Ends a decoder: false with why when the body was short or has bytes left over.
bool finish(bool read_ok, const BodyReader& r, const char* what, std::string& why) {
  if (!read_ok) {
    why = std::string(what) + " message is truncated";
    return false;
  }
  if (r.left() != 0) {
    why = std::string(what) + " message has " + std::to_string(r.left()) + " unexpected trailing bytes";
    return false;
  }
  return true;
}

}  // namespace

Split split_message(std::span<const uint8_t> buf, uint32_t max_body, MessageView& out,
                    size_t& consumed) noexcept {
  if (buf.size() < kMessageHeaderBytes) return Split::kNeedMore;
  const uint32_t length = load_u32(buf.data() + 1);
  if (length > max_body) return Split::kTooLong;
  if (buf.size() - kMessageHeaderBytes < length) return Split::kNeedMore;
  out.type = static_cast<Type>(buf[0]);
  out.body = buf.subspan(kMessageHeaderBytes, length);
  consumed = kMessageHeaderBytes + length;
  return Split::kMessage;
}

void encode(const Hello& m, std::vector<uint8_t>& out) {
  MessageBuilder b(out, Type::kHello);
  b.u32(kMagic);
  b.u16(m.min_version);
  b.u16(m.max_version);
  b.str(m.name);
  b.str(m.token);
  b.u64(m.start);
  b.u32(m.flags);
  b.u32(static_cast<uint32_t>(m.tenants.size()));
  for (const std::string& t : m.tenants) b.str(t);
}

void encode(const Ack& m, std::vector<uint8_t>& out) {
  MessageBuilder b(out, Type::kAck);
  b.u64(m.position);
  b.u64(static_cast<uint64_t>(m.client_time_us));
}

void encode(const Welcome& m, std::vector<uint8_t>& out) {
  MessageBuilder b(out, Type::kWelcome);
  b.u16(m.version);
  b.u64(m.start);
  b.u64(m.position);
  b.str(m.relay_name);
}

void encode(const Keepalive& m, std::vector<uint8_t>& out) {
  MessageBuilder b(out, Type::kKeepalive);
  b.u64(m.position);
  b.u64(static_cast<uint64_t>(m.relay_time_us));
  b.u64(static_cast<uint64_t>(m.commit_time_us));
  b.u8(m.reply_requested ? 1 : 0);
}

void encode(const Error& m, std::vector<uint8_t>& out) {
  MessageBuilder b(out, Type::kError);
  b.str(m.code);
  b.str(m.message);
}

void encode_frame_prefix(uint64_t key, size_t frame_bytes, uint8_t out[kFramePrefixBytes]) noexcept {
  out[0] = static_cast<uint8_t>(Type::kFrame);
  frame::store_u32(out + 1, static_cast<uint32_t>(8 + frame_bytes));
  frame::store_u64(out + kMessageHeaderBytes, key);
}

bool decode(std::span<const uint8_t> body, Hello& out, std::string& why) {
  BodyReader r(body);
  uint32_t magic = 0;
  if (!r.u32(magic)) return finish(false, r, "HELLO", why);
  if (magic != kMagic) {
    why = "not an edgeshard relay HELLO (bad magic)";
    return false;
  }
  uint32_t n = 0;
  bool ok = r.u16(out.min_version) && r.u16(out.max_version) && r.str(out.name) &&
            r.str(out.token) && r.u64(out.start) && r.u32(out.flags) && r.u32(n);
  out.tenants.clear();
  // Each key takes at least its 2-byte length: a count beyond that is a lie, refuse before
  // reserving anything.
  if (ok && n > r.left() / 2) ok = false;
  for (uint32_t i = 0; ok && i < n; ++i) {
    std::string key;
    ok = r.str(key);
    if (ok) out.tenants.push_back(std::move(key));
  }
  return finish(ok, r, "HELLO", why);
}

bool decode(std::span<const uint8_t> body, Ack& out, std::string& why) {
  BodyReader r(body);
  return finish(r.u64(out.position) && r.i64(out.client_time_us), r, "ACK", why);
}

bool decode(std::span<const uint8_t> body, Welcome& out, std::string& why) {
  BodyReader r(body);
  return finish(r.u16(out.version) && r.u64(out.start) && r.u64(out.position) &&
                    r.str(out.relay_name),
                r, "WELCOME", why);
}

bool decode(std::span<const uint8_t> body, Keepalive& out, std::string& why) {
  BodyReader r(body);
  uint8_t reply = 0;
  const bool ok = r.u64(out.position) && r.i64(out.relay_time_us) && r.i64(out.commit_time_us) &&
                  r.u8(reply);
  out.reply_requested = reply != 0;
  return finish(ok, r, "KEEPALIVE", why);
}

bool decode(std::span<const uint8_t> body, Error& out, std::string& why) {
  BodyReader r(body);
  return finish(r.str(out.code) && r.str(out.message), r, "ERROR", why);
}

bool decode_frame(std::span<const uint8_t> body, uint64_t& key, std::span<const uint8_t>& frame,
                  std::string& why) {
  if (body.size() < 8) {
    why = "FRAME message is truncated";
    return false;
  }
  key = load_u64(body.data());
  frame = body.subspan(8);
  return true;
}

bool valid_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
  });
}

bool tokens_equal(std::string_view presented, std::string_view expected) noexcept {
  // Walk the expected token's length whatever was presented, folding every difference (and a
  // length mismatch) into one accumulator: no early exit tells where the first wrong byte is.
  unsigned diff = presented.size() == expected.size() ? 0u : 1u;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char p = i < presented.size() ? static_cast<unsigned char>(presented[i]) : 0;
    diff |= p ^ static_cast<unsigned char>(expected[i]);
  }
  // An empty configured token never matches: "no token" is not "any token".
  return diff == 0 && !expected.empty();
}

}  // namespace edgeshard::relay::proto

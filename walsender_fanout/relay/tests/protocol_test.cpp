// Unit tests of the subscriber protocol's codec (walsender_fanout/relay/PROTOCOL.md): round trips
// of every message, message splitting on every truncation, refusal of truncated, trailing and
// lying bodies, subscriber names and the token comparison.
#include "walsender_fanout/relay/protocol.hpp"

#include "common/frame_codec.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace edgeshard::relay::proto {
namespace {

// The body of a whole encoded message (after its 5-byte header).
std::span<const uint8_t> body_of(const std::vector<uint8_t>& message) {
  return std::span<const uint8_t>(message).subspan(kMessageHeaderBytes);
}

// A HELLO with every field set.
Hello sample_hello() {
  Hello h;
  h.min_version = 1;
  h.max_version = 3;
  h.name = "edge-17.eu_west";
  h.token = std::string("s3cr\0t", 6);
  h.start = 0x0000000116B3748ull;
  h.flags = 0;
  h.tenants = {"42", "acme", std::string("caf\xc3\xa9", 5), ""};
  return h;
}

// One encoded message of each type, for the generic tests.
std::vector<std::vector<uint8_t>> sample_messages() {
  std::vector<std::vector<uint8_t>> out(5);
  encode(sample_hello(), out[0]);
  encode(Ack{0x16B3749, 1714564800000000}, out[1]);
  encode(Welcome{1, 0x16B3748, 0x2000000, "regional-1"}, out[2]);
  encode(Keepalive{0x16B3900, 1714564800123456, 1714564800000000, true}, out[3]);
  encode(Error{std::string(kResyncRequired), "start 0/10 is below the oldest held 0/2000"}, out[4]);
  return out;
}

TEST(ProtocolTest, HelloRoundTrip) {
  std::vector<uint8_t> msg;
  encode(sample_hello(), msg);
  ASSERT_GE(msg.size(), kMessageHeaderBytes);
  EXPECT_EQ(msg[0], 'H');
  EXPECT_EQ(frame::load_u32(msg.data() + 1), msg.size() - kMessageHeaderBytes);
  // The magic is "ESRP" as bytes.
  EXPECT_EQ(msg[5], 'E');
  EXPECT_EQ(msg[6], 'S');
  EXPECT_EQ(msg[7], 'R');
  EXPECT_EQ(msg[8], 'P');
  Hello h;
  std::string why;
  ASSERT_TRUE(decode(body_of(msg), h, why)) << why;
  const Hello want = sample_hello();
  EXPECT_EQ(h.min_version, want.min_version);
  EXPECT_EQ(h.max_version, want.max_version);
  EXPECT_EQ(h.name, want.name);
  EXPECT_EQ(h.token, want.token);
  EXPECT_EQ(h.start, want.start);
  EXPECT_EQ(h.flags, want.flags);
  EXPECT_EQ(h.tenants, want.tenants);
}

TEST(ProtocolTest, HelloWithoutTenantsRoundTrip) {
  Hello in;
  in.name = "a";
  in.flags = 0x80000001u;  // decoding keeps unknown flags: refusing them is the relay's job
  std::vector<uint8_t> msg;
  encode(in, msg);
  Hello out;
  out.tenants = {"left over"};
  std::string why;
  ASSERT_TRUE(decode(body_of(msg), out, why)) << why;
  EXPECT_EQ(out.name, "a");
  EXPECT_EQ(out.token, "");
  EXPECT_EQ(out.start, 0u);
  EXPECT_EQ(out.flags, 0x80000001u);
  EXPECT_TRUE(out.tenants.empty());
  EXPECT_EQ(out.min_version, kVersion);
  EXPECT_EQ(out.max_version, kVersion);
}

TEST(ProtocolTest, AckRoundTrip) {
  std::vector<uint8_t> msg;
  encode(Ack{0xFFFFFFFFFFFFFFFFull, -5}, msg);
  ASSERT_EQ(msg.size(), kMessageHeaderBytes + 16);
  EXPECT_EQ(msg[0], 'A');
  Ack a;
  std::string why;
  ASSERT_TRUE(decode(body_of(msg), a, why)) << why;
  EXPECT_EQ(a.position, 0xFFFFFFFFFFFFFFFFull);
  EXPECT_EQ(a.client_time_us, -5);
}

TEST(ProtocolTest, WelcomeRoundTrip) {
  std::vector<uint8_t> msg;
  encode(Welcome{7, 0x100000000ull, 0x200000001ull, "primary-relay"}, msg);
  EXPECT_EQ(msg[0], 'W');
  Welcome w;
  std::string why;
  ASSERT_TRUE(decode(body_of(msg), w, why)) << why;
  EXPECT_EQ(w.version, 7);
  EXPECT_EQ(w.start, 0x100000000ull);
  EXPECT_EQ(w.position, 0x200000001ull);
  EXPECT_EQ(w.relay_name, "primary-relay");
}

TEST(ProtocolTest, KeepaliveRoundTrip) {
  for (const bool reply : {false, true}) {
    std::vector<uint8_t> msg;
    encode(Keepalive{0x16B3900, 1714564800123456, -1, reply}, msg);
    ASSERT_EQ(msg.size(), kMessageHeaderBytes + 25);
    EXPECT_EQ(msg[0], 'K');
    Keepalive k;
    k.reply_requested = !reply;
    std::string why;
    ASSERT_TRUE(decode(body_of(msg), k, why)) << why;
    EXPECT_EQ(k.position, 0x16B3900u);
    EXPECT_EQ(k.relay_time_us, 1714564800123456);
    EXPECT_EQ(k.commit_time_us, -1);
    EXPECT_EQ(k.reply_requested, reply);
  }
}

TEST(ProtocolTest, KeepaliveAnyNonZeroByteRequestsReply) {
  std::vector<uint8_t> msg;
  encode(Keepalive{1, 2, 3, false}, msg);
  msg.back() = 0x7f;
  Keepalive k;
  std::string why;
  ASSERT_TRUE(decode(body_of(msg), k, why)) << why;
  EXPECT_TRUE(k.reply_requested);
}

TEST(ProtocolTest, ErrorRoundTrip) {
  std::vector<uint8_t> msg;
  encode(Error{std::string(kAuthFailed), "no token configured for \"edge-1\""}, msg);
  EXPECT_EQ(msg[0], 'E');
  Error e;
  std::string why;
  ASSERT_TRUE(decode(body_of(msg), e, why)) << why;
  EXPECT_EQ(e.code, "auth_failed");
  EXPECT_EQ(e.message, "no token configured for \"edge-1\"");
}

TEST(ProtocolTest, ErrorStringsAreCutAt65535Bytes) {
  const std::string long_text(70000, 'x');
  std::vector<uint8_t> msg;
  encode(Error{long_text, long_text}, msg);
  Error e;
  std::string why;
  ASSERT_TRUE(decode(body_of(msg), e, why)) << why;
  EXPECT_EQ(e.code, std::string(65535, 'x'));
  EXPECT_EQ(e.message, std::string(65535, 'x'));
}

TEST(ProtocolTest, FramePrefixRoundTrip) {
  const std::vector<uint8_t> frame = {1, 2, 3, 4, 5, 6, 7};
  uint8_t prefix[kFramePrefixBytes];
  encode_frame_prefix(0x0123456789ABCDEFull, frame.size(), prefix);
  std::vector<uint8_t> msg(prefix, prefix + kFramePrefixBytes);
  msg.insert(msg.end(), frame.begin(), frame.end());
  EXPECT_EQ(msg[0], 'F');

  MessageView view;
  size_t consumed = 0;
  ASSERT_EQ(split_message(msg, kMaxRelayBody, view, consumed), Split::kMessage);
  EXPECT_EQ(consumed, msg.size());
  EXPECT_EQ(view.type, Type::kFrame);
  uint64_t key = 0;
  std::span<const uint8_t> got;
  std::string why;
  ASSERT_TRUE(decode_frame(view.body, key, got, why)) << why;
  EXPECT_EQ(key, 0x0123456789ABCDEFull);
  EXPECT_EQ(std::vector<uint8_t>(got.begin(), got.end()), frame);
}

TEST(ProtocolTest, DecodeFrameNeedsTheKey) {
  const std::vector<uint8_t> body(8, 0xAB);
  for (size_t n = 0; n < 8; ++n) {
    uint64_t key = 0;
    std::span<const uint8_t> frame;
    std::string why;
    EXPECT_FALSE(decode_frame(std::span<const uint8_t>(body).first(n), key, frame, why)) << n;
    EXPECT_NE(why.find("truncated"), std::string::npos) << why;
  }
  uint64_t key = 0;
  std::span<const uint8_t> frame;
  std::string why;
  ASSERT_TRUE(decode_frame(body, key, frame, why));  // an empty frame: the caller refuses it
  EXPECT_EQ(key, 0xABABABABABABABABull);
  EXPECT_TRUE(frame.empty());
}

TEST(ProtocolTest, SplitMessageOnEveryTruncation) {
  for (const std::vector<uint8_t>& msg : sample_messages()) {
    for (size_t n = 0; n < msg.size(); ++n) {
      MessageView view;
      size_t consumed = 12345;
      EXPECT_EQ(
          split_message(std::span<const uint8_t>(msg).first(n), kMaxSubscriberBody, view, consumed),
          Split::kNeedMore)
          << "type " << msg[0] << ", " << n << " of " << msg.size() << " bytes";
      EXPECT_EQ(consumed, 12345u);
    }
    MessageView view;
    size_t consumed = 0;
    ASSERT_EQ(split_message(msg, kMaxSubscriberBody, view, consumed), Split::kMessage);
    EXPECT_EQ(consumed, msg.size());
    EXPECT_EQ(static_cast<uint8_t>(view.type), msg[0]);
    EXPECT_EQ(view.body.data(), msg.data() + kMessageHeaderBytes);
    EXPECT_EQ(view.body.size(), msg.size() - kMessageHeaderBytes);
  }
}

TEST(ProtocolTest, SplitMessageStopsAtTheFirstMessage) {
  std::vector<uint8_t> stream;
  encode(Ack{1, 2}, stream);
  const size_t first = stream.size();
  encode(Keepalive{3, 4, 5, false}, stream);
  MessageView view;
  size_t consumed = 0;
  ASSERT_EQ(split_message(stream, kMaxRelayBody, view, consumed), Split::kMessage);
  EXPECT_EQ(consumed, first);
  EXPECT_EQ(view.type, Type::kAck);
  ASSERT_EQ(split_message(std::span<const uint8_t>(stream).subspan(consumed), kMaxRelayBody, view,
                          consumed),
            Split::kMessage);
  EXPECT_EQ(view.type, Type::kKeepalive);
  EXPECT_EQ(first + consumed, stream.size());
}

TEST(ProtocolTest, SplitMessageKeepsUnknownTypesAndEmptyBodies) {
  const std::vector<uint8_t> msg = {'Z', 0, 0, 0, 0};
  MessageView view;
  size_t consumed = 0;
  ASSERT_EQ(split_message(msg, kMaxSubscriberBody, view, consumed), Split::kMessage);
  EXPECT_EQ(static_cast<uint8_t>(view.type), 'Z');
  EXPECT_TRUE(view.body.empty());
  EXPECT_EQ(consumed, 5u);
}

TEST(ProtocolTest, SplitMessageRefusesTooLongBodies) {
  // The declared length decides, before the body is there.
  uint8_t header[kMessageHeaderBytes] = {'H'};
  MessageView view;
  size_t consumed = 0;
  frame::store_u32(header + 1, kMaxSubscriberBody + 1);
  EXPECT_EQ(split_message(header, kMaxSubscriberBody, view, consumed), Split::kTooLong);
  frame::store_u32(header + 1, kMaxSubscriberBody);
  EXPECT_EQ(split_message(header, kMaxSubscriberBody, view, consumed), Split::kNeedMore);
  frame::store_u32(header + 1, 0xFFFFFFFFu);
  EXPECT_EQ(split_message(header, kMaxRelayBody, view, consumed), Split::kTooLong);
  frame::store_u32(header + 1, kMaxRelayBody);
  EXPECT_EQ(split_message(header, kMaxRelayBody, view, consumed), Split::kNeedMore);
  frame::store_u32(header + 1, kMaxRelayBody + 1);
  EXPECT_EQ(split_message(header, kMaxRelayBody, view, consumed), Split::kTooLong);
  // Shorter than a header: nothing to judge yet.
  EXPECT_EQ(split_message(std::span<const uint8_t>(header).first(4), 0, view, consumed),
            Split::kNeedMore);
}

// Decodes a body as the message type in its first byte; false with why when refused.
bool decode_as(uint8_t type, std::span<const uint8_t> body, std::string& why) {
  switch (type) {
    case 'H': {
      Hello m;
      return decode(body, m, why);
    }
    case 'A': {
      Ack m;
      return decode(body, m, why);
    }
    case 'W': {
      Welcome m;
      return decode(body, m, why);
    }
    case 'K': {
      Keepalive m;
      return decode(body, m, why);
    }
    case 'E': {
      Error m;
      return decode(body, m, why);
    }
  }
  ADD_FAILURE() << "no decoder for type " << type;
  return false;
}

TEST(ProtocolTest, DecodersRefuseEveryTruncation) {
  for (const std::vector<uint8_t>& msg : sample_messages()) {
    const std::span<const uint8_t> body = body_of(msg);
    for (size_t n = 0; n < body.size(); ++n) {
      std::string why;
      EXPECT_FALSE(decode_as(msg[0], body.first(n), why))
          << "type " << msg[0] << ", " << n << " of " << body.size() << " bytes";
      // A HELLO cut inside its magic is "truncated" too; one whose tenant count outruns the
      // bytes left is as well.
      EXPECT_NE(why.find("truncated"), std::string::npos) << "type " << msg[0] << ": " << why;
    }
    std::string why;
    EXPECT_TRUE(decode_as(msg[0], body, why)) << why;
  }
}

TEST(ProtocolTest, DecodersRefuseTrailingBytes) {
  for (std::vector<uint8_t> msg : sample_messages()) {
    msg.push_back(0);
    msg.push_back(0);
    std::string why;
    EXPECT_FALSE(decode_as(msg[0], body_of(msg), why)) << "type " << msg[0];
    EXPECT_NE(why.find("2 unexpected trailing bytes"), std::string::npos) << why;
  }
}

TEST(ProtocolTest, HelloWithBadMagicIsRefused) {
  std::vector<uint8_t> msg;
  encode(sample_hello(), msg);
  msg[kMessageHeaderBytes] ^= 0x20;  // "eSRP"
  Hello h;
  std::string why;
  EXPECT_FALSE(decode(body_of(msg), h, why));
  EXPECT_NE(why.find("magic"), std::string::npos) << why;
}

// Offset, in a HELLO body, of ntenants for the given name and token.
size_t ntenants_offset(const Hello& h) {
  return 4 + 2 + 2 + 2 + h.name.size() + 2 + h.token.size() + 8 + 4;
}

TEST(ProtocolTest, HelloWithLyingTenantCountIsRefused) {
  const Hello hello = sample_hello();
  std::vector<uint8_t> msg;
  encode(hello, msg);
  const size_t at = kMessageHeaderBytes + ntenants_offset(hello);
  ASSERT_EQ(frame::load_u32(msg.data() + at), hello.tenants.size());
  for (const uint32_t lie : {5u, 6u, 1000u, 0x7FFFFFFFu, 0xFFFFFFFFu}) {
    std::vector<uint8_t> bad = msg;
    frame::store_u32(bad.data() + at, lie);
    Hello h;
    std::string why;
    EXPECT_FALSE(decode(body_of(bad), h, why)) << lie;
    EXPECT_NE(why.find("truncated"), std::string::npos) << why;
    EXPECT_LE(h.tenants.size(), hello.tenants.size());  // nothing reserved for the lie
  }
  // Fewer keys than the bytes hold: the rest is trailing.
  std::vector<uint8_t> bad = msg;
  frame::store_u32(bad.data() + at, 3);
  Hello h;
  std::string why;
  EXPECT_FALSE(decode(body_of(bad), h, why));
  EXPECT_NE(why.find("trailing"), std::string::npos) << why;
}

TEST(ProtocolTest, HelloWithHugeCountAndNoKeysIsRefusedBeforeReading) {
  Hello hello;
  hello.name = "n";
  std::vector<uint8_t> msg;
  encode(hello, msg);
  const size_t at = kMessageHeaderBytes + ntenants_offset(hello);
  ASSERT_EQ(at + 4, msg.size());
  frame::store_u32(msg.data() + at, 0xFFFFFFFFu);
  // Two bytes per claimed key would be needed: with 2 bytes left, a count of 1 is plausible (an
  // empty key), 2 is not.
  msg.push_back(0);
  msg.push_back(0);
  frame::store_u32(msg.data() + 1, static_cast<uint32_t>(msg.size() - kMessageHeaderBytes));
  Hello h;
  std::string why;
  EXPECT_FALSE(decode(body_of(msg), h, why));
  frame::store_u32(msg.data() + at, 1);
  EXPECT_TRUE(decode(body_of(msg), h, why)) << why;
  EXPECT_EQ(h.tenants, std::vector<std::string>{""});
  frame::store_u32(msg.data() + at, 2);
  EXPECT_FALSE(decode(body_of(msg), h, why));
}

TEST(ProtocolTest, EncodeAppendsToExistingBytes) {
  std::vector<uint8_t> out = {9, 9, 9};
  encode(Ack{1, 2}, out);
  ASSERT_EQ(out.size(), 3 + kMessageHeaderBytes + 16);
  EXPECT_EQ(out[3], 'A');
  EXPECT_EQ(frame::load_u32(out.data() + 4), 16u);
}

TEST(ProtocolTest, ValidNames) {
  EXPECT_TRUE(valid_name("a"));
  EXPECT_TRUE(valid_name("edge-17.eu_west"));
  EXPECT_TRUE(valid_name("ABCXYZabcxyz0189_.-"));
  EXPECT_TRUE(valid_name(std::string(kMaxNameBytes, 'n')));
  EXPECT_FALSE(valid_name(""));
  EXPECT_FALSE(valid_name(std::string(kMaxNameBytes + 1, 'n')));
  EXPECT_FALSE(valid_name("has space"));
  EXPECT_FALSE(valid_name("slash/name"));
  EXPECT_FALSE(valid_name("colon:name"));
  EXPECT_FALSE(valid_name("caf\xc3\xa9"));
  EXPECT_FALSE(valid_name(std::string("nul\0", 4)));
  EXPECT_FALSE(valid_name("new\nline"));
  EXPECT_FALSE(valid_name("quote\""));
}

TEST(ProtocolTest, TokensEqual) {
  EXPECT_TRUE(tokens_equal("s3cret", "s3cret"));
  EXPECT_TRUE(tokens_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(tokens_equal("s3cres", "s3cret"));  // last byte differs
  EXPECT_FALSE(tokens_equal("t3cret", "s3cret"));  // first byte differs
  EXPECT_FALSE(tokens_equal("S3CRET", "s3cret"));
  EXPECT_FALSE(tokens_equal("s3cre", "s3cret"));    // a prefix
  EXPECT_FALSE(tokens_equal("s3crett", "s3cret"));  // longer
  EXPECT_FALSE(tokens_equal("", "s3cret"));
  EXPECT_FALSE(tokens_equal(std::string("s3cre\0", 6), "s3cre"));
  // An empty configured token never matches, not even an empty one presented.
  EXPECT_FALSE(tokens_equal("", ""));
  EXPECT_FALSE(tokens_equal("anything", ""));
}

}  // namespace
}  // namespace edgeshard::relay::proto

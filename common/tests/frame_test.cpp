// Unit tests of the change-stream frame format: round trips of every message kind and of random
// messages, compressed and not; corruption (every bit flip, every truncation, bad versions, flags,
// lengths, malformed messages) always refused; writer limits and misuse; allocation-free steady
// state; stream splitting; JSON escaping.
#include "common/frame_codec.hpp"
#include "common/frame_format.hpp"
#include "common/frame_json.hpp"
#include "common/frame_reader.hpp"
#include "common/frame_writer.hpp"
#include "common/ring.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

// Counts heap allocations so tests can check that steady-state writing and reading allocate
// nothing. Replacing these two operators covers every other form the library uses.
namespace {
std::atomic<uint64_t> g_allocations{0};
}  // namespace

// g++ sees the inlined malloc/free pair across the replaced operators and wrongly reports a
// new/free mismatch; the pair is exactly what the replacement intends.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace edgeshard::frame {
namespace {

using Bytes = std::vector<uint8_t>;

// Copies a sealed frame out of the writer's buffer.
Bytes seal_copy(Writer& w, const Fields& fields) {
  const std::span<const uint8_t> s = w.seal(fields);
  return Bytes(s.begin(), s.end());
}

// Opens a frame and decodes every message; the first failure, or kOk.
Status read_all(std::span<const uint8_t> bytes) {
  Reader reader;
  if (Status st = reader.open(bytes); !st.ok()) return st;
  MessageCursor cursor = reader.messages();
  Message m;
  while (cursor.next(m)) {
  }
  return cursor.status();
}

// Recomputes the header checksum after a test edited header fields.
void rechecksum(Bytes& f) {
  const size_t checked =
      header_size(load_u16(f.data() + kOffTenantKeyLength)) - kHeaderChecksumSize;
  store_u64(f.data() + checked, checksum(f.data(), checked));
}

// Recomputes the payload checksum, then the header checksum, after a test edited the payload.
void rechecksum_all(Bytes& f) {
  const size_t header = header_size(load_u16(f.data() + kOffTenantKeyLength));
  store_u64(f.data() + kOffPayloadChecksum, checksum(f.data() + header, f.size() - header));
  rechecksum(f);
}

// Header fields of a many-tenants frame outside a transaction.
Fields many_fields() {
  Fields f;
  f.many_tenants = true;
  f.last = true;
  return f;
}

// Header fields of a tenant frame used by several tests.
Fields tenant_fields(std::string_view key, uint32_t sequence, bool last) {
  Fields f;
  f.tenant_key = key;
  f.last = last;
  f.xid = 750;
  f.sequence = sequence;
  f.first_lsn = 0x16B3748;
  f.last_lsn = 0x16B3800;
  f.commit_lsn = 0x16B3900;
  f.commit_time_us = 1714564800123456;
  return f;
}

constexpr uint32_t kOrders = 16384;

// Writes one message of every kind (inserts repeated `inserts` times, for compressibility).
void write_every_kind(Writer& w, int inserts) {
  const Column columns[] = {{"tenant_id", 20, -1, true},
                            {"id", 20, -1, true},
                            {"note", 25, -1, false},
                            {"amount", 1700, 786438, false}};
  w.relation(kOrders, "public", "orders", columns, 0);
  w.begin(750, 0x16B3900, 1714564800123456);
  const char tenant[] = {0, 0, 0, 0, 0, 0, 0, 42};
  for (int i = 0; i < inserts; ++i) {
    w.insert_begin(kOrders, 4);
    w.value_binary(tenant, sizeof tenant);
    w.value_binary("\0\0\0\0\0\0\0\1", 8);
    w.value_text("hello \"world\"\n", 14);
    w.value_null();
  }
  w.update_begin(kOrders);
  w.update_new_tuple(4);
  w.value_binary(tenant, sizeof tenant);
  w.value_binary("\0\0\0\0\0\0\0\1", 8);
  w.value_unchanged_toast();
  w.value_text("12.50", 5);
  w.update_begin(kOrders);
  w.update_old_key(2);
  w.value_binary(tenant, sizeof tenant);
  w.value_binary("\0\0\0\0\0\0\0\1", 8);
  w.update_new_tuple(4);
  w.value_binary(tenant, sizeof tenant);
  w.value_binary("\0\0\0\0\0\0\0\2", 8);
  w.value_null();
  w.value_null();
  w.delete_begin(kOrders, 2);
  w.value_binary(tenant, sizeof tenant);
  w.value_binary("\0\0\0\0\0\0\0\2", 8);
  const uint32_t relids[] = {kOrders, 16390};
  w.truncate(relids, true, false);
  w.tenant_moved("42", "shard-a", "shard-b", 8);
  w.keepalive(0x16B3A00, 1714564801000000);
  w.commit(0x16B3900, 0x16B3938, 1714564800123456);
}

// A frame holding every message kind for tenant "42".
Bytes every_kind_frame(Compression c, int inserts) {
  Writer w(c);
  write_every_kind(w, inserts);
  return seal_copy(w, tenant_fields("42", 0, true));
}

// The values of a decoded tuple as (kind, bytes) pairs.
std::vector<std::pair<ValueKind, std::string>> values_of(const Tuple& t) {
  std::vector<std::pair<ValueKind, std::string>> v;
  for (const Value& x : t) v.emplace_back(x.kind, std::string(x.data));
  return v;
}

// ---------------------------------------------------------------------------------------------
// Codec

TEST(FrameCodec, VarintRoundTripAtEveryBoundary) {
  std::vector<uint64_t> values = {0, 1, 0x7f, 0x80, 0x3fff, 0x4000, ~uint64_t{0}};
  for (int bits = 7; bits < 64; bits += 7) {
    values.push_back((uint64_t{1} << bits) - 1);
    values.push_back(uint64_t{1} << bits);
  }
  for (uint64_t v : values) {
    uint8_t buf[kMaxVarintBytes];
    const size_t n = store_varint(buf, v);
    ByteReader r(std::string_view(reinterpret_cast<const char*>(buf), n));
    uint64_t back = 0;
    ASSERT_TRUE(r.varint(back)) << v;
    EXPECT_EQ(back, v);
    EXPECT_TRUE(r.at_end());
  }
}

TEST(FrameCodec, VarintRefusesOverlongAndOverflowingEncodings) {
  const std::string_view cases[] = {
      std::string_view("\x80\x00", 2),                                   // not minimal
      std::string_view("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 10),  // 65 bits
      std::string_view("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x81\x00", 11),
      std::string_view("\x80", 1),  // runs past the end
  };
  for (std::string_view c : cases) {
    ByteReader r(c);
    uint64_t v;
    EXPECT_FALSE(r.varint(v));
    EXPECT_NE(r.error(), nullptr);
    EXPECT_EQ(r.error_offset(), 0u);
  }
}

TEST(FrameCodec, FixedWidthIsLittleEndian) {
  uint8_t b[8];
  store_u64(b, 0x0102030405060708);
  EXPECT_EQ(b[0], 0x08);
  EXPECT_EQ(b[7], 0x01);
  EXPECT_EQ(load_u64(b), 0x0102030405060708u);
  store_u32(b, 0xA1B2C3D4);
  EXPECT_EQ(b[0], 0xD4);
  EXPECT_EQ(load_u32(b), 0xA1B2C3D4u);
  store_u16(b, 0xBEEF);
  EXPECT_EQ(b[0], 0xEF);
  EXPECT_EQ(load_u16(b), 0xBEEF);
}

// ---------------------------------------------------------------------------------------------
// Round trips

class FrameRoundTrip : public testing::TestWithParam<Compression> {};

TEST_P(FrameRoundTrip, EveryMessageKindAndHeaderField) {
  const Bytes frame = every_kind_frame(GetParam(), 20);
  Reader reader;
  ASSERT_TRUE(reader.open(frame).ok());
  const Header& h = reader.header();
  EXPECT_EQ(h.tenant_key, "42");
  EXPECT_EQ(h.tenant_hash, hash_tenant_key("42"));
  EXPECT_FALSE(h.many_tenants);
  EXPECT_TRUE(h.last);
  EXPECT_EQ(h.xid, 750u);
  EXPECT_EQ(h.sequence, 0u);
  EXPECT_EQ(h.first_lsn, 0x16B3748u);
  EXPECT_EQ(h.last_lsn, 0x16B3800u);
  EXPECT_EQ(h.commit_lsn, 0x16B3900u);
  EXPECT_EQ(h.commit_time_us, 1714564800123456);
  EXPECT_EQ(h.compressed, GetParam() == Compression::kLz4);
  EXPECT_EQ(h.frame_length, frame.size());
  EXPECT_EQ(h.header_length, kMinHeaderSize + 2);
  EXPECT_EQ(h.stored_length, frame.size() - h.header_length);

  MessageCursor cursor = reader.messages();
  Message m;
  ASSERT_TRUE(cursor.next(m));
  const auto& rel = std::get<Relation>(m);
  EXPECT_EQ(rel.relid, kOrders);
  EXPECT_EQ(rel.schema, "public");
  EXPECT_EQ(rel.name, "orders");
  EXPECT_EQ(rel.tenant_column, 0);
  ASSERT_EQ(rel.columns.size(), 4u);
  std::vector<std::tuple<std::string, uint32_t, int32_t, bool>> cols;
  for (const Column& c : rel.columns) cols.emplace_back(c.name, c.type_oid, c.typmod, c.key);
  EXPECT_EQ(cols[0], std::make_tuple("tenant_id", 20u, -1, true));
  EXPECT_EQ(cols[3], std::make_tuple("amount", 1700u, 786438, false));

  ASSERT_TRUE(cursor.next(m));
  const auto& begin = std::get<Begin>(m);
  EXPECT_EQ(begin.xid, 750u);
  EXPECT_EQ(begin.commit_lsn, 0x16B3900u);
  EXPECT_EQ(begin.commit_time_us, 1714564800123456);

  const std::string tenant("\0\0\0\0\0\0\0\x2a", 8);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(cursor.next(m));
    const auto& ins = std::get<Insert>(m);
    EXPECT_EQ(ins.relid, kOrders);
    const auto v = values_of(ins.new_tuple);
    ASSERT_EQ(v.size(), 4u);
    EXPECT_EQ(v[0], std::make_pair(ValueKind::kBinary, tenant));
    EXPECT_EQ(v[2], std::make_pair(ValueKind::kText, std::string("hello \"world\"\n")));
    EXPECT_EQ(v[3], std::make_pair(ValueKind::kNull, std::string()));
  }

  ASSERT_TRUE(cursor.next(m));
  const auto& upd = std::get<Update>(m);
  EXPECT_FALSE(upd.has_old_key);
  EXPECT_TRUE(upd.old_key.empty());
  EXPECT_EQ(values_of(upd.new_tuple)[2], std::make_pair(ValueKind::kUnchangedToast, std::string()));

  ASSERT_TRUE(cursor.next(m));
  const auto& upd2 = std::get<Update>(m);
  EXPECT_TRUE(upd2.has_old_key);
  EXPECT_EQ(upd2.old_key.size(), 2u);
  EXPECT_EQ(values_of(upd2.new_tuple)[1].second, std::string("\0\0\0\0\0\0\0\2", 8));

  ASSERT_TRUE(cursor.next(m));
  const auto& del = std::get<Delete>(m);
  EXPECT_EQ(del.relid, kOrders);
  EXPECT_EQ(values_of(del.old_key)[1].second, std::string("\0\0\0\0\0\0\0\2", 8));

  ASSERT_TRUE(cursor.next(m));
  const auto& tr = std::get<Truncate>(m);
  EXPECT_TRUE(tr.cascade);
  EXPECT_FALSE(tr.restart_identity);
  EXPECT_EQ(std::vector<uint32_t>(tr.relids.begin(), tr.relids.end()),
            (std::vector<uint32_t>{kOrders, 16390}));

  ASSERT_TRUE(cursor.next(m));
  const auto& moved = std::get<TenantMoved>(m);
  EXPECT_EQ(moved.tenant_key, "42");
  EXPECT_EQ(moved.from_shard, "shard-a");
  EXPECT_EQ(moved.to_shard, "shard-b");
  EXPECT_EQ(moved.map_epoch, 8);

  ASSERT_TRUE(cursor.next(m));
  const auto& ka = std::get<Keepalive>(m);
  EXPECT_EQ(ka.lsn, 0x16B3A00u);
  EXPECT_EQ(ka.time_us, 1714564801000000);

  ASSERT_TRUE(cursor.next(m));
  const auto& commit = std::get<Commit>(m);
  EXPECT_EQ(commit.commit_lsn, 0x16B3900u);
  EXPECT_EQ(commit.end_lsn, 0x16B3938u);
  EXPECT_EQ(commit.commit_time_us, 1714564800123456);

  EXPECT_FALSE(cursor.next(m));
  EXPECT_TRUE(cursor.status().ok());
}

INSTANTIATE_TEST_SUITE_P(Compression, FrameRoundTrip,
                         testing::Values(Compression::kNone, Compression::kLz4));

// A message as plain owned data, so random messages can be generated, written, read back and
// compared. ints and strs hold the fields in wire order (see to_model / write_model).
struct ModelMessage {
  MessageType type{};
  std::vector<uint64_t> ints;
  std::vector<std::string> strs;
  bool has_old_key = false;
  std::vector<std::pair<ValueKind, std::string>> old_key;
  std::vector<std::pair<ValueKind, std::string>> new_tuple;
  // RELATION with ATTRIBUTES: per column its attnum and (kind kNull: none) missing value.
  std::vector<std::pair<uint32_t, std::pair<ValueKind, std::string>>> attributes;
  bool operator==(const ModelMessage&) const = default;
};

// Converts a decoded message to the model.
ModelMessage to_model(const Message& msg) {
  ModelMessage m;
  if (const auto* r = std::get_if<Relation>(&msg)) {
    m.type = MessageType::kRelation;
    m.ints = {r->relid, static_cast<uint64_t>(r->tenant_column + 1)};
    m.strs = {std::string(r->schema), std::string(r->name)};
    for (const Column& c : r->columns) {
      m.strs.emplace_back(c.name);
      m.ints.insert(m.ints.end(), {c.type_oid, static_cast<uint32_t>(c.typmod), c.key});
    }
    if (r->has_attributes) {
      for (const Column& c : r->merged_columns()) {
        m.attributes.push_back({c.attnum, {c.has_missing ? c.missing_kind : ValueKind::kNull,
                                           std::string(c.missing)}});
      }
    }
  } else if (const auto* w = std::get_if<Rewrite>(&msg)) {
    m.type = MessageType::kRewrite;
    m.ints = {w->relid};
  } else if (const auto* b = std::get_if<Begin>(&msg)) {
    m.type = MessageType::kBegin;
    m.ints = {b->xid, b->commit_lsn, static_cast<uint64_t>(b->commit_time_us)};
  } else if (const auto* i = std::get_if<Insert>(&msg)) {
    m.type = MessageType::kInsert;
    m.ints = {i->relid};
    m.new_tuple = values_of(i->new_tuple);
  } else if (const auto* u = std::get_if<Update>(&msg)) {
    m.type = MessageType::kUpdate;
    m.ints = {u->relid};
    m.has_old_key = u->has_old_key;
    m.old_key = values_of(u->old_key);
    m.new_tuple = values_of(u->new_tuple);
  } else if (const auto* d = std::get_if<Delete>(&msg)) {
    m.type = MessageType::kDelete;
    m.ints = {d->relid};
    m.old_key = values_of(d->old_key);
  } else if (const auto* t = std::get_if<Truncate>(&msg)) {
    m.type = MessageType::kTruncate;
    m.ints = {t->cascade, t->restart_identity};
    m.ints.insert(m.ints.end(), t->relids.begin(), t->relids.end());
  } else if (const auto* c = std::get_if<Commit>(&msg)) {
    m.type = MessageType::kCommit;
    m.ints = {c->commit_lsn, c->end_lsn, static_cast<uint64_t>(c->commit_time_us)};
  } else if (const auto* k = std::get_if<Keepalive>(&msg)) {
    m.type = MessageType::kKeepalive;
    m.ints = {k->lsn, static_cast<uint64_t>(k->time_us)};
  } else {
    const auto& tm = std::get<TenantMoved>(msg);
    m.type = MessageType::kTenantMoved;
    m.strs = {std::string(tm.tenant_key), std::string(tm.from_shard), std::string(tm.to_shard)};
    m.ints = {static_cast<uint64_t>(tm.map_epoch)};
  }
  return m;
}

// Writes the values of a model tuple.
void write_values(Writer& w, const std::vector<std::pair<ValueKind, std::string>>& values) {
  for (const auto& [kind, data] : values) {
    switch (kind) {
      case ValueKind::kNull:
        w.value_null();
        break;
      case ValueKind::kUnchangedToast:
        w.value_unchanged_toast();
        break;
      case ValueKind::kBinary:
        w.value_binary(data.data(), data.size());
        break;
      case ValueKind::kText:
        w.value_text(data.data(), data.size());
        break;
    }
  }
}

// Writes a model message with the writer's API.
void write_model(Writer& w, const ModelMessage& m) {
  const auto u32 = [](uint64_t v) { return static_cast<uint32_t>(v); };
  const auto tuple_size = [](const auto& t) { return static_cast<uint32_t>(t.size()); };
  switch (m.type) {
    case MessageType::kRelation: {
      std::vector<Column> cols;
      for (size_t i = 2; i < m.strs.size(); ++i) {
        const size_t j = 2 + 3 * (i - 2);
        cols.push_back(
            {m.strs[i], u32(m.ints[j]), static_cast<int32_t>(m.ints[j + 1]), m.ints[j + 2] != 0});
        if (!m.attributes.empty()) {
          const auto& [attnum, missing] = m.attributes[i - 2];
          cols.back().attnum = attnum;
          cols.back().has_missing = missing.first != ValueKind::kNull;
          cols.back().missing_kind = missing.first;
          cols.back().missing = missing.second;
        }
      }
      w.relation(u32(m.ints[0]), m.strs[0], m.strs[1], cols, static_cast<int32_t>(m.ints[1]) - 1);
      break;
    }
    case MessageType::kBegin:
      w.begin(u32(m.ints[0]), m.ints[1], static_cast<int64_t>(m.ints[2]));
      break;
    case MessageType::kInsert:
      w.insert_begin(u32(m.ints[0]), tuple_size(m.new_tuple));
      write_values(w, m.new_tuple);
      break;
    case MessageType::kUpdate:
      w.update_begin(u32(m.ints[0]));
      if (m.has_old_key) {
        w.update_old_key(tuple_size(m.old_key));
        write_values(w, m.old_key);
      }
      w.update_new_tuple(tuple_size(m.new_tuple));
      write_values(w, m.new_tuple);
      break;
    case MessageType::kDelete:
      w.delete_begin(u32(m.ints[0]), tuple_size(m.old_key));
      write_values(w, m.old_key);
      break;
    case MessageType::kTruncate: {
      std::vector<uint32_t> relids;
      for (size_t i = 2; i < m.ints.size(); ++i) relids.push_back(u32(m.ints[i]));
      w.truncate(relids, m.ints[0] != 0, m.ints[1] != 0);
      break;
    }
    case MessageType::kCommit:
      w.commit(m.ints[0], m.ints[1], static_cast<int64_t>(m.ints[2]));
      break;
    case MessageType::kKeepalive:
      w.keepalive(m.ints[0], static_cast<int64_t>(m.ints[1]));
      break;
    case MessageType::kTenantMoved:
      w.tenant_moved(m.strs[0], m.strs[1], m.strs[2], static_cast<int64_t>(m.ints[0]));
      break;
    case MessageType::kRewrite:
      w.rewrite(u32(m.ints[0]));
      break;
    case MessageType::kAttributes:  // written by relation(), never alone
      FAIL() << "no model of a lone ATTRIBUTES";
      break;
  }
}

// Random messages, values and header fields from a fixed seed.
class RandomFrames {
 public:
  explicit RandomFrames(uint64_t seed) : rng_(seed) {}

  // A uniformly random integer in [lo, hi].
  uint64_t uniform(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }

  // Random bytes: short or long, random or repetitive (so LZ4 sometimes helps).
  std::string bytes() {
    std::string s(uniform(0, uniform(0, 1) ? 8 : 300), '\0');
    const bool repetitive = uniform(0, 1) != 0;
    for (char& c : s) c = static_cast<char>(repetitive ? 'a' + uniform(0, 2) : uniform(0, 255));
    return s;
  }

  // A random 64-bit value, often an extreme one.
  uint64_t any64() {
    switch (uniform(0, 3)) {
      case 0:
        return 0;
      case 1:
        return ~uint64_t{0};
      default:
        return uniform(0, ~uint64_t{0});
    }
  }

  // A random tuple of up to 12 values.
  std::vector<std::pair<ValueKind, std::string>> tuple() {
    constexpr ValueKind kinds[] = {ValueKind::kNull, ValueKind::kUnchangedToast, ValueKind::kBinary,
                                   ValueKind::kText};
    std::vector<std::pair<ValueKind, std::string>> t(uniform(0, 12));
    for (auto& [kind, data] : t) {
      kind = kinds[uniform(0, 3)];
      if (kind == ValueKind::kBinary || kind == ValueKind::kText) data = bytes();
    }
    return t;
  }

  // A random message of a random type.
  ModelMessage message() {
    constexpr MessageType types[] = {
        MessageType::kRelation, MessageType::kBegin,     MessageType::kInsert,
        MessageType::kUpdate,   MessageType::kDelete,    MessageType::kTruncate,
        MessageType::kCommit,   MessageType::kKeepalive, MessageType::kTenantMoved,
        MessageType::kRewrite};
    ModelMessage m;
    m.type = types[uniform(0, std::size(types) - 1)];
    const uint64_t relid = uniform(0, 0xffffffff);
    switch (m.type) {
      case MessageType::kRelation: {
        const uint64_t ncols = uniform(0, 10);
        m.ints = {relid, uniform(0, ncols)};
        m.strs = {bytes(), bytes()};
        for (uint64_t i = 0; i < ncols; ++i) {
          m.strs.push_back(bytes());
          m.ints.insert(m.ints.end(),
                        {uniform(0, 0xffffffff), uniform(0, 0xffffffff), uniform(0, 1)});
        }
        // Version 2 streams: identities and missing values (a column list may carry none).
        if (ncols > 0 && uniform(0, 1) != 0) {
          for (uint64_t i = 0; i < ncols; ++i) {
            const uint64_t kind = uniform(0, 2);
            const ValueKind k = kind == 0 ? ValueKind::kNull : kind == 1 ? ValueKind::kBinary : ValueKind::kText;
            m.attributes.push_back({static_cast<uint32_t>(uniform(1, 1664)),
                                    {k, k == ValueKind::kNull ? std::string() : bytes()}});
          }
        }
        break;
      }
      case MessageType::kRewrite:
        m.ints = {relid};
        break;
      case MessageType::kAttributes:
        break;
      case MessageType::kBegin:
        m.ints = {uniform(0, 0xffffffff), any64(), any64()};
        break;
      case MessageType::kInsert:
        m.ints = {relid};
        m.new_tuple = tuple();
        break;
      case MessageType::kUpdate:
        m.ints = {relid};
        m.has_old_key = uniform(0, 1) != 0;
        if (m.has_old_key) m.old_key = tuple();
        m.new_tuple = tuple();
        break;
      case MessageType::kDelete:
        m.ints = {relid};
        m.old_key = tuple();
        break;
      case MessageType::kTruncate:
        m.ints = {uniform(0, 1), uniform(0, 1)};
        for (uint64_t n = uniform(0, 5); n > 0; --n) m.ints.push_back(uniform(0, 0xffffffff));
        break;
      case MessageType::kCommit:
        m.ints = {any64(), any64(), any64()};
        break;
      case MessageType::kKeepalive:
        m.ints = {any64(), any64()};
        break;
      case MessageType::kTenantMoved:
        m.strs = {bytes(), bytes(), bytes()};
        m.ints = {any64()};
        break;
    }
    return m;
  }

 private:
  std::mt19937_64 rng_;
};

TEST(FrameRoundTrip, RandomMessagesAndHeaders) {
  RandomFrames rnd(20240501);
  int compressed = 0;
  Writer writers[] = {Writer(Compression::kNone), Writer(Compression::kLz4)};
  Reader reader;
  for (int round = 0; round < 400; ++round) {
    Writer& w = writers[round % 2];
    std::vector<ModelMessage> sent(rnd.uniform(0, 40));
    for (ModelMessage& m : sent) {
      m = rnd.message();
      write_model(w, m);
    }
    const std::string key = std::to_string(static_cast<int64_t>(rnd.any64()));
    Fields f;
    f.many_tenants = rnd.uniform(0, 3) == 0;
    f.tenant_key = key;
    f.last = rnd.uniform(0, 1) != 0;
    f.xid = static_cast<uint32_t>(rnd.any64());
    f.sequence = static_cast<uint32_t>(rnd.any64());
    f.first_lsn = rnd.any64();
    f.last_lsn = rnd.any64();
    f.commit_lsn = rnd.any64();
    f.commit_time_us = static_cast<int64_t>(rnd.any64());
    const Bytes frame = seal_copy(w, f);
    EXPECT_EQ(w.size(), 0u);

    ASSERT_TRUE(reader.open(frame).ok()) << "round " << round;
    const Header& h = reader.header();
    compressed += h.compressed;
    EXPECT_EQ(h.many_tenants, f.many_tenants);
    EXPECT_EQ(h.tenant_key, f.many_tenants ? std::string_view() : f.tenant_key);
    EXPECT_EQ(h.last, f.last);
    EXPECT_EQ(h.xid, f.xid);
    EXPECT_EQ(h.sequence, f.sequence);
    EXPECT_EQ(h.first_lsn, f.first_lsn);
    EXPECT_EQ(h.last_lsn, f.last_lsn);
    EXPECT_EQ(h.commit_lsn, f.commit_lsn);
    EXPECT_EQ(h.commit_time_us, f.commit_time_us);

    std::vector<ModelMessage> got;
    MessageCursor cursor = reader.messages();
    Message m;
    while (cursor.next(m)) got.push_back(to_model(m));
    ASSERT_TRUE(cursor.status().ok()) << cursor.status().message;
    ASSERT_EQ(got, sent) << "round " << round;
  }
  EXPECT_GT(compressed, 20);  // the repetitive values made LZ4 worth it often enough
}

TEST(FrameRoundTrip, CompressesOnlyWhenItSavesMoreThanAnEighth) {
  // Repetitive inserts compress well.
  const Bytes big = every_kind_frame(Compression::kLz4, 200);
  Header h;
  ASSERT_TRUE(parse_header(big, h).ok());
  EXPECT_TRUE(h.compressed);
  EXPECT_LT(h.stored_length, h.raw_length / 4);

  // Random bytes do not: stored raw, no LZ4 flag.
  Writer w(Compression::kLz4);
  std::mt19937_64 rng(7);
  std::string noise(4096, '\0');
  for (char& c : noise) c = static_cast<char>(rng());
  w.insert_begin(1, 1);
  w.value_binary(noise.data(), noise.size());
  const Bytes raw = seal_copy(w, tenant_fields("42", 0, true));
  ASSERT_TRUE(parse_header(raw, h).ok());
  EXPECT_FALSE(h.compressed);
  EXPECT_EQ(h.stored_length, h.raw_length);

  // Compression::kNone never compresses, and an empty payload is a valid frame.
  ASSERT_TRUE(parse_header(every_kind_frame(Compression::kNone, 200), h).ok());
  EXPECT_FALSE(h.compressed);
  Writer empty;
  const Bytes keepalive_only = seal_copy(empty, many_fields());
  EXPECT_EQ(keepalive_only.size(), kMinHeaderSize);
  EXPECT_TRUE(read_all(keepalive_only).ok());
}

TEST(FrameRoundTrip, ContinuationFramesStartEmpty) {
  Writer w;
  w.begin(1, 100, 0);
  w.insert_begin(5, 1);
  w.value_text("a", 1);
  const Bytes first = seal_copy(w, tenant_fields("7", 0, false));
  w.insert_begin(5, 1);
  w.value_text("b", 1);
  w.commit(100, 120, 0);
  const Bytes second = seal_copy(w, tenant_fields("7", 1, true));
  Reader reader;
  ASSERT_TRUE(reader.open(second).ok());
  EXPECT_EQ(reader.header().sequence, 1u);
  EXPECT_TRUE(reader.header().last);
  MessageCursor cursor = reader.messages();
  Message m;
  ASSERT_TRUE(cursor.next(m));
  EXPECT_TRUE(std::holds_alternative<Insert>(m));
  ASSERT_TRUE(cursor.next(m));
  EXPECT_TRUE(std::holds_alternative<Commit>(m));
  EXPECT_FALSE(cursor.next(m));
  EXPECT_TRUE(read_all(first).ok());
}

TEST(FrameRoundTrip, SteadyStateAllocatesNothing) {
  Writer w(Compression::kLz4);
  Reader reader;
  std::vector<Bytes> kept;
  // One warm-up round grows every buffer; the second must not allocate at all.
  for (int round = 0; round < 2; ++round) {
    const uint64_t before = g_allocations.load();
    write_every_kind(w, 500);
    const std::span<const uint8_t> frame = w.seal(tenant_fields("42", 0, true));
    ASSERT_TRUE(reader.open(frame).ok());
    MessageCursor cursor = reader.messages();
    Message m;
    size_t values = 0;
    while (cursor.next(m)) {
      if (const auto* ins = std::get_if<Insert>(&m)) {
        for (const Value& v : ins->new_tuple) values += v.data.size() > 0;
      }
    }
    EXPECT_TRUE(cursor.status().ok());
    EXPECT_EQ(values, 500u * 3);
    EXPECT_TRUE(reader.header().compressed);
    if (round == 1) {
      EXPECT_EQ(g_allocations.load() - before, 0u);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Corruption: header and payload

class FrameCorruption : public testing::TestWithParam<Compression> {};

TEST_P(FrameCorruption, EverySingleBitFlipIsRefused) {
  const Bytes frame = every_kind_frame(GetParam(), 5);
  ASSERT_TRUE(read_all(frame).ok());
  for (size_t bit = 0; bit < frame.size() * 8; ++bit) {
    Bytes bad = frame;
    bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_FALSE(read_all(bad).ok()) << "bit " << bit << " of " << frame.size() * 8;
  }
}

TEST_P(FrameCorruption, EveryTruncationIsRefused) {
  const Bytes frame = every_kind_frame(GetParam(), 5);
  for (size_t n = 0; n < frame.size(); ++n) {
    const Status st = read_all(std::span(frame).first(n));
    EXPECT_EQ(st.error, Error::kTruncated) << n;
    EXPECT_EQ(st.offset, n);
  }
}

INSTANTIATE_TEST_SUITE_P(Compression, FrameCorruption,
                         testing::Values(Compression::kNone, Compression::kLz4));

// Edits a copy of a valid frame and returns what open() says about it.
template <typename Edit>
Status open_edited(Edit edit) {
  Bytes f = every_kind_frame(Compression::kLz4, 20);
  edit(f);
  Reader reader;
  return reader.open(f);
}

TEST(FrameCorruption, UnknownMagicVersionChecksumTypeRefused) {
  Status st = open_edited([](Bytes& f) { f[kOffMagic] = 'X'; });
  EXPECT_EQ(st.error, Error::kBadMagic);
  // A stream that is not frames is refused from its first bytes, without waiting for a header.
  const uint8_t garbage[] = {'g', 'a', 'r'};
  size_t length = 0;
  EXPECT_EQ(frame_length(garbage, length).error, Error::kBadMagic);
  const uint8_t future[] = {'E', 'S', 'F', 'R', kVersion + 1};
  EXPECT_EQ(frame_length(future, length).error, Error::kBadVersion);
  for (uint8_t version : {0, kVersion + 1, 255}) {
    st = open_edited([&](Bytes& f) {
      f[kOffVersion] = version;
      rechecksum(f);
    });
    EXPECT_EQ(st.error, Error::kBadVersion);
    EXPECT_EQ(st.offset, kOffVersion);
  }
  st = open_edited([](Bytes& f) {
    f[kOffChecksumType] = 2;
    rechecksum(f);
  });
  EXPECT_EQ(st.error, Error::kBadChecksumType);
}

TEST(FrameCorruption, UnknownFlagBitsAndReservedBytesRefused) {
  for (int bit = 3; bit < 16; ++bit) {
    const Status st = open_edited([&](Bytes& f) {
      store_u16(f.data() + kOffFlags, load_u16(f.data() + kOffFlags) | (1u << bit));
      rechecksum(f);
    });
    EXPECT_EQ(st.error, Error::kUnknownFlags) << bit;
  }
  for (size_t i = 0; i < kReservedBytes; ++i) {
    const Status st = open_edited([&](Bytes& f) {
      f[kOffReserved + i] = 1;
      rechecksum(f);
    });
    EXPECT_EQ(st.error, Error::kReservedNotZero);
    EXPECT_EQ(st.offset, kOffReserved + i);
  }
}

TEST(FrameCorruption, HeaderChecksumCoversTheTenantKey) {
  const Status st = open_edited([](Bytes& f) { f[kOffTenantKey] = '3'; });  // "42" -> "32"
  EXPECT_EQ(st.error, Error::kHeaderChecksum);
  EXPECT_EQ(st.offset, kOffTenantKey + 2);
}

TEST(FrameCorruption, TenantHashMustMatchTheKey) {
  Status st = open_edited([](Bytes& f) {
    f[kOffTenantKey] = '3';
    rechecksum(f);
  });
  EXPECT_EQ(st.error, Error::kBadTenant);
  st = open_edited([](Bytes& f) {  // MANY_TENANTS with a key
    store_u16(f.data() + kOffFlags, load_u16(f.data() + kOffFlags) | kFlagManyTenants);
    rechecksum(f);
  });
  EXPECT_EQ(st.error, Error::kBadTenant);
}

TEST(FrameCorruption, ImpossibleLengthsRefused) {
  Status st = open_edited([](Bytes& f) {  // raw length above the limit
    store_u32(f.data() + kOffRawLength, kMaxRawPayload + 1);
    rechecksum(f);
  });
  EXPECT_EQ(st.error, Error::kBadLength);
  EXPECT_EQ(st.offset, kOffRawLength);
  st = open_edited([](Bytes& f) {  // compressed but not smaller
    store_u32(f.data() + kOffRawLength, load_u32(f.data() + kOffStoredLength));
    rechecksum(f);
  });
  EXPECT_EQ(st.error, Error::kBadLength);
  st = open_edited([](Bytes& f) {  // uncompressed with stored != raw
    store_u16(f.data() + kOffFlags, load_u16(f.data() + kOffFlags) & ~kFlagLz4);
    rechecksum(f);
  });
  EXPECT_EQ(st.error, Error::kBadLength);
}

TEST(FrameCorruption, PayloadChecksumAndDecompressionChecked) {
  Status st = open_edited([](Bytes& f) { f.back() ^= 1; });
  EXPECT_EQ(st.error, Error::kPayloadChecksum);
  // A well-formed LZ4 block that does not decompress to exactly raw_length bytes.
  for (int delta : {-1, +1}) {
    st = open_edited([&](Bytes& f) {
      store_u32(f.data() + kOffRawLength, load_u32(f.data() + kOffRawLength) + delta);
      rechecksum(f);
    });
    EXPECT_EQ(st.error, Error::kDecompress) << delta;
  }
  // LZ4 garbage (checksums fixed up) is refused, not read out of bounds.
  st = open_edited([](Bytes& f) {
    for (size_t i = kMinHeaderSize + 2; i < f.size(); ++i) f[i] = 0xff;
    rechecksum_all(f);
  });
  EXPECT_EQ(st.error, Error::kDecompress);
}

// ---------------------------------------------------------------------------------------------
// Corruption: malformed messages (checksums are right; the writer was broken)

// Decodes a hand-made raw payload; the status after the last message.
Status decode_payload(std::string_view payload, int* messages = nullptr) {
  MessageCursor cursor(payload);
  Message m;
  int n = 0;
  while (cursor.next(m)) ++n;
  if (messages != nullptr) *messages = n;
  return cursor.status();
}

TEST(FrameMessages, MalformedMessagesRefusedWithTheirOffset) {
  using namespace std::string_view_literals;
  const struct {
    std::string_view payload;
    size_t offset;
    std::string_view message;
  } cases[] = {
      {"X"sv, 0, "unknown message type"},
      {"K\1\2\3"sv, 1, "field runs past the end"},
      {"I\1\0\0\0\x80\0"sv, 5, "varint is not minimal"},
      {"I\1\0\0\0\5n"sv, 5, "count larger than the bytes left"},
      {"I\1\0\0\0\1x"sv, 6, "unknown value kind"},
      {"I\1\0\0\0\1b\5abc"sv, 7, "string runs past the end"},
      {"U\1\0\0\0X\0"sv, 5, "bad tuple tag in UPDATE"},
      {"U\1\0\0\0K\0K\0"sv, 7, "bad tuple tag in UPDATE"},
      {"T\4\0"sv, 1, "unknown TRUNCATE option bits"},
      {"R\1\0\0\0\0\0\2\1\1c\0\0\0\0\0\0\0\0\0"sv, 7, "tenant column beyond the column count"},
      {"R\1\0\0\0\0\0\0\1\1c\0\0\0\0\0\0\0\0\2"sv, 19, "unknown column flag bits"},
      {"K\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0B"sv, 18, "field runs past the end"},
      // Version 2: ATTRIBUTES only right after the RELATION of its relid, one per column.
      {"A\1\0\0\0\1\1\0"sv, 0, "ATTRIBUTES without the RELATION it belongs to"},
      {"R\1\0\0\0\0\0\1\1\1c\0\0\0\0\0\0\0\0\1A\2\0\0\0\1\1\0"sv, 20,
       "ATTRIBUTES of another relid after a RELATION"},
      {"R\1\0\0\0\0\0\1\1\1c\0\0\0\0\0\0\0\0\1A\1\0\0\0\2\1\0\2\0"sv, 20,
       "ATTRIBUTES count differs from the RELATION's columns"},
      {"R\1\0\0\0\0\0\1\1\1c\0\0\0\0\0\0\0\0\1A\1\0\0\0\1\0\0"sv, 26, "attribute number out of range"},
      {"R\1\0\0\0\0\0\1\1\1c\0\0\0\0\0\0\0\0\1A\1\0\0\0\1\1\2"sv, 27, "unknown attribute flag bits"},
      {"R\1\0\0\0\0\0\1\1\1c\0\0\0\0\0\0\0\0\1A\1\0\0\0\1\1\1n"sv, 28,
       "a missing value is binary or text"},
      {"W\1\0\0"sv, 1, "field runs past the end"},
  };
  for (const auto& c : cases) {
    const Status st = decode_payload(c.payload);
    EXPECT_EQ(st.error, Error::kBadMessage) << c.message;
    EXPECT_EQ(st.offset, c.offset) << c.message;
    EXPECT_EQ(std::string_view(st.message), c.message);
  }
  // Well-formed counterparts decode.
  int n = 0;
  EXPECT_TRUE(decode_payload("I\1\0\0\0\2nu"sv, &n).ok());
  EXPECT_EQ(n, 1);
  EXPECT_TRUE(decode_payload("R\1\0\0\0\0\0\1\1\1c\0\0\0\0\0\0\0\0\1"sv).ok());
  // A RELATION and its ATTRIBUTES are one message; a REWRITE another.
  EXPECT_TRUE(decode_payload("R\1\0\0\0\0\0\1\1\1c\0\0\0\0\0\0\0\0\1A\1\0\0\0\1\5\1b\2hiW\1\0\0\0"sv, &n).ok());
  EXPECT_EQ(n, 2);
  EXPECT_TRUE(decode_payload(""sv, &n).ok());
  EXPECT_EQ(n, 0);
}

TEST(FrameMessages, CursorStopsForGoodAfterAnError) {
  MessageCursor cursor(std::string_view("K\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0X", 18));
  Message m;
  EXPECT_TRUE(cursor.next(m));
  EXPECT_FALSE(cursor.next(m));
  EXPECT_EQ(cursor.status().offset, 17u);
  EXPECT_FALSE(cursor.next(m));
  EXPECT_EQ(cursor.status().error, Error::kBadMessage);
}

// ---------------------------------------------------------------------------------------------
// Writer limits and misuse

TEST(FrameWriter, RefusesPayloadAboveTheLimit) {
  Writer w;
  const std::string half(kMaxRawPayload / 2, 'x');
  w.insert_begin(1, 3);
  w.value_binary(half.data(), half.size());
  EXPECT_THROW(w.value_binary(half.data(), half.size()), std::length_error);
  w.reset();
  w.insert_begin(1, 1);
  w.value_binary(half.data(), half.size());
  const Bytes frame = seal_copy(w, tenant_fields("1", 0, true));
  EXPECT_TRUE(read_all(frame).ok());
}

TEST(FrameWriter, MisuseThrowsLengthError) {
  Writer w;
  EXPECT_THROW(w.value_null(), std::length_error);  // no tuple open
  w.insert_begin(1, 2);
  w.value_null();
  EXPECT_THROW(w.seal(tenant_fields("1", 0, true)), std::length_error);  // one value missing
  EXPECT_THROW(w.commit(1, 2, 3), std::length_error);
  w.value_null();
  EXPECT_THROW(w.value_null(), std::length_error);  // one value too many
  w.update_begin(1);
  EXPECT_THROW(w.begin(1, 2, 3), std::length_error);  // UPDATE without its new tuple
  w.update_old_key(1);
  EXPECT_THROW(w.update_new_tuple(1), std::length_error);  // old key incomplete
  w.value_null();
  EXPECT_THROW(w.update_old_key(1), std::length_error);  // second old key
  w.update_new_tuple(0);
  const Column col{"c", 25, -1, false};
  EXPECT_THROW(w.relation(1, "s", "t", std::span(&col, 1), 1), std::length_error);
  EXPECT_THROW(w.relation(1, "s", "t", std::span(&col, 1), -2), std::length_error);
  const std::string long_key(kMaxTenantKey + 1, '7');
  EXPECT_THROW(w.seal(tenant_fields(long_key, 0, true)), std::length_error);
  EXPECT_TRUE(read_all(seal_copy(w, tenant_fields("1", 0, true))).ok());

  // After an exception mid-message, reset() makes the writer usable again.
  w.insert_begin(1, 1);
  EXPECT_THROW(w.seal(tenant_fields("1", 0, true)), std::length_error);
  w.reset();
  EXPECT_EQ(w.size(), 0u);
  w.keepalive(1, 2);
  EXPECT_TRUE(read_all(seal_copy(w, many_fields())).ok());
}

TEST(FrameWriter, ManyTenantsFramesIgnoreTheKey) {
  Writer w;
  w.keepalive(5, 6);
  Fields f = tenant_fields("42", 0, true);
  f.many_tenants = true;
  const Bytes frame = seal_copy(w, f);
  Header h;
  ASSERT_TRUE(parse_header(frame, h).ok());
  EXPECT_TRUE(h.many_tenants);
  EXPECT_TRUE(h.tenant_key.empty());
  EXPECT_EQ(h.tenant_hash, 0u);
}

// ---------------------------------------------------------------------------------------------
// Stream boundaries

TEST(FrameStream, FrameLengthSplitsConcatenatedFrames) {
  Bytes stream;
  std::vector<size_t> lengths;
  for (int i = 0; i < 4; ++i) {
    const Bytes f = every_kind_frame(i % 2 ? Compression::kLz4 : Compression::kNone, i * 10);
    lengths.push_back(f.size());
    stream.insert(stream.end(), f.begin(), f.end());
  }
  size_t pos = 0;
  for (size_t expected : lengths) {
    size_t length = 0;
    // Any prefix shorter than the header asks for more, never for less than it has.
    for (size_t n = 0; n < kMinHeaderSize + 2; ++n) {
      const Status st = frame_length(std::span(stream).subspan(pos, n), length);
      ASSERT_EQ(st.error, Error::kTruncated);
      EXPECT_GT(length, n);
    }
    ASSERT_TRUE(frame_length(std::span(stream).subspan(pos), length).ok());
    EXPECT_EQ(length, expected);
    ASSERT_TRUE(read_all(std::span(stream).subspan(pos)).ok());
    pos += length;
  }
  EXPECT_EQ(pos, stream.size());
}

// ---------------------------------------------------------------------------------------------
// JSON

TEST(FrameJson, EscapesStringsAndReplacesInvalidUtf8) {
  std::string out;
  append_json_string(out, std::string_view("a\"b\\c\n\t\x01\x1f\x7f", 10));
  EXPECT_EQ(out, R"("a\"b\\c\n\t\u0001\u001f)"
                 "\x7f\"");
  out.clear();
  append_json_string(out, "caf\xc3\xa9 \xe6\x9d\xb1 \xf0\x9f\x98\x80");  // valid: kept
  EXPECT_EQ(out, "\"caf\xc3\xa9 \xe6\x9d\xb1 \xf0\x9f\x98\x80\"");
  out.clear();
  // Lone continuation, overlong '/', surrogate, above U+10FFFF, cut sequence.
  append_json_string(out, "\x80|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe6\x9d");
  EXPECT_EQ(out,
            R"("\ufffd|\ufffd\ufffd|\ufffd\ufffd\ufffd|\ufffd\ufffd\ufffd\ufffd|\ufffd\ufffd")");
}

TEST(FrameJson, RendersHeaderAndMessages) {
  Writer w;
  w.begin(7, 0x100000016B3748, 0);
  w.insert_begin(9, 4);
  w.value_binary("\x00\xff", 2);
  w.value_text("x", 1);
  w.value_null();
  w.value_unchanged_toast();
  w.keepalive(1, -1);
  const Bytes frame = seal_copy(w, tenant_fields("t\"1", 3, false));
  Reader reader;
  ASSERT_TRUE(reader.open(frame).ok());
  std::string out;
  ASSERT_TRUE(append_frame_json(out, reader).ok());
  const std::string h = out.substr(0, out.find('\n'));
  EXPECT_NE(h.find(R"("type":"frame","version":2,"tenant":"t\"1","many_tenants":false)"),
            std::string::npos)
      << h;
  EXPECT_NE(
      h.find(R"("commit_time":"2024-05-01T12:00:00.123456Z","commit_time_us":1714564800123456)"),
      std::string::npos)
      << h;
  EXPECT_NE(
      out.find(
          R"({"type":"begin","xid":7,"commit_lsn":"100000/16B3748","commit_time":"1970-01-01T00:00:00.000000Z")"),
      std::string::npos)
      << out;
  EXPECT_NE(
      out.find(
          R"({"type":"insert","relid":9,"new":[{"binary":"00ff"},{"text":"x"},null,{"unchanged_toast":true}]})"),
      std::string::npos)
      << out;
  EXPECT_NE(out.find(R"("time":"1969-12-31T23:59:59.999999Z","time_us":-1})"), std::string::npos)
      << out;
}

}  // namespace
}  // namespace edgeshard::frame

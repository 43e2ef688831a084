// Generator and pin of the checked-in frame test vectors (common/testdata/): each vector is built
// here with the writer and must equal its .frame file byte for byte, and its JSON rendering its
// .json file. After an intended format change, regenerate them with
//   EDGESHARD_REGENERATE_TESTDATA=1 build/edgeshard_unit_tests --gtest_filter='FrameVectors.*'
// and copy the .frame files to fuzz/corpus/frame/ (the fuzzer's seeds).
#include "common/frame_json.hpp"
#include "common/frame_reader.hpp"
#include "common/frame_writer.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace edgeshard::frame {
namespace {

constexpr uint32_t kOrders = 16384;
constexpr uint32_t kOrderItems = 16392;
constexpr uint32_t kCountries = 16400;
constexpr uint64_t kCommitLsn = 0x16B3900;
constexpr int64_t kCommitTime = 1714564800123456;  // 2024-05-01T12:00:00.123456Z

// One test vector: file name, what it holds (for testdata/README.md), how to build it.
struct Vector {
  const char* name;
  const char* description;
  std::string (*build)();
};

// Seals the writer's payload into a frame returned as a string.
std::string seal(Writer& w, const Fields& f) {
  const std::span<const uint8_t> s = w.seal(f);
  return std::string(s.begin(), s.end());
}

// Header fields of a frame in the transaction (xid 750, commit 0/16B3900).
Fields txn_fields(std::string_view tenant, bool many, uint32_t sequence, bool last) {
  Fields f;
  f.tenant_key = tenant;
  f.many_tenants = many;
  f.last = last;
  f.xid = 750;
  f.sequence = sequence;
  f.first_lsn = 0x16B3748;
  f.last_lsn = 0x16B38C0;
  f.commit_lsn = kCommitLsn;
  f.commit_time_us = kCommitTime;
  return f;
}

// Writes an int8 in its binary send format (big-endian).
void value_int8(Writer& w, int64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(static_cast<uint64_t>(v) >> (56 - 8 * i));
  w.value_binary(b, sizeof b);
}

// Writes a text datum.
void value_text(Writer& w, std::string_view s) { w.value_text(s.data(), s.size()); }

std::string build_keepalive() {
  Writer w;
  w.keepalive(0x16B3748, 1714564800000000);
  Fields f;
  f.many_tenants = true;
  f.last = true;
  f.first_lsn = f.last_lsn = 0x16B3748;
  return seal(w, f);
}

// Column c with its attribute number (and no missing value).
Column numbered(Column c, uint32_t attnum) {
  c.attnum = attnum;
  return c;
}

std::string build_relations() {
  Writer w;
  const Column orders[] = {numbered({"tenant_id", 20, -1, true}, 1),
                           numbered({"id", 20, -1, true}, 2),
                           numbered({"note", 25, -1, false}, 3),
                           numbered({"amount", 1700, (12 << 16 | 2) + 4, false}, 4)};
  w.relation(kOrders, "public", "orders", orders, 0);
  const Column countries[] = {numbered({"code", 1042, 6, true}, 1), numbered({"name", 25, -1, false}, 2)};
  w.relation(kCountries, "ref", "countries", countries, -1);
  return seal(w, txn_fields("", true, 0, true));
}

std::string build_schema_change() {
  // ALTER TABLE orders DROP COLUMN note, ADD COLUMN status text DEFAULT 'new' (no rewrite: 'new'
  // is its missing value), then ALTER COLUMN amount TYPE numeric(14,2) (a rewrite).
  Writer w(Compression::kNone);
  Column status = numbered({"status", 25, -1, false}, 5);
  status.has_missing = true;
  status.missing_kind = ValueKind::kBinary;
  status.missing = "new";
  const Column orders[] = {numbered({"tenant_id", 20, -1, true}, 1), numbered({"id", 20, -1, true}, 2),
                           numbered({"amount", 1700, (14 << 16 | 2) + 4, false}, 4), status};
  w.rewrite(kOrders);
  w.relation(kOrders, "public", "orders", orders, 0);
  Fields f = txn_fields("", true, 0, true);
  f.xid = 753;
  f.commit_lsn = 0x16B6000;
  f.first_lsn = f.last_lsn = 0x16B5F00;
  return seal(w, f);
}

std::string build_tenant42_txn() {
  Writer w(Compression::kNone);
  w.begin(750, kCommitLsn, kCommitTime);
  w.insert_begin(kOrders, 4);
  value_int8(w, 42);
  value_int8(w, 1);
  value_text(w, "first order");
  w.value_null();
  w.update_begin(kOrders);  // key unchanged, TOASTed note not sent
  w.update_new_tuple(4);
  value_int8(w, 42);
  value_int8(w, 1);
  w.value_unchanged_toast();
  value_text(w, "12.50");
  w.update_begin(kOrders);  // key changed: old key first
  w.update_old_key(2);
  value_int8(w, 42);
  value_int8(w, 1);
  w.update_new_tuple(4);
  value_int8(w, 42);
  value_int8(w, 2);
  value_text(w, "first order");
  value_text(w, "12.50");
  w.delete_begin(kOrders, 2);
  value_int8(w, 42);
  value_int8(w, 2);
  w.commit(kCommitLsn, 0x16B3938, kCommitTime);
  return seal(w, txn_fields("42", false, 0, true));
}

std::string build_acme_part0_lz4() {
  Writer w(Compression::kLz4);
  w.begin(750, kCommitLsn, kCommitTime);
  for (int id = 1; id <= 40; ++id) {
    w.insert_begin(kOrders, 4);
    value_text(w, "acme");  // a text tenant column
    value_int8(w, id);
    value_text(w, "bulk import of the spring catalogue");
    value_text(w, "99.00");
  }
  return seal(w, txn_fields("acme", false, 0, false));
}

std::string build_acme_part1_last() {
  Writer w(Compression::kLz4);
  w.delete_begin(kOrders, 2);
  value_text(w, "acme");
  value_int8(w, 40);
  w.tenant_moved("acme", "shard-a", "shard-b", 8);
  w.commit(kCommitLsn, 0x16B3938, kCommitTime);
  return seal(w, txn_fields("acme", false, 1, true));
}

std::string build_truncate() {
  Writer w;
  w.begin(751, 0x16B4000, kCommitTime + 1000);
  const uint32_t relids[] = {kOrders, kOrderItems};
  w.truncate(relids, true, true);
  w.commit(0x16B4000, 0x16B4038, kCommitTime + 1000);
  Fields f = txn_fields("", true, 0, true);
  f.xid = 751;
  f.first_lsn = f.last_lsn = 0x16B3F00;
  f.commit_lsn = 0x16B4000;
  f.commit_time_us = kCommitTime + 1000;
  return seal(w, f);
}

std::string build_unicode_tenant() {
  Writer w;
  w.begin(752, 0x16B5000, kCommitTime);
  w.insert_begin(kOrders, 4);
  value_text(w, "caf\xc3\xa9-\xe6\x9d\xb1\xe4\xba\xac");
  value_int8(w, -1);
  value_text(w, "tab\there \"quoted\" back\\slash\nnew line \xf0\x9f\x98\x80 bad \xff\xfe");
  w.value_binary("\x00\x01\x7f\x80\xff", 5);
  w.commit(0x16B5000, 0x16B5038, kCommitTime);
  Fields f = txn_fields("caf\xc3\xa9-\xe6\x9d\xb1\xe4\xba\xac", false, 0, true);
  f.xid = 752;
  f.commit_lsn = 0x16B5000;
  return seal(w, f);
}

constexpr Vector kVectors[] = {
    {"keepalive", "many-tenants frame outside a transaction: one KEEPALIVE", build_keepalive},
    {"relations",
     "many-tenants frame of transaction 750: RELATION public.orders (tenant column 0) and "
     "ref.countries (no tenant column)",
     build_relations},
    {"tenant42_txn",
     "tenant \"42\", the whole of its part of transaction 750 in one uncompressed frame: BEGIN, "
     "INSERT, UPDATE (unchanged TOAST), UPDATE with old key, DELETE, COMMIT",
     build_tenant42_txn},
    {"acme_part0_lz4",
     "tenant \"acme\", frame 0 (not last) of transaction 750: BEGIN and 40 INSERTs, "
     "LZ4-compressed",
     build_acme_part0_lz4},
    {"acme_part1_last",
     "tenant \"acme\", frame 1 (LAST) of transaction 750: DELETE, TENANT_MOVED, COMMIT; "
     "LZ4-compressed (LZ4 saves more than an eighth even on this small payload)",
     build_acme_part1_last},
    {"truncate",
     "many-tenants frame of transaction 751: BEGIN, TRUNCATE of two tables (CASCADE, RESTART "
     "IDENTITY), COMMIT; LZ4-compressed",
     build_truncate},
    {"schema_change",
     "many-tenants frame of transaction 753: REWRITE of public.orders, then its RELATION with "
     "ATTRIBUTES (note dropped: attnum 3 gone; status added with the missing value 'new'; amount "
     "retyped)",
     build_schema_change},
    {"unicode_tenant",
     "text tenant \"caf\xc3\xa9-\xe6\x9d\xb1\xe4\xba\xac\" (UTF-8): INSERT with text needing JSON "
     "escapes, invalid UTF-8, and binary bytes; LZ4 would save too little, stored raw",
     build_unicode_tenant},
};

// Reads a whole file ("" if it cannot be read).
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Writes a whole file.
void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

// JSON rendering of a single-frame vector (what edgeshard-dump prints for its file).
std::string render(const std::string& bytes) {
  Reader reader;
  const Status st =
      reader.open(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  EXPECT_TRUE(st.ok()) << st.message;
  std::string out;
  if (st.ok()) {
    EXPECT_TRUE(append_frame_json(out, reader).ok());
  }
  return out;
}

// testdata/README.md, generated from the table above so it cannot drift.
std::string readme() {
  std::string s =
      "# Frame test vectors\n\n"
      "Frames in the format of `common/FORMAT.md`, generated and pinned byte for byte by\n"
      "`common/tests/frame_vectors_test.cpp` (do not edit by hand). Each `NAME.frame` holds one\n"
      "frame; `NAME.json` is its rendering by `edgeshard-dump NAME.frame`. Transaction 750 "
      "commits\n"
      "at LSN 0/16B3900, 2024-05-01T12:00:00.123456Z; relation 16384 is public.orders.\n\n"
      "`v1_*.frame` are frames of format version 1 (no ATTRIBUTES), kept as they were written "
      "to pin\nthat readers still accept them.\n\n"
      "| file | holds |\n|---|---|\n";
  for (const Vector& v : kVectors) {
    s += "| `";
    s += v.name;
    s += ".frame` | ";
    s += v.description;
    s += " |\n";
  }
  return s;
}

// Index of the first byte where a and b differ (or the shorter length).
size_t first_difference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

TEST(FrameVectors, CheckedInFilesMatchTheWriter) {
  const std::string dir = EDGESHARD_TESTDATA_DIR;
  const bool regenerate = std::getenv("EDGESHARD_REGENERATE_TESTDATA") != nullptr;
  for (const Vector& v : kVectors) {
    const std::string frame = v.build();
    const std::string json = render(frame);
    const std::string base = dir + "/" + v.name;
    if (regenerate) {
      write_file(base + ".frame", frame);
      write_file(base + ".json", json);
      continue;
    }
    const std::string pinned = read_file(base + ".frame");
    EXPECT_EQ(pinned.size(), frame.size()) << v.name;
    EXPECT_EQ(first_difference(pinned, frame), frame.size()) << v.name << ": bytes differ";
    EXPECT_EQ(read_file(base + ".json"), json) << v.name;
  }
  if (regenerate) {
    write_file(dir + "/README.md", readme());
  } else {
    EXPECT_EQ(read_file(dir + "/README.md"), readme());
  }
}

TEST(FrameVectors, Version1FramesStillRead) {
  // Frames written by version 1 writers (no ATTRIBUTES): read and rendered as before.
  const std::string dir = EDGESHARD_TESTDATA_DIR;
  for (const char* name : {"v1_relations", "v1_tenant42_txn"}) {
    const std::string frame = read_file(dir + "/" + name + ".frame");
    ASSERT_FALSE(frame.empty()) << name;
    EXPECT_EQ(static_cast<uint8_t>(frame[kOffVersion]), 1) << name;
    EXPECT_EQ(render(frame), read_file(dir + "/" + name + ".json")) << name;
  }
}

TEST(FrameVectors, CoverTheirClaims) {
  Reader reader;
  int compressed = 0, kinds_seen = 0;
  bool seen[std::variant_size_v<Message>] = {};
  for (const Vector& v : kVectors) {
    const std::string frame = v.build();
    ASSERT_TRUE(
        reader.open(std::span(reinterpret_cast<const uint8_t*>(frame.data()), frame.size())).ok());
    compressed += reader.header().compressed;
    MessageCursor cursor = reader.messages();
    Message m;
    while (cursor.next(m)) seen[m.index()] = true;
    ASSERT_TRUE(cursor.status().ok());
  }
  for (bool s : seen) kinds_seen += s;
  EXPECT_EQ(kinds_seen, static_cast<int>(std::variant_size_v<Message>));  // every message kind
  EXPECT_GT(compressed, 0);  // both stored forms are pinned
  EXPECT_LT(compressed, static_cast<int>(std::size(kVectors)));
}

}  // namespace
}  // namespace edgeshard::frame

// The C API of libedgeshard_reader over a replica built with the writer: lookups by text keys,
// typed accessors, JSON, scans by key prefix, freshness, wait_for, errors with messages.
#include "edge_apply/edgeshard_reader.h"

#include "edge_apply/key_codec.hpp"
#include "edge_apply/manifest.hpp"
#include "edge_apply/replica_file.hpp"
#include "edge_apply/tenant_replica.hpp"
#include "edge_apply/tuple.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <map>
#include <string>
#include <vector>

namespace edgeshard::apply {
namespace {

namespace fs = std::filesystem;

// Big-endian bytes of v (PostgreSQL's send format of integers).
std::string be(uint64_t v, int bytes) {
  std::string s;
  for (int i = bytes - 1; i >= 0; --i) s += static_cast<char>(v >> (8 * i));
  return s;
}

// A temporary data directory holding tenant "acme" with table orders(tenant_id int8, id int4,
// note text, paid bool), ids 1..50 (note NULL for id 7), published with s1 applied to 0/5000.
class ReaderApiTest : public testing::Test {
 protected:
  // Builds the replica.
  void SetUp() override {
    std::string tmpl = (fs::path(testing::TempDir()) / "reader_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    data_ = tmpl;
    const fs::path dir = tenant_dir(data_, "acme");
    fs::create_directories(dir);
    replica::Table t;
    t.table_no = 1;
    t.schema = "public";
    t.name = "orders";
    t.columns = {{"tenant_id", 20, -1, true}, {"id", 23, -1, true}, {"note", 25, -1, false}, {"paid", 16, -1, false}};
    std::vector<frame::Column> cols = {{"tenant_id", 20, -1, true}, {"id", 23, -1, true}, {"note", 25, -1, false},
                                       {"paid", 16, -1, false}};
    std::map<std::string, std::string> rows;
    for (int id = 1; id <= 50; ++id) {
      const std::string tid = be(7, 8), sid = be(static_cast<uint64_t>(id), 4);
      const std::string note = "note " + std::to_string(id);
      const std::string paid(1, id % 2 == 0 ? 1 : 0);
      std::vector<frame::Value> values = {{frame::ValueKind::kBinary, tid}, {frame::ValueKind::kBinary, sid},
                                          {id == 7 ? frame::ValueKind::kNull : frame::ValueKind::kBinary,
                                           id == 7 ? std::string_view() : std::string_view(note)},
                                          {frame::ValueKind::kBinary, paid}};
      std::string key;
      ASSERT_TRUE(encode_row_key(key, cols, values).ok());
      std::string tuple;
      append_tuple(tuple, values);
      rows[key] = tuple;
    }
    replica::Writer w;
    ASSERT_TRUE(w.create((dir / "base").string(), {}).ok());
    ASSERT_TRUE(w.add_table(t).ok());
    for (const auto& [k, v] : rows) ASSERT_TRUE(w.add(1, k, v).ok());
    ASSERT_TRUE(w.finish().ok());
    Manifest m;
    m.generation = 1;
    m.tenant = "acme";
    m.published = true;
    m.shards = {{"s1", 0x5000, 1700000000000000, 0x6000, 1700000002000000}};
    m.files = {{FileKind::kBase, "base", 50, 0}};
    std::string why;
    ASSERT_TRUE(write_manifest(dir, m, why)) << why;
    ASSERT_TRUE(head_.open(dir, why)) << why;
    head_.publish(1);
    ASSERT_EQ(es_open(data_.c_str(), "acme", &r_), ES_OK) << es_last_error(r_);
  }
  // Closes and removes everything.
  void TearDown() override {
    es_close(r_);
    std::error_code ec;
    fs::remove_all(data_, ec);
  }

  std::string data_;
  HeadWriter head_;
  es_replica* r_ = nullptr;
};

TEST_F(ReaderApiTest, GetsRowsByTextKeysWithTypedAccessors) {
  const char* key[] = {"7", "12"};
  es_row* row = nullptr;
  ASSERT_EQ(es_get(r_, "orders", key, 2, &row), ES_OK) << es_last_error(r_);
  ASSERT_EQ(es_row_column_count(row), 4u);
  EXPECT_STREQ(es_row_column_name(row, 2), "note");
  EXPECT_EQ(es_row_column_type(row, 1), 23u);
  int64_t id = 0;
  int is_null = -1;
  EXPECT_EQ(es_row_int64(row, "id", &id, &is_null), ES_OK);
  EXPECT_EQ(id, 12);
  EXPECT_EQ(is_null, 0);
  const char* text = nullptr;
  size_t len = 0;
  EXPECT_EQ(es_row_text(row, "note", &text, &len, &is_null), ES_OK);
  EXPECT_EQ(std::string(text, len), "note 12");
  int paid = -1;
  EXPECT_EQ(es_row_bool(row, "paid", &paid, nullptr), ES_OK);
  EXPECT_EQ(paid, 1);
  EXPECT_EQ(es_row_int64(row, "note", &id, nullptr), ES_INVALID) << "type mismatch";
  EXPECT_EQ(es_row_int64(row, "nope", &id, nullptr), ES_NOT_FOUND);
  const char* v = nullptr;
  EXPECT_EQ(es_row_value_text(row, "tenant_id", &v, nullptr), ES_OK);
  EXPECT_STREQ(v, "7");
  EXPECT_STREQ(es_row_json(row), R"({"tenant_id":7,"id":12,"note":"note 12","paid":true})");
  es_row_free(row);

  const char* null_key[] = {"7", "7"};
  ASSERT_EQ(es_get(r_, "public.orders", null_key, 2, &row), ES_OK);
  EXPECT_EQ(es_row_text(row, "note", &text, &len, &is_null), ES_OK);
  EXPECT_EQ(is_null, 1);
  es_row_free(row);
}

TEST_F(ReaderApiTest, ReportsMissingRowsTablesAndBadKeys) {
  es_row* row = nullptr;
  const char* absent[] = {"7", "99"};
  EXPECT_EQ(es_get(r_, "orders", absent, 2, &row), ES_NOT_FOUND);
  EXPECT_EQ(row, nullptr);
  EXPECT_EQ(es_get(r_, "invoices", absent, 2, &row), ES_NO_TABLE);
  EXPECT_NE(std::string(es_last_error(r_)).find("invoices"), std::string::npos);
  const char* one[] = {"7"};
  EXPECT_EQ(es_get(r_, "orders", one, 1, &row), ES_INVALID);
  EXPECT_NE(std::string(es_last_error(r_)).find("2 key columns"), std::string::npos) << es_last_error(r_);
  const char* bad[] = {"seven", "1"};
  EXPECT_EQ(es_get(r_, "orders", bad, 2, &row), ES_INVALID);
  es_replica* none = nullptr;
  EXPECT_EQ(es_open(data_.c_str(), "nobody", &none), ES_NOT_PUBLISHED);
  EXPECT_NE(std::string(es_last_error(none)), "");
  // Waiting for a tenant not here (yet) waits, then times out saying so.
  EXPECT_EQ(es_wait_for(none, "s1/0/10", 20), ES_TIMEOUT);
  EXPECT_NE(std::string(es_last_error(none)).find("no replica here"), std::string::npos) << es_last_error(none);
  es_close(none);
}

TEST_F(ReaderApiTest, ScansByKeyPrefixInKeyOrder) {
  std::vector<int64_t> ids;
  auto collect = [](const es_row* row, void* ctx) -> int {
    int64_t id = 0;
    es_row_int64(row, "id", &id, nullptr);
    static_cast<std::vector<int64_t>*>(ctx)->push_back(id);
    return 1;
  };
  const char* from[] = {"7", "9"};
  const char* to[] = {"7", "13"};
  ASSERT_EQ(es_scan(r_, "orders", from, 2, to, 2, collect, &ids), ES_OK) << es_last_error(r_);
  EXPECT_EQ(ids, (std::vector<int64_t>{9, 10, 11, 12}));
  ids.clear();
  const char* tenant[] = {"7"};
  ASSERT_EQ(es_scan(r_, "orders", tenant, 1, nullptr, 0, collect, &ids), ES_OK);
  EXPECT_EQ(ids.size(), 50u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 50);
}

TEST_F(ReaderApiTest, FreshnessAndWaitFor) {
  es_freshness f[4];
  ASSERT_EQ(es_freshness_get(r_, f, 4), 1u);
  EXPECT_STREQ(f[0].shard, "s1");
  EXPECT_EQ(f[0].applied_lsn, 0x5000u);
  EXPECT_EQ(f[0].upstream_lsn, 0x6000u);
  EXPECT_DOUBLE_EQ(f[0].seconds_behind, 2.0);
  EXPECT_EQ(es_wait_for(r_, "s1/0/5000", 0), ES_OK);
  EXPECT_EQ(es_wait_for(r_, "s1/0/5001", 10), ES_TIMEOUT);
  EXPECT_EQ(es_wait_for(r_, "garbage", 10), ES_INVALID);
  EXPECT_EQ(es_verify(r_), ES_OK);
}

TEST_F(ReaderApiTest, TheCacheCanBeResized) {
  EXPECT_EQ(es_set_cache_bytes(r_, 0), ES_INVALID);
  ASSERT_EQ(es_set_cache_bytes(r_, size_t{1} << 20), ES_OK);
  const char* key[] = {"7", "3"};
  es_row* row = nullptr;
  ASSERT_EQ(es_get(r_, "orders", key, 2, &row), ES_OK);
  es_row_free(row);
}

}  // namespace
}  // namespace edgeshard::apply

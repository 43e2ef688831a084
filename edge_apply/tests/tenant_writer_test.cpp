// TenantWriter: frame groups applied, flushed and read back through TenantReplica; refusals,
// idempotence after reopen, crash leftovers, TRUNCATE, schema change, compaction, and a random
// workload against a std::map model.
#include "edge_apply/key_codec.hpp"
#include "edge_apply/tenant_writer.hpp"

#include "common/frame_writer.hpp"
#include "common/posix_file.hpp"
#include "edge_apply/tenant_replica.hpp"
#include "edge_apply/value_codec.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <thread>

namespace edgeshard::apply {
namespace {

namespace fs = std::filesystem;

// A temporary data directory.
struct TempDir {
  fs::path path;
  // Creates it.
  TempDir() {
    std::string tmpl = (fs::path(testing::TempDir()) / "twriter_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  // Removes it.
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

constexpr uint32_t kOrders = 100;  // public.orders (id int8 key, note text[, extra text])
constexpr uint32_t kItems = 200;   // public.items (id int8 key, note text)
const std::string kTenant = "acme";

// One value of a row: NULL, text, or an unchanged TOASTed value.
struct V {
  enum Kind { kNull, kText, kToast } kind = kNull;
  std::string text;
};
V T(std::string s) { return {V::kText, std::move(s)}; }
const V kNullV{V::kNull, {}};
const V kToastV{V::kToast, {}};

// One change of a transaction.
struct Change {
  char op = 'I';  // I, U, D
  uint32_t relid = kOrders;
  int64_t id = 0;
  std::vector<V> cols;            // non-key columns (I, U)
  std::optional<int64_t> old_id;  // U: the key changed from old_id

  // A change of row `id` of relid.
  Change(char op_, uint32_t relid_, int64_t id_, std::vector<V> cols_ = {},
         std::optional<int64_t> old_id_ = std::nullopt)
      : op(op_), relid(relid_), id(id_), cols(std::move(cols_)), old_id(old_id_) {}
};

// Writes an int8 id as its binary send format.
void put_id(frame::Writer& w, int64_t id) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i)
    b[i] = static_cast<uint8_t>(static_cast<uint64_t>(id) >> (56 - 8 * i));
  w.value_binary(b, 8);
}

// Writes the non-key values of a row.
void put_cols(frame::Writer& w, const std::vector<V>& cols) {
  for (const V& v : cols) {
    if (v.kind == V::kNull)
      w.value_null();
    else if (v.kind == V::kToast)
      w.value_unchanged_toast();
    else
      w.value_binary(v.text.data(), v.text.size());
  }
}

// The frames of one transaction's group for `tenant`, cut after every `per_frame` changes.
std::vector<std::vector<uint8_t>> make_group(uint64_t lsn, const std::vector<Change>& changes,
                                             size_t per_frame = 1000,
                                             const std::string& tenant = kTenant) {
  std::vector<std::vector<uint8_t>> out;
  frame::Writer w(frame::Compression::kLz4);
  w.begin(9, lsn, 1000 + static_cast<int64_t>(lsn));
  uint32_t seq = 0;
  auto seal = [&](bool last) {
    frame::Fields f;
    f.tenant_key = tenant;
    f.last = last;
    f.xid = 9;
    f.sequence = seq++;
    f.first_lsn = f.last_lsn = lsn - 1;
    f.commit_lsn = lsn;
    f.commit_time_us = 1000 + static_cast<int64_t>(lsn);
    auto bytes = w.seal(f);
    out.emplace_back(bytes.begin(), bytes.end());
  };
  for (size_t i = 0; i < changes.size(); ++i) {
    const Change& c = changes[i];
    if (c.op == 'I') {
      w.insert_begin(c.relid, static_cast<uint32_t>(1 + c.cols.size()));
      put_id(w, c.id);
      put_cols(w, c.cols);
    } else if (c.op == 'U') {
      w.update_begin(c.relid);
      if (c.old_id) {
        w.update_old_key(1);
        put_id(w, *c.old_id);
      }
      w.update_new_tuple(static_cast<uint32_t>(1 + c.cols.size()));
      put_id(w, c.id);
      put_cols(w, c.cols);
    } else {
      w.delete_begin(c.relid, 1);
      put_id(w, c.id);
    }
    if ((i + 1) % per_frame == 0 && i + 1 < changes.size()) seal(false);
  }
  w.commit(lsn, lsn + 8, 1000 + static_cast<int64_t>(lsn));
  seal(true);
  return out;
}

// Spans over frames, as apply_group takes them.
std::vector<std::span<const uint8_t>> spans(const std::vector<std::vector<uint8_t>>& frames) {
  return {frames.begin(), frames.end()};
}

// One text column of describe_numbered(): name, attribute number, missing value (none when null).
struct TextColumn {
  std::string name;
  uint32_t attnum = 0;
  const char* missing = nullptr;
};

// Describes relid as a version-2 stream does (identities and missing values), taking effect at
// stream point `at`: an int8 key "id" (attnum 1), then text columns; as a version-1 stream does
// (no identities) when the text columns have attnum 0.
void describe_numbered(RelationMap& rels, uint32_t relid, const std::string& name,
                       const std::vector<TextColumn>& text_columns, StreamPoint at) {
  std::vector<frame::Column> cols = {{"id", 20, -1, true}};
  cols[0].attnum = !text_columns.empty() && text_columns[0].attnum != 0 ? 1 : 0;
  for (const TextColumn& c : text_columns) {
    frame::Column fc{c.name, 25, -1, false};
    fc.attnum = c.attnum;
    if (c.missing != nullptr) {
      fc.has_missing = true;
      fc.missing_kind = frame::ValueKind::kBinary;
      fc.missing = c.missing;
    }
    cols.push_back(fc);
  }
  frame::Writer w(frame::Compression::kNone);
  w.relation(relid, "public", name, cols, -1);
  frame::Fields f;
  f.many_tenants = true;
  f.last = true;
  auto bytes = w.seal(f);
  frame::Reader r;
  ASSERT_TRUE(r.open(bytes).ok());
  frame::MessageCursor cur = r.messages();
  frame::Message m;
  ASSERT_TRUE(cur.next(m));
  rels.update(std::get<frame::Relation>(m), at);
}

// Records a RELATION (id int8 key, then text columns named extra_names) in rels.
void describe(RelationMap& rels, uint32_t relid, const std::string& name,
              const std::vector<std::string>& text_columns) {
  std::vector<TextColumn> cols;
  for (const std::string& n : text_columns) cols.push_back({n});
  describe_numbered(rels, relid, name, cols, {});
}

// Content of a table as rows id -> texts of the other columns ("NULL" for NULL).
using Content = std::map<int64_t, std::vector<std::string>>;

// Reads a table through a fresh TenantReplica (empty when the table is absent).
Content read_table(const fs::path& data, const std::string& table) {
  TenantReplica rep;
  ReplicaStatus st = rep.open(data, kTenant);
  EXPECT_TRUE(st.ok()) << st.message;
  Content out;
  if (!st.ok()) return out;
  const TableView* t = rep.table(table);
  if (t == nullptr) return out;
  replica::BlockCache cache;
  st = rep.scan(*t, "", std::nullopt, cache, [&](const RowRef& row) {
    std::vector<frame::Column> cols;
    for (const replica::Column& c : *row.columns)
      cols.push_back({c.name, c.type_oid, c.typmod, c.key});
    RowView v;
    EXPECT_TRUE(v.parse(cols, row.tuple).ok());
    int64_t id = 0;
    EXPECT_TRUE(v.get_int64(0, id).ok());
    std::vector<std::string> texts;
    for (size_t i = 1; i < v.size(); ++i) {
      std::string s;
      if (v.is_null(i))
        s = "NULL";
      else
        EXPECT_TRUE(v.append_text(i, s).ok());
      texts.push_back(s);
    }
    out[id] = texts;
    return true;
  });
  EXPECT_TRUE(st.ok()) << st.message;
  return out;
}

class TenantWriterTest : public testing::Test {
 protected:
  // Describes both tables and opens the writer.
  void SetUp() override {
    describe(rels_, kOrders, "orders", {"note"});
    describe(rels_, kItems, "items", {"note"});
    reopen();
  }
  // Reopens the writer, as a restart does.
  void reopen(TenantWriter::Options o = {}) {
    w_ = std::make_unique<TenantWriter>();
    WriterStatus st = w_->open(data_.path, kTenant, o);
    ASSERT_TRUE(st.ok()) << st.message;
  }
  // Applies one group; expects success.
  void apply(uint64_t lsn, const std::vector<Change>& changes, size_t per_frame = 1000) {
    auto frames = make_group(lsn, changes, per_frame);
    auto sp = spans(frames);
    WriterStatus st = w_->apply_group("s1", rels_, sp);
    ASSERT_TRUE(st.ok()) << st.message;
  }
  // Flushes; expects success.
  void flush() {
    WriterStatus st = w_->flush();
    ASSERT_TRUE(st.ok()) << st.message;
  }
  // Content of public.orders as readers see it.
  Content orders() { return read_table(data_.path, "public.orders"); }

  TempDir data_;
  RelationMap rels_;
  std::unique_ptr<TenantWriter> w_;
};

TEST_F(TenantWriterTest, NewTenantHasEmptyPublishedManifest) {
  EXPECT_TRUE(fs::exists(w_->dir() / "manifest"));
  EXPECT_TRUE(fs::exists(w_->dir() / "head"));
  EXPECT_TRUE(w_->manifest().published);
  EXPECT_TRUE(w_->manifest().files.empty());
  EXPECT_EQ(w_->applied("s1"), 0u);
  EXPECT_TRUE(orders().empty());
  // Nothing changed: no new manifest.
  const uint64_t g = w_->manifest().generation;
  flush();
  EXPECT_EQ(w_->manifest().generation, g);
}

TEST_F(TenantWriterTest, InitialCopyUnpublishedUntilSetAndKeepsPositions) {
  // A new tenant opened for a copy starts unpublished: readers refuse it.
  fs::remove_all(w_->dir());
  TenantWriter::Options o;
  o.start_published = false;
  reopen(o);
  EXPECT_FALSE(w_->manifest().published);
  TenantReplica rep;
  EXPECT_FALSE(rep.open(data_.path, kTenant).ok());
  // Copy groups are upserts that move no position; a second copy group of the same table adds.
  auto copy1 = make_group(0, {{'I', kOrders, 1, {T("one")}}, {'I', kOrders, 2, {T("two")}}});
  auto copy2 = make_group(0, {{'I', kOrders, 3, {T("three")}}, {'I', kOrders, 2, {T("deux")}}});
  ASSERT_TRUE(w_->apply_copy(rels_, spans(copy1)).ok());
  ASSERT_TRUE(w_->apply_copy(rels_, spans(copy2)).ok());
  EXPECT_EQ(w_->pending_position("s1"), 0u);
  // The stream on top: a group at 500 applies (nothing was skipped because of the copy).
  apply(500, {{'D', kOrders, 3, {}}, {'U', kOrders, 1, {T("uno")}}});
  flush();
  EXPECT_FALSE(w_->manifest().published);
  EXPECT_FALSE(rep.open(data_.path, kTenant).ok());
  // A crash before publication leaves an unpublished manifest: reopening keeps it unpublished.
  reopen();
  EXPECT_FALSE(w_->manifest().published);
  w_->set_published(true);
  flush();
  EXPECT_TRUE(w_->manifest().published);
  EXPECT_EQ(orders(), (Content{{1, {"uno"}}, {2, {"deux"}}}));
  EXPECT_EQ(w_->applied("s1"), 508u);  // the commit record's end
  // A copy group must still be one well-formed group of this tenant.
  auto other = make_group(0, {{'I', kOrders, 9, {T("x")}}}, 1000, "other");
  EXPECT_EQ(w_->apply_copy(rels_, spans(other)).kind, WriterStatus::kBadGroup);
}

TEST_F(TenantWriterTest, ShardPositionFileMovesQuietTenantsForward) {
  apply(100, {{'I', kOrders, 1, {T("one")}}});
  flush();
  EXPECT_EQ(w_->applied("s1"), 108u);  // the commit record's end (commit 100, end 108)
  TenantReplica rep;
  ASSERT_TRUE(rep.open(data_.path, kTenant).ok());
  std::vector<ShardPosition> fresh;
  ASSERT_TRUE(rep.freshness(fresh).ok());
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].applied, 108u);  // no shard file yet: the manifest's position
  EXPECT_EQ(rep.wait_for("s1/0/1F4", std::chrono::milliseconds(1)).kind, ReplicaStatus::kTimeout);
  // The daemon publishes the shard's position after a flush round: quiet tenants follow.
  ShardPositionWriter pos;
  std::string why;
  ASSERT_TRUE(pos.open(data_.path, "s1", why)) << why;
  pos.publish({500, 520, 7000});
  ASSERT_TRUE(rep.freshness(fresh).ok());
  EXPECT_EQ(fresh[0].applied, 500u);
  EXPECT_EQ(fresh[0].upstream, 520u);
  EXPECT_EQ(fresh[0].upstream_time_us, 7000);
  EXPECT_TRUE(rep.wait_for("s1/0/1F4", std::chrono::milliseconds(1)).ok());
  EXPECT_EQ(w_->manifest().shards[0].applied, 108u);  // no manifest was written for it
  // Positions never go back; a second writer (a restart) reads the last one.
  pos.publish({400, 0, 0});
  ShardPositionWriter again;
  ASSERT_TRUE(again.open(data_.path, "s1", why)) << why;
  EXPECT_EQ(again.last().position, 500u);
  // A shard the manifest does not list yet: the file alone answers a bookmark.
  ShardPositionWriter s2;
  ASSERT_TRUE(s2.open(data_.path, "s2", why)) << why;
  EXPECT_EQ(rep.wait_for("s2/0/10", std::chrono::milliseconds(1)).kind, ReplicaStatus::kInvalid);
  s2.publish({0x20, 0, 0});
  EXPECT_TRUE(rep.wait_for("s2/0/10", std::chrono::milliseconds(1)).ok());
  // A broken tenant: only its manifest speaks for it.
  std::ofstream(w_->dir() / "broken") << "apply_group: test\n";
  apply(600, {{'I', kOrders, 2, {T("two")}}});
  flush();  // new generation: the reader reloads and sees the marker
  ASSERT_TRUE(rep.freshness(fresh).ok());
  EXPECT_EQ(fresh[0].applied, 608u);
  pos.publish({900, 0, 0});
  ASSERT_TRUE(rep.freshness(fresh).ok());
  EXPECT_EQ(fresh[0].applied, 608u);
}

TEST(ShardPositionFile, RefusesForeignFilesAndReadsConsistently) {
  TempDir dir;
  std::string why;
  ShardPositionReader r;
  EXPECT_FALSE(r.open(dir.path, "s1", why));
  fs::create_directories(dir.path / "shards");
  std::ofstream(shard_position_path(dir.path, "s1")) << std::string(64, 'x');
  EXPECT_FALSE(r.open(dir.path, "s1", why));
  EXPECT_NE(why.find("not a version 1 shard position file"), std::string::npos) << why;
  ShardPositionWriter w;
  EXPECT_FALSE(w.open(dir.path, "s1", why));
  fs::remove(shard_position_path(dir.path, "s1"));
  ASSERT_TRUE(w.open(dir.path, "s1", why)) << why;
  ASSERT_TRUE(r.open(dir.path, "s1", why)) << why;
  // A writer thread publishing increasing triples; the reader never sees a mixed one.
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (uint64_t i = 1; i <= 200000; ++i) w.publish({i, i * 2, static_cast<int64_t>(i * 3)});
    done = true;
  });
  uint64_t last = 0, reads = 0;
  while (!done.load()) {
    const ShardProgress p = r.read();
    ASSERT_EQ(p.upstream, p.position * 2);
    ASSERT_EQ(p.upstream_time_us, static_cast<int64_t>(p.position * 3));
    ASSERT_GE(p.position, last);
    last = p.position;
    ++reads;
  }
  writer.join();
  EXPECT_EQ(r.read().position, 200000u);
  EXPECT_GT(reads, 0u);
}

TEST_F(TenantWriterTest, InsertUpdateDelete) {
  apply(100, {{'I', kOrders, 1, {T("one")}},
              {'I', kOrders, 2, {T("two")}},
              {'I', kOrders, 3, {kNullV}},
              {'I', kItems, 1, {T("item")}}});
  EXPECT_TRUE(orders().empty());  // not flushed: invisible
  flush();
  EXPECT_EQ(orders(), (Content{{1, {"one"}}, {2, {"two"}}, {3, {"NULL"}}}));
  EXPECT_EQ(read_table(data_.path, "public.items"), (Content{{1, {"item"}}}));
  EXPECT_EQ(w_->applied("s1"), 108u);  // the commit record's end (commit 100, end 108)
  apply(200,
        {{'U', kOrders, 1, {T("uno")}}, {'D', kOrders, 2, {}}, {'I', kOrders, 4, {T("four")}}});
  apply(210, {{'D', kOrders, 4, {}}});
  w_->advance("s1", 300, 5000, 320, 6000);
  flush();
  EXPECT_EQ(orders(), (Content{{1, {"uno"}}, {3, {"NULL"}}}));
  EXPECT_EQ(w_->applied("s1"), 300u);
  ASSERT_EQ(w_->manifest().shards.size(), 1u);
  EXPECT_EQ(w_->manifest().shards[0].upstream, 320u);
  EXPECT_EQ(w_->manifest().files.size(), 2u);
}

TEST_F(TenantWriterTest, KeyChangingUpdateTombstonesOldKey) {
  apply(100, {{'I', kOrders, 1, {T("one")}}});
  flush();
  apply(200, {{'U', kOrders, 10, {T("ten")}, 1}});
  flush();
  EXPECT_EQ(orders(), (Content{{10, {"ten"}}}));
}

TEST_F(TenantWriterTest, UnchangedToastTakesOldValue) {
  describe(rels_, kOrders, "orders", {"note", "big"});
  apply(100, {{'I', kOrders, 1, {T("a"), T(std::string(5000, 'x'))}}});
  flush();
  // From a flushed row.
  apply(200, {{'U', kOrders, 1, {T("b"), kToastV}}});
  // From a pending row, with a key change.
  apply(300, {{'U', kOrders, 2, {kToastV, kToastV}, 1}});
  flush();
  EXPECT_EQ(orders(), (Content{{2, {"b", std::string(5000, 'x')}}}));
  // Old row missing: refused, nothing applied.
  auto frames =
      make_group(400, {{'I', kOrders, 7, {T("x"), T("y")}}, {'U', kOrders, 9, {T("c"), kToastV}}});
  auto sp = spans(frames);
  WriterStatus st = w_->apply_group("s1", rels_, sp);
  EXPECT_EQ(st.kind, WriterStatus::kMissingRow) << st.message;
  EXPECT_FALSE(w_->has_pending());
  EXPECT_EQ(w_->pending_position("s1"), 308u);
}

TEST_F(TenantWriterTest, TransactionSplitIntoFrames) {
  std::vector<Change> changes;
  for (int i = 0; i < 10; ++i)
    changes.push_back({'I', kOrders, i, {T(std::to_string(i).insert(0, 1, 'v'))}});
  auto frames = make_group(100, changes, 3);
  ASSERT_EQ(frames.size(), 4u);
  auto sp = spans(frames);
  ASSERT_TRUE(w_->apply_group("s1", rels_, sp).ok());
  flush();
  EXPECT_EQ(orders().size(), 10u);
}

TEST_F(TenantWriterTest, BrokenGroupsAreRefusedWhole) {
  std::vector<Change> changes;
  for (int i = 0; i < 6; ++i) changes.push_back({'I', kOrders, i, {T("v")}});
  auto frames = make_group(100, changes, 2);  // 3 frames
  ASSERT_EQ(frames.size(), 3u);
  auto refuse = [&](std::vector<std::vector<uint8_t>> fs_, WriterStatus::Kind kind) {
    auto sp = spans(fs_);
    WriterStatus st = w_->apply_group("s1", rels_, sp);
    EXPECT_EQ(st.kind, kind) << st.message;
    EXPECT_FALSE(w_->has_pending());
  };
  refuse({frames[0], frames[1]}, WriterStatus::kBadGroup);             // no LAST
  refuse({frames[0], frames[2]}, WriterStatus::kBadGroup);             // gap
  refuse({frames[1], frames[0], frames[2]}, WriterStatus::kBadGroup);  // order
  refuse({frames[0], frames[1], frames[2], make_group(100, changes)[0]}, WriterStatus::kBadGroup);
  refuse({make_group(100, changes, 1000, "other")}, WriterStatus::kBadGroup);  // other tenant
  auto other_txn = make_group(200, changes, 2);
  refuse({frames[0], other_txn[1], frames[2]}, WriterStatus::kBadGroup);
  // A later frame with an unknown relid: the earlier frames' rows do not stay.
  auto bad = make_group(300, {{'I', kOrders, 1, {T("v")}}, {'I', 999, 2, {T("v")}}}, 1);
  refuse(bad, WriterStatus::kBadMessage);
  auto corrupt = frames;
  corrupt[1][corrupt[1].size() - 1] ^= 1;
  refuse(corrupt, WriterStatus::kBadMessage);
  EXPECT_EQ(w_->pending_position("s1"), 0u);
  // The intact group still applies.
  auto sp = spans(frames);
  ASSERT_TRUE(w_->apply_group("s1", rels_, sp).ok());
  flush();
  EXPECT_EQ(orders().size(), 6u);
}

TEST_F(TenantWriterTest, ReapplyAfterReopenIsSkipped) {
  apply(100, {{'I', kOrders, 1, {T("one")}}});
  apply(200, {{'U', kOrders, 1, {T("two")}}});
  flush();
  reopen();
  EXPECT_EQ(w_->applied("s1"), 208u);
  bool skipped = false;
  auto g1 = make_group(100, {{'I', kOrders, 1, {T("one")}}});
  auto s1 = spans(g1);
  ASSERT_TRUE(w_->apply_group("s1", rels_, s1, &skipped).ok());
  EXPECT_TRUE(skipped);
  EXPECT_FALSE(w_->has_pending());
  auto g3 = make_group(300, {{'U', kOrders, 1, {T("three")}}});
  auto s3 = spans(g3);
  ASSERT_TRUE(w_->apply_group("s1", rels_, s3, &skipped).ok());
  EXPECT_FALSE(skipped);
  // The same group twice in a row: the second is skipped (<= last pending commit).
  ASSERT_TRUE(w_->apply_group("s1", rels_, s3, &skipped).ok());
  EXPECT_TRUE(skipped);
  flush();
  EXPECT_EQ(orders(), (Content{{1, {"three"}}}));
}

TEST_F(TenantWriterTest, CrashWithoutFlushLosesOnlyPending) {
  apply(100, {{'I', kOrders, 1, {T("one")}}});
  flush();
  apply(200, {{'I', kOrders, 2, {T("two")}}});
  w_.reset();  // crash: pending lost
  // A delta written but never listed (crash between rename and manifest), and a temp file.
  fs::path dir = tenant_dir(data_.path, kTenant);
  Manifest m;
  std::string why;
  ASSERT_TRUE(read_manifest(dir, m, why)) << why;
  ASSERT_EQ(m.files.size(), 1u);
  fs::copy_file(dir / m.files[0].name, dir / "delta-00000000000000ff.esr");
  std::ofstream(dir / "delta-0000000000000100.esr.tmp") << "junk";
  reopen();
  EXPECT_FALSE(fs::exists(dir / "delta-00000000000000ff.esr"));
  EXPECT_FALSE(fs::exists(dir / "delta-0000000000000100.esr.tmp"));
  EXPECT_EQ(orders(), (Content{{1, {"one"}}}));
  EXPECT_EQ(w_->applied("s1"), 108u);  // the commit record's end (commit 100, end 108)
  apply(200, {{'I', kOrders, 2, {T("two")}}});  // redelivered by the relay
  flush();
  EXPECT_EQ(orders(), (Content{{1, {"one"}}, {2, {"two"}}}));
}

// Replica files (base-/delta-) in the tenant's directory.
size_t replica_files(const fs::path& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    n += (name.starts_with("delta-") || name.starts_with("base-")) && name.ends_with(".esr");
  }
  return n;
}

// Gives the space back when a test ends, whatever happened.
struct SpaceBack {
  ~SpaceBack() { posix::set_write_budget(posix::kUnlimitedWrites); }
};

// The apply daemon's round (stage_flush, sync, publish_flush) on a disk that fills up: out of
// space while staging and while publishing, the old manifest stays the published one, the round
// is abandoned (the staged delta removed), the rows stay pending, more groups are applied, and
// the retry once there is room publishes everything, once.
TEST_F(TenantWriterTest, RoundOutOfSpaceKeepsTheOldManifestAndTheRetryPublishesEverything) {
  SpaceBack space_back;
  const fs::path dir = tenant_dir(data_.path, kTenant);
  apply(100, {{'I', kOrders, 1, {T("one")}}});
  flush();
  const uint64_t generation = w_->manifest().generation;
  const size_t files = replica_files(dir);
  apply(200, {{'I', kOrders, 2, {T(std::string(3000, 'x'))}}, {'U', kOrders, 1, {T("uno")}}});

  // The disk fills while the delta is written.
  posix::set_write_budget(100);
  bool wrote = false;
  WriterStatus st = w_->stage_flush(&wrote);
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(st.out_of_space()) << st.message;
  EXPECT_NE(st.message.find("No space left on device"), std::string::npos) << st.message;
  EXPECT_FALSE(wrote);
  w_->abandon_flush();
  EXPECT_TRUE(w_->has_pending());
  EXPECT_EQ(w_->manifest().generation, generation);
  EXPECT_EQ(replica_files(dir), files);
  EXPECT_EQ(orders(), (Content{{1, {"one"}}}));

  // Room for the delta, not for the manifest.
  posix::set_write_budget(posix::kUnlimitedWrites);
  ASSERT_TRUE(w_->stage_flush(&wrote).ok());
  EXPECT_TRUE(wrote);
  EXPECT_EQ(replica_files(dir), files + 1);
  posix::set_write_budget(10);
  st = w_->publish_flush();
  EXPECT_TRUE(st.out_of_space()) << st.message;
  w_->abandon_flush();
  EXPECT_EQ(replica_files(dir), files);  // the staged delta is gone, it was listed nowhere
  EXPECT_EQ(w_->manifest().generation, generation);
  EXPECT_EQ(orders(), (Content{{1, {"one"}}}));
  EXPECT_EQ(w_->applied("s1"), 108u);
  Manifest m;
  std::string why;
  ASSERT_TRUE(read_manifest(dir, m, why)) << why;
  EXPECT_EQ(m.generation, generation);

  // Still full: more changes are applied meanwhile (the writer is usable, not failed).
  apply(300, {{'D', kOrders, 2}, {'I', kOrders, 3, {T("three")}}});
  posix::set_write_budget(posix::kUnlimitedWrites);
  ASSERT_TRUE(w_->stage_flush(&wrote).ok());
  ASSERT_TRUE(w_->publish_flush().ok());
  EXPECT_FALSE(w_->has_pending());
  EXPECT_EQ(w_->manifest().generation, generation + 1);
  EXPECT_EQ(w_->applied("s1"), 308u);
  EXPECT_EQ(orders(), (Content{{1, {"uno"}}, {3, {"three"}}}));
  reopen();
  EXPECT_EQ(orders(), (Content{{1, {"uno"}}, {3, {"three"}}}));
  EXPECT_EQ(replica_files(dir), files + 1);
}

// flush() (used when a schema change splits the pending rows, and by initial copies) on a disk
// that fills at any byte: it fails out of space with the old manifest in place, or succeeds; the
// next flush with room publishes everything.
TEST_F(TenantWriterTest, FlushOutOfSpaceAtAnyByteLosesNothing) {
  SpaceBack space_back;
  Content want;
  uint64_t lsn = 100;
  int failures = 0;
  for (uint64_t budget : {0u, 1u, 40u, 200u, 700u, 2000u, 4000u, 9000u, 100000u}) {
    SCOPED_TRACE("budget " + std::to_string(budget));
    const int64_t id = static_cast<int64_t>(budget) + 10;
    apply(lsn, {{'I', kOrders, id, {T(std::string(500, 'a'))}}});
    want[id] = {std::string(500, 'a')};
    const Content before = orders();
    posix::set_write_budget(budget);
    WriterStatus st = w_->flush();
    posix::set_write_budget(posix::kUnlimitedWrites);
    if (!st.ok()) {
      ++failures;
      EXPECT_TRUE(st.out_of_space()) << st.message;
      EXPECT_EQ(orders(), before);
      EXPECT_TRUE(w_->has_pending());
      flush();
    }
    EXPECT_EQ(orders(), want);
    EXPECT_EQ(w_->applied("s1"), lsn + 8);
    lsn += 100;
  }
  EXPECT_GE(failures, 4);  // the small budgets did fail (the delta or the manifest)
  EXPECT_LT(failures, 9);  // and the large one did not
  reopen();
  EXPECT_EQ(orders(), want);
}

TEST_F(TenantWriterTest, CloseOnlyWhenIdleAndReopenCarriesOn) {
  EXPECT_TRUE(w_->idle());
  EXPECT_FALSE(w_->has_rows_from("s1"));
  apply(100, {{'I', kOrders, 1, {T("one")}}});
  EXPECT_FALSE(w_->idle());  // pending rows: the LRU must not close it
  EXPECT_TRUE(w_->has_rows_from("s1"));
  EXPECT_FALSE(w_->has_rows_from("s2"));
  flush();
  EXPECT_TRUE(w_->idle());
  w_->close();
  EXPECT_FALSE(w_->idle());  // closed: nothing to close again, nothing applies
  auto g = make_group(200, {{'I', kOrders, 2, {T("two")}}});
  auto sg = spans(g);
  EXPECT_FALSE(w_->apply_group("s1", rels_, sg).ok());
  EXPECT_EQ(orders(), (Content{{1, {"one"}}}));  // readers keep the published files
  ASSERT_TRUE(w_->open(data_.path, kTenant).ok());
  EXPECT_TRUE(w_->has_rows_from("s1"));  // from the manifest
  ASSERT_TRUE(w_->apply_group("s1", rels_, sg).ok());
  flush();
  EXPECT_EQ(orders(), (Content{{1, {"one"}}, {2, {"two"}}}));
}

TEST_F(TenantWriterTest, Truncate) {
  apply(100,
        {{'I', kOrders, 1, {T("one")}}, {'I', kOrders, 2, {T("two")}}, {'I', kItems, 1, {T("i")}}});
  flush();
  apply(200, {{'I', kOrders, 3, {T("three")}}});
  const uint32_t relids[] = {kOrders};
  ASSERT_TRUE(w_->apply_truncate("s1", rels_, relids, 300).ok());
  apply(400, {{'I', kOrders, 5, {T("five")}}});
  flush();
  EXPECT_EQ(orders(), (Content{{5, {"five"}}}));
  EXPECT_EQ(read_table(data_.path, "public.items"), (Content{{1, {"i"}}}));
  bool skipped = false;
  ASSERT_TRUE(w_->apply_truncate("s1", rels_, relids, 300, &skipped).ok());
  EXPECT_TRUE(skipped);
}

TEST_F(TenantWriterTest, SchemaChangeMidStream) {
  apply(100, {{'I', kOrders, 1, {T("one")}}});
  flush();
  apply(200, {{'I', kOrders, 2, {T("two")}}});            // pending with the old columns
  describe(rels_, kOrders, "orders", {"note", "extra"});  // ALTER TABLE ADD COLUMN (no default)
  apply(300, {{'I', kOrders, 3, {T("three"), T("x")}}});
  flush();
  // Schema on read: rows stored before the ADD COLUMN read the new column as NULL (its missing
  // value would be used if it had one); the pending old-shape row was re-encoded, so the newest
  // delta holds one description of the table.
  const Content after_add = {{1, {"one", "NULL"}}, {2, {"two", "NULL"}}, {3, {"three", "x"}}};
  EXPECT_EQ(orders(), after_add);
  EXPECT_EQ(w_->manifest().files.size(), 2u);
  // Files of both shapes merge into one base, the older rows re-encoded under the newest.
  bool compacted = false;
  ASSERT_TRUE(w_->compact(true, &compacted).ok());
  EXPECT_TRUE(compacted);
  ASSERT_EQ(w_->manifest().files.size(), 1u);
  EXPECT_EQ(w_->manifest().files[0].kind, FileKind::kBase);
  EXPECT_EQ(orders(), after_add);
  // More deltas, deleting a row the base holds, then a DROP COLUMN: the dropped column
  // disappears from every row, also from rows no later change touched.
  apply(400, {{'D', kOrders, 1, {}}, {'I', kOrders, 4, {T("four"), T("y")}}});
  flush();
  apply(500, {{'U', kOrders, 3, {T("drei"), T("z")}}});
  flush();
  describe(rels_, kOrders, "orders", {"extra"});  // ALTER TABLE DROP COLUMN note
  bool changed = false;
  ASSERT_TRUE(w_->apply_relation("s1", rels_.find(kOrders), 600, &changed).ok());
  EXPECT_TRUE(changed);
  EXPECT_TRUE(w_->has_pending());  // the new description, with no row
  flush();
  ASSERT_EQ(w_->manifest().files.size(), 4u);
  const Content want = {{2, {"NULL"}}, {3, {"z"}}, {4, {"y"}}};
  EXPECT_EQ(orders(), want);
  ASSERT_TRUE(w_->compact(true, &compacted).ok());
  EXPECT_TRUE(compacted);
  ASSERT_EQ(w_->manifest().files.size(), 1u);
  EXPECT_EQ(w_->manifest().files[0].kind, FileKind::kBase);
  EXPECT_EQ(w_->manifest().files[0].records, 3u);  // row 1's tombstone dropped
  EXPECT_EQ(orders(), want);
  reopen();
  EXPECT_EQ(orders(), want);
  // The same description again (a RELATION resent after a restart) changes nothing.
  ASSERT_TRUE(w_->apply_relation("s1", rels_.find(kOrders), 700, &changed).ok());
  EXPECT_FALSE(changed);
}

TEST_F(TenantWriterTest, ColumnsFollowedByIdentityThroughRenameDropAndAdd) {
  describe_numbered(rels_, kOrders, "orders", {{"note", 2}}, {100, 0});
  apply(100, {{'I', kOrders, 1, {T("one")}}, {'I', kOrders, 2, {T("two")}}});
  flush();
  // RENAME COLUMN note TO memo, ADD COLUMN status text DEFAULT 'new' (a missing value): old rows
  // keep their value under the new name and read 'new'.
  describe_numbered(rels_, kOrders, "orders", {{"memo", 2}, {"status", 3, "new"}}, {200, 0});
  bool changed = false;
  ASSERT_TRUE(w_->apply_relation("s1", rels_.find(kOrders), 200, &changed).ok());
  EXPECT_TRUE(changed);
  flush();
  EXPECT_EQ(orders(), (Content{{1, {"one", "new"}}, {2, {"two", "new"}}}));
  apply(300, {{'I', kOrders, 3, {T("three"), T("old")}}});
  flush();
  // DROP COLUMN memo, then ADD COLUMN memo (attnum 4, no default): the old values stay hidden.
  describe_numbered(rels_, kOrders, "orders", {{"status", 3, "new"}, {"memo", 4}}, {400, 0});
  ASSERT_TRUE(w_->apply_relation("s1", rels_.find(kOrders), 400, &changed).ok());
  flush();
  const Content want = {{1, {"new", "NULL"}}, {2, {"new", "NULL"}}, {3, {"old", "NULL"}}};
  EXPECT_EQ(orders(), want);
  bool compacted = false;
  ASSERT_TRUE(w_->compact(true, &compacted).ok());
  EXPECT_TRUE(compacted);
  EXPECT_EQ(orders(), want);
  // An older description received again (the stream resent after a restart) is ignored: the
  // tenant is past its transaction.
  ASSERT_TRUE(w_->apply_relation("s1", rels_.find(kOrders, {200, 0}), 200, &changed).ok());
  EXPECT_FALSE(changed);
  EXPECT_EQ(orders(), want);
}

TEST_F(TenantWriterTest, TransactionAlteringATableMidwayDecodesEachFrameWithItsColumns) {
  // One transaction (commit 0/500): a row under the old columns, ALTER TABLE ADD COLUMN, a row
  // under the new ones. The RELATION arrives (point 500/0x120) before the tenant's group is
  // complete; each frame of the group is decoded with the description in effect at its changes.
  describe_numbered(rels_, kOrders, "orders", {{"note", 2}}, {100, 0});
  describe_numbered(rels_, kOrders, "orders", {{"note", 2}, {"extra", 3, "d"}}, {0x500, 0x120});
  frame::Writer w(frame::Compression::kNone);
  std::vector<std::vector<uint8_t>> frames;
  auto seal = [&](uint32_t seq, uint64_t first, uint64_t last, bool is_last) {
    frame::Fields f;
    f.tenant_key = kTenant;
    f.commit_lsn = 0x500;
    f.first_lsn = first;
    f.last_lsn = last;
    f.sequence = seq;
    f.last = is_last;
    auto b = w.seal(f);
    frames.emplace_back(b.begin(), b.end());
  };
  w.begin(9, 0x500, 1);
  w.insert_begin(kOrders, 2);
  w.value_binary("\0\0\0\0\0\0\0\1", 8);
  w.value_binary("one", 3);
  seal(0, 0x100, 0x110, false);
  w.insert_begin(kOrders, 3);
  w.value_binary("\0\0\0\0\0\0\0\2", 8);
  w.value_binary("two", 3);
  w.value_binary("x", 1);
  w.commit(0x500, 0x510, 1);
  seal(1, 0x120, 0x130, true);
  std::vector<std::span<const uint8_t>> spans(frames.begin(), frames.end());
  WriterStatus st = w_->apply_group("s1", rels_, spans);
  ASSERT_TRUE(st.ok()) << st.message;
  flush();
  EXPECT_EQ(orders(), (Content{{1, {"one", "d"}}, {2, {"two", "x"}}}));
}

TEST_F(TenantWriterTest, AdoptSwitchesReadersToAStagingReplicaInOneStep) {
  apply(100, {{'I', kOrders, 1, {T("one")}}, {'I', kOrders, 2, {T("two")}}});
  flush();
  apply(200, {{'I', kOrders, 3, {T("three")}}});
  flush();
  // A resync builds the tenant again beside it: unpublished, in a subdirectory, files numbered
  // above the published ones.
  TenantWriter staging;
  TenantWriter::Options o;
  o.start_published = false;
  o.subdir = "staging";
  o.first_sequence = w_->next_sequence() + 1000;
  ASSERT_TRUE(staging.open(data_.path, kTenant, o).ok());
  auto copy = make_group(0, {{'I', kOrders, 1, {T("uno")}}, {'I', kOrders, 4, {T("cuatro")}}});
  ASSERT_TRUE(staging.apply_copy(rels_, spans(copy)).ok());
  auto later = make_group(300, {{'D', kOrders, 4, {}}, {'I', kOrders, 5, {T("cinco")}}});
  ASSERT_TRUE(staging.apply_group("s1", rels_, spans(later)).ok());
  ASSERT_TRUE(staging.flush().ok());
  // Readers still see the published replica, a reader's snapshot keeps it after the switch.
  EXPECT_EQ(orders(), (Content{{1, {"one"}}, {2, {"two"}}, {3, {"three"}}}));
  TenantReplica before;
  ASSERT_TRUE(before.open(data_.path, kTenant).ok());
  const uint64_t generation = w_->manifest().generation;
  ASSERT_TRUE(w_->adopt(staging).ok());
  EXPECT_EQ(w_->manifest().generation, generation + 1);
  EXPECT_TRUE(w_->manifest().published);
  EXPECT_GE(w_->applied("s1"), 301u);
  EXPECT_EQ(orders(), (Content{{1, {"uno"}}, {5, {"cinco"}}}));
  EXPECT_FALSE(fs::exists(w_->dir() / "staging"));
  EXPECT_EQ(replica_files(w_->dir()), w_->manifest().files.size());  // the old files are gone
  const TableView* t = before.table("public.orders");
  ASSERT_NE(t, nullptr);
  RowRef row;
  std::string key;
  ASSERT_TRUE(encode_key_column_from_text(key, 20, "3").ok());
  replica::BlockCache cache;
  EXPECT_TRUE(before.get(*t, key, cache, row).ok());  // mapped files outlive the unlink
  // The writer goes on on the adopted files.
  apply(400, {{'I', kOrders, 6, {T("seis")}}});
  flush();
  reopen();
  EXPECT_EQ(orders(), (Content{{1, {"uno"}}, {5, {"cinco"}}, {6, {"seis"}}}));
}

TEST_F(TenantWriterTest, CompactionOnAnotherThreadWhileApplyingGoesOn) {
  reopen({.compact_deltas = 2, .compress = true});
  apply(100, {{'I', kOrders, 1, {T("one")}}, {'I', kOrders, 2, {T("two")}}});
  flush();
  apply(200, {{'D', kOrders, 2, {}}, {'I', kOrders, 3, {T("three")}}});
  flush();
  std::unique_ptr<Compaction> job;
  ASSERT_TRUE(w_->start_compaction(false, job).ok());
  ASSERT_NE(job, nullptr);
  std::unique_ptr<Compaction> second;
  ASSERT_TRUE(w_->start_compaction(true, second).ok());
  EXPECT_EQ(second, nullptr);  // one at a time
  // The merge runs on its own thread while the writer applies and flushes two more deltas,
  // one of them changing a merged row.
  WriterStatus merged;
  std::thread worker([&] { merged = job->run(); });
  apply(300, {{'U', kOrders, 1, {T("uno")}}, {'I', kOrders, 4, {T("four")}}});
  flush();
  apply(400, {{'D', kOrders, 3, {}}});
  flush();
  worker.join();
  ASSERT_TRUE(merged.ok()) << merged.message;
  bool compacted = false;
  ASSERT_TRUE(w_->finish_compaction(std::move(job), &compacted).ok());
  EXPECT_TRUE(compacted);
  // The base of the first two deltas, then the two written meanwhile, newest last.
  ASSERT_EQ(w_->manifest().files.size(), 3u);
  EXPECT_EQ(w_->manifest().files[0].kind, FileKind::kBase);
  EXPECT_EQ(w_->manifest().files[0].records, 2u);  // rows 1 and 3; row 2's tombstone dropped
  EXPECT_EQ(orders(), (Content{{1, {"uno"}}, {4, {"four"}}}));
  size_t replica_files = 0;
  for (const auto& e : fs::directory_iterator(w_->dir())) replica_files += e.path().extension() == ".esr" ? 1 : 0;
  EXPECT_EQ(replica_files, 3u);
  reopen();
  EXPECT_EQ(orders(), (Content{{1, {"uno"}}, {4, {"four"}}}));
  // A job dropped before it is installed leaves nothing behind.
  ASSERT_TRUE(w_->start_compaction(true, job).ok());
  ASSERT_NE(job, nullptr);
  ASSERT_TRUE(job->run().ok());
  job.reset();
  replica_files = 0;
  for (const auto& e : fs::directory_iterator(w_->dir())) replica_files += e.path().extension() == ".esr" ? 1 : 0;
  EXPECT_EQ(replica_files, 3u);
}

TEST_F(TenantWriterTest, CompactionKeepsContentAndOldSnapshots) {
  reopen({.compact_deltas = 3, .compress = true});
  apply(100, {{'I', kOrders, 1, {T("one")}}, {'I', kOrders, 2, {T("two")}}});
  flush();
  bool compacted = true;
  ASSERT_TRUE(w_->compact(false, &compacted).ok());
  EXPECT_FALSE(compacted);  // one delta only
  apply(200, {{'D', kOrders, 2, {}}, {'I', kItems, 7, {T("seven")}}});
  flush();
  apply(300, {{'U', kOrders, 1, {T("uno")}}, {'I', kOrders, 3, {T("three")}}});
  flush();
  const Content before = orders();
  TenantReplica old;
  ASSERT_TRUE(old.open(data_.path, kTenant).ok());
  ASSERT_TRUE(w_->compact(false, &compacted).ok());
  EXPECT_TRUE(compacted);
  ASSERT_EQ(w_->manifest().files.size(), 1u);
  EXPECT_EQ(w_->manifest().files[0].kind, FileKind::kBase);
  EXPECT_EQ(w_->manifest().files[0].records, 3u);
  EXPECT_EQ(orders(), before);
  EXPECT_EQ(read_table(data_.path, "public.items"), (Content{{7, {"seven"}}}));
  // The old snapshot still reads its (unlinked) files.
  const TableView* t = old.table("public.orders");
  ASSERT_NE(t, nullptr);
  size_t rows = 0;
  replica::BlockCache cache;
  ASSERT_TRUE(
      old.scan(*t, "", std::nullopt, cache, [&](const RowRef&) { return ++rows, true; }).ok());
  EXPECT_EQ(rows, 2u);
  EXPECT_TRUE(old.verify().ok());
  // Files not listed are gone.
  size_t replica_files = 0;
  for (const auto& e : fs::directory_iterator(w_->dir())) {
    replica_files += e.path().extension() == ".esr" ? 1 : 0;
  }
  EXPECT_EQ(replica_files, 1u);
  // Writing goes on on top of the base, and survives a reopen.
  apply(400, {{'D', kOrders, 1, {}}});
  flush();
  reopen();
  EXPECT_EQ(orders(), (Content{{3, {"three"}}}));
}

TEST_F(TenantWriterTest, RandomWorkloadMatchesModel) {
  std::mt19937_64 rng(12345);
  std::map<uint32_t, Content> model;  // per relid
  uint64_t lsn = 100;
  std::vector<std::vector<std::vector<uint8_t>>> unflushed;  // groups a crash would lose
  for (int txn = 0; txn < 300; ++txn) {
    std::vector<Change> changes;
    std::map<uint32_t, Content> next = model;
    const int n = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < n; ++i) {
      const uint32_t relid = rng() % 2 ? kOrders : kItems;
      Content& c = next[relid];
      const int64_t id = static_cast<int64_t>(rng() % 40);
      const int kind = static_cast<int>(rng() % 10);
      const std::string val = std::to_string(rng() % 1000).insert(0, 1, 'v');
      if (kind < 4 || c.count(id) == 0) {
        changes.push_back({'I', relid, id, {T(val)}});
        c[id] = {val};
      } else if (kind < 6) {
        changes.push_back({'U', relid, id, {T(val)}});
        c[id] = {val};
      } else if (kind < 7) {
        changes.push_back({'U', relid, id, {kToastV}});  // keeps its value
      } else if (kind < 8) {
        const int64_t to = 100 + static_cast<int64_t>(rng() % 40);
        if (c.count(to) != 0) continue;
        changes.push_back({'U', relid, to, {T(val)}, id});
        c.erase(id);
        c[to] = {val};
      } else {
        changes.push_back({'D', relid, id, {}});
        c.erase(id);
      }
    }
    lsn += 10 + rng() % 100;
    auto frames = make_group(lsn, changes, 1 + rng() % 3);
    auto sp = spans(frames);
    WriterStatus st = w_->apply_group("s1", rels_, sp);
    ASSERT_TRUE(st.ok()) << st.message << " txn " << txn;
    model = std::move(next);
    unflushed.push_back(frames);
    const int action = static_cast<int>(rng() % 20);
    if (action < 4) {
      flush();
      unflushed.clear();
    } else if (action == 4) {
      // Crash: pending lost; the relay redelivers from the durable position.
      reopen({.compact_deltas = 4, .compress = true});
      for (const auto& g : unflushed) {
        auto gs = spans(g);
        bool skipped = true;
        ASSERT_TRUE(w_->apply_group("s1", rels_, gs, &skipped).ok());
        EXPECT_FALSE(skipped);
      }
    } else if (action == 5) {
      flush();
      unflushed.clear();
      ASSERT_TRUE(w_->compact().ok());
    }
    if (rng() % 25 == 0) {
      // Redelivery of an old group after a reopen is skipped.
      bool skipped = false;
      ASSERT_TRUE(w_->apply_group("s1", rels_, sp, &skipped).ok());
      EXPECT_TRUE(skipped);
    }
  }
  flush();
  EXPECT_EQ(orders(), model[kOrders]);
  EXPECT_EQ(read_table(data_.path, "public.items"), model[kItems]);
  reopen();
  ASSERT_TRUE(w_->compact(true).ok());
  EXPECT_EQ(orders(), model[kOrders]);
  EXPECT_EQ(read_table(data_.path, "public.items"), model[kItems]);
  EXPECT_LE(w_->manifest().files.size(), 1u);
}


// --- Bounded memory: spill runs ------------------------------------------------------------------

// The note of order id in inserts(): "n<id>".
std::string note_of(int64_t id) {
  std::string s(1, 'n');
  s += std::to_string(id);
  return s;
}

// Inserts of orders first..last (note "n<id>").
std::vector<Change> inserts(int64_t first, int64_t last) {
  std::vector<Change> out;
  for (int64_t id = first; id <= last; ++id) out.push_back({'I', kOrders, id, {T(note_of(id))}});
  return out;
}

// The content inserts(first, last) gives.
Content inserted(int64_t first, int64_t last) {
  Content c;
  for (int64_t id = first; id <= last; ++id) c[id] = {note_of(id)};
  return c;
}

// A writer with a small pending budget (16 KiB: a few hundred rows).
class SpillTest : public TenantWriterTest {
 protected:
  void SetUp() override {
    TenantWriterTest::SetUp();
    reopen(small());
  }
  // Options with the small budget.
  static TenantWriter::Options small() {
    TenantWriter::Options o;
    o.pending_memory_bytes = 16 << 10;
    o.compact_deltas = 1000;  // keep the files as written
    return o;
  }
};

TEST_F(SpillTest, BigGroupSpillsRunsThatReadersSeeOnlyAtPublish) {
  apply(100, inserts(0, 9));
  flush();
  const uint64_t generation = w_->manifest().generation;
  const size_t listed = w_->manifest().files.size();
  // One transaction of 3000 rows, which also changes rows it wrote in an earlier spill run and a
  // published row.
  std::vector<Change> big = inserts(10, 3009);
  big.push_back({'U', kOrders, 15, {T("changed")}});
  big.push_back({'D', kOrders, 16, {}});
  big.push_back({'D', kOrders, 3, {}});
  apply(200, big, 100);
  EXPECT_GE(w_->spill_runs_written(), 2u);
  EXPECT_LT(w_->pending_bytes(), size_t{16} << 10);
  EXPECT_TRUE(w_->has_pending());
  EXPECT_FALSE(w_->idle());
  // Readers see nothing of it: the runs are unlisted.
  EXPECT_EQ(orders(), inserted(0, 9));
  EXPECT_GT(replica_files(w_->dir()), listed + 1);
  flush();
  // One manifest lists the runs and the final delta: all of the transaction at once.
  EXPECT_EQ(w_->manifest().generation, generation + 1);
  EXPECT_EQ(w_->manifest().files.size(), replica_files(w_->dir()));
  Content want = inserted(0, 3009);
  want[15] = {"changed"};
  want.erase(16);
  want.erase(3);
  EXPECT_EQ(orders(), want);
  EXPECT_FALSE(w_->has_pending());
  EXPECT_EQ(w_->applied("s1"), 208u);
  // Compaction merges them as any deltas.
  ASSERT_TRUE(w_->compact(true).ok());
  EXPECT_EQ(orders(), want);
  EXPECT_EQ(w_->manifest().files.size(), 1u);
}

TEST_F(SpillTest, UnchangedToastFindsItsOldRowInASpillRun) {
  describe(rels_, kOrders, "orders", {"note", "big"});
  std::vector<Change> big;
  big.push_back({'I', kOrders, 1, {T("a"), T(std::string(5000, 'x'))}});
  for (int64_t id = 2; id < 1000; ++id) big.push_back({'I', kOrders, id, {T("r"), kNullV}});
  // Same transaction, after row 1 went to a spill run.
  big.push_back({'U', kOrders, 1, {T("b"), kToastV}});
  apply(100, big, 50);
  ASSERT_GE(w_->spill_runs_written(), 1u);
  // A later transaction, before any publish: row 1 (spilled) keeps its value again, key change.
  apply(200, {{'U', kOrders, 7000, {kToastV, kToastV}, 1}});
  flush();
  Content got = orders();
  ASSERT_EQ(got.count(1), 0u);
  ASSERT_EQ(got.count(7000), 1u);
  EXPECT_EQ(got[7000], (std::vector<std::string>{"b", std::string(5000, 'x')}));
  EXPECT_EQ(got.size(), 999u);
}

TEST_F(SpillTest, TruncateAfterASpillRemovesSpilledRows) {
  apply(100, inserts(0, 99));
  flush();
  apply(200, inserts(100, 2000), 100);
  ASSERT_GE(w_->spill_runs_written(), 1u);
  const uint32_t relids[] = {kOrders};
  ASSERT_TRUE(w_->apply_truncate("s1", rels_, relids, 300).ok());
  apply(400, inserts(5000, 5001));
  flush();
  EXPECT_EQ(orders(), inserted(5000, 5001));
}

TEST_F(SpillTest, CrashRemovesSpillRunsAndKeepsWhatWasPublished) {
  apply(100, inserts(0, 9));
  flush();
  const auto group = make_group(200, inserts(10, 2000), 100);
  auto sp = spans(group);
  ASSERT_TRUE(w_->apply_group("s1", rels_, sp).ok());
  ASSERT_GE(w_->spill_runs_written(), 1u);
  const size_t listed = w_->manifest().files.size();
  ASSERT_GT(replica_files(w_->dir()), listed);
  // Crash: reopen without a publish. The runs are removed, the published rows stay.
  reopen(small());
  EXPECT_EQ(replica_files(w_->dir()), listed);
  EXPECT_EQ(orders(), inserted(0, 9));
  EXPECT_EQ(w_->pending_position("s1"), 108u);
  // The relay resends the transaction.
  ASSERT_TRUE(w_->apply_group("s1", rels_, sp).ok());
  flush();
  EXPECT_EQ(orders(), inserted(0, 2000));
}

TEST_F(SpillTest, GroupFailingAfterASpillFailsTheWriter) {
  apply(100, inserts(0, 9));
  flush();
  std::vector<Change> big = inserts(10, 2000);
  big.push_back({'I', 999, 1, {T("unknown relid")}});
  auto frames = make_group(200, big, 100);
  auto sp = spans(frames);
  EXPECT_EQ(w_->apply_group("s1", rels_, sp).kind, WriterStatus::kBadMessage);
  // Half a transaction is never published.
  EXPECT_EQ(w_->flush().kind, WriterStatus::kFailed);
  EXPECT_EQ(orders(), inserted(0, 9));
  reopen(small());
  EXPECT_EQ(orders(), inserted(0, 9));
}

TEST_F(SpillTest, GroupOfAnotherTenantIsRefusedBeforeAnythingIsApplied) {
  auto frames = make_group(200, inserts(0, 2000), 100, "other");
  auto sp = spans(frames);
  EXPECT_EQ(w_->apply_group("s1", rels_, sp).kind, WriterStatus::kBadGroup);
  EXPECT_EQ(w_->spill_runs_written(), 0u);
  EXPECT_FALSE(w_->has_pending());
  EXPECT_TRUE(w_->flush().ok());
}

TEST_F(SpillTest, AddColumnAfterASpillReadsSpilledRowsUnderTheNewDescription) {
  apply(100, inserts(0, 1999), 100);  // spill runs under the old columns
  ASSERT_GE(w_->spill_runs_written(), 1u);
  describe(rels_, kOrders, "orders", {"note", "extra"});  // ALTER TABLE ADD COLUMN (no default)
  apply(200, {{'I', kOrders, 5000, {T("x"), T("y")}}});
  flush();
  // The runs keep their own description; readers render their rows under the newest.
  Content want;
  for (int64_t id = 0; id <= 1999; ++id) want[id] = {note_of(id), "NULL"};
  want[5000] = {"x", "y"};
  EXPECT_EQ(orders(), want);
  ASSERT_TRUE(w_->compact(true).ok());
  EXPECT_EQ(orders(), want);
}

TEST_F(SpillTest, FileFrameSourceGivesWhatMemoryGives) {
  std::vector<Change> big = inserts(0, 1500);
  big.push_back({'U', kOrders, 3, {T("three")}});
  const auto frames = make_group(100, big, 100);
  const fs::path log = data_.path / "group.frames";
  const int fd = ::open(log.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  uint64_t bytes = 0;
  for (const auto& f : frames) ASSERT_EQ(append_frame(fd, f, bytes), "");
  FileFrameSource source(fd, bytes, log.string());
  ASSERT_TRUE(w_->apply_group("s1", rels_, source).ok());
  flush();
  const Content from_file = orders();
  // The same group from memory, in another data directory.
  TempDir other;
  TenantWriter mem;
  ASSERT_TRUE(mem.open(other.path, kTenant, small()).ok());
  auto sp = spans(frames);
  ASSERT_TRUE(mem.apply_group("s1", rels_, sp).ok());
  ASSERT_TRUE(mem.flush().ok());
  EXPECT_EQ(from_file, read_table(other.path, "public.orders"));
  EXPECT_EQ(from_file.size(), 1501u);
  EXPECT_EQ(from_file.at(3), std::vector<std::string>{"three"});
  // A log cut short: an I/O error, nothing applied.
  TempDir third;
  TenantWriter cut;
  ASSERT_TRUE(cut.open(third.path, kTenant, small()).ok());
  FileFrameSource short_source(fd, bytes - 10, log.string());
  EXPECT_EQ(cut.apply_group("s1", rels_, short_source).kind, WriterStatus::kIo);
  EXPECT_FALSE(cut.has_pending());
  ::close(fd);
}

}  // namespace
}  // namespace edgeshard::apply

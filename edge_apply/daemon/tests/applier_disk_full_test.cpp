// The applier of edgeshard-apply on a disk that fills up (common/posix_file.hpp's write budget,
// no relay: events go straight into its queue): flush rounds that run out of space leave the
// published replica and the ack where they were, the daemon keeps running, and once there is
// room it publishes everything by itself.
#include "common/frame_writer.hpp"
#include "common/posix_file.hpp"
#include "common/testing/temp_dir.hpp"
#include "edge_apply/daemon/applier.hpp"
#include "edge_apply/daemon/apply_config.hpp"
#include "edge_apply/daemon/event_queue.hpp"
#include "edge_apply/daemon/shard_stream.hpp"
#include "edge_apply/tenant_replica.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace edgeshard::apply::daemon {
namespace {

using testing_support::TempDir;

constexpr uint32_t kItems = 100;  // public.items (id int8 key, note text)

// The bytes of an int8 in its binary send format.
std::vector<uint8_t> int8_bytes(int64_t v) {
  std::vector<uint8_t> b(8);
  for (int i = 0; i < 8; ++i) b[static_cast<size_t>(i)] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (56 - 8 * i));
  return b;
}

// The MANY_TENANTS event describing public.items, in the transaction of commit LSN lsn.
ApplyEvent relation_event(uint64_t lsn) {
  frame::Writer w(frame::Compression::kNone);
  const std::vector<frame::Column> cols = {{"id", 20, -1, true}, {"note", 25, -1, false}};
  w.relation(kItems, "public", "items", cols, -1);
  frame::Fields f;
  f.many_tenants = true;
  f.last = true;
  f.commit_lsn = lsn;
  f.first_lsn = f.last_lsn = lsn - 1;
  const auto bytes = w.seal(f);
  ApplyEvent ev;
  ev.kind = ApplyEvent::kManyTenants;
  ev.key = lsn;
  ev.frames.emplace_back(bytes.begin(), bytes.end());
  return ev;
}

// Tenant acme's transaction of commit LSN lsn inserting row id with a note.
ApplyEvent insert_event(uint64_t lsn, int64_t id, const std::string& note) {
  frame::Writer w(frame::Compression::kNone);
  w.begin(7, lsn, 1000 + static_cast<int64_t>(lsn));
  w.insert_begin(kItems, 2);
  const auto key = int8_bytes(id);
  w.value_binary(key.data(), key.size());
  w.value_binary(note.data(), note.size());
  w.commit(lsn, lsn + 8, 1000 + static_cast<int64_t>(lsn));
  frame::Fields f;
  f.tenant_key = "acme";
  f.last = true;
  f.xid = 7;
  f.commit_lsn = lsn;
  f.first_lsn = f.last_lsn = lsn - 1;
  f.commit_time_us = 1000 + static_cast<int64_t>(lsn);
  const auto bytes = w.seal(f);
  ApplyEvent ev;
  ev.kind = ApplyEvent::kGroup;
  ev.key = lsn;
  ev.tenant = "acme";
  ev.frames.emplace_back(bytes.begin(), bytes.end());
  return ev;
}

// A KEEPALIVE: everything below lsn was sent.
ApplyEvent position_event(uint64_t lsn) {
  ApplyEvent ev;
  ev.kind = ApplyEvent::kPosition;
  ev.key = lsn;
  return ev;
}

// Polls cond every 10 ms for up to 20 s.
bool eventually(const std::function<bool()>& cond) {
  for (int i = 0; i < 2000; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

// The ids of acme's items as a reader sees them ("" when the tenant is not readable).
std::string readable_ids(const std::string& data_dir) {
  TenantReplica r;
  if (!r.open(data_dir, "acme").ok()) return "";
  const TableView* t = r.table("items");
  if (t == nullptr) return "";
  replica::BlockCache cache;
  std::string out;
  const ReplicaStatus st = r.scan(*t, "", std::nullopt, cache, [&](const RowRef&) {
    out += '*';
    return true;
  });
  return st.ok() ? out : "error: " + st.message;
}

// Gives the space back when the test ends, whatever happened.
struct SpaceBack {
  ~SpaceBack() { posix::set_write_budget(posix::kUnlimitedWrites); }
};

TEST(ApplierDiskFull, RoundsOutOfSpaceKeepThePublishedStateAndTheAckThenResume) {
  SpaceBack space_back;
  TempDir dir("applier_full");
  ApplyConfig config;
  config.name = "edge1";
  config.data_dir = (dir.path() / "edge").string();
  config.shards = {{"s1", "127.0.0.1:1"}};
  config.flush_interval_ms = 5;
  config.position_flush_interval_ms = 5;
  std::filesystem::create_directories(dir.path() / "edge" / "tenants");
  std::deque<ShardState> shards;
  shards.emplace_back().shard = "s1";
  EventQueue queue(1u << 20);
  Applier applier(config, shards, queue);
  ASSERT_TRUE(applier.open_existing());
  std::atomic<bool> stop{false};
  std::atomic<bool> done{false};
  bool ran_ok = false;
  std::thread thread([&] { ran_ok = applier.run(stop, done); });

  queue.push(relation_event(100));
  queue.push(insert_event(200, 1, "one"));
  queue.push(position_event(300));
  ASSERT_TRUE(eventually([&] { return shards[0].acked.load() >= 300; }));
  EXPECT_EQ(readable_ids(config.data_dir), "*");

  // The disk is full: the next rounds cannot write the delta; the daemon waits.
  posix::set_write_budget(0);
  queue.push(insert_event(400, 2, "two"));
  queue.push(position_event(500));
  ASSERT_TRUE(eventually([&] { return applier.stats().disk_full.load() == 1; }));
  EXPECT_GT(applier.stats().disk_full_errors.load(), 0u);
  queue.push(insert_event(600, 3, "three"));  // more changes arrive meanwhile
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Nothing of 400 is acked or visible while it is not durable; readers keep the old state.
  EXPECT_LT(shards[0].acked.load(), 400u);
  EXPECT_EQ(readable_ids(config.data_dir), "*");
  EXPECT_FALSE(done.load());

  // Space is back: everything is published and acked, by the same applier.
  posix::set_write_budget(posix::kUnlimitedWrites);
  queue.push(position_event(700));
  ASSERT_TRUE(eventually([&] { return shards[0].acked.load() >= 700; }));
  EXPECT_EQ(applier.stats().disk_full.load(), 0u);
  EXPECT_EQ(readable_ids(config.data_dir), "***");

  stop = true;
  shards[0].quiet = true;
  thread.join();
  EXPECT_TRUE(ran_ok);
  EXPECT_TRUE(done.load());
}

}  // namespace
}  // namespace edgeshard::apply::daemon

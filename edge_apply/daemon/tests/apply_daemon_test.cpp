// Unit tests of edgeshard-apply's pieces that need no relay: the settings (file, flags, env
// token, --help) and the shard's RELATION store (durable, replayed in order, no duplicates).
#include "common/frame_writer.hpp"
#include "common/testing/temp_dir.hpp"
#include "edge_apply/daemon/apply_config.hpp"
#include "edge_apply/daemon/data_dir_lock.hpp"
#include "edge_apply/daemon/event_queue.hpp"
#include "edge_apply/daemon/relation_store.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <vector>

namespace edgeshard::apply::daemon {
namespace {

using testing_support::TempDir;

// Parses argv given as strings.
CommandLine parse(std::vector<std::string> args) {
  std::vector<const char*> argv{"edgeshard-apply"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

TEST(ApplyConfig, FileThenFlagsAndRepeatedShards) {
  TempDir dir("apply_config");
  std::ofstream(dir.file("apply.conf")) << "name = 'edge7'\ndata_dir = '/tmp/x'\n"
                                           "shard = 's1=127.0.0.1:1,127.0.0.1:2'\nshard = s2=h:3  # two\n"
                                           "token = 't'\ntenants = '42, 43'\nflush_interval_ms = 50\n";
  CommandLine cl = parse({"--config", dir.file("apply.conf"), "--flush-interval-ms=30"});
  EXPECT_EQ(cl.config.name, "edge7");
  ASSERT_EQ(cl.config.shards.size(), 2u);
  EXPECT_EQ(cl.config.shards[0].shard, "s1");
  EXPECT_EQ(cl.config.shards[0].hosts, "127.0.0.1:1,127.0.0.1:2");
  EXPECT_EQ(cl.config.shards[1].hosts, "h:3");
  EXPECT_EQ(cl.config.flush_interval_ms, 30);
  EXPECT_EQ(cl.config.tenant_list(), (std::vector<std::string>{"42", "43"}));
  // --shard flags replace the file's list.
  cl = parse({"--config", dir.file("apply.conf"), "--shard", "s9=h:9"});
  ASSERT_EQ(cl.config.shards.size(), 1u);
  EXPECT_EQ(cl.config.shards[0].shard, "s9");
}

TEST(ApplyConfig, TokenFromEnvironmentAndErrors) {
  ::setenv("EDGESHARD_RELAY_TOKEN", "from-env", 1);
  CommandLine cl = parse({"--data_dir", "/tmp/x", "--shard", "s1=h:1"});
  EXPECT_EQ(cl.config.token, "from-env");
  EXPECT_TRUE(cl.config.tenant_list().empty());  // all
  ::unsetenv("EDGESHARD_RELAY_TOKEN");
  EXPECT_THROW(parse({"--data_dir", "/tmp/x", "--shard", "s1=h:1"}), ConfigError);  // no token
  EXPECT_THROW(parse({"--data_dir", "/tmp/x", "--token", "t"}), ConfigError);       // no shard
  EXPECT_THROW(parse({"--data_dir", "/tmp/x", "--token", "t", "--shard", "s1"}), ConfigError);
  EXPECT_THROW(parse({"--data_dir", "/tmp/x", "--token", "t", "--shard", "s1=a:1", "--shard", "s1=b:2"}),
               ConfigError);
  EXPECT_THROW(parse({"--bogus", "1"}), ConfigError);
  EXPECT_TRUE(parse({"--help"}).help);
  EXPECT_NE(usage_text().find("Initial copy: with `primary` set"), std::string::npos);
}

TEST(ApplyConfig, TenantKeysWithCommasSpacesAndPercentAreEscaped) {
  CommandLine cl = parse({"--data_dir", "/tmp/x", "--token", "t", "--shard", "s1=h:1", "--tenants",
                          "a%2Cb, %20lead,acme corp,50%25,%C3%A9t%C3%A9, line%0Abreak"});
  EXPECT_EQ(cl.config.tenant_list(), (std::vector<std::string>{"a,b", " lead", "acme corp", "50%",
                                                               "\xC3\xA9t\xC3\xA9", "line\nbreak"}));
  // A '%' that escapes nothing is refused rather than guessed.
  EXPECT_THROW(parse({"--data_dir", "/tmp/x", "--token", "t", "--shard", "s1=h:1", "--tenants", "50%off"}),
               ConfigError);
  EXPECT_NE(usage_text().find("%2C"), std::string::npos);
}

TEST(ApplyConfig, PrimariesForInitialCopies) {
  CommandLine cl = parse({"--data_dir", "/tmp/x", "--token", "t", "--shard", "s1=h:1", "--shard", "s2=h:2",
                          "--primary", "s2=host=10.0.0.5 port=5432 dbname=app user=edge"});
  ASSERT_EQ(cl.config.primaries.size(), 1u);
  EXPECT_EQ(cl.config.primary_of("s2"), "host=10.0.0.5 port=5432 dbname=app user=edge");  // split at the first '='
  EXPECT_EQ(cl.config.primary_of("s1"), "");
  // A primary must name a configured shard, once; a conninfo is required.
  EXPECT_THROW(parse({"--data_dir", "/tmp/x", "--token", "t", "--shard", "s1=h:1", "--primary", "s3=host=a"}),
               ConfigError);
  EXPECT_THROW(parse({"--data_dir", "/tmp/x", "--token", "t", "--shard", "s1=h:1", "--primary", "s1=host=a",
                      "--primary", "s1=host=b"}),
               ConfigError);
  EXPECT_THROW(parse({"--data_dir", "/tmp/x", "--token", "t", "--shard", "s1=h:1", "--primary", "s1="}), ConfigError);
}

TEST(ApplyConfig, ShardStreamedFromItsPrimary) {
  ::unsetenv("EDGESHARD_RELAY_TOKEN");
  // Every shard from its primary: no relay, so no token is needed.
  CommandLine cl = parse({"--data_dir", "/tmp/x", "--name", "Edge-7.paris", "--shard", "s1=primary",
                          "--primary", "s1=host=10.0.0.5 dbname=app"});
  ASSERT_EQ(cl.config.shards.size(), 1u);
  EXPECT_TRUE(cl.config.shards[0].from_primary());
  EXPECT_EQ(cl.config.slot_name(), "edgeshard_apply_edge_7_paris");  // a valid slot name
  cl = parse({"--data_dir", "/tmp/x", "--shard", "s1=primary", "--primary", "s1=host=a", "--slot", "pop_9"});
  EXPECT_EQ(cl.config.slot_name(), "pop_9");
  // NAME=primary needs that shard's primary; a relay shard still needs the token; slot names
  // are what CREATE_REPLICATION_SLOT accepts.
  EXPECT_THROW(parse({"--data_dir", "/tmp/x", "--shard", "s1=primary"}), ConfigError);
  EXPECT_THROW(parse({"--data_dir", "/tmp/x", "--shard", "s1=primary", "--primary", "s1=host=a", "--shard", "s2=h:1"}),
               ConfigError);
  EXPECT_THROW(parse({"--data_dir", "/tmp/x", "--shard", "s1=primary", "--primary", "s1=host=a", "--slot", "Bad-Name"}),
               ConfigError);
}

// A MANY_TENANTS frame with one RELATION of relid named name, at commit LSN key.
std::vector<uint8_t> relation_frame(uint64_t key, uint32_t relid, const std::string& name, uint32_t seq = 0) {
  frame::Writer w(frame::Compression::kNone);
  const frame::Column cols[] = {{"tenant_id", 20, -1, true}, {"id", 23, -1, true}};
  w.relation(relid, "public", name, cols, 0);
  frame::Fields f;
  f.many_tenants = true;
  f.last = true;
  f.sequence = seq;
  f.first_lsn = f.last_lsn = f.commit_lsn = key;
  const auto bytes = w.seal(f);
  return {bytes.begin(), bytes.end()};
}

TEST(RelationStore, KeepsRelationsAcrossRestartsInStreamOrder) {
  TempDir dir("relation_store");
  std::string why;
  {
    RelationStore store;
    RelationMap map;
    ASSERT_TRUE(store.open(dir.path(), "s1", map, why)) << why;
    EXPECT_EQ(map.size(), 0u);
    ASSERT_TRUE(store.add(100, 0, relation_frame(100, 16384, "items"), why)) << why;
    ASSERT_TRUE(store.add(200, 0, relation_frame(200, 16384, "items_v2"), why)) << why;
    // Resent after a reconnect: not stored twice.
    ASSERT_TRUE(store.add(100, 0, relation_frame(100, 16384, "items"), why)) << why;
    ASSERT_TRUE(store.add(200, 0, relation_frame(200, 16384, "items_v2"), why)) << why;
    EXPECT_EQ(store.size(), 2u);
  }
  RelationStore store;
  RelationMap map;
  ASSERT_TRUE(store.open(dir.path(), "s1", map, why)) << why;
  EXPECT_EQ(store.size(), 2u);
  ASSERT_NE(map.find(16384), nullptr);
  EXPECT_EQ(map.find(16384)->name, "items_v2");  // the newest description wins
}

TEST(RelationStore, RefusesACorruptFile) {
  TempDir dir("relation_store");
  std::string why;
  {
    RelationStore store;
    RelationMap map;
    ASSERT_TRUE(store.open(dir.path(), "s1", map, why)) << why;
    ASSERT_TRUE(store.add(100, 0, relation_frame(100, 1, "t"), why)) << why;
  }
  const auto path = dir.path() / "shards" / "s1.relations";
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(100);
  f.put('\x7f');
  f.close();
  RelationStore store;
  RelationMap map;
  EXPECT_FALSE(store.open(dir.path(), "s1", map, why));
  EXPECT_NE(why.find("s1.relations"), std::string::npos) << why;
}

TEST(EventQueue, BoundedAndOrdered) {
  EventQueue q(1000);
  for (uint64_t i = 0; i < 3; ++i) {
    ApplyEvent ev;
    ev.key = i;
    ASSERT_TRUE(q.push(std::move(ev)));
  }
  ApplyEvent out;
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(q.try_pop(out));
    EXPECT_EQ(out.key, i);
  }
  EXPECT_FALSE(q.pop(std::chrono::steady_clock::now() + std::chrono::milliseconds(5), out));
  q.close();
  EXPECT_FALSE(q.push(ApplyEvent{}));
}

TEST(DataDirLock, SecondDaemonOnTheSameDirectoryIsRefused) {
  TempDir dir("apply_lock");
  std::string why;
  {
    DataDirLock first;
    ASSERT_TRUE(first.acquire(dir.path(), why)) << why;
    DataDirLock second;  // another open file description: flock conflicts as between processes
    EXPECT_FALSE(second.acquire(dir.path(), why));
    EXPECT_NE(why.find("is in use by another edgeshard-apply (pid " + std::to_string(::getpid()) + ")"),
              std::string::npos)
        << why;
  }
  DataDirLock again;  // released with the first
  EXPECT_TRUE(again.acquire(dir.path(), why)) << why;
}

}  // namespace
}  // namespace edgeshard::apply::daemon

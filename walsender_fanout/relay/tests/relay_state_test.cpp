// relay.state round trips, refuses damage, and survives a restart; the configuration table
// parses files and flags and refuses bad values with the setting's name.
#include "common/testing/temp_dir.hpp"
#include "walsender_fanout/relay/relay_config.hpp"
#include "walsender_fanout/relay/relay_state.hpp"
#include "walsender_fanout/relay/token_store.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace edgeshard::relay {
namespace {

namespace fs = std::filesystem;

using edgeshard::testing_support::TempDir;

// Writes text to path.
void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

TEST(RelayState, RoundTripsAndRefusesDamage) {
  RelayState st;
  st.floor = 0x16B3748;
  st.subscribers["edge-1"] = {0x1000000, 1700000000};
  st.subscribers["edge.2"] = {0x2000000, 1700000001};
  const std::string text = encode_state(st);
  const RelayState back = decode_state(text);
  EXPECT_EQ(back.floor, st.floor);
  ASSERT_EQ(back.subscribers.size(), 2u);
  EXPECT_EQ(back.subscribers.at("edge.2").acked, 0x2000000u);
  EXPECT_EQ(back.subscribers.at("edge-1").last_seen_unix, 1700000000);
  for (size_t i = 0; i < text.size(); ++i) {
    std::string bad = text;
    bad[i] ^= 0x01;
    EXPECT_THROW(decode_state(bad), StateError) << "byte " << i;
  }
  EXPECT_THROW(decode_state(text.substr(0, text.size() - 3)), StateError);
}

TEST(RelayState, RegistryPersistsFloorAndAcks) {
  TempDir dir;
  {
    Registry r(dir.path());
    EXPECT_EQ(r.floor(), 0u);
    EXPECT_EQ(r.min_acked(), UINT64_MAX);
    r.raise_floor(500);  // saved at once
    r.touch("a", 700, 100);
    r.touch("b", 900, 200);
    r.touch("a", 600, 150);  // acks never go back
    uint64_t acked = 0;
    ASSERT_TRUE(r.acked("a", acked));
    EXPECT_EQ(acked, 700u);
    EXPECT_EQ(r.min_acked(), 700u);
    r.save_if_dirty();
  }
  {
    Registry r(dir.path());
    EXPECT_EQ(r.floor(), 500u);
    EXPECT_EQ(r.min_acked(), 700u);
    r.raise_floor(400);  // the floor only rises
    EXPECT_EQ(r.floor(), 500u);
    r.expire(160);  // a was last seen at 150
    uint64_t acked = 0;
    EXPECT_FALSE(r.acked("a", acked));
    EXPECT_EQ(r.min_acked(), 900u);
  }
  write_file(dir.path() / "relay.state", "edgeshard-relay-state 1\nfloor 0/1F4\nchecksum 0000000000000000\n");
  EXPECT_THROW(Registry{dir.path()}, StateError);
}

TEST(RelayConfig, FileThenFlags) {
  TempDir dir;
  write_file(dir.path() / "relay.conf",
             "# a relay\n"
             "name = 'edge-relay-1'   # comment\n"
             "data_dir = '/var/lib/x'\n"
             "upstream = 'host=a,b dbname=app'\n"
             "token = 'it''s secret#1'\n"
             "segment_bytes = 16MB\n"
             "create_slot = off\n");
  const std::string conf = (dir.path() / "relay.conf").string();
  const char* argv[] = {"edgeshard-relay", "--config", conf.c_str(), "--sync-interval-ms=25",
                        "--listen", "127.0.0.1:7000"};
  const CommandLine cl = parse_command_line(6, argv);
  EXPECT_EQ(cl.config.name, "edge-relay-1");
  EXPECT_EQ(cl.config.upstream, "host=a,b dbname=app");
  EXPECT_EQ(cl.config.token, "it's secret#1");
  EXPECT_EQ(cl.config.segment_bytes, int64_t{16} << 20);
  EXPECT_FALSE(cl.config.create_slot);
  EXPECT_EQ(cl.config.sync_interval_ms, 25);
  EXPECT_EQ(cl.config.listen, "127.0.0.1:7000");
  const char* help[] = {"edgeshard-relay", "--help"};
  EXPECT_TRUE(parse_command_line(2, help).help);
  EXPECT_NE(usage_text().find("retention_max_bytes"), std::string::npos);
}

TEST(RelayConfig, RefusesBadSettingsByName) {
  RelayConfig c;
  EXPECT_THROW(set_setting(c, "no_such_thing", "1"), ConfigError);
  try {
    set_setting(c, "segment_bytes", "12 apples");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("segment_bytes"), std::string::npos);
  }
  EXPECT_THROW(set_setting(c, "create_slot", "maybe"), ConfigError);
  c.token = "t";
  EXPECT_THROW(validate(c), ConfigError);  // no data_dir
  c.data_dir = "/x";
  EXPECT_THROW(validate(c), ConfigError);  // no upstream
  c.upstream = "dbname=x";
  validate(c);
  c.upstream_relay = "127.0.0.1:1";
  EXPECT_THROW(validate(c), ConfigError);  // two upstreams
  c.upstream_relay.clear();
  c.name = "bad name";
  EXPECT_THROW(validate(c), ConfigError);
  c.name = "ok";
  c.token.clear();
  EXPECT_THROW(validate(c), ConfigError);  // nobody could authenticate
}

TEST(TokenStore, PerNameTokensOverrideTheSharedOne) {
  TempDir dir;
  write_file(dir.path() / "tokens", "# name token\nedge-1 s3cret\nedge-2   other  \n");
  TokenStore t;
  t.load("shared", (dir.path() / "tokens").string());
  EXPECT_TRUE(t.check("edge-1", "s3cret"));
  EXPECT_FALSE(t.check("edge-1", "shared"));
  EXPECT_TRUE(t.check("edge-2", "other"));
  EXPECT_TRUE(t.check("edge-9", "shared"));
  EXPECT_FALSE(t.check("edge-9", "shared "));
  t.load("", (dir.path() / "tokens").string());
  EXPECT_FALSE(t.check("edge-9", ""));
  write_file(dir.path() / "bad", "edge-1 a b\n");
  EXPECT_THROW(t.load("", (dir.path() / "bad").string()), ConfigError);
}

}  // namespace
}  // namespace edgeshard::relay

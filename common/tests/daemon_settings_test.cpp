// Tests of the daemons' shared settings parser (common/daemon/settings.hpp): values, the
// config-file syntax, flags and the generated --help entries, over a small config struct.
#include "common/daemon/settings.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

using namespace edgeshard::daemon;

// A config struct with one setting of each kind.
struct TestConfig {
  std::string name = "x";
  int64_t bytes = 1024;
  int64_t wait_ms = 10;
  bool on = true;
};

// The settings table over TestConfig.
const SettingsTable<TestConfig>& table() {
  static const SettingsTable<TestConfig> t = {
      text("name", "a name", &TestConfig::name),
      integer("bytes", "bytes", "a size", &TestConfig::bytes),
      integer("wait_ms", "ms", "a delay", &TestConfig::wait_ms),
      boolean("on", "a switch", &TestConfig::on),
  };
  return t;
}

// A file with the given text, removed at the end of the test.
struct TempFile {
  std::filesystem::path path;
  explicit TempFile(const std::string& text) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("edgeshard_settings_test_" + std::to_string(::getpid()) + "_" +
            std::to_string(++counter) + ".conf");
    std::ofstream(path) << text;
  }
  ~TempFile() { std::filesystem::remove(path); }
};

TEST(DaemonSettings, ParsesValues) {
  EXPECT_EQ(parse_integer("k", "42", false), 42);
  EXPECT_EQ(parse_integer("k", "2kB", true), 2048);
  EXPECT_EQ(parse_integer("k", "3MB", true), int64_t{3} << 20);
  EXPECT_EQ(parse_integer("k", "1GB", true), int64_t{1} << 30);
  EXPECT_THROW(parse_integer("k", "2kB", false), ConfigError);
  EXPECT_THROW(parse_integer("k", "-1", false), ConfigError);
  EXPECT_THROW(parse_integer("k", "", false), ConfigError);
  EXPECT_THROW(parse_integer("k", "9223372036854775807GB", true), ConfigError);
  EXPECT_TRUE(parse_bool("k", "yes"));
  EXPECT_FALSE(parse_bool("k", "off"));
  EXPECT_THROW(parse_bool("k", "maybe"), ConfigError);
  EXPECT_EQ(trim(" \t a b \r"), "a b");
  EXPECT_EQ(trim("   "), "");
}

TEST(DaemonSettings, SetsThroughTheTable) {
  TestConfig c;
  set_setting(table(), c, "bytes", "4MB");
  set_setting(table(), c, "on", "off");
  EXPECT_EQ(c.bytes, int64_t{4} << 20);
  EXPECT_FALSE(c.on);
  try {
    set_setting(table(), c, "nope", "1");
    FAIL() << "unknown key accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown setting \"nope\""), std::string::npos);
  }
}

TEST(DaemonSettings, ReadsConfigFiles) {
  TempFile f(
      "# a comment\n"
      "\n"
      "  name = 'it''s # not a comment'  # a comment\n"
      "bytes=8kB\n"
      "on = no\n");
  TestConfig c;
  read_config_file(table(), f.path.string(), c);
  EXPECT_EQ(c.name, "it's # not a comment");
  EXPECT_EQ(c.bytes, 8192);
  EXPECT_FALSE(c.on);

  TempFile bad("name = a\nwait_ms = soon\n");
  try {
    read_config_file(table(), bad.path.string(), c);
    FAIL() << "bad value accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(bad.path.string() + ":2: invalid value for wait_ms"),
              std::string::npos);
  }
  TempFile no_eq("name\n");
  EXPECT_THROW(read_config_file(table(), no_eq.path.string(), c), ConfigError);
  EXPECT_THROW(read_config_file(table(), "/nonexistent/edgeshard.conf", c), ConfigError);
}

TEST(DaemonSettings, ParsesArguments) {
  const char* argv[] = {"prog", "--config", "f.conf", "--wait-ms=5", "--name", "n", "--on=1"};
  const Arguments a = parse_arguments(7, argv);
  EXPECT_FALSE(a.help);
  EXPECT_EQ(a.config_file, "f.conf");
  const std::vector<std::pair<std::string, std::string>> want = {
      {"wait_ms", "5"}, {"name", "n"}, {"on", "1"}};
  EXPECT_EQ(a.settings, want);

  const char* help[] = {"prog", "--name", "n", "-h", "junk"};
  EXPECT_TRUE(parse_arguments(5, help).help);
  const char* positional[] = {"prog", "junk"};
  EXPECT_THROW(parse_arguments(2, positional), ConfigError);
  const char* dangling[] = {"prog", "--name"};
  EXPECT_THROW(parse_arguments(2, dangling), ConfigError);
}

TEST(DaemonSettings, GeneratesUsage) {
  EXPECT_EQ(settings_usage(table()),
            "  name  [default: x]\n      a name\n"
            "  bytes (bytes)  [default: 1024]\n      a size\n"
            "  wait_ms (ms)  [default: 10]\n      a delay\n"
            "  on  [default: on]\n      a switch\n");
  std::string out;
  append_usage(out, "hosts", "list", "upstreams", "");
  EXPECT_EQ(out, "  hosts  [default: none]\n      upstreams\n");
}

}  // namespace

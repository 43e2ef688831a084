// The shared option parser of edgeshard-wal (extension/wal_tool/options.hpp) with a subcommand's
// own options: values (--name V, --name=V), flags, unknown ones refused.
#include "extension/wal_tool/options.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace edgeshard::wal_tool {
namespace {

// Parses a command line given as strings with expire's options.
bool parse(std::vector<std::string> args, Options& out, std::string& why) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return parse_options(static_cast<int>(argv.size()), argv.data(), out, why,
                       {"--keep", "--keep-days"}, {"--dry-run"});
}

TEST(Options, SubcommandValuesAndFlags) {
  Options o;
  std::string why;
  ASSERT_TRUE(parse({"expire", "--repo", "/r", "--keep", "3", "--dry-run"}, o, why)) << why;
  EXPECT_EQ(*o.repo, "/r");
  EXPECT_EQ(o.values.at("--keep"), "3");
  EXPECT_EQ(o.flags.count("--dry-run"), 1u);
  ASSERT_TRUE(parse({"expire", "--keep-days=1.5"}, o, why)) << why;
  EXPECT_EQ(o.values.at("--keep-days"), "1.5");
  EXPECT_TRUE(o.flags.empty());
  EXPECT_FALSE(parse({"expire", "--keep"}, o, why)) << "a value is needed";
  EXPECT_FALSE(parse({"expire", "--dry-run=yes"}, o, why)) << "a flag takes no value";
  EXPECT_FALSE(parse({"expire", "--frob"}, o, why));
  EXPECT_FALSE(parse_options(3,
                             std::vector<char*>{const_cast<char*>("list"),
                                                const_cast<char*>("--keep"), const_cast<char*>("1")}
                                 .data(),
                             o, why))
      << "options of other subcommands are unknown";
}

}  // namespace
}  // namespace edgeshard::wal_tool

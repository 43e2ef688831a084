// Names on disk from tenant keys: today's escaping for short keys, bounded hashed names for long
// ones (usable as real directories), unique for distinct keys, collisions refused by the writer,
// directories of the older rule moved to their name.
#include "edge_apply/dir_name.hpp"

#include "common/frame_format.hpp"
#include "common/testing/temp_dir.hpp"
#include "edge_apply/tenant_replica.hpp"
#include "edge_apply/tenant_writer.hpp"

#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <set>

namespace edgeshard::apply {
namespace {

namespace fs = std::filesystem;
using edgeshard::testing_support::TempDir;

// A key of n bytes repeating pattern.
std::string key_of(size_t n, std::string_view pattern) {
  std::string k;
  while (k.size() < n) k += pattern;
  k.resize(n);
  return k;
}

// The hash part of a hashed name of key: '~' and 16 lower-case hex digits of XXH3-64.
std::string hash_suffix(std::string_view key) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "~%016" PRIx64, frame::checksum(key.data(), key.size()));
  return buf;
}

TEST(DirName, ShortKeysKeepTheirEscapedName) {
  EXPECT_EQ(escape_tenant("42"), "42");
  EXPECT_EQ(escape_tenant("acme.eu"), "acme.eu");
  EXPECT_EQ(escape_tenant(".."), "%2E.");
  EXPECT_EQ(escape_tenant("a/b c%"), "a%2Fb%20c%25");
  EXPECT_EQ(escape_tenant("~"), "%7E");
  EXPECT_EQ(escape_tenant("\xC3\xA9t\xC3\xA9"), "%C3%A9t%C3%A9");
  EXPECT_EQ(tenant_dir("/data", "42"), fs::path("/data/tenants/42"));
  EXPECT_EQ(shard_file_path("/data", "s1", ".position"), fs::path("/data/shards/s1.position"));
  // Up to kMaxPlainName escaped bytes: unchanged.
  const std::string k120 = key_of(kMaxPlainName, "k");
  EXPECT_EQ(escape_tenant(k120), k120);
  const std::string k40 = key_of(40, "/");  // 120 escaped bytes
  EXPECT_EQ(escape_tenant(k40), key_of(120, "%2F"));
}

TEST(DirName, LongKeysGetABoundedHashedName) {
  const std::string k121 = key_of(kMaxPlainName + 1, "k");
  EXPECT_EQ(escape_tenant(k121), key_of(kHashedNamePrefix, "k") + hash_suffix(k121));
  // The prefix is cut before a %XX that would not fit whole: 33 x "%2F" (99 bytes), not 100.
  const std::string slashes = key_of(50, "/");
  EXPECT_EQ(escape_tenant(slashes), key_of(99, "%2F") + hash_suffix(slashes));
  // A leading '.' is escaped in the prefix as in a plain name.
  const std::string dots = key_of(300, ".");
  EXPECT_EQ(escape_tenant(dots).substr(0, 4), "%2E.");
}

TEST(DirName, EveryKeyLengthGivesOneUsableDirectory) {
  TempDir data("dirname");
  const std::string patterns[] = {"k", "a/b c\n", "\xC3\xA9\xE2\x82\xAC/", "%.~"};
  std::set<std::string> names;
  for (size_t n : {size_t{1}, size_t{63}, size_t{255}, size_t{300}, size_t{5000}, size_t{65535}}) {
    for (std::string_view p : patterns) {
      const std::string key = key_of(n, p);
      const std::string name = escape_tenant(key);
      EXPECT_LE(name.size(), kMaxPlainName) << n;
      EXPECT_LE(name.size(), 255u);
      EXPECT_EQ(name.find('/'), std::string::npos);
      EXPECT_TRUE(names.insert(name).second) << "same name for two keys: " << name;
      // A real directory, and a file with the longest suffix a shard file takes.
      std::error_code ec;
      fs::create_directories(tenant_dir(data.path(), key), ec);
      EXPECT_FALSE(ec) << ec.message();
      fs::create_directories(data.path() / "shards", ec);
      const fs::path f = shard_file_path(data.path(), key, ".relations.tmp");
      std::FILE* file = std::fopen(f.c_str(), "w");
      EXPECT_NE(file, nullptr) << f;
      if (file != nullptr) std::fclose(file);
    }
  }
}

TEST(DirName, KeysWithACommonLongPrefixStayApart) {
  const std::string prefix = key_of(4000, "tenant/");
  std::set<std::string> names;
  for (int i = 0; i < 1000; ++i) {
    const std::string name = escape_tenant(prefix + std::to_string(i));
    EXPECT_LE(name.size(), kMaxPlainName);
    EXPECT_EQ(name.substr(0, 14), "tenant%2Ftenan");  // readable
    names.insert(name);
  }
  EXPECT_EQ(names.size(), 1000u);
  // A plain name never holds '~' (it is escaped), so no long key's name equals a short key's.
  EXPECT_EQ(escape_tenant("x~0123456789abcdef").find('~'), std::string::npos);
}

TEST(DirName, TheWriterRefusesADirectoryOfAnotherKey) {
  // Two keys on one name (an XXH3 collision, made here by moving a directory) are refused by
  // the manifest's full key, never merged.
  TempDir data("dirname");
  const std::string a = key_of(300, "a");
  const std::string b = key_of(300, "b");
  {
    TenantWriter w;
    ASSERT_TRUE(w.open(data.path(), a).ok());
  }
  fs::rename(tenant_dir(data.path(), a), tenant_dir(data.path(), b));
  TenantWriter w;
  const WriterStatus st = w.open(data.path(), b);
  EXPECT_EQ(st.kind, WriterStatus::kCorrupt);
  EXPECT_NE(st.message.find("belongs to tenant"), std::string::npos) << st.message;
}

TEST(DirName, ALongKeysReplicaOpensForWriterAndReader) {
  TempDir data("dirname");
  const std::string key = key_of(5000, "a/b c\n\xC3\xA9%");
  TenantWriter w;
  ASSERT_TRUE(w.open(data.path(), key).ok());
  EXPECT_EQ(w.dir(), tenant_dir(data.path(), key));
  TenantReplica r;
  const ReplicaStatus st = r.open(data.path(), key);
  ASSERT_TRUE(st.ok()) << st.message;
  EXPECT_EQ(r.manifest().tenant, key);
}

TEST(DirName, ADirectoryOfTheOlderRuleMovesToItsName) {
  TempDir data("dirname");
  const std::string key = key_of(200, "k");  // named by its whole key before names were bounded
  const fs::path old_dir = data.path() / "tenants" / key;
  fs::create_directories(old_dir);
  std::ofstream(old_dir / "manifest") << "x";
  fs::path now;
  std::string why;
  ASSERT_TRUE(move_to_tenant_dir(old_dir, key, now, why)) << why;
  EXPECT_EQ(now, tenant_dir(data.path(), key));
  EXPECT_TRUE(fs::exists(now / "manifest"));
  EXPECT_FALSE(fs::exists(old_dir));
  // Already at its name: nothing to do.
  ASSERT_TRUE(move_to_tenant_dir(now, key, now, why)) << why;
  EXPECT_EQ(now, tenant_dir(data.path(), key));
  // Both names present: refused, nothing moved.
  fs::create_directories(old_dir);
  EXPECT_FALSE(move_to_tenant_dir(old_dir, key, now, why));
  EXPECT_NE(why.find("exists already"), std::string::npos) << why;
  EXPECT_TRUE(fs::exists(old_dir));
}

}  // namespace
}  // namespace edgeshard::apply

// The manifest round-trips, refuses damage, is replaced atomically; the head file's generation is
// seen by a reader mapping it.
#include "common/frame_format.hpp"
#include "common/testing/temp_dir.hpp"
#include "edge_apply/manifest.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <fstream>

namespace edgeshard::apply {
namespace {

namespace fs = std::filesystem;

using edgeshard::testing_support::TempDir;

// A manifest with two shards and three files.
Manifest sample() {
  Manifest m;
  m.generation = 42;
  m.tenant = "acme";
  m.published = true;
  m.shards = {{"s1", 0x16B3748, 1700000000000000, 0x16B4000, 1700000000500000}, {"s2", 0x200, 0, 0x200, 0}};
  m.files = {{FileKind::kBase, "base-0000000000000007.esr", 1000, 65536},
             {FileKind::kDelta, "delta-0000000000000008.esr", 3, 512},
             {FileKind::kDelta, "delta-0000000000000009.esr", 1, 300}};
  return m;
}

TEST(Manifest, RoundTripsAndRefusesEveryFlippedBit) {
  const Manifest m = sample();
  const std::string text = encode_manifest(m);
  Manifest back;
  std::string why;
  ASSERT_TRUE(decode_manifest(text, back, why)) << why;
  EXPECT_EQ(back.generation, 42u);
  EXPECT_EQ(back.tenant, "acme");
  EXPECT_TRUE(back.published);
  ASSERT_EQ(back.shards.size(), 2u);
  EXPECT_EQ(back.shards[0].applied, 0x16B3748u);
  EXPECT_EQ(back.shards[0].upstream_time_us, 1700000000500000);
  ASSERT_EQ(back.files.size(), 3u);
  EXPECT_EQ(back.files[0].kind, FileKind::kBase);
  EXPECT_EQ(back.files[2].name, "delta-0000000000000009.esr");
  for (size_t i = 0; i < text.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = text;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      EXPECT_FALSE(decode_manifest(bad, back, why)) << "byte " << i << " bit " << bit;
    }
  }
  for (size_t n = 0; n < text.size(); ++n) {
    EXPECT_FALSE(decode_manifest(text.substr(0, n), back, why)) << "truncated to " << n;
  }
}

TEST(Manifest, KeysWithAnyBytesRoundTrip) {
  std::string all_bytes;
  for (int c = 1; c < 256; ++c) all_bytes += static_cast<char>(c);
  const std::string keys[] = {"acme corp", "line\nbreak", "50%", "%20", "a/b", "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC",
                              " lead", "trail ", "a,b", std::string(5000, 'x') + " y", all_bytes,
                              std::string("nul\0inside", 10)};
  for (const std::string& key : keys) {
    Manifest m = sample();
    m.tenant = key;
    m.shards[1].shard = "shard " + key;
    const std::string text = encode_manifest(m);
    EXPECT_TRUE(text.starts_with("edgeshard-manifest 2\n")) << key;
    // One line per field: the key adds none.
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 4 + 2 + 3 + 1) << key;
    Manifest back;
    std::string why;
    ASSERT_TRUE(decode_manifest(text, back, why)) << why;
    EXPECT_EQ(back.tenant, key);
    ASSERT_EQ(back.shards.size(), 2u);
    EXPECT_EQ(back.shards[1].shard, "shard " + key);
    EXPECT_EQ(back.files.size(), 3u);
  }
}

TEST(Manifest, PlainKeysKeepVersion1) {
  // Keys a version 1 reader can read are written as version 1, as they are ('%', '/', UTF-8).
  for (const std::string key : {"acme", "50%off", "a/b", "\xC3\xA9t\xC3\xA9", "a,b"}) {
    Manifest m = sample();
    m.tenant = key;
    const std::string text = encode_manifest(m);
    EXPECT_TRUE(text.starts_with("edgeshard-manifest 1\ngeneration 42\ntenant " + key + "\n")) << text;
    Manifest back;
    std::string why;
    ASSERT_TRUE(decode_manifest(text, back, why)) << why;
    EXPECT_EQ(back.tenant, key);
  }
}

// body followed by its checksum line.
std::string with_checksum(const std::string& body) {
  char line[40];
  std::snprintf(line, sizeof line, "checksum %016" PRIx64 "\n", frame::checksum(body.data(), body.size()));
  return body + line;
}

TEST(Manifest, ReadsVersion1AndRefusesBadEscapes) {
  // A version 1 manifest as the daemons before version 2 wrote it: '%' is a plain byte there.
  const std::string v1 =
      "edgeshard-manifest 1\ngeneration 7\ntenant 50%25\npublished yes\n"
      "shard s1 0/16B3748 1700000000000000 0/16B4000 1700000000500000\n"
      "file base base-0000000000000003.esr 10 4096\n";
  Manifest back;
  std::string why;
  ASSERT_TRUE(decode_manifest(with_checksum(v1), back, why)) << why;
  EXPECT_EQ(back.tenant, "50%25");
  EXPECT_EQ(back.generation, 7u);
  ASSERT_EQ(back.shards.size(), 1u);
  EXPECT_EQ(back.shards[0].shard, "s1");
  EXPECT_EQ(back.shards[0].applied, 0x16B3748u);
  ASSERT_EQ(back.files.size(), 1u);
  // The same line under version 2 is the escaped form.
  const std::string v2 = "edgeshard-manifest 2" + v1.substr(20);
  ASSERT_TRUE(decode_manifest(with_checksum(v2), back, why)) << why;
  EXPECT_EQ(back.tenant, "50%");
  for (const char* bad : {"tenant 50%\n", "tenant 50%2\n", "tenant %zz\n", "tenant \n"}) {
    std::string text = v2;
    text.replace(text.find("tenant 50%25\n"), 14, bad);
    EXPECT_FALSE(decode_manifest(with_checksum(text), back, why)) << bad;
  }
  EXPECT_FALSE(decode_manifest(with_checksum("edgeshard-manifest 3" + v1.substr(20)), back, why));
  EXPECT_NE(why.find("unknown header"), std::string::npos) << why;
}

TEST(Manifest, IsReplacedAtomically) {
  TempDir dir;
  Manifest m = sample();
  std::string why;
  Manifest back;
  EXPECT_FALSE(read_manifest(dir.path(), back, why));
  ASSERT_TRUE(write_manifest(dir.path(), m, why)) << why;
  m.generation = 43;
  m.files.pop_back();
  ASSERT_TRUE(write_manifest(dir.path(), m, why)) << why;
  ASSERT_TRUE(read_manifest(dir.path(), back, why)) << why;
  EXPECT_EQ(back.generation, 43u);
  EXPECT_EQ(back.files.size(), 2u);
  EXPECT_FALSE(fs::exists(dir.path() / "manifest.tmp"));
  // A damaged manifest is refused with its path.
  std::ofstream(dir.path() / "manifest", std::ios::app) << "x";
  EXPECT_FALSE(read_manifest(dir.path(), back, why));
  EXPECT_NE(why.find("checksum"), std::string::npos) << why;
}

TEST(Head, ReadersSeeThePublishedGeneration) {
  TempDir dir;
  std::string why;
  HeadReader early;
  EXPECT_FALSE(early.open(dir.path(), why));
  HeadWriter w;
  ASSERT_TRUE(w.open(dir.path(), why)) << why;
  HeadReader r;
  ASSERT_TRUE(r.open(dir.path(), why)) << why;
  EXPECT_EQ(r.generation(), 0u);
  w.publish(7);
  EXPECT_EQ(r.generation(), 7u);
  // Another writer (a restarted daemon) keeps the file and its generation.
  HeadWriter w2;
  ASSERT_TRUE(w2.open(dir.path(), why)) << why;
  EXPECT_EQ(r.generation(), 7u);
  w2.publish(8);
  EXPECT_EQ(r.generation(), 8u);
  std::ofstream(dir.path() / "head", std::ios::trunc);  // truncated by someone
  HeadReader damaged;
  EXPECT_FALSE(damaged.open(dir.path(), why));
}

}  // namespace
}  // namespace edgeshard::apply

// Unit tests of the initial copy's pure parts: the snapshot's visibility rule (which streamed
// transactions the copy already holds) and the binary COPY reader. The copy against a real
// primary is tested end to end in regress/t/009_apply_initial_copy.pl.
#include "edge_apply/daemon/copy_binary.hpp"
#include "edge_apply/daemon/copy_snapshot.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

namespace edgeshard::apply::daemon {
namespace {

TEST(CopySnapshot, ParsesPgSnapshotText) {
  CopySnapshot s;
  std::string why;
  ASSERT_TRUE(CopySnapshot::parse("740:745:740,742", s, why)) << why;
  EXPECT_EQ(s.xmin, 740u);
  EXPECT_EQ(s.xmax, 745u);
  EXPECT_EQ(s.xip, (std::vector<uint64_t>{740, 742}));
  EXPECT_EQ(s.text(), "740:745:740,742");
  ASSERT_TRUE(CopySnapshot::parse("5:5:", s, why)) << why;
  EXPECT_TRUE(s.xip.empty());
  for (const char* bad : {"", "5", "5:6", "x:6:", "6:5:", "5:9:4", "5:9:9", "5:9:6,", "5:9:6,,7", "5:9:-1"}) {
    EXPECT_FALSE(CopySnapshot::parse(bad, s, why)) << bad;
    EXPECT_FALSE(why.empty());
  }
}

TEST(CopySnapshot, VisibilityFollowsXminXmaxAndInProgressIds) {
  CopySnapshot s;
  std::string why;
  ASSERT_TRUE(CopySnapshot::parse("740:745:740,742", s, why));
  EXPECT_TRUE(s.visible(3));      // long finished
  EXPECT_TRUE(s.visible(739));
  EXPECT_FALSE(s.visible(740));   // in progress when the snapshot was taken
  EXPECT_TRUE(s.visible(741));    // committed before it
  EXPECT_FALSE(s.visible(742));
  EXPECT_TRUE(s.visible(744));
  EXPECT_FALSE(s.visible(745));   // started after it
  EXPECT_FALSE(s.visible(100000));
}

TEST(CopySnapshot, VisibilityAcrossThe32BitWrap) {
  // Full ids past 2^32: frames carry the low 32 bits only.
  const uint64_t epoch = uint64_t{3} << 32;
  CopySnapshot s;
  std::string why;
  ASSERT_TRUE(CopySnapshot::parse(std::to_string(epoch + 2) + ":" + std::to_string(epoch + 10) + ":" +
                                      std::to_string(epoch + 5),
                                  s, why))
      << why;
  EXPECT_TRUE(s.visible(0xFFFFFFF0u));  // 16 ids before the wrap: the previous epoch, committed
  EXPECT_TRUE(s.visible(1));
  EXPECT_TRUE(s.visible(4));
  EXPECT_FALSE(s.visible(5));
  EXPECT_FALSE(s.visible(10));
  EXPECT_FALSE(s.visible(11));
  // A snapshot just below the wrap sees ids after it as future ones.
  ASSERT_TRUE(CopySnapshot::parse(std::to_string(epoch - 20) + ":" + std::to_string(epoch - 5) + ":", s, why));
  EXPECT_TRUE(s.visible(0xFFFFFFE0u));
  EXPECT_FALSE(s.visible(0xFFFFFFFBu));
  EXPECT_FALSE(s.visible(3));
}

// A binary COPY stream of rows (nullopt: NULL), with the header and trailer.
std::string copy_stream(const std::vector<std::vector<std::optional<std::string>>>& rows, uint32_t flags = 0,
                        const std::string& extension = "") {
  std::string out("PGCOPY\n\377\r\n\0", 11);
  auto be32 = [&](uint32_t v) {
    for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
  };
  auto be16 = [&](uint16_t v) {
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v));
  };
  be32(flags);
  be32(static_cast<uint32_t>(extension.size()));
  out += extension;
  for (const auto& row : rows) {
    be16(static_cast<uint16_t>(row.size()));
    for (const auto& f : row) {
      if (!f) {
        be32(0xFFFFFFFFu);
      } else {
        be32(static_cast<uint32_t>(f->size()));
        out += *f;
      }
    }
  }
  be16(0xFFFF);
  return out;
}

using Rows = std::vector<std::vector<std::optional<std::string>>>;

// Reads a whole stream fed in pieces of the given sizes (cycled); returns the rows or fails.
Rows read_all(const std::string& bytes, const std::vector<size_t>& pieces, CopyBinaryReader::Result& last) {
  CopyBinaryReader r;
  Rows out;
  std::vector<std::optional<std::string_view>> fields;
  size_t at = 0, k = 0;
  for (;;) {
    last = r.next(fields);
    if (last == CopyBinaryReader::Result::kTuple) {
      std::vector<std::optional<std::string>> row;
      for (const auto& f : fields) row.push_back(f ? std::optional<std::string>(std::string(*f)) : std::nullopt);
      out.push_back(std::move(row));
      continue;
    }
    if (last != CopyBinaryReader::Result::kNeedMore || at == bytes.size()) return out;
    const size_t n = std::min(pieces[k++ % pieces.size()], bytes.size() - at);
    r.feed(bytes.data() + at, n);
    at += n;
  }
}

TEST(CopyBinaryReader, ReadsRowsWhateverTheChunking) {
  const Rows rows = {{std::string("42"), std::string("\x00\x00\x00\x01", 4), std::nullopt},
                     {std::string("7"), std::string(), std::string(70000, 'x')},
                     {}};
  const std::string bytes = copy_stream(rows, 0, "ext");
  for (const std::vector<size_t>& pieces : std::vector<std::vector<size_t>>{{bytes.size()}, {1}, {3, 7}, {4096}}) {
    CopyBinaryReader::Result last;
    EXPECT_EQ(read_all(bytes, pieces, last), rows);
    EXPECT_EQ(last, CopyBinaryReader::Result::kEnd);
  }
}

TEST(CopyBinaryReader, RefusesMalformedStreams) {
  const Rows rows = {{std::string("1"), std::string("abc")}};
  auto refused = [](const std::string& bytes) {
    CopyBinaryReader::Result last;
    read_all(bytes, {bytes.size() + 1}, last);
    return last;
  };
  std::string bad = copy_stream(rows);
  bad[0] = 'X';
  EXPECT_EQ(refused(bad), CopyBinaryReader::Result::kError);
  EXPECT_EQ(refused(copy_stream(rows, 1u << 16)), CopyBinaryReader::Result::kError);  // OIDs
  std::string extra = copy_stream(rows) + "z";
  EXPECT_EQ(refused(extra), CopyBinaryReader::Result::kError);
  std::string negative = copy_stream(rows);
  negative[19 + 2] = '\xFF';  // first field length: -16777215
  EXPECT_EQ(refused(negative), CopyBinaryReader::Result::kError);
  // Cut anywhere before the trailer: never a tuple invented, never the end.
  const std::string whole = copy_stream(rows);
  for (size_t cut = 0; cut + 2 < whole.size(); ++cut) {
    CopyBinaryReader::Result last;
    const Rows got = read_all(whole.substr(0, cut), {7}, last);
    EXPECT_EQ(last, CopyBinaryReader::Result::kNeedMore) << cut;
    EXPECT_LE(got.size(), rows.size());
  }
}

}  // namespace
}  // namespace edgeshard::apply::daemon

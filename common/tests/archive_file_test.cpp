// WAL archive files (common/archive_file.hpp, ARCHIVE_FORMAT.md): round trips, the stored forms,
// and that every damage (each byte flipped, each truncation, a misplaced block, another name) is
// refused with a precise status rather than decoded.
#include "common/archive_file.hpp"

#include "common/frame_codec.hpp"
#include "common/testing/fake_wal.hpp"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <gtest/gtest.h>

#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace edgeshard::archive {
namespace {

using testing_support::fake_wal;
using testing_support::random_bytes;

constexpr char kName[] = "000000010000000000000001";

// The bytes of a string.
std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Collects decoded blocks; remembers whether each came straight from the file's bytes.
class Collect : public BlockSink {
 public:
  // Collects blocks of the file whose bytes are `file`.
  explicit Collect(std::span<const uint8_t> file = {}) : file_(file) {}
  // Appends the block.
  bool consume(uint64_t raw_offset, std::span<const uint8_t> raw) noexcept override {
    if (raw_offset != out.size()) return false;
    out.append(reinterpret_cast<const char*>(raw.data()), raw.size());
    in_place += raw.data() >= file_.data() && raw.data() < file_.data() + file_.size();
    ++blocks;
    return true;
  }
  std::string out;
  int blocks = 0;
  int in_place = 0;  // blocks stored raw, handed over without a copy

 private:
  std::span<const uint8_t> file_;
};

// Encodes original, with options, or fails the test.
std::string encode(const std::string& original, WriterOptions options = {},
                   const char* name = kName) {
  std::string file;
  const Status st = encode_to_string(name, bytes_of(original), options, file);
  EXPECT_TRUE(st.ok()) << st.what;
  return file;
}

// Opens and decodes file; the status of whichever step failed.
Status open_and_decode(const std::string& file, std::string* out = nullptr) {
  Reader reader;
  Status st = reader.open(bytes_of(file));
  if (!st.ok()) return st;
  Collect sink(bytes_of(file));
  st = reader.decode(sink);
  if (st.ok() && out != nullptr) *out = sink.out;
  return st;
}

TEST(ArchiveFile, RoundTripsEverySizeAndLevel) {
  const std::string wal = fake_wal(3 * 4096 + 777, 7);
  for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{4097}, wal.size()}) {
    for (int level : {0, 1, 9, 12}) {
      const std::string original = wal.substr(0, size);
      const std::string file = encode(original, {.block_size = 4096, .level = level});
      std::string decoded;
      ASSERT_TRUE(open_and_decode(file, &decoded).ok()) << size << " " << level;
      EXPECT_EQ(decoded, original) << size << " " << level;
      Reader reader;
      ASSERT_TRUE(reader.open(bytes_of(file)).ok());
      EXPECT_EQ(reader.header().name, kName);
      EXPECT_EQ(reader.header().block_size, 4096u);
      EXPECT_EQ(reader.trailer().original_length, size);
      EXPECT_EQ(reader.trailer().block_count, (size + 4095) / 4096);
      EXPECT_EQ(reader.trailer().content_checksum, XXH3_64bits(original.data(), original.size()));
      EXPECT_EQ(encode(original, {.block_size = 4096, .level = level}), file) << "deterministic";
    }
  }
}

TEST(ArchiveFile, CompressesWalAndStoresRandomBlocksRaw) {
  const std::string wal = fake_wal(16 << 20, 1);
  const std::string file = encode(wal);
  EXPECT_GT(static_cast<double>(wal.size()) / static_cast<double>(file.size()), 2.5)
      << "fake WAL compresses like real WAL";
  std::string decoded;
  ASSERT_TRUE(open_and_decode(file, &decoded).ok());
  EXPECT_EQ(decoded, wal);

  const std::string noise = random_bytes(3 * 4096 + 10, 2);
  const std::string raw_file = encode(noise, {.block_size = 4096});
  EXPECT_EQ(raw_file.size(),
            header_size(sizeof kName - 1) + 4 * kBlockHeaderSize + noise.size() + kTrailerSize);
  Reader reader;
  ASSERT_TRUE(reader.open(bytes_of(raw_file)).ok());
  Collect sink(bytes_of(raw_file));
  ASSERT_TRUE(reader.decode(sink).ok());
  EXPECT_EQ(sink.out, noise);
  EXPECT_EQ(sink.in_place, 4) << "raw blocks are handed over in place";
}

TEST(ArchiveFile, HighLevelsCompressBetter) {
  const std::string wal = fake_wal(1 << 20, 3);
  const size_t fast = encode(wal, {.level = 0}).size();
  const size_t hc = encode(wal, {.level = 9}).size();
  EXPECT_LT(hc, fast);
}

TEST(ArchiveFile, EveryFlippedByteIsRefused) {
  std::string original = fake_wal(2 * 4096, 4) + random_bytes(4096, 5) + std::string(900, 'x');
  const std::string file = encode(original, {.block_size = 4096});
  for (size_t i = 0; i < file.size(); ++i) {
    std::string bad = file;
    bad[i] ^= 0x10;
    const Status st = open_and_decode(bad);
    EXPECT_FALSE(st.ok()) << "byte " << i << " flipped went unnoticed";
    EXPECT_NE(st.code, Code::kSinkFailed) << "byte " << i;
  }
}

TEST(ArchiveFile, EveryTruncationIsRefused) {
  const std::string file = encode(fake_wal(2 * 4096 + 100, 6), {.block_size = 4096});
  for (size_t len = 0; len < file.size(); ++len) {
    const Status st = open_and_decode(file.substr(0, len));
    EXPECT_FALSE(st.ok()) << "truncated to " << len;
  }
  EXPECT_FALSE(open_and_decode(file + std::string(1, '\0')).ok()) << "a byte appended";
}

TEST(ArchiveFile, SwappedBlocksAreOutOfPlace) {
  // Two random blocks: stored raw, the same length, so they can swap places.
  const std::string a = random_bytes(4096, 8), b = random_bytes(4096, 9);
  const std::string file = encode(a + b + "end", {.block_size = 4096});
  const size_t first = header_size(sizeof kName - 1), len = kBlockHeaderSize + 4096;
  std::string swapped = file;
  swapped.replace(first, len, file.substr(first + len, len));
  swapped.replace(first + len, len, file.substr(first, len));
  const Status st = open_and_decode(swapped);
  EXPECT_EQ(st.code, Code::kCorrupt);
  EXPECT_STREQ(st.what, "block checksum mismatch");
  EXPECT_EQ(st.offset, first);
}

TEST(ArchiveFile, NameIsChecked) {
  const std::string file = encode("content", {}, "00000002.history");
  Reader reader;
  EXPECT_TRUE(reader.open_named(bytes_of(file), "00000002.history").ok());
  const Status st = reader.open_named(bytes_of(file), "00000003.history");
  EXPECT_EQ(st.code, Code::kWrongName);
  EXPECT_NE(describe(st, "repo/wal/00000003.history.eswa").find("another wal file"),
            std::string::npos);
}

// Re-seals a file after editing its header: recomputes the header checksum, the whole-file
// checksum and the trailer checksum.
void reseal_header(std::string& file) {
  auto* p = reinterpret_cast<uint8_t*>(file.data());
  const size_t name_len = frame::load_u16(p + kOffNameLength);
  frame::store_u64(p + kOffName + name_len, XXH3_64bits(p, kOffName + name_len));
  const size_t t = file.size() - kTrailerSize;
  frame::store_u64(p + t + 24, XXH3_64bits(p, t));  // file_checksum
  uint8_t context[8 + 40];
  frame::store_u64(context, t);
  std::memcpy(context + 8, p + t, 40);
  frame::store_u64(p + t + 40, XXH3_64bits(context, sizeof context));  // trailer_checksum
}

TEST(ArchiveFile, VersionsAndFlags) {
  const std::string file = encode("some bytes");
  std::string newer = file;
  newer[kOffVersion] = 2;
  newer[kOffMinReadVersion] = 2;
  reseal_header(newer);
  EXPECT_EQ(open_and_decode(newer).code, Code::kBadVersion);

  std::string compatible = file;  // a newer writer that older readers may read
  compatible[kOffVersion] = 2;
  compatible[kOffHeaderReserved] = 1;  // reserved bytes it may use: ignored
  reseal_header(compatible);
  EXPECT_TRUE(open_and_decode(compatible).ok());

  std::string flag = file;
  flag[kOffFlags] = 1;
  reseal_header(flag);
  EXPECT_EQ(open_and_decode(flag).code, Code::kBadVersion);

  std::string reserved = file;
  reserved[kOffNameReserved] = 1;
  reseal_header(reserved);
  EXPECT_EQ(open_and_decode(reserved).code, Code::kCorrupt);

  EXPECT_EQ(open_and_decode("ESFR not an archive file").code, Code::kBadMagic);
  EXPECT_EQ(open_and_decode("").code, Code::kBadMagic);
}

TEST(ArchiveFile, WriterRefusesBadArguments) {
  std::string out;
  const std::string data = "x";
  EXPECT_EQ(encode_to_string("", bytes_of(data), {}, out).code, Code::kInvalidArgument);
  EXPECT_EQ(encode_to_string(".hidden", bytes_of(data), {}, out).code, Code::kInvalidArgument);
  EXPECT_EQ(encode_to_string("a/b", bytes_of(data), {}, out).code, Code::kInvalidArgument);
  EXPECT_EQ(encode_to_string(std::string(256, 'a'), bytes_of(data), {}, out).code,
            Code::kInvalidArgument);
  EXPECT_TRUE(encode_to_string(std::string(255, 'a'), bytes_of(data), {}, out).ok());
  EXPECT_EQ(encode_to_string(kName, bytes_of(data), {.block_size = 5000}, out).code,
            Code::kInvalidArgument);
  EXPECT_EQ(encode_to_string(kName, bytes_of(data), {.block_size = 2048}, out).code,
            Code::kInvalidArgument);
  EXPECT_EQ(encode_to_string(kName, bytes_of(data), {.level = 13}, out).code,
            Code::kInvalidArgument);
  EXPECT_EQ(encode_to_string(kName, bytes_of(data), {.level = -1}, out).code,
            Code::kInvalidArgument);
}

// A sink that fails on its nth append.
class FailingSink : public ByteSink {
 public:
  // Fails the fail_at-th append (from 1).
  explicit FailingSink(int fail_at) : fail_at_(fail_at) {}
  // Refuses the nth append.
  bool append(std::span<const uint8_t>, std::span<const uint8_t>) noexcept override {
    return ++calls_ != fail_at_;
  }

 private:
  int fail_at_;
  int calls_ = 0;
};

TEST(ArchiveFile, SinkFailuresStopTheWriter) {
  const std::string data = fake_wal(3 * 4096, 10);
  for (int n = 1; n <= 5; ++n) {
    Writer writer({.block_size = 4096});
    FailingSink sink(n);
    EXPECT_EQ(writer.encode(kName, bytes_of(data), sink).code, Code::kSinkFailed) << n;
  }
}

// A sink that refuses the second block.
class RefuseSecond : public BlockSink {
 public:
  // Accepts the first block only.
  bool consume(uint64_t raw_offset, std::span<const uint8_t>) noexcept override {
    return raw_offset == 0;
  }
};

TEST(ArchiveFile, BlockSinkCanStopTheReader) {
  const std::string file = encode(fake_wal(3 * 4096, 11), {.block_size = 4096});
  Reader reader;
  ASSERT_TRUE(reader.open(bytes_of(file)).ok());
  RefuseSecond sink;
  EXPECT_EQ(reader.decode(sink).code, Code::kSinkFailed);
  EXPECT_TRUE(reader.verify().ok()) << "a reader can decode again";
}

}  // namespace
}  // namespace edgeshard::archive

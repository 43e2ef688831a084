// Generator and pin of the checked-in WAL archive file vectors (common/testdata/archive/): each
// vector's original bytes are generated here, deterministically; the checked-in file must decode
// to exactly them, and encoding them again must give the checked-in file byte for byte. After an
// intended format change, regenerate them with
//   EDGESHARD_REGENERATE_TESTDATA=1 build/edgeshard_unit_tests --gtest_filter='ArchiveVectors.*'
// and copy the .eswa files to fuzz/corpus/archive_file/ (the fuzzer's seeds).
#include "common/archive_file.hpp"

#include "common/testing/fake_wal.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <span>
#include <string>

namespace edgeshard::archive {
namespace {

using testing_support::fake_wal;
using testing_support::random_bytes;

// One vector: file name, what it holds (for the README), its name in the header, its original
// bytes, and the writer's settings.
struct Vector {
  const char* file;
  const char* description;
  const char* wal_name;
  std::string (*original)();
  WriterOptions options;
};

// Four 4 KiB blocks: WAL-like (LZ4), random (raw), zeros (LZ4), and a short last block of text.
std::string mixed_segment() {
  return fake_wal(4096, 21) + random_bytes(4096, 22) + std::string(4096, '\0') +
         std::string("a short last block: ") + std::string(980, 'z');
}

// A timeline history file.
std::string history() { return "1\t0/3000158\tno recovery target specified\n"; }

// A backup history file.
std::string backup_history() {
  return "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
         "STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n"
         "CHECKPOINT LOCATION: 0/2000060\n"
         "BACKUP METHOD: streamed\n"
         "BACKUP FROM: primary\n"
         "START TIME: 2024-05-01 12:00:00 UTC\n"
         "LABEL: pg_basebackup base backup\n"
         "START TIMELINE: 1\n"
         "STOP TIME: 2024-05-01 12:00:01 UTC\n"
         "STOP TIMELINE: 1\n";
}

// Nothing.
std::string empty() { return {}; }

const Vector kVectors[] = {
    {"segment_mixed.eswa",
     "WAL file 000000010000000000000001 (13292 bytes), 4 KiB blocks, LZ4 fast: a WAL-like block "
     "(LZ4), a random block (stored raw), a zero block (LZ4) and a short last block (LZ4)",
     "000000010000000000000001",
     mixed_segment,
     {.block_size = 4096, .level = 0}},
    {"segment_mixed_hc9.eswa",
     "the same bytes under the same name with LZ4HC level 9: other compressed bytes, the same "
     "decoded content",
     "000000010000000000000001",
     mixed_segment,
     {.block_size = 4096, .level = 9}},
    {"history.eswa",
     "timeline history file 00000002.history (41 bytes) in one block, stored raw (LZ4 saves too "
     "little); the example of ARCHIVE_FORMAT.md",
     "00000002.history",
     history,
     {.block_size = kDefaultBlockSize, .level = 0}},
    {"backup_history.eswa",
     "backup history file 000000010000000000000002.00000028.backup in one LZ4 block of the default "
     "1 MiB block size",
     "000000010000000000000002.00000028.backup",
     backup_history,
     {.block_size = kDefaultBlockSize, .level = 0}},
    {"empty.eswa",
     "an empty file 000000010000000000000003.partial: no block, header and trailer only",
     "000000010000000000000003.partial",
     empty,
     {.block_size = kDefaultBlockSize, .level = 0}},
};

// The bytes of a string.
std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The whole content of a file ("" when absent).
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Replaces a file's content.
void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// The directory's README, from the vectors' descriptions.
std::string readme() {
  std::string s =
      "# WAL archive file test vectors\n\n"
      "WAL archive files in the format of `common/ARCHIVE_FORMAT.md`, generated and pinned byte "
      "for\n"
      "byte by `common/tests/archive_vectors_test.cpp` (do not edit by hand), which also decodes\n"
      "each one back to its original bytes (generated there, deterministically).\n\n"
      "| file | holds |\n|---|---|\n";
  for (const Vector& v : kVectors)
    s += std::string("| `") + v.file + "` | " + v.description + " |\n";
  return s;
}

// Collects decoded bytes.
class Collect : public BlockSink {
 public:
  // Appends the block.
  bool consume(uint64_t, std::span<const uint8_t> raw) noexcept override {
    out.append(reinterpret_cast<const char*>(raw.data()), raw.size());
    return true;
  }
  std::string out;
};

TEST(ArchiveVectors, CheckedInFilesMatchTheWriter) {
  const std::string dir = std::string(EDGESHARD_TESTDATA_DIR) + "/archive";
  const bool regenerate = std::getenv("EDGESHARD_REGENERATE_TESTDATA") != nullptr;
  for (const Vector& v : kVectors) {
    std::string encoded;
    ASSERT_TRUE(encode_to_string(v.wal_name, bytes_of(v.original()), v.options, encoded).ok());
    if (regenerate) {
      write_file(dir + "/" + v.file, encoded);
      continue;
    }
    EXPECT_EQ(read_file(dir + "/" + v.file), encoded) << v.file << ": bytes differ";
  }
  if (regenerate) {
    write_file(dir + "/README.md", readme());
  } else {
    EXPECT_EQ(read_file(dir + "/README.md"), readme());
  }
}

TEST(ArchiveVectors, CheckedInFilesDecode) {
  const std::string dir = std::string(EDGESHARD_TESTDATA_DIR) + "/archive";
  for (const Vector& v : kVectors) {
    const std::string file = read_file(dir + "/" + v.file);
    Reader reader;
    ASSERT_TRUE(reader.open_named(bytes_of(file), v.wal_name).ok()) << v.file;
    EXPECT_EQ(reader.header().block_size, v.options.block_size);
    Collect sink;
    ASSERT_TRUE(reader.decode(sink).ok()) << v.file;
    EXPECT_EQ(sink.out, v.original()) << v.file;
  }
}

}  // namespace
}  // namespace edgeshard::archive

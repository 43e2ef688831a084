// WAL archive files: one archived WAL segment, timeline history or backup history file, cut into
// blocks compressed with LZ4 (byte layout: common/ARCHIVE_FORMAT.md). The archive module in
// edgeshard.so writes them (archive::Writer), `edgeshard-wal restore` reads them back
// (archive::Reader), both through common/archive_repo.hpp.
//
//   archive::Writer w({.block_size = archive::kDefaultBlockSize, .level = 0});
//   FdSink out(fd);                                  // an archive::ByteSink
//   if (Status st = w.encode("000000010000000000000001", segment_bytes, out); !st.ok()) ...
//
//   archive::Reader r;
//   if (Status st = r.open(file_bytes); !st.ok()) log(describe(st, path));
//   r.header().name == "000000010000000000000001"
//   MySink sink;                                     // an archive::BlockSink: gets raw blocks
//   if (Status st = r.decode(sink); !st.ok()) ...    // every check of ARCHIVE_FORMAT.md
//
// Nothing here throws: every call returns a Status (std::bad_alloc becomes Code::kOutOfMemory).
// The reader works on the file's bytes in place (a mapped file), never reads outside them, and
// hands each block to the sink only after its checksum passed and it decompressed to exactly its
// raw length; the whole-file and content checksums are checked after the last block, so a sink
// that writes blocks out must not publish its output before decode() returned ok.
#pragma once

#include "common/no_postgres.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace edgeshard::archive {

// --- Layout constants (ARCHIVE_FORMAT.md) ------------------------------------------------------

inline constexpr uint8_t kMagic[4] = {'E', 'S', 'W', 'A'};
inline constexpr uint8_t kVersion = 1;          // written, and the highest version read
inline constexpr uint8_t kMinReadVersion = 1;   // written into new files
inline constexpr uint8_t kMinWriteVersion = 1;  // written into new files
inline constexpr uint8_t kChecksumXxh3 = 1;
inline constexpr uint32_t kKnownFlags = 0;

inline constexpr size_t kFixedHeaderSize = 32;  // before the name
inline constexpr size_t kHeaderChecksumSize = 8;
inline constexpr size_t kBlockHeaderSize = 24;
inline constexpr size_t kTrailerSize = 48;

// Header field offsets.
inline constexpr size_t kOffMagic = 0;
inline constexpr size_t kOffVersion = 4;
inline constexpr size_t kOffMinReadVersion = 5;
inline constexpr size_t kOffMinWriteVersion = 6;
inline constexpr size_t kOffChecksumType = 7;
inline constexpr size_t kOffFlags = 8;
inline constexpr size_t kOffBlockSize = 12;
inline constexpr size_t kOffHeaderReserved = 16;  // 8 bytes
inline constexpr size_t kOffNameLength = 24;
inline constexpr size_t kOffNameReserved = 26;  // 6 bytes
inline constexpr size_t kOffName = 32;

// Header size for a name of name_length bytes.
constexpr size_t header_size(size_t name_length) noexcept {
  return kFixedHeaderSize + name_length + kHeaderChecksumSize;
}

// block_type values.
inline constexpr uint8_t kBlockData = 1;
inline constexpr uint8_t kBlockTrailer = 2;

// compression values of a data block.
inline constexpr uint8_t kCompressionNone = 0;
inline constexpr uint8_t kCompressionLz4 = 1;

// Limits.
inline constexpr uint32_t kMinBlockSize = 4096;
inline constexpr uint32_t kMaxBlockSize = 64u << 20;
inline constexpr uint32_t kDefaultBlockSize = 1u << 20;
inline constexpr size_t kMaxNameLength = 255;
inline constexpr int kMaxLevel = 12;  // LZ4HC's highest level

// --- Status --------------------------------------------------------------------------------------

// Outcome classes.
enum class Code : uint8_t {
  kOk = 0,
  kBadMagic,         // not an archive file
  kBadVersion,       // a version this reader cannot read
  kCorrupt,          // the bytes break the format: checksum, layout or decoding (SQLSTATE XX001)
  kWrongName,        // a sound file, but of another WAL file than the one asked for
  kInvalidArgument,  // writer: bad option or name
  kOutOfMemory,      // no memory for the compression state or a block buffer
  kSinkFailed,       // the caller's sink refused the bytes (it knows why)
};

// Outcome of a call. `what` is static text, lower-case, no trailing period.
struct Status {
  Code code = Code::kOk;
  uint64_t offset = 0;  // file offset of the field or block at fault
  const char* what = "";

  // Whether the call succeeded.
  bool ok() const noexcept { return code == Code::kOk; }
};

// Short stable name of a code ("corrupt"), for logs.
const char* code_name(Code code) noexcept;

// One-line description: "archive file <file>: <what> at offset <n>".
std::string describe(const Status& status, std::string_view file);

// Whether name may be stored in a file's header (and be a repository file name): 1 to 255 bytes
// of A-Z a-z 0-9 . _ -, not starting with '.'.
bool valid_name(std::string_view name) noexcept;

// --- Writer --------------------------------------------------------------------------------------

// Where the writer's bytes go, in order: a block header and its stored bytes come together.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  // Appends head then body; false stops the writer (Code::kSinkFailed).
  virtual bool append(std::span<const uint8_t> head, std::span<const uint8_t> body) noexcept = 0;
};

// Writer settings.
struct WriterOptions {
  uint32_t block_size = kDefaultBlockSize;  // power of two, kMinBlockSize..kMaxBlockSize
  int level = 0;  // 0: LZ4 fast (acceleration 1); 1..12: LZ4HC at that level
};

// Encodes whole files; keeps its compression state and block buffer for the next file.
class Writer {
 public:
  // Takes the settings; encode() refuses bad ones with kInvalidArgument.
  explicit Writer(WriterOptions options = {}) noexcept;
  // Frees the compression state and buffer.
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Writes the archive file of `original`, named `name`, to out, in one pass: header, blocks,
  // trailer. Deterministic: the same options, name and bytes give the same file.
  Status encode(std::string_view name, std::span<const uint8_t> original, ByteSink& out) noexcept;
  // Total bytes the last successful encode() produced.
  uint64_t encoded_size() const noexcept { return encoded_size_; }

 private:
  // Allocates the compression state and the block buffer once.
  bool prepare() noexcept;

  WriterOptions options_;
  std::unique_ptr<uint8_t[]> state_;   // LZ4 or LZ4HC state
  std::unique_ptr<uint8_t[]> buffer_;  // block header + compressed block
  size_t buffer_size_ = 0;
  uint64_t encoded_size_ = 0;
};

// Encodes into a string (tests, tools, fuzzing); returns the status.
Status encode_to_string(std::string_view name, std::span<const uint8_t> original,
                        const WriterOptions& options, std::string& out);

// --- Reader --------------------------------------------------------------------------------------

// What the header says.
struct Header {
  uint8_t version = 0;
  uint8_t min_read_version = 0;
  uint8_t min_write_version = 0;
  uint32_t block_size = 0;
  std::string_view name;     // view into the file's bytes
  uint64_t data_offset = 0;  // offset of the first block (or of the trailer)
};

// What the trailer says.
struct Trailer {
  uint64_t offset = 0;  // file offset of the trailer
  uint32_t block_count = 0;
  uint64_t original_length = 0;
  uint64_t content_checksum = 0;
  uint64_t file_checksum = 0;
};

// Receives the original bytes, block by block, in order.
class BlockSink {
 public:
  virtual ~BlockSink() = default;
  // Takes the raw bytes of the block starting at original offset raw_offset; false stops the
  // reader (Code::kSinkFailed). The bytes are valid during the call only.
  virtual bool consume(uint64_t raw_offset, std::span<const uint8_t> raw) noexcept = 0;
};

// Reads one archive file in place.
class Reader {
 public:
  Reader() noexcept;
  // Frees the block buffer.
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // Checks the header and the trailer (bounded cost: the two ends of the file). The bytes must
  // outlive the reader's use of them.
  Status open(std::span<const uint8_t> file) noexcept;
  // Like open(), and the header's name must be `name` (kWrongName otherwise).
  Status open_named(std::span<const uint8_t> file, std::string_view name) noexcept;
  // The opened file's header and trailer.
  const Header& header() const noexcept { return header_; }
  const Trailer& trailer() const noexcept { return trailer_; }

  // Checks every block in order and hands its raw bytes to sink, then checks the block count, the
  // original length, the content checksum and the whole-file checksum. Stored blocks go to the
  // sink in place; compressed ones through a buffer of the block size the reader keeps.
  Status decode(BlockSink& sink) noexcept;
  // decode() without a sink: the full check.
  Status verify() noexcept;

 private:
  std::span<const uint8_t> file_;
  Header header_;
  Trailer trailer_;
  bool open_ = false;
  std::unique_ptr<uint8_t[]> buffer_;
  size_t buffer_size_ = 0;
};

}  // namespace edgeshard::archive

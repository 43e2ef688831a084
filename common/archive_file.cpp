// WAL archive files: writer and reader (layout: common/ARCHIVE_FORMAT.md).
#include "common/archive_file.hpp"

#include "common/frame_codec.hpp"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <lz4.h>
#include <lz4hc.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace edgeshard::archive {
namespace {

using frame::load_u16;
using frame::load_u32;
using frame::load_u64;
using frame::store_u16;
using frame::store_u32;
using frame::store_u64;

// Block header field offsets (ARCHIVE_FORMAT.md, "Block").
constexpr size_t kBlkType = 0;
constexpr size_t kBlkCompression = 1;
constexpr size_t kBlkReserved = 2;
constexpr size_t kBlkIndex = 4;
constexpr size_t kBlkRawLength = 8;
constexpr size_t kBlkStoredLength = 12;
constexpr size_t kBlkChecksum = 16;
constexpr size_t kBlkChecksummed = 16;  // header bytes covered by the block checksum

// Trailer field offsets (ARCHIVE_FORMAT.md, "Trailer").
constexpr size_t kTrType = 0;
constexpr size_t kTrReserved1 = 1;
constexpr size_t kTrBlockCount = 4;
constexpr size_t kTrOriginalLength = 8;
constexpr size_t kTrContentChecksum = 16;
constexpr size_t kTrFileChecksum = 24;
constexpr size_t kTrMagic = 32;
constexpr size_t kTrReserved2 = 36;
constexpr size_t kTrChecksum = 40;

// A failed Status.
Status fail(Code code, uint64_t offset, const char* what) noexcept { return {code, offset, what}; }

// Whether all n bytes at p are zero.
bool all_zero(const uint8_t* p, size_t n) noexcept {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Whether v is a power of two within the block size limits.
bool valid_block_size(uint32_t v) noexcept {
  return v >= kMinBlockSize && v <= kMaxBlockSize && (v & (v - 1)) == 0;
}

// H(offset as u64 ‖ bytes): the context checksum of a block header (plus stored bytes) or trailer.
class ContextHash {
 public:
  // Starts the hash with the file offset of the part.
  explicit ContextHash(uint64_t offset) noexcept {
    XXH3_64bits_reset(&state_);
    uint8_t off[8];
    store_u64(off, offset);
    XXH3_64bits_update(&state_, off, sizeof off);
  }
  // Adds bytes.
  void add(const uint8_t* p, size_t n) noexcept { XXH3_64bits_update(&state_, p, n); }
  // The checksum.
  uint64_t digest() const noexcept { return XXH3_64bits_digest(&state_); }

 private:
  XXH3_state_t state_;
};

// A streaming XXH3-64 (seed 0) of a byte sequence given in pieces.
class StreamHash {
 public:
  // Starts an empty hash.
  StreamHash() noexcept { XXH3_64bits_reset(&state_); }
  // Adds bytes.
  void add(const uint8_t* p, size_t n) noexcept { XXH3_64bits_update(&state_, p, n); }
  // The hash of everything added.
  uint64_t digest() const noexcept { return XXH3_64bits_digest(&state_); }

 private:
  XXH3_state_t state_;
};

// Number of blocks of `length` original bytes.
uint64_t block_count_for(uint64_t length, uint32_t block_size) noexcept {
  return length / block_size + (length % block_size != 0 ? 1 : 0);
}

// Appends to a string.
class StringSink : public ByteSink {
 public:
  // Appends to out, which must outlive the sink.
  explicit StringSink(std::string& out) noexcept : out_(out) {}
  // Appends head and body to the string.
  bool append(std::span<const uint8_t> head, std::span<const uint8_t> body) noexcept override {
    try {
      out_.append(reinterpret_cast<const char*>(head.data()), head.size());
      out_.append(reinterpret_cast<const char*>(body.data()), body.size());
      return true;
    } catch (...) {
      return false;
    }
  }

 private:
  std::string& out_;
};

// A sink that drops every block (verify()).
class NullSink : public BlockSink {
 public:
  // Accepts and ignores a block.
  bool consume(uint64_t, std::span<const uint8_t>) noexcept override { return true; }
};

}  // namespace

const char* code_name(Code code) noexcept {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kBadMagic:
      return "bad_magic";
    case Code::kBadVersion:
      return "bad_version";
    case Code::kCorrupt:
      return "corrupt";
    case Code::kWrongName:
      return "wrong_name";
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kOutOfMemory:
      return "out_of_memory";
    case Code::kSinkFailed:
      return "sink_failed";
  }
  return "unknown";
}

std::string describe(const Status& status, std::string_view file) {
  std::string out = "archive file \"";
  out.append(file);
  out += "\": ";
  out += status.what;
  if (status.code == Code::kCorrupt || status.code == Code::kBadMagic ||
      status.code == Code::kBadVersion) {
    out += " at offset " + std::to_string(status.offset);
  }
  return out;
}

bool valid_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameLength || name[0] == '.') return false;
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// --- Writer
// ----------------------------------------------------------------------------------------

Writer::Writer(WriterOptions options) noexcept : options_(options) {}

Writer::~Writer() = default;

bool Writer::prepare() noexcept {
  const size_t state_size =
      static_cast<size_t>(options_.level == 0 ? LZ4_sizeofState() : LZ4_sizeofStateHC());
  const size_t buffer_size = kBlockHeaderSize + options_.block_size;
  try {
    if (!state_) state_ = std::make_unique<uint8_t[]>(std::max(state_size, size_t{1}));
    if (buffer_size_ < buffer_size) {
      buffer_ = std::make_unique<uint8_t[]>(buffer_size);
      buffer_size_ = buffer_size;
    }
  } catch (const std::bad_alloc&) {
    return false;
  }
  return true;
}

Status Writer::encode(std::string_view name, std::span<const uint8_t> original,
                      ByteSink& out) noexcept {
  encoded_size_ = 0;
  if (!valid_name(name)) return fail(Code::kInvalidArgument, 0, "invalid wal file name");
  if (!valid_block_size(options_.block_size)) {
    return fail(Code::kInvalidArgument, 0, "block size is not a power of two in 4 KiB..64 MiB");
  }
  if (options_.level < 0 || options_.level > kMaxLevel) {
    return fail(Code::kInvalidArgument, 0, "compression level is not in 0..12");
  }
  const uint32_t bs = options_.block_size;
  if (block_count_for(original.size(), bs) > UINT32_MAX) {
    return fail(Code::kInvalidArgument, 0, "file too large");
  }
  if (!prepare()) return fail(Code::kOutOfMemory, 0, "out of memory");

  StreamHash file_hash;
  StreamHash content_hash;
  uint64_t offset = 0;

  // Header.
  uint8_t head[kFixedHeaderSize + kMaxNameLength + kHeaderChecksumSize] = {};
  std::memcpy(head + kOffMagic, kMagic, sizeof kMagic);
  head[kOffVersion] = kVersion;
  head[kOffMinReadVersion] = kMinReadVersion;
  head[kOffMinWriteVersion] = kMinWriteVersion;
  head[kOffChecksumType] = kChecksumXxh3;
  store_u32(head + kOffFlags, 0);
  store_u32(head + kOffBlockSize, bs);
  store_u16(head + kOffNameLength, static_cast<uint16_t>(name.size()));
  std::memcpy(head + kOffName, name.data(), name.size());
  const size_t head_len = header_size(name.size());
  store_u64(head + kOffName + name.size(), XXH3_64bits(head, kOffName + name.size()));
  if (!out.append({head, head_len}, {})) return fail(Code::kSinkFailed, 0, "could not write");
  file_hash.add(head, head_len);
  offset += head_len;

  // Blocks: the compressed bytes go right after the block header in buffer_; a block LZ4 does not
  // shrink by an eighth is stored raw, straight from `original`.
  uint8_t* const block_head = buffer_.get();
  uint8_t* const compressed = block_head + kBlockHeaderSize;
  uint32_t index = 0;
  for (size_t pos = 0; pos < original.size(); pos += bs, ++index) {
    const size_t raw_len = std::min<size_t>(bs, original.size() - pos);
    const uint8_t* raw = original.data() + pos;
    content_hash.add(raw, raw_len);
    const int capacity = static_cast<int>(raw_len - raw_len / 8);
    const char* src = reinterpret_cast<const char*>(raw);
    char* dst = reinterpret_cast<char*>(compressed);
    const int n =
        options_.level == 0
            ? LZ4_compress_fast_extState(state_.get(), src, dst, static_cast<int>(raw_len),
                                         capacity, 1)
            : LZ4_compress_HC_extStateHC(state_.get(), src, dst, static_cast<int>(raw_len),
                                         capacity, options_.level);
    const bool lz4 = n > 0 && static_cast<size_t>(n) < raw_len;
    const size_t stored_len = lz4 ? static_cast<size_t>(n) : raw_len;
    const uint8_t* stored = lz4 ? compressed : raw;

    block_head[kBlkType] = kBlockData;
    block_head[kBlkCompression] = lz4 ? kCompressionLz4 : kCompressionNone;
    store_u16(block_head + kBlkReserved, 0);
    store_u32(block_head + kBlkIndex, index);
    store_u32(block_head + kBlkRawLength, static_cast<uint32_t>(raw_len));
    store_u32(block_head + kBlkStoredLength, static_cast<uint32_t>(stored_len));
    ContextHash block_hash(offset);
    block_hash.add(block_head, kBlkChecksummed);
    block_hash.add(stored, stored_len);
    store_u64(block_head + kBlkChecksum, block_hash.digest());

    if (!out.append({block_head, kBlockHeaderSize}, {stored, stored_len})) {
      return fail(Code::kSinkFailed, offset, "could not write");
    }
    file_hash.add(block_head, kBlockHeaderSize);
    file_hash.add(stored, stored_len);
    offset += kBlockHeaderSize + stored_len;
  }

  // Trailer.
  uint8_t trailer[kTrailerSize] = {};
  trailer[kTrType] = kBlockTrailer;
  store_u32(trailer + kTrBlockCount, index);
  store_u64(trailer + kTrOriginalLength, original.size());
  store_u64(trailer + kTrContentChecksum, content_hash.digest());
  store_u64(trailer + kTrFileChecksum, file_hash.digest());
  std::memcpy(trailer + kTrMagic, kMagic, sizeof kMagic);
  ContextHash trailer_hash(offset);
  trailer_hash.add(trailer, kTrChecksum);
  store_u64(trailer + kTrChecksum, trailer_hash.digest());
  if (!out.append({trailer, kTrailerSize}, {})) {
    return fail(Code::kSinkFailed, offset, "could not write");
  }
  encoded_size_ = offset + kTrailerSize;
  return {};
}

Status encode_to_string(std::string_view name, std::span<const uint8_t> original,
                        const WriterOptions& options, std::string& out) {
  out.clear();
  Writer writer(options);
  StringSink sink(out);
  const Status st = writer.encode(name, original, sink);
  if (st.code == Code::kSinkFailed) return fail(Code::kOutOfMemory, st.offset, "out of memory");
  return st;
}

// --- Reader
// ----------------------------------------------------------------------------------------

Reader::Reader() noexcept = default;

Reader::~Reader() = default;

Status Reader::open_named(std::span<const uint8_t> file, std::string_view name) noexcept {
  const Status st = open(file);
  if (!st.ok()) return st;
  if (header_.name != name) {
    open_ = false;
    return fail(Code::kWrongName, kOffName, "holds another wal file than the one asked for");
  }
  return st;
}

Status Reader::open(std::span<const uint8_t> file) noexcept {
  open_ = false;
  file_ = file;
  header_ = {};
  trailer_ = {};
  const uint8_t* p = file.data();
  const size_t size = file.size();

  // Header: magic and versions first, so that a newer layout is reported as such.
  if (size < sizeof kMagic || std::memcmp(p + kOffMagic, kMagic, sizeof kMagic) != 0) {
    return fail(Code::kBadMagic, 0, "not an edgeshard wal archive file (bad magic)");
  }
  if (size < kFixedHeaderSize) return fail(Code::kCorrupt, 0, "file too short for its header");
  header_.version = p[kOffVersion];
  header_.min_read_version = p[kOffMinReadVersion];
  header_.min_write_version = p[kOffMinWriteVersion];
  if (header_.min_read_version < 1 || header_.min_read_version > kVersion ||
      header_.min_read_version > header_.version || header_.min_write_version < 1 ||
      header_.min_write_version > header_.version) {
    return fail(Code::kBadVersion, kOffVersion, "unsupported format version");
  }
  if (p[kOffChecksumType] != kChecksumXxh3) {
    return fail(Code::kBadVersion, kOffChecksumType, "unknown checksum type");
  }
  const size_t name_len = load_u16(p + kOffNameLength);
  if (name_len == 0 || name_len > kMaxNameLength) {
    return fail(Code::kCorrupt, kOffNameLength, "name length out of range");
  }
  const size_t head_len = header_size(name_len);
  if (size < head_len + kTrailerSize) return fail(Code::kCorrupt, 0, "file too short");
  if (load_u64(p + kOffName + name_len) != XXH3_64bits(p, kOffName + name_len)) {
    return fail(Code::kCorrupt, kOffName + name_len, "header checksum mismatch");
  }
  if ((load_u32(p + kOffFlags) & ~kKnownFlags) != 0) {
    return fail(Code::kBadVersion, kOffFlags, "unknown flag set");
  }
  // A newer minor version may use reserved bytes an older reader can ignore.
  if (header_.version <= kVersion &&
      (!all_zero(p + kOffHeaderReserved, 8) || !all_zero(p + kOffNameReserved, 6))) {
    return fail(Code::kCorrupt, kOffHeaderReserved, "reserved header bytes are not zero");
  }
  header_.block_size = load_u32(p + kOffBlockSize);
  if (!valid_block_size(header_.block_size)) {
    return fail(Code::kCorrupt, kOffBlockSize, "block size out of range");
  }
  header_.name = std::string_view(reinterpret_cast<const char*>(p + kOffName), name_len);
  if (!valid_name(header_.name)) return fail(Code::kCorrupt, kOffName, "invalid name");
  header_.data_offset = head_len;

  // Trailer: the last 48 bytes.
  const uint64_t t = size - kTrailerSize;
  const uint8_t* tr = p + t;
  if (tr[kTrType] != kBlockTrailer || std::memcmp(tr + kTrMagic, kMagic, sizeof kMagic) != 0) {
    return fail(Code::kCorrupt, t, "no trailer at the end (truncated?)");
  }
  ContextHash trailer_hash(t);
  trailer_hash.add(tr, kTrChecksum);
  if (load_u64(tr + kTrChecksum) != trailer_hash.digest()) {
    return fail(Code::kCorrupt, t, "trailer checksum mismatch");
  }
  if (header_.version <= kVersion &&
      (!all_zero(tr + kTrReserved1, 3) || !all_zero(tr + kTrReserved2, 4))) {
    return fail(Code::kCorrupt, t, "reserved trailer bytes are not zero");
  }
  trailer_.offset = t;
  trailer_.block_count = load_u32(tr + kTrBlockCount);
  trailer_.original_length = load_u64(tr + kTrOriginalLength);
  trailer_.content_checksum = load_u64(tr + kTrContentChecksum);
  trailer_.file_checksum = load_u64(tr + kTrFileChecksum);
  if (block_count_for(trailer_.original_length, header_.block_size) != trailer_.block_count) {
    return fail(Code::kCorrupt, t + kTrBlockCount,
                "block count does not match the original length");
  }
  // Every block takes its header and at least one stored byte.
  if ((t - head_len) / (kBlockHeaderSize + 1) < trailer_.block_count ||
      (trailer_.block_count == 0) != (t == head_len)) {
    return fail(Code::kCorrupt, t + kTrBlockCount, "block count does not fit the file");
  }
  open_ = true;
  return {};
}

Status Reader::decode(BlockSink& sink) noexcept {
  if (!open_) return fail(Code::kInvalidArgument, 0, "reader not open");
  const uint8_t* p = file_.data();
  const uint32_t bs = header_.block_size;
  const uint64_t end = trailer_.offset;
  StreamHash file_hash;
  StreamHash content_hash;
  file_hash.add(p, header_.data_offset);

  uint64_t pos = header_.data_offset;
  uint64_t raw_offset = 0;
  uint32_t index = 0;
  while (pos < end) {
    if (end - pos < kBlockHeaderSize)
      return fail(Code::kCorrupt, pos, "block header runs into the trailer");
    const uint8_t* h = p + pos;
    if (h[kBlkType] != kBlockData) return fail(Code::kCorrupt, pos, "not a data block");
    const uint32_t raw_len = load_u32(h + kBlkRawLength);
    const uint32_t stored_len = load_u32(h + kBlkStoredLength);
    if (stored_len > end - pos - kBlockHeaderSize) {
      return fail(Code::kCorrupt, pos, "block runs into the trailer");
    }
    const uint8_t* stored = h + kBlockHeaderSize;
    ContextHash block_hash(pos);
    block_hash.add(h, kBlkChecksummed);
    block_hash.add(stored, stored_len);
    if (load_u64(h + kBlkChecksum) != block_hash.digest()) {
      return fail(Code::kCorrupt, pos, "block checksum mismatch");
    }
    if (load_u16(h + kBlkReserved) != 0)
      return fail(Code::kCorrupt, pos, "reserved block bytes are not zero");
    if (load_u32(h + kBlkIndex) != index) return fail(Code::kCorrupt, pos, "block out of place");
    if (index >= trailer_.block_count)
      return fail(Code::kCorrupt, pos, "more blocks than the trailer says");
    const uint64_t next = pos + kBlockHeaderSize + stored_len;
    const bool last = index + 1 == trailer_.block_count;
    if (raw_len == 0 || raw_len > bs || (!last && raw_len != bs) ||
        (last && raw_offset + raw_len != trailer_.original_length)) {
      return fail(Code::kCorrupt, pos,
                  "raw length does not fit the block size and original length");
    }
    std::span<const uint8_t> raw;
    const uint8_t compression = h[kBlkCompression];
    if (compression == kCompressionNone) {
      if (stored_len != raw_len)
        return fail(Code::kCorrupt, pos, "stored length differs from raw length");
      raw = {stored, stored_len};
    } else if (compression == kCompressionLz4) {
      if (stored_len == 0 || stored_len >= raw_len) {
        return fail(Code::kCorrupt, pos, "compressed block is not smaller than its raw length");
      }
      if (buffer_size_ < bs) {
        try {
          buffer_ = std::make_unique<uint8_t[]>(bs);
          buffer_size_ = bs;
        } catch (const std::bad_alloc&) {
          return fail(Code::kOutOfMemory, pos, "out of memory");
        }
      }
      const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(stored),
                                        reinterpret_cast<char*>(buffer_.get()),
                                        static_cast<int>(stored_len), static_cast<int>(raw_len));
      if (n < 0 || static_cast<uint32_t>(n) != raw_len) {
        return fail(Code::kCorrupt, pos, "lz4 block does not decompress to its raw length");
      }
      raw = {buffer_.get(), raw_len};
    } else {
      return fail(Code::kCorrupt, pos, "unknown block compression");
    }
    content_hash.add(raw.data(), raw.size());
    if (!sink.consume(raw_offset, raw))
      return fail(Code::kSinkFailed, pos, "the block was refused");
    file_hash.add(h, kBlockHeaderSize + stored_len);
    raw_offset += raw_len;
    pos = next;
    ++index;
  }
  if (index != trailer_.block_count)
    return fail(Code::kCorrupt, end, "fewer blocks than the trailer says");
  if (file_hash.digest() != trailer_.file_checksum)
    return fail(Code::kCorrupt, end, "file checksum mismatch");
  if (content_hash.digest() != trailer_.content_checksum) {
    return fail(Code::kCorrupt, end, "content checksum mismatch");
  }
  return {};
}

Status Reader::verify() noexcept {
  NullSink sink;
  return decode(sink);
}

}  // namespace edgeshard::archive

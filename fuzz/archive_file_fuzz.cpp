// libFuzzer target for WAL archive files (common/archive_file.hpp, layout in
// common/ARCHIVE_FORMAT.md): whatever the bytes, Reader::open() and decode() must refuse them or
// decode a file whose content agrees with its trailer -- never crash, read out of bounds, leak, or
// hit undefined behaviour. Each input is tried twice:
//   1. exactly as given (the checksums catch nearly every mutation);
//   2. with every checksum recomputed -- the header's, each block's that the walk reaches, the
//      whole-file, the content checksum of whatever decodes, and the trailer's -- so mutations get
//      past the checksums and reach the lengths, block order and LZ4 decoding.
// When decode() succeeds: the blocks came in order and back to back, their total is the trailer's
// original length, and the content encodes (same name, block size) into a file that decodes to the
// same bytes. Build and run: see fuzz/README.md.
#include "common/archive_file.hpp"

#include "common/frame_codec.hpp"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace {

namespace archive = edgeshard::archive;
using edgeshard::frame::load_u16;
using edgeshard::frame::load_u32;
using edgeshard::frame::store_u64;

// Stops the run with a finding when an invariant does not hold, naming its line.
void require(bool ok, int line = __builtin_LINE()) {
  if (ok) return;
  std::fprintf(stderr, "archive_file_fuzz: invariant at line %d does not hold\n", line);
  __builtin_trap();
}

// Collects the decoded content, checking that blocks come back to back.
class Collect : public archive::BlockSink {
 public:
  // Appends the block.
  bool consume(uint64_t raw_offset, std::span<const uint8_t> raw) noexcept override {
    require(raw_offset == out.size());
    require(!raw.empty());
    out.insert(out.end(), raw.begin(), raw.end());
    return true;
  }
  std::vector<uint8_t> out;
};

// H(offset ‖ bytes): a context checksum.
uint64_t context_hash(uint64_t offset, const uint8_t* p, size_t n, const uint8_t* q = nullptr,
                      size_t m = 0) {
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  uint8_t off[8];
  store_u64(off, offset);
  XXH3_64bits_update(&st, off, sizeof off);
  XXH3_64bits_update(&st, p, n);
  if (m > 0) XXH3_64bits_update(&st, q, m);
  return XXH3_64bits_digest(&st);
}

// Opens and decodes bytes; on success checks the invariants and the re-encoding round trip.
void read_file(std::span<const uint8_t> bytes) {
  archive::Reader reader;
  if (!reader.open(bytes).ok()) return;
  Collect sink;
  const archive::Status st = reader.decode(sink);
  if (!st.ok()) {
    require(st.code != archive::Code::kOk && st.what[0] != '\0');
    return;
  }
  require(sink.out.size() == reader.trailer().original_length);
  require(reader.verify().ok());
  std::string again;
  const archive::WriterOptions options{.block_size = reader.header().block_size, .level = 0};
  require(archive::encode_to_string(reader.header().name, sink.out, options, again).ok());
  archive::Reader second;
  const std::span<const uint8_t> again_bytes(reinterpret_cast<const uint8_t*>(again.data()),
                                             again.size());
  require(second.open_named(again_bytes, reader.header().name).ok());
  Collect back;
  require(second.decode(back).ok());
  require(back.out == sink.out);
}

// Recomputes every checksum the layout lets us find, so mutations reach the decoding rules.
void fix_checksums(std::vector<uint8_t>& f) {
  if (f.size() < archive::kFixedHeaderSize + archive::kHeaderChecksumSize + archive::kTrailerSize)
    return;
  uint8_t* p = f.data();
  const size_t name_len = load_u16(p + archive::kOffNameLength);
  const size_t head = archive::header_size(name_len);
  if (head + archive::kTrailerSize > f.size()) return;
  store_u64(p + archive::kOffName + name_len, XXH3_64bits(p, archive::kOffName + name_len));
  const size_t t = f.size() - archive::kTrailerSize;
  size_t pos = head;
  while (pos + archive::kBlockHeaderSize <= t && p[pos] == archive::kBlockData) {
    const size_t stored = load_u32(p + pos + 12);
    if (stored > t - pos - archive::kBlockHeaderSize) break;
    store_u64(p + pos + 16,
              context_hash(pos, p + pos, 16, p + pos + archive::kBlockHeaderSize, stored));
    pos += archive::kBlockHeaderSize + stored;
  }
  store_u64(p + t + 24, XXH3_64bits(p, t));
  store_u64(p + t + 40, context_hash(t, p + t, 40));
  // The content checksum too: decode what decodes, hash it, seal the trailer again.
  archive::Reader reader;
  if (!reader.open(f).ok()) return;
  Collect sink;
  if (reader.decode(sink).code == archive::Code::kCorrupt) {
    store_u64(p + t + 16, XXH3_64bits(sink.out.data(), sink.out.size()));
    store_u64(p + t + 40, context_hash(t, p + t, 40));
  }
}

}  // namespace

// Entry point: the input as an archive file, as given and with its checksums fixed.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  read_file(std::span<const uint8_t>(data, size));
  std::vector<uint8_t> fixed(data, data + size);
  fix_checksums(fixed);
  read_file(fixed);
  return 0;
}

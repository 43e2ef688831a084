// libFuzzer target for the frame reader (common/frame_reader.hpp): arbitrary bytes must never make
// it crash, read out of bounds, leak, or hit undefined behaviour. Each input is tried three ways:
//   1. as a stream of frames, exactly as given (header and checksum checks);
//   2. the same with every frame's checksums recomputed, so mutations get past the checksums and
//      reach the length checks, LZ4 decompression and the message decoder;
//   3. as a raw payload handed straight to the message decoder.
// Every decoded frame is also rendered as JSON, which must contain no raw control characters.
// Build and run: see fuzz/README.md.
#include "common/frame_codec.hpp"
#include "common/frame_format.hpp"
#include "common/frame_json.hpp"
#include "common/frame_reader.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace frame = edgeshard::frame;

// Stops the run with a finding when an invariant of the reader does not hold.
void require(bool ok) {
  if (!ok) __builtin_trap();
}

// Decodes every message of the open frame and renders the frame as JSON.
void consume(const frame::Reader& reader) {
  std::string json;
  const frame::Status st = frame::append_frame_json(json, reader);
  require(st.ok() || st.error == frame::Error::kBadMessage);
  require(st.offset <= reader.payload().size());
  for (char c : json) require(static_cast<unsigned char>(c) >= 0x20 || c == '\n');
}

// Reads bytes as a stream of frames until the end or the first refused frame.
void read_stream(std::span<const uint8_t> bytes) {
  frame::Reader reader;
  while (!bytes.empty()) {
    size_t length = 0;
    const frame::Status boundary = frame::frame_length(bytes, length);
    const frame::Status opened = reader.open(bytes);
    // Both calls agree: a frame opens only if its header is good and all of it is there.
    require(!opened.ok() || (boundary.ok() && length == reader.header().frame_length));
    require(!boundary.ok() || length >= frame::kMinHeaderSize);
    if (!opened.ok()) return;
    require(length <= bytes.size());
    consume(reader);
    bytes = bytes.subspan(length);
  }
}

// Recomputes the checksums of every frame whose lengths fit in the bytes.
void fix_checksums(std::vector<uint8_t>& bytes) {
  size_t pos = 0;
  while (bytes.size() - pos >= frame::kOffTenantKey) {
    uint8_t* f = bytes.data() + pos;
    const size_t header = frame::header_size(frame::load_u16(f + frame::kOffTenantKeyLength));
    if (bytes.size() - pos < header) return;
    const size_t stored = frame::load_u32(f + frame::kOffStoredLength);
    if (bytes.size() - pos - header < stored) return;
    frame::store_u64(f + frame::kOffPayloadChecksum, frame::checksum(f + header, stored));
    const size_t checked = header - frame::kHeaderChecksumSize;
    frame::store_u64(f + checked, frame::checksum(f, checked));
    pos += header + stored;
  }
}

// Decodes bytes as a raw payload.
void read_payload(std::string_view payload) {
  frame::MessageCursor cursor(payload);
  frame::Message m;
  std::string json;
  while (cursor.next(m)) {
    json.clear();
    frame::append_message_json(json, m);
  }
  require(cursor.offset() <= payload.size());
  require(cursor.status().ok() || cursor.status().offset <= payload.size());
}

}  // namespace

// libFuzzer's entry point: one input.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  read_stream(bytes);
  std::vector<uint8_t> fixed(bytes.begin(), bytes.end());
  fix_checksums(fixed);
  read_stream(fixed);
  read_payload(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}

// PostgreSQL's binary COPY format, read incrementally.
#include "edge_apply/daemon/copy_binary.hpp"

#include <cstring>

namespace edgeshard::apply::daemon {

namespace {

// The 11-byte signature that opens every binary COPY stream.
constexpr char kSignature[] = "PGCOPY\n\377\r\n";  // plus its terminating NUL: 11 bytes
constexpr size_t kSignatureBytes = 11;
// Flag bit 16: OIDs included (not produced by PostgreSQL 12+); bits 17-31: critical, unknown.
constexpr uint32_t kCriticalFlags = 0xFFFF0000u;

// Big-endian readers.
uint32_t be32(const char* p) noexcept {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}
uint16_t be16(const char* p) noexcept {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>((u[0] << 8) | u[1]);
}

}  // namespace

void CopyBinaryReader::feed(const void* data, size_t n) {
  // Drop what was consumed once it is most of the buffer (views of the last tuple die here).
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(static_cast<const char*>(data), n);
}

CopyBinaryReader::Result CopyBinaryReader::fail(std::string why) {
  error_ = std::move(why);
  return Result::kError;
}

CopyBinaryReader::Result CopyBinaryReader::next(std::vector<std::optional<std::string_view>>& fields) {
  if (!error_.empty()) return Result::kError;
  if (ended_) return pos_ == buf_.size() ? Result::kEnd : fail("bytes after the copy's trailer");
  const char* p = buf_.data() + pos_;
  size_t left = buf_.size() - pos_;
  if (!header_done_) {
    if (left < kSignatureBytes + 8) return Result::kNeedMore;
    if (std::memcmp(p, kSignature, kSignatureBytes) != 0) return fail("not a binary COPY stream (bad signature)");
    const uint32_t flags = be32(p + kSignatureBytes);
    if ((flags & kCriticalFlags) != 0) return fail("binary COPY header has unsupported flags (OIDs or a newer format)");
    const uint32_t ext = be32(p + kSignatureBytes + 4);
    if (ext > (1u << 20)) return fail("binary COPY header extension is implausibly long");
    if (left < kSignatureBytes + 8 + ext) return Result::kNeedMore;
    pos_ += kSignatureBytes + 8 + ext;
    header_done_ = true;
    p = buf_.data() + pos_;
    left = buf_.size() - pos_;
  }
  if (left < 2) return Result::kNeedMore;
  const auto count = static_cast<int16_t>(be16(p));
  if (count == -1) {
    pos_ += 2;
    ended_ = true;
    return pos_ == buf_.size() ? Result::kEnd : fail("bytes after the copy's trailer");
  }
  if (count < 0) return fail("negative field count in a binary COPY tuple");
  // Measure the whole tuple before handing out views.
  size_t off = 2;
  for (int i = 0; i < count; ++i) {
    if (left < off + 4) return Result::kNeedMore;
    const auto len = static_cast<int32_t>(be32(p + off));
    off += 4;
    if (len == -1) continue;
    if (len < 0) return fail("negative field length in a binary COPY tuple");
    if (left < off + static_cast<size_t>(len)) return Result::kNeedMore;
    off += static_cast<size_t>(len);
  }
  fields.clear();
  size_t at = 2;
  for (int i = 0; i < count; ++i) {
    const auto len = static_cast<int32_t>(be32(p + at));
    at += 4;
    if (len == -1) {
      fields.emplace_back(std::nullopt);
    } else {
      fields.emplace_back(std::string_view(p + at, static_cast<size_t>(len)));
      at += static_cast<size_t>(len);
    }
  }
  pos_ += off;
  return Result::kTuple;
}

}  // namespace edgeshard::apply::daemon

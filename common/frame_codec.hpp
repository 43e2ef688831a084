// Byte-level encoding shared by the frame writer and reader (common/FORMAT.md, "Conventions"):
// little-endian fixed-width integers, minimal LEB128 varints, and a bounds-checked cursor.
// Every field is encoded explicitly, byte by byte; compilers turn the loads and stores into single
// moves on little-endian machines.
#pragma once

#include "common/no_postgres.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace edgeshard::frame {

// Longest varint: 64 bits in groups of 7.
inline constexpr size_t kMaxVarintBytes = 10;

// Stores v at p as 2 little-endian bytes.
inline void store_u16(uint8_t* p, uint16_t v) noexcept {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// Stores v at p as 4 little-endian bytes.
inline void store_u32(uint8_t* p, uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Stores v at p as 8 little-endian bytes.
inline void store_u64(uint8_t* p, uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Loads 2 little-endian bytes at p.
inline uint16_t load_u16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

// Loads 4 little-endian bytes at p.
inline uint32_t load_u32(const uint8_t* p) noexcept {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{p[i]} << (8 * i);
  return v;
}

// Loads 8 little-endian bytes at p.
inline uint64_t load_u64(const uint8_t* p) noexcept {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

// Writes v as a minimal LEB128 varint at out (room for kMaxVarintBytes); returns the bytes used.
inline size_t store_varint(uint8_t* out, uint64_t v) noexcept {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  out[n++] = static_cast<uint8_t>(v);
  return n;
}

// Bounds-checked forward cursor over bytes. Every read either succeeds or records why and where it
// failed (the first failure wins) and returns false; it never reads outside the bytes.
class ByteReader {
 public:
  ByteReader() = default;

  // Reads `bytes`, which must outlive the reader.
  explicit ByteReader(std::string_view bytes) noexcept
      : begin_(reinterpret_cast<const uint8_t*>(bytes.data())),
        p_(begin_),
        end_(begin_ + bytes.size()) {}

  // Offset of the next byte to read.
  size_t offset() const noexcept { return static_cast<size_t>(p_ - begin_); }
  // Bytes not read yet.
  size_t remaining() const noexcept { return static_cast<size_t>(end_ - p_); }
  // Whether every byte has been read.
  bool at_end() const noexcept { return p_ == end_; }
  // Why the first failed read failed (static text), or nullptr.
  const char* error() const noexcept { return error_; }
  // Offset the first failure points at.
  size_t error_offset() const noexcept { return error_offset_; }

  // Records a failure at `offset` (unless one is recorded already) and returns false.
  bool fail(const char* why, size_t offset) noexcept {
    if (error_ == nullptr) {
      error_ = why;
      error_offset_ = offset;
    }
    return false;
  }

  // The next byte without reading it; only when remaining() > 0.
  uint8_t peek() const noexcept { return *p_; }

  // Reads one byte.
  bool u8(uint8_t& v) noexcept {
    if (!need(1)) return false;
    v = *p_++;
    return true;
  }

  // Reads a little-endian u32.
  bool u32(uint32_t& v) noexcept {
    if (!need(4)) return false;
    v = load_u32(p_);
    p_ += 4;
    return true;
  }

  // Reads a little-endian u64.
  bool u64(uint64_t& v) noexcept {
    if (!need(8)) return false;
    v = load_u64(p_);
    p_ += 8;
    return true;
  }

  // Reads a little-endian two's complement i32.
  bool i32(int32_t& v) noexcept {
    uint32_t u;
    if (!u32(u)) return false;
    v = static_cast<int32_t>(u);
    return true;
  }

  // Reads a little-endian two's complement i64.
  bool i64(int64_t& v) noexcept {
    uint64_t u;
    if (!u64(u)) return false;
    v = static_cast<int64_t>(u);
    return true;
  }

  // Reads a minimal LEB128 varint of at most 64 bits.
  bool varint(uint64_t& v) noexcept {
    const size_t start = offset();
    uint64_t result = 0;
    for (int shift = 0;; shift += 7) {
      if (p_ == end_) return fail("varint runs past the end", start);
      const uint8_t b = *p_++;
      if (shift == 63 && b > 1) return fail("varint overflows 64 bits", start);
      result |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) {
        if (b == 0 && shift > 0) return fail("varint is not minimal", start);
        v = result;
        return true;
      }
    }
  }

  // The bytes read from offset `start` (<= offset()) up to offset().
  std::string_view read_since(size_t start) const noexcept {
    return std::string_view(reinterpret_cast<const char*>(begin_ + start), offset() - start);
  }

  // Reads n bytes as a view into the underlying bytes.
  bool bytes(size_t n, std::string_view& v) noexcept {
    if (!need(n)) return false;
    v = std::string_view(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return true;
  }

  // Reads a `str`: a varint length, then that many bytes, as a view.
  bool str(std::string_view& v) noexcept {
    const size_t start = offset();
    uint64_t n;
    if (!varint(n)) return false;
    if (n > remaining()) return fail("string runs past the end", start);
    return bytes(static_cast<size_t>(n), v);
  }

 private:
  // Checks that n more bytes are there.
  bool need(size_t n) noexcept {
    return n <= remaining() || fail("field runs past the end", offset());
  }

  const uint8_t* begin_ = nullptr;
  const uint8_t* p_ = nullptr;
  const uint8_t* end_ = nullptr;
  const char* error_ = nullptr;
  size_t error_offset_ = 0;
};

}  // namespace edgeshard::frame

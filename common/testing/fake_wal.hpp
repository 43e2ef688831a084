// Deterministic test bytes for the WAL archive tests: WAL-like pages (headers, records of
// tuple-like data that LZ4 compresses about as well as real WAL) and random bytes (which it does
// not compress). Header-only, for tests and tools (never linked into edgeshard.so).
#pragma once

#include "common/no_postgres.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

namespace edgeshard::testing_support {

// splitmix64: a small deterministic generator.
class SplitMix {
 public:
  explicit SplitMix(uint64_t seed) noexcept : state_(seed) {}
  // The next 64 random bits.
  uint64_t next() noexcept {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// n random bytes.
inline std::string random_bytes(size_t n, uint64_t seed) {
  SplitMix rng(seed);
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>(rng.next() >> 56);
  return out;
}

// Appends v as 4 little-endian bytes.
inline void append_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>(v >> (8 * i));
}

// n bytes shaped like WAL: 8 KiB pages, each with a page header, filled with records of a
// header (with a random CRC), a few integer columns, a blank-padded column and words from a small
// vocabulary.
inline std::string fake_wal(size_t n, uint64_t seed) {
  static const char* const kWords[] = {"tenant", "order",   "paid",    "shipped",
                                       "acme",   "invoice", "eu-west", "pending",
                                       "café",   "item",    "refund",  "2024-05-01"};
  SplitMix rng(seed);
  std::string out;
  out.reserve(n + 8192);
  uint32_t xid = 750;
  uint32_t key = 1;
  while (out.size() < n) {
    const size_t page_start = out.size();
    append_u32(out, 0x0001D110);  // magic and info
    append_u32(out, 1);           // timeline
    append_u32(out, static_cast<uint32_t>(page_start));
    append_u32(out, 0);
    append_u32(out, 0x5EED1D);  // system identifier half
    append_u32(out, 0x2000);
    while (out.size() - page_start < 8192 - 128) {
      const size_t rec = out.size();
      append_u32(out, 0);  // length, patched below
      append_u32(out, xid);
      append_u32(out, static_cast<uint32_t>(rec));
      append_u32(out, 0x0A000010u | static_cast<uint32_t>(rng.next() % 4) << 8);  // info, rmgr
      append_u32(out, static_cast<uint32_t>(rng.next()));              // crc: incompressible
      append_u32(out, 16384 + static_cast<uint32_t>(rng.next() % 4));  // relation
      append_u32(out, key++);
      append_u32(out, static_cast<uint32_t>(rng.next() % 16) * 100);
      out.append(40, ' ');  // a blank-padded column, as pgbench's filler
      const int words = 1 + static_cast<int>(rng.next() % 3);
      for (int w = 0; w < words; ++w) {
        out += kWords[rng.next() % (sizeof kWords / sizeof kWords[0])];
        out += ' ';
      }
      while (out.size() % 8 != 0) out += '\0';
      const uint32_t len = static_cast<uint32_t>(out.size() - rec);
      for (int i = 0; i < 4; ++i) out[rec + i] = static_cast<char>(len >> (8 * i));
      if (rng.next() % 3 == 0) ++xid;
    }
    out.resize(page_start + 8192, '\0');  // the page's unused tail is zero
  }
  out.resize(n);
  return out;
}

}  // namespace edgeshard::testing_support

// libFuzzer target for replica files (edge_apply/replica_file.hpp, layout in edge_apply/FORMAT.md):
// whatever the bytes, ReplicaFile::open_memory() must refuse them or open a file whose verify(),
// scans and lookups agree with each other -- never crash, read out of bounds, leak, or hit
// undefined behaviour. Each input is tried twice:
//   1. exactly as given (the checksums catch nearly every mutation);
//   2. with every checksum recomputed -- header, the schema and index block trailers, every data
//      block the index names, the whole-file and footer checksums -- so mutations get past the
//      checksums and reach the layout, index, schema and record decoding rules.
// When open() succeeds: if verify() passes, a full scan returns exactly the footer's record and
// tombstone counts in strictly increasing order, every record is found by get() with the same
// value, and each table's scan (whole and from its middle key) is the matching slice; whether or
// not it passes, records a scan returns before a failure are in order and lookups never return
// something else than those records. The schema of an opened file keeps the format's promises
// (column identities all known or all unknown, distinct and in 1..1664; a missing value only on a
// known column, of kind 'b' or 't'; nothing set without has_missing), and its tables, written
// again by the writer (version 2, as compaction does with files of any version), read back equal.
// Build and run: see fuzz/README.md.
#include "edge_apply/replica_file.hpp"

#include "common/frame_codec.hpp"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <lz4.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <bitset>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace {

namespace replica = edgeshard::replica;
using edgeshard::frame::ByteReader;
using edgeshard::frame::load_u32;
using edgeshard::frame::load_u64;
using edgeshard::frame::store_u64;

// Stops the run with a finding when an invariant does not hold, naming its line.
void require(bool ok, int line = __builtin_LINE()) {
  if (ok) return;
  std::fprintf(stderr, "replica_file_fuzz: invariant at line %d does not hold\n", line);
  __builtin_trap();
}

// One record as read back.
struct Rec {
  uint32_t table;
  std::string key;
  bool tombstone;
  std::string value;
};

// Orders (table, key) as the format does.
int compare(uint32_t ta, const std::string& ka, uint32_t tb, const std::string& kb) {
  if (ta != tb) return ta < tb ? -1 : 1;
  const int c = ka.compare(kb);  // char_traits<char> compares as unsigned char, like memcmp
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

// Recomputes the trailer checksum of the block stored at [offset, offset + stored) when it and its
// trailer lie before `end`; returns the trailer or nullptr.
uint8_t* fix_block(std::vector<uint8_t>& b, uint64_t offset, uint64_t stored, uint64_t end) {
  if (offset > end || stored > end - offset || end - offset - stored < replica::kTrailerSize) {
    return nullptr;
  }
  uint8_t* t = b.data() + offset + stored;
  uint8_t prefix[16];
  store_u64(prefix, offset);
  std::memcpy(prefix + 8, t, 8);
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, prefix, sizeof prefix);
  XXH3_64bits_update(&state, b.data() + offset, stored);
  store_u64(t + 8, XXH3_64bits_digest(&state));
  return t;
}

// Recomputes every checksum the layout lets it find (the same checksums as replica_file.cpp,
// written out again on purpose).
void reseal(std::vector<uint8_t>& b) {
  if (b.size() < replica::kHeaderSize + replica::kFooterSize) return;
  const uint64_t footer = b.size() - replica::kFooterSize;
  uint8_t* f = b.data() + footer;
  store_u64(b.data() + 24, XXH3_64bits(b.data(), 24));
  fix_block(b, load_u64(f), load_u32(f + 16), footer);
  const uint64_t index_offset = load_u64(f + 8);
  const uint32_t index_stored = load_u32(f + 20);
  if (const uint8_t* t = fix_block(b, index_offset, index_stored, footer)) {
    // The index's raw bytes, to find the data blocks.
    std::vector<uint8_t> raw(b.begin() + static_cast<std::ptrdiff_t>(index_offset),
                             b.begin() + static_cast<std::ptrdiff_t>(index_offset + index_stored));
    const uint32_t raw_length = load_u32(t + 4);
    if (t[1] == 1 && raw_length <= (1u << 20)) {
      std::vector<uint8_t> out(raw_length);
      const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(raw.data()),
                                        reinterpret_cast<char*>(out.data()),
                                        static_cast<int>(raw.size()), static_cast<int>(raw_length));
      out.resize(n > 0 ? static_cast<size_t>(n) : 0);
      raw = std::move(out);
    }
    ByteReader r(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()));
    uint64_t count, v, n, offset, stored;
    std::string_view key;
    if (r.varint(count) && count > 0 && r.varint(v) && r.varint(n) && r.bytes(n, key)) {
      for (uint64_t i = 0; i < count; ++i) {
        if (!r.varint(v) || !r.varint(n) || !r.bytes(n, key) || !r.varint(offset) ||
            !r.varint(stored) || !r.varint(v) || !r.varint(v)) {
          break;
        }
        fix_block(b, offset, stored, footer);
      }
    }
  }
  store_u64(f + 72, XXH3_64bits(b.data(), footer));
  store_u64(f + 88, XXH3_64bits(f, 88));
}

// Reads a scan to its end; returns the records and the final status.
std::vector<Rec> drain(replica::Scan scan, replica::Status& end) {
  std::vector<Rec> out;
  replica::Record r;
  while ((end = scan.next(r)).ok()) {
    out.push_back({r.table_no, std::string(r.key), r.tombstone, std::string(r.value)});
  }
  return out;
}

// Checks that records are in strictly increasing order.
void require_ordered(const std::vector<Rec>& recs) {
  for (size_t i = 1; i < recs.size(); ++i) {
    require(compare(recs[i - 1].table, recs[i - 1].key, recs[i].table, recs[i].key) < 0);
  }
}

// Checks what the reader promises about an opened file's tables (FORMAT.md, "Schema block").
void require_schema(const replica::ReplicaFile& f) {
  for (const replica::Table& t : f.tables()) {
    require(t.tenant_column >= -1 && t.tenant_column < static_cast<int64_t>(t.columns.size()));
    const bool known = !t.columns.empty() && t.columns.front().attnum != 0;
    require(!known || f.info().version >= 2);
    std::bitset<replica::kMaxAttnum + 1> seen;
    for (const replica::Column& c : t.columns) {
      require((c.attnum != 0) == known && c.attnum <= replica::kMaxAttnum);
      require(!known || !seen.test(c.attnum));
      seen.set(c.attnum);
      if (c.has_missing) {
        require(known && (c.missing_kind == 'b' || c.missing_kind == 't'));
      } else {
        require(c.missing_kind == 0 && c.missing.empty());
      }
    }
  }
}

// Writes the file's tables (no records) with the writer into an anonymous file and checks that
// they read back equal: whatever the reader accepts, the writer stores as it is.
void require_tables_rewrite(const replica::ReplicaFile& f, bool compress) {
  if (f.info().tenant_key.size() > replica::kMaxKeyBytes) return;  // the writer's limit
  const int fd = ::memfd_create("replica_file_fuzz", MFD_CLOEXEC);
  require(fd >= 0);
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  std::vector<uint8_t> bytes;
  {
    replica::Writer w;
    replica::Writer::Options options;
    options.kind = f.info().kind;
    options.sequence = f.info().sequence;
    options.tenant_key = f.info().tenant_key;
    options.compress = compress;
    options.sync = false;
    require(w.create(path, options).ok());
    for (const replica::Table& t : f.tables()) {
      const replica::Status st = w.add_table(t);
      require(st.ok() || t.columns.size() > 65535);
      if (!st.ok()) {
        ::close(fd);
        return;
      }
    }
    require(w.finish().ok());
    bytes.resize(w.bytes_written());
  }
  require(::pread(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);
  replica::ReplicaFile g;
  require(g.open_memory(bytes, "rewritten").ok());
  require(g.info().version == replica::kVersion && g.verify().ok());
  require(g.tables() == f.tables() && g.info().tenant_key == f.info().tenant_key);
}

// Opens the bytes and checks the invariants above.
void exercise(std::span<const uint8_t> bytes) {
  replica::ReplicaFile f;
  const replica::Status st = f.open_memory(bytes, "fuzz");
  if (!st.ok()) {
    require(st.code == replica::Code::kBadMagic || st.code == replica::Code::kBadVersion ||
            st.code == replica::Code::kCorrupt);
    require(!f.is_open() && st.what != nullptr && st.what[0] != '\0');
    return;
  }
  require(f.info().file_size == bytes.size());
  require_schema(f);
  require_tables_rewrite(f, bytes.size() % 2 == 0);
  const replica::Status verified = f.verify();
  require(verified.ok() || verified.code == replica::Code::kCorrupt);

  replica::BlockCache cache(64 * 1024);
  replica::Status end;
  const std::vector<Rec> all = drain(f.scan_all(cache), end);
  require(end.code == replica::Code::kEnd || end.code == replica::Code::kCorrupt);
  require_ordered(all);
  if (verified.ok()) {
    require(end.code == replica::Code::kEnd);
    require(all.size() == f.info().record_count);
    uint64_t tombstones = 0;
    for (const Rec& r : all) {
      require(f.table(r.table) != nullptr);
      tombstones += r.tombstone;
    }
    require(tombstones == f.info().tombstone_count);
    uint32_t t1, t2;
    std::string_view k1, k2;
    require(f.key_range(t1, k1, t2, k2) == !all.empty());
    if (!all.empty()) {
      require(t1 == all.front().table && k1 == all.front().key);
      require(t2 == all.back().table && k2 == all.back().key);
    }
  }

  // Lookups (through a cache too small for any block, then a normal one) find exactly what the
  // scan returned.
  replica::BlockCache none(0);
  for (const Rec& r : all) {
    for (replica::BlockCache* c : {&none, &cache}) {
      std::string_view value;
      const replica::Status g = f.get(r.table, r.key, *c, value);
      require(g.code == (r.tombstone ? replica::Code::kTombstone : replica::Code::kOk));
      require(value == r.value);
    }
  }
  // Absent keys right after each key (a key plus a zero byte sorts just after it); after the last
  // record of a scan that failed, such a key may lie in the damaged block.
  for (size_t i = 0; i < all.size(); ++i) {
    if (i + 1 == all.size() && end.code != replica::Code::kEnd) break;
    const std::string after = all[i].key + '\0';
    if (i + 1 < all.size() && all[i + 1].table == all[i].table && all[i + 1].key == after) continue;
    std::string_view value;
    const replica::Status g = f.get(all[i].table, after, cache, value);
    require(g.code == replica::Code::kNotFound);
  }
  // Per table: the whole table and its upper half are slices of the full scan.
  if (end.code == replica::Code::kEnd) {
    for (const replica::Table& t : f.tables()) {
      std::vector<Rec> want;
      for (const Rec& r : all) {
        if (r.table == t.table_no) want.push_back(r);
      }
      replica::Status e;
      const std::vector<Rec> got = drain(f.scan(t.table_no, "", std::nullopt, cache), e);
      require(e.code == replica::Code::kEnd && got.size() == want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        require(got[i].key == want[i].key && got[i].value == want[i].value &&
                got[i].tombstone == want[i].tombstone);
      }
      if (want.size() >= 2) {
        const size_t mid = want.size() / 2;
        const std::vector<Rec> upper =
            drain(f.scan(t.table_no, want[mid].key, want.back().key, cache), e);
        require(e.code == replica::Code::kEnd && upper.size() == want.size() - 1 - mid);
      }
    }
  }
  require(cache.charged_bytes() <= cache.capacity());
}

}  // namespace

// libFuzzer's entry point: one input.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  exercise(std::span<const uint8_t>(data, size));
  std::vector<uint8_t> sealed(data, data + size);
  reseal(sealed);
  exercise(sealed);
  return 0;
}

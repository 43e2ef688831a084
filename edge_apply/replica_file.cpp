// Replica file writer and reader (replica_file.hpp; byte layout in FORMAT.md).
#include "edge_apply/replica_file.hpp"

#include "common/posix_file.hpp"

#include "common/frame_codec.hpp"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <lz4.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bitset>
#include <cerrno>
#include <cstring>
#include <map>
#include <new>
#include <system_error>
#include <utility>

namespace edgeshard::replica {

using frame::ByteReader;
using frame::load_u16;
using frame::load_u32;
using frame::load_u64;
using frame::store_u16;
using frame::store_u32;
using frame::store_u64;
using frame::store_varint;

namespace {

// --- Field offsets (FORMAT.md) -------------------------------------------------------------------

// Header.
constexpr size_t kHOffVersion = 4;
constexpr size_t kHOffMinRead = 5;
constexpr size_t kHOffMinWrite = 6;
constexpr size_t kHOffChecksumType = 7;
constexpr size_t kHOffFlags = 8;
constexpr size_t kHOffKind = 12;
constexpr size_t kHOffReserved = 13;
constexpr size_t kHReservedBytes = 3;
constexpr size_t kHOffSequence = 16;
constexpr size_t kHOffChecksum = 24;

// Footer (from the footer's start).
constexpr size_t kFOffSchemaOffset = 0;
constexpr size_t kFOffIndexOffset = 8;
constexpr size_t kFOffSchemaStored = 16;
constexpr size_t kFOffIndexStored = 20;
constexpr size_t kFOffRecordCount = 24;
constexpr size_t kFOffTombstoneCount = 32;
constexpr size_t kFOffBlockCount = 40;
constexpr size_t kFOffTableCount = 44;
constexpr size_t kFOffSequence = 48;
constexpr size_t kFOffKind = 56;
constexpr size_t kFOffVersion = 57;
constexpr size_t kFOffMinRead = 58;
constexpr size_t kFOffMinWrite = 59;
constexpr size_t kFOffChecksumType = 60;
constexpr size_t kFOffReserved1 = 61;  // 3 bytes
constexpr size_t kFOffFlags = 64;
constexpr size_t kFOffReserved2 = 68;  // 4 bytes
constexpr size_t kFOffFileChecksum = 72;
constexpr size_t kFOffMagic = 80;
constexpr size_t kFOffReserved3 = 84;  // 4 bytes
constexpr size_t kFOffChecksum = 88;

// Block trailer.
constexpr size_t kTOffType = 0;
constexpr size_t kTOffCompression = 1;
constexpr size_t kTOffReserved = 2;  // 2 bytes
constexpr size_t kTOffRawLength = 4;
constexpr size_t kTOffChecksum = 8;

// Smallest record: table_no, key length, flags (an empty-key tombstone).
constexpr uint64_t kMinRecordBytes = 3;
// A data block's search array entry (u32 key_head, u32 record_offset) and fixed tail (u16 shared
// prefix length, u32 record count).
constexpr size_t kSearchEntrySize = 8;
constexpr size_t kBlockTailSize = 6;
// Longest shared prefix a data block records.
constexpr size_t kMaxSharedPrefix = 65535;
// LZ4 cannot expand a block more than this.
constexpr uint64_t kMaxLz4Ratio = 256;
// The writer hands bytes to write() in pieces of about this size.
constexpr size_t kWriteChunk = 1u << 20;

// --- Shared helpers ------------------------------------------------------------------------------

// A status about the bytes at `offset` (and `raw_offset` inside a block's raw bytes).
Status corrupt(uint64_t offset, const char* what, int64_t raw_offset = -1) noexcept {
  return Status{Code::kCorrupt, offset, raw_offset, what, 0};
}

// A status for a failed system call.
Status io_error(uint64_t offset, const char* what, int err) noexcept {
  return Status{Code::kIo, offset, -1, what, err};
}

// A status with a code and a message only.
Status status(Code code, const char* what, uint64_t offset = 0) noexcept {
  return Status{code, offset, -1, what, 0};
}

// Orders (table_no, key) pairs: table first, then memcmp with a proper prefix first.
inline int compare_keys(uint64_t ta, std::string_view ka, uint64_t tb,
                        std::string_view kb) noexcept {
  if (ta != tb) return ta < tb ? -1 : 1;
  const size_t n = std::min(ka.size(), kb.size());
  const int c = n == 0 ? 0 : std::memcmp(ka.data(), kb.data(), n);
  if (c != 0) return c;
  return ka.size() < kb.size() ? -1 : (ka.size() > kb.size() ? 1 : 0);
}

// The block checksum: H(block offset as u64 ‖ trailer bytes 0 .. 7 ‖ stored bytes).
uint64_t block_checksum(uint64_t offset, const uint8_t* trailer8, const uint8_t* stored,
                        size_t stored_length) noexcept {
  uint8_t prefix[16];
  store_u64(prefix, offset);
  std::memcpy(prefix + 8, trailer8, 8);
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, prefix, sizeof prefix);
  XXH3_64bits_update(&state, stored, stored_length);
  return XXH3_64bits_digest(&state);
}

// Appends a minimal varint.
void put_varint(std::string& s, uint64_t v) {
  uint8_t b[frame::kMaxVarintBytes];
  s.append(reinterpret_cast<const char*>(b), store_varint(b, v));
}

// Appends a varint length and the bytes.
void put_str(std::string& s, std::string_view v) {
  put_varint(s, v.size());
  s.append(v);
}

// Appends a little-endian u32.
void put_u32(std::string& s, uint32_t v) {
  uint8_t b[4];
  store_u32(b, v);
  s.append(reinterpret_cast<const char*>(b), 4);
}

// Reads a varint that must fit in 32 bits.
bool read_u32_varint(ByteReader& r, uint32_t& out) noexcept {
  const size_t start = r.offset();
  uint64_t v;
  if (!r.varint(v)) return false;
  if (v > UINT32_MAX) return r.fail("value above 2^32 - 1", start);
  out = static_cast<uint32_t>(v);
  return true;
}

// Reads a list count: fits in 32 bits and is no larger than the bytes left (each item takes one
// byte or more).
bool read_count(ByteReader& r, uint32_t& out) noexcept {
  const size_t start = r.offset();
  if (!read_u32_varint(r, out)) return false;
  if (out > r.remaining()) return r.fail("count larger than the bytes left", start);
  return true;
}

// Reads a key: a length of at most kMaxKeyBytes and the bytes.
bool read_key(ByteReader& r, std::string_view& out) noexcept {
  const size_t start = r.offset();
  if (!r.str(out)) return false;
  if (out.size() > kMaxKeyBytes) return r.fail("key longer than 65535 bytes", start);
  return true;
}

// Encodes the schema block's raw bytes.
std::string encode_schema(std::string_view tenant_key, const std::map<uint32_t, Table>& tables) {
  std::string s;
  put_str(s, tenant_key);
  put_varint(s, tables.size());
  for (const auto& [no, t] : tables) {
    put_varint(s, no);
    put_str(s, t.schema);
    put_str(s, t.name);
    put_varint(s, static_cast<uint64_t>(t.tenant_column + 1));
    put_varint(s, t.columns.size());
    for (const Column& c : t.columns) {
      put_str(s, c.name);
      put_u32(s, c.type_oid);
      put_u32(s, static_cast<uint32_t>(c.typmod));
      s.push_back(static_cast<char>(c.key ? kColumnKey : 0));
    }
    // add_table() let through only all-known or all-unknown identities.
    const bool attributes = !t.columns.empty() && t.columns.front().attnum != 0;
    s.push_back(static_cast<char>(attributes ? kTableAttributes : 0));
    if (!attributes) continue;
    for (const Column& c : t.columns) {
      put_varint(s, c.attnum);
      s.push_back(static_cast<char>(c.has_missing ? kAttributeMissing : 0));
      if (!c.has_missing) continue;
      s.push_back(static_cast<char>(c.missing_kind));
      put_str(s, c.missing);
    }
  }
  return s;
}

// Why the writer cannot store a table's column identities as given, or nullptr when it can.
const char* check_attributes(const Table& table) noexcept {
  if (table.columns.empty()) return nullptr;
  const bool known = table.columns.front().attnum != 0;
  std::bitset<kMaxAttnum + 1> seen;
  for (const Column& c : table.columns) {
    if ((c.attnum != 0) != known) return "attribute numbers known for some columns only";
    if (c.attnum > kMaxAttnum) return "attribute number above 1664";
    if (known && seen.test(c.attnum)) return "attribute number repeated in a table";
    seen.set(c.attnum);
    if (!c.has_missing) {
      if (c.missing_kind != 0 || !c.missing.empty()) {
        return "missing value kind or data set without has_missing";
      }
      continue;
    }
    if (!known) return "missing value on a column without its attribute number";
    if (c.missing_kind != static_cast<uint8_t>('b') &&
        c.missing_kind != static_cast<uint8_t>('t')) {
      return "missing value kind is not binary ('b') or text ('t')";
    }
    if (c.missing.size() > kMaxValueBytes) return "missing value longer than 1 GiB";
  }
  return nullptr;
}

// Writes all of data to fd at its current position, retrying short writes and EINTR.
bool write_all(int fd, const uint8_t* data, size_t n) noexcept {
  if (const size_t room = posix::take_write_budget(n); room < n) {
    // A test's full disk (common/posix_file.hpp): store what fits, then fail as the kernel would.
    if (room > 0 && ::write(fd, data, room) < 0) return false;
    errno = ENOSPC;
    return false;
  }
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// --- Search keys (FORMAT.md, "Data block") -------------------------------------------------------

// A record's search key is its table_no as 4 big-endian bytes followed by its key: comparing search
// keys byte-wise is comparing (table_no, key).

// Byte j of the search key of (table, key); j < 4 + key.size().
inline uint8_t search_byte(uint32_t table, std::string_view key, size_t j) noexcept {
  return j < 4 ? static_cast<uint8_t>(table >> (24 - 8 * j)) : static_cast<uint8_t>(key[j - 4]);
}

// Length of the longest common prefix of the search keys of (ta, ka) and (tb, kb).
size_t common_prefix(uint32_t ta, std::string_view ka, uint32_t tb, std::string_view kb) noexcept {
  for (size_t j = 0; j < 4; ++j) {
    if (search_byte(ta, ka, j) != search_byte(tb, kb, j)) return j;
  }
  const size_t n = std::min(ka.size(), kb.size());
  size_t j = 0;
  while (j < n && ka[j] == kb[j]) ++j;
  return 4 + j;
}

// The shared prefix length P of a block whose first and last records are given.
size_t shared_prefix_length(uint32_t ta, std::string_view ka, uint32_t tb,
                            std::string_view kb) noexcept {
  return std::min<size_t>(common_prefix(ta, ka, tb, kb), kMaxSharedPrefix);
}

// The key head of (table, key) for shared prefix length p: search key bytes p .. p + 3, zero
// where the search key is shorter, as a big-endian number.
inline uint32_t key_head(uint32_t table, std::string_view key, size_t p) noexcept {
  const size_t length = 4 + key.size();
  uint32_t h = 0;
  for (size_t j = p; j < p + 4; ++j) h = (h << 8) | (j < length ? search_byte(table, key, j) : 0u);
  return h;
}

// --- Fast record access inside a checked block ---------------------------------------------------

// A data block's raw bytes with its search array located.
struct BlockView {
  const uint8_t* data = nullptr;
  const uint8_t* prefix = nullptr;   // the shared prefix
  const uint8_t* entries = nullptr;  // count x (u32 key_head, u32 record_offset)
  uint32_t prefix_length = 0;
  uint32_t records_end = 0;  // where the shared prefix starts
  uint32_t count = 0;

  // Key head of record i.
  uint32_t head(uint32_t i) const noexcept { return load_u32(entries + uint64_t{i} * 8); }
  // Offset of record i.
  uint32_t offset(uint32_t i) const noexcept { return load_u32(entries + uint64_t{i} * 8 + 4); }
};

// Locates the search array of a raw data block; false when it does not fit.
bool make_view(const uint8_t* data, size_t size, BlockView& v) noexcept {
  if (size < kBlockTailSize) return false;
  const uint32_t count = load_u32(data + size - 4);
  const uint32_t prefix_length = load_u16(data + size - 6);
  if (count == 0 || count > (size - kBlockTailSize) / kSearchEntrySize) return false;
  const size_t entries = size - kBlockTailSize - size_t{count} * kSearchEntrySize;
  if (prefix_length > entries) return false;
  v.data = data;
  v.count = count;
  v.prefix_length = prefix_length;
  v.entries = data + entries;
  v.records_end = static_cast<uint32_t>(entries - prefix_length);
  v.prefix = data + v.records_end;
  return true;
}

// Reads a varint at p, never past end (no minimality check: the block was checked on first use;
// this only has to stay in bounds).
inline bool fast_varint(const uint8_t*& p, const uint8_t* end, uint64_t& v) noexcept {
  if (p < end && *p < 0x80) {
    v = *p++;
    return true;
  }
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p == end) return false;
    const uint8_t b = *p++;
    r |= uint64_t{b & 0x7fu} << shift;
    if ((b & 0x80) == 0) {
      v = r;
      return true;
    }
  }
  return false;
}

// Decodes record i's table_no and key; `rest` points at its flags byte. Bounds-checked.
inline bool record_head(const BlockView& v, uint32_t i, uint64_t& table, std::string_view& key,
                        const uint8_t*& rest) noexcept {
  const uint32_t off = v.offset(i);
  if (off >= v.records_end) return false;
  const uint8_t* p = v.data + off;
  const uint8_t* end = v.data + v.records_end;
  uint64_t n;
  if (!fast_varint(p, end, table) || !fast_varint(p, end, n) ||
      n > static_cast<uint64_t>(end - p)) {
    return false;
  }
  key = std::string_view(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  rest = p + n;
  return true;
}

// Decodes a record's flags and value from its flags byte on. Bounds-checked.
inline bool record_tail(const BlockView& v, const uint8_t* p, bool& tombstone,
                        std::string_view& value) noexcept {
  const uint8_t* end = v.data + v.records_end;
  if (p >= end) return false;
  tombstone = (*p++ & kRecordTombstone) != 0;
  if (tombstone) {
    value = {};
    return true;
  }
  uint64_t n;
  if (!fast_varint(p, end, n) || n > static_cast<uint64_t>(end - p)) return false;
  value = std::string_view(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  return true;
}

// Compares the search key of (table, key) with the block's shared prefix: < 0 (or > 0) when it
// sorts before (after) every record of the block, 0 when it starts with the prefix.
int compare_with_prefix(const BlockView& v, uint32_t table, std::string_view key) noexcept {
  const size_t p = v.prefix_length;
  uint8_t t[4];
  for (size_t j = 0; j < 4; ++j) t[j] = search_byte(table, key, j);
  const size_t nt = std::min<size_t>(p, 4);
  if (int c = std::memcmp(t, v.prefix, nt); c != 0) return c;
  if (p <= 4) return 0;
  const size_t nk = std::min(p - 4, key.size());
  if (nk > 0) {
    if (int c = std::memcmp(key.data(), v.prefix + 4, nk); c != 0) return c;
  }
  return key.size() < p - 4 ? -1 : 0;  // a proper prefix of the shared prefix sorts first
}

// Compares record i with (table, key) in record order; false when the record does not decode.
inline bool compare_record(const BlockView& v, uint32_t i, uint32_t table, std::string_view key,
                           int& c) noexcept {
  uint64_t t;
  std::string_view k;
  const uint8_t* rest;
  if (!record_head(v, i, t, k, rest)) return false;
  c = compare_keys(t, k, table, key);
  return true;
}

// Index of the first record >= (table, key) in the block (count when none); false when a record
// does not decode. Searches the key heads, then compares whole keys only among records whose head
// equals the key's (usually one record).
bool lower_bound_in_block(const BlockView& v, uint32_t table, std::string_view key,
                          uint32_t& index) noexcept {
  if (const int c = compare_with_prefix(v, table, key); c != 0) {
    index = c < 0 ? 0 : v.count;
    return true;
  }
  const uint32_t h = key_head(table, key, v.prefix_length);
  uint32_t lo = 0, hi = v.count;
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (v.head(mid) < h) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo == v.count || v.head(lo) != h) {
    index = lo;
    return true;
  }
  // The run of records with head h: [lo, run_end).
  uint32_t run_end = lo + 1;
  if (run_end < v.count && v.head(run_end) == h) {
    uint32_t a = run_end, b = v.count;
    while (a < b) {
      const uint32_t mid = a + (b - a) / 2;
      if (v.head(mid) <= h) {
        a = mid + 1;
      } else {
        b = mid;
      }
    }
    run_end = a;
  }
  while (lo < run_end) {
    const uint32_t mid = lo + (run_end - lo) / 2;
    int c;
    if (!compare_record(v, mid, table, key, c)) return false;
    if (c < 0) {
      lo = mid + 1;
    } else {
      run_end = mid;
    }
  }
  index = lo;
  return true;
}

// Process-unique identities of open files (BlockCache keys); 0 means "not open".
constinit std::atomic<uint64_t> g_next_file_id{1};

}  // namespace

// --- Status --------------------------------------------------------------------------------------

const char* code_name(Code code) noexcept {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kTombstone:
      return "tombstone";
    case Code::kNotFound:
      return "not_found";
    case Code::kEnd:
      return "end";
    case Code::kBadMagic:
      return "bad_magic";
    case Code::kBadVersion:
      return "bad_version";
    case Code::kCorrupt:
      return "corrupt";
    case Code::kIo:
      return "io";
    case Code::kOutOfMemory:
      return "out_of_memory";
    case Code::kOutOfOrder:
      return "out_of_order";
    case Code::kInvalidArgument:
      return "invalid_argument";
    case Code::kFailed:
      return "failed";
  }
  return "unknown";
}

std::string describe(const Status& st, std::string_view file) {
  std::string s = "replica file ";
  s += file;
  s += ": ";
  s += code_name(st.code);
  if (st.what != nullptr && st.what[0] != '\0') {
    s += ": ";
    s += st.what;
  }
  if (st.failed()) {
    s += " at offset " + std::to_string(st.offset);
    if (st.raw_offset >= 0) s += " (offset " + std::to_string(st.raw_offset) + " in the block)";
  }
  if (st.sys_errno != 0) {
    s += ": ";
    s += std::error_code(st.sys_errno, std::generic_category()).message();
  }
  return s;
}

// --- Writer --------------------------------------------------------------------------------------

struct Writer::Impl {
  std::string path;
  Options options;
  int fd = -1;
  bool created = false;
  bool finished = false;
  bool failed = false;
  XXH3_state_t file_hash;  // of every byte written before the footer
  uint64_t offset = 0;     // bytes handed to emit()
  std::string out;         // emitted, not yet written
  std::string compressed;  // LZ4 scratch

  // The data block being filled: its records, and where each one and its key are.
  struct Pending {
    uint32_t offset;
    uint32_t table;
    uint32_t key_pos;
    uint32_t key_len;
  };
  std::string block;
  std::vector<Pending> pending;
  std::string tail;  // the block's search array being built

  // The previous record (order checks, and the last key of a block).
  bool have_last = false;
  uint32_t last_table = 0;
  std::string last_key;
  // The first record of the file.
  uint32_t first_table = 0;
  std::string first_key;

  std::map<uint32_t, Table> tables;
  std::string index_entries;  // encoded entries
  uint32_t block_count = 0;
  uint64_t records = 0;
  uint64_t tombstones = 0;

  ~Impl() {
    if (fd >= 0) ::close(fd);
    if (created && !finished) ::unlink(path.c_str());
  }

  // Whether calls may add to the file; otherwise the status to return.
  Status usable() const noexcept {
    if (!created) return status(Code::kFailed, "writer has no file: call create() first");
    if (finished) return status(Code::kFailed, "writer is finished");
    if (failed) return status(Code::kFailed, "writer failed earlier: the file is unusable");
    return Status{};
  }

  // Writes the pending output.
  Status flush_out() noexcept {
    if (out.empty()) return Status{};
    if (!write_all(fd, reinterpret_cast<const uint8_t*>(out.data()), out.size())) {
      failed = true;
      return io_error(offset - out.size(), "write failed", errno);
    }
    out.clear();
    return Status{};
  }

  // Queues bytes for the file (hashing them unless they are the footer).
  Status emit(const void* data, size_t n, bool hash = true) {
    if (hash) XXH3_64bits_update(&file_hash, data, n);
    offset += n;
    if (out.size() + n <= kWriteChunk) {
      out.append(static_cast<const char*>(data), n);
      return Status{};
    }
    if (Status st = flush_out(); !st.ok()) return st;
    if (n < kWriteChunk) {
      out.append(static_cast<const char*>(data), n);
      return Status{};
    }
    if (!write_all(fd, static_cast<const uint8_t*>(data), n)) {
      failed = true;
      return io_error(offset - n, "write failed", errno);
    }
    return Status{};
  }

  // Stores a block (compressed when worth it) and its trailer; sets its offset and stored length.
  Status store_block(BlockType type, const std::string& raw, uint64_t& block_offset,
                     uint32_t& stored_length) {
    if (raw.size() > kMaxBlockRaw) {
      return status(Code::kInvalidArgument, "block larger than the format's limit", offset);
    }
    const uint8_t* stored = reinterpret_cast<const uint8_t*>(raw.data());
    size_t n = raw.size();
    Compression compression = Compression::kNone;
    if (options.compress && raw.size() <= LZ4_MAX_INPUT_SIZE) {
      const int bound = LZ4_compressBound(static_cast<int>(raw.size()));
      compressed.resize(static_cast<size_t>(bound));
      const int c =
          LZ4_compress_default(raw.data(), compressed.data(), static_cast<int>(raw.size()), bound);
      const size_t cn = static_cast<size_t>(c);
      if (c > 0 && cn < raw.size() && cn <= raw.size() - raw.size() / 8) {
        stored = reinterpret_cast<const uint8_t*>(compressed.data());
        n = cn;
        compression = Compression::kLz4;
      }
    }
    uint8_t trailer[kTrailerSize] = {};
    trailer[kTOffType] = static_cast<uint8_t>(type);
    trailer[kTOffCompression] = static_cast<uint8_t>(compression);
    store_u32(trailer + kTOffRawLength, static_cast<uint32_t>(raw.size()));
    block_offset = offset;
    stored_length = static_cast<uint32_t>(n);
    store_u64(trailer + kTOffChecksum, block_checksum(offset, trailer, stored, n));
    if (Status st = emit(stored, n); !st.ok()) return st;
    return emit(trailer, sizeof trailer);
  }

  // The key of a pending record.
  std::string_view key_of(const Pending& r) const noexcept {
    return std::string_view(block).substr(r.key_pos, r.key_len);
  }

  // Closes the data block being filled (shared prefix, search array, tail) and indexes it.
  Status flush_block() {
    const Pending& first = pending.front();
    const Pending& last = pending.back();
    const size_t p = shared_prefix_length(first.table, key_of(first), last.table, key_of(last));
    tail.clear();
    for (size_t j = 0; j < p; ++j) {
      tail.push_back(static_cast<char>(search_byte(first.table, key_of(first), j)));
    }
    for (const Pending& r : pending) {
      put_u32(tail, key_head(r.table, key_of(r), p));
      put_u32(tail, r.offset);
    }
    uint8_t b[2];
    store_u16(b, static_cast<uint16_t>(p));
    tail.append(reinterpret_cast<const char*>(b), 2);
    put_u32(tail, static_cast<uint32_t>(pending.size()));
    block += tail;
    uint64_t block_offset;
    uint32_t stored;
    if (Status st = store_block(BlockType::kData, block, block_offset, stored); !st.ok()) {
      return st;
    }
    put_varint(index_entries, last_table);
    put_str(index_entries, last_key);
    put_varint(index_entries, block_offset);
    put_varint(index_entries, stored);
    put_varint(index_entries, block.size());
    put_varint(index_entries, pending.size());
    ++block_count;
    block.clear();
    pending.clear();
    return Status{};
  }

  // Checks and appends one record.
  Status add(uint32_t table_no, std::string_view key, std::string_view value, bool tombstone) {
    if (Status st = usable(); !st.ok()) return st;
    if (tables.find(table_no) == tables.end()) {
      return status(Code::kInvalidArgument, "table not added with add_table()");
    }
    if (key.size() > kMaxKeyBytes) {
      return status(Code::kInvalidArgument, "key longer than 65535 bytes");
    }
    if (value.size() > kMaxValueBytes) {
      return status(Code::kInvalidArgument, "value longer than 1 GiB");
    }
    if (tombstone && options.kind == FileKind::kBase) {
      return status(Code::kInvalidArgument, "tombstone in a base file");
    }
    if (have_last) {
      const int c = compare_keys(table_no, key, last_table, last_key);
      if (c == 0) return status(Code::kOutOfOrder, "duplicate key: (table_no, key) added before");
      if (c < 0) {
        return status(Code::kOutOfOrder,
                      "record out of order: (table_no, key) not after the previous record's");
      }
    }
    uint8_t head[2 * frame::kMaxVarintBytes];
    size_t head_n = store_varint(head, table_no);
    head_n += store_varint(head + head_n, key.size());
    uint8_t tail[1 + frame::kMaxVarintBytes];
    tail[0] = tombstone ? kRecordTombstone : 0;
    const size_t tail_n = 1 + (tombstone ? 0 : store_varint(tail + 1, value.size()));
    const uint64_t record_size = head_n + key.size() + tail_n + value.size();
    if (!pending.empty()) {
      // The raw size with this record: records, shared prefix, search array, tail.
      const size_t p =
          shared_prefix_length(pending.front().table, key_of(pending.front()), table_no, key);
      const uint64_t grown =
          block.size() + record_size + p + kSearchEntrySize * (pending.size() + 1) + kBlockTailSize;
      if (grown > options.block_bytes) {
        if (Status st = flush_block(); !st.ok()) return st;
      }
    }
    pending.push_back({static_cast<uint32_t>(block.size()), table_no,
                       static_cast<uint32_t>(block.size() + head_n),
                       static_cast<uint32_t>(key.size())});
    block.append(reinterpret_cast<const char*>(head), head_n);
    block.append(key);
    block.append(reinterpret_cast<const char*>(tail), tail_n);
    block.append(value);
    if (!have_last) {
      first_table = table_no;
      first_key.assign(key);
    }
    have_last = true;
    last_table = table_no;
    last_key.assign(key);
    ++records;
    tombstones += tombstone;
    return Status{};
  }

  // Writes the rest of the file and makes it durable.
  Status finish() {
    if (Status st = usable(); !st.ok()) return st;
    if (!pending.empty()) {
      if (Status st = flush_block(); !st.ok()) return st;
    }
    uint64_t schema_offset, index_offset;
    uint32_t schema_stored, index_stored;
    if (Status st = store_block(BlockType::kSchema, encode_schema(options.tenant_key, tables),
                                schema_offset, schema_stored);
        !st.ok()) {
      return st;
    }
    std::string index;
    put_varint(index, block_count);
    if (block_count > 0) {
      put_varint(index, first_table);
      put_str(index, first_key);
    }
    index += index_entries;
    if (Status st = store_block(BlockType::kIndex, index, index_offset, index_stored); !st.ok()) {
      return st;
    }
    uint8_t f[kFooterSize] = {};
    store_u64(f + kFOffSchemaOffset, schema_offset);
    store_u64(f + kFOffIndexOffset, index_offset);
    store_u32(f + kFOffSchemaStored, schema_stored);
    store_u32(f + kFOffIndexStored, index_stored);
    store_u64(f + kFOffRecordCount, records);
    store_u64(f + kFOffTombstoneCount, tombstones);
    store_u32(f + kFOffBlockCount, block_count);
    store_u32(f + kFOffTableCount, static_cast<uint32_t>(tables.size()));
    store_u64(f + kFOffSequence, options.sequence);
    f[kFOffKind] = static_cast<uint8_t>(options.kind);
    f[kFOffVersion] = kVersion;
    f[kFOffMinRead] = kMinReadVersion;
    f[kFOffMinWrite] = kMinWriteVersion;
    f[kFOffChecksumType] = kChecksumXxh3;
    store_u32(f + kFOffFlags, 0);
    store_u64(f + kFOffFileChecksum, XXH3_64bits_digest(&file_hash));
    std::memcpy(f + kFOffMagic, kMagic, sizeof kMagic);
    store_u64(f + kFOffChecksum, XXH3_64bits(f, kFOffChecksum));
    if (Status st = emit(f, sizeof f, false); !st.ok()) return st;
    if (Status st = flush_out(); !st.ok()) return st;
    if (options.sync && ::fsync(fd) != 0) {
      failed = true;
      return io_error(offset, "fsync failed", errno);
    }
    const int fd_to_close = fd;
    fd = -1;
    if (::close(fd_to_close) != 0) {
      failed = true;
      return io_error(offset, "close failed", errno);
    }
    finished = true;
    return Status{};
  }
};

Writer::Writer() = default;
Writer::~Writer() = default;
Writer::Writer(Writer&&) noexcept = default;
Writer& Writer::operator=(Writer&&) noexcept = default;

Status Writer::create(const std::string& path, const Options& options) {
  if (impl_ != nullptr) return status(Code::kFailed, "writer already has a file");
  if (options.block_bytes == 0 || options.block_bytes > kMaxBlockBytes) {
    return status(Code::kInvalidArgument, "block_bytes must be between 1 and 64 MiB");
  }
  if (options.kind != FileKind::kBase && options.kind != FileKind::kDelta) {
    return status(Code::kInvalidArgument, "unknown file kind");
  }
  if (options.tenant_key.size() > kMaxKeyBytes) {
    return status(Code::kInvalidArgument, "tenant key longer than 65535 bytes");
  }
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->options = options;
  impl->fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (impl->fd < 0) return io_error(0, "cannot create the file", errno);
  impl->created = true;
  XXH3_64bits_reset(&impl->file_hash);
  uint8_t h[kHeaderSize] = {};
  std::memcpy(h, kMagic, sizeof kMagic);
  h[kHOffVersion] = kVersion;
  h[kHOffMinRead] = kMinReadVersion;
  h[kHOffMinWrite] = kMinWriteVersion;
  h[kHOffChecksumType] = kChecksumXxh3;
  store_u32(h + kHOffFlags, 0);
  h[kHOffKind] = static_cast<uint8_t>(options.kind);
  store_u64(h + kHOffSequence, options.sequence);
  store_u64(h + kHOffChecksum, XXH3_64bits(h, kHOffChecksum));
  if (Status st = impl->emit(h, sizeof h); !st.ok()) return st;
  impl_ = std::move(impl);
  return Status{};
}

Status Writer::add_table(const Table& table) {
  if (impl_ == nullptr) return status(Code::kFailed, "writer has no file: call create() first");
  if (Status st = impl_->usable(); !st.ok()) return st;
  if (table.columns.size() > 65535) {
    return status(Code::kInvalidArgument, "more than 65535 columns");
  }
  if (table.tenant_column < -1 ||
      table.tenant_column >= static_cast<int64_t>(table.columns.size())) {
    return status(Code::kInvalidArgument, "tenant column outside the column list");
  }
  if (const char* why = check_attributes(table); why != nullptr) {
    return status(Code::kInvalidArgument, why);
  }
  if (!impl_->tables.emplace(table.table_no, table).second) {
    return status(Code::kInvalidArgument, "table_no added twice");
  }
  return Status{};
}

Status Writer::add(uint32_t table_no, std::string_view key, std::string_view value) {
  if (impl_ == nullptr) return status(Code::kFailed, "writer has no file: call create() first");
  return impl_->add(table_no, key, value, false);
}

Status Writer::add_tombstone(uint32_t table_no, std::string_view key) {
  if (impl_ == nullptr) return status(Code::kFailed, "writer has no file: call create() first");
  return impl_->add(table_no, key, {}, true);
}

Status Writer::finish() {
  if (impl_ == nullptr) return status(Code::kFailed, "writer has no file: call create() first");
  return impl_->finish();
}

uint64_t Writer::record_count() const noexcept { return impl_ ? impl_->records : 0; }

uint64_t Writer::bytes_written() const noexcept { return impl_ ? impl_->offset : 0; }

// --- Reader --------------------------------------------------------------------------------------

namespace {

// One data block as the index describes it.
struct IndexEntry {
  uint64_t offset;
  uint64_t key_pos;  // of its last key in the key arena
  uint32_t key_len;
  uint32_t table_no;  // of its last record
  uint32_t stored;
  uint32_t raw;
  uint32_t count;
};

}  // namespace

struct ReplicaFile::Impl {
  std::string path;
  const uint8_t* data = nullptr;
  size_t size = 0;
  void* map_addr = nullptr;  // when mapped by open()
  size_t map_length = 0;
  uint64_t id = 0;
  FileInfo info;
  bool check_reserved = true;  // false for a newer version's file we may read
  uint64_t schema_offset = 0;
  uint64_t index_offset = 0;
  uint64_t footer_offset = 0;
  std::vector<Table> tables;
  std::vector<IndexEntry> blocks;
  std::string keys;  // last keys of the blocks, back to back
  uint32_t first_table = 0;
  std::string first_key;
  // Blocks whose checksum and records have been checked (FORMAT.md: "on first use").
  std::unique_ptr<std::atomic<uint8_t>[]> verified;

  ~Impl() {
    if (map_addr != nullptr) ::munmap(map_addr, map_length);
  }

  // The last key of block b.
  std::string_view last_key(const IndexEntry& e) const noexcept {
    return std::string_view(keys.data() + e.key_pos, e.key_len);
  }

  // Whether the schema has this table.
  bool has_table(uint64_t table_no) const noexcept {
    const auto it =
        std::lower_bound(tables.begin(), tables.end(), table_no,
                         [](const Table& t, uint64_t no) noexcept { return t.table_no < no; });
    return it != tables.end() && it->table_no == table_no;
  }

  // The first block whose last key is >= (table, key); blocks.size() when none.
  size_t find_block(uint64_t table, std::string_view key) const noexcept {
    size_t lo = 0, hi = blocks.size();
    while (lo < hi) {
      const size_t mid = lo + (hi - lo) / 2;
      const IndexEntry& e = blocks[mid];
      if (compare_keys(e.table_no, last_key(e), table, key) < 0) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

  // Checks the trailer and checksum of the block stored at [offset, offset + stored), which the
  // caller has checked to lie, with its trailer, inside the file. Sets the raw length and whether
  // the block is LZ4.
  Status check_trailer(uint64_t offset, uint32_t stored, BlockType type, uint32_t& raw,
                       bool& lz4) const noexcept {
    const uint8_t* t = data + offset + stored;
    const uint64_t at = offset + stored;
    if (t[kTOffType] != static_cast<uint8_t>(type)) {
      return corrupt(at + kTOffType, "block type is not the one expected here");
    }
    if (t[kTOffCompression] > static_cast<uint8_t>(Compression::kLz4)) {
      return corrupt(at + kTOffCompression, "unknown block compression");
    }
    if (check_reserved && (t[kTOffReserved] != 0 || t[kTOffReserved + 1] != 0)) {
      return corrupt(at + kTOffReserved, "reserved byte of a block trailer is not zero");
    }
    raw = load_u32(t + kTOffRawLength);
    lz4 = t[kTOffCompression] == static_cast<uint8_t>(Compression::kLz4);
    if (raw > kMaxBlockRaw) return corrupt(at + kTOffRawLength, "raw block length above the limit");
    if (!lz4 && stored != raw) {
      return corrupt(at + kTOffRawLength, "uncompressed block whose raw and stored lengths differ");
    }
    if (lz4 && (stored >= raw || raw > kMaxLz4Ratio * stored)) {
      return corrupt(at + kTOffRawLength, "compressed block length out of range");
    }
    if (load_u64(t + kTOffChecksum) != block_checksum(offset, t, data + offset, stored)) {
      return corrupt(offset, "block checksum mismatch");
    }
    return Status{};
  }

  // Decompresses the LZ4 block at offset into out (raw bytes).
  Status decompress(uint64_t offset, uint32_t stored, uint8_t* out, uint32_t raw) const noexcept {
    const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(data + offset),
                                      reinterpret_cast<char*>(out), static_cast<int>(stored),
                                      static_cast<int>(raw));
    if (n != static_cast<int>(raw)) {
      return corrupt(offset, "compressed block does not decompress to its raw length");
    }
    return Status{};
  }

  // Checks a data block's raw bytes record by record (FORMAT.md, "Data block"); adds its
  // tombstones to *tombstones when given.
  Status check_data_block(size_t b, const uint8_t* raw, uint64_t* tombstones) const noexcept {
    const IndexEntry& e = blocks[b];
    auto bad = [&](const char* what, size_t raw_offset) {
      return corrupt(e.offset, what, static_cast<int64_t>(raw_offset));
    };
    const uint32_t count = load_u32(raw + e.raw - 4);
    if (count != e.count) return bad("record count differs from the index", e.raw - 4);
    // The index guarantees raw >= 6 + 11 * count, so the tail and the search array fit.
    const size_t entries_at = e.raw - kBlockTailSize - size_t{count} * kSearchEntrySize;
    const size_t prefix_length = load_u16(raw + e.raw - kBlockTailSize);
    if (prefix_length > entries_at) {
      return bad("shared prefix longer than the block", e.raw - kBlockTailSize);
    }
    const size_t records_end = entries_at - prefix_length;
    const uint8_t* entries = raw + entries_at;
    ByteReader r(std::string_view(reinterpret_cast<const char*>(raw), records_end));
    uint32_t prev_table = 0;
    std::string_view prev_key;
    if (b > 0) {
      prev_table = blocks[b - 1].table_no;
      prev_key = last_key(blocks[b - 1]);
    }
    uint32_t block_first_table = 0;
    std::string_view block_first_key;
    uint64_t tombs = 0;
    for (uint32_t i = 0; i < count; ++i) {
      const size_t at = r.offset();
      const size_t entry_at = entries_at + size_t{i} * kSearchEntrySize;
      if (load_u32(entries + size_t{i} * kSearchEntrySize + 4) != at) {
        return bad("record offset does not match the end of the previous record", entry_at + 4);
      }
      if (r.at_end()) return bad("more search entries than records", entry_at);
      uint32_t table;
      std::string_view key, value;
      uint8_t flags;
      if (!read_u32_varint(r, table) || !read_key(r, key)) {
        return bad(r.error(), r.error_offset());
      }
      if (!has_table(table)) return bad("record of a table not in the schema", at);
      const size_t flags_at = r.offset();
      if (!r.u8(flags)) return bad(r.error(), r.error_offset());
      if ((flags & ~kRecordTombstone) != 0) return bad("unknown record flag bits", flags_at);
      if ((flags & kRecordTombstone) != 0) {
        if (info.kind == FileKind::kBase) return bad("tombstone in a base file", flags_at);
        ++tombs;
      } else {
        const size_t value_at = r.offset();
        uint64_t n;
        if (!r.varint(n)) return bad(r.error(), r.error_offset());
        if (n > kMaxValueBytes) return bad("value longer than 1 GiB", value_at);
        if (n > r.remaining()) return bad("value runs past the records", value_at);
        r.bytes(static_cast<size_t>(n), value);
      }
      if (load_u32(entries + size_t{i} * kSearchEntrySize) != key_head(table, key, prefix_length)) {
        return bad("key head does not match the record's key", entry_at);
      }
      const int c = compare_keys(table, key, prev_table, prev_key);
      if (b == 0 && i == 0) {
        if (compare_keys(table, key, first_table, first_key) != 0) {
          return bad("first record differs from the index's first key", at);
        }
      } else if (c <= 0) {
        return bad(c == 0 ? "duplicate key" : "record out of order", at);
      }
      if (i == 0) {
        block_first_table = table;
        block_first_key = key;
      }
      prev_table = table;
      prev_key = key;
    }
    if (!r.at_end()) return bad("records do not end where the shared prefix starts", r.offset());
    if (compare_keys(prev_table, prev_key, e.table_no, last_key(e)) != 0) {
      return bad("last record differs from the index entry", records_end);
    }
    if (prefix_length !=
        shared_prefix_length(block_first_table, block_first_key, prev_table, prev_key)) {
      return bad("shared prefix length is not that of the first and last keys",
                 e.raw - kBlockTailSize);
    }
    for (size_t j = 0; j < prefix_length; ++j) {
      if (raw[records_end + j] != search_byte(block_first_table, block_first_key, j)) {
        return bad("shared prefix differs from the keys", records_end + j);
      }
    }
    if (tombstones != nullptr) *tombstones += tombs;
    return Status{};
  }

  // Makes block b usable: checked on first use, decompressed through the cache when LZ4. With
  // `keep`, shares the cached block's ownership (scans).
  Status load_block(size_t b, BlockCache& cache, BlockView& view,
                    std::shared_ptr<const CachedBlock>* keep) const noexcept {
    const IndexEntry& e = blocks[b];
    const bool first_use = verified[b].load(std::memory_order_relaxed) == 0;
    if (e.stored == e.raw) {
      // Stored raw: used in place.
      if (keep != nullptr) keep->reset();
      if (first_use) {
        uint32_t raw;
        bool lz4;
        if (Status st = check_trailer(e.offset, e.stored, BlockType::kData, raw, lz4); !st.ok()) {
          return st;
        }
        if (lz4 || raw != e.raw)
          return corrupt(e.offset + e.stored, "trailer differs from the index");
        if (Status st = check_data_block(b, data + e.offset, nullptr); !st.ok()) return st;
        verified[b].store(1, std::memory_order_relaxed);
      }
      if (!make_view(data + e.offset, e.raw, view)) return corrupt(e.offset, "bad search array");
      return Status{};
    }
    BlockBytes bytes;
    try {
      if (keep != nullptr) {
        *keep = cache.find_shared(id, static_cast<uint32_t>(b));
        if (*keep != nullptr) bytes = BlockBytes{(*keep)->bytes.get(), (*keep)->size};
      } else {
        bytes = cache.find(id, static_cast<uint32_t>(b));
      }
      if (bytes.data == nullptr) {
        if (first_use) {
          uint32_t raw;
          bool lz4;
          if (Status st = check_trailer(e.offset, e.stored, BlockType::kData, raw, lz4); !st.ok()) {
            return st;
          }
          if (!lz4 || raw != e.raw) {
            return corrupt(e.offset + e.stored, "trailer differs from the index");
          }
        }
        auto block = std::make_shared<CachedBlock>();
        block->bytes = std::make_unique_for_overwrite<uint8_t[]>(e.raw);
        block->size = e.raw;
        if (Status st = decompress(e.offset, e.stored, block->bytes.get(), e.raw); !st.ok()) {
          return st;
        }
        if (first_use) {
          if (Status st = check_data_block(b, block->bytes.get(), nullptr); !st.ok()) return st;
          verified[b].store(1, std::memory_order_relaxed);
        }
        if (keep != nullptr) *keep = block;
        bytes = cache.insert(id, static_cast<uint32_t>(b), std::move(block));
      }
    } catch (const std::bad_alloc&) {
      return status(Code::kOutOfMemory, "out of memory for a decompressed block", e.offset);
    }
    if (!make_view(bytes.data, bytes.size, view)) return corrupt(e.offset, "bad search array");
    return Status{};
  }

  // Decodes a table's table_flags and attribute list (version 2 and later) into its columns.
  template <typename Bad>
  static Status decode_attributes(ByteReader& r, Table& t, Bad& bad) {
    const size_t flags_at = r.offset();
    uint8_t table_flags;
    if (!r.u8(table_flags)) return bad(r.error(), r.error_offset());
    if ((table_flags & ~kTableAttributes) != 0) return bad("unknown table flag bits", flags_at);
    if ((table_flags & kTableAttributes) == 0) return Status{};
    if (t.columns.empty()) return bad("attribute list on a table without columns", flags_at);
    std::bitset<kMaxAttnum + 1> seen;
    for (Column& col : t.columns) {
      const size_t at = r.offset();
      uint64_t attnum;
      uint8_t flags;
      if (!r.varint(attnum)) return bad(r.error(), r.error_offset());
      if (attnum == 0 || attnum > kMaxAttnum) return bad("attribute number out of range", at);
      if (seen.test(attnum)) return bad("attribute number repeated in a table", at);
      seen.set(attnum);
      col.attnum = static_cast<uint32_t>(attnum);
      const size_t attr_flags_at = r.offset();
      if (!r.u8(flags)) return bad(r.error(), r.error_offset());
      if ((flags & ~kAttributeMissing) != 0) {
        return bad("unknown attribute flag bits", attr_flags_at);
      }
      if ((flags & kAttributeMissing) == 0) continue;
      const size_t kind_at = r.offset();
      uint8_t kind;
      std::string_view data;
      if (!r.u8(kind)) return bad(r.error(), r.error_offset());
      if (kind != static_cast<uint8_t>('b') && kind != static_cast<uint8_t>('t')) {
        return bad("missing value kind is not binary ('b') or text ('t')", kind_at);
      }
      const size_t data_at = r.offset();
      if (!r.str(data)) return bad(r.error(), r.error_offset());
      if (data.size() > kMaxValueBytes) return bad("missing value longer than 1 GiB", data_at);
      col.has_missing = true;
      col.missing_kind = kind;
      col.missing.assign(data);
    }
    return Status{};
  }

  // Decodes the schema block's raw bytes (the file's version says whether tables carry
  // table_flags).
  Status decode_schema(const uint8_t* raw, uint32_t raw_length, uint32_t table_count) {
    ByteReader r(std::string_view(reinterpret_cast<const char*>(raw), raw_length));
    auto bad = [&](const char* what, size_t at) {
      return corrupt(schema_offset, what, static_cast<int64_t>(at));
    };
    std::string_view tenant;
    uint32_t count;
    if (!r.str(tenant)) return bad(r.error(), r.error_offset());
    const size_t count_at = r.offset();
    if (!read_count(r, count)) return bad(r.error(), r.error_offset());
    if (count != table_count) return bad("table count differs from the footer", count_at);
    info.tenant_key.assign(tenant);
    tables.reserve(count);
    for (uint32_t i = 0; i < count; ++i) {
      Table t;
      const size_t at = r.offset();
      std::string_view schema, name;
      uint64_t tenant_column;
      uint32_t ncols;
      if (!read_u32_varint(r, t.table_no) || !r.str(schema) || !r.str(name)) {
        return bad(r.error(), r.error_offset());
      }
      if (!tables.empty() && t.table_no <= tables.back().table_no) {
        return bad("tables not in increasing table_no order", at);
      }
      const size_t tenant_at = r.offset();
      if (!r.varint(tenant_column) || !read_count(r, ncols)) {
        return bad(r.error(), r.error_offset());
      }
      if (tenant_column > ncols) return bad("tenant column beyond the column count", tenant_at);
      t.schema.assign(schema);
      t.name.assign(name);
      t.tenant_column = static_cast<int32_t>(tenant_column) - 1;
      t.columns.reserve(ncols);
      for (uint32_t c = 0; c < ncols; ++c) {
        Column col;
        std::string_view col_name;
        uint8_t flags;
        if (!r.str(col_name) || !r.u32(col.type_oid) || !r.i32(col.typmod)) {
          return bad(r.error(), r.error_offset());
        }
        const size_t flags_at = r.offset();
        if (!r.u8(flags)) return bad(r.error(), r.error_offset());
        if ((flags & ~kColumnKey) != 0) return bad("unknown column flag bits", flags_at);
        col.name.assign(col_name);
        col.key = (flags & kColumnKey) != 0;
        t.columns.push_back(std::move(col));
      }
      if (info.version >= 2) {
        if (Status st = decode_attributes(r, t, bad); !st.ok()) return st;
      }
      tables.push_back(std::move(t));
    }
    if (!r.at_end()) return bad("bytes after the last table", r.offset());
    return Status{};
  }

  // Decodes the index block's raw bytes.
  Status decode_index(const uint8_t* raw, uint32_t raw_length, uint32_t block_count,
                      uint64_t record_count) {
    ByteReader r(std::string_view(reinterpret_cast<const char*>(raw), raw_length));
    auto bad = [&](const char* what, size_t at) {
      return corrupt(index_offset, what, static_cast<int64_t>(at));
    };
    uint32_t count;
    const size_t count_at = r.offset();
    if (!read_count(r, count)) return bad(r.error(), r.error_offset());
    if (count != block_count) return bad("block count differs from the footer", count_at);
    if (count > 0) {
      const size_t at = r.offset();
      std::string_view key;
      if (!read_u32_varint(r, first_table) || !read_key(r, key)) {
        return bad(r.error(), r.error_offset());
      }
      if (!has_table(first_table)) return bad("first key of a table not in the schema", at);
      first_key.assign(key);
    }
    blocks.reserve(count);
    uint64_t expected_offset = kHeaderSize;
    uint64_t records = 0;
    for (uint32_t i = 0; i < count; ++i) {
      const size_t at = r.offset();
      IndexEntry e{};
      std::string_view key;
      if (!read_u32_varint(r, e.table_no) || !read_key(r, key)) {
        return bad(r.error(), r.error_offset());
      }
      if (!has_table(e.table_no)) return bad("index entry of a table not in the schema", at);
      const size_t offset_at = r.offset();
      if (!r.varint(e.offset)) return bad(r.error(), r.error_offset());
      if (e.offset != expected_offset) {
        return bad("block offset is not where the previous block ends", offset_at);
      }
      const size_t sizes_at = r.offset();
      if (!read_u32_varint(r, e.stored) || !read_u32_varint(r, e.raw) ||
          !read_u32_varint(r, e.count)) {
        return bad(r.error(), r.error_offset());
      }
      if (e.stored == 0 || e.count == 0) return bad("empty data block", sizes_at);
      if (e.raw > kMaxBlockRaw ||
          e.raw < kBlockTailSize + (kSearchEntrySize + kMinRecordBytes) * e.count) {
        return bad("raw block length does not fit its record count", sizes_at);
      }
      if (e.stored > e.raw || (e.stored < e.raw && e.raw > kMaxLz4Ratio * e.stored)) {
        return bad("stored block length out of range", sizes_at);
      }
      if (schema_offset - e.offset < uint64_t{e.stored} + kTrailerSize) {
        return bad("data block runs into the schema block", sizes_at);
      }
      expected_offset = e.offset + e.stored + kTrailerSize;
      const uint64_t prev_table = blocks.empty() ? first_table : blocks.back().table_no;
      const std::string_view prev_key =
          blocks.empty() ? std::string_view(first_key) : last_key(blocks.back());
      const int c = compare_keys(e.table_no, key, prev_table, prev_key);
      if (blocks.empty() ? c < 0 : c <= 0) {
        return bad(blocks.empty() ? "first key above the first block's last key"
                                  : "index entries not in increasing key order",
                   at);
      }
      e.key_pos = keys.size();
      e.key_len = static_cast<uint32_t>(key.size());
      keys.append(key);
      records += e.count;
      blocks.push_back(e);
    }
    if (!r.at_end()) return bad("bytes after the last index entry", r.offset());
    if (expected_offset != schema_offset) {
      return bad("data blocks do not end where the schema block starts", r.offset());
    }
    if (records != record_count) return bad("record counts differ from the footer", r.offset());
    return Status{};
  }

  // Checks a schema or index block and hands its raw bytes to decode.
  template <typename Decode>
  Status read_meta_block(uint64_t offset, uint32_t stored, BlockType type, Decode decode) {
    uint32_t raw;
    bool lz4;
    if (Status st = check_trailer(offset, stored, type, raw, lz4); !st.ok()) return st;
    if (!lz4) return decode(data + offset, raw);
    auto buffer = std::make_unique_for_overwrite<uint8_t[]>(raw);
    if (Status st = decompress(offset, stored, buffer.get(), raw); !st.ok()) return st;
    return decode(buffer.get(), raw);
  }

  // Checks the header, footer, schema and index of the bytes (FORMAT.md: "at open").
  Status open_bytes() {
    const uint8_t* p = data;
    if (size >= sizeof kMagic && std::memcmp(p, kMagic, sizeof kMagic) != 0) {
      return Status{Code::kBadMagic, 0, -1, "not a replica file: bad magic", 0};
    }
    if (size < kHeaderSize + kFooterSize) {
      return corrupt(size, "file shorter than a header and a footer: truncated");
    }
    footer_offset = size - kFooterSize;
    const uint8_t* f = p + footer_offset;
    const uint64_t fo = footer_offset;
    if (std::memcmp(f + kFOffMagic, kMagic, sizeof kMagic) != 0) {
      return corrupt(fo + kFOffMagic, "no footer at the end of the file: truncated or damaged");
    }
    const uint8_t version = f[kFOffVersion];
    const uint8_t min_read = f[kFOffMinRead];
    const uint8_t min_write = f[kFOffMinWrite];
    if (min_read < 1 || min_read > kVersion || min_read > version) {
      return Status{Code::kBadVersion, fo + kFOffMinRead, -1,
                    "unsupported format version (min_read_version)", 0};
    }
    if (min_write < 1 || min_write > version) {
      return Status{Code::kBadVersion, fo + kFOffMinWrite, -1,
                    "unsupported format version (min_write_version)", 0};
    }
    if (f[kFOffChecksumType] != kChecksumXxh3) {
      return Status{Code::kBadVersion, fo + kFOffChecksumType, -1, "unsupported checksum type", 0};
    }
    if (load_u64(f + kFOffChecksum) != XXH3_64bits(f, kFOffChecksum)) {
      return corrupt(fo + kFOffChecksum, "footer checksum mismatch");
    }
    if (version >= 2 && min_read < 2) {
      // Its schema block is not version 1's: a version 1 reader would misread it.
      return corrupt(fo + kFOffMinRead, "min_read_version 1 in a file of version 2 or later");
    }
    // The footer is what its writer wrote: from here on, refusals are about writers.
    check_reserved = version <= kVersion;
    if ((load_u32(f + kFOffFlags) & ~kKnownFlags) != 0) {
      return Status{Code::kBadVersion, fo + kFOffFlags, -1, "unknown flag bits", 0};
    }
    if (check_reserved) {
      for (size_t i : {kFOffReserved1, kFOffReserved1 + 1, kFOffReserved1 + 2, kFOffReserved2,
                       kFOffReserved2 + 1, kFOffReserved2 + 2, kFOffReserved2 + 3, kFOffReserved3,
                       kFOffReserved3 + 1, kFOffReserved3 + 2, kFOffReserved3 + 3}) {
        if (f[i] != 0) return corrupt(fo + i, "reserved footer byte is not zero");
      }
    }
    const uint8_t kind = f[kFOffKind];
    if (kind != static_cast<uint8_t>(FileKind::kBase) &&
        kind != static_cast<uint8_t>(FileKind::kDelta)) {
      return corrupt(fo + kFOffKind, "unknown file kind");
    }

    // Header: its own checksum, and the same fields as the footer.
    if (load_u64(p + kHOffChecksum) != XXH3_64bits(p, kHOffChecksum)) {
      return corrupt(kHOffChecksum, "header checksum mismatch");
    }
    const std::pair<size_t, size_t> same[] = {{kHOffVersion, kFOffVersion},
                                              {kHOffMinRead, kFOffMinRead},
                                              {kHOffMinWrite, kFOffMinWrite},
                                              {kHOffChecksumType, kFOffChecksumType},
                                              {kHOffKind, kFOffKind}};
    for (const auto& [h, ff] : same) {
      if (p[h] != f[ff]) return corrupt(h, "header differs from the footer");
    }
    if (load_u32(p + kHOffFlags) != load_u32(f + kFOffFlags)) {
      return corrupt(kHOffFlags, "header differs from the footer");
    }
    if (load_u64(p + kHOffSequence) != load_u64(f + kFOffSequence)) {
      return corrupt(kHOffSequence, "header differs from the footer");
    }
    if (check_reserved) {
      for (size_t i = 0; i < kHReservedBytes; ++i) {
        if (p[kHOffReserved + i] != 0) {
          return corrupt(kHOffReserved + i, "reserved header byte is not zero");
        }
      }
    }

    info.kind = static_cast<FileKind>(kind);
    info.sequence = load_u64(f + kFOffSequence);
    info.version = version;
    info.file_size = size;
    info.record_count = load_u64(f + kFOffRecordCount);
    info.tombstone_count = load_u64(f + kFOffTombstoneCount);
    info.data_block_count = load_u32(f + kFOffBlockCount);
    if (info.tombstone_count > info.record_count) {
      return corrupt(fo + kFOffTombstoneCount, "more tombstones than records");
    }
    if (info.kind == FileKind::kBase && info.tombstone_count != 0) {
      return corrupt(fo + kFOffTombstoneCount, "tombstones in a base file");
    }

    // Layout: header, data blocks, schema block, index block, footer, without gaps.
    schema_offset = load_u64(f + kFOffSchemaOffset);
    index_offset = load_u64(f + kFOffIndexOffset);
    const uint32_t schema_stored = load_u32(f + kFOffSchemaStored);
    const uint32_t index_stored = load_u32(f + kFOffIndexStored);
    if (schema_offset < kHeaderSize || schema_offset > footer_offset || schema_stored == 0 ||
        footer_offset - schema_offset < uint64_t{schema_stored} + kTrailerSize ||
        index_offset != schema_offset + schema_stored + kTrailerSize) {
      return corrupt(fo + kFOffSchemaOffset, "schema block outside its place");
    }
    if (index_stored == 0 || footer_offset - index_offset < uint64_t{index_stored} ||
        footer_offset - index_offset - index_stored != kTrailerSize) {
      return corrupt(fo + kFOffIndexOffset, "index block outside its place");
    }
    if (Status st = read_meta_block(schema_offset, schema_stored, BlockType::kSchema,
                                    [&](const uint8_t* raw, uint32_t n) {
                                      return decode_schema(raw, n, load_u32(f + kFOffTableCount));
                                    });
        !st.ok()) {
      return st;
    }
    if (Status st = read_meta_block(index_offset, index_stored, BlockType::kIndex,
                                    [&](const uint8_t* raw, uint32_t n) {
                                      return decode_index(raw, n, info.data_block_count,
                                                          info.record_count);
                                    });
        !st.ok()) {
      return st;
    }
    verified = std::make_unique<std::atomic<uint8_t>[]>(blocks.size());
    id = g_next_file_id.fetch_add(1, std::memory_order_relaxed);
    return Status{};
  }
};

ReplicaFile::ReplicaFile() = default;
ReplicaFile::~ReplicaFile() = default;
ReplicaFile::ReplicaFile(ReplicaFile&&) noexcept = default;
ReplicaFile& ReplicaFile::operator=(ReplicaFile&&) noexcept = default;

Status ReplicaFile::open(const std::string& path) noexcept {
  impl_.reset();
  try {
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return io_error(0, "cannot open the file", errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      return io_error(0, "fstat failed", err);
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      return io_error(0, "not a regular file", 0);
    }
    const size_t size = static_cast<size_t>(st.st_size);
    if (size > 0) {
      void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (addr == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        return io_error(0, "mmap failed", err);
      }
      impl->map_addr = addr;
      impl->map_length = size;
      impl->data = static_cast<const uint8_t*>(addr);
    }
    ::close(fd);  // the mapping keeps the file
    impl->size = size;
    if (Status st = impl->open_bytes(); !st.ok()) return st;
    impl_ = std::move(impl);
    return Status{};
  } catch (const std::bad_alloc&) {
    return status(Code::kOutOfMemory, "out of memory opening the file");
  }
}

void ReplicaFile::release_pages() const noexcept {
  // A private, read-only mapping of a file: dropped pages read the same bytes back from the file.
  if (impl_ && impl_->map_addr != nullptr) (void)::madvise(impl_->map_addr, impl_->map_length, MADV_DONTNEED);
}

Status ReplicaFile::open_memory(std::span<const uint8_t> bytes, std::string name) noexcept {
  impl_.reset();
  try {
    auto impl = std::make_unique<Impl>();
    impl->path = std::move(name);
    impl->data = bytes.data();
    impl->size = bytes.size();
    if (Status st = impl->open_bytes(); !st.ok()) return st;
    impl_ = std::move(impl);
    return Status{};
  } catch (const std::bad_alloc&) {
    return status(Code::kOutOfMemory, "out of memory opening the file");
  }
}

bool ReplicaFile::is_open() const noexcept { return impl_ != nullptr; }

Status ReplicaFile::get(uint32_t table_no, std::string_view key, BlockCache& cache,
                        std::string_view& value) const noexcept {
  if (impl_ == nullptr) return status(Code::kFailed, "file is not open");
  const Impl& f = *impl_;
  const size_t b = f.find_block(table_no, key);
  if (b == f.blocks.size()) return Status{Code::kNotFound};
  BlockView v;
  if (Status st = f.load_block(b, cache, v, nullptr); !st.ok()) return st;
  uint32_t i;
  if (!lower_bound_in_block(v, table_no, key, i)) {
    return corrupt(f.blocks[b].offset, "record does not decode");
  }
  if (i == v.count) return Status{Code::kNotFound};
  uint64_t t;
  std::string_view k;
  const uint8_t* rest;
  bool tombstone;
  if (!record_head(v, i, t, k, rest) || !record_tail(v, rest, tombstone, value)) {
    return corrupt(f.blocks[b].offset, "record does not decode");
  }
  if (t != table_no || k != key) return Status{Code::kNotFound};
  return Status{tombstone ? Code::kTombstone : Code::kOk};
}

Status ReplicaFile::verify() const noexcept {
  if (impl_ == nullptr) return status(Code::kFailed, "file is not open");
  const Impl& f = *impl_;
  std::unique_ptr<uint8_t[]> buffer;
  size_t capacity = 0;
  uint64_t tombstones = 0;
  for (size_t b = 0; b < f.blocks.size(); ++b) {
    const IndexEntry& e = f.blocks[b];
    uint32_t raw;
    bool lz4;
    if (Status st = f.check_trailer(e.offset, e.stored, BlockType::kData, raw, lz4); !st.ok()) {
      return st;
    }
    if (lz4 != (e.stored < e.raw) || raw != e.raw) {
      return corrupt(e.offset + e.stored, "trailer differs from the index");
    }
    const uint8_t* bytes = f.data + e.offset;
    if (lz4) {
      if (capacity < raw) {
        try {
          buffer = std::make_unique_for_overwrite<uint8_t[]>(raw);
        } catch (const std::bad_alloc&) {
          return status(Code::kOutOfMemory, "out of memory for a decompressed block", e.offset);
        }
        capacity = raw;
      }
      if (Status st = f.decompress(e.offset, e.stored, buffer.get(), raw); !st.ok()) return st;
      bytes = buffer.get();
    }
    if (Status st = f.check_data_block(b, bytes, &tombstones); !st.ok()) return st;
    f.verified[b].store(1, std::memory_order_relaxed);
  }
  if (tombstones != f.info.tombstone_count) {
    return corrupt(f.footer_offset + kFOffTombstoneCount,
                   "tombstones in the blocks differ from the footer's count");
  }
  const uint8_t* footer = f.data + f.footer_offset;
  if (XXH3_64bits(f.data, f.footer_offset) != load_u64(footer + kFOffFileChecksum)) {
    return corrupt(f.footer_offset + kFOffFileChecksum, "whole-file checksum mismatch");
  }
  return Status{};
}

const std::vector<Table>& ReplicaFile::tables() const noexcept {
  static const std::vector<Table> none;
  return impl_ ? impl_->tables : none;
}

const Table* ReplicaFile::table(uint32_t table_no) const noexcept {
  if (impl_ == nullptr) return nullptr;
  const auto& t = impl_->tables;
  const auto it = std::lower_bound(t.begin(), t.end(), table_no,
                                   [](const Table& x, uint32_t no) { return x.table_no < no; });
  return it != t.end() && it->table_no == table_no ? &*it : nullptr;
}

const FileInfo& ReplicaFile::info() const noexcept {
  static const FileInfo none;
  return impl_ ? impl_->info : none;
}

bool ReplicaFile::key_range(uint32_t& first_table, std::string_view& first_key,
                            uint32_t& last_table, std::string_view& last_key) const noexcept {
  if (impl_ == nullptr || impl_->blocks.empty()) return false;
  first_table = impl_->first_table;
  first_key = impl_->first_key;
  last_table = impl_->blocks.back().table_no;
  last_key = impl_->last_key(impl_->blocks.back());
  return true;
}

const std::string& ReplicaFile::path() const noexcept {
  static const std::string none;
  return impl_ ? impl_->path : none;
}

uint64_t ReplicaFile::id() const noexcept { return impl_ ? impl_->id : 0; }

// --- Scan ----------------------------------------------------------------------------------------

struct Scan::State {
  const ReplicaFile::Impl* file = nullptr;
  BlockCache* cache = nullptr;
  bool all = false;  // every table, no bounds
  uint32_t table = 0;
  std::string from;
  bool has_to = false;
  std::string to;
  bool started = false;
  Status done;  // kEnd or a failure once the scan is over
  size_t block = 0;
  uint32_t index = 0;  // next record in the block
  BlockView view;
  std::shared_ptr<const CachedBlock> keep;  // the current block, when from the cache

  // Ends the scan with st (kEnd or a failure) and returns it.
  Status finish(Status st) noexcept {
    done = st;
    keep.reset();
    return st;
  }
};

Scan::Scan() = default;
Scan::~Scan() = default;
Scan::Scan(Scan&&) noexcept = default;
Scan& Scan::operator=(Scan&&) noexcept = default;

Scan ReplicaFile::scan(uint32_t table_no, std::string_view from, std::optional<std::string_view> to,
                       BlockCache& cache) const {
  Scan s;
  s.state_ = std::make_unique<Scan::State>();
  s.state_->file = impl_.get();
  s.state_->cache = &cache;
  s.state_->table = table_no;
  s.state_->from.assign(from);
  s.state_->has_to = to.has_value();
  if (to) s.state_->to.assign(*to);
  return s;
}

Scan ReplicaFile::scan_all(BlockCache& cache) const {
  Scan s;
  s.state_ = std::make_unique<Scan::State>();
  s.state_->file = impl_.get();
  s.state_->cache = &cache;
  s.state_->all = true;
  return s;
}

Status Scan::next(Record& out) noexcept {
  if (state_ == nullptr) return status(Code::kFailed, "scan of no file");
  State& s = *state_;
  if (s.done.code != Code::kOk) return s.done;
  if (s.file == nullptr) return s.finish(status(Code::kFailed, "file is not open"));
  const ReplicaFile::Impl& f = *s.file;
  if (!s.started) {
    s.started = true;
    s.block = s.all ? 0 : f.find_block(s.table, s.from);
    if (s.block == f.blocks.size()) return s.finish(Status{Code::kEnd});
    if (Status st = f.load_block(s.block, *s.cache, s.view, &s.keep); !st.ok()) {
      return s.finish(st);
    }
    s.index = 0;
    if (!s.all && !lower_bound_in_block(s.view, s.table, s.from, s.index)) {
      return s.finish(corrupt(f.blocks[s.block].offset, "record does not decode"));
    }
  }
  if (s.index == s.view.count) {
    if (++s.block == f.blocks.size()) return s.finish(Status{Code::kEnd});
    if (Status st = f.load_block(s.block, *s.cache, s.view, &s.keep); !st.ok()) {
      return s.finish(st);
    }
    s.index = 0;
  }
  uint64_t table;
  const uint8_t* rest;
  if (!record_head(s.view, s.index, table, out.key, rest) ||
      !record_tail(s.view, rest, out.tombstone, out.value) || table > UINT32_MAX) {
    return s.finish(corrupt(f.blocks[s.block].offset, "record does not decode"));
  }
  if (!s.all) {
    if (table != s.table) return s.finish(Status{Code::kEnd});
    if (s.has_to && compare_keys(table, out.key, s.table, s.to) >= 0) {
      return s.finish(Status{Code::kEnd});
    }
  }
  out.table_no = static_cast<uint32_t>(table);
  ++s.index;
  return Status{};
}

}  // namespace edgeshard::replica

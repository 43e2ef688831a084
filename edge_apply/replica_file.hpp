// Replica files: immutable sorted files of one tenant's rows, of several tables, used as a base
// file or as a delta file (with tombstones) on top of one. The byte layout is edge_apply/FORMAT.md;
// this header is the writer (Writer), the reader (ReplicaFile) and its range iterator (Scan).
//
//   replica::Writer w;                                         // every call returns a Status
//   w.create(tmp_path, {.kind = replica::FileKind::kDelta, .sequence = 12, .tenant_key = "42"});
//   w.add_table(orders);                                       // table_no -> schema and columns
//   w.add(orders.table_no, key, tuple);                        // in (table_no, key) order
//   w.add_tombstone(orders.table_no, deleted_key);
//   w.finish();                                                // footer, fsync, close
//   // caller: rename(tmp_path, final_path), fsync the directory
//
//   replica::ReplicaFile file;
//   if (Status st = file.open(path); !st.ok()) log(describe(st, path));
//   replica::BlockCache cache;                                 // one per thread
//   std::string_view row;
//   switch (file.get(table_no, key, cache, row).code) { case Code::kOk: ... kTombstone ... }
//   replica::Scan scan = file.scan(table_no, from, to, cache);
//   for (replica::Record r; scan.next(r).ok();) ...;           // then kEnd, or an error
//
// Errors: hot paths (get, Scan::next) are noexcept and return status values; so do open, verify
// and every Writer call (I/O errors included). Only std::bad_alloc outside the noexcept calls
// escapes, as an exception, and only from Writer and ReplicaFile::scan (the reader's noexcept
// calls turn it into Code::kOutOfMemory).
//
// Sharing: an open ReplicaFile is immutable apart from a bitmap of verified blocks (atomics), so
// any number of threads may call get/scan/verify on it at once, each with its own BlockCache. The
// file is mapped read-only and MAP_PRIVATE, without any lock: any number of processes may read it,
// and it may be unlinked (or renamed over) while mapped. It must not be truncated or rewritten in
// place (the format's files never are): the kernel would then raise SIGBUS or show other bytes.
#pragma once

#include "common/no_postgres.hpp"
#include "edge_apply/block_cache.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::replica {

// --- Layout constants (FORMAT.md) --------------------------------------------------------------

inline constexpr uint8_t kMagic[4] = {'E', 'S', 'R', 'F'};
inline constexpr uint8_t kVersion = 2;          // written, and the highest version read
inline constexpr uint8_t kMinReadVersion = 2;   // written into new files (v1 readers cannot)
inline constexpr uint8_t kMinWriteVersion = 1;  // written into new files (nobody modifies them)
inline constexpr uint8_t kChecksumXxh3 = 1;
inline constexpr uint32_t kKnownFlags = 0;
inline constexpr size_t kHeaderSize = 32;
inline constexpr size_t kFooterSize = 96;
inline constexpr size_t kTrailerSize = 16;

// Limits.
inline constexpr uint32_t kMaxKeyBytes = 65535;
inline constexpr uint32_t kMaxValueBytes = 1u << 30;
inline constexpr uint32_t kMaxBlockRaw = (1u << 30) + (1u << 20);
inline constexpr uint32_t kDefaultBlockBytes = 16384;
inline constexpr uint32_t kMaxBlockBytes = 64u << 20;  // largest target block size accepted

// What a file holds: a tenant's whole state, or changes on top of it.
enum class FileKind : uint8_t { kBase = 1, kDelta = 2 };

// block_type of a block trailer.
enum class BlockType : uint8_t { kData = 1, kSchema = 2, kIndex = 3 };

// compression of a block trailer.
enum class Compression : uint8_t { kNone = 0, kLz4 = 1 };

// record_flags bits.
inline constexpr uint8_t kRecordTombstone = 0x01;
// column_flags bits (as in the frame RELATION message).
inline constexpr uint8_t kColumnKey = 0x01;
// table_flags bits (version 2): the attribute list follows the column list.
inline constexpr uint8_t kTableAttributes = 0x01;
// attribute_flags bits (as in the frame ATTRIBUTES message).
inline constexpr uint8_t kAttributeMissing = 0x01;
// Highest attribute number (PostgreSQL's MaxHeapAttributeNumber).
inline constexpr uint32_t kMaxAttnum = 1664;

// --- Status --------------------------------------------------------------------------------------

// Outcome classes. kOk, kTombstone, kNotFound and kEnd are results, not failures.
enum class Code : uint8_t {
  kOk = 0,
  kTombstone,        // get: the key is deleted in this (delta) file
  kNotFound,         // get: the key is not in this file
  kEnd,              // scan: no further record in the range
  kBadMagic,         // open: not a replica file
  kBadVersion,       // open: a version this reader cannot read
  kCorrupt,          // the bytes break the format: checksum, layout or decoding (SQLSTATE XX001)
  kIo,               // a system call failed (sys_errno says why)
  kOutOfMemory,      // no memory for a decompressed block
  kOutOfOrder,       // writer: a record not after the previous one, or a duplicate key
  kInvalidArgument,  // writer: bad option, unknown or duplicate table, over a limit, tombstone
                     // in a base file
  kFailed,           // writer: not created, already finished, or failed by an I/O error;
                     // reader: not open
};

// Outcome of a call. `what` is static text, lower-case, no trailing period.
struct Status {
  Code code = Code::kOk;
  uint64_t offset = 0;      // file offset of the field or block at fault (or being written)
  int64_t raw_offset = -1;  // offset inside the block's raw bytes (record errors), or -1
  const char* what = "";
  int sys_errno = 0;  // kIo: errno

  // Whether the call succeeded (for get: a row was found).
  bool ok() const noexcept { return code == Code::kOk; }
  // Whether the call failed (as opposed to kOk, kTombstone, kNotFound, kEnd).
  bool failed() const noexcept { return code > Code::kEnd; }
};

// Short stable name of a code ("not_found"), for logs and metrics.
const char* code_name(Code code) noexcept;

// One-line description: "replica file <file>: <what> at offset <n> (...)".
std::string describe(const Status& status, std::string_view file);

// --- Schema ----------------------------------------------------------------------------------

// One column of a table (the frame RELATION column and its ATTRIBUTES entry).
struct Column {
  std::string name;
  uint32_t type_oid = 0;
  int32_t typmod = -1;
  bool key = false;  // part of the primary key
  uint32_t attnum = 0;        // PostgreSQL's attribute number: the column's identity; 0 unknown
  bool has_missing = false;   // rows stored without this column read as `missing`
  uint8_t missing_kind = 0;   // the missing value's frame value kind ('b' or 't') when has_missing
  std::string missing{};      // the missing value's data

  // Whether two columns are equal.
  bool operator==(const Column&) const = default;
};

// A table of the file.
struct Table {
  uint32_t table_no = 0;  // the number records use
  std::string schema;
  std::string name;
  int32_t tenant_column = -1;  // index into columns, or -1 when none
  std::vector<Column> columns;

  // Whether two tables are equal.
  bool operator==(const Table&) const = default;
};

// One record as read: views into the file's mapping or a cached block (see get() and Scan).
struct Record {
  uint32_t table_no = 0;
  std::string_view key;
  bool tombstone = false;
  std::string_view value;  // empty for a tombstone
};

// --- Writer ----------------------------------------------------------------------------------

// Writes one replica file. Destroying a writer before finish() succeeded removes its file.
class Writer {
 public:
  // What to write.
  struct Options {
    FileKind kind = FileKind::kBase;
    uint64_t sequence = 0;
    std::string tenant_key;                     // canonical tenant key, or empty
    uint32_t block_bytes = kDefaultBlockBytes;  // target raw size of a data block, 1 .. 64 MiB
    bool compress = true;                       // LZ4 where it saves at least an eighth
    bool sync = true;  // fsync in finish() (false: the caller syncs, e.g. one syncfs for many files)
  };

  Writer();
  ~Writer();
  Writer(Writer&&) noexcept;
  Writer& operator=(Writer&&) noexcept;

  // Creates (or truncates) the file at path and writes its header. kInvalidArgument for bad
  // options, kIo when the file cannot be created, kFailed when called twice.
  Status create(const std::string& path, const Options& options);

  // Declares a table; any time before finish(), before its first record. Refuses a duplicate
  // table_no, a tenant column outside the columns, more than 65535 columns, and attributes the
  // file cannot store as given (FORMAT.md, "Writing"): attnums known for some columns only, above
  // 1664 or repeated, a missing value without an attnum, of a kind other than 'b'/'t' or over
  // 1 GiB, a missing kind or value set without has_missing.
  Status add_table(const Table& table);

  // Appends a row: (table_no, key) must be strictly after the previous record's.
  Status add(uint32_t table_no, std::string_view key, std::string_view value);

  // Appends a tombstone (delta files only), in the same order as add().
  Status add_tombstone(uint32_t table_no, std::string_view key);

  // Writes the last data block, the schema and index blocks and the footer, fsyncs and closes the
  // file. The caller renames it into place and fsyncs the directory.
  Status finish();

  // Records added so far.
  uint64_t record_count() const noexcept;
  // Bytes written so far (the file's size after finish()).
  uint64_t bytes_written() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// --- Reader ----------------------------------------------------------------------------------

class Scan;

// What open() learned from the footer and the index.
struct FileInfo {
  FileKind kind = FileKind::kBase;
  uint64_t sequence = 0;
  uint8_t version = 0;
  uint64_t file_size = 0;
  uint64_t record_count = 0;
  uint64_t tombstone_count = 0;
  uint32_t data_block_count = 0;
  std::string tenant_key;
};

// An open replica file (read-only mapping, or caller-owned bytes).
class ReplicaFile {
 public:
  ReplicaFile();
  ~ReplicaFile();
  ReplicaFile(ReplicaFile&&) noexcept;
  ReplicaFile& operator=(ReplicaFile&&) noexcept;

  // Maps the file and checks its header, footer, schema and index (FORMAT.md, "What a reader
  // checks": at open). On failure the object stays closed.
  Status open(const std::string& path) noexcept;

  // The same on bytes the caller owns and keeps alive and unchanged while the file is open (for
  // tests and the fuzzer); `name` appears in describe().
  Status open_memory(std::span<const uint8_t> bytes, std::string name) noexcept;

  // Whether open() succeeded.
  bool is_open() const noexcept;

  // Drops the mapped pages this process touched from its memory (they stay in the page cache and
  // fault back in when read again): a long sequential read, such as a compaction's, then does not
  // keep the whole file in the process's RSS. No effect on caller-owned bytes.
  void release_pages() const noexcept;

  // Looks a key up. kOk: a row, `value` set (valid until the next get() or scan step using the same
  // cache, and while the file is open); kTombstone; kNotFound; or a failure (kCorrupt: a block
  // that fails its checks; kOutOfMemory; kFailed when not open).
  Status get(uint32_t table_no, std::string_view key, BlockCache& cache,
             std::string_view& value) const noexcept;

  // The records of one table with from <= key < to (no upper bound when `to` is nullopt), in
  // order, tombstones included. The file and the cache must outlive the scan; the bounds are
  // copied.
  Scan scan(uint32_t table_no, std::string_view from, std::optional<std::string_view> to,
            BlockCache& cache) const;

  // Every record of the file, in record order (for compaction).
  Scan scan_all(BlockCache& cache) const;

  // Checks every data block (checksum, decoding, order), the tombstone count and the whole-file
  // checksum (FORMAT.md, "verify()"). Reads the whole file; uses no cache.
  Status verify() const noexcept;

  // The file's tables, by increasing table_no.
  const std::vector<Table>& tables() const noexcept;
  // The table with this number, or nullptr.
  const Table* table(uint32_t table_no) const noexcept;
  // Footer and index facts.
  const FileInfo& info() const noexcept;
  // The smallest and largest (table_no, key) of the file; false for an empty file.
  bool key_range(uint32_t& first_table, std::string_view& first_key, uint32_t& last_table,
                 std::string_view& last_key) const noexcept;
  // Path (or name) given to open.
  const std::string& path() const noexcept;
  // Process-unique identity of this open file (BlockCache keys); 0 when not open.
  uint64_t id() const noexcept;

  struct Impl;

 private:
  friend class Scan;
  std::unique_ptr<Impl> impl_;
};

// Forward iterator over records of one file (ReplicaFile::scan).
class Scan {
 public:
  Scan();
  ~Scan();
  Scan(Scan&&) noexcept;
  Scan& operator=(Scan&&) noexcept;

  // kOk: `out` is the next record; its views stay valid until the next call of this scan's next()
  // (the scan holds its current block, whatever other scans and lookups do with the cache). kEnd
  // past the range; a failure (kCorrupt, kOutOfMemory) ends the scan and is returned again by
  // every later call.
  Status next(Record& out) noexcept;

 private:
  friend class ReplicaFile;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace edgeshard::replica

// Constants and types of the change-stream frame format shared by the writer, the reader and the
// JSON rendering. The byte layout itself is specified in common/FORMAT.md; the offsets below must
// match its tables.
#pragma once

#include "common/no_postgres.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace edgeshard::frame {

// --- Header layout (FORMAT.md, "Frame layout") ----------------------------------------------

inline constexpr uint8_t kMagic[4] = {'E', 'S', 'F', 'R'};
// The version this writer writes, and the oldest a reader still accepts (FORMAT.md, "Versions").
inline constexpr uint8_t kVersion = 2;
inline constexpr uint8_t kMinReadVersion = 1;
inline constexpr uint8_t kChecksumXxh3 = 1;

// Offsets of the fixed header's fields.
inline constexpr size_t kOffMagic = 0;
inline constexpr size_t kOffVersion = 4;
inline constexpr size_t kOffChecksumType = 5;
inline constexpr size_t kOffFlags = 6;
inline constexpr size_t kOffTenantHash = 8;
inline constexpr size_t kOffFirstLsn = 16;
inline constexpr size_t kOffLastLsn = 24;
inline constexpr size_t kOffCommitLsn = 32;
inline constexpr size_t kOffCommitTime = 40;
inline constexpr size_t kOffXid = 48;
inline constexpr size_t kOffSequence = 52;
inline constexpr size_t kOffRawLength = 56;
inline constexpr size_t kOffStoredLength = 60;
inline constexpr size_t kOffPayloadChecksum = 64;
inline constexpr size_t kOffReserved = 72;
inline constexpr size_t kReservedBytes = 8;
inline constexpr size_t kFixedHeaderSize = 80;
// The tenant key's u16 length follows the fixed header, then the key, then the header checksum.
inline constexpr size_t kOffTenantKeyLength = kFixedHeaderSize;
inline constexpr size_t kOffTenantKey = kFixedHeaderSize + 2;
inline constexpr size_t kHeaderChecksumSize = 8;
// Smallest header (empty tenant key); a frame is header + stored payload.
inline constexpr size_t kMinHeaderSize = kOffTenantKey + kHeaderChecksumSize;

// Header size for a tenant key of key_length bytes.
constexpr size_t header_size(size_t key_length) noexcept { return kMinHeaderSize + key_length; }

// Flag bits (FORMAT.md, "Flags"); any other bit makes a reader refuse the frame.
inline constexpr uint16_t kFlagLz4 = 0x0001;
inline constexpr uint16_t kFlagManyTenants = 0x0002;
inline constexpr uint16_t kFlagLast = 0x0004;
inline constexpr uint16_t kKnownFlags = kFlagLz4 | kFlagManyTenants | kFlagLast;

// --- Limits ------------------------------------------------------------------------------------

inline constexpr uint32_t kMaxRawPayload = 64u << 20;
inline constexpr size_t kMaxTenantKey = 0xffff;

// --- Payload encoding (FORMAT.md, "Payload") -------------------------------------------------

// Message types: the first byte of every message.
enum class MessageType : uint8_t {
  kRelation = 'R',
  kBegin = 'B',
  kInsert = 'I',
  kUpdate = 'U',
  kDelete = 'D',
  kTruncate = 'T',
  kCommit = 'C',
  kKeepalive = 'K',
  kTenantMoved = 'M',
  kAttributes = 'A',  // version 2: follows its RELATION in the same payload
  kRewrite = 'W',     // version 2
};

// Kind byte of a tuple value.
enum class ValueKind : uint8_t {
  kNull = 'n',
  kUnchangedToast = 'u',
  kBinary = 'b',
  kText = 't',
};

// Tags inside UPDATE before each tuple.
inline constexpr uint8_t kUpdateOldKeyTag = 'K';
inline constexpr uint8_t kUpdateNewTag = 'N';

// RELATION column_flags bits.
inline constexpr uint8_t kColumnKey = 0x01;

// ATTRIBUTES attribute_flags bits.
inline constexpr uint8_t kAttributeMissing = 0x01;

// TRUNCATE options bits.
inline constexpr uint8_t kTruncateCascade = 0x01;
inline constexpr uint8_t kTruncateRestartIdentity = 0x02;

// One column of a RELATION message (what the writer takes and the reader returns).
// The writer also takes each column's identity and missing value (the ATTRIBUTES message); the
// reader returns those separately (Relation::attributes) and leaves them at their defaults here.
struct Column {
  std::string_view name;
  uint32_t type_oid = 0;
  int32_t typmod = -1;
  bool key = false;  // part of the replica identity
  uint32_t attnum = 0;          // PostgreSQL's attribute number; 0: unknown (version 1 streams)
  bool has_missing = false;     // rows stored without the column read as `missing`
  ValueKind missing_kind = ValueKind::kNull;  // kBinary or kText when has_missing
  std::string_view missing{};   // the missing value's data (send or text format)
};

// --- Header fields -----------------------------------------------------------------------------

// Header fields chosen by the writer's caller; seal() computes the rest.
struct Fields {
  std::string_view tenant_key;  // canonical key (RING.md); ignored when many_tenants
  bool many_tenants = false;
  bool last = false;  // last frame of this (transaction, tenant) frame group
  uint32_t xid = 0;
  uint32_t sequence = 0;  // frame number within the group, from 0
  uint64_t first_lsn = 0;
  uint64_t last_lsn = 0;
  uint64_t commit_lsn = 0;
  int64_t commit_time_us = 0;  // microseconds since the Unix epoch
};

// Every header field of a parsed frame.
struct Header : Fields {
  uint8_t version = kVersion;  // kMinReadVersion .. kVersion
  bool compressed = false;
  uint64_t tenant_hash = 0;
  uint32_t raw_length = 0;
  uint32_t stored_length = 0;
  uint64_t payload_checksum = 0;
  size_t header_length = 0;  // bytes before the payload
  size_t frame_length = 0;   // header_length + stored_length
};

// --- Errors ----------------------------------------------------------------------------------

// Why a frame was refused. Every value but kOk and kOutOfMemory means the bytes are corrupt (or
// were written by a newer or broken writer): PostgreSQL's SQLSTATE XX001.
enum class Error : uint8_t {
  kOk = 0,
  kTruncated,        // fewer bytes than the header or its lengths require
  kBadMagic,         // not a frame
  kBadVersion,       // a format version this reader does not know
  kBadChecksumType,  // a checksum type this reader does not know
  kHeaderChecksum,   // header checksum mismatch
  kUnknownFlags,     // a flag bit outside kKnownFlags
  kReservedNotZero,  // a reserved byte is not zero
  kBadTenant,        // tenant hash/key/MANY_TENANTS inconsistent
  kBadLength,        // raw/stored lengths impossible or above the limit
  kPayloadChecksum,  // payload checksum mismatch
  kDecompress,       // the LZ4 block does not decompress to exactly raw_length bytes
  kBadMessage,       // a malformed message in the payload
  kOutOfMemory,      // no memory for the decompressed payload
};

// Outcome of a reader call. `offset` is from the start of the frame, except for kBadMessage where
// it is from the start of the raw (decompressed) payload; for kTruncated it is where bytes ran out.
struct Status {
  Error error = Error::kOk;
  uint64_t offset = 0;
  const char* message = "";  // static, lower-case, no trailing period

  // Whether the call succeeded.
  bool ok() const noexcept { return error == Error::kOk; }
};

// Short stable name of an error ("header_checksum"), for logs and JSON.
const char* error_name(Error e) noexcept;

// The format's checksum: XXH3-64, seed 0.
uint64_t checksum(const void* data, size_t size) noexcept;

}  // namespace edgeshard::frame

// Frame reader: header checks, payload checks and decompression, message decoding (FORMAT.md).
#include "common/frame_reader.hpp"

#include "common/ring.hpp"

#include <lz4.h>

#include <algorithm>
#include <new>

namespace edgeshard::frame {

namespace {

// A refused frame or message.
Status refuse(Error error, uint64_t offset, const char* message) noexcept {
  return Status{error, offset, message};
}

// Checks and decodes the header; on kTruncated, `needed` is the byte count to wait for.
Status parse_header_impl(std::span<const uint8_t> bytes, Header& out, size_t& needed) noexcept {
  // Magic, version and checksum type are checked on whatever part of them is there, so a stream
  // that is not frames at all is refused at once instead of after waiting for a whole header.
  const uint8_t* p = bytes.data();
  const size_t n = bytes.size();
  if (!std::equal(p, p + std::min(n, sizeof kMagic), std::begin(kMagic))) {
    return refuse(Error::kBadMagic, kOffMagic, "not a frame: bad magic");
  }
  if (n > kOffVersion && (p[kOffVersion] < kMinReadVersion || p[kOffVersion] > kVersion)) {
    return refuse(Error::kBadVersion, kOffVersion, "unsupported frame format version");
  }
  if (n > kOffChecksumType && p[kOffChecksumType] != kChecksumXxh3) {
    return refuse(Error::kBadChecksumType, kOffChecksumType, "unsupported checksum type");
  }
  if (n < kOffTenantKey) {
    needed = kOffTenantKey;
    return refuse(Error::kTruncated, n, "frame header is truncated");
  }
  const size_t key_length = load_u16(p + kOffTenantKeyLength);
  const size_t header_length = header_size(key_length);
  if (n < header_length) {
    needed = header_length;
    return refuse(Error::kTruncated, n, "frame header is truncated");
  }
  const size_t checked = header_length - kHeaderChecksumSize;
  if (load_u64(p + checked) != checksum(p, checked)) {
    return refuse(Error::kHeaderChecksum, checked, "header checksum mismatch");
  }

  // The header is what its writer wrote: from here on, refusals are about writers, not bit flips.
  const uint16_t flags = load_u16(p + kOffFlags);
  if ((flags & ~kKnownFlags) != 0) {
    return refuse(Error::kUnknownFlags, kOffFlags, "unknown flag bits");
  }
  for (size_t i = 0; i < kReservedBytes; ++i) {
    if (p[kOffReserved + i] != 0) {
      return refuse(Error::kReservedNotZero, kOffReserved + i, "reserved byte is not zero");
    }
  }
  const std::string_view key(reinterpret_cast<const char*>(p + kOffTenantKey), key_length);
  const uint64_t tenant_hash = load_u64(p + kOffTenantHash);
  const bool many = (flags & kFlagManyTenants) != 0;
  if (many ? (key_length != 0 || tenant_hash != 0) : tenant_hash != hash_tenant_key(key)) {
    return refuse(Error::kBadTenant, kOffTenantHash,
                  many ? "many-tenants frame has a tenant key or hash"
                       : "tenant hash does not match the tenant key");
  }
  const uint32_t raw_length = load_u32(p + kOffRawLength);
  const uint32_t stored_length = load_u32(p + kOffStoredLength);
  const bool lz4 = (flags & kFlagLz4) != 0;
  if (raw_length > kMaxRawPayload) {
    return refuse(Error::kBadLength, kOffRawLength, "raw payload length above 64 MiB");
  }
  if (lz4 ? (stored_length == 0 || stored_length >= raw_length) : stored_length != raw_length) {
    return refuse(Error::kBadLength, kOffStoredLength,
                  lz4 ? "compressed length not below the raw length"
                      : "stored length differs from the raw length of an uncompressed payload");
  }

  out.tenant_key = key;
  out.many_tenants = many;
  out.last = (flags & kFlagLast) != 0;
  out.xid = load_u32(p + kOffXid);
  out.sequence = load_u32(p + kOffSequence);
  out.first_lsn = load_u64(p + kOffFirstLsn);
  out.last_lsn = load_u64(p + kOffLastLsn);
  out.commit_lsn = load_u64(p + kOffCommitLsn);
  out.commit_time_us = static_cast<int64_t>(load_u64(p + kOffCommitTime));
  out.version = p[kOffVersion];
  out.compressed = lz4;
  out.tenant_hash = tenant_hash;
  out.raw_length = raw_length;
  out.stored_length = stored_length;
  out.payload_checksum = load_u64(p + kOffPayloadChecksum);
  out.header_length = header_length;
  out.frame_length = header_length + stored_length;
  return Status{};
}

// Reads a varint that must fit in 32 bits and not exceed the bytes left (each item of a counted
// list takes at least one byte, so a larger count cannot be right).
bool read_count(ByteReader& r, uint32_t& out) noexcept {
  const size_t start = r.offset();
  uint64_t v;
  if (!r.varint(v)) return false;
  if (v > r.remaining()) return r.fail("count larger than the bytes left", start);
  if (v > UINT32_MAX) return r.fail("count above 2^32 - 1", start);
  out = static_cast<uint32_t>(v);
  return true;
}

// Reads a counted list of items of type T, validating each, into a lazily decoded list.
template <typename T>
bool read_list(ByteReader& r, EncodedList<T>& out) noexcept {
  uint32_t count;
  if (!read_count(r, count)) return false;
  const size_t start = r.offset();
  for (uint32_t i = 0; i < count; ++i) {
    T item;
    if (!detail::read_item(r, item)) return false;
  }
  out = EncodedList<T>(r.read_since(start), count);
  return true;
}

// Reads the fields of a RELATION after its type byte.
bool read_relation(ByteReader& r, Relation& m) noexcept {
  if (!r.u32(m.relid) || !r.str(m.schema) || !r.str(m.name)) return false;
  const size_t at = r.offset();
  uint64_t tenant_column;
  if (!r.varint(tenant_column) || !read_list(r, m.columns)) return false;
  if (tenant_column > m.columns.size()) {
    return r.fail("tenant column beyond the column count", at);
  }
  m.tenant_column = static_cast<int32_t>(tenant_column) - 1;
  // Version 2: the columns' identities and missing values follow as ATTRIBUTES of this relid.
  if (r.remaining() == 0 || r.peek() != static_cast<uint8_t>(MessageType::kAttributes)) return true;
  const size_t attributes_at = r.offset();
  uint8_t type;
  uint32_t relid;
  if (!r.u8(type) || !r.u32(relid)) return false;
  if (relid != m.relid) return r.fail("ATTRIBUTES of another relid after a RELATION", attributes_at);
  if (!read_list(r, m.attributes)) return false;
  if (m.attributes.size() != m.columns.size()) {
    return r.fail("ATTRIBUTES count differs from the RELATION's columns", attributes_at);
  }
  m.has_attributes = true;
  return true;
}

// Reads the fields of an UPDATE after its type byte.
bool read_update(ByteReader& r, Update& m) noexcept {
  if (!r.u32(m.relid)) return false;
  size_t at = r.offset();
  uint8_t tag;
  if (!r.u8(tag)) return false;
  m.has_old_key = tag == kUpdateOldKeyTag;
  if (m.has_old_key) {
    if (!read_list(r, m.old_key)) return false;
    at = r.offset();
    if (!r.u8(tag)) return false;
  }
  if (tag != kUpdateNewTag) return r.fail("bad tuple tag in UPDATE", at);
  return read_list(r, m.new_tuple);
}

// Reads the fields of a TRUNCATE after its type byte.
bool read_truncate(ByteReader& r, Truncate& m) noexcept {
  const size_t at = r.offset();
  uint8_t options;
  if (!r.u8(options)) return false;
  if ((options & ~(kTruncateCascade | kTruncateRestartIdentity)) != 0) {
    return r.fail("unknown TRUNCATE option bits", at);
  }
  m.cascade = (options & kTruncateCascade) != 0;
  m.restart_identity = (options & kTruncateRestartIdentity) != 0;
  return read_list(r, m.relids);
}

// Decodes one whole message starting at the reader's position.
bool read_message(ByteReader& r, Message& out) noexcept {
  const size_t at = r.offset();
  uint8_t type;
  if (!r.u8(type)) return false;
  switch (static_cast<MessageType>(type)) {
    case MessageType::kRelation: {
      Relation& m = out.emplace<Relation>();
      return read_relation(r, m);
    }
    case MessageType::kBegin: {
      Begin& m = out.emplace<Begin>();
      return r.u32(m.xid) && r.u64(m.commit_lsn) && r.i64(m.commit_time_us);
    }
    case MessageType::kInsert: {
      Insert& m = out.emplace<Insert>();
      return r.u32(m.relid) && read_list(r, m.new_tuple);
    }
    case MessageType::kUpdate: {
      Update& m = out.emplace<Update>();
      return read_update(r, m);
    }
    case MessageType::kDelete: {
      Delete& m = out.emplace<Delete>();
      return r.u32(m.relid) && read_list(r, m.old_key);
    }
    case MessageType::kTruncate: {
      Truncate& m = out.emplace<Truncate>();
      return read_truncate(r, m);
    }
    case MessageType::kCommit: {
      Commit& m = out.emplace<Commit>();
      return r.u64(m.commit_lsn) && r.u64(m.end_lsn) && r.i64(m.commit_time_us);
    }
    case MessageType::kKeepalive: {
      Keepalive& m = out.emplace<Keepalive>();
      return r.u64(m.lsn) && r.i64(m.time_us);
    }
    case MessageType::kAttributes:
      return r.fail("ATTRIBUTES without the RELATION it belongs to", at);
    case MessageType::kRewrite: {
      Rewrite& m = out.emplace<Rewrite>();
      return r.u32(m.relid);
    }
    case MessageType::kTenantMoved: {
      TenantMoved& m = out.emplace<TenantMoved>();
      return r.str(m.tenant_key) && r.str(m.from_shard) && r.str(m.to_shard) &&
             r.i64(m.map_epoch);
    }
  }
  return r.fail("unknown message type", at);
}

}  // namespace

namespace detail {

bool read_item(ByteReader& r, Value& out) noexcept {
  const size_t at = r.offset();
  uint8_t kind;
  if (!r.u8(kind)) return false;
  out.kind = static_cast<ValueKind>(kind);
  switch (out.kind) {
    case ValueKind::kNull:
    case ValueKind::kUnchangedToast:
      out.data = {};
      return true;
    case ValueKind::kBinary:
    case ValueKind::kText:
      return r.str(out.data);
  }
  return r.fail("unknown value kind", at);
}

bool read_item(ByteReader& r, Column& out) noexcept {
  uint8_t flags;
  if (!r.str(out.name) || !r.u32(out.type_oid) || !r.i32(out.typmod)) return false;
  const size_t at = r.offset();
  if (!r.u8(flags)) return false;
  if ((flags & ~kColumnKey) != 0) return r.fail("unknown column flag bits", at);
  out.key = (flags & kColumnKey) != 0;
  return true;
}

bool read_item(ByteReader& r, Attribute& out) noexcept {
  const size_t at = r.offset();
  uint64_t attnum;
  uint8_t flags;
  if (!r.varint(attnum)) return false;
  if (attnum == 0 || attnum > 1664) return r.fail("attribute number out of range", at);
  out.attnum = static_cast<uint32_t>(attnum);
  const size_t flags_at = r.offset();
  if (!r.u8(flags)) return false;
  if ((flags & ~kAttributeMissing) != 0) return r.fail("unknown attribute flag bits", flags_at);
  out.has_missing = (flags & kAttributeMissing) != 0;
  out.missing = Value{};
  if (!out.has_missing) return true;
  const size_t value_at = r.offset();
  if (!read_item(r, out.missing)) return false;
  if (out.missing.kind != ValueKind::kBinary && out.missing.kind != ValueKind::kText) {
    return r.fail("a missing value is binary or text", value_at);
  }
  return true;
}

bool read_item(ByteReader& r, uint32_t& out) noexcept { return r.u32(out); }

}  // namespace detail

std::vector<Column> Relation::merged_columns() const {
  std::vector<Column> out(columns.begin(), columns.end());
  if (!has_attributes) return out;
  size_t i = 0;
  for (const Attribute& a : attributes) {
    Column& c = out[i++];
    c.attnum = a.attnum;
    c.has_missing = a.has_missing;
    c.missing_kind = a.missing.kind;
    c.missing = a.missing.data;
  }
  return out;
}

bool MessageCursor::next(Message& out) noexcept {
  if (!status_.ok() || reader_.at_end()) return false;
  if (read_message(reader_, out)) return true;
  status_ = refuse(Error::kBadMessage, reader_.error_offset(), reader_.error());
  return false;
}

Status parse_header(std::span<const uint8_t> bytes, Header& out) noexcept {
  size_t needed = 0;
  return parse_header_impl(bytes, out, needed);
}

Status frame_length(std::span<const uint8_t> bytes, size_t& length) noexcept {
  Header header;
  size_t needed = 0;
  const Status st = parse_header_impl(bytes, header, needed);
  length = st.ok() ? header.frame_length : needed;
  return st;
}

Status Reader::open(std::span<const uint8_t> bytes) noexcept {
  header_ = Header{};
  payload_ = {};
  Header h;
  if (Status st = parse_header(bytes, h); !st.ok()) return st;
  if (bytes.size() < h.frame_length) {
    return refuse(Error::kTruncated, bytes.size(), "frame payload is truncated");
  }
  const uint8_t* stored = bytes.data() + h.header_length;
  if (checksum(stored, h.stored_length) != h.payload_checksum) {
    return refuse(Error::kPayloadChecksum, h.header_length, "payload checksum mismatch");
  }
  if (!h.compressed) {
    payload_ = std::string_view(reinterpret_cast<const char*>(stored), h.raw_length);
  } else {
    if (buffer_capacity_ < h.raw_length) {
      try {
        buffer_ = std::make_unique_for_overwrite<char[]>(h.raw_length);
      } catch (const std::bad_alloc&) {
        return refuse(Error::kOutOfMemory, h.header_length, "out of memory for the payload");
      }
      buffer_capacity_ = h.raw_length;
    }
    const int n =
        LZ4_decompress_safe(reinterpret_cast<const char*>(stored), buffer_.get(),
                            static_cast<int>(h.stored_length), static_cast<int>(h.raw_length));
    if (n != static_cast<int>(h.raw_length)) {
      return refuse(Error::kDecompress, h.header_length,
                    "compressed payload does not decompress to its raw length");
    }
    payload_ = std::string_view(buffer_.get(), h.raw_length);
  }
  header_ = h;
  return Status{};
}

}  // namespace edgeshard::frame

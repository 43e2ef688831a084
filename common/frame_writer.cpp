// Streaming frame writer: message encoding and sealing (FORMAT.md, "Payload" and "Frame layout").
#include "common/frame_writer.hpp"

#include "common/frame_codec.hpp"
#include "common/ring.hpp"

#include <lz4.h>

#include <algorithm>
#include <stdexcept>

namespace edgeshard::frame {

void Writer::begin(uint32_t xid, uint64_t commit_lsn, int64_t commit_time_us) {
  require_idle();
  put_u8(static_cast<uint8_t>(MessageType::kBegin));
  put_u32(xid);
  put_u64(commit_lsn);
  put_u64(static_cast<uint64_t>(commit_time_us));
}

void Writer::relation(uint32_t relid, std::string_view schema, std::string_view name,
                      std::span<const Column> columns, int32_t tenant_column) {
  require_idle();
  if (tenant_column < -1 ||
      (tenant_column >= 0 && static_cast<size_t>(tenant_column) >= columns.size())) {
    throw std::length_error("frame writer: tenant column outside the column list");
  }
  put_u8(static_cast<uint8_t>(MessageType::kRelation));
  put_u32(relid);
  put_str(schema);
  put_str(name);
  put_varint(static_cast<uint64_t>(tenant_column + 1));  // 1-based, 0 = none
  put_varint(columns.size());
  for (const Column& c : columns) {
    put_str(c.name);
    put_u32(c.type_oid);
    put_u32(static_cast<uint32_t>(c.typmod));
    put_u8(c.key ? kColumnKey : 0);
  }
  // Version 2: identities and missing values, when the caller knows them (the plugin always does).
  if (columns.empty() || columns.front().attnum == 0) return;
  put_u8(static_cast<uint8_t>(MessageType::kAttributes));
  put_u32(relid);
  put_varint(columns.size());
  for (const Column& c : columns) {
    if (c.attnum == 0) throw std::length_error("frame writer: a column without its attribute number");
    put_varint(c.attnum);
    put_u8(c.has_missing ? kAttributeMissing : 0);
    if (!c.has_missing) continue;
    if (c.missing_kind != ValueKind::kBinary && c.missing_kind != ValueKind::kText) {
      throw std::length_error("frame writer: a missing value is binary or text");
    }
    put_u8(static_cast<uint8_t>(c.missing_kind));
    put_str(c.missing);
  }
}

void Writer::rewrite(uint32_t relid) {
  require_idle();
  put_u8(static_cast<uint8_t>(MessageType::kRewrite));
  put_u32(relid);
}

void Writer::insert_begin(uint32_t relid, uint32_t ncols) {
  require_idle();
  put_u8(static_cast<uint8_t>(MessageType::kInsert));
  put_u32(relid);
  start_tuple(ncols);
}

void Writer::update_begin(uint32_t relid) {
  require_idle();
  put_u8(static_cast<uint8_t>(MessageType::kUpdate));
  put_u32(relid);
  update_step_ = UpdateStep::kOldKeyOrNew;
}

void Writer::update_old_key(uint32_t ncols) {
  if (update_step_ != UpdateStep::kOldKeyOrNew) {
    throw std::length_error("frame writer: update_old_key() outside an UPDATE or after its key");
  }
  put_u8(kUpdateOldKeyTag);
  start_tuple(ncols);
  update_step_ = UpdateStep::kNew;
}

void Writer::update_new_tuple(uint32_t ncols) {
  if (update_step_ == UpdateStep::kNone || values_left_ != 0) {
    throw std::length_error("frame writer: update_new_tuple() outside an UPDATE or mid-tuple");
  }
  put_u8(kUpdateNewTag);
  start_tuple(ncols);
  update_step_ = UpdateStep::kNone;
}

void Writer::delete_begin(uint32_t relid, uint32_t ncols) {
  require_idle();
  put_u8(static_cast<uint8_t>(MessageType::kDelete));
  put_u32(relid);
  start_tuple(ncols);
}

void Writer::value_null() {
  take_value();
  put_u8(static_cast<uint8_t>(ValueKind::kNull));
}

void Writer::value_unchanged_toast() {
  take_value();
  put_u8(static_cast<uint8_t>(ValueKind::kUnchangedToast));
}

void Writer::value_binary(const void* data, size_t len) {
  take_value();
  put_u8(static_cast<uint8_t>(ValueKind::kBinary));
  put_varint(len);
  put(data, len);
}

void Writer::value_text(const char* data, size_t len) {
  take_value();
  put_u8(static_cast<uint8_t>(ValueKind::kText));
  put_varint(len);
  put(data, len);
}

void Writer::truncate(std::span<const uint32_t> relids, bool cascade, bool restart_identity) {
  require_idle();
  put_u8(static_cast<uint8_t>(MessageType::kTruncate));
  put_u8((cascade ? kTruncateCascade : 0) | (restart_identity ? kTruncateRestartIdentity : 0));
  put_varint(relids.size());
  for (uint32_t relid : relids) put_u32(relid);
}

void Writer::commit(uint64_t commit_lsn, uint64_t end_lsn, int64_t commit_time_us) {
  require_idle();
  put_u8(static_cast<uint8_t>(MessageType::kCommit));
  put_u64(commit_lsn);
  put_u64(end_lsn);
  put_u64(static_cast<uint64_t>(commit_time_us));
}

void Writer::keepalive(uint64_t lsn, int64_t time_us) {
  require_idle();
  put_u8(static_cast<uint8_t>(MessageType::kKeepalive));
  put_u64(lsn);
  put_u64(static_cast<uint64_t>(time_us));
}

void Writer::tenant_moved(std::string_view tenant_key, std::string_view from_shard,
                          std::string_view to_shard, int64_t map_epoch) {
  require_idle();
  put_u8(static_cast<uint8_t>(MessageType::kTenantMoved));
  put_str(tenant_key);
  put_str(from_shard);
  put_str(to_shard);
  put_u64(static_cast<uint64_t>(map_epoch));
}

std::span<const uint8_t> Writer::seal(const Fields& fields) {
  require_idle();
  const std::string_view key = fields.many_tenants ? std::string_view() : fields.tenant_key;
  if (key.size() > kMaxTenantKey) {
    throw std::length_error("frame writer: tenant key longer than 65535 bytes");
  }
  const size_t raw = payload_.size();
  const size_t header = header_size(key.size());
  if (frame_.size() < header + raw) frame_.resize(header + raw);
  uint8_t* out = frame_.data();
  uint8_t* stored = out + header;

  // Keep LZ4's output only if it saves more than an eighth: LZ4 gives up (returns 0) when the
  // output would not fit in `limit` bytes, so an incompressible payload costs one attempt.
  uint16_t flags = 0;
  size_t stored_length = raw;
  const size_t limit = raw - raw / 8;  // > 0 when raw > 0; the output must be below it
  if (compression_ == Compression::kLz4 && limit > 1) {
    const int n = LZ4_compress_default(reinterpret_cast<const char*>(payload_.data()),
                                       reinterpret_cast<char*>(stored), static_cast<int>(raw),
                                       static_cast<int>(limit - 1));
    if (n > 0) {
      flags |= kFlagLz4;
      stored_length = static_cast<size_t>(n);
    }
  }
  if ((flags & kFlagLz4) == 0) std::copy(payload_.begin(), payload_.end(), stored);
  if (fields.many_tenants) flags |= kFlagManyTenants;
  if (fields.last) flags |= kFlagLast;

  std::copy(std::begin(kMagic), std::end(kMagic), out + kOffMagic);
  out[kOffVersion] = kVersion;
  out[kOffChecksumType] = kChecksumXxh3;
  store_u16(out + kOffFlags, flags);
  store_u64(out + kOffTenantHash, fields.many_tenants ? 0 : hash_tenant_key(key));
  store_u64(out + kOffFirstLsn, fields.first_lsn);
  store_u64(out + kOffLastLsn, fields.last_lsn);
  store_u64(out + kOffCommitLsn, fields.commit_lsn);
  store_u64(out + kOffCommitTime, static_cast<uint64_t>(fields.commit_time_us));
  store_u32(out + kOffXid, fields.xid);
  store_u32(out + kOffSequence, fields.sequence);
  store_u32(out + kOffRawLength, static_cast<uint32_t>(raw));
  store_u32(out + kOffStoredLength, static_cast<uint32_t>(stored_length));
  store_u64(out + kOffPayloadChecksum, checksum(stored, stored_length));
  std::fill_n(out + kOffReserved, kReservedBytes, uint8_t{0});
  store_u16(out + kOffTenantKeyLength, static_cast<uint16_t>(key.size()));
  std::copy(key.begin(), key.end(), out + kOffTenantKey);
  const size_t checked = header - kHeaderChecksumSize;
  store_u64(out + checked, checksum(out, checked));

  payload_.clear();
  return {out, header + stored_length};
}

void Writer::reset() noexcept {
  payload_.clear();
  values_left_ = 0;
  update_step_ = UpdateStep::kNone;
}

void Writer::require_idle() const {
  if (values_left_ != 0 || update_step_ != UpdateStep::kNone) {
    throw std::length_error("frame writer: previous message has values or a tuple missing");
  }
}

void Writer::take_value() {
  if (values_left_ == 0) {
    throw std::length_error("frame writer: more values than the tuple's column count");
  }
  --values_left_;
}

void Writer::put(const void* data, size_t n) {
  if (n > kMaxRawPayload - payload_.size()) {
    throw std::length_error("frame writer: payload would exceed 64 MiB");
  }
  const auto* p = static_cast<const uint8_t*>(data);
  payload_.insert(payload_.end(), p, p + n);
}

void Writer::put_u8(uint8_t v) { put(&v, 1); }

void Writer::put_u32(uint32_t v) {
  uint8_t b[4];
  store_u32(b, v);
  put(b, sizeof b);
}

void Writer::put_u64(uint64_t v) {
  uint8_t b[8];
  store_u64(b, v);
  put(b, sizeof b);
}

void Writer::put_varint(uint64_t v) {
  uint8_t b[kMaxVarintBytes];
  put(b, store_varint(b, v));
}

void Writer::put_str(std::string_view s) {
  put_varint(s.size());
  put(s.data(), s.size());
}

void Writer::start_tuple(uint32_t ncols) {
  put_varint(ncols);
  values_left_ = ncols;
}

void Writer::release_memory() noexcept {
  std::vector<uint8_t>().swap(payload_);
  std::vector<uint8_t>().swap(frame_);
}

}  // namespace edgeshard::frame

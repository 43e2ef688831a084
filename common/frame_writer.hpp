// Streaming writer of change-stream frames (byte layout: common/FORMAT.md).
//
// A Writer accumulates the messages of one frame group -- one (transaction, tenant) -- into a
// growing payload and seal() turns them into a complete frame. Used by the output plugin inside
// PostgreSQL, and by tests and tools.
//
// Typical use in the output plugin (one Writer per tenant with pending changes; Writers are
// reusable and keep their buffers, so steady-state writing does no heap allocation):
//
//   frame::Writer w(frame::Compression::kLz4);
//   w.begin(xid, commit_lsn, commit_time_us);
//   w.insert_begin(relid, 3);                     // then exactly 3 values:
//   w.value_binary(data, len);                    //   the type's send() output
//   w.value_null();
//   w.value_text(str, strlen(str));               //   types without a send function
//   if (w.size() >= frame_bytes) {                // between messages: cut a continuation frame
//     fields.sequence = seq++;
//     send(w.seal(fields));                       // bytes valid until the next call on w
//   }
//   ...
//   w.commit(commit_lsn, end_lsn, commit_time_us);
//   fields.sequence = seq++;
//   fields.last = true;
//   send(w.seal(fields));
//
// Tuples are streamed: insert_begin/delete_begin/update_old_key/update_new_tuple declare a column
// count and the next that many value_*() calls fill it; the message is complete after its last
// value. Every other message method, seal() and size()-based cutting belong between messages.
//
// Exceptions: no method throws anything but std::bad_alloc (memory) and std::length_error (a
// limit of FORMAT.md would be exceeded -- payload above kMaxRawPayload, tenant key above
// kMaxTenantKey, a tenant column outside the column list -- or the calls do not match the declared
// counts, which is a bug in the caller). Methods marked noexcept never throw. After an exception
// the current payload is incomplete: call reset() before using the Writer again. Callers that must
// not let exceptions escape into C (PostgreSQL callbacks) wrap the calls in try/catch.
#pragma once

#include "common/no_postgres.hpp"

#include "common/frame_format.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace edgeshard::frame {

// Whether seal() may store payloads LZ4-compressed (it does only when that saves enough).
enum class Compression : uint8_t { kNone, kLz4 };

class Writer {
 public:
  // An empty writer; buffers grow on first use and are kept for the writer's lifetime.
  explicit Writer(Compression compression = Compression::kLz4) noexcept
      : compression_(compression) {}

  // BEGIN: the transaction this frame group belongs to.
  void begin(uint32_t xid, uint64_t commit_lsn, int64_t commit_time_us);

  // RELATION: a table's columns; tenant_column is an index into columns, or -1 for none. When the
  // columns carry their attribute numbers (attnum != 0), an ATTRIBUTES message follows with the
  // numbers and missing values.
  void relation(uint32_t relid, std::string_view schema, std::string_view name,
                std::span<const Column> columns, int32_t tenant_column);

  // REWRITE: this transaction rewrote the table's rows in a way no change message carries.
  void rewrite(uint32_t relid);

  // INSERT of a row into relid; the next ncols value_*() calls are the new row.
  void insert_begin(uint32_t relid, uint32_t ncols);

  // UPDATE of a row of relid; continue with update_old_key() (only when the key changed) and then
  // update_new_tuple().
  void update_begin(uint32_t relid);

  // The UPDATE's old key; the next ncols value_*() calls are its columns.
  void update_old_key(uint32_t ncols);

  // The UPDATE's new row; the next ncols value_*() calls are its columns.
  void update_new_tuple(uint32_t ncols);

  // DELETE of a row of relid; the next ncols value_*() calls are its old key.
  void delete_begin(uint32_t relid, uint32_t ncols);

  // Next value of the current tuple: SQL NULL.
  void value_null();

  // Next value of the current tuple: an unchanged TOASTed datum that is not sent.
  void value_unchanged_toast();

  // Next value of the current tuple: len bytes of the type's binary send format.
  void value_binary(const void* data, size_t len);

  // Next value of the current tuple: len bytes of the type's text output.
  void value_text(const char* data, size_t len);

  // TRUNCATE of relids (several when CASCADE or a multi-table TRUNCATE).
  void truncate(std::span<const uint32_t> relids, bool cascade, bool restart_identity);

  // COMMIT: end of the transaction.
  void commit(uint64_t commit_lsn, uint64_t end_lsn, int64_t commit_time_us);

  // KEEPALIVE: the stream has reached lsn at time_us even if nothing changed.
  void keepalive(uint64_t lsn, int64_t time_us);

  // TENANT_MOVED: tenant_key now lives on to_shard as of map_epoch.
  void tenant_moved(std::string_view tenant_key, std::string_view from_shard,
                    std::string_view to_shard, int64_t map_epoch);

  // Bytes of raw payload accumulated since the last seal() or reset().
  size_t size() const noexcept { return payload_.size(); }

  // Builds the frame (header + tenant key + payload, LZ4-compressed when that saves more than an
  // eighth) and empties the payload for the next frame. The bytes stay valid until the next call
  // of any non-const method.
  std::span<const uint8_t> seal(const Fields& fields);

  // Drops the payload accumulated so far (after an exception, or an aborted transaction).
  void reset() noexcept;

  // Bytes of memory the writer holds (payload and frame buffers), for callers that bound memory.
  size_t capacity() const noexcept { return payload_.capacity() + frame_.capacity(); }

  // Returns the buffers' memory; only between frames (payload empty). The next frame grows them
  // again.
  void release_memory() noexcept;

 private:
  // Which UPDATE tuple may come next.
  enum class UpdateStep : uint8_t { kNone, kOldKeyOrNew, kNew };

  // Throws std::length_error unless the previous message is complete.
  void require_idle() const;
  // Claims the next value of the current tuple (throws std::length_error if there is none).
  void take_value();
  // Appends bytes to the payload, refusing to grow it beyond kMaxRawPayload.
  void put(const void* data, size_t n);
  // Appends one byte.
  void put_u8(uint8_t v);
  // Appends a little-endian u32.
  void put_u32(uint32_t v);
  // Appends a little-endian u64.
  void put_u64(uint64_t v);
  // Appends a varint.
  void put_varint(uint64_t v);
  // Appends a varint length and the bytes.
  void put_str(std::string_view s);
  // Appends a tuple's column count and expects that many values.
  void start_tuple(uint32_t ncols);

  Compression compression_;
  uint32_t values_left_ = 0;
  UpdateStep update_step_ = UpdateStep::kNone;
  std::vector<uint8_t> payload_;
  std::vector<uint8_t> frame_;  // grows to the largest frame sealed, never shrinks
};

}  // namespace edgeshard::frame

// Reader of change-stream frames (byte layout: common/FORMAT.md), used by the relay, the apply
// daemon, edgeshard-dump and edgeshard.frames_to_json().
//
// Nothing here throws or allocates except Reader::open(), which allocates the decompression buffer
// (reused by later frames) and reports a failure as Error::kOutOfMemory. Every check of FORMAT.md
// ("What a reader checks") is made, with a precise Status, and no byte outside the given span is
// ever read. Decoded values are views into the frame's bytes (uncompressed payload) or the Reader's
// buffer (compressed payload): they stay valid until the next open() and while the bytes live.
//
//   frame::Reader reader;
//   size_t pos = 0;
//   while (pos < bytes.size()) {
//     if (frame::Status st = reader.open(bytes.subspan(pos)); !st.ok()) return st;
//     frame::MessageCursor cursor = reader.messages();
//     frame::Message m;
//     while (cursor.next(m)) {
//       if (auto* ins = std::get_if<frame::Insert>(&m)) {
//         for (const frame::Value& v : ins->new_tuple) use(v.kind, v.data);
//       }
//     }
//     if (!cursor.status().ok()) return cursor.status();
//     pos += reader.header().frame_length;
//   }
#pragma once

#include "common/no_postgres.hpp"

#include "common/frame_codec.hpp"
#include "common/frame_format.hpp"

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

namespace edgeshard::frame {

// One value of a tuple; data is empty for kNull and kUnchangedToast.
struct Value {
  ValueKind kind = ValueKind::kNull;
  std::string_view data;
};

// One column's identity and missing value (ATTRIBUTES, FORMAT.md version 2).
struct Attribute {
  uint32_t attnum = 0;       // PostgreSQL's attribute number (≥ 1)
  bool has_missing = false;  // rows written before the column existed read as `missing`
  Value missing;             // kBinary or kText when has_missing
};

namespace detail {
// Decoders of one list item, shared by the validating pass and by EncodedList's iterator.
[[nodiscard]] bool read_item(ByteReader& r, Value& out) noexcept;
[[nodiscard]] bool read_item(ByteReader& r, Column& out) noexcept;
[[nodiscard]] bool read_item(ByteReader& r, Attribute& out) noexcept;
[[nodiscard]] bool read_item(ByteReader& r, uint32_t& out) noexcept;
}  // namespace detail

// A list of `size()` items of type T, still encoded, already validated by MessageCursor::next();
// iterating decodes one item at a time without allocating.
template <typename T>
class EncodedList {
 public:
  // Forward iterator producing decoded items.
  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = const T*;
    using reference = const T&;

    // The end position.
    iterator() = default;
    // Positions the iterator on the first of `count` items encoded in `bytes`.
    iterator(std::string_view bytes, uint32_t count) noexcept
        : reader_(bytes), left_(count), done_(false) {
      advance();
    }
    // The current item.
    const T& operator*() const noexcept { return item_; }
    // The current item's members.
    const T* operator->() const noexcept { return &item_; }
    // Moves to the next item.
    iterator& operator++() noexcept {
      advance();
      return *this;
    }
    // Moves to the next item, returning the iterator as it was.
    iterator operator++(int) noexcept {
      iterator old = *this;
      advance();
      return old;
    }
    // Same position (iterators of the same list).
    bool operator==(const iterator& o) const noexcept {
      return done_ == o.done_ && left_ == o.left_;
    }

   private:
    // Decodes the next item, or marks the end.
    void advance() noexcept {
      if (left_ == 0) {
        done_ = true;
        return;
      }
      --left_;
      (void)detail::read_item(reader_, item_);  // validated when the message was decoded
    }

    ByteReader reader_;
    uint32_t left_ = 0;
    bool done_ = true;
    T item_{};
  };

  EncodedList() = default;
  // A list of `count` items encoded in `bytes` (validated by the caller).
  EncodedList(std::string_view bytes, uint32_t count) noexcept : bytes_(bytes), count_(count) {}

  // Number of items.
  uint32_t size() const noexcept { return count_; }
  // Whether the list has no items.
  bool empty() const noexcept { return count_ == 0; }
  // First item.
  iterator begin() const noexcept { return iterator(bytes_, count_); }
  // Past the last item.
  iterator end() const noexcept { return iterator(); }

 private:
  std::string_view bytes_;
  uint32_t count_ = 0;
};

using Tuple = EncodedList<Value>;
using ColumnList = EncodedList<Column>;
using AttributeList = EncodedList<Attribute>;
using RelidList = EncodedList<uint32_t>;

// Decoded messages (FORMAT.md, "Payload"); field names follow the spec.
struct Relation {
  uint32_t relid = 0;
  std::string_view schema;
  std::string_view name;
  int32_t tenant_column = -1;  // index into columns, -1 when there is none
  ColumnList columns;
  // The ATTRIBUTES message that followed it (one per column, in column order), when there was one.
  bool has_attributes = false;
  AttributeList attributes;

  // Column i with its identity and missing value filled in from the attributes; i < size().
  std::vector<Column> merged_columns() const;
};
struct Begin {
  uint32_t xid = 0;
  uint64_t commit_lsn = 0;
  int64_t commit_time_us = 0;
};
struct Insert {
  uint32_t relid = 0;
  Tuple new_tuple;
};
struct Update {
  uint32_t relid = 0;
  bool has_old_key = false;
  Tuple old_key;  // empty unless has_old_key
  Tuple new_tuple;
};
struct Delete {
  uint32_t relid = 0;
  Tuple old_key;
};
struct Truncate {
  bool cascade = false;
  bool restart_identity = false;
  RelidList relids;
};
struct Commit {
  uint64_t commit_lsn = 0;
  uint64_t end_lsn = 0;
  int64_t commit_time_us = 0;
};
struct Keepalive {
  uint64_t lsn = 0;
  int64_t time_us = 0;
};
struct Rewrite {
  uint32_t relid = 0;
};
struct TenantMoved {
  std::string_view tenant_key;
  std::string_view from_shard;
  std::string_view to_shard;
  int64_t map_epoch = 0;
};

using Message =
    std::variant<Relation, Begin, Insert, Update, Delete, Truncate, Commit, Keepalive, TenantMoved,
                 Rewrite>;

// Decodes the messages of a raw (decompressed) payload one by one, validating each completely
// (including every tuple value) before returning it.
class MessageCursor {
 public:
  // Reads `payload`, which must outlive the cursor and the messages it returns.
  explicit MessageCursor(std::string_view payload) noexcept : reader_(payload) {}

  // Decodes the next message into out; false at the end of the payload or on a malformed message
  // (then status() says what and where, and every later call returns false).
  bool next(Message& out) noexcept;

  // kOk, or the kBadMessage that stopped the cursor.
  const Status& status() const noexcept { return status_; }

  // Payload offset of the next message.
  size_t offset() const noexcept { return reader_.offset(); }

 private:
  ByteReader reader_;
  Status status_;
};

// Checks the header of the frame at the start of `bytes` (FORMAT.md checks 1-6; the payload need
// not be there yet) and decodes it into out. kTruncated when `bytes` ends inside the header.
Status parse_header(std::span<const uint8_t> bytes, Header& out) noexcept;

// Frame boundaries in a stream: on kOk, `length` is the total length of the frame at the start of
// `bytes`, known from its (checked) header, even if its payload is not all there yet. On
// kTruncated, `bytes` ends inside the header and `length` is how many bytes to have before calling
// again. Any other status: the stream is corrupt at that frame.
Status frame_length(std::span<const uint8_t> bytes, size_t& length) noexcept;

// Opens frames one at a time and keeps the decompression buffer between them.
class Reader {
 public:
  // Checks the frame at the start of `bytes` completely except for its messages (header, lengths,
  // payload checksum, decompression); bytes after the frame are ignored.
  Status open(std::span<const uint8_t> bytes) noexcept;

  // Header of the frame last opened successfully.
  const Header& header() const noexcept { return header_; }

  // Raw payload of the frame last opened successfully.
  std::string_view payload() const noexcept { return payload_; }

  // A cursor over the messages of the frame last opened successfully.
  MessageCursor messages() const noexcept { return MessageCursor(payload_); }

 private:
  Header header_;
  std::string_view payload_;
  std::unique_ptr<char[]> buffer_;  // decompressed payloads; grows, never shrinks
  size_t buffer_capacity_ = 0;
};

}  // namespace edgeshard::frame

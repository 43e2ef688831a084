// Order-preserving encoding of primary keys for edge replica files: a row's key columns (in the
// RELATION's column order) become bytes whose memcmp order (a prefix first) is the SQL order of
// the key tuples for the built-in types, so point lookups and range scans work on the bytes.
// The encoding of every type, and why, is specified in edge_apply/KEYS.md; in short:
//
//   bool                  1 byte, 0x00 / 0x01
//   int2/int4/int8, date, big-endian with the sign bit flipped (2, 4, 8, 4, 8, 8, 8 bytes)
//   time, timestamp(tz)
//   oid                   big-endian unsigned (4 bytes)
//   float4/float8         IEEE bits made order-preserving; -0 is 0; every NaN one value, last
//   uuid                  its 16 bytes
//   numeric               sign/exponent/base-10000 digits, prefix-free, in numeric order
//   text, varchar, name,  bytes with 0x00 escaped as 00 FF, ended by 00 01 (bpchar without
//   bpchar, bytea, other  its trailing spaces); other types: their send (or text) bytes, in
//                         byte order, not SQL order
//
// Each column's encoding is prefix-free, so a concatenation sorts as the tuple and a key can be
// split back into columns given their types. Keys given as text by applications
// (encode_key_column_from_text) produce exactly the bytes the change stream's values produce.
// Functions throw nothing but std::bad_alloc; a failure leaves `key` as it was.
#pragma once

#include "common/no_postgres.hpp"

#include "common/frame_format.hpp"
#include "common/frame_reader.hpp"
#include "edge_apply/value_codec.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::apply {

// Appends the encoding of one key column's value (BINARY: the type's send format; TEXT: its
// output text). NULL (kNull) and UNCHANGED_TOAST (kUnchangedToast) are refused, as are
// malformed BINARY values (kBadValue) and TEXT values of known types that do not parse.
CodecStatus encode_key_column(std::string& key, uint32_t type_oid, const frame::Value& value);

// Appends the encoding of one key column given as PostgreSQL text ("42", "t", "acme",
// "2024-05-01 12:00:00+00", "550e8400-e29b-41d4-a716-446655440000", "\x0102"): the same bytes as
// encode_key_column() gives for that value's send format. Types without a text input here
// (accepts_text_input() false: jsonb, arrays, any type not listed above) are kUnsupported; bad
// text is kBadText or kOutOfRange. The accepted forms are in KEYS.md.
CodecStatus encode_key_column_from_text(std::string& key, uint32_t type_oid, std::string_view text);

// Appends the key of a row: the values of the KEY columns of `columns`, in column order. `tuple`
// is either a whole row (one value per column: INSERT, UPDATE's new tuple) or only the key
// columns' values (DELETE's and UPDATE's old key). Messages name the failing column.
CodecStatus encode_row_key(std::string& key, std::span<const frame::Column> columns,
                           const frame::Tuple& tuple);
// The same from values already decoded (a whole row, or only the key columns).
CodecStatus encode_row_key(std::string& key, std::span<const frame::Column> columns,
                           std::span<const frame::Value> values);

// Decodes the first column of `key` (a key column of type_oid) into the type's send format,
// replacing `send_bytes`, and removes it from `key`. The value is the one the key denotes: a
// numeric without its display scale (1.50 comes back as 1.5), a bpchar without trailing spaces,
// any NaN as the canonical NaN, -0 as 0. For types outside the list above the bytes are those
// that were encoded (send format or output text). kBadKey when `key` does not start with a valid
// encoding of the type.
CodecStatus decode_key_column(uint32_t type_oid, std::string_view& key, std::string& send_bytes);

// Decodes the first column of `key` like decode_key_column() and appends its PostgreSQL text
// form (append_value_text(); "\x" and hex for types outside the list above).
CodecStatus decode_key_column_text(uint32_t type_oid, std::string_view& key, std::string& text);

// Decodes a whole key of the given column types into one text per column (replacing `texts`);
// kBadKey if bytes are left over or missing.
CodecStatus decode_key_text(std::span<const uint32_t> type_oids, std::string_view key,
                            std::vector<std::string>& texts);

// Whether the memcmp order of the type's key encoding is its SQL order (text types: under the
// C collation). False for the types encoded as opaque bytes (anything not listed above).
bool key_order_is_sql_order(uint32_t type_oid) noexcept;

// The smallest byte string greater than every string starting with `prefix` (the exclusive end
// of a prefix scan), or "" when there is none (prefix empty or all 0xFF). With prefix-free
// column encodings, the keys whose first columns equal given values are exactly the keys in
// [prefix, key_prefix_end(prefix)).
std::string key_prefix_end(std::string_view prefix);

}  // namespace edgeshard::apply

// PostgreSQL values as the change stream carries them (common/FORMAT.md, "Tuples": NULL,
// UNCHANGED_TOAST, BINARY = the type's send format, TEXT = its output text), for readers of edge
// replicas: typed accessors, PostgreSQL's text form, a JSON rendering of a row, and the parsing of
// PostgreSQL text input into the send format (used by key_codec for keys given as text).
//
// Types understood (oids from PostgreSQL's pg_type.dat, stable across versions): bool, int2, int4,
// int8, oid, float4, float8, numeric, text, varchar, bpchar, name, bytea, json, jsonb, uuid, date,
// time, timestamp, timestamptz. Any other type is shown as hex. Text output follows PostgreSQL 15
// with DateStyle = ISO, TimeZone = UTC, extra_float_digits = 1, bytea_output = hex (the defaults
// but for the zone). The rules and their reasons are in edge_apply/KEYS.md.
//
// Nothing here keeps a pointer after returning except RowView (views into the tuple's bytes) and
// value_as_text (a view into the value's bytes). Functions throw nothing but std::bad_alloc.
#pragma once

#include "common/no_postgres.hpp"

#include "common/frame_format.hpp"
#include "common/frame_reader.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::apply {

// Type oids of the built-in types the codecs understand (PostgreSQL's pg_type.dat).
namespace type_oid {
inline constexpr uint32_t kBool = 16;
inline constexpr uint32_t kBytea = 17;
inline constexpr uint32_t kName = 19;
inline constexpr uint32_t kInt8 = 20;
inline constexpr uint32_t kInt2 = 21;
inline constexpr uint32_t kInt4 = 23;
inline constexpr uint32_t kText = 25;
inline constexpr uint32_t kOid = 26;
inline constexpr uint32_t kJson = 114;
inline constexpr uint32_t kFloat4 = 700;
inline constexpr uint32_t kFloat8 = 701;
inline constexpr uint32_t kBpchar = 1042;
inline constexpr uint32_t kVarchar = 1043;
inline constexpr uint32_t kDate = 1082;
inline constexpr uint32_t kTime = 1083;
inline constexpr uint32_t kTimestamp = 1114;
inline constexpr uint32_t kTimestamptz = 1184;
inline constexpr uint32_t kNumeric = 1700;
inline constexpr uint32_t kUuid = 2950;
inline constexpr uint32_t kJsonb = 3802;
}  // namespace type_oid

// Why a value or key was refused.
enum class CodecError : uint8_t {
  kOk = 0,
  kNull,            // a NULL where a value is needed (key column, typed accessor)
  kUnchangedToast,  // an UNCHANGED_TOAST value: not a value (key column, stored row)
  kBadValue,        // a BINARY value malformed for its type (corrupt data): SQLSTATE XX001
  kBadText,         // text that is not valid input for the type: SQLSTATE 22P02
  kOutOfRange,      // text denoting a value outside the type's range: SQLSTATE 22003 / 22008
  kUnsupported,     // the type cannot be given as text (key_codec) or converted as asked
  kTypeMismatch,    // a typed accessor asked for a type the column does not have
  kBadKey,          // an encoded key is malformed or does not match the column types given
  kBadTuple,        // tuple bytes malformed, or their value count does not match the columns
};

// Outcome of a codec call; `message` is empty on success and otherwise says what and which type,
// in PostgreSQL's style (lower case, no trailing period).
struct CodecStatus {
  CodecError error = CodecError::kOk;
  std::string message;

  // Whether the call succeeded.
  bool ok() const noexcept { return error == CodecError::kOk; }
};

// Short stable name of an error ("bad_value"), for logs and JSON.
const char* codec_error_name(CodecError e) noexcept;

// PostgreSQL's name of a type ("integer", "timestamp with time zone"), or "type <oid>".
std::string type_name(uint32_t type_oid);

// Whether the type's BINARY values are understood (rendered in text, not hex).
bool is_known_type(uint32_t type_oid) noexcept;

// Whether parse_value_text() accepts text for the type.
bool accepts_text_input(uint32_t type_oid) noexcept;

// --- text -----------------------------------------------------------------------------------

// Appends the value's text form, as PostgreSQL's output function prints it (DateStyle ISO,
// TimeZone UTC): "42", "t", "2024-05-01 12:00:00+00", "\x0102". A TEXT value is its text; a
// BINARY value of an unknown type is "\x" and its bytes in hex. NULL and UNCHANGED_TOAST are
// refused (kNull, kUnchangedToast); malformed BINARY values too (kBadValue).
CodecStatus append_value_text(std::string& out, uint32_t type_oid, const frame::Value& value);

// Parses PostgreSQL text input for the type (as its input function would, with TimeZone UTC)
// into the type's binary send format, replacing `send_bytes`. Only for accepts_text_input()
// types; see KEYS.md for the accepted forms. No column typmod is applied: char(n) is not padded,
// numeric(p,s) and timestamp(p) are not rounded. kBadText, kOutOfRange, or kUnsupported.
CodecStatus parse_value_text(uint32_t type_oid, std::string_view text, std::string& send_bytes);

// --- JSON -----------------------------------------------------------------------------------

// Appends the value as JSON, as PostgreSQL's to_json() renders it with TimeZone UTC: booleans
// and finite numbers bare, NaN/Infinity and other scalars as strings ("2024-05-01T12:00:00+00:00"
// for timestamptz), json/jsonb embedded (raw newlines turned into spaces), NULL as null. A TEXT
// value is a JSON string; a BINARY value of an unknown type is {"binary":"<hex>"}.
// UNCHANGED_TOAST is refused.
CodecStatus append_value_json(std::string& out, uint32_t type_oid, const frame::Value& value);

// --- typed accessors -------------------------------------------------------------------------
// Each refuses NULL (kNull), UNCHANGED_TOAST, a type it does not convert (kTypeMismatch) and a
// malformed value (kBadValue). TEXT values are only accepted by value_as_text.

// int2, int4, int8, oid.
CodecStatus value_as_int64(uint32_t type_oid, const frame::Value& value, int64_t& out);
// float4, float8, int2, int4, int8 and numeric (nearest double; NaN and infinities kept).
CodecStatus value_as_double(uint32_t type_oid, const frame::Value& value, double& out);
// bool.
CodecStatus value_as_bool(uint32_t type_oid, const frame::Value& value, bool& out);
// A view into the value's bytes: text, varchar, bpchar (with its padding), name, json, jsonb
// (its text, after the version byte), and a TEXT value of any type.
CodecStatus value_as_text(uint32_t type_oid, const frame::Value& value, std::string_view& out);
// uuid: its 16 bytes.
CodecStatus value_as_uuid(uint32_t type_oid, const frame::Value& value,
                          std::array<uint8_t, 16>& out);
// timestamp, timestamptz, date (its midnight): microseconds since 1970-01-01 00:00:00 (UTC for
// timestamptz), as the frame format counts time. -infinity and infinity are INT64_MIN and
// INT64_MAX; a finite value that does not fit (after year 294247) is kOutOfRange.
CodecStatus value_as_timestamp_us(uint32_t type_oid, const frame::Value& value, int64_t& out);

// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
inline constexpr int64_t kPostgresEpochUnixUs = 946684800000000;

// --- rows ------------------------------------------------------------------------------------

// The values of one row against its RELATION columns: either a tuple decoded from frame bytes
// (`count ncols` + values, FORMAT.md "Tuples") or a frame::Tuple. Views into the columns and the
// tuple's bytes, which must outlive it. Reusable: parse()/assign() keep the vector's capacity.
class RowView {
 public:
  // Decodes `tuple_bytes` (exactly one encoded tuple, nothing after it) for `columns`; the value
  // count must equal the column count. kBadTuple when malformed.
  CodecStatus parse(std::span<const frame::Column> columns, std::string_view tuple_bytes);

  // Takes the values of a tuple from a decoded message; the count must equal the column count.
  CodecStatus assign(std::span<const frame::Column> columns, const frame::Tuple& tuple);

  // Number of columns.
  size_t size() const noexcept { return values_.size(); }
  // Column i's description.
  const frame::Column& column(size_t i) const noexcept { return columns_[i]; }
  // Column i's value.
  const frame::Value& value(size_t i) const noexcept { return values_[i]; }
  // Index of the column named `name`, or -1.
  int find(std::string_view name) const noexcept;
  // Whether column i is NULL.
  bool is_null(size_t i) const noexcept { return values_[i].kind == frame::ValueKind::kNull; }

  // Typed accessors of column i (see the value_as_* functions; messages name the column).
  CodecStatus get_int64(size_t i, int64_t& out) const;
  CodecStatus get_double(size_t i, double& out) const;
  CodecStatus get_bool(size_t i, bool& out) const;
  CodecStatus get_text(size_t i, std::string_view& out) const;
  CodecStatus get_uuid(size_t i, std::array<uint8_t, 16>& out) const;
  CodecStatus get_timestamp_us(size_t i, int64_t& out) const;
  // Appends column i's PostgreSQL text form; NULL is refused.
  CodecStatus append_text(size_t i, std::string& out) const;

  // Appends the row as one JSON object {column: value, ...} in column order (PostgreSQL's
  // row_to_json() with TimeZone UTC). UNCHANGED_TOAST and malformed values are refused; `out`
  // is then left as it was.
  CodecStatus append_json(std::string& out) const;

 private:
  // Prefixes a failed status's message with the column's name.
  CodecStatus named(size_t i, CodecStatus st) const;

  std::span<const frame::Column> columns_;
  std::vector<frame::Value> values_;
};

}  // namespace edgeshard::apply

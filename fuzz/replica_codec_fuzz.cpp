// libFuzzer target for the edge replica codecs (edge_apply/key_codec.hpp, value_codec.hpp; rules
// in edge_apply/KEYS.md), the readers of stored keys and rows: whatever the bytes, they must never
// crash, read out of bounds, leak or hit undefined behaviour, and keys must round-trip.
//
// Input: byte 0 picks the column count (1 + its low two bits), the next bytes one type each (an
// index into kTypes: the 20 types value_codec understands and one it does not), the rest is the
// payload, used three ways:
//   (a) as a key of those columns: decode_key_text(), and column by column decode_key_column()
//       and decode_key_column_text(). Every column that decodes re-encodes (encode_key_column()
//       of its send bytes, BINARY) to exactly the bytes it was read from; a failure consumes
//       nothing; the text decoders agree with it and with each other; a text decoded for a type
//       with text input re-encodes (encode_key_column_from_text()) to the same bytes.
//   (b) as a stored row of those columns: RowView::parse(); when it succeeds, append_json(),
//       append_text() and every typed accessor of every column (they may refuse, never crash),
//       a value has JSON exactly when it has text (or is NULL), a JSON failure leaves its output
//       as it was, the row re-encodes (append_tuple) to a tuple that parses to the same values,
//       the text of a BINARY value (types with text input) parses to a value with its key, and
//       encode_row_key() (column 0 is the key) gives column 0's key from the row and alone.
//   (c) as PostgreSQL text for each of the types: parse_value_text() and
//       encode_key_column_from_text() agree (the key of the parsed send bytes is the key from the
//       text); a key made from text decodes, whole, to a text that gives the same key again; the
//       parsed value's own text parses to the same key; the payload as a TEXT value of the type
//       (any type) that makes a key decodes back to it.
//
// Seeds (fuzz/corpus/replica_codec/): for each type a few keys, stored rows (BINARY, TEXT, NULL)
// and texts of one column, and a few of several columns. They were written by the generator at
// the end of this file:
//   clang++-14 -std=c++20 -I. -DREPLICA_CODEC_FUZZ_WRITE_SEEDS fuzz/replica_codec_fuzz.cpp \
//     edge_apply/key_codec.cpp edge_apply/value_codec.cpp build/libedgeshard_common.a \
//     -lxxhash -llz4 -o /tmp/replica_codec_seeds
//   rm -f fuzz/corpus/replica_codec/* && /tmp/replica_codec_seeds fuzz/corpus/replica_codec
// Build and run: see fuzz/README.md.
#include "edge_apply/key_codec.hpp"
#include "edge_apply/tuple.hpp"
#include "edge_apply/value_codec.hpp"

#include "common/frame_format.hpp"
#include "common/frame_reader.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace frame = edgeshard::frame;
namespace apply = edgeshard::apply;
namespace oid = edgeshard::apply::type_oid;
using apply::CodecError;
using apply::CodecStatus;

// The column types an input can pick: the 20 known types and interval (1186), which the codecs
// do not understand (keys of its bytes, values in hex).
constexpr uint32_t kTypes[] = {
    oid::kBool,    oid::kBytea, oid::kName, oid::kInt8,      oid::kInt2,        oid::kInt4,
    oid::kText,    oid::kOid,   oid::kJson, oid::kFloat4,    oid::kFloat8,      oid::kBpchar,
    oid::kVarchar, oid::kDate,  oid::kTime, oid::kTimestamp, oid::kTimestamptz, oid::kNumeric,
    oid::kUuid,    oid::kJsonb, 1186};
constexpr size_t kTypeCount = sizeof kTypes / sizeof kTypes[0];
constexpr size_t kMaxColumns = 4;

// Column names for RowView (JSON keys): plain, and ones that need escaping in JSON.
constexpr std::string_view kNames[kMaxColumns] = {"id", "na\"me", "back\\slash", "t\xc3\xa9"};

// Stops the run with a finding when an invariant does not hold, naming its line.
void require(bool ok, int line = __builtin_LINE()) {
  if (ok) return;
  std::fprintf(stderr, "replica_codec_fuzz: invariant at line %d does not hold\n", line);
  __builtin_trap();
}

// A BINARY value (the type's send format).
frame::Value binary(std::string_view data) { return frame::Value{frame::ValueKind::kBinary, data}; }

// (a) The payload as a key of the column types.
void check_key(std::span<const uint32_t> types, std::string_view payload) {
  std::vector<std::string> texts;
  const CodecStatus whole = apply::decode_key_text(types, payload, texts);
  require(whole.ok() || whole.error == CodecError::kBadKey);
  require(texts.size() == types.size());

  // Column by column: decode_key_column() is the reference.
  std::string_view rest = payload;
  bool all_text = true;  // every column so far decoded to text too
  for (size_t i = 0; i < types.size(); ++i) {
    const uint32_t type = types[i];
    std::string_view after = rest;
    std::string send;
    const CodecStatus st = apply::decode_key_column(type, after, send);
    require(st.ok() || st.error == CodecError::kBadKey);

    std::string_view after_text = rest;
    std::string text = "prefix:";  // decode_key_column_text() appends
    const CodecStatus st_text = apply::decode_key_column_text(type, after_text, text);
    require(st_text.ok() || st_text.error == CodecError::kBadKey);
    // The text decoder refuses at least what the send decoder refuses, and reads as far.
    require(st.ok() || !st_text.ok());
    if (st_text.ok()) {
      require(after_text.size() == after.size());
      require(text.starts_with("prefix:"));
      text.erase(0, 7);
    }

    if (!st.ok()) {
      require(after.size() == rest.size());  // nothing consumed on failure
      all_text = false;
      break;
    }
    require(after.size() < rest.size());  // every encoding has at least one byte
    const std::string_view column = rest.substr(0, rest.size() - after.size());

    // Re-encoding the decoded value gives exactly the bytes it was read from.
    std::string key = "k";  // encode_key_column() appends
    const CodecStatus enc = apply::encode_key_column(key, type, binary(send));
    require(enc.ok());
    require(std::string_view(key).substr(1) == column);

    if (st_text.ok()) {
      // decode_key_text() gives the same texts.
      if (whole.ok()) require(texts[i] == text);
      // A decoded text is valid input for its type, and denotes the same key.
      if (apply::accepts_text_input(type)) {
        std::string from_text;
        const CodecStatus ft = apply::encode_key_column_from_text(from_text, type, text);
        require(ft.ok());
        require(from_text == column);
      }
    } else {
      all_text = false;
    }
    rest = after;
  }
  // decode_key_text() succeeds exactly when every column decodes to text and nothing is left.
  require(whole.ok() == (all_text && rest.empty()));
}

// (b) The payload as a stored row of the columns.
void check_row(std::span<const frame::Column> columns, std::string_view payload) {
  apply::RowView row;
  const CodecStatus parsed = row.parse(columns, payload);
  require(parsed.ok() || parsed.error == CodecError::kBadTuple);
  if (!parsed.ok()) {
    require(row.size() == 0);
    return;
  }
  require(row.size() == columns.size());

  std::string json = "[";
  const CodecStatus js = row.append_json(json);
  if (js.ok()) {
    require(json.size() > 2 && json[1] == '{' && json.back() == '}');
  } else {
    require(json == "[");  // left as it was
  }

  std::vector<frame::Value> values;
  for (size_t i = 0; i < row.size(); ++i) {
    const frame::Value& v = row.value(i);
    values.push_back(v);
    require(row.column(i).type_oid == columns[i].type_oid);
    require(row.is_null(i) == (v.kind == frame::ValueKind::kNull));
    require(row.find(columns[i].name) >= 0);
    int64_t i64;
    double d;
    bool b;
    std::string_view sv;
    std::array<uint8_t, 16> uuid;
    (void)row.get_int64(i, i64);
    (void)row.get_double(i, d);
    (void)row.get_bool(i, b);
    if (row.get_text(i, sv).ok()) {
      // A view into the row's bytes.
      require(sv.empty() || (sv.data() >= payload.data() &&
                             sv.data() + sv.size() <= payload.data() + payload.size()));
    }
    (void)row.get_uuid(i, uuid);
    (void)row.get_timestamp_us(i, i64);
    std::string text;
    const CodecStatus st = row.append_text(i, text);
    // A value has JSON exactly when it has a text (NULL: JSON null, no text).
    std::string json_value;
    const CodecStatus sj = apply::append_value_json(json_value, columns[i].type_oid, v);
    require(sj.ok() == (st.ok() || v.kind == frame::ValueKind::kNull));
    if (js.ok()) require(sj.ok());
    const uint32_t type = columns[i].type_oid;
    if (st.ok() && v.kind == frame::ValueKind::kBinary && apply::accepts_text_input(type)) {
      // The output text of a BINARY value is valid input with the same key.
      std::string send;
      require(apply::parse_value_text(type, text, send).ok());
      std::string k1, k2;
      require(apply::encode_key_column(k1, type, v).ok());
      require(apply::encode_key_column(k2, type, binary(send)).ok());
      require(k1 == k2);
    }
  }

  // The row's key (column 0 is its key column) is that column's key, from the whole row and from
  // the key column alone.
  std::string row_key, key_only, column_key;
  const CodecStatus rk =
      apply::encode_row_key(row_key, columns, std::span<const frame::Value>(values));
  const CodecStatus ko =
      apply::encode_row_key(key_only, columns, std::span<const frame::Value>(values).first(1));
  const CodecStatus ck = apply::encode_key_column(column_key, columns[0].type_oid, values[0]);
  require(rk.ok() == ck.ok() && ko.ok() == ck.ok());
  require(row_key == column_key && key_only == column_key);

  // Encoding the values again gives a tuple with the same values.
  std::string again;
  apply::append_tuple(again, values);
  apply::RowView row2;
  require(row2.parse(columns, again).ok());
  for (size_t i = 0; i < row.size(); ++i) {
    require(row2.value(i).kind == row.value(i).kind);
    require(row2.value(i).data == row.value(i).data);
  }
}

// (c) The payload as PostgreSQL text for one type.
void check_text(uint32_t type, std::string_view text) {
  std::string send;
  const CodecStatus parsed = apply::parse_value_text(type, text, send);
  require(!parsed.ok() || apply::accepts_text_input(type));
  require(parsed.ok() || parsed.error == CodecError::kBadText ||
          parsed.error == CodecError::kOutOfRange || parsed.error == CodecError::kUnsupported);
  require(parsed.error != CodecError::kUnsupported || !apply::accepts_text_input(type));

  std::string key = "k";
  const CodecStatus from_text = apply::encode_key_column_from_text(key, type, text);
  require(from_text.ok() == parsed.ok());
  if (!from_text.ok()) {
    require(key == "k");  // left as it was
  } else {
    key.erase(0, 1);
    // The key of the parsed send bytes is the key from the text.
    std::string k_send;
    require(apply::encode_key_column(k_send, type, binary(send)).ok());
    require(k_send == key);

    // The key decodes, whole, to a text that gives the same key again.
    const uint32_t types[] = {type};
    std::vector<std::string> texts;
    require(apply::decode_key_text(types, key, texts).ok());
    std::string again;
    require(apply::encode_key_column_from_text(again, type, texts[0]).ok());
    require(again == key);

    // The parsed value's own text parses to the same key.
    std::string out, send2, k2;
    require(apply::append_value_text(out, type, binary(send)).ok());
    require(apply::parse_value_text(type, out, send2).ok());
    require(apply::encode_key_column(k2, type, binary(send2)).ok());
    require(k2 == key);
  }

  // The payload as a TEXT value (any type, also those without text input here): a key made from
  // it decodes back to a value with the same key.
  std::string k_text;
  if (apply::encode_key_column(k_text, type, frame::Value{frame::ValueKind::kText, text}).ok()) {
    std::string_view rest = k_text;
    std::string decoded, k_again;
    require(apply::decode_key_column(type, rest, decoded).ok());
    require(rest.empty());
    require(apply::encode_key_column(k_again, type, binary(decoded)).ok());
    require(k_again == k_text);
  }
  std::string json;
  (void)apply::append_value_json(json, type, frame::Value{frame::ValueKind::kText, text});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t ncols = 1 + (data[0] & 3);
  if (size < 1 + ncols) return 0;
  uint32_t types[kMaxColumns];
  frame::Column columns[kMaxColumns];
  for (size_t i = 0; i < ncols; ++i) {
    types[i] = kTypes[data[1 + i] % kTypeCount];
    columns[i] = frame::Column{kNames[i], types[i], -1, i == 0};
  }
  const std::string_view payload(reinterpret_cast<const char*>(data + 1 + ncols), size - 1 - ncols);

  check_key(std::span<const uint32_t>(types, ncols), payload);
  check_row(std::span<const frame::Column>(columns, ncols), payload);
  bool seen[kTypeCount] = {};
  for (size_t i = 0; i < ncols; ++i) {
    const size_t t = data[1 + i] % kTypeCount;
    if (seen[t]) continue;
    seen[t] = true;
    check_text(types[i], payload);
  }
  return 0;
}

#ifdef REPLICA_CODEC_FUZZ_WRITE_SEEDS
// The seed generator (see the top of the file): writes one file per seed into the directory given.
#include <cstdlib>
#include <fstream>

namespace {

// One seed: the header (column count, type indices) and the payload.
void write_seed(const char* dir, const std::string& name, std::span<const uint32_t> types,
                const std::string& payload) {
  std::string bytes(1, static_cast<char>(types.size() - 1));
  for (uint32_t t : types) {
    size_t i = 0;
    while (kTypes[i] != t) ++i;
    bytes += static_cast<char>(i);
  }
  bytes += payload;
  std::ofstream(std::string(dir) + "/" + name, std::ios::binary) << bytes;
}

// The send bytes of a text (the text itself for types without text input).
std::string send_of(uint32_t type, std::string_view text) {
  if (type == oid::kJsonb) return "\x01" + std::string(text);
  std::string send;
  if (!apply::accepts_text_input(type)) return std::string(text);
  if (!apply::parse_value_text(type, text, send).ok()) {
    std::fprintf(stderr, "seed text \"%s\" does not parse\n", std::string(text).c_str());
    std::exit(1);
  }
  return send;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const char* dir = argv[1];
  struct Sample {
    uint32_t type;
    const char* name;
    std::vector<std::string> texts;
  };
  const std::vector<Sample> samples = {
      {oid::kBool, "bool", {"t", "f"}},
      {oid::kBytea, "bytea", {"\\x", "\\x00ff41", "\\x0000"}},
      {oid::kName, "name", {"acme", "pg_class"}},
      {oid::kInt8, "int8", {"0", "-9223372036854775808", "42"}},
      {oid::kInt2, "int2", {"-32768", "7"}},
      {oid::kInt4, "int4", {"42", "-1"}},
      {oid::kText, "text", {"", "acme", std::string("a\0b", 3)}},
      {oid::kOid, "oid", {"0", "4294967295"}},
      {oid::kJson, "json", {"{\"a\": [1, 2]}", "\"x\""}},
      {oid::kFloat4, "float4", {"1.5", "-0", "NaN", "-Infinity", "1e-45"}},
      {oid::kFloat8, "float8", {"3.141592653589793", "-1e+300", "Infinity", "5e-324"}},
      {oid::kBpchar, "bpchar", {"ab  ", "x"}},
      {oid::kVarchar, "varchar", {"hello", ""}},
      {oid::kDate, "date", {"2024-05-01", "4714-11-24 BC", "infinity", "5874897-12-31"}},
      {oid::kTime, "time", {"00:00:00", "12:34:56.789", "24:00:00"}},
      {oid::kTimestamp,
       "timestamp",
       {"2024-05-01 12:00:00", "294276-12-31 23:59:59.999999", "-infinity",
        "0001-01-01 00:00:00 BC"}},
      {oid::kTimestamptz,
       "timestamptz",
       {"2024-05-01 12:00:00+00", "1999-12-31 23:59:59.5-08", "infinity"}},
      {oid::kNumeric, "numeric", {"0", "1.50", "-12345678.000900", "NaN", "-Infinity", "1e-20"}},
      {oid::kUuid,
       "uuid",
       {"550e8400-e29b-41d4-a716-446655440000", "{00000000-0000-0000-0000-000000000000}"}},
      {oid::kJsonb, "jsonb", {"{\"a\": 1}", "[]"}},
      {1186, "interval", {"1 day", std::string("\x00\x00\x00\x01", 4)}},
  };
  for (const Sample& s : samples) {
    const uint32_t types[] = {s.type};
    for (size_t i = 0; i < s.texts.size(); ++i) {
      const std::string& text = s.texts[i];
      const std::string send = send_of(s.type, text);
      const std::string base = s.name + std::string("_") + std::to_string(i);
      // (c) the text.
      write_seed(dir, base + ".text", types, text);
      // (a) the key of its send bytes.
      std::string key;
      if (apply::encode_key_column(key, s.type, binary(send)).ok()) {
        write_seed(dir, base + ".key", types, key);
      }
      // (b) a stored row: BINARY, and TEXT for the first sample.
      std::string row;
      const frame::Value v = binary(send);
      apply::append_tuple(row, std::span<const frame::Value>(&v, 1));
      write_seed(dir, base + ".row", types, row);
      if (i == 0) {
        row.clear();
        const frame::Value t{frame::ValueKind::kText, text};
        apply::append_tuple(row, std::span<const frame::Value>(&t, 1));
        write_seed(dir, base + "_text.row", types, row);
      }
    }
  }
  // Several columns: a key and a row each (one with NULL and UNCHANGED_TOAST values).
  const std::vector<std::pair<std::vector<uint32_t>, std::vector<std::string>>> multi = {
      {{oid::kInt4, oid::kText}, {"42", "acme"}},
      {{oid::kTimestamptz, oid::kUuid, oid::kNumeric},
       {"2024-05-01 12:00:00+00", "550e8400-e29b-41d4-a716-446655440000", "-1.5"}},
      {{oid::kBpchar, oid::kFloat8, oid::kDate, oid::kBytea},
       {"ab ", "-0.25", "2000-01-01", "\\x00"}},
  };
  for (size_t m = 0; m < multi.size(); ++m) {
    const auto& [types, texts] = multi[m];
    std::vector<std::string> sends;
    std::string key;
    for (size_t i = 0; i < types.size(); ++i) {
      sends.push_back(send_of(types[i], texts[i]));
      (void)apply::encode_key_column(key, types[i], binary(sends.back()));
    }
    std::vector<frame::Value> values;
    for (const std::string& s : sends) values.push_back(binary(s));
    const std::string base = "multi_" + std::to_string(m);
    write_seed(dir, base + ".key", types, key);
    std::string row;
    apply::append_tuple(row, values);
    write_seed(dir, base + ".row", types, row);
    values[1] = frame::Value{frame::ValueKind::kNull, {}};
    if (values.size() > 2) values[2] = frame::Value{frame::ValueKind::kUnchangedToast, {}};
    row.clear();
    apply::append_tuple(row, values);
    write_seed(dir, base + "_null.row", types, row);
  }
  return 0;
}
#endif

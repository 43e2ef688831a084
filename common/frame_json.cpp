// JSON rendering of frame headers and messages (FORMAT.md, "JSON rendering").
#include "common/frame_json.hpp"

#include <charconv>
#include <cstdint>
#include <iterator>
#include <variant>

namespace edgeshard::frame {

namespace {

constexpr char kHexLower[] = "0123456789abcdef";
constexpr char kHexUpper[] = "0123456789ABCDEF";

// Length of the valid UTF-8 sequence (RFC 3629) starting at s[i] (not ASCII), or 0 if invalid.
size_t utf8_sequence_length(std::string_view s, size_t i) noexcept {
  const auto at = [&](size_t k) -> uint8_t {
    return i + k < s.size() ? static_cast<uint8_t>(s[i + k]) : 0;
  };
  const uint8_t c = at(0);
  size_t n;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlong forms
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // no overlong forms
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (at(1) < lo || at(1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (at(k) < 0x80 || at(k) > 0xBF) return 0;
  }
  return n;
}

// Appends the comma that separates this member or element from the previous one, if any.
void separate(std::string& out) {
  if (out.back() != '{' && out.back() != '[') out += ',';
}

// Appends `"key":` (keys are plain ASCII identifiers).
void key(std::string& out, std::string_view k) {
  separate(out);
  out += '"';
  out += k;
  out += "\":";
}

// Appends an integer in decimal.
template <typename Int>
void number(std::string& out, Int v) {
  char buf[24];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, res.ptr);
}

// Appends `"key":<integer>`.
template <typename Int>
void number_field(std::string& out, std::string_view k, Int v) {
  key(out, k);
  number(out, v);
}

// Appends `"key":"<string>"`.
void string_field(std::string& out, std::string_view k, std::string_view v) {
  key(out, k);
  append_json_string(out, v);
}

// Appends `"key":true|false`.
void bool_field(std::string& out, std::string_view k, bool v) {
  key(out, k);
  out += v ? "true" : "false";
}

// Appends v in upper-case hex without leading zeros, as PostgreSQL prints LSN halves.
void hex_upper(std::string& out, uint32_t v) {
  int shift = 28;
  while (shift > 0 && (v >> shift) == 0) shift -= 4;
  for (; shift >= 0; shift -= 4) out += kHexUpper[(v >> shift) & 0xf];
}

// Appends `"key":"X/X"`, an LSN as PostgreSQL prints it.
void lsn_field(std::string& out, std::string_view k, uint64_t lsn) {
  key(out, k);
  out += '"';
  hex_upper(out, static_cast<uint32_t>(lsn >> 32));
  out += '/';
  hex_upper(out, static_cast<uint32_t>(lsn));
  out += '"';
}

// Appends `"key":"<16 hex digits>"`, a hash or checksum.
void hash_field(std::string& out, std::string_view k, uint64_t v) {
  key(out, k);
  out += '"';
  for (int shift = 60; shift >= 0; shift -= 4) out += kHexLower[(v >> shift) & 0xf];
  out += '"';
}

// Appends v in decimal with at least `width` digits (and a '-' when negative) at p.
char* put_padded(char* p, int64_t v, int width) noexcept {
  char digits[24];
  const uint64_t magnitude = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  const char* end = std::to_chars(digits, digits + sizeof digits, magnitude).ptr;
  if (v < 0) *p++ = '-';
  for (auto n = end - digits; n < width; ++n) *p++ = '0';
  for (const char* d = digits; d != end; ++d) *p++ = *d;
  return p;
}

// Appends `"<k>":"2024-05-01T12:00:00.123456Z","<k_us>":<us>` for microseconds since the epoch.
// The calendar is H. Hinnant's civil_from_days, exact for every int64_t input.
void time_fields(std::string& out, std::string_view k, std::string_view k_us, int64_t us) {
  constexpr int64_t kUsPerDay = 86'400'000'000;
  int64_t days = us / kUsPerDay;
  int64_t rest = us % kUsPerDay;
  if (rest < 0) {
    rest += kUsPerDay;
    --days;
  }
  const int64_t z = days + 719468;  // days since 0000-03-01
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;                                       // [0, 146096]
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                // [0, 365]
  const int64_t mp = (5 * doy + 2) / 153;                                     // [0, 11], March = 0
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;

  char buf[64];
  char* p = put_padded(buf, year, 4);
  *p++ = '-';
  p = put_padded(p, month, 2);
  *p++ = '-';
  p = put_padded(p, day, 2);
  *p++ = 'T';
  p = put_padded(p, rest / 3'600'000'000, 2);
  *p++ = ':';
  p = put_padded(p, rest / 60'000'000 % 60, 2);
  *p++ = ':';
  p = put_padded(p, rest / 1'000'000 % 60, 2);
  *p++ = '.';
  p = put_padded(p, rest % 1'000'000, 6);
  *p++ = 'Z';
  string_field(out, k, std::string_view(buf, static_cast<size_t>(p - buf)));
  number_field(out, k_us, us);
}

// Appends one value: null, {"unchanged_toast":true}, {"binary":"<hex>"} or {"text":"..."}.
void value_json(std::string& out, const Value& v) {
  switch (v.kind) {
    case ValueKind::kNull:
      out += "null";
      break;
    case ValueKind::kUnchangedToast:
      out += "{\"unchanged_toast\":true}";
      break;
    case ValueKind::kBinary:
      out += "{\"binary\":\"";
      for (char c : v.data) {
        out += kHexLower[static_cast<uint8_t>(c) >> 4];
        out += kHexLower[static_cast<uint8_t>(c) & 0xf];
      }
      out += "\"}";
      break;
    case ValueKind::kText:
      out += "{\"text\":";
      append_json_string(out, v.data);
      out += '}';
      break;
  }
}

// Appends `"key":[...]` for a tuple, one value_json() per column.
void tuple_field(std::string& out, std::string_view k, const Tuple& tuple) {
  key(out, k);
  out += '[';
  for (const Value& v : tuple) {
    separate(out);
    value_json(out, v);
  }
  out += ']';
}

// Members of each message after its "type".
void message_fields(std::string& out, const Relation& m) {
  number_field(out, "relid", m.relid);
  string_field(out, "schema", m.schema);
  string_field(out, "name", m.name);
  number_field(out, "tenant_column", m.tenant_column);
  key(out, "columns");
  out += '[';
  for (const Column& c : m.merged_columns()) {
    separate(out);
    out += '{';
    string_field(out, "name", c.name);
    number_field(out, "type_oid", c.type_oid);
    number_field(out, "typmod", c.typmod);
    bool_field(out, "key", c.key);
    if (m.has_attributes) {
      number_field(out, "attnum", c.attnum);
      if (c.has_missing) {
        key(out, "missing");
        value_json(out, Value{c.missing_kind, c.missing});
      }
    }
    out += '}';
  }
  out += ']';
}
void message_fields(std::string& out, const Begin& m) {
  number_field(out, "xid", m.xid);
  lsn_field(out, "commit_lsn", m.commit_lsn);
  time_fields(out, "commit_time", "commit_time_us", m.commit_time_us);
}
void message_fields(std::string& out, const Insert& m) {
  number_field(out, "relid", m.relid);
  tuple_field(out, "new", m.new_tuple);
}
void message_fields(std::string& out, const Update& m) {
  number_field(out, "relid", m.relid);
  if (m.has_old_key) tuple_field(out, "old_key", m.old_key);
  tuple_field(out, "new", m.new_tuple);
}
void message_fields(std::string& out, const Delete& m) {
  number_field(out, "relid", m.relid);
  tuple_field(out, "old_key", m.old_key);
}
void message_fields(std::string& out, const Truncate& m) {
  key(out, "relids");
  out += '[';
  for (uint32_t relid : m.relids) {
    separate(out);
    number(out, relid);
  }
  out += ']';
  bool_field(out, "cascade", m.cascade);
  bool_field(out, "restart_identity", m.restart_identity);
}
void message_fields(std::string& out, const Commit& m) {
  lsn_field(out, "commit_lsn", m.commit_lsn);
  lsn_field(out, "end_lsn", m.end_lsn);
  time_fields(out, "commit_time", "commit_time_us", m.commit_time_us);
}
void message_fields(std::string& out, const Keepalive& m) {
  lsn_field(out, "lsn", m.lsn);
  time_fields(out, "time", "time_us", m.time_us);
}
void message_fields(std::string& out, const Rewrite& m) { number_field(out, "relid", m.relid); }
void message_fields(std::string& out, const TenantMoved& m) {
  string_field(out, "tenant", m.tenant_key);
  string_field(out, "from_shard", m.from_shard);
  string_field(out, "to_shard", m.to_shard);
  number_field(out, "map_epoch", m.map_epoch);
}

// The "type" of each message in JSON.
constexpr const char* kTypeNames[] = {"relation", "begin",  "insert",    "update",      "delete",
                                      "truncate", "commit", "keepalive", "tenant_moved",
                                      "rewrite"};
static_assert(std::size(kTypeNames) == std::variant_size_v<Message>);

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c >= 0x80) {
      const size_t n = utf8_sequence_length(s, i);
      if (n == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s, i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHexLower[c >> 4];
          out += kHexLower[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

void append_header_json(std::string& out, const Header& h) {
  out += '{';
  string_field(out, "type", "frame");
  number_field(out, "version", unsigned{h.version});
  key(out, "tenant");
  if (h.many_tenants) {
    out += "null";
  } else {
    append_json_string(out, h.tenant_key);
  }
  bool_field(out, "many_tenants", h.many_tenants);
  hash_field(out, "tenant_hash", h.tenant_hash);
  number_field(out, "xid", h.xid);
  number_field(out, "sequence", h.sequence);
  bool_field(out, "last", h.last);
  lsn_field(out, "first_lsn", h.first_lsn);
  lsn_field(out, "last_lsn", h.last_lsn);
  lsn_field(out, "commit_lsn", h.commit_lsn);
  time_fields(out, "commit_time", "commit_time_us", h.commit_time_us);
  string_field(out, "compression", h.compressed ? "lz4" : "none");
  number_field(out, "raw_length", h.raw_length);
  number_field(out, "stored_length", h.stored_length);
  number_field(out, "frame_length", h.frame_length);
  hash_field(out, "payload_checksum", h.payload_checksum);
  out += '}';
}

void append_message_json(std::string& out, const Message& message) {
  out += '{';
  string_field(out, "type", kTypeNames[message.index()]);
  std::visit([&out](const auto& m) { message_fields(out, m); }, message);
  out += '}';
}

Status append_frame_json(std::string& out, const Reader& reader) {
  append_header_json(out, reader.header());
  out += '\n';
  MessageCursor cursor = reader.messages();
  Message m;
  while (cursor.next(m)) {
    append_message_json(out, m);
    out += '\n';
  }
  return cursor.status();
}

}  // namespace edgeshard::frame

// Order-preserving key encoding (edge_apply/KEYS.md).
#include "edge_apply/key_codec.hpp"

#include <cstring>
#include <limits>

namespace edgeshard::apply {

namespace {

// The escape and terminator of byte-string columns: 0x00 is written 00 FF, the end is 00 01.
constexpr char kEscape = '\x00';
constexpr char kEscapedZero = '\xFF';
constexpr char kTerminator = '\x01';

// numeric's tags, in SQL order (NaN sorts above +Infinity, as numeric's comparison puts it).
constexpr uint8_t kNumericTagNegInf = 0x01;
constexpr uint8_t kNumericTagNegative = 0x02;
constexpr uint8_t kNumericTagZero = 0x03;
constexpr uint8_t kNumericTagPositive = 0x04;
constexpr uint8_t kNumericTagPosInf = 0x05;
constexpr uint8_t kNumericTagNan = 0x06;
// numeric's send format signs.
constexpr uint16_t kNumericPos = 0x0000;
constexpr uint16_t kNumericNeg = 0x4000;
constexpr uint16_t kNumericNan = 0xC000;
constexpr uint16_t kNumericPinf = 0xD000;
constexpr uint16_t kNumericNinf = 0xF000;
// The end of a numeric's digits (positive; complemented for negative numbers). Digits are
// written as d + 1 (1 .. 10000), so no digit is 0x0000 or, complemented, 0xFFFF.
constexpr uint16_t kNumericDigitsEnd = 0x0000;

// Canonical NaNs (what PostgreSQL's get_float4_nan / get_float8_nan give).
constexpr uint32_t kFloat4Nan = 0x7FC00000;
constexpr uint64_t kFloat8Nan = 0x7FF8000000000000;

// Builds a failed status.
CodecStatus fail(CodecError e, std::string message) { return CodecStatus{e, std::move(message)}; }

// A malformed key.
CodecStatus bad_key(uint32_t type, std::string_view why) {
  return fail(CodecError::kBadKey,
              "malformed key column of type " + type_name(type) + ": " + std::string(why));
}

// Big-endian load and append.
uint64_t load_be(const char* p, size_t n) noexcept {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
void append_be(std::string& out, uint64_t v, size_t n) {
  for (size_t i = n; i-- > 0;) out += static_cast<char>(static_cast<uint8_t>(v >> (8 * i)));
}

// How a type's key is encoded.
enum class KeyKind : uint8_t {
  kBool,
  kSigned,    // two's complement, sign bit flipped: int2/4/8, date, time, timestamp(tz)
  kUnsigned,  // oid, uuid: the bytes as they are
  kFloat,     // float4, float8
  kNumeric,
  kBpchar,  // escaped bytes without trailing spaces
  kBytes,   // escaped bytes: text-like, bytea, and every other type
};

// The key kind and, for fixed-size kinds, the width of a type.
KeyKind key_kind(uint32_t type, size_t& width) noexcept {
  width = 0;
  switch (type) {
    case type_oid::kBool:
      width = 1;
      return KeyKind::kBool;
    case type_oid::kInt2:
      width = 2;
      return KeyKind::kSigned;
    case type_oid::kInt4:
    case type_oid::kDate:
      width = 4;
      return KeyKind::kSigned;
    case type_oid::kInt8:
    case type_oid::kTime:
    case type_oid::kTimestamp:
    case type_oid::kTimestamptz:
      width = 8;
      return KeyKind::kSigned;
    case type_oid::kOid:
      width = 4;
      return KeyKind::kUnsigned;
    case type_oid::kUuid:
      width = 16;
      return KeyKind::kUnsigned;
    case type_oid::kFloat4:
      width = 4;
      return KeyKind::kFloat;
    case type_oid::kFloat8:
      width = 8;
      return KeyKind::kFloat;
    case type_oid::kNumeric:
      return KeyKind::kNumeric;
    case type_oid::kBpchar:
      return KeyKind::kBpchar;
    default:
      return KeyKind::kBytes;
  }
}

// Appends bytes escaped and terminated.
void append_escaped(std::string& key, std::string_view bytes) {
  for (char c : bytes) {
    key += c;
    if (c == kEscape) key += kEscapedZero;
  }
  key += kEscape;
  key += kTerminator;
}

// Appends a float's key: -0 as 0, NaN as all ones, else the IEEE bits with the sign bit flipped
// (positive) or all bits flipped (negative).
void append_float_key(std::string& key, uint64_t bits, size_t width) {
  const uint64_t sign = uint64_t{1} << (8 * width - 1);
  const uint64_t all = width == 8 ? ~uint64_t{0} : (uint64_t{1} << 32) - 1;
  const uint64_t exponent_mask = width == 8 ? 0x7FF0000000000000 : 0x7F800000;
  const uint64_t fraction_mask = width == 8 ? 0x000FFFFFFFFFFFFF : 0x007FFFFF;
  uint64_t k;
  if ((bits & exponent_mask) == exponent_mask && (bits & fraction_mask) != 0) {
    k = all;  // NaN: above +Infinity (whose key is the exponent mask with the sign bit set)
  } else if (bits == sign) {
    k = sign;  // -0: the key of +0
  } else if (bits & sign) {
    k = ~bits & all;
  } else {
    k = bits | sign;
  }
  append_be(key, k, width);
}

// Appends a numeric's key (send format checked here).
CodecStatus append_numeric_key(std::string& key, std::string_view d) {
  const uint32_t type = type_oid::kNumeric;
  if (d.size() < 8) return fail(CodecError::kBadValue, "malformed binary value for type numeric");
  const auto ndigits = static_cast<int16_t>(load_be(d.data(), 2));
  int64_t weight = static_cast<int16_t>(load_be(d.data() + 2, 2));
  const auto sign = static_cast<uint16_t>(load_be(d.data() + 4, 2));
  if (ndigits < 0 || d.size() != 8 + 2 * static_cast<size_t>(ndigits)) {
    return fail(CodecError::kBadValue,
                "malformed binary value for type numeric: digit count does not match its length");
  }
  switch (sign) {
    case kNumericNan:
      key += static_cast<char>(kNumericTagNan);
      return {};
    case kNumericPinf:
      key += static_cast<char>(kNumericTagPosInf);
      return {};
    case kNumericNinf:
      key += static_cast<char>(kNumericTagNegInf);
      return {};
    case kNumericPos:
    case kNumericNeg:
      break;
    default:
      return fail(CodecError::kBadValue, "malformed binary value for type numeric: invalid sign");
  }
  const int dscale = static_cast<int>(load_be(d.data() + 6, 2));
  if (dscale > 0x3FFF) {
    return fail(CodecError::kBadValue, "malformed binary value for type numeric: invalid scale");
  }
  const auto digit = [&](int i) { return static_cast<uint16_t>(load_be(d.data() + 8 + 2 * i, 2)); };
  int first = 0, last = ndigits;
  for (int i = 0; i < ndigits; ++i) {
    if (digit(i) >= 10000) {
      return fail(CodecError::kBadValue,
                  "malformed binary value for type numeric: digit out of range");
    }
  }
  while (first < last && digit(first) == 0) {
    ++first;
    --weight;
  }
  while (last > first && digit(last - 1) == 0) --last;
  // Digits hidden by the display scale never come from PostgreSQL (numeric_recv truncates them),
  // and value_codec refuses them too: the key and the text would denote different values.
  if (last > first && last - 1 > weight + first) {
    int used = (last - 1 - (weight + first)) * 4;
    for (int dig = digit(last - 1); dig % 10 == 0; dig /= 10) --used;
    if (used > dscale) {
      return fail(CodecError::kBadValue,
                  "malformed binary value for type numeric: digits beyond the display scale");
    }
  }
  if (first == last) {
    key += static_cast<char>(kNumericTagZero);
    return {};
  }
  if (weight < std::numeric_limits<int16_t>::min()) {
    return fail(CodecError::kBadValue,
                "malformed binary value for type " + type_name(type) + ": weight out of range");
  }
  // Negative numbers sort in reverse magnitude: complement everything after the tag.
  const uint16_t flip = sign == kNumericNeg ? 0xFFFF : 0x0000;
  key += static_cast<char>(sign == kNumericNeg ? kNumericTagNegative : kNumericTagPositive);
  append_be(key, static_cast<uint16_t>((weight + 0x8000) ^ flip), 2);
  for (int i = first; i < last; ++i)
    append_be(key, static_cast<uint16_t>((digit(i) + 1) ^ flip), 2);
  append_be(key, kNumericDigitsEnd ^ flip, 2);
  return {};
}

// Appends the key of a BINARY value (the type's send format).
CodecStatus append_binary_key(std::string& key, uint32_t type, std::string_view d) {
  size_t width;
  const KeyKind kind = key_kind(type, width);
  if (width != 0 && d.size() != width) {
    return fail(CodecError::kBadValue, "malformed binary value for type " + type_name(type) + ": " +
                                           std::to_string(d.size()) + " bytes instead of " +
                                           std::to_string(width));
  }
  switch (kind) {
    case KeyKind::kBool:
      key += d[0] != 0 ? '\x01' : '\x00';
      return {};
    case KeyKind::kSigned:
      key += static_cast<char>(d[0] ^ '\x80');
      key.append(d.substr(1));
      return {};
    case KeyKind::kUnsigned:
      key.append(d);
      return {};
    case KeyKind::kFloat:
      append_float_key(key, load_be(d.data(), width), width);
      return {};
    case KeyKind::kNumeric:
      return append_numeric_key(key, d);
    case KeyKind::kBpchar: {
      size_t n = d.size();
      while (n > 0 && d[n - 1] == ' ') --n;
      append_escaped(key, d.substr(0, n));
      return {};
    }
    case KeyKind::kBytes:
      if (type == type_oid::kName && d.size() > 63) {
        // namerecv's limit; namein cuts longer text, so such a key could never be looked up.
        return fail(CodecError::kBadValue,
                    "malformed binary value for type name: longer than 63 bytes");
      }
      append_escaped(key, d);
      return {};
  }
  return {};
}

// Whether a TEXT value of the type must be parsed (a known type whose send format differs from
// its text, or name, cut to 63 bytes as namein does); text-like types and unknown types encode
// the text bytes as they are.
bool text_needs_parsing(uint32_t type) noexcept {
  switch (type) {
    case type_oid::kText:
    case type_oid::kVarchar:
    case type_oid::kBpchar:
      return false;
    default:
      return accepts_text_input(type);
  }
}

// Reads one escaped, terminated byte string from the front of `key` into out.
bool read_escaped(std::string_view& key, std::string& out) {
  out.clear();
  for (size_t i = 0; i < key.size(); ++i) {
    if (key[i] != kEscape) {
      out += key[i];
      continue;
    }
    if (i + 1 >= key.size()) return false;
    if (key[i + 1] == kEscapedZero) {
      out += '\0';
      ++i;
    } else if (key[i + 1] == kTerminator) {
      key.remove_prefix(i + 2);
      return true;
    } else {
      return false;
    }
  }
  return false;
}

// Decodes a numeric key from the front of `key` into the send format (display scale: the
// fewest fraction digits that show every digit).
CodecStatus read_numeric_key(std::string_view& key, std::string& send) {
  const uint32_t type = type_oid::kNumeric;
  if (key.empty()) return bad_key(type, "missing");
  const auto tag = static_cast<uint8_t>(key[0]);
  send.clear();
  const auto header = [&](int ndigits, int weight, uint16_t sign, int dscale) {
    append_be(send, static_cast<uint16_t>(ndigits), 2);
    append_be(send, static_cast<uint16_t>(static_cast<int16_t>(weight)), 2);
    append_be(send, sign, 2);
    append_be(send, static_cast<uint16_t>(dscale), 2);
  };
  switch (tag) {
    case kNumericTagNan:
      header(0, 0, kNumericNan, 0);
      key.remove_prefix(1);
      return {};
    case kNumericTagPosInf:
      header(0, 0, kNumericPinf, 32);  // numeric_send's bytes for Infinity
      key.remove_prefix(1);
      return {};
    case kNumericTagNegInf:
      header(0, 0, kNumericNinf, 32);
      key.remove_prefix(1);
      return {};
    case kNumericTagZero:
      header(0, 0, kNumericPos, 0);
      key.remove_prefix(1);
      return {};
    case kNumericTagPositive:
    case kNumericTagNegative:
      break;
    default:
      return bad_key(type, "unknown tag");
  }
  const uint16_t flip = tag == kNumericTagNegative ? 0xFFFF : 0x0000;
  size_t pos = 1;
  if (key.size() < pos + 2) return bad_key(type, "truncated");
  const int weight =
      static_cast<int>(static_cast<uint16_t>(load_be(key.data() + pos, 2) ^ flip)) - 0x8000;
  pos += 2;
  std::vector<uint16_t> digits;
  for (;;) {
    if (key.size() < pos + 2) return bad_key(type, "truncated");
    const auto unit = static_cast<uint16_t>(load_be(key.data() + pos, 2) ^ flip);
    pos += 2;
    if (unit == kNumericDigitsEnd) break;
    if (unit > 10000) return bad_key(type, "digit out of range");
    digits.push_back(static_cast<uint16_t>(unit - 1));
    if (digits.size() > 0x7FFF) return bad_key(type, "too many digits");
  }
  // Canonical keys have no leading or trailing zero digits (and at least one digit).
  if (digits.empty() || digits.front() == 0 || digits.back() == 0) {
    return bad_key(type, "not canonical");
  }
  const int ndigits = static_cast<int>(digits.size());
  int dscale = (ndigits - 1 - weight) * 4;
  for (uint16_t last = digits.back(); dscale > 0 && last % 10 == 0; last /= 10) --dscale;
  if (dscale < 0) dscale = 0;
  if (dscale > 0x3FFF) return bad_key(type, "scale out of range");
  header(ndigits, weight, flip != 0 ? kNumericNeg : kNumericPos, dscale);
  for (uint16_t dig : digits) append_be(send, dig, 2);
  key.remove_prefix(pos);
  return {};
}

// Appends the key of one value whose column is known to be a key column.
CodecStatus append_value_key(std::string& key, uint32_t type, const frame::Value& v) {
  switch (v.kind) {
    case frame::ValueKind::kNull:
      return fail(CodecError::kNull, "key column is null");
    case frame::ValueKind::kUnchangedToast:
      return fail(CodecError::kUnchangedToast, "key column is an unchanged toasted value");
    case frame::ValueKind::kBinary:
      return append_binary_key(key, type, v.data);
    case frame::ValueKind::kText:
      break;
  }
  if (type == type_oid::kJsonb) {
    // jsonb's send format is a version byte and the text.
    std::string send = "\x01";
    send.append(v.data);
    return append_binary_key(key, type, send);
  }
  if (!text_needs_parsing(type)) return append_binary_key(key, type, v.data);
  std::string send;
  if (CodecStatus st = parse_value_text(type, v.data, send); !st.ok()) return st;
  return append_binary_key(key, type, send);
}

}  // namespace

CodecStatus encode_key_column(std::string& key, uint32_t type, const frame::Value& value) {
  const size_t start = key.size();
  CodecStatus st = append_value_key(key, type, value);
  if (!st.ok()) key.resize(start);
  return st;
}

CodecStatus encode_key_column_from_text(std::string& key, uint32_t type, std::string_view text) {
  if (!accepts_text_input(type)) {
    return fail(CodecError::kUnsupported,
                "key columns of type " + type_name(type) + " cannot be given as text");
  }
  return encode_key_column(key, type, frame::Value{frame::ValueKind::kText, text});
}

CodecStatus encode_row_key(std::string& key, std::span<const frame::Column> columns,
                           std::span<const frame::Value> values) {
  size_t nkeys = 0;
  for (const frame::Column& c : columns) nkeys += c.key ? 1 : 0;
  if (nkeys == 0) return fail(CodecError::kBadKey, "the relation has no key columns");
  const bool whole_row = values.size() == columns.size();
  if (!whole_row && values.size() != nkeys) {
    return fail(CodecError::kBadTuple, "tuple has " + std::to_string(values.size()) +
                                           " values for " + std::to_string(columns.size()) +
                                           " columns of which " + std::to_string(nkeys) +
                                           " are key columns");
  }
  const size_t start = key.size();
  size_t next = 0;  // next value
  for (const frame::Column& c : columns) {
    if (!c.key) {
      if (whole_row) ++next;
      continue;
    }
    CodecStatus st = append_value_key(key, c.type_oid, values[next++]);
    if (!st.ok()) {
      key.resize(start);
      st.message = "column \"" + std::string(c.name) + "\": " + st.message;
      return st;
    }
  }
  return {};
}

CodecStatus encode_row_key(std::string& key, std::span<const frame::Column> columns,
                           const frame::Tuple& tuple) {
  // Keys are a few columns: decode onto the stack when they fit.
  constexpr size_t kInline = 16;
  frame::Value inline_values[kInline];
  std::vector<frame::Value> heap_values;
  std::span<frame::Value> values;
  if (tuple.size() <= kInline) {
    values = std::span<frame::Value>(inline_values, tuple.size());
  } else {
    heap_values.resize(tuple.size());
    values = heap_values;
  }
  size_t i = 0;
  for (const frame::Value& v : tuple) values[i++] = v;
  return encode_row_key(key, columns, std::span<const frame::Value>(values));
}

CodecStatus decode_key_column(uint32_t type, std::string_view& key, std::string& send) {
  size_t width;
  const KeyKind kind = key_kind(type, width);
  if (width != 0 && key.size() < width) return bad_key(type, "truncated");
  switch (kind) {
    case KeyKind::kBool:
      if (key[0] != '\x00' && key[0] != '\x01') return bad_key(type, "not 0 or 1");
      send.clear();
      send.append(key.data(), 1);
      break;
    case KeyKind::kSigned:
      send.clear();
      send.append(key.data(), width);
      send[0] = static_cast<char>(send[0] ^ '\x80');
      break;
    case KeyKind::kUnsigned:
      send.clear();
      send.append(key.data(), width);
      break;
    case KeyKind::kFloat: {
      const uint64_t k = load_be(key.data(), width);
      const uint64_t sign = uint64_t{1} << (8 * width - 1);
      const uint64_t all = width == 8 ? ~uint64_t{0} : (uint64_t{1} << 32) - 1;
      uint64_t bits;
      if (k == all) {
        bits = width == 8 ? kFloat8Nan : kFloat4Nan;
      } else if (k & sign) {
        bits = k ^ sign;
      } else {
        bits = ~k & all;
        if (bits == sign) return bad_key(type, "negative zero");  // never encoded
      }
      // A NaN is only ever encoded as all ones.
      const uint64_t exponent_mask = width == 8 ? 0x7FF0000000000000 : 0x7F800000;
      const uint64_t fraction_mask = width == 8 ? 0x000FFFFFFFFFFFFF : 0x007FFFFF;
      if (k != all && (bits & exponent_mask) == exponent_mask && (bits & fraction_mask) != 0) {
        return bad_key(type, "non-canonical NaN");
      }
      send.clear();
      append_be(send, bits, width);
      break;
    }
    case KeyKind::kNumeric:
      return read_numeric_key(key, send);
    case KeyKind::kBpchar:
    case KeyKind::kBytes: {
      // Read from a copy of the view: a refused column leaves key as it was.
      std::string_view rest = key;
      if (!read_escaped(rest, send)) return bad_key(type, "unterminated or badly escaped");
      if (kind == KeyKind::kBpchar && !send.empty() && send.back() == ' ') {
        return bad_key(type, "trailing space");
      }
      // encode_key_column() refuses longer names (namerecv's limit): never a valid key.
      if (type == type_oid::kName && send.size() > 63) return bad_key(type, "longer than 63 bytes");
      key = rest;
      return {};
    }
  }
  key.remove_prefix(width);
  return {};
}

CodecStatus decode_key_column_text(uint32_t type, std::string_view& key, std::string& text) {
  std::string send;
  if (CodecStatus st = decode_key_column(type, key, send); !st.ok()) return st;
  if (!is_known_type(type)) {
    // The bytes may be a send format or an output text: show them as bytes.
    return append_value_text(text, type_oid::kBytea, frame::Value{frame::ValueKind::kBinary, send});
  }
  CodecStatus st = append_value_text(text, type, frame::Value{frame::ValueKind::kBinary, send});
  if (!st.ok()) st.error = CodecError::kBadKey;
  return st;
}

CodecStatus decode_key_text(std::span<const uint32_t> types, std::string_view key,
                            std::vector<std::string>& texts) {
  texts.clear();
  texts.resize(types.size());
  for (size_t i = 0; i < types.size(); ++i) {
    if (CodecStatus st = decode_key_column_text(types[i], key, texts[i]); !st.ok()) {
      st.message = "key column " + std::to_string(i + 1) + ": " + st.message;
      return st;
    }
  }
  if (!key.empty()) {
    return fail(CodecError::kBadKey,
                std::to_string(key.size()) + " bytes after the last key column");
  }
  return {};
}

bool key_order_is_sql_order(uint32_t type) noexcept {
  size_t width;
  return key_kind(type, width) != KeyKind::kBytes || type == type_oid::kText ||
         type == type_oid::kVarchar || type == type_oid::kName || type == type_oid::kBytea;
}

std::string key_prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty() && static_cast<uint8_t>(end.back()) == 0xFF) end.pop_back();
  if (!end.empty()) end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
  return end;
}

}  // namespace edgeshard::apply

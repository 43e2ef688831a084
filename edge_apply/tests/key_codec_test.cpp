// Tests of edge_apply/key_codec: pinned encodings (KEYS.md), order preservation against reference
// comparisons with PostgreSQL's semantics on random values of every type, multi-column keys,
// decoding, keys given as text against the change stream's binary values (send formats taken
// from a PostgreSQL 15 server), and refusals.
#include "common/testing/hex.hpp"
#include "edge_apply/key_codec.hpp"

#include "common/frame_codec.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace edgeshard::apply {
namespace {

using edgeshard::testing_support::hex;
using edgeshard::testing_support::unhex;

frame::Value binary(std::string_view data) { return {frame::ValueKind::kBinary, data}; }
frame::Value text_value(std::string_view data) { return {frame::ValueKind::kText, data}; }

// The key of one BINARY value (the test fails if it is refused).
std::string key_of(uint32_t oid, std::string_view send) {
  std::string key;
  CodecStatus st = encode_key_column(key, oid, binary(send));
  EXPECT_TRUE(st.ok()) << oid << " " << hex(send) << ": " << st.message;
  return key;
}

// The key of one value given as text (the test fails if it is refused).
std::string key_of_text(uint32_t oid, std::string_view text) {
  std::string key;
  CodecStatus st = encode_key_column_from_text(key, oid, text);
  EXPECT_TRUE(st.ok()) << oid << " \"" << text << "\": " << st.message;
  return key;
}

// The send format of a value given as text.
std::string send_of(uint32_t oid, std::string_view text) {
  std::string send;
  CodecStatus st = parse_value_text(oid, text, send);
  EXPECT_TRUE(st.ok()) << oid << " \"" << text << "\": " << st.message;
  return send;
}

// -1, 0, 1.
template <typename T>
int sign_of(T v) {
  return (v > T{0}) - (v < T{0});
}

// Big-endian bytes of an integer.
std::string be(uint64_t v, size_t n) {
  std::string out;
  for (size_t i = n; i-- > 0;) out += static_cast<char>(v >> (8 * i));
  return out;
}

// --- pinned encodings ---------------------------------------------------------------------

struct Pinned {
  uint32_t oid;
  const char* text;  // PostgreSQL text of the value
  const char* key_hex;
};

// The encodings KEYS.md specifies; a change here is a change of the replica file format.
constexpr Pinned kPinned[] = {
    {type_oid::kBool, "f", "00"},
    {type_oid::kBool, "t", "01"},
    {type_oid::kInt2, "-32768", "0000"},
    {type_oid::kInt2, "0", "8000"},
    {type_oid::kInt2, "32767", "ffff"},
    {type_oid::kInt4, "42", "8000002a"},
    {type_oid::kInt4, "-1", "7fffffff"},
    {type_oid::kInt8, "-9223372036854775808", "0000000000000000"},
    {type_oid::kInt8, "12345", "8000000000003039"},
    {type_oid::kOid, "42", "0000002a"},
    {type_oid::kOid, "4294967295", "ffffffff"},
    {type_oid::kDate, "2024-05-01", "800022b7"},
    {type_oid::kDate, "-infinity", "00000000"},
    {type_oid::kDate, "infinity", "ffffffff"},
    {type_oid::kTime, "24:00:00", "800000141dd76000"},
    {type_oid::kTimestamp, "2024-05-01 12:00:00", "8002ba61fea15000"},
    {type_oid::kTimestamptz, "2024-05-01 12:00:00+00", "8002ba61fea15000"},
    {type_oid::kTimestamptz, "-infinity", "0000000000000000"},
    {type_oid::kUuid, "550e8400-e29b-41d4-a716-446655440000", "550e8400e29b41d4a716446655440000"},
    {type_oid::kFloat4, "1.5", "bfc00000"},
    {type_oid::kFloat4, "NaN", "ffffffff"},
    {type_oid::kFloat8, "0", "8000000000000000"},
    {type_oid::kFloat8, "-0", "8000000000000000"},
    {type_oid::kFloat8, "1.5", "bff8000000000000"},
    {type_oid::kFloat8, "-1.5", "4007ffffffffffff"},
    {type_oid::kFloat8, "Infinity", "fff0000000000000"},
    {type_oid::kFloat8, "-Infinity", "000fffffffffffff"},
    {type_oid::kFloat8, "NaN", "ffffffffffffffff"},
    {type_oid::kNumeric, "-Infinity", "01"},
    {type_oid::kNumeric, "-1.5", "027ffffffdec76ffff"},
    {type_oid::kNumeric, "0.000", "03"},
    {type_oid::kNumeric, "1.50",
     "04800000021389"
     "0000"},
    {type_oid::kNumeric, "12345678.9",
     "04800104d3162f2329"
     "0000"},
    {type_oid::kNumeric, "0.0001",
     "047fff0002"
     "0000"},
    {type_oid::kNumeric, "Infinity", "05"},
    {type_oid::kNumeric, "NaN", "06"},
    {type_oid::kText, "", "0001"},
    {type_oid::kText, "acme", "61636d650001"},
    {type_oid::kVarchar, "ab", "61620001"},
    {type_oid::kName, "ab", "61620001"},
    {type_oid::kBpchar, "ab   ", "61620001"},
    {type_oid::kBpchar, "   ", "0001"},
    {type_oid::kBytea, "\\x00ff0001", "00ffff00ff010001"},
};

TEST(KeyCodecPinned, Encodings) {
  for (const Pinned& p : kPinned) {
    EXPECT_EQ(hex(key_of(p.oid, send_of(p.oid, p.text))), p.key_hex) << p.oid << " " << p.text;
    EXPECT_EQ(hex(key_of_text(p.oid, p.text)), p.key_hex) << p.oid << " " << p.text;
  }
  // A type outside the list: its send bytes, escaped (interval '1 day').
  const std::string interval = unhex("00000000000000000000000100000000");
  EXPECT_EQ(hex(key_of(1186, interval)),
            "00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff"
            "01"
            "00ff00ff00ff00ff"
            "0001");
  // ... or its text when it has no send function.
  std::string key;
  ASSERT_TRUE(encode_key_column(key, 1186, text_value("1 day")).ok());
  EXPECT_EQ(key, std::string("1 day\0\1", 7));
}

// --- order preservation ----------------------------------------------------------------------

// Checks that, for every pair of values, the keys compare as `cmp` compares the values, and that
// equal values have equal keys. `send` gives a value's send format.
template <typename T>
void check_order(uint32_t oid, const std::vector<T>& values,
                 const std::function<std::string(const T&)>& send,
                 const std::function<int(const T&, const T&)>& cmp) {
  std::vector<std::string> keys;
  keys.reserve(values.size());
  for (const T& v : values) keys.push_back(key_of(oid, send(v)));
  size_t failures = 0;
  for (size_t i = 0; i < values.size() && failures < 10; ++i) {
    for (size_t j = 0; j < values.size() && failures < 10; ++j) {
      const int expected = sign_of(cmp(values[i], values[j]));
      const int actual = sign_of(keys[i].compare(keys[j]));
      if (expected != actual) {
        ++failures;
        ADD_FAILURE() << "type " << oid << ": values " << hex(send(values[i])) << " and "
                      << hex(send(values[j])) << " compare " << expected << " but keys "
                      << hex(keys[i]) << " and " << hex(keys[j]) << " compare " << actual;
      }
    }
  }
}

// A seeded generator, so that failures reproduce.
std::mt19937_64& rng() {
  static std::mt19937_64 r(20240501);
  return r;
}

// A random integer with a random number of significant bits, in [min, max].
int64_t random_int(int64_t min, int64_t max) {
  const int bits = static_cast<int>(rng()() % 64) + 1;
  uint64_t u = rng()();
  if (bits < 64) u &= (uint64_t{1} << bits) - 1;
  int64_t v = static_cast<int64_t>(u);
  if (rng()() % 2 != 0) v = -v;
  return std::clamp(v, min, max);
}

// Edge values and random values of a signed integer range.
std::vector<int64_t> int_values(int64_t min, int64_t max, size_t n) {
  std::vector<int64_t> v = {min, min + 1, -1, 0, 1, max - 1, max};
  while (v.size() < n) v.push_back(random_int(min, max));
  return v;
}

TEST(KeyCodecOrder, Integers) {
  const auto cmp = [](const int64_t& a, const int64_t& b) { return a < b ? -1 : (a > b ? 1 : 0); };
  struct Case {
    uint32_t oid;
    int64_t min, max;
    size_t width;
  };
  const int64_t kTsMin = -211813488000000000, kTsEnd = 9223371331200000000;
  const Case cases[] = {
      {type_oid::kInt2, -32768, 32767, 2},
      {type_oid::kInt4, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(),
       4},
      {type_oid::kInt8, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
       8},
      // dates and timestamps: their range and the infinities (INT_MIN / INT_MAX)
      {type_oid::kDate, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(),
       4},
      {type_oid::kTimestamp, std::numeric_limits<int64_t>::min(),
       std::numeric_limits<int64_t>::max(), 8},
      {type_oid::kTimestamptz, std::numeric_limits<int64_t>::min(),
       std::numeric_limits<int64_t>::max(), 8},
      {type_oid::kTime, 0, 86400000000, 8},
  };
  for (const Case& c : cases) {
    std::vector<int64_t> values = int_values(c.min, c.max, 400);
    if (c.oid == type_oid::kTimestamp || c.oid == type_oid::kTimestamptz) {
      for (int64_t& v : values) {
        if (v != c.min && v != c.max) v = std::clamp(v, kTsMin, kTsEnd - 1);
      }
    }
    if (c.oid == type_oid::kDate) {
      for (int64_t& v : values) {
        if (v != c.min && v != c.max) v = std::clamp<int64_t>(v, -2451545, 2145031948);
      }
    }
    const size_t width = c.width;
    check_order<int64_t>(
        c.oid, values, [width](const int64_t& v) { return be(static_cast<uint64_t>(v), width); },
        cmp);
  }
  // oid: unsigned.
  std::vector<int64_t> oids = {0, 1, 0x7fffffff, 0x80000000, 0xffffffff};
  while (oids.size() < 300) oids.push_back(static_cast<int64_t>(rng()() >> (32 + rng()() % 32)));
  check_order<int64_t>(
      type_oid::kOid, oids, [](const int64_t& v) { return be(static_cast<uint64_t>(v), 4); }, cmp);
  // bool
  check_order<int64_t>(
      type_oid::kBool, {0, 1, 0, 1},
      [](const int64_t& v) { return be(static_cast<uint64_t>(v), 1); }, cmp);
}

// PostgreSQL's float order: -Infinity < ... < -0 = 0 < ... < Infinity < NaN, all NaNs equal.
template <typename F>
int pg_float_cmp(F a, F b) {
  if (std::isnan(a)) return std::isnan(b) ? 0 : 1;
  if (std::isnan(b)) return -1;
  return a < b ? -1 : (a > b ? 1 : 0);
}

TEST(KeyCodecOrder, Floats) {
  // float8: edge values, NaNs with other payloads and signs, random bit patterns (denormals,
  // infinities, NaNs included) and random ordinary values.
  std::vector<uint64_t> f8 = {0x0000000000000000, 0x8000000000000000, 0x0000000000000001,
                              0x8000000000000001, 0x7ff0000000000000, 0xfff0000000000000,
                              0x7ff8000000000000, 0xfff8000000000000, 0x7ff0000000000001,
                              0x7fefffffffffffff, 0xffefffffffffffff, 0x3ff0000000000000,
                              0xbff0000000000000};
  while (f8.size() < 400) {
    if (rng()() % 2 != 0) {
      f8.push_back(rng()());
    } else {
      double d = std::ldexp(static_cast<double>(rng()() % 1000) - 500,
                            static_cast<int>(rng()() % 40) - 20);
      uint64_t bits;
      std::memcpy(&bits, &d, 8);
      f8.push_back(bits);
    }
  }
  check_order<uint64_t>(
      type_oid::kFloat8, f8, [](const uint64_t& b) { return be(b, 8); },
      [](const uint64_t& a, const uint64_t& b) {
        double x, y;
        std::memcpy(&x, &a, 8);
        std::memcpy(&y, &b, 8);
        return pg_float_cmp(x, y);
      });
  std::vector<uint64_t> f4 = {0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x7f800000,
                              0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x3f800000};
  while (f4.size() < 400) f4.push_back(rng()() & 0xffffffff);
  check_order<uint64_t>(
      type_oid::kFloat4, f4, [](const uint64_t& b) { return be(b, 4); },
      [](const uint64_t& a, const uint64_t& b) {
        float x, y;
        const auto ua = static_cast<uint32_t>(a), ub = static_cast<uint32_t>(b);
        std::memcpy(&x, &ua, 4);
        std::memcpy(&y, &ub, 4);
        return pg_float_cmp(x, y);
      });
}

// Random byte strings over a small alphabet, so that prefixes, 0x00, 0x01 and 0xFF bytes (the
// escape and terminator bytes) are frequent.
std::vector<std::string> byte_strings(std::string_view alphabet, size_t n) {
  std::vector<std::string> v = {"", std::string(1, alphabet[0]), std::string(3, alphabet[0])};
  while (v.size() < n) {
    std::string s;
    const size_t len = rng()() % 7;
    for (size_t i = 0; i < len; ++i) s += alphabet[rng()() % alphabet.size()];
    v.push_back(s);
  }
  return v;
}

TEST(KeyCodecOrder, ByteStrings) {
  // Byte order, a prefix first (text under the C collation, bytea).
  const auto cmp = [](const std::string& a, const std::string& b) { return a.compare(b); };
  const auto same = [](const std::string& s) { return s; };
  const std::vector<std::string> with_zeros = byte_strings(std::string_view("\x00\x01\xff"
                                                                            "ab",
                                                                            5),
                                                           400);
  check_order<std::string>(type_oid::kBytea, with_zeros, same, cmp);
  check_order<std::string>(1186, with_zeros, same, cmp);  // any other type: its bytes
  const std::vector<std::string> texts = byte_strings(
      "\x01"
      "ab\xc3\xa9 ~",
      400);
  for (uint32_t oid : {type_oid::kText, type_oid::kVarchar, type_oid::kName}) {
    check_order<std::string>(oid, texts, same, cmp);
  }
  // bpchar: trailing spaces do not count (bpcharcmp).
  const auto strip = [](std::string s) {
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
  };
  check_order<std::string>(
      type_oid::kBpchar, byte_strings(" a\x1f!", 400), same,
      [&](const std::string& a, const std::string& b) { return strip(a).compare(strip(b)); });
}

TEST(KeyCodecOrder, Uuids) {
  std::vector<std::string> v;
  for (int i = 0; i < 300; ++i) {
    std::string u(16, '\0');
    for (char& c : u) c = static_cast<char>(rng()() % 3 == 0 ? 0xff : rng()() % 4);
    v.push_back(u);
  }
  check_order<std::string>(
      type_oid::kUuid, v, [](const std::string& s) { return s; },
      [](const std::string& a, const std::string& b) { return a.compare(b); });
}

// A numeric for the reference comparison: NaN, ±Infinity or ±0.digits × 10^exponent.
struct Dec {
  int cls = 2;         // 0 -Infinity, 1 negative, 2 zero, 3 positive, 4 +Infinity, 5 NaN
  std::string digits;  // no leading or trailing zeros
  int exponent = 0;
  std::string text;  // how it is written (with extra zeros, sign, exponent forms)
};

// Exact comparison of two Decs as numeric_cmp compares them.
int dec_cmp(const Dec& a, const Dec& b) {
  if (a.cls != b.cls) return a.cls < b.cls ? -1 : 1;
  if (a.cls != 1 && a.cls != 3) return 0;
  int c;
  if (a.exponent != b.exponent) {
    c = a.exponent < b.exponent ? -1 : 1;
  } else {
    c = sign_of(a.digits.compare(b.digits));
  }
  return a.cls == 1 ? -c : c;
}

// A random numeric, written in one of the forms numeric_in reads.
Dec random_dec() {
  Dec d;
  const uint64_t pick = rng()() % 20;
  if (pick == 0) {
    d.cls = 5;
    d.text = "NaN";
    return d;
  }
  if (pick == 1) {
    d.cls = rng()() % 2 != 0 ? 0 : 4;
    d.text = d.cls == 0 ? "-Infinity" : "Infinity";
    return d;
  }
  if (pick == 2) {
    d.cls = 2;
    d.text = std::string(rng()() % 2 != 0 ? "-" : "") + "0." + std::string(rng()() % 4, '0');
    return d;
  }
  const size_t n = 1 + rng()() % 22;
  for (size_t i = 0; i < n; ++i) {
    // Few distinct digits, so that equal prefixes and exponents are common.
    d.digits += static_cast<char>('0' + (i == 0 ? 1 + rng()() % 2 : rng()() % 3 * 4 + rng()() % 2));
  }
  while (d.digits.back() == '0') d.digits.pop_back();
  d.exponent = static_cast<int>(rng()() % 24) - 12;
  const bool negative = rng()() % 2 != 0;
  d.cls = negative ? 1 : 3;
  // Written as plain decimal with extra trailing zeros, or with an exponent.
  std::string t = negative ? "-" : "";
  if (rng()() % 4 == 0) {
    t += "0." + d.digits + std::string(rng()() % 3, '0') + "e" + std::to_string(d.exponent);
  } else {
    const int e = d.exponent;
    const int len = static_cast<int>(d.digits.size());
    if (e >= len) {
      t += d.digits + std::string(static_cast<size_t>(e - len), '0');
    } else if (e > 0) {
      t += d.digits.substr(0, static_cast<size_t>(e)) + "." +
           d.digits.substr(static_cast<size_t>(e));
    } else {
      t += "0." + std::string(static_cast<size_t>(-e), '0') + d.digits;
    }
    if (rng()() % 3 == 0)
      t += (t.find('.') == std::string::npos ? "." : "") + std::string(rng()() % 5, '0');
  }
  d.text = t;
  return d;
}

TEST(KeyCodecOrder, Numerics) {
  std::vector<Dec> values;
  for (const char* t : {"0", "1", "1.0", "1.00", "-1", "10000", "9999", "9999.9999", "0.0001",
                        "0.00010", "1e-20", "-1e-20", "1e100", "-1e100"}) {
    // Parsed by the reference's own rules: only simple forms here.
    Dec d;
    std::string s = t;
    d.text = s;
    const bool neg = s[0] == '-';
    if (neg) s = s.substr(1);
    int exp_extra = 0;
    if (auto e = s.find('e'); e != std::string::npos) {
      exp_extra = std::stoi(s.substr(e + 1));
      s = s.substr(0, e);
    }
    const size_t point = s.find('.');
    std::string digits = s;
    int int_len = static_cast<int>(s.size());
    if (point != std::string::npos) {
      digits = s.substr(0, point) + s.substr(point + 1);
      int_len = static_cast<int>(point);
    }
    size_t lead = 0;
    while (lead < digits.size() && digits[lead] == '0') ++lead;
    digits = digits.substr(lead);
    while (!digits.empty() && digits.back() == '0') digits.pop_back();
    if (digits.empty()) {
      d.cls = 2;
    } else {
      d.cls = neg ? 1 : 3;
      d.digits = digits;
      d.exponent = int_len - static_cast<int>(lead) + exp_extra;
    }
    values.push_back(d);
  }
  while (values.size() < 500) values.push_back(random_dec());
  check_order<Dec>(
      type_oid::kNumeric, values, [](const Dec& d) { return send_of(type_oid::kNumeric, d.text); },
      dec_cmp);
}

// --- multi-column keys -----------------------------------------------------------------------

TEST(KeyCodecOrder, MultiColumnKeysSortAsTuples) {
  // (text, int4, numeric) from small domains: many equal first columns, and first columns that
  // are prefixes of one another.
  const std::vector<std::string> texts = {
      "", "a", "ab", std::string("a\0", 2), "abc", "b", std::string("\0", 1), "\xff"};
  const std::vector<int64_t> ints = {std::numeric_limits<int32_t>::min(), -1, 0, 1,
                                     std::numeric_limits<int32_t>::max()};
  const std::vector<const char*> nums = {"-Infinity", "-1.5", "0", "1.5", "1.50", "10", "NaN"};
  // Each numeric's rank in SQL order (1.5 = 1.50).
  const auto num_rank = [](const char* n) {
    const std::string s = n;
    if (s == "-Infinity") return 0;
    if (s == "-1.5") return 1;
    if (s == "0") return 2;
    if (s == "1.5" || s == "1.50") return 3;
    if (s == "10") return 4;
    return 5;  // NaN
  };
  struct Row {
    std::string t;
    int64_t i;
    const char* n;
  };
  std::vector<Row> rows;
  for (int k = 0; k < 300; ++k) {
    rows.push_back(
        {texts[rng()() % texts.size()], ints[rng()() % ints.size()], nums[rng()() % nums.size()]});
  }
  const std::vector<frame::Column> columns = {{"t", type_oid::kText, -1, true},
                                              {"payload", type_oid::kJsonb, -1, false},
                                              {"i", type_oid::kInt4, -1, true},
                                              {"n", type_oid::kNumeric, -1, true}};
  std::vector<std::string> keys;
  for (const Row& r : rows) {
    const std::string i4 = be(static_cast<uint64_t>(r.i), 4);
    const std::string num = send_of(type_oid::kNumeric, r.n);
    const frame::Value values[] = {binary(r.t), binary("\x01{}"), binary(i4), binary(num)};
    std::string key;
    ASSERT_TRUE(encode_row_key(key, columns, values).ok());
    keys.push_back(key);
  }
  for (size_t a = 0; a < rows.size(); ++a) {
    for (size_t b = 0; b < rows.size(); ++b) {
      int expected = sign_of(rows[a].t.compare(rows[b].t));
      if (expected == 0) expected = rows[a].i < rows[b].i ? -1 : (rows[a].i > rows[b].i ? 1 : 0);
      if (expected == 0) expected = sign_of(num_rank(rows[a].n) - num_rank(rows[b].n));
      ASSERT_EQ(sign_of(keys[a].compare(keys[b])), expected)
          << hex(rows[a].t) << "," << rows[a].i << "," << rows[a].n << " vs " << hex(rows[b].t)
          << "," << rows[b].i << "," << rows[b].n;
    }
  }
  // A prefix scan on the first column finds exactly the rows with that first column.
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  for (const std::string& t : texts) {
    const std::string begin = key_of(type_oid::kText, t);
    const std::string end = key_prefix_end(begin);
    const auto lo = std::lower_bound(sorted.begin(), sorted.end(), begin);
    const auto hi = std::lower_bound(sorted.begin(), sorted.end(), end);
    size_t expected = 0;
    for (const Row& r : rows) expected += r.t == t ? 1 : 0;
    EXPECT_EQ(static_cast<size_t>(hi - lo), expected) << hex(t);
  }
}

TEST(KeyCodecRowKey, WholeRowsAndKeyOnlyTuplesGiveTheSameKey) {
  // Key columns in column order: (tenant bigint, id uuid), with a value column between them.
  const std::vector<frame::Column> columns = {{"tenant", type_oid::kInt8, -1, true},
                                              {"body", type_oid::kText, -1, false},
                                              {"id", type_oid::kUuid, -1, true}};
  const std::string tenant = be(42, 8);
  const std::string id = unhex("550e8400e29b41d4a716446655440000");
  const frame::Value row[] = {binary(tenant), binary("hello"), binary(id)};
  const frame::Value key_only[] = {binary(tenant), binary(id)};
  std::string a = "x", b = "x";
  ASSERT_TRUE(encode_row_key(a, columns, row).ok());
  ASSERT_TRUE(encode_row_key(b, columns, key_only).ok());
  EXPECT_EQ(a, b);
  EXPECT_EQ(hex(a),
            "78"
            "800000000000002a"
            "550e8400e29b41d4a716446655440000");
  // From the application side: the same key from text.
  std::string c = "x";
  ASSERT_TRUE(encode_key_column_from_text(c, type_oid::kInt8, "42").ok());
  ASSERT_TRUE(
      encode_key_column_from_text(c, type_oid::kUuid, "550e8400-e29b-41d4-a716-446655440000").ok());
  EXPECT_EQ(c, a);
  // From a frame::Tuple (values as a message carries them).
  std::string bytes;
  for (const frame::Value& v : row) {
    bytes += static_cast<char>(v.kind);
    uint8_t buf[frame::kMaxVarintBytes];
    bytes.append(reinterpret_cast<char*>(buf), frame::store_varint(buf, v.data.size()));
    bytes.append(v.data);
  }
  std::string d = "x";
  ASSERT_TRUE(encode_row_key(d, columns, frame::Tuple(bytes, 3)).ok());
  EXPECT_EQ(d, a);
  // Decoded back to text, column by column.
  std::vector<std::string> texts;
  const uint32_t types[] = {type_oid::kInt8, type_oid::kUuid};
  ASSERT_TRUE(decode_key_text(types, std::string_view(a).substr(1), texts).ok());
  EXPECT_EQ(texts, (std::vector<std::string>{"42", "550e8400-e29b-41d4-a716-446655440000"}));
}

TEST(KeyCodecRowKey, Refusals) {
  const std::vector<frame::Column> columns = {{"tenant", type_oid::kInt8, -1, true},
                                              {"body", type_oid::kText, -1, false},
                                              {"id", type_oid::kInt4, -1, true}};
  const std::string tenant = be(42, 8);
  std::string key = "unchanged";
  {
    const frame::Value row[] = {binary(tenant), binary("b"), {frame::ValueKind::kNull, {}}};
    CodecStatus st = encode_row_key(key, columns, row);
    EXPECT_EQ(st.error, CodecError::kNull);
    EXPECT_EQ(st.message, "column \"id\": key column is null");
  }
  {
    const frame::Value row[] = {
        binary(tenant), binary("b"), {frame::ValueKind::kUnchangedToast, {}}};
    EXPECT_EQ(encode_row_key(key, columns, row).error, CodecError::kUnchangedToast);
  }
  {
    const frame::Value row[] = {binary(tenant), binary("b"), binary("xyz")};
    CodecStatus st = encode_row_key(key, columns, row);
    EXPECT_EQ(st.error, CodecError::kBadValue);
    EXPECT_EQ(st.message,
              "column \"id\": malformed binary value for type integer: 3 bytes instead of 4");
  }
  {
    const frame::Value row[] = {binary(tenant)};
    EXPECT_EQ(encode_row_key(key, columns, row).error, CodecError::kBadTuple);
  }
  {
    const std::vector<frame::Column> no_key = {{"a", type_oid::kInt8, -1, false}};
    const frame::Value row[] = {binary(tenant)};
    EXPECT_EQ(encode_row_key(key, no_key, row).error, CodecError::kBadKey);
  }
  EXPECT_EQ(key, "unchanged");  // nothing appended by a failed call
}

// --- text path = binary path ---------------------------------------------------------------

// A value as PostgreSQL 15 sent it (send format), and texts an application may give for it.
struct SameValue {
  uint32_t oid;
  const char* send_hex;
  std::vector<const char*> texts;
};

TEST(KeyCodecText, TextKeysEqualBinaryKeys) {
  const SameValue cases[] = {
      {type_oid::kBool, "01", {"t", "true", "TRUE", "yes", "on", "1", " t "}},
      {type_oid::kBool, "00", {"f", "false", "no", "off", "0"}},
      {type_oid::kInt2, "002a", {"42", " 42 ", "+42", "00042"}},
      {type_oid::kInt4, "80000000", {"-2147483648"}},
      {type_oid::kInt8, "7fffffffffffffff", {"9223372036854775807"}},
      {type_oid::kOid, "ffffffff", {"4294967295", "-1"}},
      {type_oid::kFloat4, "3fc00000", {"1.5", "1.50", "15e-1", "0x1.8p0"}},
      {type_oid::kFloat4, "80000000", {"-0", "0"}},  // -0 and 0: one key
      {type_oid::kFloat8, "7ff8000000000000", {"NaN", "nan", "  NaN  "}},
      {type_oid::kFloat8, "fff8000000000000", {"NaN"}},  // a NaN with the sign bit: the same key
      {type_oid::kFloat8, "fff0000000000000", {"-Infinity", "-inf"}},
      {type_oid::kFloat8, "3fb999999999999a", {"0.1", ".1", "1e-1"}},
      {type_oid::kNumeric, "000200000000000200011388", {"1.50", "1.5", "1.500", "15e-1", "+1.5"}},
      {type_oid::kNumeric, "0000000000000003", {"0", "-0", "0.000", "0e10"}},
      {type_oid::kNumeric,
       "000b000700000009000c0d801ed204d2162e23340d801ed204d2162e2328",
       {"123456789012345678901234567890.123456789"}},
      {type_oid::kNumeric, "00000000d0000020", {"Infinity", "inf", "+inf"}},
      {type_oid::kText, "61636d65", {"acme"}},
      {type_oid::kText, "", {""}},
      {type_oid::kVarchar,
       "c3bc6ec3af",
       {"\xc3\xbc"
        "n\xc3\xaf"}},
      {type_oid::kBpchar, "6162202020", {"ab", "ab ", "ab     "}},
      {type_oid::kName, "616263", {"abc"}},
      {type_oid::kBytea, "00ff10", {"\\x00ff10", "\\x00FF10", "\\x 00 ff 10", "\\000\\377\\020"}},
      {type_oid::kUuid,
       "550e8400e29b41d4a716446655440000",
       {"550e8400-e29b-41d4-a716-446655440000", "{550e8400-e29b-41d4-a716-446655440000}",
        "550E8400E29B41D4A716446655440000", "550e8400-e29b41d4-a716446655440000"}},
      {type_oid::kDate, "000022b7", {"2024-05-01", " 2024-05-01 ", "2024-5-1", "2024-05-01 AD"}},
      {type_oid::kDate, "fff49d7b", {"0044-03-15 BC"}},
      {type_oid::kDate, "7fffffff", {"infinity", "Infinity"}},
      {type_oid::kTime, "0000000a0efec2d0", {"12:00:01.25", "12:00:01.250000"}},
      {type_oid::kTimestamp,
       "0002ba61fea15000",
       {"2024-05-01 12:00:00", "2024-05-01T12:00:00", "2024-05-01 12:00", "2024-05-01 12:00:00+02",
        "2024-05-01T12:00:00Z"}},  // timestamp ignores a zone, as PostgreSQL does
      {type_oid::kTimestamp, "fe3d01df1844f000", {"2024-05-01 12:00:00 BC"}},
      {type_oid::kTimestamptz,
       "0002ba61fea15000",
       {"2024-05-01 12:00:00+00", "2024-05-01T12:00:00Z", "2024-05-01 12:00:00",
        "2024-05-01 12:00:00 UTC", "2024-05-01 17:30:00+05:30", "2024-05-01 07:00:00-05",
        "2024-05-01 17:30:00 +0530"}},
      {type_oid::kTimestamptz,
       "0002ba61fea33240",
       {"2024-05-01 12:00:00.123456+00", "2024-05-01T12:00:00.1234565Z"}},
      {type_oid::kTimestamptz, "0002ba57efb5a000", {"2024-05-01", "2024-05-01 00:00:00+00"}},
      {type_oid::kTimestamptz, "fffca2fec4c82000", {"epoch", "1970-01-01 00:00:00+00"}},
  };
  size_t checked = 0;
  for (const SameValue& c : cases) {
    const std::string expected = key_of(c.oid, unhex(c.send_hex));
    for (const char* t : c.texts) {
      EXPECT_EQ(hex(key_of_text(c.oid, t)), hex(expected)) << c.oid << " \"" << t << "\"";
      // A TEXT value of the type gives the same key as well.
      std::string key;
      ASSERT_TRUE(encode_key_column(key, c.oid, text_value(t)).ok()) << t;
      EXPECT_EQ(hex(key), hex(expected)) << c.oid << " \"" << t << "\"";
      ++checked;
    }
  }
  EXPECT_GT(checked, 90u);
  // name: cut to 63 bytes, as namein does (without splitting a character).
  EXPECT_EQ(key_of_text(type_oid::kName, std::string(70, 'x')),
            key_of(type_oid::kName, std::string(63, 'x')));
  std::string e40;
  for (int i = 0; i < 40; ++i) e40 += "\xc3\xa9";
  EXPECT_EQ(key_of_text(type_oid::kName, e40), key_of(type_oid::kName, e40.substr(0, 62)));
}

TEST(KeyCodecText, Refusals) {
  std::string key = "unchanged";
  const struct {
    uint32_t oid;
    const char* text;
    CodecError error;
    const char* message;
  } cases[] = {
      {1186, "1 day", CodecError::kUnsupported,
       "key columns of type unknown type (oid 1186) cannot be given as text"},
      {type_oid::kJsonb, "{}", CodecError::kUnsupported,
       "key columns of type jsonb cannot be given as text"},
      {type_oid::kJson, "{}", CodecError::kUnsupported,
       "key columns of type json cannot be given as text"},
      {1007, "{1,2}", CodecError::kUnsupported,
       "key columns of type unknown type (oid 1007) cannot be given as text"},
      {type_oid::kInt4, "abc", CodecError::kBadText,
       "invalid input syntax for type integer: \"abc\""},
      {type_oid::kInt8, "9223372036854775808", CodecError::kOutOfRange,
       "value \"9223372036854775808\" is out of range for type bigint"},
      {type_oid::kUuid, "550e8400", CodecError::kBadText,
       "invalid input syntax for type uuid: \"550e8400\""},
      {type_oid::kTimestamptz, "2024-02-30 12:00:00+00", CodecError::kOutOfRange,
       "date/time field value out of range: \"2024-02-30 12:00:00+00\""},
      {type_oid::kTimestamptz, "May 1, 2024", CodecError::kBadText,
       "invalid input syntax for type timestamp with time zone: \"May 1, 2024\""},
      {type_oid::kDate, "2024-05-01 12:00:00", CodecError::kBadText,
       "invalid input syntax for type date: \"2024-05-01 12:00:00\""},
      {type_oid::kBool, "maybe", CodecError::kBadText,
       "invalid input syntax for type boolean: \"maybe\""},
      {type_oid::kNumeric, "1.2.3", CodecError::kBadText,
       "invalid input syntax for type numeric: \"1.2.3\""},
      {type_oid::kBytea, "\\x0", CodecError::kBadText,
       "invalid hexadecimal data: odd number of digits"},
  };
  for (const auto& c : cases) {
    CodecStatus st = encode_key_column_from_text(key, c.oid, c.text);
    EXPECT_EQ(st.error, c.error) << c.text;
    EXPECT_EQ(st.message, c.message);
  }
  // A TEXT value of a known type that does not parse.
  EXPECT_EQ(encode_key_column(key, type_oid::kInt4, text_value("x")).error, CodecError::kBadText);
  // NULL and UNCHANGED_TOAST.
  EXPECT_EQ(encode_key_column(key, type_oid::kText, {frame::ValueKind::kNull, {}}).error,
            CodecError::kNull);
  EXPECT_EQ(encode_key_column(key, type_oid::kText, {frame::ValueKind::kUnchangedToast, {}}).error,
            CodecError::kUnchangedToast);
  // Malformed binary values.
  for (const auto& [oid, send] : std::vector<std::pair<uint32_t, std::string>>{
           {type_oid::kInt4, unhex("000001")},
           {type_oid::kBool, ""},
           {type_oid::kUuid, unhex("0011")},
           {type_oid::kFloat4, unhex("0000000000000000")},
           {type_oid::kNumeric, unhex("0001")},
           {type_oid::kNumeric, unhex("0001000000000000")},
           {type_oid::kNumeric, unhex("0001000012340000000a")},
           {type_oid::kNumeric, unhex("00010000000000002710")},
           {type_oid::kNumeric, unhex("000200000000000000011388")},  // 1.5 with scale 0
           {type_oid::kNumeric, unhex("0000000000004000")},          // scale beyond 0x3FFF
           {type_oid::kName, std::string(64, 'x')}}) {
    EXPECT_EQ(encode_key_column(key, oid, binary(send)).error, CodecError::kBadValue)
        << oid << " " << hex(send);
  }
  EXPECT_EQ(key, "unchanged");
}

// --- decoding --------------------------------------------------------------------------------

TEST(KeyCodecDecode, RoundTripsOfRandomValues) {
  // Values of every type: key -> send format -> the same key; key -> text -> the same key.
  std::vector<std::pair<uint32_t, std::string>> values;
  for (int k = 0; k < 200; ++k) {
    values.emplace_back(type_oid::kInt2, be(static_cast<uint64_t>(random_int(-32768, 32767)), 2));
    values.emplace_back(type_oid::kInt4,
                        be(static_cast<uint64_t>(random_int(INT32_MIN, INT32_MAX)), 4));
    values.emplace_back(type_oid::kInt8,
                        be(static_cast<uint64_t>(random_int(INT64_MIN, INT64_MAX)), 8));
    values.emplace_back(type_oid::kOid, be(rng()() & 0xffffffff, 4));
    values.emplace_back(type_oid::kBool, be(rng()() % 2, 1));
    values.emplace_back(type_oid::kFloat8, be(rng()(), 8));
    values.emplace_back(type_oid::kFloat4, be(rng()() & 0xffffffff, 4));
    values.emplace_back(type_oid::kDate,
                        be(static_cast<uint64_t>(random_int(-2451545, 2145031948)), 4));
    values.emplace_back(type_oid::kTime, be(static_cast<uint64_t>(random_int(0, 86400000000)), 8));
    values.emplace_back(
        type_oid::kTimestamp,
        be(static_cast<uint64_t>(random_int(-211813488000000000, 9223371331199999999)), 8));
    values.emplace_back(
        type_oid::kTimestamptz,
        be(static_cast<uint64_t>(random_int(-211813488000000000, 9223371331199999999)), 8));
    values.emplace_back(type_oid::kNumeric, send_of(type_oid::kNumeric, random_dec().text));
    std::string u;
    for (int i = 0; i < 16; ++i) u += static_cast<char>(rng()());
    values.emplace_back(type_oid::kUuid, u);
    const auto strings = byte_strings(
        "\x01"
        "ab\xc3\xa9 ",
        2);
    values.emplace_back(type_oid::kText, strings[1]);
    values.emplace_back(type_oid::kBpchar, strings[1]);
    values.emplace_back(type_oid::kBytea, byte_strings(std::string_view("\x00\xff"
                                                                        "a",
                                                                        3),
                                                       2)[1]);
  }
  for (uint32_t oid : {type_oid::kDate, type_oid::kTimestamp}) {
    values.emplace_back(oid, oid == type_oid::kDate ? be(0x7fffffff, 4) : be(INT64_MAX, 8));
    values.emplace_back(oid, oid == type_oid::kDate ? be(0x80000000, 4) : be(1ull << 63, 8));
  }
  for (const auto& [oid, send] : values) {
    const std::string key = key_of(oid, send);
    // Key -> send format -> key.
    std::string_view rest = key;
    std::string decoded;
    CodecStatus st = decode_key_column(oid, rest, decoded);
    ASSERT_TRUE(st.ok()) << oid << " " << hex(key) << ": " << st.message;
    EXPECT_TRUE(rest.empty());
    EXPECT_EQ(hex(key_of(oid, decoded)), hex(key)) << oid;
    // The send format comes back unchanged, except where the key normalises the value.
    if (oid != type_oid::kNumeric && oid != type_oid::kBpchar && oid != type_oid::kFloat4 &&
        oid != type_oid::kFloat8) {
      EXPECT_EQ(hex(decoded), hex(send)) << oid;
    }
    // Key -> text -> key (as an application would give it back).
    rest = key;
    std::string text;
    st = decode_key_column_text(oid, rest, text);
    ASSERT_TRUE(st.ok()) << oid << " " << hex(key) << ": " << st.message;
    EXPECT_EQ(hex(key_of_text(oid, text)), hex(key)) << oid << " " << text;
  }
}

TEST(KeyCodecDecode, TextOfKeys) {
  const struct {
    uint32_t oid;
    const char* input;
    const char* text;
  } cases[] = {
      {type_oid::kNumeric, "1.50", "1.5"},  // the value, without its display scale
      {type_oid::kNumeric, "100.00", "100"},
      {type_oid::kNumeric, "-0.000120", "-0.00012"},
      {type_oid::kNumeric, "1e-20", "0.00000000000000000001"},
      {type_oid::kNumeric, "12345678.9", "12345678.9"},
      {type_oid::kNumeric, "-Infinity", "-Infinity"},
      {type_oid::kBpchar, "ab   ", "ab"},
      {type_oid::kFloat8, "-0", "0"},
      {type_oid::kFloat8, "1e+300", "1e+300"},
      {type_oid::kTimestamptz, "2024-05-01 17:30:00.5+05:30", "2024-05-01 12:00:00.5+00"},
      {type_oid::kTimestamp, "0044-03-15 10:00:00 BC", "0044-03-15 10:00:00 BC"},
      {type_oid::kDate, "-infinity", "-infinity"},
      {type_oid::kBytea, "\\x0001ff", "\\x0001ff"},
      {type_oid::kBool, "yes", "t"},
  };
  for (const auto& c : cases) {
    const std::string key = key_of_text(c.oid, c.input);
    std::string_view rest = key;
    std::string text;
    ASSERT_TRUE(decode_key_column_text(c.oid, rest, text).ok()) << c.input;
    EXPECT_EQ(text, c.text);
  }
  // Types outside the list: hex of the bytes, whatever they were.
  std::string key;
  ASSERT_TRUE(encode_key_column(key, 1186, text_value("1 day")).ok());
  std::vector<std::string> texts;
  const uint32_t types[] = {1186};
  ASSERT_TRUE(decode_key_text(types, key, texts).ok());
  EXPECT_EQ(texts[0], "\\x3120646179");
}

TEST(KeyCodecDecode, MalformedKeysAreRefused) {
  const struct {
    uint32_t oid;
    const char* key_hex;
  } cases[] = {
      {type_oid::kInt4, "800000"},              // truncated
      {type_oid::kBool, "02"},                  // not 0 or 1
      {type_oid::kUuid, "00"},                  // truncated
      {type_oid::kText, "6162"},                // no terminator
      {type_oid::kText, "616200"},              // escape at the end
      {type_oid::kText, "61620002"},            // 00 followed by neither FF nor 01
      {type_oid::kBpchar, "61200001"},          // a trailing space is never encoded
      {type_oid::kFloat8, "7fffffffffffffff"},  // the key of -0, never encoded
      {type_oid::kFloat4, "00013b3b"},          // a NaN other than all ones (found by fuzzing)
      {type_oid::kFloat8, "fff8000000000000"},  // a positive NaN's bits, never encoded
      {type_oid::kNumeric, ""},                 // empty
      {type_oid::kNumeric, "07"},               // unknown tag
      {type_oid::kNumeric, "0480"},             // truncated exponent
      {type_oid::kNumeric, "0480000002"},       // truncated digits
      {type_oid::kNumeric, "04800000010000"},   // leading zero digit (not canonical)
      {type_oid::kNumeric,
       "0480000002"
       "0001"
       "0000"},  // trailing zero digit
      {type_oid::kNumeric,
       "0480002712"
       "0000"},  // digit 10000
      {type_oid::kNumeric,
       "048000"
       "0000"},  // no digits
  };
  for (const auto& c : cases) {
    const std::string key = unhex(c.key_hex);
    std::string_view rest = key;
    std::string out;
    CodecStatus st = decode_key_column(c.oid, rest, out);
    EXPECT_EQ(st.error, CodecError::kBadKey) << c.oid << " " << c.key_hex;
    EXPECT_FALSE(st.message.empty());
  }
  // Bytes left over, or a column missing.
  std::vector<std::string> texts;
  const uint32_t one[] = {type_oid::kInt4};
  const uint32_t two[] = {type_oid::kInt4, type_oid::kInt4};
  EXPECT_EQ(decode_key_text(one, unhex("8000002a00"), texts).error, CodecError::kBadKey);
  CodecStatus st = decode_key_text(two, unhex("8000002a"), texts);
  EXPECT_EQ(st.error, CodecError::kBadKey);
  EXPECT_EQ(st.message, "key column 2: malformed key column of type integer: truncated");
  // A time key beyond 24:00:00 decodes but has no text.
  std::string_view rest = "\x80\x00\x00\x14\x1d\xd7\x60\x01";
  std::string text;
  EXPECT_EQ(decode_key_column_text(type_oid::kTime, rest, text).error, CodecError::kBadKey);
}

TEST(KeyCodecOrderInfo, SqlOrderAndPrefixEnds) {
  for (uint32_t oid :
       {type_oid::kInt4, type_oid::kNumeric, type_oid::kText, type_oid::kBpchar, type_oid::kBytea,
        type_oid::kUuid, type_oid::kTimestamptz, type_oid::kFloat8}) {
    EXPECT_TRUE(key_order_is_sql_order(oid)) << oid;
  }
  EXPECT_FALSE(key_order_is_sql_order(1186));
  EXPECT_FALSE(key_order_is_sql_order(type_oid::kJsonb));
  EXPECT_EQ(key_prefix_end(""), "");
  EXPECT_EQ(key_prefix_end("a"), "b");
  EXPECT_EQ(key_prefix_end("a\xff\xff"), "b");
  EXPECT_EQ(key_prefix_end("\xff"), "");
  EXPECT_EQ(key_prefix_end(std::string("a\0", 2)), std::string("a\1", 2));
}

// Regressions found by fuzz/replica_codec_fuzz.cpp: a refused column leaves the key as it was,
// and a key no encoder produces is refused.
TEST(KeyCodecRegressions, RefusedColumnsConsumeNothing) {
  const std::string bpchar_with_space("a \x00\x01", 4);
  std::string_view key = bpchar_with_space;
  std::string send;
  EXPECT_EQ(decode_key_column(type_oid::kBpchar, key, send).error, CodecError::kBadKey);
  EXPECT_EQ(key.size(), bpchar_with_space.size()) << "a refused bpchar column must not be consumed";
  const std::string long_name = std::string(64, 'a') + std::string("\x00\x01", 2);
  key = long_name;
  EXPECT_EQ(decode_key_column(type_oid::kName, key, send).error, CodecError::kBadKey);
  EXPECT_EQ(key.size(), long_name.size());
  const std::string ok_name = std::string(63, 'a') + std::string("\x00\x01", 2);
  key = ok_name;
  EXPECT_TRUE(decode_key_column(type_oid::kName, key, send).ok());
  EXPECT_TRUE(key.empty());
}

}  // namespace
}  // namespace edgeshard::apply

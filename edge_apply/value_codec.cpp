// PostgreSQL values in the change stream's encoding: text form, JSON, typed accessors, and text
// input parsed into send formats. Each type's rules follow PostgreSQL 15's input and output
// functions (utils/adt/*.c); where this code differs, KEYS.md says so.
#include "edge_apply/value_codec.hpp"

#include "common/frame_codec.hpp"
#include "common/frame_json.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <system_error>

namespace edgeshard::apply {

namespace {

constexpr char kHexLower[] = "0123456789abcdef";

// PostgreSQL's calendar constants (datatype/timestamp.h).
constexpr int64_t kUsecsPerDay = 86400000000;
constexpr int64_t kUsecsPerSec = 1000000;
constexpr int32_t kPostgresEpochJdate = 2451545;  // date2j(2000, 1, 1)
constexpr int32_t kDateNoBegin = std::numeric_limits<int32_t>::min();
constexpr int32_t kDateNoEnd = std::numeric_limits<int32_t>::max();
constexpr int64_t kTimestampNoBegin = std::numeric_limits<int64_t>::min();
constexpr int64_t kTimestampNoEnd = std::numeric_limits<int64_t>::max();
// Valid dates: Julian day 0 (4714-11-24 BC) up to 5874897-12-31; timestamps: from Julian day 0
// to before 294277-01-01 (TIMESTAMP_END_JULIAN = 109203528).
constexpr int64_t kDateMinDays = -kPostgresEpochJdate;
constexpr int64_t kDateEndDays = 2147483494 - kPostgresEpochJdate;  // DATE_END_JULIAN
constexpr int64_t kTimestampMin = -int64_t{kPostgresEpochJdate} * kUsecsPerDay;
constexpr int64_t kTimestampEnd = (int64_t{109203528} - kPostgresEpochJdate) * kUsecsPerDay;

// numeric's send format (utils/adt/numeric.c).
constexpr uint16_t kNumericPos = 0x0000;
constexpr uint16_t kNumericNeg = 0x4000;
constexpr uint16_t kNumericNan = 0xC000;
constexpr uint16_t kNumericPinf = 0xD000;
constexpr uint16_t kNumericNinf = 0xF000;
constexpr int kNumericDscaleMax = 0x3FFF;
constexpr int64_t kNumericMaxExponent = 1073741822;  // numeric_in: |exponent| < INT_MAX / 2
constexpr int kNameDataLen = 64;                     // NAMEDATALEN: name holds at most 63 bytes

// Builds a failed status.
CodecStatus fail(CodecError e, std::string message) { return CodecStatus{e, std::move(message)}; }

// The text quoted for an error message, cut to a readable length.
std::string quoted(std::string_view text) {
  constexpr size_t kMax = 80;
  std::string q = "\"";
  q.append(text.substr(0, kMax));
  if (text.size() > kMax) q += "...";
  q += '"';
  return q;
}

// "invalid input syntax for type X: "text"" (PostgreSQL's 22P02 wording).
CodecStatus bad_text(uint32_t type, std::string_view text) {
  return fail(CodecError::kBadText,
              "invalid input syntax for type " + type_name(type) + ": " + quoted(text));
}

// "value "text" is out of range for type X" (22003).
CodecStatus out_of_range(uint32_t type, std::string_view text) {
  return fail(CodecError::kOutOfRange,
              "value " + quoted(text) + " is out of range for type " + type_name(type));
}

// A BINARY value malformed for its type.
CodecStatus bad_value(uint32_t type, std::string_view why) {
  return fail(CodecError::kBadValue,
              "malformed binary value for type " + type_name(type) + ": " + std::string(why));
}

// The status for a value that is not a value (NULL, UNCHANGED_TOAST) where one is needed.
CodecStatus not_a_value(const frame::Value& v) {
  if (v.kind == frame::ValueKind::kNull) return fail(CodecError::kNull, "value is null");
  return fail(CodecError::kUnchangedToast, "value is an unchanged toasted value (not sent)");
}

// Big-endian loads and stores of the send formats.
uint64_t load_be(const char* p, size_t n) noexcept {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
void append_be(std::string& out, uint64_t v, size_t n) {
  for (size_t i = n; i-- > 0;) out += static_cast<char>(static_cast<uint8_t>(v >> (8 * i)));
}

// Whether c is a space for PostgreSQL's input functions (isspace() in the C locale).
bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// text without leading and trailing spaces.
std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Appends v in decimal.
template <typename Int>
void append_int(std::string& out, Int v) {
  char buf[24];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, res.ptr);
}

// Appends v in decimal, zero-padded to at least `width` digits (v >= 0).
void append_padded(std::string& out, int64_t v, int width) {
  char buf[24];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  for (auto n = res.ptr - buf; n < width; ++n) out += '0';
  out.append(buf, res.ptr);
}

// Appends bytes as lowercase hex.
void append_hex(std::string& out, std::string_view bytes) {
  for (char c : bytes) {
    const auto b = static_cast<uint8_t>(c);
    out += kHexLower[b >> 4];
    out += kHexLower[b & 0xf];
  }
}

// --- calendar (PostgreSQL's date2j / j2date, proleptic Gregorian) -------------------------

// Julian day of a date; year is astronomical (1 BC = 0).
int64_t date2j(int64_t year, int64_t month, int64_t day) noexcept {
  if (month > 2) {
    month += 1;
    year += 4800;
  } else {
    month += 13;
    year += 4799;
  }
  const int64_t century = year / 100;
  int64_t julian = year * 365 - 32167;
  julian += year / 4 - century + century / 4;
  julian += 7834 * month / 256 + day;
  return julian;
}

// Date of a Julian day (0 .. INT32_MAX); year astronomical.
void j2date(int64_t jd, int& year, int& month, int& day) noexcept {
  uint64_t julian = static_cast<uint64_t>(jd) + 32044;
  uint64_t quad = julian / 146097;
  const uint64_t extra = (julian - quad * 146097) * 4 + 3;
  julian += 60 + quad * 3 + extra / 146097;
  quad = julian / 1461;
  julian -= quad * 1461;
  int64_t y = static_cast<int64_t>(julian * 4 / 1461);
  julian = ((y != 0) ? ((julian + 305) % 365) : ((julian + 306) % 366)) + 123;
  y += static_cast<int64_t>(quad * 4);
  year = static_cast<int>(y - 4800);
  quad = julian * 2141 / 65536;
  day = static_cast<int>(julian - 7834 * quad / 256);
  month = static_cast<int>((quad + 10) % 12 + 1);
}

// Days in a month of an astronomical year.
int days_in_month(int64_t year, int month) noexcept {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0) && (year % 100 != 0 || year % 400 == 0);
  return month == 2 && leap ? 29 : kDays[month - 1];
}

// Appends YYYY-MM-DD of a Julian day (the year without sign; the caller adds " BC").
void append_ymd(std::string& out, int year, int month, int day) {
  append_padded(out, year > 0 ? year : -(year - 1), 4);
  out += '-';
  append_padded(out, month, 2);
  out += '-';
  append_padded(out, day, 2);
}

// Appends HH:MM:SS[.ffffff] of a time of day in microseconds (trailing zeros of the fraction
// dropped, as PostgreSQL's AppendSeconds does).
void append_hms(std::string& out, int64_t us) {
  const int64_t sec = us / kUsecsPerSec;
  int64_t frac = us % kUsecsPerSec;
  append_padded(out, sec / 3600, 2);
  out += ':';
  append_padded(out, sec / 60 % 60, 2);
  out += ':';
  append_padded(out, sec % 60, 2);
  if (frac != 0) {
    int width = 6;
    while (frac % 10 == 0) {
      frac /= 10;
      --width;
    }
    out += '.';
    append_padded(out, frac, width);
  }
}

// Appends a date (days since 2000-01-01) as date_out prints it.
void append_date(std::string& out, int32_t days) {
  if (days == kDateNoBegin) {
    out += "-infinity";
  } else if (days == kDateNoEnd) {
    out += "infinity";
  } else {
    int y, m, d;
    j2date(int64_t{days} + kPostgresEpochJdate, y, m, d);
    append_ymd(out, y, m, d);
    if (y <= 0) out += " BC";
  }
}

// Appends a timestamp (microseconds since 2000-01-01) as timestamp_out / timestamptz_out print it
// with DateStyle ISO and TimeZone UTC; `xsd` is the JSON variant ('T', "+00:00").
void append_timestamp(std::string& out, int64_t ts, bool with_zone, bool xsd) {
  if (ts == kTimestampNoBegin) {
    out += "-infinity";
    return;
  }
  if (ts == kTimestampNoEnd) {
    out += "infinity";
    return;
  }
  int64_t date = ts / kUsecsPerDay;
  int64_t time = ts % kUsecsPerDay;
  if (time < 0) {
    time += kUsecsPerDay;
    date -= 1;
  }
  int y, m, d;
  j2date(date + kPostgresEpochJdate, y, m, d);
  append_ymd(out, y, m, d);
  out += xsd ? 'T' : ' ';
  append_hms(out, time);
  if (with_zone) out += xsd ? "+00:00" : "+00";
  if (y <= 0) out += " BC";
}

// Whether a timestamp is infinite or in PostgreSQL's range (timestamp_recv's check).
bool timestamp_valid(int64_t ts) noexcept {
  return ts == kTimestampNoBegin || ts == kTimestampNoEnd ||
         (ts >= kTimestampMin && ts < kTimestampEnd);
}

// Whether a date is infinite or in PostgreSQL's range (date_recv's check).
bool date_valid(int32_t days) noexcept {
  return days == kDateNoBegin || days == kDateNoEnd ||
         (days >= kDateMinDays && days < kDateEndDays);
}

// --- floats ----------------------------------------------------------------------------------

// Appends a float as float4out/float8out print it with extra_float_digits = 1: the shortest
// digits that read back exactly, in fixed notation when the decimal exponent is in
// [-4, digits) (digits = 6 for float4, 15 for float8), else as d.ddde+XX.
template <typename F>
void append_float(std::string& out, F v, int digits) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v < 0 ? "-Infinity" : "Infinity";
    return;
  }
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view s(buf, static_cast<size_t>(res.ptr - buf));
  const bool negative = !s.empty() && s[0] == '-';
  if (negative) s.remove_prefix(1);
  const size_t e = s.find('e');
  std::string mantissa;
  for (char c : s.substr(0, e)) {
    if (c != '.') mantissa += c;
  }
  int exp10 = 0;
  std::string_view exp_text = s.substr(e + 1);
  if (!exp_text.empty() && exp_text[0] == '+') exp_text.remove_prefix(1);
  std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exp10);
  if (negative) out += '-';
  const int n = static_cast<int>(mantissa.size());
  if (exp10 < -4 || exp10 >= digits) {
    out += mantissa[0];
    if (n > 1) {
      out += '.';
      out.append(mantissa, 1);
    }
    out += 'e';
    out += exp10 < 0 ? '-' : '+';
    append_padded(out, exp10 < 0 ? -exp10 : exp10, 2);
  } else if (exp10 >= 0) {
    if (n <= exp10 + 1) {
      out += mantissa;
      out.append(static_cast<size_t>(exp10 + 1 - n), '0');
    } else {
      out.append(mantissa, 0, static_cast<size_t>(exp10 + 1));
      out += '.';
      out.append(mantissa, static_cast<size_t>(exp10 + 1));
    }
  } else {
    out += "0.";
    out.append(static_cast<size_t>(-exp10 - 1), '0');
    out += mantissa;
  }
}

// float4 / float8 values of the send formats.
float load_float4(std::string_view d) noexcept {
  const auto bits = static_cast<uint32_t>(load_be(d.data(), 4));
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
double load_float8(std::string_view d) noexcept {
  const uint64_t bits = load_be(d.data(), 8);
  double f;
  std::memcpy(&f, &bits, 8);
  return f;
}

// --- numeric ---------------------------------------------------------------------------------

// A numeric in its send format, checked as numeric_recv checks it.
struct Numeric {
  uint16_t sign = kNumericPos;
  int16_t weight = 0;
  uint16_t dscale = 0;
  const char* digits = nullptr;  // ndigits big-endian int16 base-10000 digits
  int ndigits = 0;

  // Base-10000 digit i (0 .. ndigits-1).
  int digit(int i) const noexcept { return static_cast<int>(load_be(digits + 2 * i, 2)); }
};

// Decodes and checks a numeric send format.
bool decode_numeric(std::string_view d, Numeric& n, std::string& why) {
  if (d.size() < 8) {
    why = "shorter than its 8-byte header";
    return false;
  }
  const auto ndigits = static_cast<int16_t>(load_be(d.data(), 2));
  n.weight = static_cast<int16_t>(load_be(d.data() + 2, 2));
  n.sign = static_cast<uint16_t>(load_be(d.data() + 4, 2));
  n.dscale = static_cast<uint16_t>(load_be(d.data() + 6, 2));
  if (ndigits < 0 || d.size() != 8 + 2 * static_cast<size_t>(ndigits)) {
    why = "digit count does not match its length";
    return false;
  }
  if (n.sign != kNumericPos && n.sign != kNumericNeg && n.sign != kNumericNan &&
      n.sign != kNumericPinf && n.sign != kNumericNinf) {
    why = "invalid sign";
    return false;
  }
  if ((n.dscale & 0xC000) != 0) {
    why = "invalid scale";
    return false;
  }
  n.digits = d.data() + 8;
  n.ndigits = ndigits;
  int last = -1;  // last non-zero digit
  for (int i = 0; i < n.ndigits; ++i) {
    if (n.digit(i) >= 10000) {
      why = "digit out of range";
      return false;
    }
    if (n.digit(i) != 0) last = i;
  }
  // Digits the display scale hides never come from PostgreSQL (numeric_recv truncates them);
  // they would make the text and the key denote different values.
  if ((n.sign == kNumericPos || n.sign == kNumericNeg) && last >= 0 && last > n.weight) {
    int used = (last - n.weight) * 4;
    for (int d = n.digit(last); d % 10 == 0; d /= 10) --used;
    if (used > n.dscale) {
      why = "digits beyond the display scale";
      return false;
    }
  }
  return true;
}

// Appends a numeric as numeric_out prints it (get_str_from_var: exactly dscale fraction digits).
void append_numeric(std::string& out, const Numeric& n) {
  switch (n.sign) {
    case kNumericNan:
      out += "NaN";
      return;
    case kNumericPinf:
      out += "Infinity";
      return;
    case kNumericNinf:
      out += "-Infinity";
      return;
    default:
      break;
  }
  const auto digit_at = [&](int i) { return i >= 0 && i < n.ndigits ? n.digit(i) : 0; };
  if (n.sign == kNumericNeg) out += '-';
  int d;
  if (n.weight < 0) {
    d = n.weight + 1;
    out += '0';
  } else {
    for (d = 0; d <= n.weight; ++d) {
      if (d == 0) {
        append_int(out, digit_at(d));
      } else {
        append_padded(out, digit_at(d), 4);
      }
    }
  }
  if (n.dscale > 0) {
    out += '.';
    const size_t end = out.size() + n.dscale;
    for (int i = 0; i < n.dscale; ++d, i += 4) append_padded(out, digit_at(d), 4);
    out.resize(end);
  }
}

// Appends a numeric send format: header and base-10000 digits.
void append_numeric_send(std::string& out, int ndigits, int weight, uint16_t sign, int dscale,
                         const std::vector<int>& digits, size_t first) {
  append_be(out, static_cast<uint16_t>(ndigits), 2);
  append_be(out, static_cast<uint16_t>(static_cast<int16_t>(weight)), 2);
  append_be(out, sign, 2);
  append_be(out, static_cast<uint16_t>(dscale), 2);
  for (int i = 0; i < ndigits; ++i) append_be(out, static_cast<uint16_t>(digits[first + i]), 2);
}

// Parses numeric_in's input (PostgreSQL 15: no underscores, no hex) into the send format.
CodecStatus parse_numeric(std::string_view text, std::string& send) {
  const std::string_view t = trim(text);
  // The special values: the same spellings as float8in's (numeric_in compares prefixes, then
  // allows trailing spaces only, so this is the same set).
  struct Special {
    const char* text;
    uint16_t sign;
    uint16_t dscale;  // numeric_send prints the header bits of the special value here
  };
  static constexpr Special kSpecials[] = {
      {"NaN", kNumericNan, 0},         {"Infinity", kNumericPinf, 32},
      {"+Infinity", kNumericPinf, 32}, {"-Infinity", kNumericNinf, 32},
      {"inf", kNumericPinf, 32},       {"+inf", kNumericPinf, 32},
      {"-inf", kNumericNinf, 32},
  };
  for (const Special& s : kSpecials) {
    if (iequals(t, s.text)) {
      send.clear();
      append_numeric_send(send, 0, 0, s.sign, s.dscale, {}, 0);
      return {};
    }
  }
  size_t i = 0;
  bool negative = false;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) negative = t[i++] == '-';
  std::vector<int> dec;  // decimal digits
  int64_t dweight = -1;  // decimal weight of the first digit
  int64_t dscale = 0;
  bool have_dp = false;
  for (; i < t.size(); ++i) {
    if (is_digit(t[i])) {
      dec.push_back(t[i] - '0');
      if (have_dp) {
        ++dscale;
      } else {
        ++dweight;
      }
    } else if (t[i] == '.' && !have_dp) {
      have_dp = true;
    } else {
      break;
    }
  }
  if (dec.empty()) return bad_text(type_oid::kNumeric, text);
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    bool exp_negative = false;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) exp_negative = t[i++] == '-';
    const size_t start = i;
    int64_t exponent = 0;
    for (; i < t.size() && is_digit(t[i]); ++i) {
      exponent = exponent * 10 + (t[i] - '0');
      // numeric_in refuses such exponents as overflowing the format (smaller ones may still
      // overflow it: weight and scale are checked below).
      if (exponent > kNumericMaxExponent) return out_of_range(type_oid::kNumeric, text);
    }
    if (i == start) return bad_text(type_oid::kNumeric, text);
    if (exp_negative) exponent = -exponent;
    dweight += exponent;
    dscale -= exponent;
    if (dscale < 0) dscale = 0;
  }
  if (i != t.size()) return bad_text(type_oid::kNumeric, text);
  // Group the decimal digits into base-10000 digits aligned on the decimal point.
  int64_t weight;
  if (dweight >= 0) {
    weight = (dweight + 1 + 4 - 1) / 4 - 1;
  } else {
    weight = -((-dweight - 1) / 4 + 1);
  }
  const int64_t offset = (weight + 1) * 4 - (dweight + 1);
  const int64_t ndigits = (static_cast<int64_t>(dec.size()) + offset + 4 - 1) / 4;
  std::vector<int> digits(static_cast<size_t>(ndigits), 0);
  for (size_t k = 0; k < dec.size(); ++k) {
    const int64_t pos = static_cast<int64_t>(k) + offset;
    int& dig = digits[static_cast<size_t>(pos / 4)];
    static constexpr int kScale[] = {1000, 100, 10, 1};
    dig += dec[k] * kScale[pos % 4];
  }
  // Strip leading and trailing zero digits (make_result).
  size_t first = 0, last = digits.size();
  while (first < last && digits[first] == 0) {
    ++first;
    --weight;
  }
  while (last > first && digits[last - 1] == 0) --last;
  if (first == last) {
    weight = 0;
    negative = false;
  }
  if (weight > std::numeric_limits<int16_t>::max() ||
      weight < std::numeric_limits<int16_t>::min() || dscale > kNumericDscaleMax) {
    return out_of_range(type_oid::kNumeric, text);
  }
  send.clear();
  append_numeric_send(send, static_cast<int>(last - first), static_cast<int>(weight),
                      negative ? kNumericNeg : kNumericPos, static_cast<int>(dscale), digits,
                      first);
  return {};
}

// --- other text input ------------------------------------------------------------------------

// Parses a signed decimal integer with optional spaces around it (pg_strtoint16/32/64).
CodecStatus parse_int(uint32_t type, std::string_view text, int64_t min, int64_t max,
                      int64_t& out) {
  std::string_view t = trim(text);
  bool negative = false;
  if (!t.empty() && (t[0] == '+' || t[0] == '-')) {
    negative = t[0] == '-';
    t.remove_prefix(1);
  }
  if (t.empty()) return bad_text(type, text);
  uint64_t magnitude = 0;
  for (char c : t) {
    if (!is_digit(c)) return bad_text(type, text);
    if (magnitude > (std::numeric_limits<uint64_t>::max() - 9) / 10) {
      return out_of_range(type, text);
    }
    magnitude = magnitude * 10 + static_cast<uint64_t>(c - '0');
  }
  if (negative) {
    if (magnitude > static_cast<uint64_t>(max) + 1 ||
        (magnitude > 0 && -static_cast<int64_t>(magnitude - 1) - 1 < min)) {
      return out_of_range(type, text);
    }
    out = magnitude == 0 ? 0 : -static_cast<int64_t>(magnitude - 1) - 1;
  } else {
    if (magnitude > static_cast<uint64_t>(max)) return out_of_range(type, text);
    out = static_cast<int64_t>(magnitude);
  }
  return {};
}

// Parses boolin's input: t/true/y/yes/on/1, f/false/n/no/off/0, any prefix of the words (at
// least two letters for on/off), any case, spaces around.
CodecStatus parse_bool(std::string_view text, bool& out) {
  const std::string_view t = trim(text);
  const auto prefix_of = [&](std::string_view word, size_t min_len) {
    return t.size() >= min_len && t.size() <= word.size() && iequals(t, word.substr(0, t.size()));
  };
  if (prefix_of("true", 1) || prefix_of("yes", 1) || prefix_of("on", 2) || t == "1") {
    out = true;
  } else if (prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || t == "0") {
    out = false;
  } else {
    return bad_text(type_oid::kBool, text);
  }
  return {};
}

// Parses float4in/float8in's input: a decimal number, NaN, [+-]Infinity, [+-]inf, any case,
// spaces around.
template <typename F>
CodecStatus parse_float(uint32_t type, std::string_view text, F& out) {
  std::string_view t = trim(text);
  if (iequals(t, "NaN")) {
    out = std::numeric_limits<F>::quiet_NaN();
    return {};
  }
  bool negative = false;
  std::string_view u = t;
  if (!u.empty() && (u[0] == '+' || u[0] == '-')) {
    negative = u[0] == '-';
    u.remove_prefix(1);
  }
  if (iequals(u, "Infinity") || iequals(u, "inf")) {
    out = negative ? -std::numeric_limits<F>::infinity() : std::numeric_limits<F>::infinity();
    return {};
  }
  // strtod's hexadecimal form (0x1.8p1) is accepted too.
  std::chars_format format = std::chars_format::general;
  if (u.size() > 2 && u[0] == '0' && (u[1] == 'x' || u[1] == 'X')) {
    u.remove_prefix(2);
    format = std::chars_format::hex;
  }
  if (u.empty() || !(is_digit(u[0]) || u[0] == '.' || format == std::chars_format::hex)) {
    return bad_text(type, text);
  }
  F v{};
  const auto res = std::from_chars(u.data(), u.data() + u.size(), v, format);
  if (res.ec == std::errc::result_out_of_range) return out_of_range(type, text);
  if (res.ec != std::errc() || res.ptr != u.data() + u.size()) return bad_text(type, text);
  out = negative ? -v : v;
  return {};
}

// Parses uuid_in's input: 32 hex digits, a '-' allowed after any group of four, optionally in
// braces; no spaces.
CodecStatus parse_uuid(std::string_view text, std::string& send) {
  size_t i = 0;
  const bool braces = !text.empty() && text[0] == '{';
  if (braces) ++i;
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  send.clear();
  for (int b = 0; b < 16; ++b) {
    if (i + 1 >= text.size()) return bad_text(type_oid::kUuid, text);
    const int hi = hex(text[i]), lo = hex(text[i + 1]);
    if (hi < 0 || lo < 0) return bad_text(type_oid::kUuid, text);
    send += static_cast<char>(hi << 4 | lo);
    i += 2;
    if (i < text.size() && text[i] == '-' && b % 2 == 1 && b < 15) ++i;
  }
  if (braces) {
    if (i >= text.size() || text[i] != '}') return bad_text(type_oid::kUuid, text);
    ++i;
  }
  if (i != text.size()) return bad_text(type_oid::kUuid, text);
  return {};
}

// Parses byteain's input: "\x" and hex digit pairs (spaces allowed between pairs), or the escape
// format (bytes as is, "\\" for a backslash, "\ooo" in octal).
CodecStatus parse_bytea(std::string_view text, std::string& send) {
  send.clear();
  if (text.size() >= 2 && text[0] == '\\' && text[1] == 'x') {
    const auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    for (size_t i = 2; i < text.size();) {
      if (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r') {
        ++i;
        continue;
      }
      const int hi = hex(text[i]);
      if (hi < 0) {
        return fail(CodecError::kBadText,
                    "invalid hexadecimal digit: " + quoted(text.substr(i, 1)));
      }
      if (i + 1 >= text.size()) {
        return fail(CodecError::kBadText, "invalid hexadecimal data: odd number of digits");
      }
      const int lo = hex(text[i + 1]);
      if (lo < 0) {
        return fail(CodecError::kBadText,
                    "invalid hexadecimal digit: " + quoted(text.substr(i + 1, 1)));
      }
      send += static_cast<char>(hi << 4 | lo);
      i += 2;
    }
    return {};
  }
  for (size_t i = 0; i < text.size();) {
    if (text[i] != '\\') {
      send += text[i++];
    } else if (i + 1 < text.size() && text[i + 1] == '\\') {
      send += '\\';
      i += 2;
    } else if (i + 3 < text.size() && text[i + 1] >= '0' && text[i + 1] <= '3' &&
               text[i + 2] >= '0' && text[i + 2] <= '7' && text[i + 3] >= '0' &&
               text[i + 3] <= '7') {
      send += static_cast<char>((text[i + 1] - '0') << 6 | (text[i + 2] - '0') << 3 |
                                (text[i + 3] - '0'));
      i += 4;
    } else {
      return bad_text(type_oid::kBytea, text);
    }
  }
  return {};
}

// Cuts a name to NAMEDATALEN - 1 bytes without splitting a UTF-8 character (namein).
std::string_view clip_name(std::string_view s) noexcept {
  if (s.size() < kNameDataLen) return s;
  size_t n = kNameDataLen - 1;
  while (n > 0 && (static_cast<uint8_t>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

// A cursor over date/time text.
struct DateTimeText {
  std::string_view s;
  size_t i = 0;

  bool at_end() const noexcept { return i == s.size(); }
  char peek() const noexcept { return i < s.size() ? s[i] : '\0'; }
  // Reads between min and max digits; false when there are fewer than min.
  bool digits(size_t min, size_t max, int64_t& v) noexcept {
    const size_t start = i;
    v = 0;
    while (i < s.size() && i - start < max && is_digit(s[i])) v = v * 10 + (s[i++] - '0');
    return i - start >= min;
  }
  // Consumes c if it is next.
  bool take(char c) noexcept {
    if (peek() != c) return false;
    ++i;
    return true;
  }
  // Skips spaces.
  void spaces() noexcept {
    while (i < s.size() && is_space(s[i])) ++i;
  }
  // Consumes a word (case-insensitive) if it is next.
  bool word(std::string_view w) noexcept {
    if (s.size() - i < w.size() || !iequals(s.substr(i, w.size()), w)) return false;
    i += w.size();
    return true;
  }
};

// Fields of an ISO 8601 date/time text.
struct DateTimeFields {
  int64_t year = 0, month = 0, day = 0;  // year as written (BC not applied)
  bool bc = false;
  int64_t time_us = 0;  // time of day, may be 86400000000 (24:00:00) or carry from rounding
  bool has_zone = false;
  int64_t zone_seconds = 0;  // east of UTC
};

// Parses YYYY-MM-DD (4 to 7 year digits).
bool parse_ymd(DateTimeText& c, DateTimeFields& f) {
  return c.digits(4, 7, f.year) && c.take('-') && c.digits(1, 2, f.month) && c.take('-') &&
         c.digits(1, 2, f.day);
}

// Parses HH:MM[:SS[.fraction]]; the fraction is rounded to microseconds as PostgreSQL does
// (strtod, then rint). Returns false on a syntax error; range errors set `range`.
bool parse_hms(DateTimeText& c, int64_t& time_us, bool& range) {
  int64_t h, m, s = 0, frac_us = 0;
  if (!c.digits(1, 2, h) || !c.take(':') || !c.digits(1, 2, m)) return false;
  if (c.take(':')) {
    if (!c.digits(1, 2, s)) return false;
    if (c.peek() == '.') {
      const size_t start = c.i;
      ++c.i;
      while (is_digit(c.peek())) ++c.i;  // "12:00:00." is 12:00:00, as in PostgreSQL
      // "0.ddd" read as a double (locale-independent strtod) and rounded to even.
      const std::string frac = "0" + std::string(c.s.substr(start, c.i - start));
      double f = 0;
      std::from_chars(frac.data(), frac.data() + frac.size(), f);
      frac_us = static_cast<int64_t>(std::nearbyint(f * 1e6));
    }
  }
  if (m > 59 || s > 60 || h > 24 || (h == 24 && (m > 0 || s > 0 || frac_us > 0)) ||
      (s == 60 && frac_us > 0)) {
    range = true;
  }
  time_us = ((h * 60 + m) * 60 + s) * kUsecsPerSec + frac_us;
  return true;
}

// Parses a zone: Z, UTC, or +HH, +HHMM, +HH:MM, +HH:MM:SS (or -); up to 15:59:59 as PostgreSQL.
bool parse_zone(DateTimeText& c, DateTimeFields& f, bool& range) {
  if (c.word("Z") || c.word("UTC")) {
    f.has_zone = true;
    f.zone_seconds = 0;
    return true;
  }
  if (c.peek() != '+' && c.peek() != '-') return false;
  const bool negative = c.s[c.i++] == '-';
  int64_t h, m = 0, s = 0;
  if (!c.digits(1, 2, h)) return false;
  if (c.take(':')) {
    if (!c.digits(2, 2, m)) return false;
    if (c.take(':') && !c.digits(2, 2, s)) return false;
  } else if (is_digit(c.peek())) {
    if (!c.digits(2, 2, m)) return false;
  }
  if (h > 15 || m > 59 || s > 59) range = true;
  f.has_zone = true;
  f.zone_seconds = (negative ? -1 : 1) * ((h * 60 + m) * 60 + s);
  return true;
}

// Parses a date or timestamp text: YYYY-MM-DD[( |T)HH:MM[:SS[.f]]][ ][zone][ BC|AD]. Returns
// kBadText / kOutOfRange; with `allow_time` false only a date (and BC/AD) is accepted.
CodecStatus parse_datetime(uint32_t type, std::string_view text, bool allow_time,
                           DateTimeFields& f) {
  DateTimeText c{trim(text)};
  bool range = false;
  if (!parse_ymd(c, f)) return bad_text(type, text);
  if (allow_time && (c.peek() == 'T' || c.peek() == 't' || c.peek() == ' ')) {
    const size_t save = c.i;
    ++c.i;
    c.spaces();
    if (is_digit(c.peek())) {
      if (!parse_hms(c, f.time_us, range)) return bad_text(type, text);
    } else {
      c.i = save;
    }
  }
  c.spaces();
  const char next = c.peek();
  if (allow_time && !c.at_end() && next != 'B' && next != 'b' && next != 'A' && next != 'a') {
    if (!parse_zone(c, f, range)) return bad_text(type, text);
    c.spaces();
  }
  if (c.word("BC")) {
    f.bc = true;
  } else {
    c.word("AD");
  }
  c.spaces();
  if (!c.at_end()) return bad_text(type, text);
  if (range || f.month < 1 || f.month > 12 || f.year == 0) {
    return fail(CodecError::kOutOfRange, "date/time field value out of range: " + quoted(text));
  }
  const int64_t year = f.bc ? -(f.year - 1) : f.year;
  if (f.day < 1 || f.day > days_in_month(year, static_cast<int>(f.month))) {
    return fail(CodecError::kOutOfRange, "date/time field value out of range: " + quoted(text));
  }
  f.year = year;
  f.bc = false;
  return {};
}

// The special date/time words: infinity, -infinity, epoch; 0 when none.
int special_datetime(std::string_view text) noexcept {
  const std::string_view t = trim(text);
  if (iequals(t, "infinity")) return 1;
  if (iequals(t, "-infinity")) return -1;
  if (iequals(t, "epoch")) return 2;
  return 0;
}

// Parses date_in's ISO input (YYYY-MM-DD [BC], infinity, -infinity, epoch) into days since
// 2000-01-01.
CodecStatus parse_date(std::string_view text, int32_t& days) {
  switch (special_datetime(text)) {
    case 1:
      days = kDateNoEnd;
      return {};
    case -1:
      days = kDateNoBegin;
      return {};
    case 2:
      days = -10957;  // 1970-01-01
      return {};
    default:
      break;
  }
  DateTimeFields f;
  if (CodecStatus st = parse_datetime(type_oid::kDate, text, false, f); !st.ok()) return st;
  const int64_t d = date2j(f.year, f.month, f.day) - kPostgresEpochJdate;
  if (d < kDateMinDays || d >= kDateEndDays) {
    return fail(CodecError::kOutOfRange, "date out of range: " + quoted(text));
  }
  days = static_cast<int32_t>(d);
  return {};
}

// Parses timestamp_in / timestamptz_in's ISO input into microseconds since 2000-01-01. A zone is
// applied for timestamptz (none means UTC) and ignored for timestamp, as PostgreSQL does.
CodecStatus parse_timestamp(uint32_t type, std::string_view text, int64_t& ts) {
  switch (special_datetime(text)) {
    case 1:
      ts = kTimestampNoEnd;
      return {};
    case -1:
      ts = kTimestampNoBegin;
      return {};
    case 2:
      ts = -kPostgresEpochUnixUs;
      return {};
    default:
      break;
  }
  DateTimeFields f;
  if (CodecStatus st = parse_datetime(type, text, true, f); !st.ok()) return st;
  const int64_t jd = date2j(f.year, f.month, f.day);
  const auto range_error = [&] {
    return fail(CodecError::kOutOfRange, "timestamp out of range: " + quoted(text));
  };
  if (jd < 0 || jd >= 109203528) return range_error();
  int64_t v = (jd - kPostgresEpochJdate) * kUsecsPerDay + f.time_us;
  if (type == type_oid::kTimestamptz && f.has_zone) v -= f.zone_seconds * kUsecsPerSec;
  if (v < kTimestampMin || v >= kTimestampEnd) return range_error();
  ts = v;
  return {};
}

// Parses time_in's input HH:MM[:SS[.f]] (up to 24:00:00) into microseconds.
CodecStatus parse_time(std::string_view text, int64_t& us) {
  DateTimeText c{trim(text)};
  bool range = false;
  if (!parse_hms(c, us, range) || !c.at_end()) return bad_text(type_oid::kTime, text);
  if (range || us > kUsecsPerDay) {
    return fail(CodecError::kOutOfRange, "date/time field value out of range: " + quoted(text));
  }
  return {};
}

// Checks that a BINARY value has the fixed size of its type.
CodecStatus check_size(uint32_t type, std::string_view data, size_t size) {
  if (data.size() == size) return {};
  return bad_value(type, std::to_string(data.size()) + " bytes instead of " + std::to_string(size));
}

// Fixed size of a known fixed-size type's send format, 0 for variable-size types.
size_t fixed_size(uint32_t type) noexcept {
  switch (type) {
    case type_oid::kBool:
      return 1;
    case type_oid::kInt2:
      return 2;
    case type_oid::kInt4:
    case type_oid::kOid:
    case type_oid::kFloat4:
    case type_oid::kDate:
      return 4;
    case type_oid::kInt8:
    case type_oid::kFloat8:
    case type_oid::kTime:
    case type_oid::kTimestamp:
    case type_oid::kTimestamptz:
      return 8;
    case type_oid::kUuid:
      return 16;
    default:
      return 0;
  }
}

// Whether the type's send format is its text (text-like types).
bool is_text_like(uint32_t type) noexcept {
  return type == type_oid::kText || type == type_oid::kVarchar || type == type_oid::kBpchar ||
         type == type_oid::kName || type == type_oid::kJson;
}

// Checks a known type's BINARY value (size, numeric structure, jsonb version, timestamp range).
CodecStatus check_binary(uint32_t type, std::string_view data) {
  if (const size_t size = fixed_size(type); size != 0) {
    if (CodecStatus st = check_size(type, data, size); !st.ok()) return st;
    if ((type == type_oid::kTimestamp || type == type_oid::kTimestamptz) &&
        !timestamp_valid(static_cast<int64_t>(load_be(data.data(), 8)))) {
      return bad_value(type, "timestamp out of range");
    }
    if (type == type_oid::kDate && !date_valid(static_cast<int32_t>(load_be(data.data(), 4)))) {
      return bad_value(type, "date out of range");
    }
    if (type == type_oid::kTime) {
      const auto t = static_cast<int64_t>(load_be(data.data(), 8));
      if (t < 0 || t > kUsecsPerDay) return bad_value(type, "time out of range");
    }
    return {};
  }
  if (type == type_oid::kNumeric) {
    Numeric n;
    std::string why;
    if (!decode_numeric(data, n, why)) return bad_value(type, why);
  } else if (type == type_oid::kJsonb) {
    if (data.empty() || data[0] != 1) return bad_value(type, "unsupported jsonb version");
  } else if (type == type_oid::kName && data.size() >= kNameDataLen) {
    return bad_value(type, "longer than 63 bytes");  // namerecv's limit
  }
  return {};
}

// Appends a known type's BINARY value (checked) in text form; `json` selects to_json()'s form of
// timestamps.
void append_known_text(std::string& out, uint32_t type, std::string_view d, bool json) {
  switch (type) {
    case type_oid::kBool:
      out += d[0] != 0 ? 't' : 'f';
      return;
    case type_oid::kInt2:
      append_int(out, static_cast<int16_t>(load_be(d.data(), 2)));
      return;
    case type_oid::kInt4:
      append_int(out, static_cast<int32_t>(load_be(d.data(), 4)));
      return;
    case type_oid::kInt8:
      append_int(out, static_cast<int64_t>(load_be(d.data(), 8)));
      return;
    case type_oid::kOid:
      append_int(out, static_cast<uint32_t>(load_be(d.data(), 4)));
      return;
    case type_oid::kFloat4:
      append_float(out, load_float4(d), 6);
      return;
    case type_oid::kFloat8:
      append_float(out, load_float8(d), 15);
      return;
    case type_oid::kNumeric: {
      Numeric n;
      std::string why;
      (void)decode_numeric(d, n, why);
      append_numeric(out, n);
      return;
    }
    case type_oid::kUuid:
      for (size_t i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
        append_hex(out, d.substr(i, 1));
      }
      return;
    case type_oid::kDate:
      append_date(out, static_cast<int32_t>(load_be(d.data(), 4)));
      return;
    case type_oid::kTime:
      append_hms(out, static_cast<int64_t>(load_be(d.data(), 8)));
      return;
    case type_oid::kTimestamp:
    case type_oid::kTimestamptz:
      append_timestamp(out, static_cast<int64_t>(load_be(d.data(), 8)),
                       type == type_oid::kTimestamptz, json);
      return;
    case type_oid::kBytea:
      out += "\\x";
      append_hex(out, d);
      return;
    case type_oid::kJsonb:
      out.append(d.substr(1));
      return;
    default:
      if (is_text_like(type)) {
        out.append(d);
      } else {
        out += "\\x";
        append_hex(out, d);
      }
      return;
  }
}

// Appends JSON text (a json or jsonb value) with raw newlines and carriage returns, which valid
// JSON only has as whitespace between tokens, turned into spaces.
void append_embedded_json(std::string& out, std::string_view json) {
  for (char c : json) out += (c == '\n' || c == '\r') ? ' ' : c;
}

}  // namespace

const char* codec_error_name(CodecError e) noexcept {
  switch (e) {
    case CodecError::kOk:
      return "ok";
    case CodecError::kNull:
      return "null";
    case CodecError::kUnchangedToast:
      return "unchanged_toast";
    case CodecError::kBadValue:
      return "bad_value";
    case CodecError::kBadText:
      return "bad_text";
    case CodecError::kOutOfRange:
      return "out_of_range";
    case CodecError::kUnsupported:
      return "unsupported";
    case CodecError::kTypeMismatch:
      return "type_mismatch";
    case CodecError::kBadKey:
      return "bad_key";
    case CodecError::kBadTuple:
      return "bad_tuple";
  }
  return "unknown";
}

std::string type_name(uint32_t type) {
  switch (type) {
    case type_oid::kBool:
      return "boolean";
    case type_oid::kBytea:
      return "bytea";
    case type_oid::kName:
      return "name";
    case type_oid::kInt8:
      return "bigint";
    case type_oid::kInt2:
      return "smallint";
    case type_oid::kInt4:
      return "integer";
    case type_oid::kText:
      return "text";
    case type_oid::kOid:
      return "oid";
    case type_oid::kJson:
      return "json";
    case type_oid::kFloat4:
      return "real";
    case type_oid::kFloat8:
      return "double precision";
    case type_oid::kBpchar:
      return "character";
    case type_oid::kVarchar:
      return "character varying";
    case type_oid::kDate:
      return "date";
    case type_oid::kTime:
      return "time without time zone";
    case type_oid::kTimestamp:
      return "timestamp without time zone";
    case type_oid::kTimestamptz:
      return "timestamp with time zone";
    case type_oid::kNumeric:
      return "numeric";
    case type_oid::kUuid:
      return "uuid";
    case type_oid::kJsonb:
      return "jsonb";
    default:
      return "unknown type (oid " + std::to_string(type) + ")";
  }
}

bool is_known_type(uint32_t type) noexcept {
  return fixed_size(type) != 0 || is_text_like(type) || type == type_oid::kNumeric ||
         type == type_oid::kBytea || type == type_oid::kJsonb;
}

bool accepts_text_input(uint32_t type) noexcept {
  return is_known_type(type) && type != type_oid::kJson && type != type_oid::kJsonb;
}

CodecStatus append_value_text(std::string& out, uint32_t type, const frame::Value& v) {
  switch (v.kind) {
    case frame::ValueKind::kNull:
    case frame::ValueKind::kUnchangedToast:
      return not_a_value(v);
    case frame::ValueKind::kText:
      out.append(v.data);
      return {};
    case frame::ValueKind::kBinary:
      break;
  }
  if (CodecStatus st = check_binary(type, v.data); !st.ok()) return st;
  append_known_text(out, type, v.data, false);
  return {};
}

CodecStatus parse_value_text(uint32_t type, std::string_view text, std::string& send) {
  switch (type) {
    case type_oid::kBool: {
      bool b = false;
      if (CodecStatus st = parse_bool(text, b); !st.ok()) return st;
      send.assign(1, b ? '\1' : '\0');
      return {};
    }
    case type_oid::kInt2:
    case type_oid::kInt4:
    case type_oid::kInt8: {
      const size_t size = fixed_size(type);
      const int64_t max =
          size == 8 ? std::numeric_limits<int64_t>::max() : (int64_t{1} << (8 * size - 1)) - 1;
      int64_t v = 0;
      if (CodecStatus st = parse_int(type, text, -max - 1, max, v); !st.ok()) return st;
      send.clear();
      append_be(send, static_cast<uint64_t>(v), size);
      return {};
    }
    case type_oid::kOid: {
      // oidin accepts what strtoul does: negative values down to INT32_MIN wrap around.
      int64_t v = 0;
      if (CodecStatus st = parse_int(type, text, std::numeric_limits<int32_t>::min(),
                                     std::numeric_limits<uint32_t>::max(), v);
          !st.ok()) {
        return st;
      }
      send.clear();
      append_be(send, static_cast<uint32_t>(v), 4);
      return {};
    }
    case type_oid::kFloat4: {
      float f = 0;
      if (CodecStatus st = parse_float(type, text, f); !st.ok()) return st;
      uint32_t bits;
      std::memcpy(&bits, &f, 4);
      send.clear();
      append_be(send, bits, 4);
      return {};
    }
    case type_oid::kFloat8: {
      double f = 0;
      if (CodecStatus st = parse_float(type, text, f); !st.ok()) return st;
      uint64_t bits;
      std::memcpy(&bits, &f, 8);
      send.clear();
      append_be(send, bits, 8);
      return {};
    }
    case type_oid::kNumeric:
      return parse_numeric(text, send);
    case type_oid::kText:
    case type_oid::kVarchar:
    case type_oid::kBpchar:
      send.assign(text);
      return {};
    case type_oid::kName:
      send.assign(clip_name(text));
      return {};
    case type_oid::kBytea:
      return parse_bytea(text, send);
    case type_oid::kUuid:
      return parse_uuid(text, send);
    case type_oid::kDate: {
      int32_t days = 0;
      if (CodecStatus st = parse_date(text, days); !st.ok()) return st;
      send.clear();
      append_be(send, static_cast<uint32_t>(days), 4);
      return {};
    }
    case type_oid::kTime: {
      int64_t us = 0;
      if (CodecStatus st = parse_time(text, us); !st.ok()) return st;
      send.clear();
      append_be(send, static_cast<uint64_t>(us), 8);
      return {};
    }
    case type_oid::kTimestamp:
    case type_oid::kTimestamptz: {
      int64_t ts = 0;
      if (CodecStatus st = parse_timestamp(type, text, ts); !st.ok()) return st;
      send.clear();
      append_be(send, static_cast<uint64_t>(ts), 8);
      return {};
    }
    default:
      return fail(CodecError::kUnsupported,
                  "values of type " + type_name(type) + " cannot be given as text");
  }
}

CodecStatus append_value_json(std::string& out, uint32_t type, const frame::Value& v) {
  switch (v.kind) {
    case frame::ValueKind::kNull:
      out += "null";
      return {};
    case frame::ValueKind::kUnchangedToast:
      return not_a_value(v);
    case frame::ValueKind::kText:
      frame::append_json_string(out, v.data);
      return {};
    case frame::ValueKind::kBinary:
      break;
  }
  if (!is_known_type(type)) {
    out += "{\"binary\":\"";
    append_hex(out, v.data);
    out += "\"}";
    return {};
  }
  if (CodecStatus st = check_binary(type, v.data); !st.ok()) return st;
  switch (type) {
    case type_oid::kBool:
      out += v.data[0] != 0 ? "true" : "false";
      return {};
    case type_oid::kInt2:
    case type_oid::kInt4:
    case type_oid::kInt8:
      append_known_text(out, type, v.data, true);
      return {};
    case type_oid::kFloat4:
    case type_oid::kFloat8:
    case type_oid::kNumeric: {
      // Finite numbers are valid JSON numbers as PostgreSQL prints them; NaN and the
      // infinities are not, and become strings (to_json's IsValidJsonNumber test).
      std::string text;
      append_known_text(text, type, v.data, true);
      if (text == "NaN" || text == "Infinity" || text == "-Infinity") {
        frame::append_json_string(out, text);
      } else {
        out += text;
      }
      return {};
    }
    case type_oid::kJson:
      append_embedded_json(out, v.data);
      return {};
    case type_oid::kJsonb:
      append_embedded_json(out, v.data.substr(1));
      return {};
    default: {
      std::string text;
      append_known_text(text, type, v.data, true);
      frame::append_json_string(out, text);
      return {};
    }
  }
}

namespace {

// Common checks of the typed accessors: a BINARY value of one of `types`, well formed.
template <size_t N>
CodecStatus accessor_check(uint32_t type, const frame::Value& v, const uint32_t (&types)[N],
                           const char* wanted) {
  if (v.kind == frame::ValueKind::kNull || v.kind == frame::ValueKind::kUnchangedToast) {
    return not_a_value(v);
  }
  bool listed = false;
  for (uint32_t t : types) listed = listed || t == type;
  if (!listed || v.kind != frame::ValueKind::kBinary) {
    return fail(CodecError::kTypeMismatch,
                "cannot read a value of type " + type_name(type) +
                    (v.kind == frame::ValueKind::kText ? " (text)" : "") + " as " + wanted);
  }
  return check_binary(type, v.data);
}

}  // namespace

CodecStatus value_as_int64(uint32_t type, const frame::Value& v, int64_t& out) {
  static constexpr uint32_t kTypes[] = {type_oid::kInt2, type_oid::kInt4, type_oid::kInt8,
                                        type_oid::kOid};
  if (CodecStatus st = accessor_check(type, v, kTypes, "an integer"); !st.ok()) return st;
  const uint64_t raw = load_be(v.data.data(), v.data.size());
  switch (type) {
    case type_oid::kInt2:
      out = static_cast<int16_t>(raw);
      break;
    case type_oid::kInt4:
      out = static_cast<int32_t>(raw);
      break;
    case type_oid::kOid:
      out = static_cast<int64_t>(static_cast<uint32_t>(raw));
      break;
    default:
      out = static_cast<int64_t>(raw);
      break;
  }
  return {};
}

CodecStatus value_as_double(uint32_t type, const frame::Value& v, double& out) {
  static constexpr uint32_t kTypes[] = {type_oid::kFloat4, type_oid::kFloat8, type_oid::kInt2,
                                        type_oid::kInt4,   type_oid::kInt8,   type_oid::kNumeric};
  if (CodecStatus st = accessor_check(type, v, kTypes, "a double"); !st.ok()) return st;
  switch (type) {
    case type_oid::kFloat4:
      out = load_float4(v.data);
      return {};
    case type_oid::kFloat8:
      out = load_float8(v.data);
      return {};
    case type_oid::kNumeric: {
      std::string text;
      append_known_text(text, type, v.data, false);
      if (text == "NaN") {
        out = std::numeric_limits<double>::quiet_NaN();
      } else if (text == "Infinity" || text == "-Infinity") {
        out = text[0] == '-' ? -std::numeric_limits<double>::infinity()
                             : std::numeric_limits<double>::infinity();
      } else {
        const auto res = std::from_chars(text.data(), text.data() + text.size(), out);
        if (res.ec == std::errc::result_out_of_range) {
          // Beyond double's range: zero for tiny values (weight < 0), else infinity.
          const bool negative = text[0] == '-';
          const bool tiny = text.rfind("0.", 0) == 0 || text.rfind("-0.", 0) == 0;
          const double magnitude = tiny ? 0.0 : std::numeric_limits<double>::infinity();
          out = negative ? -magnitude : magnitude;
        }
      }
      return {};
    }
    default: {
      int64_t i;
      (void)value_as_int64(type, v, i);
      out = static_cast<double>(i);
      return {};
    }
  }
}

CodecStatus value_as_bool(uint32_t type, const frame::Value& v, bool& out) {
  static constexpr uint32_t kTypes[] = {type_oid::kBool};
  if (CodecStatus st = accessor_check(type, v, kTypes, "a boolean"); !st.ok()) return st;
  out = v.data[0] != 0;
  return {};
}

CodecStatus value_as_text(uint32_t type, const frame::Value& v, std::string_view& out) {
  if (v.kind == frame::ValueKind::kText) {
    out = v.data;
    return {};
  }
  static constexpr uint32_t kTypes[] = {type_oid::kText, type_oid::kVarchar, type_oid::kBpchar,
                                        type_oid::kName, type_oid::kJson,    type_oid::kJsonb};
  if (CodecStatus st = accessor_check(type, v, kTypes, "text"); !st.ok()) return st;
  out = type == type_oid::kJsonb ? v.data.substr(1) : v.data;
  return {};
}

CodecStatus value_as_uuid(uint32_t type, const frame::Value& v, std::array<uint8_t, 16>& out) {
  static constexpr uint32_t kTypes[] = {type_oid::kUuid};
  if (CodecStatus st = accessor_check(type, v, kTypes, "a uuid"); !st.ok()) return st;
  std::memcpy(out.data(), v.data.data(), 16);
  return {};
}

CodecStatus value_as_timestamp_us(uint32_t type, const frame::Value& v, int64_t& out) {
  static constexpr uint32_t kTypes[] = {type_oid::kTimestamp, type_oid::kTimestamptz,
                                        type_oid::kDate};
  if (CodecStatus st = accessor_check(type, v, kTypes, "a timestamp"); !st.ok()) return st;
  int64_t pg;
  if (type == type_oid::kDate) {
    const auto days = static_cast<int32_t>(load_be(v.data.data(), 4));
    if (days == kDateNoBegin || days == kDateNoEnd) {
      out = days == kDateNoBegin ? kTimestampNoBegin : kTimestampNoEnd;
      return {};
    }
    // A date after year 294247 has no timestamp: refuse it before the product overflows.
    if (days > (kTimestampNoEnd - kPostgresEpochUnixUs - 1) / kUsecsPerDay) {
      return fail(CodecError::kOutOfRange, "value of type " + type_name(type) +
                                               " does not fit microseconds since 1970 in 64 bits");
    }
    pg = int64_t{days} * kUsecsPerDay;  // negative days are bounded at Julian day 0
  } else {
    pg = static_cast<int64_t>(load_be(v.data.data(), 8));
    if (pg == kTimestampNoBegin || pg == kTimestampNoEnd) {
      out = pg;
      return {};
    }
  }
  // Adding the epoch difference only overflows at the top; INT64_MAX stays for infinity.
  if (pg > kTimestampNoEnd - kPostgresEpochUnixUs - 1) {
    return fail(CodecError::kOutOfRange, "value of type " + type_name(type) +
                                             " does not fit microseconds since 1970 in 64 bits");
  }
  out = pg + kPostgresEpochUnixUs;
  return {};
}

// --- RowView ---------------------------------------------------------------------------------

CodecStatus RowView::parse(std::span<const frame::Column> columns, std::string_view bytes) {
  columns_ = columns;
  values_.clear();
  frame::ByteReader r(bytes);
  uint64_t count;
  if (!r.varint(count)) {
    return fail(CodecError::kBadTuple, std::string("malformed tuple: ") + r.error());
  }
  if (count != columns.size()) {
    return fail(CodecError::kBadTuple, "tuple has " + std::to_string(count) + " values for " +
                                           std::to_string(columns.size()) + " columns");
  }
  values_.resize(columns.size());
  for (frame::Value& v : values_) {
    if (!frame::detail::read_item(r, v)) {
      values_.clear();
      return fail(CodecError::kBadTuple, std::string("malformed tuple: ") + r.error() +
                                             " at offset " + std::to_string(r.error_offset()));
    }
  }
  if (!r.at_end()) {
    values_.clear();
    return fail(CodecError::kBadTuple, "malformed tuple: bytes after its last value");
  }
  return {};
}

CodecStatus RowView::assign(std::span<const frame::Column> columns, const frame::Tuple& tuple) {
  columns_ = columns;
  values_.clear();
  if (tuple.size() != columns.size()) {
    return fail(CodecError::kBadTuple, "tuple has " + std::to_string(tuple.size()) +
                                           " values for " + std::to_string(columns.size()) +
                                           " columns");
  }
  values_.assign(tuple.begin(), tuple.end());
  return {};
}

int RowView::find(std::string_view name) const noexcept {
  for (size_t i = 0; i < columns_.size() && i < values_.size(); ++i) {
    if (columns_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

CodecStatus RowView::named(size_t i, CodecStatus st) const {
  if (!st.ok()) st.message = "column \"" + std::string(columns_[i].name) + "\": " + st.message;
  return st;
}

CodecStatus RowView::get_int64(size_t i, int64_t& out) const {
  return named(i, value_as_int64(columns_[i].type_oid, values_[i], out));
}
CodecStatus RowView::get_double(size_t i, double& out) const {
  return named(i, value_as_double(columns_[i].type_oid, values_[i], out));
}
CodecStatus RowView::get_bool(size_t i, bool& out) const {
  return named(i, value_as_bool(columns_[i].type_oid, values_[i], out));
}
CodecStatus RowView::get_text(size_t i, std::string_view& out) const {
  return named(i, value_as_text(columns_[i].type_oid, values_[i], out));
}
CodecStatus RowView::get_uuid(size_t i, std::array<uint8_t, 16>& out) const {
  return named(i, value_as_uuid(columns_[i].type_oid, values_[i], out));
}
CodecStatus RowView::get_timestamp_us(size_t i, int64_t& out) const {
  return named(i, value_as_timestamp_us(columns_[i].type_oid, values_[i], out));
}
CodecStatus RowView::append_text(size_t i, std::string& out) const {
  return named(i, append_value_text(out, columns_[i].type_oid, values_[i]));
}

CodecStatus RowView::append_json(std::string& out) const {
  const size_t start = out.size();
  out += '{';
  for (size_t i = 0; i < values_.size(); ++i) {
    if (i > 0) out += ',';
    frame::append_json_string(out, columns_[i].name);
    out += ':';
    if (CodecStatus st = append_value_json(out, columns_[i].type_oid, values_[i]); !st.ok()) {
      out.resize(start);
      return named(i, std::move(st));
    }
  }
  out += '}';
  return {};
}

}  // namespace edgeshard::apply

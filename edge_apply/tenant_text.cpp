// Percent-escaping of tenant keys and shard names inside text.
#include "edge_apply/tenant_text.hpp"

namespace edgeshard::apply {

namespace {

// Whether byte c is written %XX.
bool escaped_byte(unsigned char c) noexcept { return c <= 0x20 || c == ',' || c == '%' || c == 0x7F; }

// The value of hex digit c, or -1.
int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

bool tenant_text_needs_escape(std::string_view key) noexcept {
  for (char c : key) {
    if (escaped_byte(static_cast<unsigned char>(c))) return true;
  }
  return false;
}

std::string escape_tenant_text(std::string_view key) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(key.size());
  for (char ch : key) {
    const auto c = static_cast<unsigned char>(ch);
    if (!escaped_byte(c)) {
      out += ch;
      continue;
    }
    out += '%';
    out += kHex[c >> 4];
    out += kHex[c & 0x0F];
  }
  return out;
}

bool unescape_tenant_text(std::string_view text, std::string& out) {
  out.clear();
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (text.size() - i < 3) return false;
    const int hi = hex_value(text[i + 1]);
    const int lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

}  // namespace edgeshard::apply

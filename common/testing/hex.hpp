// Hex helpers for tests: write expected bytes as hex strings, print bytes as hex.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace edgeshard::testing_support {

// Bytes of a hex string (pairs of hex digits; a trailing odd digit is ignored).
inline std::string unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  }
  return out;
}

// Lower-case hex of bytes.
inline std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    out += kDigits[static_cast<uint8_t>(c) >> 4];
    out += kDigits[static_cast<uint8_t>(c) & 0xf];
  }
  return out;
}

}  // namespace edgeshard::testing_support

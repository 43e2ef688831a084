// pg_current_snapshot()'s text and the visibility of a streamed transaction in it.
#include "edge_apply/daemon/copy_snapshot.hpp"

#include <algorithm>
#include <charconv>

namespace edgeshard::apply::daemon {

namespace {

// Parses a decimal uint64 that must fill `s`; false otherwise.
bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

bool CopySnapshot::parse(std::string_view text, CopySnapshot& out, std::string& why) {
  out = CopySnapshot{};
  const size_t c1 = text.find(':');
  const size_t c2 = c1 == std::string_view::npos ? c1 : text.find(':', c1 + 1);
  if (c2 == std::string_view::npos) {
    why = "snapshot \"" + std::string(text) + "\" is not xmin:xmax:xip";
    return false;
  }
  if (!parse_u64(text.substr(0, c1), out.xmin) || !parse_u64(text.substr(c1 + 1, c2 - c1 - 1), out.xmax) ||
      out.xmin > out.xmax) {
    why = "snapshot \"" + std::string(text) + "\" has a bad xmin or xmax";
    return false;
  }
  std::string_view rest = text.substr(c2 + 1);
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    uint64_t x = 0;
    if (!parse_u64(rest.substr(0, comma), x) || x < out.xmin || x >= out.xmax) {
      why = "snapshot \"" + std::string(text) + "\" has an in-progress id outside [xmin, xmax)";
      return false;
    }
    out.xip.push_back(x);
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
    if (rest.empty()) {
      why = "snapshot \"" + std::string(text) + "\" ends with a comma";
      return false;
    }
  }
  std::sort(out.xip.begin(), out.xip.end());
  return true;
}

bool CopySnapshot::visible(uint32_t xid) const noexcept {
  // The full id nearest to xmax with these low 32 bits.
  const auto delta = static_cast<int32_t>(xid - static_cast<uint32_t>(xmax));
  const int64_t full = static_cast<int64_t>(xmax) + delta;
  if (full < 0 || static_cast<uint64_t>(full) >= xmax) return false;
  const auto id = static_cast<uint64_t>(full);
  if (id < xmin) return true;
  return !std::binary_search(xip.begin(), xip.end(), id);
}

std::string CopySnapshot::text() const {
  std::string out = std::to_string(xmin) + ":" + std::to_string(xmax) + ":";
  for (size_t i = 0; i < xip.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append(std::to_string(xip[i]));
  }
  return out;
}

}  // namespace edgeshard::apply::daemon

// File and directory names derived from tenant keys and shard names: escaping, bounded by a hash.
#include "edge_apply/dir_name.hpp"

#include "common/frame_format.hpp"
#include "edge_apply/manifest.hpp"

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace edgeshard::apply {

namespace {

// Whether byte c of a name stays as it is (a '.' only after the first byte: no "." or "..").
bool plain_byte(unsigned char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || (c == '.' && !first);
}

// Appends byte c as it appears in a name: itself, or %XX (upper-case hex).
void append_escaped(std::string& out, unsigned char c, bool first) {
  if (plain_byte(c, first)) {
    out += static_cast<char>(c);
    return;
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  out += '%';
  out += kHex[c >> 4];
  out += kHex[c & 0x0F];
}

}  // namespace

std::string escape_tenant(std::string_view key) {
  std::string out;
  for (size_t i = 0; i < key.size(); ++i) {
    append_escaped(out, static_cast<unsigned char>(key[i]), i == 0);
    if (out.size() > kMaxPlainName) break;
  }
  if (out.size() <= kMaxPlainName) return out;
  // Too long: the escaped prefix that fits whole units, '~' (never in a plain name: it is
  // escaped there), and the key's hash.
  out.clear();
  for (size_t i = 0; i < key.size(); ++i) {
    std::string unit;
    append_escaped(unit, static_cast<unsigned char>(key[i]), i == 0);
    if (out.size() + unit.size() > kHashedNamePrefix) break;
    out += unit;
  }
  char hash[24];
  std::snprintf(hash, sizeof hash, "~%016" PRIx64, frame::checksum(key.data(), key.size()));
  return out + hash;
}

std::filesystem::path tenant_dir(const std::filesystem::path& data_dir, std::string_view tenant) {
  return data_dir / "tenants" / escape_tenant(tenant);
}

std::filesystem::path shard_file_path(const std::filesystem::path& data_dir, std::string_view shard,
                                      std::string_view suffix) {
  return data_dir / "shards" / (escape_tenant(shard) + std::string(suffix));
}

bool move_to_tenant_dir(const std::filesystem::path& dir, std::string_view key,
                        std::filesystem::path& out, std::string& why) {
  const std::filesystem::path parent = dir.parent_path();
  const std::filesystem::path target = parent / escape_tenant(key);
  out = dir;
  if (dir.filename() == target.filename()) return true;
  std::error_code ec;
  if (std::filesystem::exists(target, ec) || ec) {
    why = "cannot rename " + dir.string() + " to " + target.string() + ": " +
          (ec ? ec.message() : std::string("that directory exists already"));
    return false;
  }
  if (std::rename(dir.c_str(), target.c_str()) != 0) {
    why = "cannot rename " + dir.string() + " to " + target.string() + ": " + std::strerror(errno);
    return false;
  }
  out = target;
  return fsync_directory(parent, why);
}

}  // namespace edgeshard::apply

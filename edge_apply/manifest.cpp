// Manifest text, its atomic replacement, and the mapped head file.
#include "edge_apply/manifest.hpp"

#include "common/frame_format.hpp"
#include "common/lsn.hpp"
#include "edge_apply/tenant_text.hpp"
#include "common/posix_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace edgeshard::apply {

namespace {

static_assert(std::endian::native == std::endian::little,
              "the head file's generation is stored little-endian with native atomic stores");

// Version 1: names are written as they are (no blank or control byte). Version 2: the tenant key
// and shard names percent-escaped (edge_apply/tenant_text.hpp). Writers use 1 whenever it can
// hold the manifest, so readers older than version 2 keep reading every tenant they could.
constexpr char kManifestHeaderV1[] = "edgeshard-manifest 1";
constexpr char kManifestHeaderV2[] = "edgeshard-manifest 2";
constexpr char kHeadMagic[4] = {'E', 'S', 'H', 'D'};
constexpr size_t kGenerationOffset = 8;

// errno as text.
std::string errno_text() { return std::strerror(errno); }

// The checksum line of body.
std::string checksum_line(std::string_view body) {
  char line[40];
  std::snprintf(line, sizeof line, "checksum %016" PRIx64 "\n", frame::checksum(body.data(), body.size()));
  return line;
}

// Writes all of data to fd.
bool write_all(int fd, std::string_view data) {
  if (const size_t room = posix::take_write_budget(data.size()); room < data.size()) {
    if (room > 0 && ::write(fd, data.data(), room) < 0) return false;
    errno = ENOSPC;  // a test's full disk (common/posix_file.hpp)
    return false;
  }
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Whether s is one token of the version 1 text (no blank or control byte).
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7F) return false;
  }
  return true;
}

// A tenant key or shard name as a field of the given manifest version.
std::string name_field(std::string_view name, int version) {
  return version == 1 ? std::string(name) : escape_tenant_text(name);
}

// Reads a tenant key or shard name field of the given manifest version; false when malformed.
bool parse_name_field(std::string_view field, int version, std::string& out) {
  if (version == 1) {
    out.assign(field);
    return is_token(out);
  }
  return unescape_tenant_text(field, out) && !out.empty();
}

}  // namespace

bool fsync_directory(const std::filesystem::path& dir, std::string& why) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    why = "could not open directory " + dir.string() + ": " + errno_text();
    return false;
  }
  const bool ok = ::fsync(fd) == 0;
  if (!ok) why = "could not fsync directory " + dir.string() + ": " + errno_text();
  ::close(fd);
  return ok;
}

std::string encode_manifest(const Manifest& m) {
  bool plain = is_token(m.tenant);
  for (const ShardPosition& s : m.shards) plain = plain && is_token(s.shard);
  const int version = plain ? 1 : 2;
  std::string out = version == 1 ? kManifestHeaderV1 : kManifestHeaderV2;
  out += "\ngeneration " + std::to_string(m.generation) + "\n";
  out += "tenant " + name_field(m.tenant, version) + "\n";
  out += std::string("published ") + (m.published ? "yes" : "no") + "\n";
  for (const ShardPosition& s : m.shards) {
    out += "shard " + name_field(s.shard, version) + " " + format_lsn(s.applied) + " " + std::to_string(s.commit_time_us) +
           " " + format_lsn(s.upstream) + " " + std::to_string(s.upstream_time_us) + "\n";
  }
  for (const FileEntry& f : m.files) {
    out += std::string("file ") + (f.kind == FileKind::kBase ? "base " : "delta ") + f.name + " " +
           std::to_string(f.records) + " " + std::to_string(f.bytes) + "\n";
  }
  return out + checksum_line(out);
}

bool decode_manifest(std::string_view text, Manifest& out, std::string& why) {
  const size_t last = text.rfind("checksum ");
  if (last == std::string_view::npos || (last > 0 && text[last - 1] != '\n')) {
    why = "manifest has no checksum line (truncated?)";
    return false;
  }
  const std::string_view body = text.substr(0, last);
  if (text.substr(last) != checksum_line(body)) {
    why = "manifest fails its checksum";
    return false;
  }
  out = Manifest{};
  std::istringstream in{std::string(body)};
  std::string line;
  int version = 0;
  if (std::getline(in, line)) version = line == kManifestHeaderV1 ? 1 : line == kManifestHeaderV2 ? 2 : 0;
  if (version == 0) {
    why = "manifest: unknown header (expected \"" + std::string(kManifestHeaderV1) + "\" or \"" +
          kManifestHeaderV2 + "\")";
    return false;
  }
  for (int lineno = 2; std::getline(in, line); ++lineno) {
    std::istringstream f(line);
    std::string kind;
    f >> kind;
    bool ok = false;
    if (kind == "generation") {
      ok = static_cast<bool>(f >> out.generation);
    } else if (kind == "tenant") {
      std::string field;
      ok = static_cast<bool>(f >> field) && parse_name_field(field, version, out.tenant);
    } else if (kind == "published") {
      std::string v;
      ok = static_cast<bool>(f >> v) && (v == "yes" || v == "no");
      out.published = v == "yes";
    } else if (kind == "shard") {
      ShardPosition s;
      std::string name, applied, upstream;
      ok = static_cast<bool>(f >> name >> applied >> s.commit_time_us >> upstream >> s.upstream_time_us) &&
           parse_name_field(name, version, s.shard) && parse_lsn(applied, s.applied) &&
           parse_lsn(upstream, s.upstream);
      if (ok) out.shards.push_back(std::move(s));
    } else if (kind == "file") {
      FileEntry e;
      std::string k;
      ok = static_cast<bool>(f >> k >> e.name >> e.records >> e.bytes) && (k == "base" || k == "delta") &&
           is_token(e.name) && e.name.find('/') == std::string::npos;
      e.kind = k == "base" ? FileKind::kBase : FileKind::kDelta;
      if (ok) out.files.push_back(std::move(e));
    }
    std::string extra;
    if (!ok || (f >> extra)) {
      why = "manifest line " + std::to_string(lineno) + " is malformed: \"" + line + "\"";
      return false;
    }
  }
  return true;
}

bool write_manifest(const std::filesystem::path& dir, const Manifest& m, std::string& why, bool sync,
                    int* sys_errno) {
  int unused = 0;
  int& err = sys_errno != nullptr ? *sys_errno : unused;
  const std::string text = encode_manifest(m);
  const std::filesystem::path tmp = dir / "manifest.tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    err = errno;
    why = "could not create " + tmp.string() + ": " + errno_text();
    return false;
  }
  const bool ok = write_all(fd, text) && (!sync || ::fsync(fd) == 0);
  err = errno;
  ::close(fd);
  if (!ok) {
    why = "could not write " + tmp.string() + ": " + std::strerror(err);
    return false;
  }
  if (::rename(tmp.c_str(), (dir / "manifest").c_str()) != 0) {
    err = errno;
    why = "could not put the manifest in place in " + dir.string() + ": " + errno_text();
    return false;
  }
  if (!sync || fsync_directory(dir, why)) return true;
  err = errno;
  return false;
}

bool read_manifest(const std::filesystem::path& dir, Manifest& out, std::string& why) {
  std::ifstream in(dir / "manifest", std::ios::binary);
  if (!in) {
    why = "no manifest in " + dir.string();
    return false;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (!decode_manifest(text.str(), out, why)) {
    why = (dir / "manifest").string() + ": " + why;
    return false;
  }
  return true;
}

HeadWriter::~HeadWriter() {
  if (map_ != nullptr) ::munmap(map_, kHeadBytes);
  if (fd_ >= 0) ::close(fd_);
}

bool HeadWriter::open(const std::filesystem::path& dir, std::string& why) {
  const std::filesystem::path path = dir / "head";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  struct stat st {};
  if (fd_ < 0 || ::fstat(fd_, &st) != 0) {
    why = "could not open " + path.string() + ": " + errno_text();
    return false;
  }
  if (st.st_size != static_cast<off_t>(kHeadBytes)) {
    char bytes[kHeadBytes] = {};
    std::memcpy(bytes, kHeadMagic, 4);
    bytes[4] = 1;  // version
    if (::pwrite(fd_, bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes) || ::fsync(fd_) != 0) {
      why = "could not initialise " + path.string() + ": " + errno_text();
      return false;
    }
    if (!fsync_directory(dir, why)) return false;
  }
  map_ = ::mmap(nullptr, kHeadBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    why = "could not map " + path.string() + ": " + errno_text();
    return false;
  }
  return true;
}

void HeadWriter::publish(uint64_t generation) noexcept {
  auto* p = reinterpret_cast<uint64_t*>(static_cast<char*>(map_) + kGenerationOffset);
  std::atomic_ref<uint64_t>(*p).store(generation, std::memory_order_release);
}

HeadReader::~HeadReader() {
  if (map_ != nullptr) ::munmap(const_cast<void*>(map_), kHeadBytes);
}

HeadReader& HeadReader::operator=(HeadReader&& other) noexcept {
  if (this != &other) {
    if (map_ != nullptr) ::munmap(const_cast<void*>(map_), kHeadBytes);
    map_ = std::exchange(other.map_, nullptr);
  }
  return *this;
}

bool HeadReader::open(const std::filesystem::path& dir, std::string& why) {
  const std::filesystem::path path = dir / "head";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0 || st.st_size != static_cast<off_t>(kHeadBytes)) {
    why = path.string() + " is missing or not a head file";
    if (fd >= 0) ::close(fd);
    return false;
  }
  void* map = ::mmap(nullptr, kHeadBytes, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    why = "could not map " + path.string() + ": " + errno_text();
    return false;
  }
  if (std::memcmp(map, kHeadMagic, 4) != 0 || static_cast<const char*>(map)[4] != 1) {
    ::munmap(map, kHeadBytes);
    why = path.string() + " is not a version 1 head file";
    return false;
  }
  map_ = map;
  return true;
}

uint64_t HeadReader::generation() const noexcept {
  if (map_ == nullptr) return 0;
  // The mapping is read-only; atomic_ref's load does not write.
  auto* p = reinterpret_cast<uint64_t*>(const_cast<char*>(static_cast<const char*>(map_)) + kGenerationOffset);
  return std::atomic_ref<uint64_t>(*p).load(std::memory_order_acquire);
}

}  // namespace edgeshard::apply

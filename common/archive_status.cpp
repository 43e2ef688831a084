// The archive status file: see archive_status.hpp.
#include "common/archive_status.hpp"

#include "common/posix_file.hpp"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <span>
#include <utility>

namespace edgeshard::archive {
namespace {

constexpr std::string_view kHeaderLine = "edgeshard-archive-status 1";
constexpr size_t kMaxFileBytes = 16384;

// The keys, in file order (after the header line, before the checksum line).
constexpr std::string_view kKeys[] = {"stats_since",        "archived_count", "last_archived_wal",
                                      "last_archived_time", "failed_count",   "last_failed_wal",
                                      "last_failed_time",   "bytes_in",       "bytes_out",
                                      "last_failure_reason"};

// The "checksum H" line closing a file whose body is `body`.
std::string checksum_line(std::string_view body) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "checksum %016llx\n",
                static_cast<unsigned long long>(XXH3_64bits(body.data(), body.size())));
  return buf;
}

// Text kept on one line: control bytes become spaces; cut to max bytes at a UTF-8 boundary.
std::string one_line(std::string_view text, size_t max) {
  std::string out;
  for (char c : text.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? ' ' : c;
  }
  if (text.size() > max) {
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
    if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
  }
  return out;
}

// Parses a decimal number that fills the whole text.
template <typename T>
bool parse_number(std::string_view text, T& out) {
  if (text.empty()) return false;
  auto r = std::from_chars(text.data(), text.data() + text.size(), out);
  return r.ec == std::errc() && r.ptr == text.data() + text.size();
}

}  // namespace

void note_archived(ArchiveStats& stats, std::string_view wal, uint64_t bytes_in, uint64_t bytes_out,
                   int64_t now_us) {
  stats.archived_count++;
  stats.last_archived_wal = one_line(wal, 255);
  stats.last_archived_time_us = now_us;
  stats.bytes_in += bytes_in;
  stats.bytes_out += bytes_out;
}

void note_failed(ArchiveStats& stats, std::string_view wal, std::string_view reason,
                 int64_t now_us) {
  stats.failed_count++;
  stats.last_failed_wal = one_line(wal, 255);
  stats.last_failed_time_us = now_us;
  stats.last_failure_reason = one_line(reason, kMaxReasonBytes);
}

std::string encode_stats(const ArchiveStats& s) {
  std::string out(kHeaderLine);
  out += "\n";
  const std::string values[] = {
      std::to_string(s.stats_since_us),      std::to_string(s.archived_count),
      one_line(s.last_archived_wal, 255),    std::to_string(s.last_archived_time_us),
      std::to_string(s.failed_count),        one_line(s.last_failed_wal, 255),
      std::to_string(s.last_failed_time_us), std::to_string(s.bytes_in),
      std::to_string(s.bytes_out),           one_line(s.last_failure_reason, kMaxReasonBytes)};
  for (size_t i = 0; i < std::size(kKeys); ++i) {
    out.append(kKeys[i]);
    out += ' ';
    out += values[i];
    out += '\n';
  }
  return out + checksum_line(out);
}

bool decode_stats(std::string_view text, ArchiveStats& out, std::string& why) {
  const size_t last = text.rfind("checksum ");
  if (last == std::string_view::npos || last == 0 || text[last - 1] != '\n') {
    why = "no checksum line (truncated?)";
    return false;
  }
  const std::string_view body = text.substr(0, last);
  if (text.substr(last) != checksum_line(body)) {
    why = "checksum mismatch";
    return false;
  }
  std::string_view rest = body;
  // Takes the next line off rest (without its newline).
  auto next_line = [&rest](std::string_view& line) {
    const size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) return false;
    line = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    return true;
  };
  std::string_view line;
  if (!next_line(line) || line != kHeaderLine) {
    why = "unknown header line";
    return false;
  }
  std::string_view values[std::size(kKeys)];
  for (size_t i = 0; i < std::size(kKeys); ++i) {
    if (!next_line(line) || line.substr(0, kKeys[i].size()) != kKeys[i] ||
        line.size() <= kKeys[i].size() || line[kKeys[i].size()] != ' ') {
      why = "expected line \"" + std::string(kKeys[i]) + " ...\"";
      return false;
    }
    values[i] = line.substr(kKeys[i].size() + 1);
  }
  if (!rest.empty()) {
    why = "unexpected lines before the checksum";
    return false;
  }
  ArchiveStats s;
  s.last_archived_wal = values[2];
  s.last_failed_wal = values[5];
  s.last_failure_reason = values[9];
  if (!parse_number(values[0], s.stats_since_us) || !parse_number(values[1], s.archived_count) ||
      !parse_number(values[3], s.last_archived_time_us) ||
      !parse_number(values[4], s.failed_count) || !parse_number(values[6], s.last_failed_time_us) ||
      !parse_number(values[7], s.bytes_in) || !parse_number(values[8], s.bytes_out)) {
    why = "a number does not parse";
    return false;
  }
  out = std::move(s);
  return true;
}

int write_stats_file(const std::string& path, const ArchiveStats& stats) {
  const std::string text = encode_stats(stats);
  const std::string tmp = path + ".tmp";
  posix::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return errno;
  int err = posix::write_all(fd.get(),
                             std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  if (err == 0) err = fd.reset();
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) ::unlink(tmp.c_str());
  return err;
}

StatsRead read_stats_file(const std::string& path, ArchiveStats& out, std::string& why) {
  posix::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return StatsRead::kMissing;
    why = "could not open \"" + path + "\": " + posix::errno_text(errno);
    return StatsRead::kIo;
  }
  std::string text(kMaxFileBytes + 1, '\0');
  size_t len = 0;
  while (len < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + len, text.size() - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      why = "could not read \"" + path + "\": " + posix::errno_text(errno);
      return StatsRead::kIo;
    }
    if (n == 0) break;
    len += static_cast<size_t>(n);
  }
  if (len > kMaxFileBytes) {
    why = "file too large";
    return StatsRead::kCorrupt;
  }
  text.resize(len);
  return decode_stats(text, out, why) ? StatsRead::kOk : StatsRead::kCorrupt;
}

int64_t now_unix_us() noexcept {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

}  // namespace edgeshard::archive

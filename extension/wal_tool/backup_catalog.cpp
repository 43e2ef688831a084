// The backup catalog of a repository: see backup_catalog.hpp.
#include "extension/wal_tool/backup_catalog.hpp"

#include "common/archive_file.hpp"
#include "common/archive_repo.hpp"
#include "common/posix_file.hpp"
#include "extension/wal_tool/hex_text.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <system_error>

namespace edgeshard::wal_tool {

namespace fs = std::filesystem;

namespace {

// "checksum = " starts the manifest's last line.
constexpr std::string_view kChecksumKey = "checksum = ";

// 16 lower-case hex digits of v.
std::string hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

// Parses 16 lower-case hex digits.
bool parse_hex64(std::string_view s, uint64_t& out) {
  const auto v = s.size() == 16 ? parse_hex(s, 16, HexCase::kLower) : std::nullopt;
  if (v) out = *v;
  return v.has_value();
}

// Parses a decimal u64 (digits only).
bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  out = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t next = out * 10 + static_cast<uint64_t>(c - '0');
    if (next / 10 != out) return false;
    out = next;
  }
  return true;
}

// s with control bytes turned into spaces, so that a value stays on its line.
std::string one_line(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return s;
}

// Splits text into lines (without the '\n'); a last line without '\n' is kept.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

// Collects archive bytes into a string.
class StringBlockSink : public archive::BlockSink {
 public:
  explicit StringBlockSink(std::string& out) : out_(out) {}
  // Appends the block.
  bool consume(uint64_t, std::span<const uint8_t> raw) noexcept override {
    try {
      out_.append(reinterpret_cast<const char*>(raw.data()), raw.size());
      return true;
    } catch (...) {
      return false;
    }
  }

 private:
  std::string& out_;
};

}  // namespace

uint64_t Manifest::raw_size() const noexcept {
  uint64_t n = 0;
  for (const BackupPart& p : parts) n += p.raw_size;
  return n;
}

uint64_t Manifest::stored_size() const noexcept {
  uint64_t n = 0;
  for (const BackupPart& p : parts) n += p.stored_size;
  return n;
}

std::string encode_manifest(const Manifest& m) {
  std::string text = std::string(kManifestMagic) + "\n";
  const auto put = [&text](const char* key, const std::string& value) {
    text += key;
    text += " = ";
    text += one_line(value);
    text += '\n';
  };
  put("id", m.id);
  put("label", m.label);
  put("timeline", std::to_string(m.timeline));
  put("start_lsn", m.start_lsn);
  put("start_wal", m.start_wal);
  put("start_time", m.start_time);
  put("stop_lsn", m.stop_lsn);
  put("stop_wal", m.stop_wal);
  put("stop_time", m.stop_time);
  put("history_file", m.history_file);
  put("part_count", std::to_string(m.parts.size()));
  for (const BackupPart& p : m.parts) {
    put("part", p.name + " " + std::to_string(p.raw_size) + " " + std::to_string(p.stored_size) +
                    " " + hex64(p.xxh3));
  }
  const uint64_t sum = XXH3_64bits(text.data(), text.size());  // every byte before this line
  text += kChecksumKey;
  text += hex64(sum);
  text += '\n';
  return text;
}

bool parse_manifest(std::string_view text, Manifest& out, std::string& why) {
  out = Manifest{};
  const size_t last = text.rfind(kChecksumKey);
  if (last == std::string_view::npos || (last != 0 && text[last - 1] != '\n')) {
    why = "no checksum line";
    return false;
  }
  const std::string_view body = text.substr(0, last);
  std::string_view sum = text.substr(last + kChecksumKey.size());
  if (sum.empty() || sum.back() != '\n') {
    why = "the checksum line is truncated";
    return false;
  }
  sum.remove_suffix(1);
  uint64_t expected;
  if (!parse_hex64(sum, expected)) {
    why = "bad checksum value";
    return false;
  }
  if (XXH3_64bits(body.data(), body.size()) != expected) {
    why = "checksum mismatch";
    return false;
  }
  const std::vector<std::string_view> lines = split_lines(body);
  if (lines.empty() || lines[0] != kManifestMagic) {
    why = "not an edgeshard backup manifest (version 1)";
    return false;
  }
  std::map<std::string, std::string, std::less<>> values;
  uint64_t part_count = 0;
  bool have_part_count = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    const size_t eq = line.find(" = ");
    if (eq == std::string_view::npos) {
      why = "line " + std::to_string(i + 1) + " is not key = value";
      return false;
    }
    const std::string key(line.substr(0, eq));
    const std::string_view value = line.substr(eq + 3);
    if (key == "part") {
      BackupPart p;
      std::vector<std::string_view> fields;
      size_t pos = 0;
      while (pos <= value.size()) {
        size_t sp = value.find(' ', pos);
        if (sp == std::string_view::npos) sp = value.size();
        fields.push_back(value.substr(pos, sp - pos));
        pos = sp + 1;
      }
      if (fields.size() != 4 || !archive::valid_name(fields[0]) ||
          fields[0].rfind(kPartPrefix, 0) != 0 || !parse_u64(fields[1], p.raw_size) ||
          !parse_u64(fields[2], p.stored_size) || !parse_hex64(fields[3], p.xxh3)) {
        why = "bad part line " + std::to_string(i + 1);
        return false;
      }
      p.name = std::string(fields[0]);
      out.parts.push_back(std::move(p));
    } else if (key == "part_count") {
      if (!parse_u64(value, part_count)) {
        why = "bad part_count";
        return false;
      }
      have_part_count = true;
    } else if (!values.emplace(key, std::string(value)).second) {
      why = "key " + key + " appears twice";
      return false;
    }
  }
  const auto need = [&](const char* key, std::string& field) {
    auto it = values.find(key);
    if (it == values.end()) {
      why = std::string("missing key ") + key;
      return false;
    }
    field = it->second;
    return true;
  };
  std::string timeline;
  if (!need("id", out.id) || !need("label", out.label) || !need("timeline", timeline) ||
      !need("start_lsn", out.start_lsn) || !need("start_wal", out.start_wal) ||
      !need("start_time", out.start_time) || !need("stop_lsn", out.stop_lsn) ||
      !need("stop_wal", out.stop_wal) || !need("stop_time", out.stop_time) ||
      !need("history_file", out.history_file))
    return false;
  uint64_t tl;
  if (!parse_u64(timeline, tl) || tl == 0 || tl > UINT32_MAX) {
    why = "bad timeline";
    return false;
  }
  out.timeline = static_cast<uint32_t>(tl);
  if (!time_of_backup_id(out.id)) {
    why = "bad id";
    return false;
  }
  if (!parse_lsn(out.start_lsn) || !parse_lsn(out.stop_lsn) || !parse_segment_name(out.start_wal) ||
      !parse_segment_name(out.stop_wal)) {
    why = "bad start or stop location";
    return false;
  }
  if (!have_part_count || part_count != out.parts.size() || out.parts.empty()) {
    why = "part_count does not match the part lines";
    return false;
  }
  return true;
}

bool parse_backup_history(std::string_view text, BackupHistory& out, std::string& why) {
  out = BackupHistory{};
  bool have_start = false, have_stop = false, have_tl = false, have_label = false;
  bool have_start_time = false, have_stop_time = false;
  // "X/Y (file NAME)": the LSN and the segment name.
  const auto location = [](std::string_view v, std::string& lsn, std::string& file) {
    const size_t sp = v.find(" (file ");
    if (sp == std::string_view::npos || v.empty() || v.back() != ')') return false;
    lsn = std::string(v.substr(0, sp));
    file = std::string(v.substr(sp + 7, v.size() - sp - 8));
    return parse_lsn(lsn).has_value() && parse_segment_name(file).has_value();
  };
  for (std::string_view line : split_lines(text)) {
    const size_t colon = line.find(": ");
    if (colon == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, colon);
    const std::string_view value = line.substr(colon + 2);
    if (key == "START WAL LOCATION") {
      have_start = location(value, out.start_lsn, out.start_wal);
      if (!have_start) {
        why = "bad START WAL LOCATION";
        return false;
      }
    } else if (key == "STOP WAL LOCATION") {
      have_stop = location(value, out.stop_lsn, out.stop_wal);
      if (!have_stop) {
        why = "bad STOP WAL LOCATION";
        return false;
      }
    } else if (key == "START TIME") {
      out.start_time = std::string(value);
      have_start_time = true;
    } else if (key == "STOP TIME") {
      out.stop_time = std::string(value);
      have_stop_time = true;
    } else if (key == "LABEL") {
      out.label = std::string(value);
      have_label = true;
    } else if (key == "START TIMELINE") {
      uint64_t tl;
      if (!parse_u64(value, tl) || tl == 0 || tl > UINT32_MAX) {
        why = "bad START TIMELINE";
        return false;
      }
      out.timeline = static_cast<uint32_t>(tl);
      have_tl = true;
    }
  }
  if (!have_start || !have_stop || !have_tl || !have_label || !have_start_time || !have_stop_time) {
    why =
        "a backup history file needs START/STOP WAL LOCATION, START/STOP TIME, LABEL and "
        "START TIMELINE";
    return false;
  }
  return true;
}

std::string backup_id_for(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::optional<std::time_t> time_of_backup_id(std::string_view id) {
  if (id.size() != 16 || id[8] != 'T' || id[15] != 'Z') return std::nullopt;
  for (size_t i : {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14})
    if (id[i] < '0' || id[i] > '9') return std::nullopt;
  const auto num = [&](size_t pos, size_t len) {
    int v = 0;
    for (size_t i = pos; i < pos + len; ++i) v = v * 10 + (id[i] - '0');
    return v;
  };
  std::tm tm{};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(4, 2) - 1;
  tm.tm_mday = num(6, 2);
  tm.tm_hour = num(9, 2);
  tm.tm_min = num(11, 2);
  tm.tm_sec = num(13, 2);
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60)
    return std::nullopt;
  return timegm(&tm);
}

std::string backups_directory(const std::string& repo) {
  return (fs::path(repo) / kBackupsSubdir).string();
}

std::string backup_directory(const std::string& repo, std::string_view id) {
  return (fs::path(repo) / kBackupsSubdir / std::string(id)).string();
}

std::vector<BackupEntry> load_backups(const std::string& repo) {
  std::vector<BackupEntry> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(backups_directory(repo), ec)) {
    const std::string id = e.path().filename().string();
    if (!time_of_backup_id(id) || !e.is_directory(ec)) continue;
    BackupEntry entry;
    entry.id = id;
    posix::MappedFile file;
    const int err = file.open((e.path() / kManifestName).string(), true);
    if (err == ENOENT) {
      entry.problem = "no manifest";
    } else if (err != 0) {
      entry.problem = "cannot read the manifest: " + posix::errno_text(err);
    } else {
      const auto bytes = file.bytes();
      std::string why;
      if (!parse_manifest({reinterpret_cast<const char*>(bytes.data()), bytes.size()},
                          entry.manifest, why)) {
        entry.problem = "bad manifest: " + why;
      } else if (entry.manifest.id != id) {
        entry.problem = "the manifest names backup " + entry.manifest.id;
      } else {
        entry.complete = true;
      }
    }
    out.push_back(std::move(entry));
  }
  std::sort(out.begin(), out.end(),
            [](const BackupEntry& a, const BackupEntry& b) { return a.id < b.id; });
  return out;
}

std::vector<std::string> list_wal_files(const std::string& repo) {
  std::vector<std::string> out;
  std::error_code ec;
  const std::string suffix = archive::kFileSuffix;
  for (const fs::directory_entry& e : fs::directory_iterator(archive::wal_directory(repo), ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind(archive::kTempPrefix, 0) == 0) continue;
    if (name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    name.resize(name.size() - suffix.size());
    out.push_back(std::move(name));
  }
  std::sort(out.begin(), out.end());
  return out;
}

ChainReport check_chain(const Manifest& manifest, const std::vector<std::string>& wal_files) {
  ChainReport report;
  std::set<uint64_t> present;  // segment numbers on the backup's timeline
  for (const std::string& name : wal_files) {
    const auto seg = parse_segment_name(name);
    if (seg && seg->timeline == manifest.timeline) present.insert(seg->segno);
  }
  const auto start = parse_segment_name(manifest.start_wal);
  const auto stop = parse_segment_name(manifest.stop_wal);
  if (!start || !stop) return report;
  Segment s = *start;
  s.timeline = manifest.timeline;
  bool contiguous = true;
  for (; s.segno <= stop->segno; s = next_segment(s)) {
    if (present.count(s.segno) == 0) {
      report.missing.push_back(segment_name(s));
      contiguous = false;
    } else if (contiguous) {
      report.last_contiguous = segment_name(s);
    }
  }
  if (!contiguous) return report;
  while (present.count(s.segno) != 0) {
    report.last_contiguous = segment_name(s);
    s = next_segment(s);
  }
  // s is the first missing segment past the contiguous run: name the start of every gap
  // before a later segment.
  uint64_t expect = s.segno;
  for (auto it = present.upper_bound(s.segno); it != present.end(); ++it) {
    if (*it != expect)
      report.gaps_after.push_back(segment_name(Segment{manifest.timeline, expect}));
    expect = *it + 1;
  }
  return report;
}

ExpirePlan plan_expire(const std::vector<BackupEntry>& backups,
                       const std::vector<std::string>& wal_files, int keep, double keep_days,
                       std::time_t now) {
  ExpirePlan plan;
  std::vector<const BackupEntry*> complete;
  for (const BackupEntry& b : backups)
    if (b.complete) complete.push_back(&b);
  std::sort(complete.begin(), complete.end(), [](const BackupEntry* a, const BackupEntry* b) {
    return a->id > b->id;
  });  // newest first
  std::set<std::string> kept;
  for (size_t i = 0; i < complete.size(); ++i) {
    bool keep_it;
    if (keep > 0) {
      keep_it = i < static_cast<size_t>(keep);
    } else {
      const auto t = time_of_backup_id(complete[i]->id);
      keep_it = i == 0 || (t && static_cast<double>(now - *t) < keep_days * 86400.0);
    }
    if (keep_it) kept.insert(complete[i]->id);
  }
  for (const BackupEntry& b : backups) {
    if (b.complete) {
      if (kept.count(b.id) != 0) {
        plan.keep_backups.push_back(b.id);
      } else {
        plan.remove_backups.push_back(b.id);
      }
    } else {
      const auto t = time_of_backup_id(b.id);
      if (t && now - *t > 86400) plan.remove_backups.push_back(b.id);
    }
  }
  if (plan.keep_backups.empty()) return plan;
  // The oldest kept backup (ids sort by time).
  const BackupEntry* oldest = nullptr;
  for (const BackupEntry& b : backups)
    if (b.complete && kept.count(b.id) != 0) {
      oldest = &b;
      break;
    }
  auto start = parse_segment_name(oldest->manifest.start_wal);
  if (!start) return plan;
  start->timeline = oldest->manifest.timeline;
  for (const std::string& name : wal_files) {
    const auto seg = segment_of_wal_file(name);
    if (!seg) continue;  // timeline history files and anything unknown stay
    if (seg->timeline <= start->timeline && seg->segno < start->segno)
      plan.remove_wal.push_back(name);
  }
  return plan;
}

bool write_file_durably(const std::string& path, std::string_view content, std::string& why) {
  const std::string tmp = posix::parent_directory(path) + "/" + archive::kTempPrefix +
                          fs::path(path).filename().string() + "." + std::to_string(::getpid());
  {
    posix::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) {
      why = "could not create \"" + tmp + "\": " + posix::errno_text(errno);
      return false;
    }
    int err = posix::write_all(fd.get(),
                               {reinterpret_cast<const uint8_t*>(content.data()), content.size()});
    if (err == 0 && ::fsync(fd.get()) != 0) err = errno;
    if (err == 0) err = fd.reset();
    if (err != 0) {
      ::unlink(tmp.c_str());
      why = "could not write \"" + tmp + "\": " + posix::errno_text(err);
      return false;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    why = "could not rename \"" + tmp + "\": " + posix::errno_text(err);
    return false;
  }
  const int err = posix::fsync_directory(posix::parent_directory(path));
  if (err != 0) {
    why = "could not fsync the directory of \"" + path + "\": " + posix::errno_text(err);
    return false;
  }
  return true;
}

bool read_archive_file(const std::string& path, std::string_view name, std::string& out,
                       std::string& why) {
  out.clear();
  posix::MappedFile file;
  const int err = file.open(path, true);
  if (err != 0) {
    why = "could not open \"" + path + "\": " + posix::errno_text(err);
    return false;
  }
  archive::Reader reader;
  archive::Status st = reader.open_named(file.bytes(), name);
  StringBlockSink sink(out);
  if (st.ok()) st = reader.decode(sink);
  if (!st.ok()) {
    why = archive::describe(st, path);
    return false;
  }
  return true;
}

}  // namespace edgeshard::wal_tool

// The relay's segmented frame log: segment files, crash recovery on open, group sync, cuts back
// to a transaction boundary, cursors and retention (byte layout: LOG_FORMAT.md).
#include "walsender_fanout/relay/frame_log.hpp"

#include "common/frame_codec.hpp"
#include "common/posix_file.hpp"

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <utility>

namespace edgeshard::relay {

namespace {

using frame::load_u16;
using frame::load_u32;
using frame::load_u64;
using frame::store_u16;
using frame::store_u32;
using frame::store_u64;

// --- Layout (LOG_FORMAT.md) --------------------------------------------------------------------
constexpr uint8_t kSegmentMagic[4] = {'E', 'S', 'R', 'L'};
constexpr uint8_t kFormatVersion = 1;  // written; also the minimum version this code reads
constexpr uint8_t kChecksumXxh3 = 1;
constexpr uint16_t kKnownSegmentFlags = 0;  // no flag defined yet: any set bit is refused

constexpr size_t kSegOffMagic = 0;
constexpr size_t kSegOffVersion = 4;
constexpr size_t kSegOffChecksumType = 5;
constexpr size_t kSegOffFlags = 6;
constexpr size_t kSegOffNumber = 8;
constexpr size_t kSegOffReserved = 12;
constexpr size_t kSegOffBaseLsn = 16;
constexpr size_t kSegOffChecksum = 24;
constexpr size_t kSegmentHeaderSize = 32;

constexpr size_t kRecOffLength = 0;
constexpr size_t kRecOffReserved = 4;
constexpr size_t kRecOffLsn = 8;
constexpr size_t kRecOffChecksum = 16;
constexpr size_t kRecordHeaderSize = 24;

// Segment file name: 16 hex digits of the base LSN, '-', 8 hex digits of the number, ".log".
constexpr size_t kSegmentNameLength = 16 + 1 + 8 + 4;

// The segment header's checksum: XXH3-64 of its first 24 bytes.
uint64_t segment_header_checksum(const uint8_t* h) noexcept {
  return XXH3_64bits(h, kSegOffChecksum);
}

// A record's checksum: XXH3-64 over the segment number, the record's file offset, the first 16
// bytes of its header and its frame, so a record copied to another place is caught too.
uint64_t record_checksum(uint32_t segment_number, uint64_t offset, const uint8_t* header,
                         const uint8_t* frame, size_t length) noexcept {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  uint8_t context[12];
  store_u32(context, segment_number);
  store_u64(context + 4, offset);
  XXH3_64bits_update(&state, context, sizeof context);
  XXH3_64bits_update(&state, header, kRecOffChecksum);
  XXH3_64bits_update(&state, frame, length);
  return XXH3_64bits_digest(&state);
}

// File name of segment `number` whose first record has LSN base_lsn.
std::string segment_name(uint64_t base_lsn, uint32_t number) {
  char buf[kSegmentNameLength + 1];
  std::snprintf(buf, sizeof buf, "%016llx-%08x.log", static_cast<unsigned long long>(base_lsn),
                static_cast<unsigned>(number));
  return buf;
}

// Parses the lower-case hex digits of s into out.
bool parse_hex(std::string_view s, uint64_t& out) noexcept {
  out = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return false;
    }
    out = (out << 4) | static_cast<uint64_t>(d);
  }
  return true;
}

// Parses a segment file name; false for any other file.
bool parse_segment_name(std::string_view name, uint64_t& base_lsn, uint32_t& number) noexcept {
  if (name.size() != kSegmentNameLength || name[16] != '-' || name.substr(25) != ".log") {
    return false;
  }
  uint64_t n = 0;
  if (!parse_hex(name.substr(0, 16), base_lsn) || !parse_hex(name.substr(17, 8), n)) return false;
  number = static_cast<uint32_t>(n);
  return true;
}

// A status of the given class.
LogStatus make_status(LogError e, std::string message) { return LogStatus{e, std::move(message)}; }

// kIo status naming the failed call, the file and errno's text.
LogStatus io_error(const char* call, const std::string& file, int err) {
  LogStatus st = make_status(LogError::kIo,
                             std::string(call) + " failed on " + file + ": " + std::strerror(err));
  st.sys_errno = err;
  st.path = file;
  return st;
}

// kCorrupt status naming the file and offset.
LogStatus corrupt(const std::string& file, uint64_t offset, const char* what) {
  return make_status(LogError::kCorrupt, "corrupt relay log " + file + " at offset " +
                                             std::to_string(offset) + ": " + what);
}

// Writes all of data at offset, retrying short writes and EINTR.
bool pwrite_all(int fd, const uint8_t* data, size_t size, uint64_t offset) noexcept {
  if (const size_t room = posix::take_write_budget(size); room < size) {
    // A test's full disk (posix_file.hpp): store what fits, then fail as the kernel would.
    if (room > 0 && ::pwrite(fd, data, room, static_cast<off_t>(offset)) < 0) return false;
    errno = ENOSPC;
    return false;
  }
  while (size > 0) {
    ssize_t n = ::pwrite(fd, data, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

// Reads up to size bytes at offset (fewer only at end of file); returns the count or -1.
ssize_t pread_all(int fd, uint8_t* data, size_t size, uint64_t offset) noexcept {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, data + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

}  // namespace

namespace detail {

// Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  // Takes ownership of fd (-1 for none).
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  // The descriptor.
  int get() const noexcept { return fd_; }
  // Closes the descriptor.
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// One sparse index entry: the record at `offset` is the log's record `ordinal` and has `lsn`.
struct IndexEntry {
  uint64_t lsn;
  uint64_t offset;
  uint64_t ordinal;
};

// One segment file; the fields after fd are guarded by LogState::mu (the writer also reads them
// without the lock, being their only mutator).
struct Segment {
  uint32_t number = 0;
  uint64_t base_lsn = 0;
  std::string path;
  Fd fd;
  uint64_t first_ordinal = 0;
  uint64_t records = 0;
  uint64_t end_offset = kSegmentHeaderSize;
  uint64_t last_lsn = 0;
  std::vector<IndexEntry> index;
};

// State shared by the FrameLog and its cursors.
struct LogState {
  std::filesystem::path dir;
  FrameLog::Options options;
  Fd dir_fd;  // also holds the flock that keeps a second writer out

  mutable std::mutex mu;
  std::deque<std::shared_ptr<Segment>> segments;  // guarded by mu
  FrameLog::Position written;                     // guarded by mu
  FrameLog::Position durable;                     // guarded by mu
  std::atomic<uint64_t> durable_records{0};       // durable.records, read by cursors lock-free
  std::atomic<uint64_t> truncations{0};           // cuts made by truncate_to(), changed under mu

  // Writer-only.
  uint32_t next_number = 0;
  bool dir_dirty = false;
  bool failed = false;
  std::string creating;  // a segment file being created (removed by repair() if that failed)
  std::vector<uint8_t> scratch;
};

}  // namespace detail

namespace {

using detail::IndexEntry;
using detail::LogState;
using detail::Segment;

// Reads and checks the record at offset of seg (limit: bytes of the file that may hold records).
// On kOk, lsn and frame are set and *length is the frame's length.
LogStatus read_record(const Segment& seg, uint64_t offset, uint64_t limit, uint8_t* header,
                      std::vector<uint8_t>& frame, uint64_t& lsn, uint32_t& length) {
  if (limit - offset < kRecordHeaderSize)
    return corrupt(seg.path, offset, "record header truncated");
  ssize_t n = pread_all(seg.fd.get(), header, kRecordHeaderSize, offset);
  if (n < 0) return io_error("pread", seg.path, errno);
  if (static_cast<size_t>(n) < kRecordHeaderSize) {
    return corrupt(seg.path, offset, "record header truncated");
  }
  length = load_u32(header + kRecOffLength);
  if (length == 0 || length > kMaxRecordBytes) {
    return corrupt(seg.path, offset, "record length out of range");
  }
  if (load_u32(header + kRecOffReserved) != 0) {
    return corrupt(seg.path, offset + kRecOffReserved, "record reserved bytes not zero");
  }
  if (limit - offset - kRecordHeaderSize < length) {
    return corrupt(seg.path, offset, "record extends past end of segment");
  }
  frame.resize(length);
  n = pread_all(seg.fd.get(), frame.data(), length, offset + kRecordHeaderSize);
  if (n < 0) return io_error("pread", seg.path, errno);
  if (static_cast<size_t>(n) < length) {
    return corrupt(seg.path, offset, "record extends past end of file");
  }
  if (record_checksum(seg.number, offset, header, frame.data(), length) !=
      load_u64(header + kRecOffChecksum)) {
    return corrupt(seg.path, offset, "record checksum mismatch");
  }
  lsn = load_u64(header + kRecOffLsn);
  return {};
}

// Finds where seg's first `count` records end (1 <= count <= seg.records) and the key of the last
// of them: from the last sparse index entry before that point, by reading record headers only.
LogStatus find_record_end(const Segment& seg, uint64_t count, uint64_t& end, uint64_t& lsn) {
  if (count == seg.records) {
    end = seg.end_offset;
    lsn = seg.last_lsn;
    return {};
  }
  const uint64_t stop = seg.first_ordinal + count;  // ordinal of the first record not kept
  auto entry = std::partition_point(seg.index.begin(), seg.index.end(),
                                    [&](const IndexEntry& e) { return e.ordinal < stop; });
  // index[0] is the segment's first record, whose ordinal is below stop.
  --entry;
  uint64_t offset = entry->offset;
  uint8_t header[kRecordHeaderSize];
  for (uint64_t ordinal = entry->ordinal; ordinal < stop; ++ordinal) {
    ssize_t n = pread_all(seg.fd.get(), header, kRecordHeaderSize, offset);
    if (n < 0) return io_error("pread", seg.path, errno);
    const uint32_t length = load_u32(header + kRecOffLength);
    if (static_cast<size_t>(n) < kRecordHeaderSize || length == 0 || length > kMaxRecordBytes ||
        seg.end_offset - offset < kRecordHeaderSize ||
        seg.end_offset - offset - kRecordHeaderSize < length) {
      return corrupt(seg.path, offset, "record header does not match the segment's records");
    }
    lsn = load_u64(header + kRecOffLsn);
    offset += kRecordHeaderSize + length;
  }
  end = offset;
  return {};
}

// Checks a segment header against the file name's number and base LSN.
LogStatus check_segment_header(const Segment& seg, const uint8_t* h) {
  if (std::memcmp(h + kSegOffMagic, kSegmentMagic, 4) != 0) {
    return corrupt(seg.path, kSegOffMagic, "bad segment magic");
  }
  if (h[kSegOffVersion] < kFormatVersion || h[kSegOffVersion] > kFormatVersion) {
    return corrupt(seg.path, kSegOffVersion, "unsupported segment format version");
  }
  if (h[kSegOffChecksumType] != kChecksumXxh3) {
    return corrupt(seg.path, kSegOffChecksumType, "unknown checksum type");
  }
  if ((load_u16(h + kSegOffFlags) & ~kKnownSegmentFlags) != 0) {
    return corrupt(seg.path, kSegOffFlags, "unknown segment flags");
  }
  if (segment_header_checksum(h) != load_u64(h + kSegOffChecksum)) {
    return corrupt(seg.path, kSegOffChecksum, "segment header checksum mismatch");
  }
  if (load_u32(h + kSegOffReserved) != 0) {
    return corrupt(seg.path, kSegOffReserved, "segment reserved bytes not zero");
  }
  if (load_u32(h + kSegOffNumber) != seg.number) {
    return corrupt(seg.path, kSegOffNumber, "segment number does not match file name");
  }
  if (load_u64(h + kSegOffBaseLsn) != seg.base_lsn) {
    return corrupt(seg.path, kSegOffBaseLsn, "segment base lsn does not match file name");
  }
  return {};
}

// Throws the status as a start-up error.
[[noreturn]] void throw_open(LogStatus st) { throw LogOpenError(std::move(st)); }

// fsyncs the log directory.
LogStatus sync_dir(LogState& s) {
  if (::fsync(s.dir_fd.get()) != 0) return io_error("fsync", s.dir.string(), errno);
  return {};
}

// Scans seg's records from its header on, checking each one, filling its counters and index.
// A sealed segment must end exactly after a valid record; for the last one, *cut receives the
// offset of the first bad record (the torn tail) instead of failing.
LogStatus scan_segment(LogState& s, Segment& seg, uint64_t file_size, uint64_t prev_lsn,
                       bool has_prev, uint64_t* cut) {
  uint8_t header[kRecordHeaderSize];
  uint64_t offset = kSegmentHeaderSize;
  uint64_t lsn = 0;
  uint32_t length = 0;
  while (offset < file_size) {
    LogStatus st = read_record(seg, offset, file_size, header, s.scratch, lsn, length);
    if (st.error == LogError::kCorrupt && cut != nullptr) {
      *cut = offset;
      break;
    }
    if (!st.ok()) return st;
    if (seg.records == 0 && lsn != seg.base_lsn) {
      return corrupt(seg.path, offset + kRecOffLsn, "first record lsn differs from base lsn");
    }
    if ((seg.records > 0 && lsn < seg.last_lsn) ||
        (seg.records == 0 && has_prev && lsn <= prev_lsn)) {
      return corrupt(seg.path, offset + kRecOffLsn, "record lsn decreases");
    }
    if (seg.records % s.options.index_every == 0) {
      seg.index.push_back(IndexEntry{lsn, offset, seg.first_ordinal + seg.records});
    }
    ++seg.records;
    seg.last_lsn = lsn;
    offset += kRecordHeaderSize + length;
  }
  seg.end_offset = offset;
  if (cut != nullptr && offset == file_size) *cut = file_size;
  if (cut == nullptr && seg.records == 0) {
    return corrupt(seg.path, kSegmentHeaderSize, "sealed segment holds no record");
  }
  return {};
}

// Removes the file of a segment being discarded at start-up.
void unlink_or_throw(const Segment& seg) {
  if (::unlink(seg.path.c_str()) != 0) throw_open(io_error("unlink", seg.path, errno));
}

}  // namespace

const char* log_error_name(LogError e) noexcept {
  switch (e) {
    case LogError::kOk:
      return "ok";
    case LogError::kEnd:
      return "end";
    case LogError::kBehindRetention:
      return "behind_retention";
    case LogError::kLsnDecreasing:
      return "lsn_decreasing";
    case LogError::kBadRecord:
      return "bad_record";
    case LogError::kCorrupt:
      return "corrupt";
    case LogError::kIo:
      return "io";
    case LogError::kFailed:
      return "failed";
  }
  return "unknown";
}

// --- FrameLog ------------------------------------------------------------------------------------

FrameLog::FrameLog(std::shared_ptr<detail::LogState> state) : state_(std::move(state)) {}
FrameLog::FrameLog(FrameLog&&) noexcept = default;
FrameLog& FrameLog::operator=(FrameLog&&) noexcept = default;
FrameLog::~FrameLog() = default;

FrameLog FrameLog::open(const std::filesystem::path& dir, Options options) {
  if (options.segment_bytes < kSegmentHeaderSize + kRecordHeaderSize + 1) {
    throw std::invalid_argument("relay log segment_bytes is too small");
  }
  if (options.index_every == 0) throw std::invalid_argument("relay log index_every must be >= 1");

  auto s = std::make_shared<LogState>();
  s->dir = dir;
  s->options = options;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw_open(make_status(LogError::kIo, "cannot create " + dir.string() + ": " + ec.message()));
  s->dir_fd = detail::Fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (s->dir_fd.get() < 0) throw_open(io_error("open", dir.string(), errno));
  if (::flock(s->dir_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    throw_open(make_status(
        LogError::kIo,
        "relay log " + dir.string() + " is locked by another process: " + std::strerror(errno)));
  }

  // Segment files, by number.
  std::vector<std::shared_ptr<Segment>> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    auto seg = std::make_shared<Segment>();
    if (!parse_segment_name(name, seg->base_lsn, seg->number)) continue;
    seg->path = entry.path().string();
    found.push_back(std::move(seg));
  }
  if (ec)
    throw_open(make_status(LogError::kIo, "cannot list " + dir.string() + ": " + ec.message()));
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a->number < b->number; });

  uint64_t ordinal = 0;
  uint64_t prev_lsn = 0;
  bool synced_away = false;  // a file was cut or removed: sync before trusting it
  for (size_t i = 0; i < found.size(); ++i) {
    Segment& seg = *found[i];
    const bool last = i + 1 == found.size();
    if (i > 0 && seg.number != found[i - 1]->number + 1) {
      throw_open(corrupt(seg.path, 0, "segment numbers are not consecutive"));
    }
    // Read-write even when sealed: truncate_to() may cut back into it and make it the active one.
    seg.fd = detail::Fd(::open(seg.path.c_str(), O_RDWR | O_CLOEXEC));
    if (seg.fd.get() < 0) throw_open(io_error("open", seg.path, errno));
    struct stat sb;
    if (::fstat(seg.fd.get(), &sb) != 0) throw_open(io_error("fstat", seg.path, errno));
    const uint64_t size = static_cast<uint64_t>(sb.st_size);
    uint8_t h[kSegmentHeaderSize] = {};
    ssize_t n = pread_all(seg.fd.get(), h, kSegmentHeaderSize, 0);
    if (n < 0) throw_open(io_error("pread", seg.path, errno));
    static constexpr uint8_t kZeros[4] = {};
    if (last && (static_cast<size_t>(n) < kSegmentHeaderSize ||
                 std::memcmp(h + kSegOffMagic, kZeros, 4) == 0)) {
      // A segment whose creation was torn: its header (and so any record) was never durable.
      unlink_or_throw(seg);
      found.pop_back();
      synced_away = true;
      break;
    }
    if (static_cast<size_t>(n) < kSegmentHeaderSize) {
      throw_open(corrupt(seg.path, 0, "segment header truncated"));
    }
    if (LogStatus st = check_segment_header(seg, h); !st.ok()) throw_open(std::move(st));
    seg.first_ordinal = ordinal;
    uint64_t cut = size;
    if (LogStatus st = scan_segment(*s, seg, size, prev_lsn, i > 0, last ? &cut : nullptr);
        !st.ok()) {
      throw_open(std::move(st));
    }
    if (last && cut < size) {
      // Torn tail: drop every byte from the first incomplete or damaged record on.
      if (::ftruncate(seg.fd.get(), static_cast<off_t>(cut)) != 0) {
        throw_open(io_error("ftruncate", seg.path, errno));
      }
      synced_away = true;
    }
    if (last && seg.records == 0) {
      unlink_or_throw(seg);
      found.pop_back();
      synced_away = true;
      break;
    }
    ordinal += seg.records;
    prev_lsn = seg.last_lsn;
  }

  // The last remaining segment becomes the active one.
  if (!found.empty()) {
    Segment& last = *found.back();
    // What the previous process wrote may still be only in the page cache.
    if (::fdatasync(last.fd.get()) != 0) throw_open(io_error("fdatasync", last.path, errno));
    s->next_number = last.number + 1;
    s->written = Position{last.last_lsn, ordinal};
  }
  if (synced_away || !found.empty()) {
    if (LogStatus st = sync_dir(*s); !st.ok()) throw_open(std::move(st));
  }
  s->durable = s->written;
  s->durable_records.store(s->written.records, std::memory_order_release);
  s->segments.assign(found.begin(), found.end());
  return FrameLog(std::move(s));
}

LogStatus FrameLog::append(uint64_t lsn, std::span<const uint8_t> frame) {
  LogState& s = *state_;
  if (s.failed) return make_status(LogError::kFailed, "relay log refuses writes after a failure");
  if (frame.empty() || frame.size() > kMaxRecordBytes) {
    return make_status(LogError::kBadRecord,
                       "frame length " + std::to_string(frame.size()) + " out of range");
  }
  if (s.written.records > 0 && lsn < s.written.lsn) {
    return make_status(LogError::kLsnDecreasing, "lsn " + std::to_string(lsn) +
                                                     " is below the last appended lsn " +
                                                     std::to_string(s.written.lsn));
  }
  const uint64_t record_size = kRecordHeaderSize + frame.size();
  Segment* active = s.segments.empty() ? nullptr : s.segments.back().get();
  // Records of one LSN stay in one segment, so a segment boundary always falls between LSNs.
  if (active == nullptr ||
      (active->records > 0 && active->end_offset + record_size > s.options.segment_bytes &&
       lsn > active->last_lsn)) {
    if (active != nullptr) {
      // Seal: every segment but the last is complete and durable before the next one exists.
      if (::fdatasync(active->fd.get()) != 0) {
        s.failed = true;
        return io_error("fdatasync", active->path, errno);
      }
      if (s.dir_dirty) {
        if (LogStatus st = sync_dir(s); !st.ok()) {
          s.failed = true;
          return st;
        }
        s.dir_dirty = false;
      }
    }
    auto seg = std::make_shared<Segment>();
    seg->number = s.next_number;
    seg->base_lsn = lsn;
    seg->path = (s.dir / segment_name(lsn, seg->number)).string();
    seg->first_ordinal = s.written.records;
    s.creating = seg->path;
    seg->fd = detail::Fd(::open(seg->path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (seg->fd.get() < 0) {
      s.failed = true;
      return io_error("open", seg->path, errno);
    }
    s.dir_dirty = true;
    uint8_t h[kSegmentHeaderSize] = {};
    std::memcpy(h + kSegOffMagic, kSegmentMagic, 4);
    h[kSegOffVersion] = kFormatVersion;
    h[kSegOffChecksumType] = kChecksumXxh3;
    store_u16(h + kSegOffFlags, 0);
    store_u32(h + kSegOffNumber, seg->number);
    store_u64(h + kSegOffBaseLsn, lsn);
    store_u64(h + kSegOffChecksum, segment_header_checksum(h));
    if (!pwrite_all(seg->fd.get(), h, sizeof h, 0)) {
      s.failed = true;
      return io_error("pwrite", seg->path, errno);
    }
    ++s.next_number;
    s.creating.clear();
    {
      std::lock_guard lock(s.mu);
      s.segments.push_back(seg);
    }
    active = seg.get();
  }

  const uint64_t offset = active->end_offset;
  uint8_t h[kRecordHeaderSize] = {};
  store_u32(h + kRecOffLength, static_cast<uint32_t>(frame.size()));
  store_u64(h + kRecOffLsn, lsn);
  store_u64(h + kRecOffChecksum,
            record_checksum(active->number, offset, h, frame.data(), frame.size()));
  if (!pwrite_all(active->fd.get(), h, sizeof h, offset) ||
      !pwrite_all(active->fd.get(), frame.data(), frame.size(), offset + kRecordHeaderSize)) {
    s.failed = true;
    return io_error("pwrite", active->path, errno);
  }
  std::lock_guard lock(s.mu);
  if (active->records % s.options.index_every == 0) {
    active->index.push_back(IndexEntry{lsn, offset, s.written.records});
  }
  ++active->records;
  active->end_offset = offset + record_size;
  active->last_lsn = lsn;
  s.written = Position{lsn, s.written.records + 1};
  return {};
}

LogStatus FrameLog::sync() {
  LogState& s = *state_;
  if (s.failed) return make_status(LogError::kFailed, "relay log refuses writes after a failure");
  Position target;
  {
    std::lock_guard lock(s.mu);
    target = s.written;
    if (target.records == s.durable.records) return {};
  }
  if (s.segments.empty()) {
    // Only after truncate_to() emptied the log: no record is retained, so none waits for a sync.
    std::lock_guard lock(s.mu);
    s.durable = target;
    s.durable_records.store(target.records, std::memory_order_release);
    return {};
  }
  // Sealed segments were synced when they were sealed; only the active one can hold new records.
  Segment& active = *s.segments.back();
  if (::fdatasync(active.fd.get()) != 0) {
    // After a failed fsync the kernel may have dropped the dirty pages: never retry blindly.
    s.failed = true;
    return io_error("fdatasync", active.path, errno);
  }
  if (s.dir_dirty) {
    if (LogStatus st = sync_dir(s); !st.ok()) {
      s.failed = true;
      return st;
    }
    s.dir_dirty = false;
  }
  std::lock_guard lock(s.mu);
  s.durable = target;
  s.durable_records.store(target.records, std::memory_order_release);
  return {};
}

FrameLog::Position FrameLog::written() const {
  std::lock_guard lock(state_->mu);
  return state_->written;
}

FrameLog::Position FrameLog::durable() const {
  std::lock_guard lock(state_->mu);
  return state_->durable;
}

uint64_t FrameLog::oldest_lsn() const {
  std::lock_guard lock(state_->mu);
  return state_->segments.empty() ? 0 : state_->segments.front()->base_lsn;
}

FrameLog::Position FrameLog::oldest() const {
  std::lock_guard lock(state_->mu);
  if (state_->segments.empty()) return state_->written;
  return Position{0, state_->segments.front()->first_ordinal};
}

uint64_t FrameLog::total_bytes() const {
  std::lock_guard lock(state_->mu);
  uint64_t total = 0;
  for (const auto& seg : state_->segments) total += seg->end_offset;
  return total;
}

size_t FrameLog::segment_count() const {
  std::lock_guard lock(state_->mu);
  return state_->segments.size();
}

std::vector<FrameLog::SegmentInfo> FrameLog::segments() const {
  std::lock_guard lock(state_->mu);
  std::vector<SegmentInfo> out;
  out.reserve(state_->segments.size());
  for (const auto& seg : state_->segments) out.push_back({seg->base_lsn, seg->end_offset});
  return out;
}

LogStatus FrameLog::open_cursor(uint64_t start, Cursor& cursor) const {
  LogState& s = *state_;
  std::lock_guard lock(s.mu);
  cursor = Cursor();
  cursor.state_ = state_;
  cursor.start_lsn_ = start;
  cursor.truncations_ = s.truncations.load(std::memory_order_relaxed);
  if (s.segments.empty()) {
    cursor.ordinal_ = s.written.records;
    cursor.segment_end_ = cursor.ordinal_;
    return {};
  }
  if (start < s.segments.front()->base_lsn) {
    return make_status(LogError::kBehindRetention,
                       "start lsn " + std::to_string(start) + " is below the oldest retained lsn " +
                           std::to_string(s.segments.front()->base_lsn));
  }
  auto it = std::find_if(s.segments.begin(), s.segments.end(), [&](const auto& seg) {
    return seg->records > 0 && seg->last_lsn >= start;
  });
  const uint64_t durable = s.durable.records;
  if (it == s.segments.end() && durable == s.written.records) {
    // Beyond the end: wait at the end of the active segment for records still to come.
    const auto& last = s.segments.back();
    cursor.segment_ = last;
    cursor.offset_ = last->end_offset;
    cursor.ordinal_ = last->first_ordinal + last->records;
    cursor.segment_end_ = cursor.ordinal_;
    return {};
  }
  if (it == s.segments.end()) --it;
  // The seek never passes durable(): a cursor's position stays at or below it until records
  // become durable, so truncate_to(durable()) keeps every cursor valid.
  while (it != s.segments.begin() && (*it)->first_ordinal > durable) --it;
  const Segment& seg = **it;
  cursor.segment_ = *it;
  cursor.offset_ = kSegmentHeaderSize;
  cursor.ordinal_ = seg.first_ordinal;
  // The last index entry below start (and at or below durable()): every record before it is
  // below start too.
  auto entry = std::partition_point(seg.index.begin(), seg.index.end(), [&](const IndexEntry& e) {
    return e.lsn < start && e.ordinal <= durable;
  });
  if (entry != seg.index.begin()) {
    --entry;
    cursor.offset_ = entry->offset;
    cursor.ordinal_ = entry->ordinal;
  }
  cursor.segment_end_ = seg.first_ordinal + seg.records;
  return {};
}

LogStatus FrameLog::truncate_to(Position keep) {
  LogState& s = *state_;
  if (s.failed) return make_status(LogError::kFailed, "relay log refuses writes after a failure");
  // This thread is the only one changing segments and written: reading them needs no lock.
  const uint64_t oldest =
      s.segments.empty() ? s.written.records : s.segments.front()->first_ordinal;
  if (keep.records > s.written.records) {
    return make_status(LogError::kBadRecord,
                       "cannot truncate to record " + std::to_string(keep.records) +
                           ": beyond the last written record " + std::to_string(s.written.records));
  }
  if (keep.records < oldest) {
    return make_status(LogError::kBadRecord,
                       "cannot truncate to record " + std::to_string(keep.records) +
                           ": below the oldest retained record " + std::to_string(oldest));
  }
  // Segments kept (the last one holds the record keep.records - 1), and where its records end.
  size_t kept_segments = 0;
  uint64_t cut_offset = 0;
  uint64_t kept_in_segment = 0;
  uint64_t last_lsn = 0;
  if (keep.records > oldest) {
    auto it = std::partition_point(s.segments.begin(), s.segments.end(), [&](const auto& seg) {
      return seg->first_ordinal + seg->records < keep.records;
    });
    const Segment& seg = **it;
    kept_segments = static_cast<size_t>(it - s.segments.begin()) + 1;
    kept_in_segment = keep.records - seg.first_ordinal;
    if (LogStatus st = find_record_end(seg, kept_in_segment, cut_offset, last_lsn); !st.ok()) {
      return st;
    }
    if (keep.lsn != last_lsn) {
      return make_status(LogError::kBadRecord,
                         "cannot truncate to record " + std::to_string(keep.records) + " at lsn " +
                             std::to_string(keep.lsn) + ": that record's lsn is " +
                             std::to_string(last_lsn));
    }
  }
  if (keep.records == s.written.records) return {};  // nothing follows keep

  // Cursors stop short of the cut before any byte of it goes.
  {
    std::lock_guard lock(s.mu);
    s.written = keep;
    if (s.durable.records > keep.records) {
      s.durable = keep;
      s.durable_records.store(keep.records, std::memory_order_release);
    }
  }
  // Later segments go last first, each removal made durable before the next, so that a crash
  // leaves the log a prefix of itself (a gap in the numbers would fail the next open).
  const std::vector<std::shared_ptr<Segment>> removed(
      s.segments.begin() + static_cast<std::ptrdiff_t>(kept_segments), s.segments.end());
  for (auto it = removed.rbegin(); it != removed.rend(); ++it) {
    if (::unlink((*it)->path.c_str()) != 0) {
      s.failed = true;
      return io_error("unlink", (*it)->path, errno);
    }
    if (LogStatus st = sync_dir(s); !st.ok()) {
      s.failed = true;
      return st;
    }
  }
  if (kept_segments > 0) {
    Segment& seg = *s.segments[kept_segments - 1];
    if (cut_offset < seg.end_offset &&
        ::ftruncate(seg.fd.get(), static_cast<off_t>(cut_offset)) != 0) {
      s.failed = true;
      return io_error("ftruncate", seg.path, errno);
    }
    if (::fdatasync(seg.fd.get()) != 0) {
      s.failed = true;
      return io_error("fdatasync", seg.path, errno);
    }
  }
  // Also covers a kept segment whose creation was not yet synced.
  if (LogStatus st = sync_dir(s); !st.ok()) {
    s.failed = true;
    return st;
  }
  s.dir_dirty = false;
  if (!removed.empty()) s.next_number = removed.front()->number;  // numbers stay consecutive

  std::lock_guard lock(s.mu);
  s.segments.erase(s.segments.begin() + static_cast<std::ptrdiff_t>(kept_segments),
                   s.segments.end());
  if (kept_segments > 0) {
    Segment& seg = *s.segments.back();
    seg.records = kept_in_segment;
    seg.end_offset = cut_offset;
    seg.last_lsn = last_lsn;
    std::erase_if(seg.index, [&](const IndexEntry& e) { return e.ordinal >= keep.records; });
  } else if (s.durable.records < keep.records) {
    // No record is retained: those below keep were in sealed, hence durable, dropped segments.
    s.durable = keep;
    s.durable_records.store(keep.records, std::memory_order_release);
  }
  s.truncations.fetch_add(1, std::memory_order_release);
  return {};
}

bool FrameLog::failed() const { return state_->failed; }

LogStatus FrameLog::repair() {
  LogState& s = *state_;
  if (!s.failed) return {};
  // Failing again part way leaves the log failed: the caller retries later, nothing is lost.
  auto fail_again = [&](LogStatus st) {
    s.failed = true;
    return st;
  };
  // A segment file whose creation failed (its header, or its first record, never completed):
  // it is not among the segments; as at open, such a tail is removed.
  if (!s.creating.empty()) {
    if (::unlink(s.creating.c_str()) != 0 && errno != ENOENT) {
      return fail_again(io_error("unlink", s.creating, errno));
    }
    if (LogStatus st = sync_dir(s); !st.ok()) return fail_again(st);
    s.creating.clear();
  }
  // Records appended since the last sync: their pages may be lost (a failed fdatasync) or their
  // bytes incomplete. Cut them as a crash would have.
  s.failed = false;
  if (LogStatus st = truncate_to(durable()); !st.ok()) return fail_again(st);
  // A trailing segment left with no record (its first append failed after its header): removed,
  // so the next segment starts at the next key, as LOG_FORMAT.md's order rules require.
  while (!s.segments.empty() && s.segments.back()->records == 0) {
    const std::shared_ptr<Segment> empty = s.segments.back();
    if (::unlink(empty->path.c_str()) != 0 && errno != ENOENT) {
      return fail_again(io_error("unlink", empty->path, errno));
    }
    if (LogStatus st = sync_dir(s); !st.ok()) return fail_again(st);
    std::lock_guard lock(s.mu);
    s.segments.pop_back();
    s.next_number = empty->number;
    s.truncations.fetch_add(1, std::memory_order_release);
  }
  // A record written in part after the last whole one (truncate_to() leaves the bytes past the
  // last record alone when no record is cut): gone, so the file ends right after a record.
  if (!s.segments.empty()) {
    Segment& active = *s.segments.back();
    if (::ftruncate(active.fd.get(), static_cast<off_t>(active.end_offset)) != 0) {
      return fail_again(io_error("ftruncate", active.path, errno));
    }
    if (::fdatasync(active.fd.get()) != 0) return fail_again(io_error("fdatasync", active.path, errno));
  }
  if (LogStatus st = sync_dir(s); !st.ok()) return fail_again(st);
  s.dir_dirty = false;
  return {};
}

template <typename Pred>
LogStatus FrameLog::drop_front_while(Pred keep_going, size_t* dropped) {
  LogState& s = *state_;
  size_t count = 0;
  LogStatus result;
  while (true) {
    std::shared_ptr<Segment> front;
    {
      std::lock_guard lock(s.mu);
      if (s.segments.size() <= 1 || !keep_going(*s.segments.front())) break;
      front = s.segments.front();
    }
    if (::unlink(front->path.c_str()) != 0) {
      result = io_error("unlink", front->path, errno);
      break;
    }
    {
      std::lock_guard lock(s.mu);
      s.segments.pop_front();  // cursors inside it keep its open fd until they move on
    }
    ++count;
  }
  if (count > 0 && result.ok()) result = sync_dir(s);
  if (dropped != nullptr) *dropped = count;
  return result;
}

LogStatus FrameLog::drop_segments_before(uint64_t lsn, size_t* dropped) {
  return drop_front_while([lsn](const Segment& seg) { return seg.last_lsn < lsn; }, dropped);
}

LogStatus FrameLog::enforce_max_bytes(uint64_t max_bytes, size_t* dropped) {
  // The writer thread is the only one changing segments, so the total read here stays true.
  uint64_t total = total_bytes();
  return drop_front_while(
      [&](const Segment& seg) {
        if (total <= max_bytes) return false;
        total -= seg.end_offset;
        return true;
      },
      dropped);
}

// --- Cursor --------------------------------------------------------------------------------------

FrameLog::Cursor::Cursor() = default;
FrameLog::Cursor::~Cursor() = default;
FrameLog::Cursor::Cursor(Cursor&&) noexcept = default;
FrameLog::Cursor& FrameLog::Cursor::operator=(Cursor&&) noexcept = default;

LogStatus FrameLog::Cursor::relocate_after_cut(uint64_t target) {
  // truncate_to() cut the log since segment_ was looked up: segment_ may have lost its tail or
  // left the log, and target (the next record to return, below durable()) may now be in another
  // segment, even in the middle of one. Seek to it afresh: from the last index entry at or before
  // it, next() reads and skips the records up to it.
  const LogState& s = *state_;
  if (target > s.written.records) {
    return make_status(LogError::kBehindRetention,
                       "the cursor read past the position truncate_to cut the log to");
  }
  auto it = std::partition_point(s.segments.begin(), s.segments.end(), [&](const auto& seg) {
    return seg->first_ordinal + seg->records <= target;
  });
  if (it == s.segments.end() || target < (*it)->first_ordinal) {
    return make_status(LogError::kBehindRetention,
                       "the cursor's next record was dropped by retention");
  }
  const Segment& seg = **it;
  auto entry = std::partition_point(seg.index.begin(), seg.index.end(),
                                    [&](const IndexEntry& e) { return e.ordinal <= target; });
  --entry;  // index[0] is the segment's first record, at or before target
  segment_ = *it;
  offset_ = entry->offset;
  ordinal_ = entry->ordinal;
  resume_at_ = target;
  segment_end_ = seg.first_ordinal + seg.records;
  return {};
}

LogStatus FrameLog::Cursor::next(Record& out) {
  if (!state_) return make_status(LogError::kIo, "cursor is not open");
  LogState& s = *state_;
  header_.resize(kRecordHeaderSize);
  while (true) {
    if (position() >= s.durable_records.load(std::memory_order_acquire)) {
      return make_status(LogError::kEnd, "");
    }
    if (!segment_ || ordinal_ >= segment_end_ ||
        s.truncations.load(std::memory_order_acquire) != truncations_) {
      std::lock_guard lock(s.mu);
      if (truncations_ != s.truncations.load(std::memory_order_relaxed)) {
        truncations_ = s.truncations.load(std::memory_order_relaxed);
        if (LogStatus st = relocate_after_cut(position()); !st.ok()) return st;
      } else if (segment_ && ordinal_ < segment_->first_ordinal + segment_->records) {
        segment_end_ = segment_->first_ordinal + segment_->records;  // the active one grew
      } else {
        auto it = std::find_if(s.segments.begin(), s.segments.end(),
                               [&](const auto& seg) { return seg->first_ordinal == ordinal_; });
        if (it == s.segments.end()) {
          if (s.segments.empty() || ordinal_ < s.segments.front()->first_ordinal) {
            return make_status(LogError::kBehindRetention,
                               "the cursor's next record was dropped by retention");
          }
          return make_status(LogError::kEnd, "");
        }
        segment_ = *it;
        offset_ = kSegmentHeaderSize;
        segment_end_ = segment_->first_ordinal + segment_->records;
      }
    }
    uint32_t length = 0;
    uint64_t lsn = 0;
    // The record is durable, hence complete in the file: reading is bounded by the file itself.
    LogStatus st =
        read_record(*segment_, offset_, UINT64_MAX, header_.data(), out.frame, lsn, length);
    if (!st.ok()) return st;
    offset_ += kRecordHeaderSize + length;
    ++ordinal_;
    // Records before a re-seek's target were returned (or skipped) before the cut.
    if (ordinal_ <= resume_at_ || lsn < start_lsn_) continue;
    out.lsn = lsn;
    return {};
  }
}

}  // namespace edgeshard::relay

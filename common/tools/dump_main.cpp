// edgeshard-dump: prints a stream of change-stream frames (common/FORMAT.md) as JSON lines, or only
// verifies it. Reads the stream incrementally, so it works on pipes of any length.
#include "common/frame_json.hpp"
#include "common/frame_reader.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace frame = edgeshard::frame;

constexpr char kUsage[] =
    "usage: edgeshard-dump [--verify] [FILE]\n"
    "\n"
    "Reads concatenated edgeshard change-stream frames (common/FORMAT.md) from FILE, or from\n"
    "standard input when FILE is absent or \"-\", and prints each frame as JSON lines: one object\n"
    "for the frame's header, then one object per message.\n"
    "\n"
    "  --verify   check every frame (lengths, checksums, decompression, messages) and print\n"
    "             only a summary line\n"
    "  --help     show this help\n"
    "\n"
    "Exit status: 0 when every frame is good; 1 when the stream is corrupt or truncated (the byte\n"
    "offset is printed on standard error); 2 on a usage or I/O error.\n"
    "\n"
    "Not available yet: reading from a replication slot (it will be added as --slot).\n";

// Bytes read from the input per read() call at least.
constexpr size_t kReadChunk = size_t{1} << 20;

// Exit statuses.
constexpr int kExitOk = 0;
constexpr int kExitCorrupt = 1;
constexpr int kExitUsage = 2;

// Owns a file descriptor.
class Fd {
 public:
  // Takes ownership of fd (which may be -1).
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  // Closes the descriptor unless it is standard input or invalid.
  ~Fd() {
    if (fd_ > STDIN_FILENO) close(fd_);
  }
  // The descriptor.
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

// Counters for the --verify summary.
struct Totals {
  uint64_t frames = 0;
  uint64_t messages = 0;
  uint64_t bytes = 0;
};

// Prints where and why the stream is corrupt; `base` is the stream offset of the frame's first
// byte and `header` the frame's header when it was parsed (else nullptr).
int report_corruption(const char* source, uint64_t base, const frame::Status& st,
                      const frame::Header* header) {
  if (st.error == frame::Error::kBadMessage && header != nullptr && header->compressed) {
    std::fprintf(stderr,
                 "edgeshard-dump: %s: corrupt frame at byte %" PRIu64 ": %s [%s] at byte %" PRIu64
                 " of its decompressed payload\n",
                 source, base, st.message, frame::error_name(st.error), st.offset);
    return kExitCorrupt;
  }
  // Message offsets count from the payload, every other offset from the frame's first byte.
  const uint64_t at = base + st.offset +
                      (st.error == frame::Error::kBadMessage && header ? header->header_length : 0);
  std::fprintf(stderr,
               "edgeshard-dump: %s: corrupt at byte %" PRIu64 ": %s [%s] (frame at byte %" PRIu64
               ")\n",
               source, at, st.message, frame::error_name(st.error), base);
  return kExitCorrupt;
}

// Checks one whole frame and prints it (unless verify_only); returns an exit status.
int process_frame(const char* source, uint64_t base, std::span<const uint8_t> bytes,
                  bool verify_only, frame::Reader& reader, std::string& out, Totals& totals) {
  if (frame::Status st = reader.open(bytes); !st.ok()) {
    return report_corruption(source, base, st, nullptr);
  }
  frame::Status st;
  if (verify_only) {
    frame::MessageCursor cursor = reader.messages();
    frame::Message m;
    while (cursor.next(m)) ++totals.messages;
    st = cursor.status();
  } else {
    out.clear();
    st = frame::append_frame_json(out, reader);
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  if (!st.ok()) return report_corruption(source, base, st, &reader.header());
  ++totals.frames;
  totals.bytes += bytes.size();
  return kExitOk;
}

// Reads frames from fd until its end, printing or verifying each; returns the exit status.
int dump(int fd, const char* source, bool verify_only) {
  std::vector<uint8_t> buf;
  size_t begin = 0;   // first unconsumed byte of buf
  size_t end = 0;     // end of the bytes read into buf
  uint64_t base = 0;  // stream offset of buf[begin]
  bool eof = false;
  frame::Reader reader;
  std::string out;
  Totals totals;
  for (;;) {
    const std::span<const uint8_t> avail(buf.data() + begin, end - begin);
    size_t need = 0;
    const frame::Status st = frame::frame_length(avail, need);
    if (st.ok() && need <= avail.size()) {
      const int rc =
          process_frame(source, base, avail.first(need), verify_only, reader, out, totals);
      if (rc != kExitOk) return rc;
      begin += need;
      base += need;
      continue;
    }
    if (!st.ok() && st.error != frame::Error::kTruncated) {
      return report_corruption(source, base, st, nullptr);
    }
    if (eof) {
      if (avail.empty()) break;
      return report_corruption(source, base, reader.open(avail), nullptr);  // says what is cut
    }
    // Need more bytes: keep the unconsumed ones at the front and read after them.
    std::copy(buf.begin() + static_cast<ptrdiff_t>(begin),
              buf.begin() + static_cast<ptrdiff_t>(end), buf.begin());
    end -= begin;
    begin = 0;
    buf.resize(std::max(buf.size(), std::max(need, end + kReadChunk)));
    const ssize_t n = read(fd, buf.data() + end, buf.size() - end);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "edgeshard-dump: %s: read failed: %s\n", source, std::strerror(errno));
      return kExitUsage;
    }
    eof = n == 0;
    end += static_cast<size_t>(n);
  }
  if (verify_only) {
    std::printf("ok: %" PRIu64 " frames, %" PRIu64 " messages, %" PRIu64 " bytes\n", totals.frames,
                totals.messages, totals.bytes);
  }
  if (std::fflush(stdout) != 0) {
    std::fprintf(stderr, "edgeshard-dump: write failed: %s\n", std::strerror(errno));
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace

// Parses the command line and dumps the file or standard input.
int main(int argc, char** argv) {
  bool verify_only = false;
  const char* path = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
    if (arg == "--verify") {
      verify_only = true;
    } else if ((arg.size() > 1 && arg[0] == '-') || path != nullptr) {
      std::fprintf(stderr, "edgeshard-dump: unexpected argument '%s'\n%s", argv[i], kUsage);
      return kExitUsage;
    } else {
      path = argv[i];
    }
  }
  const bool from_stdin = path == nullptr || std::string_view(path) == "-";
  Fd fd(from_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    std::fprintf(stderr, "edgeshard-dump: %s: %s\n", path, std::strerror(errno));
    return kExitUsage;
  }
  return dump(fd.get(), from_stdin ? "stdin" : path, verify_only);
}

// edgeshard-dump: prints a stream of change-stream frames (common/FORMAT.md) as JSON lines or one
// line per frame, or only verifies it. Reads a file or pipe incrementally, so it works on streams
// of any length; or reads the frames straight from a logical replication slot of the output plugin
// "edgeshard" (--slot), speaking the streaming replication protocol through libpq (the client
// library, no server header): one frame per XLogData message; or subscribes to an edgeshard-relay
// (--relay, walsender_fanout/relay/PROTOCOL.md) with relay::RelayClient.
#include "common/frame_json.hpp"
#include "common/frame_reader.hpp"
#include "common/lsn.hpp"
#include "common/pq_replication.hpp"
#include "walsender_fanout/relay/relay_client.hpp"

#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace frame = edgeshard::frame;
using edgeshard::format_lsn;
using edgeshard::parse_lsn;
using namespace edgeshard::pq;
namespace relay = edgeshard::relay;

constexpr char kUsage[] =
    "usage: edgeshard-dump [--verify | --format FORMAT] [FILE]\n"
    "       edgeshard-dump --dbname CONNINFO --slot NAME [--create-slot] [--start LSN]\n"
    "                      [--endpos LSN] [--option NAME=VALUE ...] [--verify | --format FORMAT]\n"
    "       edgeshard-dump --relay HOST:PORT[,HOST:PORT...] --name NAME [--start LSN]\n"
    "                      [--tenants KEY[,KEY...]] [--endpos LSN] [--position-file FILE]\n"
    "                      [--verify | --format FORMAT]\n"
    "\n"
    "Reads concatenated edgeshard change-stream frames (common/FORMAT.md) from FILE, or from\n"
    "standard input when FILE is absent or \"-\", and prints each frame as JSON lines: one object\n"
    "for the frame's header, then one object per message.\n"
    "\n"
    "  --verify         check every frame (lengths, checksums, decompression, messages) and print\n"
    "                   only a summary line\n"
    "  --format FORMAT  json (the default): JSON lines as above; frames: one line per frame,\n"
    "                   \"COMMIT_LSN TENANT SEQUENCE LAST PAYLOAD_CHECKSUM\", e.g.\n"
    "                   \"0/16B3900 42 0 L 1f2e3d4c5b6a7988\": TENANT is the tenant key, or *\n"
    "                   for a MANY_TENANTS frame (bytes 0x00-0x20, 0x7F and \\ written\n"
    "                   \\xHH, a key \"*\" as \\x2a, an empty key as \"\"); LAST is L for\n"
    "                   the last frame of its group, else -; the checksum is 16 hex digits.\n"
    "                   Messages are still checked\n"
    "  --help           show this help\n"
    "\n"
    "With --slot, the frames come from a logical replication slot of the output plugin\n"
    "\"edgeshard\", over a replication connection (as pg_recvlogical reads one), and are printed\n"
    "the same way. The slot's position is confirmed as frames are printed (standard output is\n"
    "flushed first), so a slot read this way is consumed.\n"
    "\n"
    "  --dbname CONNINFO      libpq connection string or URI (replication=database is added)\n"
    "  --slot NAME            the logical replication slot to stream\n"
    "  --create-slot          create the slot first (plugin edgeshard); fails if it exists\n"
    "  --start LSN            start position (X/X); default: where the slot was last confirmed\n"
    "  --endpos LSN           stop cleanly at this position (X/X): every transaction committed\n"
    "                         before it is printed, nothing committed at or after it; without\n"
    "                         it, stream until SIGINT or SIGTERM\n"
    "  --option NAME=VALUE    an option of the output plugin (tenants, compression,\n"
    "                         frame_bytes); repeat for several\n"
    "\n"
    "With --relay, the frames come from an edgeshard-relay (walsender_fanout/relay/PROTOCOL.md),\n"
    "subscribing as NAME; the hosts are tried in order. What is printed is acknowledged to the\n"
    "relay (standard output is flushed first) every second and when the relay asks, so the\n"
    "relay keeps NAME's position across runs. The token comes from the environment variable\n"
    "EDGESHARD_RELAY_TOKEN (--token TOKEN overrides it, but is visible to other users in ps).\n"
    "\n"
    "  --relay HOSTS          host:port[,host:port...] of the relay ([v6]:port for IPv6)\n"
    "  --name NAME            subscriber name (1-63 of A-Z a-z 0-9 _ . -)\n"
    "  --start LSN            start position (X/X): every transaction committed at or after it;\n"
    "                         default 0/0: where NAME last acknowledged (new names: new\n"
    "                         transactions only)\n"
    "  --tenants KEYS         only these tenants' frames (and every MANY_TENANTS frame)\n"
    "  --endpos LSN           stop cleanly once every transaction committed before LSN is printed\n"
    "                         (nothing committed at or after it is)\n"
    "  --position-file FILE   resume from the position in FILE (X/X) when it exists, instead of\n"
    "                         --start; after each acknowledgement, write the position to it\n"
    "                         (atomically: temporary file, fsync, rename)\n"
    "  --token TOKEN          the subscriber's token (prefer EDGESHARD_RELAY_TOKEN)\n"
    "\n"
    "Without --endpos, --slot and --relay stream until SIGINT or SIGTERM, then stop cleanly.\n"
    "\n"
    "Exit status: 0 when every frame is good; 1 when the stream is corrupt or truncated (the byte\n"
    "offset, with --slot the LSN of the XLogData message, with --relay the frame's key, is\n"
    "printed on standard error); 2 on a usage or I/O error (position file included); 3 on a\n"
    "connection or protocol error, or when the relay refuses the subscriber (\"relay refused:\n"
    "CODE: MESSAGE\" on standard error), with the last confirmed position; 4 when the relay\n"
    "refuses with resync_required: it no longer holds the start position, so the replica must be\n"
    "rebuilt from the primary.\n";

// Bytes read from the input per read() call at least.
constexpr size_t kReadChunk = size_t{1} << 20;

// Exit statuses.
constexpr int kExitOk = 0;
constexpr int kExitCorrupt = 1;
constexpr int kExitUsage = 2;
constexpr int kExitConnection = 3;
constexpr int kExitResync = 4;

// What to print for each frame.
enum class OutputMode {
  kJson,    // JSON lines (common/frame_json.hpp)
  kFrames,  // one line per frame (--format frames)
  kVerify,  // nothing but the final summary (--verify)
};

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

// Appends a tenant key as one blank-free token of a --format frames line: bytes 0x00-0x20, 0x7F
// and '\\' as \\xHH, so lines split at blanks; "*" (MANY_TENANTS) and "" (empty key) stay distinct.
void append_tenant_token(std::string& out, std::string_view key) {
  if (key.empty()) {
    out += "\"\"";
    return;
  }
  if (key == "*") {
    out += "\\x2a";
    return;
  }
  for (const char c : key) {
    const auto b = static_cast<unsigned char>(c);
    if (b <= 0x20 || b == 0x7f || b == '\\') {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", b);
      out += esc;
    } else {
      out += c;
    }
  }
}

// Appends the --format frames line of a frame: commit LSN, tenant, sequence, LAST, payload
// checksum. Integration tests compare these lines between subscribers.
void append_frame_line(std::string& out, const frame::Header& h) {
  out += format_lsn(h.commit_lsn);
  out += ' ';
  if (h.many_tenants) {
    out += '*';
  } else {
    append_tenant_token(out, h.tenant_key);
  }
  char rest[64];
  std::snprintf(rest, sizeof rest, " %" PRIu32 " %c %016" PRIx64 "\n", h.sequence,
                h.last ? 'L' : '-', h.payload_checksum);
  out += rest;
}

// Where in a frame a reader failure is: an offset from the frame's first byte, or, for a
// malformed message of a compressed frame, an offset into the decompressed payload.
struct FailurePoint {
  uint64_t offset = 0;
  bool in_decompressed_payload = false;
};

// Locates a failure; `header` is the frame's header when it was parsed (else nullptr).
FailurePoint locate_failure(const frame::Status& st, const frame::Header* header) {
  if (st.error == frame::Error::kBadMessage && header != nullptr) {
    if (header->compressed) return {st.offset, true};
    return {st.offset + header->header_length, false};  // message offsets count from the payload
  }
  return {st.offset, false};
}

// Prints where and why the stream is corrupt; `base` is the stream offset of the frame's first
// byte and `header` the frame's header when it was parsed (else nullptr).
int report_corruption(const char* source, uint64_t base, const frame::Status& st,
                      const frame::Header* header) {
  const FailurePoint at = locate_failure(st, header);
  if (at.in_decompressed_payload) {
    std::fprintf(stderr,
                 "edgeshard-dump: %s: corrupt frame at byte %" PRIu64 ": %s [%s] at byte %" PRIu64
                 " of its decompressed payload\n",
                 source, base, st.message, frame::error_name(st.error), at.offset);
    return kExitCorrupt;
  }
  std::fprintf(stderr,
               "edgeshard-dump: %s: corrupt at byte %" PRIu64 ": %s [%s] (frame at byte %" PRIu64
               ")\n",
               source, base + at.offset, st.message, frame::error_name(st.error), base);
  return kExitCorrupt;
}

// Prints the frame last opened by `reader` as `mode` says (kVerify: only checks and counts its
// messages); returns the status of its messages.
frame::Status emit_frame(const frame::Reader& reader, OutputMode mode, std::string& out,
                         Totals& totals) {
  frame::Status st;
  if (mode == OutputMode::kJson) {
    out.clear();
    st = frame::append_frame_json(out, reader);
    std::fwrite(out.data(), 1, out.size(), stdout);
  } else {
    // --format frames prints no message, but a frame whose messages are malformed is still
    // reported: the exit status means the same in every format.
    frame::MessageCursor cursor = reader.messages();
    frame::Message m;
    while (cursor.next(m)) ++totals.messages;
    st = cursor.status();
    if (st.ok() && mode == OutputMode::kFrames) {
      out.clear();
      append_frame_line(out, reader.header());
      std::fwrite(out.data(), 1, out.size(), stdout);
    }
  }
  if (st.ok()) {
    ++totals.frames;
    totals.bytes += reader.header().frame_length;
  }
  return st;
}

// Checks one whole frame and prints it as `mode` says; returns an exit status.
int process_frame(const char* source, uint64_t base, std::span<const uint8_t> bytes,
                  OutputMode mode, frame::Reader& reader, std::string& out, Totals& totals) {
  if (frame::Status st = reader.open(bytes); !st.ok()) {
    return report_corruption(source, base, st, nullptr);
  }
  if (frame::Status st = emit_frame(reader, mode, out, totals); !st.ok()) {
    return report_corruption(source, base, st, &reader.header());
  }
  return kExitOk;
}

// Prints the --verify summary line (`suffix` is appended before the newline).
void print_summary(const Totals& totals, const std::string& suffix) {
  std::printf("ok: %" PRIu64 " frames, %" PRIu64 " messages, %" PRIu64 " bytes%s\n", totals.frames,
              totals.messages, totals.bytes, suffix.c_str());
}

// Flushes standard output; false (after saying so) when the output could not be written.
bool flush_stdout() {
  if (std::fflush(stdout) == 0) return true;
  std::fprintf(stderr, "edgeshard-dump: write failed: %s\n", std::strerror(errno));
  return false;
}

// Reads frames from fd until its end, printing or verifying each; returns the exit status.
int dump(int fd, const char* source, OutputMode mode) {
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
      const int rc = process_frame(source, base, avail.first(need), mode, reader, out, totals);
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
  if (mode == OutputMode::kVerify) print_summary(totals, "");
  return flush_stdout() ? kExitOk : kExitUsage;
}

// --- Reading a replication slot ----------------------------------------------------------------
//
// The streaming replication protocol (PostgreSQL's "Streaming Replication Protocol" chapter):
// after START_REPLICATION the connection is in COPY BOTH mode; the server sends CopyData messages
// holding XLogData ('w': dataStart, walEnd, sendTime, then what the output plugin wrote, here one
// frame) or a primary keepalive ('k': walEnd, sendTime, replyRequested); the client sends standby
// status updates ('r': write, flush, apply, sendTime, replyRequested), which confirm the slot's
// position, and CopyDone to stop. Fields are big-endian, unlike the frames' own little-endian ones.

// A standby status update is sent at least this often, as pg_recvlogical does by default (well
// within the server's wal_sender_timeout).
constexpr std::chrono::milliseconds kStatusInterval{10000};
// Longest wait for the socket, so a signal that lands just before poll() is not missed long.
constexpr int kMaxPollMs = 1000;

// Set by SIGINT and SIGTERM: stop streaming cleanly.
volatile sig_atomic_t g_stop_requested = 0;

// Signal handler asking the stream to stop.
extern "C" void request_stop(int /*signo*/) { g_stop_requested = 1; }

// What --slot reads and how.
struct SlotRequest {
  const char* conninfo = nullptr;
  const char* slot = nullptr;
  bool create = false;
  uint64_t start = 0;                                        // 0: the slot's confirmed position
  uint64_t endpos = 0;                                       // 0: no end
  std::vector<std::pair<std::string, const char*>> options;  // value nullptr: name alone
  OutputMode mode = OutputMode::kJson;
};

// Streams one logical replication slot: connects, optionally creates the slot, starts
// replication, prints or verifies each frame, confirms progress, and stops cleanly.
class SlotStream {
 public:
  explicit SlotStream(const SlotRequest& request) : request_(request) {
    source_ = "slot " + quote_identifier(request.slot);
  }

  // Runs the whole session; returns the exit status.
  int run();

 private:
  // Why the streaming loop ended.
  enum class Stop { kEndpos, kSignal, kError };

  // Opens the replication connection; false after reporting.
  bool connect();
  // Runs CREATE_REPLICATION_SLOT; false after reporting.
  bool create_slot();
  // Runs START_REPLICATION; false after reporting.
  bool start_replication();
  // Receives and handles messages until endpos, a signal or an error.
  Stop stream();
  // Handles one XLogData message; sets done_ when endpos is passed; false after reporting.
  bool on_xlog_data(std::span<const uint8_t> msg);
  // Handles one primary keepalive message; sets done_ when endpos is reached; false after
  // reporting.
  bool on_keepalive(std::span<const uint8_t> msg);
  // Waits until the socket is readable or it is time for a status update; false on error.
  bool wait_for_input();
  // Flushes the output, then confirms confirmed_ to the server, asking for a keepalive back when
  // reply_requested; false after reporting.
  bool send_status(bool reply_requested);
  // Sends CopyDone and reads what is left until the server ends the command; false on error.
  bool finish();
  // Reports a connection or protocol failure with the confirmed position.
  void fail(const std::string& what);
  // Reports a corrupt frame in the XLogData message sent at `lsn` (`header` when it was parsed);
  // returns false.
  bool report_slot_corruption(uint64_t lsn, const frame::Status& st, const frame::Header* header);

  const SlotRequest& request_;
  std::string source_;  // "slot \"name\"", for messages
  Connection conn_;
  frame::Reader reader_;
  std::string out_;
  Totals totals_;
  int exit_status_ = kExitConnection;  // what a kError stop returns
  uint64_t confirmed_ = 0;  // everything the server sent before this position is processed
  bool at_endpos_ = false;  // a frame sent at or past endpos was processed
  bool done_ = false;
  std::chrono::steady_clock::time_point last_status_;
};

void SlotStream::fail(const std::string& what) {
  std::fprintf(stderr, "edgeshard-dump: %s: %s (confirmed up to %s)\n", source_.c_str(),
               what.c_str(), format_lsn(confirmed_).c_str());
  exit_status_ = kExitConnection;
}

bool SlotStream::report_slot_corruption(uint64_t lsn, const frame::Status& st,
                                        const frame::Header* header) {
  const FailurePoint at = locate_failure(st, header);
  std::fprintf(stderr,
               "edgeshard-dump: %s: corrupt frame in the XLogData message at %s: %s [%s] at byte "
               "%" PRIu64 " of %s\n",
               source_.c_str(), format_lsn(lsn).c_str(), st.message, frame::error_name(st.error),
               at.offset, at.in_decompressed_payload ? "its decompressed payload" : "the frame");
  exit_status_ = kExitCorrupt;
  return false;
}

bool SlotStream::connect() {
  // Later keywords override what the expanded connection string says.
  const char* const keywords[] = {"dbname", "replication", "fallback_application_name", nullptr};
  const char* const values[] = {request_.conninfo, "database", "edgeshard-dump", nullptr};
  conn_.reset(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
  if (conn_ == nullptr) {
    std::fprintf(stderr, "edgeshard-dump: could not connect: out of memory\n");
    return false;
  }
  if (PQstatus(conn_.get()) != CONNECTION_OK) {
    std::fprintf(stderr, "edgeshard-dump: could not connect: %s\n",
                 conn_error(conn_.get()).c_str());
    return false;
  }
  return true;
}

bool SlotStream::create_slot() {
  const std::string command = "CREATE_REPLICATION_SLOT " + quote_identifier(request_.slot) +
                              " LOGICAL \"edgeshard\" NOEXPORT_SNAPSHOT";
  Result res(PQexec(conn_.get(), command.c_str()));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
    std::fprintf(stderr, "edgeshard-dump: %s: could not create the slot: %s\n", source_.c_str(),
                 conn_error(conn_.get()).c_str());
    return false;
  }
  return true;
}

bool SlotStream::start_replication() {
  std::string command = "START_REPLICATION SLOT " + quote_identifier(request_.slot) + " LOGICAL " +
                        format_lsn(request_.start);
  if (!request_.options.empty()) {
    command += " (";
    for (size_t i = 0; i < request_.options.size(); ++i) {
      const auto& [name, value] = request_.options[i];
      if (i > 0) command += ", ";
      command += quote_identifier(name);
      if (value != nullptr) {
        command += ' ';
        command += quote_literal(value);
      }
    }
    command += ")";
  }
  Result res(PQexec(conn_.get(), command.c_str()));
  if (PQresultStatus(res.get()) != PGRES_COPY_BOTH) {
    std::fprintf(stderr, "edgeshard-dump: %s: could not start replication: %s\n", source_.c_str(),
                 conn_error(conn_.get()).c_str());
    return false;
  }
  last_status_ = std::chrono::steady_clock::now();
  return true;
}

bool SlotStream::send_status(bool reply_requested) {
  // Confirm only what has reached the output, as pg_recvlogical fsyncs before it confirms.
  if (!flush_stdout()) {
    exit_status_ = kExitUsage;
    return false;
  }
  uint8_t msg[kStatusUpdateLength];
  // written, flushed (the slot's confirmed_flush_lsn), applied (printed: replay_lsn)
  encode_status_update(msg, confirmed_, confirmed_, confirmed_, reply_requested);
  if (PQputCopyData(conn_.get(), reinterpret_cast<const char*>(msg), sizeof msg) <= 0 ||
      PQflush(conn_.get()) != 0) {
    fail("could not send a status update: " + conn_error(conn_.get()));
    return false;
  }
  last_status_ = std::chrono::steady_clock::now();
  return true;
}

bool SlotStream::on_xlog_data(std::span<const uint8_t> msg) {
  if (msg.size() < kXLogDataHeader) {
    fail("XLogData message too short (" + std::to_string(msg.size()) + " bytes)");
    return false;
  }
  const uint64_t data_start = read_be64(msg.data() + 1);
  const uint64_t wal_end = read_be64(msg.data() + 9);
  const std::span<const uint8_t> bytes = msg.subspan(kXLogDataHeader);
  // Exactly one frame per message: a frame cut short or followed by bytes is corrupt.
  size_t length = 0;
  frame::Status st = frame::frame_length(bytes, length);
  if (st.ok() && length != bytes.size()) {
    st = {length > bytes.size() ? frame::Error::kTruncated : frame::Error::kBadLength,
          std::min(length, bytes.size()),
          length > bytes.size() ? "the message ends inside the frame"
                                : "the message holds bytes after the frame"};
  }
  if (st.ok()) st = reader_.open(bytes);
  if (!st.ok()) return report_slot_corruption(data_start, st, nullptr);
  // pg_recvlogical stops at the first message sent past endpos. Frames are sent at the LSN of the
  // change that filled them, or at the end of the commit record for the last ones, so that would
  // cut transactions: a transaction's frames are kept or left out together, by where its commit
  // record starts. The frames of one transaction are sent one after another (PostgreSQL 15
  // decodes a transaction when it reads its commit), so the first frame left out ends the stream.
  const frame::Header& h = reader_.header();
  const bool past_end =
      h.commit_lsn != 0 ? h.commit_lsn >= request_.endpos : data_start > request_.endpos;
  if (request_.endpos != 0 && past_end) {
    done_ = true;  // not printed, not confirmed
    return true;
  }
  st = emit_frame(reader_, request_.mode, out_, totals_);
  if (!st.ok()) return report_slot_corruption(data_start, st, &h);
  confirmed_ = std::max(confirmed_, wal_end);
  if (request_.endpos != 0 && data_start >= request_.endpos && !at_endpos_) {
    // More frames may be sent at this LSN (the last frames of every tenant of a transaction share
    // its commit's end LSN): wait for a keepalive saying the server is past it. It sends one
    // unasked only while our confirmed position is behind its own, which it no longer is: ask for
    // one.
    at_endpos_ = true;
    return send_status(/*reply_requested=*/true);
  }
  return true;
}

bool SlotStream::on_keepalive(std::span<const uint8_t> msg) {
  if (msg.size() < kKeepaliveLength) {
    fail("keepalive message too short (" + std::to_string(msg.size()) + " bytes)");
    return false;
  }
  const uint64_t wal_end = read_be64(msg.data() + 1);
  const bool reply_requested = msg[17] != 0;
  // The server has sent everything it decoded before wal_end, and all of it is processed (as
  // pg_recvlogical counts it): confirming it lets a quiet slot release WAL.
  confirmed_ = std::max(confirmed_, wal_end);
  const bool reached = request_.endpos != 0 && wal_end >= request_.endpos;
  if (reached) done_ = true;
  if (reply_requested || reached) return send_status(false);
  // Sent while the server was still decoding the transaction that ends at endpos: ask again.
  if (at_endpos_) return send_status(true);
  return true;
}

bool SlotStream::wait_for_input() {
  const auto due = last_status_ + kStatusInterval;
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(due - std::chrono::steady_clock::now())
          .count();
  pollfd pfd{PQsocket(conn_.get()), POLLIN, 0};
  if (pfd.fd < 0) {
    fail("connection lost: " + conn_error(conn_.get()));
    return false;
  }
  const int timeout = static_cast<int>(std::clamp<int64_t>(left, 0, kMaxPollMs));
  const int n = poll(&pfd, 1, timeout);
  if (n < 0 && errno != EINTR) {
    fail(std::string("poll failed: ") + std::strerror(errno));
    return false;
  }
  if (n > 0 && PQconsumeInput(conn_.get()) == 0) {
    fail("could not receive data: " + conn_error(conn_.get()));
    return false;
  }
  return true;
}

SlotStream::Stop SlotStream::stream() {
  while (!done_) {
    if (g_stop_requested) return Stop::kSignal;
    if (std::chrono::steady_clock::now() - last_status_ >= kStatusInterval && !send_status(false)) {
      return Stop::kError;
    }
    char* raw = nullptr;
    const int n = PQgetCopyData(conn_.get(), &raw, /*async=*/1);
    CopyBuffer copy(raw);
    if (n == 0) {
      if (!wait_for_input()) return Stop::kError;
      continue;
    }
    if (n == -1) {  // the server ended the stream
      Result res(PQgetResult(conn_.get()));
      fail(PQresultStatus(res.get()) == PGRES_COMMAND_OK
               ? std::string("the server ended the replication stream")
               : "replication stream failed: " + conn_error(conn_.get()));
      return Stop::kError;
    }
    if (n < 0) {
      fail("could not read from the replication stream: " + conn_error(conn_.get()));
      return Stop::kError;
    }
    const std::span<const uint8_t> msg(reinterpret_cast<const uint8_t*>(copy.get()),
                                       static_cast<size_t>(n));
    bool ok;
    if (msg[0] == 'w') {
      ok = on_xlog_data(msg);
    } else if (msg[0] == 'k') {
      ok = on_keepalive(msg);
    } else {
      fail(std::string("unexpected replication message '") + static_cast<char>(msg[0]) + "'");
      ok = false;
    }
    if (!ok) return Stop::kError;
  }
  return Stop::kEndpos;
}

bool SlotStream::finish() {
  if (!send_status(false)) return false;
  if (PQputCopyEnd(conn_.get(), nullptr) <= 0 || PQflush(conn_.get()) != 0) {
    fail("could not end the replication stream: " + conn_error(conn_.get()));
    return false;
  }
  // The server may have sent more before it saw CopyDone: read and drop it, then its CopyDone.
  for (;;) {
    char* raw = nullptr;
    const int n = PQgetCopyData(conn_.get(), &raw, /*async=*/0);
    CopyBuffer copy(raw);
    if (n == -1) break;
    if (n == -2) {
      fail("could not end the replication stream: " + conn_error(conn_.get()));
      return false;
    }
  }
  bool ok = true;
  while (Result res{PQgetResult(conn_.get())}) {
    const ExecStatusType status = PQresultStatus(res.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && ok) {
      fail("replication stream ended with an error: " + conn_error(conn_.get()));
      ok = false;
    }
  }
  return ok;
}

int SlotStream::run() {
  if (!connect()) return kExitConnection;
  if (request_.create && !create_slot()) return kExitConnection;
  if (!start_replication()) return kExitConnection;
  switch (stream()) {
    case Stop::kError:
      return exit_status_;
    case Stop::kEndpos:
    case Stop::kSignal:
      break;
  }
  if (!finish()) return exit_status_;
  if (request_.mode == OutputMode::kVerify) {
    print_summary(totals_, ", " + source_ + " confirmed up to " + format_lsn(confirmed_));
  }
  return flush_stdout() ? kExitOk : kExitUsage;
}

// Installs the SIGINT/SIGTERM handlers (without SA_RESTART, so poll() wakes up).
void install_stop_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = request_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// --- Reading a relay ---------------------------------------------------------------------------
//
// The relay's subscriber protocol (walsender_fanout/relay/PROTOCOL.md) through relay::RelayClient:
// FRAMEs in key order (a key is its transaction's commit LSN) and KEEPALIVEs between transactions.
// Positions are exclusive bounds, "everything below": a FRAME at key K means every frame below K
// has come (keys never decrease), a KEEPALIVE at P that every frame below P has. The position
// acknowledged is the bound below which everything is printed and flushed; starting again from it
// gives no gap and no duplicate.

// An ACK is sent at least this often (the relay also asks for one with reply_requested).
constexpr std::chrono::milliseconds kAckInterval{1000};

// What --relay reads and how.
struct RelayRequest {
  relay::ClientOptions client;
  uint64_t endpos = 0;                  // 0: no end
  const char* position_file = nullptr;  // nullptr: none
  OutputMode mode = OutputMode::kJson;
};

// Streams from a relay: connects, prints or verifies each frame, acknowledges what is printed
// (and records it in the position file), and stops at endpos, on a signal or an error.
class RelayStream {
 public:
  explicit RelayStream(RelayRequest request) : request_(std::move(request)) {
    source_ = "relay " + request_.client.hosts;
  }

  // Runs the whole session; returns the exit status.
  int run();

 private:
  // Reads the position file into the start position, when it exists; false after reporting.
  bool load_position();
  // Writes printed_below_ to the position file (if any, and if it changed) atomically; false
  // after reporting.
  bool save_position();
  // Flushes the output, acknowledges printed_below_ and records it; false after reporting (with
  // exit_status_ set).
  bool acknowledge();
  // Checks and prints one FRAME; sets done_ at endpos; false after reporting.
  bool on_frame(const relay::Incoming& in);
  // Takes a KEEPALIVE's position; sets done_ at endpos; false after reporting.
  bool on_keepalive(const relay::proto::Keepalive& keepalive);
  // Reports a client failure; returns its exit status.
  int report_client(const relay::ClientStatus& st);
  // Reports a corrupt frame received at key (`header` when it was parsed); returns false.
  bool report_corruption(uint64_t key, const frame::Status& st, const frame::Header* header);
  // Keeps what is printed when the session ends early: flushes and records the position.
  void salvage();

  RelayRequest request_;
  std::string source_;  // "relay host:port", for messages
  relay::RelayClient client_;
  frame::Reader reader_;
  std::string out_;
  Totals totals_;
  uint64_t printed_below_ = 0;   // every frame below this key is printed (once flushed)
  uint64_t acked_ = 0;           // the last position acknowledged
  bool saved_any_ = false;       // the position file was written in this run
  uint64_t saved_ = 0;           // what it was last written with
  bool connected_once_ = false;  // the relay sent WELCOME
  bool done_ = false;
  int exit_status_ = kExitConnection;
  std::chrono::steady_clock::time_point last_ack_;
};

bool RelayStream::load_position() {
  const char* path = request_.position_file;
  Fd fd(open(path, O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return true;  // the first run: --start
    std::fprintf(stderr, "edgeshard-dump: %s: %s\n", path, std::strerror(errno));
    return false;
  }
  char buf[64];
  size_t len = 0;
  for (;;) {
    const ssize_t n = read(fd.get(), buf + len, sizeof buf - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::fprintf(stderr, "edgeshard-dump: %s: read failed: %s\n", path, std::strerror(errno));
      return false;
    }
    if (n == 0 || (len += static_cast<size_t>(n)) == sizeof buf) break;
  }
  std::string_view text(buf, len);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.remove_suffix(1);
  }
  uint64_t lsn = 0;
  if (!parse_lsn(text, lsn)) {
    std::fprintf(stderr, "edgeshard-dump: %s: not a position (X/X): \"%.*s\"\n", path,
                 static_cast<int>(text.size()), text.data());
    return false;
  }
  request_.client.start = lsn;
  return true;
}

bool RelayStream::save_position() {
  if (request_.position_file == nullptr || (saved_any_ && saved_ == printed_below_)) return true;
  const std::string path = request_.position_file;
  const std::string tmp = path + ".tmp";
  const std::string text = format_lsn(printed_below_) + "\n";
  // What failed, for the message; empty when everything worked.
  std::string failed;
  {
    Fd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
      failed = "open " + tmp;
    } else if (write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      failed = "write " + tmp;
    } else if (fsync(fd.get()) != 0) {
      failed = "fsync " + tmp;
    }
  }
  if (failed.empty() && rename(tmp.c_str(), path.c_str()) != 0) failed = "rename to " + path;
  if (failed.empty()) {
    // The rename is durable once the directory is synced.
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : path.substr(0, slash);
    Fd dfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dfd.get() < 0 || fsync(dfd.get()) != 0) failed = "fsync " + dir;
  }
  if (!failed.empty()) {
    std::fprintf(stderr, "edgeshard-dump: position file: %s: %s\n", failed.c_str(),
                 std::strerror(errno));
    return false;
  }
  saved_any_ = true;
  saved_ = printed_below_;
  return true;
}

bool RelayStream::acknowledge() {
  if (!flush_stdout()) {
    exit_status_ = kExitUsage;
    return false;
  }
  if (const relay::ClientStatus st = client_.send_ack(printed_below_); !st.ok()) {
    exit_status_ = report_client(st);
    save_position();  // printed and flushed, if not acknowledged
    return false;
  }
  acked_ = printed_below_;
  last_ack_ = std::chrono::steady_clock::now();
  if (!save_position()) {
    exit_status_ = kExitUsage;
    return false;
  }
  return true;
}

bool RelayStream::on_frame(const relay::Incoming& in) {
  if (request_.endpos != 0 && in.key >= request_.endpos) {
    // Every frame below this key has come, so every transaction before endpos is printed.
    printed_below_ = std::max(printed_below_, request_.endpos);
    done_ = true;
    return true;
  }
  // Every frame below this key came before it and is printed.
  printed_below_ = std::max(printed_below_, in.key);
  // Exactly one frame per FRAME message: one cut short or followed by bytes is corrupt.
  size_t length = 0;
  frame::Status st = frame::frame_length(in.frame, length);
  if (st.ok() && length != in.frame.size()) {
    st = {length > in.frame.size() ? frame::Error::kTruncated : frame::Error::kBadLength,
          std::min(length, in.frame.size()),
          length > in.frame.size() ? "the FRAME message ends inside the frame"
                                   : "the FRAME message holds bytes after the frame"};
  }
  if (st.ok()) st = reader_.open(in.frame);
  if (!st.ok()) return report_corruption(in.key, st, nullptr);
  st = emit_frame(reader_, request_.mode, out_, totals_);
  if (!st.ok()) return report_corruption(in.key, st, &reader_.header());
  return true;
}

bool RelayStream::on_keepalive(const relay::proto::Keepalive& keepalive) {
  if (request_.endpos != 0 && keepalive.position >= request_.endpos) {
    printed_below_ = std::max(printed_below_, request_.endpos);
    done_ = true;
    return true;
  }
  printed_below_ = std::max(printed_below_, keepalive.position);
  return keepalive.reply_requested ? acknowledge() : true;
}

int RelayStream::report_client(const relay::ClientStatus& st) {
  switch (st.error) {
    case relay::ClientError::kRefused:
      std::fprintf(stderr, "edgeshard-dump: relay refused: %s: %s\n", st.relay_code.c_str(),
                   st.message.c_str());
      return st.relay_code == relay::proto::kResyncRequired ? kExitResync : kExitConnection;
    case relay::ClientError::kBadOptions:
      std::fprintf(stderr, "edgeshard-dump: %s\n", st.message.c_str());
      return kExitUsage;
    default:
      break;
  }
  if (!connected_once_) {
    std::fprintf(stderr, "edgeshard-dump: could not connect to the relay: %s\n",
                 st.message.c_str());
  } else {
    std::fprintf(stderr, "edgeshard-dump: %s: %s (acknowledged up to %s)\n", source_.c_str(),
                 st.message.c_str(), format_lsn(acked_).c_str());
  }
  return kExitConnection;
}

bool RelayStream::report_corruption(uint64_t key, const frame::Status& st,
                                    const frame::Header* header) {
  const FailurePoint at = locate_failure(st, header);
  std::fprintf(stderr,
               "edgeshard-dump: %s: corrupt frame at key %s: %s [%s] at byte %" PRIu64
               " of %s (acknowledged up to %s)\n",
               source_.c_str(), format_lsn(key).c_str(), st.message, frame::error_name(st.error),
               at.offset, at.in_decompressed_payload ? "its decompressed payload" : "the frame",
               format_lsn(acked_).c_str());
  exit_status_ = kExitCorrupt;
  return false;
}

void RelayStream::salvage() {
  if (flush_stdout()) save_position();
}

int RelayStream::run() {
  if (request_.position_file != nullptr && !load_position()) return kExitUsage;
  if (const relay::ClientStatus st = client_.connect(request_.client); !st.ok()) {
    return report_client(st);
  }
  connected_once_ = true;
  source_ = "relay " + client_.peer();
  printed_below_ = acked_ = client_.welcome().start;
  last_ack_ = std::chrono::steady_clock::now();
  // Record where this run started (the relay chose it when --start was 0/0).
  if (!save_position()) return kExitUsage;
  relay::Incoming in;
  while (!done_ && !g_stop_requested) {
    const auto since = std::chrono::steady_clock::now() - last_ack_;
    if (since >= kAckInterval) {
      if (!acknowledge()) return exit_status_;
      continue;
    }
    const int64_t left =
        std::chrono::duration_cast<std::chrono::milliseconds>(kAckInterval - since).count();
    const relay::ClientStatus st =
        client_.read(static_cast<int>(std::clamp<int64_t>(left, 1, kMaxPollMs)), in);
    if (st.error == relay::ClientError::kTimeout) continue;  // or a signal
    if (!st.ok()) {
      salvage();
      return report_client(st);
    }
    const bool ok =
        in.type == relay::proto::Type::kFrame ? on_frame(in) : on_keepalive(in.keepalive);
    if (!ok) {
      if (exit_status_ != kExitUsage) salvage();
      return exit_status_;
    }
  }
  if (!acknowledge()) return exit_status_;
  client_.close();
  if (request_.mode == OutputMode::kVerify) {
    print_summary(totals_, ", " + source_ + " acknowledged up to " + format_lsn(acked_));
  }
  return flush_stdout() ? kExitOk : kExitUsage;
}

// Splits a comma-separated list of tenant keys; false when one is empty.
bool split_tenants(std::string_view text, std::vector<std::string>& out) {
  size_t pos = 0;
  for (;;) {
    const size_t comma = text.find(',', pos);
    const std::string_view key =
        text.substr(pos, comma == std::string_view::npos ? comma : comma - pos);
    if (key.empty()) return false;
    out.emplace_back(key);
    if (comma == std::string_view::npos) return true;
    pos = comma + 1;
  }
}

// Prints a usage error and returns its exit status.
int usage_error(const char* format, const char* arg) {
  std::fputs("edgeshard-dump: ", stderr);
  std::fprintf(stderr, format, arg);
  std::fprintf(stderr, "\n%s", kUsage);
  return kExitUsage;
}

}  // namespace

// Parses the command line and dumps the file, standard input, the replication slot or the relay.
int main(int argc, char** argv) {
  bool verify_only = false;
  const char* format = nullptr;
  const char* path = nullptr;
  SlotRequest slot;
  RelayRequest relay_request;
  const char* token = nullptr;
  bool slot_option = false;    // an option that needs --slot was given
  bool relay_option = false;   // an option that needs --relay was given
  bool stream_option = false;  // --start or --endpos (either needs --slot or --relay)
  uint64_t start = 0;
  uint64_t endpos = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    // The value of an option taking one, or nullptr when it is missing.
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    }
    if (arg == "--verify") {
      verify_only = true;
    } else if (arg == "--create-slot") {
      slot.create = true;
      slot_option = true;
    } else if (arg == "--dbname" || arg == "--slot" || arg == "--start" || arg == "--endpos" ||
               arg == "--option" || arg == "--format" || arg == "--relay" || arg == "--name" ||
               arg == "--token" || arg == "--tenants" || arg == "--position-file") {
      const char* v = value();
      if (v == nullptr) return usage_error("option '%s' needs a value", argv[i]);
      if (arg == "--dbname") {
        slot.conninfo = v;
        slot_option = true;
      } else if (arg == "--slot") {
        slot.slot = v;
        slot_option = true;
      } else if (arg == "--start" || arg == "--endpos") {
        uint64_t lsn = 0;
        if (!parse_lsn(v, lsn) || (lsn == 0 && arg == "--endpos")) {
          return usage_error("invalid LSN '%s' (use X/X)", v);
        }
        (arg == "--start" ? start : endpos) = lsn;
        stream_option = true;
      } else if (arg == "--option") {
        const char* eq = std::strchr(v, '=');
        std::string name = eq != nullptr ? std::string(v, eq) : std::string(v);
        if (name.empty()) return usage_error("invalid plugin option '%s' (use NAME=VALUE)", v);
        slot.options.emplace_back(std::move(name), eq != nullptr ? eq + 1 : nullptr);
        slot_option = true;
      } else if (arg == "--format") {
        if (std::string_view(v) != "json" && std::string_view(v) != "frames") {
          return usage_error("invalid format '%s' (json or frames)", v);
        }
        format = v;
      } else if (arg == "--relay") {
        relay_request.client.hosts = v;
        relay_option = true;
      } else if (arg == "--name") {
        relay_request.client.name = v;
        relay_option = true;
      } else if (arg == "--token") {
        token = v;
        relay_option = true;
      } else if (arg == "--tenants") {
        if (!split_tenants(v, relay_request.client.tenants)) {
          return usage_error("invalid tenant list '%s' (use KEY[,KEY...])", v);
        }
        relay_option = true;
      } else {
        relay_request.position_file = v;
        relay_option = true;
      }
    } else if ((arg.size() > 1 && arg[0] == '-') || path != nullptr) {
      return usage_error("unexpected argument '%s'", argv[i]);
    } else {
      path = argv[i];
    }
  }
  if (verify_only && format != nullptr) {
    return usage_error("%s", "--verify prints only a summary: it takes no --format");
  }
  const OutputMode mode = verify_only ? OutputMode::kVerify
                          : format != nullptr && std::string_view(format) == "frames"
                              ? OutputMode::kFrames
                              : OutputMode::kJson;
  if (slot_option && relay_option) {
    return usage_error("%s", "--slot and --relay options cannot be combined");
  }
  if (relay_option) {
    if (relay_request.client.hosts.empty() || relay_request.client.name.empty()) {
      return usage_error("%s", "reading a relay needs both --relay and --name");
    }
    if (path != nullptr) return usage_error("unexpected argument '%s' with --relay", path);
    if (token != nullptr) {
      relay_request.client.token = token;
    } else if (const char* env = std::getenv("EDGESHARD_RELAY_TOKEN"); env != nullptr) {
      relay_request.client.token = env;
    }
    relay_request.client.start = start;
    relay_request.endpos = endpos;
    relay_request.mode = mode;
    install_stop_handlers();
    return RelayStream(std::move(relay_request)).run();
  }
  if (stream_option && !slot_option) {
    return usage_error("%s", "--start and --endpos need --slot or --relay");
  }
  if (slot_option) {
    if (slot.slot == nullptr || slot.conninfo == nullptr) {
      return usage_error("%s", "reading a slot needs both --dbname and --slot");
    }
    if (path != nullptr) return usage_error("unexpected argument '%s' with --slot", path);
    slot.start = start;
    slot.endpos = endpos;
    slot.mode = mode;
    install_stop_handlers();
    return SlotStream(slot).run();
  }
  const bool from_stdin = path == nullptr || std::string_view(path) == "-";
  Fd fd(from_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    std::fprintf(stderr, "edgeshard-dump: %s: %s\n", path, std::strerror(errno));
    return kExitUsage;
  }
  return dump(fd.get(), from_stdin ? "stdin" : path, mode);
}

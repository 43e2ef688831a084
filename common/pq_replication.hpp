// Client side of PostgreSQL's streaming replication protocol over libpq (the client library, no
// server header), shared by edgeshard-dump --slot and edgeshard-relay: RAII owners of libpq
// objects, the replication grammar's quoting, and the CopyData messages of a logical stream.
// Inside START_REPLICATION's COPY BOTH the server sends XLogData ('w': dataStart, walEnd,
// sendTime, then the output plugin's bytes — one frame) or a primary keepalive ('k': walEnd,
// sendTime, replyRequested); the client sends standby status updates ('r': write, flush, apply,
// sendTime, replyRequested), which confirm the slot's position. Fields are big-endian, unlike the
// frames' own little-endian ones. Header-only: edgeshard.so never includes it.
#pragma once

#include "common/no_postgres.hpp"

#include <libpq-fe.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace edgeshard::pq {

// Sizes of the protocol messages.
inline constexpr size_t kXLogDataHeader = 1 + 8 + 8 + 8;
inline constexpr size_t kKeepaliveLength = 1 + 8 + 8 + 1;
inline constexpr size_t kStatusUpdateLength = 1 + 8 + 8 + 8 + 8 + 1;

// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01), for sendTime.
inline constexpr int64_t kPostgresEpochUs = 946684800000000;

// Closes a libpq connection.
struct ConnCloser {
  void operator()(PGconn* conn) const noexcept { PQfinish(conn); }
};
// Frees a libpq result.
struct ResultClearer {
  void operator()(PGresult* res) const noexcept { PQclear(res); }
};
// Frees a buffer libpq allocated (PQgetCopyData).
struct LibpqFreer {
  void operator()(char* p) const noexcept { PQfreemem(p); }
};
using Connection = std::unique_ptr<PGconn, ConnCloser>;
using Result = std::unique_ptr<PGresult, ResultClearer>;
using CopyBuffer = std::unique_ptr<char, LibpqFreer>;

// Reads a big-endian u64 (the replication protocol's byte order).
inline uint64_t read_be64(const uint8_t* p) noexcept {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

// Writes a big-endian u64.
inline void write_be64(uint8_t* p, uint64_t v) noexcept {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

// A replication command's identifier in double quotes (embedded quotes doubled).
inline std::string quote_identifier(std::string_view s) {
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string_view("\"\"") : std::string_view(&c, 1);
  return q += '"';
}

// A replication command's string literal in single quotes (embedded quotes doubled; the
// replication grammar has no backslash escapes).
inline std::string quote_literal(std::string_view s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string_view("''") : std::string_view(&c, 1);
  return q += '\'';
}

// libpq's last error message without its trailing newline.
inline std::string conn_error(const PGconn* conn) {
  std::string m = PQerrorMessage(conn);
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

// Fills a standby status update confirming write/flush/apply, stamped with the current time.
inline void encode_status_update(uint8_t (&msg)[kStatusUpdateLength], uint64_t write, uint64_t flush,
                                 uint64_t apply, bool reply_requested) noexcept {
  const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  msg[0] = 'r';
  write_be64(msg + 1, write);
  write_be64(msg + 9, flush);
  write_be64(msg + 17, apply);
  write_be64(msg + 25, static_cast<uint64_t>(now_us - kPostgresEpochUs));
  msg[33] = reply_requested ? 1 : 0;
}

}  // namespace edgeshard::pq

// A shard stream from a primary's logical replication slot (see primary_client.hpp).
#include "edge_apply/daemon/primary_client.hpp"

#include "common/frame_reader.hpp"
#include "common/lsn.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace edgeshard::apply::daemon {

namespace {

using Clock = std::chrono::steady_clock;
using relay::ClientError;
using relay::ClientStatus;

// A status update at least this often, even when nothing moved (wal_receiver_status_interval).
constexpr auto kStatusInterval = std::chrono::seconds(10);

// Milliseconds left until deadline (0 when passed).
int ms_until(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// The plugin's "tenants" option: the keys separated by commas; empty (no filter upstream: the
// applier drops the other tenants' groups) when a key cannot be one item of that list, which
// the plugin splits at commas and trims of blanks.
std::string tenant_option(const std::vector<std::string>& tenants) {
  std::string out;
  for (const auto& t : tenants) {
    if (t.empty() || t.find(',') != std::string::npos || t.front() == ' ' || t.back() == ' ') return {};
    out += (out.empty() ? "" : ",") + t;
  }
  return out;
}

}  // namespace

ClientStatus PrimaryClient::fail(ClientError error, std::string message, std::string code) {
  close();
  ClientStatus st;
  st.error = error;
  st.message = std::move(message);
  st.relay_code = std::move(code);
  return st;
}

std::string PrimaryClient::prepare_slot(const PrimaryOptions& o, std::string& code) {
  const std::string q =
      "SELECT plugin, confirmed_flush_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = " +
      pq::quote_literal(o.slot);
  pq::Result res(PQexec(conn_.get(), q.c_str()));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
    return "could not look up slot " + o.slot + ": " + pq::conn_error(conn_.get());
  }
  uint64_t confirmed = 0;
  if (PQntuples(res.get()) == 1) {
    if (std::string(PQgetvalue(res.get(), 0, 0)) != "edgeshard") {
      code = kSlotPlugin;
      return "slot " + o.slot + " uses output plugin " + PQgetvalue(res.get(), 0, 0) +
             ", not edgeshard: set `slot` to another name";
    }
    parse_lsn(PQgetvalue(res.get(), 0, 1), confirmed);
    if (o.start != 0 && confirmed > o.start) {
      // Someone consumed the slot past this edge: the transactions in between are gone for it.
      code = kSlotAhead;
      return "slot " + o.slot + " is confirmed up to " + format_lsn(confirmed) + ", past this edge's " +
             format_lsn(o.start) + ": the transactions in between are lost to this edge (another "
             "daemon used the slot?); give this edge a slot of its own and start it on a new data_dir";
    }
  } else if (o.start != 0) {
    // PostgreSQL 15 slots do not survive a promotion: a missing slot under an edge that already
    // applied this shard means a failover (or a dropped slot).
    code = kSlotMissing;
    return "slot " + o.slot + " does not exist on this primary, but this edge applied the shard up to " +
           format_lsn(o.start) + " (after a failover the slot is gone): the transactions since are "
           "lost to this edge; stop edgeshard-apply, move data_dir away and start it again (with "
           "`primary` set every tenant is copied again)";
  } else {
    const std::string create = "CREATE_REPLICATION_SLOT " + pq::quote_identifier(o.slot) +
                               " LOGICAL \"edgeshard\" NOEXPORT_SNAPSHOT";
    pq::Result created(PQexec(conn_.get(), create.c_str()));
    if (PQresultStatus(created.get()) != PGRES_TUPLES_OK) {
      return "could not create slot " + o.slot + ": " + pq::conn_error(conn_.get());
    }
    parse_lsn(PQgetvalue(created.get(), 0, 1), confirmed);
  }
  welcome_.start = std::max(confirmed, o.start);
  return {};
}

ClientStatus PrimaryClient::connect(const PrimaryOptions& o) {
  close();
  // Defaults first (the conninfo in dbname overrides them): a dead host or a silent network is
  // noticed in seconds, not after TCP's two hours.
  const std::string timeout_s = std::to_string(std::max(1, (o.connect_timeout_ms + 999) / 1000));
  const char* const keywords[] = {"target_session_attrs", "connect_timeout", "keepalives_idle",
                                  "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                                  "dbname", "replication", "fallback_application_name", nullptr};
  const char* const values[] = {"read-write", timeout_s.c_str(), "10", "5", "3", "30000",
                                o.conninfo.c_str(), "database", o.application_name.c_str(), nullptr};
  conn_.reset(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
  if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
    return fail(ClientError::kConnect,
                "could not connect: " + (conn_ ? pq::conn_error(conn_.get()) : std::string("out of memory")));
  }
  peer_ = std::string(PQhost(conn_.get()) ? PQhost(conn_.get()) : "") + ":" +
          (PQport(conn_.get()) ? PQport(conn_.get()) : "");
  welcome_ = {};
  welcome_.relay_name = "primary " + peer_;
  std::string code;
  if (std::string why = prepare_slot(o, code); !why.empty()) {
    return fail(code.empty() ? ClientError::kClosed : ClientError::kRefused, why, code);
  }
  std::string cmd = "START_REPLICATION SLOT " + pq::quote_identifier(o.slot) + " LOGICAL " +
                    format_lsn(o.start) + " (\"compression\" 'lz4'";
  if (const std::string filter = tenant_option(o.tenants); !filter.empty()) {
    cmd += ", \"tenants\" " + pq::quote_literal(filter);
  }
  cmd += ")";
  pq::Result started(PQexec(conn_.get(), cmd.c_str()));
  if (PQresultStatus(started.get()) != PGRES_COPY_BOTH) {
    return fail(ClientError::kClosed, "could not start replication: " + pq::conn_error(conn_.get()));
  }
  last_key_ = last_position_ = 0;
  acked_ = welcome_.start;
  last_status_ = Clock::now();
  return {};
}

ClientStatus PrimaryClient::take(const uint8_t* msg, size_t n, relay::Incoming& out, bool& handed) {
  handed = false;
  if (msg[0] == 'w' && n >= pq::kXLogDataHeader) {
    const std::span<const uint8_t> frame(msg + pq::kXLogDataHeader, n - pq::kXLogDataHeader);
    frame::Header h;
    if (frame::Status st = frame::parse_header(frame, h); !st.ok()) {
      // Handed over anyway: the stream's full check names the error and drops the connection.
      h.commit_lsn = last_key_;
    }
    if (h.commit_lsn < last_key_) {
      return fail(ClientError::kProtocol, "frame keys went backwards: " + format_lsn(h.commit_lsn) +
                                              " after " + format_lsn(last_key_));
    }
    last_key_ = h.commit_lsn;
    out.type = relay::proto::Type::kFrame;
    out.key = h.commit_lsn;
    out.frame = frame;
    handed = true;
    return {};
  }
  if (msg[0] == 'k' && n >= pq::kKeepaliveLength) {
    const uint64_t wal_end = pq::read_be64(msg + 1);
    const int64_t time_us = static_cast<int64_t>(pq::read_be64(msg + 9)) + pq::kPostgresEpochUs;
    const bool reply = msg[17] != 0;
    // Only a position past every frame key closes the transactions sent so far.
    if (wal_end <= std::max(last_key_, last_position_)) {
      if (reply) return send_ack(acked_);
      return {};
    }
    last_position_ = wal_end;
    out.type = relay::proto::Type::kKeepalive;
    out.key = 0;
    out.frame = {};
    out.keepalive = relay::proto::Keepalive{wal_end, time_us, 0, reply};
    handed = true;
    return {};
  }
  return fail(ClientError::kProtocol, "unexpected replication message '" + std::string(1, static_cast<char>(msg[0])) +
                                          "' of " + std::to_string(n) + " bytes");
}

ClientStatus PrimaryClient::read(int timeout_ms, relay::Incoming& out) {
  if (!conn_) return fail(ClientError::kClosed, "not connected");
  const auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
  message_.reset();
  for (;;) {
    if (Clock::now() - last_status_ >= kStatusInterval) {
      if (ClientStatus st = send_ack(acked_); !st.ok()) return st;
    }
    char* raw = nullptr;
    const int n = PQgetCopyData(conn_.get(), &raw, /*async=*/1);
    if (n > 0) {
      message_.reset(raw);
      bool handed = false;
      ClientStatus st = take(reinterpret_cast<const uint8_t*>(raw), static_cast<size_t>(n), out, handed);
      if (!st.ok() || handed) return st;
      message_.reset();
      continue;
    }
    if (n == -1) {
      pq::Result res(PQgetResult(conn_.get()));
      std::string why = res ? PQresultErrorMessage(res.get()) : "";
      while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
      return fail(ClientError::kClosed, "the server ended the stream" + (why.empty() ? std::string(" (shutdown)") : ": " + why));
    }
    if (n != 0) return fail(ClientError::kClosed, "connection lost: " + pq::conn_error(conn_.get()));
    const int wait = ms_until(deadline);
    if (wait == 0) return {ClientError::kTimeout, "", ""};
    pollfd p{PQsocket(conn_.get()), POLLIN, 0};
    if (::poll(&p, 1, std::min(wait, 1000)) < 0 && errno != EINTR) {
      return fail(ClientError::kClosed, std::string("poll: ") + std::strerror(errno));
    }
    if (PQconsumeInput(conn_.get()) == 0) {
      return fail(ClientError::kClosed, "connection lost: " + pq::conn_error(conn_.get()));
    }
  }
}

ClientStatus PrimaryClient::send_ack(uint64_t position) {
  if (!conn_) return fail(ClientError::kClosed, "not connected");
  // PostgreSQL 15 takes a smaller flush position as the slot's new confirmed one: never confirm
  // less than the slot (or this edge) already had when the connection started.
  position = std::max(position, welcome_.start);
  uint8_t m[pq::kStatusUpdateLength];
  pq::encode_status_update(m, position, position, position, false);
  if (PQputCopyData(conn_.get(), reinterpret_cast<const char*>(m), sizeof m) <= 0 || PQflush(conn_.get()) != 0) {
    return fail(ClientError::kClosed, "could not send a status update: " + pq::conn_error(conn_.get()));
  }
  acked_ = position;
  last_status_ = Clock::now();
  return {};
}

void PrimaryClient::close() noexcept {
  message_.reset();
  if (conn_ && PQstatus(conn_.get()) == CONNECTION_OK) {
    PQputCopyEnd(conn_.get(), nullptr);
    PQflush(conn_.get());
  }
  conn_.reset();
  peer_.clear();
}

}  // namespace edgeshard::apply::daemon

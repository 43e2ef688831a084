// A session with a shard primary: one logical replication connection (libpq, streaming
// replication protocol, as pg_recvlogical speaks it), slot created when missing, frames and
// keepalives into Ingest, status updates confirming Ingest's durable position.
#include "common/frame_codec.hpp"
#include "common/lsn.hpp"
#include "common/posix_file.hpp"
#include "common/pq_replication.hpp"
#include "walsender_fanout/relay/log_line.hpp"
#include "walsender_fanout/relay/upstream.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>

namespace edgeshard::relay {

namespace {

// A status update at least this often even when nothing moved (wal_receiver_status_interval).
constexpr auto kStatusInterval = std::chrono::seconds(10);

using pq::Connection;
using pq::CopyBuffer;
using pq::Result;
using pq::conn_error;
using pq::quote_literal;


// The live state of one primary session.
class PrimarySession {
 public:
  // Binds the session to the relay's parts.
  PrimarySession(const RelayConfig& config, Ingest& ingest, Registry& registry, UpstreamStats& stats)
      : config_(config), ingest_(ingest), registry_(registry), stats_(stats) {}

  // Connects, prepares the slot and starts replication; an empty string when streaming.
  std::string start(SessionEnd& end) {
    // Defaults first (the conninfo in dbname overrides them): a dead host or a silent network
    // is noticed in seconds, not after TCP's two hours.
    const char* const keywords[] = {"target_session_attrs", "connect_timeout", "keepalives_idle",
                                    "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                                    "dbname", "replication", "fallback_application_name", nullptr};
    const std::string app = "edgeshard-relay " + config_.name;
    const char* const values[] = {"read-write", "10", "10", "5", "3", "30000",
                                  config_.upstream.c_str(), "database", app.c_str(), nullptr};
    conn_.reset(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
    if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
      return "could not connect: " + (conn_ ? conn_error(conn_.get()) : std::string("out of memory"));
    }
    // The log belongs to one primary (system identifier) and slot: refuse to mix another in.
    Result ident(PQexec(conn_.get(), "IDENTIFY_SYSTEM"));
    if (PQresultStatus(ident.get()) != PGRES_TUPLES_OK || PQntuples(ident.get()) != 1) {
      return "IDENTIFY_SYSTEM failed: " + conn_error(conn_.get());
    }
    const std::string identity = std::string(PQgetvalue(ident.get(), 0, 0)) + "/" + config_.slot;
    std::string recorded;
    try {
      if (!registry_.bind_upstream(identity, recorded)) {
        end.fatal = true;
        return "data_dir holds the log of primary/slot " + recorded + ", not " + identity +
               ": point the relay at that primary, or use another data_dir";
      }
    } catch (const StateError& e) {
      end.blocked = posix::is_out_of_space(e.sys_errno());  // a full disk heals: retried
      end.fatal = !end.blocked;
      end.sys_errno = e.sys_errno();
      end.path = registry_.path();
      return e.what();
    }
    // The slot: its plugin must be ours; its confirmed position is where a new log begins.
    const std::string q =
        "SELECT plugin, confirmed_flush_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = " +
        quote_literal(config_.slot);
    Result res(PQexec(conn_.get(), q.c_str()));
    if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) {
      return "could not look up slot " + config_.slot + ": " + conn_error(conn_.get());
    }
    uint64_t slot_start = 0;
    if (PQntuples(res.get()) == 1) {
      if (std::string(PQgetvalue(res.get(), 0, 0)) != "edgeshard") {
        end.fatal = true;
        return "slot " + config_.slot + " uses output plugin " + PQgetvalue(res.get(), 0, 0) +
               ", not edgeshard";
      }
      if (!parse_lsn(PQgetvalue(res.get(), 0, 1), slot_start)) slot_start = 0;
    } else if (!ingest_.log_empty()) {
      // PostgreSQL 15 slots do not survive a promotion: a missing slot under an existing log
      // means a failover (or a dropped slot), and the transactions in between are lost to it.
      end.fatal = true;
      return "slot " + config_.slot + " does not exist on this primary, but data_dir holds a log up to " +
             format_lsn(ingest_.position()) + " (after a failover the slot is gone): move data_dir "
             "away to start a new log; its subscribers will have to resync";
    } else if (!config_.create_slot) {
      return "slot " + config_.slot + " does not exist (create_slot is off)";
    } else {
      const std::string create = "CREATE_REPLICATION_SLOT " + pq::quote_identifier(config_.slot) +
                                 " LOGICAL \"edgeshard\" NOEXPORT_SNAPSHOT";
      Result created(PQexec(conn_.get(), create.c_str()));
      if (PQresultStatus(created.get()) != PGRES_TUPLES_OK) {
        return "could not create slot " + config_.slot + ": " + conn_error(conn_.get());
      }
      parse_lsn(PQgetvalue(created.get(), 0, 1), slot_start);
      log(Level::kInfo, "slot_created", {{"slot", config_.slot}, {"consistent_point", format_lsn(slot_start)}});
    }
    if (!ingest_.log_empty() && slot_start > ingest_.position()) {
      // Someone else consumed the slot past this log: the transactions in between are gone.
      end.fatal = true;
      return "slot " + config_.slot + " is confirmed up to " + format_lsn(slot_start) +
             ", past this relay's log (" + format_lsn(ingest_.position()) +
             "): transactions in between are lost to this log; move data_dir away to start a new "
             "log (its subscribers will have to resync)";
    }
    if (IngestResult r = ingest_.begin_stream(slot_start, Clock::now()); !r.ok()) {
      end.set_log_failure(r);
      if (r.path.empty()) end.path = registry_.path();
      end.fatal = !end.blocked;
      return r.message;
    }
    std::string cmd = "START_REPLICATION SLOT " + pq::quote_identifier(config_.slot) + " LOGICAL " +
                      format_lsn(ingest_.position()) + " (\"compression\" " +
                      quote_literal(config_.compression) + ", \"frame_bytes\" " +
                      quote_literal(std::to_string(config_.frame_bytes));
    if (!config_.tenants.empty()) cmd += ", \"tenants\" " + quote_literal(config_.tenants);
    cmd += ")";
    Result started(PQexec(conn_.get(), cmd.c_str()));
    if (PQresultStatus(started.get()) != PGRES_COPY_BOTH) {
      return "could not start replication: " + conn_error(conn_.get());
    }
    stats_.connected = true;
    log(Level::kInfo, "upstream_connected",
        {{"host", PQhost(conn_.get()) ? PQhost(conn_.get()) : ""},
         {"port", PQport(conn_.get()) ? PQport(conn_.get()) : ""},
         {"slot", config_.slot},
         {"start", format_lsn(ingest_.position())}});
    return "";
  }

  // Streams until stop, an error, or a fatal condition; returns why it ended.
  std::string stream(const std::atomic<bool>& stop, SessionEnd& end,
                     const std::function<IngestResult(Clock::time_point)>& housekeeping) {
    Clock::time_point last_request{};
    Clock::time_point last_message = Clock::now();
    const auto timeout = std::chrono::milliseconds(config_.upstream_timeout_ms);
    int burst = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      char* raw = nullptr;
      const int n = PQgetCopyData(conn_.get(), &raw, /*async=*/1);
      CopyBuffer buf(raw);
      const Clock::time_point now = Clock::now();
      if (n > 0) {
        end.progressed = true;
        last_message = now;
        IngestResult r = handle(reinterpret_cast<const uint8_t*>(buf.get()), static_cast<size_t>(n), now);
        if (!r.ok()) {
          end.set_log_failure(r);
          return r.message;
        }
        if (++burst < 64) continue;  // housekeeping below every 64 messages in a burst
      } else if (n == 0) {
        pollfd p{PQsocket(conn_.get()), POLLIN, 0};
        const int wait_ms = std::max<int64_t>(1, std::min<int64_t>(config_.sync_interval_ms, 100));
        if (::poll(&p, 1, wait_ms) < 0 && errno != EINTR) return std::string("poll: ") + std::strerror(errno);
        if (PQconsumeInput(conn_.get()) == 0) return "connection lost: " + conn_error(conn_.get());
      } else if (n == -1) {
        Result res(PQgetResult(conn_.get()));
        std::string why = res ? PQresultErrorMessage(res.get()) : "";
        while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
        return "the server ended the stream" + (why.empty() ? std::string(" (shutdown)") : ": " + why);
      } else {
        return "connection lost: " + conn_error(conn_.get());
      }
      burst = 0;
      if (IngestResult r = ingest_.tick(now); !r.ok()) {
        end.set_log_failure(r);
        return r.message;
      }
      if (IngestResult r = housekeeping(now); !r.ok()) {
        end.set_log_failure(r);
        return r.message;
      }
      if (now - last_message > timeout) {
        return "no message from the server for " + std::to_string(config_.upstream_timeout_ms) + " ms";
      }
      // Silence for half the timeout: ask the server for a keepalive (it answers a request).
      const bool probe = now - last_message > timeout / 2 && now - last_request > timeout / 4;
      const bool ask = probe || (ingest_.wants_position(now) &&
                                 now - last_request >= std::chrono::milliseconds(config_.sync_interval_ms));
      if (ask) last_request = now;
      if ((ask || ingest_.position() != confirmed_ || now - last_status_ >= kStatusInterval) &&
          !send_status(ask)) {
        return "could not send a status update: " + conn_error(conn_.get());
      }
    }
    // Clean stop: confirm what is durable, end the COPY.
    send_status(false);
    PQputCopyEnd(conn_.get(), nullptr);
    PQflush(conn_.get());
    return "stopping";
  }

 private:
  // One CopyData message from the server.
  IngestResult handle(const uint8_t* msg, size_t n, Clock::time_point now) {
    if (msg[0] == 'w' && n >= pq::kXLogDataHeader) {
      return ingest_.on_frame(std::span<const uint8_t>(msg + pq::kXLogDataHeader, n - pq::kXLogDataHeader), now);
    }
    if (msg[0] == 'k' && n >= pq::kKeepaliveLength) {
      const uint64_t wal_end = pq::read_be64(msg + 1);
      const int64_t time_us = static_cast<int64_t>(pq::read_be64(msg + 9)) + pq::kPostgresEpochUs;
      IngestResult r = ingest_.on_position(wal_end, time_us, now);
      if (r.ok() && msg[17] != 0 && !send_status(false)) {
        return {IngestResult::kBadInput, "could not send a status update: " + conn_error(conn_.get())};
      }
      return r;
    }
    return {IngestResult::kBadInput, "unexpected replication message '" + std::string(1, static_cast<char>(msg[0])) +
                                         "' of " + std::to_string(n) + " bytes"};
  }

  // Confirms the durable position (written = received, flushed = applied = durable).
  bool send_status(bool reply_requested) {
    const uint64_t durable = ingest_.position();
    uint8_t m[pq::kStatusUpdateLength];
    pq::encode_status_update(m, std::max(durable, ingest_.stats().received_key.load()), durable,
                             durable, reply_requested);
    if (PQputCopyData(conn_.get(), reinterpret_cast<const char*>(m), sizeof m) <= 0 || PQflush(conn_.get()) != 0) {
      return false;
    }
    confirmed_ = durable;
    stats_.confirmed = durable;
    last_status_ = Clock::now();
    return true;
  }

  const RelayConfig& config_;
  Ingest& ingest_;
  Registry& registry_;
  UpstreamStats& stats_;
  Connection conn_;
  uint64_t confirmed_ = 0;
  Clock::time_point last_status_{};
};

}  // namespace

SessionEnd Upstream::run_primary(const std::atomic<bool>& stop) {
  SessionEnd end;
  PrimarySession session(config_, ingest_, registry_, stats_);
  end.reason = session.start(end);
  if (!end.reason.empty()) return end;
  end.reason = session.stream(stop, end, [this](Clock::time_point now) { return housekeeping(now); });
  return end;
}

}  // namespace edgeshard::relay

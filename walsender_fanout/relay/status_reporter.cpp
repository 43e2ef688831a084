// edge_status reports over libpq.
#include "walsender_fanout/relay/status_reporter.hpp"

#include "common/frame_json.hpp"
#include "common/lsn.hpp"
#include "common/pq_replication.hpp"
#include "walsender_fanout/relay/log_line.hpp"


#include <cstdio>
#include <memory>
#include <thread>

namespace edgeshard::relay {

namespace {

// A JSON string literal (the one JSON escaper, common/frame_json.hpp: every control byte and
// invalid UTF-8 escaped, so a tenant key with any bytes gives valid JSON).
std::string json_string(const std::string& s) {
  std::string out;
  frame::append_json_string(out, s);
  return out;
}

}  // namespace

std::string status_report_json(const RelayStatus& st) {
  std::string out = "[";
  for (size_t i = 0; i < st.subscribers.size(); ++i) {
    const SubscriberStatus& s = st.subscribers[i];
    char lag[32];
    std::snprintf(lag, sizeof lag, "%.3f", s.lag_seconds);
    if (i > 0) out += ",";
    out += "{\"subscriber\":" + json_string(s.name) + ",\"peer\":" + json_string(s.peer) +
           ",\"tenants\":" + json_string(s.tenants) + ",\"connected\":" + (s.connected ? "true" : "false") +
           ",\"acked_lsn\":\"" + format_lsn(s.acked) + "\",\"sent_lsn\":\"" + format_lsn(s.sent) +
           "\",\"relay_lsn\":\"" + format_lsn(st.position) + "\",\"lag_bytes\":" + std::to_string(s.lag_bytes) +
           ",\"lag_seconds\":" + lag + ",\"frames_sent\":" + std::to_string(s.frames_sent) +
           ",\"bytes_sent\":" + std::to_string(s.bytes_sent) + "}";
  }
  return out + "]";
}

void run_status_reporter(const std::string& conninfo, const std::string& relay_name,
                         std::chrono::milliseconds interval, const StatusBoard& board,
                         const std::atomic<bool>& stop) {
  pq::Connection conn;
  bool failing = false;
  auto next = std::chrono::steady_clock::now();
  while (!stop.load()) {
    if (std::chrono::steady_clock::now() < next) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    next = std::chrono::steady_clock::now() + interval;
    std::string error;
    if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
      // Reports go to the primary; a hung server must not hold the reporter (or shutdown).
      const char* const keywords[] = {"target_session_attrs", "connect_timeout", "options", "dbname",
                                      "fallback_application_name", nullptr};
      const char* const values[] = {"read-write", "10", "-c statement_timeout=5000", conninfo.c_str(),
                                    "edgeshard-relay status", nullptr};
      conn.reset(PQconnectdbParams(keywords, values, 1));
      if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
        error = conn ? PQerrorMessage(conn.get()) : "out of memory";
        conn.reset();
      }
    }
    if (conn) {
      const std::string report = status_report_json(board.read());
      const char* params[] = {relay_name.c_str(), report.c_str()};
      pq::Result res(PQexecParams(
          conn.get(), "SELECT edgeshard.report_edge_status($1, $2::jsonb)", 2, nullptr, params,
          nullptr, nullptr, 0));
      if (PQresultStatus(res.get()) != PGRES_TUPLES_OK) error = PQerrorMessage(conn.get());
    }
    while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) error.pop_back();
    if (!error.empty() && !failing) {
      log(Level::kWarning, "status_report_failed", {{"error", error}});
    } else if (error.empty() && failing) {
      log(Level::kInfo, "status_report_resumed");
    }
    failing = !error.empty();
  }
}

}  // namespace edgeshard::relay

// Reports the relay's subscribers to the shard primary, so a DBA sees every edge's lag from SQL
// (view edgeshard.edge_status): every status_interval it calls
// edgeshard.report_edge_status(relay, report jsonb) over an ordinary libpq connection. The rows
// live in an UNLOGGED table: reports write no WAL, so they never flow back down the stream.
#pragma once

#include "common/no_postgres.hpp"

#include "walsender_fanout/relay/status_board.hpp"

#include <atomic>
#include <chrono>
#include <string>

namespace edgeshard::relay {

// The report's JSON array: one object per subscriber (name, peer, tenants, connected, acked_lsn,
// sent_lsn, relay_lsn, lag_bytes, lag_seconds, frames_sent, bytes_sent).
std::string status_report_json(const RelayStatus& status);

// Reports until stop is set; connection failures are logged (once per outage) and retried.
void run_status_reporter(const std::string& conninfo, const std::string& relay_name,
                         std::chrono::milliseconds interval, const StatusBoard& board,
                         const std::atomic<bool>& stop);

}  // namespace edgeshard::relay

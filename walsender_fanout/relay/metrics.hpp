// The relay's Prometheus text page (GET /metrics, served on its own thread by
// common/daemon/prometheus.hpp, so a slow scraper never stalls the fan-out loop). Renders the StatusBoard snapshot and the counters of the upstream
// thread.
#pragma once

#include "common/no_postgres.hpp"

#include "walsender_fanout/relay/frame_log.hpp"
#include "walsender_fanout/relay/ingest.hpp"
#include "walsender_fanout/relay/status_board.hpp"
#include "walsender_fanout/relay/upstream.hpp"

#include <string>

namespace edgeshard::relay {

// Everything the metrics page shows.
struct MetricsSources {
  std::string relay_name;
  const IngestStats* ingest = nullptr;
  const UpstreamStats* upstream = nullptr;
  const FrameLog* log = nullptr;
  const StatusBoard* board = nullptr;
};

// The Prometheus text exposition (format 0.0.4) of the sources.
std::string render_metrics(const MetricsSources& sources);

}  // namespace edgeshard::relay

// edgeshard-apply's Prometheus text page (GET /metrics, served on its own thread by
// common/daemon/prometheus.hpp), in the style of the relay's metrics.cpp: per shard the applied (acked) and received positions and the lag in
// WAL bytes between them, connection state; the applier's counters.
#pragma once

#include "common/no_postgres.hpp"

#include "edge_apply/daemon/applier.hpp"
#include "edge_apply/daemon/shard_stream.hpp"

#include <deque>
#include <string>

namespace edgeshard::apply::daemon {

// Everything the metrics page shows.
struct MetricsSources {
  std::string name;  // subscriber name
  const std::deque<ShardState>* shards = nullptr;
  const ApplierStats* applier = nullptr;
  const EventQueue* queue = nullptr;
};

// The Prometheus text exposition (format 0.0.4) of the sources.
std::string render_metrics(const MetricsSources& sources);

}  // namespace edgeshard::apply::daemon

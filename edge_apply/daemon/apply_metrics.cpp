// /metrics of edgeshard-apply: rendering (common/daemon/prometheus.hpp serves it).
#include "edge_apply/daemon/apply_metrics.hpp"

#include "common/daemon/prometheus.hpp"

namespace edgeshard::apply::daemon {

using ::edgeshard::daemon::append_sample;
using ::edgeshard::daemon::describe_metric;
using ::edgeshard::daemon::escape_label;

std::string render_metrics(const MetricsSources& s) {
  std::string out;
  const std::string who = "subscriber=\"" + escape_label(s.name) + "\"";
  auto one = [&](const char* name, const char* type, const char* help, double v) {
    describe_metric(out, name, type, help);
    append_sample(out, name, who, v);
  };
  const ApplierStats& a = *s.applier;
  one("edgeshard_apply_tenants", "gauge", "tenant replicas open for writing",
      static_cast<double>(a.tenants.load()));
  one("edgeshard_apply_tenant_closes_total", "counter", "idle tenant writers closed by max_open_tenants",
      static_cast<double>(a.tenant_closes.load()));
  one("edgeshard_apply_tenant_reopens_total", "counter", "closed tenant writers opened again by a change",
      static_cast<double>(a.tenant_reopens.load()));
  one("edgeshard_apply_broken_tenants", "gauge", "tenants no longer applied (need a resync)",
      static_cast<double>(a.broken_tenants.load()));
  one("edgeshard_apply_flushes_total", "counter", "tenant manifests published",
      static_cast<double>(a.flushes.load()));
  one("edgeshard_apply_flush_cycles_total", "counter", "flush rounds over every tenant",
      static_cast<double>(a.flush_cycles.load()));
  one("edgeshard_apply_groups_applied_total", "counter", "tenant frame groups (transactions) applied",
      static_cast<double>(a.groups_applied.load()));
  one("edgeshard_apply_groups_skipped_total", "counter", "frame groups received again and skipped",
      static_cast<double>(a.groups_skipped.load()));
  one("edgeshard_apply_groups_ignored_total", "counter", "frame groups of tenants not served here",
      static_cast<double>(a.groups_ignored.load()));
  one("edgeshard_apply_truncates_total", "counter", "TRUNCATE messages applied",
      static_cast<double>(a.truncates.load()));
  one("edgeshard_apply_relations_total", "counter", "RELATION messages received",
      static_cast<double>(a.relations.load()));
  one("edgeshard_apply_compactions_total", "counter", "tenant compactions into a new base",
      static_cast<double>(a.compactions.load()));
  one("edgeshard_apply_tenants_copying", "gauge", "tenants waiting for their initial copy to publish",
      static_cast<double>(a.tenants_copying.load()));
  one("edgeshard_apply_copies_total", "counter", "shard initial copies completed",
      static_cast<double>(a.copies_done.load()));
  one("edgeshard_apply_copy_rows_total", "counter", "rows received by initial copies",
      static_cast<double>(a.copy_rows.load()));
  one("edgeshard_apply_copy_bytes_total", "counter", "binary COPY bytes received by initial copies",
      static_cast<double>(a.copy_bytes.load()));
  one("edgeshard_apply_groups_in_snapshot_total", "counter",
      "frame groups skipped because an initial copy's snapshot already had them",
      static_cast<double>(a.groups_in_snapshot.load()));
  one("edgeshard_apply_resyncs_total", "counter",
      "tenant resyncs begun (a table of theirs rewritten on the primary): copied again beside the published replica",
      static_cast<double>(a.resyncs.load()));
  one("edgeshard_apply_resyncs_done_total", "counter", "tenant resyncs published (readers switched to the new copy)",
      static_cast<double>(a.resyncs_done.load()));
  one("edgeshard_apply_disk_full", "gauge",
      "1 while writes fail for lack of space (no space left on device, quota): backing off, acks held",
      static_cast<double>(a.disk_full.load()));
  one("edgeshard_apply_disk_full_errors_total", "counter", "writes that failed for lack of space",
      static_cast<double>(a.disk_full_errors.load()));
  one("edgeshard_apply_spill_runs_total", "counter",
      "tenants' pending rows written to unlisted replica files past tenant_memory_bytes (published with the rest)",
      static_cast<double>(a.spill_runs.load()));
  one("edgeshard_apply_memory_trims_total", "counter", "flush rounds that gave freed memory back to the system",
      static_cast<double>(a.memory_trims.load()));
  one("edgeshard_apply_queue_events", "gauge", "events received and not applied yet",
      static_cast<double>(s.queue->size()));
  struct PerShard {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const ShardState&);
  };
  static const PerShard per[] = {
      {"edgeshard_apply_shard_connected", "gauge", "1 while the shard's relay connection is up",
       [](const ShardState& x) { return x.connected.load() ? 1.0 : 0.0; }},
      {"edgeshard_apply_shard_applied_lsn", "gauge",
       "position durable on every tenant of the shard (what is acked to the relay)",
       [](const ShardState& x) { return static_cast<double>(x.acked.load()); }},
      {"edgeshard_apply_shard_received_lsn", "gauge", "newest position received from the relay",
       [](const ShardState& x) { return static_cast<double>(x.received.load()); }},
      {"edgeshard_apply_shard_lag_bytes", "gauge", "received minus applied position (WAL bytes)",
       [](const ShardState& x) {
         const uint64_t r = x.received.load(), a = x.acked.load();
         return r > a ? static_cast<double>(r - a) : 0.0;
       }},
      {"edgeshard_apply_shard_sessions_total", "counter", "relay connections established",
       [](const ShardState& x) { return static_cast<double>(x.sessions.load()); }},
      {"edgeshard_apply_shard_frames_total", "counter", "frames received and checked",
       [](const ShardState& x) { return static_cast<double>(x.frames.load()); }},
      {"edgeshard_apply_shard_frame_bytes_total", "counter", "frame bytes received",
       [](const ShardState& x) { return static_cast<double>(x.frame_bytes.load()); }},
      {"edgeshard_apply_shard_corrupt_total", "counter",
       "connections dropped for a corrupt frame or a broken stream rule",
       [](const ShardState& x) { return static_cast<double>(x.corrupt.load()); }},
      {"edgeshard_apply_shard_spilled_groups_total", "counter",
       "frame groups written to a spill file as they arrived (past group_memory_bytes)",
       [](const ShardState& x) { return static_cast<double>(x.spilled_groups.load()); }},
  };
  for (const PerShard& p : per) {
    describe_metric(out, p.name, p.type, p.help);
    for (const ShardState& sh : *s.shards) {
      append_sample(out, p.name, who + ",shard=\"" + escape_label(sh.shard) + "\"", p.value(sh));
    }
  }
  return out;
}

}  // namespace edgeshard::apply::daemon

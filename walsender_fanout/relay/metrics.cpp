// /metrics: rendering (common/daemon/prometheus.hpp serves it).
#include "walsender_fanout/relay/metrics.hpp"

#include "common/daemon/prometheus.hpp"

namespace edgeshard::relay {

using daemon::append_sample;
using daemon::describe_metric;
using daemon::escape_label;

std::string render_metrics(const MetricsSources& s) {
  std::string out;
  const std::string relay = "relay=\"" + escape_label(s.relay_name) + "\"";
  const RelayStatus st = s.board->read();
  auto one = [&](const char* name, const char* type, const char* help, double v) {
    describe_metric(out, name, type, help);
    append_sample(out, name, relay, v);
  };
  one("edgeshard_relay_upstream_connected", "gauge", "1 while the upstream stream is up",
      s.upstream->connected.load() ? 1 : 0);
  one("edgeshard_relay_upstream_reconnects_total", "counter", "upstream sessions that ended",
      static_cast<double>(s.upstream->reconnects.load()));
  one("edgeshard_relay_upstream_lsn", "gauge", "newest position received from upstream",
      static_cast<double>(s.ingest->received_key.load()));
  one("edgeshard_relay_durable_lsn", "gauge", "position durable in the log and visible to subscribers",
      static_cast<double>(s.ingest->position.load()));
  one("edgeshard_relay_confirmed_lsn", "gauge", "position last confirmed upstream",
      static_cast<double>(s.upstream->confirmed.load()));
  one("edgeshard_relay_frames_received_total", "counter", "frames received from upstream",
      static_cast<double>(s.ingest->frames_in.load()));
  one("edgeshard_relay_bytes_received_total", "counter", "frame bytes received from upstream",
      static_cast<double>(s.ingest->bytes_in.load()));
  one("edgeshard_relay_duplicates_skipped_total", "counter",
      "frames sent again by upstream after a reconnect and skipped",
      static_cast<double>(s.ingest->duplicates_skipped.load()));
  one("edgeshard_relay_log_syncs_total", "counter", "group fsyncs of the frame log",
      static_cast<double>(s.ingest->syncs.load()));
  one("edgeshard_relay_log_write_errors_total", "counter",
      "frame log writes that failed for lack of space (ENOSPC, EDQUOT)",
      static_cast<double>(s.ingest->log_write_errors.load()));
  one("edgeshard_relay_log_write_blocked", "gauge",
      "1 while the frame log cannot be written (disk full): nothing new is confirmed upstream",
      s.ingest->log_blocked.load() ? 1 : 0);
  one("edgeshard_relay_log_oldest_lsn", "gauge", "oldest position still in the log",
      static_cast<double>(s.log->oldest_lsn()));
  one("edgeshard_relay_connections_total", "counter", "subscriber connections accepted",
      static_cast<double>(st.connections_total));
  one("edgeshard_relay_refused_total", "counter", "subscriber connections ended with an ERROR",
      static_cast<double>(st.refused_total));
  size_t connected = 0;
  for (const auto& sub : st.subscribers) connected += sub.connected;
  one("edgeshard_relay_subscribers_connected", "gauge", "subscribers streaming now",
      static_cast<double>(connected));
  struct PerSubscriber {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const SubscriberStatus&);
  };
  static const PerSubscriber per[] = {
      {"edgeshard_relay_subscriber_connected", "gauge", "1 while the subscriber is connected",
       [](const SubscriberStatus& x) { return x.connected ? 1.0 : 0.0; }},
      {"edgeshard_relay_subscriber_acked_lsn", "gauge", "position the subscriber acked",
       [](const SubscriberStatus& x) { return static_cast<double>(x.acked); }},
      {"edgeshard_relay_subscriber_sent_lsn", "gauge", "position sent to the subscriber",
       [](const SubscriberStatus& x) { return static_cast<double>(x.sent); }},
      {"edgeshard_relay_subscriber_lag_bytes", "gauge", "relay position minus acked position (WAL bytes)",
       [](const SubscriberStatus& x) { return static_cast<double>(x.lag_bytes); }},
      {"edgeshard_relay_subscriber_lag_seconds", "gauge",
       "seconds since the oldest transaction the subscriber has not acked became visible here",
       [](const SubscriberStatus& x) { return x.lag_seconds; }},
      {"edgeshard_relay_subscriber_catching_up", "gauge", "1 while served from the log on disk",
       [](const SubscriberStatus& x) { return x.catching_up ? 1.0 : 0.0; }},
      {"edgeshard_relay_subscriber_frames_sent_total", "counter", "frames sent on the current connection",
       [](const SubscriberStatus& x) { return static_cast<double>(x.frames_sent); }},
      {"edgeshard_relay_subscriber_bytes_sent_total", "counter", "bytes sent on the current connection",
       [](const SubscriberStatus& x) { return static_cast<double>(x.bytes_sent); }},
  };
  for (const PerSubscriber& p : per) {
    describe_metric(out, p.name, p.type, p.help);
    for (const auto& sub : st.subscribers) {
      append_sample(out, p.name, relay + ",subscriber=\"" + escape_label(sub.name) + "\"",
                    p.value(sub));
    }
  }
  return out;
}

}  // namespace edgeshard::relay

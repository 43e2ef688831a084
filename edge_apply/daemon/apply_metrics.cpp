// /metrics of edgeshard-apply: rendering and a minimal HTTP/1.0 responder.
#include "edge_apply/daemon/apply_metrics.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>

namespace edgeshard::apply::daemon {

namespace {

// A Prometheus label value with \, " and newline escaped.
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// Appends a metric's HELP and TYPE lines.
void describe(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + ' ' + help + "\n# TYPE " + name + ' ' + type + '\n';
}

// Appends one sample.
void sample(std::string& out, const char* name, const std::string& labels, double value) {
  char num[64];
  std::snprintf(num, sizeof num, "%.17g", value);
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += ' ';
  out += num;
  out += '\n';
}

}  // namespace

std::string render_metrics(const MetricsSources& s) {
  std::string out;
  const std::string who = "subscriber=\"" + label(s.name) + "\"";
  auto one = [&](const char* name, const char* type, const char* help, double v) {
    describe(out, name, type, help);
    sample(out, name, who, v);
  };
  const ApplierStats& a = *s.applier;
  one("edgeshard_apply_tenants", "gauge", "tenant replicas open for writing",
      static_cast<double>(a.tenants.load()));
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
  };
  for (const PerShard& p : per) {
    describe(out, p.name, p.type, p.help);
    for (const ShardState& sh : *s.shards) {
      sample(out, p.name, who + ",shard=\"" + label(sh.shard) + "\"", p.value(sh));
    }
  }
  return out;
}

void serve_metrics(int listen_fd, const MetricsSources& sources, const std::atomic<bool>& stop) {
  while (!stop.load()) {
    pollfd p{listen_fd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    // A scraper gets two seconds to send its request and take the answer.
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos && request.size() < 16384) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    std::string body;
    std::string status = "200 OK";
    if (request.rfind("GET /metrics", 0) == 0) {
      body = render_metrics(sources);
    } else {
      status = "404 Not Found";
      body = "only GET /metrics is served here\n";
    }
    const std::string response = "HTTP/1.0 " + status +
                                 "\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
                                 std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    size_t done = 0;
    while (done < response.size()) {
      const ssize_t n = ::write(fd, response.data() + done, response.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(fd);
  }
  ::close(listen_fd);
}

}  // namespace edgeshard::apply::daemon

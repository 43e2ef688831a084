// The daemons' Prometheus text exposition (format 0.0.4) helpers and a minimal HTTP/1.0
// responder for GET /metrics, run on its own thread so a slow scraper never stalls a daemon.
// Shared by edgeshard-relay and edgeshard-apply; not part of edgeshard.so.
#pragma once

#include "common/no_postgres.hpp"

#include <atomic>
#include <functional>
#include <string>

namespace edgeshard::daemon {

// A Prometheus label value with \, " and newline escaped.
std::string escape_label(const std::string& value);

// Appends a metric's HELP and TYPE lines.
void describe_metric(std::string& out, const char* name, const char* type, const char* help);

// Appends one sample: name{labels} value (labels already formatted, may be empty).
void append_sample(std::string& out, const char* name, const std::string& labels, double value);

// Serves GET /metrics on listen_fd (owned, closed at the end) with the page render returns, until
// stop is set; anything else gets a 404.
void serve_metrics(int listen_fd, const std::function<std::string()>& render,
                   const std::atomic<bool>& stop);

}  // namespace edgeshard::daemon

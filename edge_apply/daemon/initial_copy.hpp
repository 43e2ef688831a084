// The initial copy of tenants from a shard primary (DESIGN.md 6.1): one libpq connection, one
// REPEATABLE READ READ ONLY transaction whose snapshot (pg_current_snapshot()) is recorded, the
// distributed tables' leaf relations described from the catalog exactly as the output plugin's
// RELATION messages describe them (columns without dropped and generated ones, type, typmod,
// primary-key flag, tenant column), each table's rows of the tenants asked for read with
// `COPY (SELECT ...) TO STDOUT (FORMAT binary)` (the types' send format: the BINARY values of the
// stream; types without a send function are selected as text, the stream's TEXT values), and,
// after the last row, pg_current_wal_lsn(): the end position L1. Every transaction visible in the
// snapshot committed below L1; the applier skips those and applies the others on top of the copy,
// and publishes the copied tenants once the shard's stream passes L1.
//
// The rows come out as frames (common/FORMAT.md), so that copy and stream share one decoding
// path: a MANY_TENANTS RELATION frame per table, then per tenant a frame group of INSERTs (at most
// kCopyGroupBytes of raw payload in a group; a tenant may get several groups per table).
#pragma once

#include "common/no_postgres.hpp"

#include "edge_apply/daemon/copy_snapshot.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::apply::daemon {

// Raw payload bytes after which a tenant's copy group is handed over (bounds memory).
inline constexpr size_t kCopyGroupBytes = size_t{8} << 20;

// What a shard copy produced.
struct CopyOutcome {
  CopySnapshot snapshot;  // the copy's snapshot
  int64_t snapshot_time_us = 0;  // the primary's clock when the snapshot was taken (Unix µs)
  uint64_t end_lsn = 0;   // L1: pg_current_wal_lsn() after the last row
  uint64_t tables = 0;    // leaf relations copied
  uint64_t rows = 0;
  uint64_t bytes = 0;     // bytes of COPY data received
};

// Where the copy's frames go (called on the copying thread, in order). Returning false stops the
// copy with that why.
struct CopySink {
  // The snapshot, as soon as it is taken (before any frame).
  std::function<bool(const CopySnapshot&, std::string&)> snapshot;
  // A table's RELATION (one MANY_TENANTS frame), before any of its rows.
  std::function<bool(std::span<const uint8_t>, std::string&)> relation;
  // One tenant's rows of one table: a complete frame group of INSERT messages.
  std::function<bool(std::string_view tenant, std::span<const std::vector<uint8_t>>, std::string&)> rows;
};

// Copies the rows of `tenants` (canonical keys; every tenant when empty) of every distributed
// table from the primary at conninfo. Returns false with why (the message names the primary's
// error) on any failure, or when stop became true; nothing of a failed copy may be published.
bool copy_shard(const std::string& conninfo, const std::vector<std::string>& tenants,
                const std::atomic<bool>& stop, const CopySink& sink, CopyOutcome& out,
                std::string& why);

}  // namespace edgeshard::apply::daemon

// The applier thread of edgeshard-apply: owns every TenantWriter and every shard's RelationMap,
// takes the shard streams' events in order and applies them (groups, TRUNCATE, RELATION,
// positions); every flush_interval it publishes each tenant with pending rows (and, at most every
// position_flush_interval, open tenants whose position only moved), then acks each shard's
// stream position.
//
// Initial copy (DESIGN.md 6.1, initial_copy.hpp): open_existing() removes tenants whose copy
// never published and plans one copy per shard that has a primary configured (every tenant not
// on this edge when `tenants` is all and the shard was never copied, else the tenants missing
// here). run() performs the copies before it applies any event: each waits for its shard's
// stream to be connected (so the stream starts before the snapshot), copies the rows into
// unpublished tenants, and then, while that shard's stream is applied, skips the copied tenants'
// groups whose transactions the snapshot shows; the tenants are published when the stream
// passes the copy's end LSN. A copy that fails stops the daemon (a restart copies again).
//
// Correctness: a shard's position P (the applier's "everything below P was handed over") only
// comes from KEEPALIVEs and from frame keys (a frame with key K means every transaction below K
// is complete), so advancing a tenant to P never skips a group still on its way. A flush round
// publishes every tenant's pending rows, makes them durable, and only then stores P in the
// shard's position file (edge_apply/shard_position.hpp) and acks P: so a restart starts each
// shard at max(the smallest manifest position, the position file's), and TenantWriter skips
// groups a tenant already has. Quiet tenants need no manifest rewrite for acks to move, which
// is what lets idle tenants be closed (max_open_tenants, an LRU of open writers) and stay closed.
//
// A full disk (ENOSPC, EDQUOT) stops nothing: a flush round that runs out of space is abandoned
// (staged deltas removed, every tenant's published manifest unchanged, pending rows kept in
// memory, acks unchanged), an event whose writes ran out of space is applied again (nothing after
// it is applied meanwhile), and the applier backs off (100 ms doubling to 10 s, jittered, one log
// line per step with the OS's words) and retries until there is room again. Meanwhile it takes no
// new event, so the bounded queue holds the streams back.
#pragma once

#include "common/no_postgres.hpp"

#include "edge_apply/daemon/apply_config.hpp"
#include "edge_apply/daemon/event_queue.hpp"
#include "edge_apply/daemon/shard_stream.hpp"

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

namespace edgeshard::apply::daemon {

// Counters of the applier (read by /metrics).
struct ApplierStats {
  std::atomic<uint64_t> tenants{0};         // open tenant writers
  std::atomic<uint64_t> tenant_closes{0};   // idle writers closed by the max_open_tenants cap
  std::atomic<uint64_t> tenant_reopens{0};  // closed writers opened again by a change
  std::atomic<uint64_t> broken_tenants{0};  // tenants that stopped applying (need a resync)
  std::atomic<uint64_t> flushes{0};         // tenant flushes that published a manifest
  std::atomic<uint64_t> flush_cycles{0};
  std::atomic<uint64_t> groups_applied{0};
  std::atomic<uint64_t> groups_skipped{0};  // already applied (resent after a reconnect/restart)
  std::atomic<uint64_t> groups_ignored{0};  // of tenants not served here
  std::atomic<uint64_t> truncates{0};
  std::atomic<uint64_t> relations{0};
  std::atomic<uint64_t> compactions{0};
  std::atomic<uint64_t> tenants_copying{0};     // open tenants waiting for their copy to publish
  std::atomic<uint64_t> copies_done{0};         // shard copies completed
  std::atomic<uint64_t> copy_rows{0};           // rows received by initial copies
  std::atomic<uint64_t> copy_bytes{0};          // COPY bytes received by initial copies
  std::atomic<uint64_t> groups_in_snapshot{0};  // groups skipped: the copy's snapshot had them
  std::atomic<uint64_t> resyncs{0};       // tenants whose resync began (a table rewritten upstream)
  std::atomic<uint64_t> spill_runs{0};    // pending rows written to spill runs (tenant_memory_bytes)
  std::atomic<uint64_t> memory_trims{0};  // flush rounds that gave freed memory back to the system
  std::atomic<uint64_t> resyncs_done{0};  // resyncs adopted: readers switched to the new copy
  std::atomic<uint64_t> disk_full{0};           // 1 while writes fail for lack of space (backing off)
  std::atomic<uint64_t> disk_full_errors{0};    // writes that failed for lack of space
};

class Applier {
 public:
  // An applier over config's data_dir and the shards' states (same order as config.shards).
  Applier(const ApplyConfig& config, std::deque<ShardState>& shards, EventQueue& queue);
  ~Applier();
  Applier(const Applier&) = delete;
  Applier& operator=(const Applier&) = delete;

  // Opens the writer of every served tenant already on disk and sets each shard's acked
  // position to where its stream must start; false (logged) on a fatal error.
  bool open_existing();

  // Applies events until stop, then (once every stream is quiet) the rest of the queue, a final
  // flush and acks, and sets done. False when it stopped on a fatal error (an I/O failure).
  bool run(const std::atomic<bool>& stop, std::atomic<bool>& done);

  // Counters.
  const ApplierStats& stats() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgeshard::apply::daemon

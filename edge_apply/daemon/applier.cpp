// The applier thread: events -> tenant writers; periodic flushes and acks.
#include "edge_apply/daemon/applier.hpp"

#include "common/frame_reader.hpp"
#include "common/lsn.hpp"
#include "edge_apply/daemon/relation_store.hpp"
#include "edge_apply/manifest.hpp"
#include "edge_apply/relation_map.hpp"
#include "edge_apply/tenant_writer.hpp"
#include "walsender_fanout/relay/log_line.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <variant>
#include <vector>

namespace edgeshard::apply::daemon {

namespace fs = std::filesystem;
using relay::Level;
using relay::log;
using Clock = std::chrono::steady_clock;

namespace {

// One tenant served here.
struct Tenant {
  std::string key;
  TenantWriter writer;
  bool broken = false;  // stopped applying: its replica needs a resync (initial copy)
  Clock::time_point last_position_flush{};
};

// What the applier knows of a shard's stream.
struct StreamPosition {
  uint64_t position = 0;  // every transaction below it was handed to the applier
  uint64_t upstream = 0;  // the relay's last KEEPALIVE position
  int64_t upstream_time_us = 0;
};

// Name of a WriterStatus kind, for logs.
const char* kind_name(WriterStatus::Kind k) {
  switch (k) {
    case WriterStatus::kOk: return "ok";
    case WriterStatus::kBadGroup: return "bad_group";
    case WriterStatus::kBadMessage: return "bad_message";
    case WriterStatus::kMissingRow: return "missing_row";
    case WriterStatus::kCorrupt: return "corrupt";
    case WriterStatus::kIo: return "io";
    case WriterStatus::kFailed: return "failed";
  }
  return "unknown";
}

}  // namespace

struct Applier::Impl {
  const ApplyConfig& config;
  std::deque<ShardState>& shards;
  EventQueue& queue;
  ApplierStats stats;
  bool all_tenants = true;
  std::set<std::string> served;
  TenantWriter::Options writer_options;
  std::map<std::string, std::unique_ptr<Tenant>, std::less<>> tenants;
  std::vector<RelationMap> relations;
  std::vector<RelationStore> relation_stores;
  std::vector<StreamPosition> streams;
  bool fatal = false;
  frame::Reader reader;

  Impl(const ApplyConfig& c, std::deque<ShardState>& s, EventQueue& q)
      : config(c), shards(s), queue(q), relations(s.size()), relation_stores(s.size()), streams(s.size()) {
    const auto list = c.tenant_list();
    all_tenants = list.empty();
    served.insert(list.begin(), list.end());
    writer_options.compact_deltas = static_cast<size_t>(c.compact_deltas);
    writer_options.compress = c.compress;
  }

  // Whether this edge serves tenant key.
  bool serves(std::string_view key) const { return all_tenants || served.count(std::string(key)) > 0; }

  // Handles a writer failure of tenant t: I/O errors are fatal (the daemon exits; a restart
  // resumes from the manifests), anything else marks the tenant broken. Returns false if fatal.
  bool failed(Tenant& t, const WriterStatus& st, const char* what) {
    if (st.kind == WriterStatus::kIo || st.kind == WriterStatus::kFailed) {
      log(Level::kError, "apply_failed",
          {{"tenant", t.key}, {"during", what}, {"kind", kind_name(st.kind)}, {"error", st.message},
           {"action", "stopping: a restart resumes from the manifests"}});
      fatal = true;
      return false;
    }
    t.broken = true;
    stats.broken_tenants.fetch_add(1);
    log(Level::kError, "tenant_broken",
        {{"tenant", t.key}, {"during", what}, {"kind", kind_name(st.kind)}, {"error", st.message},
         {"action", "no longer applied or acked; needs a resync (initial copy, not implemented yet)"}});
    return true;
  }

  // The tenant's writer, opened on first use; nullptr when broken or on a fatal error.
  Tenant* tenant(std::string_view key) {
    auto it = tenants.find(key);
    if (it == tenants.end()) {
      auto t = std::make_unique<Tenant>();
      t->key = std::string(key);
      t->last_position_flush = Clock::now();
      WriterStatus st = t->writer.open(config.data_dir, key, writer_options);
      it = tenants.emplace(t->key, std::move(t)).first;
      stats.tenants = tenants.size();
      if (!st.ok()) {
        failed(*it->second, st, "open");
      } else {
        log(Level::kInfo, "tenant_opened",
            {{"tenant", std::string(key)}, {"dir", it->second->writer.dir().string()},
             {"generation", std::to_string(it->second->writer.manifest().generation)}});
      }
    }
    return it->second->broken ? nullptr : it->second.get();
  }

  // A MANY_TENANTS frame: RELATIONs into the shard's map (kept on disk first), TRUNCATE applied
  // to every tenant open here (tenants never opened hold no rows to truncate).
  void apply_many(const ApplyEvent& ev) {
    const auto& bytes = ev.frames[0];
    if (frame::Status st = reader.open(bytes); !st.ok()) return;  // checked by the stream already
    const uint64_t commit_lsn = reader.header().commit_lsn;
    const uint32_t seq = reader.header().sequence;
    frame::MessageCursor cursor = reader.messages();
    frame::Message m;
    bool has_relation = false;
    std::vector<std::vector<uint32_t>> truncates;
    while (cursor.next(m)) {
      if (auto* r = std::get_if<frame::Relation>(&m)) {
        relations[ev.shard].update(*r);
        stats.relations.fetch_add(1);
        has_relation = true;
      } else if (auto* t = std::get_if<frame::Truncate>(&m)) {
        truncates.emplace_back(t->relids.begin(), t->relids.end());
      }
    }
    if (has_relation) {
      std::string why;
      if (!relation_stores[ev.shard].add(commit_lsn, seq, bytes, why)) {
        log(Level::kError, "apply_failed", {{"shard", shards[ev.shard].shard}, {"error", why}});
        fatal = true;
        return;
      }
    }
    for (const auto& relids : truncates) {
      stats.truncates.fetch_add(1);
      for (auto& [key, t] : tenants) {
        if (t->broken) continue;
        WriterStatus st = t->writer.apply_truncate(shards[ev.shard].shard, relations[ev.shard], relids, commit_lsn);
        if (!st.ok() && !failed(*t, st, "truncate")) return;
      }
      log(Level::kInfo, "truncate_applied",
          {{"shard", shards[ev.shard].shard}, {"commit_lsn", format_lsn(commit_lsn)},
           {"tables", std::to_string(relids.size())}, {"tenants", std::to_string(tenants.size())}});
    }
  }

  // A tenant's complete frame group.
  void apply_group(const ApplyEvent& ev) {
    if (!serves(ev.tenant)) {
      stats.groups_ignored.fetch_add(1);
      return;
    }
    Tenant* t = tenant(ev.tenant);
    if (t == nullptr) return;
    std::vector<std::span<const uint8_t>> spans(ev.frames.begin(), ev.frames.end());
    bool skipped = false;
    WriterStatus st = t->writer.apply_group(shards[ev.shard].shard, relations[ev.shard], spans, &skipped);
    if (!st.ok()) {
      failed(*t, st, "apply_group");
      return;
    }
    (skipped ? stats.groups_skipped : stats.groups_applied).fetch_add(1);
  }

  // Applies one event.
  void apply(const ApplyEvent& ev) {
    StreamPosition& sp = streams[ev.shard];
    switch (ev.kind) {
      case ApplyEvent::kManyTenants: apply_many(ev); break;
      case ApplyEvent::kGroup: apply_group(ev); break;
      case ApplyEvent::kPosition:
        sp.upstream = std::max(sp.upstream, ev.key);
        sp.upstream_time_us = ev.relay_time_us;
        break;
    }
    // A frame of key K: every transaction below K is complete; a KEEPALIVE at P: below P.
    sp.position = std::max(sp.position, ev.key);
  }

  // Publishes every tenant with pending rows, and tenants whose position moved when their
  // position flush is due (or `final`); then moves each shard's ack to the smallest position all
  // its tenants made durable. False on a fatal error.
  bool flush_all(bool final) {
    const auto now = Clock::now();
    const auto position_every = std::chrono::milliseconds(config.position_flush_interval_ms);
    stats.flush_cycles.fetch_add(1);
    for (auto& [key, t] : tenants) {
      if (t->broken) continue;
      TenantWriter& w = t->writer;
      const bool pending = w.has_pending();
      const bool due = final || now - t->last_position_flush >= position_every;
      bool moved = false;
      for (size_t s = 0; s < shards.size(); ++s) {
        const StreamPosition& sp = streams[s];
        if (sp.position > w.pending_position(shards[s].shard)) moved = true;
      }
      if (!pending && !(moved && due)) continue;
      for (size_t s = 0; s < shards.size(); ++s) {
        const StreamPosition& sp = streams[s];
        if (sp.position == 0) continue;
        w.advance(shards[s].shard, sp.position, 0, sp.upstream, sp.upstream_time_us);
      }
      const uint64_t generation = w.manifest().generation;
      if (WriterStatus st = w.flush(); !st.ok()) {
        if (!failed(*t, st, "flush")) return false;
        continue;
      }
      t->last_position_flush = now;
      if (w.manifest().generation != generation) stats.flushes.fetch_add(1);
      if (pending) {
        bool compacted = false;
        if (WriterStatus st = w.compact(false, &compacted); !st.ok()) {
          if (!failed(*t, st, "compact")) return false;
          continue;
        }
        if (compacted) stats.compactions.fetch_add(1);
      }
    }
    for (size_t s = 0; s < shards.size(); ++s) {
      uint64_t ack = streams[s].position;
      for (auto& [key, t] : tenants) {
        if (!t->broken) ack = std::min(ack, t->writer.applied(shards[s].shard));
      }
      uint64_t cur = shards[s].acked.load();
      if (ack > cur) shards[s].acked = ack;
    }
    return true;
  }
};

Applier::Applier(const ApplyConfig& config, std::deque<ShardState>& shards, EventQueue& queue)
    : impl_(std::make_unique<Impl>(config, shards, queue)) {}

Applier::~Applier() = default;

const ApplierStats& Applier::stats() const noexcept { return impl_->stats; }

bool Applier::open_existing() {
  Impl& s = *impl_;
  for (size_t i = 0; i < s.shards.size(); ++i) {
    std::string why;
    if (!s.relation_stores[i].open(s.config.data_dir, s.shards[i].shard, s.relations[i], why)) {
      log(Level::kError, "startup_failed", {{"shard", s.shards[i].shard}, {"error", why}});
      return false;
    }
  }
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(s.config.data_dir) / "tenants", ec)) {
    if (!e.is_directory()) continue;
    Manifest m;
    std::string why;
    if (!read_manifest(e.path(), m, why)) {
      log(Level::kWarning, "tenant_unreadable", {{"dir", e.path().string()}, {"error", why}});
      continue;
    }
    if (!s.serves(m.tenant)) continue;
    s.tenant(m.tenant);
    if (s.fatal) return false;
  }
  // Each shard starts at the smallest position its tenants have (0: the relay's registered ack,
  // which never passes a manifest); a new data_dir starts at the relay's current position.
  for (size_t i = 0; i < s.shards.size(); ++i) {
    uint64_t start = std::numeric_limits<uint64_t>::max();
    for (auto& [key, t] : s.tenants) {
      if (!t->broken) start = std::min(start, t->writer.applied(s.shards[i].shard));
    }
    if (start == std::numeric_limits<uint64_t>::max()) start = 0;
    s.shards[i].acked = start;
    s.streams[i].position = start;
    log(Level::kInfo, "shard_resume",
        {{"shard", s.shards[i].shard}, {"start", format_lsn(start)},
         {"tenants", std::to_string(s.tenants.size())},
         {"relations", std::to_string(s.relations[i].size())}});
  }
  return true;
}

bool Applier::run(const std::atomic<bool>& stop, std::atomic<bool>& done) {
  Impl& s = *impl_;
  const auto every = std::chrono::milliseconds(s.config.flush_interval_ms);
  auto next_flush = Clock::now() + every;
  ApplyEvent ev;
  for (;;) {
    const bool stopping = stop.load();
    bool quiet = stopping;
    if (stopping) {
      for (const ShardState& sh : s.shards) quiet = quiet && sh.quiet.load();
    }
    if (quiet) break;
    if (s.queue.pop(std::min(next_flush, Clock::now() + std::chrono::milliseconds(50)), ev)) {
      s.apply(ev);
      if (s.fatal) break;
    }
    if (Clock::now() >= next_flush) {
      if (!s.flush_all(false)) break;
      next_flush = Clock::now() + every;
    }
  }
  // The streams push nothing more: apply what is queued, flush everything, publish the acks.
  while (!s.fatal && s.queue.try_pop(ev)) s.apply(ev);
  if (!s.fatal) s.flush_all(true);
  s.queue.close();
  done = true;
  log(s.fatal ? Level::kError : Level::kInfo, "applier_stopped",
      {{"groups_applied", std::to_string(s.stats.groups_applied.load())},
       {"groups_skipped", std::to_string(s.stats.groups_skipped.load())},
       {"flushes", std::to_string(s.stats.flushes.load())}});
  return !s.fatal;
}

}  // namespace edgeshard::apply::daemon

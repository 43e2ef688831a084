// The applier thread: events -> tenant writers; periodic flushes and acks.
#include "edge_apply/daemon/applier.hpp"

#include "common/frame_reader.hpp"
#include "common/lsn.hpp"
#include "common/posix_file.hpp"
#include "edge_apply/daemon/compactor.hpp"
#include "edge_apply/daemon/copy_snapshot.hpp"
#include "edge_apply/daemon/initial_copy.hpp"
#include "edge_apply/daemon/relation_store.hpp"
#include "edge_apply/dir_name.hpp"
#include "edge_apply/manifest.hpp"
#include "edge_apply/relation_map.hpp"
#include "edge_apply/shard_position.hpp"
#include "edge_apply/tenant_replica.hpp"
#include "edge_apply/tenant_writer.hpp"
#include "walsender_fanout/relay/log_line.hpp"

#include <boost/intrusive/list.hpp>

#include <algorithm>
#include <chrono>
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <thread>
#include <variant>
#include <vector>

namespace edgeshard::apply::daemon {

namespace fs = std::filesystem;
using relay::Level;
using relay::log;
using Clock = std::chrono::steady_clock;

namespace {

// One tenant served here. Its writer is open while it is in the LRU list of open tenants; an
// idle tenant beyond max_open_tenants is closed (mappings, cache and descriptors released) and
// reopened by its next change.
struct Tenant : boost::intrusive::list_base_hook<> {
  std::string key;
  TenantWriter writer;
  // While a resync runs (a table rewritten on the primary): the replica being built beside the
  // published one, which readers keep reading (frozen) until adopt() switches them over.
  std::unique_ptr<TenantWriter> staging;
  bool open = false;
  bool broken = false;  // stopped applying: its replica needs a resync (initial copy)
  uint64_t copying = 0;  // bit i: waits for shard i's initial copy before it is published
  bool recopy = false;   // queued for the copy after the running one (ShardCopy::next)
  uint64_t rows_from = 0;  // while closed: bit i, it has rows from shard i (TRUNCATE reopens it)
  Clock::time_point last_position_flush{};

  // The writer changes go to: the staging replica during a resync, else the published one.
  TenantWriter& active() { return staging ? *staging : writer; }
};

// Open tenants, least recently used first.
using TenantLru = boost::intrusive::list<Tenant>;

// A shard's initial copy (see applier.hpp).
struct ShardCopy {
  enum State { kNone, kPlanned, kRunning, kActive, kDone };
  State state = kNone;
  bool all = false;                  // every tenant not replicated here; else `tenants`
  std::vector<std::string> tenants;  // canonical keys
  std::vector<std::string> next;     // resyncs asked for while this copy runs: the next copy's
  CopySnapshot snapshot;
  uint64_t end_lsn = 0;                          // L1
  RelationMap relations;                         // the tables as the copy's snapshot saw them
  std::vector<std::vector<uint8_t>> relation_frames;

  // Whether the copy covers tenant key (planned, running or filtering).
  bool covers(std::string_view key) const {
    if (state == kNone || state == kDone) return false;
    return all || std::find(tenants.begin(), tenants.end(), key) != tenants.end();
  }
};

// Bit of shard index i in Tenant::copying.
uint64_t shard_bit(size_t i) { return uint64_t{1} << i; }

// Writes `text` to path atomically and durably (temp, fsync, rename, fsync dir); false with why
// (and the failed call's errno in *err: ENOSPC for a full disk, the temp file then removed).
bool write_file_durably(const fs::path& path, const std::string& text, std::string& why, int* err = nullptr) {
  int unused = 0;
  int& e = err != nullptr ? *err : unused;
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    e = errno;
    why = "cannot create " + tmp.string() + ": " + std::strerror(e);
    return false;
  }
  const ssize_t n = ::write(fd, text.data(), text.size());
  bool ok = n == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  e = n >= 0 && n < static_cast<ssize_t>(text.size()) ? ENOSPC : errno;  // a short write: no room
  ::close(fd);
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    e = errno;
  }
  if (!ok) {
    why = "cannot write " + path.string() + ": " + std::strerror(e);
    ::unlink(tmp.c_str());
    return false;
  }
  if (fsync_directory(path.parent_path(), why)) return true;
  e = errno;
  return false;
}

// Backoff while writes fail for lack of space: 100 ms doubling to 10 s, jittered.
constexpr int64_t kDiskFullMinMs = 100;
constexpr int64_t kDiskFullMaxMs = 10000;

// Removes a tenant's directory so that no reader meets half of it: `head` first (a reader then
// finds no replica here, TenantReplica::load), then the rest; ec says why it failed.
void remove_tenant_dir(const fs::path& dir, std::error_code& ec) {
  fs::remove(dir / "head", ec);
  ec.clear();
  fs::remove_all(dir, ec);
}

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
    case WriterStatus::kException: return "exception";
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
  TenantLru lru;  // the open ones (declared after tenants: unlinked before they go)
  std::vector<RelationMap> relations;
  std::vector<RelationStore> relation_stores;
  std::vector<StreamPosition> streams;
  std::vector<ShardCopy> copies;
  std::vector<std::unique_ptr<ShardPositionWriter>> shard_positions;  // one per shard
  Compactor compactor;
  int data_dir_fd = -1;  // for syncfs()

  ~Impl() {
    if (data_dir_fd >= 0) ::close(data_dir_fd);
  }
  std::set<std::string> recopy;  // tenants whose copy never published, removed at start-up
  std::vector<Manifest> closed_start;  // manifests of the tenants left closed at start-up
  bool fatal = false;
  bool disk_full = false;           // the last attempt ran out of space: back off, then retry it
  int disk_full_errno = 0;          // its first failure: errno, where, what
  std::string disk_full_during;
  std::string disk_full_detail;
  bool manifests_unsynced = false;  // a round abandoned after some manifests were replaced
  std::mt19937_64 rng{std::random_device{}()};
  frame::Reader reader;

  Impl(const ApplyConfig& c, std::deque<ShardState>& s, EventQueue& q)
      : config(c), shards(s), queue(q), relations(s.size()), relation_stores(s.size()), streams(s.size()),
        copies(s.size()) {
    const auto list = c.tenant_list();
    all_tenants = list.empty();
    served.insert(list.begin(), list.end());
    writer_options.compact_deltas = static_cast<size_t>(c.compact_deltas);
    writer_options.compress = c.compress;
    writer_options.pending_memory_bytes = static_cast<size_t>(c.tenant_memory_bytes);
  }

  // Whether this edge serves tenant key.
  bool serves(std::string_view key) const { return all_tenants || served.count(std::string(key)) > 0; }

  // Records a write that failed for lack of space (the first of an attempt is the one logged);
  // returns false, for the callers' "stop this attempt" paths.
  bool out_of_space(const std::string& during, int err, const std::string& detail) {
    stats.disk_full_errors.fetch_add(1);
    if (!disk_full) {
      disk_full = true;
      disk_full_errno = err;
      disk_full_during = during;
      disk_full_detail = detail;
    }
    return false;
  }

  // Handles a writer failure of tenant t: a full disk is waited out (the attempt is given up
  // and retried later, nothing is lost), other I/O errors are fatal (the daemon exits; a restart
  // resumes from the manifests), anything else marks the tenant broken. Returns false if the
  // caller must stop (fatal, or out of space).
  bool failed(Tenant& t, const WriterStatus& st, const char* what) {
    if (st.out_of_space()) return out_of_space(std::string(what) + " of tenant " + t.key, st.sys_errno, st.message);
    if (st.kind == WriterStatus::kIo || st.kind == WriterStatus::kFailed) {
      log(Level::kError, "apply_failed",
          {{"tenant", t.key}, {"during", what}, {"kind", kind_name(st.kind)}, {"error", st.message},
           {"action", "stopping: a restart resumes from the manifests"}});
      fatal = true;
      return false;
    }
    // Readers must stop taking the shard position files as this tenant's freshness: the marker
    // comes first (on a full disk the event is applied again, and so fails and marks again).
    std::string why;
    int err = 0;
    if (!write_file_durably(tenant_dir(config.data_dir, t.key) / "broken", std::string(what) + ": " + st.message + "\n", why, &err)) {
      if (posix::is_out_of_space(err)) return out_of_space("broken marker of tenant " + t.key, err, why);
      log(Level::kError, "apply_failed", {{"tenant", t.key}, {"error", why}, {"action", "stopping"}});
      fatal = true;
      return false;
    }
    t.broken = true;
    stats.broken_tenants.fetch_add(1);
    if (t.staging) {
      const fs::path dir = t.staging->dir();
      t.staging.reset();
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
    if (t.copying != 0) stats.tenants_copying.fetch_sub(1);
    t.copying = 0;
    log(Level::kError, "tenant_broken",
        {{"tenant", t.key}, {"during", what}, {"kind", kind_name(st.kind)}, {"error", st.message},
         {"action", "no longer applied or acked; a restart copies it again when the shard has a primary set"}});
    return true;
  }

  // The last line of defence around one tenant's work (the writer's calls return statuses
  // already): an exception out of fn breaks that tenant only, unless it is the machine's (out of
  // memory: fatal, as an I/O error is).
  template <typename Fn>
  void for_tenant(std::string_view key, const char* what, Fn&& fn) {
    try {
      fn();
    } catch (const std::bad_alloc&) {
      log(Level::kError, "apply_failed",
          {{"tenant", std::string(key)}, {"during", what}, {"error", "out of memory"},
           {"action", "stopping: a restart resumes from the manifests"}});
      fatal = true;
    } catch (const std::exception& e) {
      break_tenant(key, what, e.what());
    } catch (...) {
      break_tenant(key, what, "unknown exception");
    }
  }

  // Marks tenant key broken after an exception in its work (failed(): marker, counter, log).
  void break_tenant(std::string_view key, const char* what, const char* text) {
    auto it = tenants.find(key);
    if (it == tenants.end()) {
      auto t = std::make_unique<Tenant>();
      t->key = std::string(key);
      it = tenants.emplace(t->key, std::move(t)).first;
    }
    if (it->second->broken) return;
    // The marker needs the directory (the exception may have come before the writer made it).
    std::error_code ec;
    fs::create_directories(tenant_dir(config.data_dir, key), ec);
    failed(*it->second, {WriterStatus::kException, std::string("unexpected exception: ") + text}, what);
  }

  // Opens tenant t's writer again (closed by the LRU cap); false when that failed.
  bool reopen(Tenant& t) {
    TenantWriter::Options o = writer_options;
    o.start_published = t.copying == 0;  // a copy emptied by a full disk starts unpublished again
    WriterStatus st = t.writer.open(config.data_dir, t.key, o);
    if (!st.ok()) {
      failed(t, st, "reopen");
      return false;
    }
    t.open = true;
    t.rows_from = 0;
    t.last_position_flush = Clock::now();
    lru.push_back(t);
    stats.tenants.fetch_add(1);
    stats.tenant_reopens.fetch_add(1);
    return true;
  }

  // Closes the least recently used idle tenants until at most max_open_tenants are open (tenants
  // with pending rows, a compaction out or a copy to publish stay open).
  void close_idle_tenants() {
    const auto cap = static_cast<size_t>(config.max_open_tenants);
    for (auto it = lru.begin(); it != lru.end() && lru.size() > cap;) {
      Tenant& t = *it;
      if (t.broken || t.copying != 0 || t.staging || !t.writer.idle()) {
        ++it;
        continue;
      }
      for (size_t i = 0; i < shards.size(); ++i) {
        if (t.writer.has_rows_from(shards[i].shard)) t.rows_from |= shard_bit(i);
      }
      it = lru.erase(it);
      t.writer.close();
      t.open = false;
      stats.tenants.fetch_sub(1);
      stats.tenant_closes.fetch_add(1);
    }
  }

  // The tenant's writer, opened on first use (or again after the LRU cap closed it); nullptr
  // when broken or on a fatal error. A tenant new to this edge that a shard copy covers starts
  // unpublished, waiting for those copies.
  Tenant* tenant(std::string_view key) {
    auto it = tenants.find(key);
    if (it != tenants.end()) {
      Tenant& t = *it->second;
      if (t.broken) return nullptr;
      if (!t.open) return reopen(t) ? &t : nullptr;
      lru.erase(lru.iterator_to(t));
      lru.push_back(t);
      return &t;
    }
    if (it == tenants.end()) {
      auto t = std::make_unique<Tenant>();
      t->key = std::string(key);
      t->last_position_flush = Clock::now();
      TenantWriter::Options options = writer_options;
      std::error_code ec;
      const bool exists = fs::exists(tenant_dir(config.data_dir, key) / "manifest", ec);
      for (size_t i = 0; i < copies.size() && !exists; ++i) {
        if (copies[i].covers(key)) t->copying |= shard_bit(i);
      }
      options.start_published = t->copying == 0;
      if (t->copying != 0) stats.tenants_copying.fetch_add(1);
      WriterStatus st = t->writer.open(config.data_dir, key, options);
      it = tenants.emplace(t->key, std::move(t)).first;
      if (!st.ok() && !failed(*it->second, st, "open") && disk_full) {
        // Nothing kept: the change that wanted the tenant comes again once there is room.
        if (it->second->copying != 0) stats.tenants_copying.fetch_sub(1);
        tenants.erase(it);
        return nullptr;
      }
      if (st.ok()) {
        it->second->open = true;
        lru.push_back(*it->second);
        stats.tenants.fetch_add(1);
        log(Level::kInfo, "tenant_opened",
            {{"tenant", std::string(key)}, {"dir", it->second->writer.dir().string()},
             {"generation", std::to_string(it->second->writer.manifest().generation)}});
      }
    }
    return it->second->broken ? nullptr : it->second.get();
  }

  // Tenant t, open, when a change of the whole shard i may concern it: not broken, and open or
  // holding rows from shard i (then opened again); nullptr otherwise (or on a fatal error).
  Tenant* shard_tenant(Tenant& t, size_t i) {
    if (t.broken) return nullptr;
    if (t.open) return &t;
    if ((t.rows_from & shard_bit(i)) == 0) return nullptr;
    return reopen(t) ? &t : nullptr;
  }

  // Whether open tenant t holds rows from shard i (published, pending or being copied): only
  // those follow shard i's descriptions of a table and its rewrites.
  bool holds_rows_from(const Tenant& t, size_t i) const {
    return t.writer.has_rows_from(shards[i].shard) || (t.staging && t.staging->has_rows_from(shards[i].shard));
  }

  // Shard i's transaction commit_lsn rewrote table relid (REWRITE): the rows this edge holds of
  // it are no longer the primary's. Every tenant holding rows of the table from shard i is
  // resynchronised (begin_resync); without a primary to copy from, it stops applying (broken).
  // False on a fatal error.
  bool resync_table(size_t i, uint32_t relid, uint64_t commit_lsn, uint32_t xid) {
    const auto rel = relations[i].find(relid);
    const std::string table = rel != nullptr ? rel->qualified() : "relid " + std::to_string(relid);
    const std::string why = table + " was rewritten on shard " + shards[i].shard + " at " +
                            format_lsn(commit_lsn) + " (an ALTER TABLE that rewrites its rows)";
    size_t affected = 0;
    for (auto& [key, t] : tenants) {
      // A copy that has the rewrite (or whose snapshot comes later) needs nothing more.
      if (in_copy(*t, i, commit_lsn, xid)) continue;
      Tenant* tt = shard_tenant(*t, i);
      if (tt == nullptr) {
        if (fatal || disk_full) return false;
        continue;
      }
      TenantWriter& w = tt->active();
      if ((tt->copying & shard_bit(i)) == 0) {
        if (!holds_rows_from(*tt, i) || w.pending_position(shards[i].shard) > commit_lsn || !w.has_table(table)) {
          continue;
        }
      }
      // Else a copy whose snapshot missed the rewrite: copied again whatever it gave (a table
      // rewritten after a snapshot reads as empty to it: rewrites are not MVCC-safe).
      ++affected;
      if (!begin_resync(*tt, i, why)) return false;
    }
    log(Level::kWarning, "table_rewritten",
        {{"shard", shards[i].shard}, {"table", table}, {"commit_lsn", format_lsn(commit_lsn)},
         {"tenants", std::to_string(affected)},
         {"action", "copying the tenants again from the primary; readers keep the previous state meanwhile"}});
    return true;
  }

  // Path of the marker saying tenant key's published replica is being resynchronised.
  fs::path resync_marker(std::string_view key) const { return tenant_dir(config.data_dir, key) / "resync"; }

  // Starts resynchronising tenant t from shard i's primary: a staging replica beside the
  // published one receives a fresh copy and then the tenant's changes; the next flush round after
  // the stream passes the copy's end adopts it (readers switch over in one step). Meanwhile the
  // published replica stays as it was, marked `resync` (the shard position files no longer speak
  // for it). False on a fatal error.
  bool begin_resync(Tenant& t, size_t i, const std::string& reason) {
    // The staging replica is built from shard i alone: a tenant that also has rows from another
    // shard is copied again whole at the next start instead (broken until then).
    for (size_t j = 0; j < shards.size(); ++j) {
      if (j != i && t.writer.has_rows_from(shards[j].shard)) {
        failed(t, {WriterStatus::kBadMessage, reason + "; the tenant also has rows from shard " + shards[j].shard +
                                                  ": a restart copies it again from every shard"},
               "resync");
        return !fatal && !disk_full;
      }
    }
    if (config.primary_of(shards[i].shard).empty()) {
      failed(t, {WriterStatus::kBadMessage, reason + "; no primary is set for shard " + shards[i].shard + " to copy it from"},
             "resync");
      return !fatal && !disk_full;
    }
    std::string why;
    if (int err = 0; !write_file_durably(resync_marker(t.key), reason + "\n", why, &err)) {
      if (posix::is_out_of_space(err)) return out_of_space("resync marker of tenant " + t.key, err, why);
      log(Level::kError, "apply_failed", {{"tenant", t.key}, {"error", why}, {"action", "stopping"}});
      fatal = true;
      return false;
    }
    if (!t.staging) {
      if (!fresh_staging(t)) return !fatal && !disk_full;
      t.writer.drop_pending();  // the copy has those changes; readers keep what is published
      stats.resyncs.fetch_add(1);
    }
    if (t.copying == 0) stats.tenants_copying.fetch_add(1);
    t.copying |= shard_bit(i);
    ShardCopy& c = copies[i];
    if (c.state == ShardCopy::kNone || c.state == ShardCopy::kDone) {
      c = ShardCopy{};
      c.state = ShardCopy::kPlanned;
      c.tenants = {t.key};
    } else if (c.state == ShardCopy::kPlanned) {
      if (!c.all && std::find(c.tenants.begin(), c.tenants.end(), t.key) == c.tenants.end()) c.tenants.push_back(t.key);
    } else if (!t.recopy) {
      c.next.push_back(t.key);  // a copy is under way: the next one takes it
      t.recopy = true;          // and nothing is applied to it until then
    }
    log(Level::kWarning, "tenant_resync",
        {{"tenant", t.key}, {"shard", shards[i].shard}, {"reason", reason},
         {"action", "copying it again; readers keep its previous state until the copy is published"}});
    return true;
  }

  // Gives tenant t a new, empty staging replica (removing one left by an earlier copy); false
  // when that failed (the tenant is then broken).
  bool fresh_staging(Tenant& t) {
    TenantWriter::Options o = writer_options;
    o.start_published = false;
    o.subdir = "staging";
    o.first_sequence = t.writer.next_sequence() + 1000;  // above anything the live one writes meanwhile
    t.staging.reset();
    std::error_code ec;
    fs::remove_all(t.writer.dir() / o.subdir, ec);
    auto staging = std::make_unique<TenantWriter>();
    if (WriterStatus st = staging->open(config.data_dir, t.key, o); !st.ok()) {
      failed(t, st, "resync");
      return false;
    }
    t.staging = std::move(staging);
    return true;
  }

  // Adopts the staging replica of every tenant whose resync copy is complete (after a flush
  // round made it durable); false on a fatal error.
  bool adopt_resynced() {
    for (auto& [key, t] : tenants) {
      if (!t->staging || t->copying != 0 || t->broken || !t->writer.idle()) continue;
      if (WriterStatus st = t->writer.adopt(*t->staging); !st.ok()) {
        if (!failed(*t, st, "resync adopt")) return false;
        continue;
      }
      t->staging.reset();
      std::error_code ec;
      fs::remove(resync_marker(key), ec);
      std::string why;
      (void)fsync_directory(t->writer.dir(), why);  // a marker left by a crash only redoes the resync
      stats.resyncs_done.fetch_add(1);
      log(Level::kInfo, "tenant_resynced",
          {{"tenant", key}, {"generation", std::to_string(t->writer.manifest().generation)},
           {"files", std::to_string(t->writer.manifest().files.size())}});
    }
    return true;
  }

  // A MANY_TENANTS frame: RELATIONs into the shard's map (kept on disk first) and, when one
  // describes a table anew (ALTER TABLE), to every tenant of the shard that has the table, so
  // that readers render all its rows under the new description; REWRITE: the tenants holding
  // rows of the table take them again from the primary; TRUNCATE applied to every tenant open
  // here (tenants never opened hold no rows to truncate).
  void apply_many(const ApplyEvent& ev) {
    const auto& bytes = ev.frames[0];
    if (frame::Status st = reader.open(bytes); !st.ok()) return;  // checked by the stream already
    const uint64_t commit_lsn = reader.header().commit_lsn;
    const uint32_t seq = reader.header().sequence;
    const uint32_t xid = reader.header().xid;
    const StreamPoint at{commit_lsn, reader.header().first_lsn};
    frame::MessageCursor cursor = reader.messages();
    frame::Message m;
    bool has_relation = false;
    std::vector<std::vector<uint32_t>> truncates;
    std::vector<std::shared_ptr<const RelationInfo>> reshaped;
    std::vector<uint32_t> rewritten;
    while (cursor.next(m)) {
      if (auto* r = std::get_if<frame::Relation>(&m)) {
        // Compared with the description in effect before this point (not the newest: the frame
        // may be received again after a restart, its description already stored).
        const auto before = relations[ev.shard].find_before(r->relid, at);
        relations[ev.shard].update(*r, at);
        const auto now = relations[ev.shard].find(r->relid, at);
        if (before != nullptr && !before->same_shape(*now)) reshaped.push_back(now);
        stats.relations.fetch_add(1);
        has_relation = true;
      } else if (auto* t = std::get_if<frame::Truncate>(&m)) {
        truncates.emplace_back(t->relids.begin(), t->relids.end());
      } else if (auto* w = std::get_if<frame::Rewrite>(&m)) {
        rewritten.push_back(w->relid);
      }
    }
    if (has_relation) {
      std::string why;
      if (!relation_stores[ev.shard].add(commit_lsn, seq, bytes, why)) {
        if (const int err = relation_stores[ev.shard].last_errno(); posix::is_out_of_space(err)) {
          out_of_space("relations of shard " + shards[ev.shard].shard, err, why);  // applied again
          return;
        }
        log(Level::kError, "apply_failed", {{"shard", shards[ev.shard].shard}, {"error", why}});
        fatal = true;
        return;
      }
    }
    for (uint32_t relid : rewritten) {
      if (!resync_table(ev.shard, relid, commit_lsn, xid)) return;
    }
    for (const auto& rel : reshaped) {
      size_t changed_tenants = 0;
      for (auto& [key, t] : tenants) {
        if (in_copy(*t, ev.shard, commit_lsn, xid)) continue;  // its copy has the new columns
        Tenant* tt = shard_tenant(*t, ev.shard);
        if (tt == nullptr) {
          if (fatal || disk_full) return;  // out of space: the event is applied again
          continue;
        }
        if (!holds_rows_from(*tt, ev.shard)) continue;  // another shard's tenant: its own columns
        bool changed = false;
        WriterStatus st = tt->active().apply_relation(shards[ev.shard].shard, rel, commit_lsn, &changed);
        if (!st.ok() && !failed(*tt, st, "relation")) return;
        changed_tenants += changed ? 1 : 0;
      }
      log(Level::kInfo, "relation_changed",
          {{"shard", shards[ev.shard].shard}, {"table", rel->qualified()}, {"commit_lsn", format_lsn(commit_lsn)},
           {"columns", std::to_string(rel->columns.size())}, {"tenants", std::to_string(changed_tenants)}});
    }
    for (const auto& relids : truncates) {
      stats.truncates.fetch_add(1);
      for (auto& [key, t] : tenants) {
        if (in_copy(*t, ev.shard, commit_lsn, xid)) continue;
        if (shard_tenant(*t, ev.shard) == nullptr) {
          if (fatal || disk_full) return;  // out of space: the event is applied again
          continue;
        }
        WriterStatus st = t->active().apply_truncate(shards[ev.shard].shard, relations[ev.shard], relids, commit_lsn);
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
    // A spilled group is read back from its file one frame at a time.
    std::vector<std::span<const uint8_t>> spans(ev.frames.begin(), ev.frames.end());
    MemoryFrameSource in_memory(spans);
    std::optional<FileFrameSource> on_disk;
    if (ev.spill) on_disk.emplace(ev.spill->source());
    FrameSource& source = on_disk ? static_cast<FrameSource&>(*on_disk) : in_memory;
    if (t->copying & shard_bit(ev.shard)) {
      frame::Header h;
      std::span<const uint8_t> first;
      source.rewind();
      if (source.next(first) && frame::parse_header(first, h).ok() && in_copy(*t, ev.shard, ev.key, h.xid)) {
        stats.groups_in_snapshot.fetch_add(1);
        return;
      }
    }
    bool skipped = false;
    TenantWriter& w = t->active();
    const uint64_t runs = w.spill_runs_written();
    WriterStatus st = w.apply_group(shards[ev.shard].shard, relations[ev.shard], source, &skipped);
    stats.spill_runs.fetch_add(w.spill_runs_written() - runs);
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
      case ApplyEvent::kGroup: for_tenant(ev.tenant, "apply_group", [&] { apply_group(ev); }); break;
      case ApplyEvent::kPosition:
        sp.upstream = std::max(sp.upstream, ev.key);
        sp.upstream_time_us = ev.relay_time_us;
        break;
    }
    // Out of space: the event did not (all) apply; it is applied again, its position moves then.
    if (disk_full || fatal) return;
    // A frame of key K: every transaction below K is complete; a KEEPALIVE at P: below P.
    sp.position = std::max(sp.position, ev.key);
    ShardCopy& c = copies[ev.shard];
    if (c.state == ShardCopy::kActive && sp.position >= c.end_lsn) finish_copy(ev.shard);
  }

  // Whether the transaction (commit LSN key, id xid) of shard i is already in tenant t's copy:
  // t waits for shard i's copy, and either the copy's snapshot shows the transaction committed,
  // or the copy has not taken its snapshot yet (planned, or the next one: everything received
  // so far committed before it).
  bool in_copy(const Tenant& t, size_t i, uint64_t key, uint32_t xid) const {
    const ShardCopy& c = copies[i];
    if ((t.copying & shard_bit(i)) == 0) return false;
    if (t.recopy || c.state == ShardCopy::kPlanned) return true;
    return c.state == ShardCopy::kActive && key < c.end_lsn && c.snapshot.visible(xid);
  }

  // Records every shard's stream position in w (flushed with its next manifest).
  void advance_to_streams(TenantWriter& w) {
    for (size_t s = 0; s < shards.size(); ++s) {
      const StreamPosition& sp = streams[s];
      if (sp.position == 0) continue;
      w.advance(shards[s].shard, sp.position, 0, sp.upstream, sp.upstream_time_us);
    }
  }

  // Shard i's stream passed its copy's end: every transaction of the snapshot was delivered, so
  // the copied tenants equal the primary as of the stream's position; publish those that wait
  // for no other copy.
  void finish_copy(size_t i) {
    ShardCopy& c = copies[i];
    size_t published = 0;
    for (auto& [key, t] : tenants) {
      if (t->broken || !t->open || (t->copying & shard_bit(i)) == 0) continue;
      // Asked to resync while this copy ran (a table rewritten after its snapshot): it waits for
      // the next copy.
      if (t->recopy) continue;
      if (t->copying != shard_bit(i)) {
        t->copying &= ~shard_bit(i);  // still waits for another shard's copy
        continue;
      }
      advance_to_streams(t->active());
      if (t->staging) {  // a resync: adopted after the next flush round (adopt_resynced)
        t->copying = 0;
        stats.tenants_copying.fetch_sub(1);
        continue;
      }
      t->writer.set_published(true);
      if (WriterStatus st = t->writer.flush(); !st.ok()) {
        if (!failed(*t, st, "publish")) return;  // out of space: finished when applied again
        continue;
      }
      t->copying = 0;
      stats.tenants_copying.fetch_sub(1);
      ++published;
    }
    c.state = ShardCopy::kDone;
    log(Level::kInfo, "copy_published",
        {{"shard", shards[i].shard}, {"position", format_lsn(streams[i].position)},
         {"end_lsn", format_lsn(c.end_lsn)}, {"tenants_published", std::to_string(published)}});
    c.relations = RelationMap();
    c.relation_frames.clear();
    if (!c.next.empty()) {  // resyncs asked for while it ran
      c.state = ShardCopy::kPlanned;
      c.all = false;
      c.tenants = std::move(c.next);
      c.next.clear();
    }
  }

  // Makes everything written under data_dir durable (syncfs: one call for all the files of a
  // round); false (fatal, logged) on an error. With files_only (nothing written is listed by a
  // manifest yet) a lack of space is waited out instead: the files are removed and written again.
  bool sync_data_dir(const char* what, bool files_only = false) {
    if (::syncfs(data_dir_fd) != 0) {
      if (files_only && posix::is_out_of_space(errno)) {
        return out_of_space(std::string("sync of ") + what, errno, std::strerror(errno));
      }
      log(Level::kError, "apply_failed",
          {{"during", std::string("sync of ") + what}, {"error", std::strerror(errno)},
           {"action", "stopping: a restart resumes from the manifests"}});
      fatal = true;
      return false;
    }
    return true;
  }

  // Installs the compactions the compaction thread finished (new base, manifest, old files
  // removed); false on a fatal error.
  bool install_compactions() {
    std::vector<Compactor::Job> finished;
    compactor.take_finished(finished);
    for (Compactor::Job& job : finished) {
      auto it = tenants.find(job.first);
      if (it == tenants.end() || it->second->broken || !it->second->open) continue;  // dropped
      Tenant& t = *it->second;
      bool compacted = false;
      if (WriterStatus st = t.writer.finish_compaction(std::move(job.second), &compacted); !st.ok()) {
        if (st.out_of_space()) {
          // Nothing changed (the merged base is removed): a later flush starts another one.
          stats.disk_full_errors.fetch_add(1);
          log(Level::kWarning, "compaction_deferred",
              {{"tenant", t.key}, {"error", std::strerror(st.sys_errno)}, {"detail", st.message}});
          continue;
        }
        if (!failed(t, st, "compact")) return false;
        continue;
      }
      if (compacted) stats.compactions.fetch_add(1);
    }
    // A merge's buffers were freed on the compaction thread (its own malloc arena); at most once
    // a second (many tenants compact while catching up).
    if (!finished.empty()) give_back_memory(Clock::now() - last_trim >= std::chrono::seconds(1));
    return true;
  }

  // Path of the marker saying shard i's copy of every tenant completed (`tenants` = all).
  fs::path copied_marker(size_t i) const {
    return shard_file_path(config.data_dir, shards[i].shard, ".copied");
  }

  // run_copy(); on a full disk the copy is undone (undo_copy) and planned again: false then,
  // with disk_full set, for the caller to wait for space (ride_out_disk_full) and copy again.
  bool copy(size_t i, const std::atomic<bool>& stop) {
    const bool ok = run_copy(i, stop);
    if (disk_full && !fatal) {
      log(Level::kWarning, "copy_abandoned",
          {{"shard", shards[i].shard}, {"error", std::strerror(disk_full_errno)}, {"detail", disk_full_detail},
           {"action", "copying again from a new snapshot once there is space"}});
      undo_copy(i);
      return false;
    }
    return ok && !fatal;
  }

  // Forgets what shard i's copy wrote so far and plans it again: its new tenants' unpublished
  // replicas are emptied (closed and removed: reopened unpublished by their next use), its
  // resyncing tenants' staging replicas are started over by the next attempt (run_copy).
  void undo_copy(size_t i) {
    for (auto& [key, t] : tenants) {
      if (t->broken || (t->copying & shard_bit(i)) == 0 || t->staging || !t->open) continue;
      lru.erase(lru.iterator_to(*t));
      t->writer.close();
      t->open = false;
      stats.tenants.fetch_sub(1);
      std::error_code ec;
      remove_tenant_dir(tenant_dir(config.data_dir, key), ec);
    }
    ShardCopy& c = copies[i];
    c.state = ShardCopy::kPlanned;
    c.snapshot = CopySnapshot{};
    c.end_lsn = 0;
    c.relations = RelationMap();
    c.relation_frames.clear();
  }

  // Runs the planned copies; a full disk is waited out and the copy made again. False when the
  // applier must stop (fatal, or stopped while waiting).
  bool copy_planned(const std::atomic<bool>& stop) {
    for (size_t i = 0; i < copies.size() && !fatal && !stop.load(); ++i) {
      if (copies[i].state != ShardCopy::kPlanned) continue;
      if (!copy(i, stop) && disk_full && !ride_out_disk_full(stop, [&] { return copy(i, stop); })) return false;
    }
    return !fatal;
  }

  // Runs shard i's planned copy; false on failure (logged; the daemon stops).
  bool run_copy(size_t i, const std::atomic<bool>& stop) {
    ShardCopy& c = copies[i];
    const std::string& shard = shards[i].shard;
    // The stream must have its start before the snapshot is taken: every transaction the
    // snapshot misses then reaches the queue.
    while (shards[i].sessions.load() == 0) {
      if (stop.load()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // New tenants a copy undone by a full disk emptied (undo_copy) get their unpublished replica
    // again, so that those without a row are published empty like the others.
    for (auto& [key, t] : tenants) {
      if (!t->broken && (t->copying & shard_bit(i)) != 0 && !t->open && !reopen(*t) && (fatal || disk_full)) {
        return false;
      }
    }
    c.state = ShardCopy::kRunning;
    // A tenant copied again (resync) starts from an empty staging replica: what an earlier copy
    // gave it may be incomplete.
    for (const std::string& key : c.tenants) {
      auto it = tenants.find(key);
      if (it == tenants.end()) continue;
      it->second->recopy = false;
      if (it->second->staging && !it->second->broken && !fresh_staging(*it->second)) {
        if (fatal) return false;
      }
    }
    log(Level::kInfo, "copy_started",
        {{"shard", shard}, {"tenants", c.all ? std::string("all") : std::to_string(c.tenants.size())}});
    const auto began = Clock::now();
    std::set<Tenant*> with_rows;  // tenants the copy gave rows
    CopySink sink;
    sink.snapshot = [&](const CopySnapshot& snap, std::string&) {
      c.snapshot = snap;
      return true;
    };
    sink.relation = [&](std::span<const uint8_t> bytes, std::string& why) {
      frame::Reader r;
      if (frame::Status st = r.open(bytes); !st.ok()) {
        why = std::string("copy relation frame: ") + st.message;
        return false;
      }
      frame::MessageCursor cursor = r.messages();
      frame::Message m;
      while (cursor.next(m)) {
        if (auto* rel = std::get_if<frame::Relation>(&m)) c.relations.update(*rel);
      }
      c.relation_frames.emplace_back(bytes.begin(), bytes.end());
      return true;
    };
    sink.rows = [&](std::string_view key, std::span<const std::vector<uint8_t>> frames, std::string& why) {
      if (!serves(key)) return true;
      if (auto it = tenants.find(key); it != tenants.end() && (it->second->copying & shard_bit(i)) == 0) {
        return true;  // replicated here already (and maybe closed: left so)
      }
      for_tenant(key, "copy", [&] {
        Tenant* t = tenant(key);
        if (fatal || disk_full || t == nullptr || (t->copying & shard_bit(i)) == 0) return;  // replicated here already
        with_rows.insert(t);
        std::vector<std::span<const uint8_t>> spans(frames.begin(), frames.end());
        if (WriterStatus st = t->active().apply_copy(c.relations, spans); !st.ok()) {
          failed(*t, st, "copy");
          if (fatal || disk_full) why = st.message;
        }
      });
      if (disk_full && why.empty()) why = disk_full_detail;
      if (fatal && why.empty()) why = "cannot open tenant " + std::string(key);
      return !fatal && !disk_full;
    };
    CopyOutcome outcome;
    std::string why;
    const bool ok = copy_shard(config.primary_of(shard), c.all ? std::vector<std::string>{} : c.tenants,
                               stop, sink, outcome, why);
    stats.copy_rows.fetch_add(outcome.rows);
    stats.copy_bytes.fetch_add(outcome.bytes);
    if (!ok) {
      if (disk_full) return false;  // undone and made again once there is space (copy())
      log(Level::kError, "copy_failed",
          {{"shard", shard}, {"error", why},
           {"action", "stopping: a restart removes the unpublished tenants and copies them again"}});
      fatal = true;
      return false;
    }
    c.end_lsn = outcome.end_lsn;
    // Tables the stream described before this edge started: the copy's description stands in.
    for (const auto& bytes : c.relation_frames) {
      frame::Reader r;
      if (!r.open(bytes).ok()) continue;
      frame::MessageCursor cursor = r.messages();
      frame::Message m;
      bool missing = false;
      while (cursor.next(m)) {
        if (auto* rel = std::get_if<frame::Relation>(&m)) {
          if (relations[i].find(rel->relid) == nullptr) {
            relations[i].update(*rel);
            missing = true;
          }
        }
      }
      if (missing && !relation_stores[i].add_copied(bytes, why)) {
        log(Level::kError, "copy_failed", {{"shard", shard}, {"error", why}});
        fatal = true;
        return false;
      }
    }
    // Tenants with rows from this shard: the copy is their newest "commit" from it (its snapshot
    // time), which also marks the shard as theirs (TRUNCATE applies to tenants with rows from
    // the shard it ran on).
    for (Tenant* t : with_rows) {
      if (!t->broken) t->active().advance(shard, 0, outcome.snapshot_time_us, 0, 0);
    }
    // The copied rows become durable (unpublished) before the copy counts as done.
    size_t copied_tenants = 0;
    for (auto& [key, t] : tenants) {
      if (t->broken || !t->open || (t->copying & shard_bit(i)) == 0) continue;
      ++copied_tenants;
      if (WriterStatus st = t->active().flush(); !st.ok() && !failed(*t, st, "copy flush")) return false;
    }
    if (int err = 0; c.all && !write_file_durably(copied_marker(i),
                                                  "snapshot " + c.snapshot.text() + "\nend_lsn " + format_lsn(c.end_lsn) + "\n",
                                                  why, &err)) {
      if (posix::is_out_of_space(err)) return out_of_space("copy of shard " + shard, err, why);
      log(Level::kError, "copy_failed", {{"shard", shard}, {"error", why}});
      fatal = true;
      return false;
    }
    c.state = ShardCopy::kActive;
    stats.copies_done.fetch_add(1);
    const double secs = std::chrono::duration<double>(Clock::now() - began).count();
    log(Level::kInfo, "copy_done",
        {{"shard", shard}, {"tenants", std::to_string(copied_tenants)}, {"tables", std::to_string(outcome.tables)},
         {"rows", std::to_string(outcome.rows)}, {"bytes", std::to_string(outcome.bytes)},
         {"seconds", std::to_string(secs)}, {"snapshot", c.snapshot.text()}, {"end_lsn", format_lsn(c.end_lsn)}});
    return true;
  }

  // Gives up a flush round that ran out of space (or failed): staged deltas are removed, so the
  // rows stay pending for the next round; manifests already replaced (published) are synced by
  // the next round before any ack. Returns false.
  bool abandon_round(const std::vector<Tenant*>& round, bool published_some) {
    for (Tenant* t : round) t->active().abandon_flush();
    manifests_unsynced = manifests_unsynced || published_some;
    return false;
  }

  // After an attempt that ran out of space: backs off (one log line per step, with the OS's
  // words), then runs attempt again, until it succeeds; false when stop came first or a fatal
  // error ended it. The applier takes no other event meanwhile.
  bool ride_out_disk_full(const std::atomic<bool>& stop, const std::function<bool()>& attempt) {
    int64_t delay_ms = 0;
    while (disk_full && !fatal) {
      delay_ms = delay_ms == 0 ? kDiskFullMinMs : std::min(delay_ms * 2, kDiskFullMaxMs);
      std::uniform_int_distribution<int64_t> jitter(delay_ms / 2, delay_ms + delay_ms / 2);
      const int64_t wait_ms = jitter(rng);
      stats.disk_full = 1;
      log(Level::kWarning, "disk_full",
          {{"error", std::strerror(disk_full_errno)}, {"during", disk_full_during}, {"detail", disk_full_detail},
           {"retry_in_ms", std::to_string(wait_ms)},
           {"action", "keeping the published replicas and the acks, retrying"}});
      const auto until = Clock::now() + std::chrono::milliseconds(wait_ms);
      while (Clock::now() < until) {
        if (stop.load()) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      disk_full = false;
      if (!attempt() && !disk_full) return false;
    }
    if (fatal) return false;
    if (delay_ms != 0) {
      stats.disk_full = 0;
      log(Level::kInfo, "disk_space_back", {{"during", disk_full_during}});
    }
    return true;
  }

  // Publishes every tenant with pending rows, and tenants whose position moved when their
  // position flush is due (or `final`); then moves each shard's ack to the smallest position all
  // its tenants made durable. False on a fatal error.
  bool flush_all(bool final) {
    const auto now = Clock::now();
    const auto position_every = std::chrono::milliseconds(config.position_flush_interval_ms);
    stats.flush_cycles.fetch_add(1);
    std::vector<Tenant*> round;  // tenants whose manifest this round replaces
    bool staged_files = false;
    for (Tenant& t : lru) {
      if (t.broken) continue;
      TenantWriter& w = t.active();  // a resyncing tenant's published replica stays frozen
      const bool pending = w.has_pending();
      const bool due = final || now - t.last_position_flush >= position_every;
      bool moved = false;
      for (size_t s = 0; s < shards.size(); ++s) {
        const StreamPosition& sp = streams[s];
        if (sp.position > w.pending_position(shards[s].shard)) moved = true;
      }
      if (!pending && !(moved && due)) continue;
      advance_to_streams(w);
      bool wrote = false;
      if (WriterStatus st = w.stage_flush(&wrote); !st.ok()) {
        if (!failed(t, st, "flush")) return abandon_round(round, false);
        continue;
      }
      staged_files = staged_files || wrote;
      round.push_back(&t);
    }
    // One sync for every delta of the round, then the manifests naming them, one more sync: two
    // syncs a round instead of four fsyncs per tenant; nothing is acked before the second.
    if (staged_files && !sync_data_dir("the round's delta files", true)) return abandon_round(round, false);
    size_t released = 0;  // bytes of pending rows the round's publishes free
    for (Tenant* t : round) {
      TenantWriter& w = t->active();
      const bool pending = w.has_pending();
      released += w.pending_bytes();
      const uint64_t generation = w.manifest().generation;
      if (WriterStatus st = w.publish_flush(); !st.ok()) {
        if (!failed(*t, st, "flush")) return abandon_round(round, true);
        continue;
      }
      t->last_position_flush = now;
      if (w.manifest().generation != generation) stats.flushes.fetch_add(1);
      if (pending && !final && !t->staging) {
        // Due for a compaction: merged on the compaction thread, installed by install_compactions().
        std::unique_ptr<Compaction> job;
        if (WriterStatus st = w.start_compaction(false, job); !st.ok()) {
          if (!failed(*t, st, "compact")) return false;
          continue;
        }
        if (job) compactor.submit(t->key, std::move(job));
      }
    }
    if ((!round.empty() || manifests_unsynced) && !sync_data_dir("the round's manifests")) return false;
    manifests_unsynced = false;
    // Resyncs whose copy is complete and durable now replace their tenants' replicas.
    if (!adopt_resynced()) return false;
    // Every tenant's changes below each stream position are published now: say so once per shard
    // rather than in every quiet tenant's manifest.
    for (size_t s = 0; s < shards.size(); ++s) {
      const StreamPosition& sp = streams[s];
      if (sp.position != 0) shard_positions[s]->publish({sp.position, sp.upstream, sp.upstream_time_us});
    }
    // The round published every change below the stream positions (tenants that failed it are
    // broken: never acked for), and the shard position files say so: acks and restarts go by
    // them, not by the quiet tenants' manifests.
    for (size_t s = 0; s < shards.size(); ++s) {
      const uint64_t ack = streams[s].position;
      if (ack > shards[s].acked.load()) shards[s].acked = ack;
    }
    if (!final) close_idle_tenants();
    const uint64_t runs = stats.spill_runs.load();
    give_back_memory(released >= kTrimAfterBytes || runs != spill_runs_at_trim);
    spill_runs_at_trim = runs;
    return true;
  }

  // After a round that freed much (a big transaction's pending rows, its frames), gives the free
  // memory back to the system: glibc keeps freed small blocks in its arenas (the stream threads'
  // too) otherwise, and the daemon would keep a big transaction's peak for good.
  void give_back_memory(bool freed_much) {
    if (!freed_much) return;
    ::malloc_trim(0);
    last_trim = Clock::now();
    stats.memory_trims.fetch_add(1);
  }
  static constexpr size_t kTrimAfterBytes = size_t{16} << 20;
  uint64_t spill_runs_at_trim = 0;  // stats.spill_runs at the end of the last flush round
  Clock::time_point last_trim{};     // of the last give_back_memory() trim
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
    s.shard_positions.push_back(std::make_unique<ShardPositionWriter>());
    if (!s.shard_positions.back()->open(s.config.data_dir, s.shards[i].shard, why)) {
      log(Level::kError, "startup_failed", {{"shard", s.shards[i].shard}, {"error", why}});
      return false;
    }
  }
  s.data_dir_fd = ::open(s.config.data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s.data_dir_fd < 0) {
    log(Level::kError, "startup_failed", {{"dir", s.config.data_dir}, {"error", std::strerror(errno)}});
    return false;
  }
  std::error_code ec;
  std::vector<Manifest> resync_at_start;
  // Listed first: a directory with an older name is renamed below. increment(ec), not ++: an
  // error is reported, not thrown.
  std::vector<fs::path> dirs;
  for (fs::directory_iterator it(fs::path(s.config.data_dir) / "tenants", ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_directory(type_ec)) dirs.push_back(it->path());
  }
  if (ec) {
    log(Level::kError, "startup_failed", {{"dir", s.config.data_dir + "/tenants"}, {"error", ec.message()}});
    return false;
  }
  for (fs::path dir : dirs) {
    Manifest m;
    std::string why;
    if (!read_manifest(dir, m, why)) {
      log(Level::kWarning, "tenant_unreadable", {{"dir", dir.string()}, {"error", why}});
      continue;
    }
    if (!s.serves(m.tenant)) continue;
    // A name of the rule before names were bounded (a long key): move it to its name now.
    if (fs::path moved; !move_to_tenant_dir(dir, m.tenant, moved, why)) {
      log(Level::kWarning, "tenant_misplaced",
          {{"tenant", m.tenant}, {"dir", dir.string()}, {"error", why}, {"action", "not applied"}});
      continue;
    } else if (moved != dir) {
      log(Level::kInfo, "tenant_dir_renamed", {{"tenant", m.tenant}, {"from", dir.string()}, {"to", moved.string()}});
      dir = moved;
    }
    const bool broken = fs::exists(dir / "broken", ec);
    bool can_copy = false;
    for (const ShardState& sh : s.shards) can_copy = can_copy || !s.config.primary_of(sh.shard).empty();
    if (broken && !can_copy) {
      // Left as it is (readers still read it, with its manifest's positions): not applied.
      auto t = std::make_unique<Tenant>();
      t->key = m.tenant;
      t->broken = true;
      s.tenants.emplace(t->key, std::move(t));
      s.stats.broken_tenants.fetch_add(1);
      log(Level::kWarning, "tenant_broken",
          {{"tenant", m.tenant}, {"action", "not applied; remove its directory to rebuild it (or set primary to copy it)"}});
      continue;
    }
    if (!m.published || broken) {
      // A copy cut short (crash, stop): its rows are not known to be complete. Copy it again.
      remove_tenant_dir(dir, ec);
      if (ec) {
        log(Level::kError, "startup_failed", {{"dir", dir.string()}, {"error", ec.message()}});
        return false;
      }
      log(Level::kWarning, "copy_discarded",
          {{"tenant", m.tenant},
           {"reason", broken ? "it stopped applying (broken)" : "its initial copy never published"},
           {"action", "copying it again"}});
      s.recopy.insert(m.tenant);
      continue;
    }
    if (fs::exists(dir / "resync", ec)) {
      // A resync cut short (crash, stop): its published replica stays; the copy starts over.
      resync_at_start.push_back(m);
      s.for_tenant(m.tenant, "open", [&] { s.tenant(m.tenant); });
      if (s.fatal) return false;
    } else if (s.lru.size() < static_cast<size_t>(s.config.max_open_tenants)) {
      s.for_tenant(m.tenant, "open", [&] { s.tenant(m.tenant); });
      if (s.fatal) return false;
    } else {
      // Beyond the cap: known, opened by its first change.
      auto t = std::make_unique<Tenant>();
      t->key = m.tenant;
      for (size_t i = 0; i < s.shards.size(); ++i) {
        for (const ShardPosition& p : m.shards) {
          if (p.shard == s.shards[i].shard && p.commit_time_us != 0) t->rows_from |= shard_bit(i);
        }
      }
      s.closed_start.push_back(m);
      s.tenants.emplace(t->key, std::move(t));
    }
  }
  // Plan the initial copies: shards with a primary, tenants missing here.
  std::vector<std::string> missing;
  if (!s.all_tenants) {
    for (const std::string& key : s.served) {
      if (s.tenants.count(key) == 0) missing.push_back(key);
    }
  } else {
    missing.assign(s.recopy.begin(), s.recopy.end());
  }
  for (size_t i = 0; i < s.shards.size(); ++i) {
    if (s.config.primary_of(s.shards[i].shard).empty()) continue;
    ShardCopy& c = s.copies[i];
    c.all = s.all_tenants && !fs::exists(s.copied_marker(i), ec);
    c.tenants = missing;
    if (c.all || !c.tenants.empty()) c.state = ShardCopy::kPlanned;
  }
  // Tenants asked for get their (unpublished) replica now, even if no copy holds a row of them.
  for (const std::string& key : missing) {
    bool covered = false;
    for (const ShardCopy& c : s.copies) covered = covered || c.covers(key);
    if (covered) s.for_tenant(key, "open", [&] { s.tenant(key); });
    if (s.fatal) return false;
  }
  // Resyncs cut short start over, from each shard of the tenant's manifest.
  for (const Manifest& m : resync_at_start) {
    auto it = s.tenants.find(m.tenant);
    if (it == s.tenants.end() || it->second->broken) continue;
    for (size_t i = 0; i < s.shards.size(); ++i) {
      bool listed = false;
      for (const ShardPosition& p : m.shards) listed = listed || (p.shard == s.shards[i].shard && p.commit_time_us != 0);
      if (listed && !s.begin_resync(*it->second, i, "a resync that did not complete before the daemon stopped")) return false;
    }
  }
  // Each shard starts at the smallest position its tenants' manifests have, or further at its
  // shard position file's, which vouches for every tenant (0: the relay's registered ack, which
  // never passes them; a new data_dir starts at the relay's current position).
  for (size_t i = 0; i < s.shards.size(); ++i) {
    uint64_t start = std::numeric_limits<uint64_t>::max();
    for (auto& [key, t] : s.tenants) {
      if (!t->broken && t->open && t->copying == 0) start = std::min(start, t->writer.applied(s.shards[i].shard));
    }
    for (const Manifest& m : s.closed_start) {
      uint64_t applied = 0;
      for (const ShardPosition& p : m.shards) {
        if (p.shard == s.shards[i].shard) applied = p.applied;
      }
      start = std::min(start, applied);
    }
    if (start == std::numeric_limits<uint64_t>::max()) start = 0;
    start = std::max(start, s.shard_positions[i]->last().position);
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
  // Initial copies first: the streams queue what arrives meanwhile.
  (void)s.copy_planned(stop);
  const auto every = std::chrono::milliseconds(s.config.flush_interval_ms);
  const auto backlog_max = std::chrono::milliseconds(s.config.flush_backlog_max_ms);
  auto next_flush = Clock::now() + every;
  ApplyEvent ev;
  for (;;) {
    // Copies asked for at runtime (resyncs of tenants whose table was rewritten upstream).
    if (!s.copy_planned(stop) && s.fatal) break;
    const bool stopping = stop.load();
    bool quiet = stopping;
    if (stopping) {
      for (const ShardState& sh : s.shards) quiet = quiet && sh.quiet.load();
    }
    if (quiet) break;
    if (s.queue.pop(std::min(next_flush, Clock::now() + std::chrono::milliseconds(50)), ev)) {
      s.apply(ev);
      // Out of space: the same event again once there is room, nothing after it before.
      if (s.disk_full && !s.ride_out_disk_full(stop, [&] {
            s.apply(ev);
            return !s.fatal && !s.disk_full;
          })) {
        break;
      }
      if (s.fatal) break;
    }
    // A due flush waits while changes are queued (a backlog: fewer, larger deltas and manifests
    // catch up faster), but no longer than flush_backlog_max_ms.
    const auto now = Clock::now();
    if (now >= next_flush && (s.queue.size() == 0 || now >= next_flush + backlog_max)) {
      if (!s.install_compactions()) break;
      if (!s.flush_all(false) && !s.ride_out_disk_full(stop, [&] { return s.flush_all(false); })) break;
      next_flush = Clock::now() + every;
    }
  }
  // The streams push nothing more: apply what is queued, let the running compaction end and
  // install what finished, flush everything, publish the acks.
  // (Not after an event left unapplied by a full disk: acks stay where they are.)
  while (!s.fatal && !s.disk_full && s.queue.try_pop(ev)) s.apply(ev);
  s.compactor.stop();
  if (!s.fatal) s.install_compactions();
  if (!s.fatal && !s.disk_full) s.flush_all(true);
  s.queue.close();
  done = true;
  log(s.fatal ? Level::kError : Level::kInfo, "applier_stopped",
      {{"groups_applied", std::to_string(s.stats.groups_applied.load())},
       {"groups_skipped", std::to_string(s.stats.groups_skipped.load())},
       {"flushes", std::to_string(s.stats.flushes.load())}});
  return !s.fatal;
}

}  // namespace edgeshard::apply::daemon

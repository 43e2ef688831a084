// The write side of one tenant's replica (edge_apply/FORMAT.md, "Tenant directory", "Manifest"):
// the core of edgeshard-apply, without the network. Complete frame groups of the tenant are
// applied into an in-memory pending set (all or nothing per group); flush() publishes the pending
// rows as one delta file and a new manifest with the shards' positions, atomically (temp file,
// fsync, rename, fsync dir, manifest, head); compact() merges the files into a new base.
//
// Bounded memory: past Options::pending_memory_bytes, the pending set is written out as an
// unlisted "spill run" (a delta file no manifest names yet) and emptied; the next publish lists
// the spill runs (oldest first) and the final delta in one manifest, so readers see a transaction
// of any size at once. Lookups of pending rows read the spill runs too. A group bigger than the
// budget is committed to the pending set in pieces: if it then fails, the writer fails (reopen)
// rather than publish half of it.
//
//   TenantWriter w;
//   if (auto st = w.open(data_dir, "42"); !st.ok()) die(st.message);
//   RelationMap& rels = relations_of_shard["s1"];     // fed by MANY_TENANTS RELATION messages
//   w.apply_group("s1", rels, frames_of_group);       // one (transaction, tenant) group
//   w.advance("s1", end_lsn, commit_time, upstream_lsn, upstream_time);
//   w.flush();                                        // durable and visible to readers
//
// Crash safety: nothing is visible before flush() publishes a manifest; a crash at any point
// leaves the previous manifest, and open() removes files no manifest lists. Re-applying groups
// after a restart is harmless: a group whose commit LSN is below the shard's position is skipped.
// Not thread-safe: one writer per tenant directory, one thread at a time. No call throws: an
// exception inside one becomes its status (out of memory, or a std::system_error of the machine
// such as a full disk, kIo like a failed system call; anything else kException).
#pragma once

#include "common/no_postgres.hpp"

#include "edge_apply/frame_source.hpp"
#include "edge_apply/manifest.hpp"
#include "edge_apply/relation_map.hpp"
#include "edge_apply/replica_file.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::apply {

// Outcome of a TenantWriter call; `message` lower-case, no trailing period.
struct WriterStatus {
  enum Kind {
    kOk = 0,
    kBadGroup,    // the frames are not one complete, consistent frame group of this tenant
    kBadMessage,  // a message the writer cannot apply (unknown relid, bad key, malformed frame)
    kMissingRow,  // an UPDATE with an unchanged TOAST value whose old row is not in the replica
    kCorrupt,     // the tenant's manifest or files fail their checks
    kIo,          // a system call failed
    kFailed,      // not open, or failed by an earlier I/O error: reopen
    kException,   // an unexpected exception (a bug, or an input nothing checked): this tenant's
  };
  Kind kind = kOk;
  std::string message;
  int sys_errno = 0;  // kIo: errno of the failed call, when known

  WriterStatus() = default;
  // A status of kind k saying why (err: the failed call's errno).
  WriterStatus(Kind k, std::string why, int err = 0) : kind(k), message(std::move(why)), sys_errno(err) {}

  // Whether the call succeeded.
  bool ok() const noexcept { return kind == kOk; }
  // Whether it failed for lack of space (ENOSPC, EDQUOT) and left the writer usable: nothing
  // visible changed, pending rows are still pending; retry once there is room.
  bool out_of_space() const noexcept;
};

// A compaction taken out of its TenantWriter (start_compaction()) so that the merge can run on
// another thread while the writer keeps applying and flushing; finish_compaction() installs it.
class Compaction {
 public:
  ~Compaction();
  Compaction(const Compaction&) = delete;
  Compaction& operator=(const Compaction&) = delete;

  // Merges the input files (its own mappings) into a new base file, written under a temp name,
  // fsynced and renamed into place. Touches no writer state: any thread, once.
  WriterStatus run();

 private:
  friend class TenantWriter;
  Compaction();
  // run() without its exception guard.
  WriterStatus run_unguarded();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class TenantWriter {
 public:
  // Choices of the writer.
  struct Options {
    size_t compact_deltas = 8;  // compact() merges once there are at least this many deltas
    bool compress = true;       // LZ4 blocks in the files written
    bool start_published = true;  // a new tenant's first manifest: published (false while an
                                  // initial copy fills it; set_published(true) ends that)
    std::string subdir{};         // the replica lives in this subdirectory of the tenant's
                                  // directory (a resync's staging replica, see adopt())
    uint64_t first_sequence = 1;  // files are numbered from at least this
    size_t pending_memory_bytes = size_t{32} << 20;  // pending rows past this go to a spill run
                                                      // (0: never spill)
  };

  TenantWriter();
  ~TenantWriter();
  TenantWriter(const TenantWriter&) = delete;
  TenantWriter& operator=(const TenantWriter&) = delete;

  // Opens (creating) the tenant's directory under data_dir and its head file, reads the manifest
  // if any (a new tenant starts with an empty, published manifest that is written at once), maps
  // its files and removes files it does not list (leftovers of a crash).
  WriterStatus open(const std::filesystem::path& data_dir, std::string_view tenant,
                    const Options& options);
  // The same with default options.
  WriterStatus open(const std::filesystem::path& data_dir, std::string_view tenant) {
    return open(data_dir, tenant, Options{});
  }

  // Durable position of a shard: every transaction of it with commit LSN below it is in the
  // published files (0 for a shard never seen).
  uint64_t applied(std::string_view shard) const;

  // The position the next flush() records for a shard (>= applied()).
  uint64_t pending_position(std::string_view shard) const;

  // Applies one complete frame group (all frames of one transaction for this tenant, in sequence
  // order) to the pending set, all or nothing. The group is checked first: sequence 0, 1, ...,
  // one commit LSN and this tenant throughout, LAST on the last frame only. A group whose commit
  // LSN is below pending_position(shard) was applied already and is skipped (`skipped` set).
  // Otherwise the shard's pending position becomes commit LSN + 1 (transactions arrive in commit
  // order). Rows use the relations' current descriptions.
  WriterStatus apply_group(std::string_view shard, const RelationMap& relations,
                           std::span<const std::span<const uint8_t>> frames,
                           bool* skipped = nullptr);
  // The same, reading the frames from `frames` (twice: headers, then messages) one at a time.
  WriterStatus apply_group(std::string_view shard, const RelationMap& relations, FrameSource& frames,
                           bool* skipped = nullptr);

  // Applies one frame group of an initial copy (INSERT messages of the tenant, checked like
  // apply_group's) as upserts, without moving any shard's position: the copy's consistency point
  // is tracked by the caller (edge_apply/daemon/initial_copy.hpp).
  WriterStatus apply_copy(const RelationMap& relations,
                          std::span<const std::span<const uint8_t>> frames);

  // Applies a TRUNCATE (of a MANY_TENANTS frame) to this tenant: every row of those tables is
  // deleted, as pending tombstones. Skipped like apply_group() by commit_lsn.
  WriterStatus apply_truncate(std::string_view shard, const RelationMap& relations,
                              std::span<const uint32_t> relids, uint64_t commit_lsn,
                              bool* skipped = nullptr);

  // A RELATION of shard's stream (transaction commit_lsn) described a table anew (ALTER TABLE):
  // when this tenant has the table under another description, its next flush publishes the new
  // one (a delta listing the table, with its pending rows re-encoded), so that readers render
  // every stored row under it (schema on read: edge_apply/row_projection.hpp) even when no row
  // of the table changes. Skipped for a transaction the tenant already has; kBadMessage when the
  // stored rows cannot be read under it (a type changed: the table must be copied again).
  // `changed` says whether anything is pending because of it.
  WriterStatus apply_relation(std::string_view shard, const std::shared_ptr<const RelationInfo>& rel,
                              uint64_t commit_lsn, bool* changed = nullptr);

  // The shard's stream reached `position` (a KEEPALIVE, or the end of a transaction): recorded
  // by the next flush(). Positions never go back.
  void advance(std::string_view shard, uint64_t position, int64_t commit_time_us,
               uint64_t upstream_position, int64_t upstream_time_us);

  // Marks the tenant published or not (the initial copy sets no while it runs); recorded by the
  // next flush().
  void set_published(bool published);

  // Publishes pending rows (one delta file) and positions (a new manifest, then the head file).
  // Nothing is written when nothing changed. On an I/O error the writer fails for good (reopen),
  // except when it is out_of_space(): then the previous manifest is still the published one, the
  // pending rows stay pending and flush() may simply be called again.
  WriterStatus flush();

  // flush() in two steps for a caller that makes many tenants durable at once: stage_flush()
  // writes the pending rows' delta file (renamed into place, listed nowhere yet, not fsynced;
  // `wrote_file` says whether there was one, or spill runs written since the last publish, which
  // are not fsynced either); the caller makes every staged file durable (one
  // syncfs); publish_flush() then writes the manifest naming it and bumps the head, not fsynced
  // either: the caller syncs again before it acks anything. A crash in between leaves the old
  // manifest (unlisted files are removed at open). Nothing may be applied in between.
  WriterStatus stage_flush(bool* wrote_file = nullptr);
  WriterStatus publish_flush();
  // Gives up a staged flush whose round cannot complete (a full disk): the staged delta, listed
  // nowhere, is removed; pending rows stay pending for the next stage_flush(). Nothing published
  // changes. A no-op when nothing is staged.
  void abandon_flush();

  // Whether rows (or a table's new description) are pending, in memory or in spill runs.
  bool has_pending() const noexcept;

  // Bytes the in-memory pending rows take (about).
  size_t pending_bytes() const noexcept;

  // Spill runs written since open() (published or not).
  uint64_t spill_runs_written() const noexcept;

  // Whether the writer is open and may be closed without losing anything: no pending rows and no
  // compaction out (positions recorded since the last manifest are dropped: the shard position
  // files vouch for them).
  bool idle() const noexcept;

  // Releases the writer's mappings, cache and descriptors (only when idle()); open() again to use
  // it. The files stay as published.
  void close();

  // Makes the files of `staging` (a complete replica of this tenant built beside it, e.g. by a
  // resync's copy: flushed, nothing pending) this tenant's replica, in one step for readers: the
  // files move into this directory, then one manifest lists them (with staging's positions, and
  // published) instead of the old ones, which are removed; the writer is then open on them, and
  // staging is closed and its directory removed. Durable when it returns (fsyncs). A crash before
  // the manifest leaves the old replica (the moved files are removed at open as unlisted).
  WriterStatus adopt(TenantWriter& staging);

  // Forgets the pending rows and descriptions (a resync replaces the replica with a copy that
  // has them anyway); what is published stays.
  void drop_pending();

  // The sequence the next file written gets (a staging replica starts above it).
  uint64_t next_sequence() const noexcept;

  // Whether the tenant has the table "schema.name" (rows of it, pending or published).
  bool has_table(std::string_view table) const;

  // Whether a transaction (or an initial copy) of shard ever gave this tenant rows: only such
  // tenants hold rows a TRUNCATE on that shard removes.
  bool has_rows_from(std::string_view shard) const;

  // Merges the base and the deltas into a new base (newest record wins, tombstones dropped) when
  // there are at least Options::compact_deltas deltas (or `force` and at least two files),
  // publishes a manifest listing it instead of them and removes the old files (readers that map
  // them keep reading them). Pending rows are not involved. `compacted` says whether it merged.
  // A file holds one description per table: after an ALTER TABLE, files of the old and the new
  // columns cannot share one file, so the files are merged run by run (adjacent files of one
  // shape; the longest run), a later run into one delta that keeps its tombstones.
  WriterStatus compact(bool force = false, bool* compacted = nullptr);

  // The same in three steps, for a merge on another thread: start_compaction() sets `out` when a
  // compaction is due (nullptr otherwise, also while one is out), the caller runs out->run()
  // anywhere, and finish_compaction() publishes a manifest listing the new base followed by the
  // deltas flushed meanwhile, and removes the merged files. The writer may apply and flush in
  // between; one compaction at a time.
  WriterStatus start_compaction(bool force, std::unique_ptr<Compaction>& out);
  WriterStatus finish_compaction(std::unique_ptr<Compaction> job, bool* compacted = nullptr);

  // The manifest last published.
  const Manifest& manifest() const noexcept;

  // The tenant's directory.
  const std::filesystem::path& dir() const noexcept;

 private:
  // The calls of the same name without their exception guard.
  WriterStatus open_unguarded(const std::filesystem::path& data_dir, std::string_view tenant,
                              const Options& options);
  WriterStatus apply_group_unguarded(std::string_view shard, const RelationMap& relations,
                                     FrameSource& frames, bool* skipped);
  WriterStatus apply_copy_unguarded(const RelationMap& relations, FrameSource& frames);
  WriterStatus apply_truncate_unguarded(std::string_view shard, const RelationMap& relations,
                                        std::span<const uint32_t> relids, uint64_t commit_lsn,
                                        bool* skipped);
  WriterStatus start_compaction_unguarded(bool force, std::unique_ptr<Compaction>& out);
  WriterStatus finish_compaction_unguarded(std::unique_ptr<Compaction> job, bool* compacted);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgeshard::apply

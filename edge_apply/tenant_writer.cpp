// TenantWriter: applies frame groups to a pending set, publishes deltas and manifests, compacts.
#include "edge_apply/tenant_writer.hpp"

#include "common/posix_file.hpp"
#include "edge_apply/key_codec.hpp"
#include "edge_apply/row_projection.hpp"
#include "edge_apply/tenant_replica.hpp"
#include "edge_apply/tuple.hpp"
#include "edge_apply/value_codec.hpp"

#include <boost/intrusive/set.hpp>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <functional>
#include <new>
#include <set>
#include <optional>
#include <system_error>
#include <unordered_set>

namespace edgeshard::apply {

namespace bi = boost::intrusive;
namespace fs = std::filesystem;

namespace {

// The text of errno, for messages.
std::string errno_text(int e) { return ::strerror(e); }


// A replica file's name: "<prefix>-<sequence as 16 hex digits>.esr".
std::string file_name(const char* prefix, uint64_t sequence) {
  char buf[64];
  ::snprintf(buf, sizeof buf, "%s-%016" PRIx64 ".esr", prefix, sequence);
  return buf;
}

// The sequence in a name made by file_name(), or nullopt.
std::optional<uint64_t> name_sequence(std::string_view name) {
  const size_t dash = name.find('-');
  if (dash == std::string_view::npos || !name.ends_with(".esr")) return std::nullopt;
  const std::string hex(name.substr(dash + 1, name.size() - dash - 5));
  if (hex.size() != 16) return std::nullopt;
  return std::strtoull(hex.c_str(), nullptr, 16);
}

// Whether rows stored under table description `older` can be read under `newer`.
bool readable_as(const replica::Table& older, const replica::Table& newer) {
  if (older.columns == newer.columns) return true;
  const std::vector<frame::Column> from = frame_columns(older.columns);
  const std::vector<frame::Column> to = frame_columns(newer.columns);
  Projection p;
  std::string why;
  return p.build(from, to, why);
}

// A status of the given kind.
WriterStatus fail(WriterStatus::Kind kind, std::string message) {
  return {kind, std::move(message)};
}

// Whether a system error is the machine's (disk full, I/O, read-only, out of memory or
// descriptors) rather than one tenant's.
bool machine_error(const std::error_code& ec) {
  if (ec.category() != std::generic_category() && ec.category() != std::system_category()) return false;
  switch (ec.value()) {
    case ENOSPC: case EDQUOT: case EIO: case EROFS: case ENOMEM: case EMFILE: case ENFILE:
      return true;
    default:
      return false;
  }
}

// Runs fn (the body of a TenantWriter call) with the writer's promise that no call throws: out
// of memory and the machine's system errors become kIo (the daemon's I/O path), anything else
// kException, which stays this tenant's.
template <typename Fn>
WriterStatus guarded(Fn&& fn) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return fail(WriterStatus::kIo, "out of memory");
  } catch (const std::system_error& e) {
    return fail(machine_error(e.code()) ? WriterStatus::kIo : WriterStatus::kException,
                std::string("unexpected error: ") + e.what());
  } catch (const std::exception& e) {
    return fail(WriterStatus::kException, std::string("unexpected exception: ") + e.what());
  } catch (...) {
    return fail(WriterStatus::kException, "unexpected exception");
  }
}

// A replica::Status turned into a WriterStatus.
WriterStatus file_status(const replica::Status& st, const std::string& path) {
  return {st.code == replica::Code::kIo ? WriterStatus::kIo : WriterStatus::kCorrupt,
          replica::describe(st, path), st.sys_errno};
}

// One pending change: the newest row (or tombstone) of (table, key) not yet in a file. Owned by
// the set through its disposer; the auto-unlink hook takes it out of the set if destroyed.
struct Node : bi::set_base_hook<bi::link_mode<bi::auto_unlink>> {
  std::string table;  // "schema.name"
  std::string key;    // encode_row_key()
  bool tombstone = false;
  std::string value;                        // the row's tuple (append_tuple), empty for a tombstone
  std::shared_ptr<const RelationInfo> rel;  // the description the row was decoded with
};

// (table, key) of a node or of a lookup.
struct NodeKey {
  std::string_view table;
  std::string_view key;
};

// Orders nodes by (table, key): the record order of a file whose table numbers follow the
// tables' names.
struct NodeLess {
  // Compares two keys.
  static bool less(std::string_view at, std::string_view ak, std::string_view bt,
                   std::string_view bk) {
    const int c = at.compare(bt);
    return c != 0 ? c < 0 : ak < bk;
  }
  bool operator()(const Node& a, const Node& b) const {
    return less(a.table, a.key, b.table, b.key);
  }
  bool operator()(const NodeKey& a, const Node& b) const {
    return less(a.table, a.key, b.table, b.key);
  }
  bool operator()(const Node& a, const NodeKey& b) const {
    return less(a.table, a.key, b.table, b.key);
  }
};

using PendingSet = bi::set<Node, bi::compare<NodeLess>, bi::constant_time_size<false>>;

// Bytes a pending node takes (about: the node, its strings, the allocator's overhead).
size_t node_bytes(const Node& n) {
  return sizeof(Node) + n.table.size() + n.key.size() + n.value.size() + 48;
}

// Frees a node taken out of the set.
struct DisposeNode {
  void operator()(Node* n) const { std::unique_ptr<Node> owned(n); }
};

// A change staged while a group is checked, before it goes into the pending set.
struct Op {
  std::shared_ptr<const RelationInfo> rel;
  std::string table;
  std::string key;
  bool tombstone = false;
  std::string value;
};

// Bytes a staged op takes (about).
size_t op_bytes(const Op& op) { return sizeof(Op) + op.table.size() + op.key.size() + op.value.size() + 48; }

// fsyncs the file at path; false with why set on failure.
bool fsync_file(const fs::path& path, std::string& why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    why = "could not open " + path.string() + ": " + errno_text(errno);
    return false;
  }
  const bool ok = ::fsync(fd) == 0;
  if (!ok) why = "could not fsync " + path.string() + ": " + errno_text(errno);
  ::close(fd);
  return ok;
}

// An old row found for an UNCHANGED_TOAST merge: its tuple and the columns it was written with.
struct OldRow {
  std::string tuple;
  std::vector<frame::Column> columns;
  std::vector<std::string> names;  // storage for columns' names
};

}  // namespace

// One live file of the manifest, mapped.
struct LiveFile {
  FileEntry entry;
  replica::ReplicaFile file;
};

struct TenantWriter::Impl {
  fs::path data_dir;  // as open() was given it
  fs::path dir;
  std::string tenant;
  Options options;
  HeadWriter head;
  Manifest manifest;                                            // as last published
  std::vector<LiveFile> files;                                  // manifest.files, mapped
  std::map<std::string, ShardPosition, std::less<>> positions;  // what the next flush records
  bool published = true;
  bool dirty = false;  // positions or published changed since the last manifest
  bool failed = true;  // not open, or an ambiguous I/O failure
  bool compacting = false;  // a Compaction is out (start_compaction() until finish_compaction())
  uint64_t next_sequence = 1;
  replica::BlockCache cache;
  PendingSet pending;
  std::map<std::string, std::shared_ptr<const RelationInfo>, std::less<>> pending_rel;
  size_t pending_bytes = 0;       // node_bytes() of every node in pending
  std::vector<LiveFile> spilled;  // spill runs: unlisted deltas of pending rows, oldest first
  // The newest description of each table in the spill runs.
  std::map<std::string, std::shared_ptr<const RelationInfo>, std::less<>> spilled_rel;
  uint64_t spill_runs = 0;  // spill runs written since open()

  ~Impl() { pending.clear_and_dispose(DisposeNode{}); }

  // Looks up the newest row of (table, key) in the staged ops, the pending set, then the files.
  // Returns false with `status` set on a failure; `found` says whether a live row exists.
  bool find_old_row(const std::vector<Op>& staged, std::string_view table, std::string_view key,
                    bool& found, OldRow& out, WriterStatus& status);
  // Looks (table, key) up in the files of list, newest first: 1 when a record decides it (found
  // and out set), 0 when none has it, -1 on a failure (status set).
  int find_in_files(const std::vector<LiveFile>& list, std::string_view table, std::string_view key,
                    bool& found, OldRow& out, WriterStatus& status);
  // Checks a group's frame headers (one transaction, this tenant, sequence 0.., LAST on the last
  // frame) and returns its commit LSN and time.
  WriterStatus check_group(FrameSource& frames, uint64_t& commit_lsn, int64_t& commit_time) const;
  // Checks and stages the changes of frame i of a group (open in reader) into ops.
  WriterStatus stage_frame(const RelationMap& relations, frame::Reader& reader, size_t i,
                           std::vector<Op>& ops, uint64_t commit_lsn, int64_t& commit_time,
                           uint64_t& end_lsn);
  // Stages a checked group's changes frame by frame and commits them to the pending set: whole
  // when they fit the memory budget, else in pieces (spilling past the budget); a failure after a
  // piece went in fails the writer. shard empty: an initial copy's group (no position moves).
  WriterStatus apply_frames(std::string_view shard, const RelationMap& relations, FrameSource& frames,
                            uint64_t commit_lsn, int64_t commit_time);
  // Writes the pending set as a spill run (an unlisted delta, not fsynced) and empties it.
  WriterStatus spill_pending();
  // Adds the pending set's tables (numbered in name order) and records to w.
  replica::Status fill_pending(replica::Writer& w) const;
  // Forgets the in-memory pending rows.
  void clear_pending();
  // Stages one INSERT/UPDATE row.
  WriterStatus stage_row(const std::shared_ptr<const RelationInfo>& rel, const frame::Tuple& row,
                         const frame::Tuple* old_key, std::vector<Op>& ops);
  // Re-encodes the pending rows of table under `to` (p: from their description to `to`).
  WriterStatus reshape_pending(std::string_view table, const Projection& p,
                               const std::shared_ptr<const RelationInfo>& to);
  // The tenant's current description of table: pending, else the newest file's; nullptr when
  // the tenant has no such table.
  std::shared_ptr<const RelationInfo> current_relation(std::string_view table) const;
  // Puts staged ops into the pending set, every row of a table under its newest description.
  // position: the shard's new applied bound (every transaction below it delivered).
  WriterStatus commit_ops(std::string_view shard, std::vector<Op>& ops, uint64_t position,
                          std::optional<int64_t> commit_time);
  // Writes a replica file under a temp name, renames it into place, fsyncs the directory and maps
  // it. fill() adds tables and records. Nothing remains on failure.
  WriterStatus write_file(replica::FileKind kind, const char* prefix,
                          const std::function<replica::Status(replica::Writer&)>& fill,
                          LiveFile& out, bool sync = true);
  // flush(): the pending rows as a delta, then a manifest with the positions.
  WriterStatus flush_impl();
  // The two steps of a flush (see TenantWriter::stage_flush()); sync: fsync each file.
  WriterStatus stage_files(bool sync, bool* wrote_file);
  WriterStatus publish_staged(bool sync);
  // Publishes m (manifest, then head); on failure the writer fails for good.
  WriterStatus publish(const Manifest& m, bool sync = true);
  std::optional<LiveFile> staged;  // the delta of stage_files(), until publish_staged()
  // Removes the staged delta (a round that cannot complete); pending rows stay pending.
  void abandon_staged();
  // Removes files of the directory that the manifest does not list.
  void remove_orphans();
};

TenantWriter::TenantWriter() : impl_(std::make_unique<Impl>()) {}
TenantWriter::~TenantWriter() = default;

WriterStatus TenantWriter::open_unguarded(const fs::path& data_dir, std::string_view tenant,
                                          const Options& options) {
  impl_ = std::make_unique<Impl>();
  Impl& s = *impl_;
  s.data_dir = data_dir;
  s.dir = tenant_dir(data_dir, tenant);
  if (!options.subdir.empty()) s.dir /= options.subdir;
  s.tenant = std::string(tenant);
  s.options = options;
  s.next_sequence = std::max<uint64_t>(options.first_sequence, 1);
  std::error_code ec;
  fs::create_directories(s.dir, ec);
  if (ec) return {WriterStatus::kIo, "could not create " + s.dir.string() + ": " + ec.message(), ec.value()};
  std::string why;
  if (fs::exists(s.dir / "manifest", ec)) {
    if (!read_manifest(s.dir, s.manifest, why)) return fail(WriterStatus::kCorrupt, why);
    if (s.manifest.tenant != s.tenant) {
      return fail(WriterStatus::kCorrupt, "manifest in " + s.dir.string() + " belongs to tenant " +
                                              s.manifest.tenant + ", not " + s.tenant);
    }
  } else {
    // A new tenant: an empty replica, published unless an initial copy is about to fill it.
    s.manifest = Manifest{};
    s.manifest.generation = 1;
    s.manifest.tenant = s.tenant;
    s.manifest.published = options.start_published;
    if (int err = 0; !write_manifest(s.dir, s.manifest, why, true, &err)) return {WriterStatus::kIo, why, err};
  }
  // The head file only once a manifest is in place: a reader that finds the head reads the
  // manifest (without it, a new tenant is "no replica here", not a corrupt one). After a crash
  // the head may lag the manifest: store its generation again.
  if (!s.head.open(s.dir, why)) return {WriterStatus::kIo, why, errno};
  s.head.publish(s.manifest.generation);
  for (const FileEntry& e : s.manifest.files) {
    LiveFile lf;
    lf.entry = e;
    const std::string path = (s.dir / e.name).string();
    if (replica::Status st = lf.file.open(path); !st.ok()) {
      // A file the manifest lists is never removed: its absence is damage, not a passing I/O error.
      if (st.code == replica::Code::kIo && st.sys_errno == ENOENT) {
        return fail(WriterStatus::kCorrupt, replica::describe(st, path));
      }
      return file_status(st, path);
    }
    if (auto seq = name_sequence(e.name)) s.next_sequence = std::max(s.next_sequence, *seq + 1);
    s.next_sequence = std::max(s.next_sequence, lf.file.info().sequence + 1);
    s.files.push_back(std::move(lf));
  }
  s.remove_orphans();
  for (const ShardPosition& p : s.manifest.shards) s.positions[p.shard] = p;
  s.published = s.manifest.published;
  s.dirty = false;
  s.failed = false;
  return {};
}

void TenantWriter::Impl::remove_orphans() {
  std::unordered_set<std::string> live;
  for (const FileEntry& e : manifest.files) live.insert(e.name);
  std::error_code ec;
  bool removed = false;
  // increment(ec), not ++: a directory that cannot be read leaves its leftovers for next time.
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::directory_entry& de = *it;
    const std::string name = de.path().filename().string();
    if (name == "manifest" || name == "head" || live.count(name) != 0) continue;
    const bool ours =
        name.starts_with("base-") || name.starts_with("delta-") || name.ends_with(".tmp");
    if (!ours) continue;
    std::error_code rec;
    if (fs::remove(de.path(), rec)) removed = true;
  }
  std::string why;
  if (removed) (void)fsync_directory(dir, why);  // best effort: a leftover is removed next time
}

uint64_t TenantWriter::applied(std::string_view shard) const {
  for (const ShardPosition& p : impl_->manifest.shards) {
    if (p.shard == shard) return p.applied;
  }
  return 0;
}

uint64_t TenantWriter::pending_position(std::string_view shard) const {
  auto it = impl_->positions.find(shard);
  return it == impl_->positions.end() ? 0 : it->second.applied;
}

bool TenantWriter::has_pending() const noexcept {
  return !impl_->pending_rel.empty() || !impl_->spilled.empty();
}

size_t TenantWriter::pending_bytes() const noexcept { return impl_->pending_bytes; }

uint64_t TenantWriter::spill_runs_written() const noexcept { return impl_->spill_runs; }

bool TenantWriter::idle() const noexcept {
  return !impl_->failed && !has_pending() && !impl_->compacting;
}

void TenantWriter::close() {
  // A fresh Impl is "not open"; the old one's destructor unmaps and closes everything.
  impl_ = std::make_unique<Impl>();
}

uint64_t TenantWriter::next_sequence() const noexcept { return impl_->next_sequence; }

void TenantWriter::drop_pending() {
  Impl& s = *impl_;
  s.clear_pending();
  std::error_code ec;
  for (const LiveFile& lf : s.spilled) fs::remove(s.dir / lf.entry.name, ec);
  s.spilled.clear();
  s.spilled_rel.clear();
}

void TenantWriter::Impl::clear_pending() {
  pending.clear_and_dispose(DisposeNode{});
  pending_rel.clear();
  pending_bytes = 0;
}

replica::Status TenantWriter::Impl::fill_pending(replica::Writer& w) const {
  // Tables numbered in name order, so that the set's (table, key) order is record order.
  std::map<std::string_view, uint32_t> numbers;
  for (const auto& [table, rel] : pending_rel) {
    const uint32_t no = static_cast<uint32_t>(numbers.size() + 1);
    numbers.emplace(table, no);
    if (replica::Status st = w.add_table(rel->to_table(no)); !st.ok()) return st;
  }
  for (const Node& n : pending) {
    const uint32_t no = numbers.at(n.table);
    replica::Status st = n.tombstone ? w.add_tombstone(no, n.key) : w.add(no, n.key, n.value);
    if (!st.ok()) return st;
  }
  return {};
}

WriterStatus TenantWriter::Impl::spill_pending() {
  if (pending_rel.empty()) return {};
  // Tombstones are kept (older files may hold those keys); not fsynced: the flush that lists the
  // run makes it durable first (stage_files).
  LiveFile run;
  auto fill = [&](replica::Writer& w) { return fill_pending(w); };
  if (WriterStatus st = write_file(replica::FileKind::kDelta, "delta", fill, run, false); !st.ok()) return st;
  for (const auto& [table, rel] : pending_rel) spilled_rel[table] = rel;
  spilled.push_back(std::move(run));
  ++spill_runs;
  clear_pending();
  return {};
}

WriterStatus TenantWriter::adopt(TenantWriter& staging) {
  Impl& s = *impl_;
  Impl& from = *staging.impl_;
  if (s.failed || from.failed) return fail(WriterStatus::kFailed, "tenant writer is not open (or failed): reopen");
  if (!idle() || !staging.idle() || from.staged) {
    return fail(WriterStatus::kFailed, "adopt needs both replicas flushed, with no compaction out");
  }
  // 1. The staging files move in (unlisted here until the manifest names them).
  for (const LiveFile& lf : from.files) {
    const fs::path src = from.dir / lf.entry.name;
    const fs::path dst = s.dir / lf.entry.name;
    if (fs::exists(dst)) return fail(WriterStatus::kFailed, "adopt: " + dst.string() + " exists");
    if (::rename(src.c_str(), dst.c_str()) != 0) {
      return fail(WriterStatus::kIo, "could not move " + src.string() + " to " + dst.string() + ": " +
                                         errno_text(errno));
    }
  }
  std::string why;
  if (!fsync_directory(s.dir, why) || !fsync_directory(from.dir, why)) return fail(WriterStatus::kIo, why);
  // 2. One manifest switches readers from the old files to them.
  Manifest next = s.manifest;
  next.generation = s.manifest.generation + 1;
  next.published = true;
  next.files.clear();
  for (const LiveFile& lf : from.files) next.files.push_back(lf.entry);
  std::map<std::string, ShardPosition, std::less<>> positions = s.positions;
  for (const auto& [shard, p] : from.positions) {
    ShardPosition& q = positions[shard];
    const ShardPosition old = q;
    q = p;
    q.applied = std::max(p.applied, old.applied);
    if (old.upstream > p.upstream) {
      q.upstream = old.upstream;
      q.upstream_time_us = old.upstream_time_us;
    }
  }
  next.shards.clear();
  for (const auto& [name, p] : positions) next.shards.push_back(p);
  if (WriterStatus st = s.publish(next, true); !st.ok()) {
    // Out of space with the old manifest in place: the files go back, so adopt() can run again.
    if (!s.failed) {
      for (const LiveFile& lf : from.files) {
        (void)::rename((s.dir / lf.entry.name).c_str(), (from.dir / lf.entry.name).c_str());
      }
    }
    return st;
  }
  // 3. The old files go (readers that map them keep reading them), the staging replica too.
  const fs::path data_dir = s.data_dir;
  const std::string tenant = s.tenant;
  const Options options = s.options;
  const fs::path staging_dir = from.dir;
  staging.close();
  std::error_code ec;
  fs::remove_all(staging_dir, ec);
  return open(data_dir, tenant, options);
}

bool TenantWriter::has_table(std::string_view table) const {
  return impl_->current_relation(table) != nullptr;
}

bool TenantWriter::has_rows_from(std::string_view shard) const {
  auto it = impl_->positions.find(shard);
  return it != impl_->positions.end() && it->second.commit_time_us != 0;
}

const Manifest& TenantWriter::manifest() const noexcept { return impl_->manifest; }

const fs::path& TenantWriter::dir() const noexcept { return impl_->dir; }

void TenantWriter::set_published(bool published) {
  if (impl_->published != published) {
    impl_->published = published;
    impl_->dirty = true;
  }
}

void TenantWriter::advance(std::string_view shard, uint64_t position, int64_t commit_time_us,
                           uint64_t upstream_position, int64_t upstream_time_us) {
  auto it = impl_->positions.find(shard);
  if (it == impl_->positions.end()) {
    it = impl_->positions.emplace(std::string(shard), ShardPosition{}).first;
    it->second.shard = std::string(shard);
  }
  ShardPosition& p = it->second;
  const ShardPosition before = p;
  p.applied = std::max(p.applied, position);
  if (commit_time_us != 0) p.commit_time_us = std::max(p.commit_time_us, commit_time_us);
  if (upstream_position >= p.upstream) {
    p.upstream = upstream_position;
    p.upstream_time_us = upstream_time_us;
  }
  if (p.applied != before.applied || p.commit_time_us != before.commit_time_us ||
      p.upstream != before.upstream || p.upstream_time_us != before.upstream_time_us) {
    impl_->dirty = true;
  }
}

bool TenantWriter::Impl::find_old_row(const std::vector<Op>& staged, std::string_view table,
                                      std::string_view key, bool& found, OldRow& out,
                                      WriterStatus& status) {
  found = false;
  // Rows built by a replica::Table: copy names so the views outlive the file lookups.
  auto from_rel = [&](const RelationInfo& rel, std::string_view tuple) {
    out.tuple.assign(tuple);
    out.names = rel.names;
    out.columns.clear();
    for (size_t i = 0; i < rel.columns.size(); ++i) {
      frame::Column c = rel.columns[i];
      c.name = out.names[i];
      out.columns.push_back(c);
    }
  };
  for (size_t i = staged.size(); i-- > 0;) {
    const Op& op = staged[i];
    if (op.table == table && op.key == key) {
      if (!op.tombstone) {
        from_rel(*op.rel, op.value);
        found = true;
      }
      return true;
    }
  }
  if (auto it = pending.find(NodeKey{table, key}, NodeLess{}); it != pending.end()) {
    if (!it->tombstone) {
      from_rel(*it->rel, it->value);
      found = true;
    }
    return true;
  }
  // Spill runs hold newer rows than the published files.
  for (const std::vector<LiveFile>* list : {&spilled, &files}) {
    const int r = find_in_files(*list, table, key, found, out, status);
    if (r != 0) return r > 0;
  }
  return true;
}

int TenantWriter::Impl::find_in_files(const std::vector<LiveFile>& list, std::string_view table,
                                      std::string_view key, bool& found, OldRow& out,
                                      WriterStatus& status) {
  for (size_t i = list.size(); i-- > 0;) {
    const replica::ReplicaFile& f = list[i].file;
    for (const replica::Table& t : f.tables()) {
      if (t.schema.size() + 1 + t.name.size() != table.size() || table != t.schema + "." + t.name) {
        continue;
      }
      std::string_view value;
      const replica::Status st = f.get(t.table_no, key, cache, value);
      if (st.code == replica::Code::kNotFound) break;
      if (st.code == replica::Code::kTombstone) return 1;
      if (!st.ok()) {
        status = file_status(st, f.path());
        return -1;
      }
      out.tuple.assign(value);
      out.names.clear();
      for (const replica::Column& c : t.columns) out.names.push_back(c.name);
      out.columns.clear();
      for (size_t c = 0; c < t.columns.size(); ++c) {
        frame::Column fc{out.names[c], t.columns[c].type_oid, t.columns[c].typmod, t.columns[c].key};
        fc.attnum = t.columns[c].attnum;
        out.columns.push_back(fc);
      }
      found = true;
      return 1;
    }
  }
  return 0;
}

WriterStatus TenantWriter::Impl::stage_row(const std::shared_ptr<const RelationInfo>& rel,
                                           const frame::Tuple& row, const frame::Tuple* old_key,
                                           std::vector<Op>& ops) {
  const std::string table = rel->qualified();
  Op op;
  op.rel = rel;
  op.table = table;
  if (CodecStatus st = encode_row_key(op.key, rel->columns, row); !st.ok()) {
    return fail(WriterStatus::kBadMessage, table + ": " + st.message);
  }
  std::string old;
  if (old_key != nullptr) {
    if (CodecStatus st = encode_row_key(old, rel->columns, *old_key); !st.ok()) {
      return fail(WriterStatus::kBadMessage, table + ": old key: " + st.message);
    }
  }
  RowView view;
  if (CodecStatus st = view.assign(rel->columns, row); !st.ok()) {
    return fail(WriterStatus::kBadMessage, table + ": " + st.message);
  }
  std::vector<frame::Value> values(view.size());
  bool toast = false;
  for (size_t i = 0; i < view.size(); ++i) {
    values[i] = view.value(i);
    toast |= values[i].kind == frame::ValueKind::kUnchangedToast;
  }
  OldRow old_row;
  RowView old_view;
  if (toast) {
    // An unchanged TOASTed value was not sent: keep the stored row's value of that column.
    bool found = false;
    WriterStatus status;
    const std::string& lookup = old_key != nullptr ? old : op.key;
    if (!find_old_row(ops, table, lookup, found, old_row, status)) return status;
    if (!found) {
      return fail(WriterStatus::kMissingRow,
                  table + ": update with an unchanged toasted value of a row not in the replica");
    }
    if (CodecStatus st = old_view.parse(old_row.columns, old_row.tuple); !st.ok()) {
      return fail(WriterStatus::kCorrupt, table + ": stored row: " + st.message);
    }
    for (size_t i = 0; i < values.size(); ++i) {
      if (values[i].kind != frame::ValueKind::kUnchangedToast) continue;
      const int j = find_column(old_row.columns, rel->columns[i]);
      if (j < 0 || old_view.value(j).kind == frame::ValueKind::kUnchangedToast) {
        return fail(WriterStatus::kMissingRow,
                    table + ": no stored value for unchanged toasted column " +
                        std::string(rel->columns[i].name));
      }
      values[i] = old_view.value(j);
    }
  }
  append_tuple(op.value, values);
  if (old_key != nullptr && old != op.key) {
    Op gone;
    gone.rel = rel;
    gone.table = table;
    gone.key = std::move(old);
    gone.tombstone = true;
    ops.push_back(std::move(gone));
  }
  ops.push_back(std::move(op));
  return {};
}

WriterStatus TenantWriter::Impl::stage_frame(const RelationMap& relations, frame::Reader& reader,
                                             size_t i, std::vector<Op>& ops, uint64_t commit_lsn,
                                             int64_t& commit_time, uint64_t& end_lsn) {
  {
    frame::MessageCursor cursor = reader.messages();
    frame::Message m;
    while (cursor.next(m)) {
      // The description in effect where this frame's changes were made (a transaction may
      // change a table before and after altering it).
      const StreamPoint at{commit_lsn, reader.header().last_lsn};
      auto relation_of = [&](uint32_t relid, std::shared_ptr<const RelationInfo>& rel) {
        rel = relations.find(relid, at);
        return rel != nullptr;
      };
      std::shared_ptr<const RelationInfo> rel;
      WriterStatus st;
      if (auto* ins = std::get_if<frame::Insert>(&m)) {
        if (!relation_of(ins->relid, rel))
          st = fail(WriterStatus::kBadMessage,
                    "insert into unknown relid " + std::to_string(ins->relid));
        else
          st = stage_row(rel, ins->new_tuple, nullptr, ops);
      } else if (auto* upd = std::get_if<frame::Update>(&m)) {
        if (!relation_of(upd->relid, rel))
          st = fail(WriterStatus::kBadMessage,
                    "update of unknown relid " + std::to_string(upd->relid));
        else
          st = stage_row(rel, upd->new_tuple, upd->has_old_key ? &upd->old_key : nullptr, ops);
      } else if (auto* del = std::get_if<frame::Delete>(&m)) {
        if (!relation_of(del->relid, rel)) {
          st = fail(WriterStatus::kBadMessage,
                    "delete from unknown relid " + std::to_string(del->relid));
        } else {
          Op op;
          op.rel = rel;
          op.table = rel->qualified();
          op.tombstone = true;
          if (CodecStatus cs = encode_row_key(op.key, rel->columns, del->old_key); !cs.ok()) {
            st = fail(WriterStatus::kBadMessage, op.table + ": " + cs.message);
          } else {
            ops.push_back(std::move(op));
          }
        }
      } else if (auto* b = std::get_if<frame::Begin>(&m)) {
        if (b->commit_lsn != commit_lsn)
          st = fail(WriterStatus::kBadGroup, "begin's commit lsn differs from the frames'");
      } else if (auto* c = std::get_if<frame::Commit>(&m)) {
        if (c->commit_lsn != commit_lsn)
          st = fail(WriterStatus::kBadGroup, "commit's commit lsn differs from the frames'");
        commit_time = c->commit_time_us;
        end_lsn = c->end_lsn;
      } else if (std::holds_alternative<frame::TenantMoved>(m)) {
        // Routing information for the daemon, no row change.
      } else {
        st = fail(WriterStatus::kBadGroup,
                  "unexpected message in a tenant frame group (relation, "
                  "truncate and keepalive come in many-tenants frames)");
      }
      if (!st.ok()) return st;
    }
    if (!cursor.status().ok()) {
      return fail(WriterStatus::kBadMessage,
                  "frame " + std::to_string(i) + " of the group: " + cursor.status().message);
    }
  }
  return {};
}

WriterStatus TenantWriter::Impl::commit_ops(std::string_view shard, std::vector<Op>& ops,
                                            uint64_t position,
                                            std::optional<int64_t> commit_time) {
  // A delta holds one description per table: every pending row of a table takes the newest
  // description among the pending rows' and the group's (schema on write for the pending set; a
  // transaction that altered a table in its middle brings both). Projections are prepared first,
  // so that a change the stored rows cannot follow (a type change) fails before anything moved.
  // Spill runs keep their own descriptions (read under the newest, as older files are), but
  // their rows must be readable under it.
  std::map<std::string_view, std::shared_ptr<const RelationInfo>> newest;
  for (const Op& op : ops) {
    auto [it, fresh] = newest.emplace(op.table, op.rel);
    if (!fresh && it->second->at < op.rel->at) it->second = op.rel;
  }
  for (auto& [table, rel] : newest) {
    auto p = pending_rel.find(table);
    if (p != pending_rel.end() && rel->at < p->second->at) rel = p->second;
    auto q = spilled_rel.find(table);
    if (q != spilled_rel.end() && rel->at < q->second->at) rel = q->second;
  }
  std::map<std::pair<const RelationInfo*, const RelationInfo*>, Projection> projections;
  auto projection = [&](const std::shared_ptr<const RelationInfo>& from,
                        const std::shared_ptr<const RelationInfo>& to, WriterStatus& st) -> const Projection* {
    auto [it, fresh] = projections.try_emplace({from.get(), to.get()});
    std::string why;
    if (fresh && !it->second.build(from->columns, to->columns, why)) {
      st = fail(WriterStatus::kBadMessage, to->qualified() + ": " + why +
                                              " (the table was rewritten: its rows must be copied again)");
      return nullptr;
    }
    return &it->second;
  };
  WriterStatus st;
  for (const Op& op : ops) {
    const auto& to = newest.at(op.table);
    if (!op.tombstone && !to->same_shape(*op.rel) && projection(op.rel, to, st) == nullptr) return st;
  }
  for (const auto& [table, to] : newest) {
    auto p = pending_rel.find(table);
    if (p != pending_rel.end() && !p->second->same_shape(*to) && projection(p->second, to, st) == nullptr) {
      return st;
    }
    auto q = spilled_rel.find(table);
    if (q != spilled_rel.end() && !q->second->same_shape(*to) && projection(q->second, to, st) == nullptr) {
      return st;
    }
  }
  // Pending rows of a table whose description moved on are re-encoded under the new one.
  for (const auto& [table, to] : newest) {
    auto p = pending_rel.find(table);
    if (p == pending_rel.end() || p->second->same_shape(*to)) continue;
    if (WriterStatus rs = reshape_pending(table, projections.at({p->second.get(), to.get()}), to); !rs.ok()) {
      return rs;
    }
  }
  for (Op& op : ops) {
    const auto& to = newest.at(op.table);
    if (!op.tombstone && !to->same_shape(*op.rel)) {
      std::string value;
      if (CodecStatus cs = projections.at({op.rel.get(), to.get()}).apply(op.value, value); !cs.ok()) {
        return fail(WriterStatus::kBadMessage, op.table + ": " + cs.message);
      }
      op.value = std::move(value);
    }
    op.rel = to;
  }
  // From here on nothing fails but memory.
  for (Op& op : ops) {
    auto it = pending.find(NodeKey{op.table, op.key}, NodeLess{});
    Node* node = nullptr;
    if (it == pending.end()) {
      auto fresh = std::make_unique<Node>();
      fresh->table = op.table;
      fresh->key = std::move(op.key);
      node = fresh.get();
      pending.insert(*fresh.release());
    } else {
      node = &*it;
      pending_bytes -= node_bytes(*node);
    }
    node->tombstone = op.tombstone;
    node->value = std::move(op.value);
    node->rel = op.rel;
    pending_bytes += node_bytes(*node);
    pending_rel[op.table] = op.rel;
  }
  if (shard.empty()) return {};  // rows of an initial copy: no stream position moves
  auto pit = positions.find(shard);
  if (pit == positions.end()) {
    pit = positions.emplace(std::string(shard), ShardPosition{}).first;
    pit->second.shard = std::string(shard);
  }
  // Transactions arrive in commit order: every one below `position` was delivered.
  if (position > pit->second.applied) {
    pit->second.applied = position;
    dirty = true;
  }
  if (commit_time && *commit_time > pit->second.commit_time_us) {
    pit->second.commit_time_us = *commit_time;
    dirty = true;
  }
  return {};
}

WriterStatus TenantWriter::Impl::reshape_pending(std::string_view table, const Projection& p,
                                                 const std::shared_ptr<const RelationInfo>& to) {
  std::vector<std::pair<Node*, std::string>> rows;
  for (auto it = pending.lower_bound(NodeKey{table, ""}, NodeLess{});
       it != pending.end() && it->table == table; ++it) {
    if (it->tombstone) continue;
    std::string value;
    if (CodecStatus cs = p.apply(it->value, value); !cs.ok()) {
      return fail(WriterStatus::kBadMessage, std::string(table) + ": pending row: " + cs.message);
    }
    rows.emplace_back(&*it, std::move(value));
  }
  for (auto& [node, value] : rows) {
    pending_bytes -= node_bytes(*node);
    node->value = std::move(value);
    pending_bytes += node_bytes(*node);
  }
  for (auto it = pending.lower_bound(NodeKey{table, ""}, NodeLess{});
       it != pending.end() && it->table == table; ++it) {
    it->rel = to;
  }
  pending_rel[std::string(table)] = to;
  return {};
}

std::shared_ptr<const RelationInfo> TenantWriter::Impl::current_relation(std::string_view table) const {
  if (auto p = pending_rel.find(table); p != pending_rel.end()) return p->second;
  if (auto q = spilled_rel.find(table); q != spilled_rel.end()) return q->second;
  for (size_t i = files.size(); i-- > 0;) {
    for (const replica::Table& t : files[i].file.tables()) {
      if (t.schema.size() + 1 + t.name.size() == table.size() && table == t.schema + "." + t.name) {
        return RelationInfo::from_table(t);
      }
    }
  }
  return nullptr;
}

WriterStatus TenantWriter::apply_relation(std::string_view shard,
                                          const std::shared_ptr<const RelationInfo>& rel,
                                          uint64_t commit_lsn, bool* changed) {
  Impl& s = *impl_;
  if (changed != nullptr) *changed = false;
  if (s.failed) return fail(WriterStatus::kFailed, "tenant writer is not open (or failed): reopen");
  // Described again by a transaction this tenant already has (resent after a restart): an older
  // description must not replace a newer one.
  if (commit_lsn < pending_position(shard)) return {};
  const std::string table = rel->qualified();
  const std::shared_ptr<const RelationInfo> current = s.current_relation(table);
  if (current == nullptr || current->same_shape(*rel)) return {};
  Projection p;
  std::string why;
  if (!p.build(current->columns, rel->columns, why)) {
    return fail(WriterStatus::kBadMessage,
                table + ": " + why + " (the table was rewritten: its rows must be copied again)");
  }
  if (WriterStatus st = s.reshape_pending(table, p, rel); !st.ok()) return st;
  if (changed != nullptr) *changed = true;
  return {};
}

WriterStatus TenantWriter::Impl::check_group(FrameSource& frames, uint64_t& commit_lsn,
                                             int64_t& commit_time) const {
  if (failed) return fail(WriterStatus::kFailed, "tenant writer is not open (or failed): reopen");
  frames.rewind();
  std::span<const uint8_t> bytes;
  size_t i = 0;
  bool last = false;
  for (; frames.next(bytes); ++i) {
    if (last) return fail(WriterStatus::kBadGroup, "last flag before the end of the group");
    frame::Header h;
    if (frame::Status st = frame::parse_header(bytes, h); !st.ok()) {
      return fail(WriterStatus::kBadMessage,
                  "frame " + std::to_string(i) + " of the group: " + st.message);
    }
    if (h.frame_length != bytes.size()) {
      return fail(WriterStatus::kBadGroup,
                  "frame " + std::to_string(i) + " is not exactly one frame");
    }
    if (h.many_tenants || h.tenant_key != tenant) {
      return fail(WriterStatus::kBadGroup,
                  "frame " + std::to_string(i) + " is not of tenant " + tenant);
    }
    if (i == 0) {
      commit_lsn = h.commit_lsn;
      commit_time = h.commit_time_us;
    } else if (h.commit_lsn != commit_lsn) {
      return fail(WriterStatus::kBadGroup, "frames of different transactions in one group");
    }
    if (h.sequence != i) {
      return fail(WriterStatus::kBadGroup, "frame sequence " + std::to_string(h.sequence) +
                                               " where " + std::to_string(i) + " was expected");
    }
    last = h.last;
  }
  // A frame source that cannot be read is the machine's trouble (a spilled group's file).
  if (!frames.error().empty()) return fail(WriterStatus::kIo, frames.error());
  if (i == 0) return fail(WriterStatus::kBadGroup, "empty frame group");
  if (!last) return fail(WriterStatus::kBadGroup, "group does not end with its last frame");
  return {};
}

WriterStatus TenantWriter::Impl::apply_frames(std::string_view shard, const RelationMap& relations,
                                              FrameSource& frames, uint64_t commit_lsn,
                                              int64_t commit_time) {
  const size_t budget = options.pending_memory_bytes;
  std::vector<Op> ops;
  size_t ops_size = 0;  // op_bytes() of ops
  bool in_pieces = false;  // part of the group is in the pending set (or a spill run) already
  // After a piece went in, a failure would leave half a transaction pending: fail the writer.
  auto broken = [&](WriterStatus st) {
    if (in_pieces) {
      failed = true;
      st.message += " (part of the group was applied: the writer must be reopened)";
    }
    return st;
  };
  // Commits the staged ops (no position moves), then spills past the budget.
  auto commit_piece = [&]() -> WriterStatus {
    if (WriterStatus st = commit_ops({}, ops, 0, std::nullopt); !st.ok()) return st;
    in_pieces = true;
    ops.clear();
    ops_size = 0;
    if (budget != 0 && pending_bytes > budget) return spill_pending();
    return {};
  };
  uint64_t end_lsn = 0;
  frame::Reader reader;
  frames.rewind();
  std::span<const uint8_t> bytes;
  for (size_t i = 0; frames.next(bytes); ++i) {
    if (frame::Status st = reader.open(bytes); !st.ok()) {
      return broken(fail(WriterStatus::kBadMessage, "frame " + std::to_string(i) + " of the group: " +
                                                        frame::error_name(st.error) + ": " + st.message));
    }
    const size_t before = ops.size();
    if (WriterStatus st = stage_frame(relations, reader, i, ops, commit_lsn, commit_time, end_lsn); !st.ok()) {
      return broken(st);
    }
    for (size_t k = before; k < ops.size(); ++k) ops_size += op_bytes(ops[k]);
    if (budget != 0 && pending_bytes + ops_size > budget) {
      if (WriterStatus st = commit_piece(); !st.ok()) return broken(st);
    }
  }
  if (!frames.error().empty()) return broken(fail(WriterStatus::kIo, frames.error()));
  // No other transaction's commit starts inside this one's commit record: the position may move
  // to its end, which is where a bookmark taken after the commit points (edgeshard.bookmark()).
  // Rows of an initial copy (shard empty) move no stream position.
  const uint64_t position = std::max(commit_lsn + 1, end_lsn);
  if (WriterStatus st = shard.empty() ? commit_ops(shard, ops, 0, std::nullopt)
                                      : commit_ops(shard, ops, position, commit_time);
      !st.ok()) {
    return broken(st);
  }
  if (budget != 0 && pending_bytes > budget) {
    // The whole group is in: a failed spill leaves it pending (and its I/O error stops the writer).
    if (WriterStatus st = spill_pending(); !st.ok()) return st;
  }
  return {};
}

WriterStatus TenantWriter::apply_group_unguarded(std::string_view shard, const RelationMap& relations,
                                                 FrameSource& frames, bool* skipped) {
  Impl& s = *impl_;
  if (skipped != nullptr) *skipped = false;
  uint64_t commit_lsn = 0;
  int64_t commit_time = 0;
  if (WriterStatus st = s.check_group(frames, commit_lsn, commit_time); !st.ok()) return st;
  if (commit_lsn < pending_position(shard)) {
    if (skipped != nullptr) *skipped = true;
    return {};
  }
  return s.apply_frames(shard, relations, frames, commit_lsn, commit_time);
}

WriterStatus TenantWriter::apply_copy_unguarded(const RelationMap& relations, FrameSource& frames) {
  Impl& s = *impl_;
  uint64_t commit_lsn = 0;
  int64_t commit_time = 0;
  if (WriterStatus st = s.check_group(frames, commit_lsn, commit_time); !st.ok()) return st;
  return s.apply_frames({}, relations, frames, commit_lsn, commit_time);
}

WriterStatus TenantWriter::apply_truncate_unguarded(std::string_view shard, const RelationMap& relations,
                                                    std::span<const uint32_t> relids, uint64_t commit_lsn,
                                                    bool* skipped) {
  Impl& s = *impl_;
  if (skipped != nullptr) *skipped = false;
  if (s.failed) return fail(WriterStatus::kFailed, "tenant writer is not open (or failed): reopen");
  if (commit_lsn < pending_position(shard)) {
    if (skipped != nullptr) *skipped = true;
    return {};
  }
  // A TRUNCATE removes the rows of the shard it ran on: a tenant that never had a transaction
  // from that shard (no commit time recorded for it) holds none of them.
  if (auto it = s.positions.find(shard);
      it == s.positions.end() || it->second.commit_time_us == 0) {
    return {};
  }
  // Every live key of those tables, pending or in the files, gets a tombstone: the truncate is
  // then an ordinary pending change, published (or lost in a crash) with the rest.
  std::vector<Op> ops;
  for (uint32_t relid : relids) {
    std::shared_ptr<const RelationInfo> rel = relations.find(relid);
    if (rel == nullptr) {
      return fail(WriterStatus::kBadMessage, "truncate of unknown relid " + std::to_string(relid));
    }
    const std::string table = rel->qualified();
    std::set<std::string> keys;
    std::vector<const LiveFile*> stored;
    for (const LiveFile& lf : s.files) stored.push_back(&lf);
    for (const LiveFile& lf : s.spilled) stored.push_back(&lf);  // rows of this flush already spilled
    for (const LiveFile* file : stored) {
      const LiveFile& lf = *file;
      for (const replica::Table& t : lf.file.tables()) {
        if (t.schema + "." + t.name != table) continue;
        replica::Scan scan = lf.file.scan(t.table_no, "", std::nullopt, s.cache);
        replica::Record r;
        replica::Status st;
        while ((st = scan.next(r)).ok()) {
          if (!r.tombstone) keys.emplace(r.key);
        }
        if (st.failed()) return file_status(st, lf.file.path());
        lf.file.release_pages();  // a whole table read: keep none of it resident
      }
    }
    for (auto it = s.pending.lower_bound(NodeKey{table, ""}, NodeLess{});
         it != s.pending.end() && it->table == table; ++it) {
      if (!it->tombstone) keys.insert(it->key);
    }
    for (const std::string& k : keys) {
      Op op;
      op.rel = rel;
      op.table = table;
      op.key = k;
      op.tombstone = true;
      ops.push_back(std::move(op));
    }
  }
  return s.commit_ops(shard, ops, commit_lsn + 1, std::nullopt);
}

namespace {

// Writes a replica file into dir under a temp name, then renames it into place and fsyncs dir;
// fill() adds tables and records. Nothing remains on failure. Touches no writer state.
WriterStatus write_replica_file(const fs::path& dir, const std::string& tenant, bool compress,
                                uint64_t sequence, replica::FileKind kind, const char* prefix,
                                const std::function<replica::Status(replica::Writer&)>& fill,
                                FileEntry& entry, bool sync = true) {
  const std::string name = file_name(prefix, sequence);
  const fs::path tmp = dir / (name + ".tmp");
  const fs::path path = dir / name;
  {
    replica::Writer w;  // removes its file unless finish() succeeded
    replica::Writer::Options o;
    o.kind = kind;
    o.sequence = sequence;
    o.tenant_key = tenant;
    o.compress = compress;
    o.sync = sync;
    replica::Status st = w.create(tmp.string(), o);
    if (st.ok()) st = fill(w);
    if (st.ok()) st = w.finish();
    if (!st.ok()) {
      return {st.code == replica::Code::kIo ? WriterStatus::kIo : WriterStatus::kFailed,
              replica::describe(st, tmp.string()), st.sys_errno};
    }
    entry.kind = kind == replica::FileKind::kBase ? FileKind::kBase : FileKind::kDelta;
    entry.name = name;
    entry.records = w.record_count();
    entry.bytes = w.bytes_written();
  }
  std::error_code ec;
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    fs::remove(tmp, ec);
    return {WriterStatus::kIo, "could not rename " + tmp.string() + ": " + errno_text(e), e};
  }
  std::string why;
  if (sync && !fsync_directory(dir, why)) {
    const int e = errno;
    fs::remove(path, ec);
    return {WriterStatus::kIo, why, e};
  }
  return {};
}

}  // namespace

WriterStatus TenantWriter::Impl::write_file(
    replica::FileKind kind, const char* prefix,
    const std::function<replica::Status(replica::Writer&)>& fill, LiveFile& out, bool sync) {
  const uint64_t sequence = next_sequence++;
  if (WriterStatus st = write_replica_file(dir, tenant, options.compress, sequence, kind, prefix, fill, out.entry, sync);
      !st.ok()) {
    return st;
  }
  const fs::path path = dir / out.entry.name;
  if (replica::Status st = out.file.open(path.string()); !st.ok()) {
    std::error_code ec;
    fs::remove(path, ec);
    return file_status(st, path.string());
  }
  return {};
}

WriterStatus TenantWriter::Impl::publish(const Manifest& m, bool sync) {
  std::string why;
  int err = 0;
  if (!write_manifest(dir, m, why, sync, &err)) {
    // Out of space before the rename (the temp file could not be written): the previous manifest
    // is in place, as the one on disk shows, and the writer goes on. Otherwise the rename may or
    // may not have happened: only a reopen knows which manifest is in place.
    Manifest on_disk;
    std::string unused;
    if (!posix::is_out_of_space(err) || !read_manifest(dir, on_disk, unused) ||
        on_disk.generation != manifest.generation) {
      failed = true;
      return fail(WriterStatus::kIo, why);
    }
    return {WriterStatus::kIo, why, err};
  }
  head.publish(m.generation);
  manifest = m;
  return {};
}

WriterStatus TenantWriter::Impl::stage_files(bool sync, bool* wrote_file) {
  if (wrote_file != nullptr) *wrote_file = false;
  if (failed) return fail(WriterStatus::kFailed, "tenant writer is not open (or failed): reopen");
  if (!spilled.empty()) {
    // Spill runs were written unsynced: the caller's sync (or ours) makes them durable before a
    // manifest names them.
    if (wrote_file != nullptr) *wrote_file = true;
    if (sync) {
      std::string why;
      for (const LiveFile& lf : spilled) {
        if (!fsync_file(dir / lf.entry.name, why)) return fail(WriterStatus::kIo, why);
      }
      if (!fsync_directory(dir, why)) return fail(WriterStatus::kIo, why);
    }
  }
  if (staged || pending_rel.empty()) return {};
  LiveFile added;
  auto fill = [&](replica::Writer& w) { return fill_pending(w); };
  if (WriterStatus st = write_file(replica::FileKind::kDelta, "delta", fill, added, sync); !st.ok()) {
    return st;  // nothing visible changed; pending stays pending
  }
  staged = std::move(added);
  if (wrote_file != nullptr) *wrote_file = true;
  return {};
}

WriterStatus TenantWriter::Impl::publish_staged(bool sync) {
  if (failed) return fail(WriterStatus::kFailed, "tenant writer is not open (or failed): reopen");
  if (!staged && pending_rel.empty() && spilled.empty() && !dirty) return {};
  if (!staged && !pending_rel.empty()) {
    if (WriterStatus st = stage_files(sync, nullptr); !st.ok()) return st;
  }
  Manifest next = manifest;
  next.generation = manifest.generation + 1;
  next.published = published;
  next.shards.clear();
  for (const auto& [name, p] : positions) next.shards.push_back(p);
  // The spill runs, oldest first, then the final delta: one manifest, so readers see the
  // transactions they hold all at once.
  for (const LiveFile& lf : spilled) next.files.push_back(lf.entry);
  if (staged) next.files.push_back(staged->entry);
  if (WriterStatus st = publish(next, sync); !st.ok()) return st;
  for (LiveFile& lf : spilled) files.push_back(std::move(lf));
  spilled.clear();
  spilled_rel.clear();
  if (staged) {
    files.push_back(std::move(*staged));
    staged.reset();
  }
  clear_pending();
  dirty = false;
  return {};
}

WriterStatus TenantWriter::Impl::flush_impl() {
  if (WriterStatus st = stage_files(true, nullptr); !st.ok()) return st;
  WriterStatus st = publish_staged(true);
  if (!st.ok() && !failed) abandon_staged();  // out of space: the next flush stages again
  return st;
}

void TenantWriter::Impl::abandon_staged() {
  if (!staged) return;
  const fs::path path = dir / staged->entry.name;
  staged.reset();  // unmapped before it goes
  std::error_code ec;
  fs::remove(path, ec);  // listed nowhere: open() would remove it too
}

bool WriterStatus::out_of_space() const noexcept {
  return kind == kIo && posix::is_out_of_space(sys_errno);
}

void TenantWriter::abandon_flush() { impl_->abandon_staged(); }

WriterStatus TenantWriter::flush() {
  return guarded([&] { return impl_->flush_impl(); });
}


WriterStatus TenantWriter::stage_flush(bool* wrote_file) {
  return guarded([&] { return impl_->stage_files(false, wrote_file); });
}

WriterStatus TenantWriter::publish_flush() {
  return guarded([&] { return impl_->publish_staged(false); });
}

// A compaction's inputs (mapped again, for its own thread) and its result.
struct Compaction::Impl {
  fs::path dir;
  std::string tenant;
  bool compress = true;
  uint64_t sequence = 0;  // of the new base, reserved by start_compaction()
  struct Input {
    FileEntry entry;
    replica::ReplicaFile file;
  };
  std::vector<Input> inputs;  // the writer's files when it started, oldest first
  // Tables by name: the newest file's description and the table's number in each input.
  struct Merged {
    replica::Table table;
    std::vector<int64_t> numbers;  // per input, -1 when absent
  };
  std::map<std::string, Merged> tables;
  bool to_base = true;  // the inputs start at the oldest file: a base, tombstones dropped
  // A merge reads each input once, in order (each scan holds its current block): a small cache.
  replica::BlockCache cache{size_t{1} << 20};
  bool ran = false;
  WriterStatus status;  // of run()
  FileEntry base;       // run()'s output
};

Compaction::Compaction() : impl_(std::make_unique<Impl>()) {}
Compaction::~Compaction() {
  // A base that was written but never installed is not listed anywhere: remove it now (open()
  // would remove it at the next start anyway).
  if (impl_ && impl_->ran && impl_->status.ok() && !impl_->base.name.empty()) {
    std::error_code ec;
    fs::remove(impl_->dir / impl_->base.name, ec);
  }
}

WriterStatus Compaction::run_unguarded() {
  Impl& c = *impl_;
  c.ran = true;
  // A failure reading one of the merged files: that file is named (not the new base), and a
  // corrupt input marks the tenant's replica corrupt rather than failing the writer.
  std::optional<WriterStatus> input_failure;
  auto input_failed = [&](const replica::Status& st, size_t i) {
    input_failure = file_status(st, c.inputs[i].file.path());
    return st;
  };
  constexpr uint64_t kReleaseEvery = 16384;  // records merged between release_pages() calls
  uint64_t merged = 0;
  auto fill = [&](replica::Writer& w) -> replica::Status {
    uint32_t no = 0;
    for (auto& [name, m] : c.tables) {
      replica::Table t = m.table;
      t.table_no = ++no;
      if (replica::Status st = w.add_table(t); !st.ok()) return st;
    }
    no = 0;
    for (auto& [name, m] : c.tables) {
      ++no;
      // k-way merge, newest file winning on equal keys.
      struct Head {
        replica::Scan scan;
        replica::Record rec;
        bool live = false;
      };
      std::vector<Head> heads(c.inputs.size());
      // Rows of inputs with an older description of the table are re-encoded under the newest.
      const std::vector<frame::Column> to = frame_columns(m.table.columns);
      std::vector<std::vector<frame::Column>> from(c.inputs.size());
      std::vector<Projection> projection(c.inputs.size());
      std::string projected;
      for (size_t i = 0; i < c.inputs.size(); ++i) {
        if (m.numbers[i] < 0) continue;
        from[i] = frame_columns(c.inputs[i].file.table(static_cast<uint32_t>(m.numbers[i]))->columns);
        std::string why;
        if (!projection[i].build(from[i], to, why)) {
          input_failure = fail(WriterStatus::kFailed, "compaction of " + name + ": " + why);
          return replica::Status{replica::Code::kInvalidArgument, 0, -1, "table descriptions do not merge"};
        }
        heads[i].scan = c.inputs[i].file.scan(static_cast<uint32_t>(m.numbers[i]), "", std::nullopt, c.cache);
        replica::Status st = heads[i].scan.next(heads[i].rec);
        if (st.failed()) return input_failed(st, i);
        heads[i].live = st.ok();
      }
      std::string key;
      for (;;) {
        int best = -1;
        for (size_t i = 0; i < heads.size(); ++i) {
          if (!heads[i].live) continue;
          if (best < 0 || heads[i].rec.key <= heads[static_cast<size_t>(best)].rec.key) {
            best = static_cast<int>(i);  // later (newer) files win ties
          }
        }
        if (best < 0) break;
        const replica::Record& r = heads[static_cast<size_t>(best)].rec;
        key.assign(r.key);
        if (!r.tombstone) {
          std::string_view value = r.value;
          if (!projection[static_cast<size_t>(best)].identity()) {
            if (CodecStatus cs = projection[static_cast<size_t>(best)].apply(r.value, projected); !cs.ok()) {
              input_failure = fail(WriterStatus::kCorrupt, c.inputs[static_cast<size_t>(best)].file.path() +
                                                               ": " + name + ": stored row: " + cs.message);
              return replica::Status{replica::Code::kCorrupt, 0, -1, "a stored row does not decode"};
            }
            value = projected;
          }
          if (replica::Status st = w.add(no, r.key, value); !st.ok()) return st;
        } else if (!c.to_base) {
          if (replica::Status st = w.add_tombstone(no, r.key); !st.ok()) return st;
        }
        // The inputs' pages read so far leave the process's RSS now and then (a merge of a big
        // tenant would otherwise keep every input file resident).
        if (++merged % kReleaseEvery == 0) {
          for (const auto& in : c.inputs) in.file.release_pages();
        }
        for (size_t i = 0; i < heads.size(); ++i) {
          Head& h = heads[i];
          if (!h.live || h.rec.key != key) continue;
          replica::Status st = h.scan.next(h.rec);
          if (st.failed()) return input_failed(st, i);
          h.live = st.ok();
        }
      }
    }
    return {};
  };
  c.status = write_replica_file(c.dir, c.tenant, c.compress, c.sequence,
                                c.to_base ? replica::FileKind::kBase : replica::FileKind::kDelta,
                                c.to_base ? "base" : "delta", fill, c.base);
  if (!c.status.ok() && input_failure) c.status = *input_failure;
  if (!c.status.ok()) c.base = FileEntry{};
  return c.status;
}

WriterStatus TenantWriter::start_compaction_unguarded(bool force, std::unique_ptr<Compaction>& out) {
  Impl& s = *impl_;
  out.reset();
  if (s.failed) return fail(WriterStatus::kFailed, "tenant writer is not open (or failed): reopen");
  if (s.compacting) return {};
  size_t deltas = 0;
  for (const LiveFile& lf : s.files) deltas += lf.entry.kind == FileKind::kDelta ? 1 : 0;
  const bool due = deltas >= std::max<size_t>(s.options.compact_deltas, 1) || (force && deltas > 0);
  if (!due) return {};
  // Runs: adjacent files whose rows can all be read under the run's newest description of each
  // table (schema on read: ALTER TABLE ADD/DROP/RENAME COLUMN keep a run going; a type change
  // starts a new one). The longest run is merged (the newest of equal ones), its older rows
  // re-encoded under the newest descriptions: into a base when it starts at the oldest file
  // (tombstones are then dropped), else into one delta in its place (tombstones kept: older runs
  // may hold those keys).
  size_t best_first = 0, best_len = 0;
  for (size_t first = 0; first < s.files.size();) {
    std::map<std::string, std::vector<const replica::Table*>> shapes;
    size_t end = first;
    for (; end < s.files.size(); ++end) {
      bool fits = true;
      for (const replica::Table& t : s.files[end].file.tables()) {
        auto it = shapes.find(t.schema + "." + t.name);
        if (it == shapes.end()) continue;
        for (const replica::Table* older : it->second) fits = fits && readable_as(*older, t);
      }
      if (!fits) break;
      for (const replica::Table& t : s.files[end].file.tables()) shapes[t.schema + "." + t.name].push_back(&t);
    }
    if (end - first >= best_len) {
      best_first = first;
      best_len = end - first;
    }
    first = end;
  }
  if (best_len < 2) return {};
  auto job = std::unique_ptr<Compaction>(new Compaction());
  Compaction::Impl& c = *job->impl_;
  c.to_base = best_first == 0;
  // Tables by name, with their number in each input (the newest input's description).
  for (size_t i = best_len; i-- > 0;) {
    for (const replica::Table& t : s.files[best_first + i].file.tables()) {
      auto [it, fresh] = c.tables.try_emplace(t.schema + "." + t.name);
      if (fresh) {
        it->second.table = t;
        it->second.numbers.assign(best_len, -1);
      }
      it->second.numbers[i] = t.table_no;
    }
  }
  c.dir = s.dir;
  c.tenant = s.tenant;
  c.compress = s.options.compress;
  for (size_t i = best_first; i < best_first + best_len; ++i) {
    Compaction::Impl::Input in;
    in.entry = s.files[i].entry;
    const std::string path = (s.dir / in.entry.name).string();
    if (replica::Status st = in.file.open(path); !st.ok()) return file_status(st, path);
    c.inputs.push_back(std::move(in));
  }
  c.sequence = s.next_sequence++;
  s.compacting = true;
  out = std::move(job);
  return {};
}

WriterStatus TenantWriter::finish_compaction_unguarded(std::unique_ptr<Compaction> job, bool* compacted) {
  Impl& s = *impl_;
  if (compacted != nullptr) *compacted = false;
  s.compacting = false;
  if (!job) return {};
  Compaction::Impl& c = *job->impl_;
  if (!c.ran) return fail(WriterStatus::kFailed, "compaction finished before it ran");
  if (!c.status.ok()) return c.status;
  if (s.failed) return fail(WriterStatus::kFailed, "tenant writer is not open (or failed): reopen");
  LiveFile base;
  base.entry = c.base;
  const std::string path = (s.dir / c.base.name).string();
  if (replica::Status st = base.file.open(path); !st.ok()) return file_status(st, path);
  // The new base replaces its inputs; deltas flushed while it was merged stay on top of it.
  std::unordered_set<std::string> merged;
  for (const auto& in : c.inputs) merged.insert(in.entry.name);
  // The merged file takes its inputs' place (they are adjacent): older runs before it, newer
  // files, and deltas flushed while it was merged, after it.
  Manifest next = s.manifest;
  next.generation = s.manifest.generation + 1;
  next.files.clear();
  bool placed = false;
  for (const LiveFile& lf : s.files) {
    if (merged.count(lf.entry.name) == 0) {
      next.files.push_back(lf.entry);
    } else if (!placed) {
      next.files.push_back(base.entry);
      placed = true;
    }
  }
  // On failure (a full disk) the writer's files are untouched and the job still owns the new
  // base: its destructor removes it.
  if (WriterStatus st = s.publish(next); !st.ok()) return st;
  c.base = FileEntry{};  // installed: the job no longer owns it
  std::vector<LiveFile> files;
  std::vector<LiveFile> old;
  for (LiveFile& lf : s.files) {
    if (merged.count(lf.entry.name) != 0) {
      if (old.empty()) files.push_back(std::move(base));
      old.push_back(std::move(lf));
    } else {
      files.push_back(std::move(lf));
    }
  }
  s.files = std::move(files);
  // The old files are no longer listed: remove them (readers mapping them keep reading).
  std::error_code ec;
  for (const LiveFile& lf : old) fs::remove(s.dir / lf.entry.name, ec);
  std::string why;
  (void)fsync_directory(s.dir, why);  // best effort: open() removes leftovers
  if (compacted != nullptr) *compacted = true;
  return {};
}

WriterStatus TenantWriter::open(const fs::path& data_dir, std::string_view tenant, const Options& options) {
  return guarded([&] { return open_unguarded(data_dir, tenant, options); });
}

WriterStatus TenantWriter::apply_group(std::string_view shard, const RelationMap& relations,
                                       std::span<const std::span<const uint8_t>> frames, bool* skipped) {
  MemoryFrameSource source(frames);
  return apply_group(shard, relations, source, skipped);
}

WriterStatus TenantWriter::apply_group(std::string_view shard, const RelationMap& relations,
                                       FrameSource& frames, bool* skipped) {
  return guarded([&] { return apply_group_unguarded(shard, relations, frames, skipped); });
}

WriterStatus TenantWriter::apply_copy(const RelationMap& relations,
                                      std::span<const std::span<const uint8_t>> frames) {
  MemoryFrameSource source(frames);
  return guarded([&] { return apply_copy_unguarded(relations, source); });
}

WriterStatus TenantWriter::apply_truncate(std::string_view shard, const RelationMap& relations,
                                          std::span<const uint32_t> relids, uint64_t commit_lsn,
                                          bool* skipped) {
  return guarded([&] { return apply_truncate_unguarded(shard, relations, relids, commit_lsn, skipped); });
}

WriterStatus TenantWriter::start_compaction(bool force, std::unique_ptr<Compaction>& out) {
  return guarded([&] { return start_compaction_unguarded(force, out); });
}

WriterStatus TenantWriter::finish_compaction(std::unique_ptr<Compaction> job, bool* compacted) {
  return guarded([&] { return finish_compaction_unguarded(std::move(job), compacted); });
}

WriterStatus Compaction::run() {
  return guarded([&] { return run_unguarded(); });
}

WriterStatus TenantWriter::compact(bool force, bool* compacted) {
  if (compacted != nullptr) *compacted = false;
  std::unique_ptr<Compaction> job;
  if (WriterStatus st = start_compaction(force, job); !st.ok() || !job) return st;
  job->run();
  return finish_compaction(std::move(job), compacted);
}

}  // namespace edgeshard::apply

// TenantReplica: snapshots of manifest + mapped files, merged lookups and scans, wait_for.
#include "edge_apply/tenant_replica.hpp"

#include "common/lsn.hpp"

#include <algorithm>
#include <thread>
#include <unordered_map>

namespace edgeshard::apply {

// The files of one manifest, mapped, and the tables they hold.
struct TenantReplica::Snapshot {
  Manifest manifest;
  bool broken = false;  // the daemon stopped applying this tenant: only the manifest vouches
  std::vector<replica::ReplicaFile> files;  // manifest order: base first, newest delta last
  std::vector<TableView> tables;
};

namespace {

// A failure of a replica file as a ReplicaStatus.
ReplicaStatus file_failure(const replica::Status& st, const std::string& path) {
  return {st.code == replica::Code::kIo ? ReplicaStatus::kIo : ReplicaStatus::kCorrupt,
          replica::describe(st, path)};
}

// Sets row's tuple to `stored` read under the table's newest description (re-encoded into buffer
// when file i has an older one).
ReplicaStatus project_row(const TableView& table, size_t i, std::string_view stored, std::string& buffer,
                          RowRef& row) {
  row.columns = &table.columns;
  if (table.projection[i].identity()) {
    row.tuple = stored;
    return {};
  }
  if (!table.unreadable[i].empty()) return {ReplicaStatus::kNotPublished, table.unreadable[i]};
  if (CodecStatus st = table.projection[i].apply(stored, buffer); !st.ok()) {
    return {ReplicaStatus::kCorrupt, table.schema + "." + table.name + ": stored row: " + st.message};
  }
  row.tuple = buffer;
  return {};
}

}  // namespace

std::vector<frame::Column> frame_columns(const std::vector<replica::Column>& cols) {
  std::vector<frame::Column> out;
  out.reserve(cols.size());
  for (const replica::Column& c : cols) {
    out.push_back({c.name, c.type_oid, c.typmod, c.key, c.attnum, c.has_missing,
                   static_cast<frame::ValueKind>(c.missing_kind), c.missing});
  }
  return out;
}

TenantReplica::TenantReplica() = default;
TenantReplica::~TenantReplica() = default;
TenantReplica::TenantReplica(TenantReplica&&) noexcept = default;
TenantReplica& TenantReplica::operator=(TenantReplica&&) noexcept = default;

ReplicaStatus TenantReplica::open(const std::filesystem::path& data_dir, std::string_view tenant) {
  data_dir_ = data_dir;
  tenant_ = std::string(tenant);
  dir_ = tenant_dir(data_dir, tenant);
  head_ = HeadReader();  // opened again (wait_for() retries open())
  snapshot_.reset();
  generation_ = 0;
  std::string why;
  if (!head_.open(dir_, why)) {
    return {ReplicaStatus::kNotPublished, "tenant " + std::string(tenant) + " has no replica here (" + why + ")"};
  }
  generation_ = head_.generation();
  std::shared_ptr<const Snapshot> snap;
  if (ReplicaStatus st = load(snap); !st.ok()) return st;
  snapshot_ = std::move(snap);
  return {};
}

ReplicaStatus TenantReplica::load(std::shared_ptr<const Snapshot>& out) const {
  auto snap = std::make_shared<Snapshot>();
  std::string why;
  // The manifest names files that a later compaction may remove: a reader that loses that race
  // reads the newer manifest (a few tries; each is a rename away from consistent).
  for (int attempt = 0;; ++attempt) {
    if (!read_manifest(dir_, snap->manifest, why)) {
      // Removed by the apply daemon meanwhile (a copy discarded: it removes `head` first, see
      // remove_tenant_dir()): no replica here, not a damaged one.
      std::error_code ec;
      if (!std::filesystem::exists(dir_ / "head", ec)) {
        return {ReplicaStatus::kNotPublished, "tenant " + tenant_ + " has no replica here (removed)"};
      }
      return {ReplicaStatus::kCorrupt, why};
    }
    if (!snap->manifest.published) {
      return {ReplicaStatus::kNotPublished,
              "tenant " + snap->manifest.tenant + " is still being copied (initial copy not complete)"};
    }
    snap->files.clear();
    bool vanished = false;
    for (const FileEntry& f : snap->manifest.files) {
      replica::ReplicaFile file;
      const std::string path = (dir_ / f.name).string();
      const replica::Status st = file.open(path);
      if (st.code == replica::Code::kIo && st.sys_errno == ENOENT && attempt < 3) {
        vanished = true;
        break;
      }
      if (st.code == replica::Code::kIo && st.sys_errno == ENOENT) {
        // Still gone after re-reading the manifest: the manifest names a file that is not there.
        return {ReplicaStatus::kCorrupt, "manifest names a missing file: " + replica::describe(st, path)};
      }
      if (!st.ok()) return file_failure(st, path);
      snap->files.push_back(std::move(file));
    }
    if (!vanished) break;
  }
  // A `broken` or `resync` marker (FORMAT.md) means the shard position files no longer speak for
  // it: its own manifest's positions are its freshness.
  std::error_code ec;
  snap->broken = std::filesystem::exists(dir_ / "broken", ec) || std::filesystem::exists(dir_ / "resync", ec);
  // Tables: described by the newest file holding them; numbered per file.
  std::unordered_map<std::string, size_t> index;
  for (size_t i = snap->files.size(); i-- > 0;) {
    for (const replica::Table& t : snap->files[i].tables()) {
      const std::string qualified = t.schema + "." + t.name;
      auto [it, fresh] = index.emplace(qualified, snap->tables.size());
      if (fresh) {
        TableView v;
        v.schema = t.schema;
        v.name = t.name;
        v.columns = t.columns;
        v.table_no.assign(snap->files.size(), -1);
        snap->tables.push_back(std::move(v));
      }
      snap->tables[it->second].table_no[i] = t.table_no;
    }
  }
  std::sort(snap->tables.begin(), snap->tables.end(), [](const TableView& a, const TableView& b) {
    return std::tie(a.schema, a.name) < std::tie(b.schema, b.name);
  });
  // Schema on read: the views are taken now that tables and files no longer move.
  for (TableView& v : snap->tables) {
    v.frame_columns = frame_columns(v.columns);
    v.file_columns.resize(snap->files.size());
    v.projection.resize(snap->files.size());
    v.unreadable.resize(snap->files.size());
    for (size_t i = 0; i < snap->files.size(); ++i) {
      if (v.table_no[i] < 0) continue;
      v.file_columns[i] = frame_columns(snap->files[i].table(static_cast<uint32_t>(v.table_no[i]))->columns);
      if (!v.projection[i].build(v.file_columns[i], v.frame_columns, v.unreadable[i])) {
        v.unreadable[i] = v.schema + "." + v.name + " in " + snap->files[i].path() + ": " + v.unreadable[i] +
                          " (rewritten on the primary; the edge copies it again)";
      }
    }
  }
  out = std::move(snap);
  return {};
}

ReplicaStatus TenantReplica::refresh() {
  const uint64_t g = head_.generation();
  if (g == generation_ && snapshot_) return {};
  std::shared_ptr<const Snapshot> snap;
  if (ReplicaStatus st = load(snap); !st.ok()) return st;
  snapshot_ = std::move(snap);
  generation_ = g;
  return {};
}

const Manifest& TenantReplica::manifest() const noexcept { return snapshot_->manifest; }

const std::vector<TableView>& TenantReplica::tables() const noexcept { return snapshot_->tables; }

const TableView* TenantReplica::table(std::string_view name) const noexcept {
  const TableView* found = nullptr;
  for (const TableView& t : snapshot_->tables) {
    const bool qualified = name.size() == t.schema.size() + 1 + t.name.size() &&
                           name.substr(0, t.schema.size()) == t.schema &&
                           name[t.schema.size()] == '.' && name.substr(t.schema.size() + 1) == t.name;
    if (qualified) return &t;
    if (name == t.name) {
      if (found != nullptr) return nullptr;  // ambiguous without a schema
      found = &t;
    }
  }
  return found;
}

ReplicaStatus TenantReplica::get(const TableView& table, std::string_view key,
                                 replica::BlockCache& cache, RowRef& out) const {
  const Snapshot& snap = *snapshot_;
  for (size_t i = snap.files.size(); i-- > 0;) {
    const int64_t tn = i < table.table_no.size() ? table.table_no[i] : -1;
    if (tn < 0) continue;
    std::string_view value;
    const replica::Status st = snap.files[i].get(static_cast<uint32_t>(tn), key, cache, value);
    switch (st.code) {
      case replica::Code::kOk:
        out.key = key;
        return project_row(table, i, value, projected_, out);
      case replica::Code::kTombstone:
        return {ReplicaStatus::kNotFound, "deleted"};
      case replica::Code::kNotFound:
        continue;
      default:
        return file_failure(st, snap.files[i].path());
    }
  }
  return {ReplicaStatus::kNotFound, "no such row"};
}

ReplicaStatus TenantReplica::scan_impl(const TableView& table, std::string_view from,
                                       std::optional<std::string_view> to,
                                       replica::BlockCache& cache,
                                       bool (*emit)(void*, const RowRef&), void* ctx) const {
  const Snapshot& snap = *snapshot_;
  // One scan per file holding the table, each with its current record.
  struct Head {
    size_t file;
    replica::Scan scan;
    replica::Record record;
    bool live = false;
  };
  std::vector<Head> heads;
  std::string buffer;  // a row re-encoded under the newest description
  auto advance = [&](Head& h) -> ReplicaStatus {
    const replica::Status st = h.scan.next(h.record);
    h.live = st.ok();
    if (st.failed()) return file_failure(st, snap.files[h.file].path());
    return {};
  };
  for (size_t i = 0; i < snap.files.size(); ++i) {
    const int64_t tn = i < table.table_no.size() ? table.table_no[i] : -1;
    if (tn < 0) continue;
    heads.push_back({i, snap.files[i].scan(static_cast<uint32_t>(tn), from, to, cache), {}, false});
  }
  for (Head& h : heads) {
    if (ReplicaStatus st = advance(h); !st.ok()) return st;
  }
  for (;;) {
    // The smallest key; among equal keys the newest file (the last head) wins.
    Head* best = nullptr;
    for (Head& h : heads) {
      if (h.live && (best == nullptr || h.record.key <= best->record.key)) best = &h;
    }
    if (best == nullptr) return {};
    const std::string key(best->record.key);
    if (!best->record.tombstone) {
      RowRef row;
      row.key = best->record.key;
      if (ReplicaStatus st = project_row(table, best->file, best->record.value, buffer, row); !st.ok()) return st;
      if (!emit(ctx, row)) return {};
    }
    for (Head& h : heads) {
      if (h.live && h.record.key == key) {
        if (ReplicaStatus st = advance(h); !st.ok()) return st;
      }
    }
  }
}

const ShardPositionReader* TenantReplica::shard_file(std::string_view shard) {
  auto it = shard_files_.find(shard);
  if (it == shard_files_.end()) {
    ShardPositionReader r;
    std::string why;
    if (!r.open(data_dir_, shard, why)) return nullptr;  // no daemon has written it (yet)
    it = shard_files_.emplace(std::string(shard), std::move(r)).first;
  }
  return &it->second;
}

ReplicaStatus TenantReplica::position_of(std::string_view shard, ShardPosition& out, bool& followed) {
  // The shard file vouches for the manifest current when it was written: read it after taking the
  // snapshot, and use it only if no newer manifest was published meanwhile.
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (ReplicaStatus st = refresh(); !st.ok()) return st;
    const uint64_t g = generation_;
    const auto& shards = snapshot_->manifest.shards;
    auto it = std::find_if(shards.begin(), shards.end(), [&](const ShardPosition& p) { return p.shard == shard; });
    followed = it != shards.end();
    out = followed ? *it : ShardPosition{};
    out.shard = std::string(shard);
    const ShardPositionReader* file = snapshot_->broken ? nullptr : shard_file(shard);
    if (file == nullptr) return {};
    const ShardProgress p = file->read();
    if (head_.generation() != g) continue;
    if (p.position > out.applied) {
      out.applied = p.position;
      followed = true;
    }
    if (p.upstream >= out.upstream) {
      out.upstream = p.upstream;
      out.upstream_time_us = p.upstream_time_us;
    }
    return {};
  }
  return {};  // the daemon keeps publishing: the manifest's own position is still true
}

ReplicaStatus TenantReplica::freshness(std::vector<ShardPosition>& out) {
  if (ReplicaStatus st = refresh(); !st.ok()) return st;
  std::vector<std::string> names;
  for (const ShardPosition& p : snapshot_->manifest.shards) names.push_back(p.shard);
  out.clear();
  for (const std::string& name : names) {
    ShardPosition p;
    bool followed = false;
    if (ReplicaStatus st = position_of(name, p, followed); !st.ok()) return st;
    out.push_back(std::move(p));
  }
  return {};
}

ReplicaStatus TenantReplica::wait_for(std::string_view bookmark, std::chrono::milliseconds timeout) {
  // "shard/X/X": the LSN is the last two slash-separated parts.
  const size_t last = bookmark.rfind('/');
  const size_t sep = last == std::string_view::npos || last == 0 ? std::string_view::npos
                                                                  : bookmark.rfind('/', last - 1);
  uint64_t lsn = 0;
  if (sep == std::string_view::npos || sep == 0 || !parse_lsn(bookmark.substr(sep + 1), lsn)) {
    return {ReplicaStatus::kInvalid,
            "bookmark \"" + std::string(bookmark) + "\" is not shard/LSN (edgeshard.bookmark())"};
  }
  const std::string_view shard = bookmark.substr(0, sep);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::microseconds(50);
  for (;;) {
    ShardPosition pos;
    bool followed = false;
    // Not here yet (no directory, an initial copy running, or a new replica that follows no
    // shard yet): the tenant may appear at any moment; poll it like a position.
    std::string absent;
    ReplicaStatus st = open_if_absent();
    if (st.ok()) st = position_of(shard, pos, followed);
    if (st.kind == ReplicaStatus::kNotPublished) {
      absent = st.message;
    } else if (!st.ok()) {
      return st;
    } else if (!followed && !snapshot_->manifest.shards.empty()) {
      return {ReplicaStatus::kInvalid, "this replica does not follow shard \"" + std::string(shard) + "\""};
    } else if (!followed) {
      absent = "tenant " + tenant_ + " follows no shard here yet";
    } else if (pos.applied >= lsn) {
      // Every transaction below `applied` is in the files; the bookmark's commit is below it.
      return {};
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      if (!absent.empty()) {
        return {ReplicaStatus::kTimeout, "timed out waiting for bookmark " + std::string(bookmark) + ": " + absent};
      }
      return {ReplicaStatus::kTimeout, "shard " + std::string(shard) + " applied up to " +
                                           format_lsn(pos.applied) + ", bookmark " + format_lsn(lsn)};
    }
    std::this_thread::sleep_for(pause);
    // A tenant not here is polled less often (it takes at least a flush interval to appear).
    pause = std::min(pause * 2, std::chrono::microseconds(absent.empty() ? 5000 : 20000));
  }
}

ReplicaStatus TenantReplica::open_if_absent() {
  if (snapshot_) return {};
  if (tenant_.empty()) return {ReplicaStatus::kInvalid, "the replica was never opened"};
  return open(data_dir_, tenant_);
}

ReplicaStatus TenantReplica::verify() const {
  for (const replica::ReplicaFile& f : snapshot_->files) {
    if (replica::Status st = f.verify(); st.failed() || !st.ok()) return file_failure(st, f.path());
  }
  return {};
}

}  // namespace edgeshard::apply

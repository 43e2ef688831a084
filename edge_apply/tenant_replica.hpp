// A reader's view of one tenant's replica: its manifest and the replica files it lists (one base,
// then deltas, newest last), mapped read-only and merged on the fly — a key's newest record wins,
// a tombstone hides older rows. A view is a snapshot: it keeps its files mapped until refresh()
// finds (through the head file's generation, one atomic load) that the apply daemon published a
// newer manifest, so a reader never sees half of a transaction and never waits on the writer.
// Used by the reader library (edgeshard_reader.h) and edgeshard-replica. Not thread-safe: one
// TenantReplica per thread, or a lock around it.
#pragma once

#include "common/no_postgres.hpp"

#include "edge_apply/dir_name.hpp"
#include "edge_apply/manifest.hpp"
#include "edge_apply/replica_file.hpp"
#include "edge_apply/row_projection.hpp"
#include "edge_apply/shard_position.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::apply {

// Outcome of a TenantReplica call.
struct ReplicaStatus {
  enum Kind {
    kOk = 0,
    kNotFound,      // get: no such row
    kNoTable,       // the table is not in the replica
    kNotPublished,  // the tenant's initial copy is not complete yet
    kCorrupt,       // a file or the manifest fails its checks (never returned as data)
    kIo,            // a file could not be read
    kTimeout,       // wait_for: the position was not reached in time
    kInvalid,       // a bad argument (bookmark syntax, unknown shard)
  };
  Kind kind = kOk;
  std::string message;

  // Whether the call succeeded.
  bool ok() const noexcept { return kind == kOk; }
};

// frame::Column views of replica columns (names and missing values point into cols), as the row
// codecs take them.
std::vector<frame::Column> frame_columns(const std::vector<replica::Column>& cols);

// A table as the newest file that has it describes it, and its number in every file. Rows of
// older files (written before an ALTER TABLE) read under the newest description (schema on read,
// edge_apply/row_projection.hpp): `projection` per file says how.
struct TableView {
  std::string schema;
  std::string name;
  std::vector<replica::Column> columns;
  std::vector<int64_t> table_no;  // per file of the snapshot (same order), -1 when absent
  std::vector<frame::Column> frame_columns;             // views into columns
  std::vector<std::vector<frame::Column>> file_columns;  // per file: its description (views)
  std::vector<Projection> projection;                   // per file: its rows -> columns
  std::vector<std::string> unreadable;                  // per file: why its rows cannot be read
};

// A row found by get() or scan(): its key, its tuple bytes (common/FORMAT.md tuple) and the
// table's columns (the newest description: a row stored before an ALTER TABLE is re-encoded).
struct RowRef {
  std::string_view key;
  std::string_view tuple;
  const std::vector<replica::Column>* columns = nullptr;
};

class TenantReplica {
 public:
  TenantReplica();
  ~TenantReplica();
  TenantReplica(TenantReplica&&) noexcept;
  TenantReplica& operator=(TenantReplica&&) noexcept;

  // Opens the tenant's replica under data_dir: reads the manifest and maps its files.
  ReplicaStatus open(const std::filesystem::path& data_dir, std::string_view tenant);

  // Takes the newest manifest if the apply daemon published one since (otherwise one atomic
  // load); on failure the current snapshot stays in use.
  ReplicaStatus refresh();

  // The manifest of the current snapshot.
  const Manifest& manifest() const noexcept;

  // The table "schema.name", or "name" when only one schema has it; nullptr when absent.
  const TableView* table(std::string_view name) const noexcept;

  // Every table of the snapshot.
  const std::vector<TableView>& tables() const noexcept;

  // Looks an encoded key up (edge_apply/key_codec.hpp), newest file first. The views stay valid
  // until the next get() or call with the same cache, or refresh().
  ReplicaStatus get(const TableView& table, std::string_view key, replica::BlockCache& cache,
                    RowRef& out) const;

  // Rows of one table with from <= key < to (no upper bound when to is nullopt), in key order,
  // merged over the files. callback returns false to stop early.
  template <typename Callback>
  ReplicaStatus scan(const TableView& table, std::string_view from,
                     std::optional<std::string_view> to, replica::BlockCache& cache,
                     Callback&& callback) const;

  // How fresh the replica is, per shard its manifest follows: the manifest's positions, moved up
  // to the shard position files' (edge_apply/shard_position.hpp) when those vouch for this
  // snapshot — read after the manifest and checked against the head generation, and never for a
  // tenant the daemon marked broken. Refreshes first.
  ReplicaStatus freshness(std::vector<ShardPosition>& out);

  // Parses a bookmark of edgeshard.bookmark() ("shard/X/X") and waits, refreshing, until this
  // replica has applied that shard past it; kTimeout after timeout. A tenant that has no
  // published replica here yet (open() said kNotPublished: no directory, being copied, or not
  // following any shard yet) is waited for too: polled until it appears and reaches the bookmark.
  ReplicaStatus wait_for(std::string_view bookmark, std::chrono::milliseconds timeout);

  // Checks every file of the snapshot completely (replica::ReplicaFile::verify).
  ReplicaStatus verify() const;

 private:
  struct Snapshot;
  // Runs a merged scan, calling emit(RowRef) for each live row until it returns false.
  ReplicaStatus scan_impl(const TableView& table, std::string_view from,
                          std::optional<std::string_view> to, replica::BlockCache& cache,
                          bool (*emit)(void*, const RowRef&), void* ctx) const;
  // Loads the manifest and maps its files into a new snapshot.
  ReplicaStatus load(std::shared_ptr<const Snapshot>& out) const;
  // The current snapshot's position for shard: its manifest's, or the shard file's when that is
  // further and valid for this snapshot (see freshness()). Refreshes first.
  ReplicaStatus position_of(std::string_view shard, ShardPosition& out, bool& followed);
  // The shard's position file, mapped on first use (nullptr while it does not exist).
  const ShardPositionReader* shard_file(std::string_view shard);

  // wait_for() while the tenant has no published replica here: opens it when it appears;
  // kNotPublished while it has not (yet).
  ReplicaStatus open_if_absent();

  std::filesystem::path data_dir_;
  std::string tenant_;  // as given to open(), for wait_for() on a tenant not here yet
  std::map<std::string, ShardPositionReader, std::less<>> shard_files_;
  std::filesystem::path dir_;
  HeadReader head_;
  std::shared_ptr<const Snapshot> snapshot_;
  uint64_t generation_ = 0;
  mutable std::string projected_;  // get()'s row when re-encoded under the newest description
};

template <typename Callback>
ReplicaStatus TenantReplica::scan(const TableView& table, std::string_view from,
                                  std::optional<std::string_view> to, replica::BlockCache& cache,
                                  Callback&& callback) const {
  auto trampoline = [](void* ctx, const RowRef& row) -> bool {
    return (*static_cast<std::remove_reference_t<Callback>*>(ctx))(row);
  };
  return scan_impl(table, from, to, cache, trampoline, &callback);
}

}  // namespace edgeshard::apply

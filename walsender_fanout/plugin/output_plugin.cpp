// The "edgeshard" logical decoding output plugin (in edgeshard.so, _PG_output_plugin_init).
//
// Turns committed changes of distributed tables into frames (common/FORMAT.md). Changes of other
// tables cost a hash lookup. Each transaction becomes one frame group per tenant it touched: the
// tenant's changes accumulate in a frame::Writer, a frame is cut whenever the payload reaches
// frame_bytes (continuation frames, sequence 0, 1, ...), and at commit every group gets its final
// frame with COMMIT and the LAST flag. Memory stays bounded: the writers' buffers are counted, and
// past kMaxBuffered every group is flushed and its memory returned. Schema (RELATION) and TRUNCATE
// go in the transaction's "many tenants" group, which every consumer receives, flushed at once:
// RELATION before a relation's first change in the session and again after a relcache
// invalidation of it (ALTER TABLE), TRUNCATE where it happened; both after flushing the tenant
// groups when rows written before them are still buffered, so the stream keeps the order in which
// things happened.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/frame_writer.hpp"
#include "extension/shard_map.hpp"
#include "walsender_fanout/plugin/plugin_options.hpp"
#include "walsender_fanout/plugin/relation_info.hpp"
#include "extension/pg_cxx.hpp"
#include "extension/routing.hpp"

extern "C" {
#include "access/detoast.h"
#include "access/heaptoast.h"
#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "commands/defrem.h"
#include "datatype/timestamp.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "replication/reorderbuffer.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
}

namespace edgeshard::plugin {

namespace {

// All tenant groups are flushed (as continuation frames) when their payloads pass this sum.
constexpr size_t kMaxBuffered = 64u << 20;
// Writers kept between transactions so their buffers are reused (those that grew past a few
// frames' worth give their memory back first).
constexpr size_t kMaxPooledGroups = 256;
// Changes (sent or filtered out) between progress reports to the walsender, as pgoutput does, so
// a long stretch of changes that send nothing does not look like a dead connection.
constexpr int kChangesPerProgress = 100;
// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
constexpr int64_t kUnixToPostgresEpochUs =
    int64_t{POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE} * USECS_PER_DAY;

// The frames of one (transaction, tenant) in the making.
struct Group {
  explicit Group(frame::Compression compression) : writer(compression) {}
  frame::Writer writer;
  std::string tenant;  // empty for the many-tenants group
  uint32_t sequence = 0;
  uint64_t first_lsn = 0;
  uint64_t last_lsn = 0;
};

// The transaction being decoded.
struct Transaction {
  uint32_t xid = 0;
  uint64_t commit_lsn = 0;
  uint64_t end_lsn = 0;
  int64_t commit_time_us = 0;
};

// Everything a decoding session keeps, owned by the decoding context (destroyed with it).
class Session {
 public:
  Session(LogicalDecodingContext* ctx, Options options, MemoryContext cache_context,
          MemoryContext change_context)
      : ctx_(ctx),
        options_(std::move(options)),
        relations_(cache_context),
        change_context_(change_context) {}

  // Called at begin: remembers the transaction, emits nothing yet.
  void begin(ReorderBufferTXN* txn);
  // One INSERT, UPDATE or DELETE.
  void change(Relation rel, ReorderBufferChange* change);
  // One TRUNCATE of one or more relations.
  void truncate(int nrelations, Relation relations[], ReorderBufferChange* change);
  // Final frames of every group.
  void commit(ReorderBufferTXN* txn, XLogRecPtr commit_lsn);
  // Forgets cached relation info after a relcache invalidation.
  void invalidate(Oid relid) { relations_.invalidate(relid); }
  // A transactional logical message of the extension's event triggers (prefix "edgeshard"):
  // "relation <oid>" after an ALTER TABLE of a distributed table (its RELATION is sent again,
  // even if no row of it changes), "rewrite <oid>" before PostgreSQL rewrites one (REWRITE).
  void message(XLogRecPtr lsn, std::string_view content);

  MemoryContext change_context() const noexcept { return change_context_; }

 private:
  frame::Compression compression() const noexcept {
    return options_.compress ? frame::Compression::kLz4 : frame::Compression::kNone;
  }
  // The group of `tenant` (empty: the many-tenants group), started with BEGIN if new.
  Group& group(std::string_view tenant, uint64_t lsn);
  // Emits the group's payload as a frame and starts its next one.
  void flush(Group& g, bool last);
  // Emits every group's pending payload as continuation frames.
  void flush_all();
  // Which row message add_row() writes.
  enum class RowMessage : uint8_t { kInsert, kUpdate, kDelete };
  // Adds a row message for `tenant` (skipped when filtered out): INSERT of new_tuple, UPDATE
  // (with old_tuple's key when given) or DELETE of old_tuple's key.
  void add_row(Relation rel, RelationInfo& info, std::string_view tenant, uint64_t lsn,
               RowMessage kind, HeapTuple old_tuple, HeapTuple new_tuple);
  // Before a row message of about `estimate` bytes: cut g's frame first if it would not fit.
  void make_room(Group& g, Relation rel, size_t estimate);
  // After a message was added to `g` (its writer held `capacity_before` bytes before): cut a
  // frame when the payload is big enough, flush everything when the memory cap is passed.
  void after_message(Group& g, size_t capacity_before);
  // Emits a RELATION frame for rel unless one was sent since its last invalidation.
  void send_relation(Relation rel, RelationInfo& info, uint64_t lsn);
  // The missing value (pg_attribute.attmissingval) of column i of rel, if it has one, in the
  // column's send format (or text output); false when it has none.
  static bool missing_value(Relation rel, const RelationInfo& info, size_t i, std::string& out,
                            frame::ValueKind& kind);
  // Counts a change for progress reporting.
  void count_change();
  // Upper estimate of the payload bytes of `tuple`'s values (detoasted sizes).
  static size_t estimate_tuple(Relation rel, const RelationInfo& info, HeapTuple tuple);
  // Appends the columns of `tuple` (all, or only the key ones) as the current tuple's values.
  void write_tuple(frame::Writer& w, Relation rel, const RelationInfo& info, HeapTuple tuple,
                   bool key_only);
  // Number of values write_tuple() writes.
  static uint32_t count_columns(const RelationInfo& info, bool key_only);
  // Canonical key of the tenant of `tuple`.
  std::string_view tenant_of(Relation rel, const RelationInfo& info, HeapTuple tuple,
                             char (&buffer)[routing::kKeyBufferSize]);
  // True if the key columns of the two tuples are equal.
  static bool same_key(Relation rel, const RelationInfo& info, HeapTuple a, HeapTuple b);
  // Hands frame bytes to PostgreSQL (a row of pg_logical_slot_get_binary_changes, or a CopyData
  // message of the replication connection).
  void emit(std::span<const uint8_t> bytes);
  // Header fields of g's next frame.
  frame::Fields fields(const Group& g, bool last) const;

  LogicalDecodingContext* ctx_;
  Options options_;
  RelationCache relations_;
  MemoryContext change_context_;
  Transaction txn_;
  std::unordered_map<std::string, std::unique_ptr<Group>, shard_map::StringHash, std::equal_to<>>
      groups_;
  std::vector<std::unique_ptr<Group>> pool_;
  std::unordered_set<Oid> relations_sent_;  // relids with a RELATION in this session
  size_t buffered_ = 0;  // memory held by the writers of groups_
  int changes_since_progress_ = 0;
  bool sent_any_ = false;  // this transaction emitted a frame
};

// The session of this backend's decoding context, for the relcache callback (plain data).
Session* g_session = nullptr;
bool g_callback_registered = false;

// Relcache callback: drops what the plugin cached about the relation (or everything).
void on_relcache_invalidation(Datum /*arg*/, Oid relid) {
  if (g_session != nullptr) g_session->invalidate(relid);
}

// Destroys the session when its memory context goes away.
void destroy_session(void* arg) {
  auto* session = static_cast<Session*>(arg);
  if (g_session == session) g_session = nullptr;
  session->~Session();
}

// Resets the per-change memory context when a callback ends, however it ends.
class ChangeScope {
 public:
  explicit ChangeScope(MemoryContext context) noexcept
      : context_(context), previous_(MemoryContextSwitchTo(context)) {}
  ~ChangeScope() {
    MemoryContextSwitchTo(previous_);
    MemoryContextReset(context_);
  }
  ChangeScope(const ChangeScope&) = delete;
  ChangeScope& operator=(const ChangeScope&) = delete;

 private:
  MemoryContext context_;
  MemoryContext previous_;
};

frame::Fields Session::fields(const Group& g, bool last) const {
  frame::Fields f;
  f.tenant_key = g.tenant;
  f.many_tenants = g.tenant.empty();
  f.last = last;
  f.xid = txn_.xid;
  f.sequence = g.sequence;
  f.first_lsn = g.first_lsn;
  f.last_lsn = g.last_lsn;
  f.commit_lsn = txn_.commit_lsn;
  f.commit_time_us = txn_.commit_time_us;
  return f;
}

void Session::emit(std::span<const uint8_t> bytes) {
  pg::call([&] {
    OutputPluginPrepareWrite(ctx_, true);
    appendBinaryStringInfo(ctx_->out, reinterpret_cast<const char*>(bytes.data()),
                           static_cast<int>(bytes.size()));
    OutputPluginWrite(ctx_, true);
  });
  sent_any_ = true;
}

void Session::begin(ReorderBufferTXN* txn) {
  // PostgreSQL 15 decodes a transaction at its commit: the commit LSN and time are known here.
  txn_.xid = txn->xid;
  txn_.commit_lsn = txn->final_lsn;
  txn_.end_lsn = txn->end_lsn;
  txn_.commit_time_us = txn->xact_time.commit_time + kUnixToPostgresEpochUs;
  sent_any_ = false;
}

Group& Session::group(std::string_view tenant, uint64_t lsn) {
  auto it = groups_.find(tenant);
  if (it == groups_.end()) {
    std::unique_ptr<Group> g;
    if (!pool_.empty()) {
      g = std::move(pool_.back());
      pool_.pop_back();
    } else {
      g = std::make_unique<Group>(compression());
    }
    g->tenant.assign(tenant);
    g->sequence = 0;
    g->first_lsn = lsn;
    g->writer.begin(txn_.xid, txn_.commit_lsn, txn_.commit_time_us);
    buffered_ += g->writer.capacity();  // a pooled writer's memory counts from now on
    it = groups_.emplace(g->tenant, std::move(g)).first;
  }
  Group& g = *it->second;
  if (g.writer.size() == 0) g.first_lsn = lsn;  // first change of a continuation frame
  g.last_lsn = lsn;
  return g;
}

void Session::flush(Group& g, bool last) {
  size_t capacity_before = g.writer.capacity();
  emit(g.writer.seal(fields(g, last)));
  buffered_ += g.writer.capacity() - capacity_before;
  g.sequence++;
}

void Session::flush_all() {
  for (auto& [tenant, g] : groups_)
    if (g->writer.size() > 0) flush(*g, false);
}

void Session::make_room(Group& g, Relation rel, size_t estimate) {
  if (estimate + 64 > frame::kMaxRawPayload)
    pg::raise(ERRCODE_PROGRAM_LIMIT_EXCEEDED,
              pg::format("a row of distributed table \"%s\" takes about %zu bytes, more than a "
                         "frame can hold (%u)",
                         RelationGetRelationName(rel), estimate, frame::kMaxRawPayload),
              {}, "Keep rows of distributed tables under 64 MiB.");
  if (g.writer.size() > 0 && g.writer.size() + estimate + 64 > frame::kMaxRawPayload)
    flush(g, false);
}

void Session::after_message(Group& g, size_t capacity_before) {
  buffered_ += g.writer.capacity() - capacity_before;
  if (g.writer.size() >= options_.frame_bytes) flush(g, false);
  if (buffered_ > kMaxBuffered) {
    flush_all();
    for (auto& [tenant, other] : groups_) other->writer.release_memory();
    buffered_ = 0;
  }
}

void Session::count_change() {
  if (++changes_since_progress_ < kChangesPerProgress) return;
  changes_since_progress_ = 0;
  pg::call([this] { OutputPluginUpdateProgress(ctx_, false); });
}

size_t Session::estimate_tuple(Relation rel, const RelationInfo& info, HeapTuple tuple) {
  // Without out-of-line values a tuple fits a page; inline compressed values expand to at most a
  // few hundred KiB. Only rows with TOASTed values need a look at each value.
  if (!HeapTupleHasExternal(tuple)) return size_t{tuple->t_len} * 4 + (1u << 20);
  TupleDesc desc = RelationGetDescr(rel);
  size_t bytes = 16;
  return pg::call([&] {
    for (size_t i = 0; i < info.columns.size(); i++) {
      if (info.columns[i].dropped) continue;
      bool isnull;
      Datum value = heap_getattr(tuple, static_cast<int>(i + 1), desc, &isnull);
      Form_pg_attribute att = TupleDescAttr(desc, i);
      if (isnull)
        bytes += 1;
      else if (att->attlen == -1)
        bytes += toast_raw_datum_size(value) + 10;  // send formats are about the datum's size
      else if (att->attlen == -2)
        bytes += strlen(DatumGetCString(value)) + 10;
      else
        bytes += static_cast<size_t>(att->attlen) + 10;
    }
    return bytes;
  });
}

uint32_t Session::count_columns(const RelationInfo& info, bool key_only) {
  uint32_t n = 0;
  for (size_t i = 0; i < info.columns.size(); i++)
    if (!info.columns[i].dropped && (!key_only || info.key_columns[i])) n++;
  return n;
}

void Session::write_tuple(frame::Writer& w, Relation rel, const RelationInfo& info,
                          HeapTuple tuple, bool key_only) {
  TupleDesc desc = RelationGetDescr(rel);
  // One PG_TRY for the whole tuple: send functions may raise, the writer may throw bad_alloc.
  pg::call([&] {
    for (size_t i = 0; i < info.columns.size(); i++) {
      const ColumnCodec& codec = info.columns[i];
      if (codec.dropped || (key_only && !info.key_columns[i])) continue;
      bool isnull;
      Datum value = heap_getattr(tuple, static_cast<int>(i + 1), desc, &isnull);
      if (isnull) {
        w.value_null();
      } else if (codec.varlena && VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(value))) {
        w.value_unchanged_toast();  // an UPDATE that left a TOASTed value alone
      } else if (codec.binary) {
        if (codec.varlena) value = PointerGetDatum(PG_DETOAST_DATUM(value));
        bytea* bytes = SendFunctionCall(const_cast<FmgrInfo*>(&codec.output), value);
        w.value_binary(VARDATA(bytes), VARSIZE(bytes) - VARHDRSZ);
      } else {
        char* text = OutputFunctionCall(const_cast<FmgrInfo*>(&codec.output), value);
        w.value_text(text, strlen(text));
      }
    }
  });
}

std::string_view Session::tenant_of(Relation rel, const RelationInfo& info, HeapTuple tuple,
                                    char (&buffer)[routing::kKeyBufferSize]) {
  bool isnull;
  Datum value = heap_getattr(tuple, info.tenant_attnum, RelationGetDescr(rel), &isnull);
  if (isnull)  // the tenant column is in the primary key: only a broken WAL record gets here
    pg::raise(ERRCODE_DATA_CORRUPTED,
              pg::format("change of distributed table \"%s\" has no tenant",
                         RelationGetRelationName(rel)));
  return routing::tenant_key(value, info.tenant_typid, buffer);
}

bool Session::same_key(Relation rel, const RelationInfo& info, HeapTuple a, HeapTuple b) {
  TupleDesc desc = RelationGetDescr(rel);
  for (size_t i = 0; i < info.key_columns.size(); i++) {
    if (!info.key_columns[i]) continue;
    Form_pg_attribute att = TupleDescAttr(desc, i);
    bool null_a, null_b;
    Datum va = heap_getattr(a, static_cast<int>(i + 1), desc, &null_a);
    Datum vb = heap_getattr(b, static_cast<int>(i + 1), desc, &null_b);
    if (null_a != null_b) return false;
    if (!null_a && !datumIsEqual(va, vb, att->attbyval, att->attlen)) return false;
  }
  return true;
}

bool Session::missing_value(Relation rel, const RelationInfo& info, size_t i, std::string& out,
                            frame::ValueKind& kind) {
  TupleDesc desc = RelationGetDescr(rel);
  if (!TupleDescAttr(desc, i)->atthasmissing) return false;
  const ColumnCodec& codec = info.columns[i];
  bool isnull = true;
  Datum value = pg::call([&] { return getmissingattr(desc, static_cast<int>(i + 1), &isnull); });
  if (isnull) return false;
  pg::call([&] {
    if (codec.binary) {
      if (codec.varlena) value = PointerGetDatum(PG_DETOAST_DATUM(value));
      bytea* bytes = SendFunctionCall(const_cast<FmgrInfo*>(&codec.output), value);
      out.assign(VARDATA(bytes), VARSIZE(bytes) - VARHDRSZ);
    } else {
      out.assign(OutputFunctionCall(const_cast<FmgrInfo*>(&codec.output), value));
    }
  });
  kind = codec.binary ? frame::ValueKind::kBinary : frame::ValueKind::kText;
  return true;
}

void Session::send_relation(Relation rel, RelationInfo& info, uint64_t lsn) {
  if (info.relation_sent) return;
  Oid relid = RelationGetRelid(rel);
  // A new schema of a relation already sent: rows buffered under the old one go out first.
  if (relations_sent_.contains(relid)) flush_all();
  TupleDesc desc = RelationGetDescr(rel);
  std::vector<frame::Column> columns;
  // Storage the columns' views point into (reserved: the strings never move).
  std::vector<std::string> names;
  std::vector<std::string> missing;
  names.reserve(info.columns.size());
  missing.reserve(info.columns.size());
  int32_t tenant_index = -1;
  for (size_t i = 0; i < info.columns.size(); i++) {
    if (info.columns[i].dropped) continue;
    Form_pg_attribute att = TupleDescAttr(desc, i);
    if (att->attnum == info.tenant_attnum) tenant_index = static_cast<int32_t>(columns.size());
    names.emplace_back(NameStr(att->attname));
    frame::Column c{names.back(), att->atttypid, att->atttypmod,
                    static_cast<bool>(info.key_columns[i])};
    // Identity and missing value: the ATTRIBUTES message (FORMAT.md version 2).
    c.attnum = static_cast<uint32_t>(att->attnum);
    missing.emplace_back();
    c.has_missing = missing_value(rel, info, i, missing.back(), c.missing_kind);
    if (c.has_missing) c.missing = missing.back();
    columns.push_back(c);
  }
  std::string schema = pg::call([&] {
    char* nsp = get_namespace_name(RelationGetNamespace(rel));
    return std::string(nsp != nullptr ? nsp : "");
  });
  Group& g = group({}, lsn);
  size_t capacity_before = g.writer.capacity();
  g.writer.relation(relid, schema, RelationGetRelationName(rel), columns, tenant_index);
  after_message(g, capacity_before);
  if (g.writer.size() > 0) flush(g, false);  // before any row that uses it
  info.relation_sent = true;
  relations_sent_.insert(relid);
}

void Session::message(XLogRecPtr lsn, std::string_view content) {
  const bool rewrite = content.starts_with("rewrite ");
  if (!rewrite && !content.starts_with("relation ")) return;  // not ours to understand
  const std::string digits(content.substr(content.find(' ') + 1));
  char* end = nullptr;
  const unsigned long relid = std::strtoul(digits.c_str(), &end, 10);
  if (digits.empty() || *end != '\0' || relid == 0 || relid > 0xffffffffUL) return;
  Relation rel = pg::call([relid] { return RelationIdGetRelation(static_cast<Oid>(relid)); });
  if (rel == nullptr) return;  // dropped in this transaction
  struct Closer {
    Relation rel;
    ~Closer() { RelationClose(rel); }
  } closer{rel};
  RelationInfo& info = relations_.get(rel);
  if (!info.distributed) return;
  if (rewrite) {
    // Rows changed before the rewrite reach consumers before it.
    flush_all();
    Group& g = group({}, lsn);
    size_t capacity_before = g.writer.capacity();
    g.writer.rewrite(static_cast<uint32_t>(relid));
    after_message(g, capacity_before);
    if (g.writer.size() > 0) flush(g, false);
    return;
  }
  // Described again now, with the columns this point of the transaction has.
  info.relation_sent = false;
  send_relation(rel, info, lsn);
}

void Session::add_row(Relation rel, RelationInfo& info, std::string_view tenant,
                      uint64_t lsn, RowMessage kind, HeapTuple old_tuple, HeapTuple new_tuple) {
  if (!options_.wants(tenant)) return;
  send_relation(rel, info, lsn);
  Group& g = group(tenant, lsn);
  size_t estimate = (old_tuple != nullptr ? estimate_tuple(rel, info, old_tuple) : 0) +
                    (new_tuple != nullptr ? estimate_tuple(rel, info, new_tuple) : 0);
  make_room(g, rel, estimate);
  size_t capacity_before = g.writer.capacity();
  uint32_t relid = RelationGetRelid(rel);
  frame::Writer& w = g.writer;
  switch (kind) {
    case RowMessage::kInsert:
      w.insert_begin(relid, count_columns(info, false));
      write_tuple(w, rel, info, new_tuple, false);
      break;
    case RowMessage::kUpdate:
      w.update_begin(relid);
      if (old_tuple != nullptr) {
        w.update_old_key(count_columns(info, true));
        write_tuple(w, rel, info, old_tuple, true);
      }
      w.update_new_tuple(count_columns(info, false));
      write_tuple(w, rel, info, new_tuple, false);
      break;
    case RowMessage::kDelete:
      w.delete_begin(relid, count_columns(info, true));
      write_tuple(w, rel, info, old_tuple, true);
      break;
  }
  after_message(g, capacity_before);
}

void Session::change(Relation rel, ReorderBufferChange* change) {
  count_change();
  RelationInfo& info = relations_.get(rel);
  if (!info.distributed) return;
  HeapTuple new_tuple =
      change->data.tp.newtuple != nullptr ? &change->data.tp.newtuple->tuple : nullptr;
  HeapTuple old_tuple =
      change->data.tp.oldtuple != nullptr ? &change->data.tp.oldtuple->tuple : nullptr;
  char new_buffer[routing::kKeyBufferSize];
  char old_buffer[routing::kKeyBufferSize];
  uint64_t lsn = change->lsn;

  switch (change->action) {
    case REORDER_BUFFER_CHANGE_INSERT:
      if (new_tuple == nullptr) return;
      add_row(rel, info, tenant_of(rel, info, new_tuple, new_buffer), lsn, RowMessage::kInsert,
              nullptr, new_tuple);
      return;
    case REORDER_BUFFER_CHANGE_UPDATE: {
      if (new_tuple == nullptr) return;
      std::string_view tenant = tenant_of(rel, info, new_tuple, new_buffer);
      // The old tuple is logged when the key changed (or with REPLICA IDENTITY FULL).
      bool key_changed = old_tuple != nullptr && !same_key(rel, info, old_tuple, new_tuple);
      std::string_view old_tenant =
          key_changed ? tenant_of(rel, info, old_tuple, old_buffer) : tenant;
      if (old_tenant == tenant) {
        add_row(rel, info, tenant, lsn, RowMessage::kUpdate, key_changed ? old_tuple : nullptr,
                new_tuple);
      } else {
        // The row changed tenant (the write guard refuses that unless bypassed): a DELETE for
        // the old tenant's replicas, an INSERT for the new one's.
        add_row(rel, info, old_tenant, lsn, RowMessage::kDelete, old_tuple, nullptr);
        add_row(rel, info, tenant, lsn, RowMessage::kInsert, nullptr, new_tuple);
      }
      return;
    }
    case REORDER_BUFFER_CHANGE_DELETE:
      if (old_tuple == nullptr)
        pg::raise(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                  pg::format("a DELETE on distributed table \"%s\" carries no old key",
                             RelationGetRelationName(rel)),
                  {}, "Keep the table's REPLICA IDENTITY DEFAULT (its primary key) or FULL.");
      add_row(rel, info, tenant_of(rel, info, old_tuple, old_buffer), lsn, RowMessage::kDelete,
              old_tuple, nullptr);
      return;
    default:
      return;  // other actions do not reach change_cb
  }
}

void Session::truncate(int nrelations, Relation relations[], ReorderBufferChange* change) {
  count_change();
  std::vector<uint32_t> relids;
  for (int i = 0; i < nrelations; i++) {
    RelationInfo& info = relations_.get(relations[i]);
    if (!info.distributed) continue;
    send_relation(relations[i], info, change->lsn);
    relids.push_back(RelationGetRelid(relations[i]));
  }
  if (relids.empty()) return;
  flush_all();  // rows changed before the TRUNCATE reach consumers before it
  Group& g = group({}, change->lsn);
  size_t before = g.writer.capacity();
  g.writer.truncate(relids, change->data.truncate.cascade, change->data.truncate.restart_seqs);
  after_message(g, before);
  flush(g, false);  // and rows changed after it come after it
}

void Session::commit(ReorderBufferTXN* txn, XLogRecPtr commit_lsn) {
  txn_.commit_lsn = commit_lsn;
  txn_.end_lsn = txn->end_lsn;
  for (auto& [tenant, g] : groups_) {
    g->writer.commit(txn_.commit_lsn, txn_.end_lsn, txn_.commit_time_us);
    g->last_lsn = commit_lsn;
    flush(*g, true);
  }
  for (auto& [tenant, g] : groups_) {
    if (pool_.size() >= kMaxPooledGroups) continue;
    if (g->writer.capacity() > 4 * size_t{options_.frame_bytes}) g->writer.release_memory();
    pool_.push_back(std::move(g));
  }
  groups_.clear();
  buffered_ = 0;
  changes_since_progress_ = 0;
  if (!sent_any_)  // nothing of interest: let the walsender confirm progress anyway
    pg::call([this] { OutputPluginUpdateProgress(ctx_, true); });
}

// The session of a decoding context.
Session& session_of(LogicalDecodingContext* ctx) {
  return *static_cast<Session*>(ctx->output_plugin_private);
}

// startup_cb: parses the options and creates the session in the decoding context.
void startup(LogicalDecodingContext* ctx, OutputPluginOptions* opt, bool /*is_init*/) {
  Options options;
  ListCell* cell;
  foreach (cell, ctx->output_plugin_options) {
    auto* elem = static_cast<DefElem*>(lfirst(cell));
    const char* value =
        elem->arg != nullptr ? pg::call([elem] { return defGetString(elem); }) : nullptr;
    set_option(options, elem->defname, value);
  }
  opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
  opt->receive_rewrites = false;

  auto [storage, cache_context, change_context] = pg::call([ctx] {
    MemoryContext cache = AllocSetContextCreate(ctx->context, "edgeshard decoding cache",
                                                ALLOCSET_DEFAULT_SIZES);
    MemoryContext change = AllocSetContextCreate(ctx->context, "edgeshard decoding change",
                                                 ALLOCSET_DEFAULT_SIZES);
    void* mem = MemoryContextAlloc(ctx->context, sizeof(Session));
    return std::tuple{mem, cache, change};
  });
  static_assert(alignof(Session) <= MAXIMUM_ALIGNOF, "palloc alignment is enough for a Session");
  auto* session = new (storage) Session(ctx, std::move(options), cache_context, change_context);
  pg::call([ctx, session] {
    auto* cb = static_cast<MemoryContextCallback*>(
        MemoryContextAlloc(ctx->context, sizeof(MemoryContextCallback)));
    cb->func = destroy_session;
    cb->arg = session;
    MemoryContextRegisterResetCallback(ctx->context, cb);
    if (!g_callback_registered) {
      CacheRegisterRelcacheCallback(on_relcache_invalidation, PointerGetDatum(nullptr));
      g_callback_registered = true;
    }
  });
  ctx->output_plugin_private = session;
  g_session = session;
}

}  // namespace

}  // namespace edgeshard::plugin

using edgeshard::pg::guard;
using edgeshard::plugin::ChangeScope;
using edgeshard::plugin::session_of;

// Decoding callbacks: shims that run the C++ under pg::guard (errors become ereport after
// unwinding), each change inside a per-change memory context that is reset afterwards.
extern "C" {

static void edgeshard_startup(LogicalDecodingContext* ctx, OutputPluginOptions* opt,
                              bool is_init) {
  guard([&] { edgeshard::plugin::startup(ctx, opt, is_init); });
}

static void edgeshard_shutdown(LogicalDecodingContext* /*ctx*/) {
  // The session goes with the decoding context's memory (destroy_session).
}

static void edgeshard_begin(LogicalDecodingContext* ctx, ReorderBufferTXN* txn) {
  guard([&] { session_of(ctx).begin(txn); });
}

static void edgeshard_change(LogicalDecodingContext* ctx, ReorderBufferTXN* /*txn*/,
                             Relation rel, ReorderBufferChange* change) {
  guard([&] {
    ChangeScope scope(session_of(ctx).change_context());
    session_of(ctx).change(rel, change);
  });
}

static void edgeshard_truncate(LogicalDecodingContext* ctx, ReorderBufferTXN* /*txn*/,
                               int nrelations, Relation relations[],
                               ReorderBufferChange* change) {
  guard([&] {
    ChangeScope scope(session_of(ctx).change_context());
    session_of(ctx).truncate(nrelations, relations, change);
  });
}

static void edgeshard_commit(LogicalDecodingContext* ctx, ReorderBufferTXN* txn,
                             XLogRecPtr commit_lsn) {
  guard([&] {
    ChangeScope scope(session_of(ctx).change_context());
    session_of(ctx).commit(txn, commit_lsn);
  });
}

static void edgeshard_message(LogicalDecodingContext* ctx, ReorderBufferTXN* /*txn*/,
                              XLogRecPtr message_lsn, bool transactional, const char* prefix,
                              Size message_size, const char* message) {
  // Only the extension's own transactional messages (its event triggers) mean anything here.
  if (!transactional || strcmp(prefix, "edgeshard") != 0) return;
  guard([&] {
    ChangeScope scope(session_of(ctx).change_context());
    session_of(ctx).message(message_lsn, std::string_view(message, message_size));
  });
}

// Registers the callbacks; PostgreSQL calls this when a slot uses plugin "edgeshard".
PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks* cb);

void _PG_output_plugin_init(OutputPluginCallbacks* cb) {
  cb->startup_cb = edgeshard_startup;
  cb->begin_cb = edgeshard_begin;
  cb->change_cb = edgeshard_change;
  cb->truncate_cb = edgeshard_truncate;
  cb->commit_cb = edgeshard_commit;
  cb->message_cb = edgeshard_message;
  cb->shutdown_cb = edgeshard_shutdown;
}

}  // extern "C"

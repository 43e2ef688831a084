// libedgeshard_reader's C API (edgeshard_reader.h) over TenantReplica, key_codec and value_codec.
// Every entry point is noexcept: exceptions (std::bad_alloc) become ES_NO_MEMORY.
#include "edge_apply/edgeshard_reader.h"

#include "edge_apply/key_codec.hpp"
#include "edge_apply/tenant_replica.hpp"
#include "edge_apply/value_codec.hpp"

#include <chrono>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

using edgeshard::apply::CodecError;
using edgeshard::apply::CodecStatus;
using edgeshard::apply::ReplicaStatus;
using edgeshard::apply::RowRef;
using edgeshard::apply::RowView;
using edgeshard::apply::TableView;
using edgeshard::apply::TenantReplica;

// A reader's handle: the replica view, its block cache, the last error text.
struct es_replica {
  TenantReplica replica;
  std::unique_ptr<edgeshard::replica::BlockCache> cache = std::make_unique<edgeshard::replica::BlockCache>();
  std::string error;
  bool pinned = false;
};

// A row: its own copy of the tuple bytes (es_get) or views (es_scan), decoded.
struct es_row {
  std::string tuple;                                // owned bytes (es_get)
  std::vector<edgeshard::frame::Column> columns;    // owned column descriptions
  std::vector<std::string> names;                   // owned column names
  RowView view;
  mutable std::string json;
  mutable std::vector<std::string> texts;           // es_row_value_text results
};

namespace {

// Records a failure on r and returns its status.
es_status fail(es_replica* r, es_status st, std::string message) {
  if (r != nullptr) r->error = std::move(message);
  return st;
}

// A ReplicaStatus as an es_status (recording its message).
es_status from_replica(es_replica* r, const ReplicaStatus& st) {
  switch (st.kind) {
    case ReplicaStatus::kOk: r->error.clear(); return ES_OK;
    case ReplicaStatus::kNotFound: return fail(r, ES_NOT_FOUND, st.message);
    case ReplicaStatus::kNoTable: return fail(r, ES_NO_TABLE, st.message);
    case ReplicaStatus::kNotPublished: return fail(r, ES_NOT_PUBLISHED, st.message);
    case ReplicaStatus::kCorrupt: return fail(r, ES_CORRUPT, st.message);
    case ReplicaStatus::kIo: return fail(r, ES_IO, st.message);
    case ReplicaStatus::kTimeout: return fail(r, ES_TIMEOUT, st.message);
    case ReplicaStatus::kInvalid: return fail(r, ES_INVALID, st.message);
  }
  return fail(r, ES_INVALID, st.message);
}

// A codec failure as an es_status: damaged stored bytes are corruption, the rest bad arguments.
es_status from_codec(es_replica* r, const CodecStatus& st) {
  const bool corrupt = st.error == CodecError::kBadValue || st.error == CodecError::kBadTuple ||
                       st.error == CodecError::kBadKey || st.error == CodecError::kUnchangedToast;
  return fail(r, corrupt ? ES_CORRUPT : ES_INVALID, st.message);
}

// Refreshes unless pinned.
es_status maybe_refresh(es_replica* r) {
  if (r->pinned) return ES_OK;
  return from_replica(r, r->replica.refresh());
}

// Encodes text key values of table's key columns (a prefix of them when prefix is true).
es_status encode_key(es_replica* r, const TableView& t, const char* const* values, size_t n,
                     bool prefix, std::string& key) {
  std::vector<uint32_t> key_types;
  for (const auto& c : t.columns) {
    if (c.key) key_types.push_back(c.type_oid);
  }
  if (n > key_types.size() || (!prefix && n != key_types.size())) {
    return fail(r, ES_INVALID, "table " + t.schema + "." + t.name + " has " +
                                   std::to_string(key_types.size()) + " key columns, " +
                                   std::to_string(n) + " values given");
  }
  for (size_t i = 0; i < n; ++i) {
    if (values[i] == nullptr) return fail(r, ES_INVALID, "a key value is NULL: key columns are never NULL");
    if (CodecStatus st = edgeshard::apply::encode_key_column_from_text(key, key_types[i], values[i]); !st.ok()) {
      return from_codec(r, st);
    }
  }
  return ES_OK;
}

// Builds a row from tuple bytes and the stored columns (copies both).
es_status make_row(es_replica* r, const RowRef& ref, es_row& row) {
  row.tuple.assign(ref.tuple);
  row.names.clear();
  row.columns.clear();
  for (const auto& c : *ref.columns) row.names.push_back(c.name);
  for (size_t i = 0; i < ref.columns->size(); ++i) {
    const auto& c = (*ref.columns)[i];
    row.columns.push_back({row.names[i], c.type_oid, c.typmod, c.key, c.attnum});
  }
  if (CodecStatus st = row.view.parse(row.columns, row.tuple); !st.ok()) return from_codec(r, st);
  return ES_OK;
}

// The index of column name in row, or -1.
int column_index(const es_row* row, const char* name) {
  return row == nullptr || name == nullptr ? -1 : row->view.find(name);
}

// Shared prologue of the typed accessors: finds the column, reports NULL.
template <typename T>
es_status typed(const es_row* row, const char* column, T* out, int* is_null,
                CodecStatus (RowView::*get)(size_t, T&) const) {
  const int i = column_index(row, column);
  if (i < 0 || out == nullptr) return ES_NOT_FOUND;
  *out = T{};
  if (row->view.is_null(static_cast<size_t>(i))) {
    if (is_null != nullptr) *is_null = 1;
    return ES_OK;
  }
  if (is_null != nullptr) *is_null = 0;
  T v{};
  if (!(row->view.*get)(static_cast<size_t>(i), v).ok()) return ES_INVALID;
  *out = v;
  return ES_OK;
}

}  // namespace

extern "C" {

es_status es_open(const char* data_dir, const char* tenant, es_replica** out) {
  if (out == nullptr) return ES_INVALID;
  *out = nullptr;
  if (data_dir == nullptr || tenant == nullptr) return ES_INVALID;
  es_replica* r = new (std::nothrow) es_replica;
  if (r == nullptr) return ES_NO_MEMORY;
  try {
    const es_status st = from_replica(r, r->replica.open(data_dir, tenant));
    *out = r;  // even on failure: es_last_error() says why; es_close() frees it
    return st;
  } catch (...) {
    delete r;
    return ES_NO_MEMORY;
  }
}

void es_close(es_replica* r) { delete r; }

const char* es_last_error(const es_replica* r) { return r == nullptr ? "no replica handle" : r->error.c_str(); }

es_status es_refresh(es_replica* r) {
  if (r == nullptr) return ES_INVALID;
  try {
    return from_replica(r, r->replica.refresh());
  } catch (...) {
    return fail(r, ES_NO_MEMORY, "out of memory");
  }
}

es_status es_set_cache_bytes(es_replica* r, size_t bytes) {
  if (r == nullptr || bytes == 0) return ES_INVALID;
  try {
    r->cache = std::make_unique<edgeshard::replica::BlockCache>(bytes);
    return ES_OK;
  } catch (...) {
    return fail(r, ES_NO_MEMORY, "out of memory");
  }
}

void es_pin(es_replica* r, int pinned) {
  if (r != nullptr) r->pinned = pinned != 0;
}

es_status es_get(es_replica* r, const char* table, const char* const* key_text, size_t nkeys,
                 es_row** out) {
  if (r == nullptr || out == nullptr || table == nullptr) return ES_INVALID;
  *out = nullptr;
  try {
    if (es_status st = maybe_refresh(r); st != ES_OK) return st;
    const TableView* t = r->replica.table(table);
    if (t == nullptr) return fail(r, ES_NO_TABLE, std::string("no table \"") + table + "\" in this replica");
    std::string key;
    if (es_status st = encode_key(r, *t, key_text, nkeys, false, key); st != ES_OK) return st;
    RowRef ref;
    if (es_status st = from_replica(r, r->replica.get(*t, key, *r->cache, ref)); st != ES_OK) return st;
    auto row = std::make_unique<es_row>();
    if (es_status st = make_row(r, ref, *row); st != ES_OK) return st;
    *out = row.release();
    r->error.clear();
    return ES_OK;
  } catch (...) {
    return fail(r, ES_NO_MEMORY, "out of memory");
  }
}

es_status es_scan(es_replica* r, const char* table, const char* const* from, size_t nfrom,
                  const char* const* to, size_t nto, int (*fn)(const es_row* row, void* ctx), void* ctx) {
  if (r == nullptr || table == nullptr || fn == nullptr) return ES_INVALID;
  try {
    if (es_status st = maybe_refresh(r); st != ES_OK) return st;
    const TableView* t = r->replica.table(table);
    if (t == nullptr) return fail(r, ES_NO_TABLE, std::string("no table \"") + table + "\" in this replica");
    std::string lo, hi;
    if (es_status st = encode_key(r, *t, from, nfrom, true, lo); st != ES_OK) return st;
    if (es_status st = encode_key(r, *t, to, nto, true, hi); st != ES_OK) return st;
    std::optional<std::string_view> upper;
    if (nto > 0) upper = std::string_view(hi);
    es_row row;
    es_status result = ES_OK;
    const ReplicaStatus st = r->replica.scan(*t, lo, upper, *r->cache, [&](const RowRef& ref) {
      result = make_row(r, ref, row);
      if (result != ES_OK) return false;
      row.json.clear();
      row.texts.clear();
      return fn(&row, ctx) != 0;
    });
    if (!st.ok()) return from_replica(r, st);
    if (result == ES_OK) r->error.clear();
    return result;
  } catch (...) {
    return fail(r, ES_NO_MEMORY, "out of memory");
  }
}

void es_row_free(es_row* row) { delete row; }

size_t es_row_column_count(const es_row* row) { return row == nullptr ? 0 : row->view.size(); }

const char* es_row_column_name(const es_row* row, size_t i) {
  return row == nullptr || i >= row->names.size() ? nullptr : row->names[i].c_str();
}

uint32_t es_row_column_type(const es_row* row, size_t i) {
  return row == nullptr || i >= row->columns.size() ? 0 : row->columns[i].type_oid;
}

es_status es_row_int64(const es_row* row, const char* column, int64_t* out, int* is_null) {
  return typed<int64_t>(row, column, out, is_null, &RowView::get_int64);
}

es_status es_row_double(const es_row* row, const char* column, double* out, int* is_null) {
  return typed<double>(row, column, out, is_null, &RowView::get_double);
}

es_status es_row_bool(const es_row* row, const char* column, int* out, int* is_null) {
  bool v = false;
  const es_status st = typed<bool>(row, column, &v, is_null, &RowView::get_bool);
  if (out != nullptr) *out = v ? 1 : 0;
  return st;
}

es_status es_row_text(const es_row* row, const char* column, const char** data, size_t* len, int* is_null) {
  std::string_view v;
  const es_status st = typed<std::string_view>(row, column, &v, is_null, &RowView::get_text);
  if (data != nullptr) *data = v.data();
  if (len != nullptr) *len = v.size();
  return st;
}

es_status es_row_value_text(const es_row* row, const char* column, const char** text, int* is_null) {
  const int i = column_index(row, column);
  if (i < 0 || text == nullptr) return ES_NOT_FOUND;
  *text = "";
  if (row->view.is_null(static_cast<size_t>(i))) {
    if (is_null != nullptr) *is_null = 1;
    return ES_OK;
  }
  if (is_null != nullptr) *is_null = 0;
  try {
    std::string s;
    if (!row->view.append_text(static_cast<size_t>(i), s).ok()) return ES_CORRUPT;
    row->texts.push_back(std::move(s));
    *text = row->texts.back().c_str();
    return ES_OK;
  } catch (...) {
    return ES_NO_MEMORY;
  }
}

es_status es_row_raw(const es_row* row, const char* column, const uint8_t** data, size_t* len, int* is_null) {
  const int i = column_index(row, column);
  if (i < 0 || data == nullptr || len == nullptr) return ES_NOT_FOUND;
  const auto& v = row->view.value(static_cast<size_t>(i));
  *data = reinterpret_cast<const uint8_t*>(v.data.data());
  *len = v.data.size();
  if (is_null != nullptr) *is_null = row->view.is_null(static_cast<size_t>(i)) ? 1 : 0;
  return ES_OK;
}

const char* es_row_json(const es_row* row) {
  if (row == nullptr) return "null";
  try {
    if (row->json.empty() && !row->view.append_json(row->json).ok()) row->json = "null";
    return row->json.c_str();
  } catch (...) {
    return "null";
  }
}

size_t es_freshness_get(es_replica* r, es_freshness* out, size_t cap) {
  if (r == nullptr) return 0;
  try {
    // A pinned handle reports its snapshot's own positions; otherwise the newest, shard
    // position files included.
    std::vector<edgeshard::apply::ShardPosition> shards;
    if (r->pinned) {
      shards = r->replica.manifest().shards;
    } else if (!r->replica.freshness(shards).ok()) {
      return 0;
    }
    size_t n = 0;
    for (; n < shards.size() && n < cap && out != nullptr; ++n) {
      const auto& s = shards[n];
      es_freshness& f = out[n];
      std::memset(&f, 0, sizeof f);
      std::strncpy(f.shard, s.shard.c_str(), sizeof f.shard - 1);
      f.applied_lsn = s.applied;
      f.commit_time_us = s.commit_time_us;
      f.upstream_lsn = s.upstream;
      f.seconds_behind = s.applied >= s.upstream || s.commit_time_us == 0
                             ? 0.0
                             : static_cast<double>(s.upstream_time_us - s.commit_time_us) / 1e6;
      if (f.seconds_behind < 0) f.seconds_behind = 0;
    }
    return out == nullptr ? shards.size() : n;
  } catch (...) {
    return 0;
  }
}

es_status es_wait_for(es_replica* r, const char* bookmark, int timeout_ms) {
  if (r == nullptr || bookmark == nullptr || timeout_ms < 0) return ES_INVALID;
  try {
    return from_replica(r, r->replica.wait_for(bookmark, std::chrono::milliseconds(timeout_ms)));
  } catch (...) {
    return fail(r, ES_NO_MEMORY, "out of memory");
  }
}

es_status es_verify(es_replica* r) {
  if (r == nullptr) return ES_INVALID;
  try {
    return from_replica(r, r->replica.verify());
  } catch (...) {
    return fail(r, ES_NO_MEMORY, "out of memory");
  }
}

}  // extern "C"

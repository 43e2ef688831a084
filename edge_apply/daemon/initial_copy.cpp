// The initial copy of a shard's tenants: catalog, snapshot, binary COPY, frames.
#include "edge_apply/daemon/initial_copy.hpp"

#include "common/frame_writer.hpp"
#include "common/lsn.hpp"
#include "common/pq_replication.hpp"
#include "edge_apply/daemon/copy_binary.hpp"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <unordered_map>

namespace edgeshard::apply::daemon {

namespace {

using pq::Connection;
using pq::Result;

// Raw payload after which a copy frame is cut (the stream's frames are of the same order).
constexpr size_t kCopyFrameBytes = size_t{256} << 10;
// Rows of all tenants held before every tenant's group is handed over.
constexpr size_t kCopyBufferedBytes = size_t{64} << 20;

// One column of a table, as the output plugin's RELATION lists it.
struct CopyColumn {
  std::string name;
  uint32_t type_oid = 0;
  int32_t typmod = -1;
  bool key = false;
  bool binary = true;  // the type has a send function (else copied as its text output)
  std::string type_name;
  uint32_t attnum = 0;
  bool has_missing = false;  // pg_attribute.atthasmissing: `missing` is its value
  std::string missing;       // send format (text output when !binary)
};

// One leaf relation of a distributed table.
struct CopyTable {
  uint32_t relid = 0;
  std::string schema;
  std::string name;
  std::string tenant_column;
  int32_t tenant_index = -1;
  std::vector<CopyColumn> columns;
};

// Runs sql with text parameters; false with why unless the result has status `expected`.
bool run(PGconn* conn, const std::string& sql, const std::vector<std::string>& params,
         ExecStatusType expected, Result& out, std::string& why, bool binary_result = false) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const std::string& p : params) values.push_back(p.c_str());
  out.reset(PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                         nullptr, nullptr, binary_result ? 1 : 0));
  if (PQresultStatus(out.get()) != expected) {
    const char* msg = PQresultErrorMessage(out.get());
    why = (msg != nullptr && *msg != '\0') ? std::string(msg) : pq::conn_error(conn);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    return false;
  }
  return true;
}

// An SQL identifier, quoted by libpq.
std::string identifier(PGconn* conn, std::string_view s) {
  char* q = PQescapeIdentifier(conn, s.data(), s.size());
  if (q == nullptr) throw std::runtime_error(pq::conn_error(conn));
  std::string out(q);
  PQfreemem(q);
  return out;
}

// An SQL string literal, quoted by libpq.
std::string literal(PGconn* conn, std::string_view s) {
  char* q = PQescapeLiteral(conn, s.data(), s.size());
  if (q == nullptr) throw std::runtime_error(pq::conn_error(conn));
  std::string out(q);
  PQfreemem(q);
  return out;
}

// Reads column c's missing value (ADD COLUMN with a constant default: pg_attribute.attmissingval,
// a one-element array of the column's type) in the form the stream sends it; false with why.
bool read_missing_value(PGconn* conn, uint32_t relid, CopyColumn& c, const std::string& full_type,
                        std::string& why) {
  // attmissingval is declared anyarray: its text form, cast back to the column's array type.
  std::string sql = "SELECT (a.attmissingval::text::" + full_type + "[])[1]";
  if (!c.binary) sql += "::text";
  sql += " FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum = $2::int2";
  Result res;
  if (!run(conn, sql, {std::to_string(relid), std::to_string(c.attnum)}, PGRES_TUPLES_OK, res, why, c.binary)) {
    why = "missing value of column " + c.name + ": " + why;
    return false;
  }
  if (PQntuples(res.get()) != 1 || PQgetisnull(res.get(), 0, 0)) {
    c.has_missing = false;  // a NULL default is no missing value
    return true;
  }
  c.missing.assign(PQgetvalue(res.get(), 0, 0), static_cast<size_t>(PQgetlength(res.get(), 0, 0)));
  return true;
}

// The leaf relations of every distributed table, with their columns; false with why.
bool read_tables(PGconn* conn, std::vector<CopyTable>& tables, std::string& why) {
  Result res;
  if (!run(conn, "SELECT to_regclass('edgeshard.distributed_tables') IS NOT NULL", {}, PGRES_TUPLES_OK, res, why))
    return false;
  if (std::string_view(PQgetvalue(res.get(), 0, 0)) != "t") {
    why = "the edgeshard extension is not installed in this database (CREATE EXTENSION edgeshard)";
    return false;
  }
  // A partitioned table's rows are streamed under its leaf partitions' names: copy those.
  if (!run(conn,
           "WITH leaves AS ("
           "  SELECT p.relid, d.tenant_column FROM edgeshard.distributed_tables d,"
           "         pg_partition_tree(d.relid) p WHERE p.isleaf"
           "  UNION"
           "  SELECT d.relid, d.tenant_column FROM edgeshard.distributed_tables d"
           "    JOIN pg_class c ON c.oid = d.relid WHERE c.relkind = 'r')"
           "SELECT c.oid, n.nspname, c.relname, l.tenant_column"
           "  FROM leaves l JOIN pg_class c ON c.oid = l.relid"
           "  JOIN pg_namespace n ON n.oid = c.relnamespace"
           " ORDER BY c.oid",
           {}, PGRES_TUPLES_OK, res, why)) {
    return false;
  }
  for (int i = 0; i < PQntuples(res.get()); ++i) {
    CopyTable t;
    t.relid = static_cast<uint32_t>(std::stoul(PQgetvalue(res.get(), i, 0)));
    t.schema = PQgetvalue(res.get(), i, 1);
    t.name = PQgetvalue(res.get(), i, 2);
    t.tenant_column = PQgetvalue(res.get(), i, 3);
    tables.push_back(std::move(t));
  }
  for (CopyTable& t : tables) {
    Result cols;
    if (!run(conn,
             "SELECT a.attname, a.atttypid, a.atttypmod,"
             "       coalesce(a.attnum = ANY (i.indkey), false), ty.typsend <> 0,"
             "       format_type(a.atttypid, NULL), a.attnum, a.atthasmissing,"
             "       format_type(a.atttypid, a.atttypmod)"
             "  FROM pg_attribute a"
             "  JOIN pg_type ty ON ty.oid = a.atttypid"
             "  LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary"
             " WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped"
             "   AND a.attgenerated = ''"
             " ORDER BY a.attnum",
             {std::to_string(t.relid)}, PGRES_TUPLES_OK, cols, why)) {
      return false;
    }
    for (int r = 0; r < PQntuples(cols.get()); ++r) {
      CopyColumn c;
      c.name = PQgetvalue(cols.get(), r, 0);
      c.type_oid = static_cast<uint32_t>(std::stoul(PQgetvalue(cols.get(), r, 1)));
      c.typmod = static_cast<int32_t>(std::stol(PQgetvalue(cols.get(), r, 2)));
      c.key = std::string_view(PQgetvalue(cols.get(), r, 3)) == "t";
      c.binary = std::string_view(PQgetvalue(cols.get(), r, 4)) == "t";
      c.type_name = PQgetvalue(cols.get(), r, 5);
      c.attnum = static_cast<uint32_t>(std::stoul(PQgetvalue(cols.get(), r, 6)));
      c.has_missing = std::string_view(PQgetvalue(cols.get(), r, 7)) == "t";
      if (c.has_missing && !read_missing_value(conn, t.relid, c, PQgetvalue(cols.get(), r, 8), why)) return false;
      if (c.name == t.tenant_column) t.tenant_index = static_cast<int32_t>(t.columns.size());
      t.columns.push_back(std::move(c));
    }
    if (t.tenant_index < 0) {
      why = "table " + t.schema + "." + t.name + " has no column " + t.tenant_column +
            " (edgeshard.distributed_tables names it as the tenant column)";
      return false;
    }
  }
  return true;
}

// The COPY statement of one table: the tenant key as text, then the columns.
std::string copy_statement(PGconn* conn, const CopyTable& t, const std::vector<std::string>& tenants) {
  const std::string tenant = "t." + identifier(conn, t.tenant_column);
  std::string sql = "COPY (SELECT " + tenant + "::text";
  for (const CopyColumn& c : t.columns) {
    sql += ", t." + identifier(conn, c.name);
    if (!c.binary) sql += "::text";
  }
  sql += " FROM ONLY " + identifier(conn, t.schema) + "." + identifier(conn, t.name) + " t";
  if (!tenants.empty()) {
    sql += " WHERE " + tenant + " = ANY (ARRAY[";
    for (size_t i = 0; i < tenants.size(); ++i) sql += (i == 0 ? "" : ", ") + literal(conn, tenants[i]);
    sql += "]::" + t.columns[static_cast<size_t>(t.tenant_index)].type_name + "[])";
  }
  return sql + ") TO STDOUT (FORMAT binary)";
}

// A tenant's rows of the table being copied, not handed over yet.
struct TenantRows {
  frame::Writer writer{frame::Compression::kLz4};
  std::vector<std::vector<uint8_t>> frames;
  uint32_t sequence = 0;
  size_t bytes = 0;  // raw payload in frames and writer
};

// Copies one table's rows into frame groups handed to sink.rows; false with why.
class TableCopy {
 public:
  TableCopy(const CopyTable& table, const CopySink& sink) : table_(table), sink_(sink) {}

  // Adds one COPY tuple (tenant key text, then the columns).
  bool add(const std::vector<std::optional<std::string_view>>& fields, std::string& why) {
    if (fields.size() != table_.columns.size() + 1) {
      why = "copy of " + table_.schema + "." + table_.name + " returned " + std::to_string(fields.size()) +
            " fields where " + std::to_string(table_.columns.size() + 1) + " were expected";
      return false;
    }
    if (!fields[0]) {
      ++rows_without_tenant_;
      return true;
    }
    const std::string tenant(*fields[0]);
    TenantRows& t = tenants_[tenant];
    const size_t before = t.writer.size();
    t.writer.insert_begin(table_.relid, static_cast<uint32_t>(table_.columns.size()));
    for (size_t i = 0; i < table_.columns.size(); ++i) {
      const auto& f = fields[i + 1];
      if (!f) {
        t.writer.value_null();
      } else if (table_.columns[i].binary) {
        t.writer.value_binary(f->data(), f->size());
      } else {
        t.writer.value_text(f->data(), f->size());
      }
    }
    const size_t added = t.writer.size() - before;
    t.bytes += added;
    buffered_ += added;
    if (t.writer.size() >= kCopyFrameBytes) seal(tenant, t, false);
    if (t.bytes >= kCopyGroupBytes) {
      if (!hand_over(tenant, t, why)) return false;
    }
    if (buffered_ >= kCopyBufferedBytes) return finish(why);
    return true;
  }

  // Hands every tenant's remaining rows over.
  bool finish(std::string& why) {
    for (auto& [tenant, t] : tenants_) {
      if (!hand_over(tenant, t, why)) return false;
    }
    tenants_.clear();
    buffered_ = 0;
    return true;
  }

  // Rows whose tenant column was NULL (they belong to no tenant: not copied).
  uint64_t rows_without_tenant() const noexcept { return rows_without_tenant_; }

 private:
  // Cuts the tenant's current frame.
  void seal(const std::string& tenant, TenantRows& t, bool last) {
    frame::Fields f;
    f.tenant_key = tenant;
    f.sequence = t.sequence++;
    f.last = last;
    const std::span<const uint8_t> bytes = t.writer.seal(f);
    t.frames.emplace_back(bytes.begin(), bytes.end());
  }

  // Ends the tenant's group and gives it to the sink.
  bool hand_over(const std::string& tenant, TenantRows& t, std::string& why) {
    if (t.bytes == 0 && t.frames.empty()) return true;
    seal(tenant, t, true);
    const bool ok = sink_.rows(tenant, t.frames, why);
    buffered_ -= std::min(buffered_, t.bytes);
    t.frames.clear();
    t.sequence = 0;
    t.bytes = 0;
    t.writer.release_memory();
    return ok;
  }

  const CopyTable& table_;
  const CopySink& sink_;
  std::unordered_map<std::string, TenantRows> tenants_;
  size_t buffered_ = 0;
  uint64_t rows_without_tenant_ = 0;
};

// The RELATION frame of a table.
std::vector<uint8_t> relation_frame(const CopyTable& t) {
  std::vector<frame::Column> cols;
  for (const CopyColumn& c : t.columns) {
    frame::Column fc;
    fc.name = c.name;
    fc.type_oid = c.type_oid;
    fc.typmod = c.typmod;
    fc.key = c.key;
    fc.attnum = c.attnum;
    fc.has_missing = c.has_missing;
    fc.missing_kind = c.binary ? frame::ValueKind::kBinary : frame::ValueKind::kText;
    fc.missing = c.missing;
    cols.push_back(fc);
  }
  frame::Writer w(frame::Compression::kNone);
  w.relation(t.relid, t.schema, t.name, cols, t.tenant_index);
  frame::Fields f;
  f.many_tenants = true;
  f.last = true;
  const std::span<const uint8_t> bytes = w.seal(f);
  return {bytes.begin(), bytes.end()};
}

// Streams one table's COPY into sink; false with why.
bool copy_table(PGconn* conn, const CopyTable& t, const std::vector<std::string>& tenants,
                const std::atomic<bool>& stop, const CopySink& sink, CopyOutcome& out, std::string& why) {
  const std::vector<uint8_t> rel = relation_frame(t);
  if (!sink.relation(rel, why)) return false;
  const std::string sql = copy_statement(conn, t, tenants);
  Result res;
  if (!run(conn, sql, {}, PGRES_COPY_OUT, res, why)) {
    why = "copy of " + t.schema + "." + t.name + " failed: " + why;
    return false;
  }
  CopyBinaryReader reader;
  TableCopy copy(t, sink);
  std::vector<std::optional<std::string_view>> fields;
  for (;;) {
    char* raw = nullptr;
    const int n = PQgetCopyData(conn, &raw, /*async=*/0);
    if (n == -1) break;
    if (n < 0) {
      why = "copy of " + t.schema + "." + t.name + " failed: " + pq::conn_error(conn);
      return false;
    }
    pq::CopyBuffer buffer(raw);
    out.bytes += static_cast<uint64_t>(n);
    reader.feed(raw, static_cast<size_t>(n));
    for (;;) {
      const CopyBinaryReader::Result r = reader.next(fields);
      if (r == CopyBinaryReader::Result::kError) {
        why = "copy of " + t.schema + "." + t.name + ": " + reader.error();
        return false;
      }
      if (r != CopyBinaryReader::Result::kTuple) break;
      if (!copy.add(fields, why)) return false;
      ++out.rows;
    }
    if (stop.load()) {
      why = "stopped during the copy of " + t.schema + "." + t.name;
      return false;
    }
  }
  Result done(PQgetResult(conn));
  if (PQresultStatus(done.get()) != PGRES_COMMAND_OK) {
    why = "copy of " + t.schema + "." + t.name + " failed: " + PQresultErrorMessage(done.get());
    while (!why.empty() && why.back() == '\n') why.pop_back();
    return false;
  }
  while (Result extra{PQgetResult(conn)}) {
  }
  if (!reader.ended()) {
    why = "copy of " + t.schema + "." + t.name + " ended without the binary COPY trailer";
    return false;
  }
  ++out.tables;
  return copy.finish(why);
}

// copy_shard() without exception handling.
bool copy_shard_impl(const std::string& conninfo, const std::vector<std::string>& tenants,
                     const std::atomic<bool>& stop, const CopySink& sink, CopyOutcome& out, std::string& why) {
  Connection conn(PQconnectdb(conninfo.c_str()));
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
    why = "cannot connect to the primary: " + (conn ? pq::conn_error(conn.get()) : std::string("out of memory"));
    return false;
  }
  Result res;
  // A long copy must not be cut by the server's defaults; the snapshot is the first statement's.
  if (!run(conn.get(), "SET statement_timeout = 0", {}, PGRES_COMMAND_OK, res, why) ||
      !run(conn.get(), "SET idle_in_transaction_session_timeout = 0", {}, PGRES_COMMAND_OK, res, why) ||
      !run(conn.get(), "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", {}, PGRES_COMMAND_OK, res, why) ||
      !run(conn.get(), "SELECT pg_current_snapshot()::text, (extract(epoch FROM now()) * 1e6)::int8",
           {}, PGRES_TUPLES_OK, res, why)) {
    return false;
  }
  if (!CopySnapshot::parse(PQgetvalue(res.get(), 0, 0), out.snapshot, why)) return false;
  out.snapshot_time_us = std::stoll(PQgetvalue(res.get(), 0, 1));
  if (!sink.snapshot(out.snapshot, why)) return false;
  std::vector<CopyTable> tables;
  if (!read_tables(conn.get(), tables, why)) return false;
  for (const CopyTable& t : tables) {
    if (!copy_table(conn.get(), t, tenants, stop, sink, out, why)) return false;
  }
  // L1: read after the last row, so every transaction the snapshot shows committed below it.
  if (!run(conn.get(), "SELECT pg_current_wal_lsn()::text", {}, PGRES_TUPLES_OK, res, why)) return false;
  if (!parse_lsn(PQgetvalue(res.get(), 0, 0), out.end_lsn)) {
    why = std::string("unexpected pg_current_wal_lsn() \"") + PQgetvalue(res.get(), 0, 0) + "\"";
    return false;
  }
  return run(conn.get(), "COMMIT", {}, PGRES_COMMAND_OK, res, why);
}

}  // namespace

bool copy_shard(const std::string& conninfo, const std::vector<std::string>& tenants,
                const std::atomic<bool>& stop, const CopySink& sink, CopyOutcome& out, std::string& why) {
  out = CopyOutcome{};
  try {
    return copy_shard_impl(conninfo, tenants, stop, sink, out, why);
  } catch (const std::exception& e) {
    why = std::string("initial copy failed: ") + e.what();
    return false;
  }
}

}  // namespace edgeshard::apply::daemon

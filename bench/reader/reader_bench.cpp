// bench/reader: point lookups by primary key from an edge replica vs SQLite and LMDB, in one run
// (bench/reader/run adds PostgreSQL with pgbench). The same rows — orders(tenant_id int8, id
// int8, note text ~80 bytes, amount int8), one tenant, key (tenant_id, id) — are built into
//   (a) a replica base file (LZ4) + manifest + head in a temporary data directory,
//   (b) SQLite (one table, PRIMARY KEY (tenant_id, id) WITHOUT ROWID, prepared SELECT, warm),
//   (c) LMDB (key = the replica's encoded key bytes, value = the tuple bytes),
// then the same sequence of uniform random keys is looked up with 1 and 2 threads (each thread its
// own reader, cache, connection or transaction). Lookups/s and p50/p99 latency (every 64th lookup
// timed with steady_clock). Prints "size replica_bytes N" for the run script's space comparison.
//
//   bench_reader [--rows N] [--lookups N] [--dir DIR] [--copy FILE]
// --copy writes the rows as COPY text (tenant_id, id, note, amount) for PostgreSQL.
#include "edge_apply/edgeshard_reader.h"
#include "edge_apply/key_codec.hpp"
#include "edge_apply/manifest.hpp"
#include "edge_apply/replica_file.hpp"
#include "edge_apply/tenant_replica.hpp"
#include "edge_apply/tuple.hpp"

#include <lmdb.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace edgeshard;
using namespace edgeshard::apply;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kTenant = 42;

// Big-endian bytes of v (PostgreSQL's send format of int8).
std::string be8(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * (7 - i)));
  return s;
}

// The note of row id: ~80 bytes, varied enough that LZ4 does not make it free.
std::string note_of(int64_t id) {
  static const char* words[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"};
  std::string s = "order " + std::to_string(id) + ":";
  uint64_t x = static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ull;
  while (s.size() < 80) {
    s += ' ';
    s += words[x & 7];
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    s += std::to_string(x >> 54);
  }
  s.resize(80);
  return s;
}

int64_t amount_of(int64_t id) { return (id * 7919) % 100000; }

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "bench_reader: %s\n", why.c_str());
  std::exit(1);
}

struct Result {
  double per_sec = 0;
  double p50_us = 0, p99_us = 0;
};

// Runs lookups over ids with `threads` threads; make_worker(thread index) returns the function
// that looks one id up (returning false when not found). Every 64th lookup is timed.
Result run(int threads, const std::vector<int64_t>& ids,
           const std::function<std::function<bool(int64_t)>(int)>& make_worker) {
  std::vector<std::vector<double>> samples(threads);
  std::vector<std::function<bool(int64_t)>> workers;
  for (int t = 0; t < threads; ++t) workers.push_back(make_worker(t));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<uint64_t> missing{0};
  std::vector<std::thread> pool;
  Clock::time_point start;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      auto& lookup = workers[t];
      auto& s = samples[t];
      s.reserve(ids.size() / 64 + 1);
      const size_t n = ids.size();
      // Each thread does the whole sequence, starting at a different offset.
      const size_t offset = n / threads * t;
      uint64_t miss = 0;
      ++ready;
      while (!go.load(std::memory_order_acquire)) {
      }
      for (size_t i = 0; i < n; ++i) {
        const int64_t id = ids[(i + offset) % n];
        if ((i & 63) == 0) {
          const auto t0 = Clock::now();
          miss += !lookup(id);
          s.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        } else {
          miss += !lookup(id);
        }
      }
      missing += miss;
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  start = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (missing.load() != 0) die("lookups missed " + std::to_string(missing.load()) + " rows");
  std::vector<double> all;
  for (auto& s : samples) all.insert(all.end(), s.begin(), s.end());
  std::sort(all.begin(), all.end());
  Result r;
  r.per_sec = static_cast<double>(ids.size()) * threads / secs;
  r.p50_us = all[all.size() / 2];
  r.p99_us = all[all.size() * 99 / 100];
  return r;
}

void sqlite_check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
    die(std::string("sqlite ") + what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

void lmdb_check(int rc, const char* what) {
  if (rc != 0) die(std::string("lmdb ") + what + ": " + mdb_strerror(rc));
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 1000000;
  size_t lookups = 2000000;
  std::string dir, copy_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--rows") rows = std::stoll(argv[i + 1]);
    else if (a == "--lookups") lookups = std::stoull(argv[i + 1]);
    else if (a == "--dir") dir = argv[i + 1];
    else if (a == "--copy") copy_path = argv[i + 1];
    else die("unknown option " + a);
  }
  bool own_dir = false;
  if (dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "bench_reader_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) die("mkdtemp");
    dir = tmpl;
    own_dir = true;
  }
  const fs::path data = fs::path(dir) / "edge";
  const std::string tenant = std::to_string(kTenant);
  const fs::path tdir = tenant_dir(data, tenant);
  fs::create_directories(tdir);

  // --- build: keys in order (ids ascending are in key order: big-endian int8 encoding) --------
  const auto b0 = Clock::now();
  std::vector<frame::Column> cols = {{"tenant_id", 20, -1, true}, {"id", 20, -1, true},
                                     {"note", 25, -1, false}, {"amount", 20, -1, false}};
  replica::Table table;
  table.table_no = 1;
  table.schema = "public";
  table.name = "orders";
  table.columns = {{"tenant_id", 20, -1, true}, {"id", 20, -1, true}, {"note", 25, -1, false},
                   {"amount", 20, -1, false}};
  replica::Writer w;
  replica::Writer::Options opt;
  opt.tenant_key = tenant;
  opt.compress = true;
  if (!w.create((tdir / "base").string(), opt).ok()) die("replica create");
  if (!w.add_table(table).ok()) die("replica add_table");

  sqlite3* db = nullptr;
  const std::string sqlite_path = (fs::path(dir) / "orders.sqlite").string();
  sqlite_check(sqlite3_open(sqlite_path.c_str(), &db), db, "open");
  sqlite_check(sqlite3_exec(db,
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
                            "CREATE TABLE orders(tenant_id INTEGER NOT NULL, id INTEGER NOT NULL, note TEXT,"
                            " amount INTEGER, PRIMARY KEY (tenant_id, id)) WITHOUT ROWID; BEGIN;",
                            nullptr, nullptr, nullptr),
               db, "schema");
  sqlite3_stmt* ins = nullptr;
  sqlite_check(sqlite3_prepare_v2(db, "INSERT INTO orders VALUES (?, ?, ?, ?)", -1, &ins, nullptr), db, "prepare");

  const fs::path lmdb_dir = fs::path(dir) / "lmdb";
  fs::create_directories(lmdb_dir);
  MDB_env* env = nullptr;
  lmdb_check(mdb_env_create(&env), "env_create");
  lmdb_check(mdb_env_set_mapsize(env, size_t{4} << 30), "mapsize");
  lmdb_check(mdb_env_set_maxreaders(env, 16), "maxreaders");
  lmdb_check(mdb_env_open(env, lmdb_dir.c_str(), MDB_NOSYNC | MDB_NOTLS, 0644), "env_open");
  MDB_txn* wtxn = nullptr;
  MDB_dbi dbi;
  lmdb_check(mdb_txn_begin(env, nullptr, 0, &wtxn), "txn_begin");
  lmdb_check(mdb_dbi_open(wtxn, nullptr, 0, &dbi), "dbi_open");

  std::ofstream copy;
  if (!copy_path.empty()) copy.open(copy_path);
  std::string key, tuple;
  for (int64_t id = 1; id <= rows; ++id) {
    const std::string tid = be8(kTenant), sid = be8(static_cast<uint64_t>(id)), amt = be8(amount_of(id));
    const std::string note = note_of(id);
    std::vector<frame::Value> values = {{frame::ValueKind::kBinary, tid}, {frame::ValueKind::kBinary, sid},
                                        {frame::ValueKind::kBinary, note}, {frame::ValueKind::kBinary, amt}};
    key.clear();
    if (!encode_row_key(key, cols, values).ok()) die("encode_row_key");
    tuple.clear();
    append_tuple(tuple, values);
    if (!w.add(1, key, tuple).ok()) die("replica add");
    sqlite3_bind_int64(ins, 1, kTenant);
    sqlite3_bind_int64(ins, 2, id);
    sqlite3_bind_text(ins, 3, note.data(), static_cast<int>(note.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(ins, 4, amount_of(id));
    sqlite_check(sqlite3_step(ins), db, "insert");
    sqlite3_reset(ins);
    MDB_val k{key.size(), key.data()}, v{tuple.size(), tuple.data()};
    lmdb_check(mdb_put(wtxn, dbi, &k, &v, MDB_APPEND), "put");
    if (copy.is_open()) copy << kTenant << '\t' << id << '\t' << note << '\t' << amount_of(id) << '\n';
  }
  if (!w.finish().ok()) die("replica finish");
  sqlite3_finalize(ins);
  sqlite_check(sqlite3_exec(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE);", nullptr, nullptr, nullptr), db, "commit");
  sqlite3_close(db);
  lmdb_check(mdb_txn_commit(wtxn), "commit");
  if (copy.is_open()) copy.close();

  Manifest m;
  m.generation = 1;
  m.tenant = tenant;
  m.published = true;
  m.shards = {{"s1", 0x5000, 1700000000000000, 0x5000, 1700000000000000}};
  m.files = {{FileKind::kBase, "base", static_cast<uint64_t>(rows), 0}};
  std::string why;
  if (!write_manifest(tdir, m, why)) die("manifest: " + why);
  HeadWriter head;
  if (!head.open(tdir, why)) die("head: " + why);
  head.publish(1);
  const double build_s = std::chrono::duration<double>(Clock::now() - b0).count();

  MDB_stat mst;
  {
    MDB_txn* t = nullptr;
    lmdb_check(mdb_txn_begin(env, nullptr, MDB_RDONLY, &t), "txn");
    mdb_stat(t, dbi, &mst);
    mdb_txn_abort(t);
  }
  const uint64_t replica_bytes = fs::file_size(tdir / "base");
  const uint64_t sqlite_bytes = fs::file_size(sqlite_path);
  const uint64_t lmdb_bytes = static_cast<uint64_t>(mst.ms_psize) *
                              (mst.ms_branch_pages + mst.ms_leaf_pages + mst.ms_overflow_pages);
  std::printf("built %lld rows in %.1f s: replica %.1f MB, SQLite %.1f MB, LMDB %.1f MB (pages in use)\n",
              static_cast<long long>(rows), build_s, replica_bytes / 1e6, sqlite_bytes / 1e6, lmdb_bytes / 1e6);
  std::printf("size replica_bytes %llu\nsize sqlite_bytes %llu\nsize lmdb_bytes %llu\n",
              static_cast<unsigned long long>(replica_bytes), static_cast<unsigned long long>(sqlite_bytes),
              static_cast<unsigned long long>(lmdb_bytes));

  // --- the lookup sequence: uniform random ids, the same for every contender -----------------
  std::vector<int64_t> ids(lookups);
  std::mt19937_64 rng(20261124);
  std::uniform_int_distribution<int64_t> pick(1, rows);
  for (auto& id : ids) id = pick(rng);

  // Per-thread state of each contender, kept alive across one run().
  struct ReplicaState {
    TenantReplica r;
    std::unique_ptr<replica::BlockCache> cache;
    const TableView* t = nullptr;
    std::vector<frame::Column> cols;
    std::string key;
    volatile int64_t sink = 0;
  };
  struct SqliteState {
    sqlite3* db = nullptr;
    sqlite3_stmt* st = nullptr;
    ~SqliteState() {
      sqlite3_finalize(st);
      sqlite3_close(db);
    }
  };
  struct LmdbState {
    MDB_txn* txn = nullptr;
    ~LmdbState() {
      if (txn) mdb_txn_abort(txn);
    }
  };
  struct CState {
    es_replica* r = nullptr;
    ~CState() { es_close(r); }
  };
  volatile int64_t sink = 0;

  // Replica via TenantReplica::get: key encoding from the int8 (as a caller with typed keys does)
  // + lookup + reading the amount column's bytes.
  auto replica_worker = [&](size_t cache_bytes, std::vector<std::unique_ptr<ReplicaState>>& states) {
    return [&, cache_bytes](int) -> std::function<bool(int64_t)> {
      auto s = std::make_unique<ReplicaState>();
      if (!s->r.open(data, tenant).ok()) die("replica open");
      s->cache = std::make_unique<replica::BlockCache>(cache_bytes);
      s->t = s->r.table("orders");
      if (s->t == nullptr) die("no table");
      s->cols = cols;
      ReplicaState* p = s.get();
      states.push_back(std::move(s));
      return [p](int64_t id) {
        const std::string tid = be8(kTenant), sid = be8(static_cast<uint64_t>(id));
        const frame::Value v[2] = {{frame::ValueKind::kBinary, tid}, {frame::ValueKind::kBinary, sid}};
        p->key.clear();
        encode_row_key(p->key, std::span<const frame::Column>(p->cols.data(), 2), v);
        RowRef ref;
        if (!p->r.get(*p->t, p->key, *p->cache, ref).ok()) return false;
        p->sink = p->sink + static_cast<int64_t>(ref.tuple.size());
        return true;
      };
    };
  };
  struct Line {
    std::string name;
    Result one, two;
  };
  std::vector<Line> lines;
  auto measure = [&](const std::string& name, const std::function<std::function<bool(int64_t)>(int)>& mk,
                     const std::function<void()>& reset) {
    Line l{name, {}, {}};
    l.one = run(1, ids, mk);
    reset();
    l.two = run(2, ids, mk);
    reset();
    std::printf("%-38s 1 thread %10.0f/s  p50 %6.2f us  p99 %6.2f us | 2 threads %10.0f/s  p50 %6.2f us  p99 %6.2f us\n",
                name.c_str(), l.one.per_sec, l.one.p50_us, l.one.p99_us, l.two.per_sec, l.two.p50_us, l.two.p99_us);
    std::fflush(stdout);
    lines.push_back(l);
  };

  for (size_t mb : {256, 8}) {
    std::vector<std::unique_ptr<ReplicaState>> st;
    // The cache is warmed by one untimed pass over every row inside each thread's worker.
    auto mk = [&, mb](int t) {
      auto f = replica_worker(size_t{mb} << 20, st)(t);
      for (int64_t id = 1; id <= rows; ++id) f(id);
      return f;
    };
    measure("replica get (C++, cache " + std::to_string(mb) + " MiB)", mk, [&] { st.clear(); });
  }
  {
    std::vector<std::unique_ptr<CState>> st;
    auto mk = [&](int) -> std::function<bool(int64_t)> {
      auto s = std::make_unique<CState>();
      if (es_open(data.c_str(), tenant.c_str(), &s->r) != ES_OK) die("es_open");
      if (es_set_cache_bytes(s->r, size_t{256} << 20) != ES_OK) die("es_set_cache_bytes");
      CState* p = s.get();
      st.push_back(std::move(s));
      auto f = [p, &sink](int64_t id) {
        char buf[24];
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(id));
        const char* key[] = {"42", buf};
        es_row* row = nullptr;
        if (es_get(p->r, "orders", key, 2, &row) != ES_OK) return false;
        int64_t amount = 0;
        es_row_int64(row, "amount", &amount, nullptr);
        sink = sink + amount;
        es_row_free(row);
        return true;
      };
      for (int64_t id = 1; id <= rows; ++id) f(id);
      return f;
    };
    measure("replica es_get (C API, text keys)", mk, [&] { st.clear(); });
  }
  {
    std::vector<std::unique_ptr<SqliteState>> st;
    auto mk = [&](int) -> std::function<bool(int64_t)> {
      auto s = std::make_unique<SqliteState>();
      sqlite_check(sqlite3_open_v2(sqlite_path.c_str(), &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr),
                   s->db, "open");
      sqlite3_exec(s->db, "PRAGMA cache_size=-262144; PRAGMA mmap_size=0;", nullptr, nullptr, nullptr);
      sqlite_check(sqlite3_prepare_v2(s->db, "SELECT note, amount FROM orders WHERE tenant_id = ? AND id = ?", -1,
                                      &s->st, nullptr),
                   s->db, "prepare");
      SqliteState* p = s.get();
      st.push_back(std::move(s));
      // One autocommit read transaction per lookup (sqlite3_step outside BEGIN).
      auto f = [p, &sink](int64_t id) {
        sqlite3_bind_int64(p->st, 1, kTenant);
        sqlite3_bind_int64(p->st, 2, id);
        const bool found = sqlite3_step(p->st) == SQLITE_ROW;
        if (found) sink = sink + sqlite3_column_int64(p->st, 1) + sqlite3_column_bytes(p->st, 0);
        sqlite3_reset(p->st);
        return found;
      };
      for (int64_t id = 1; id <= rows; ++id) f(id);  // warm
      return f;
    };
    measure("SQLite (prepared, txn per lookup)", mk, [&] { st.clear(); });
  }
  {
    std::vector<std::unique_ptr<LmdbState>> st;
    // One read txn per lookup: begin (renew of a reset txn, as LMDB's docs advise) + get + reset.
    auto mk = [&](int) -> std::function<bool(int64_t)> {
      auto s = std::make_unique<LmdbState>();
      lmdb_check(mdb_txn_begin(env, nullptr, MDB_RDONLY, &s->txn), "txn");
      mdb_txn_reset(s->txn);
      LmdbState* p = s.get();
      st.push_back(std::move(s));
      auto f = [p, &cols, &sink, &dbi](int64_t id) {
        thread_local std::string k;
        const std::string tid = be8(kTenant), sid = be8(static_cast<uint64_t>(id));
        const frame::Value v[2] = {{frame::ValueKind::kBinary, tid}, {frame::ValueKind::kBinary, sid}};
        k.clear();
        encode_row_key(k, std::span<const frame::Column>(cols.data(), 2), v);
        if (mdb_txn_renew(p->txn) != 0) return false;
        MDB_val key{k.size(), k.data()}, val;
        const bool found = mdb_get(p->txn, dbi, &key, &val) == 0;
        if (found) sink = sink + static_cast<int64_t>(val.mv_size);
        mdb_txn_reset(p->txn);
        return found;
      };
      for (int64_t id = 1; id <= rows; ++id) f(id);
      return f;
    };
    measure("LMDB (txn per lookup)", mk, [&] { st.clear(); });
  }
  {
    std::vector<std::unique_ptr<LmdbState>> st;
    auto mk = [&](int) -> std::function<bool(int64_t)> {
      auto s = std::make_unique<LmdbState>();
      lmdb_check(mdb_txn_begin(env, nullptr, MDB_RDONLY, &s->txn), "txn");
      LmdbState* p = s.get();
      st.push_back(std::move(s));
      auto f = [p, &cols, &sink, &dbi](int64_t id) {
        thread_local std::string k;
        const std::string tid = be8(kTenant), sid = be8(static_cast<uint64_t>(id));
        const frame::Value v[2] = {{frame::ValueKind::kBinary, tid}, {frame::ValueKind::kBinary, sid}};
        k.clear();
        encode_row_key(k, std::span<const frame::Column>(cols.data(), 2), v);
        MDB_val key{k.size(), k.data()}, val;
        const bool found = mdb_get(p->txn, dbi, &key, &val) == 0;
        if (found) sink = sink + static_cast<int64_t>(val.mv_size);
        return found;
      };
      for (int64_t id = 1; id <= rows; ++id) f(id);
      return f;
    };
    measure("LMDB (one long read txn)", mk, [&] { st.clear(); });
  }
  mdb_env_close(env);

  // Machine-readable lines for the run script: "result NAME THREADS PER_SEC P50 P99".
  for (size_t i = 0; i < lines.size(); ++i) {
    std::printf("result %zu 1 %.0f %.2f %.2f\nresult %zu 2 %.0f %.2f %.2f\n", i, lines[i].one.per_sec,
                lines[i].one.p50_us, lines[i].one.p99_us, i, lines[i].two.per_sec, lines[i].two.p50_us,
                lines[i].two.p99_us);
  }
  const Result& rep1 = lines[0].one;
  const Result& rep2 = lines[0].two;
  std::printf("ratio replica(256 MiB)/SQLite    1 thread %.2f   2 threads %.2f\n", rep1.per_sec / lines[3].one.per_sec,
              rep2.per_sec / lines[3].two.per_sec);
  std::printf("ratio replica(256 MiB)/LMDB-txn  1 thread %.2f   2 threads %.2f\n", rep1.per_sec / lines[4].one.per_sec,
              rep2.per_sec / lines[4].two.per_sec);
  std::printf("ratio replica(256 MiB)/LMDB-long 1 thread %.2f   2 threads %.2f\n", rep1.per_sec / lines[5].one.per_sec,
              rep2.per_sec / lines[5].two.per_sec);
  std::printf("ratio es_get/SQLite               1 thread %.2f   2 threads %.2f\n",
              lines[2].one.per_sec / lines[3].one.per_sec, lines[2].two.per_sec / lines[3].two.per_sec);
  std::printf("ratio replica(8 MiB)/replica(256 MiB) 1 thread %.2f\n", lines[1].one.per_sec / rep1.per_sec);
  std::printf("replica_1t %.0f\nreplica_2t %.0f\n", rep1.per_sec, rep2.per_sec);
  if (own_dir) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return static_cast<int>(sink & 0);
}

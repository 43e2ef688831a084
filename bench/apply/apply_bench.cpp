// bench/apply: the client side of bench/apply/run. The same code measures both peers: an edge
// replica written by edgeshard-apply (read through the reader library's C API,
// edge_apply/edgeshard_reader.h) and a native logical replication subscriber (read over libpq).
//
//   bench_apply catchup (--replica DIR | --subscriber CONNINFO) --expect FILE [--count N]
//                       [--poll-ms 10] [--timeout-s 900]
//     Waits until the last row of every tenant listed in FILE ("tenant last_id" lines) is
//     visible and prints "caught_up <Unix time, s>". Rows of one tenant are applied in commit
//     order by both peers, so that is the moment every tenant has caught up. With --count, it
//     then counts every row (of the listed tenants) and fails unless there are N.
//
//   bench_apply lag --primary CONNINFO (--replica DIR | --subscriber CONNINFO) [--rate 5000]
//                   [--txn-rows 100] [--tenants 100] [--seconds 40] [--warmup-s 5]
//                   [--id-base 0] [--poll-us 1000] [--timeout-s 30] [--label NAME]
//                   [--samples FILE]
//     A writer inserts --rate rows/s on the primary, in transactions of --txn-rows rows of one
//     tenant each (tenants round robin), on an open-loop schedule; right after each COMMIT
//     returns it takes edgeshard.bookmark(). A prober thread polls, every --poll-us, each
//     transaction not yet visible: (row) its last row is readable — es_get on the tenant's
//     replica, or a SELECT on the subscriber; (bookmark) the replica's applied position has passed
//     the bookmark — es_wait_for(bookmark, 0), or for the subscriber its replication origin's
//     remote_lsn (the primary's end LSN of the last commit it applied). Commit-to-visible is the
//     time from COMMIT returning to the first poll that sees it. Transactions of the first
//     --warmup-s seconds are not counted. Before that, one transaction per tenant is written and
//     waited for (so replicas exist and the subscriber's apply worker runs).
#include "common/lsn.hpp"
#include "edge_apply/edgeshard_reader.h"

#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// Prints why and exits with status 1 (any failure ends the measurement).
[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "bench_apply: %s\n", why.c_str());
  std::exit(1);
}

// Milliseconds between two time points.
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// The current Unix time in seconds (the run script compares it with `date +%s.%N`).
double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One transaction (or one tenant's last row, for catchup) whose visibility is awaited.
struct Item {
  int64_t tenant = 0;
  int64_t last_id = 0;
  uint64_t bookmark = 0;  // 0: no bookmark to wait for
  Clock::time_point committed{};
  double since_start_s = 0;  // when it was scheduled, from the start of the timed phase
  bool counted = false;      // part of the statistics (after the warm-up)
  bool row_seen = false;
  bool bookmark_seen = false;
  double row_ms = -1;
  double bookmark_ms = -1;
  uint64_t applied_at_row = 0;  // the replica's applied position when the row was first seen
  bool done() const { return row_seen && bookmark_seen; }
};

// Where rows become visible: an edge replica or a native subscriber.
class Visibility {
 public:
  virtual ~Visibility() = default;
  // Checks every item not seen yet; marks what is visible now, with `now` as its time.
  virtual void check(const std::vector<Item*>& items, Clock::time_point now) = 0;
  // Counts the rows of table orders of these tenants.
  virtual int64_t count_rows(const std::vector<int64_t>& tenants) = 0;
};

// An edge replica directory, read with the C API: one handle per tenant, opened when its
// directory appears.
class ReplicaVisibility : public Visibility {
 public:
  explicit ReplicaVisibility(std::string dir) : dir_(std::move(dir)) {}
  ~ReplicaVisibility() override {
    for (auto& [t, r] : handles_) es_close(r);
  }

  void check(const std::vector<Item*>& items, Clock::time_point now) override {
    std::map<int64_t, uint64_t> applied;  // per tenant, once per sweep
    // The tenant's applied position (es_wait_for(r, bookmark, 0) compares the same field).
    auto applied_of = [&](int64_t tenant, es_replica* r) {
      auto a = applied.find(tenant);
      if (a == applied.end()) {
        es_freshness f[4];
        const size_t n = es_freshness_get(r, f, 4);
        a = applied.emplace(tenant, n > 0 ? f[0].applied_lsn : 0).first;
      }
      return a->second;
    };
    for (Item* it : items) {
      es_replica* r = handle(it->tenant);
      if (r == nullptr) continue;
      if (!it->row_seen) {
        const std::string t = std::to_string(it->tenant), id = std::to_string(it->last_id);
        const char* key[] = {t.c_str(), id.c_str()};
        es_row* row = nullptr;
        const es_status st = es_get(r, "orders", key, 2, &row);
        if (st == ES_OK) {
          it->row_seen = true;
          it->row_ms = ms_between(it->committed, now);
          it->applied_at_row = applied_of(it->tenant, r);
          es_row_free(row);
        } else if (st != ES_NOT_FOUND && st != ES_NO_TABLE) {
          error(r, "es_get", st);
        }
      }
      if (!it->bookmark_seen && applied_of(it->tenant, r) >= it->bookmark) {
        it->bookmark_seen = true;
        it->bookmark_ms = ms_between(it->committed, now);
      }
    }
  }

  int64_t count_rows(const std::vector<int64_t>& tenants) override {
    int64_t total = 0;
    for (int64_t t : tenants) {
      es_replica* r = handle(t);
      if (r == nullptr) die("no replica for tenant " + std::to_string(t));
      int64_t n = 0;
      const es_status st = es_scan(
          r, "orders", nullptr, 0, nullptr, 0,
          [](const es_row*, void* ctx) {
            ++*static_cast<int64_t*>(ctx);
            return 1;
          },
          &n);
      if (st != ES_OK) die("es_scan of tenant " + std::to_string(t) + ": " + es_last_error(r));
      total += n;
    }
    return total;
  }

  // Reader errors other than "not there yet" (the first few printed, all counted).
  uint64_t errors() const { return errors_; }

 private:
  // The tenant's handle; nullptr while its replica does not exist yet.
  es_replica* handle(int64_t tenant) {
    auto it = handles_.find(tenant);
    if (it != handles_.end()) return it->second;
    es_replica* r = nullptr;
    if (es_open(dir_.c_str(), std::to_string(tenant).c_str(), &r) != ES_OK) {
      es_close(r);
      return nullptr;
    }
    handles_.emplace(tenant, r);
    return r;
  }

  // Counts a reader error, printing the first few.
  void error(es_replica* r, const char* what, es_status st) {
    if (errors_++ < 5) {
      std::fprintf(stderr, "bench_apply: %s: status %d: %s\n", what, static_cast<int>(st), es_last_error(r));
    }
  }

  std::string dir_;
  std::map<int64_t, es_replica*> handles_;
  uint64_t errors_ = 0;
};

// A libpq connection that dies on failure.
struct Conn {
  PGconn* c = nullptr;
  explicit Conn(const std::string& conninfo) {
    c = PQconnectdb(conninfo.c_str());
    if (PQstatus(c) != CONNECTION_OK) die("connect: " + std::string(PQerrorMessage(c)));
  }
  ~Conn() { PQfinish(c); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
};

// A PGresult freed on scope exit.
struct Result {
  PGresult* r;
  explicit Result(PGresult* res) : r(res) {}
  ~Result() { PQclear(r); }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
};

// A native logical replication subscriber: rows by SELECT, bookmarks by the replication
// origin's remote_lsn (one subscription on that server); one query per sweep.
class SubscriberVisibility : public Visibility {
 public:
  explicit SubscriberVisibility(const std::string& conninfo) : conn_(conninfo) {}

  void check(const std::vector<Item*>& items, Clock::time_point now) override {
    std::ostringstream q;
    q << "SELECT v.i, EXISTS (SELECT 1 FROM orders o WHERE o.tenant_id = v.t AND o.id = v.id),"
         " (SELECT max(remote_lsn) FROM pg_replication_origin_status)::text"
         " FROM (VALUES ";
    size_t n = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      if (items[i]->done()) continue;
      q << (n++ ? "," : "") << "(" << i << "," << items[i]->tenant << "::bigint," << items[i]->last_id << ")";
    }
    if (n == 0) return;
    q << ") AS v(i, t, id)";
    Result res(PQexec(conn_.c, q.str().c_str()));
    if (PQresultStatus(res.r) != PGRES_TUPLES_OK) die("probe: " + std::string(PQerrorMessage(conn_.c)));
    for (int row = 0; row < PQntuples(res.r); ++row) {
      Item* it = items[std::stoul(PQgetvalue(res.r, row, 0))];
      if (!it->row_seen && PQgetvalue(res.r, row, 1)[0] == 't') {
        it->row_seen = true;
        it->row_ms = ms_between(it->committed, now);
      }
      uint64_t remote = 0;
      if (!it->bookmark_seen && !PQgetisnull(res.r, row, 2) &&
          edgeshard::parse_lsn(PQgetvalue(res.r, row, 2), remote) && remote >= it->bookmark) {
        it->bookmark_seen = true;
        it->bookmark_ms = ms_between(it->committed, now);
      }
    }
  }

  int64_t count_rows(const std::vector<int64_t>& tenants) override {
    std::string list;
    for (int64_t t : tenants) {
      if (!list.empty()) list += ',';
      list += std::to_string(t);
    }
    Result res(PQexec(conn_.c, ("SELECT count(*) FROM orders WHERE tenant_id IN (" + list + ")").c_str()));
    if (PQresultStatus(res.r) != PGRES_TUPLES_OK) die("count: " + std::string(PQerrorMessage(conn_.c)));
    return std::stoll(PQgetvalue(res.r, 0, 0));
  }

 private:
  Conn conn_;
};

// Command-line options of both subcommands.
struct Options {
  std::string replica, subscriber, primary, expect, label = "run", samples;
  int64_t count = -1;
  int poll_ms = 10;
  int poll_us = 1000;
  int timeout_s = 900;
  bool timeout_given = false;
  double rate = 5000;
  int txn_rows = 100;
  int tenants = 100;
  double seconds = 40;
  double warmup_s = 5;
  int64_t id_base = 0;
};

// Parses the options after the subcommand; dies on an unknown one.
Options parse(int argc, char** argv) {
  Options o;
  for (int i = 2; i < argc; i += 2) {
    const std::string a = argv[i];
    if (i + 1 >= argc) die("missing value of " + a);
    const std::string v = argv[i + 1];
    if (a == "--replica") o.replica = v;
    else if (a == "--subscriber") o.subscriber = v;
    else if (a == "--primary") o.primary = v;
    else if (a == "--expect") o.expect = v;
    else if (a == "--label") o.label = v;
    else if (a == "--samples") o.samples = v;
    else if (a == "--count") o.count = std::stoll(v);
    else if (a == "--poll-ms") o.poll_ms = std::stoi(v);
    else if (a == "--poll-us") o.poll_us = std::stoi(v);
    else if (a == "--timeout-s") o.timeout_s = std::stoi(v), o.timeout_given = true;
    else if (a == "--rate") o.rate = std::stod(v);
    else if (a == "--txn-rows") o.txn_rows = std::stoi(v);
    else if (a == "--tenants") o.tenants = std::stoi(v);
    else if (a == "--seconds") o.seconds = std::stod(v);
    else if (a == "--warmup-s") o.warmup_s = std::stod(v);
    else if (a == "--id-base") o.id_base = std::stoll(v);
    else die("unknown option " + a);
  }
  if (o.replica.empty() == o.subscriber.empty()) die("give exactly one of --replica DIR and --subscriber CONNINFO");
  return o;
}

// The consumer that --replica or --subscriber names.
std::unique_ptr<Visibility> make_visibility(const Options& o) {
  if (!o.replica.empty()) return std::make_unique<ReplicaVisibility>(o.replica);
  return std::make_unique<SubscriberVisibility>(o.subscriber);
}

// catchup: waits for the last row of every tenant of the expect file.
int run_catchup(const Options& o) {
  std::ifstream in(o.expect);
  if (!in) die("cannot read " + o.expect);
  std::vector<Item> items;
  std::vector<int64_t> tenants;
  Item it;
  while (in >> it.tenant >> it.last_id) {
    it.bookmark_seen = true;  // rows only
    items.push_back(it);
    tenants.push_back(it.tenant);
  }
  if (items.empty()) die(o.expect + " lists no tenant");
  auto vis = make_visibility(o);
  std::vector<Item*> ptrs;
  for (Item& x : items) ptrs.push_back(&x);
  const auto deadline = Clock::now() + std::chrono::seconds(o.timeout_s);
  for (;;) {
    vis->check(ptrs, Clock::now());
    const auto left = std::count_if(items.begin(), items.end(), [](const Item& x) { return !x.row_seen; });
    if (left == 0) break;
    if (Clock::now() > deadline) {
      die(std::to_string(left) + " of " + std::to_string(items.size()) + " tenants not caught up after " +
          std::to_string(o.timeout_s) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(o.poll_ms));
  }
  std::printf("caught_up %.6f\n", unix_now());
  std::fflush(stdout);
  if (o.count >= 0) {
    const int64_t n = vis->count_rows(tenants);
    std::printf("rows %lld\n", static_cast<long long>(n));
    if (n != o.count) die("expected " + std::to_string(o.count) + " rows, found " + std::to_string(n));
  }
  if (auto* r = dynamic_cast<ReplicaVisibility*>(vis.get()); r != nullptr && r->errors() > 0) {
    die(std::to_string(r->errors()) + " reader errors");
  }
  return 0;
}

// Percentile q (0..1) of sorted values (nearest rank).
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(q * static_cast<double>(sorted.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

// The writer's connection: the prepared INSERT of one transaction and the bookmark.
class Writer {
 public:
  Writer(const std::string& conninfo, int txn_rows) : conn_(conninfo), txn_rows_(txn_rows) {
    Result r(PQprepare(conn_.c, "ins",
                       "INSERT INTO orders SELECT $1::bigint, $2::int + g, (g * 7.31)::numeric(12, 2), 'new',"
                       " 'order ' || ($2::int + g) || ' for tenant ' || $1::text, now()"
                       " FROM generate_series(1, $3::int) g",
                       3, nullptr));
    if (PQresultStatus(r.r) != PGRES_COMMAND_OK) die("prepare: " + std::string(PQerrorMessage(conn_.c)));
    Result b(PQprepare(conn_.c, "bm", "SELECT edgeshard.bookmark()", 0, nullptr));
    if (PQresultStatus(b.r) != PGRES_COMMAND_OK) die("prepare: " + std::string(PQerrorMessage(conn_.c)));
  }

  // Inserts one transaction (autocommit) of the tenant's ids first_id+1 .. first_id+txn_rows;
  // returns when COMMIT has returned, with `committed` set then and the bookmark taken after.
  void write(int64_t tenant, int64_t first_id, Item& out) {
    const std::string t = std::to_string(tenant), id = std::to_string(first_id), n = std::to_string(txn_rows_);
    const char* params[] = {t.c_str(), id.c_str(), n.c_str()};
    const auto t0 = Clock::now();
    Result r(PQexecPrepared(conn_.c, "ins", 3, params, nullptr, nullptr, 0));
    out.committed = Clock::now();
    if (PQresultStatus(r.r) != PGRES_COMMAND_OK) die("insert: " + std::string(PQerrorMessage(conn_.c)));
    commit_ms.push_back(ms_between(t0, out.committed));
    Result b(PQexecPrepared(conn_.c, "bm", 0, nullptr, nullptr, nullptr, 0));
    if (PQresultStatus(b.r) != PGRES_TUPLES_OK) die("bookmark: " + std::string(PQerrorMessage(conn_.c)));
    // "node/X/X": the LSN is the last two parts.
    const std::string bm = PQgetvalue(b.r, 0, 0);
    const size_t last = bm.rfind('/');
    const size_t sep = last == std::string::npos || last == 0 ? std::string::npos : bm.rfind('/', last - 1);
    if (sep == std::string::npos || !edgeshard::parse_lsn(bm.substr(sep + 1), out.bookmark)) {
      die("bad bookmark " + bm);
    }
    out.tenant = tenant;
    out.last_id = first_id + txn_rows_;
  }

  std::vector<double> commit_ms;

 private:
  Conn conn_;
  int txn_rows_;
};

// lag: paced writer + visibility prober.
int run_lag(const Options& o) {
  if (o.primary.empty()) die("lag needs --primary CONNINFO");
  const int timeout_s = o.timeout_given ? o.timeout_s : 30;
  auto vis = make_visibility(o);
  Writer writer(o.primary, o.txn_rows);

  std::mutex mu;
  std::vector<std::unique_ptr<Item>> all;  // owned here; the prober sees them through `fresh`
  std::vector<Item*> fresh;                // handed over to the prober
  std::atomic<bool> stop{false};
  std::atomic<size_t> outstanding{0};
  std::atomic<uint64_t> given_up{0};
  std::thread prober([&] {
    std::vector<Item*> active;
    while (!stop.load()) {
      {
        std::lock_guard<std::mutex> g(mu);
        active.insert(active.end(), fresh.begin(), fresh.end());
        fresh.clear();
      }
      if (!active.empty()) {
        vis->check(active, Clock::now());
        const auto now = Clock::now();
        size_t kept = 0;
        for (Item* it : active) {
          if (it->done()) {
            outstanding.fetch_sub(1);
          } else if (now - it->committed > std::chrono::seconds(timeout_s)) {
            given_up.fetch_add(1);
            outstanding.fetch_sub(1);
          } else {
            active[kept++] = it;
          }
        }
        active.resize(kept);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(o.poll_us));
    }
  });
  auto hand_over = [&](std::unique_ptr<Item> it) {
    std::lock_guard<std::mutex> g(mu);
    outstanding.fetch_add(1);
    fresh.push_back(it.get());
    all.push_back(std::move(it));
  };
  auto wait_all = [&](int seconds, const char* what) {
    const auto deadline = Clock::now() + std::chrono::seconds(seconds);
    while (outstanding.load() > 0 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (outstanding.load() > 0) {
      stop = true;
      prober.join();
      die(std::to_string(outstanding.load()) + " transactions not visible after " + std::to_string(seconds) +
          " s (" + what + ")");
    }
  };

  // Warm-up: one transaction per tenant (ids id_base+1 ..), waited for.
  std::vector<int64_t> next_id(o.tenants, o.id_base);
  for (int t = 0; t < o.tenants; ++t) {
    auto it = std::make_unique<Item>();
    writer.write(t, next_id[t], *it);
    next_id[t] += o.txn_rows;
    hand_over(std::move(it));
  }
  wait_all(120, "warm-up");
  writer.commit_ms.clear();

  // The timed phase: transaction i at start + i * interval (open loop: a late writer does not
  // slow the schedule down, it catches up).
  const double interval_s = o.txn_rows / o.rate;
  const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(interval_s));
  const int64_t total = static_cast<int64_t>(o.seconds * o.rate / o.txn_rows);
  const auto start = Clock::now();
  int64_t late = 0;
  for (int64_t i = 0; i < total; ++i) {
    const auto when = start + i * interval;
    std::this_thread::sleep_until(when);
    if (Clock::now() - when > std::chrono::milliseconds(10)) ++late;
    const int t = static_cast<int>(i % o.tenants);
    auto it = std::make_unique<Item>();
    writer.write(t, next_id[t], *it);
    next_id[t] += o.txn_rows;
    it->since_start_s = static_cast<double>(i) * interval_s;
    it->counted = it->since_start_s >= o.warmup_s;
    hand_over(std::move(it));
  }
  const double write_s = std::chrono::duration<double>(Clock::now() - start).count();
  wait_all(timeout_s + 5, "after the writer finished");
  stop = true;
  prober.join();

  std::vector<double> row, bm, commit = writer.commit_ms;
  int64_t counted = 0;
  int64_t bm_behind = 0;  // bookmark satisfied more than 100 ms after the row was readable
  for (const auto& it : all) {
    if (!it->counted) continue;
    ++counted;
    if (it->row_ms >= 0) row.push_back(it->row_ms);
    if (it->bookmark_ms >= 0) bm.push_back(it->bookmark_ms);
    if (it->row_ms >= 0 && it->bookmark_ms - it->row_ms > 100) ++bm_behind;
  }
  const double bm_behind_pct = counted ? 100.0 * static_cast<double>(bm_behind) / static_cast<double>(counted) : 0;
  std::sort(row.begin(), row.end());
  std::sort(bm.begin(), bm.end());
  std::sort(commit.begin(), commit.end());
  if (!o.samples.empty()) {
    std::ofstream s(o.samples);
    // bookmark_minus_applied: bookmark LSN minus the replica's applied position when the row was
    // first seen (replica only; > 0: the bookmark was not satisfied yet although the row was).
    s << "# since_start_s tenant row_ms bookmark_ms bookmark_minus_applied\n";
    for (const auto& it : all) {
      if (!it->counted) continue;
      s << it->since_start_s << ' ' << it->tenant << ' ' << it->row_ms << ' ' << it->bookmark_ms << ' '
        << (it->applied_at_row ? static_cast<int64_t>(it->bookmark - it->applied_at_row) : 0) << '\n';
    }
  }
  const double achieved = static_cast<double>(total) * o.txn_rows / write_s;
  std::printf("%s: %lld txns of %d rows in %.1f s (%.0f rows/s; %lld started >10 ms late), %lld counted\n",
              o.label.c_str(), static_cast<long long>(total), o.txn_rows, write_s, achieved,
              static_cast<long long>(late), static_cast<long long>(counted));
  std::printf("%s: commit-to-visible row      p50 %7.2f  p99 %7.2f  max %7.2f ms\n", o.label.c_str(),
              percentile(row, 0.5), percentile(row, 0.99), row.empty() ? 0 : row.back());
  std::printf("%s: commit-to-visible bookmark p50 %7.2f  p99 %7.2f  max %7.2f ms; %.2f%% more than 100 ms after the row\n",
              o.label.c_str(), percentile(bm, 0.5), percentile(bm, 0.99), bm.empty() ? 0 : bm.back(), bm_behind_pct);
  std::printf("%s: INSERT+COMMIT on the primary p50 %.2f  p99 %.2f ms; not visible within %d s: %llu\n",
              o.label.c_str(), percentile(commit, 0.5), percentile(commit, 0.99), timeout_s,
              static_cast<unsigned long long>(given_up.load()));
  // Machine-readable: label counted rows_per_s row_p50 row_p99 row_max bm_p50 bm_p99 bm_max
  // commit_p50 commit_p99 given_up late bookmark_behind_pct.
  std::printf("result %s %lld %.0f %.2f %.2f %.2f %.2f %.2f %.2f %.2f %.2f %llu %lld %.2f\n", o.label.c_str(),
              static_cast<long long>(counted), achieved, percentile(row, 0.5), percentile(row, 0.99),
              row.empty() ? 0 : row.back(), percentile(bm, 0.5), percentile(bm, 0.99), bm.empty() ? 0 : bm.back(),
              percentile(commit, 0.5), percentile(commit, 0.99), static_cast<unsigned long long>(given_up.load()),
              static_cast<long long>(late), bm_behind_pct);
  if (auto* r = dynamic_cast<ReplicaVisibility*>(vis.get()); r != nullptr && r->errors() > 0) {
    die(std::to_string(r->errors()) + " reader errors");
  }
  return given_up.load() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("usage: bench_apply catchup|lag OPTIONS (see bench/apply/apply_bench.cpp)");
  const std::string cmd = argv[1];
  const Options o = parse(argc, argv);
  if (cmd == "catchup") return run_catchup(o);
  if (cmd == "lag") return run_lag(o);
  die("unknown command " + cmd);
}

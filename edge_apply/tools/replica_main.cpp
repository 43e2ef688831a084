// edgeshard-replica: looks into an edge's replica files (edge_apply/FORMAT.md) — list tenants,
// get a row by key, scan a table, verify every checksum, print stats and freshness.
#include "common/lsn.hpp"
#include "edge_apply/key_codec.hpp"
#include "edge_apply/tenant_replica.hpp"
#include "edge_apply/tenant_text.hpp"
#include "edge_apply/value_codec.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace edgeshard::apply;

constexpr char kUsage[] =
    "usage: edgeshard-replica ls DATA_DIR\n"
    "       edgeshard-replica get DATA_DIR TENANT TABLE KEY_VALUE...\n"
    "       edgeshard-replica scan DATA_DIR TENANT TABLE [--from V...] [--to V...] [--limit N]\n"
    "       edgeshard-replica verify DATA_DIR [TENANT...]\n"
    "       edgeshard-replica stats DATA_DIR TENANT\n"
    "       edgeshard-replica wait DATA_DIR TENANT BOOKMARK [TIMEOUT_MS]\n"
    "\n"
    "Reads the replica files the apply daemon keeps under DATA_DIR/tenants/. Rows print as JSON\n"
    "objects; KEY_VALUEs are the primary key's values in key order, as PostgreSQL text (\"42\",\n"
    "\"acme\", a uuid). scan --from/--to take key prefixes (values of the first key columns), to\n"
    "exclusive. verify checks every block and whole-file checksum of every live file. stats\n"
    "prints the live files, each table's columns (type, attribute number, missing value) and the\n"
    "shards' positions and lag. wait returns once the write behind BOOKMARK (edgeshard.bookmark()\n"
    "on the primary) is readable here (read your writes), or fails after TIMEOUT_MS (default\n"
    "5000); a tenant that has no replica here yet is waited for until it appears.\n"
    "\n"
    "TENANT is the key as it is (any bytes: quote it for the shell). Output writes a key with\n"
    "its bytes 0x00-0x20, ',', '%' and 0x7F as %XX (\"a b\" prints as a%20b); a TENANT argument\n"
    "of the form %=TEXT is read that way too (%=a%20b is \"a b\").\n"
    "\n"
    "Exit status: 0 ok; 1 not found (get) or corruption (verify, or any read); 2 usage; 3 the\n"
    "replica cannot be opened (absent, not published yet, unreadable).\n";

constexpr int kExitOk = 0;
constexpr int kExitFound = 1;  // not found, or corrupt
constexpr int kExitUsage = 2;
constexpr int kExitOpen = 3;

// Prints a usage error and returns kExitUsage.
int usage(const char* why) {
  std::fprintf(stderr, "edgeshard-replica: %s\n%s", why, kUsage);
  return kExitUsage;
}

// The exit status for a failed replica call, after printing it.
int report(const ReplicaStatus& st) {
  std::fprintf(stderr, "edgeshard-replica: %s\n", st.message.c_str());
  if (st.kind == ReplicaStatus::kNotFound) return kExitFound;
  if (st.kind == ReplicaStatus::kCorrupt || st.kind == ReplicaStatus::kTimeout) return kExitFound;
  return kExitOpen;
}

// A TENANT argument: the key as it is, or "%=" and the key escaped as the output prints it;
// false when that escape is malformed.
bool tenant_arg(const char* arg, std::string& key) {
  const std::string_view a(arg);
  if (!a.starts_with("%=")) {
    key.assign(a);
    return true;
  }
  if (unescape_tenant_text(a.substr(2), key) && !key.empty()) return true;
  std::fprintf(stderr, "edgeshard-replica: malformed escaped tenant \"%s\"\n", arg);
  return false;
}

// A key as output prints it (one token: edge_apply/tenant_text.hpp).
std::string shown(std::string_view key) { return escape_tenant_text(key); }

// Opens a tenant's replica or exits with a message.
bool open_tenant(TenantReplica& r, const char* data_dir, const char* arg, int& status) {
  std::string tenant;
  if (!tenant_arg(arg, tenant)) {
    status = kExitUsage;
    return false;
  }
  const ReplicaStatus st = r.open(data_dir, tenant);
  if (!st.ok()) {
    status = report(st);
    return false;
  }
  return true;
}

// Prints a row as one JSON line; false when its bytes do not decode.
bool print_row(const RowRef& row) {
  const auto cols = frame_columns(*row.columns);
  RowView view;
  std::string json;
  CodecStatus st = view.parse(cols, row.tuple);
  if (st.ok()) st = view.append_json(json);
  if (!st.ok()) {
    std::fprintf(stderr, "edgeshard-replica: a stored row does not decode: %s\n", st.message.c_str());
    return false;
  }
  std::printf("%s\n", json.c_str());
  return true;
}

// Encodes text values of the table's first key columns.
bool encode_prefix(const TableView& t, const std::vector<std::string>& values, std::string& key) {
  size_t i = 0;
  for (const auto& c : t.columns) {
    if (!c.key || i == values.size()) continue;
    if (CodecStatus st = encode_key_column_from_text(key, c.type_oid, values[i]); !st.ok()) {
      std::fprintf(stderr, "edgeshard-replica: key value \"%s\" for column %s: %s\n", values[i].c_str(),
                   c.name.c_str(), st.message.c_str());
      return false;
    }
    ++i;
  }
  if (i != values.size()) {
    std::fprintf(stderr, "edgeshard-replica: table %s.%s has %zu key columns, %zu values given\n",
                 t.schema.c_str(), t.name.c_str(), i, values.size());
    return false;
  }
  return true;
}

// The tenants (directory names unescaped is not needed: manifests name their tenant).
std::vector<fs::path> tenant_dirs(const fs::path& data_dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(data_dir / "tenants", ec)) {
    if (e.is_directory()) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// ls: one line per tenant directory.
int cmd_ls(const char* data_dir) {
  int status = kExitOk;  // 1 when a tenant's manifest is unreadable
  for (const fs::path& dir : tenant_dirs(data_dir)) {
    Manifest m;
    std::string why;
    if (!read_manifest(dir, m, why)) {
      std::printf("%-24s  unreadable: %s\n", dir.filename().c_str(), why.c_str());
      status = kExitFound;
      continue;
    }
    uint64_t rows = 0, bytes = 0;
    for (const auto& f : m.files) {
      rows += f.records;
      bytes += f.bytes;
    }
    std::string shards;
    for (const auto& s : m.shards) shards += " " + s.shard + "@" + edgeshard::format_lsn(s.applied);
    std::printf("%-24s  %s  files=%zu records=%llu bytes=%llu%s\n", shown(m.tenant).c_str(),
                m.published ? "published" : "copying  ", m.files.size(),
                static_cast<unsigned long long>(rows), static_cast<unsigned long long>(bytes), shards.c_str());
  }
  return status;
}

// A missing value for people: binary as hex, text quoted with other bytes as \xNN, both cut after
// 64 bytes.
std::string show_missing(const edgeshard::replica::Column& c) {
  constexpr size_t kShown = 64;
  const bool binary = c.missing_kind == 'b';
  std::string s = binary ? "binary " : "text \"";
  char b[8];
  for (size_t i = 0; i < c.missing.size() && i < kShown; ++i) {
    const auto ch = static_cast<unsigned char>(c.missing[i]);
    if (binary) {
      std::snprintf(b, sizeof b, "%02x", ch);
      s += b;
    } else if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
      s += static_cast<char>(ch);
    } else {
      std::snprintf(b, sizeof b, "\\x%02x", ch);
      s += b;
    }
  }
  if (!binary) s += '"';
  if (c.missing.size() > kShown) s += "... (" + std::to_string(c.missing.size()) + " bytes)";
  return s;
}

// One column of a table, with its identity and missing value (edge_apply/FORMAT.md, version 2).
void print_column(const edgeshard::replica::Column& c) {
  std::string attnum = c.attnum == 0 ? "unknown" : std::to_string(c.attnum);
  std::printf("    column %s: type %u typmod %d%s, attnum %s%s%s\n", c.name.c_str(), c.type_oid, c.typmod,
              c.key ? ", key" : "", attnum.c_str(), c.has_missing ? ", missing " : "",
              c.has_missing ? show_missing(c).c_str() : "");
}

// stats: files, sizes, positions and lag of one tenant.
int cmd_stats(const char* data_dir, const char* tenant) {
  TenantReplica r;
  int status = kExitOk;
  if (!open_tenant(r, data_dir, tenant, status)) return status;
  const Manifest& m = r.manifest();
  std::printf("tenant %s, manifest generation %llu\n", shown(m.tenant).c_str(), static_cast<unsigned long long>(m.generation));
  for (const auto& f : m.files) {
    std::printf("  %-5s %s  records=%llu bytes=%llu\n", f.kind == FileKind::kBase ? "base" : "delta", f.name.c_str(),
                static_cast<unsigned long long>(f.records), static_cast<unsigned long long>(f.bytes));
  }
  for (const auto& t : r.tables()) {
    std::printf("  table %s.%s (%zu columns)\n", t.schema.c_str(), t.name.c_str(), t.columns.size());
    for (const auto& c : t.columns) print_column(c);
  }
  const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
  std::vector<ShardPosition> fresh;
  if (ReplicaStatus st = r.freshness(fresh); !st.ok()) return report(st);
  for (const auto& s : fresh) {
    const double behind = s.applied >= s.upstream || s.commit_time_us == 0
                              ? 0.0
                              : static_cast<double>(s.upstream_time_us - s.commit_time_us) / 1e6;
    std::printf("  shard %s: applied %s (commit %.3f s ago), upstream %s, lag %llu bytes, %.3f s behind\n",
                s.shard.c_str(), edgeshard::format_lsn(s.applied).c_str(),
                s.commit_time_us == 0 ? 0.0 : static_cast<double>(now_us - s.commit_time_us) / 1e6,
                edgeshard::format_lsn(s.upstream).c_str(),
                static_cast<unsigned long long>(s.upstream > s.applied ? s.upstream - s.applied : 0),
                behind < 0 ? 0.0 : behind);
  }
  return kExitOk;
}

// verify: every tenant given (or all).
int cmd_verify(const char* data_dir, const std::vector<std::string>& args) {
  std::vector<std::string> names;
  for (const std::string& a : args) {
    if (!tenant_arg(a.c_str(), names.emplace_back())) return kExitUsage;
  }
  int status = kExitOk;
  if (names.empty()) {
    // A tenant whose manifest is unreadable fails; the others are still verified.
    for (const fs::path& dir : tenant_dirs(data_dir)) {
      Manifest m;
      std::string why;
      if (!read_manifest(dir, m, why)) {
        std::fprintf(stderr, "edgeshard-replica: %s\n", why.c_str());
        status = kExitFound;
        continue;
      }
      names.push_back(m.tenant);
    }
  }
  for (const std::string& t : names) {
    TenantReplica r;
    ReplicaStatus st = r.open(data_dir, t);
    if (st.ok()) st = r.verify();
    if (!st.ok() && st.kind != ReplicaStatus::kNotPublished) {
      std::fprintf(stderr, "edgeshard-replica: tenant %s: %s\n", shown(t).c_str(), st.message.c_str());
      status = kExitFound;
    } else {
      std::printf("tenant %s: %s\n", shown(t).c_str(), st.ok() ? "ok" : st.message.c_str());
    }
  }
  return status;
}

}  // namespace

// Dispatches the subcommands.
int main(int argc, char** argv) {
  if (argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (argc < 3) return usage("missing arguments");
  const std::string cmd = argv[1];
  const char* data_dir = argv[2];
  if (cmd == "ls") return cmd_ls(data_dir);
  if (cmd == "verify") return cmd_verify(data_dir, std::vector<std::string>(argv + 3, argv + argc));
  if (argc < 4) return usage("missing TENANT");
  if (cmd == "stats") return cmd_stats(data_dir, argv[3]);
  if (cmd == "wait") {
    if (argc < 5) return usage("missing BOOKMARK");
    // A tenant not here yet (no replica, copy running) is waited for like a position.
    TenantReplica r;
    if (const ReplicaStatus opened = r.open(data_dir, argv[3]);
        !opened.ok() && opened.kind != ReplicaStatus::kNotPublished) {
      return report(opened);
    }
    const long timeout_ms = argc > 5 ? std::strtol(argv[5], nullptr, 10) : 5000;
    const auto started = std::chrono::steady_clock::now();
    const ReplicaStatus st = r.wait_for(argv[4], std::chrono::milliseconds(timeout_ms));
    if (!st.ok()) return report(st);
    std::printf("readable after %.1f ms\n", std::chrono::duration<double, std::milli>(
                                                  std::chrono::steady_clock::now() - started).count());
    return kExitOk;
  }
  if (argc < 5) return usage("missing TABLE");
  TenantReplica r;
  int status = kExitOk;
  if (!open_tenant(r, data_dir, argv[3], status)) return status;
  const TableView* t = r.table(argv[4]);
  if (t == nullptr) {
    std::fprintf(stderr, "edgeshard-replica: no table \"%s\" in tenant %s's replica\n", argv[4],
                 shown(r.manifest().tenant).c_str());
    return kExitFound;
  }
  edgeshard::replica::BlockCache cache;
  if (cmd == "get") {
    std::string key;
    if (!encode_prefix(*t, std::vector<std::string>(argv + 5, argv + argc), key)) return kExitUsage;
    RowRef row;
    const ReplicaStatus st = r.get(*t, key, cache, row);
    if (!st.ok()) return report(st);
    return print_row(row) ? kExitOk : kExitFound;
  }
  if (cmd == "scan") {
    std::vector<std::string> from, to;
    std::vector<std::string>* into = nullptr;
    long limit = -1;
    for (int i = 5; i < argc; ++i) {
      if (std::strcmp(argv[i], "--from") == 0) into = &from;
      else if (std::strcmp(argv[i], "--to") == 0) into = &to;
      else if (std::strcmp(argv[i], "--limit") == 0 && i + 1 < argc) limit = std::strtol(argv[++i], nullptr, 10);
      else if (into != nullptr) into->push_back(argv[i]);
      else return usage("scan: values must follow --from or --to");
    }
    std::string lo, hi;
    if (!encode_prefix(*t, from, lo) || !encode_prefix(*t, to, hi)) return kExitUsage;
    std::optional<std::string_view> upper;
    if (!to.empty()) upper = std::string_view(hi);
    bool ok = true;
    long printed = 0;
    const ReplicaStatus st = r.scan(*t, lo, upper, cache, [&](const RowRef& row) {
      ok = print_row(row);
      return ok && (limit < 0 || ++printed < limit);
    });
    if (!st.ok()) return report(st);
    return ok ? kExitOk : kExitFound;
  }
  return usage("unknown command");
}

// edgeshard-wal list: see list.hpp.
#include "extension/wal_tool/list.hpp"

#include "extension/wal_tool/options.hpp"
#include "extension/wal_tool/subcommand.hpp"

#include <cstdlib>

namespace edgeshard::wal_tool {

const char kListUsage[] =
    "usage: edgeshard-wal list [--repo DIR]\n"
    "\n"
    "Lists the base backups of DIR, oldest first: id, label, start and stop (time, LSN, WAL\n"
    "segment), timeline, size (raw and stored), whether complete, and the point-in-time recovery\n"
    "window: from the stop time to the end of the newest WAL segment archived without a gap after\n"
    "the backup's start segment on its timeline.\n"
    "\n"
    "Exit status: 0 listed; 2 usage error.\n";

void print_backups(const std::vector<BackupEntry>& backups,
                   const std::vector<std::string>& wal_files, std::FILE* out) {
  if (backups.empty()) std::fputs("no backups\n", out);
  for (const BackupEntry& b : backups) {
    if (!b.complete) {
      std::fprintf(out, "backup %s  incomplete (%s)\n", b.id.c_str(), b.problem.c_str());
      continue;
    }
    const Manifest& m = b.manifest;
    std::fprintf(out, "backup %s  complete\n", b.id.c_str());
    std::fprintf(out, "  label     %s\n", m.label.c_str());
    std::fprintf(out, "  start     %s  lsn %s  wal %s\n", m.start_time.c_str(), m.start_lsn.c_str(),
                 m.start_wal.c_str());
    std::fprintf(out, "  stop      %s  lsn %s  wal %s\n", m.stop_time.c_str(), m.stop_lsn.c_str(),
                 m.stop_wal.c_str());
    std::fprintf(out, "  timeline  %u\n", m.timeline);
    std::fprintf(out, "  size      %llu bytes raw, %llu stored, %zu parts\n",
                 static_cast<unsigned long long>(m.raw_size()),
                 static_cast<unsigned long long>(m.stored_size()), m.parts.size());
    const ChainReport chain = check_chain(m, wal_files);
    if (!chain.missing.empty()) {
      std::fprintf(out, "  pitr      none: %zu segment(s) the backup needs are missing, first %s\n",
                   chain.missing.size(), chain.missing.front().c_str());
      continue;
    }
    const auto last = parse_segment_name(chain.last_contiguous);
    const uint64_t end_lsn = last ? (last->segno + 1) * kDefaultSegmentSize : 0;
    std::fprintf(out, "  pitr      from %s to the end of %s (lsn %s)%s\n", m.stop_time.c_str(),
                 chain.last_contiguous.c_str(), format_lsn(end_lsn).c_str(),
                 chain.gaps_after.empty() ? "" : ", then a gap");
  }
}

int list_main(int argc, char** argv) {
  Options options;
  std::string repo;
  if (auto done = start_subcommand(argc, argv, "list", kListUsage, {}, {}, options, repo)) return *done;
  if (!options.positional.empty()) {
    std::fprintf(stderr, "edgeshard-wal list: unexpected argument %s\n%s",
                 options.positional[0].c_str(), kListUsage);
    return kExitUsage;
  }
  print_backups(load_backups(repo), list_wal_files(repo), stdout);
  return 0;
}

}  // namespace edgeshard::wal_tool

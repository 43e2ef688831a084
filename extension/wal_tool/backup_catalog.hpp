// The backups of a WAL archive repository (common/ARCHIVE_FORMAT.md, "Repository"): each full base
// backup is a directory backups/<id>/ of tar parts stored as archive files (base.tar.00001, ...)
// and, written last, backup.manifest. This file pair holds what backup, restore-backup, list,
// verify and expire share: the manifest's text format, the backup history file PostgreSQL
// archives, the catalog of backups and WAL files, the WAL chain check and expire's selection.
// Nothing here throws except std::bad_alloc; failures come back as a reason string.
#pragma once

#include "common/no_postgres.hpp"

#include "extension/wal_tool/wal_segment.hpp"

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::wal_tool {

inline constexpr char kBackupsSubdir[] = "backups";
inline constexpr char kManifestName[] = "backup.manifest";
inline constexpr char kPartPrefix[] = "base.tar.";
inline constexpr char kManifestMagic[] = "edgeshard-backup-manifest 1";

// One tar part of a backup.
struct BackupPart {
  std::string name;          // base.tar.00001
  uint64_t raw_size = 0;     // tar bytes it holds
  uint64_t stored_size = 0;  // size of its archive file
  uint64_t xxh3 = 0;         // XXH3-64 of the raw bytes
};

// What backup.manifest says.
struct Manifest {
  std::string id;     // YYYYMMDDTHHMMSSZ
  std::string label;  // the user's --label (one line, may be empty)
  std::string start_lsn, stop_lsn;
  std::string start_wal, stop_wal;    // segment names
  std::string start_time, stop_time;  // as the backup history file writes them
  uint32_t timeline = 0;
  std::string history_file;  // <seg>.<offset>.backup
  std::vector<BackupPart> parts;

  // Raw bytes of all parts.
  uint64_t raw_size() const noexcept;
  // Stored bytes of all parts.
  uint64_t stored_size() const noexcept;
};

// The manifest's text: key = value lines, a checksum line last.
std::string encode_manifest(const Manifest& manifest);
// Parses a manifest's text; false with why when it is malformed or its checksum is wrong.
bool parse_manifest(std::string_view text, Manifest& out, std::string& why);

// What a backup history file (<seg>.<offset>.backup) says.
struct BackupHistory {
  std::string start_lsn, start_wal, stop_lsn, stop_wal;
  std::string start_time, stop_time, label;
  uint32_t timeline = 0;  // START TIMELINE
};

// Parses a backup history file's text; false with why when a needed line is missing or bad.
bool parse_backup_history(std::string_view text, BackupHistory& out, std::string& why);

// A backup id for the UTC time t: YYYYMMDDTHHMMSSZ.
std::string backup_id_for(std::time_t t);
// The UTC time of a backup id; nullopt when it is not one.
std::optional<std::time_t> time_of_backup_id(std::string_view id);

// One backup directory as the catalog found it.
struct BackupEntry {
  std::string id;
  bool complete = false;  // a manifest that parses and names this id
  std::string problem;    // why not complete ("no manifest", the parse error)
  Manifest manifest;      // when complete
};

// repo/backups.
std::string backups_directory(const std::string& repo);
// repo/backups/<id>.
std::string backup_directory(const std::string& repo, std::string_view id);

// Every backup directory of repo, oldest id first (none when backups/ is absent).
std::vector<BackupEntry> load_backups(const std::string& repo);
// The WAL file names archived in repo/wal (".eswa" removed, temporary files skipped), sorted.
std::vector<std::string> list_wal_files(const std::string& repo);

// The WAL chain of a backup against the archived segments.
struct ChainReport {
  std::vector<std::string> missing;     // segments start..stop that are absent
  std::string last_contiguous;          // newest segment reachable from start without a gap
  std::vector<std::string> gaps_after;  // first missing segment of each gap past the stop segment
};

// Checks start..stop on timeline against wal_files (list_wal_files()), and how far past stop the
// segments stay contiguous.
ChainReport check_chain(const Manifest& manifest, const std::vector<std::string>& wal_files);

// What expire removes.
struct ExpirePlan {
  std::vector<std::string> remove_backups;  // ids
  std::vector<std::string> remove_wal;      // WAL file names
  std::vector<std::string> keep_backups;    // complete backups kept
};

// Expire's selection: keep the newest `keep` complete backups (keep > 0), or with keep_days >= 0
// those younger than keep_days days at `now` (always at least the newest complete one); remove the
// older complete backups and incomplete ones older than a day; remove WAL files (segments, partial
// segments, backup history files; never timeline history files) on the oldest kept backup's
// timeline or earlier ones whose segment comes before its start segment. Nothing of WAL is removed
// when no complete backup is kept.
ExpirePlan plan_expire(const std::vector<BackupEntry>& backups,
                       const std::vector<std::string>& wal_files, int keep, double keep_days,
                       std::time_t now);

// Writes content to path durably: a temporary name beside it, fsync, rename, fsync of the
// directory. False with why.
bool write_file_durably(const std::string& path, std::string_view content, std::string& why);
// Decodes and checks the archive file at path (its header must name `name`) into out; false with
// why.
bool read_archive_file(const std::string& path, std::string_view name, std::string& out,
                       std::string& why);

}  // namespace edgeshard::wal_tool

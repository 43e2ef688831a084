// edgeshard-wal restore-backup: see restore_backup.hpp.
#include "extension/wal_tool/restore_backup.hpp"

#include "common/archive_file.hpp"
#include "common/archive_repo.hpp"
#include "common/posix_file.hpp"
#include "extension/wal_tool/backup_catalog.hpp"
#include "extension/wal_tool/child_process.hpp"
#include "extension/wal_tool/options.hpp"
#include "extension/wal_tool/subcommand.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace edgeshard::wal_tool {

namespace fs = std::filesystem;

const char kRestoreBackupUsage[] =
    "usage: edgeshard-wal restore-backup [--repo DIR] [--backup ID|latest] --target DATADIR\n"
    "\n"
    "Unpacks the base backup ID (default: latest, the newest complete one) of DIR into DATADIR,\n"
    "which must be empty or absent. Every part's checksums are verified, and its sizes and XXH3\n"
    "against backup.manifest, while it streams into tar -x. Then prints what to configure for\n"
    "recovery (restore_command, recovery_target_time, recovery.signal).\n"
    "\n"
    "Exit status: 0 restored; 1 failed (what was unpacked is removed); 2 usage error or a\n"
    "non-empty DATADIR.\n";

namespace {

// Prints "edgeshard-wal restore-backup: <message>" to stderr.
void complain(const std::string& message) {
  std::fprintf(stderr, "edgeshard-wal restore-backup: %s\n", message.c_str());
}

// Empties a target directory again when the restore fails.
class PartialTarget {
 public:
  explicit PartialTarget(std::string dir) : dir_(std::move(dir)) {}
  // Removes what was unpacked unless the restore completed.
  ~PartialTarget() {
    if (done_) return;
    std::error_code ec;
    for (const fs::directory_entry& e : fs::directory_iterator(dir_, ec)) {
      std::error_code ec2;
      fs::remove_all(e.path(), ec2);
    }
  }
  // The restore completed: keep it.
  void commit() noexcept { done_ = true; }

 private:
  std::string dir_;
  bool done_ = false;
};

// Streams one part, checked against the manifest, into fd; false with why.
bool stream_part(const std::string& dir, const BackupPart& part, int fd, std::string& why) {
  const std::string path = dir + "/" + part.name;
  posix::MappedFile file;
  const int err = file.open(path, true);
  if (err != 0) {
    why = "could not open \"" + path + "\": " + posix::errno_text(err);
    return false;
  }
  if (file.bytes().size() != part.stored_size) {
    why = "\"" + path + "\" has " + std::to_string(file.bytes().size()) +
          " bytes, the manifest says " + std::to_string(part.stored_size);
    return false;
  }
  archive::Reader reader;
  archive::Status st = reader.open_named(file.bytes(), part.name);
  if (st.ok() && (reader.trailer().original_length != part.raw_size ||
                  reader.trailer().content_checksum != part.xxh3)) {
    why = "\"" + path + "\" does not match the manifest (raw size or checksum)";
    return false;
  }
  archive::FdBlockSink sink(fd);  // tar's stdin
  if (st.ok()) st = reader.decode(sink);
  if (!st.ok()) {
    why = sink.error() != 0 ? "could not write to tar: " + posix::errno_text(sink.error())
                            : archive::describe(st, path);
    return false;
  }
  return true;
}

}  // namespace

int restore_backup_main(int argc, char** argv) {
  Options options;
  std::string why, repo;
  if (auto done = start_subcommand(argc, argv, "restore-backup", kRestoreBackupUsage, {"--backup", "--target"}, {}, options, repo)) return *done;
  if (!options.positional.empty() || options.values.count("--target") == 0 ||
      options.values["--target"].empty()) {
    std::fprintf(stderr, "edgeshard-wal restore-backup: --target is needed\n%s",
                 kRestoreBackupUsage);
    return kExitUsage;
  }
  const std::string target = options.values["--target"];
  const std::string wanted =
      options.values.count("--backup") ? options.values["--backup"] : "latest";
  ::signal(SIGPIPE, SIG_IGN);
  try {
    const std::vector<BackupEntry> backups = load_backups(repo);
    const BackupEntry* chosen = nullptr;
    for (const BackupEntry& b : backups) {
      if (wanted == "latest" ? b.complete : b.id == wanted) chosen = &b;
    }
    if (chosen == nullptr) {
      complain(wanted == "latest" ? "no complete backup in \"" + repo + "\""
                                  : "no backup " + wanted + " in \"" + repo + "\"");
      return 1;
    }
    if (!chosen->complete) {
      complain("backup " + chosen->id + " is incomplete (" + chosen->problem + ")");
      return 1;
    }
    std::error_code ec;
    if (fs::exists(target, ec)) {
      if (!fs::is_directory(target, ec) || !fs::is_empty(target, ec)) {
        complain("the target \"" + target + "\" is not an empty directory");
        return kExitUsage;
      }
    } else if (::mkdir(target.c_str(), 0700) != 0) {
      complain("could not create \"" + target + "\": " + posix::errno_text(errno));
      return 1;
    }
    PartialTarget partial(target);
    ChildProcess tar;
    if (!tar.start({"tar", "-x", "-f", "-", "-C", target}, PipeTo::kChildStdin, why)) {
      complain(why);
      return 1;
    }
    const std::string dir = backup_directory(repo, chosen->id);
    for (const BackupPart& part : chosen->manifest.parts) {
      if (!stream_part(dir, part, tar.fd(), why)) {
        complain(why);
        return 1;
      }
    }
    tar.close_pipe();
    const int rc = tar.wait();
    if (rc != 0) {
      complain("tar failed (exit status " + std::to_string(rc) + ")");
      return 1;
    }
    if (::chmod(target.c_str(), 0700) != 0) {
      complain("could not chmod \"" + target + "\": " + posix::errno_text(errno));
      return 1;
    }
    partial.commit();
    const Manifest& m = chosen->manifest;
    std::printf(
        "restored backup %s (%llu bytes, start %s, stop %s at %s, timeline %u) into %s\n"
        "next:\n"
        "  1. in %s/postgresql.conf (or postgresql.auto.conf) set\n"
        "       restore_command = 'edgeshard-wal restore --repo %s %%f %%p'\n"
        "       recovery_target_time = '...'   (not before %s; omit to replay the whole archive)\n"
        "       recovery_target_action = 'promote'\n"
        "     and archive_mode = off, or another edgeshard.archive_dir, while you check it\n"
        "  2. touch %s/recovery.signal\n"
        "  3. start the server (pg_ctl -D %s start); it is out of recovery when\n"
        "     SELECT pg_is_in_recovery() returns false\n",
        m.id.c_str(), static_cast<unsigned long long>(m.raw_size()), m.start_lsn.c_str(),
        m.stop_lsn.c_str(), m.stop_time.c_str(), m.timeline, target.c_str(), target.c_str(),
        repo.c_str(), m.stop_time.c_str(), target.c_str(), target.c_str());
    return 0;
  } catch (const std::bad_alloc&) {
    complain("out of memory");
    return 1;
  }
}

}  // namespace edgeshard::wal_tool

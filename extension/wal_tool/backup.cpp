// edgeshard-wal backup: see backup.hpp.
#include "extension/wal_tool/backup.hpp"

#include "common/archive_file.hpp"
#include "common/archive_repo.hpp"
#include "common/posix_file.hpp"
#include "extension/wal_tool/backup_catalog.hpp"
#include "extension/wal_tool/child_process.hpp"
#include "extension/wal_tool/options.hpp"
#include "extension/wal_tool/subcommand.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <thread>

namespace edgeshard::wal_tool {

namespace fs = std::filesystem;

const char kBackupUsage[] =
    "usage: edgeshard-wal backup [--repo DIR] --conninfo CONNINFO [--label TEXT]\n"
    "                            [--part-size-mb N]\n"
    "\n"
    "Takes a full base backup of the server at CONNINFO (pg_basebackup -F tar -X none, on PATH)\n"
    "into DIR/backups/<id>/ (id: UTC start time YYYYMMDDTHHMMSSZ), the tar stream cut into parts\n"
    "of N MiB (default 64) stored as checksummed, LZ4-compressed archive files. The server must\n"
    "archive into DIR (archive_library = 'edgeshard', edgeshard.archive_dir = DIR): the backup\n"
    "waits up to 60 s for the backup history file and the stop segment to be archived, then "
    "writes\n"
    "backup.manifest (a backup without one is incomplete). Progress on a terminal.\n"
    "\n"
    "Exit status: 0 complete; 1 failed (the partial backup is removed); 2 usage error.\n";

namespace {

constexpr int kWaitSeconds = 60;

// Appends an archive writer's bytes to a file descriptor.
class FdSink : public archive::ByteSink {
 public:
  explicit FdSink(int fd) : fd_(fd) {}
  // Writes head and body; remembers errno on failure.
  bool append(std::span<const uint8_t> head, std::span<const uint8_t> body) noexcept override {
    err_ = posix::write_all(fd_, head, body);
    return err_ == 0;
  }
  // The errno of the failed write, 0 when none.
  int error() const noexcept { return err_; }

 private:
  int fd_;
  int err_ = 0;
};

// Prints "edgeshard-wal backup: <message>" to stderr.
void complain(const std::string& message) {
  std::fprintf(stderr, "edgeshard-wal backup: %s\n", message.c_str());
}

// Removes a partial backup directory when the backup fails.
class PartialBackup {
 public:
  explicit PartialBackup(std::string dir) : dir_(std::move(dir)) {}
  // Removes the directory unless the backup completed.
  ~PartialBackup() {
    if (!done_) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }
  // The backup is complete: keep it.
  void commit() noexcept { done_ = true; }

 private:
  std::string dir_;
  bool done_ = false;
};

// Stores one part: archive file under a temporary name, fsync, rename.
bool store_part(const std::string& dir, const std::string& name, std::span<const uint8_t> raw,
                archive::Writer& writer, BackupPart& part, std::string& why) {
  const std::string tmp = dir + "/" + archive::kTempPrefix + name;
  const std::string path = dir + "/" + name;
  posix::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) {
    why = "could not create \"" + tmp + "\": " + posix::errno_text(errno);
    return false;
  }
  FdSink sink(fd.get());
  const archive::Status st = writer.encode(name, raw, sink);
  if (!st.ok()) {
    why = sink.error() != 0 ? "could not write \"" + tmp + "\": " + posix::errno_text(sink.error())
                            : archive::describe(st, tmp);
    return false;
  }
  int err = ::fsync(fd.get()) == 0 ? 0 : errno;
  if (err == 0) err = fd.reset();
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    why = "could not store \"" + path + "\": " + posix::errno_text(err);
    return false;
  }
  part.name = name;
  part.raw_size = raw.size();
  part.stored_size = writer.encoded_size();
  part.xxh3 = XXH3_64bits(raw.data(), raw.size());
  return true;
}

// Creates repo/backups/<id> with a fresh id (waits for the next second when taken); false with
// why.
bool create_backup_directory(const std::string& repo, std::string& id, std::string& why) {
  const std::string backups = backups_directory(repo);
  if (::mkdir(backups.c_str(), 0700) != 0 && errno != EEXIST) {
    why = "could not create \"" + backups + "\": " + posix::errno_text(errno);
    return false;
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    id = backup_id_for(std::time(nullptr));
    const std::string dir = backup_directory(repo, id);
    if (::mkdir(dir.c_str(), 0700) == 0) {
      const int err = posix::fsync_directory(backups);
      if (err != 0) {
        why = "could not fsync \"" + backups + "\": " + posix::errno_text(err);
        return false;
      }
      return true;
    }
    if (errno != EEXIST) {
      why = "could not create \"" + dir + "\": " + posix::errno_text(errno);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  }
  why = "could not find a free backup id";
  return false;
}

// Polls the archive for the backup history file labelled `label`; false with why after the wait.
bool find_history_file(const std::string& repo, const std::string& label, std::string& name,
                       BackupHistory& history, std::string& why) {
  std::set<std::string> seen;  // history files of other backups
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kWaitSeconds);
  do {
    for (const std::string& file : list_wal_files(repo)) {
      if (file.size() < 7 || file.compare(file.size() - 7, 7, ".backup") != 0) continue;
      if (seen.count(file) != 0) continue;
      std::string text, read_why, parse_why;
      if (!read_archive_file(archive::repo_file_path(repo, file), file, text, read_why)) continue;
      seen.insert(file);
      if (!parse_backup_history(text, history, parse_why) || history.label != label) continue;
      name = file;
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (std::chrono::steady_clock::now() < deadline);
  why = "the backup history file of \"" + label + "\" was not archived into \"" + repo +
        "\" within " + std::to_string(kWaitSeconds) +
        " s: check that the server archives there (archive_library = 'edgeshard', "
        "edgeshard.archive_dir)";
  return false;
}

// Polls the archive for wal/<segment>.eswa; false with why after the wait.
bool wait_for_segment(const std::string& repo, const std::string& segment, std::string& why) {
  const std::string path = archive::repo_file_path(repo, segment);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kWaitSeconds);
  do {
    if (::access(path.c_str(), F_OK) == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (std::chrono::steady_clock::now() < deadline);
  why = "the stop segment " + segment + " was not archived within " + std::to_string(kWaitSeconds) +
        " s";
  return false;
}

// The backup itself, once the arguments are known; returns the exit status.
int run_backup(const std::string& repo, const std::string& conninfo, const std::string& label,
               uint64_t part_size) {
  struct stat st;
  if (::stat(repo.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    complain("the repository \"" + repo + "\" is not a directory");
    return 1;
  }
  std::string id, why;
  if (!create_backup_directory(repo, id, why)) {
    complain(why);
    return 1;
  }
  const std::string dir = backup_directory(repo, id);
  PartialBackup partial(dir);
  const std::string pg_label = "edgeshard-" + id;
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  std::vector<std::string> argv = {"pg_basebackup", "-d",           conninfo, "-D", "-",    "-F",
                                   "tar",           "-X",           "none",   "-c", "fast", "-l",
                                   pg_label,        "--no-manifest"};
  if (tty) argv.push_back("-P");
  ChildProcess child;
  if (!child.start(argv, PipeTo::kChildStdout, why)) {
    complain(why);
    return 1;
  }
  const auto started = std::chrono::steady_clock::now();
  // Uninitialised: every byte handed on is first read from the pipe (std::bad_alloc is caught in
  // backup_main).
  const std::unique_ptr<uint8_t[]> buffer = std::make_unique_for_overwrite<uint8_t[]>(part_size);
  archive::Writer writer;
  Manifest manifest;
  manifest.id = id;
  manifest.label = label;
  for (;;) {
    const ssize_t n = read_full(child.fd(), buffer.get(), part_size);
    if (n < 0) {
      complain("could not read from pg_basebackup: " + posix::errno_text(errno));
      return 1;
    }
    if (n == 0) break;
    char name[32];
    std::snprintf(name, sizeof name, "%s%05zu", kPartPrefix, manifest.parts.size() + 1);
    BackupPart part;
    if (!store_part(dir, name, {buffer.get(), static_cast<size_t>(n)}, writer, part, why)) {
      complain(why);
      return 1;
    }
    manifest.parts.push_back(part);
    if (static_cast<uint64_t>(n) < part_size) break;
  }
  child.close_pipe();
  const int rc = child.wait();
  if (rc != 0) {
    complain("pg_basebackup failed (exit status " + std::to_string(rc) +
             "): see its messages above; the partial backup " + id + " is removed");
    return 1;
  }
  if (manifest.parts.empty()) {
    complain("pg_basebackup wrote nothing");
    return 1;
  }
  int err = posix::fsync_directory(dir);
  if (err != 0) {
    complain("could not fsync \"" + dir + "\": " + posix::errno_text(err));
    return 1;
  }
  BackupHistory history;
  std::string history_name;
  if (!find_history_file(repo, pg_label, history_name, history, why) ||
      !wait_for_segment(repo, history.stop_wal, why)) {
    complain(why);
    return 1;
  }
  manifest.timeline = history.timeline;
  manifest.start_lsn = history.start_lsn;
  manifest.start_wal = history.start_wal;
  manifest.start_time = history.start_time;
  manifest.stop_lsn = history.stop_lsn;
  manifest.stop_wal = history.stop_wal;
  manifest.stop_time = history.stop_time;
  manifest.history_file = history_name;
  if (!write_file_durably(dir + "/" + kManifestName, encode_manifest(manifest), why)) {
    complain(why);
    return 1;
  }
  partial.commit();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "backup %s complete: %zu parts, %llu bytes (stored %llu), start %s (%s), stop %s (%s), "
      "timeline %u, %.1f s, %.1f MiB/s\n",
      id.c_str(), manifest.parts.size(), static_cast<unsigned long long>(manifest.raw_size()),
      static_cast<unsigned long long>(manifest.stored_size()), manifest.start_lsn.c_str(),
      manifest.start_wal.c_str(), manifest.stop_lsn.c_str(), manifest.stop_wal.c_str(),
      manifest.timeline, seconds,
      seconds > 0 ? static_cast<double>(manifest.raw_size()) / seconds / 1048576.0 : 0.0);
  return 0;
}

}  // namespace

int backup_main(int argc, char** argv) {
  Options options;
  std::string repo;
  if (auto done = start_subcommand(argc, argv, "backup", kBackupUsage, {"--conninfo", "--label", "--part-size-mb"}, {}, options, repo)) return *done;
  if (!options.positional.empty() || options.values.count("--conninfo") == 0) {
    std::fprintf(stderr, "edgeshard-wal backup: --conninfo is needed, and no other arguments\n%s",
                 kBackupUsage);
    return kExitUsage;
  }
  const std::string label = options.values.count("--label") ? options.values["--label"] : "";
  if (label.find_first_of("\n\r") != std::string::npos) {
    std::fprintf(stderr, "edgeshard-wal backup: the label must be one line\n");
    return kExitUsage;
  }
  uint64_t part_mb = 64;
  if (options.values.count("--part-size-mb")) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(options.values["--part-size-mb"].c_str(), &end, 10);
    if (end == nullptr || *end != '\0' || v < 1 || v > 1024) {
      std::fprintf(stderr, "edgeshard-wal backup: --part-size-mb must be 1 to 1024\n");
      return kExitUsage;
    }
    part_mb = v;
  }
  ::signal(SIGPIPE, SIG_IGN);
  try {
    return run_backup(repo, options.values["--conninfo"], label, part_mb << 20);
  } catch (const std::bad_alloc&) {
    complain("out of memory");
    return 1;
  }
}

}  // namespace edgeshard::wal_tool

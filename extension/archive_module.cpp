// The WAL archive module: PostgreSQL 15's _PG_archive_module_init and its callbacks, and the GUCs
// edgeshard.archive_dir and edgeshard.archive_compression_level. The work is in
// common/archive_repo.cpp; this file adapts it to the archiver process.
//
// Contract (PostgreSQL 15, contrib/basic_archive): archive_file_cb returns true only once the file
// is durably in the archive, false to have the archiver retry it later; it must never raise an
// ERROR (the archiver has no error handler: an ERROR would become FATAL and restart it). Every
// failure is therefore logged at WARNING, with a SQLSTATE, and returns false.
//
// _PG_init of edgeshard.so runs in the archiver too (the library is loaded there by
// archive_library): it only defines GUCs and registers a relcache callback, which the archiver,
// connected to no database, never fires.
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>

#include "common/archive_file.hpp"
#include "common/archive_repo.hpp"
#include "common/archive_status.hpp"
#include "common/posix_file.hpp"
#include "extension/archive_module.hpp"
#include "extension/pg_cxx.hpp"
#include "extension/settings.hpp"
#include "extension/sqlstate.hpp"

extern "C" {
#include "miscadmin.h"
#include "postmaster/pgarch.h"
#include "utils/guc.h"
}

#if PG_VERSION_NUM >= 160000
#error "PostgreSQL 16 changed the archive module API: _PG_archive_module_init returns the callbacks"
#endif

char* edgeshard_archive_dir = nullptr;
int edgeshard_archive_compression_level = 0;

namespace edgeshard::archive_module {
namespace {

// Temporary files this old in the repository are leftovers of a crashed archiver.
constexpr int64_t kStaleTempSeconds = 60;

constexpr char kSetDirHint[] =
    "Set edgeshard.archive_dir to the archive repository directory and reload the configuration.";

// Whether "edgeshard.archive_dir is not set" was logged since the configuration was last loaded.
bool g_unset_logged = false;
// Whether this process swept the repository's stale temporary files since the configuration was
// last loaded.
bool g_temps_swept = false;
// Whether a failure to write the status file was logged (once per process).
bool g_status_failure_logged = false;

// What a successful archive_file_cb logs at DEBUG1 (plain data: logged after the guard).
struct Archived {
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  bool already = false;
};

// The SQLSTATE of a repository failure.
int sqlstate_for(const archive::RepoError& e) {
  switch (e.failure) {
    case archive::Failure::kInvalidName:
      return ERRCODE_INVALID_NAME;
    case archive::Failure::kRepoMissing:
      return ERRCODE_UNDEFINED_FILE;
    case archive::Failure::kConflict:
      return sqlstate::kArchiveConflict;
    case archive::Failure::kCorrupt:
      return ERRCODE_DATA_CORRUPTED;
    case archive::Failure::kOutOfMemory:
      return ERRCODE_OUT_OF_MEMORY;
    case archive::Failure::kInvalidArgument:
      return ERRCODE_INVALID_PARAMETER_VALUE;
    case archive::Failure::kIo:
    case archive::Failure::kNone:
      break;
  }
  switch (e.sys_errno) {
    case ENOENT:
      return ERRCODE_UNDEFINED_FILE;
    case EACCES:
    case EPERM:
    case EROFS:
      return ERRCODE_INSUFFICIENT_PRIVILEGE;
    case ENOSPC:
    case EDQUOT:
      return ERRCODE_DISK_FULL;
    default:
      return ERRCODE_IO_ERROR;
  }
}

// What the operator should do about a repository failure ("" when nothing specific).
std::string hint_for(const archive::RepoError& e) {
  switch (e.failure) {
    case archive::Failure::kRepoMissing:
      return "Create the directory (or mount the repository) and make it writable by the server's "
             "operating system user, or change edgeshard.archive_dir and reload the configuration.";
    case archive::Failure::kConflict:
      return "Each cluster needs its own edgeshard.archive_dir: another server may be archiving "
             "into this repository, or it holds an older cluster's WAL. The archiver retries the "
             "file until this is resolved.";
    case archive::Failure::kCorrupt:
      return "Check the repository's storage. The file is not overwritten; the server keeps the "
             "WAL file in pg_wal until it is archived.";
    case archive::Failure::kIo:
      if (e.sys_errno == EACCES || e.sys_errno == EPERM || e.sys_errno == EROFS) {
        return "Make edgeshard.archive_dir writable by the server's operating system user.";
      }
      return {};
    default:
      return {};
  }
}

// Logs a LOG-level message from C++ code (through the boundary: ereport may raise).
void log_message(const std::string& message, const std::string& hint = {}) {
  pg::call([&] {
    ereport(LOG, (errmsg_internal("%s", message.c_str()),
                  hint.empty() ? 0 : errhint("%s", hint.c_str())));
  });
}

// Adds the outcome of one file to the status file (read, update, replace): the archiver is the
// only writer, so the file itself is the state and nothing lives across calls.
void record_status(const char* file, const archive::PushResult& r, const std::string& reason) {
  const std::string path = std::string(DataDir) + "/" + archive::kStatusFileName;
  archive::ArchiveStats stats;
  std::string why;
  const int64_t now = archive::now_unix_us();
  if (archive::read_stats_file(path, stats, why) != archive::StatsRead::kOk) {
    stats = archive::ArchiveStats{};  // missing, or torn by a machine crash: start again
    stats.stats_since_us = now;
  }
  if (r.ok) {
    archive::note_archived(stats, file, r.bytes_in, r.bytes_out, now);
  } else {
    archive::note_failed(stats, file, reason, now);
  }
  if (int err = archive::write_stats_file(path, stats); err != 0 && !g_status_failure_logged) {
    g_status_failure_logged = true;
    log_message("could not write the archive status file \"" + path +
                "\": " + posix::errno_text(err));
  }
}

// Archives one file; true when it is durably in the repository. Failures throw pg::Error.
bool archive_file_impl(const char* file, const char* path, Archived* done) {
  const std::string repo = edgeshard_archive_dir != nullptr ? edgeshard_archive_dir : "";
  if (repo.empty()) {
    pg::raise(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "edgeshard.archive_dir is not set", {},
              kSetDirHint);
  }
  if (!g_temps_swept) {
    g_temps_swept = true;
    std::string why;
    const int removed = archive::remove_stale_temps(repo, kStaleTempSeconds, why);
    if (removed > 0) {
      log_message("removed " + std::to_string(removed) +
                  " stale temporary files from the wal archive \"" + repo + "\"");
    }
  }
  archive::PushResult r;
  try {
    archive::Writer writer(
        {.block_size = archive::kDefaultBlockSize, .level = edgeshard_archive_compression_level});
    r = archive::push_file(repo, file, path, writer);
  } catch (const std::bad_alloc&) {
    r = {};
    r.error = {archive::Failure::kOutOfMemory, 0, "out of memory", {}};
  }
  record_status(file, r, r.error.message);
  if (!r.ok) {
    pg::raise(sqlstate_for(r.error),
              "could not archive \"" + std::string(file) + "\": " + r.error.message, r.error.detail,
              hint_for(r.error));
  }
  *done = {r.bytes_in, r.bytes_out, r.already_archived};
  return true;
}

// edgeshard.archive_dir must leave room in MAXPGPATH for "/wal/" and a temporary file name.
bool check_archive_dir(char** newval, void** /*extra*/, GucSource /*source*/) {
  if (*newval == nullptr || (*newval)[0] == '\0') return true;
  if (strlen(*newval) + 128 >= MAXPGPATH) {
    GUC_check_errdetail("The archive directory path is too long.");
    return false;
  }
  return true;
}

// edgeshard.archive_dir (re)set, at start and at every configuration reload (PostgreSQL runs the
// assign hook even for an unchanged value): log "not set" again if it is unset, sweep again.
void assign_archive_dir(const char* /*newval*/, void* /*extra*/) {
  g_unset_logged = false;
  g_temps_swept = false;
}

}  // namespace

void define_settings() {
  DefineCustomStringVariable(
      "edgeshard.archive_dir",
      "Directory of the WAL archive repository (archive_library = 'edgeshard').",
      "Each WAL file is stored LZ4-compressed and checksummed as wal/<name>.eswa in it; restore "
      "with edgeshard-wal restore. A relative path is relative to the data directory.",
      &edgeshard_archive_dir, "", PGC_SIGHUP, 0, check_archive_dir, assign_archive_dir, nullptr);
  DefineCustomIntVariable(
      "edgeshard.archive_compression_level", "Compression of archived WAL: 0 = LZ4, 1..12 = LZ4HC.",
      "0 (the default) is LZ4's fast mode; 1 to 12 use LZ4HC at that level: smaller archive files, "
      "slower archiving. Restoring is as fast either way.",
      &edgeshard_archive_compression_level, 0, 0, archive::kMaxLevel, PGC_SIGHUP, 0, nullptr,
      nullptr, nullptr);
}

}  // namespace edgeshard::archive_module

using namespace edgeshard;

// check_configured_cb: archiving needs edgeshard.archive_dir. PostgreSQL itself warns "archive_mode
// enabled, yet archiving is not configured" at every archiver cycle; this says what to set, at LOG,
// once per configuration load.
extern "C" bool edgeshard_archive_configured(void) {
  if (edgeshard_archive_dir != nullptr && edgeshard_archive_dir[0] != '\0') return true;
  if (!archive_module::g_unset_logged) {
    archive_module::g_unset_logged = true;
    ereport(LOG, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                  errmsg("edgeshard.archive_dir is not set: no wal file is archived"),
                  errhint("%s", archive_module::kSetDirHint)));
  }
  return false;
}

// archive_file_cb: archives pg_wal's `file` (at `path`, relative to the data directory); never
// raises.
extern "C" bool edgeshard_archive_file(const char* file, const char* path) {
  archive_module::Archived done;
  const bool ok = pg::guard_no_raise(
      [&] { return archive_module::archive_file_impl(file, path, &done); }, WARNING);
  if (ok) {
    ereport(DEBUG1, (errmsg_internal("archived \"%s\": %llu bytes stored in %llu%s", file,
                                     static_cast<unsigned long long>(done.bytes_in),
                                     static_cast<unsigned long long>(done.bytes_out),
                                     done.already ? " (already in the archive)" : "")));
  }
  return ok;
}

// The archive module's entry point (PostgreSQL 15 signature).
extern "C" void _PG_archive_module_init(ArchiveModuleCallbacks* cb) {
  cb->check_configured_cb = edgeshard_archive_configured;
  cb->archive_file_cb = edgeshard_archive_file;
  cb->shutdown_cb = nullptr;
}

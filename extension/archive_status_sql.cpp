// edgeshard.read_archive_status(), behind the view edgeshard.archive_status: the archive module's
// counters, read from the status file the archiver keeps in the data directory
// (common/archive_status.hpp).
#include <string>

#include "common/archive_status.hpp"
#include "extension/pg_cxx.hpp"

extern "C" {
#include "datatype/timestamp.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
}

using namespace edgeshard;

namespace {

constexpr int kColumns = 10;

// A Unix-microseconds time as a timestamptz datum (PostgreSQL counts from 2000-01-01).
Datum unix_us_datum(int64_t us) {
  constexpr int64_t kUnixToPostgres =
      int64_t{POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE} * USECS_PER_DAY;
  return TimestampTzGetDatum(us - kUnixToPostgres);
}

// Text valid in the database encoding: a name or path that is not becomes ASCII with '?'.
std::string printable(std::string text) {
  if (!pg_verifymbstr(text.data(), static_cast<int>(text.size()), true)) {
    for (char& c : text) {
      if (static_cast<unsigned char>(c) >= 0x80) c = '?';
    }
  }
  return text;
}

}  // namespace

// edgeshard.read_archive_status() -> record: one row; counters 0 and the rest NULL while the
// archiver has not written the status file yet.
EDGESHARD_FUNCTION(read_archive_status) {
  const std::string path = std::string(DataDir) + "/" + archive::kStatusFileName;
  archive::ArchiveStats s;
  std::string why;
  const archive::StatsRead read = archive::read_stats_file(path, s, why);
  if (read == archive::StatsRead::kCorrupt) {
    pg::raise(
        ERRCODE_DATA_CORRUPTED,
        std::string("archive status file \"") + archive::kStatusFileName + "\" is corrupt: " + why,
        {}, "The archiver replaces it after the next WAL file it archives or fails to archive.");
  }
  if (read == archive::StatsRead::kIo) pg::raise(ERRCODE_IO_ERROR, why);
  const bool missing = read == archive::StatsRead::kMissing;
  const std::string last_archived = printable(s.last_archived_wal);
  const std::string last_failed = printable(s.last_failed_wal);
  const std::string reason = printable(s.last_failure_reason);
  return pg::call([&] {
    TupleDesc desc;
    if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE ||
        desc->natts != kColumns) {
      elog(ERROR, "edgeshard.read_archive_status() must return a record of %d columns", kColumns);
    }
    desc = BlessTupleDesc(desc);
    Datum values[kColumns] = {};
    bool nulls[kColumns] = {};
    // Sets column i to a text, NULL when empty.
    auto set_text = [&](int i, const std::string& v) {
      nulls[i] = v.empty();
      if (!v.empty())
        values[i] = PointerGetDatum(cstring_to_text_with_len(v.data(), static_cast<int>(v.size())));
    };
    // Sets column i to a time, NULL when never (0).
    auto set_time = [&](int i, int64_t us) {
      nulls[i] = us == 0;
      if (us != 0) values[i] = unix_us_datum(us);
    };
    values[0] = Int64GetDatum(static_cast<int64>(s.archived_count));
    set_text(1, last_archived);
    set_time(2, s.last_archived_time_us);
    values[3] = Int64GetDatum(static_cast<int64>(s.failed_count));
    set_text(4, last_failed);
    set_time(5, s.last_failed_time_us);
    set_text(6, reason);
    values[7] = Int64GetDatum(static_cast<int64>(s.bytes_in));
    values[8] = Int64GetDatum(static_cast<int64>(s.bytes_out));
    set_time(9, missing ? 0 : s.stats_since_us);
    return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
  });
}

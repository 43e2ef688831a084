// The WAL archive module (archive_library = 'edgeshard', PostgreSQL 15's archive module API):
// each WAL file goes LZ4-compressed and checksummed into the repository edgeshard.archive_dir
// (common/archive_repo.hpp, format common/ARCHIVE_FORMAT.md); counters go to the status file
// read by edgeshard.archive_status (common/archive_status.hpp).
#pragma once

namespace edgeshard::archive_module {

// Defines edgeshard.archive_dir and edgeshard.archive_compression_level (from _PG_init).
void define_settings();

}  // namespace edgeshard::archive_module

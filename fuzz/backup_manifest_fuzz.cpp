// libFuzzer target for the text readers of edgeshard-wal's backup catalog
// (extension/wal_tool/backup_catalog.hpp, format in common/ARCHIVE_FORMAT.md, "Backup manifest"):
// parse_manifest() and parse_backup_history() must refuse any bytes or accept them without a
// crash, an out-of-bounds read or undefined behaviour. Each input is tried as it is and, for the
// manifest, with its checksum line recomputed so that mutations reach the line parser; a manifest
// that parses must encode back to text that parses to the same fields.
#include "extension/wal_tool/backup_catalog.hpp"

#include <xxhash.h>

#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

namespace wal_tool = edgeshard::wal_tool;

// Parses text as a manifest; when it parses, checks the encode/parse round trip.
void try_manifest(std::string_view text) {
  wal_tool::Manifest m;
  std::string why;
  if (!wal_tool::parse_manifest(text, m, why)) return;
  const std::string again = wal_tool::encode_manifest(m);
  wal_tool::Manifest back;
  if (!wal_tool::parse_manifest(again, back, why) || back.id != m.id ||
      back.parts.size() != m.parts.size() || back.raw_size() != m.raw_size())
    std::abort();
}

}  // namespace

// One input: as a manifest (as given, then re-checksummed) and as a backup history file.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try_manifest(text);
  std::string resummed(text);
  if (!resummed.empty() && resummed.back() != '\n') resummed += '\n';
  char line[40];
  std::snprintf(line, sizeof line, "checksum = %016" PRIx64 "\n",
                static_cast<uint64_t>(XXH3_64bits(resummed.data(), resummed.size())));
  resummed += line;
  try_manifest(resummed);
  wal_tool::BackupHistory history;
  std::string why;
  wal_tool::parse_backup_history(text, history, why);
  return 0;
}

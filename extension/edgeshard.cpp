// Module entry point: PG_MODULE_MAGIC, the GUCs (the archive module's in archive_module.cpp), and
// registration of the shard-map invalidation.
#include <cstring>

#include "extension/archive_module.hpp"
#include "extension/shard_map.hpp"
#include "extension/pg_cxx.hpp"
#include "extension/settings.hpp"

extern "C" {
#include "utils/guc.h"
PG_MODULE_MAGIC;
}

char* edgeshard_node_name = nullptr;
bool edgeshard_bypass_write_guard = false;

// Accepts only names add_shard() would accept: bookmarks are "node/LSN", so no '/'.
static bool check_node_name(char** newval, void** /*extra*/, GucSource /*source*/) {
  const char* name = *newval;
  if (name == nullptr || name[0] == '\0') return true;
  size_t len = strlen(name);
  bool ok = len < NAMEDATALEN;
  for (size_t i = 0; ok && i < len; i++) {
    char c = name[i];
    ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
  }
  if (!ok) {
    GUC_check_errdetail("A shard name is 1 to 63 letters, digits, '_', '-' or '.'.");
    return false;
  }
  return true;
}

// Defines the GUCs and hooks; runs once per backend when the library is loaded.
static void init_module() {
  DefineCustomStringVariable(
      "edgeshard.node_name", "Name of the shard this server is, as registered with add_shard().",
      "The write guard refuses rows of tenants that the shard map gives to another shard.",
      &edgeshard_node_name, "", PGC_SUSET, 0, check_node_name, nullptr, nullptr);
  DefineCustomBoolVariable(
      "edgeshard.bypass_write_guard",
      "Lets a superuser write rows of tenants this node does not own.",
      "For repair and tenant moves only; never set it in postgresql.conf.",
      &edgeshard_bypass_write_guard, false, PGC_SUSET, 0, nullptr, nullptr, nullptr);
  edgeshard::archive_module::define_settings();
  MarkGUCPrefixReserved("edgeshard");
  edgeshard::shard_map::register_invalidation();
}

extern "C" void _PG_init(void) {
  edgeshard::pg::guard([] { init_module(); });
}

// Names on disk derived from tenant keys and shard names (edge_apply/FORMAT.md, "Tenant
// directory"): data_dir/tenants/<name> and data_dir/shards/<name><suffix>. A name is the key with
// every byte outside A-Z a-z 0-9 _ - . (and a leading .) written %XX; past kMaxPlainName bytes it
// is a readable prefix of that plus '~' and the XXH3-64 of the whole key, so any key of up to
// 65535 bytes gives one file name of at most kMaxPlainName bytes. Two keys may share a hashed name
// only through an XXH3 collision: the manifest holds the full key and TenantWriter::open refuses a
// directory whose manifest names another tenant, so a collision is reported, never merged.
//
//   escape_tenant("a/b")          -> "a%2Fb"
//   escape_tenant(300 x "k")      -> "kkk…k~1f0e…" (100 + 1 + 16 bytes)
#pragma once

#include "common/no_postgres.hpp"

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

namespace edgeshard::apply {

// Longest name kept as the plain escaped key; longer ones are hashed.
inline constexpr size_t kMaxPlainName = 120;
// Longest escaped prefix a hashed name keeps (cut before a %XX that would not fit).
inline constexpr size_t kHashedNamePrefix = 100;

// The file-name form of a tenant key or shard name: escaped, hashed past kMaxPlainName bytes.
std::string escape_tenant(std::string_view key);

// The directory of a tenant under a data directory: <data_dir>/tenants/<escape_tenant(key)>.
std::filesystem::path tenant_dir(const std::filesystem::path& data_dir, std::string_view tenant);

// A shard's file under a data directory: <data_dir>/shards/<escape_tenant(shard)><suffix>.
std::filesystem::path shard_file_path(const std::filesystem::path& data_dir, std::string_view shard,
                                      std::string_view suffix);

// Renames a tenant directory `dir` holding key's replica to tenant_dir(), its name under this
// rule, when it has another (before names were bounded, a key's whole escaped form named it, up
// to 255 bytes); fsyncs the parent. Sets out to the directory's path now; false with why when
// the rename failed or a directory of that name exists already.
bool move_to_tenant_dir(const std::filesystem::path& dir, std::string_view key,
                        std::filesystem::path& out, std::string& why);

}  // namespace edgeshard::apply

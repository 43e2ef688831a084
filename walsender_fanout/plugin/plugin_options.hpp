// Options of the edgeshard output plugin (START_REPLICATION ... ("name" 'value', ...), or the
// options of pg_logical_slot_get_binary_changes): what a consumer asks the plugin for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>

#include "extension/shard_map.hpp"

namespace edgeshard::plugin {

// Smallest and largest target payload of a frame, and the default.
inline constexpr uint32_t kMinFrameBytes = 1024;
inline constexpr uint32_t kMaxFrameBytes = 16u << 20;
inline constexpr uint32_t kDefaultFrameBytes = 64u << 10;

// Parsed options, with their defaults.
struct Options {
  // Tenants to emit (canonical keys); empty: every tenant.
  std::unordered_set<std::string, shard_map::StringHash, std::equal_to<>> tenants;
  bool compress = true;                     // "compression": 'lz4' (default) or 'none'
  uint32_t frame_bytes = kDefaultFrameBytes;  // "frame_bytes": target payload size of a frame

  // True if changes of this tenant are emitted.
  bool wants(std::string_view tenant) const { return tenants.empty() || tenants.contains(tenant); }
};

// Sets one option from its name and value; throws pg::Error (22023) naming a bad or unknown one.
void set_option(Options& options, std::string_view name, const char* value);

}  // namespace edgeshard::plugin

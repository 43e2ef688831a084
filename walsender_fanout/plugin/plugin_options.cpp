// Parsing of the output plugin's options: see plugin_options.hpp.
#include <charconv>
#include <string>
#include <string_view>

#include "walsender_fanout/plugin/plugin_options.hpp"
#include "extension/pg_cxx.hpp"

namespace edgeshard::plugin {

namespace {

// Raises the error for an option whose value is missing or malformed.
[[noreturn]] void bad_value(std::string_view name, const char* value, const char* expected) {
  pg::raise(ERRCODE_INVALID_PARAMETER_VALUE,
            "invalid value for edgeshard option \"" + std::string(name) + "\": \"" +
                (value != nullptr ? value : "") + "\"",
            {}, expected);
}

// Splits "a,b , c" into trimmed, non-empty tenant keys.
void parse_tenants(Options& options, const char* value) {
  std::string_view list(value);
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) options.tenants.emplace(item);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

}  // namespace

void set_option(Options& options, std::string_view name, const char* value) {
  if (name == "tenants") {
    if (value == nullptr) bad_value(name, value, "Give a comma-separated list of tenant ids.");
    parse_tenants(options, value);
    if (options.tenants.empty()) bad_value(name, value, "Give a comma-separated list of tenant ids.");
  } else if (name == "compression") {
    std::string_view v(value != nullptr ? value : "");
    if (v == "lz4")
      options.compress = true;
    else if (v == "none")
      options.compress = false;
    else
      bad_value(name, value, "Use 'lz4' or 'none'.");
  } else if (name == "frame_bytes") {
    std::string_view v(value != nullptr ? value : "");
    uint64_t bytes = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), bytes);
    if (ec != std::errc() || end != v.data() + v.size() || bytes < kMinFrameBytes ||
        bytes > kMaxFrameBytes)
      bad_value(name, value,
                pg::format("Use a number of bytes between %u and %u.", kMinFrameBytes,
                           kMaxFrameBytes)
                    .c_str());
    options.frame_bytes = static_cast<uint32_t>(bytes);
  } else {
    pg::raise(ERRCODE_INVALID_PARAMETER_VALUE,
              "unrecognized edgeshard option \"" + std::string(name) + "\"", {},
              "The edgeshard output plugin takes tenants, compression and frame_bytes.");
  }
}

}  // namespace edgeshard::plugin

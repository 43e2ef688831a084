// Tenant keys (and shard names) inside line-oriented, blank- or comma-separated text: the
// manifest's `tenant` and `shard` fields (version 2), the `broken` marker, edgeshard-replica's
// output and the apply daemon's `tenants` list. A key may hold any byte (spaces, newlines, '/',
// '%', UTF-8), so there it is written with the bytes 0x00-0x20, ',', '%' and 0x7F as %XX
// (upper-case hex); every other byte stays, so plain and UTF-8 keys read as they are.
//
//   escape_tenant_text("a b,c%")  -> "a%20b%2Cc%25"
//   unescape_tenant_text("a%20b") -> "a b"
#pragma once

#include "common/no_postgres.hpp"

#include <string>
#include <string_view>

namespace edgeshard::apply {

// Whether key has a byte that escape_tenant_text() writes as %XX.
bool tenant_text_needs_escape(std::string_view key) noexcept;

// key as one token of text: the bytes 0x00-0x20, ',', '%' and 0x7F written %XX.
std::string escape_tenant_text(std::string_view key);

// Reverses escape_tenant_text(): %XX (either case) becomes byte XX, every other byte stays;
// false when a '%' is not followed by two hex digits.
bool unescape_tenant_text(std::string_view text, std::string& out);

}  // namespace edgeshard::apply

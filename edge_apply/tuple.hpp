// Encoding of a stored row: the frame format's tuple (common/FORMAT.md, "Tuples": `count ncols`,
// then each value's kind byte and, for BINARY and TEXT, its `str`). Replica files store rows in
// this form, so a row read from the change stream is stored as is, and one merged by the apply
// daemon (an UPDATE keeping an unchanged TOASTed value) is encoded again here.
#pragma once

#include "common/no_postgres.hpp"

#include "common/frame_codec.hpp"
#include "common/frame_reader.hpp"

#include <span>
#include <string>

namespace edgeshard::apply {

// Appends the tuple of values to out.
inline void append_tuple(std::string& out, std::span<const frame::Value> values) {
  uint8_t buf[frame::kMaxVarintBytes];
  out.append(reinterpret_cast<const char*>(buf), frame::store_varint(buf, values.size()));
  for (const frame::Value& v : values) {
    out += static_cast<char>(v.kind);
    if (v.kind == frame::ValueKind::kBinary || v.kind == frame::ValueKind::kText) {
      out.append(reinterpret_cast<const char*>(buf), frame::store_varint(buf, v.data.size()));
      out += v.data;
    }
  }
}

}  // namespace edgeshard::apply

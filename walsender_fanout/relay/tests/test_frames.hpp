// Frames for the relay's tests: one INSERT of a value_bytes-long text value per frame.
#pragma once

#include "common/frame_writer.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace edgeshard::relay {

// Frame number `sequence` of the transaction committed at key, for tenant (empty: MANY_TENANTS),
// with one row of value_bytes; `last` closes the transaction's group (with COMMIT).
inline std::vector<uint8_t> make_frame(uint64_t key, const std::string& tenant, uint32_t sequence = 0,
                                       bool last = true, size_t value_bytes = 8) {
  frame::Writer w(frame::Compression::kNone);
  if (sequence == 0) w.begin(7, key, 1000);
  w.insert_begin(16384, 1);
  const std::string value(value_bytes, static_cast<char>('a' + sequence % 26));
  w.value_text(value.data(), value.size());
  if (last) w.commit(key, key + 8, 1000);
  frame::Fields f;
  f.tenant_key = tenant;
  f.many_tenants = tenant.empty();
  f.last = last;
  f.xid = 7;
  f.sequence = sequence;
  f.first_lsn = f.last_lsn = key - 1;
  f.commit_lsn = key;
  f.commit_time_us = 1000;
  const auto bytes = w.seal(f);
  return {bytes.begin(), bytes.end()};
}

}  // namespace edgeshard::relay

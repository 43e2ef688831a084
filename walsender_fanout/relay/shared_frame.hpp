// A frame as the relay holds it in memory: the whole FRAME message of the subscriber protocol
// (prefix + frame bytes) in one buffer, built once when it arrives from upstream and shared, by
// reference count, by every subscriber it is sent to (no copy per subscriber), plus the header
// fields the relay filters and orders by.
#pragma once

#include "common/no_postgres.hpp"

#include "walsender_fanout/relay/protocol.hpp"

#include <boost/smart_ptr/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace edgeshard::relay {

// One frame (or relay marker) with its place in the log.
struct SharedFrame : boost::intrusive_ref_counter<SharedFrame, boost::thread_safe_counter> {
  uint64_t ordinal = 0;  // index of its record in the log (FrameLog::Position::records numbering)
  uint64_t key = 0;      // stream key: commit LSN, or the marker's position
  int64_t commit_time_us = 0;
  bool marker = false;        // a relay transaction-boundary marker: logged, never forwarded
  bool many_tenants = false;  // MANY_TENANTS: sent to every subscriber
  std::string tenant;         // tenant key when !many_tenants
  std::vector<uint8_t> wire;  // FRAME message: proto::kFramePrefixBytes, then the frame

  // The frame bytes inside wire.
  std::span<const uint8_t> frame() const noexcept {
    return std::span<const uint8_t>(wire).subspan(proto::kFramePrefixBytes);
  }
};

using FrameRef = boost::intrusive_ptr<SharedFrame>;

}  // namespace edgeshard::relay

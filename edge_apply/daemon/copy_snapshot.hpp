// The MVCC snapshot of an initial copy, as `pg_current_snapshot()` prints it (`xmin:xmax:xip,...`,
// 64-bit transaction ids), and the one question the applier asks of it: did this streamed
// transaction's changes already reach the copy? A transaction is in the copy exactly when it
// committed before the snapshot was taken: its id is below xmax and not among the ids still in
// progress (xip). Such a transaction's frame groups are skipped for the copied tenants; every
// other one is applied on top of the copy, in commit order (DESIGN.md 6.1).
#pragma once

#include "common/no_postgres.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::apply::daemon {

struct CopySnapshot {
  uint64_t xmin = 0;          // every id below it had finished when the snapshot was taken
  uint64_t xmax = 0;          // every id at or above it started after the snapshot
  std::vector<uint64_t> xip;  // ids in [xmin, xmax) still in progress, ascending

  // Parses `xmin:xmax:xip1,xip2,...` (pg_snapshot's text output); false with why when malformed.
  static bool parse(std::string_view text, CopySnapshot& out, std::string& why);

  // Whether the committed transaction with this 32-bit id (a frame header's xid, the low bits of
  // its full id) is visible in the snapshot. The full id is taken as the one nearest to xmax,
  // which is exact for every transaction within 2^31 ids of the snapshot (PostgreSQL's own
  // wraparound horizon guarantees it for transactions still being streamed).
  bool visible(uint32_t xid) const noexcept;

  // The text form (for logs).
  std::string text() const;
};

}  // namespace edgeshard::apply::daemon

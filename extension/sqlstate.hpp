// SQLSTATEs of edgeshard's own conditions. Class SH is implementation-defined (it starts with a
// letter after H), so it cannot collide with the SQL standard's or PostgreSQL's classes.
// Documented in README.md, "Errors"; routers key their behaviour on them.
#pragma once

#include "extension/pg_cxx.hpp"

namespace edgeshard::sqlstate {

// The row's tenant is owned by another shard: refresh the map and send the write there.
inline constexpr int kWrongShard = MAKE_SQLSTATE('S', 'H', '0', '0', '1');
// The row's tenant is being moved between shards: retry after a short backoff.
inline constexpr int kTenantMoving = MAKE_SQLSTATE('S', 'H', '0', '0', '2');
// The WAL archive already holds a file of that name with different content: archiving it again
// would overwrite history (two servers archiving into one repository, or a reused directory).
inline constexpr int kArchiveConflict = MAKE_SQLSTATE('S', 'H', '0', '1', '0');

}  // namespace edgeshard::sqlstate

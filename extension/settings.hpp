// The extension's GUCs, defined in _PG_init (extension/edgeshard.cpp). Plain data only.
#pragma once

extern "C" {
// edgeshard.node_name: the name of the shard this server is (must match edgeshard.shards.name).
extern char* edgeshard_node_name;
// edgeshard.bypass_write_guard: superuser-only escape hatch for the write guard.
extern bool edgeshard_bypass_write_guard;
// edgeshard.archive_dir: the WAL archive repository of the archive module ("" = not configured).
extern char* edgeshard_archive_dir;
// edgeshard.archive_compression_level: 0 = LZ4 fast, 1..12 = LZ4HC at that level.
extern int edgeshard_archive_compression_level;
}

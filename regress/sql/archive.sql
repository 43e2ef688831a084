-- The WAL archive module's SQL side: its settings and their validation, and the shape, empty state
-- and privileges of edgeshard.archive_status. (Archiving itself happens in the archiver process:
-- regress/t/010_wal_archive.pl.)
CREATE EXTENSION IF NOT EXISTS edgeshard;
-- The settings exist once edgeshard.so is loaded (the archiver loads it by archive_library).
LOAD 'edgeshard';

-- The settings, with their defaults; reload-only.
SELECT name, setting, context, vartype, min_val, max_val
  FROM pg_settings WHERE name LIKE 'edgeshard.archive%' ORDER BY name;
SET edgeshard.archive_dir = '/somewhere';
SET edgeshard.archive_compression_level = 3;

-- Bad values are refused before they reach postgresql.auto.conf; good ones are accepted (a
-- relative directory is relative to the data directory, where the archiver runs).
ALTER SYSTEM SET edgeshard.archive_compression_level = 13;
ALTER SYSTEM SET edgeshard.archive_compression_level = -1;
SELECT '/' || repeat('x', 900) AS long_dir \gset
\set VERBOSITY sqlstate
ALTER SYSTEM SET edgeshard.archive_dir = :'long_dir';
\set VERBOSITY default
ALTER SYSTEM SET edgeshard.archive_compression_level = 9;
ALTER SYSTEM SET edgeshard.archive_dir = 'archive';
ALTER SYSTEM RESET edgeshard.archive_compression_level;
ALTER SYSTEM RESET edgeshard.archive_dir;

-- The view's columns.
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'edgeshard.archive_status'::regclass AND attnum > 0
 ORDER BY attnum;
-- No archiver has written a status file in this cluster: zero counters, NULL elsewhere.
SELECT * FROM edgeshard.archive_status;

-- Superusers and pg_monitor only: failure reasons name paths.
CREATE ROLE archive_status_reader;
SET ROLE archive_status_reader;
SELECT count(*) FROM edgeshard.archive_status;
SELECT count(*) FROM edgeshard.read_archive_status();
RESET ROLE;
GRANT pg_monitor TO archive_status_reader;
SET ROLE archive_status_reader;
SELECT archived_count, failed_count FROM edgeshard.archive_status;
RESET ROLE;
DROP ROLE archive_status_reader;

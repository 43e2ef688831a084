-- edgeshard 1.0 -> 1.1: the WAL archive module's status view.
\echo Use "ALTER EXTENSION edgeshard UPDATE TO '1.1'" to load this file. \quit

-- ---------------------------------------------------------------------------------------------
-- WAL archiving (1.1): the archive module's counters. The archiver (archive_library =
-- 'edgeshard') keeps them in the data directory's edgeshard_archive.status, rewritten after every
-- file it archives or fails to archive; a missing file reads as zero counters.
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION edgeshard.read_archive_status(
    OUT archived_count bigint, OUT last_archived_wal text, OUT last_archived_time timestamptz,
    OUT failed_count bigint, OUT last_failed_wal text, OUT last_failed_time timestamptz,
    OUT last_failure_reason text, OUT bytes_in bigint, OUT bytes_out bigint,
    OUT stats_since timestamptz)
RETURNS record LANGUAGE C VOLATILE AS 'MODULE_PATHNAME', 'read_archive_status';

-- Like pg_stat_archiver, with the volumes and the compression ratio of what was archived.
CREATE VIEW edgeshard.archive_status AS
SELECT s.archived_count, s.last_archived_wal, s.last_archived_time, s.failed_count,
       s.last_failed_wal, s.last_failed_time, s.last_failure_reason, s.bytes_in, s.bytes_out,
       CASE WHEN s.bytes_out > 0 THEN round(s.bytes_in::numeric / s.bytes_out, 2) END
           AS compression_ratio,
       s.stats_since
  FROM edgeshard.read_archive_status() s;

-- Failure reasons name paths: superusers and pg_monitor only, as pg_stat_archiver's details.
REVOKE ALL ON FUNCTION edgeshard.read_archive_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION edgeshard.read_archive_status() TO pg_monitor;
GRANT SELECT ON edgeshard.archive_status TO pg_monitor;

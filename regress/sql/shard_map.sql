-- Shards, the ring, the map epoch and the shard_map view.
\set SHOW_CONTEXT never
SET client_min_messages = notice;

-- an empty map: no shard can take a tenant
SELECT edgeshard.current_epoch();
SELECT edgeshard.shard_for(1);
\echo :LAST_ERROR_SQLSTATE

SELECT edgeshard.add_shard('s1', 'host=127.0.0.1 port=5432 dbname=app');
SELECT edgeshard.add_shard('s2', 'host=127.0.0.1 port=5433 dbname=app', weight => 1, region => 'eu-west');
SELECT edgeshard.current_epoch();
SELECT name, state, weight, region, ring_points, placed_tenants, epoch FROM edgeshard.shard_map;
SELECT sum(ring_share) FROM edgeshard.shard_map;

-- routing is deterministic, and bigint and text keys agree
SELECT g AS tenant, edgeshard.shard_for(g) AS by_bigint, edgeshard.shard_for(g::text) AS by_text
  FROM generate_series(1, 8) g;
SELECT count(*) FILTER (WHERE edgeshard.shard_for(g) = 's1') AS on_s1,
       count(*) FILTER (WHERE edgeshard.shard_for(g) = 's2') AS on_s2
  FROM generate_series(1, 10000) g;
SELECT edgeshard.shard_for('acme-corp'), edgeshard.shard_for('00000000-0000-0000-0000-000000000001');
SELECT edgeshard.shard_for(-9223372036854775808), edgeshard.shard_for(9223372036854775807);

-- NULL tenants are refused
SELECT edgeshard.shard_for(NULL::bigint);
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.shard_for(NULL::text);
\echo :LAST_ERROR_SQLSTATE

-- bad arguments
SELECT edgeshard.add_shard('s1', 'host=elsewhere');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.add_shard('bad/name', 'host=x');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.add_shard('', 'host=x');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.add_shard(NULL, 'host=x');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.add_shard('s9', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.add_shard('s9', 'host=x', weight => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.add_shard('s9', 'host=x', weight => 1001);
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.set_shard_weight('nope', 2);
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.set_shard_weight('s1', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.remove_shard('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.remove_shard(NULL);
\echo :LAST_ERROR_SQLSTATE
-- failed calls left the map alone
SELECT edgeshard.current_epoch();

-- weights: s2 at weight 3 owns about three quarters of the ring and of the tenants
SELECT edgeshard.set_shard_weight('s2', 3);
SELECT edgeshard.current_epoch();
SELECT name, weight, ring_points, ring_share BETWEEN 0.70 AND 0.80 AS about_three_quarters
  FROM edgeshard.shard_map WHERE name = 's2';
SELECT round(count(*) FILTER (WHERE edgeshard.shard_for(g) = 's2') / 10000.0, 1) AS s2_share
  FROM generate_series(1, 10000) g;

-- adding a shard moves only the tenants the new shard takes
CREATE TEMP TABLE before AS SELECT g AS tenant, edgeshard.shard_for(g) AS shard FROM generate_series(1, 10000) g;
SELECT edgeshard.add_shard('s3', 'host=127.0.0.1 port=5434', weight => 4);
SELECT count(*) FILTER (WHERE edgeshard.shard_for(tenant) <> shard) BETWEEN 4000 AND 6000 AS about_half_moved,
       count(*) FILTER (WHERE edgeshard.shard_for(tenant) <> shard AND edgeshard.shard_for(tenant) <> 's3') AS moved_elsewhere
  FROM before;

-- a draining shard keeps its explicit tenants but takes no hashed ones
UPDATE edgeshard.shards SET state = 'draining' WHERE name = 's3';
SELECT name, state, ring_points FROM edgeshard.shard_map;
SELECT count(*) FILTER (WHERE edgeshard.shard_for(tenant) <> shard) AS back_where_they_were FROM before;
UPDATE edgeshard.shards SET state = 'active' WHERE name = 's3';

-- weight 0: no hashed tenants
SELECT edgeshard.set_shard_weight('s3', 0);
SELECT count(*) FROM generate_series(1, 10000) g WHERE edgeshard.shard_for(g) = 's3';

-- every map change bumps the epoch once per transaction, even plain DML on the catalog
SELECT edgeshard.current_epoch() AS e0 \gset
BEGIN;
SELECT edgeshard.set_shard_weight('s1', 2);
SELECT edgeshard.set_shard_weight('s1', 1);
COMMIT;
SELECT edgeshard.current_epoch() - :e0 AS bumps;
UPDATE edgeshard.shards SET region = 'us-east' WHERE name = 's1';
SELECT edgeshard.current_epoch() - :e0 AS bumps;
BEGIN;
SELECT edgeshard.set_shard_weight('s1', 5);
ROLLBACK;
SELECT edgeshard.current_epoch() - :e0 AS bumps_after_rollback, weight FROM edgeshard.shard_map WHERE name = 's1';

-- dropping objects that are not distributed tables leaves the epoch alone
SELECT edgeshard.current_epoch() AS e1 \gset
CREATE TABLE scratch (x int);
DROP TABLE scratch;
CREATE FUNCTION scratch_fn() RETURNS int LANGUAGE sql RETURN 1;
DROP FUNCTION scratch_fn();
SELECT edgeshard.current_epoch() - :e1 AS bumps_by_unrelated_drops;

-- the map is read in parallel workers too (each has its own cache)
SELECT edgeshard.set_shard_weight('s1', 1);
SET force_parallel_mode = on;
SET parallel_setup_cost = 0;
SELECT edgeshard.shard_for(7) AS in_a_worker, edgeshard.current_epoch() > 0 AS epoch_read;
SELECT count(*) FROM edgeshard.tenant_placement;
RESET force_parallel_mode;
RESET parallel_setup_cost;

-- only edgeshard's catalog may bump the epoch
CREATE TABLE not_catalog (x int);
CREATE TRIGGER bump AFTER INSERT ON not_catalog FOR EACH ROW EXECUTE FUNCTION edgeshard.on_map_change();
INSERT INTO not_catalog VALUES (1);
\echo :LAST_ERROR_SQLSTATE
DROP TABLE not_catalog;

-- removing shards
SELECT edgeshard.remove_shard('s3');
SELECT name FROM edgeshard.shard_map;
SELECT edgeshard.remove_shard('s2');
SELECT count(*) FROM generate_series(1, 1000) g WHERE edgeshard.shard_for(g) <> 's1';
SELECT edgeshard.add_shard('s2', 'host=127.0.0.1 port=5433 dbname=app', region => 'eu-west');
SELECT edgeshard.set_shard_weight('s1', 1);
UPDATE edgeshard.shards SET region = NULL;

-- shard_map is readable by everyone, without conninfo; administration is not
CREATE ROLE edgeshard_reader;
SET ROLE edgeshard_reader;
SELECT name, weight FROM edgeshard.shard_map;
SELECT edgeshard.shard_for(7);
SELECT conninfo FROM edgeshard.shards;
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.add_shard('s9', 'host=x');
\echo :LAST_ERROR_SQLSTATE
CREATE TEMP TABLE mine (x int);
CREATE TRIGGER bump AFTER INSERT ON mine FOR EACH ROW EXECUTE FUNCTION edgeshard.on_map_change();
\echo :LAST_ERROR_SQLSTATE
DROP TABLE mine;
SET edgeshard.bypass_write_guard = on;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE edgeshard_reader;

-- node names follow the shard name rules
SET edgeshard.node_name = 'not/valid';
\echo :LAST_ERROR_SQLSTATE
SET edgeshard.node_name = 's1';
SELECT edgeshard.bookmark() ~ '^s1/[0-9A-F]+/[0-9A-F]+$' AS bookmark_format;
SELECT pg_lsn(substr(edgeshard.bookmark(), 4)) >= pg_current_wal_lsn() AS covers_current_lsn;
RESET edgeshard.node_name;
SET edgeshard.node_name = '';
SELECT edgeshard.bookmark();
\echo :LAST_ERROR_SQLSTATE
RESET edgeshard.node_name;

-- The edgeshard output plugin through the SQL interface, decoded with frames_to_json(). Fields
-- that change from run to run (LSNs, xids, times, checksums, OIDs, lengths) are left out, and so
-- is the compression of frames under 1 KiB: whether LZ4 saves an eighth of a small payload
-- depends on those varying bytes.
\set SHOW_CONTEXT never
SET edgeshard.bypass_write_guard = on;  -- this test writes every tenant on one server
SELECT 'slot' FROM pg_create_logical_replication_slot('es_regress', 'edgeshard');

CREATE FUNCTION decoded(VARIADIC options text[] DEFAULT '{}') RETURNS SETOF jsonb
LANGUAGE sql AS $$
  SELECT CASE WHEN (j->>'raw_length')::int < 1024 THEN j - 'compression' ELSE j END
         - ARRAY['xid', 'first_lsn', 'last_lsn', 'commit_lsn', 'end_lsn', 'lsn', 'commit_time',
                   'commit_time_us', 'payload_checksum', 'raw_length', 'stored_length',
                   'frame_length', 'relid', 'relids', 'time', 'time_us']
    FROM (SELECT edgeshard.frames_to_json(data) AS j
            FROM pg_logical_slot_get_binary_changes('es_regress', NULL, NULL, VARIADIC options)) f
$$;

CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE dec_orders (tenant_id bigint, id int, note text, amount numeric(10, 2),
                         PRIMARY KEY (tenant_id, id));
CREATE TABLE dec_plain (tenant_id bigint, x int);
SELECT edgeshard.distribute_table('dec_orders', 'tenant_id');
-- distributing a table describes it at once (its ALTER TABLE commands): RELATION frames only
SELECT j->>'type' AS type, count(*) FROM decoded() j GROUP BY 1 ORDER BY 1;

-- inserts, updates, deletes across tenants; a table that is not distributed sends nothing
BEGIN;
INSERT INTO dec_orders VALUES (1, 1, 'first', 10.50), (2, 1, 'other tenant', NULL), (1, 2, NULL, 3);
INSERT INTO dec_plain VALUES (1, 1);
UPDATE dec_orders SET amount = 11 WHERE tenant_id = 1 AND id = 1;
DELETE FROM dec_orders WHERE tenant_id = 1 AND id = 2;
COMMIT;
INSERT INTO dec_plain VALUES (2, 2);  -- a transaction with nothing to send
SELECT * FROM decoded();

-- a key-changing UPDATE carries the old key; a tenant-changing UPDATE becomes a DELETE for the
-- old tenant and an INSERT for the new one
UPDATE dec_orders SET id = 100 WHERE tenant_id = 1 AND id = 1;
UPDATE dec_orders SET tenant_id = 3 WHERE tenant_id = 2;
SELECT * FROM decoded();

-- the tenants option
INSERT INTO dec_orders VALUES (1, 3, 'for 1', 1), (3, 3, 'for 3', 3), (4, 3, 'for 4', 4);
SELECT * FROM decoded('tenants', '3, 4');

-- TRUNCATE goes to every consumer, in order with the rows around it
BEGIN;
INSERT INTO dec_orders VALUES (5, 1, 'before truncate', 1);
TRUNCATE dec_orders;
INSERT INTO dec_orders VALUES (5, 2, 'after truncate', 2);
COMMIT;
SELECT * FROM decoded();

-- schema changes mid-stream: RELATION again before the next change
ALTER TABLE dec_orders ADD COLUMN extra int;
INSERT INTO dec_orders VALUES (6, 1, 'with extra', 1, 42);
ALTER TABLE dec_orders DROP COLUMN note;
INSERT INTO dec_orders VALUES (6, 2, 2, 43);
ALTER TABLE dec_orders ALTER COLUMN extra TYPE text;
INSERT INTO dec_orders VALUES (6, 3, 3, 'now text');
SELECT j FROM decoded() j WHERE j->>'type' IN ('relation', 'insert');

-- a schema change inside a transaction: rows written before it go out under the old RELATION
BEGIN;
INSERT INTO dec_orders VALUES (9, 1, 1, 'before the change');
ALTER TABLE dec_orders ALTER COLUMN amount TYPE float8;
INSERT INTO dec_orders VALUES (9, 2, 2.5, 'after the change');
COMMIT;
SELECT j - 'columns' AS decoded, j->'columns'->2->>'type_oid' AS amount_type
  FROM decoded() j WHERE j->>'type' IN ('relation', 'insert', 'frame');

-- Schema changes reach consumers even when no row changes (the event triggers' messages): a
-- constant default travels as the column's missing value (rows written before it read it), a
-- rename keeps the column's attnum, a rewrite (volatile default, type change) says REWRITE first.
ALTER TABLE dec_orders ADD COLUMN status text DEFAULT 'new';
SELECT j->>'type' AS type, j->'columns'->4 AS added FROM decoded() j WHERE j->>'type' <> 'frame';
ALTER TABLE dec_orders RENAME COLUMN status TO state;
SELECT j->'columns'->4 AS renamed FROM decoded() j WHERE j->>'type' = 'relation';
ALTER TABLE dec_orders ADD COLUMN stamp timestamptz DEFAULT clock_timestamp();
SELECT j->>'type' AS type, jsonb_array_length(j->'columns') AS columns FROM decoded() j
 WHERE j->>'type' <> 'frame';
ALTER TABLE dec_orders DROP COLUMN stamp, DROP COLUMN state;
SELECT count(*) AS relations FROM decoded() j WHERE j->>'type' = 'relation';

-- REPLICA IDENTITY FULL: deletes still carry only the primary key; USING INDEX is refused
ALTER TABLE dec_orders REPLICA IDENTITY FULL;
DELETE FROM dec_orders WHERE tenant_id = 9 AND id = 1;
UPDATE dec_orders SET extra = 'full identity' WHERE tenant_id = 9 AND id = 2;
SELECT j FROM decoded() j WHERE j->>'type' IN ('delete', 'update');
ALTER TABLE dec_orders REPLICA IDENTITY DEFAULT;
CREATE UNIQUE INDEX dec_orders_by_id ON dec_orders (id, tenant_id);
ALTER TABLE dec_orders REPLICA IDENTITY USING INDEX dec_orders_by_id;
\echo :LAST_ERROR_SQLSTATE
DROP INDEX dec_orders_by_id;

-- every common type, NULLs, and a TOASTed value left unchanged by an UPDATE
CREATE TABLE dec_types (tenant text, id int, i2 int2, i4 int4, i8 int8, n numeric, t text,
                        b bytea, bo bool, f4 float4, f8 float8, ts timestamptz, d date, u uuid,
                        j jsonb, arr int[], m mood, p posint, big text, PRIMARY KEY (tenant, id));
ALTER TABLE dec_types ALTER COLUMN big SET STORAGE EXTERNAL;
SELECT edgeshard.distribute_table('dec_types', 'tenant');
INSERT INTO dec_types VALUES ('acme', 1, -2, 40000, 9000000000, 12345.6789, 'text ünïcode',
  '\xdeadbeef', true, 1.5, -2.25, '2026-11-24 12:00:00+00', '2026-11-24',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, 2]}', '{1,NULL,3}', 'happy', 7,
  repeat('0123456789', 300));
INSERT INTO dec_types (tenant, id) VALUES ('acme', 2);
UPDATE dec_types SET i4 = 1 WHERE tenant = 'acme' AND id = 1;
WITH d AS MATERIALIZED (SELECT j FROM decoded() j)
SELECT CASE WHEN jsonb_typeof(j->'new'->'big') = 'string'
            THEN jsonb_set(j, '{new,big}', to_jsonb('<' || length(j->'new'->>'big') || ' characters>'))
            ELSE j - 'columns' END AS decoded
  FROM d;

-- a type without a binary send function (aclitem) is sent as its text output
CREATE TABLE dec_text_only (tenant text, id int, acl aclitem, PRIMARY KEY (tenant, id));
SELECT edgeshard.distribute_table('dec_text_only', 'tenant');
INSERT INTO dec_text_only VALUES ('acme', 1, makeaclitem('pg_monitor'::regrole, 'pg_monitor'::regrole, 'SELECT', false));
SELECT j->'new' AS decoded FROM decoded() j WHERE j->>'type' = 'insert';

-- a big transaction is cut into continuation frames; only the last one has the LAST flag
INSERT INTO dec_orders SELECT 7, g, g, 'row ' || g FROM generate_series(1, 5000) g;
SELECT count(*) AS frames, max((j->>'sequence')::int) AS last_sequence,
       count(*) FILTER (WHERE (j->>'last')::bool) AS last_frames,
       bool_and(j->>'compression' = 'lz4') AS all_lz4
  FROM decoded('frame_bytes', '4096') j WHERE j->>'type' = 'frame' AND j->>'tenant' = '7';
DELETE FROM dec_orders WHERE tenant_id = 7;
SELECT count(*) FILTER (WHERE j->>'type' = 'frame') AS frames,
       count(*) FILTER (WHERE j->>'type' = 'delete') AS deletes,
       bool_and(j->>'compression' = 'none') FILTER (WHERE j->>'type' = 'frame') AS all_uncompressed
  FROM decoded('compression', 'none', 'frame_bytes', '65536') j;

-- bad options are refused, naming the option
SELECT count(*) FROM decoded('frame_bytes', 'abc');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM decoded('frame_bytes', '10');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM decoded('compression', 'zstd');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM decoded('tenants', ' , ');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM decoded('bogus', '1');
\echo :LAST_ERROR_SQLSTATE

-- corrupted frames are refused by the reader: truncated, not a frame, a flipped bit
SELECT * FROM edgeshard.frames_to_json('\x455346520100'::bytea);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM edgeshard.frames_to_json(decode(repeat('00', 120), 'hex'));
\echo :LAST_ERROR_SQLSTATE
INSERT INTO dec_orders VALUES (8, 1, 1, 'to be damaged');
CREATE TEMP TABLE captured AS
  SELECT data FROM pg_logical_slot_peek_binary_changes('es_regress', NULL, NULL) ORDER BY lsn DESC LIMIT 1;
SELECT count(*) AS messages FROM captured, edgeshard.frames_to_json(data);
-- (offsets depend on the frame's length, which varies with the xid: shown as N)
CREATE FUNCTION refusal(damaged bytea) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM count(*) FROM edgeshard.frames_to_json(damaged);
  RETURN 'accepted';
EXCEPTION WHEN data_corrupted THEN
  RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'byte [0-9]+', 'byte N');
END $$;
SELECT refusal(set_byte(data, 100, get_byte(data, 100) # 4)) AS payload_bit_flipped,
       refusal(set_byte(data, 20, get_byte(data, 20) # 1)) AS header_bit_flipped,
       refusal(substr(data, 1, length(data) - 1)) AS truncated,
       refusal(data) AS intact
  FROM captured;
DROP FUNCTION refusal(bytea);

SELECT 'dropped' FROM pg_drop_replication_slot('es_regress');
DROP TABLE dec_orders, dec_plain, dec_types, dec_text_only;
DROP FUNCTION decoded(text[]);
DROP TYPE mood;
DROP DOMAIN posint;
RESET edgeshard.bypass_write_guard;

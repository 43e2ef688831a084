-- The write guard on distributed tables. Map from placement.sql: s1 and s2 share the ring.
\set SHOW_CONTEXT never
SET edgeshard.node_name = 's1';
SELECT min(g) FILTER (WHERE edgeshard.shard_for(g) = 's1') AS local_tenant,
       min(g) FILTER (WHERE edgeshard.shard_for(g) = 's2') AS remote_tenant
  FROM generate_series(1, 100) g \gset
\echo local :local_tenant remote :remote_tenant

CREATE TABLE orders (tenant_id bigint, order_id int, note text, PRIMARY KEY (tenant_id, order_id));
CREATE TABLE plain (tenant_id bigint, note text);  -- not distributed: never guarded
SELECT edgeshard.distribute_table('orders', 'tenant_id');
SELECT relid, tenant_column FROM edgeshard.distributed_tables;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'orders'::regclass ORDER BY tgname;
SELECT conname, convalidated, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'c';

-- INSERT: the owner accepts, the other shard refuses with SH001 naming owner and epoch
INSERT INTO orders VALUES (:local_tenant, 1, 'local');
INSERT INTO orders VALUES (:remote_tenant, 1, 'remote');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO plain VALUES (:remote_tenant, 'anything goes here');
-- one foreign row refuses the whole statement
INSERT INTO orders SELECT g, 2, 'bulk' FROM generate_series(1, 50) g;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO orders SELECT g, 2, 'bulk' FROM generate_series(1, 50) g WHERE edgeshard.shard_for(g) = 's1';
SELECT count(*) FROM orders;

-- UPDATE: local rows yes; changing a row's tenant no (to a foreign tenant, or a local one)
UPDATE orders SET note = 'updated' WHERE tenant_id = :local_tenant AND order_id = 1;
UPDATE orders SET tenant_id = :remote_tenant WHERE tenant_id = :local_tenant AND order_id = 1;
\echo :LAST_ERROR_SQLSTATE
UPDATE orders SET tenant_id = (SELECT min(g) FROM generate_series(:local_tenant + 1, 100) g WHERE edgeshard.shard_for(g) = 's1')
 WHERE tenant_id = :local_tenant AND order_id = 1;
\echo :LAST_ERROR_SQLSTATE
-- a foreign row planted by a superuser repair cannot be updated or deleted by mistake
SET edgeshard.bypass_write_guard = on;
INSERT INTO orders VALUES (:remote_tenant, 1, 'planted by a repair');
RESET edgeshard.bypass_write_guard;
UPDATE orders SET note = 'x' WHERE tenant_id = :remote_tenant;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM orders WHERE tenant_id = :remote_tenant;
\echo :LAST_ERROR_SQLSTATE
-- updating a foreign row back to a local tenant is refused too (the old tenant is foreign)
UPDATE orders SET tenant_id = :local_tenant, order_id = 99 WHERE tenant_id = :remote_tenant;
\echo :LAST_ERROR_SQLSTATE
SET edgeshard.bypass_write_guard = on;
DELETE FROM orders WHERE tenant_id = :remote_tenant;
RESET edgeshard.bypass_write_guard;

-- DELETE of local rows
DELETE FROM orders WHERE tenant_id = :local_tenant AND order_id = 1;

-- INSERT ... ON CONFLICT
INSERT INTO orders VALUES (:local_tenant, 2, 'new') ON CONFLICT (tenant_id, order_id) DO UPDATE SET note = 'upserted';
SELECT note FROM orders WHERE tenant_id = :local_tenant AND order_id = 2;
INSERT INTO orders VALUES (:remote_tenant, 2, 'new') ON CONFLICT DO NOTHING;
\echo :LAST_ERROR_SQLSTATE

-- COPY FROM (tenants 2 and 3 are local, 4 is not)
SELECT edgeshard.shard_for(2) AS owner_of_2, edgeshard.shard_for(3) AS owner_of_3, edgeshard.shard_for(4) AS owner_of_4;
COPY orders FROM STDIN;
2	3	copied
4	3	copied
\.
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS copied_rows FROM orders WHERE order_id = 3;
COPY orders FROM STDIN;
2	3	copied
3	3	copied
\.
SELECT count(*) AS copied_rows FROM orders WHERE order_id = 3;

-- a tenant being moved is fenced everywhere with the retryable SH002
INSERT INTO edgeshard.tenants (tenant_id, state) VALUES (:'local_tenant', 'moving');
INSERT INTO orders VALUES (:local_tenant, 10, 'during move');
\echo :LAST_ERROR_SQLSTATE
UPDATE orders SET note = 'during move' WHERE tenant_id = :local_tenant;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM edgeshard.tenants WHERE tenant_id = :'local_tenant';
INSERT INTO orders VALUES (:local_tenant, 10, 'after move');

-- a map change is seen by the next statement of the same session
SELECT edgeshard.place_tenant(:local_tenant, 's2');
INSERT INTO orders VALUES (:local_tenant, 11, 'now owned by s2');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.unplace_tenant(:local_tenant);
INSERT INTO orders VALUES (:local_tenant, 11, 'back on s1');

-- a map change in the middle of a statement reaches the rows after it (no stale memo)
CREATE FUNCTION place_midway(tenant bigint, shard text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN PERFORM edgeshard.place_tenant(tenant, shard); RETURN 0; END $$;
INSERT INTO orders SELECT :local_tenant, 30 + i + CASE WHEN i = 2 THEN place_midway(:local_tenant, 's2') ELSE 0 END, 'midway'
  FROM generate_series(1, 3) i;
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.shard_for(:local_tenant) AS owner_after_rollback;
DROP FUNCTION place_midway(bigint, text);

-- the old-row triggers fire under session_replication_role = replica too (logical apply)
SET edgeshard.bypass_write_guard = on;
INSERT INTO orders VALUES (:remote_tenant, 40, 'planted');
RESET edgeshard.bypass_write_guard;
SET session_replication_role = replica;
DELETE FROM orders WHERE tenant_id = :remote_tenant;
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
-- another BEFORE UPDATE trigger rewriting the tenant cannot smuggle a foreign row in
CREATE FUNCTION steal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.tenant_id := (SELECT min(g) FROM generate_series(1, 100) g WHERE edgeshard.shard_for(g) = 's1'); RETURN NEW; END $$;
CREATE TRIGGER z_steal BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION steal();
UPDATE orders SET note = 'stolen' WHERE tenant_id = :remote_tenant;
\echo :LAST_ERROR_SQLSTATE
DROP TRIGGER z_steal ON orders;
DROP FUNCTION steal();
SET edgeshard.bypass_write_guard = on;
DELETE FROM orders WHERE tenant_id = :remote_tenant;
RESET edgeshard.bypass_write_guard;

-- without a node name the guard refuses rather than guessing
SET edgeshard.node_name = '';
INSERT INTO orders VALUES (:local_tenant, 12, 'x');
\echo :LAST_ERROR_SQLSTATE
SET edgeshard.node_name = 's1';

-- an application role is guarded and cannot bypass
CREATE ROLE edgeshard_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO edgeshard_app;
SET ROLE edgeshard_app;
INSERT INTO orders VALUES (:local_tenant, 20, 'by app');
INSERT INTO orders VALUES (:remote_tenant, 20, 'by app');
\echo :LAST_ERROR_SQLSTATE
SET edgeshard.bypass_write_guard = on;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
REVOKE ALL ON orders FROM edgeshard_app;
DROP ROLE edgeshard_app;

-- text and uuid tenant columns; NULL tenants
CREATE TABLE docs (tenant text, id int, body jsonb, PRIMARY KEY (tenant, id));
SELECT edgeshard.distribute_table('docs', 'tenant');
SELECT min('tenant-' || g) FILTER (WHERE edgeshard.shard_for('tenant-' || g) = 's1') AS local_text,
       min('tenant-' || g) FILTER (WHERE edgeshard.shard_for('tenant-' || g) = 's2') AS remote_text
  FROM generate_series(1, 20) g \gset
INSERT INTO docs VALUES (:'local_text', 1, '{}');
INSERT INTO docs VALUES (:'remote_text', 1, '{}');
\echo :LAST_ERROR_SQLSTATE
-- long (TOASTed) keys route like any other
SELECT edgeshard.shard_for(repeat('long-tenant-', 1000)) AS owner_of_long_key;
SET edgeshard.node_name = 's2';
INSERT INTO docs VALUES (repeat('long-tenant-', 1000), 1, '{}');
SET edgeshard.node_name = 's1';
INSERT INTO docs VALUES (repeat('long-tenant-', 1000), 2, '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO docs VALUES (NULL, 2, '{}');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE events (tenant uuid, seq int, PRIMARY KEY (tenant, seq));
SELECT edgeshard.distribute_table('events', 'tenant');
SELECT u AS local_uuid FROM (VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid), ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'),
       ('c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13'), ('d0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14')) v(u)
 WHERE edgeshard.shard_for(u::text) = 's1' LIMIT 1 \gset
SELECT u AS remote_uuid FROM (VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid), ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12'),
       ('c0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13'), ('d0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14')) v(u)
 WHERE edgeshard.shard_for(u::text) = 's2' LIMIT 1 \gset
INSERT INTO events VALUES (:'local_uuid', 1);
INSERT INTO events VALUES (:'remote_uuid', 1);
\echo :LAST_ERROR_SQLSTATE

-- partitioned tables: the guard reaches every partition
CREATE TABLE metrics (tenant_id int, ts date, v float8, PRIMARY KEY (tenant_id, ts)) PARTITION BY RANGE (ts);
CREATE TABLE metrics_2026 PARTITION OF metrics FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT edgeshard.distribute_table('metrics', 'tenant_id');
INSERT INTO metrics VALUES (:local_tenant, '2026-11-24', 1.5);
INSERT INTO metrics VALUES (:remote_tenant, '2026-11-24', 1.5);
\echo :LAST_ERROR_SQLSTATE
INSERT INTO metrics_2026 VALUES (:remote_tenant, '2026-11-25', 1.5);
\echo :LAST_ERROR_SQLSTATE

-- distribute_table refuses what it cannot guard
SELECT edgeshard.distribute_table('orders', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE t_nokey (tenant_id bigint, x int);
SELECT edgeshard.distribute_table('t_nokey', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE t_otherkey (tenant_id bigint, id int PRIMARY KEY);
SELECT edgeshard.distribute_table('t_otherkey', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.distribute_table('t_otherkey', 'no_such_column');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE t_float (tenant_id float8 PRIMARY KEY);
SELECT edgeshard.distribute_table('t_float', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
CREATE VIEW v_orders AS SELECT * FROM orders;
SELECT edgeshard.distribute_table('v_orders', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.distribute_table('edgeshard.tenants', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.distribute_table('no_such_table', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard.distribute_table(NULL, 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
-- a partition on its own
CREATE TABLE t_parted (tenant_id bigint, id int, PRIMARY KEY (tenant_id, id)) PARTITION BY HASH (id);
CREATE TABLE t_part0 PARTITION OF t_parted FOR VALUES WITH (MODULUS 2, REMAINDER 0);
SELECT edgeshard.distribute_table('t_part0', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE t_parted;
-- a replica identity that does not log the primary key
CREATE TABLE t_ident (tenant_id bigint, id int, PRIMARY KEY (tenant_id, id));
ALTER TABLE t_ident REPLICA IDENTITY NOTHING;
SELECT edgeshard.distribute_table('t_ident', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE t_ident;
-- a table already holding another shard's rows
CREATE TABLE t_foreign (tenant_id bigint, id int, PRIMARY KEY (tenant_id, id));
INSERT INTO t_foreign VALUES (:local_tenant, 1), (:remote_tenant, 1);
SELECT edgeshard.distribute_table('t_foreign', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
-- plain inheritance (children would miss the old-row triggers)
CREATE TABLE t_parent (tenant_id bigint, id int, PRIMARY KEY (tenant_id, id));
CREATE TABLE t_child () INHERITS (t_parent);
SELECT edgeshard.distribute_table('t_parent', 'tenant_id');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE t_child, t_parent, t_foreign;
SELECT relid FROM edgeshard.distributed_tables ORDER BY relid::text;

-- a renamed tenant column: the constraint follows it, the old-row triggers report it
ALTER TABLE events RENAME COLUMN tenant TO tenant_uuid;
INSERT INTO events VALUES (:'remote_uuid', 2);
\echo :LAST_ERROR_SQLSTATE
DELETE FROM events;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE events RENAME COLUMN tenant_uuid TO tenant;

-- VALIDATE CONSTRAINT finds foreign rows already in a table
SET edgeshard.bypass_write_guard = on;
INSERT INTO events VALUES (:'remote_uuid', 3);
RESET edgeshard.bypass_write_guard;
ALTER TABLE events VALIDATE CONSTRAINT edgeshard_write_guard;
\echo :LAST_ERROR_SQLSTATE
SET edgeshard.bypass_write_guard = on;
DELETE FROM events WHERE tenant = :'remote_uuid';
RESET edgeshard.bypass_write_guard;
ALTER TABLE events VALIDATE CONSTRAINT edgeshard_write_guard;

-- undistribute_table removes the guard; a dropped table leaves the catalog
SELECT edgeshard.undistribute_table('events');
SELECT count(*) AS guard_objects_left FROM pg_trigger WHERE tgrelid = 'events'::regclass AND tgname LIKE 'edgeshard%';
SELECT count(*) AS guard_objects_left FROM pg_constraint WHERE conrelid = 'events'::regclass AND conname LIKE 'edgeshard%';
INSERT INTO events VALUES (:'remote_uuid', 1);
SELECT edgeshard.undistribute_table('events');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE docs;
SELECT relid FROM edgeshard.distributed_tables ORDER BY relid::text;
DROP TABLE events, plain, t_nokey, t_otherkey, t_float, metrics;
DROP VIEW v_orders;
RESET edgeshard.node_name;

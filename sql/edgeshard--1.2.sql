-- edgeshard 1.2: tenant sharding catalog, routing, write guard, WAL archive status, schema-change
-- messages for the change stream.
\echo Use "CREATE EXTENSION edgeshard" to load this file. \quit

-- ---------------------------------------------------------------------------------------------
-- Catalog. Regular tables, dumped by pg_dump (pg_extension_config_dump), and user catalog tables
-- so that logical decoding can read them with its historic snapshots.
-- ---------------------------------------------------------------------------------------------

CREATE SEQUENCE edgeshard.shard_id_seq AS integer;

CREATE TABLE edgeshard.shards (
    shard_id integer PRIMARY KEY DEFAULT nextval('edgeshard.shard_id_seq'),
    name text NOT NULL UNIQUE
        CONSTRAINT shard_name_format CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    conninfo text NOT NULL,
    state text NOT NULL DEFAULT 'active'
        CONSTRAINT shard_state_values CHECK (state IN ('active', 'draining')),
    weight integer NOT NULL DEFAULT 1
        CONSTRAINT shard_weight_range CHECK (weight BETWEEN 0 AND 1000),
    region text
) WITH (user_catalog_table = true);
ALTER SEQUENCE edgeshard.shard_id_seq OWNED BY edgeshard.shards.shard_id;

COMMENT ON TABLE edgeshard.shards IS
    'shard primaries; active shards with weight > 0 own weight x 128 points of the hash ring';
COMMENT ON COLUMN edgeshard.shards.state IS
    'active, or draining: keeps its explicitly placed tenants but takes no hashed ones';

CREATE TABLE edgeshard.tenants (
    tenant_id text COLLATE "C" PRIMARY KEY
        CONSTRAINT tenant_id_not_empty CHECK (tenant_id <> ''),
    shard_id integer REFERENCES edgeshard.shards (shard_id),
    tier text NOT NULL DEFAULT 'free'
        CONSTRAINT tenant_tier_values CHECK (tier IN ('free', 'pro', 'enterprise')),
    state text NOT NULL DEFAULT 'active'
        CONSTRAINT tenant_state_values CHECK (state IN ('active', 'moving'))
) WITH (user_catalog_table = true);
CREATE INDEX tenants_shard_id_idx ON edgeshard.tenants (shard_id);

COMMENT ON TABLE edgeshard.tenants IS
    'tenants with an explicit placement (shard_id), a tier, or a move in progress; others follow the ring';

CREATE TABLE edgeshard.distributed_tables (
    relid regclass PRIMARY KEY,
    tenant_column name NOT NULL
) WITH (user_catalog_table = true);

COMMENT ON TABLE edgeshard.distributed_tables IS
    'tables whose rows belong to tenants; guarded on each shard and streamed to the edges';

CREATE TABLE edgeshard.map_epoch (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT map_epoch_one_row CHECK (singleton),
    epoch bigint NOT NULL CONSTRAINT map_epoch_positive CHECK (epoch > 0),
    changed_at timestamptz NOT NULL,
    changed_by_xact xid8
) WITH (user_catalog_table = true);

COMMENT ON TABLE edgeshard.map_epoch IS
    'one row: the shard map epoch, bumped once by every transaction that changes the map';
INSERT INTO edgeshard.map_epoch (singleton, epoch, changed_at) VALUES (true, 1, now());

-- A restore loads the dumped epoch row after the other catalog tables, whose loading already
-- created a row through the map_change triggers: the two merge, keeping the higher epoch.
CREATE FUNCTION edgeshard.merge_epoch_row() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    UPDATE edgeshard.map_epoch m
       SET epoch = greatest(m.epoch, NEW.epoch), changed_at = greatest(m.changed_at, NEW.changed_at)
     WHERE m.singleton;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER merge_rows BEFORE INSERT ON edgeshard.map_epoch
    FOR EACH ROW EXECUTE FUNCTION edgeshard.merge_epoch_row();

SELECT pg_catalog.pg_extension_config_dump('edgeshard.shards', '');
SELECT pg_catalog.pg_extension_config_dump('edgeshard.shard_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('edgeshard.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('edgeshard.distributed_tables', '');
SELECT pg_catalog.pg_extension_config_dump('edgeshard.map_epoch', '');

-- Every change of the map, however made, bumps the epoch and invalidates the routing caches.
-- Row triggers, so that a statement that changes nothing bumps nothing.
CREATE FUNCTION edgeshard.on_map_change() RETURNS trigger
    LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog
    AS 'MODULE_PATHNAME', 'on_map_change';
REVOKE ALL ON FUNCTION edgeshard.on_map_change() FROM PUBLIC;

CREATE TRIGGER map_change AFTER INSERT OR UPDATE OR DELETE ON edgeshard.shards
    FOR EACH ROW EXECUTE FUNCTION edgeshard.on_map_change();
CREATE TRIGGER map_truncate AFTER TRUNCATE ON edgeshard.shards
    FOR EACH STATEMENT EXECUTE FUNCTION edgeshard.on_map_change();
CREATE TRIGGER map_change AFTER INSERT OR UPDATE OR DELETE ON edgeshard.tenants
    FOR EACH ROW EXECUTE FUNCTION edgeshard.on_map_change();
CREATE TRIGGER map_truncate AFTER TRUNCATE ON edgeshard.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION edgeshard.on_map_change();
CREATE TRIGGER map_change AFTER INSERT OR UPDATE OR DELETE ON edgeshard.distributed_tables
    FOR EACH ROW EXECUTE FUNCTION edgeshard.on_map_change();
CREATE TRIGGER map_truncate AFTER TRUNCATE ON edgeshard.distributed_tables
    FOR EACH STATEMENT EXECUTE FUNCTION edgeshard.on_map_change();

-- ---------------------------------------------------------------------------------------------
-- Routing (C++): usable by every role.
-- ---------------------------------------------------------------------------------------------

CREATE FUNCTION edgeshard.shard_for(tenant bigint) RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'shard_for_bigint';
CREATE FUNCTION edgeshard.shard_for(tenant text) RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'shard_for_text';
COMMENT ON FUNCTION edgeshard.shard_for(bigint) IS 'the shard that owns a tenant: explicit placement, else the ring';
COMMENT ON FUNCTION edgeshard.shard_for(text) IS 'the shard that owns a tenant: explicit placement, else the ring';

CREATE FUNCTION edgeshard.current_epoch() RETURNS bigint
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'current_epoch';

CREATE FUNCTION edgeshard.ring_ownership(OUT shard_id integer, OUT points integer, OUT share float8)
    RETURNS SETOF record
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'ring_ownership';

CREATE FUNCTION edgeshard.bookmark() RETURNS text
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'bookmark';
COMMENT ON FUNCTION edgeshard.bookmark() IS
    'node/LSN covering every transaction committed so far here; edges wait for it to read their writes';

-- The write guard (installed by distribute_table): a CHECK constraint on new rows, triggers on old.
CREATE FUNCTION edgeshard.guard_tenant(tenant bigint, tbl regclass) RETURNS boolean
    LANGUAGE c AS 'MODULE_PATHNAME', 'guard_tenant_bigint';
CREATE FUNCTION edgeshard.guard_tenant(tenant text, tbl regclass) RETURNS boolean
    LANGUAGE c AS 'MODULE_PATHNAME', 'guard_tenant_text';
CREATE FUNCTION edgeshard.guard_tenant(tenant uuid, tbl regclass) RETURNS boolean
    LANGUAGE c AS 'MODULE_PATHNAME', 'guard_tenant_uuid';
COMMENT ON FUNCTION edgeshard.guard_tenant(bigint, regclass) IS
    'true if this node may write rows of the tenant, else raises SH001 (other owner) or SH002 (moving)';
CREATE FUNCTION edgeshard.write_guard() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'write_guard';

-- The change stream (walsender_fanout/plugin): frames decoded for people and tests.
CREATE FUNCTION edgeshard.frames_to_json(frames bytea) RETURNS SETOF jsonb
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'frames_to_json';
COMMENT ON FUNCTION edgeshard.frames_to_json(bytea) IS
    'decodes edgeshard frames (e.g. from pg_logical_slot_get_binary_changes) into one JSON object per header and message';

-- Boundary test hooks (regress/sql/boundary.sql); superuser only.
CREATE FUNCTION edgeshard._test_boundary(kind text) RETURNS integer
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'test_boundary';
CREATE FUNCTION edgeshard._test_live_objects() RETURNS integer
    LANGUAGE c AS 'MODULE_PATHNAME', 'test_live_objects';
REVOKE ALL ON FUNCTION edgeshard._test_boundary(text), edgeshard._test_live_objects() FROM PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- Views
-- ---------------------------------------------------------------------------------------------

CREATE VIEW edgeshard.shard_map AS
SELECT s.shard_id, s.name, s.state, s.weight, s.region,
       coalesce(o.points, 0) AS ring_points,
       round(coalesce(o.share, 0)::numeric, 4) AS ring_share,
       (SELECT count(*) FROM edgeshard.tenants t WHERE t.shard_id = s.shard_id) AS placed_tenants,
       s.name = current_setting('edgeshard.node_name', true) AS is_local,
       edgeshard.current_epoch() AS epoch
  FROM edgeshard.shards s
  LEFT JOIN edgeshard.ring_ownership() o USING (shard_id)
 ORDER BY s.name;
COMMENT ON VIEW edgeshard.shard_map IS 'shards, their part of the ring, and the map epoch (conninfo left out: it may hold secrets)';

CREATE VIEW edgeshard.tenant_placement AS
SELECT t.tenant_id,
       coalesce(s.name, edgeshard.shard_for(t.tenant_id)) AS shard,
       CASE WHEN t.shard_id IS NULL THEN 'ring' ELSE 'explicit' END AS placement,
       t.tier, t.state
  FROM edgeshard.tenants t
  LEFT JOIN edgeshard.shards s USING (shard_id)
 ORDER BY t.tenant_id;
COMMENT ON VIEW edgeshard.tenant_placement IS 'tenants with a tier, an explicit placement or a move; all others follow the ring';

-- ---------------------------------------------------------------------------------------------
-- Administration (PL/pgSQL): superuser or granted roles only.
-- ---------------------------------------------------------------------------------------------

-- Looks a shard up by name; raises 42704 when there is none.
CREATE FUNCTION edgeshard._shard_id(shard_name text) RETURNS integer
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $$
DECLARE
    id integer;
BEGIN
    IF shard_name IS NULL THEN
        RAISE EXCEPTION 'shard name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT s.shard_id INTO id FROM edgeshard.shards s WHERE s.name = shard_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'shard "%" does not exist', shard_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'See edgeshard.shard_map for the registered shards.';
    END IF;
    RETURN id;
END $$;

-- Refuses a NULL or empty tenant id.
CREATE FUNCTION edgeshard._check_tenant(tenant text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog AS $$
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'tenant id must not be null' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Pass the tenant''s id (bigint or text).';
    ELSIF tenant = '' THEN
        RAISE EXCEPTION 'tenant id must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

-- Raises unless a shard may host the tenant: a shard that hosts a pro or enterprise tenant is
-- dedicated to it, and such a tenant needs a shard that takes no hashed tenants (weight 0) and
-- hosts nobody else.
CREATE FUNCTION edgeshard._check_host(tenant text, target integer, target_tier text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $$
DECLARE
    shard_name text;
    shard_weight integer;
    other text;
BEGIN
    SELECT s.name, s.weight INTO shard_name, shard_weight FROM edgeshard.shards s WHERE s.shard_id = target;
    SELECT t.tenant_id INTO other FROM edgeshard.tenants t
     WHERE t.shard_id = target AND t.tenant_id <> tenant AND t.tier <> 'free' LIMIT 1;
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'shard "%" is dedicated to % tenant "%"', shard_name,
            (SELECT t.tier FROM edgeshard.tenants t WHERE t.tenant_id = other), other
            USING ERRCODE = 'object_in_use', HINT = 'Place the tenant on a shared shard.';
    END IF;
    IF target_tier <> 'free' THEN
        IF shard_weight > 0 THEN
            RAISE EXCEPTION 'shard "%" is shared (weight %), a % tenant needs a dedicated shard',
                shard_name, shard_weight, target_tier
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = format('Use a shard added with weight 0, or run edgeshard.set_shard_weight(%L, 0) once its hashed tenants have moved.', shard_name);
        END IF;
        SELECT t.tenant_id INTO other FROM edgeshard.tenants t
         WHERE t.shard_id = target AND t.tenant_id <> tenant LIMIT 1;
        IF other IS NOT NULL THEN
            RAISE EXCEPTION 'shard "%" already hosts tenant "%", a % tenant needs it alone',
                shard_name, other, target_tier
                USING ERRCODE = 'object_in_use', HINT = 'Use another dedicated shard.';
        END IF;
    END IF;
END $$;

CREATE FUNCTION edgeshard.add_shard(name text, conninfo text, weight integer DEFAULT 1, region text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    id integer;
BEGIN
    -- map changes serialise here (readers are not blocked)
    LOCK TABLE edgeshard.map_epoch IN SHARE ROW EXCLUSIVE MODE;
    IF name IS NULL OR conninfo IS NULL OR weight IS NULL THEN
        RAISE EXCEPTION 'shard name, conninfo and weight must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF name !~ '^[A-Za-z0-9_.-]{1,63}$' THEN
        RAISE EXCEPTION 'invalid shard name "%"', name USING ERRCODE = 'invalid_name',
            DETAIL = 'A shard name is 1 to 63 letters, digits, ''_'', ''-'' or ''.''.';
    END IF;
    IF weight NOT BETWEEN 0 AND 1000 THEN
        RAISE EXCEPTION 'shard weight must be between 0 and 1000, not %', weight
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Weight 0 takes no hashed tenants (a dedicated shard); 1 is a standard shard.';
    END IF;
    IF EXISTS (SELECT 1 FROM edgeshard.shards s WHERE s.name = add_shard.name) THEN
        RAISE EXCEPTION 'shard "%" already exists', name USING ERRCODE = 'duplicate_object',
            HINT = 'Use edgeshard.set_shard_weight() to change it, or pick another name.';
    END IF;
    INSERT INTO edgeshard.shards (name, conninfo, weight, region)
    VALUES (add_shard.name, add_shard.conninfo, add_shard.weight, add_shard.region)
    RETURNING shard_id INTO id;
    RETURN id;
END $$;
COMMENT ON FUNCTION edgeshard.add_shard(text, text, integer, text) IS
    'registers a shard primary; with weight > 0 it takes about weight/total of the hashed tenants';

CREATE FUNCTION edgeshard.remove_shard(name text, drain boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    id integer;
    placed bigint;
BEGIN
    -- map changes serialise here (readers are not blocked)
    LOCK TABLE edgeshard.map_epoch IN SHARE ROW EXCLUSIVE MODE;
    id := edgeshard._shard_id(name);
    SELECT count(*) INTO placed FROM edgeshard.tenants t WHERE t.shard_id = id;
    IF placed > 0 AND NOT coalesce(drain, false) THEN
        RAISE EXCEPTION 'shard "%" has % explicitly placed tenant(s)', name, placed
            USING ERRCODE = 'dependent_objects_still_exist',
                  HINT = 'Move or unplace them first, or call edgeshard.remove_shard(name, drain => true) to hand them to the ring.';
    END IF;
    IF placed > 0 THEN
        IF EXISTS (SELECT 1 FROM edgeshard.tenants t WHERE t.shard_id = id AND t.tier <> 'free') THEN
            RAISE EXCEPTION 'shard "%" hosts a pro or enterprise tenant', name
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Give the tenant another dedicated shard with edgeshard.set_tier() first.';
        END IF;
        UPDATE edgeshard.tenants t SET shard_id = NULL WHERE t.shard_id = id;
        DELETE FROM edgeshard.tenants t WHERE t.shard_id IS NULL AND t.tier = 'free' AND t.state = 'active';
        RAISE NOTICE '% tenant(s) of shard "%" now follow the hash ring', placed, name;
    END IF;
    DELETE FROM edgeshard.shards s WHERE s.shard_id = id;
    RAISE NOTICE 'rows are not moved: tenants that mapped to shard "%" now map to other shards', name;
END $$;
COMMENT ON FUNCTION edgeshard.remove_shard(text, boolean) IS
    'unregisters a shard; refuses while tenants are placed on it unless drain => true';

CREATE FUNCTION edgeshard.set_shard_weight(name text, weight integer) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    id integer;
BEGIN
    -- map changes serialise here (readers are not blocked)
    LOCK TABLE edgeshard.map_epoch IN SHARE ROW EXCLUSIVE MODE;
    id := edgeshard._shard_id(name);
    IF weight IS NULL OR weight NOT BETWEEN 0 AND 1000 THEN
        RAISE EXCEPTION 'shard weight must be between 0 and 1000, not %', coalesce(weight::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF weight > 0 AND EXISTS (SELECT 1 FROM edgeshard.tenants t WHERE t.shard_id = id AND t.tier <> 'free') THEN
        RAISE EXCEPTION 'shard "%" is dedicated to a pro or enterprise tenant and must keep weight 0', name
            USING ERRCODE = 'object_in_use';
    END IF;
    UPDATE edgeshard.shards s SET weight = set_shard_weight.weight WHERE s.shard_id = id;
END $$;

CREATE FUNCTION edgeshard.place_tenant(tenant text, shard text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    id integer;
    current_tier text;
BEGIN
    -- map changes serialise here (readers are not blocked)
    LOCK TABLE edgeshard.map_epoch IN SHARE ROW EXCLUSIVE MODE;
    PERFORM edgeshard._check_tenant(tenant);
    id := edgeshard._shard_id(shard);
    SELECT t.tier INTO current_tier FROM edgeshard.tenants t WHERE t.tenant_id = tenant;
    IF EXISTS (SELECT 1 FROM edgeshard.tenants t WHERE t.tenant_id = tenant AND t.state = 'moving') THEN
        RAISE EXCEPTION 'tenant "%" is being moved', tenant USING ERRCODE = 'object_in_use',
            HINT = 'Wait for the move to finish.';
    END IF;
    PERFORM edgeshard._check_host(tenant, id, coalesce(current_tier, 'free'));
    -- (no ON CONFLICT on user catalog tables)
    UPDATE edgeshard.tenants t SET shard_id = id WHERE t.tenant_id = tenant;
    IF NOT FOUND THEN
        INSERT INTO edgeshard.tenants (tenant_id, shard_id) VALUES (tenant, id);
    END IF;
END $$;
COMMENT ON FUNCTION edgeshard.place_tenant(text, text) IS
    'places a tenant on a shard explicitly (overrides the ring); rows are not moved';

CREATE FUNCTION edgeshard.place_tenant(tenant bigint, shard text) RETURNS void
LANGUAGE sql SET search_path = pg_catalog
RETURN edgeshard.place_tenant(tenant::text, shard);

CREATE FUNCTION edgeshard.unplace_tenant(tenant text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    row edgeshard.tenants;
BEGIN
    -- map changes serialise here (readers are not blocked)
    LOCK TABLE edgeshard.map_epoch IN SHARE ROW EXCLUSIVE MODE;
    PERFORM edgeshard._check_tenant(tenant);
    SELECT * INTO row FROM edgeshard.tenants t WHERE t.tenant_id = tenant;
    IF NOT FOUND OR row.shard_id IS NULL THEN
        RAISE EXCEPTION 'tenant "%" has no explicit placement', tenant USING ERRCODE = 'undefined_object',
            HINT = 'It already follows the hash ring.';
    END IF;
    IF row.tier <> 'free' THEN
        RAISE EXCEPTION 'tenant "%" is a % tenant and needs its dedicated shard', tenant, row.tier
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run edgeshard.set_tier(tenant, ''free'') to put it back on the shared shards.';
    END IF;
    IF row.state = 'active' THEN
        DELETE FROM edgeshard.tenants t WHERE t.tenant_id = tenant;
    ELSE
        UPDATE edgeshard.tenants t SET shard_id = NULL WHERE t.tenant_id = tenant;
    END IF;
END $$;

CREATE FUNCTION edgeshard.unplace_tenant(tenant bigint) RETURNS void
LANGUAGE sql SET search_path = pg_catalog
RETURN edgeshard.unplace_tenant(tenant::text);

CREATE FUNCTION edgeshard.set_tier(tenant text, tier text, shard text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    row edgeshard.tenants;
    target integer;
BEGIN
    -- map changes serialise here (readers are not blocked)
    LOCK TABLE edgeshard.map_epoch IN SHARE ROW EXCLUSIVE MODE;
    PERFORM edgeshard._check_tenant(tenant);
    IF tier IS NULL OR tier NOT IN ('free', 'pro', 'enterprise') THEN
        RAISE EXCEPTION 'unknown tier "%"', coalesce(tier, 'null') USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''free'' (shared shards), ''pro'' (dedicated shard) or ''enterprise'' (dedicated shard, replicated to every edge).';
    END IF;
    SELECT * INTO row FROM edgeshard.tenants t WHERE t.tenant_id = tenant;
    IF row.state = 'moving' THEN
        RAISE EXCEPTION 'tenant "%" is being moved', tenant USING ERRCODE = 'object_in_use',
            HINT = 'Wait for the move to finish.';
    END IF;
    IF shard IS NOT NULL THEN
        target := edgeshard._shard_id(shard);
    ELSIF tier <> 'free' THEN
        target := row.shard_id;  -- keep its current explicit placement, checked below
        IF target IS NULL THEN
            RAISE EXCEPTION 'a % tenant needs a dedicated shard', tier
                USING ERRCODE = 'null_value_not_allowed',
                      HINT = 'Pass one: edgeshard.set_tier(tenant, tier, shard => ''name'').';
        END IF;
    END IF;
    IF target IS NOT NULL THEN
        PERFORM edgeshard._check_host(tenant, target, tier);
    END IF;
    IF target IS NULL AND tier = 'free' THEN
        DELETE FROM edgeshard.tenants t WHERE t.tenant_id = tenant;  -- back on the ring
    ELSE
        UPDATE edgeshard.tenants t SET shard_id = target, tier = set_tier.tier WHERE t.tenant_id = tenant;
        IF NOT FOUND THEN
            INSERT INTO edgeshard.tenants (tenant_id, shard_id, tier) VALUES (tenant, target, set_tier.tier);
        END IF;
    END IF;
    RETURN edgeshard.shard_for(tenant);
END $$;
COMMENT ON FUNCTION edgeshard.set_tier(text, text, text) IS
    'free: shared shards (the ring, or shard); pro/enterprise: a dedicated shard; returns the owner';

CREATE FUNCTION edgeshard.set_tier(tenant bigint, tier text, shard text DEFAULT NULL) RETURNS text
LANGUAGE sql SET search_path = pg_catalog
RETURN edgeshard.set_tier(tenant::text, tier, shard);

CREATE FUNCTION edgeshard.distribute_table(tbl regclass, tenant_column name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    rel pg_class;
    att pg_attribute;
    pk_cols int2[];
BEGIN
    -- map changes serialise here (readers are not blocked)
    LOCK TABLE edgeshard.map_epoch IN SHARE ROW EXCLUSIVE MODE;
    IF tbl IS NULL OR tenant_column IS NULL THEN
        RAISE EXCEPTION 'table and tenant column must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO rel FROM pg_class c WHERE c.oid = tbl;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', tbl USING ERRCODE = 'wrong_object_type';
    END IF;
    IF rel.relispartition THEN
        RAISE EXCEPTION '"%" is a partition', tbl USING ERRCODE = 'wrong_object_type',
            HINT = 'Distribute the partitioned table at the top of the partition tree.';
    END IF;
    IF rel.relreplident NOT IN ('d', 'f') THEN
        RAISE EXCEPTION 'table "%" has a REPLICA IDENTITY other than DEFAULT or FULL', tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'The change stream needs the primary key of deleted rows: ALTER TABLE ... REPLICA IDENTITY DEFAULT.';
    END IF;
    IF rel.relnamespace = 'edgeshard'::regnamespace THEN
        RAISE EXCEPTION 'edgeshard''s own catalog cannot be distributed' USING ERRCODE = 'wrong_object_type';
    END IF;
    IF EXISTS (SELECT 1 FROM edgeshard.distributed_tables d WHERE d.relid = tbl) THEN
        RAISE EXCEPTION 'table "%" is already distributed', tbl USING ERRCODE = 'duplicate_object',
            HINT = 'Run edgeshard.undistribute_table() first to change its tenant column.';
    END IF;
    SELECT * INTO att FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = tenant_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" of table "%" does not exist', tenant_column, tbl
            USING ERRCODE = 'undefined_column';
    END IF;
    IF att.atttypid NOT IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'text'::regtype,
                            'varchar'::regtype, 'uuid'::regtype) THEN
        RAISE EXCEPTION 'tenant column "%" has type %, which cannot hold tenant ids', tenant_column,
            format_type(att.atttypid, att.atttypmod)
            USING ERRCODE = 'datatype_mismatch', HINT = 'Use smallint, integer, bigint, text, varchar or uuid.';
    END IF;
    SELECT i.indkey::int2[] INTO pk_cols FROM pg_index i WHERE i.indrelid = tbl AND i.indisprimary;
    IF pk_cols IS NULL THEN
        RAISE EXCEPTION 'table "%" has no primary key', tbl USING ERRCODE = 'invalid_table_definition',
            HINT = format('Add one that starts with or includes %I, e.g. PRIMARY KEY (%I, id).', tenant_column, tenant_column);
    END IF;
    IF NOT att.attnum = ANY (pk_cols) THEN
        RAISE EXCEPTION 'tenant column "%" is not part of the primary key of "%"', tenant_column, tbl
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'Rows are keyed by tenant at the edges: include the tenant column in the primary key.';
    END IF;
    -- Plain inheritance children would get the constraint but not the old-row triggers.
    IF EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE (i.inhparent = tbl OR i.inhrelid = tbl) AND NOT c.relispartition) THEN
        RAISE EXCEPTION 'table "%" takes part in table inheritance', tbl
            USING ERRCODE = 'feature_not_supported', HINT = 'Use declarative partitioning instead.';
    END IF;
    -- Refuse a table that already holds rows this node does not own (one scan, raising SH001 on
    -- the first foreign row).
    EXECUTE format('SELECT count(*) FROM %s WHERE NOT edgeshard.guard_tenant(%I, %L::regclass)',
                   tbl, tenant_column, tbl::text);
    INSERT INTO edgeshard.distributed_tables (relid, tenant_column) VALUES (tbl, tenant_column);
    -- New rows (INSERT, UPDATE, COPY, ON CONFLICT, MERGE): a constraint, NOT VALID so that pg_dump
    -- adds it back after the data and existing rows are not scanned now.
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT edgeshard_write_guard '
                   'CHECK (edgeshard.guard_tenant(%I, %L::regclass)) NOT VALID',
                   tbl, tenant_column, tbl::text);
    -- Old rows: the deleted row and the updated row. Every UPDATE, not only those naming the
    -- tenant column: another BEFORE trigger may change the tenant. ENABLE ALWAYS: also under
    -- session_replication_role = replica (logical replication apply).
    EXECUTE format('CREATE TRIGGER edgeshard_guard_delete BEFORE DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION edgeshard.write_guard(%L)', tbl, tenant_column);
    EXECUTE format('CREATE TRIGGER edgeshard_guard_update BEFORE UPDATE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION edgeshard.write_guard(%L)', tbl, tenant_column);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER edgeshard_guard_delete, '
                   'ENABLE ALWAYS TRIGGER edgeshard_guard_update', tbl);
END $$;
COMMENT ON FUNCTION edgeshard.distribute_table(regclass, name) IS
    'marks a table as holding tenant rows and installs the write guard on it (constraint and triggers)';

CREATE FUNCTION edgeshard.undistribute_table(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    -- map changes serialise here (readers are not blocked)
    LOCK TABLE edgeshard.map_epoch IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM edgeshard.distributed_tables d WHERE d.relid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table "%" is not distributed', tbl USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS edgeshard_write_guard', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS edgeshard_guard_delete ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS edgeshard_guard_update ON %s', tbl);
END $$;

-- A dropped distributed table leaves the catalog with it.
CREATE FUNCTION edgeshard.on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    DELETE FROM edgeshard.distributed_tables d
     WHERE d.relid::oid IN (SELECT o.objid FROM pg_event_trigger_dropped_objects() o
                             WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0);
END $$;
CREATE EVENT TRIGGER edgeshard_sql_drop ON sql_drop EXECUTE FUNCTION edgeshard.on_sql_drop();

-- A distributed table keeps a replica identity that logs its primary key (DEFAULT or FULL): with
-- USING INDEX or NOTHING the change stream could not key deleted rows. And consumers of the change
-- stream learn the new columns of every altered distributed table (its leaf partitions) at once,
-- even when no row of it changes: a transactional logical message the output plugin turns into
-- the table's RELATION (common/FORMAT.md).
CREATE FUNCTION edgeshard.on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    bad regclass;
    leaf oid;
BEGIN
    SELECT d.relid INTO bad FROM edgeshard.distributed_tables d JOIN pg_class c ON c.oid = d.relid
     WHERE c.relreplident NOT IN ('d', 'f') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'distributed table "%" must keep REPLICA IDENTITY DEFAULT or FULL', bad
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'The change stream keys deleted rows by the primary key.';
    END IF;
    IF current_setting('wal_level') <> 'logical' THEN
        RETURN;  -- nothing decodes this server's WAL
    END IF;
    FOR leaf IN
        WITH altered AS (SELECT c.objid FROM pg_event_trigger_ddl_commands() c
                          WHERE c.classid = 'pg_class'::regclass),
        leaves AS (SELECT d.relid::oid AS root, d.relid::oid AS leaf FROM edgeshard.distributed_tables d
                   UNION
                   SELECT d.relid::oid, t.relid::oid FROM edgeshard.distributed_tables d
                    CROSS JOIN LATERAL pg_partition_tree(d.relid) t)
        SELECT DISTINCT l.leaf
          FROM leaves l JOIN pg_class k ON k.oid = l.leaf AND k.relkind = 'r'
         WHERE EXISTS (SELECT 1 FROM altered a WHERE a.objid IN (l.root, l.leaf))
    LOOP
        PERFORM pg_logical_emit_message(true, 'edgeshard', 'relation ' || leaf);
    END LOOP;
END $$;
CREATE EVENT TRIGGER edgeshard_ddl_end ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION edgeshard.on_ddl_end();

-- Before PostgreSQL rewrites a distributed table (ALTER TABLE ... TYPE, ADD COLUMN with a volatile
-- default, ...): the change stream carries no row of the rewrite, so it tells its consumers to
-- copy the table's rows again (REWRITE, common/FORMAT.md).
CREATE FUNCTION edgeshard.on_table_rewrite() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    rel oid := pg_event_trigger_table_rewrite_oid();
BEGIN
    IF current_setting('wal_level') = 'logical' AND EXISTS (
        SELECT 1 FROM edgeshard.distributed_tables d
         WHERE d.relid::oid = rel OR d.relid IN (SELECT pg_partition_ancestors(rel))) THEN
        PERFORM pg_logical_emit_message(true, 'edgeshard', 'rewrite ' || rel);
    END IF;
END $$;
CREATE EVENT TRIGGER edgeshard_table_rewrite ON table_rewrite
    EXECUTE FUNCTION edgeshard.on_table_rewrite();

-- Administration is for superusers.
REVOKE ALL ON FUNCTION
    edgeshard.add_shard(text, text, integer, text), edgeshard.remove_shard(text, boolean),
    edgeshard.set_shard_weight(text, integer), edgeshard.place_tenant(text, text),
    edgeshard.place_tenant(bigint, text), edgeshard.unplace_tenant(text),
    edgeshard.unplace_tenant(bigint), edgeshard.set_tier(text, text, text),
    edgeshard.set_tier(bigint, text, text), edgeshard.distribute_table(regclass, name),
    edgeshard.undistribute_table(regclass), edgeshard._shard_id(text),
    edgeshard._check_host(text, integer, text)
FROM PUBLIC;

GRANT USAGE ON SCHEMA edgeshard TO PUBLIC;
GRANT SELECT ON edgeshard.shard_map, edgeshard.tenant_placement TO PUBLIC;

-- What the fan-out relays report about their subscribers (edgeshard-relay, setting
-- status_conninfo; walsender_fanout/relay/status_reporter.hpp). UNLOGGED: reports write no WAL,
-- so they never flow back down the change stream; a crash empties the table and the next report
-- (every few seconds) fills it again.
CREATE UNLOGGED TABLE edgeshard.edge_reports (
    relay text NOT NULL,
    subscriber text NOT NULL,
    peer text NOT NULL DEFAULT '',
    tenants text NOT NULL DEFAULT '*',
    connected boolean NOT NULL,
    acked_lsn pg_lsn NOT NULL,
    sent_lsn pg_lsn NOT NULL,
    relay_lsn pg_lsn NOT NULL,
    lag_bytes bigint NOT NULL,
    lag_seconds double precision NOT NULL,
    frames_sent bigint NOT NULL DEFAULT 0,
    bytes_sent bigint NOT NULL DEFAULT 0,
    reported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (relay, subscriber)
);

-- Replaces one relay's report (a JSON array, one object per subscriber).
CREATE FUNCTION edgeshard.report_edge_status(relay text, report jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF relay IS NULL OR relay = '' OR jsonb_typeof(report) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'a relay report needs a relay name and a JSON array'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'edgeshard-relay sends [{"subscriber": ..., "acked_lsn": ...}, ...].';
    END IF;
    DELETE FROM edgeshard.edge_reports r WHERE r.relay = report_edge_status.relay;
    INSERT INTO edgeshard.edge_reports (relay, subscriber, peer, tenants, connected, acked_lsn,
                                        sent_lsn, relay_lsn, lag_bytes, lag_seconds, frames_sent,
                                        bytes_sent)
    SELECT report_edge_status.relay, e->>'subscriber', coalesce(e->>'peer', ''),
           coalesce(e->>'tenants', '*'), (e->>'connected')::boolean, (e->>'acked_lsn')::pg_lsn,
           (e->>'sent_lsn')::pg_lsn, (e->>'relay_lsn')::pg_lsn, (e->>'lag_bytes')::bigint,
           (e->>'lag_seconds')::double precision, coalesce((e->>'frames_sent')::bigint, 0),
           coalesce((e->>'bytes_sent')::bigint, 0)
      FROM jsonb_array_elements(report) AS e;
END $$;

-- Every edge's lag as its relay last reported it, and behind this primary's WAL now.
CREATE VIEW edgeshard.edge_status AS
SELECT r.relay, r.subscriber, r.connected, r.peer, r.tenants, r.acked_lsn, r.relay_lsn,
       r.lag_bytes AS relay_lag_bytes,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                            ELSE pg_current_wal_lsn() END, r.acked_lsn)::bigint AS lag_bytes,
       r.lag_seconds, r.frames_sent, r.bytes_sent, r.reported_at,
       now() - r.reported_at AS report_age
  FROM edgeshard.edge_reports r;

-- Reports come from relays (superuser, or a role granted EXECUTE); anyone may read them.
REVOKE ALL ON FUNCTION edgeshard.report_edge_status(text, jsonb) FROM PUBLIC;
GRANT SELECT ON edgeshard.edge_status TO PUBLIC;

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

-- edgeshard 1.1 -> 1.2: schema changes reach the change stream's consumers.
\echo Use "ALTER EXTENSION edgeshard UPDATE TO '1.2'" to load this file. \quit

-- A distributed table keeps a replica identity that logs its primary key (DEFAULT or FULL): with
-- USING INDEX or NOTHING the change stream could not key deleted rows. And consumers of the change
-- stream learn the new columns of every altered distributed table (its leaf partitions) at once,
-- even when no row of it changes: a transactional logical message the output plugin turns into
-- the table's RELATION (common/FORMAT.md).
CREATE OR REPLACE FUNCTION edgeshard.on_ddl_end() RETURNS event_trigger
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


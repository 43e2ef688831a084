-- The upgrade path gives the same objects as a fresh install: edgeshard 1.0 updated to the newest
-- version (through every upgrade script) has exactly the members of a fresh install -- same functions (definitions and privileges), tables and
-- views (columns, definitions, privileges), triggers, constraints, indexes, event triggers and
-- pg_dump configuration. In a database of its own, as it drops and re-creates the extension.
SELECT current_database() AS regress_db \gset
CREATE DATABASE edgeshard_upgrade;
\c edgeshard_upgrade

-- Every object of the extension, with what defines it (not a member itself: created first).
CREATE FUNCTION extension_objects(OUT object text, OUT definition text) RETURNS SETOF record
LANGUAGE sql AS $$
  WITH ext AS (SELECT oid, extconfig, extcondition FROM pg_extension WHERE extname = 'edgeshard'),
  members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
  tables AS (SELECT objid AS relid FROM members WHERE classid = 'pg_class'::regclass)
  SELECT pg_describe_object(m.classid, m.objid, 0),
         CASE m.classid
           WHEN 'pg_proc'::regclass THEN
             (SELECT pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, 'default')
                FROM pg_proc p WHERE p.oid = m.objid)
           WHEN 'pg_class'::regclass THEN
             (SELECT c.relkind::text || ' ' || coalesce(pg_get_viewdef(c.oid), '') || ' acl '
                     || coalesce(c.relacl::text, 'default') || ' options '
                     || coalesce(c.reloptions::text, '') || ' persistence ' || c.relpersistence::text
                     || ' columns ' || coalesce((
                        SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                          || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                                          || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''),
                                          ', ' ORDER BY a.attnum)
                          FROM pg_attribute a
                          LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
                FROM pg_class c WHERE c.oid = m.objid)
           WHEN 'pg_event_trigger'::regclass THEN
             (SELECT e.evtevent || ' ' || e.evtfoid::regproc || ' ' || coalesce(e.evttags::text, '')
                     || ' ' || e.evtenabled::text FROM pg_event_trigger e WHERE e.oid = m.objid)
           ELSE ''
         END
    FROM members m
  UNION ALL
  SELECT 'trigger ' || t.tgname || ' on ' || t.tgrelid::regclass, pg_get_triggerdef(t.oid)
    FROM pg_trigger t JOIN tables ON t.tgrelid = tables.relid WHERE NOT t.tgisinternal
  UNION ALL
  SELECT 'constraint ' || c.conname || ' on ' || c.conrelid::regclass, pg_get_constraintdef(c.oid)
    FROM pg_constraint c JOIN tables ON c.conrelid = tables.relid
  UNION ALL
  SELECT 'index ' || i.indexrelid::regclass, pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN tables ON i.indrelid = tables.relid
  UNION ALL
  SELECT 'dumped ' || cfg::regclass, cond FROM ext, unnest(ext.extconfig, ext.extcondition) AS u(cfg, cond)
  UNION ALL
  SELECT 'schema edgeshard', coalesce(nspacl::text, 'default') FROM pg_namespace WHERE nspname = 'edgeshard'
$$;

CREATE EXTENSION edgeshard VERSION '1.0';
CREATE TABLE v10 AS SELECT * FROM extension_objects();
ALTER EXTENSION edgeshard UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'edgeshard';
CREATE TABLE upgraded AS SELECT * FROM extension_objects();
DROP EXTENSION edgeshard;
CREATE EXTENSION edgeshard;
SELECT extversion FROM pg_extension WHERE extname = 'edgeshard';
CREATE TABLE fresh AS SELECT * FROM extension_objects();

-- What 1.1 and 1.2 add to 1.0 (or change in it).
SELECT object FROM (SELECT * FROM fresh EXCEPT SELECT * FROM v10) added ORDER BY 1;
-- Upgraded and fresh: no difference at all (no row), and neither is empty.
(SELECT 'only after the upgrade' AS side, * FROM (SELECT * FROM upgraded EXCEPT SELECT * FROM fresh) a)
UNION ALL
(SELECT 'only in a fresh install', * FROM (SELECT * FROM fresh EXCEPT SELECT * FROM upgraded) b)
ORDER BY 1, 2;
SELECT (SELECT count(*) FROM upgraded) = (SELECT count(*) FROM fresh) AS same_count,
       (SELECT count(*) FROM fresh) > 50 AS many_objects;

\c :regress_db
DROP DATABASE edgeshard_upgrade;

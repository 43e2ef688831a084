-- The catalog is dumped by pg_dump and readable by logical decoding; the extension drops cleanly.
SELECT unnest(extconfig)::regclass AS dumped, unnest(extcondition) AS filter
  FROM pg_extension WHERE extname = 'edgeshard' ORDER BY 1::text;
SELECT c.relname, c.reloptions FROM pg_class c
 WHERE c.relnamespace = 'edgeshard'::regnamespace AND c.relkind = 'r' ORDER BY c.relname;
-- objects of the extension, as a fresh install creates them
SELECT pg_describe_object(classid, objid, 0) AS object
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'edgeshard')
 ORDER BY 1;
-- distributed tables depend on the guard function: dropping the extension needs CASCADE
\set SHOW_CONTEXT never
DROP EXTENSION edgeshard;
\echo :LAST_ERROR_SQLSTATE
DROP TABLE orders;
DROP EXTENSION edgeshard;
-- the schema stays behind, empty (PostgreSQL does not make a control-file schema an extension member)
SELECT count(*) AS objects_left FROM pg_class WHERE relnamespace = 'edgeshard'::regnamespace;

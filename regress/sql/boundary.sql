-- The C++/PostgreSQL error boundary: failures inside guarded functions become clean SQL errors,
-- every C++ object alive at the time is destroyed, and the backend carries on.
CREATE EXTENSION edgeshard;
\set SHOW_CONTEXT never

-- a C++ exception (std::runtime_error): internal error, XX000
SELECT edgeshard._test_boundary('exception');
\echo :LAST_ERROR_SQLSTATE
-- our own error type keeps SQLSTATE, detail and hint
SELECT edgeshard._test_boundary('error');
\echo :LAST_ERROR_SQLSTATE
-- std::bad_alloc: out of memory, 53200
SELECT edgeshard._test_boundary('bad_alloc');
\echo :LAST_ERROR_SQLSTATE
-- a PostgreSQL ERROR raised deep in C++ code comes back with its own SQLSTATE and message
SELECT edgeshard._test_boundary('pg_error');
\echo :LAST_ERROR_SQLSTATE
-- a C++ exception thrown inside a pg::call (between PG_TRY and PG_END_TRY)
SELECT edgeshard._test_boundary('exception_in_pg_call');
\echo :LAST_ERROR_SQLSTATE
SELECT edgeshard._test_boundary('no such kind');
\echo :LAST_ERROR_SQLSTATE

-- no destructor was skipped, and the backend still works, in and out of transactions
SELECT edgeshard._test_live_objects() AS live_objects;
SELECT edgeshard._test_boundary('none') AS live_during_call;
BEGIN;
SAVEPOINT a;
SELECT edgeshard._test_boundary('pg_error');
ROLLBACK TO a;
SELECT edgeshard._test_boundary('none') AS after_rollback_to_savepoint;
COMMIT;
SELECT count(*) FROM generate_series(1, 1000) AS backend_alive;


// Test hooks for the C++/PostgreSQL error boundary (regress/sql/boundary.sql): each kind of failure
// happens inside a guarded function while a C++ object is alive; the test then checks that the SQL
// error is clean, the backend alive, and every object destroyed.
#include <memory>
#include <stdexcept>
#include <string>

#include "extension/pg_cxx.hpp"

extern "C" {
#include "utils/builtins.h"
}

namespace {

// C++ objects alive right now; destructors skipped by a longjmp would leave it above zero.
int g_live_objects = 0;

// Counts itself in g_live_objects for as long as it lives.
struct Tracked {
  Tracked() { g_live_objects++; }
  ~Tracked() { g_live_objects--; }
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;
  std::string payload = std::string(100, 'x');  // owns heap memory, like real code does
};

}  // namespace

using namespace edgeshard;

// edgeshard._test_boundary(kind text) -> integer: fails in the way `kind` names.
EDGESHARD_FUNCTION(test_boundary) {
  std::string kind = pg::call([fcinfo] { return std::string(text_to_cstring(PG_GETARG_TEXT_PP(0))); });
  Tracked alive;
  if (kind == "exception") throw std::runtime_error("a C++ exception escaped");
  if (kind == "error")
    pg::raise(ERRCODE_INVALID_PARAMETER_VALUE, "a pg::Error from C++", "with a detail",
              "and a hint");
  if (kind == "bad_alloc") {
    auto huge = std::make_unique<char[]>(size_t{1} << 62);
    huge[0] = 1;
  }
  if (kind == "pg_error")  // PostgreSQL's own ERROR, raised deep inside C++ code
    pg::call([] { return DirectFunctionCall1(int4in, CStringGetDatum("not a number")); });
  if (kind == "exception_in_pg_call")  // a C++ exception thrown between PG_TRY and PG_END_TRY
    pg::call([] { throw std::logic_error("thrown inside pg::call"); });
  if (kind != "none")
    pg::raise(ERRCODE_INVALID_PARAMETER_VALUE, "unknown kind \"" + kind + "\"", {},
              "Use exception, error, bad_alloc, pg_error, exception_in_pg_call or none.");
  return Int32GetDatum(g_live_objects);
}

// edgeshard._test_live_objects() -> integer: how many test objects are alive (0 after any error).
EDGESHARD_FUNCTION(test_live_objects) { return Int32GetDatum(g_live_objects); }

// The boundary between C++ and PostgreSQL errors (CONVENTIONS.md, "The boundary").
//
// PostgreSQL reports errors with ereport(ERROR), which longjmps; C++ reports them with exceptions,
// which unwind. Neither may cross the other's frames. This file pair is the only place that knows:
//   - EDGESHARD_FUNCTION(name) defines a V1 function whose body is C++: any exception leaving it is
//     caught, copied into plain storage, and re-raised with ereport only after every C++ object of
//     the body has been destroyed.
//   - pg::guard_no_raise(body, WARNING) runs a callback body that must never raise (archive_file_cb):
//     an exception is logged at WARNING, with its SQLSTATE, and the callback returns false.
//   - pg::call(f) runs f, a lambda calling PostgreSQL functions that may raise; a PostgreSQL ERROR
//     becomes a pg::Error exception carrying the same SQLSTATE, message, detail and hint.
// A PostgreSQL error caught by pg::call must be let go to the boundary: the transaction is aborted
// there. Never carry on doing PostgreSQL work after catching one (that needs a subtransaction).
//
// Include order in every extension .cpp: C++ standard headers, common/ headers, this header (it
// brings postgres.h and fmgr.h), then further server headers inside extern "C".
#pragma once

#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

extern "C" {
#include "postgres.h"
#include "fmgr.h"
}

namespace edgeshard::pg {

// An error travelling through C++ code, with the fields PostgreSQL reports.
class Error : public std::exception {
 public:
  Error(int sqlstate, std::string message, std::string detail = {}, std::string hint = {})
      : sqlstate_(sqlstate), message_(std::move(message)), detail_(std::move(detail)),
        hint_(std::move(hint)) {}
  const char* what() const noexcept override { return message_.c_str(); }
  int sqlstate() const noexcept { return sqlstate_; }
  const std::string& message() const noexcept { return message_; }
  const std::string& detail() const noexcept { return detail_; }
  const std::string& hint() const noexcept { return hint_; }

 private:
  int sqlstate_;
  std::string message_;
  std::string detail_;
  std::string hint_;
};

// Formats like printf into a std::string (messages of pg::Error).
std::string format(const char* fmt, ...) pg_attribute_printf(1, 2);

// Throws a pg::Error; the usual way for C++ code to report a user-facing condition.
[[noreturn]] void raise(int sqlstate, std::string message, std::string detail = {},
                        std::string hint = {});

namespace detail {

// Runs fn(arg) under PG_TRY; a PostgreSQL ERROR is copied, flushed and rethrown as pg::Error.
void run_catching_pg_error(void (*fn)(void*), void* arg);

// An error on its way out of a guarded function: plain storage, nothing to destroy.
struct PendingError {
  int sqlstate;
  char message[1024];
  char detail[1024];
  char hint[512];
};

// Copies the exception currently being handled into `out` (called inside a catch block).
void capture_current_exception(PendingError* out) noexcept;

// Raises `pending` as a PostgreSQL ERROR; called once no C++ object is alive.
[[noreturn]] void raise_pending(const PendingError* pending);

// Logs `pending` at elevel (below ERROR: it returns); called once no C++ object is alive.
void log_pending(const PendingError* pending, int elevel);

// Runs body(); returns false and fills `out` if it threw.
template <typename Body>
bool run_catching_exception(Body& body, PendingError* out) noexcept {
  try {
    body();
    return true;
  } catch (...) {
    capture_current_exception(out);
    return false;
  }
}

}  // namespace detail

// Runs a lambda that calls PostgreSQL; PostgreSQL errors come back as pg::Error exceptions.
template <typename F>
auto call(F&& f) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  struct Frame {
    F* f;
    std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> result;
    std::exception_ptr thrown;
  } frame{&f, {}, nullptr};
  // No C++ exception may leave PG_TRY: catch it in the trampoline, rethrow after PG_END_TRY.
  detail::run_catching_pg_error(
      [](void* p) {
        auto* fr = static_cast<Frame*>(p);
        try {
          if constexpr (std::is_void_v<R>) {
            (*fr->f)();
          } else {
            fr->result.emplace((*fr->f)());
          }
        } catch (...) {
          fr->thrown = std::current_exception();
        }
      },
      &frame);
  if (frame.thrown) std::rethrow_exception(frame.thrown);
  if constexpr (!std::is_void_v<R>) return std::move(*frame.result);
}

// Runs body() as the whole of a function PostgreSQL called; exceptions become ereport(ERROR).
template <typename Body>
void guard(Body&& body) {
  detail::PendingError pending;
  if (!detail::run_catching_exception(body, &pending)) detail::raise_pending(&pending);
}

// Runs body() (returning bool) as the whole of a callback that must never raise, such as the
// archive module's archive_file_cb (an ERROR there kills the archiver): an exception is logged at
// elevel (WARNING) with its SQLSTATE, message, detail and hint, and the callback returns false.
template <typename Body>
bool guard_no_raise(Body&& body, int elevel) {
  static_assert(std::is_same_v<std::invoke_result_t<Body&>, bool>);
  detail::PendingError pending;
  bool result = false;
  auto run = [&] { result = body(); };
  if (!detail::run_catching_exception(run, &pending)) {
    detail::log_pending(&pending, elevel);
    return false;
  }
  return result;
}

}  // namespace edgeshard::pg

// Defines the V1 SQL-callable function `name`; the braces that follow are its C++ body
// (a Datum-returning function of `fcinfo`), run under pg::guard.
#define EDGESHARD_FUNCTION(name)                                             \
  static Datum name##_impl([[maybe_unused]] FunctionCallInfo fcinfo);                       \
  extern "C" {                                                               \
  PG_FUNCTION_INFO_V1(name);                                                 \
  }                                                                          \
  extern "C" Datum name(PG_FUNCTION_ARGS) {                                  \
    Datum result = 0;                                                        \
    ::edgeshard::pg::guard([&] { result = name##_impl(fcinfo); });           \
    return result;                                                           \
  }                                                                          \
  static Datum name##_impl([[maybe_unused]] FunctionCallInfo fcinfo)

// The C++/PostgreSQL error boundary: see pg_cxx.hpp.
#include <cstdarg>
#include <cstring>
#include <new>
#include <string>

#include "extension/pg_cxx.hpp"

extern "C" {
#include "mb/pg_wchar.h"
#include "utils/elog.h"
#include "utils/memutils.h"
}

namespace edgeshard::pg {

std::string format(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  va_list copy;
  va_copy(copy, args);
  int needed = vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  std::string out;
  if (needed > 0) {
    out.resize(static_cast<size_t>(needed));
    vsnprintf(out.data(), out.size() + 1, fmt, args);
  }
  va_end(args);
  return out;
}

void raise(int sqlstate, std::string message, std::string detail, std::string hint) {
  throw Error(sqlstate, std::move(message), std::move(detail), std::move(hint));
}

namespace detail {

// Builds the exception for a PostgreSQL error copied out of the error state, then frees the copy.
[[noreturn]] static void throw_error_data(ErrorData* edata) {
  Error error(edata->sqlerrcode, edata->message ? edata->message : "",
              edata->detail ? edata->detail : "", edata->hint ? edata->hint : "");
  FreeErrorData(edata);
  throw error;
}

void run_catching_pg_error(void (*fn)(void*), void* arg) {
  // Nothing with a destructor lives in this frame: PG_TRY's longjmp lands here.
  MemoryContext caller_context = CurrentMemoryContext;
  ErrorData* volatile edata = nullptr;
  PG_TRY();
  {
    fn(arg);
  }
  PG_CATCH();
  {
    MemoryContextSwitchTo(caller_context);
    edata = CopyErrorData();
    FlushErrorState();
  }
  PG_END_TRY();
  if (edata != nullptr) throw_error_data(edata);
}

// Copies at most sizeof(dst)-1 bytes of src, always NUL-terminating.
template <size_t N>
static void copy_text(char (&dst)[N], const char* src) noexcept {
  size_t len = strnlen(src, N - 1);
  memcpy(dst, src, len);
  dst[len] = '\0';
}

void capture_current_exception(PendingError* out) noexcept {
  out->message[0] = out->detail[0] = out->hint[0] = '\0';
  try {
    throw;
  } catch (const Error& e) {
    out->sqlstate = e.sqlstate();
    copy_text(out->message, e.message().c_str());
    copy_text(out->detail, e.detail().c_str());
    copy_text(out->hint, e.hint().c_str());
  } catch (const std::bad_alloc&) {
    out->sqlstate = ERRCODE_OUT_OF_MEMORY;
    copy_text(out->message, "out of memory in edgeshard");
  } catch (const std::exception& e) {
    out->sqlstate = ERRCODE_INTERNAL_ERROR;
    copy_text(out->message, "internal error in edgeshard: ");
    size_t used = strlen(out->message);
    size_t room = sizeof(out->message) - used - 1;
    strncat(out->message, e.what(), room);
  } catch (...) {
    out->sqlstate = ERRCODE_INTERNAL_ERROR;
    copy_text(out->message, "internal error in edgeshard: unknown C++ exception");
  }
}

// Length of the longest prefix of `text` made of whole characters: copy_text may have cut a
// multibyte character in two, and an invalid encoding must not reach the client.
static int whole_chars(const char* text) {
  int len = static_cast<int>(strlen(text));
  return pg_mbcliplen(text, len, len);
}

void log_pending(const PendingError* pending, int elevel) {
  Assert(elevel < ERROR);
  ereport(elevel,
          (errcode(pending->sqlstate),
           errmsg_internal("%.*s", whole_chars(pending->message), pending->message),
           pending->detail[0] ? errdetail_internal("%.*s", whole_chars(pending->detail),
                                                   pending->detail)
                              : 0,
           pending->hint[0] ? errhint("%.*s", whole_chars(pending->hint), pending->hint) : 0));
}

void raise_pending(const PendingError* pending) {
  ereport(ERROR,
          (errcode(pending->sqlstate),
           errmsg_internal("%.*s", whole_chars(pending->message), pending->message),
           pending->detail[0] ? errdetail_internal("%.*s", whole_chars(pending->detail),
                                                   pending->detail)
                              : 0,
           pending->hint[0] ? errhint("%.*s", whole_chars(pending->hint), pending->hint) : 0));
  pg_unreachable();
}

}  // namespace detail
}  // namespace edgeshard::pg

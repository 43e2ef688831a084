// Reader of PostgreSQL's binary COPY format (`COPY ... TO STDOUT (FORMAT binary)`, documented in
// the COPY reference page): an 11-byte signature, a 32-bit flags field, a header extension, then
// tuples (16-bit field count, each field a 32-bit length, -1 for NULL, and the type's send
// format bytes), then a -1 trailer. Fields are big-endian. The reader takes the bytes as libpq
// hands them over (CopyData messages need not line up with tuples) and returns whole tuples.
#pragma once

#include "common/no_postgres.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::apply::daemon {

class CopyBinaryReader {
 public:
  enum class Result {
    kTuple,     // `fields` holds the next tuple
    kNeedMore,  // feed() more bytes
    kEnd,       // the trailer was read: the copy is complete
    kError,     // malformed input: error() says why
  };

  // Appends bytes received from the server.
  void feed(const void* data, size_t n);

  // Reads the next tuple into fields (std::nullopt for NULL); the views stay valid until the next
  // feed() or next() call.
  Result next(std::vector<std::optional<std::string_view>>& fields);

  // Why the input was refused.
  const std::string& error() const noexcept { return error_; }

  // Whether the trailer was read.
  bool ended() const noexcept { return ended_; }

 private:
  // Fails with why.
  Result fail(std::string why);

  std::string buf_;
  size_t pos_ = 0;
  bool header_done_ = false;
  bool ended_ = false;
  std::string error_;
};

}  // namespace edgeshard::apply::daemon

// The frame format's checksum and error names (see FORMAT.md).
#include "common/frame_format.hpp"

#include <xxhash.h>

namespace edgeshard::frame {

const char* error_name(Error e) noexcept {
  switch (e) {
    case Error::kOk:
      return "ok";
    case Error::kTruncated:
      return "truncated";
    case Error::kBadMagic:
      return "bad_magic";
    case Error::kBadVersion:
      return "bad_version";
    case Error::kBadChecksumType:
      return "bad_checksum_type";
    case Error::kHeaderChecksum:
      return "header_checksum";
    case Error::kUnknownFlags:
      return "unknown_flags";
    case Error::kReservedNotZero:
      return "reserved_not_zero";
    case Error::kBadTenant:
      return "bad_tenant";
    case Error::kBadLength:
      return "bad_length";
    case Error::kPayloadChecksum:
      return "payload_checksum";
    case Error::kDecompress:
      return "decompress";
    case Error::kBadMessage:
      return "bad_message";
    case Error::kOutOfMemory:
      return "out_of_memory";
  }
  return "unknown";
}

uint64_t checksum(const void* data, size_t size) noexcept { return XXH3_64bits(data, size); }

}  // namespace edgeshard::frame

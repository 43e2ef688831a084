// JSON rendering of frames for people and tests (edgeshard-dump, edgeshard.frames_to_json()):
// one JSON object per line, first the frame's header ("type":"frame"), then one per message.
// The shape is described in common/FORMAT.md ("JSON rendering"). These functions only append to
// `out`; they throw nothing but std::bad_alloc.
#pragma once

#include "common/no_postgres.hpp"

#include "common/frame_format.hpp"
#include "common/frame_reader.hpp"

#include <string>
#include <string_view>

namespace edgeshard::frame {

// Appends s as a JSON string: quotes, escapes, invalid UTF-8 replaced by U+FFFD.
void append_json_string(std::string& out, std::string_view s);

// Appends the header as one JSON object (no newline).
void append_header_json(std::string& out, const Header& header);

// Appends one message as one JSON object (no newline).
void append_message_json(std::string& out, const Message& message);

// Appends the frame last opened by `reader` as JSON lines (header, then each message, each line
// ending in '\n'); returns the status of its messages (lines before a malformed one stay).
Status append_frame_json(std::string& out, const Reader& reader);

}  // namespace edgeshard::frame

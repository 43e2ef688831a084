// edgeshard.frames_to_json(bytea) -> setof jsonb: frames decoded by the common reader, one JSON
// object per frame header and per message (common/FORMAT.md, "JSON rendering"), for people and
// pg_regress. Inside PostgreSQL the tuples are rendered readably: column names from the RELATION
// messages seen earlier in the same query (state kept per call site), and each BINARY value turned
// back into its text form with the type's receive and output functions.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/frame_json.hpp"
#include "common/frame_reader.hpp"
#include "extension/pg_cxx.hpp"

extern "C" {
#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"
}

namespace edgeshard::plugin {

namespace {

// A column as remembered from a RELATION message.
struct KnownColumn {
  std::string name;
  uint32_t type_oid;
  int32_t typmod;
};

// A relation as remembered from a RELATION message.
struct KnownRelation {
  std::string qualified_name;
  std::vector<KnownColumn> columns;
  std::vector<size_t> key_columns;  // indexes of the key columns, in order
};

// State of one call site (one query): the relations seen so far. Lives in fn_mcxt.
struct CallState {
  std::unordered_map<uint32_t, KnownRelation> relations;
  frame::Reader reader;
};

// Destroys a CallState when fn_mcxt is reset.
void destroy_state(void* arg) { static_cast<CallState*>(arg)->~CallState(); }

// The call site's state, created on first use.
CallState& state_of(FunctionCallInfo fcinfo) {
  if (fcinfo->flinfo->fn_extra == nullptr) {
    void* mem = pg::call([fcinfo] {
      return MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(CallState));
    });
    auto* state = new (mem) CallState();
    pg::call([fcinfo, state] {
      auto* cb = static_cast<MemoryContextCallback*>(
          MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(MemoryContextCallback)));
      cb->func = destroy_state;
      cb->arg = state;
      MemoryContextRegisterResetCallback(fcinfo->flinfo->fn_mcxt, cb);
    });
    fcinfo->flinfo->fn_extra = state;
  }
  return *static_cast<CallState*>(fcinfo->flinfo->fn_extra);
}

// The text form of a BINARY value of the given type (receive, then output); "\x<hex>" when
// this database has no such type or it cannot receive binary input.
std::string binary_as_text(std::string_view bytes, uint32_t type_oid, int32_t typmod) {
  return pg::call([&] {
    HeapTuple type = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type_oid));
    bool receivable = HeapTupleIsValid(type) &&
                      OidIsValid(reinterpret_cast<Form_pg_type>(GETSTRUCT(type))->typreceive);
    if (HeapTupleIsValid(type)) ReleaseSysCache(type);
    if (!receivable) {
      static const char kHex[] = "0123456789abcdef";
      std::string hex = "\\x";
      for (unsigned char c : bytes) {
        hex += kHex[c >> 4];
        hex += kHex[c & 0xF];
      }
      return hex;
    }
    Oid receive, ioparam, output;
    bool varlena;
    getTypeBinaryInputInfo(type_oid, &receive, &ioparam);
    getTypeOutputInfo(type_oid, &output, &varlena);
    StringInfoData buf;
    initStringInfo(&buf);
    appendBinaryStringInfo(&buf, bytes.data(), static_cast<int>(bytes.size()));
    Datum value = OidReceiveFunctionCall(receive, &buf, ioparam, typmod);
    char* text = OidOutputFunctionCall(output, value);
    std::string result(text);
    pfree(text);
    pfree(buf.data);
    return result;
  });
}

// Appends a tuple as a JSON object {"column": "text value", ...}; `columns` says which columns
// (indexes into rel.columns) the values are, in order.
void append_tuple(std::string& out, const frame::Tuple& tuple, const KnownRelation& rel,
                  const std::vector<size_t>& columns) {
  out += '{';
  size_t i = 0;
  for (const frame::Value& v : tuple) {
    const KnownColumn& column = rel.columns[columns[i]];
    if (i++ > 0) out += ',';
    frame::append_json_string(out, column.name);
    out += ':';
    switch (v.kind) {
      case frame::ValueKind::kNull:
        out += "null";
        break;
      case frame::ValueKind::kUnchangedToast:
        out += "{\"unchanged_toast\":true}";
        break;
      case frame::ValueKind::kText:
        frame::append_json_string(out, v.data);
        break;
      case frame::ValueKind::kBinary:
        frame::append_json_string(out, binary_as_text(v.data, column.type_oid, column.typmod));
        break;
    }
  }
  out += '}';
}

// The relation of a tuple message, if a RELATION message for it came earlier in this query and
// matches the tuple's width.
const KnownRelation* relation_for(const CallState& state, const frame::Message& message) {
  uint32_t relid = 0;
  size_t width = 0;
  if (const auto* ins = std::get_if<frame::Insert>(&message)) {
    relid = ins->relid;
    width = ins->new_tuple.size();
  } else if (const auto* upd = std::get_if<frame::Update>(&message)) {
    relid = upd->relid;
    width = upd->new_tuple.size();
    auto it = state.relations.find(relid);
    if (upd->has_old_key &&
        (it == state.relations.end() || it->second.key_columns.size() != upd->old_key.size()))
      return nullptr;
  } else if (const auto* del = std::get_if<frame::Delete>(&message)) {
    relid = del->relid;
    auto it = state.relations.find(relid);
    if (it == state.relations.end() || it->second.key_columns.size() != del->old_key.size())
      return nullptr;
    return &it->second;
  } else {
    return nullptr;
  }
  auto it = state.relations.find(relid);
  return it != state.relations.end() && it->second.columns.size() == width ? &it->second : nullptr;
}

// Appends one message: tuples readably when their relation is known, else as the common
// rendering writes them (values in hex).
void append_message(std::string& out, CallState& state, const frame::Message& message) {
  if (const auto* rel_msg = std::get_if<frame::Relation>(&message)) {
    KnownRelation& rel = state.relations[rel_msg->relid];
    rel.qualified_name = std::string(rel_msg->schema) + "." + std::string(rel_msg->name);
    rel.columns.clear();
    rel.key_columns.clear();
    for (const frame::Column& c : rel_msg->columns) {
      if (c.key) rel.key_columns.push_back(rel.columns.size());
      rel.columns.push_back(KnownColumn{std::string(c.name), c.type_oid, c.typmod});
    }
  }
  const KnownRelation* rel = relation_for(state, message);
  if (rel == nullptr) {
    frame::append_message_json(out, message);
    return;
  }
  std::vector<size_t> all(rel->columns.size());
  for (size_t i = 0; i < all.size(); i++) all[i] = i;
  auto head = [&](const char* type) {
    out += "{\"type\":\"";
    out += type;
    out += "\",\"relation\":";
    frame::append_json_string(out, rel->qualified_name);
  };
  if (const auto* ins = std::get_if<frame::Insert>(&message)) {
    head("insert");
    out += ",\"new\":";
    append_tuple(out, ins->new_tuple, *rel, all);
  } else if (const auto* upd = std::get_if<frame::Update>(&message)) {
    head("update");
    if (upd->has_old_key) {
      out += ",\"old_key\":";
      append_tuple(out, upd->old_key, *rel, rel->key_columns);
    }
    out += ",\"new\":";
    append_tuple(out, upd->new_tuple, *rel, all);
  } else if (const auto* del = std::get_if<frame::Delete>(&message)) {
    head("delete");
    out += ",\"old_key\":";
    append_tuple(out, del->old_key, *rel, rel->key_columns);
  }
  out += '}';
}

// Raises the error for a refused frame (XX001: the bytes are corrupt).
[[noreturn]] void refuse(const frame::Status& status, size_t frame_offset) {
  pg::raise(ERRCODE_DATA_CORRUPTED,
            pg::format("corrupted edgeshard frame at byte %zu: %s (%s)",
                       static_cast<size_t>(frame_offset + status.offset), status.message,
                       frame::error_name(status.error)),
            {}, "The frame was damaged after it was written; fetch it again from its source.");
}

}  // namespace
}  // namespace edgeshard::plugin

using namespace edgeshard;

// edgeshard.frames_to_json(frames bytea) -> setof jsonb: each frame's header, then its messages.
EDGESHARD_FUNCTION(frames_to_json) {
  plugin::CallState& state = plugin::state_of(fcinfo);
  std::string_view bytes = pg::call([fcinfo] {
    bytea* data = PG_GETARG_BYTEA_PP(0);
    return std::string_view(VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
  });
  std::span<const uint8_t> input(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < input.size()) {
    frame::Status status = state.reader.open(input.subspan(pos));
    if (!status.ok()) plugin::refuse(status, pos);
    std::string line;
    frame::append_header_json(line, state.reader.header());
    lines.push_back(std::move(line));
    frame::MessageCursor cursor = state.reader.messages();
    frame::Message message;
    while (cursor.next(message)) {
      line.clear();
      plugin::append_message(line, state, message);
      lines.push_back(std::move(line));
    }
    if (!cursor.status().ok()) plugin::refuse(cursor.status(), pos);
    pos += state.reader.header().frame_length;
  }
  pg::call([&] {
    InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
    auto* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
    for (const std::string& json : lines) {
      Datum value = DirectFunctionCall1(jsonb_in, CStringGetDatum(json.c_str()));
      bool isnull = false;
      tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
    }
  });
  return static_cast<Datum>(0);
}

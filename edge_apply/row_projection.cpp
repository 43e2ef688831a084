// Projection: rows stored under an older description of a table, read under a newer one.
#include "edge_apply/row_projection.hpp"

#include "edge_apply/tuple.hpp"

namespace edgeshard::apply {

namespace {

constexpr uint32_t kTextOid = 25;
constexpr uint32_t kVarcharOid = 1043;

}  // namespace

int find_column(std::span<const frame::Column> columns, const frame::Column& c) noexcept {
  for (size_t i = 0; i < columns.size(); ++i) {
    const bool same = (c.attnum != 0 && columns[i].attnum != 0) ? columns[i].attnum == c.attnum
                                                                 : columns[i].name == c.name;
    if (same) return static_cast<int>(i);
  }
  return -1;
}

bool same_stored_format(uint32_t stored, uint32_t now) noexcept {
  if (stored == now) return true;
  const auto texty = [](uint32_t t) { return t == kTextOid || t == kVarcharOid; };
  return texty(stored) && texty(now);
}

bool Projection::build(std::span<const frame::Column> from, std::span<const frame::Column> to,
                       std::string& why) {
  from_ = from;
  source_.assign(to.size(), -1);
  missing_.assign(to.size(), frame::Value{});
  identity_ = from.size() == to.size();
  for (size_t i = 0; i < to.size(); ++i) {
    const int j = find_column(from, to[i]);
    if (j >= 0 && !same_stored_format(from[j].type_oid, to[i].type_oid)) {
      why = "column \"" + std::string(to[i].name) + "\" changed type from " +
            type_name(from[j].type_oid) + " to " + type_name(to[i].type_oid);
      return false;
    }
    source_[i] = j;
    if (j < 0 && to[i].has_missing) missing_[i] = frame::Value{to[i].missing_kind, to[i].missing};
    identity_ = identity_ && j == static_cast<int>(i);
  }
  return true;
}

CodecStatus Projection::apply(std::string_view stored, std::string& out) const {
  RowView row;
  if (CodecStatus st = row.parse(from_, stored); !st.ok()) return st;
  std::vector<frame::Value> values(source_.size());
  for (size_t i = 0; i < source_.size(); ++i) {
    values[i] = source_[i] >= 0 ? row.value(static_cast<size_t>(source_[i])) : missing_[i];
  }
  out.clear();
  append_tuple(out, values);
  return {};
}

}  // namespace edgeshard::apply

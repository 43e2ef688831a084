// RelationMap: every RELATION of one shard's stream, by the point where it takes effect.
#include "edge_apply/relation_map.hpp"

namespace edgeshard::apply {

namespace {

// Fills info's columns from cols, taking names and missing values into info's own storage.
void own_columns(RelationInfo& info, const std::vector<frame::Column>& cols) {
  info.names.reserve(cols.size());
  info.missing.reserve(cols.size());
  for (const frame::Column& c : cols) {
    info.names.emplace_back(c.name);
    info.missing.emplace_back(c.missing);
  }
  // Views are taken only once the vectors stop growing (their strings do not move afterwards).
  for (size_t i = 0; i < cols.size(); ++i) {
    frame::Column owned = cols[i];
    owned.name = info.names[i];
    owned.missing = info.missing[i];
    info.columns.push_back(owned);
  }
}

}  // namespace

std::shared_ptr<const RelationInfo> RelationInfo::from_message(const frame::Relation& relation,
                                                               StreamPoint at) {
  auto info = std::make_shared<RelationInfo>();
  info->at = at;
  info->relid = relation.relid;
  info->schema = std::string(relation.schema);
  info->name = std::string(relation.name);
  info->tenant_column = relation.tenant_column;
  own_columns(*info, relation.merged_columns());
  return info;
}

std::shared_ptr<const RelationInfo> RelationInfo::from_table(const replica::Table& table) {
  auto info = std::make_shared<RelationInfo>();
  info->schema = table.schema;
  info->name = table.name;
  info->tenant_column = table.tenant_column;
  std::vector<frame::Column> cols;
  for (const replica::Column& c : table.columns) {
    cols.push_back({c.name, c.type_oid, c.typmod, c.key, c.attnum, c.has_missing,
                    static_cast<frame::ValueKind>(c.missing_kind), c.missing});
  }
  own_columns(*info, cols);
  return info;
}

replica::Table RelationInfo::to_table(uint32_t table_no) const {
  replica::Table t;
  t.table_no = table_no;
  t.schema = schema;
  t.name = name;
  t.tenant_column = tenant_column;
  t.columns.reserve(columns.size());
  for (const frame::Column& c : columns) {
    t.columns.push_back({std::string(c.name), c.type_oid, c.typmod, c.key, c.attnum, c.has_missing,
                         c.has_missing ? static_cast<uint8_t>(c.missing_kind) : uint8_t{0},
                         c.has_missing ? std::string(c.missing) : std::string()});
  }
  return t;
}

bool RelationInfo::same_shape(const RelationInfo& other) const noexcept {
  if (tenant_column != other.tenant_column || columns.size() != other.columns.size()) return false;
  for (size_t i = 0; i < columns.size(); ++i) {
    const frame::Column& a = columns[i];
    const frame::Column& b = other.columns[i];
    if (a.name != b.name || a.type_oid != b.type_oid || a.typmod != b.typmod || a.key != b.key ||
        a.attnum != b.attnum || a.has_missing != b.has_missing) {
      return false;
    }
    if (a.has_missing && (a.missing_kind != b.missing_kind || a.missing != b.missing)) return false;
  }
  return true;
}

void RelationMap::update(const frame::Relation& relation, StreamPoint at) {
  map_[relation.relid][at] = RelationInfo::from_message(relation, at);
}

std::shared_ptr<const RelationInfo> RelationMap::find(uint32_t relid) const {
  auto it = map_.find(relid);
  return it == map_.end() || it->second.empty() ? nullptr : it->second.rbegin()->second;
}

std::shared_ptr<const RelationInfo> RelationMap::find(uint32_t relid, StreamPoint at) const {
  auto it = map_.find(relid);
  if (it == map_.end() || it->second.empty()) return nullptr;
  auto v = it->second.upper_bound(at);  // the first described after `at`
  if (v == it->second.begin()) return v->second;
  return std::prev(v)->second;
}

std::shared_ptr<const RelationInfo> RelationMap::find_before(uint32_t relid, StreamPoint at) const {
  auto it = map_.find(relid);
  if (it == map_.end()) return nullptr;
  auto v = it->second.lower_bound(at);  // the first described at or after `at`
  return v == it->second.begin() ? nullptr : std::prev(v)->second;
}

}  // namespace edgeshard::apply

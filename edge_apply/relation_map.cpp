// RelationMap: the newest RELATION per relid of one shard's stream.
#include "edge_apply/relation_map.hpp"

namespace edgeshard::apply {

replica::Table RelationInfo::to_table(uint32_t table_no) const {
  replica::Table t;
  t.table_no = table_no;
  t.schema = schema;
  t.name = name;
  t.tenant_column = tenant_column;
  t.columns.reserve(columns.size());
  for (const frame::Column& c : columns) {
    t.columns.push_back({std::string(c.name), c.type_oid, c.typmod, c.key});
  }
  return t;
}

bool RelationInfo::same_shape(const RelationInfo& other) const noexcept {
  if (tenant_column != other.tenant_column || columns.size() != other.columns.size()) return false;
  for (size_t i = 0; i < columns.size(); ++i) {
    const frame::Column& a = columns[i];
    const frame::Column& b = other.columns[i];
    if (a.name != b.name || a.type_oid != b.type_oid || a.typmod != b.typmod || a.key != b.key) {
      return false;
    }
  }
  return true;
}

void RelationMap::update(const frame::Relation& relation) {
  auto info = std::make_shared<RelationInfo>();
  info->relid = relation.relid;
  info->schema = std::string(relation.schema);
  info->name = std::string(relation.name);
  info->tenant_column = relation.tenant_column;
  for (const frame::Column& c : relation.columns) info->names.emplace_back(c.name);
  // Views are taken only once `names` stops growing (its strings do not move afterwards).
  size_t i = 0;
  for (const frame::Column& c : relation.columns) {
    frame::Column owned = c;
    owned.name = info->names[i++];
    info->columns.push_back(owned);
  }
  map_[relation.relid] = std::move(info);
}

std::shared_ptr<const RelationInfo> RelationMap::find(uint32_t relid) const {
  auto it = map_.find(relid);
  return it == map_.end() ? nullptr : it->second;
}

}  // namespace edgeshard::apply

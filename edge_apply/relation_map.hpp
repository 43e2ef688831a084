// The tables of one upstream shard's change stream: relid -> schema, name, columns and tenant
// column, as the stream's RELATION messages last described them. A later RELATION for the same
// relid replaces the earlier one (a schema change: ALTER TABLE); rows already applied keep the
// description they were decoded with, as each keeps a shared pointer to it.
#pragma once

#include "common/no_postgres.hpp"

#include "common/frame_format.hpp"
#include "common/frame_reader.hpp"
#include "edge_apply/replica_file.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace edgeshard::apply {

// One table as a RELATION message described it, owning its strings. Immutable once built (the
// frame::Column names are views into `names`), hence shared by pointer, never copied.
struct RelationInfo {
  uint32_t relid = 0;
  std::string schema;
  std::string name;
  int32_t tenant_column = -1;          // index into columns, -1 when none
  std::vector<std::string> names;      // column names (storage for columns[i].name)
  std::vector<frame::Column> columns;  // as the frame codecs take them

  RelationInfo() = default;
  RelationInfo(const RelationInfo&) = delete;
  RelationInfo& operator=(const RelationInfo&) = delete;

  // "schema.name": how tables are identified in replica files.
  std::string qualified() const { return schema + "." + name; }
  // The replica file's description of the table, numbered table_no.
  replica::Table to_table(uint32_t table_no) const;
  // Whether two descriptions have the same columns and tenant column (names, types, keys).
  bool same_shape(const RelationInfo& other) const noexcept;
};

// relid -> the newest RELATION of one shard's stream.
class RelationMap {
 public:
  // Records a RELATION message (replacing an earlier one of the same relid).
  void update(const frame::Relation& relation);
  // The relation with this relid, or nullptr when the stream has not described it.
  std::shared_ptr<const RelationInfo> find(uint32_t relid) const;
  // Number of relations known.
  size_t size() const noexcept { return map_.size(); }

 private:
  std::unordered_map<uint32_t, std::shared_ptr<const RelationInfo>> map_;
};

}  // namespace edgeshard::apply

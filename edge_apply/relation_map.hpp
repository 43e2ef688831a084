// The tables of one upstream shard's change stream: relid -> schema, name, columns (with their
// identities and missing values) and tenant column, as the stream's RELATION messages described
// them. A relation can be described several times (ALTER TABLE): every description is kept with
// the stream point where it takes effect, and a frame's rows are decoded with the description in
// effect at that frame (find(relid, at)), so a transaction that changes a table both before and
// after altering it decodes each row with its own columns. Rows already applied keep the
// description they were decoded with, as each keeps a shared pointer to it.
#pragma once

#include "common/no_postgres.hpp"

#include "common/frame_format.hpp"
#include "common/frame_reader.hpp"
#include "edge_apply/replica_file.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace edgeshard::apply {

// A point of a shard's stream: transactions in commit order, changes inside one by LSN.
struct StreamPoint {
  uint64_t commit_lsn = 0;  // the transaction's commit LSN (0: before the stream, e.g. a copy)
  uint64_t lsn = 0;         // a change's LSN inside it

  // Stream order.
  auto operator<=>(const StreamPoint&) const = default;
};

// One table as a RELATION message described it, owning its strings. Immutable once built (the
// frame::Column names and missing values are views into `names` and `missing`), hence shared by
// pointer, never copied.
struct RelationInfo {
  uint32_t relid = 0;
  std::string schema;
  std::string name;
  int32_t tenant_column = -1;          // index into columns, -1 when none
  std::vector<std::string> names;      // column names (storage for columns[i].name)
  std::vector<std::string> missing;    // missing values (storage for columns[i].missing)
  std::vector<frame::Column> columns;  // as the frame codecs take them
  StreamPoint at;                      // where the stream described it (newer descriptions: later)

  RelationInfo() = default;
  RelationInfo(const RelationInfo&) = delete;
  RelationInfo& operator=(const RelationInfo&) = delete;

  // The description of a RELATION message (with its ATTRIBUTES when it had them).
  static std::shared_ptr<const RelationInfo> from_message(const frame::Relation& relation,
                                                          StreamPoint at = {});
  // The description of a replica file's table (relid 0).
  static std::shared_ptr<const RelationInfo> from_table(const replica::Table& table);

  // "schema.name": how tables are identified in replica files.
  std::string qualified() const { return schema + "." + name; }
  // The replica file's description of the table, numbered table_no.
  replica::Table to_table(uint32_t table_no) const;
  // Whether two descriptions have the same columns and tenant column (names, types, keys,
  // identities, missing values).
  bool same_shape(const RelationInfo& other) const noexcept;
};

// relid -> every RELATION of one shard's stream, by the point where it takes effect.
class RelationMap {
 public:
  // Records a RELATION message taking effect at `at` (a description at the same point is
  // replaced: the same frame received again).
  void update(const frame::Relation& relation, StreamPoint at = {});
  // The newest description of relid, or nullptr when the stream has not described it.
  std::shared_ptr<const RelationInfo> find(uint32_t relid) const;
  // The description in effect for a frame of transaction `at.commit_lsn` whose last change is at
  // `at.lsn`: the last one described at or before that point (the oldest when all are later:
  // a relation is described before its first change, so nothing can use an earlier one).
  std::shared_ptr<const RelationInfo> find(uint32_t relid, StreamPoint at) const;
  // The description in effect just before `at` (the newest described strictly before it), or
  // nullptr.
  std::shared_ptr<const RelationInfo> find_before(uint32_t relid, StreamPoint at) const;
  // Number of relations known.
  size_t size() const noexcept { return map_.size(); }

 private:
  std::unordered_map<uint32_t, std::map<StreamPoint, std::shared_ptr<const RelationInfo>>> map_;
};

}  // namespace edgeshard::apply

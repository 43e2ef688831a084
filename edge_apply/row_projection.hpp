// Schema on read (DESIGN.md 6.2): how a row stored under one description of a table reads under
// a later one. Columns are matched by identity — PostgreSQL's attribute number, which survives
// RENAME COLUMN and is never reused after DROP COLUMN — or by name when a description does not
// carry identities (version-1 streams and files). A column of the later description that the row
// does not have (added since) reads as its missing value (ADD COLUMN with a constant default keeps
// it in pg_attribute.attmissingval) or NULL; a column the later description lacks (dropped) is
// left out. A column whose type changed is not projectable: PostgreSQL rewrote the table, and the
// rows must be taken again from the primary (the stream's REWRITE message says so).
//
//   Projection p;
//   if (!p.build(file_columns, current_columns, why)) ...;   // a type changed: resync
//   std::string row;
//   if (p.identity()) use(stored); else if (p.apply(stored, row).ok()) use(row);
#pragma once

#include "common/no_postgres.hpp"

#include "common/frame_format.hpp"
#include "common/frame_reader.hpp"
#include "edge_apply/value_codec.hpp"

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::apply {

class Projection {
 public:
  // Prepares the projection of rows stored under `from` into rows of `to` (both must outlive
  // it); false with why when a column of both changed its type in a way the stored values cannot
  // be read as.
  bool build(std::span<const frame::Column> from, std::span<const frame::Column> to,
             std::string& why);

  // Whether rows need no change (same columns, same order).
  bool identity() const noexcept { return identity_; }

  // Writes the stored tuple (of `from`'s shape) as a tuple of `to`'s shape into out (replaced).
  // kBadTuple when the stored tuple is malformed.
  CodecStatus apply(std::string_view stored, std::string& out) const;

 private:
  std::vector<int> source_;            // per column of `to`: its index in `from`, or -1
  std::vector<frame::Value> missing_;  // per column of `to`: what it reads as when -1
  std::span<const frame::Column> from_;
  bool identity_ = true;
};

// Index in `columns` of the column that is `c` (same attribute number when both know theirs, else
// same name), or -1.
int find_column(std::span<const frame::Column> columns, const frame::Column& c) noexcept;

// Whether a value stored under type `stored` reads unchanged as type `now` (same type, or types
// sharing one send format that ALTER COLUMN … TYPE changes without a rewrite: text, varchar).
bool same_stored_format(uint32_t stored, uint32_t now) noexcept;

}  // namespace edgeshard::apply

// A shard stream's table descriptions, kept on disk: the output plugin sends a RELATION once per
// relation and decoding session, so after a restart (resuming past it) the relay does not send it
// again, yet the groups that follow need it. Each MANY_TENANTS frame holding RELATION messages is
// kept, byte for byte (checksummed by the frame format), in data_dir/shards/<shard>.relations,
// replaced atomically (write, fsync, rename, fsync dir) before anything depending on it can be
// flushed; open() replays the frames in stream order into the shard's RelationMap.
#pragma once

#include "common/no_postgres.hpp"

#include "edge_apply/relation_map.hpp"

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace edgeshard::apply::daemon {

class RelationStore {
 public:
  // Reads the shard's file (if any) into relations; false with why when it is unreadable or
  // corrupt.
  bool open(const std::filesystem::path& data_dir, std::string_view shard, RelationMap& relations,
            std::string& why);

  // Keeps a checked MANY_TENANTS frame that holds RELATION messages (stream position key,
  // sequence seq) durably; frames at or before the last one kept (resent after a reconnect) are
  // not stored again. False with why on an I/O error.
  bool add(uint64_t key, uint32_t seq, std::span<const uint8_t> frame, std::string& why);

  // Keeps a RELATION frame built by an initial copy (the table as the copy's snapshot saw it) for
  // a relid the stream has not described: the stream sent its RELATION before this edge started.
  // Stream frames kept later replace it on replay. False with why on an I/O error.
  bool add_copied(std::span<const uint8_t> frame, std::string& why);

  // Frames kept.
  size_t size() const noexcept { return frames_.size(); }
  // errno of the last failed add()/add_copied() (ENOSPC: the disk is full; the frame was not
  // kept and may be added again).
  int last_errno() const noexcept { return last_errno_; }

 private:
  // Appends frame to the file (rewritten atomically); false with why.
  bool append(std::span<const uint8_t> frame, std::string& why);

  std::filesystem::path dir_;
  std::filesystem::path path_;
  std::vector<std::vector<uint8_t>> frames_;
  uint64_t last_key_ = 0;
  uint32_t last_seq_ = 0;
  bool any_ = false;
  int last_errno_ = 0;
};

}  // namespace edgeshard::apply::daemon

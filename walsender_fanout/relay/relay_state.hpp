// The relay's small persistent state next to its log (file relay.state): the floor (every
// transaction with key >= floor is in the log or still to come) and the registered subscribers
// with their acked positions, which retention and lag reports use across restarts. The file is
// text, ends with an XXH3 checksum line, and is replaced atomically (temp file, fsync, rename,
// directory fsync). Registry is shared by the relay's threads (one mutex).
#pragma once

#include "common/no_postgres.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

namespace edgeshard::relay {

// relay.state cannot be read (damaged) or written.
class StateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  // A failed write: what and the call's errno (ENOSPC: the disk is full).
  StateError(const std::string& what, int sys_errno) : std::runtime_error(what), sys_errno_(sys_errno) {}
  // errno of the failed write, 0 for a damaged file.
  int sys_errno() const noexcept { return sys_errno_; }

 private:
  int sys_errno_ = 0;
};

// What the relay remembers of a subscriber.
struct SubscriberRecord {
  uint64_t acked = 0;          // position acked (everything below applied)
  int64_t last_seen_unix = 0;  // last connection or ack, seconds since 1970
};

// The persisted state.
struct RelayState {
  uint64_t floor = 0;  // 0: nothing received yet
  std::string upstream;  // "<system identifier>/<slot>" of the primary the log comes from
  std::map<std::string, SubscriberRecord> subscribers;
};

// Serialises state (with its checksum line).
std::string encode_state(const RelayState& state);
// Parses encode_state()'s output; throws StateError naming what is wrong.
RelayState decode_state(const std::string& text);

// relay.state of one data directory, shared by the threads.
class Registry {
 public:
  // Loads dir/relay.state (an absent file is an empty state); throws StateError.
  explicit Registry(std::filesystem::path dir);

  // A copy of the current state.
  RelayState snapshot() const;
  // The floor.
  uint64_t floor() const;
  // Raises the floor and saves at once (before the log drops what was below it); throws StateError.
  void raise_floor(uint64_t floor);
  // Binds the log to its upstream at the first connection, and afterwards checks that it is
  // still the same one: false (with the recorded identity in recorded) on a mismatch. Saves at
  // once when it records; throws StateError.
  bool bind_upstream(const std::string& identity, std::string& recorded);
  // Registers a (re)connection starting at start: its acked position becomes start, even if
  // lower than before (a subscriber restored from an older copy needs that history kept).
  void restart(const std::string& name, uint64_t start, int64_t now_unix);
  // Records an ack (acked only grows); saved by the next save_if_dirty().
  void touch(const std::string& name, uint64_t acked, int64_t now_unix);
  // The registered position of name; false when unknown.
  bool acked(const std::string& name, uint64_t& out) const;
  // Forgets subscribers not seen since before cutoff_unix (they stop holding retention).
  void expire(int64_t cutoff_unix);
  // Smallest acked position of the registered subscribers; UINT64_MAX when there is none.
  uint64_t min_acked() const;
  // Writes the file if something changed since the last save; throws StateError.
  void save_if_dirty();
  // The file's path, for messages.
  std::string path() const { return path_.string(); }

 private:
  // Writes state to the file (one writer at a time: save_mutex_); throws StateError.
  void write_file(const RelayState& state);

  std::filesystem::path path_;
  mutable std::mutex mutex_;
  std::mutex save_mutex_;  // serialises file writes, taken before mutex_ when both are
  RelayState state_;
  bool dirty_ = false;
};

}  // namespace edgeshard::relay

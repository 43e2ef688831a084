// Subscriber tokens: one per name from tokens_file, and an optional token any name may use.
// Re-read on SIGHUP; checked in constant time (protocol.hpp).
#pragma once

#include "common/no_postgres.hpp"

#include <map>
#include <mutex>
#include <string>

namespace edgeshard::relay {

// Thread-safe token table.
class TokenStore {
 public:
  // Sets the table: the shared token (may be empty) and the file (may be empty); throws
  // ConfigError when the file cannot be read.
  void load(const std::string& shared_token, const std::string& tokens_file);
  // Whether token is right for name: the name's own token if it has one, else the shared token.
  bool check(const std::string& name, const std::string& token) const;

 private:
  mutable std::mutex mutex_;
  std::string shared_;
  std::map<std::string, std::string> by_name_;
};

}  // namespace edgeshard::relay

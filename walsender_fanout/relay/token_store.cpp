// TokenStore.
#include "walsender_fanout/relay/token_store.hpp"

#include "walsender_fanout/relay/protocol.hpp"
#include "walsender_fanout/relay/relay_config.hpp"

namespace edgeshard::relay {

void TokenStore::load(const std::string& shared_token, const std::string& tokens_file) {
  std::map<std::string, std::string> by_name;
  if (!tokens_file.empty()) {
    for (auto& [name, token] : read_tokens_file(tokens_file)) by_name[name] = token;
  }
  std::lock_guard lock(mutex_);
  shared_ = shared_token;
  by_name_ = std::move(by_name);
}

bool TokenStore::check(const std::string& name, const std::string& token) const {
  std::lock_guard lock(mutex_);
  auto it = by_name_.find(name);
  return proto::tokens_equal(token, it != by_name_.end() ? it->second : shared_);
}

}  // namespace edgeshard::relay

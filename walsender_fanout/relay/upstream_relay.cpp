// A session with a parent relay (tree topology): this relay subscribes with its own name, from its
// durable position, and treats the parent's FRAMEs and KEEPALIVEs as a primary's frames and
// keepalives; its ACKs confirm what is durable here.
#include "common/lsn.hpp"
#include "walsender_fanout/relay/log_line.hpp"
#include "walsender_fanout/relay/relay_client.hpp"
#include "walsender_fanout/relay/upstream.hpp"

#include <cstdlib>
#include <sstream>

namespace edgeshard::relay {

namespace {

// Splits a comma-separated list, dropping empty items.
std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

SessionEnd Upstream::run_parent(const std::atomic<bool>& stop) {
  SessionEnd end;
  ClientOptions options;
  options.hosts = config_.upstream_relay;
  options.name = config_.name;
  options.token = config_.upstream_token;
  if (options.token.empty()) {
    if (const char* env = std::getenv("EDGESHARD_RELAY_TOKEN")) options.token = env;
  }
  options.start = ingest_.position();
  options.tenants = split_list(config_.tenants);
  RelayClient client;
  if (ClientStatus st = client.connect(options); !st.ok()) {
    // A parent that refuses this relay (auth, resync) will not change its mind on retry: say so
    // loudly, but keep retrying (an operator may fix the parent's configuration).
    end.reason = st.relay_code.empty() ? st.message : st.relay_code + ": " + st.message;
    return end;
  }
  if (!ingest_.log_empty() && client.welcome().start != ingest_.position()) {
    end.reason = "parent relay " + client.peer() + " starts at " + format_lsn(client.welcome().start) +
                 ", not at this relay's position " + format_lsn(ingest_.position());
    return end;
  }
  if (IngestResult r = ingest_.begin_stream(client.welcome().start, Clock::now()); !r.ok()) {
    end.set_log_failure(r);
    if (r.path.empty()) end.path = registry_.path();
    end.fatal = !end.blocked;
    return end;
  }
  stats_.connected = true;
  log(Level::kInfo, "upstream_connected",
      {{"parent", client.peer()}, {"start", format_lsn(client.welcome().start)},
       {"parent_name", client.welcome().relay_name}});
  uint64_t acked = 0;
  Clock::time_point last_ack{};
  Clock::time_point last_message = Clock::now();
  const auto timeout = std::chrono::milliseconds(config_.upstream_timeout_ms);
  const int wait_ms = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(config_.sync_interval_ms, 100)));
  while (!stop.load(std::memory_order_relaxed)) {
    Incoming in;
    const ClientStatus st = client.read(wait_ms, in);
    const Clock::time_point now = Clock::now();
    IngestResult r;
    bool reply = false;
    if (st.ok()) last_message = now;
    if (now - last_message > timeout) {
      end.reason = "no message from parent relay " + client.peer() + " for " +
                   std::to_string(config_.upstream_timeout_ms) + " ms";
      return end;
    }
    if (st.ok() && in.type == proto::Type::kFrame) {
      end.progressed = true;
      r = ingest_.on_frame(in.frame, now);
    } else if (st.ok() && in.type == proto::Type::kKeepalive) {
      r = ingest_.on_position(in.keepalive.position, in.keepalive.relay_time_us, now);
      reply = in.keepalive.reply_requested;
    } else if (st.error != ClientError::kTimeout) {
      end.reason = st.relay_code.empty() ? st.message : st.relay_code + ": " + st.message;
      return end;
    }
    if (r.ok()) r = ingest_.tick(now);
    if (r.ok()) r = housekeeping(now);
    if (!r.ok()) {
      end.set_log_failure(r);
      return end;
    }
    const uint64_t durable = ingest_.position();
    if (reply || (durable != acked && now - last_ack >= std::chrono::milliseconds(config_.sync_interval_ms))) {
      if (ClientStatus a = client.send_ack(durable); !a.ok()) {
        end.reason = "could not ack: " + a.message;
        return end;
      }
      acked = durable;
      stats_.confirmed = durable;
      last_ack = now;
    }
  }
  client.send_ack(ingest_.position());
  end.reason = "stopping";
  return end;
}

}  // namespace edgeshard::relay

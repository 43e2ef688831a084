// A shard's subscription thread: connect, check frames, assemble groups, ack, reconnect.
#include "edge_apply/daemon/shard_stream.hpp"

#include "common/frame_reader.hpp"
#include "common/lsn.hpp"
#include "edge_apply/daemon/primary_client.hpp"
#include "walsender_fanout/relay/log_line.hpp"
#include "walsender_fanout/relay/relay_client.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

namespace edgeshard::apply::daemon {

namespace {

using relay::Level;
using relay::log;
using Clock = std::chrono::steady_clock;

// How a session ended.
enum class SessionEnd { kStopped, kBroken };

// Checks one frame completely (header, lengths, checksum, decompression, every message) and
// that it is exactly the message's frame of key `key`; "" when good, else why not.
std::string check_frame(frame::Reader& reader, std::span<const uint8_t> bytes, uint64_t key) {
  if (frame::Status st = reader.open(bytes); !st.ok()) {
    return std::string(frame::error_name(st.error)) + " at offset " + std::to_string(st.offset) +
           ": " + st.message;
  }
  const frame::Header& h = reader.header();
  if (h.frame_length != bytes.size()) return "the message holds bytes after its frame";
  if (h.commit_lsn != key) return "the frame's commit lsn differs from its stream key";
  frame::MessageCursor cursor = reader.messages();
  frame::Message m;
  while (cursor.next(m)) {
  }
  if (!cursor.status().ok()) {
    return std::string("bad_message at payload offset ") + std::to_string(cursor.status().offset) +
           ": " + cursor.status().message;
  }
  return {};
}

// A tenant's frame group in progress: its frames in memory, or in a spill file past the budget.
struct Partial {
  std::vector<std::vector<uint8_t>> frames;
  size_t bytes = 0;  // of frames
  std::shared_ptr<GroupSpill> spill;
  uint64_t count = 0;  // frames received
};

// Sleeps up to ms, waking early when stop is set.
void nap(int ms, const std::atomic<bool>& stop) {
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (!stop.load() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

// One connection's streaming loop, over a relay (relay::RelayClient) or a primary's slot
// (PrimaryClient): both deliver FRAMEs and KEEPALIVEs and take ACKs.
template <typename Client>
class Session {
 public:
  // A session on a connected client.
  Session(const StreamOptions& o, ShardState& s, EventQueue& q, Client& c)
      : opt_(o), state_(s), queue_(q), client_(c), sent_below_(c.welcome().start) {}

  // Streams until stop or a failure (logged).
  SessionEnd run(const std::atomic<bool>& stop) {
    relay::Incoming in;
    while (!stop.load()) {
      if (!maybe_ack(false)) return SessionEnd::kBroken;
      relay::ClientStatus st = client_.read(100, in);
      if (st.error == relay::ClientError::kTimeout) continue;
      if (!st.ok()) {
        log(st.error == relay::ClientError::kRefused ? Level::kError : Level::kWarning,
            "shard_disconnected",
            {{"shard", state_.shard}, {"error", relay::client_error_name(st.error)},
             {"code", st.relay_code}, {"message", st.message}});
        return SessionEnd::kBroken;
      }
      const bool ok = in.type == relay::proto::Type::kFrame ? on_frame(in) : on_keepalive(in.keepalive);
      if (!ok) return SessionEnd::kBroken;
    }
    return SessionEnd::kStopped;
  }

  // Sends the applier's durable position (bounded by what this connection received) when it
  // moved, or always when `force`; false when the connection broke.
  bool maybe_ack(bool force) {
    const uint64_t ack = std::max(std::min(state_.acked.load(), sent_below_), last_ack_);
    if (!force && ack <= last_ack_) return true;
    if (relay::ClientStatus st = client_.send_ack(ack); !st.ok()) {
      log(Level::kWarning, "shard_ack_failed",
          {{"shard", state_.shard}, {"error", relay::client_error_name(st.error)}, {"message", st.message}});
      return false;
    }
    last_ack_ = ack;
    return true;
  }

 private:
  // Logs a broken rule of the stream (the connection is then dropped); returns false.
  bool broken(const std::string& why, uint64_t key) {
    state_.corrupt.fetch_add(1);
    log(Level::kError, "corrupt_stream",
        {{"shard", state_.shard}, {"key", format_lsn(key)}, {"error", why},
         {"action", "dropping the connection, nothing of it applied; resuming from the ack"}});
    return false;
  }

  // Records that the relay sent everything below position.
  void received(uint64_t position) {
    sent_below_ = std::max(sent_below_, position);
    uint64_t r = state_.received.load();
    while (position > r && !state_.received.compare_exchange_weak(r, position)) {
    }
  }

  // A FRAME: check it, then hand it over (MANY_TENANTS) or add it to its tenant's group.
  bool on_frame(const relay::Incoming& in) {
    state_.frames.fetch_add(1);
    state_.frame_bytes.fetch_add(in.frame.size());
    if (std::string why = check_frame(reader_, in.frame, in.key); !why.empty()) return broken(why, in.key);
    const frame::Header& h = reader_.header();
    if (!partial_.empty() && in.key != partial_key_) {
      return broken("the frame group of tenant " + partial_.begin()->first +
                        " ends without its last frame", in.key);
    }
    received(in.key);
    ApplyEvent ev;
    ev.shard = opt_.shard_index;
    ev.key = in.key;
    if (h.many_tenants) {
      ev.kind = ApplyEvent::kManyTenants;
      ev.frames.emplace_back(in.frame.begin(), in.frame.end());
      return queue_.push(std::move(ev));
    }
    partial_key_ = in.key;
    Partial& group = partial_[std::string(h.tenant_key)];
    if (h.sequence != group.count) {
      return broken("frame sequence " + std::to_string(h.sequence) + " of tenant " +
                        std::string(h.tenant_key) + " where " + std::to_string(group.count) +
                        " was expected", in.key);
    }
    if (!hold(group, in.frame)) return false;
    if (!h.last) return true;
    ev.kind = ApplyEvent::kGroup;
    ev.tenant = std::string(h.tenant_key);
    buffered_ -= group.bytes;
    ev.frames = std::move(group.frames);
    ev.spill = std::move(group.spill);
    partial_.erase(ev.tenant);
    return queue_.push(std::move(ev));
  }

  // Keeps a frame of a group in progress: in memory while all the groups in progress fit
  // group_memory_bytes, else in the group's spill file (its frames held so far move there too).
  // False (logged: the connection is dropped and resumed later) when the file cannot be written.
  bool hold(Partial& group, std::span<const uint8_t> frame) {
    ++group.count;
    if (!group.spill && (opt_.spill_dir.empty() || buffered_ + frame.size() <= opt_.group_memory_bytes)) {
      group.frames.emplace_back(frame.begin(), frame.end());
      group.bytes += frame.size();
      buffered_ += frame.size();
      return true;
    }
    std::string why;
    if (!group.spill) {
      group.spill = GroupSpill::create(opt_.spill_dir, why);
      if (!group.spill) return spill_failed(why);
      state_.spilled_groups.fetch_add(1);
      for (const auto& f : group.frames) {
        if (why = group.spill->append(f); !why.empty()) return spill_failed(why);
      }
      buffered_ -= group.bytes;
      group.bytes = 0;
      group.frames = {};  // the memory goes back now, not when the group ends
    }
    if (why = group.spill->append(frame); !why.empty()) return spill_failed(why);
    return true;
  }

  // Logs a spill file that could not be written (disk full: the OS's words); returns false.
  bool spill_failed(const std::string& why) {
    log(Level::kError, "group_spill_failed",
        {{"shard", state_.shard}, {"error", why},
         {"action", "dropping the connection, nothing of the group applied; resuming from the ack"}});
    return false;
  }

  // A KEEPALIVE: every transaction below its position was sent.
  bool on_keepalive(const relay::proto::Keepalive& k) {
    if (!partial_.empty()) return broken("keepalive inside a frame group", k.position);
    received(k.position);
    ApplyEvent ev;
    ev.kind = ApplyEvent::kPosition;
    ev.shard = opt_.shard_index;
    ev.key = k.position;
    ev.relay_time_us = k.relay_time_us;
    ev.commit_time_us = k.commit_time_us;
    if (!queue_.push(std::move(ev))) return false;
    return k.reply_requested ? maybe_ack(true) : true;
  }

  const StreamOptions& opt_;
  ShardState& state_;
  EventQueue& queue_;
  Client& client_;
  frame::Reader reader_;
  uint64_t sent_below_ = 0;  // the relay sent everything below this on this connection
  uint64_t last_ack_ = 0;
  std::map<std::string, Partial> partial_;  // groups without LAST yet
  size_t buffered_ = 0;                     // frame bytes of partial_ held in memory
  uint64_t partial_key_ = 0;
};

}  // namespace

namespace {

// The connection settings of a relay upstream.
relay::ClientOptions relay_options(const StreamOptions& o, const ShardState& state) {
  relay::ClientOptions c;
  c.hosts = state.hosts;
  c.name = o.name;
  c.token = o.token;
  c.tenants = o.tenants;
  c.connect_timeout_ms = o.connect_timeout_ms;
  return c;
}

// The connection settings of a primary upstream.
PrimaryOptions primary_options(const StreamOptions& o) {
  PrimaryOptions p;
  p.conninfo = o.primary_conninfo;
  p.slot = o.slot;
  p.application_name = "edgeshard-apply " + o.name;
  p.tenants = o.tenants;
  p.connect_timeout_ms = o.connect_timeout_ms;
  return p;
}

// Runs a session; an exception out of it (out of memory, a bug) ends the session like a broken
// connection, logged: its partial groups are dropped and the next one resumes from the ack.
template <typename Client>
SessionEnd run_session(Session<Client>& session, ShardState& state, const std::atomic<bool>& stop) {
  try {
    return session.run(stop);
  } catch (const std::exception& e) {
    log(Level::kError, "shard_stream_failed",
        {{"shard", state.shard}, {"error", e.what()}, {"action", "reconnecting, resuming from the ack"}});
  } catch (...) {
    log(Level::kError, "shard_stream_failed",
        {{"shard", state.shard}, {"error", "unknown exception"}, {"action", "reconnecting, resuming from the ack"}});
  }
  return SessionEnd::kBroken;
}

// The connection loop: connect (from what is durable), stream, reconnect with backoff.
template <typename Client, typename Options>
void run_with(Client& client, Options copts, const StreamOptions& options, ShardState& state,
              EventQueue& queue, const std::atomic<bool>& stop, const std::atomic<bool>& applier_done) {
  int backoff = options.reconnect_min_ms;
  bool first = true;
  while (!stop.load()) {
    // Resume from what is durable; the very first connection uses the start chosen at start-up.
    copts.start = first ? options.start : state.acked.load();
    relay::ClientStatus st = client.connect(copts);
    if (!st.ok()) {
      log(st.error == relay::ClientError::kRefused ? Level::kError : Level::kWarning, "shard_connect_failed",
          {{"shard", state.shard}, {"upstream", state.hosts}, {"start", format_lsn(copts.start)},
           {"error", relay::client_error_name(st.error)}, {"code", st.relay_code},
           {"message", st.message}, {"retry_ms", std::to_string(backoff)}});
      nap(backoff, stop);
      backoff = std::min(backoff * 2, options.reconnect_max_ms);
      continue;
    }
    first = false;
    state.sessions.fetch_add(1);
    state.connected = true;
    log(Level::kInfo, "shard_connected",
        {{"shard", state.shard}, {"relay", client.peer()}, {"relay_name", client.welcome().relay_name},
         {"requested_start", format_lsn(copts.start)}, {"start", format_lsn(client.welcome().start)},
         {"relay_position", format_lsn(client.welcome().position)}});
    const auto began = Clock::now();
    Session<Client> session(options, state, queue, client);
    const SessionEnd end = run_session(session, state, stop);
    if (end == SessionEnd::kStopped) state.quiet = true;
    if (end == SessionEnd::kStopped && client.connected()) {
      // Clean shutdown: the applier flushes what it has, then the upstream gets the final ack.
      const auto deadline = Clock::now() + std::chrono::seconds(10);
      while (!applier_done.load() && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (applier_done.load() && session.maybe_ack(false)) {
        log(Level::kInfo, "shard_final_ack", {{"shard", state.shard}, {"acked", format_lsn(state.acked.load())}});
      }
    }
    client.close();
    state.connected = false;
    if (end == SessionEnd::kStopped) break;
    if (Clock::now() - began > std::chrono::seconds(5)) backoff = options.reconnect_min_ms;
    nap(backoff, stop);
    backoff = std::min(backoff * 2, options.reconnect_max_ms);
  }
  state.quiet = true;
}

}  // namespace

void run_shard_stream(const StreamOptions& options, ShardState& state, EventQueue& queue,
                      const std::atomic<bool>& stop, const std::atomic<bool>& applier_done) {
  // No exception leaves the thread: one out of a connection attempt starts the loop again after
  // a pause (sessions have their own guard, run_session()).
  StreamOptions o = options;
  while (!stop.load()) {
    try {
      if (o.primary_conninfo.empty()) {
        relay::RelayClient client;
        run_with(client, relay_options(o, state), o, state, queue, stop, applier_done);
      } else {
        PrimaryClient client;
        run_with(client, primary_options(o), o, state, queue, stop, applier_done);
      }
      return;
    } catch (const std::exception& e) {
      log(Level::kError, "shard_stream_failed", {{"shard", state.shard}, {"error", e.what()}, {"action", "retrying"}});
    } catch (...) {
      log(Level::kError, "shard_stream_failed", {{"shard", state.shard}, {"error", "unknown exception"}, {"action", "retrying"}});
    }
    state.connected = false;
    o.start = std::max(o.start, state.acked.load());  // what is durable, as a reconnect does
    nap(o.reconnect_max_ms, stop);
  }
  state.quiet = true;
}

}  // namespace edgeshard::apply::daemon

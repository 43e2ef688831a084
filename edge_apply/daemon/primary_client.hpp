// A shard stream straight from a primary, without a relay: the edge's own logical replication
// slot (output plugin edgeshard) over libpq's replication protocol, as pg_recvlogical speaks it.
// It offers the calls of relay::RelayClient that a shard stream uses (connect, read, send_ack,
// close) and turns the walsender's messages into the relay's: each XLogData is one FRAME keyed
// by its commit LSN; a primary keepalive whose WAL end lies past every frame sent so far is a
// KEEPALIVE at that position (a keepalive sent while a transaction's frames are still coming
// carries a smaller WAL end and is dropped, as the relay's ingest does). ACK is the standby status
// update confirming write = flush = apply = the position, which moves the slot.
//
// The slot is created at the first connection when missing. A slot that is missing while the
// edge already holds this shard's changes (after a failover PostgreSQL 15 slots are gone), or
// that is confirmed past where the edge stands, means transactions in between are lost to the
// edge: connect() refuses (kRefused, code slot_missing / slot_ahead) and says what to do.
#pragma once

#include "common/no_postgres.hpp"
#include "common/pq_replication.hpp"

#include "walsender_fanout/relay/relay_client.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace edgeshard::apply::daemon {

// What to connect to and what to ask for.
struct PrimaryOptions {
  std::string conninfo;              // libpq connection string (multi-host allowed)
  std::string slot;                  // this edge's slot on the primary
  std::string application_name;
  uint64_t start = 0;                // 0: the slot's confirmed position
  std::vector<std::string> tenants;  // plugin option "tenants" (empty: every tenant)
  int connect_timeout_ms = 5000;
};

// The codes of PrimaryClient's refusals (ClientStatus::relay_code).
inline constexpr const char* kSlotMissing = "slot_missing";
inline constexpr const char* kSlotAhead = "slot_ahead";
inline constexpr const char* kSlotPlugin = "slot_plugin";

// One replication connection to a primary.
class PrimaryClient {
 public:
  // Connects (read-write server of the conninfo), checks or creates the slot and starts
  // replication from options.start. kConnect when no server answered, kRefused for a slot that
  // cannot serve this edge (see the file comment), kClosed for other server errors.
  relay::ClientStatus connect(const PrimaryOptions& options);

  // The connection's start (effective start position and the server as relay_name).
  const relay::proto::Welcome& welcome() const noexcept { return welcome_; }

  // Waits up to timeout_ms for the next FRAME or KEEPALIVE (see the file comment); kTimeout when
  // nothing whole arrived. Also sends a status update every 10 s even when nothing moved.
  relay::ClientStatus read(int timeout_ms, relay::Incoming& out);

  // Confirms position (everything below it is durable on the edge) to the slot.
  relay::ClientStatus send_ack(uint64_t position);

  // Whether a connection is open.
  bool connected() const noexcept { return conn_ != nullptr; }

  // Ends the stream (CopyDone) and closes the connection.
  void close() noexcept;

  // "host:port" of the server connected to ("" when none).
  const std::string& peer() const noexcept { return peer_; }

 private:
  // Checks the slot (creating it when missing) against options.start; "" or why not (code set).
  std::string prepare_slot(const PrimaryOptions& options, std::string& code);
  // One message of the COPY stream into out; false when it is nothing to hand over.
  relay::ClientStatus take(const uint8_t* msg, size_t n, relay::Incoming& out, bool& handed);
  // Closes the connection and returns a status of class error with message.
  relay::ClientStatus fail(relay::ClientError error, std::string message, std::string code = {});

  pq::Connection conn_;
  pq::CopyBuffer message_;  // the message out.frame views
  std::string peer_;
  relay::proto::Welcome welcome_;
  uint64_t last_key_ = 0;       // highest frame key handed over
  uint64_t last_position_ = 0;  // highest keepalive position handed over
  uint64_t acked_ = 0;
  std::chrono::steady_clock::time_point last_status_{};
};

}  // namespace edgeshard::apply::daemon

// The relay's write path: checks, ordering, markers, group fsync, publication, retention.
#include "walsender_fanout/relay/ingest.hpp"

#include "common/frame_reader.hpp"
#include "common/lsn.hpp"
#include "common/posix_file.hpp"
#include "walsender_fanout/relay/log_line.hpp"

#include <algorithm>

namespace edgeshard::relay {

namespace {

// Whether a parsed frame is a relay marker (a frame outside any transaction: the output plugin
// only sends frames of transactions, and relays never forward markers).
bool is_marker(const frame::Header& h) noexcept { return h.commit_lsn == 0; }

// The KEEPALIVE time of a marker frame (0 when it cannot be read).
int64_t marker_time(std::span<const uint8_t> bytes) {
  frame::Reader reader;
  if (!reader.open(bytes).ok()) return 0;
  frame::MessageCursor cursor = reader.messages();
  frame::Message m;
  while (cursor.next(m)) {
    if (const auto* k = std::get_if<frame::Keepalive>(&m)) return k->time_us;
  }
  return 0;
}

}  // namespace

Ingest::Ingest(FrameLog& log, Registry& registry, PublicationQueue& queue, Options options)
    : log_(log), registry_(registry), queue_(queue), options_(options) {}

IngestResult Ingest::log_failed(const std::string& what, const LogStatus& st) {
  IngestResult r{IngestResult::kLogFailed, what + ": " + st.message};
  if (st.error == LogError::kIo && posix::is_out_of_space(st.sys_errno)) {
    r.kind = IngestResult::kLogBlocked;
    r.sys_errno = st.sys_errno;
    r.path = st.path;
    stats_.log_write_errors.fetch_add(1, std::memory_order_relaxed);
    stats_.log_blocked.store(true, std::memory_order_relaxed);
  }
  return r;
}

namespace {

// The result for a relay.state write that failed: kLogBlocked when the disk is full.
IngestResult state_failed(const StateError& e) {
  IngestResult r{IngestResult::kLogFailed, e.what()};
  if (posix::is_out_of_space(e.sys_errno())) {
    r.kind = IngestResult::kLogBlocked;
    r.sys_errno = e.sys_errno();
  }
  return r;
}

}  // namespace

IngestResult Ingest::recover() {
  // Find the last marker: everything after it is an unconfirmed, possibly partial transaction.
  // open() has already read the whole log; scan again only from the newest segment back to the
  // first one holding a marker (a marker closes at most every sync interval, so this is normally
  // the last segment; a segment starts a new key, so a cursor at its base reads exactly it on).
  const std::vector<FrameLog::SegmentInfo> segments = log_.segments();
  const FrameLog::Position written = log_.written();
  FrameLog::Position keep = log_.oldest();
  bool found = false;
  int64_t marker_upstream_time = 0;
  for (size_t i = segments.size(); i-- > 0 && !found;) {
    FrameLog::Cursor cursor;
    if (LogStatus st = log_.open_cursor(segments[i].base_lsn, cursor); !st.ok()) {
      return log_failed("recovery", st);
    }
    FrameLog::Record rec;
    int64_t commit_time = 0;  // of the newest transaction read so far (0: none in this range)
    for (;;) {
      const LogStatus st = cursor.next(rec);
      if (st.error == LogError::kEnd) break;
      if (!st.ok()) return log_failed("recovery", st);
      frame::Header h;
      if (frame::Status fs = frame::parse_header(rec.frame, h); !fs.ok()) {
        return {IngestResult::kLogFailed,
                std::string("recovery: a logged frame has a bad header: ") + fs.message};
      }
      if (is_marker(h)) {
        found = true;
        keep = {rec.lsn, cursor.position()};
        last_commit_time_ = commit_time;
        marker_upstream_time = marker_time(rec.frame);
      } else {
        commit_time = h.commit_time_us;
      }
    }
  }
  if (keep.records != written.records) {
    log(Level::kWarning, "log_tail_cut",
        {{"records", std::to_string(written.records - keep.records)},
         {"after", format_lsn(keep.lsn)}});
    if (LogStatus st = log_.truncate_to(keep); !st.ok()) return log_failed("recovery", st);
  }
  position_ = last_key_ = keep.lsn;
  stats_.position = position_;
  stats_.received_key = position_;
  stats_.commit_time_us = last_commit_time_;
  if (found) {
    // relay.state may be older than the log (or lost): the log itself holds everything from its
    // oldest record on, and nothing below it.
    try {
      registry_.raise_floor(log_.oldest_lsn());
    } catch (const StateError& e) {
      return {IngestResult::kLogFailed, e.what()};
    }
    queue_.push({{}, keep.records, position_, last_commit_time_, marker_upstream_time});
  }
  return {};
}

IngestResult Ingest::begin_stream(uint64_t start, Clock::time_point now) {
  if (log_.written().records > 0) return {};
  // An empty log: everything from start on will come; record it before anything is confirmed.
  try {
    registry_.raise_floor(start);
  } catch (const StateError& e) {
    return state_failed(e);
  }
  return commit(start, 0, now);
}

bool Ingest::due(Clock::time_point now) const {
  return now - last_sync_ >= options_.sync_interval || pending_bytes_ >= options_.window_bytes / 4;
}

IngestResult Ingest::append(uint64_t key, std::span<const uint8_t> bytes, bool marker,
                            const frame::Header& h) {
  const uint64_t ordinal = log_.written().records;
  if (LogStatus st = log_.append(key, bytes); !st.ok()) return log_failed("append", st);
  last_key_ = key;
  candidate_ = 0;
  ++pending_records_;
  pending_bytes_ += bytes.size();
  FrameRef f(new SharedFrame);
  f->ordinal = ordinal;
  f->key = key;
  f->commit_time_us = h.commit_time_us;
  f->marker = marker;
  f->many_tenants = h.many_tenants;
  if (!h.many_tenants) f->tenant.assign(h.tenant_key);
  f->wire.resize(proto::kFramePrefixBytes + bytes.size());
  proto::encode_frame_prefix(key, bytes.size(), f->wire.data());
  std::copy(bytes.begin(), bytes.end(), f->wire.begin() + proto::kFramePrefixBytes);
  unpublished_bytes_ += f->wire.size();
  unpublished_.push_back(std::move(f));
  // Bounded memory: only the newest frames wait for the publication; subscribers read older
  // ones from the log.
  while (unpublished_bytes_ > options_.window_bytes && unpublished_.size() > 1) {
    unpublished_bytes_ -= unpublished_.front()->wire.size();
    unpublished_.pop_front();
  }
  return {};
}

IngestResult Ingest::commit(uint64_t position, int64_t upstream_time_us, Clock::time_point now) {
  frame::Fields fields;
  fields.many_tenants = true;
  fields.last = true;
  fields.first_lsn = fields.last_lsn = position;
  marker_writer_.keepalive(position, upstream_time_us);
  const std::span<const uint8_t> bytes = marker_writer_.seal(fields);
  frame::Header h;
  if (frame::Status fs = frame::parse_header(bytes, h); !fs.ok()) {
    return {IngestResult::kLogFailed, std::string("marker frame: ") + fs.message};
  }
  if (IngestResult r = append(position, bytes, /*marker=*/true, h); !r.ok()) return r;
  if (LogStatus st = log_.sync(); !st.ok()) return log_failed("sync", st);
  if (stats_.log_blocked.exchange(false, std::memory_order_relaxed)) {
    log(Level::kInfo, "log_write_resumed", {{"position", format_lsn(position)}});
  }
  position_ = position;
  pending_records_ = pending_bytes_ = 0;
  last_sync_ = now;
  Publication p;
  p.frames.assign(std::make_move_iterator(unpublished_.begin()),
                  std::make_move_iterator(unpublished_.end()));
  p.end_ordinal = log_.written().records;
  p.position = position;
  p.commit_time_us = last_commit_time_;
  p.upstream_time_us = upstream_time_us;
  unpublished_.clear();
  unpublished_bytes_ = 0;
  queue_.push(std::move(p));
  stats_.syncs.fetch_add(1, std::memory_order_relaxed);
  stats_.position.store(position, std::memory_order_relaxed);
  stats_.commit_time_us.store(last_commit_time_, std::memory_order_relaxed);
  return {};
}

IngestResult Ingest::on_frame(std::span<const uint8_t> bytes, Clock::time_point now) {
  frame::Header h;
  frame::Status fs = frame::parse_header(bytes, h);
  if (fs.ok() && h.frame_length != bytes.size()) {
    return {IngestResult::kBadInput, "a message holds " + std::to_string(bytes.size()) +
                                         " bytes but its frame " + std::to_string(h.frame_length)};
  }
  if (fs.ok() && frame::checksum(bytes.data() + h.header_length, h.stored_length) !=
                     h.payload_checksum) {
    fs = {frame::Error::kPayloadChecksum, h.header_length, "payload checksum mismatch"};
  }
  if (!fs.ok()) {
    return {IngestResult::kBadInput, std::string("corrupt frame from upstream, refused: ") +
                                         fs.message + " [" + frame::error_name(fs.error) + "]"};
  }
  if (is_marker(h)) {
    return {IngestResult::kBadInput, "upstream sent a frame outside any transaction"};
  }
  const uint64_t key = h.commit_lsn;
  stats_.frames_in.fetch_add(1, std::memory_order_relaxed);
  stats_.bytes_in.fetch_add(bytes.size(), std::memory_order_relaxed);
  if (key < position_) {
    // Sent again after a reconnect: already in the log, durable and visible.
    stats_.duplicates_skipped.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  if (key < last_key_) {
    return {IngestResult::kBadInput, "upstream keys went backwards: " + format_lsn(key) +
                                         " after " + format_lsn(last_key_)};
  }
  if (key > last_key_ && pending_records_ > 0 && due(now)) {
    // Every transaction below key is complete: a boundary.
    if (IngestResult r = commit(key, 0, now); !r.ok()) return r;
  }
  if (pending_records_ == 0) first_pending_ = now;
  last_commit_time_ = h.commit_time_us;
  stats_.received_key.store(key, std::memory_order_relaxed);
  return append(key, bytes, /*marker=*/false, h);
}

IngestResult Ingest::on_position(uint64_t position, int64_t upstream_time_us,
                                 Clock::time_point now) {
  // Only a position past every appended key closes the pending transactions.
  if (position <= position_ || (pending_records_ > 0 && position <= last_key_)) return {};
  if (stats_.received_key.load(std::memory_order_relaxed) < position) {
    stats_.received_key.store(position, std::memory_order_relaxed);
  }
  candidate_ = position;
  candidate_time_ = upstream_time_us;
  return tick(now);
}

IngestResult Ingest::tick(Clock::time_point now) {
  if (candidate_ == 0 || !due(now)) return {};
  const uint64_t p = candidate_;
  candidate_ = 0;
  return commit(p, candidate_time_, now);
}

bool Ingest::wants_position(Clock::time_point now) const {
  return pending_records_ > 0 && candidate_ == 0 && now - first_pending_ >= options_.sync_interval;
}

IngestResult Ingest::on_disconnect() {
  candidate_ = 0;
  if (log_.failed()) {
    // A write or sync failed (disk full): back to the durable end, a partly written record too.
    if (LogStatus st = log_.repair(); !st.ok()) return log_failed("repair", st);
  } else if (pending_records_ == 0) {
    return {};
  } else if (LogStatus st = log_.truncate_to(log_.durable()); !st.ok()) {
    return log_failed("truncate", st);
  }
  last_key_ = position_;
  pending_records_ = pending_bytes_ = 0;
  unpublished_.clear();
  unpublished_bytes_ = 0;
  return {};
}

IngestResult Ingest::apply_retention(uint64_t acked, uint64_t min_bytes, uint64_t max_bytes) {
  // Segments are dropped oldest first; the floor is raised (and saved) to the first record that
  // will remain before any file goes, so a crash in between never serves a start below it.
  const std::vector<FrameLog::SegmentInfo> segments = log_.segments();
  const uint64_t target = std::min(acked, position_);
  uint64_t total = 0;
  for (const auto& s : segments) total += s.bytes;
  size_t drop = 0;
  // Never the active (last) segment, nor one holding records at or past the visible position
  // (the last marker, and what is not durable yet).
  while (drop + 1 < segments.size() && segments[drop + 1].base_lsn <= position_) {
    const bool over_max = total > max_bytes;
    const bool acked_away = total > min_bytes && segments[drop + 1].base_lsn <= target;
    if (!over_max && !acked_away) break;
    total -= segments[drop].bytes;
    ++drop;
  }
  if (drop == 0) return {};
  const uint64_t new_floor = segments[drop].base_lsn;
  try {
    registry_.raise_floor(new_floor);
  } catch (const StateError& e) {
    // Without the floor saved nothing may be dropped; retention is tried again later. A full
    // disk is said once, not every second.
    if (!posix::is_out_of_space(e.sys_errno())) return {IngestResult::kLogFailed, e.what()};
    if (retention_error_ != e.what()) {
      log(Level::kWarning, "retention_deferred",
          {{"error", posix::errno_text(e.sys_errno())}, {"detail", e.what()}});
      retention_error_ = e.what();
    }
    return {};
  }
  retention_error_.clear();
  size_t dropped = 0;
  if (LogStatus st = log_.drop_segments_before(new_floor, &dropped); !st.ok()) {
    return log_failed("retention", st);
  }
  log(Level::kInfo, "retention",
      {{"segments_dropped", std::to_string(dropped)}, {"floor", format_lsn(new_floor)},
       {"log_bytes", std::to_string(log_.total_bytes())}});
  return {};
}

}  // namespace edgeshard::relay

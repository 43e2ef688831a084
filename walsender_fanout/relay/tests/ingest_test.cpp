// Ingest: whole transactions become visible at markers, duplicates after a reconnect are
// skipped, corrupt or disordered input is refused, recovery cuts what follows the last marker,
// retention raises the floor before it drops segments.
#include "walsender_fanout/relay/tests/test_frames.hpp"
#include "common/posix_file.hpp"
#include "common/testing/temp_dir.hpp"
#include "walsender_fanout/relay/ingest.hpp"

#include "common/frame_reader.hpp"
#include "common/frame_writer.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

namespace edgeshard::relay {
namespace {

namespace fs = std::filesystem;

using edgeshard::testing_support::TempDir;


// A relay's write path over a log in a temporary directory.
class IngestTest : public testing::Test {
 protected:
  // Opens the log and the registry, builds Ingest with a zero sync interval.
  void SetUp() override { reopen(); }

  // (Re)opens everything on the same directory, as a restart does.
  void reopen(uint64_t segment_bytes = 1u << 20) {
    ingest_.reset();
    log_.reset();
    FrameLog::Options o;
    o.segment_bytes = segment_bytes;
    log_.emplace(FrameLog::open(dir_.path() / "log", o));
    registry_.emplace(dir_.path());
    Ingest::Options io;
    io.sync_interval = std::chrono::milliseconds(0);
    io.window_bytes = window_bytes_;
    ingest_.emplace(*log_, *registry_, queue_, io);
  }

  // Everything published since the last call.
  std::vector<Publication> drain() {
    std::vector<Publication> out;
    queue_.drain(out);
    return out;
  }

  // Every record visible to a cursor from 0: (key, is marker, tenant).
  std::vector<std::string> visible() {
    std::vector<std::string> out;
    FrameLog::Cursor c;
    EXPECT_TRUE(log_->open_cursor(log_->oldest_lsn(), c).ok());
    FrameLog::Record rec;
    while (c.next(rec).ok()) {
      frame::Header h;
      const frame::Status fs = frame::parse_header(rec.frame, h);
      EXPECT_TRUE(fs.ok()) << fs.message << " at " << rec.lsn;
      std::string line = std::to_string(rec.lsn);
      line += ' ';
      line += h.commit_lsn == 0 ? std::string_view("marker") : h.tenant_key;
      out.push_back(std::move(line));
    }
    return out;
  }

  TempDir dir_;
  uint64_t window_bytes_ = 64u << 20;
  PublicationQueue queue_;
  std::optional<FrameLog> log_;
  std::optional<Registry> registry_;
  std::optional<Ingest> ingest_;
  Clock::time_point now_ = Clock::now();
};

TEST_F(IngestTest, TransactionsBecomeVisibleAtMarkers) {
  ASSERT_TRUE(ingest_->begin_stream(50, now_).ok());
  EXPECT_EQ(registry_->floor(), 50u);
  EXPECT_EQ(ingest_->position(), 50u);
  ASSERT_TRUE(ingest_->on_frame(make_frame(100, "a", 0, false), now_).ok());
  ASSERT_TRUE(ingest_->on_frame(make_frame(100, "a", 1, true), now_).ok());
  ASSERT_TRUE(ingest_->on_frame(make_frame(100, "b"), now_).ok());
  // Transaction 100 is complete only when something at a higher key shows up.
  EXPECT_EQ(ingest_->position(), 50u);
  EXPECT_TRUE(ingest_->wants_position(now_));
  ASSERT_TRUE(ingest_->on_frame(make_frame(200, "a"), now_).ok());
  EXPECT_EQ(ingest_->position(), 200u);
  EXPECT_EQ(visible(), (std::vector<std::string>{"50 marker", "100 a", "100 a", "100 b", "200 marker"}));
  // A keepalive position past the last key closes transaction 200.
  ASSERT_TRUE(ingest_->on_position(250, 5, now_).ok());
  EXPECT_EQ(ingest_->position(), 250u);
  EXPECT_EQ(visible().back(), "250 marker");
  // A position not past the last key closes nothing.
  ASSERT_TRUE(ingest_->on_frame(make_frame(300, "c"), now_).ok());
  ASSERT_TRUE(ingest_->on_position(300, 6, now_).ok());
  EXPECT_EQ(ingest_->position(), 250u);

  const auto pubs = drain();
  ASSERT_EQ(pubs.size(), 3u);
  EXPECT_EQ(pubs[0].position, 50u);
  EXPECT_EQ(pubs[1].position, 200u);
  ASSERT_EQ(pubs[1].frames.size(), 4u);  // three frames of 100 and the marker
  EXPECT_EQ(pubs[1].frames[0]->ordinal, 1u);
  EXPECT_EQ(pubs[1].frames[0]->tenant, "a");
  EXPECT_TRUE(pubs[1].frames[3]->marker);
  EXPECT_EQ(pubs[1].end_ordinal, 5u);
  EXPECT_EQ(pubs[2].upstream_time_us, 5);
  // The shared buffer is a whole FRAME message of the subscriber protocol.
  uint64_t key = 0;
  std::span<const uint8_t> frame;
  std::string why;
  proto::MessageView m;
  size_t used = 0;
  ASSERT_EQ(proto::split_message(pubs[1].frames[0]->wire, proto::kMaxRelayBody, m, used), proto::Split::kMessage);
  ASSERT_TRUE(proto::decode_frame(m.body, key, frame, why));
  EXPECT_EQ(key, 100u);
  EXPECT_EQ(std::vector<uint8_t>(frame.begin(), frame.end()), make_frame(100, "a", 0, false));
}

TEST_F(IngestTest, ReconnectCutsThePartialTransactionAndSkipsWhatIsResent) {
  ASSERT_TRUE(ingest_->begin_stream(50, now_).ok());
  ASSERT_TRUE(ingest_->on_frame(make_frame(100, "a"), now_).ok());
  ASSERT_TRUE(ingest_->on_frame(make_frame(200, "a", 0, false), now_).ok());
  ASSERT_EQ(ingest_->position(), 200u);
  // The connection drops inside transaction 200: its first frame is cut.
  ASSERT_TRUE(ingest_->on_disconnect().ok());
  EXPECT_EQ(visible(), (std::vector<std::string>{"50 marker", "100 a", "200 marker"}));
  // The primary sends 100 again (confirmed position not yet past it), then 200 whole.
  ASSERT_TRUE(ingest_->on_frame(make_frame(100, "a"), now_).ok());
  EXPECT_EQ(ingest_->stats().duplicates_skipped.load(), 1u);
  ASSERT_TRUE(ingest_->on_frame(make_frame(200, "a", 0, false), now_).ok());
  ASSERT_TRUE(ingest_->on_frame(make_frame(200, "a", 1, true), now_).ok());
  ASSERT_TRUE(ingest_->on_position(260, 0, now_).ok());
  EXPECT_EQ(visible(), (std::vector<std::string>{"50 marker", "100 a", "200 marker", "200 a", "200 a", "260 marker"}));
}

// The disk fills in the middle of a transaction: Ingest says kLogBlocked (not kLogFailed) with
// the OS error and the file, the durable position (what is confirmed upstream) stays at the last
// marker, on_disconnect() repairs the log, and once there is room the resent transactions are
// logged once each.
TEST_F(IngestTest, DiskFullBlocksKeepsTheDurablePositionAndResumes) {
  ASSERT_TRUE(ingest_->begin_stream(50, now_).ok());
  ASSERT_TRUE(ingest_->on_frame(make_frame(100, "a"), now_).ok());
  ASSERT_TRUE(ingest_->on_position(150, 0, now_).ok());
  ASSERT_EQ(ingest_->position(), 150u);
  posix::set_write_budget(10);
  IngestResult r = ingest_->on_frame(make_frame(200, "a"), now_);
  EXPECT_EQ(r.kind, IngestResult::kLogBlocked) << r.message;
  EXPECT_EQ(r.sys_errno, ENOSPC);
  EXPECT_NE(r.message.find("No space left on device"), std::string::npos) << r.message;
  EXPECT_NE(r.path.find(".log"), std::string::npos) << r.path;
  EXPECT_EQ(ingest_->position(), 150u);
  EXPECT_TRUE(ingest_->stats().log_blocked.load());
  EXPECT_EQ(ingest_->stats().log_write_errors.load(), 1u);
  // Still full: the repair only cuts, so it works; the position stays.
  ASSERT_TRUE(ingest_->on_disconnect().ok());
  EXPECT_EQ(ingest_->position(), 150u);
  posix::set_write_budget(posix::kUnlimitedWrites);
  // The upstream resends from 150: 200 and then 300, each logged once.
  ASSERT_TRUE(ingest_->on_frame(make_frame(200, "a"), now_).ok());
  ASSERT_TRUE(ingest_->on_frame(make_frame(300, "b"), now_).ok());
  ASSERT_TRUE(ingest_->on_position(350, 0, now_).ok());
  EXPECT_FALSE(ingest_->stats().log_blocked.load());
  EXPECT_EQ(visible(), (std::vector<std::string>{"50 marker", "100 a", "150 marker", "200 a", "300 marker",
                                                 "300 b", "350 marker"}));
  reopen();
  ASSERT_TRUE(ingest_->recover().ok());
  EXPECT_EQ(ingest_->position(), 350u);
  EXPECT_EQ(visible().size(), 7u);
}

TEST_F(IngestTest, RecoveryCutsWhatFollowsTheLastMarker) {
  ASSERT_TRUE(ingest_->begin_stream(50, now_).ok());
  ASSERT_TRUE(ingest_->on_frame(make_frame(100, "a"), now_).ok());
  ASSERT_TRUE(ingest_->on_frame(make_frame(200, "b"), now_).ok());
  ASSERT_TRUE(ingest_->on_frame(make_frame(300, "c"), now_).ok());  // marker 300, then 300 c
  // 300 c reaches the disk (the kernel writes dirty pages when it likes) but no marker follows.
  ASSERT_TRUE(log_->sync().ok());
  drain();
  reopen();
  ASSERT_TRUE(ingest_->recover().ok());
  EXPECT_EQ(ingest_->position(), 300u);
  EXPECT_EQ(visible(), (std::vector<std::string>{"50 marker", "100 a", "200 marker", "200 b", "300 marker"}));
  const auto pubs = drain();
  ASSERT_EQ(pubs.size(), 1u);
  EXPECT_EQ(pubs[0].end_ordinal, 5u);
  EXPECT_EQ(pubs[0].position, 300u);
  // The stream resumes after the marker; begin_stream does nothing on a non-empty log.
  ASSERT_TRUE(ingest_->begin_stream(10, now_).ok());
  EXPECT_EQ(registry_->floor(), 50u);
  ASSERT_TRUE(ingest_->on_frame(make_frame(300, "c"), now_).ok());
  ASSERT_TRUE(ingest_->on_position(400, 0, now_).ok());
  EXPECT_EQ(visible().size(), 7u);
}

TEST_F(IngestTest, RecoveryFindsAMarkerSegmentsBackAndCutsUnmarkedTransactionsAcrossSegments) {
  reopen(4096);
  {
    // A long sync interval: transactions 200.. follow the marker without one of their own.
    Ingest::Options io;
    io.sync_interval = std::chrono::hours(1);
    Ingest slow(*log_, *registry_, queue_, io);
    ASSERT_TRUE(slow.begin_stream(50, now_).ok());
    ASSERT_TRUE(slow.on_frame(make_frame(100, "a"), now_).ok());
    ASSERT_TRUE(slow.on_position(150, 0, now_ + std::chrono::hours(2)).ok());  // marker 150
    for (uint64_t key = 200; key <= 1400; key += 100) {
      ASSERT_TRUE(slow.on_frame(make_frame(key, "b", 0, true, 1500), now_ + std::chrono::hours(2)).ok());
    }
    ASSERT_EQ(slow.position(), 150u);
  }
  ASSERT_TRUE(log_->sync().ok());  // the unmarked tail reached the disk anyway
  const size_t segments_with_tail = log_->segment_count();
  ASSERT_GT(segments_with_tail, 2u);
  drain();
  reopen(4096);
  ASSERT_TRUE(ingest_->recover().ok());
  EXPECT_EQ(ingest_->position(), 150u);
  EXPECT_EQ(visible(), (std::vector<std::string>{"50 marker", "100 a", "150 marker"}));
  EXPECT_LT(log_->segment_count(), segments_with_tail);
  const auto pubs = drain();
  ASSERT_EQ(pubs.size(), 1u);
  EXPECT_EQ(pubs[0].end_ordinal, 3u);
}

TEST_F(IngestTest, RefusesCorruptAndDisorderedInput) {
  ASSERT_TRUE(ingest_->begin_stream(50, now_).ok());
  auto bad = make_frame(100, "a");
  bad.back() ^= 1;  // payload byte
  IngestResult r = ingest_->on_frame(bad, now_);
  EXPECT_EQ(r.kind, IngestResult::kBadInput);
  EXPECT_NE(r.message.find("payload_checksum"), std::string::npos) << r.message;
  auto longer = make_frame(100, "a");
  longer.push_back(0);
  EXPECT_EQ(ingest_->on_frame(longer, now_).kind, IngestResult::kBadInput);
  ASSERT_TRUE(ingest_->on_frame(make_frame(200, "a"), now_).ok());
  r = ingest_->on_frame(make_frame(150, "a"), now_);
  EXPECT_EQ(r.kind, IngestResult::kBadInput);
  EXPECT_NE(r.message.find("backwards"), std::string::npos) << r.message;
  // A frame outside any transaction (a marker) never comes from upstream.
  frame::Writer w(frame::Compression::kNone);
  w.keepalive(500, 1);
  frame::Fields f;
  f.many_tenants = f.last = true;
  f.first_lsn = f.last_lsn = 500;
  const auto k = w.seal(f);
  EXPECT_EQ(ingest_->on_frame(k, now_).kind, IngestResult::kBadInput);
  EXPECT_EQ(visible(), (std::vector<std::string>{"50 marker"}));
}

TEST_F(IngestTest, GroupsSyncsByInterval) {
  Ingest::Options io;
  io.sync_interval = std::chrono::milliseconds(100);
  Ingest slow(*log_, *registry_, queue_, io);
  ASSERT_TRUE(slow.begin_stream(50, now_).ok());
  ASSERT_TRUE(slow.on_frame(make_frame(100, "a"), now_).ok());
  ASSERT_TRUE(slow.on_frame(make_frame(200, "a"), now_ + std::chrono::milliseconds(10)).ok());
  EXPECT_EQ(slow.position(), 50u) << "a boundary inside the interval does not sync";
  EXPECT_FALSE(slow.wants_position(now_ + std::chrono::milliseconds(10)));
  EXPECT_TRUE(slow.wants_position(now_ + std::chrono::milliseconds(150)));
  ASSERT_TRUE(slow.on_position(300, 0, now_ + std::chrono::milliseconds(20)).ok());
  EXPECT_EQ(slow.position(), 50u) << "the keepalive's boundary waits for the interval";
  ASSERT_TRUE(slow.tick(now_ + std::chrono::milliseconds(120)).ok());
  EXPECT_EQ(slow.position(), 300u);
  EXPECT_EQ(slow.stats().syncs.load(), 2u);
}

TEST_F(IngestTest, KeepsOnlyTheNewestFramesOfABigPublicationInMemory) {
  window_bytes_ = 4096;
  reopen();
  ASSERT_TRUE(ingest_->begin_stream(50, now_).ok());
  drain();
  for (uint32_t i = 0; i < 20; ++i) {
    ASSERT_TRUE(ingest_->on_frame(make_frame(100, "a", i, i == 19, 500), now_).ok());
  }
  ASSERT_TRUE(ingest_->on_position(200, 0, now_).ok());
  const auto pubs = drain();
  ASSERT_EQ(pubs.size(), 1u);
  EXPECT_EQ(pubs[0].end_ordinal, 22u);
  // Over budget: the frames are left to the log; what is held ends at end_ordinal.
  ASSERT_FALSE(pubs[0].frames.empty());
  EXPECT_EQ(pubs[0].frames.back()->ordinal, 21u);
  EXPECT_GT(pubs[0].frames.front()->ordinal, 1u);
}

TEST_F(IngestTest, RetentionRaisesTheFloorThenDropsAckedSegments) {
  reopen(4096);
  ASSERT_TRUE(ingest_->begin_stream(50, now_).ok());
  for (uint64_t key = 100; key <= 2000; key += 100) {
    ASSERT_TRUE(ingest_->on_frame(make_frame(key, "a", 0, true, 1500), now_).ok());
  }
  ASSERT_TRUE(ingest_->on_position(2100, 0, now_).ok());
  const size_t before = log_->segment_count();
  ASSERT_GT(before, 4u);
  // Nobody acked anything yet: nothing goes below the floor's subscriber.
  ASSERT_TRUE(ingest_->apply_retention(50, 0, 1u << 30).ok());
  EXPECT_EQ(log_->segment_count(), before);
  // Acked up to 1000: segments wholly below it go; the floor is their successor's first key.
  ASSERT_TRUE(ingest_->apply_retention(1000, 0, 1u << 30).ok());
  EXPECT_LT(log_->segment_count(), before);
  EXPECT_EQ(registry_->floor(), log_->oldest_lsn());
  EXPECT_LE(registry_->floor(), 1000u);
  // The size cap drops even what nobody acked.
  ASSERT_TRUE(ingest_->apply_retention(0, 0, 3 * 4096).ok());
  EXPECT_LE(log_->total_bytes(), 3u * 4096 + 4096);
  EXPECT_EQ(registry_->floor(), log_->oldest_lsn());
  // The floor survives a restart.
  reopen(4096);
  EXPECT_EQ(registry_->floor(), log_->oldest_lsn());
}

}  // namespace
}  // namespace edgeshard::relay

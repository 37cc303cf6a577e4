// System tests of replicas that repair themselves (issue 11): a 3-node cluster of real cohortd processes, a live
// client writing distinct keys all along, and a fault on a node's disk or on every process. Each test ends by
// reading back every write the client saw acknowledged and by checking that every replica holds the same state
// at the same log position. Recovery figures (catch-up time, time to a leader) are printed, and asserted only
// with generous bounds, scaled under the sanitizers.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "cluster_harness.h"
#include "storage/format.h"

namespace cohort::testing {
namespace {

// A few hundred writes a second: enough traffic that every fault lands in the middle of replication, little
// enough that two shared cores keep up under the sanitizers.
constexpr int kWritesPerSecond = 250;

// --- the live client ------------------------------------------------------------------------------------------

/// A client that keeps writing while the test breaks things: a thread puts keys `<prefix><n>` (n = 0, 1, ...)
/// with value_for(n) at a steady rate. It never makes up for lost time in a burst, and never gives up on a key:
/// a put the client does not accept (back-pressure) is offered again.
class LiveWriter {
 public:
  LiveWriter(std::vector<std::string> endpoints, std::string prefix)
      : client_(std::move(endpoints)), prefix_(std::move(prefix)) {
    thread_ = std::jthread([this](const std::stop_token& stop) { write(stop); });
  }
  ~LiveWriter() { stop(); }
  LiveWriter(const LiveWriter&) = delete;
  LiveWriter& operator=(const LiveWriter&) = delete;

  KvClient& client() { return client_; }

  /// Stops offering; what was offered keeps its fate (see KvClient::wait_all_acked).
  void stop() {
    if (!thread_.joinable()) return;
    thread_.request_stop();
    thread_.join();
  }

  std::size_t acked() const { return client_.acked(); }
  std::uint64_t offered() const { return offered_; }
  bool closed() const { return closed_; }

  /// Waits until at least `count` puts in all are acknowledged.
  bool wait_acked(std::size_t count, Ms timeout) const {
    return eventually([&] { return client_.acked() >= count; }, timeout, 5ms);
  }

  /// Every acknowledged put: key -> value.
  std::map<std::string, std::string> acknowledged() const {
    std::map<std::string, std::string> writes;
    for (const auto seq : client_.acked_seqs()) {
      const auto request = client_.request(seq);
      if (request) writes[request->key] = request->value;
    }
    return writes;
  }

 private:
  void write(const std::stop_token& stop) {
    const auto period = std::chrono::duration_cast<Clock::duration>(std::chrono::seconds(1)) / kWritesPerSecond;
    auto next = Clock::now();
    std::uint64_t n = 0;
    while (!stop.stop_requested()) {
      if (client_.offer_put(fmt::format("{}{}", prefix_, n), value_for(n), 200ms) != 0) {
        offered_ = ++n;
      } else if (client_.client().state() == ClientState::closed) {
        closed_ = true;
        return;
      }
      next += period;
      const auto now = Clock::now();
      if (next < now - 100ms) next = now;  // fell behind (back-pressure, a slow machine): no burst afterwards
      std::this_thread::sleep_until(next);
    }
  }

  KvClient client_;
  std::string prefix_;
  std::atomic<std::uint64_t> offered_{0};
  std::atomic<bool> closed_{false};
  std::jthread thread_;  // last: stopped before the client goes
};

// --- the segment files ----------------------------------------------------------------------------------------

/// One record of a segment file, as far as these tests need it (storage/format.h has the layout).
struct RecordOnDisk {
  std::uint64_t offset = 0;  // of its header, from the start of the file
  std::uint32_t body_length = 0;
  std::uint64_t index = 0;
  std::uint64_t durable_before = 0;
};

std::uint64_t read_u64(const std::vector<char>& bytes, std::size_t at) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < 8; ++i) value |= std::uint64_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
  return value;
}

std::vector<char> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The segment files in `dir`, in log order (their names carry the first index, zero-padded).
std::vector<std::filesystem::path> segment_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> segments;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("log-") && name.ends_with(".seg")) segments.push_back(entry.path());
  }
  std::sort(segments.begin(), segments.end());
  return segments;
}

/// The records of a segment file, in order, up to the first that does not hold the next index (the end of what
/// was written; the file may be longer). The checksums are not checked: the files are intact here.
std::vector<RecordOnDisk> records_of(const std::filesystem::path& segment) {
  const auto bytes = read_file(segment);
  // `log-<first index, 20 digits>.seg`
  std::uint64_t expected = std::stoull(segment.filename().string().substr(4, 20));
  std::vector<RecordOnDisk> records;
  std::size_t offset = storage::kSegmentHeaderSize;
  while (offset + storage::kRecordHeaderSize <= bytes.size()) {
    RecordOnDisk record;
    record.offset = offset;
    record.body_length = static_cast<std::uint32_t>(read_u64(bytes, offset) & 0xFFFF'FFFFU);
    record.index = read_u64(bytes, offset + 8);
    record.durable_before = read_u64(bytes, offset + 24);
    if (record.index != expected || offset + storage::record_size(record.body_length) > bytes.size()) break;
    records.push_back(record);
    ++expected;
    offset += storage::record_size(record.body_length);
  }
  return records;
}

/// A record in the middle of `records` that a later record proves durable (its durable_before reaches it), with
/// a body to damage; nullopt if there is none. `proof` is set to the later record's index.
std::optional<RecordOnDisk> durable_middle_record(const std::vector<RecordOnDisk>& records, std::uint64_t& proof) {
  // The highest index a later record claims durable (recovery trusts only a claim below the claimant's own index).
  std::uint64_t claimed = 0;
  for (const auto& record : records) {
    if (record.durable_before < record.index && record.durable_before > claimed) {
      claimed = record.durable_before;
      proof = record.index;
    }
  }
  std::vector<RecordOnDisk> candidates;
  for (const auto& record : records)
    if (record.index <= claimed && record.body_length > 0) candidates.push_back(record);
  if (candidates.empty()) return std::nullopt;
  return candidates[candidates.size() / 2];
}

/// Inverts one byte of a file in place.
void flip_byte(const std::filesystem::path& file, std::uint64_t offset) {
  std::fstream io(file, std::ios::binary | std::ios::in | std::ios::out);
  io.seekg(static_cast<std::streamoff>(offset));
  char byte = 0;
  io.read(&byte, 1);
  byte = static_cast<char>(~static_cast<unsigned char>(byte));
  io.seekp(static_cast<std::streamoff>(offset));
  io.write(&byte, 1);
  io.flush();
}

/// Removes everything inside `dir`, and keeps `dir` itself.
void empty_directory(const std::filesystem::path& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) std::filesystem::remove_all(entry.path());
}

// --- the fixture ----------------------------------------------------------------------------------------------

class RepairTest : public ClusterTest {
 protected:
  std::uint32_t some_follower(std::uint32_t leader) const { return leader == 1 ? 2 : 1; }

  /// Waits until node `id` logs that it votes again (it caught up with the leader as a recovering node); returns
  /// the line, and the milliseconds since `since`.
  std::optional<std::pair<std::string, long long>> wait_votes_again(std::uint32_t id, Clock::time_point since) {
    const auto line = node(id).process->wait_stderr("caught up with leader", deadline());
    if (!line) return std::nullopt;
    return std::pair{*line, ms_since(since)};
  }

  /// Waits until node `id` has applied everything up to `index`; returns the milliseconds since `since`.
  std::optional<long long> wait_applied(std::uint32_t id, std::uint64_t index, Clock::time_point since) {
    std::optional<long long> took;
    eventually(
        [&] {
          const auto result = status(id);
          if (!result.ok || result.status.applied_index < index) return false;
          took = ms_since(since);
          return true;
        },
        deadline());
    return took;
  }

  /// Lets the writer make `count` more acknowledged writes, stops it, and checks that every write it offered was
  /// applied, every acknowledged one reads back, and every replica converges on one state.
  void finish(LiveWriter& writer, std::size_t count) {
    EXPECT_TRUE(writer.wait_acked(writer.acked() + count, deadline()))
        << "the cluster stopped taking writes at " << writer.acked() << " acks";
    writer.stop();
    EXPECT_FALSE(writer.closed()) << "the client closed: " << to_string(writer.client().client().state());
    EXPECT_TRUE(writer.client().wait_all_acked(deadline()))
        << writer.acked() << " of " << writer.offered() << " writes acknowledged";
    const auto failures = writer.client().failures();
    EXPECT_TRUE(failures.empty()) << failures.size() << " writes not applied, first: seq " << failures.begin()->first
                                  << " " << failures.begin()->second;
    expect_values(writer.acknowledged());
    EXPECT_TRUE(wait_converged({1, 2, 3}, deadline()));
  }
};

// --- the tests ------------------------------------------------------------------------------------------------

// Issue 11's first bug: a follower that lost its whole data directory stayed at commit 0 for ever. It must come
// back as a recovering node, catch up from the leader, vote again, and then be able to make a majority.
TEST_F(RepairTest, AFollowerWhoseDataDirectoryIsWipedCatchesUpUnderALiveClient) {
  ASSERT_TRUE(start_cluster());
  const auto leader = wait_leader(deadline());
  ASSERT_TRUE(leader);
  LiveWriter writer(client_endpoints(), "wiped-");
  ASSERT_TRUE(writer.wait_acked(300, deadline())) << "only " << writer.acked() << " acks";

  const std::uint32_t wiped = some_follower(leader->node_id);
  ASSERT_TRUE(kill_node(wiped));
  std::filesystem::remove_all(node(wiped).data_dir);
  // The other two keep serving while it is gone.
  ASSERT_TRUE(writer.wait_acked(writer.acked() + 200, deadline())) << "no writes with node " << wiped << " down";

  const auto leader_now = wait_leader(deadline());
  ASSERT_TRUE(leader_now);
  const std::uint64_t target = leader_now->commit_index;
  const auto restarted = Clock::now();
  ASSERT_TRUE(restart(wiped));
  const std::string started = node(wiped).process->stderr_text();
  EXPECT_TRUE(contains(started, "log recovered: 0 entries, term 0, standing fresh (new data directory)")) << started;
  const auto applied_ms = wait_applied(wiped, target, restarted);
  EXPECT_TRUE(applied_ms) << "node " << wiped << " never applied index " << target;
  const auto votes = wait_votes_again(wiped, restarted);
  ASSERT_TRUE(votes) << node(wiped).process->stderr_text();
  const std::string log = node(wiped).process->stderr_text();
  EXPECT_TRUE(contains(log, "rejoins it as a recovering node")) << log;
  std::printf(
      "[ info ] wiped node %u restarted empty: it applied the leader's commit index %llu after %lld ms and votes "
      "again after %lld ms (%s)\n",
      wiped, static_cast<unsigned long long>(target), applied_ms.value_or(-1), votes->second, votes->first.c_str());

  // It votes again: with the leader gone, the wiped node and the last one make the majority that elects the next.
  ASSERT_TRUE(writer.wait_acked(writer.acked() + 200, deadline()));
  const auto before = wait_leader(deadline());
  ASSERT_TRUE(before);
  const auto killed = Clock::now();
  ASSERT_TRUE(kill_node(before->node_id));
  const auto after = wait_leader(deadline(), ids_except(before->node_id));
  ASSERT_TRUE(after);
  std::printf("[ info ] with leader node %u killed, node %u leads term %llu after %lld ms\n", before->node_id,
              after->node_id, static_cast<unsigned long long>(after->term), ms_since(killed));
  ASSERT_TRUE(writer.wait_acked(writer.acked() + 200, deadline()))
      << "no writes committed by node " << wiped << " and its last peer";

  ASSERT_TRUE(restart(before->node_id));
  finish(writer, 200);
}

// A record proven durable (a later record's durable_before reaches it) is damaged while its follower is stopped.
// The node used to refuse to start; now it cuts its log there, says DATA LOSS with the place, rejoins as a
// recovering node and repairs its log from the leader, with no operator action.
TEST_F(RepairTest, AFollowerWithADamagedDurableRecordRepairsItselfFromTheCluster) {
  ASSERT_TRUE(start_cluster({"--sync", "fsync"}));
  const auto leader = wait_leader(deadline());
  ASSERT_TRUE(leader);
  LiveWriter writer(client_endpoints(), "damaged-");
  ASSERT_TRUE(writer.wait_acked(500, deadline())) << "only " << writer.acked() << " acks";

  const std::uint32_t damaged = some_follower(leader->node_id);
  node(damaged).process->signal(SIGTERM);
  ASSERT_EQ(node(damaged).process->wait_exit(deadline()), 0) << node(damaged).process->stderr_text();

  // The middle of the log, proven durable by a later record.
  const auto segments = segment_files(node(damaged).data_dir);
  ASSERT_FALSE(segments.empty()) << "no segment in " << node(damaged).data_dir;
  std::vector<RecordOnDisk> records;
  std::filesystem::path segment;
  std::uint64_t proof = 0;
  std::optional<RecordOnDisk> victim;
  for (const auto& file : segments) {
    records = records_of(file);
    victim = durable_middle_record(records, proof);
    if (victim) {
      segment = file;
      break;
    }
  }
  ASSERT_TRUE(victim) << "no record proven durable in " << node(damaged).data_dir;
  ASSERT_GE(records.back().index - victim->index, 50U) << "too few records after index " << victim->index;
  const std::uint64_t entries_before = records.back().index;
  flip_byte(segment, victim->offset + storage::kRecordHeaderSize + victim->body_length / 2);
  std::printf("[ info ] damaged node %u's %s at offset %llu (index %llu of %llu; record %llu proves it durable)\n",
              damaged, segment.filename().c_str(), static_cast<unsigned long long>(victim->offset),
              static_cast<unsigned long long>(victim->index), static_cast<unsigned long long>(entries_before),
              static_cast<unsigned long long>(proof));

  const auto leader_now = wait_leader(deadline());
  ASSERT_TRUE(leader_now);
  const std::uint64_t target = leader_now->commit_index;
  const auto restarted = Clock::now();
  ASSERT_TRUE(restart(damaged)) << "the node refused to start on a damaged durable record";
  const std::string started = node(damaged).process->stderr_text();
  EXPECT_TRUE(contains(started, fmt::format("DATA LOSS: log segment {} is damaged at offset {} (index {})",
                                            segment.string(), victim->offset, victim->index)))
      << started;
  EXPECT_TRUE(contains(started, "the record's body fails its checksum")) << started;
  EXPECT_TRUE(contains(started, fmt::format("log recovered: {} entries", victim->index - 1))) << started;
  EXPECT_TRUE(contains(started, "standing recovering")) << started;

  const auto applied_ms = wait_applied(damaged, target, restarted);
  EXPECT_TRUE(applied_ms) << "node " << damaged << " never applied index " << target;
  const auto votes = wait_votes_again(damaged, restarted);
  ASSERT_TRUE(votes) << node(damaged).process->stderr_text();
  std::printf(
      "[ info ] node %u restarted with its log cut at index %llu: it applied the leader's commit index %llu after "
      "%lld ms and votes again after %lld ms (%s)\n",
      damaged, static_cast<unsigned long long>(victim->index - 1), static_cast<unsigned long long>(target),
      applied_ms.value_or(-1), votes->second, votes->first.c_str());
  finish(writer, 200);
}

// docs/operations.md: a node whose disk broke is repaired by stopping it, emptying its data directory and starting
// it again. Done here on every node in turn, the leader included, under a live client: at the end no node holds
// a byte it wrote before, and every acknowledged write is still there.
TEST_F(RepairTest, TheDiskReplacementProcedureWorksOnEveryNodeInTurnUnderALiveClient) {
  ASSERT_TRUE(start_cluster());
  const auto first = wait_leader(deadline());
  ASSERT_TRUE(first);
  LiveWriter writer(client_endpoints(), "replaced-");
  ASSERT_TRUE(writer.wait_acked(300, deadline())) << "only " << writer.acked() << " acks";

  // The leader first (it hands over as it stops), then the others.
  std::vector<std::uint32_t> order = {first->node_id};
  for (const auto& n : nodes_)
    if (n.id != first->node_id) order.push_back(n.id);
  for (const std::uint32_t id : order) {
    const auto leader = wait_leader(deadline());
    ASSERT_TRUE(leader);
    node(id).process->signal(SIGTERM);
    ASSERT_EQ(node(id).process->wait_exit(deadline()), 0) << node(id).process->stderr_text();
    empty_directory(node(id).data_dir);
    ASSERT_TRUE(writer.wait_acked(writer.acked() + 100, deadline())) << "no writes with node " << id << " stopped";

    const auto leader_now = wait_leader(deadline());
    ASSERT_TRUE(leader_now);
    const std::uint64_t target = leader_now->commit_index;
    const auto restarted = Clock::now();
    ASSERT_TRUE(restart(id));
    const auto applied_ms = wait_applied(id, target, restarted);
    EXPECT_TRUE(applied_ms) << "node " << id << " never applied index " << target;
    // The next node may go only once this one votes again: a second empty node before then would leave the
    // cluster without a majority that can repair anyone.
    const auto votes = wait_votes_again(id, restarted);
    ASSERT_TRUE(votes) << node(id).process->stderr_text();
    std::printf(
        "[ info ] node %u (%s) restarted on an emptied data directory: it applied the leader's commit index %llu "
        "after %lld ms and votes again after %lld ms\n",
        id, id == leader->node_id ? "the leader" : "a follower", static_cast<unsigned long long>(target),
        applied_ms.value_or(-1), votes->second);
  }
  finish(writer, 200);
}

// Every node killed with kill -9 under load, then all restarted, five times over, under each sync policy. A
// process crash loses nothing the kernel holds, so every node comes back as a member (no DATA LOSS, no
// recovering node), a leader is elected with no operator action within 5 s, and no acknowledged write is lost.
class KillAllTest : public RepairTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(KillAllTest, EveryNodeKilledFiveTimesUnderLoadLosesNoAcknowledgedWrite) {
  const std::string policy = GetParam();
  ASSERT_TRUE(start_cluster({"--sync", policy}));
  ASSERT_TRUE(wait_leader(deadline()));
  LiveWriter writer(client_endpoints(), "killed-");
  const Ms leader_bound(5'000 * slowdown());
  std::vector<long long> times;
  for (int round = 1; round <= 5; ++round) {
    ASSERT_TRUE(writer.wait_acked(writer.acked() + 150, deadline()))
        << "round " << round << ": no writes since the last restart, at " << writer.acked() << " acks";
    const std::size_t acked_at_kill = writer.acked();
    for (auto& n : nodes_) n.process->signal(SIGKILL);
    for (auto& n : nodes_) ASSERT_TRUE(n.process->wait_exit(deadline())) << "node " << n.id;
    const auto restarted = Clock::now();
    for (auto& n : nodes_) spawn(n);
    for (auto& n : nodes_) ASSERT_TRUE(await_start(n)) << n.process->stderr_text();
    const auto up_ms = ms_since(restarted);
    const auto leader = wait_leader(deadline());
    ASSERT_TRUE(leader);
    const auto leader_ms = ms_since(restarted);
    times.push_back(leader_ms);
    std::printf(
        "[ info ] sync %s, round %d: killed every node after %zu acks; processes up after %lld ms, node %u leads "
        "term %llu %lld ms after the restart\n",
        policy.c_str(), round, acked_at_kill, up_ms, leader->node_id, static_cast<unsigned long long>(leader->term),
        leader_ms);
    EXPECT_LT(leader_ms, leader_bound.count()) << "round " << round << ": no leader within 5 s";
    for (const auto& n : nodes_) {
      const std::string log = n.process->stderr_text();
      EXPECT_TRUE(contains(log, "standing member")) << "round " << round << ", node " << n.id << ":\n" << log;
      EXPECT_FALSE(contains(log, "DATA LOSS")) << "round " << round << ", node " << n.id << ":\n" << log;
    }
  }
  finish(writer, 200);
  std::printf("[ info ] sync %s: time to a leader after a full restart: %s ms\n", policy.c_str(),
              fmt::format("{}", fmt::join(times, ", ")).c_str());
}

INSTANTIATE_TEST_SUITE_P(SyncPolicies, KillAllTest, ::testing::Values("fsync", "none"),
                         [](const ::testing::TestParamInfo<const char*>& param) { return std::string(param.param); });

}  // namespace
}  // namespace cohort::testing

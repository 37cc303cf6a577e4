// Snapshots with real processes: nodes take them past a small threshold and compact their logs; a restart of the
// whole cluster restores each node's newest snapshot and replays only the log after it, sessions included, while a
// client that stayed up resumes its session; a follower that was down while the others compacted past it catches up
// by installing the leader's snapshot, also when the leader dies part way.

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>

#include <cohort/admin.h>

#include "cluster_harness.h"

namespace cohort::testing {
namespace {

// The smallest threshold a node accepts: a few hundred puts make a snapshot. Small segments, so compaction (which
// removes whole segments) removes some.
std::vector<std::string> snapshot_flags() { return {"--snapshot-threshold", "65536", "--segment-size", "16384"}; }

std::size_t snapshot_files(const std::filesystem::path& dir) {
  std::size_t count = 0;
  for (const auto& file : std::filesystem::directory_iterator(dir)) {
    const std::string name = file.path().filename().string();
    if (name.starts_with("snapshot-") && !name.ends_with(".tmp")) ++count;
  }
  return count;
}

class SnapshotTest : public ClusterTest {};

TEST_F(SnapshotTest, AFullClusterRestartRestoresSessionsFromSnapshotPlusLogAndALiveClientResumesItsSession) {
  ASSERT_TRUE(start_cluster(snapshot_flags()));
  ASSERT_TRUE(wait_leader(deadline()));
  KvClient writer(client_endpoints(), 256);
  ASSERT_TRUE(writer.client().wait_connected(deadline()));
  std::map<std::string, std::string> expected;
  const auto write = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      const std::string key = fmt::format("snap-{}", i % 500);  // overwritten: the state stays small, the log grows
      expected[key] = value_for(static_cast<std::uint64_t>(i));
      ASSERT_NE(writer.offer_put(key, expected[key], deadline()), 0U);
    }
    ASSERT_TRUE(writer.wait_all_acked(deadline())) << writer.acked() << " acknowledged";
  };

  ASSERT_NO_FATAL_FAILURE(write(0, 3000));
  for (const auto& n : nodes_)
    EXPECT_TRUE(eventually([&] { return snapshot_files(n.data_dir) >= 1; }, deadline()))
        << "node " << n.id << " took no snapshot";
  const auto sessions_before = writer.sessions();
  ASSERT_EQ(sessions_before.size(), 1U);
  const std::uint64_t session = sessions_before.front().first;

  // Every node killed at once, then started again: each restores its newest snapshot and replays the log after it.
  for (auto& n : nodes_) n.process->signal(SIGKILL);
  for (auto& n : nodes_) EXPECT_TRUE(n.process->wait_exit(deadline())) << "node " << n.id;
  for (auto& n : nodes_) spawn(n);
  for (auto& n : nodes_) ASSERT_TRUE(await_start(n)) << n.process->stderr_text();
  for (const auto& n : nodes_)
    EXPECT_TRUE(contains(n.process->stderr_text(), "restored the snapshot at index"))
        << "node " << n.id << " did not restore a snapshot:\n"
        << n.process->stderr_text();
  ASSERT_TRUE(wait_leader(deadline()));

  // The client never closed: it resumes the session the snapshot (and the log after it) kept, and goes on.
  ASSERT_NO_FATAL_FAILURE(write(3000, 3500));
  const auto sessions = writer.sessions();
  for (const auto& [id, change] : sessions) {
    EXPECT_EQ(id, session) << "the client's session changed across the restart";
    EXPECT_NE(change, SessionChange::replaced);
  }
  EXPECT_EQ(sessions.back().second, SessionChange::resumed);
  EXPECT_TRUE(writer.failures().empty()) << writer.failures().size() << " messages not applied";
  expect_values(expected);
  EXPECT_TRUE(wait_converged({1, 2, 3}, deadline()));
}

// Writes `count` puts over `keys` keys (values of `value_size` bytes) and waits for them all.
void write_puts(KvClient& writer, std::map<std::string, std::string>& expected, int from, int count, int keys,
                std::size_t value_size) {
  for (int i = from; i < from + count; ++i) {
    const std::string key = fmt::format("big-{}", i % keys);
    std::string value = value_for(static_cast<std::uint64_t>(i));
    value.resize(value_size, static_cast<char>('a' + i % 26));
    expected[key] = value;
    ASSERT_NE(writer.offer_put(key, value, deadline()), 0U);
  }
  ASSERT_TRUE(writer.wait_all_acked(deadline())) << writer.acked() << " acknowledged";
}

TEST_F(SnapshotTest, AFollowerDownWhileTheOthersCompactPastItCatchesUpByInstallingTheLeadersSnapshot) {
  ASSERT_TRUE(start_cluster(snapshot_flags()));
  const auto leader = wait_leader(deadline());
  ASSERT_TRUE(leader);
  KvClient writer(client_endpoints(), 256);
  ASSERT_TRUE(writer.client().wait_connected(deadline()));
  std::map<std::string, std::string> expected;
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, expected, 0, 100, 1000, 256));
  const std::uint32_t lagging = leader->node_id == 3 ? 2 : 3;
  ASSERT_TRUE(kill_node(lagging).has_value());
  // Several snapshots' worth: the others compact their logs past where the stopped one ends.
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, expected, 100, 3000, 1000, 256));
  ASSERT_TRUE(restart(lagging));
  ASSERT_TRUE(wait_converged({1, 2, 3}, deadline()));
  EXPECT_TRUE(contains(node(lagging).process->stderr_text(), "installed the leader's snapshot at index"))
      << node(lagging).process->stderr_text();
  expect_values(expected);
  // And it restarts from the installed snapshot.
  ASSERT_TRUE(kill_node(lagging).has_value());
  ASSERT_TRUE(restart(lagging));
  EXPECT_TRUE(eventually(
      [&] { return contains(node(lagging).process->stderr_text(), "restored the snapshot at index"); }, deadline()))
      << node(lagging).process->stderr_text();
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, expected, 3100, 100, 1000, 256));
  EXPECT_TRUE(wait_converged({1, 2, 3}, deadline()));
}

TEST_F(SnapshotTest, AnInstallCutShortByTheLeadersDeathIsCompletedByTheNextLeader) {
  ASSERT_TRUE(start_cluster(snapshot_flags()));
  const auto leader = wait_leader(deadline());
  ASSERT_TRUE(leader);
  KvClient writer(client_endpoints(), 256);
  ASSERT_TRUE(writer.client().wait_connected(deadline()));
  std::map<std::string, std::string> expected;
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, expected, 0, 100, 4000, 256));
  const std::uint32_t lagging = leader->node_id == 3 ? 2 : 3;
  ASSERT_TRUE(kill_node(lagging).has_value());
  // A state of some megabytes, so the install takes several chunks.
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, expected, 100, 4000, 4000, 2048));
  ASSERT_TRUE(restart(lagging));
  // The leader dies as the install begins (the stopped node asks to rejoin within a heartbeat of its start).
  std::this_thread::sleep_for(30ms);
  ASSERT_TRUE(kill_node(leader->node_id).has_value());
  // The other node leads, with the lagging one's vote, and completes the install, from the start of its own snapshot
  // or from where the first one stopped if it holds the same snapshot.
  const auto next = wait_leader(deadline(), ids_except(leader->node_id));
  ASSERT_TRUE(next);
  ASSERT_TRUE(wait_converged(ids_except(leader->node_id), deadline()));
  EXPECT_TRUE(contains(node(lagging).process->stderr_text(), "installed the leader's snapshot at index"))
      << node(lagging).process->stderr_text();
  {
    // What the lagging node went through, for the record: which leader's snapshot it installed, and when.
    std::istringstream lines(node(lagging).process->stderr_text());
    for (std::string line; std::getline(lines, line);)
      if (contains(line, "snapshot") || contains(line, "leader"))
        std::printf("[ info ] node %u: %s\n", lagging, line.c_str());
  }
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, expected, 4100, 100, 4000, 2048));
  ASSERT_TRUE(restart(leader->node_id));
  ASSERT_TRUE(wait_converged({1, 2, 3}, deadline()));
  expect_values(expected);
}

TEST_F(SnapshotTest, AnAdminRequestTakesASnapshotNowAndAnswersOnceItIsWritten) {
  // Never by size: only the request takes one.
  ASSERT_TRUE(start_cluster({"--snapshot-threshold", "0"}));
  ASSERT_TRUE(wait_leader(deadline()));
  {
    // Gone before the snapshots: a leader notes its bound sessions' activity in the log every activity interval, an
    // entry that could land between the two requests below.
    KvClient writer(client_endpoints(), 256);
    ASSERT_TRUE(writer.client().wait_connected(deadline()));
    std::map<std::string, std::string> expected;
    ASSERT_NO_FATAL_FAILURE(write_puts(writer, expected, 0, 200, 50, 64));
  }
  // The writer's close is an entry too: once every node has applied it, nothing more is appended.
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& n : nodes_) {
          const auto status = this->status(n.id);
          if (!status.ok || status.status.open_sessions != 0) return false;
        }
        return true;
      },
      deadline()));
  ASSERT_TRUE(wait_converged({1, 2, 3}, deadline()));
  for (const auto& n : nodes_) {
    EXPECT_EQ(snapshot_files(n.data_dir), 0U) << "node " << n.id;
    const AdminResult taken = request_snapshot(admin_target(n.id));
    ASSERT_TRUE(taken.ok) << "node " << n.id << ": " << taken.error;
    EXPECT_GE(taken.index, 200U) << "node " << n.id;
    EXPECT_GT(taken.size, 0U);
    EXPECT_EQ(snapshot_files(n.data_dir), 1U) << "node " << n.id;
    // Nothing applied since: the same one is the answer, and no other is written.
    const AdminResult again = request_snapshot(admin_target(n.id));
    ASSERT_TRUE(again.ok) << again.error;
    EXPECT_EQ(again.index, taken.index);
    EXPECT_EQ(again.size, taken.size);
    EXPECT_EQ(snapshot_files(n.data_dir), 1U);
  }
}

// The complete snapshot files in `dir`, newest first.
std::vector<std::filesystem::path> snapshots_newest_first(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> found;
  for (const auto& file : std::filesystem::directory_iterator(dir)) {
    const std::string name = file.path().filename().string();
    if (name.starts_with("snapshot-") && !name.ends_with(".tmp")) found.push_back(file.path());
  }
  std::sort(found.rbegin(), found.rend());  // names sort by index
  return found;
}

// Cuts a snapshot file's last byte: its size no longer matches its header (and damaging it twice still damages it).
void damage(const std::filesystem::path& file) {
  std::filesystem::resize_file(file, std::filesystem::file_size(file) - 1);
  std::printf("[ info ] damaged %s\n", file.filename().c_str());
}

TEST_F(SnapshotTest, ADamagedSnapshotFallsBackToThePreviousOneOrElseTheNodeIsRepairedAndAWipedOneRejoins) {
  ASSERT_TRUE(start_cluster(snapshot_flags()));
  const auto leader = wait_leader(deadline());
  ASSERT_TRUE(leader);
  KvClient writer(client_endpoints(), 256);
  ASSERT_TRUE(writer.client().wait_connected(deadline()));
  std::map<std::string, std::string> expected;
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, expected, 0, 3000, 1000, 256));
  const std::uint32_t follower = leader->node_id == 3 ? 2 : 3;
  ASSERT_TRUE(wait_converged({1, 2, 3}, deadline()));
  ASSERT_TRUE(kill_node(follower).has_value());
  auto files = snapshots_newest_first(node(follower).data_dir);
  // The newest two are kept (three for a moment: a new one is written before the oldest goes).
  ASSERT_GE(files.size(), 2U);

  // The newest is damaged: the previous one is restored, with the log kept since it.
  damage(files[0]);
  ASSERT_TRUE(restart(follower));
  EXPECT_TRUE(eventually(
      [&] {
        return contains(
            node(follower).process->stderr_text(),
            fmt::format("restored the snapshot at index {}", std::stoull(files[1].filename().string().substr(9, 20))));
      },
      deadline()))
      << node(follower).process->stderr_text();
  EXPECT_TRUE(contains(node(follower).process->stderr_text(), "is damaged and not used"));
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, expected, 3000, 100, 1000, 256));
  ASSERT_TRUE(wait_converged({1, 2, 3}, deadline()));

  // Every snapshot damaged and the log compacted: no silent start from scratch; it rejoins as a recovering node and
  // the leader repairs it with its snapshot and log.
  ASSERT_TRUE(kill_node(follower).has_value());
  for (const auto& file : snapshots_newest_first(node(follower).data_dir)) damage(file);
  ASSERT_TRUE(restart(follower));
  EXPECT_TRUE(eventually(
      [&] { return contains(node(follower).process->stderr_text(), "rejoining as a recovering node"); }, deadline()))
      << node(follower).process->stderr_text();
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, expected, 3100, 100, 1000, 256));
  ASSERT_TRUE(wait_converged({1, 2, 3}, deadline()));
  EXPECT_TRUE(contains(node(follower).process->stderr_text(), "installed the leader's snapshot at index"));
  EXPECT_TRUE(eventually([&] { return status(follower).status.standing == "member"; }, deadline()))
      << "node " << follower << " did not vote again";

  // Its data directory wiped: it starts fresh, learns the cluster has a history, and rejoins the same way.
  ASSERT_TRUE(kill_node(follower).has_value());
  for (const auto& file : std::filesystem::directory_iterator(node(follower).data_dir))
    std::filesystem::remove_all(file.path());
  ASSERT_TRUE(restart(follower));
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, expected, 3200, 100, 1000, 256));
  ASSERT_TRUE(wait_converged({1, 2, 3}, deadline()));
  EXPECT_TRUE(contains(node(follower).process->stderr_text(), "installed the leader's snapshot at index"))
      << node(follower).process->stderr_text();
  EXPECT_TRUE(eventually([&] { return status(follower).status.standing == "member"; }, deadline()))
      << "node " << follower << " did not vote again after its wipe";
  expect_values(expected);
}

// The backup procedure of docs/operations.md ("Restoring from a snapshot file"): one snapshot file, taken by
// `cohort snapshot` in a term past 1, copied into every node's emptied data directory, brings the cluster back at
// that state. (A snapshot adopted beyond an empty log once left a node's term behind the snapshot's, and its first
// election appended below it: an abort.)
TEST_F(SnapshotTest, AClusterRestoresFromOneSnapshotFileCopiedIntoEveryEmptiedDataDirectory) {
  ASSERT_TRUE(start_cluster());
  auto leader = wait_leader(deadline());
  ASSERT_TRUE(leader);
  // Two handovers: terms 2 and 3.
  for (int round = 0; round < 2; ++round) {
    const std::uint32_t to = leader->node_id % 3 + 1;
    const AdminResult moved = transfer_leadership(admin_target(leader->node_id), to);
    ASSERT_TRUE(moved.ok) << moved.error;
    leader = wait_leader(deadline());
    ASSERT_TRUE(leader);
  }
  std::map<std::string, std::string> kept;
  KvClient writer(client_endpoints(), 256);
  ASSERT_TRUE(writer.client().wait_connected(deadline()));
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, kept, 0, 40, 40, 32));
  ASSERT_TRUE(wait_converged({1, 2, 3}, deadline()));
  const AdminResult taken = request_snapshot(admin_target(leader->node_id));
  ASSERT_TRUE(taken.ok) << taken.error;
  ASSERT_GE(taken.term, 3U);
  std::map<std::string, std::string> after;  // written after the backup: gone after the restore
  ASSERT_NO_FATAL_FAILURE(write_puts(writer, after, 1000, 10, 2000, 32));
  writer.client().close();

  std::filesystem::path backup;
  for (const auto& file : std::filesystem::directory_iterator(node(leader->node_id).data_dir))
    if (file.path().filename().string().starts_with("snapshot-")) backup = dir_.path() / file.path().filename();
  ASSERT_FALSE(backup.empty());
  std::filesystem::copy_file(node(leader->node_id).data_dir / backup.filename(), backup);
  for (auto& n : nodes_) {
    n.process->signal(SIGTERM);
    ASSERT_EQ(n.process->wait_exit(deadline()), 0) << "node " << n.id;
  }
  for (auto& n : nodes_) {
    std::filesystem::remove_all(n.data_dir);
    std::filesystem::create_directories(n.data_dir);
    std::filesystem::copy_file(backup, n.data_dir / backup.filename());
  }
  for (auto& n : nodes_) spawn(n);
  for (auto& n : nodes_) ASSERT_TRUE(await_start(n)) << n.process->stderr_text();
  const auto restored = wait_leader(deadline());
  ASSERT_TRUE(restored);
  EXPECT_GT(restored->term, taken.term) << "the cluster goes on in a term after the snapshot's";
  EXPECT_GE(restored->commit_index, taken.index);
  expect_values(kept);
  KvClient reader(client_endpoints());
  ASSERT_TRUE(reader.client().wait_connected(deadline()));
  std::vector<std::string> keys;
  for (const auto& [key, value] : after) keys.push_back(key);
  for (const auto& [key, reply] : reader.get_all(keys, deadline()))
    EXPECT_EQ(reply.status, KvStatus::not_found) << key << " was written after the backup";
  // And it takes writes.
  std::map<std::string, std::string> more;
  ASSERT_NO_FATAL_FAILURE(write_puts(reader, more, 3000, 10, 4000, 32));
  ASSERT_TRUE(wait_converged({1, 2, 3}, deadline()));
}

}  // namespace
}  // namespace cohort::testing

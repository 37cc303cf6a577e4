// Snapshots with real processes: nodes take them past a small threshold, and a restart of the whole cluster
// restores each node's newest snapshot and replays only the log after it, sessions included, while a client that
// stayed up resumes its session.

#include <filesystem>
#include <map>
#include <string>

#include "cluster_harness.h"

namespace cohort::testing {
namespace {

// The smallest threshold a node accepts: a few hundred puts make a snapshot.
std::vector<std::string> snapshot_flags() { return {"--snapshot-threshold", "65536"}; }

std::size_t snapshot_files(const std::filesystem::path& dir) {
  std::size_t count = 0;
  for (const auto& file : std::filesystem::directory_iterator(dir)) {
    const std::string name = file.path().filename().string();
    if (name.starts_with("snapshot-") && !name.ends_with(".tmp") && !name.ends_with(".part")) ++count;
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

}  // namespace
}  // namespace cohort::testing

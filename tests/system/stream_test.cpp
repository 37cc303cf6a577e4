// `cohort stream` against real cohortd processes running the ledger service: a numbered stream at 1,000 messages a
// second through a leader killed with kill -9 must end with every accepted message applied exactly once by the
// ledger's own record (nothing lost, nothing duplicated, nothing unknown), the client having resumed its session by
// itself. The replicas, the killed one restarted, then hold equal ledgers (snapshots are taken along the way, so the
// ledger's snapshot and restore run too). Also: the tool's exit status for bad arguments.

#include <signal.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cluster_harness.h"
#include "process.h"

namespace cohort::testing {
namespace {

std::size_t snapshot_files(const std::filesystem::path& dir) {
  std::size_t count = 0;
  for (const auto& file : std::filesystem::directory_iterator(dir)) {
    const std::string name = file.path().filename().string();
    if (name.starts_with("snapshot-") && !name.ends_with(".tmp")) ++count;
  }
  return count;
}

class StreamTest : public ClusterTest {};

TEST_F(StreamTest, AStreamThroughALeaderKillIsAppliedExactlyOnceByTheLedgersRecord) {
  // A small snapshot threshold: the nodes snapshot their ledgers while the stream runs.
  ASSERT_TRUE(start_cluster({"--service", "ledger", "--snapshot-threshold", "65536", "--segment-size", "16384"}));
  const auto leader = wait_leader(deadline());
  ASSERT_TRUE(leader);
  const std::uint64_t applied_before = leader->applied_index;

  constexpr long long kCount = 2000;
  Process stream(
      COHORT_PATH,
      {"stream", "--members", joined(client_endpoints()), "--cluster-id", std::to_string(kClusterId), "--count",
       std::to_string(kCount), "--rate", "1000", "--json", "--drain", std::to_string(15 * slowdown())},
      dir_.path(), "stream");

  // Once a quarter of the stream is applied, the leader dies.
  ASSERT_TRUE(eventually(
      [&] {
        const auto s = status(leader->node_id);
        return s.ok && s.status.applied_index >= applied_before + kCount / 4;
      },
      deadline()))
      << "the stream did not get going; its stderr:\n"
      << stream.stderr_text();
  ASSERT_TRUE(kill_node(leader->node_id));

  const auto exit_status = stream.wait_exit(deadline());
  ASSERT_TRUE(exit_status) << "cohort stream did not finish; its stderr:\n" << stream.stderr_text();
  const std::string out = stream.stdout_text();
  std::printf("[ info ] cohort stream's stderr:\n%s[ info ] its stdout:\n%s", stream.stderr_text().c_str(),
              out.c_str());
  EXPECT_EQ(*exit_status, 0);

  // One JSON object on one line, nothing else.
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), out.size() - 1) << "stdout holds more than one line";
  EXPECT_EQ(out.front(), '{');
  EXPECT_NE(out.find("\"ok\":true"), std::string::npos);
  EXPECT_EQ(json_number(out, "accepted"), kCount);
  EXPECT_EQ(json_number(out, "applied"), json_number(out, "accepted"));
  EXPECT_EQ(json_number(out, "lost"), 0);
  EXPECT_EQ(json_number(out, "duplicated"), 0);
  EXPECT_EQ(json_number(out, "unknown"), 0);
  EXPECT_EQ(json_number(out, "rejected"), 0);
  EXPECT_EQ(json_number(out, "distinct"), kCount) << "the ledger's count";
  EXPECT_EQ(json_number(out, "missing"), 0);
  // The client saw the kill and came back by itself, in the same session.
  EXPECT_GE(json_number(out, "resumed").value_or(0), 1);
  EXPECT_EQ(json_number(out, "replaced"), 0);
  const auto outage_ms = json_number(out, "longest_outage_ms");
  ASSERT_TRUE(outage_ms);
  EXPECT_GT(*outage_ms, 0);
  EXPECT_LT(*outage_ms, 15'000 * slowdown());
  std::printf("[ info ] the client's longest outage: %lld ms\n", *outage_ms);

  // The survivors snapshotted their ledgers; the killed node comes back, and every replica holds the same ledger.
  for (const auto id : ids_except(leader->node_id))
    EXPECT_TRUE(eventually([&] { return snapshot_files(node(id).data_dir) >= 1; }, deadline()))
        << "node " << id << " took no snapshot";
  ASSERT_TRUE(restart(leader->node_id));
  EXPECT_TRUE(wait_converged({1, 2, 3}, deadline()));
}

TEST(StreamTool, BadArgumentsExitWithStatusTwo) {
  TempDir dir;
  EXPECT_EQ(run(COHORT_PATH, {"stream", "--cluster-id", "1"}, dir.path(), "no-members").status, 2);
  EXPECT_EQ(run(COHORT_PATH, {"stream", "--members", "127.0.0.1:1", "--cluster-id", "1", "--rate", "-5"}, dir.path(),
                "negative-rate")
                .status,
            2);
  const auto bad_endpoint =
      run(COHORT_PATH, {"stream", "--members", "nohostport", "--cluster-id", "1"}, dir.path(), "bad-endpoint");
  EXPECT_EQ(bad_endpoint.status, 2);
  EXPECT_NE(bad_endpoint.err.find("host:port"), std::string::npos) << bad_endpoint.err;
  EXPECT_TRUE(bad_endpoint.out.empty());
  EXPECT_EQ(run(COHORT_PATH, {"stream", "--help"}, dir.path(), "help").status, 0);
}

}  // namespace
}  // namespace cohort::testing

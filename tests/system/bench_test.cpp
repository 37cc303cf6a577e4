// `cohort bench` end to end: it starts its own local cluster of real cohortd processes, measures, and prints one
// JSON object with the configuration, the figures and the machine's floor; every message it sent was answered. No
// timing is asserted: the figures only have to be there, and to be consistent with each other.

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cluster_harness.h"
#include "process.h"

namespace cohort::testing {
namespace {

/// Whether `json` is one valid JSON document (Python's parser is the judge: the project has no JSON library).
bool valid_json(const std::filesystem::path& dir, const std::string& json) {
  const std::filesystem::path file = dir / "bench.json";
  std::ofstream(file) << json;
  return run("/usr/bin/env", {"python3", "-c", "import json, sys; json.load(open(sys.argv[1]))", file.string()}, dir,
             "json-check")
             .status == 0;
}

std::vector<std::string> local_bench(const std::filesystem::path& dir, std::vector<std::string> args) {
  std::vector<std::string> all = {"bench", "--cohortd", COHORTD_PATH, "--dir", (dir / "bench").string()};
  all.insert(all.end(), args.begin(), args.end());
  return all;
}

TEST(BenchTest, PrintsTheFiguresAndTheFloorAsOneJsonObjectAndEveryMessageIsAnswered) {
  TempDir dir;
  const RunResult result =
      run(COHORT_PATH,
          local_bench(dir.path(), {"--nodes", "3", "--sync", "fsync", "--duration", "2s", "--warmup", "500ms", "--rate",
                                   "200", "--window", "8", "--json"}),
          dir.path(), "bench", std::chrono::seconds(120 * slowdown()));
  ASSERT_EQ(result.status, 0) << result.err;
  ASSERT_TRUE(valid_json(dir.path(), result.out)) << result.out;
  const std::string& out = result.out;
  for (const char* key :
       {"\"config\"", "\"floor\"", "\"tcp_round_trip_us\"", "\"fdatasync_us\"", "\"replicator_commit_us\"",
        "\"replicator_messages_per_s\"", "\"latency\"", "\"throughput\"", "\"latency_us\"", "\"p50\"", "\"p90\"",
        "\"p99\"", "\"p99_9\"", "\"max\"", "\"mb_per_s\"", "\"node_cpu_us_per_message\"",
        "\"client_cpu_us_per_message\"", "\"p50_vs_floor\"", "\"vs_floor\""})
    EXPECT_NE(out.find(key), std::string::npos) << key << " missing from " << out;
  EXPECT_NE(out.find(R"("nodes":3)"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("sync":"fsync")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("all_answered":true)"), std::string::npos) << out;
  const auto offered = json_number(out, "offered");
  ASSERT_TRUE(offered);
  EXPECT_GT(*offered, 200) << "2 s at 200/s, and a throughput run after it";
  EXPECT_EQ(json_number(out, "applied"), offered);
  EXPECT_EQ(json_number(out, "rejected"), 0);
  EXPECT_EQ(json_number(out, "unknown"), 0);
  // The local cluster's directory is removed with it (--dir names the parent of the cluster's).
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "bench" / "cluster-fsync" / "n1" / "log")) << result.err;
}

TEST(BenchTest, FailoverKillsTheLeaderAndReportsTheOutage) {
  TempDir dir;
  const RunResult result =
      run(COHORT_PATH,
          local_bench(dir.path(), {"--failover", "--rounds", "2", "--rate", "500", "--warmup", "500ms", "--json"}),
          dir.path(), "bench", std::chrono::seconds(120 * slowdown()));
  ASSERT_EQ(result.status, 0) << result.err;
  ASSERT_TRUE(valid_json(dir.path(), result.out)) << result.out;
  for (const char* key :
       {"\"failover\"", "\"rounds\"", "\"killed\"", "\"new_leader_ms\"", "\"outage_ms\"", "\"median\"", "\"max\""})
    EXPECT_NE(result.out.find(key), std::string::npos) << key << " missing from " << result.out;
  EXPECT_NE(result.out.find(R"("all_answered":true)"), std::string::npos) << result.out;
}

TEST(BenchTest, BadArgumentsExitWithTwo) {
  TempDir dir;
  EXPECT_EQ(run(COHORT_PATH, {"bench", "--nodes", "2"}, dir.path(), "nodes").status, 2);
  EXPECT_EQ(run(COHORT_PATH, {"bench", "--sync", "sometimes"}, dir.path(), "sync").status, 2);
  EXPECT_EQ(run(COHORT_PATH, {"bench", "--duration", "ten"}, dir.path(), "duration").status, 2);
  EXPECT_EQ(
      run(COHORT_PATH, {"bench", "--cohortd", "/nonexistent/cohortd", "--no-floor"}, dir.path(), "cohortd").status, 1);
}

}  // namespace
}  // namespace cohort::testing

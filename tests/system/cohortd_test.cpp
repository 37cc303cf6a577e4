// System tests: real cohortd and cohort-ping processes on loopback.

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "process.h"

namespace cohort::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 20s;  // generous: the sanitizer build on a loaded 2-core machine is slow

class CohortdTest : public ::testing::Test {
 protected:
  // Starts node 1 of a one-member cluster 42 on free ports and returns its client endpoint (where admin tools
  // connect; the peer endpoint takes members only).
  std::string start_node(const std::vector<std::string>& extra_args = {}) {
    std::vector<std::string> args = {"--node-id",    "1",
                                     "--cluster-id", "42",
                                     "--data-dir",   (dir_.path() / "n1").string(),
                                     "--member",     "1,127.0.0.1:0,127.0.0.1:0"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    node_ = std::make_unique<Process>(COHORTD_PATH, args, dir_.path(), "node1");
    const auto peer = node_->wait_stdout("listening on ", kDeadline);
    const auto client = node_->wait_stdout("clients on ", kDeadline);
    if (!peer || !client) {
      ADD_FAILURE() << "cohortd did not start; stderr:\n" << node_->stderr_text();
      return {};
    }
    return client->substr(std::string("clients on ").size());
  }

  TempDir dir_;
  std::unique_ptr<Process> node_;
};

TEST_F(CohortdTest, AnswersPingsFromAnAdminTool) {
  const std::string address = start_node();
  ASSERT_FALSE(address.empty());
  const auto ping = run(COHORT_PING_PATH, {address, "--cluster-id", "42", "--count", "3", "--interval-ms", "1"},
                        dir_.path(), "ping", kDeadline);
  EXPECT_EQ(ping.status, 0) << ping.err;
  EXPECT_NE(ping.out.find("3 pings: min"), std::string::npos) << ping.out;
}

TEST_F(CohortdTest, RefusesAToolOfAnotherClusterAndSaysWhy) {
  const std::string address = start_node();
  ASSERT_FALSE(address.empty());
  const auto ping =
      run(COHORT_PING_PATH, {address, "--cluster-id", "7", "--count", "1"}, dir_.path(), "ping", kDeadline);
  EXPECT_EQ(ping.status, 2);
  EXPECT_NE(ping.err.find("cluster id 7 does not match this cluster's id 42"), std::string::npos) << ping.err;
  EXPECT_TRUE(node_->wait_stderr("refused connection from 127.0.0.1", kDeadline)) << node_->stderr_text();
}

TEST_F(CohortdTest, StopsGracefullyOnSigterm) {
  ASSERT_FALSE(start_node().empty());
  node_->signal(SIGTERM);
  EXPECT_EQ(node_->wait_exit(kDeadline), 0);
  EXPECT_NE(node_->stderr_text().find("received SIGTERM, stopping"), std::string::npos);
}

TEST_F(CohortdTest, RefusesToStartOnAPortInUse) {
  const std::string address = start_node();
  ASSERT_FALSE(address.empty());
  // A second node whose peer endpoint is the first node's client endpoint.
  const auto second = run(COHORTD_PATH,
                          {"--node-id", "2", "--cluster-id", "42", "--data-dir", (dir_.path() / "n2").string(),
                           "--member", "2," + address + ",127.0.0.1:0"},
                          dir_.path(), "node2", kDeadline);
  EXPECT_EQ(second.status, 2);
  EXPECT_NE(second.err.find("cannot listen on " + address + ": Address already in use"), std::string::npos)
      << second.err;
}

TEST_F(CohortdTest, RefusesABadEndpoint) {
  const auto data = (dir_.path() / "n1").string();
  const auto bad = run(
      COHORTD_PATH, {"--node-id", "1", "--cluster-id", "42", "--data-dir", data, "--member", "1,localhost,127.0.0.1:0"},
      dir_.path(), "bad", kDeadline);
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("members: member 1 peer endpoint 'localhost' is not host:port"), std::string::npos) << bad.err;
  const auto port =
      run(COHORTD_PATH,
          {"--node-id", "1", "--cluster-id", "42", "--data-dir", data, "--member", "1,127.0.0.1:0,127.0.0.1:70000"},
          dir_.path(), "badport", kDeadline);
  EXPECT_EQ(port.status, 2);
  EXPECT_NE(port.err.find("members: member 1 client endpoint '127.0.0.1:70000' has no valid port"), std::string::npos)
      << port.err;
}

TEST_F(CohortdTest, PingReportsARefusedConnection) {
  // Port 1 (tcpmux) has no listener on these machines.
  const auto ping = run(COHORT_PING_PATH, {"127.0.0.1:1", "--count", "1"}, dir_.path(), "ping", kDeadline);
  EXPECT_EQ(ping.status, 1);
  EXPECT_NE(ping.err.find("connect to 127.0.0.1:1 failed"), std::string::npos) << ping.err;
}

// Whether every line of `text` contains `part`.
bool every_line_contains(const std::string& text, const std::string& part) {
  std::size_t begin = 0;
  while (begin < text.size()) {
    const std::size_t end = std::min(text.find('\n', begin), text.size());
    if (text.substr(begin, end - begin).find(part) == std::string::npos) return false;
    begin = end + 1;
  }
  return true;
}

TEST_F(CohortdTest, LogsToStderrTaggedWithTheNodeAndPrintsOnlyItsEndpointsOnStdout) {
  const std::string address = start_node();
  ASSERT_FALSE(address.empty());
  const auto ping = run(COHORT_PING_PATH, {address, "--cluster-id", "42", "--count", "1"}, dir_.path(), "ping",
                        kDeadline);  // the node's transport logs the connection
  EXPECT_EQ(ping.status, 0) << ping.err;
  EXPECT_TRUE(node_->wait_stderr("established: admin", kDeadline)) << node_->stderr_text();
  node_->signal(SIGTERM);
  ASSERT_EQ(node_->wait_exit(kDeadline), 0);

  const std::string out = node_->stdout_text();
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
  EXPECT_EQ(out.rfind("listening on ", 0), 0U) << out;
  EXPECT_NE(out.find("\nclients on " + address + "\n"), std::string::npos) << out;
  const std::string err = node_->stderr_text();
  EXPECT_TRUE(every_line_contains(err, "[node 1] ")) << err;  // cohortd's own lines, the node's and its transport's
  EXPECT_NE(err.find(" info: [node 1] sessions: every client is accepted"), std::string::npos) << err;
  EXPECT_NE(err.find(" info: [node 1] log recovered"), std::string::npos) << err;
  EXPECT_NE(err.find("received SIGTERM, stopping"), std::string::npos) << err;
}

TEST_F(CohortdTest, LogFileTakesEveryLineInsteadOfStderr) {
  const auto log_file = dir_.path() / "n1.log";
  const std::string address = start_node({"--log-file", log_file.string(), "--log-level", "debug"});
  ASSERT_FALSE(address.empty());
  const auto ping =
      run(COHORT_PING_PATH, {address, "--cluster-id", "42", "--count", "1"}, dir_.path(), "ping", kDeadline);
  EXPECT_EQ(ping.status, 0) << ping.err;
  node_->signal(SIGTERM);
  ASSERT_EQ(node_->wait_exit(kDeadline), 0);

  EXPECT_EQ(node_->stderr_text(), "");
  std::ifstream in(log_file);
  const std::string log{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_TRUE(every_line_contains(log, "[node 1] ")) << log;
  EXPECT_NE(log.find(" info: [node 1] sessions: every client is accepted"), std::string::npos) << log;
  EXPECT_NE(log.find(" info: [node 1] log recovered"), std::string::npos) << log;
  EXPECT_NE(log.find("established: admin"), std::string::npos) << log;
  EXPECT_NE(log.find("received SIGTERM, stopping"), std::string::npos) << log;
  EXPECT_NE(log.find(" info: [node 1] stopped"), std::string::npos) << log;
}

TEST_F(CohortdTest, RefusesALogFileItCannotOpen) {
  const auto missing = dir_.path() / "no-such-dir" / "n1.log";
  const auto refused = run(COHORTD_PATH,
                           {"--node-id", "1", "--cluster-id", "42", "--data-dir", (dir_.path() / "n1").string(),
                            "--member", "1,127.0.0.1:0,127.0.0.1:0", "--log-file", missing.string()},
                           dir_.path(), "refused", kDeadline);
  EXPECT_EQ(refused.status, 2);
  EXPECT_EQ(refused.out, "");
  EXPECT_NE(refused.err.find("cohortd: refusing to start: log_file: cannot open " + missing.string() +
                             ": No such file or directory"),
            std::string::npos)
      << refused.err;
}

/// The pids of processes other than this one whose command line contains `text`.
std::vector<int> processes_naming(const std::string& text) {
  std::vector<int> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
    const int pid = std::stoi(name);
    if (pid == ::getpid()) continue;
    std::ifstream in(entry.path() / "cmdline");
    std::string command{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::replace(command.begin(), command.end(), '\0', ' ');
    if (command.find(text) != std::string::npos) found.push_back(pid);
  }
  return found;
}

// `./run demo`, the README's first command, in its short mode: a leader killed and every node restarted under a
// live stream, ending with the stream's summary checked against the ledger.
TEST(Demo, ShortDemoEndsWithNothingLostOrDuplicatedAndNoNodeLeftRunning) {
  TempDir dir;
  const auto data = dir.path() / "cluster";  // named, so the nodes it started can be found by their data directory
  const auto demo = run(DEMO_SCRIPT, {"--short", "--dir", data.string()}, dir.path(), "demo", 60s);
  EXPECT_EQ(demo.status, 0) << demo.out << demo.err;
  EXPECT_NE(demo.out.find("1. killing the leader"), std::string::npos) << demo.out;
  EXPECT_NE(demo.out.find("2. stopping every node"), std::string::npos) << demo.out;
  EXPECT_NE(demo.out.find("  lost 0  duplicated 0 "), std::string::npos) << demo.out;
  EXPECT_NE(demo.out.find("result: ok (0 lost, 0 duplicated, 0 unknown)"), std::string::npos) << demo.out;
  EXPECT_NE(demo.out.find("demo finished"), std::string::npos) << demo.out;
  // Not a node left behind. Any that is (the demo failed, or ran out of time and was killed) is stopped here.
  const auto left = processes_naming(data.string());
  for (const int pid : left) ::kill(pid, SIGKILL);
  EXPECT_TRUE(left.empty()) << left.size() << " processes the demo started are still running";
  EXPECT_TRUE(std::filesystem::exists(data)) << "the demo removed the directory it was given";
}

}  // namespace
}  // namespace cohort::testing

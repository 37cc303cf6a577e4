// System tests: real cohortd and cohort-ping processes on loopback.

#include <signal.h>

#include <gtest/gtest.h>

#include "process.h"

namespace cohort::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kDeadline = 20s;  // generous: the sanitizer build on a loaded 2-core machine is slow

class CohortdTest : public ::testing::Test {
 protected:
  // Starts node 1 of a one-member cluster 42 on free ports and returns its client endpoint (where admin tools
  // connect; the peer endpoint takes members only).
  std::string start_node() {
    const std::vector<std::string> args = {"--node-id",    "1",
                                           "--cluster-id", "42",
                                           "--data-dir",   (dir_.path() / "n1").string(),
                                           "--member",     "1,127.0.0.1:0,127.0.0.1:0"};
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

TEST(Demo, ShortDemoRunsToTheEnd) {
  TempDir dir;
  const auto demo = run(DEMO_SCRIPT, {"--short"}, dir.path(), "demo", 60s);
  EXPECT_EQ(demo.status, 0) << demo.out << demo.err;
  EXPECT_NE(demo.out.find("demo finished"), std::string::npos) << demo.out;
}

}  // namespace
}  // namespace cohort::testing

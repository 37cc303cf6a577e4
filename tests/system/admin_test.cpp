// The `cohort` admin commands (issue 17) against a live 3-node cluster: status, leader and members show every node,
// a stopped one and an unreachable address included; snapshot, transfer-leadership and shutdown act through the
// admin endpoint, and are refused on the client endpoint without a credential the authenticator accepts.

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cluster_harness.h"
#include "process.h"

namespace cohort::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class AdminTest : public ClusterTest {
 protected:
  /// A node's configuration file as an operator has it: every member's client and admin endpoint.
  std::string write_config() {
    std::string text =
        fmt::format("node_id = 1\ncluster_id = {}\ndata_dir = \"{}\"\n", kClusterId, nodes_[0].data_dir.string());
    for (const auto& n : nodes_)
      text += fmt::format("\n[[members]]\nid = {}\npeer = \"{}\"\nclient = \"{}\"\nadmin = \"{}\"\n", n.id, n.peer(),
                          n.client(), n.admin());
    const auto path = dir_.path() / "node1.toml";
    std::ofstream(path) << text;
    return path.string();
  }

  RunResult cohort(std::vector<std::string> args) {
    static int runs = 0;
    return run(COHORT_PATH, args, dir_.path(), fmt::format("cohort-{}", ++runs), deadline());
  }

  std::uint32_t leader_id() {
    const auto leader = wait_leader(deadline());
    return leader ? leader->node_id : 0;
  }

  /// A 3-node cluster holding 20 keys, every replica caught up; the leader's id, and a node's configuration file.
  void start_with_keys(std::uint32_t& leader, std::string& config) {
    ASSERT_TRUE(start_cluster());
    leader = leader_id();
    ASSERT_NE(leader, 0U);
    {
      KvClient writer(client_endpoints(), 256);
      ASSERT_TRUE(writer.client().wait_connected(deadline()));
      for (int i = 0; i < 20; ++i) ASSERT_TRUE(writer.put(fmt::format("k{}", i), "v", deadline()));
    }
    ASSERT_TRUE(wait_converged({1, 2, 3}, deadline()));
    config = write_config();
  }
};

TEST_F(AdminTest, StatusLeaderAndMembersShowEveryNodeAStoppedOneAndAnUnreachableAddress) {
  std::uint32_t leader = 0;
  std::string config;
  ASSERT_NO_FATAL_FAILURE(start_with_keys(leader, config));

  RunResult status = cohort({"status", "--config", config});
  EXPECT_EQ(status.status, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("COMMIT"));
  for (const auto& n : nodes_) EXPECT_THAT(status.out, HasSubstr(fmt::format("{:<5} {:<22} ", n.id, n.client())));
  EXPECT_THAT(status.out, HasSubstr("leader")) << status.out;
  EXPECT_THAT(status.out, Not(HasSubstr("unreachable")));

  status = cohort({"status", "--config", config, "--json", "--state-hash"});
  EXPECT_EQ(status.status, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr(fmt::format("\"cluster_id\":{}", kClusterId)));
  EXPECT_THAT(status.out, HasSubstr(fmt::format("\"node_id\":{},\"endpoint\":\"{}\",\"reachable\":true,\"role\":"
                                                "\"leader\"",
                                                leader, node(leader).client())));
  EXPECT_THAT(status.out, HasSubstr("\"state_hash\":\""));
  EXPECT_THAT(status.out, HasSubstr("\"uptime_ms\":"));
  const auto commit = json_number(status.out, "commit_index");
  ASSERT_TRUE(commit);
  EXPECT_GE(*commit, 20);

  RunResult found = cohort({"leader", "--config", config});
  EXPECT_EQ(found.status, 0) << found.err;
  EXPECT_THAT(found.out, HasSubstr(fmt::format("node {} leads in term", leader)));

  RunResult members = cohort({"members", "--config", config});
  EXPECT_EQ(members.status, 0) << members.err;
  EXPECT_THAT(members.out, HasSubstr("members [1, 2, 3], as nodes 1, 2, 3 list them"));

  // A stopped follower, and an address where nothing listens, given by endpoint.
  const std::uint32_t stopped = leader == 3 ? 2 : 3;
  ASSERT_TRUE(kill_node(stopped));
  const std::string nowhere = loopback(free_ports(1)[0]);
  std::vector<std::string> by_endpoint = {"--cluster-id", std::to_string(kClusterId), "--members"};
  std::string endpoints;
  for (const auto& n : nodes_) endpoints += n.client() + ",";
  by_endpoint.push_back(endpoints + nowhere);

  status = cohort({"status", "--config", config});
  EXPECT_EQ(status.status, 1) << "a node did not answer";
  EXPECT_THAT(status.out,
              HasSubstr(fmt::format("{:<5} {:<22} unreachable: connect_refused", stopped, node(stopped).client())));
  std::vector<std::string> args = {"status"};
  args.insert(args.end(), by_endpoint.begin(), by_endpoint.end());
  status = cohort(args);
  EXPECT_EQ(status.status, 1);
  EXPECT_THAT(status.out, HasSubstr(fmt::format("?     {:<22} unreachable: connect_refused", nowhere)));
  EXPECT_THAT(status.out, HasSubstr(fmt::format("{:<5} {:<22} {:<13}", leader, node(leader).client(), "leader")));

  args[0] = "leader";
  found = cohort(args);
  EXPECT_EQ(found.status, 0) << "the leader still leads: " << found.err;
  EXPECT_THAT(found.out, HasSubstr(fmt::format("node {} leads", leader)));

  args[0] = "members";
  members = cohort(args);
  EXPECT_EQ(members.status, 0) << "the reachable nodes agree: " << members.err;
  EXPECT_THAT(members.out, HasSubstr(fmt::format("unreachable: connect_refused")));
  EXPECT_THAT(members.out, HasSubstr("members [1, 2, 3]"));

  // Nobody at all: no leader, and said so.
  found = cohort({"leader", "--cluster-id", std::to_string(kClusterId), "--members", nowhere});
  EXPECT_EQ(found.status, 1);
  EXPECT_THAT(found.err, HasSubstr("no leader: none of the 0 reachable nodes leads"));
}

TEST_F(AdminTest, SnapshotTransferAndShutdownActThroughTheAdminEndpoint) {
  std::uint32_t leader = 0;
  std::string config;
  ASSERT_NO_FATAL_FAILURE(start_with_keys(leader, config));

  RunResult done = cohort({"snapshot", "--config", config, "--all"});
  EXPECT_EQ(done.status, 0) << done.err;
  for (const auto& n : nodes_) {
    EXPECT_THAT(done.out, HasSubstr(fmt::format("node {}: snapshot at index", n.id)));
    const auto status = this->status(n.id);
    ASSERT_TRUE(status.ok) << status.error;
    EXPECT_GE(status.status.snapshot_index, 20U) << "node " << n.id << "'s status shows its snapshot";
  }

  // Without an authenticator, the client endpoint takes no such command at all.
  const AdminResult on_client = request_snapshot(AdminTarget{node(1).client(), kClusterId, 1, {}, deadline()});
  EXPECT_FALSE(on_client.ok);
  EXPECT_THAT(on_client.error, HasSubstr(fmt::format("refused: this node takes that command on its admin endpoint, {}, "
                                                     "only",
                                                     node(1).admin())));

  const std::uint32_t successor = leader == 1 ? 2 : 1;
  done = cohort({"transfer-leadership", "--config", config, "--to", std::to_string(successor)});
  EXPECT_EQ(done.status, 0) << done.err;
  EXPECT_THAT(done.out, HasSubstr(fmt::format("node {} leads now (node {} handed over)", successor, leader)));
  const auto now_leading = wait_leader(deadline());
  ASSERT_TRUE(now_leading);
  EXPECT_EQ(now_leading->node_id, successor);

  done = cohort({"transfer-leadership", "--config", config, "--to", "9"});
  EXPECT_EQ(done.status, 1);
  EXPECT_THAT(done.err, HasSubstr("node 9 is not a member"));

  // One follower stopped gracefully (exit status 0); then a snapshot of it cannot be taken, and says why. It is the
  // node that neither led first nor leads now, and the last one the node that first led.
  const std::uint32_t follower = 6 - successor - leader;
  done = cohort({"shutdown", "--config", config, "--node", std::to_string(follower)});
  EXPECT_EQ(done.status, 0) << done.err;
  EXPECT_THAT(done.out, HasSubstr(fmt::format("node {} stopped", follower)));
  EXPECT_EQ(node(follower).process->wait_exit(deadline()), 0);
  done = cohort({"snapshot", "--config", config, "--node", std::to_string(follower), "--timeout-ms", "2000"});
  EXPECT_EQ(done.status, 1);
  EXPECT_THAT(done.err, HasSubstr(fmt::format("node {}: connect_refused", follower)));

  // The rest, the leader last; the node already stopped cannot be reached, so the exit status is 1.
  done = cohort({"shutdown", "--config", config, "--all"});
  EXPECT_EQ(done.status, 1);
  EXPECT_THAT(done.err, HasSubstr(fmt::format("node {}: connect_refused", follower)));
  const auto stopped_at = done.out.find(fmt::format("node {} stopped", successor));
  EXPECT_NE(stopped_at, std::string::npos) << done.out;
  EXPECT_LT(done.out.find(fmt::format("node {} stopped", leader)), stopped_at) << "the leader last: " << done.out;
  for (const auto& n : nodes_) EXPECT_EQ(n.process->wait_exit(deadline()), 0) << "node " << n.id;

  // Bad arguments.
  done = cohort({"snapshot", "--config", config});
  EXPECT_EQ(done.status, 2);
  EXPECT_THAT(done.err, HasSubstr("--node N or --all"));
  done = cohort({"status"});
  EXPECT_EQ(done.status, 2);
  EXPECT_THAT(done.err, HasSubstr("the cluster id is unknown"));
}

TEST_F(AdminTest, CommandsThatChangeANodeNeedItsAdminEndpointOrAnAdminCredential) {
  const auto clients = dir_.path() / "credentials";
  std::ofstream(clients) << "# clients\nclient-secret\n";
  const auto operators = dir_.path() / "admin-credentials";
  std::ofstream(operators) << "# operators\nletmein\n";
  ASSERT_TRUE(start_cluster({"--credentials-file", clients.string(), "--admin-credentials-file", operators.string()}));
  ASSERT_NE(leader_id(), 0U);

  // The client endpoint, no credential: refused.
  AdminTarget on_client{node(1).client(), kClusterId, 1, {}, deadline()};
  AdminResult result = request_snapshot(on_client);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.error, HasSubstr("refused: credential refused: credential not allowed"));
  result = request_shutdown(on_client);
  EXPECT_FALSE(result.ok);
  EXPECT_TRUE(node(1).running());

  // A client's credential opens sessions, not admin commands; a wrong one neither; the operators' one does.
  on_client.credential = "client-secret";
  result = request_shutdown(on_client);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.error, HasSubstr("credential refused"));
  EXPECT_TRUE(node(1).running());
  on_client.credential = "guess";
  result = request_snapshot(on_client);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.error, HasSubstr("credential refused"));
  on_client.credential = "letmein";
  result = request_snapshot(on_client);
  EXPECT_TRUE(result.ok) << result.error;

  // The KV client presents a client's credential from a file; without one it is refused.
  const std::vector<std::string> kv = {
      "--cluster-id", std::to_string(kClusterId), "--members", node(1).client(), "--timeout", "5"};
  std::vector<std::string> put = kv;
  put.insert(put.end(), {"--credential-file", clients.string(), "put", "k", "v"});
  const RunResult with = run(COHORT_KV_PATH, put, dir_.path(), "kv-with", deadline());
  EXPECT_EQ(with.status, 0) << with.err;
  std::vector<std::string> refused = kv;
  refused.insert(refused.end(), {"put", "k", "v"});
  const RunResult without = run(COHORT_KV_PATH, refused, dir_.path(), "kv-without", deadline());
  EXPECT_EQ(without.status, 1);
  EXPECT_THAT(without.err, HasSubstr("credential not allowed"));

  // The admin endpoint of another node than the one meant refuses, naming itself.
  AdminTarget wrong = admin_target(1);
  wrong.node_id = 2;
  result = request_shutdown(wrong);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.error, HasSubstr("this is node 1, not node 2"));
  EXPECT_TRUE(node(1).running());

  // The tool with --credential-file goes to the client endpoint.
  const RunResult done = cohort({"snapshot", "--cluster-id", std::to_string(kClusterId), "--members", node(2).client(),
                                 "--node", "2", "--credential-file", operators.string()});
  EXPECT_EQ(done.status, 0) << done.err;
  EXPECT_THAT(done.out, HasSubstr("node 2: snapshot at index"));
}

}  // namespace
}  // namespace cohort::testing

// The metrics endpoint (issue 17): a live 3-node cluster scraped over HTTP; the counters move with the cluster.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cluster_harness.h"
#include "process.h"

namespace cohort::testing {
namespace {

using ::testing::HasSubstr;

/// GET /metrics from 127.0.0.1:`port`: the body, or "" if it could not be had.
std::string scrape(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {};
  timeval timeout{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      ssize_t got = 0;
      while ((got = ::recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, static_cast<std::size_t>(got));
    }
  }
  ::close(fd);
  const auto body = response.find("\r\n\r\n");
  return response.starts_with("HTTP/1.") && response.find(" 200 ") != std::string::npos && body != std::string::npos
             ? response.substr(body + 4)
             : std::string();
}

/// The value of the sample `name{labels}` in a scrape, if present.
std::optional<double> sample(const std::string& scraped, const std::string& name_and_labels) {
  const std::string line_start = "\n" + name_and_labels + " ";
  const auto at = ("\n" + scraped).find(line_start);
  if (at == std::string::npos) return std::nullopt;
  return std::strtod(scraped.c_str() + at + line_start.size() - 1, nullptr);
}

class MetricsTest : public ClusterTest {
 protected:
  /// Each node serves on a port it picked (127.0.0.1:0), as its "metrics on" line says.
  std::uint16_t metrics_port(std::uint32_t id) {
    const std::string out = node(id).process->stdout_text();
    const std::string marker = "metrics on 127.0.0.1:";
    const auto at = out.rfind(marker);
    if (at == std::string::npos) return 0;
    return static_cast<std::uint16_t>(std::atoi(out.c_str() + at + marker.size()));
  }

  std::optional<double> metric(std::uint32_t id, const std::string& name) {
    return sample(scrape(metrics_port(id)), fmt::format("{}{{node=\"{}\"}}", name, id));
  }
};

TEST_F(MetricsTest, CountersMoveWithWritesAndTheNewLeaderCountsItsElection) {
  ASSERT_TRUE(start_cluster({"--metrics", "127.0.0.1:0"}));
  const auto leader = wait_leader(deadline());
  ASSERT_TRUE(leader);
  const std::uint32_t old_leader = leader->node_id;
  // Published once per tick: a scrape right after the election may still show the node before it led.
  ASSERT_TRUE(eventually(
      [&] {
        return metric(old_leader, "cohort_leader") == 1.0 &&
               metric(old_leader, "cohort_commit_index").value_or(0) >= 1.0;
      },
      deadline(), 20ms))
      << scrape(metrics_port(old_leader));
  std::map<std::uint32_t, double> won_before;
  for (const auto& n : nodes_) {
    ASSERT_NE(metrics_port(n.id), 0) << "node " << n.id << " names no metrics port";
    const std::string scraped = scrape(metrics_port(n.id));
    ASSERT_FALSE(scraped.empty()) << "node " << n.id << " serves no metrics";
    EXPECT_THAT(scraped, HasSubstr("# TYPE cohort_commit_index gauge"));
    EXPECT_THAT(scraped, HasSubstr("# TYPE cohort_fsync_seconds histogram"));
    const auto won = sample(scraped, fmt::format("cohort_elections_won_total{{node=\"{}\"}}", n.id));
    ASSERT_TRUE(won) << scraped;
    won_before[n.id] = *won;
  }
  const double commit_before = metric(old_leader, "cohort_commit_index").value_or(-1);
  ASSERT_GE(commit_before, 1.0);

  {
    KvClient writer(client_endpoints(), 256);
    ASSERT_TRUE(writer.client().wait_connected(deadline()));
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(writer.put(fmt::format("k{}", i), "v", deadline()));
  }
  // Published once per tick: wait for the scrape to show them.
  std::string last;
  const bool moved = eventually(
      [&] {
        const std::string scraped = scrape(metrics_port(old_leader));
        last = scraped;
        const std::string label = fmt::format("{{node=\"{}\"}}", old_leader);
        return sample(scraped, "cohort_commit_index" + label).value_or(0) >= commit_before + 50 &&
               sample(scraped, "cohort_ingress_messages_total" + label).value_or(0) >= 50 &&
               sample(scraped, "cohort_sessions_opened_total" + label).value_or(0) >= 1 &&
               sample(scraped, "cohort_commit_seconds_count" + label).value_or(0) >= 1 &&
               sample(scraped, "cohort_append_seconds_count" + label).value_or(0) >= 1;
      },
      deadline(), 20ms);
  EXPECT_TRUE(moved) << "the leader's counters did not move with 50 writes:\n" << last;
  for (const auto& n : nodes_) {
    if (n.id == old_leader) continue;
    EXPECT_THAT(last,
                HasSubstr(fmt::format("cohort_follower_lag_entries{{follower=\"{}\",node=\"{}\"}}", n.id, old_leader)));
  }

  ASSERT_TRUE(kill_node(old_leader));
  const auto next = wait_leader(deadline(), ids_except(old_leader));
  ASSERT_TRUE(next);
  const std::uint32_t new_leader = next->node_id;
  ASSERT_NE(new_leader, old_leader);
  const bool counted = eventually(
      [&] {
        return metric(new_leader, "cohort_elections_won_total").value_or(0) >= won_before[new_leader] + 1 &&
               metric(new_leader, "cohort_leader") == 1.0;
      },
      deadline(), 20ms);
  EXPECT_TRUE(counted) << "node " << new_leader << " won, but its metrics say: " << scrape(metrics_port(new_leader));
  EXPECT_GE(metric(new_leader, "cohort_elections_started_total").value_or(0), 1.0);
  EXPECT_GE(metric(new_leader, "cohort_term").value_or(0), 2.0);
}

TEST_F(MetricsTest, AMetricsPortInUseRefusesTheStartNamingIt) {
  ASSERT_TRUE(start_cluster({}, 1));
  const std::uint16_t taken = node(1).client_port;  // a port a node listens on
  const TempDir dir;
  const RunResult refused =
      run(COHORTD_PATH,
          {"--node-id", "1", "--cluster-id", std::to_string(kClusterId), "--data-dir", (dir.path() / "n").string(),
           "--member", "1,127.0.0.1:0,127.0.0.1:0", "--metrics", fmt::format("127.0.0.1:{}", taken)},
          dir.path(), "refused");
  EXPECT_EQ(refused.status, 2);
  EXPECT_THAT(refused.err, HasSubstr(fmt::format("metrics: cannot serve metrics on 127.0.0.1:{}", taken)));
  const RunResult bad = run(COHORTD_PATH,
                            {"--node-id", "1", "--cluster-id", std::to_string(kClusterId), "--data-dir",
                             (dir.path() / "m").string(), "--member", "1,127.0.0.1:0,127.0.0.1:0", "--metrics", "nope"},
                            dir.path(), "bad");
  EXPECT_EQ(bad.status, 2);
  EXPECT_THAT(bad.err, HasSubstr("metrics: "));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "m")) << "a bad address is refused before the disk is touched";
}

}  // namespace
}  // namespace cohort::testing

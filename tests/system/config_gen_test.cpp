// `cohort config` (issue 17): the files it writes start a working cluster, and it never overwrites one unasked.

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "cluster_harness.h"
#include "process.h"

namespace cohort::testing {
namespace {

bool port_free(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return bound;
}

/// A base port whose nodes' ports (BASE+1..3, BASE+101..103 and the admin ports BASE+201..203) are all free now.
int free_base_port() {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int base = 20000 + static_cast<int>(free_ports(1)[0] % 40000);
    bool all = true;
    for (int id = 1; id <= 3 && all; ++id)
      all = port_free(base + id) && port_free(base + 100 + id) && port_free(base + 200 + id);
    if (all) return base;
  }
  return 0;
}

TEST(ConfigGen, TheFilesItWritesStartAClusterThatServesAClient) {
  const TempDir dir;
  const int base_port = free_base_port();
  ASSERT_NE(base_port, 0) << "no free ports";
  const auto configs = dir.path() / "configs";
  const RunResult written =
      run(COHORT_PATH,
          {"config", "--nodes", "3", "--base-port", std::to_string(base_port), "--host", "localhost", "--cluster-id",
           std::to_string(kClusterId), "--data-root", (dir.path() / "data").string(), "--output", configs.string()},
          dir.path(), "config");
  ASSERT_EQ(written.status, 0) << written.err;
  EXPECT_NE(written.out.find(fmt::format("--members localhost:{}", base_port + 101)), std::string::npos) << written.out;

  std::vector<std::unique_ptr<Process>> nodes;
  std::vector<std::string> members;
  for (int id = 1; id <= 3; ++id) {
    nodes.push_back(std::make_unique<Process>(
        COHORTD_PATH, std::vector<std::string>{"--config", (configs / fmt::format("node{}.toml", id)).string()},
        dir.path(), fmt::format("n{}", id)));
    members.push_back(fmt::format("localhost:{}", base_port + 100 + id));
  }
  for (auto& node : nodes) ASSERT_TRUE(node->wait_stdout("clients on ", deadline())) << node->stderr_text();
  KvClient writer(members);
  EXPECT_TRUE(writer.put("generated", "yes", deadline()));
  for (auto& node : nodes) node->signal(SIGTERM);
  for (auto& node : nodes) EXPECT_EQ(node->wait_exit(deadline()), 0) << node->stderr_text();
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "data" / "n1")) << "data_dir as the files name it";
}

TEST(ConfigGen, ExistingFilesAreKeptUnlessForced) {
  const TempDir dir;
  const std::vector<std::string> args = {"config", "--nodes", "3", "--output", dir.path().string()};
  ASSERT_EQ(run(COHORT_PATH, args, dir.path(), "first").status, 0);
  const RunResult again = run(COHORT_PATH, args, dir.path(), "again");
  EXPECT_EQ(again.status, 1) << again.err;
  EXPECT_NE(again.err.find("node1.toml exists (--force overwrites it)"), std::string::npos) << again.err;
  auto forced = args;
  forced.emplace_back("--force");
  EXPECT_EQ(run(COHORT_PATH, forced, dir.path(), "forced").status, 0);
  EXPECT_EQ(run(COHORT_PATH, {"config", "--nodes", "3", "--base-port", "65500", "--output", dir.path().string()},
                dir.path(), "no-room")
                .status,
            2);
}

}  // namespace
}  // namespace cohort::testing

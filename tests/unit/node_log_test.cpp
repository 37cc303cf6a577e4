// Where a node's diagnostic lines go (NodeOptions::log, log_level): a lone node on real sockets and a real data
// directory, started, visited by a client connection (so its transport has something to say), and stopped.

#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "cohort/log.h"
#include "cohort/node.h"
#include "fd_capture.h"
#include "io/event_loop.h"
#include "io/tcp_transport.h"
#include "protocol/handshake.h"
#include "services/echo_service.h"

namespace cohort {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kCluster = 77;
constexpr std::uint32_t kNodeId = 7;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "cohort-node-log-test-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : std::string();
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// The node logs from its own thread; the test reads once it has stopped.
class SharedLog {
 public:
  LogSink sink() {
    return [this](LogLevel level, std::string_view line) {
      const std::lock_guard lock(mutex_);
      lines_.emplace_back(level, std::string(line));
    };
  }
  std::vector<std::pair<LogLevel, std::string>> lines() const {
    const std::lock_guard lock(mutex_);
    return lines_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<LogLevel, std::string>> lines_;
};

class ClientHandler final : public io::TransportHandler {
 public:
  void on_connected(io::ConnectionId, const protocol::PeerIdentity&) override { connected = true; }
  void on_frame(io::ConnectionId, const protocol::Frame&) override {}
  void on_disconnected(io::ConnectionId, io::DisconnectReason, std::string_view) override { failed = true; }
  bool connected = false;
  bool failed = false;
};

NodeOptions lone_node(const std::string& data_dir) {
  NodeOptions options;
  options.node_id = kNodeId;
  options.cluster_id = kCluster;
  options.members = {Member{kNodeId, "127.0.0.1:0", "127.0.0.1:0"}};
  options.data_dir = data_dir;
  options.handle_signals = false;
  return options;
}

struct RunResult {
  bool started = false;
  bool client_connected = false;
  int exit_code = -1;
};

/// Starts the node, connects a client to it (its transport logs the connection), stops it.
RunResult start_visit_and_stop(NodeOptions options) {
  RunResult result;
  services::EchoService service;
  Node node(std::move(options), service);
  if (auto error = node.start()) {
    ADD_FAILURE() << *error;
    return result;
  }
  result.started = true;
  std::thread runner([&] { result.exit_code = node.run(); });
  {
    io::EventLoop loop;
    ClientHandler handler;
    io::TcpTransportConfig config;  // no logger: this side stays silent
    config.identity = protocol::client_identity(kCluster, protocol::PeerRole::client);
    io::TcpTransport client(loop, config, handler);
    const auto endpoint = io::parse_endpoint(node.client_endpoint());
    if (endpoint) {
      client.connect(*endpoint);
      result.client_connected =
          loop.run_until([&] { return handler.connected || handler.failed; }, 30s) && handler.connected;
    }
  }
  node.request_stop();
  runner.join();
  return result;
}

bool any_contains(const std::vector<std::pair<LogLevel, std::string>>& lines, std::string_view part) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const auto& line) { return line.second.find(part) != std::string::npos; });
}

TEST(NodeLog, EveryLineGoesToTheSinkTaggedWithTheNodeAndNothingToStdout) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  SharedLog log;
  NodeOptions options = lone_node(dir.path());
  options.log = log.sink();
  testing::FdCapture out(STDOUT_FILENO);
  testing::FdCapture err(STDERR_FILENO);
  ASSERT_TRUE(out.ok() && err.ok());
  const RunResult run = start_visit_and_stop(std::move(options));
  const std::string written = out.finish();
  const std::string errors = err.finish();

  ASSERT_TRUE(run.started);
  EXPECT_TRUE(run.client_connected);
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(written, "");
  EXPECT_EQ(errors, "");  // a sink of its own: the default stderr sink is not used as well
  const auto lines = log.lines();
  ASSERT_FALSE(lines.empty());
  for (const auto& [level, line] : lines) EXPECT_TRUE(line.starts_with("[node 7] ")) << line;
  EXPECT_TRUE(any_contains(lines, "log recovered"));        // the node's own
  EXPECT_TRUE(any_contains(lines, "established: client"));  // its transport's
  EXPECT_TRUE(any_contains(lines, "stopped"));
}

TEST(NodeLog, LinesBelowTheNodesLevelAreDropped) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  SharedLog log;
  NodeOptions options = lone_node(dir.path());
  options.log = log.sink();
  options.log_level = LogLevel::warn;
  const RunResult run = start_visit_and_stop(std::move(options));
  ASSERT_TRUE(run.started);
  EXPECT_TRUE(run.client_connected);
  for (const auto& [level, line] : log.lines()) EXPECT_GE(level, LogLevel::warn) << line;
  EXPECT_FALSE(any_contains(log.lines(), "established"));
}

TEST(NodeLog, WithoutASinkLinesGoToStderr) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  testing::FdCapture out(STDOUT_FILENO);
  testing::FdCapture err(STDERR_FILENO);
  ASSERT_TRUE(out.ok() && err.ok());
  const RunResult run = start_visit_and_stop(lone_node(dir.path()));
  const std::string written = out.finish();
  const std::string errors = err.finish();

  ASSERT_TRUE(run.started);
  EXPECT_EQ(written, "");
  EXPECT_NE(errors.find(" info: [node 7] log recovered"), std::string::npos) << errors;
  EXPECT_NE(errors.find(" info: [node 7] connection "), std::string::npos) << errors;
}

}  // namespace
}  // namespace cohort

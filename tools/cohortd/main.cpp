// cohortd: a Cohort node. At this stage it runs the runtime alone: it listens, handshakes with peers,
// clients and admin tools, and answers pings. Consensus, storage and services arrive with later layers.

#include <csignal>
#include <cstdio>
#include <string>

#include <cohort/version.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "io/event_loop.h"
#include "io/logging.h"
#include "io/tcp_transport.h"
#include "protocol/messages.h"

namespace {

using namespace cohort;

// Answers every ping with a pong carrying the same fields.
class PingResponder final : public io::TransportHandler {
 public:
  void attach(io::Transport& transport) { transport_ = &transport; }

  void on_connected(io::ConnectionId /*id*/, const protocol::PeerIdentity& /*peer*/) override {}
  void on_disconnected(io::ConnectionId /*id*/, io::DisconnectReason /*reason*/, std::string_view /*d*/) override {}

  void on_frame(io::ConnectionId id, const protocol::Frame& frame) override {
    if (frame.header.type != protocol::MessageType::ping) return;
    auto ping = protocol::decode<protocol::Ping>(frame);
    if (!ping) {
      // A peer that sends garbage is closed: one log line per connection, not one per frame.
      spdlog::warn("closing connection {}: invalid ping: {}", static_cast<std::uint64_t>(id), ping.error().describe());
      transport_->close(id);
      return;
    }
    std::array<std::byte, protocol::kFrameHeaderSize + protocol::Pong::kBodySize> out{};
    protocol::encode_frame(protocol::Pong{ping->id, ping->sent_at_ns}, out);
    // A pong that finds the buffer full is dropped: the pinger times it out, which is what ping means.
    (void)transport_->send(id, out);
  }

 private:
  io::Transport* transport_ = nullptr;
};

}  // namespace

static int run(int argc, char** argv) {
  CLI::App app{"cohortd: a Cohort cluster node"};
  app.set_version_flag("--version", cohort::kVersionString);
  std::uint32_t node_id = 1;
  std::uint64_t cluster_id = 1;
  std::string listen = "127.0.0.1:7100";
  std::string log_level = "info";
  app.add_option("--node-id", node_id, "this node's id (1..)")->check(CLI::Range(1U, 0xFFFFFFFFU));
  app.add_option("--cluster-id", cluster_id, "the cluster's id; peers and clients must present the same");
  app.add_option("--listen", listen, "address to accept connections on, host:port (port 0: any free port)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  CLI11_PARSE(app, argc, argv);

  io::init_logging(fmt::format("node {}", node_id), log_level);

  auto endpoint = io::parse_endpoint(listen);
  if (!endpoint) {
    spdlog::error("bad --listen: {}", endpoint.error());
    return 2;
  }

  io::EventLoop loop;
  // Before anything announces the node: a SIGTERM right after "listening on" must find the handler in place.
  loop.on_signals({SIGINT, SIGTERM}, [&loop](int signal) {
    spdlog::info("received {}, stopping", signal == SIGTERM ? "SIGTERM" : "SIGINT");
    loop.stop();
  });
  PingResponder responder;
  io::TcpTransportConfig config;
  config.identity = protocol::LocalIdentity{cluster_id, protocol::PeerRole::node, node_id, {}};
  io::TcpTransport transport(loop, config, responder);
  responder.attach(transport);
  auto bound = transport.listen(*endpoint);
  if (!bound) {
    spdlog::error("{}", bound.error());
    return 2;
  }
  spdlog::info("cluster {} node {} listening on {}", cluster_id, node_id, bound->to_string());
  // Scripts and tests wait for this exact line to learn the port.
  std::printf("listening on %s\n", bound->to_string().c_str());
  std::fflush(stdout);

  loop.run();
  spdlog::info("stopped");
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s: fatal: %s\n", "cohortd", error.what());
    return 1;
  }
}

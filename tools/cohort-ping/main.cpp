// cohort-ping: connects to a node as an admin tool, sends pings and reports round-trip times.
// Exit status: 0 all pings answered; 1 connection failed or lost, or pings unanswered; 2 refused by the node
// (wrong cluster id, protocol version) or bad arguments.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <cohort/version.h>
#include <CLI/CLI.hpp>

#include "io/event_loop.h"
#include "io/tcp_transport.h"
#include "protocol/messages.h"

namespace {

using namespace cohort;
using Clock = std::chrono::steady_clock;

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

class Pinger final : public io::TransportHandler {
 public:
  Pinger(io::EventLoop& loop, std::uint64_t count, std::chrono::milliseconds interval)
      : loop_(loop), count_(count), interval_(interval) {}
  void attach(io::Transport& transport, io::ConnectionId id) {
    transport_ = &transport;
    id_ = id;
  }

  void on_connected(io::ConnectionId /*id*/, const protocol::PeerIdentity& peer) override {
    std::printf("connected to node %u\n", peer.node_id);
    send_next();
  }

  void on_frame(io::ConnectionId /*id*/, const protocol::Frame& frame) override {
    if (frame.header.type != protocol::MessageType::pong) return;
    auto pong = protocol::decode<protocol::Pong>(frame);
    if (!pong) return;
    const double rtt_us = static_cast<double>(now_ns() - pong->sent_at_ns) / 1000.0;
    rtts_.push_back(rtt_us);
    std::printf("pong %llu: %.1f us\n", static_cast<unsigned long long>(pong->id), rtt_us);
    if (rtts_.size() == count_) {
      loop_.stop();
      return;
    }
    timer_ = loop_.every(interval_, [this] {
      timer_.reset();
      send_next();
    });
  }

  void on_disconnected(io::ConnectionId /*id*/, io::DisconnectReason reason, std::string_view detail) override {
    std::fprintf(stderr, "cohort-ping: %s\n", std::string(detail).c_str());
    exit_code_ = reason == io::DisconnectReason::handshake_rejected ? 2 : 1;
    loop_.stop();
  }

  int finish() const {
    if (exit_code_ != 0) return exit_code_;
    if (rtts_.size() < count_) {
      std::fprintf(stderr, "cohort-ping: %zu of %llu pings answered before the deadline\n", rtts_.size(),
                   static_cast<unsigned long long>(count_));
      return 1;
    }
    std::vector<double> sorted = rtts_;
    std::sort(sorted.begin(), sorted.end());
    std::printf("%zu pings: min %.1f us, p50 %.1f us, max %.1f us\n", sorted.size(), sorted.front(),
                sorted[sorted.size() / 2], sorted.back());
    return 0;
  }

 private:
  void send_next() {
    std::array<std::byte, protocol::kFrameHeaderSize + protocol::Ping::kBodySize> out{};
    protocol::encode_frame(protocol::Ping{next_id_++, now_ns()}, out);
    (void)transport_->send(id_, out);
  }

  io::EventLoop& loop_;
  std::uint64_t count_;
  std::chrono::milliseconds interval_;
  io::Transport* transport_ = nullptr;
  io::ConnectionId id_{};
  std::uint64_t next_id_ = 1;
  std::vector<double> rtts_;
  std::unique_ptr<io::EventLoop::Periodic> timer_;
  int exit_code_ = 0;
};

}  // namespace

static int run(int argc, char** argv) {
  CLI::App app{"cohort-ping: check that a Cohort node answers, and how fast"};
  app.set_version_flag("--version", cohort::kVersionString);
  std::string target;
  std::uint64_t cluster_id = 1;
  std::uint64_t count = 5;
  int interval_ms = 200;
  int timeout_ms = 5000;
  app.add_option("target", target, "node address, host:port")->required();
  app.add_option("--cluster-id", cluster_id, "the cluster's id");
  app.add_option("-c,--count", count, "pings to send")->check(CLI::Range(1U, 1000000U));
  app.add_option("--interval-ms", interval_ms, "pause between pings")->check(CLI::Range(0, 60000));
  app.add_option("--timeout-ms", timeout_ms, "give up after this long")->check(CLI::Range(1, 3600000));
  CLI11_PARSE(app, argc, argv);

  auto endpoint = io::parse_endpoint(target);
  if (!endpoint) {
    std::fprintf(stderr, "cohort-ping: %s\n", endpoint.error().c_str());
    return 2;
  }
  io::EventLoop loop;
  Pinger pinger(loop, count, std::chrono::milliseconds(interval_ms));
  io::TcpTransportConfig config;  // no logger: the transport is silent, and failures are reported once, below
  config.identity = protocol::client_identity(cluster_id, protocol::PeerRole::admin);
  config.handshake_timeout = std::chrono::milliseconds(timeout_ms);
  io::TcpTransport transport(loop, config, pinger);
  pinger.attach(transport, transport.connect(*endpoint));
  auto deadline = loop.every(std::chrono::milliseconds(timeout_ms), [&loop] { loop.stop(); });
  loop.run();
  return pinger.finish();
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s: fatal: %s\n", "cohort-ping", error.what());
    return 1;
  }
}

#pragma once
// A Cohort node as a library: link it into your own executable together with your Service and run one node of
// a cluster, as an Aeron Cluster user hosts a clustered service. `cohortd` is this library plus built-in
// services chosen by configuration.
//
//   MyService service;
//   cohort::Node node(options, service);
//   if (auto error = node.start()) { std::cerr << *error << "\n"; return 2; }
//   return node.run();  // until SIGTERM/SIGINT (if handle_signals) or request_stop()
//
// Threads: run() turns the calling thread into the node's event loop, which owns the consensus core, the
// session layer and the service (every Service callback runs on it); one more thread appends and fsyncs.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cohort/service.h"

namespace cohort {

struct Member {
  std::uint32_t id = 0;
  std::string peer_endpoint;    // host:port other members connect to
  std::string client_endpoint;  // host:port clients connect to
  friend bool operator==(const Member&, const Member&) = default;
};

enum class SyncPolicy : std::uint8_t {
  fsync,  // default: an entry counts as stored only once fdatasync covered it (survives power loss of every node)
  none,   // stored once written to the page cache: durability by replication (survives any minority of crashes)
};

struct NodeOptions {
  std::uint32_t node_id = 0;
  std::uint64_t cluster_id = 0;
  std::vector<Member> members;  // every voting member, this node included
  std::string data_dir;
  SyncPolicy sync = SyncPolicy::fsync;
  std::chrono::milliseconds heartbeat_interval{50};
  std::chrono::milliseconds election_timeout_min{500};
  std::chrono::milliseconds election_timeout_max{1000};  // exclusive
  std::chrono::milliseconds client_keepalive_interval{250};
  std::uint64_t segment_size = 64ULL << 20U;
  std::size_t max_message_size = 1U << 20U;  // ingress and egress payload bytes
  bool handle_signals = true;                // SIGTERM and SIGINT stop the node gracefully
};

/// Every problem with `options` that can be seen without touching the disk or the network, one per line, each
/// naming the setting; nullopt if there is none.
std::optional<std::string> validate(const NodeOptions& options);

class Node {
 public:
  Node(NodeOptions options, Service& service);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  /// Validates the options, opens and recovers the data directory, binds both listening endpoints. Returns a
  /// message naming the setting and the reason if any of that fails; the node is then unusable.
  std::optional<std::string> start();

  /// Runs the node on the calling thread until it stops. Returns 0 after a graceful stop (leadership handed
  /// over if this node led, everything written made durable), non-zero if storage failed.
  int run();

  /// Thread-safe (not async-signal-safe: it allocates): begins a graceful stop. With handle_signals, the node
  /// handles SIGTERM and SIGINT itself.
  void request_stop();

  /// The endpoints actually bound (port 0 in the options picks a free port), valid after start().
  std::string peer_endpoint() const;
  std::string client_endpoint() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cohort

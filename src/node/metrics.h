#pragma once
// A node's Prometheus metrics (docs/operations.md, "Metrics"): prometheus-cpp's registry, and its pull exposer
// serving /metrics on the `metrics` address from threads of its own.
//
// Cost on the node's threads: the loop keeps plain counters where events happen (the gateway's, the core's, the
// host's, its own) and copies them into the registry once per tick (publish(): a few dozen atomic stores, whatever the
// message rate). Histograms take a lock per observation, so they are observed per group commit (append, fsync), per
// batch of entries committed (commit) and per loop turn that applied entries (apply): never per message. None of it
// allocates once made.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace cohort::node {

/// What the node publishes each tick. Counters are totals since the node started (the registry is told the
/// difference); the rest are values now.
struct MetricValues {
  int role = 0;  // 0 follower, 1 pre-candidate, 2 candidate, 3 leader
  std::uint64_t term = 0;
  std::uint64_t elections_started = 0;
  std::uint64_t elections_won = 0;
  std::uint64_t commit_index = 0;
  std::uint64_t applied_index = 0;
  std::uint64_t last_index = 0;
  std::uint64_t sessions_open = 0;
  std::uint64_t sessions_opened = 0;
  std::uint64_t sessions_expired = 0;
  std::uint64_t ingress_messages = 0;
  std::uint64_t ingress_bytes = 0;
  std::uint64_t egress_messages = 0;
  std::uint64_t egress_bytes = 0;
  std::uint64_t redirects = 0;
  std::uint64_t back_pressure = 0;  // busy replies, and pauses of client reading
  std::uint64_t snapshots_taken = 0;
  std::uint64_t snapshots_installed = 0;
  std::uint64_t storage_errors = 0;
};

class NodeMetrics {
 public:
  /// Starts serving at `address` (host:port, port 0 for any free one) for node `node_id`, whose followers, when it
  /// leads, are `others`. The error says why it cannot (the port is taken, the address is not this host's).
  static Result<std::unique_ptr<NodeMetrics>, std::string> start(const std::string& address, std::uint32_t node_id,
                                                                 const std::vector<std::uint32_t>& others);
  ~NodeMetrics();
  NodeMetrics(const NodeMetrics&) = delete;
  NodeMetrics& operator=(const NodeMetrics&) = delete;

  /// The address actually served ("127.0.0.1:9100").
  const std::string& address() const noexcept { return address_; }

  void publish(const MetricValues& values);
  /// The leader's view of follower `index` (in the order start() was given): entries it lacks; none when this node
  /// does not lead.
  void set_follower_lag(std::size_t index, std::uint64_t entries);
  void clear_follower_lag();

  void observe_append(std::chrono::nanoseconds took);
  void observe_fsync(std::chrono::nanoseconds took);
  void observe_commit(std::chrono::nanoseconds took);
  void observe_apply(std::chrono::nanoseconds took);

  struct Impl;

 private:
  explicit NodeMetrics(std::unique_ptr<Impl> impl, std::string address);
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace cohort::node

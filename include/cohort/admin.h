#pragma once
// Operator queries: ask one node how it sees the cluster. Blocking, for tools, tests and health checks.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace cohort {

struct NodeStatus {
  std::uint32_t node_id = 0;
  std::string role;  // follower, pre-candidate, candidate, leader
  /// member; fresh (an empty data directory, asking the others); recovering (it may have lost what it
  /// acknowledged: it catches up from the leader before it votes again). docs/consensus.md.
  std::string standing;
  std::uint32_t leader_id = 0;  // 0: unknown
  /// Committed entries this replica could not apply as they are (undecodable, a stamp going back, a service that
  /// threw): equal on every replica; the node's log names each one.
  std::uint32_t entry_faults = 0;
  std::uint64_t term = 0;
  std::uint64_t commit_index = 0;
  std::uint64_t applied_index = 0;
  std::uint64_t last_index = 0;
  std::uint64_t state_hash = 0;  // of the replicated state at applied_index: equal on replicas at equal positions
  std::uint64_t open_sessions = 0;
  std::vector<std::uint32_t> members;  // the node's member list, ascending
  std::uint64_t configuration_id = 0;  // a hash of `members`: equal on nodes that agree
  /// What the node sees wrong with the cluster's configuration, one sentence each: a member refused for another
  /// member list or incarnation, a member advertising another client endpoint than the node's list names. Empty
  /// on a healthy cluster.
  std::vector<std::string> problems;
};

struct StatusResult {
  bool ok = false;
  std::string error;  // when !ok: why (unreachable, refused, timed out)
  NodeStatus status;
};

/// Connects to `client_endpoint` ("host:port") as an admin tool, asks for the node's status and waits at most
/// `timeout` for the answer.
StatusResult query_status(const std::string& client_endpoint, std::uint64_t cluster_id,
                          std::chrono::milliseconds timeout);

struct SnapshotResult {
  bool ok = false;
  std::string error;        // when !ok: why (unreachable, refused, timed out, the write failed, the node stops)
  std::uint64_t index = 0;  // the snapshot's position (its last entry) and term, and its size in bytes
  std::uint64_t term = 0;
  std::uint64_t size = 0;
};

/// Asks the node at `client_endpoint` to take a snapshot now and waits at most `timeout` until it is written
/// (durable). If nothing was applied since its newest snapshot, that one is the answer.
SnapshotResult request_snapshot(const std::string& client_endpoint, std::uint64_t cluster_id,
                                std::chrono::milliseconds timeout);

}  // namespace cohort

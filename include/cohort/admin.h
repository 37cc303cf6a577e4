#pragma once
// Operator calls: ask one node how it sees the cluster (status), or have it take a snapshot, hand over leadership
// or stop. Blocking, for tools, tests and health checks.

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
  /// Of the replicated state at applied_index: equal on replicas at equal positions. Only when asked for
  /// (query_status's with_state_hash), since the node serializes its whole state to compute it.
  std::uint64_t state_hash = 0;
  bool state_hash_included = false;
  std::uint64_t open_sessions = 0;
  std::uint64_t snapshot_index = 0;  // the newest snapshot on disk (0: none), and its term (0 if unknown)
  std::uint64_t snapshot_term = 0;
  std::chrono::milliseconds uptime{0};
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

/// Connects to `endpoint` ("host:port", a node's client or admin endpoint) as an admin tool, asks for the node's
/// status and waits at most `timeout` for the answer. `with_state_hash` has the node compute its state hash, which
/// serializes its whole replicated state on its event loop: a pause that grows with the state. A node computes one
/// at most every 100 ms while it applies, so the answer may lack it (state_hash_included false): ask again.
StatusResult query_status(const std::string& endpoint, std::uint64_t cluster_id, std::chrono::milliseconds timeout,
                          bool with_state_hash = false);

/// Where an admin command that changes a node or the cluster goes. A node takes one on its admin endpoint (a
/// loopback address on its own host, docs/operations.md), or on its client endpoint with a credential its
/// NodeOptions::admin_authenticator accepts (never the clients' authenticator).
struct AdminTarget {
  std::string endpoint;  // host:port
  std::uint64_t cluster_id = 0;
  std::uint32_t node_id = 0;  // the node meant: another node that answers refuses (0: whichever answers)
  std::string credential;     // on a client endpoint
  std::chrono::milliseconds timeout{60000};
};

struct AdminResult {
  bool ok = false;
  std::string error;            // when !ok: why (unreachable, refused, not the leader, timed out, failed)
  std::uint32_t node_id = 0;    // the node that answered (0: none did)
  std::uint32_t leader_id = 0;  // the leader that node knows (0: unknown); for a transfer asked of a non-leader
  std::uint64_t index = 0;      // request_snapshot: the snapshot's position (its last entry), term and size in bytes
  std::uint64_t term = 0;
  std::uint64_t size = 0;
};

/// Asks the node to take a snapshot now and waits until it is written (durable). If nothing was applied since
/// its newest snapshot, that one is the answer.
AdminResult request_snapshot(const AdminTarget& node);

/// Asks the leader to hand leadership to node `to`, and waits until `to` leads. Fails at a node that does not lead
/// (leader_id names the one it knows), and when `to` did not take over within two election timeouts.
AdminResult transfer_leadership(const AdminTarget& leader, std::uint32_t to);

/// Asks the node to stop gracefully (as SIGTERM does: a leader hands over first, everything written is made
/// durable) and waits until its process has closed the connection.
AdminResult request_shutdown(const AdminTarget& node);

}  // namespace cohort

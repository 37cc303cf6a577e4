#pragma once
// The service API: what a user implements to run their business logic (a matching engine, a ledger, a
// key-value store) on every node of a Cohort cluster, as an Aeron Cluster user implements ClusteredService.
//
// Every node feeds its service the same committed entries in the same log order, so every replica computes the
// same state. For that to hold, a service must be deterministic:
//  - it reads time only through Cluster::time() (cluster time, the committed entry's stamp), never a clock;
//  - it draws randomness, if any, from a generator seeded by its own state;
//  - it iterates in a defined order wherever the order reaches its state or its output;
//  - it does not let on_role_change() change its replicated state (the role is this node's alone).
// All callbacks run on the node's event-loop thread, one at a time; a callback must not block.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace cohort {

/// A client session: the log index of the entry that opened it. Never reused within a cluster.
using SessionId = std::uint64_t;
/// Chosen by the service; scheduling an id that is pending replaces its deadline.
using TimerId = std::uint64_t;
/// Cluster time: nanoseconds since the Unix epoch, as stamped by the leader that appended the entry. It never
/// goes back along the log; between entries it does not move.
using ClusterTime = std::chrono::nanoseconds;
using Bytes = std::span<const std::byte>;

enum class CloseReason : std::uint8_t {
  client_closed = 1,  // the client closed its session
  timeout = 2,        // the client was silent for longer than the session timeout
  service = 3,        // the service closed it (Cluster::close_session)
};
const char* to_string(CloseReason reason) noexcept;

enum class ClusterRole : std::uint8_t { follower = 1, candidate = 2, leader = 3 };
const char* to_string(ClusterRole role) noexcept;

/// The service's handle on the cluster. Valid only during the callback it is passed to.
class Cluster {
 public:
  virtual ~Cluster() = default;

  /// The stamp of the entry being applied (for on_start: of the last entry applied before it).
  virtual ClusterTime time() const noexcept = 0;
  /// The log index of the entry being applied.
  virtual std::uint64_t log_position() const noexcept = 0;
  /// This node's role: for information only, never for decisions that reach the replicated state.
  virtual ClusterRole role() const noexcept = 0;

  /// Arms timer `id` to fire at cluster time `deadline` or later (replacing its deadline if it is pending).
  /// The leader appends the firing to the log once its cluster time passes the deadline; every replica then
  /// runs on_timer exactly once for it, however often the firing was appended.
  virtual void schedule_timer(TimerId id, ClusterTime deadline) = 0;
  /// Disarms timer `id`; returns whether it was pending.
  virtual bool cancel_timer(TimerId id) = 0;

  /// Sends `message` to the client of `session` (egress). Every replica computes it; only the leader transmits.
  /// Returns false if the session is not open, or the message is larger than the cluster's egress limit.
  virtual bool send(SessionId session, Bytes message) = 0;
  /// Closes `session` (on_session_close follows with CloseReason::service).
  virtual bool close_session(SessionId session) = 0;
};

/// Exceptions. A callback that applies a committed entry (on_session_open, on_session_close, on_message,
/// on_timer) may throw; the node does not stop, since an exception thrown by a deterministic service is thrown
/// again by every replica at the same entry and at every replay, and stopping would stop the whole cluster there.
/// Instead:
///  - the exception is caught, and the entry still counts as applied: a message's seq is consumed and its client
///    told "applied" (the service was handed it once; it is never delivered again), a timer's firing is spent, an
///    opened or closed session stays so;
///  - the entry is counted, logged at error level with its log index and the exception's what(), and shown in the
///    node's status (the last such index and reason);
///  - nothing is rolled back: what the callback changed in its own state, and did through Cluster (egress sent,
///    timers armed or cancelled, sessions closed), before it threw stands.
/// Every replica then stays alike only if the service is deterministic in what it throws as well: the same
/// entry on the same state throws at the same point, on every replica. So never throw for a reason local to one
/// node (a clock, a file, a network call: none belongs in a service anyway), and prefer validating input and
/// answering an error over throwing half way through a change. Running out of memory (std::bad_alloc) is the one
/// exception not caught: it is this process's condition, skipping the entry here alone would part this replica
/// from the others, so the node stops (and replays the entry when restarted); bound what one entry can make the
/// service allocate. on_start, on_take_snapshot and on_role_change apply no entry and are not covered: an
/// exception from them propagates to the node.
class Service {
 public:
  virtual ~Service() = default;

  /// Once, before any other callback: restore from `snapshot` (what on_take_snapshot wrote), if there is one.
  /// cluster.log_position() and cluster.time() are the snapshot's (0 without one).
  virtual void on_start(Cluster& cluster, std::optional<Bytes> snapshot) = 0;
  /// Replaces the whole state with `snapshot`'s, discarding the state held before (not merging): a follower that
  /// fell too far behind installs the leader's snapshot while it runs. cluster.log_position() is the snapshot's;
  /// entries after it follow. Timers armed before are already replaced by the snapshot's, as is every session.
  virtual void on_restore(Cluster& cluster, Bytes snapshot) = 0;
  // The four callbacks below apply a committed entry: an exception from them is caught, counted and logged, and
  // the entry counts as applied (see "Exceptions" above).
  virtual void on_session_open(Cluster& cluster, SessionId session) = 0;
  virtual void on_session_close(Cluster& cluster, SessionId session, CloseReason reason) = 0;
  /// One ingress message of `session`, delivered exactly once and in the order the client offered it.
  virtual void on_message(Cluster& cluster, SessionId session, ClusterTime timestamp, Bytes message) = 0;
  virtual void on_timer(Cluster& cluster, TimerId id, ClusterTime timestamp) = 0;
  /// Appends the service's whole state to `out`, in a form on_start and on_restore can restore. Two replicas at
  /// the same log position must write the same bytes. It runs on the event loop, which waits for it (heartbeats
  /// and client keep-alives too): write compactly, and keep what a large state costs to copy in mind (see
  /// docs/architecture.md, "Snapshots").
  virtual void on_take_snapshot(Cluster& cluster, std::vector<std::byte>& out) = 0;
  virtual void on_role_change(Cluster& /*cluster*/, ClusterRole /*role*/) {}
};

}  // namespace cohort

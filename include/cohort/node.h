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
// session layer and the service (every Service callback runs on it); one more thread appends and fsyncs; a short-lived
// one writes each snapshot; and with metrics_endpoint set, the exposer serves /metrics from one of its own.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cohort/idle.h"
#include "cohort/log.h"
#include "cohort/service.h"

namespace cohort {

struct Member {
  std::uint32_t id = 0;
  // host:port or [v6-address]:port; the host may be a name: a node resolves its own at start(), before it touches
  // its data directory, and another member's each time it connects to it.
  std::string peer_endpoint;    // host:port other members connect to
  std::string client_endpoint;  // host:port clients connect to
  /// host:port where this member takes admin commands that change it or the cluster (snapshot, leadership
  /// transfer, shutdown), from anyone who can connect: bind it to a loopback address (127.0.0.1:PORT), so only
  /// someone on the member's own host can. Empty: none; those commands then need a credential that
  /// NodeOptions::admin_authenticator (never the clients' `authenticator`) accepts, on the client endpoint. Several
  /// members on different hosts may name the same loopback endpoint.
  std::string admin_endpoint{};  // (an initializer: Member{id, peer, client} stays warning-free)
  friend bool operator==(const Member&, const Member&) = default;
};

enum class SyncPolicy : std::uint8_t {
  fsync,  // default: an entry counts as stored only once fdatasync covered it (survives power loss of every node)
  none,   // stored once written to the page cache: durability by replication (survives any minority of crashes)
};

/// Decides whether a client may open a session. The leader asks it before it appends a session open, for every
/// open including a resume (attach) of an existing session, so revoking a client takes effect at its next
/// reconnect. It is the leader's decision alone, never replicated: it may consult local state (a file, a clock),
/// and after a change of leader the new leader's authenticator decides, so give every node the same policy.
///
/// Runs on the node's loop thread, which also runs consensus and the service: it must not block (no network or
/// disk round trip per call) and must not throw. One authenticator shared by several nodes of one process is
/// called from each node's thread, so it must then be thread-safe.
class Authenticator {
 public:
  virtual ~Authenticator() = default;
  /// nullopt: the client may open (or resume) a session; otherwise why it may not, which the client reports as a
  /// permanent refusal. `credential` is the opaque bytes from the client's options (ClientOptions::credential).
  /// Runs on the node's event loop: it must not block. An exception counts as a refusal naming it.
  virtual std::optional<std::string> refuse(std::uint64_t client_id_high, std::uint64_t client_id_low,
                                            std::span<const std::byte> credential) = 0;
};

/// Accepts a client whose credential is byte for byte one of a fixed list, whatever its client id. An empty
/// credential (a client that sets none) is refused unless the list holds the empty string. Immutable after
/// construction, so one instance may serve several nodes.
class CredentialListAuthenticator final : public Authenticator {
 public:
  explicit CredentialListAuthenticator(std::vector<std::string> credentials);

  /// "credential not allowed" unless `credential` is in the list.
  std::optional<std::string> refuse(std::uint64_t client_id_high, std::uint64_t client_id_low,
                                    std::span<const std::byte> credential) override;

  std::size_t size() const noexcept { return credentials_.size(); }

 private:
  std::vector<std::string> credentials_;  // each once
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
  // Compaction removes whole segments, and a restart reads back every segment kept: smaller ones keep less.
  std::uint64_t segment_size = 16ULL << 20U;
  // A snapshot is taken once this many bytes of log follow the last one, and at least as many as the last snapshot
  // has (so writing snapshots costs at most as much disk as the log: a large state is snapshotted less often). 0:
  // never by size. A restart loads the newest snapshot and replays the log after it, so this bounds the replay:
  // 16 MiB replays in about 0.2 s (docs/benchmarks.md, "Snapshots").
  std::uint64_t snapshot_threshold = 16ULL << 20U;
  // Once a snapshot is written, the log before the previous snapshot is removed (so a damaged newest one falls back
  // to the previous one, with the log since it). This many entries before the newest snapshot are kept as well, for
  // followers that lag: one that needs an entry no longer kept is sent the snapshot instead.
  std::uint64_t compaction_margin = 0;
  std::size_t max_message_size = 1U << 20U;  // ingress and egress payload bytes
  bool handle_signals = true;                // SIGTERM and SIGINT stop the node gracefully

  // Sessions (design.md section 3). Those that reach the replicated state must be equal on every node, like
  // max_message_size: replicas that disagree on them apply the same entries differently.
  std::chrono::milliseconds session_timeout{10000};  // the leader's: a session idle this long is closed
  std::size_t max_sessions = 10000;                  // equal on every node: open sessions, checked at apply
  // Tombstones of closed sessions, equal on every node: they answer a resume of a closed session with the last
  // message applied. 0 keeps none: such a client then hears "unknown" for its unacknowledged messages.
  std::size_t max_tombstones = 100000;
  std::chrono::seconds tombstone_max_age{86400};  // equal on every node: older tombstones are dropped
  std::size_t egress_window_messages = 128;       // equal on every node: egress kept per session for resending
  std::size_t egress_window_bytes = 1U << 20U;    // equal on every node: the newest message is kept whatever its size
  std::shared_ptr<Authenticator> authenticator;   // the leader's; null: every client is accepted
  // Who may send the admin commands that change a node (snapshot, leadership transfer, shutdown) to its client
  // endpoint: asked with client id 0 and the credential the command carries. Null: nobody; the member's admin
  // endpoint takes them anyway. Kept apart from `authenticator`, so that a client allowed to open a session is not
  // thereby allowed to stop a node.
  std::shared_ptr<Authenticator> admin_authenticator;

  // host:port where Prometheus metrics are served (GET /metrics, docs/operations.md "Metrics"); empty: none. Anyone
  // who can connect may read them (no command is taken there): bind it where your Prometheus, not the world, reaches.
  std::string metrics_endpoint;

  // The node's diagnostic lines (its transport's included), each starting with "[node ID] ", at log_level and above.
  // Empty: stderr_log_sink(). Nothing is ever written to stdout, which belongs to the application.
  LogSink log;
  LogLevel log_level = LogLevel::info;
  // The event-loop thread's idle strategy (cohort/idle.h): `block` sleeps while idle; `yield` and `spin` keep a CPU
  // busy for the lowest latency.
  IdleStrategy idle = IdleStrategy::block;
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

  /// Validates the options, opens and recovers the data directory, binds its peer and client endpoints (and its
  /// admin and metrics endpoints if configured). Returns a
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
  /// The admin endpoint bound, or "" if the member has none; valid after start().
  std::string admin_endpoint() const;
  /// Where metrics are served, or "" if nowhere; valid after start().
  std::string metrics_endpoint() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace cohort

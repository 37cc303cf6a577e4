#pragma once
// The cluster: the simulated nodes and their lifecycle. A node is a real Replica (the consensus core and the
// service host running ProbeService) built on its storage, and the real client gateway built on the replica; it
// starts, crashes (losing what its storage model loses, every timer and message in flight, and its clients'
// connections), and restarts as a new incarnation that recovers from its disk. An outage stops every node at once.
// The cluster drives each replica by raft.h's driver contract, as the runtime does: after every step it takes
// the replica's outputs, holds messages in an outbox until storage made their `after` durable, reports
// completions in sequence order, and runs the checks that follow a step. It drives each gateway by gateway.h's:
// after every take_ready() the gateway's after_ready(), its tick() with each node tick (the silence probe asks the
// client network), and after every input its frames go onto the client network and its closes are carried out.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <cohort/service.h>

#include "common/random.h"
#include "consensus/memory_log.h"
#include "consensus/raft.h"
#include "gateway/gateway.h"
#include "host/replica.h"
#include "sim/checker.h"
#include "sim/client_checker.h"
#include "sim/client_network.h"
#include "sim/event_queue.h"
#include "sim/fault_mix.h"
#include "sim/network.h"
#include "sim/simulator.h"
#include "sim/storage_model.h"
#include "sim/trace.h"
#include "sim/workload.h"

namespace cohort::sim {

/// One node: its storage, which survives crashes, and what each start builds on it.
struct SimNode {
  SimNode(std::uint32_t index, NodeId node_id, std::uint64_t cluster_id, const FaultMix& mix, const Phase& phase,
          Random& random, const Trace& trace, Stats& stats, Checker& checker)
      : id(node_id), storage(index, node_id, cluster_id, mix, phase, random, trace, stats, checker) {}

  /// Up: a replica runs. Down between a crash and the restart.
  bool up() const noexcept { return raft != nullptr; }

  NodeId id;
  NodeStorage storage;
  std::unique_ptr<ProbeService> service;      // rebuilt from the log at every start
  std::unique_ptr<host::Replica> replica;     // null while the node is down
  std::unique_ptr<gateway::Gateway> gateway;  // on the replica: built and dropped with it
  consensus::Raft* raft = nullptr;            // the replica's consensus core
  Duration clock_skew{0};                     // this node's wall clock minus true time
  LogIndex hashed;                            // applied position whose state hash was checked last
  // Applied position of the newest snapshot this node saved, restored or installed (the disk keeps the one before it
  // too, and the log from there: the next snapshot compacts the log up to this one).
  LogIndex snapshot;
  // Counts starts and stops: an event scheduled for an earlier incarnation finds the node changed and is ignored.
  std::uint64_t incarnation = 0;
  std::vector<consensus::Outgoing> outbox;  // waiting for their `after` to become durable
  // What the last step left, to see what the next one changes.
  LogIndex commit;
  consensus::Role role = consensus::Role::follower;
  Term term;
  consensus::Ready ready;  // reused by every step, so its buffers are allocated once
};

class SimCluster final : public ClientNetworkNodes {
 public:
  /// Builds the nodes (down) and draws their clocks' skews. `cluster_id` stamps real storage's files. The
  /// network carries the nodes' messages, the client network their gateways' frames; the client checker hears
  /// what the replicas apply and send. `phase` is the run's: crashes aimed at chosen moments strike only in the
  /// safety phase.
  SimCluster(const FaultMix& mix, std::uint64_t cluster_id, const Phase& phase, Random& random, EventQueue& events,
             const Trace& trace, Fingerprint& fingerprint, Stats& stats, Checker& checker, Network& network,
             ClientNetwork& client_network, ClientChecker& client_checker);

  std::size_t size() const noexcept { return nodes_.size(); }
  SimNode& node(std::uint32_t index) { return *nodes_[index]; }
  const SimNode& node(std::uint32_t index) const { return *nodes_[index]; }
  std::uint32_t random_node() { return static_cast<std::uint32_t>(random_.below(nodes_.size())); }
  /// The node that believes it leads the newest term, if any.
  std::optional<std::uint32_t> leader() const;
  /// Every node's storage model, for the checker's durability checks.
  std::span<const consensus::MemoryLogStore* const> models() const { return models_; }

  /// An event addressed to the node's current incarnation.
  Event event_for(EventKind kind, std::uint32_t index) const;
  /// The node is up, and still the incarnation the event was scheduled for.
  bool live(const Event& event) const;

  /// Starts a new incarnation of a node that is down: its storage opens (recovering from its disk), a replica is
  /// built on it, and its timer starts.
  void start(std::uint32_t index);
  /// Crashes a node that is up, and schedules its restart 0.05-5 s later.
  void crash(std::uint32_t index, const char* why);
  /// Starts every node that is down (the liveness phase begins).
  void start_stopped();
  /// Every node that is up stops at once; each restarts after 1.2-1.6x the session timeout.
  void outage();
  /// Every node's machine loses power at once (sync policy none): each loses its page cache, a node that was down
  /// too; each restarts 0.05-2 s later. Returns how far the log survives on a majority (the committed entries after
  /// it may be lost), after forgetting the state hashes of the positions after it.
  LogIndex power_loss();
  /// Every node stops (those down already stay down) for `length`; each restarts within 2 s after it. Returns when a
  /// majority is up again.
  Time blackout(Duration length);
  /// A blackout keeps every node down now.
  bool blacked_out() const { return events_.now() < blackout_until_; }

  /// After every step of a node's replica: its messages to the outbox (released once durable), its storage's
  /// work to the event queue, then the checks and the fingerprint.
  void flush(std::uint32_t index);
  /// After a step: the node takes a snapshot if it applied mix.snapshot_every entries since its last.
  void maybe_snapshot(std::uint32_t index);

  /// Every node's role, term, leader, log, durable log and commit index, one line each (for a failure).
  std::string describe_state() const;

  // The events addressed to a node (event_queue.h).
  void on_deliver(const Event& event);
  void on_tick(const Event& event);
  void on_sync(const Event& event);
  void on_storage_write(const Event& event);
  void on_storage_sync(const Event& event);
  void on_crash_node(const Event& event);
  void on_restart(const Event& event);

  // ClientNetworkNodes: the client network reaches each node's gateway.
  std::optional<std::uint64_t> incarnation(std::uint32_t index) const override;
  protocol::PeerIdentity identity(std::uint32_t index) const override;
  void on_connected(std::uint32_t index, std::uint64_t connection) override;
  void on_frame(std::uint32_t index, std::uint64_t connection, const protocol::Frame& frame) override;
  void on_disconnected(std::uint32_t index, std::uint64_t connection) override;

 private:
  // The node goes down: its storage crashes (losing state too, with `loss`), in-flight work and timers vanish,
  // and the incarnation moves on.
  void stop(std::uint32_t index, const char* why, StateLoss loss = StateLoss::none);
  // Whether this crash also loses state: only while no more than a minority, this node included, has lost state
  // and not caught up since (the fault model the protocol promises to survive).
  StateLoss choose_loss(std::uint32_t index);
  // A sync failed: the node stops (never retry a failed fsync) and restarts 1-5 s later.
  void stop_after_failed_sync(std::uint32_t index);
  void schedule_storage(std::uint32_t index, const StorageEvent& work);
  void release(std::uint32_t index);
  // The host's outputs reach the client checker before the gateway takes them.
  void observe_outputs(std::uint32_t index);
  void send_gateway_outputs(std::uint32_t index);
  void observe_state(std::uint32_t index);
  ClusterTime wall(const SimNode& node) const;

  const FaultMix& mix_;
  const Phase& phase_;
  Random& random_;
  EventQueue& events_;
  const Trace& trace_;
  Fingerprint& fingerprint_;
  Stats& stats_;
  Checker& checker_;
  Network& network_;
  ClientNetwork& client_network_;
  ClientChecker& client_checker_;
  std::vector<NodeId> members_;
  protocol::MemberIds member_ids_;
  std::vector<std::unique_ptr<SimNode>> nodes_;
  std::vector<const consensus::MemoryLogStore*> models_;
  std::vector<std::byte> snapshot_scratch_;                                 // every snapshot is serialized into it
  std::map<std::uint64_t, std::pair<std::uint64_t, NodeId>> state_hashes_;  // log position -> (hash, first node)
  Time blackout_until_{0};                                                  // the first restart after the blackout
};

}  // namespace cohort::sim

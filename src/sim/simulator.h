#pragma once
// The deterministic simulator: N nodes of the real consensus core in one process, on virtual time, a virtual
// network and virtual storage, every random choice drawn from one seeded generator. The same seed gives the
// same run, event for event (Outcome::fingerprint), on every platform.
//
// A run has two phases (TigerBeetle's VOPR is the model):
//  - safety: `steps` events under the seed's fault mix (message loss, duplication, delay and reordering,
//    partitions, crashes losing unsynced writes, failing fsyncs, slow storage, leadership transfers, outages,
//    and the clients' faults: cut-offs, restarts, connection resets, slow frames), with the real clients offering
//    requests at random moments; the invariants of checker.h and client_checker.h are checked after every event;
//  - liveness: every fault stops, partitions and cut-offs heal, stopped nodes restart; within `liveness_limit` of
//    simulated time (or the session timeout and a slack, if longer) a single leader must exist, a fresh proposal
//    must commit on every node, every client must be connected with nothing unacknowledged, and every session a
//    restarted client abandoned must be closed.
// The simulator drives each core exactly as the runtime does: the consensus core by raft.h's driver contract
// (messages leave a node only once its storage made their `after` durable, completions are reported in sequence
// order), each node's client gateway by gateway.h's, and each client core as the client runtime does (client.cpp).
//
// Its parts, each in its own file, as in TigerBeetle's simulator:
//   fault_mix.h       what a seed chooses: the cluster size and the faults (drawn, or a named hunt);
//   event_queue.h     virtual time (virtual_time.h) and the events of a run, in a deterministic order;
//   trace.h           the trace for people, and the fingerprint that tells two runs apart;
//   network.h         messages between nodes in flight: delays, loss, duplication, partitions;
//   client_network.h  connections between clients and the nodes' gateways, like TCP on loopback: FIFO frames,
//                     connects refused or timed out, resets, node crashes, clients cut off;
//   storage_model.h   each node's disk (the in-memory store, or the real log on in-memory files) and its crashes;
//   workload.h        the real clients (client::ClientCore) offering KV requests, their faults, and the service
//                     every replica runs for them (ProbeService);
//   cluster.h         the nodes' lifecycle (start, crash, restart, recovery, outages), the driver contracts of the
//                     replica and of its gateway;
//   checker.h         Raft's invariants, checked after every step;
//   client_checker.h  every client guarantee: one fate per accepted message, exactly once and in order on every
//                     replica, egress once and in order with the bytes the service sent, no live client expired;
//   simulator.cpp     the run loop: the two phases and the events that are no single part's.

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "sim/fault_mix.h"

namespace cohort::sim {

struct Options {
  std::uint64_t seed = 0;
  std::uint64_t steps = 20'000;      // events in the safety phase
  std::optional<std::size_t> nodes;  // overrides the seed's cluster size (1, 3 or 5)
  std::optional<FaultMix> mix;       // overrides the seed's fault mix (targeted hunts; the seed still drives it)
  std::FILE* trace = nullptr;        // one line per event, if set
  Duration liveness_limit = std::chrono::seconds(10);
};

struct Stats {
  std::uint64_t delivered = 0;
  std::uint64_t dropped = 0;  // lost, partitioned, or addressed to a stopped node
  std::uint64_t duplicated = 0;
  std::uint64_t crashes = 0;
  std::uint64_t fsync_failures = 0;
  std::uint64_t recoveries = 0;  // of real storage, after a crash
  std::uint64_t torn_tails = 0;  // recoveries that cut off a torn tail
  std::uint64_t partitions = 0;
  std::uint64_t transfers = 0;
  std::uint64_t leaders = 0;  // distinct (term, leader) pairs
  std::uint64_t committed = 0;
  std::uint64_t state_losses = 0;  // crashes that also wiped a disk, damaged a durable record or lost a page cache
  std::uint64_t forged = 0;        // forged messages with a term from the top half
  std::uint64_t outages = 0;       // every node stopped at once
  std::uint64_t snapshots_taken = 0;
  std::uint64_t snapshots_restored = 0;   // starts that restored a snapshot
  std::uint64_t snapshots_installed = 0;  // followers that installed their leader's (Ready::installed)
  std::uint64_t snapshots_adopted = 0;    // starts whose log ended before the snapshot: it restarts there
  std::uint64_t compactions = 0;          // of a node's log, up to its previous snapshot
  std::uint64_t start_repairs = 0;        // starts whose log base no snapshot covered: emptied, recovering
  // The clients.
  std::uint64_t offers = 0;          // accepted by a client
  std::uint64_t back_pressured = 0;  // offers a full client buffer refused
  std::uint64_t applied = 0;         // fates: applied, rejected, unknown
  std::uint64_t rejected = 0;
  std::uint64_t unknown = 0;
  std::uint64_t egress = 0;  // egress messages delivered to the clients' applications
  std::uint64_t cutoffs = 0;
  std::uint64_t client_restarts = 0;
  std::uint64_t expiries = 0;  // sessions closed by timeout
  std::uint64_t client_connects = 0;
  std::uint64_t connection_resets = 0;
  std::uint64_t connection_stalls = 0;
  std::uint64_t client_frames = 0;         // delivered on the client network
  std::uint64_t client_frames_lost = 0;    // to a reset, a crash or a cut-off
  std::uint64_t client_sends_refused = 0;  // a node's send buffer to a client full: the connection given up
  std::uint64_t client_closes = 0;         // by the application or a deadline (each client replaced)
  std::uint64_t closes_by_application = 0;
  std::uint64_t closes_by_deadline = 0;  // give-up and connect deadlines
  std::uint64_t power_losses = 0;        // of every node at once
  std::uint64_t seqs_lost = 0;           // named by the clients' DataLossEvents
  std::uint64_t blackouts = 0;
  std::uint64_t blackout_reconnects = 0;        // clients timed back into their session after a blackout
  std::uint64_t blackout_reconnect_sum_us = 0;  // their times, summed
  std::uint64_t blackout_reconnect_max_us = 0;  // and the longest (a maximum when summing runs)

  Stats& operator+=(const Stats& other);
};

struct Outcome {
  bool ok = true;
  std::string failure;  // what broke, at what simulated time; empty if ok
  FaultMix mix;
  Duration simulated{0};
  std::uint64_t events = 0;
  std::uint64_t fingerprint = 0;  // a hash of every event and its effect: equal runs have equal fingerprints
  Stats stats;
};

class Simulator {
 public:
  explicit Simulator(Options options);
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  /// Runs both phases (once per Simulator).
  Outcome run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cohort::sim

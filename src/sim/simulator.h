#pragma once
// The deterministic simulator: N nodes of the real consensus core in one process, on virtual time, a virtual
// network and virtual storage, every random choice drawn from one seeded generator. The same seed gives the
// same run, event for event (Outcome::fingerprint), on every platform.
//
// A run has two phases (TigerBeetle's VOPR is the model):
//  - safety: `steps` events under the seed's fault mix (message loss, duplication, delay and reordering,
//    partitions, crashes losing unsynced writes, failing fsyncs, slow storage, leadership transfers), with
//    clients proposing at random moments; the invariants of checker.h are checked after every event;
//  - liveness: every fault stops, partitions heal, stopped nodes restart; within `liveness_limit` of simulated
//    time a single leader must exist and a fresh proposal must commit on every node.
// The simulator drives each core exactly as the runtime does (raft.h's driver contract): messages leave a node
// only once its storage made their `after` durable, and completions are reported in sequence order.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace cohort::sim {

using Duration = std::chrono::nanoseconds;

/// What a seed chooses: the cluster size and how often each fault strikes. Zero disables a fault.
struct FaultMix {
  std::size_t nodes = 3;
  std::uint32_t drop_per_mille = 0;        // each message
  std::uint32_t duplicate_per_mille = 0;   // each message
  std::uint32_t long_delay_per_mille = 0;  // each message: delayed by up to 2 s (reorders heavily)
  Duration delay_max = std::chrono::milliseconds(20);
  Duration partition_every{0};  // mean time between partitions; each lasts 0.2-5 s
  Duration crash_every{0};      // mean time between crashes (with a restart 0.05-5 s later)
  // Each role change (candidate, leader, ...): the node crashes within 5 ms, inside the window where its new
  // term, vote or first entries may not be durable yet. Random crashes alone rarely land there.
  std::uint32_t crash_after_role_change_per_mille = 0;
  // Each commit advance on a leader: it crashes within 5 ms, before followers may have heard of the commit or of
  // the entries after it (with small batches, before its own no-op reached a majority).
  std::uint32_t crash_after_commit_per_mille = 0;
  std::uint32_t fsync_failure_per_100k = 0;               // each storage sync: the node stops, restarting 1-5 s later
  std::uint32_t slow_storage_per_mille = 0;               // each storage sync: 20-300 ms instead of under 2 ms
  Duration client_every = std::chrono::milliseconds(20);  // mean time between proposals
  Duration transfer_every{0};                             // mean time between leadership transfers
  std::size_t max_append_entries = 1024;                  // the cores' batch limit per AppendRequest
  std::size_t max_inflight_appends = 8;                   // and pipeline depth per follower
  // Storage: the real segmented log (src/storage) on the byte-level in-memory file layer, instead of the
  // record-level MemoryLogStore. A crash is then a machine crash (unsynced writes lost, torn or reordered) or a
  // process crash (everything written survives); under sync policy none, only process crashes: that policy
  // does not claim to survive a machine crash on its own.
  bool real_storage = false;
  bool sync_none = false;
  std::uint64_t segment_size = 0;  // small, so that segments roll and truncations span them
  std::size_t cache_bytes = 0;     // small, so that replication reads entries back from the files
  // Each group the storage thread writes: the node crashes before the sync, while unsynced writes may tear.
  std::uint32_t crash_in_storage_per_mille = 0;

  std::string describe() const;
};

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
  std::uint64_t proposals = 0;  // accepted by a leader
  std::uint64_t refusals = 0;   // proposals refused by a non-leader
  std::uint64_t transfers = 0;
  std::uint64_t leaders = 0;  // distinct (term, leader) pairs
  std::uint64_t committed = 0;
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

/// Draws the fault mix a seed stands for (the first draws of the run's generator).
FaultMix fault_mix_for_seed(std::uint64_t seed);

/// A hunt: a fault mix aimed at one narrow window that random mixes reach too rarely to test in seconds.
///   figure8: five nodes, one entry per request, leaders crashing right after they win or commit (the window in
///            which Figure 8's commit rule matters);
///   vote:    slow storage and crashes right after a role change, while a new term and vote are not durable;
///   storage: real storage with small segments and no cache, crashing between the storage thread's write and
///            its sync (torn tails, reads from disk, truncations across segments).
/// Returns nullopt for an unknown name.
std::optional<FaultMix> hunt_mix(std::string_view name);

}  // namespace cohort::sim

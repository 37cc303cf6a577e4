#pragma once
// The fault mix: which faults a run suffers and how often. A seed draws one (draw_fault_mix); a hunt names one
// aimed at a narrow window (hunt_mix). The other parts of the simulator read it: the network (loss,
// duplication, delay, partitions), the storage model (slow and failing syncs, crashes inside a write), the node
// lifecycle (crashes, restarts, outages), the run loop (leadership transfers), and the clients and their network
// (the session timeout, cut-offs, restarts, connection resets, slow frames). Faults strike only in the safety
// phase.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/random.h"
#include "sim/virtual_time.h"

namespace cohort::sim {

/// A run's two phases (simulator.h): faults as the mix says, then none while the cluster must converge.
enum class Phase : std::uint8_t { safety, liveness };

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
  Duration client_every = std::chrono::milliseconds(20);  // mean time between offers
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
  // Each crash: the node also loses state, as long as no more than a minority is recovering at once (the fault
  // model of design.md section 2): its disk is wiped, a record proven durable is damaged, or (under sync policy
  // none) the machine crashes and takes the page cache with it.
  std::uint32_t state_loss_per_mille = 0;
  // Each message a node sends: a forged copy with a term from the top half (>= 2^63) reaches its destination too.
  std::uint32_t forged_term_per_mille = 0;
  // Snapshots: a node takes one each time it has applied this many entries since its last (0: never), offers it to
  // its core (a leader sends it to followers that need entries it compacted away) and compacts its log up to the
  // previous one; a restart restores the newest and replays the log after it. Each snapshot written (real storage),
  // compaction and install may be cut short by a crash (within 5 ms, or between the storage thread's write and its
  // sync).
  std::uint64_t snapshot_every = 0;
  std::uint32_t crash_in_snapshot_per_mille = 0;
  // Install snapshot: the cores' chunk size and chunks in flight. Small (256 B up), so that a snapshot of a few KiB
  // travels in many chunks, and lost, duplicated and reordered ones make the leader resume where the follower stopped.
  std::size_t snapshot_chunk_bytes = std::size_t{1} << 20U;
  std::size_t max_inflight_snapshot_chunks = 4;

  // Clients (workload.h) and their network (client_network.h).
  std::size_t clients = 3;
  // The cluster's session timeout: short, so that sessions of clients that went away expire within a run. The
  // activity interval follows from it (gateway::activity_interval_for).
  Duration session_timeout = std::chrono::seconds(6);
  // Mean time between cut-offs of a random client: for 1-2.5x the session timeout its connections go silent
  // (frames lost both ways) and its connects time out; then it heals.
  Duration client_cutoff_every{0};
  // Mean time between restarts of a random client: a new process with a new client id; what the old one had
  // buffered is abandoned, and its session must expire.
  Duration client_restart_every{0};
  // Mean time between resets of a random client connection: it breaks both ways, frames in flight are lost.
  Duration connection_reset_every{0};
  // Mean time between stalls of a random client connection: for 0.2-1.5 s, what either side sends waits, then
  // arrives in order (a congested path). Longer than the silence limit, the sides give up on it while the other's
  // frames are still on their way: the client's reach its leader after it has moved to a new connection.
  Duration connection_stall_every{0};
  // Bytes a node's connection to a client holds (sent, not arrived) before it refuses a frame and the gateway gives
  // the connection up, as the transport's send buffer does (0: unbounded). Above an egress window's resend, so a
  // resume always fits.
  std::size_t client_send_buffer = 0;
  // Each client frame: held back 50-800 ms (a connection is FIFO, so the frames behind it wait too).
  std::uint32_t client_long_delay_per_mille = 0;
  // Mean time between outages: every node stops at once, for 1.2-1.6x the session timeout, while the clients stay
  // up; each node then restarts. The first entry of the next leader must give every session a fresh window.
  Duration outage_every{0};
  // One blackout (0: none): every node stops 1-3 s into the run for this long (minutes), while the clients keep
  // offering into full buffers; then every node restarts within 2 s. The safety phase lasts until 10 s after it.
  // Every client without a give-up deadline must resume its session, and is timed from the quorum's return.
  Duration blackout{0};
  // Under sync policy none on real storage only (and without snapshots: see docs/architecture.md): mean time between
  // power losses of every node at once. Each machine loses its page cache, so the cluster may lose the newest
  // committed entries; every node restarts 0.05-2 s later as a recovering node. Clients must hear of acknowledged
  // messages the cluster lost (DataLossEvent) and go on from the cluster's position.
  Duration power_loss_every{0};

  // The application's side of the clients (workload.h). Each client started gets, with these chances, a give-up
  // deadline of 2-20 s (ClientOptions::give_up_after) and a connect deadline of 1-10 s (connect_timeout).
  std::uint32_t client_give_up_per_mille = 0;
  std::uint32_t client_connect_timeout_per_mille = 0;
  // Mean time between closes of a random client by its application: at once (close) or once drained, with a
  // deadline of 0-3 s (close_after_drain). A new client replaces every closed one, so the workload goes on.
  Duration client_close_every{0};

  std::string describe() const;
};

/// Draws the fault mix a seed stands for (the first draws of the run's generator).
FaultMix fault_mix_for_seed(std::uint64_t seed);

/// The same draws, from the run's own generator (freshly seeded with `seed`), which goes on from there: the
/// rest of the run's randomness follows the mix's draws.
FaultMix draw_fault_mix(Random& random, std::uint64_t seed);

/// A hunt: a fault mix aimed at one narrow window that random mixes reach too rarely to test in seconds.
///   figure8: five nodes, one entry per request, leaders crashing right after they win or commit (the window in
///            which Figure 8's commit rule matters);
///   vote:    slow storage and crashes right after a role change, while a new term and vote are not durable;
///   storage: real storage with small segments and no cache, crashing between the storage thread's write and
///            its sync (torn tails, reads from disk, truncations across segments);
///   loss:    three nodes on real storage under sync policy none, frequent crashes that lose state (wiped disks,
///            damaged durable records, machine crashes losing the page cache), so that a node that forgot its votes
///            and entries is often asked to vote;
///   clients: three nodes under crashes, partitions and transfers, with frequent client faults (cut-offs longer
///            than the session timeout, restarts, connection resets, slow frames): sessions expire, resume and
///            are abandoned while leadership moves;
///   snapshot: three nodes on real storage taking a snapshot every 8 entries and compacting behind them, under
///            crashes, partitions and state loss: lagging and wiped followers install the leader's snapshot, crashes
///            cut installs and compactions short, lost snapshots make starts repair;
///   outage:  three nodes that all stop together for longer than the session timeout while the clients stay up,
///            again and again: the new leader must not expire the sessions of clients on their way back;
///   closes:  three nodes under crashes, partitions and outages, with clients that give up after 2-20 s without a
///            session, connect deadlines, and closes by the application (at once, or draining with a deadline),
///            each closed client replaced by a new one: the fates unknown and rejected at a close;
///   power:   three nodes on real storage under sync policy none, every node losing power at once every few
///            seconds: the cluster loses acknowledged entries and the clients must say so and go on;
///   blackout: three nodes all down for 3-5 minutes while the clients keep offering; every client resumes its
///            session with exact fates once they are back.
/// Returns nullopt for an unknown name.
std::optional<FaultMix> hunt_mix(std::string_view name);

}  // namespace cohort::sim

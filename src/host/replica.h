#pragma once
// One replica of the cluster as a sans-I/O state machine: the consensus core, the service host fed with what it
// commits, and the leader's cluster clock. The node runtime and the simulator both drive it (raft.h's driver
// contract, plus: after take_ready(), the host's outputs are the replies to clients).
//
// What the leader decides on its own, it decides here: stamps (cluster time), the cluster's bootstrap entry,
// timer firings, the entry that renews every session at the start of its term, and closes by timeout. Those decisions
// read the applied state, which may lag the leader's log, so any of them can be appended twice; applying is idempotent
// for each (service_host.cpp).

#include <algorithm>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/random.h"
#include "common/result.h"
#include "consensus/raft.h"
#include "host/service_host.h"

namespace cohort::host {

using consensus::Time;

/// Cluster time while leading: from max(the last stamp in the log, the leader's wall clock) at election, it
/// advances with the monotonic clock, so a step of the wall clock (NTP) does not move it, and it never goes
/// back across leaders.
class ClusterClock {
 public:
  void lead(ClusterTime floor, ClusterTime wall, Time mono) noexcept {
    base_ = std::max(floor, wall);
    anchor_ = mono;
  }
  /// Saturates at ClusterTime::max() rather than overflow: the floor comes from the log, which a bug or a damaged
  /// leader could have stamped near the end of time.
  ClusterTime now(Time mono) const noexcept {
    const Time elapsed = std::max(mono - anchor_, Time{0});
    if (base_ > ClusterTime::max() - elapsed) return ClusterTime::max();
    return base_ + elapsed;
  }

 private:
  ClusterTime base_{0};
  Time anchor_{0};
};

struct ReplicaConfig {
  consensus::Config raft;
  HostLimits limits;
  std::size_t max_timer_firings_per_tick = 256;
  // A session idle (no replicated activity) for this long is closed. Leader-side: the decision carries what it saw.
  std::chrono::nanoseconds session_timeout = std::chrono::seconds(10);
  std::size_t max_expiries_per_tick = 256;
  std::size_t max_apply_per_ready = 4096;  // entries applied per take_ready(), so one turn stays short
};

enum class ClientError : std::uint8_t {
  not_leader,
  transferring,  // a leadership transfer is under way: ask again at the new leader
};
const char* to_string(ClientError error) noexcept;

/// What a start does with the log recovery left and the newest snapshot it loaded (prepare_start).
enum class StartPath : std::uint8_t {
  replay,   // no snapshot, or one the log cannot use while its base is 0: the whole log replays
  restore,  // the log holds the snapshot's position with its term: the host restores it, the log after it replays
  adopt,    // the snapshot lies beyond the log's end: the log restarts at the snapshot's position, as an install does
  repair,   // the base is above 0 and no snapshot covers it: the log is emptied and the node marked recovering
};
const char* to_string(StartPath path) noexcept;

/// Prepares `log` for a Replica before one is built on it, given the position of the newest intact snapshot the
/// start loaded (ServiceHost::snapshot_position; nullopt: none). The Replica needs a log whose base is 0 or covered
/// by a usable snapshot (its index at or above the base, and the log holds that index with the snapshot's term):
///  - usable: nothing to do (restore);
///  - beyond the log's end (a crash lost the log's unsynced tail, which the node had applied, so the snapshot holds
///    more than the log): the log is reset to the snapshot's position (adopt). The snapshot is committed state and
///    the lost entries were never acknowledged (or the node is recovering already): nothing is forgotten, and the
///    node keeps its standing. Marking it recovering instead would be worse than wasteful: two such nodes of three
///    would find no f + 1 in good standing, stand on empty logs, and could elect one of them (a lost commit);
///  - otherwise with base 0: the whole log replays, the snapshot unused (replay);
///  - otherwise: the node cannot rebuild its state. It saves its hard state as Standing::recovering first, then
///    resets the log to (0, 0), so that a crash between the two never leaves a member with an empty log, and it
///    repairs from the cluster (docs/consensus.md, "Rejoining after state loss").
/// The writes (adopt, repair) are only queued: make them durable before building the Replica, whose core takes
/// what the store holds at its construction as durable. Then build the Replica with the same snapshot (restore,
/// adopt: it restores it; replay, repair: it names it unused).
StartPath prepare_start(consensus::LogStore& log, std::optional<consensus::LogBase> snapshot);

class Replica final : private consensus::SnapshotInstaller {
 public:
  /// `wall` is the wall clock (ns since the Unix epoch) read together with `mono`. `snapshot`: what
  /// ServiceHost::write_snapshot() wrote at an index the log holds (with the term it has there); the host restores
  /// it instead of starting empty, and only the log after it is applied. A snapshot that does not decode is left
  /// unused (snapshot_problem()): the host starts empty, and the caller decides whether replaying the whole log will
  /// do.
  /// The log's base must be 0 or covered by that snapshot (the driver repairs a node whose is not: a recovering
  /// node with an empty log). Once taken (and durable), offer each snapshot to raft() before compacting up to it;
  /// a follower installs its leader's through this replica, which restores the host from it.
  Replica(ReplicaConfig config, consensus::LogStore& log, Service& service, std::uint64_t seed, Time mono,
          ClusterTime wall, std::optional<ByteSpan> snapshot = std::nullopt);
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;
  ~Replica() override = default;

  /// Why the snapshot given at construction was not used (empty if it was, or none was given).
  const std::string& snapshot_problem() const noexcept { return snapshot_problem_; }
  /// False if the log's base is above 0 and the snapshot given did not restore (snapshot_problem() says why): the
  /// replica cannot run. The driver repairs the node (prepare_start without a snapshot) and builds another.
  bool usable() const noexcept { return usable_; }

  void tick(Time mono, ClusterTime wall);
  void step(const consensus::Message& message, Time mono);
  void on_persisted(const consensus::PersistCompletion& completion, Time mono);

  // Client requests, at the leader. Each appends one entry; the answer comes when it is applied (host outputs).
  /// `resume`: the session the client last had (0: none); if it is closed, the answer carries its tombstone.
  Result<LogIndex, ClientError> open_session(Id128 client, Time mono, SessionId resume = 0);
  /// The leader heard from, or holds bound, the clients of `sessions` (strictly ascending): their activity is
  /// renewed when this is applied. One entry per kMaxActivitySessions.
  Result<LogIndex, ClientError> note_activity(std::span<const SessionId> sessions, Time mono);
  /// This leader decides no close by timeout before `mono`: while it does not read its clients (back-pressure), a
  /// live client cannot reattach, so its silence proves nothing. Leader-local (it only delays decisions).
  void hold_expiry_until(Time mono);
  Result<LogIndex, ClientError> ingress(SessionId session, std::uint64_t seq, ByteSpan message, Time mono);
  Result<LogIndex, ClientError> close_session(SessionId session, Time mono);
  /// The client withdraws message `seq` (too large for the cluster): its seq is consumed with the fate
  /// "rejected", as for an oversized message.
  Result<LogIndex, ClientError> withdraw(SessionId session, std::uint64_t seq, Time mono);

  /// Takes the consensus core's outputs, then applies newly committed entries to the service host (at most
  /// max_apply_per_ready; call again while host().applied_index() < raft().commit_index()).
  void take_ready(consensus::Ready& ready);

  consensus::Raft& raft() noexcept { return raft_; }
  const consensus::Raft& raft() const noexcept { return raft_; }
  ServiceHost& host() noexcept { return host_; }
  const ServiceHost& host() const noexcept { return host_; }
  /// Leader whose own no-op is applied: its applied state is current, so decisions it reads from are too.
  bool leading_current() const noexcept {
    return raft_.role() == consensus::Role::leader && host_.applied_term() == raft_.term();
  }
  /// Ready for clients: leading_current(), and the cluster's incarnation is known (a new cluster's first leader
  /// has applied its bootstrap entry), so every session reply carries it.
  bool serving() const noexcept { return leading_current() && host_.incarnation().known(); }
  /// This leader's cluster time: what it would stamp an entry with now (see stamp()).
  ClusterTime cluster_time(Time mono) const noexcept { return std::max(clock_.now(mono), host_.last_stamp()); }

  /// Committed entries this replica could not apply as written (host/service_host.h, EntryFault), for the node's
  /// status: counts per fault, and the newest one's index, term, fault and detail. The per-entry reports to log
  /// are host().fault_reports().
  const EntryFaultCounts& entry_faults() const noexcept { return host_.entry_faults(); }
  const std::optional<EntryFaultReport>& last_entry_fault() const noexcept { return host_.last_entry_fault(); }

 private:
  std::string restore(const consensus::Snapshot& snapshot) override;
  Result<LogIndex, ClientError> propose(Time mono);
  /// The stamp for an entry appended now: the leader's clock, never below the last stamp applied.
  ClusterTime stamp(Time mono);
  void after_input(Time mono);
  void leader_duties(Time mono);
  void expire_idle_sessions(Time mono);
  ClusterTime last_stamp_in_log() const;

  ReplicaConfig config_;
  consensus::LogStore& log_;
  consensus::Raft raft_;
  ServiceHost host_;
  Random random_;
  ClusterClock clock_;
  ClusterTime wall_{0};  // the wall clock at the last tick, read with wall_mono_
  Time wall_mono_{0};
  consensus::Role role_ = consensus::Role::follower;
  Term term_;
  // Leader, in term_: firings appended and not yet seen applied (so each tick does not append them again), and
  // whether a bootstrap entry was appended.
  std::set<std::pair<TimerId, std::uint64_t>> firings_in_flight_;
  std::set<std::pair<SessionId, ClusterTime>> expiries_in_flight_;  // (session, the idle_since decided on)
  bool bootstrap_proposed_ = false;
  bool renewal_proposed_ = false;  // the activity entry right after this term's no-op
  Time expiry_held_until_{0};
  std::vector<std::byte> scratch_;
  std::vector<std::pair<TimerId, std::uint64_t>> due_;
  std::vector<std::pair<SessionId, ClusterTime>> idle_;
  std::string snapshot_problem_;
  bool usable_ = true;
};

}  // namespace cohort::host

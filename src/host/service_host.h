#pragma once
// The service host: applies committed entries, in log order, to the node-side replicated state (sessions,
// timers, the cluster's incarnation) and to the user's Service. Deterministic and sans-I/O: every replica that
// applies the same entries holds the same state (state_hash()) and produces the same outputs; only the leader's
// runtime transmits them.
//
// The session layer (docs/architecture.md, "Sessions"): open (or resume, by client id), exactly-once ingress by
// per-session sequence numbers, activity and expiry, tombstones of closed sessions, a bounded window of each
// session's latest egress, and the session limit. All of it is replicated state: every decision that reaches it
// is a log entry, and applying one is idempotent (a leader decides from an applied state that may lag its log, so
// it may append a decision twice).

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "cohort/service.h"
#include "common/payload.h"
#include "common/result.h"
#include "common/ring.h"
#include "common/strong_id.h"
#include "consensus/log.h"
#include "host/entry_codec.h"

namespace cohort::host {

enum class RejectReason : std::uint8_t { unknown_session = 1, gap = 2, too_large = 3 };

/// What became of a session the client asked to resume and that is closed: its tombstone's record, or `known ==
/// false` if the tombstone was evicted (then the fate of its unacknowledged messages cannot be known).
struct ReplacedSession {
  SessionId session = 0;
  bool known = false;
  std::uint64_t last_seq = 0;  // its messages up to here were applied, none after
  CloseReason reason = CloseReason::client_closed;
};

// Outputs, in the order the entries produced them.
struct SessionOpened {
  Id128 client;
  SessionId session = 0;
  std::uint64_t last_seq = 0;    // highest ingress seq applied in this session (0 for a new one)
  std::uint64_t egress_seq = 0;  // the session's last egress seq when the open was applied: the window up to here
                                 // is resent before live egress
  bool resumed = false;          // the client already had this session
  std::optional<ReplacedSession> replaced;  // the session it asked to resume, closed
};
/// An open refused when applied: the session limit was reached. Retryable.
struct SessionRefused {
  Id128 client;
  std::optional<ReplacedSession> replaced;
};
struct Applied {  // ingress applied (or a duplicate of an applied one): the client's ack
  SessionId session = 0;
  std::uint64_t seq = 0;
  LogIndex position;
};
struct Rejected {
  SessionId session = 0;
  std::uint64_t seq = 0;
  std::uint64_t expected = 0;  // the seq the session expects next
  RejectReason reason = RejectReason::unknown_session;
};
struct EgressOut {
  SessionId session = 0;
  std::uint64_t egress_seq = 0;
  Payload message;  // shared with the session's egress window
};
struct SessionEnded {
  SessionId session = 0;
  CloseReason reason = CloseReason::client_closed;
  std::uint64_t last_seq = 0;
};
using HostOutput = std::variant<SessionOpened, SessionRefused, Applied, Rejected, EgressOut, SessionEnded>;

// A committed entry that a replica cannot apply as written. Each fault is a function of the committed entry and
// the state before it, so every replica meets it at the same index and handles it the same way; none of them
// stops the process (an abort on a committed entry would repeat on every replica and at every replay). The
// policy per fault is in docs/architecture.md, "Entries a replica cannot apply".
enum class EntryFault : std::uint8_t {
  undecodable = 1,      // the envelope does not decode: skipped (it counts as applied; cluster time stays)
  stamp_went_back = 2,  // its stamp is below the last one: applied at the last stamp (cluster time never goes back)
  service_threw = 3,    // a service callback threw while applying it: caught, the entry counts as applied
};
const char* to_string(EntryFault fault) noexcept;

struct EntryFaultReport {
  LogIndex index;
  Term term;
  EntryFault fault = EntryFault::undecodable;
  std::string detail;  // for people only (the decode error, the exception's what()): never hashed or compared
};

/// Entries met so far with each fault (an entry counts once per fault, however many callbacks threw for it).
struct EntryFaultCounts {
  std::uint64_t undecodable = 0;
  std::uint64_t stamp_went_back = 0;
  std::uint64_t service_threw = 0;
  std::uint64_t total() const noexcept { return undecodable + stamp_went_back + service_threw; }
  friend bool operator==(const EntryFaultCounts&, const EntryFaultCounts&) = default;
};

/// Limits that reach the replicated state: they must be equal on every node (a send refused, a session refused, a
/// tombstone or egress evicted on one replica and not another would make them diverge).
struct HostLimits {
  // Egress (Cluster::send); ingress is checked by the leader before it appends.
  std::size_t max_message_size = 1U << 20U;
  std::size_t max_sessions = 10000;  // checked when an open is applied
  // Tombstones of closed sessions: the newest max_tombstones, none older than tombstone_max_age (cluster time).
  std::size_t max_tombstones = 100000;
  ClusterTime tombstone_max_age = std::chrono::hours(24);
  // Each session's latest egress kept for resending after a resume: at most this many messages and bytes (the
  // newest message is kept whatever its size).
  std::size_t egress_window_messages = 128;
  std::size_t egress_window_bytes = 1U << 20U;
};

/// One egress message kept in a session's window.
struct EgressRecord {
  std::uint64_t seq = 0;
  Payload message;
};

class ServiceHost final : private Cluster {
 public:
  ServiceHost(Service& service, HostLimits limits);

  /// Calls Service::on_start (no snapshot yet). Once, before apply().
  void start();
  /// Applies the next committed entry: its index must be applied_index() + 1. Whatever the entry holds, it is
  /// then applied (applied_index() moves on): an entry this replica cannot apply as written is handled as its
  /// EntryFault says, counted and reported (entry_faults(), fault_reports()), never a reason to stop. The one
  /// exception is a service callback running out of memory (std::bad_alloc): that is this process's condition, not
  /// the entry's, and skipping it would leave this replica silently unlike the others, so the process stops.
  void apply(const consensus::Entry& entry);
  void set_role(ClusterRole role);

  /// Outputs accumulated since the last call; the caller clears the vector when done.
  std::vector<HostOutput>& outputs() noexcept { return outputs_; }

  LogIndex applied_index() const noexcept { return applied_; }
  Term applied_term() const noexcept { return applied_term_; }
  /// The stamp of the last entry applied that had one.
  ClusterTime last_stamp() const noexcept { return stamp_; }
  const Id128& incarnation() const noexcept { return incarnation_; }
  /// The voting members the cluster was bootstrapped with (ascending; empty until the bootstrap entry is applied).
  const std::vector<std::uint32_t>& initial_members() const noexcept { return initial_members_; }
  std::size_t open_sessions() const noexcept { return sessions_.size(); }
  /// Sessions this replica applied the open of (a new session, not a resume), and closes by timeout, since it was
  /// made: for metrics. Not replicated state (a restart replays from a snapshot, so they count differently).
  std::uint64_t sessions_opened() const noexcept { return sessions_opened_; }
  std::uint64_t sessions_expired() const noexcept { return sessions_expired_; }
  bool session_open(SessionId session) const { return sessions_.contains(session); }
  std::size_t tombstones() const noexcept { return tombstones_.size(); }
  /// The replicated cluster time of the session's last activity (open, activity entry, or a new leader's first
  /// entry); nullopt if it is not open.
  std::optional<ClusterTime> last_activity(SessionId session) const {
    const auto it = sessions_.find(session);
    return it == sessions_.end() ? std::nullopt : std::optional<ClusterTime>(it->second.last_activity);
  }
  /// The session's egress window, oldest first (empty if it is not open).
  const Ring<EgressRecord>& egress_window(SessionId session) const;
  /// The newest term whose first stamped entry was applied: every session's activity was renewed then.
  Term renewed_term() const noexcept { return renewed_term_; }
  /// Open sessions idle since at or before `idle_limit`, as (session, last activity), oldest first (at most
  /// `limit`): the leader's candidates for a close by timeout.
  void idle_sessions(ClusterTime idle_limit, std::vector<std::pair<SessionId, ClusterTime>>& out,
                     std::size_t limit) const;
  /// The highest ingress seq applied in `session` (0 if it is not open).
  std::uint64_t last_seq(SessionId session) const {
    const auto it = sessions_.find(session);
    return it == sessions_.end() ? 0 : it->second.last_seq;
  }
  std::size_t pending_timers() const noexcept { return timers_.size(); }
  std::uint64_t timers_fired() const noexcept { return timers_fired_; }

  /// Entries met so far with each fault. Replicated (a function of the log, hashed by state_hash()), so every
  /// replica at the same applied index shows the same counts.
  const EntryFaultCounts& entry_faults() const noexcept { return fault_counts_; }
  /// The newest faulty entry: its index, term, fault and detail (for status).
  const std::optional<EntryFaultReport>& last_entry_fault() const noexcept { return last_fault_; }
  /// One report per faulty entry and fault, since the driver last cleared this: the driver logs each loudly (at
  /// error level, with its index, term, fault and detail) and clears the vector. At most kMaxPendingFaultReports
  /// wait; later ones are dropped and counted (fault_reports_dropped()) while the counts stay exact.
  std::vector<EntryFaultReport>& fault_reports() noexcept { return fault_reports_; }
  std::uint64_t fault_reports_dropped() const noexcept { return fault_reports_dropped_; }
  static constexpr std::size_t kMaxPendingFaultReports = 256;

  /// Timers whose deadline is at or before `now`, as (id, generation), in deadline order (at most `limit`).
  void due_timers(ClusterTime now, std::vector<std::pair<TimerId, std::uint64_t>>& out, std::size_t limit) const;

  /// Appends the replicated state at applied_index() to `out`: the host's part (applied index and term, sessions
  /// with their egress windows, tombstones, timers, incarnation and initial members, stamp, entry fault counts and
  /// the newest one's index, term and fault), then the service's (Service::on_take_snapshot). Two replicas at the
  /// same applied index write the same bytes.
  void write_snapshot(std::vector<std::byte>& out);
  /// Replaces the replicated state with what write_snapshot() wrote, then hands the service its part: as
  /// Service::on_start if start() was not called yet (instead of it), else as Service::on_restore (a follower that
  /// installed the leader's snapshot). A host part that does not decode changes nothing and is an error; a service
  /// that cannot restore its part throws, as from on_start.
  Status<std::string> restore(ByteSpan snapshot);
  /// The (applied index, applied term) a snapshot was taken at, read from its start; nullopt if it is too short or
  /// of another layout.
  static std::optional<std::pair<LogIndex, Term>> snapshot_position(ByteSpan snapshot) noexcept;
  /// A hash of write_snapshot()'s bytes but the position: replicas at the same applied index hash alike, whether
  /// they replayed the log or restored a snapshot, and an entry that changes nothing leaves it as it was.
  std::uint64_t state_hash();

 private:
  struct Session {
    Id128 client;
    std::uint64_t last_seq = 0;    // highest ingress seq applied; the next accepted is last_seq + 1
    std::uint64_t egress_seq = 0;  // seq of the last egress message sent to it
    ClusterTime last_activity{0};
    // Invariant: the newest egress messages, seqs consecutive and ending at egress_seq (empty if none was sent);
    // within the HostLimits' window bounds, the newest one excepted; window_bytes is their total size.
    Ring<EgressRecord> window;  // a ring: steady egress allocates nothing
    std::size_t window_bytes = 0;
  };
  struct Tombstone {
    Id128 client;
    std::uint64_t last_seq = 0;
    CloseReason reason = CloseReason::client_closed;
    ClusterTime closed_at{0};
  };
  struct Timer {
    ClusterTime deadline{0};
    std::uint64_t generation = 0;  // distinguishes re-arms: a firing names the generation it was decided for
  };

  // Everything restore() decodes before it replaces the live state with it.
  struct State {
    LogIndex applied;
    Term applied_term;
    Id128 incarnation;
    std::vector<std::uint32_t> initial_members;
    ClusterTime stamp{0};
    std::map<SessionId, Session> sessions;
    std::map<Id128, SessionId> session_by_client;
    std::set<std::pair<ClusterTime, SessionId>> by_activity;
    Term renewed_term;
    std::map<SessionId, Tombstone> tombstones;
    std::deque<SessionId> tombstone_order;
    std::map<TimerId, Timer> timers;
    std::set<std::pair<ClusterTime, TimerId>> by_deadline;
    std::uint64_t next_generation = 1;
    std::uint64_t timers_fired = 0;
    EntryFaultCounts fault_counts;
    std::optional<EntryFaultReport> last_fault;
  };

  void apply_command(const consensus::Entry& entry);
  void apply_open(const consensus::Entry& entry, const DecodedEntry& e);
  void apply_activity(const DecodedEntry& e);
  /// Every open session's activity moves to `stamp` (a new leader's first entry: a fresh window for everyone).
  void renew_all(ClusterTime stamp);
  void set_activity(SessionId id, Session& session, ClusterTime stamp);
  void evict_tombstones();
  void close(SessionId session, CloseReason reason);
  void run_deferred_closes();
  /// Runs one service callback for the entry being applied: an exception from it is caught and noted in
  /// entry_failure_ (std::bad_alloc excepted: it stops the process).
  template <typename Call>
  void call_service(const char* callback, Call&& call);
  void record_fault(const consensus::Entry& entry, EntryFault fault, std::string detail);

  // Cluster
  ClusterTime time() const noexcept override { return stamp_; }
  std::uint64_t log_position() const noexcept override { return applied_.value(); }
  ClusterRole role() const noexcept override { return role_; }
  void schedule_timer(TimerId id, ClusterTime deadline) override;
  bool cancel_timer(TimerId id) override;
  bool send(SessionId session, Bytes message) override;
  bool close_session(SessionId session) override;

  Service& service_;
  HostLimits limits_;
  ClusterRole role_ = ClusterRole::follower;
  bool started_ = false;

  // Metrics only (sessions_opened(), sessions_expired()): never hashed nor snapshotted.
  std::uint64_t sessions_opened_ = 0;
  std::uint64_t sessions_expired_ = 0;
  // Replicated state. Ordered maps: their order reaches state_hash() and, later, snapshots.
  LogIndex applied_;
  Term applied_term_;
  ClusterTime stamp_{0};                        // never decreases
  Id128 incarnation_;                           // set by the first bootstrap entry; later ones are ignored
  std::vector<std::uint32_t> initial_members_;  // set with incarnation_, from the same entry
  std::map<SessionId, Session> sessions_;
  std::map<Id128, SessionId> session_by_client_;  // inverse of sessions_[*].client
  // Invariant: holds exactly (last_activity, id) of every open session. Derived (not hashed): the leader's index
  // of the sessions idle longest.
  std::set<std::pair<ClusterTime, SessionId>> by_activity_;
  Term renewed_term_;  // see renewed_term()
  std::map<SessionId, Tombstone> tombstones_;
  // Invariant: the ids of tombstones_, in the order they were closed, so also by closed_at (stamps never go back).
  std::deque<SessionId> tombstone_order_;
  std::map<TimerId, Timer> timers_;
  // Invariant: holds exactly (deadline, id) of every timer in timers_. Derived (not hashed): the leader's index of
  // what falls due next.
  std::set<std::pair<ClusterTime, TimerId>> by_deadline_;
  std::uint64_t next_generation_ = 1;
  std::uint64_t timers_fired_ = 0;
  // Replicated: in snapshots and their hash (a restored replica must show the same).
  EntryFaultCounts fault_counts_;
  std::optional<EntryFaultReport> last_fault_;  // its index and fault are hashed, not its detail

  // While an entry is applied: the first callback that threw ("Service::on_message threw: ...") and how many did.
  std::optional<std::string> entry_failure_;
  std::size_t entry_failures_ = 0;
  std::vector<EntryFaultReport> fault_reports_;  // not hashed: this node's outbox to its log
  std::uint64_t fault_reports_dropped_ = 0;

  std::vector<SessionId> deferred_closes_;  // Cluster::close_session calls made during a callback
  std::vector<HostOutput> outputs_;
  std::vector<std::byte> hash_scratch_;
};

}  // namespace cohort::host

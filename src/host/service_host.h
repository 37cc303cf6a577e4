#pragma once
// The service host: applies committed entries, in log order, to the node-side replicated state (sessions,
// timers, the cluster's incarnation) and to the user's Service. Deterministic and sans-I/O: every replica that
// applies the same entries holds the same state (state_hash()) and produces the same outputs; only the leader's
// runtime transmits them.
//
// Sessions here are the minimal set the first client needs: open (or resume, by client id), close, and
// exactly-once ingress by per-session sequence numbers. Tombstones, activity and expiry come with the session
// layer.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <variant>
#include <vector>

#include "cohort/service.h"
#include "common/strong_id.h"
#include "consensus/log.h"
#include "host/entry_codec.h"

namespace cohort::host {

enum class RejectReason : std::uint8_t { unknown_session = 1, gap = 2, too_large = 3 };

// Outputs, in the order the entries produced them.
struct SessionOpened {
  Id128 client;
  SessionId session = 0;
  std::uint64_t last_seq = 0;  // highest ingress seq applied in this session (0 for a new one)
  bool resumed = false;        // the client already had this session
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
  std::vector<std::byte> message;
};
struct SessionEnded {
  SessionId session = 0;
  CloseReason reason = CloseReason::client_closed;
  std::uint64_t last_seq = 0;
};
using HostOutput = std::variant<SessionOpened, Applied, Rejected, EgressOut, SessionEnded>;

struct HostLimits {
  // Egress (Cluster::send); ingress is checked by the leader before it appends. Must be equal on every node:
  // a send refused on one replica and not another would make them diverge.
  std::size_t max_message_size = 1U << 20U;
};

class ServiceHost final : private Cluster {
 public:
  ServiceHost(Service& service, HostLimits limits);

  /// Calls Service::on_start (no snapshot yet). Once, before apply().
  void start();
  /// Applies the next committed entry: its index must be applied_index() + 1. A command entry whose envelope
  /// does not decode stops the process (it passed every checksum, so it is a bug or a foreign build's log).
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
  bool session_open(SessionId session) const { return sessions_.contains(session); }
  /// The highest ingress seq applied in `session` (0 if it is not open).
  std::uint64_t last_seq(SessionId session) const {
    const auto it = sessions_.find(session);
    return it == sessions_.end() ? 0 : it->second.last_seq;
  }
  std::size_t pending_timers() const noexcept { return timers_.size(); }
  std::uint64_t timers_fired() const noexcept { return timers_fired_; }

  /// Timers whose deadline is at or before `now`, as (id, generation), in deadline order (at most `limit`).
  void due_timers(ClusterTime now, std::vector<std::pair<TimerId, std::uint64_t>>& out, std::size_t limit) const;

  /// A hash of everything replicated: sessions, timers, incarnation and initial members, stamp, and the service's
  /// snapshot.
  std::uint64_t state_hash();

 private:
  struct Session {
    Id128 client;
    std::uint64_t last_seq = 0;    // highest ingress seq applied; the next accepted is last_seq + 1
    std::uint64_t egress_seq = 0;  // seq of the last egress message sent to it
  };
  struct Timer {
    ClusterTime deadline{0};
    std::uint64_t generation = 0;  // distinguishes re-arms: a firing names the generation it was decided for
  };

  void apply_command(const consensus::Entry& entry);
  void close(SessionId session, CloseReason reason);
  void run_deferred_closes();

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

  // Replicated state. Ordered maps: their order reaches state_hash() and, later, snapshots.
  LogIndex applied_;
  Term applied_term_;
  ClusterTime stamp_{0};                        // never decreases
  Id128 incarnation_;                           // set by the first bootstrap entry; later ones are ignored
  std::vector<std::uint32_t> initial_members_;  // set with incarnation_, from the same entry
  std::map<SessionId, Session> sessions_;
  std::map<Id128, SessionId> session_by_client_;  // inverse of sessions_[*].client
  std::map<TimerId, Timer> timers_;
  // Invariant: holds exactly (deadline, id) of every timer in timers_. Derived (not hashed): the leader's index of
  // what falls due next.
  std::set<std::pair<ClusterTime, TimerId>> by_deadline_;
  std::uint64_t next_generation_ = 1;
  std::uint64_t timers_fired_ = 0;

  std::vector<SessionId> deferred_closes_;  // Cluster::close_session calls made during a callback
  std::vector<HostOutput> outputs_;
  std::vector<std::byte> hash_scratch_;
};

}  // namespace cohort::host

#pragma once
// The clients' guarantees (design.md sections 3 and 4), checked incrementally while real clients drive the real
// gateways and replicas. Each check costs time proportional to what one event changed; the first violation goes to
// the run's Checker, which keeps it and stops the run.
//
// A client is known by its instance: one ClientCore from its start to its restart (a restarted process is a new
// client, with a new client id). Request ids carry the instance and the application's seq (the Offer's), so an
// applied message names its client and seq on every replica.
//
//  - Fates: every seq a client accepted gets exactly one fate over the instance's life (applied, rejected,
//    unknown), and only a seq it accepted. An acknowledged seq was applied by some replica before the ack; a rejected
//    one is never applied anywhere, then or later (and the leader's state at the end does not hold it). `unknown`
//    happens only at a close by the application or a deadline, for the seqs still unacknowledged then (it comes
//    with the close, in the same batch of events), or when a session and its tombstone are gone: no tombstone is
//    evicted in a run, so only after a power loss of every node. What a restarted client had buffered is abandoned:
//    its fate is not checked. At the end, every applied seq is in the leader's applied state (unless the client
//    heard it lost), and every seq of a current or closed client has its fate.
//  - Closes: a client closes only for a reason the run gave it: the application closed it (workload.h), its
//    give-up deadline passed with no session for that long, or its connect deadline passed before its first
//    session. Every seq it accepted has its fate by its close. A client whose give-up deadline has passed without a
//    session must have closed (checked at every tick). A client draining refuses offers.
//  - Power loss of every node (sync policy none): the cluster may lose acknowledged messages. A client that resumes
//    its session hears a DataLossEvent naming exactly the seqs it was told applied and the cluster no longer holds,
//    then goes on (its next seqs follow the cluster's last in the session, applied once each). At the end, an
//    acknowledged seq missing from the leader's state is one the client heard lost, or one it could not hear of
//    (its client was gone, closed, or lost its session too before it resumed after the loss). A session lost with
//    the log may be replaced, and its id reused; egress numbers of the lost part are sent again with new bytes.
//  - Blackout (every node down for minutes): each client that was in a session, has no give-up deadline and was
//    not cut off, restarted or closed resumes the same session once a quorum is back, and the time that takes is
//    recorded and bounded by kBlackoutReconnectLimit (unless a node stopped or the network split in the meantime).
//  - Sessions: a client's first session is opened, the same one again is resumed, and a new one replaces only a
//    session the cluster closed.
//  - Exactly once and in order: on every replica, and again on each incarnation of it (a restart replays the log into
//    a fresh service), each client's seqs are applied once each and in increasing order, and within a session
//    without a gap (ProbeService checks; this part records what was applied anywhere).
//  - Egress: what a client's application is handed in a session is what the services sent in that session, with the
//    same bytes, each egress seq once and in order from 1, without a gap: a resume resends what the client has not
//    seen from the session's egress window. Only what fell out of the window before the resume may be missing, and
//    the client must say so (EgressGapEvent, just before the egress after it); a gap the window still held, or one
//    not reported, is an egress skipped.
//  - Expiry: a session is closed by timeout only if its client has been away for the session timeout (less a slack
//    of 3 s for activity intervals, commit latency and silence detection): since the client was last connected in
//    that session, and since the leader that decided the close renewed every session (its term's first entry).
//    And only if something kept it away within the session timeout (plus the slack) before the decision (taken at
//    or after the deciding leader's election, and maybe applied much later): its client was cut off or restarted,
//    or a partition may have stranded it on a node that cannot reach the leader (such a node keeps its waiting
//    clients). Otherwise it is "expired a live client": a client connected in that session
//    when the close is applied, a close within the timeout of the deciding leader's election, or a client that could
//    have reached the leader and did not.
//  - Liveness (the end of a run): every current client connected with an empty buffer, and every session a restarted
//    client abandoned closed.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "client/client_core.h"
#include "host/service_host.h"
#include "sim/checker.h"
#include "sim/virtual_time.h"

namespace cohort::sim {

/// A request id: the client's instance and its application seq.
struct RequestId {
  std::uint64_t instance = 0;
  std::uint64_t seq = 0;

  static constexpr unsigned kSeqBits = 32;
  std::uint64_t encode() const noexcept { return (instance << kSeqBits) | seq; }
  static RequestId decode(std::uint64_t id) noexcept {
    return RequestId{id >> kSeqBits, id & ((std::uint64_t{1} << kSeqBits) - 1)};
  }
};

class ClientChecker {
 public:
  /// The slack allowed around the session timeout (activity interval, commit latency, silence detection).
  static constexpr Duration kExpirySlack = std::chrono::seconds(3);
  /// After a blackout, a client must be back in its session within this long of a quorum being up again (an
  /// election, then the client's refused-connect backoff of at most 250 ms): generous, measured well below.
  static constexpr Duration kBlackoutReconnectLimit = std::chrono::seconds(5);
  /// The slack allowed past a give-up deadline before a client still open fails the run (its tick period).
  static constexpr Duration kDeadlineSlack = std::chrono::milliseconds(50);

  /// What the application set, or did, to a client (workload.h).
  struct ClientSettings {
    Duration give_up_after{0};    // ClientOptions::give_up_after (0: never)
    Duration connect_timeout{0};  // ClientOptions::connect_timeout (0: never)
  };

  /// `window_messages` is the replicas' egress window (HostLimits): a gap in a session's egress is legitimate only
  /// below it. (The simulated replies are far smaller than the window's byte bound, so the count decides.)
  ClientChecker(Checker& checker, Duration session_timeout, std::size_t window_messages);

  /// A violation found by a part that drives the clients (an offer refused as closed or too large).
  void fail(std::string description) { checker_.fail(std::move(description)); }

  // --- the clients (workload.h) ---------------------------------------------------------------------------------
  /// `slot` is where the client runs: cut-offs strike a slot, whichever instance runs there.
  void on_client_started(std::uint64_t instance, host::Id128 client_id, std::uint32_t slot, ClientSettings settings,
                         Time now);
  /// The application closes the client (close or close_after_drain): from now on it may close, and refuse offers.
  void on_close_requested(std::uint64_t instance);
  /// After the driver took a batch of the client's events (and after every tick): what a batch must hold together
  /// (unknown fates come with a close), and what must have happened by now (a give-up deadline).
  void after_events(std::uint64_t instance, bool closed, Time now);
  /// Whether the application closed the client, or a deadline did (it is replaced).
  bool closed(std::uint64_t instance) const;
  /// The client in `slot` is cut off, or heals.
  void on_cut_off(std::uint32_t slot, bool cut, Time now);
  /// The instance restarted: what it had buffered is abandoned, and so are its sessions (they must expire).
  void on_client_gone(std::uint64_t instance, Time now);
  void on_accepted(std::uint64_t instance, std::uint64_t seq);
  /// Every event the client core emits, in order, as its driver takes them.
  void on_client_event(std::uint64_t instance, const client::Event& event, Time now);

  // --- the replicas (cluster.h, ProbeService) -------------------------------------------------------------------
  /// A replica handed (instance, seq) to its service (ProbeService checked the order on that replica).
  void on_applied(NodeId node, RequestId request);
  /// A host output of any replica (every replica computes the same): sessions opened, egress sent.
  void on_host_output(const host::HostOutput& output);
  /// A replica applied a close by timeout of `session`, decided by the leader of `term`.
  void on_timeout_close(NodeId node, SessionId session, Term term, Time now);
  /// A node became the leader of `term`: its first entry renews every session.
  void on_leader(Term term, Time now);
  /// The nodes' network is partitioned, or heals.
  void on_partition(bool partitioned, Time now);
  /// Every node lost power at once (sync policy none): acknowledged messages may be lost from now on.
  void on_power_loss(Time now);
  /// Every node stopped for a blackout; a majority of them is up again at `quorum_back`.
  void on_blackout(Time quorum_back);
  /// A node stopped (a crash, a failed sync, an outage, a power loss): after a blackout's quorum was back, the clients
  /// are no longer timed against it (they must still resume their sessions).
  void on_node_stopped(Time now);
  /// Whether the client heard every seq in [from, to] lost (DataLossEvent): a replica may then apply `to + 1`
  /// right after `from - 1` in one session.
  bool reported_lost(std::uint64_t instance, std::uint64_t from, std::uint64_t to) const;

  /// How long each client measured took to resume its session after a blackout's quorum was back.
  const std::vector<Duration>& blackout_reconnects() const noexcept { return blackout_reconnects_; }
  /// Seqs the clients heard lost (DataLossEvent), closes by the application, and closes by a deadline.
  std::uint64_t seqs_lost() const noexcept { return seqs_lost_; }
  std::uint64_t closes_by_application() const noexcept { return closes_by_application_; }
  std::uint64_t closes_by_deadline() const noexcept { return closes_by_deadline_; }

  // --- the end of a run -----------------------------------------------------------------------------------------
  /// A session some restarted client abandoned that `leader` still holds open, if any.
  std::optional<SessionId> abandoned_open(const host::ServiceHost& leader) const;
  /// Once the run converged: every applied fate is in the leader's applied state; every current client's accepted
  /// seqs have their fates. `applied(request)` says whether the leader's service applied a request.
  template <typename Applied>
  void check_final(const Applied& applied);

 private:
  enum class Fate : std::uint8_t { none, applied, rejected, unknown };
  struct Seq {
    Fate fate = Fate::none;
    bool lost = false;             // the client heard it lost (DataLossEvent)
    std::uint32_t applied_in = 0;  // 1 + the last power-loss epoch in which some replica applied it (0: never)
    std::uint32_t acked_in = 0;    // the epoch of its AppliedEvent
    SessionId acked_session = 0;   // the session it was acknowledged in
  };
  struct Instance {
    host::Id128 client_id;
    std::uint32_t slot = 0;
    ClientSettings settings;
    Time started{0};
    bool gone = false;  // restarted, or closed: its sessions are abandoned
    Time gone_at{0};
    bool close_requested = false;  // by the application
    bool closed = false;
    bool ever_connected = false;
    Time not_connected_since{0};                // while not connected
    std::vector<std::uint64_t> unknown_batch;   // unknown fates in the batch being taken, that a close must explain
    std::uint64_t accepted = 0;                 // seqs 1..accepted were accepted
    std::vector<Seq> seqs;                      // by seq - 1
    SessionId session = 0;                      // the session of its last SessionEvent
    bool connected = false;                     // its last StateEvent said connected
    bool egress_rewound = false;                // a data loss took its session's egress back: a lower seq may follow
    std::optional<client::EgressGapEvent> gap;  // reported, for the egress that comes next
    std::vector<SessionId> sessions;
    std::optional<SessionId> blackout_session;  // must resume this one after the blackout (being timed)
  };
  struct Sent {
    std::vector<std::byte> bytes;
    std::uint32_t epoch = 0;  // the power-loss epoch it was sent in
  };
  struct Session {
    std::uint64_t instance = 0;    // 0: not a client's (the simulator's liveness probes)
    std::uint32_t epoch = 0;       // the power-loss epoch it was opened (or last given to a client) in
    std::uint32_t resumed_in = 0;  // the last epoch its client resumed it in (after its first power loss: 0 is none)
    Time alive_at{0};              // the last moment its client was connected in it
    bool closed = false;
    std::uint64_t delivered = 0;           // the last egress seq its client's application was handed
    std::map<std::uint64_t, Sent> egress;  // what the services sent, by egress seq
  };

  Instance* instance(std::uint64_t id, const char* what);
  void set_fate(std::uint64_t id, Instance& client, std::uint64_t seq, Fate fate, const std::string& reason);
  void on_session(std::uint64_t id, Instance& client, const client::SessionEvent& event, Time now);
  void on_closed(std::uint64_t id, Instance& client, const client::StateEvent& event, Time now);
  void on_data_loss(std::uint64_t id, Instance& client, const client::DataLossEvent& event);
  void on_egress(std::uint64_t id, Instance& client, const client::EgressEvent& egress);
  /// The session's client is connected in it now: it is alive.
  void touch(const Instance& client, Time now);

  Checker& checker_;
  Duration session_timeout_;
  std::size_t window_messages_;
  std::map<std::uint64_t, Instance> instances_;
  std::map<host::Id128, std::uint64_t> by_client_id_;
  std::map<SessionId, Session> sessions_;
  std::map<std::uint64_t, Time> leader_since_;  // by term: when its leader was first seen
  // Since when each slot is cut off (Time::max() if it is not), and when its last cut-off healed.
  std::map<std::uint32_t, std::pair<Time, Time>> cut_offs_;
  bool partitioned_ = false;
  Time partition_healed_{0};
  std::uint32_t epoch_ = 0;  // power losses of every node so far
  std::optional<Time> blackout_quorum_;
  bool blackout_disturbed_ = false;  // a node stopped, or the network split, after the blackout's quorum was back
  std::vector<Duration> blackout_reconnects_;
  std::uint64_t seqs_lost_ = 0;
  std::uint64_t closes_by_application_ = 0;
  std::uint64_t closes_by_deadline_ = 0;
};

template <typename Applied>
void ClientChecker::check_final(const Applied& applied) {
  for (const auto& [id, client] : instances_) {
    for (std::uint64_t seq = 1; seq <= client.accepted; ++seq) {
      const Seq& entry = client.seqs[seq - 1];
      if (entry.fate == Fate::none && (!client.gone || client.closed))
        return checker_.fail(fmt::format("client {} seq {} has no fate at the end of the run", id, seq));
      const bool in_state = applied(RequestId{id, seq});
      if (entry.lost && in_state)
        return checker_.fail(fmt::format(
            "client {} heard seq {} lost by the cluster, but the leader's state at the end of the run holds it", id,
            seq));
      if (entry.fate == Fate::applied && !in_state && !entry.lost) {
        // Lost with the log in a power loss: the client must have said so if it resumed that session after the last
        // one (the cluster then answered with its final position in it).
        const auto session = sessions_.find(entry.acked_session);
        const bool heard_since =
            entry.acked_in == epoch_ ||
            (session != sessions_.end() && session->second.instance == id && session->second.resumed_in == epoch_);
        if (heard_since)
          return checker_.fail(fmt::format(
              "client {} seq {} was acknowledged applied, but the leader's state at the end of the run does not hold "
              "it{}",
              id, seq,
              epoch_ == 0 ? std::string()
                          : fmt::format(", and no data loss was reported though the client resumed session {} after "
                                        "the power loss",
                                        entry.acked_session)));
      }
      if (entry.fate == Fate::rejected && in_state)
        return checker_.fail(fmt::format(
            "client {} seq {} was rejected, but the leader's state at the end of the run holds it", id, seq));
    }
  }
}

}  // namespace cohort::sim

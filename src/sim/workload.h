#pragma once
// The workload: three simulated clients, as the real client behaves, and the service every replica runs for
// them. Each client opens a session and sends KV requests at random moments (puts, deletes, compare-and-sets,
// puts with a TTL that arm cluster timers), usually to the leader and sometimes to a random node, which must
// refuse unless it leads; it reopens its session after each leader change and resends what was not
// acknowledged. In the liveness phase clients send nothing new: they only see their messages acknowledged.

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include <cohort/service.h>
#include <fmt/format.h>

#include "common/random.h"
#include "host/service_host.h"
#include "services/kv_codec.h"
#include "services/kv_service.h"
#include "sim/checker.h"
#include "sim/event_queue.h"
#include "sim/fault_mix.h"
#include "sim/simulator.h"
#include "sim/trace.h"

namespace cohort::sim {

class SimCluster;

// The KV service, watched: on every replica, each session's requests arrive exactly once and in order (request
// ids are the client's seqs), and each timer fires at most once.
class ProbeService final : public Service {
 public:
  ProbeService(Checker& checker, NodeId node) : checker_(checker), node_(node) {}

  void on_start(Cluster& cluster, std::optional<Bytes> snapshot) override { kv_.on_start(cluster, snapshot); }
  void on_session_open(Cluster& cluster, SessionId session) override {
    last_request_[session] = 0;
    kv_.on_session_open(cluster, session);
  }
  void on_session_close(Cluster& cluster, SessionId session, CloseReason reason) override {
    kv_.on_session_close(cluster, session, reason);
  }
  void on_message(Cluster& cluster, SessionId session, ClusterTime timestamp, Bytes message) override {
    const std::uint64_t id = services::peek_kv_request_id(message);
    std::uint64_t& last = last_request_[session];
    if (id != last + 1)
      checker_.fail(fmt::format("node {} applies request {} of session {} after request {}: not exactly once in order",
                                node_.value(), id, session, last));
    last = id;
    kv_.on_message(cluster, session, timestamp, message);
  }
  void on_timer(Cluster& cluster, TimerId id, ClusterTime timestamp) override {
    if (!fired_.insert(id).second) checker_.fail(fmt::format("node {} fires timer {} twice", node_.value(), id));
    kv_.on_timer(cluster, id, timestamp);
  }
  void on_take_snapshot(Cluster& cluster, std::vector<std::byte>& out) override { kv_.on_take_snapshot(cluster, out); }

 private:
  Checker& checker_;
  NodeId node_;
  services::KvService kv_;
  std::map<SessionId, std::uint64_t> last_request_;
  std::set<TimerId> fired_;
};

// A client of the cluster, as the simulator plays it: one session, messages numbered by seq, each kept until
// the leader acknowledges it and resent (the same seq) after a leader change or a silence.
struct SimClient {
  host::Id128 id;
  SessionId session = 0;
  std::uint64_t next_seq = 1;
  std::deque<std::pair<std::uint64_t, std::vector<std::byte>>> unacked;
  Time last_progress{};           // last acknowledgement or (re)send
  Term leader_term;               // the leader term the session was last opened (resumed) in
  std::uint64_t resent_from = 0;  // a gap answered by resending from here: later gaps naming it are echoes
  bool awaiting_open = false;     // an open was sent and not answered yet (older opens' answers are echoes)
};

/// The clients, and the events they act on.
class Workload {
 public:
  /// `phase` is the run's: clients send new requests, and sometimes to a random node, only in the safety phase.
  Workload(const FaultMix& mix, const Phase& phase, Random& random, EventQueue& events, const Trace& trace,
           Stats& stats, Checker& checker);

  /// EventKind::client: a random client acts (a session open, a new request, or after a silence a resend of
  /// what is unacknowledged), and the next client event is scheduled.
  void act(SimCluster& cluster);

  /// An output of the leader's service host (a follower's are computed and dropped, as the runtime does): the
  /// answer to a client, which may resend on it.
  void on_leader_output(SimCluster& cluster, const host::HostOutput& output);

  /// Every client holds a session and has nothing unacknowledged.
  bool settled() const;

 private:
  std::vector<std::byte> kv_request(std::uint64_t seq);
  void resend(SimCluster& cluster, SimClient& client, std::uint64_t seq);

  const FaultMix& mix_;
  const Phase& phase_;
  Random& random_;
  EventQueue& events_;
  const Trace& trace_;
  Stats& stats_;
  Checker& checker_;
  std::vector<SimClient> clients_;
};

}  // namespace cohort::sim

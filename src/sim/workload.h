#pragma once
// The workload: the real clients (client::ClientCore), three by default, and the service every replica runs for
// them. Each client is driven as the client runtime drives it (client.cpp): ticked every 5-10 ms of virtual time,
// its connects, closes and frames carried out on the client network after every input, and its events taken then
// (the client checker hears every one, in order). During the safety phase clients offer KV requests at random
// moments (puts, deletes, compare-and-sets, puts with a TTL that arm cluster timers); a full buffer back-pressures the
// offer. Each request's id names the client instance and the seq its offer was given (client_checker.h, RequestId),
// so every replica's service can say which message of which client it applied.
//
// The clients' faults (fault_mix.h), in the safety phase only: a client is cut off for 1-2.5x the session timeout
// (client_network.h), restarts (its core is dropped with what it had buffered, and a new one with a new random client
// id takes its slot), or one of its connections resets or stalls.
//
// The applications' own doings: some clients (the mix's chances) have a give-up deadline or a connect deadline, and
// the application closes a random client now and then, at once or once drained (with a deadline). A client that
// closes, for either reason, is replaced in its slot by a new client at once, so the workload goes on.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <cohort/service.h>

#include "client/client_core.h"
#include "cohort/services/kv_service.h"
#include "common/random.h"
#include "consensus/log.h"
#include "sim/checker.h"
#include "sim/client_checker.h"
#include "sim/client_network.h"
#include "sim/event_queue.h"
#include "sim/fault_mix.h"
#include "sim/simulator.h"
#include "sim/trace.h"

namespace cohort::sim {

/// The KV service, watched. On this replica incarnation (a restart builds a new one, which restores the newest
/// snapshot and replays the log after it), each client's requests arrive once each and in increasing seq order,
/// and within a session without a gap; each timer fires at most once. It tells the client checker what it applied,
/// and which sessions it saw closed by timeout. Its snapshot holds the KV service's and the record of every request
/// applied, so a restored replica still answers applied() for what its snapshot covers.
class ProbeService final : public Service {
 public:
  ProbeService(Checker& checker, ClientChecker& clients, NodeId node, const consensus::LogStore& log,
               const EventQueue& clock)
      : checker_(checker), clients_(clients), node_(node), log_(log), clock_(clock) {}

  void on_start(Cluster& cluster, std::optional<Bytes> snapshot) override {
    if (snapshot) restore(cluster, *snapshot, /*running=*/false);
  }
  void on_restore(Cluster& cluster, Bytes snapshot) override { restore(cluster, snapshot, /*running=*/true); }
  void on_session_open(Cluster& cluster, SessionId session) override { kv_.on_session_open(cluster, session); }
  void on_session_close(Cluster& cluster, SessionId session, CloseReason reason) override;
  void on_message(Cluster& cluster, SessionId session, ClusterTime timestamp, Bytes message) override;
  void on_timer(Cluster& cluster, TimerId id, ClusterTime timestamp) override;
  void on_take_snapshot(Cluster& cluster, std::vector<std::byte>& out) override;

  /// This incarnation applied the request.
  bool applied(RequestId request) const;

 private:
  void restore(Cluster& cluster, Bytes snapshot, bool running);

  Checker& checker_;
  ClientChecker& clients_;
  NodeId node_;
  const consensus::LogStore& log_;
  const EventQueue& clock_;
  services::KvService kv_;
  std::map<std::uint64_t, std::vector<std::uint64_t>> applied_;  // by client instance: its seqs, ascending
  std::map<SessionId, std::uint64_t> last_in_session_;           // the last seq applied in each session
  std::set<TimerId> fired_;
};

/// The clients, and the events they act on.
class Workload final : public ClientNetworkClients {
 public:
  /// `phase` is the run's: clients offer requests, and suffer faults, only in the safety phase. `nodes` is the
  /// cluster size: the clients list "node-1:7000" ... "node-N:7000".
  Workload(const FaultMix& mix, const Phase& phase, Random& random, EventQueue& events, const Trace& trace,
           Stats& stats, Fingerprint& fingerprint, ClientNetwork& network, ClientChecker& checker);

  /// Starts every client and schedules the offers and the clients' faults.
  void start();
  /// EventKind::client: a random client offers a request (safety phase only), and the next offer is scheduled.
  void on_offer();
  /// EventKind::client_tick.
  void on_tick(const Event& event);
  /// EventKind::client_fault.
  void on_fault(const Event& event);
  /// Why the clients have not settled (a client not connected, or with messages unacknowledged), or nullopt.
  std::optional<std::string> unsettled() const;

  // ClientNetworkClients
  void on_connected(std::uint32_t client, std::uint64_t connection, const protocol::PeerIdentity& node) override;
  void on_frame(std::uint32_t client, std::uint64_t connection, const protocol::Frame& frame) override;
  void on_disconnected(std::uint32_t client, std::uint64_t connection, std::string_view why) override;

  /// "node-<id>:7000" for node index `node`, and back (nullopt for anything else).
  static std::string endpoint(std::uint32_t node);
  static std::optional<std::uint32_t> node_of(std::string_view endpoint, std::size_t nodes);

 private:
  // What a client_fault event is (Event::detail).
  enum class Fault : std::uint8_t { cutoff, heal, restart, reset, stall, close };

  struct SimClient {
    std::uint64_t instance = 0;  // unique in the run, from 1: request ids carry it
    std::unique_ptr<client::ClientCore> core;
    std::uint64_t connection = 0;  // the connection it last asked for (0: none)
    std::uint64_t accepted = 0;    // offers it accepted: the next one gets seq accepted + 1
    bool draining = false;         // its application called close_after_drain
  };

  void start_client(std::uint32_t slot);
  /// After every input to a client: its close, frames and connect are carried out, its events taken.
  void pump(std::uint32_t slot);
  void record(std::uint32_t slot, const client::Event& event);
  std::vector<std::byte> kv_request(std::uint64_t request_id, std::uint64_t seq);
  void schedule_fault(Fault fault, Duration mean);
  SimClient* current(std::uint32_t slot, std::uint64_t connection);

  const FaultMix& mix_;
  const Phase& phase_;
  Random& random_;
  EventQueue& events_;
  const Trace& trace_;
  Stats& stats_;
  Fingerprint& fingerprint_;
  ClientNetwork& network_;
  ClientChecker& checker_;
  ClientOptions options_;
  std::vector<SimClient> clients_;
  std::uint64_t next_instance_ = 1;
};

}  // namespace cohort::sim

#pragma once
// The client network: connections between the simulated clients (workload.h) and the nodes' gateways, behaving like
// TCP on loopback.
//  - A connect resolves after 0.1-2 ms: accepted if the node is up and the client is not cut off; refused at once if
//    the node is down; timed out if the client is cut off (after the client transport's handshake timeout, unless
//    it heals before). Either way the client hears of it; on acceptance the node's gateway does too.
//  - Once open, each direction is FIFO: a frame arrives 0.05-2 ms after it was sent (50-800 ms for the fault mix's
//    slow frames), and never before the frame sent ahead of it, so a slow frame holds back those behind it. A stalled
//    connection holds back everything either side sends until the stall ends.
//  - A side that closes lets what it sent arrive, then the other side hears the end (the FIN after the data). A reset
//    loses everything in flight and each side hears of it after a delay. A node's crash resets its connections (its
//    side is gone with its gateway); a client's restart does the same from the client's side.
//  - A client that is cut off loses every frame, both ways, and every notice of an end; its connects time out. Its
//    connections are dead for good (TCP delivers nothing after a frame it lost): it finds out by silence, as the
//    nodes do.
// Every frame and every notice is an event, each delay drawn from the run's generator. The two ends are the nodes
// (SimCluster) and the clients (Workload), each behind an interface of its side, and each hears only of the
// connections it holds: a node restarted since a connection was accepted never hears of it again.

#include <cstdint>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/random.h"
#include "protocol/frame.h"
#include "protocol/handshake.h"
#include "sim/event_queue.h"
#include "sim/fault_mix.h"
#include "sim/simulator.h"
#include "sim/trace.h"

namespace cohort::sim {

/// The nodes' end of the client network (SimCluster).
class ClientNetworkNodes {
 public:
  virtual ~ClientNetworkNodes() = default;
  /// The node's incarnation while it is up; nullopt while it is down.
  virtual std::optional<std::uint64_t> incarnation(std::uint32_t node) const = 0;
  /// What the node's welcome says of it: its id, member list and the incarnation its host knows.
  virtual protocol::PeerIdentity identity(std::uint32_t node) const = 0;
  virtual void on_connected(std::uint32_t node, std::uint64_t connection) = 0;
  virtual void on_frame(std::uint32_t node, std::uint64_t connection, const protocol::Frame& frame) = 0;
  virtual void on_disconnected(std::uint32_t node, std::uint64_t connection) = 0;
};

/// The clients' end of the client network (Workload).
class ClientNetworkClients {
 public:
  virtual ~ClientNetworkClients() = default;
  virtual void on_connected(std::uint32_t client, std::uint64_t connection, const protocol::PeerIdentity& node) = 0;
  virtual void on_frame(std::uint32_t client, std::uint64_t connection, const protocol::Frame& frame) = 0;
  virtual void on_disconnected(std::uint32_t client, std::uint64_t connection, std::string_view why) = 0;
};

class ClientNetwork {
 public:
  /// The client transport's handshake timeout: a connect to an unreachable node fails after this long.
  static constexpr Duration kConnectTimeout = std::chrono::seconds(1);

  /// `phase` is the run's: slow frames only in the safety phase.
  ClientNetwork(std::size_t clients, const FaultMix& mix, const Phase& phase, Random& random, EventQueue& events,
                const Trace& trace, Stats& stats);

  /// Both ends, once they are built.
  void attach(ClientNetworkNodes& nodes, ClientNetworkClients& clients);

  /// The client in slot `client` connects to node index `node`: the connection's id (never reused); the outcome
  /// comes as an event.
  std::uint64_t connect(std::uint32_t client, std::uint32_t node);
  /// One whole frame from the client to its node, or from the node to its client.
  void send_to_node(std::uint64_t connection, ByteSpan frame);
  /// False if the node's send buffer for the connection is full (FaultMix::client_send_buffer): the frame is not
  /// sent, and the gateway gives the connection up.
  bool send_to_client(std::uint64_t connection, ByteSpan frame);
  /// The client drops the connection: what it sent still arrives, then the node hears the end.
  void close_by_client(std::uint64_t connection);
  /// The node's gateway gave the connection up (and forgot it): what it sent still arrives, then the client hears.
  void close_by_node(std::uint64_t connection);
  /// The connection breaks both ways: frames in flight are lost, and each side hears of it after a delay.
  void reset(std::uint64_t connection);
  /// Until `until`, what either side sends on the connection waits; then it arrives, in order.
  void stall(std::uint64_t connection, Time until);
  /// The node crashed: its connections reset; its side is gone already (its gateway with it).
  void node_down(std::uint32_t node);
  /// The client process is gone (a restart): its connections reset; only the nodes hear of it.
  void client_gone(std::uint32_t client);

  /// A client cut off loses every frame both ways (its open connections die) and cannot connect, until it heals.
  void set_cut_off(std::uint32_t client, bool cut);
  bool cut_off(std::uint32_t client) const { return cut_[client]; }
  /// No client is cut off any more (the liveness phase begins).
  void heal();

  /// The gateway's silence probe: how long since the last frame from the client reached the node.
  Duration silent_for(std::uint64_t connection) const;
  /// An open connection chosen at random (for a reset), or nullopt if there is none.
  std::optional<std::uint64_t> random_open_connection();

  /// EventKind::client_link and EventKind::client_frame.
  void on_link_event(const Event& event);
  void on_frame_event(const Event& event);

 private:
  struct Link {
    std::uint32_t client = 0;
    std::uint32_t node = 0;
    Time started{0};
    bool accepted = false;            // the node accepted it (its gateway was told)
    std::uint64_t incarnation = 0;    // of the node that accepted it
    bool node_holds = false;          // the node's gateway has it, and has not heard of its end
    bool client_holds = true;         // the client has it, and has not heard of its end
    bool broken = false;              // reset: everything in flight, and everything sent from now on, is lost
    Time to_node_at{0};               // arrival of the last frame towards the node (FIFO)
    Time to_client_at{0};             // and towards the client
    Time stalled_until{0};            // nothing sent before then arrives before then
    Time heard_at{0};                 // arrival of the last frame at the node
    std::size_t to_client_bytes = 0;  // sent towards the client and not arrived yet: the node's send buffer
    const char* why = "";             // what the client hears when it hears of the end
  };
  // What a client_link event is (Event::detail).
  enum class LinkEvent : std::uint8_t { resolve, node_hears_end, client_hears_end };
  enum class Toward : std::uint8_t { node, client };

  Link* find(std::uint64_t connection);
  Duration delay();
  void schedule_link(LinkEvent what, std::uint64_t connection, Duration after);
  void send(std::uint64_t connection, Link& link, Toward toward, ByteSpan frame);
  void tell_node_end(std::uint64_t connection, Link& link, Time not_before);
  void tell_client_end(std::uint64_t connection, Link& link, const char* why, Time not_before);
  void resolve(std::uint64_t connection, Link& link);
  bool node_side_live(const Link& link) const;
  void forget_if_done(std::uint64_t connection, const Link& link);

  const FaultMix& mix_;
  const Phase& phase_;
  Random& random_;
  EventQueue& events_;
  const Trace& trace_;
  Stats& stats_;
  ClientNetworkNodes* nodes_ = nullptr;
  ClientNetworkClients* clients_ = nullptr;
  std::vector<bool> cut_;                // by client slot
  std::map<std::uint64_t, Link> links_;  // ordered: a node's crash resets its connections in a defined order
  std::uint64_t next_id_ = 1;
  std::vector<std::uint64_t> scratch_;
};

}  // namespace cohort::sim

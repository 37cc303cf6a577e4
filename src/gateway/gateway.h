#pragma once
// The client gateway, sans-I/O: the node's side of every client connection, between the runtime's connections and
// the session layer (the Replica's service host). It answers session opens (opened at the leader, a redirect to the
// leader, or "no leader" while the client waits on its connection), binds each session to the connection that
// opened it last, hands ingress to the replica, turns the host's outputs into acks, rejections, egress and closes
// for the bound connections, and keeps clients alive (keep-alive acks) or closes them when they go silent.
//
// A plain single-threaded object: it owns no socket and reads no clock; time comes with every input (the monotonic
// clock value the driver gives the replica). The node runtime (src/node/node.cpp) drives it today; the simulator
// is meant to drive the same object.
//
// The driver's contract:
//  - Tell it of every client or admin connection that passed the handshake (on_connected) and of each one's end
//    (on_disconnected), and hand it every frame such a connection sends (on_frame). It answers ping and
//    status_request itself (on_frame returns false for those): they need the transport and the configuration.
//  - After every Replica::take_ready() call after_ready(): it consumes replica.host().outputs() (and clears them)
//    and answers the waiting clients when the role, term, leader or serving state changed.
//  - Call tick() regularly (at least every few milliseconds: keep-alives are due every client_keepalive_interval),
//    with a way to ask how long each connection has been silent.
//  - After each input, send the frames of outputs() with send_frames() (in order, each on its connection's stream;
//    a connection that cannot take one is closed and gets none of its later frames), then close the connections
//    listed in `closing` (the gateway has forgotten them already: no on_disconnected is needed for them), then clear
//    the outputs.
//
// Invariants it keeps:
//  - A session is bound to at most one connection, the one whose open was answered last: a connection c bound to
//    session s (connections_[c].session == s) is the one bound_[s] names.
//  - pending_opens_ holds only opens this node appended while it leads: it is emptied when this node stops leading
//    (those entries may never commit; the waiting clients ask again).

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cohort/node.h"
#include "common/bytes.h"
#include "common/strong_id.h"
#include "consensus/raft.h"
#include "host/replica.h"
#include "protocol/client_messages.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

namespace cohort::gateway {

using consensus::Duration;
using consensus::Time;

/// A client or admin connection as the driver numbers it; never reused for another connection. (The node passes
/// its transport's io::ConnectionId: the gateway does not depend on the transport.)
enum class ConnectionId : std::uint64_t {};

/// A leader silent for this many heartbeat intervals is probably gone: clients are not redirected to it.
inline constexpr int kLeaderPresumedDeadHeartbeats = 3;
/// A client silent for this many keep-alive intervals is gone, whatever TCP says: its connection is closed.
inline constexpr int kClientSilenceKeepAliveIntervals = 4;

/// How long since bytes last arrived on a connection (the transport's silent_for()). Bytes of a frame still on its
/// way count as life: a large message on a slow link must not make its client look silent.
using SilenceProbe = std::function<Duration(ConnectionId)>;

struct GatewayConfig {
  NodeId self;                            // this node: the leader id in its opened replies and acks
  Duration heartbeat_interval{0};         // the consensus heartbeat (leader liveness for redirects)
  Duration client_keepalive_interval{0};  // how often bound clients hear from this node
  std::uint32_t max_message_size = 0;     // announced to clients when their session opens
  // While leading, the sessions bound here are noted in an activity entry at most this often (design.md: once a
  // second): a bound connection is a live client, also while back-pressure keeps its frames unread.
  Duration activity_interval = std::chrono::seconds(1);
  // Asked before every session open this node appends (resumes included); null: every client is accepted.
  std::shared_ptr<Authenticator> authenticator;
};

/// The activity interval for a session timeout: once a second, or a quarter of the timeout if that is shorter,
/// so a live client's activity lands well within every window.
constexpr Duration activity_interval_for(Duration session_timeout) noexcept {
  return std::min<Duration>(std::chrono::seconds(1), session_timeout / 4);
}

/// Why the gateway closes a connection (for the driver's log).
enum class CloseCause : std::uint8_t {
  malformed_frame,   // a frame that does not decode; the detail is the decode error
  unexpected_frame,  // a frame no client may send; the detail names its type
  silent,            // nothing heard for kClientSilenceKeepAliveIntervals keep-alive intervals
  send_buffer_full,  // the client does not read fast enough: it re-attaches and its unacknowledged messages are resent
};
const char* to_string(CloseCause cause) noexcept;

/// One encoded frame for one connection: bytes [begin, end) of GatewayOutputs::bytes.
struct OutFrame {
  ConnectionId connection{};
  std::size_t begin = 0;
  std::size_t end = 0;
};

struct Closing {
  ConnectionId connection{};
  CloseCause cause = CloseCause::silent;
  std::string detail;  // for people: the decode error, the frame type; empty for the other causes
};

/// What the driver must do after an input, in order: send `frames`, then close `closing`. Frames are encoded back to
/// back into one buffer, so a steady stream of acks and egress allocates nothing once the buffers have grown.
/// A session the replicated state closed (on every replica, whether or not its client is connected here).
struct SessionClosedNote {
  SessionId session = 0;
  CloseReason reason = CloseReason::client_closed;
  std::uint64_t last_seq = 0;
};

struct GatewayOutputs {
  /// What clear() lets `bytes` keep: a pass of small messages stays well below it (4096 entries applied per turn,
  /// each an ack and an egress frame of about 100 bytes, is under 1 MiB), so a steady stream allocates nothing; a
  /// pass of large egress (4096 echoes of 16 KiB are 64 MiB) is a burst whose buffer is given back, or the node
  /// would keep its high-water mark for good.
  static constexpr std::size_t kKeptBytes = 4U << 20U;

  std::vector<std::byte> bytes;
  std::vector<OutFrame> frames;
  std::vector<Closing> closing;
  std::vector<SessionClosedNote> sessions_closed;  // for the driver's log: a session ending is worth a line

  ByteSpan frame(const OutFrame& out) const noexcept { return ByteSpan(bytes).subspan(out.begin, out.end - out.begin); }
  /// Keeps the capacity, up to kKeptBytes of `bytes` (the frame records are a few percent of that).
  void clear() noexcept {
    if (bytes.capacity() > kKeptBytes)
      std::vector<std::byte>().swap(bytes);
    else
      bytes.clear();
    frames.clear();
    closing.clear();
    sessions_closed.clear();
  }
};

class Gateway {
 public:
  /// The replica must outlive the gateway; the gateway is the only one to consume replica.host().outputs().
  Gateway(GatewayConfig config, host::Replica& replica);

  /// Where redirects to `member` send clients: the client endpoint that member advertises, or this node's copy of
  /// the member list until it has said. Every member the replica may follow as leader needs one.
  void set_client_endpoint(NodeId member, std::string endpoint);

  /// A connection that passed the handshake as a client or an admin tool. Admin connections are answered like
  /// clients but never kept alive nor closed for silence: an operator's tool sends no keep-alives.
  void on_connected(ConnectionId id, protocol::PeerRole role);
  /// The connection is gone: its session binding and any open it is waiting for go with it. Unknown ids (ones the
  /// gateway closed itself) are ignored.
  void on_disconnected(ConnectionId id);
  /// A frame from a connection: session traffic is handled here; false for ping, status_request and (from an admin
  /// connection) admin_request, which the driver answers. A malformed or unexpected frame closes the connection.
  [[nodiscard]] bool on_frame(ConnectionId id, const protocol::Frame& frame, Time now);
  /// Hands every frame of outputs() to `send(connection, frame) -> bool` (false: the connection's send buffer is
  /// full), in order. After a refusal that connection's later frames are not sent, and it is closed: a later frame
  /// that fit would leave a hole in its stream (an egress seq missing before the next, which the client would take
  /// for a gap beyond the window although the window still holds it). Its client reattaches, and the window is
  /// resent.
  using FrameSink = std::function<bool(ConnectionId, ByteSpan)>;
  void send_frames(const FrameSink& send);
  /// The driver could not queue a frame for this connection (its send buffer is full): it is closed.
  void on_send_failed(ConnectionId id);

  /// After every Replica::take_ready(): delivers the host's outputs to the bound connections (and clears them),
  /// then answers the waiting clients if the role, term, leader or serving state changed.
  void after_ready(Time now);
  /// Keep-alive acks to bound sessions, retried opens for waiting clients, and closes of silent clients, once every
  /// client_keepalive_interval. `silent_for` is asked only then, once per client connection.
  void tick(Time now, const SilenceProbe& silent_for);
  /// The node is stopping: opens are answered "this node is stopping" from now on, starting with the waiting ones.
  void set_stopping(Time now);

  GatewayOutputs& outputs() noexcept { return outputs_; }

  /// Since the gateway was made, for metrics: plain counts, kept on the per-message path (no allocation, no lock).
  struct Counters {
    std::uint64_t ingress_messages = 0;  // appended to the log (a leader's)
    std::uint64_t ingress_bytes = 0;     // their payloads
    std::uint64_t egress_messages = 0;   // sent to clients, resent ones included
    std::uint64_t egress_bytes = 0;
    std::uint64_t redirects = 0;     // session opens sent to the leader
    std::uint64_t busy_replies = 0;  // session opens refused for a while (the session limit, back-pressure)
  };
  const Counters& counters() const noexcept { return counters_; }

 private:
  struct Connection {
    protocol::PeerRole role = protocol::PeerRole::client;
    std::optional<SessionId> session;         // bound to this session (this node is, or was, its leader)
    host::Id128 client;                       // the client id it last opened a session with
    std::optional<host::Id128> waiting_open;  // a session_open not answered yet (no leader, or appended)
    // What the last session_open said besides the client id: the session to resume, the last egress the client
    // delivered in it (its window is resent from the next one), and the credential (a copy: the open is retried
    // after its frame is gone).
    SessionId resume = 0;
    std::uint64_t last_egress = 0;
    std::string credential;
  };

  void handle(ConnectionId id, Connection& connection, const protocol::Frame& frame, Time now);
  void try_open(ConnectionId id, Connection& connection, Time now);
  void reply_not_leader(ConnectionId id, std::string_view why, Time now);
  void answer_waiting_clients(Time now);
  void unbind(ConnectionId id, Connection& connection);
  void deliver_host_outputs();
  void note_activity(Time now);
  /// The newest ack of `session` gathered in this pass (acks are batched: at most one per session per pass).
  void gather_ack(SessionId session, std::uint64_t seq, LogIndex position);
  void send_acks();
  void send_ack(SessionId session);
  void close(ConnectionId id, CloseCause cause, std::string detail);
  void forget(ConnectionId id);
  template <typename Message>
  void send(ConnectionId id, const Message& message);
  /// The leader this node knows in its current term (itself, if it leads), for the term and leader every reply
  /// carries; 0 if none.
  std::uint32_t known_leader() const;
  void answer_open(const host::SessionOpened& opened);
  void refuse_open(ConnectionId id, std::string_view why);
  void announce_keepalive(protocol::SessionReply& reply) const;

  GatewayConfig config_;
  host::Replica& replica_;
  std::map<NodeId, std::string> client_endpoints_;  // by member: where redirects send clients
  std::map<ConnectionId, Connection> connections_;
  std::map<SessionId, ConnectionId> bound_;            // sessions bound on this node
  std::map<host::Id128, ConnectionId> pending_opens_;  // appended session_opens, by client id
  Counters counters_;
  GatewayOutputs outputs_;
  // The replica's state as of the last after_ready(): a change is what answers the waiting clients.
  consensus::Role role_ = consensus::Role::follower;
  Term term_;
  std::optional<NodeId> leader_;
  bool serving_ = false;
  Time next_keepalive_{0};
  Time next_activity_{0};
  std::vector<SessionId> activity_;  // note_activity()'s scratch
  struct PendingAck {
    SessionId session = 0;
    std::uint64_t seq = 0;
    LogIndex position;
  };
  std::vector<PendingAck> acks_;       // deliver_host_outputs()'s, sent at its end
  std::vector<ConnectionId> refused_;  // send_frames()'s: connections that refused a frame in this pass
  bool stopping_ = false;
  std::vector<ConnectionId> silent_;  // tick()'s scratch: connections to close after its pass
};

}  // namespace cohort::gateway

#pragma once
// The client's state machine, sans-I/O: it takes connection events, frames, offers and ticks with the current
// time, and returns what to do (connect, close, frames to send) and what to tell the application. The runtime
// (client.cpp) drives it, from its own I/O thread or from the application's poll(); a test or the simulator can
// drive it directly.
//
// States (include/cohort/client.h): connecting -> connected <-> reconnecting, and closed (terminal), reached only
// by close(), a deadline the options set (give_up_after, connect_timeout), the end of a draining close, or a
// permanent refusal. The buffer holds every accepted message until it has a fate; it is resent, in order, after
// every session open, from the seq after the one the node reports applied. docs/client.md walks through all of it.
//
// Sessions: every session_open names the session the client last had (and the last egress it delivered in it),
// so the leader can resume it. If that session was closed meanwhile, the leader opens a new one and reports the
// old one's tombstone: messages up to its last applied seq were applied, the later ones definitely were not. Only
// when the tombstone is gone too is a buffered message's fate unknown.
//
// Terms: the client keeps the highest term it has heard a leader speak in (from a leader's own frames and from
// redirects that name a leader). A frame a leader sends (ack, egress, ingress_rejected, session_closed, an opened
// session_reply) from a lower term comes from a deposed leader: it is ignored, and does not count as hearing from
// the node. A no_leader answer never raises the term: a partitioned node's inflated term must not make the client
// ignore the real leader.
//
// Which nodes may serve it: a node's welcome names its member list. Before opening a session the client refuses a
// node whose cluster cannot be the one it was configured for: one with another member count than the endpoints
// the client lists (when it lists more than one), or, once a node has served it, one with another member list
// (configuration id) than that node had. Such a node is skipped, not a reason to close: it is a misconfigured
// member, and the others may serve. A handshake refusal (another cluster id or protocol version) or a node of
// another incarnation than the one that served the client closes it only once every listed member has said so in
// a row (a node that accepts it in between contradicts them: a stray process on one port must not end the client);
// a leader's opened reply of another incarnation closes it at once. Endpoint strings are never compared: proxies
// and host names make one node's differ.

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cohort/client.h"
#include "common/bytes.h"
#include "common/random.h"
#include "common/ring.h"
#include "protocol/frame.h"
#include "protocol/handshake.h"

namespace cohort::protocol {
struct SessionReply;
}  // namespace cohort::protocol

namespace cohort::client {

using Time = std::chrono::nanoseconds;

struct StateEvent {
  ClientState state;
  Reason reason = Reason::none;
  std::string text;
};
/// An attempt to reach a session failed while connecting or reconnecting (the client goes on by itself).
struct ConnectFailedEvent {
  std::string endpoint;
  Reason reason = Reason::none;
  std::string text;
};
struct LeaderEvent {
  std::uint32_t leader = 0;
  std::uint64_t term = 0;
};
struct SessionEvent {
  std::uint64_t session = 0;
  SessionChange change = SessionChange::opened;
};
struct AppliedEvent {
  std::uint64_t seq = 0;
  std::uint64_t position = 0;
};
struct RejectedEvent {
  std::uint64_t seq = 0;
  Reason reason = Reason::none;
  std::string text;
};
struct UnknownEvent {
  std::uint64_t seq = 0;
  Reason reason = Reason::none;
  std::string text;
};
/// Seqs `from` to `to` (inclusive), reported applied before, are no longer in the cluster (it lost the newest part
/// of its log); not a fate.
struct DataLossEvent {
  std::uint64_t from = 0;
  std::uint64_t to = 0;
};
/// Egress seqs `from` to `to` of the current session, delivered before, are no longer in the cluster (it lost the
/// newest part of its log): the seqs from `from` on come again, with what the service sends now; not a gap.
struct EgressLostEvent {
  std::uint64_t from = 0;
  std::uint64_t to = 0;
};
struct EgressEvent {
  std::uint64_t egress_seq = 0;
  std::vector<std::byte> message;  // from the core's spare buffers: give it back with recycle()
};
/// Egress seqs `from` to `to` (inclusive) of the current session will never arrive; comes just before the
/// EgressEvent after them.
struct EgressGapEvent {
  std::uint64_t from = 0;
  std::uint64_t to = 0;
};
using Event = std::variant<StateEvent, ConnectFailedEvent, LeaderEvent, SessionEvent, AppliedEvent, RejectedEvent,
                           UnknownEvent, DataLossEvent, EgressLostEvent, EgressEvent, EgressGapEvent>;

/// How a connection ended, as the runtime saw it.
struct Disconnect {
  Reason reason = Reason::connection_reset;
  std::string text;
};

/// How long a client waits on a connection without a session (a node answering "no leader"), in silence limits,
/// before it moves on to the other members.
inline constexpr int kNoSessionWaitSilenceLimits = 2;

class ClientCore {
 public:
  /// Options that validate() refuses leave the core closed from the start (Reason::invalid_options).
  ClientCore(ClientOptions options, std::uint64_t client_id_high, std::uint64_t client_id_low, std::uint64_t seed);

  // Inputs. on_connected, on_disconnected, on_refused and on_frame concern the connection last asked for
  // (take_connect).
  void tick(Time now);
  /// The handshake succeeded; `node` is what the node's welcome said of itself.
  void on_connected(Time now, const protocol::PeerIdentity& node);
  void on_disconnected(Time now, Disconnect why);
  /// The node refused the handshake (another cluster id, an incompatible protocol version). Permanent only once
  /// every listed member has refused in a row: a stray process on one port must not close the client.
  void on_refused(Time now, protocol::ErrorCode code, std::string_view why);
  void on_frame(const protocol::Frame& frame, Time now);
  Offer offer(ByteSpan message, Time now);
  /// Closes at once: the session is closed on the cluster if there is one; messages without a fate get theirs.
  void close(Time now);
  /// Closes once every buffered message has its fate, or at `deadline`, whichever comes first; offers are refused
  /// from now on. Messages are still sent and the client still reconnects meanwhile.
  void close_after_drain(Time now, Time deadline);

  // Outputs.
  /// An endpoint to connect to; the runtime first drops the current connection, if any.
  std::optional<std::string> take_connect();
  /// Whether to drop the current connection (frames in outgoing() are sent first).
  bool take_close();
  /// Frames to send on the current connection; the runtime sends and clears it.
  std::vector<std::byte>& outgoing() noexcept { return out_; }
  std::vector<Event>& events() noexcept { return events_; }
  /// Takes back the egress buffers of delivered events (so egress costs no allocation per message) and clears
  /// `events`.
  void recycle(std::vector<Event>& events);

  ClientState state() const noexcept { return state_; }
  /// Why the client is in its state; while connecting or reconnecting, the latest failed attempt.
  Reason reason() const noexcept { return reason_; }
  const std::string& reason_text() const noexcept { return reason_text_; }
  /// The session the client has, or is resuming while it reconnects (0: none yet).
  std::uint64_t session() const noexcept { return known_session_; }
  /// Whether a session is open on the current connection.
  std::uint32_t leader() const noexcept { return leader_; }
  /// The highest term the client has heard a leader speak in (0: none yet).
  std::uint64_t term() const noexcept { return term_; }
  /// The configuration id of the nodes that served this client (0 until one has).
  std::uint64_t configuration() const noexcept { return configuration_; }
  std::size_t unacknowledged() const noexcept { return buffer_.size() - settled_in_buffer_; }
  /// Every seq up to this one has its fate.
  std::uint64_t settled_seq() const noexcept { return acked_; }
  /// The highest log position the cluster has reported applying this client's messages at.
  std::uint64_t applied_position() const noexcept { return applied_position_; }
  /// The keep-alive interval and silence limit in use: the options', adjusted to what the node said.
  Time keepalive_interval() const noexcept { return keepalive_interval_; }
  Time silence_limit() const noexcept { return silence_limit_; }

 private:
  struct Buffered {
    std::uint64_t seq = 0;
    std::vector<std::byte> message;
    bool sent_whole = false;  // the cluster may have its bytes
    bool withdrawn = false;   // sent as a withdrawal (above the cluster's limit)
    // Its fate is told already (the cluster rejected it as too large), but its seq stays in the buffer until an ack
    // covers it, resent as a withdrawal, so the wire numbering stays contiguous (a renumbering after a data loss
    // counts on it). Its bytes are freed.
    bool settled = false;
    // Withdrawn and never sent whole: the cluster cannot have applied it, whatever "applied up to" says.
    bool surely_refused() const noexcept { return withdrawn && !sent_whole; }
  };
  enum class Link : std::uint8_t { none, connecting, open };

  void set_state(ClientState state, Reason reason, std::string text);
  /// Closes for good (terminal): every buffered message gets its fate (`fate_text`), never-sent ones rejected and
  /// the others unknown.
  void close_for(Reason reason, std::string text, std::string_view fate_text);
  /// Gives every buffered message its fate (rejected if it was definitely not applied or never sent, else
  /// unknown) and empties the buffer.
  void settle_buffer(bool definitely_not_applied, Reason reason, std::string_view text);
  void start_session_numbering();
  void connect_failed(Reason reason, std::string text);
  void drop_connection(Time now, Reason reason, std::string text, bool follow_redirect);
  /// Why `node` cannot serve this client, or nullopt if it may.
  std::optional<std::string> misconfigured(const protocol::PeerIdentity& node) const;
  bool other_incarnation(const protocol::Incarnation& incarnation) const noexcept;
  /// A node refused this client for good (another cluster, version or incarnation): the client closes once every
  /// listed member has, in a row; until then it moves on.
  void node_refused(Time now, Reason reason, std::string text);
  void schedule_retry(Time now, Time ceiling);
  // The next member in turn; a full round lets a redirect be followed at once again.
  void advance_member();
  void check_deadlines(Time now);
  void send_ingress(Buffered& message);
  void send_open();
  std::vector<std::byte> spare_buffer(ByteSpan bytes);
  void give_back(std::vector<std::byte> buffer);

  void resend_from(std::uint64_t seq);
  void acknowledge(std::uint64_t seq, std::uint64_t position);
  /// Learns a leader and its term from a frame that names one (leader != 0); a lower term than known teaches
  /// nothing.
  void note_leader(std::uint32_t leader, std::uint64_t term);
  /// Whether a frame a leader sent in `term` is from a deposed leader, so the client ignores it. Term 0: the
  /// sender did not say (a layout 1 frame), and the frame is taken.
  bool stale(std::uint64_t term) const noexcept { return term != 0 && term < term_; }
  /// A frame a leader sent: false if it is stale (ignore it); else it counts as hearing from the node, and its
  /// leader and term are learned.
  bool heard_from_leader(std::uint64_t term, std::uint32_t leader, Time now);
  void handle_frame(const protocol::Frame& frame, Time now);
  void handle_reply(const protocol::Frame& frame, Time now);
  void handle_busy(std::string_view text, Time now);
  void adopt_keepalive(const protocol::SessionReply& reply);
  void session_opened(const protocol::SessionReply& reply, Time now);
  /// The cluster's last applied seq for a resumed session is below one it acknowledged: reports the lost seqs and
  /// renumbers the buffer to follow the cluster's position.
  void adopt_cluster_position(const protocol::SessionReply& reply);
  /// The leader opened a new session in place of known_session_: gives every buffered message of the old session
  /// its fate, from the tombstone the reply carries if it is that session's, else unknown.
  void settle_replaced_session(const protocol::SessionReply& reply);
  void deliver_egress(std::uint64_t seq, ByteSpan message);

  ClientOptions options_;
  std::uint64_t client_high_;
  std::uint64_t client_low_;
  Random random_;
  std::string reason_text_;

  std::size_t next_member_ = 0;
  std::string endpoint_;                 // the endpoint of the connection last asked for
  std::optional<std::string> redirect_;  // where the last redirect pointed: the next connection goes there
  // Redirects followed in a row since the client last took a member in turn. As many as it lists members (at least
  // kMinRedirectChain) go round in a loop: nodes with stale views of each other, or a leader advertising a wrong
  // endpoint. The next member in turn is tried instead, or two such nodes would hold the client forever.
  std::size_t redirect_chain_ = 0;
  // Listed members that refused this client for good (another cluster, version or incarnation) since a node last
  // accepted it: all of them, and the client closes.
  std::vector<bool> refused_by_member_;
  Time retry_at_{0};
  Time last_heard_{0};
  Time waiting_since_{0};  // since when the open connection has had no session (see tick())
  Time last_sent_{0};
  Time last_input_{0};                       // the time the last input carried
  std::string last_failure_;                 // the last failed attempt, for the text of a deadline's close
  std::optional<Time> started_at_;           // the first tick
  std::optional<Time> not_connected_since_;  // since when the client has had no session (give_up_after)
  std::optional<Time> drain_deadline_;       // close_after_drain was called
  Time keepalive_interval_{0};
  Time silence_limit_{0};
  std::optional<std::string> connect_;

  std::uint64_t session_ = 0;        // 0: none open on this connection
  std::uint64_t known_session_ = 0;  // the session this client last had, to tell "resumed" from "replaced"
  // The highest term a leader spoke in, as far as the client heard (a leader's frames, redirects naming a leader);
  // frames from leaders of lower terms are ignored. Never lowered.
  std::uint64_t term_ = 0;
  std::size_t cluster_max_message_ = 0;  // the limit the leader announced at the last open (0: not known yet)
  std::uint64_t incarnation_high_ = 0;
  std::uint64_t incarnation_low_ = 0;
  // The configuration of the nodes that served this client, learned (like the incarnation) at the first session
  // open: from then on a node of another configuration is skipped. 0: none yet.
  std::uint64_t configuration_ = 0;
  protocol::MemberIds configuration_members_;
  protocol::MemberIds connected_members_;  // the current connection's node's, until its session opens

  // Invariant: ascending seqs, each without a fate yet, except `settled` ones (rejected as too large), which keep
  // only their seq until an ack covers it.
  Ring<Buffered> buffer_;
  std::size_t buffered_bytes_ = 0;
  std::size_t settled_in_buffer_ = 0;  // Buffered::settled ones, which keep only their seq
  // Byte buffers of acknowledged messages and delivered egress, reused for the next ones (bounded by
  // kMaxSpareBytes in capacity).
  std::vector<std::vector<std::byte>> spare_;
  std::size_t spare_bytes_ = 0;
  // Seqs here are the application's, unique for the client's life; on the wire, a session numbers its messages
  // from 1: wire seq = seq - session_base_ (the last seq offered before the session began). Never reused within a
  // session, even after a data loss (see adopt_cluster_position).
  std::uint64_t next_seq_ = 1;
  std::uint64_t session_base_ = 0;
  // Ranges of seqs of this session reported lost (DataLossEvent), merged: a later loss reports only the others.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> lost_reported_;
  std::uint64_t acked_ = 0;  // every seq up to here has its fate
  std::uint64_t applied_position_ = 0;
  // The last egress seq delivered in known_session_ (egress seqs start from 1 in every session): only the next one
  // is delivered, and a resume asks the leader for what follows it.
  std::uint64_t last_egress_ = 0;
  std::uint64_t resent_from_ = 0;  // the last resend's first seq: gaps that name it are echoes of one loss

  std::vector<std::byte> out_;
  std::vector<Event> events_;

  // The small fields, together (padding).
  std::uint32_t attempt_ = 0;       // consecutive failed connections, for the backoff
  std::uint32_t busy_replies_ = 0;  // "busy" answers since the last session opened, for the backoff
  std::uint32_t leader_ = 0;
  ClientState state_ = ClientState::connecting;
  Reason reason_ = Reason::none;
  Link link_ = Link::none;
  bool redirected_this_round_ = false;  // a second redirect within one backoff round waits for the backoff
  bool told_no_leader_ = false;         // this connection's "no leader" reached the application already
  bool ever_connected_ = false;
  bool close_ = false;
  // The cluster closed the last session while connected, and the client settled its messages from the
  // session_closed frame: the next session opened replaces it (known_session_ is 0 meanwhile: nothing to resume).
  bool replaced_pending_ = false;
};

}  // namespace cohort::client

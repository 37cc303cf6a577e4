#pragma once
// Messages between a client library (or admin tool) and a node: sessions, ingress (client to cluster), egress
// (service to client), acknowledgements and status. Payloads and texts are views into the frame when decoded.
//
// A session is opened by a client's random 128-bit id; opening again with the same id returns the same session,
// which is how a client resumes after reconnecting. Ingress messages carry a per-session sequence number that
// the cluster applies in order, exactly once; egress messages carry one too, which the client delivers in order,
// once. Every frame a node sends a client says the sender's term and leader, so a client can tell a deposed
// leader's late frames from the current leader's.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "protocol/messages.h"

namespace cohort::protocol {

enum class SessionStatus : std::uint8_t {
  opened = 1,     // the session (new or resumed) is open on this node, the leader
  redirect = 2,   // not the leader; the text is the leader's client endpoint "host:port"
  no_leader = 3,  // no leader known right now; try again later
  rejected = 4,   // refused for good, e.g. authentication refused (the text says why)
  busy = 5,       // layout 2: the cluster cannot open a session now (its session limit); retry after a backoff step
};

/// The longest credential a session_open carries.
inline constexpr std::size_t kMaxCredentialLength = 1024;

enum class SessionCloseReason : std::uint8_t {
  client_closed = 1,    // the client sent session_close
  timeout = 2,          // no keep-alive or ingress within the session timeout
  service = 3,          // the service closed it
  unknown_session = 4,  // the cluster has no such session (expired, or never opened)
};

enum class IngressRejectReason : std::uint8_t {
  unknown_session = 1,
  gap = 2,         // seq is not the next one expected; expected_seq says which is
  too_large = 3,   // the payload exceeds what the cluster accepts
  not_leader = 4,  // this node is not the leader (any more)
};

/// A node's Raft role as status_reply reports it.
enum class NodeRole : std::uint8_t {
  follower = 1,
  candidate = 2,
  leader = 3,
  pre_candidate = 4,
};

const char* to_string(SessionStatus status) noexcept;
const char* to_string(SessionCloseReason reason) noexcept;
const char* to_string(IngressRejectReason reason) noexcept;
const char* to_string(NodeRole role) noexcept;

struct SessionOpen {
  static constexpr MessageType kType = MessageType::session_open;
  static constexpr std::uint8_t kVersion = 2;
  static constexpr std::size_t kFixedBodySize = 40;  // without the credential (layout 1: 16, and no credential)

  std::uint64_t client_id_high = 0;  // the client's random 128-bit id
  std::uint64_t client_id_low = 0;
  // Layout 2:
  std::uint64_t session_id = 0;       // the session this client last had, whose resume it asks for; 0: none
  std::uint64_t last_egress_seq = 0;  // the highest egress seq of that session the client delivered
  ByteSpan credential{};              // opaque to the protocol; at most kMaxCredentialLength bytes

  std::size_t body_size() const noexcept { return kFixedBodySize + credential.size(); }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<SessionOpen, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const SessionOpen& a, const SessionOpen& b) noexcept {
    return a.client_id_high == b.client_id_high && a.client_id_low == b.client_id_low && a.session_id == b.session_id &&
           a.last_egress_seq == b.last_egress_seq && detail::bytes_equal(a.credential, b.credential);
  }
};

struct SessionReply {
  static constexpr MessageType kType = MessageType::session_reply;
  static constexpr std::uint8_t kVersion = 3;
  static constexpr std::size_t kFixedBodySize = 96;  // the body without its text (layout 1: 56, layout 2: 80)

  SessionStatus status = SessionStatus::opened;
  std::uint32_t leader_id = 0;  // 0: unknown
  std::uint64_t term = 0;
  std::uint64_t session_id = 0;
  std::uint64_t last_applied_seq = 0;  // the session's last ingress seq the cluster applied (resume from here)
  Incarnation incarnation;
  std::uint32_t max_message_size = 0;  // opened: the largest ingress payload the cluster applies (0: not said)
  /// redirect: the leader's "host:port"; no_leader, rejected, busy: why. At most kMaxErrorTextLength bytes.
  std::string_view text;
  // Layout 2. Opened, when the client asked to resume a session that is closed: that session's tombstone. Its
  // messages with seq <= replaced_last_seq were applied, the later ones definitely were not. All zero when
  // nothing was replaced.
  std::uint64_t replaced_session = 0;
  std::uint64_t replaced_last_seq = 0;
  /// Why the replaced session was closed; SessionCloseReason{} (0): its tombstone is gone (evicted), so the fate
  /// of its messages after the last acknowledged cannot be known.
  SessionCloseReason replaced_reason{};
  // Layout 3. Every reply: the node's keep-alive interval and the silence after which it drops a client (0: not
  // said), so the client can keep alive often enough and wait long enough. Opened only: the session's last egress
  // seq (what a resume continues from: below the client's own only if the cluster lost the newest part of its log).
  std::uint32_t keepalive_interval_ms = 0;
  std::uint32_t silence_limit_ms = 0;
  std::uint64_t egress_seq = 0;

  std::size_t body_size() const noexcept { return kFixedBodySize + text.size(); }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<SessionReply, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const SessionReply&, const SessionReply&) = default;
};

struct Ingress {
  static constexpr MessageType kType = MessageType::ingress;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kFixedBodySize = 16;

  std::uint64_t session_id = 0;
  std::uint64_t seq = 0;
  ByteSpan payload;  // the rest of the frame

  std::size_t body_size() const noexcept { return kFixedBodySize + payload.size(); }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<Ingress, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const Ingress& a, const Ingress& b) noexcept {
    return a.session_id == b.session_id && a.seq == b.seq && detail::bytes_equal(a.payload, b.payload);
  }
};

/// Node to client: how far the session's ingress has been applied. Also sent as the node's keep-alive.
struct Ack {
  static constexpr MessageType kType = MessageType::ack;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = 40;

  std::uint64_t session_id = 0;
  std::uint64_t applied_seq = 0;
  std::uint64_t log_position = 0;
  std::uint64_t term = 0;
  std::uint32_t leader_id = 0;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<Ack, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const Ack&, const Ack&) = default;
};

struct Egress {
  static constexpr MessageType kType = MessageType::egress;
  static constexpr std::uint8_t kVersion = 2;
  static constexpr std::size_t kFixedBodySize = 32;  // without the payload (layout 1: 16)

  std::uint64_t session_id = 0;
  std::uint64_t egress_seq = 0;  // per session, from 1
  ByteSpan payload;              // the rest of the frame
  // Layout 2 (on the wire before the payload, which stays the rest of the frame):
  std::uint64_t term = 0;  // the sender's current term (0: not said, a layout 1 frame)
  std::uint32_t leader_id = 0;

  std::size_t body_size() const noexcept { return kFixedBodySize + payload.size(); }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<Egress, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const Egress& a, const Egress& b) noexcept {
    return a.session_id == b.session_id && a.egress_seq == b.egress_seq && detail::bytes_equal(a.payload, b.payload) &&
           a.term == b.term && a.leader_id == b.leader_id;
  }
};

struct KeepAlive {
  static constexpr MessageType kType = MessageType::keep_alive;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = 8;

  std::uint64_t session_id = 0;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<KeepAlive, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const KeepAlive&, const KeepAlive&) = default;
};

struct SessionClose {
  static constexpr MessageType kType = MessageType::session_close;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = 8;

  std::uint64_t session_id = 0;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<SessionClose, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const SessionClose&, const SessionClose&) = default;
};

/// A message the client withdraws instead of sending (it is above the cluster's announced limit): the leader
/// records its seq as refused, a definite fate, so the messages after it find no gap.
struct IngressWithdrawn {
  static constexpr MessageType kType = MessageType::ingress_withdrawn;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = 16;

  std::uint64_t session_id = 0;
  std::uint64_t seq = 0;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<IngressWithdrawn, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const IngressWithdrawn&, const IngressWithdrawn&) = default;
};

enum class AdminCommand : std::uint8_t {
  snapshot = 1,             // take a snapshot now, whatever the log's size since the last one
  transfer_leadership = 2,  // the leader hands leadership to `target`
  shutdown = 3,             // stop gracefully (as on SIGTERM)
};
const char* to_string(AdminCommand command) noexcept;

/// Admin tool to node: a command that changes the node or the cluster. Only on an admin connection, and taken only
/// from one accepted on the node's admin endpoint, or carrying a credential the node's authenticator accepts (a
/// client connection that sends one is closed). Answered by one admin_reply.
struct AdminRequest {
  static constexpr MessageType kType = MessageType::admin_request;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kFixedBodySize = 16;

  AdminCommand command = AdminCommand::snapshot;
  std::uint32_t node_id = 0;  // the node the tool means (0: whichever answers): another refuses, naming itself
  std::uint32_t target = 0;   // transfer_leadership: the node to hand leadership to
  ByteSpan credential{};      // opaque; at most kMaxCredentialLength bytes; empty on an admin endpoint

  std::size_t body_size() const noexcept { return kFixedBodySize + credential.size(); }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<AdminRequest, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const AdminRequest& a, const AdminRequest& b) noexcept {
    return a.command == b.command && a.node_id == b.node_id && a.target == b.target &&
           detail::bytes_equal(a.credential, b.credential);
  }
};

enum class AdminOutcome : std::uint8_t {
  done = 1,        // snapshot: written (or nothing applied since the newest); transfer: the target leads; shutdown:
                   // the node is stopping and closes the connection when it exits
  refused = 2,     // not allowed here (no admin endpoint, credential refused, another node, a bad target): `text`
  failed = 3,      // tried and failed (a snapshot write, a transfer nobody completed): `text`, and the node's log
  stopping = 4,    // the node stopped before it was done
  not_leader = 5,  // transfer_leadership at a node that does not lead: `leader_id` names the one it knows
};
const char* to_string(AdminOutcome outcome) noexcept;

/// Node to admin tool: the outcome of one admin_request.
struct AdminReply {
  static constexpr MessageType kType = MessageType::admin_reply;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kFixedBodySize = 48;

  AdminCommand command = AdminCommand::snapshot;
  AdminOutcome outcome = AdminOutcome::done;
  std::uint32_t node_id = 0;    // the answering node
  std::uint32_t leader_id = 0;  // the leader it knows (0: unknown)
  std::uint64_t index = 0;      // snapshot: its position (last entry), term and size in bytes (0 if unknown)
  std::uint64_t term = 0;
  std::uint64_t size = 0;
  std::string_view text;  // why, when not done; at most kMaxErrorTextLength bytes

  std::size_t body_size() const noexcept { return kFixedBodySize + text.size(); }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<AdminReply, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const AdminReply&, const AdminReply&) = default;
};

struct SessionClosed {
  static constexpr MessageType kType = MessageType::session_closed;
  static constexpr std::uint8_t kVersion = 2;
  static constexpr std::size_t kBodySize = 40;  // layout 1: 24

  std::uint64_t session_id = 0;
  std::uint64_t last_applied_seq = 0;
  SessionCloseReason reason = SessionCloseReason::client_closed;
  // Layout 2:
  std::uint64_t term = 0;  // the sender's current term (0: not said, a layout 1 frame)
  std::uint32_t leader_id = 0;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<SessionClosed, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const SessionClosed&, const SessionClosed&) = default;
};

struct IngressRejected {
  static constexpr MessageType kType = MessageType::ingress_rejected;
  static constexpr std::uint8_t kVersion = 2;
  static constexpr std::size_t kBodySize = 48;  // layout 1: 32

  std::uint64_t session_id = 0;
  std::uint64_t seq = 0;           // the refused message's
  std::uint64_t expected_seq = 0;  // the seq the session expects next
  IngressRejectReason reason = IngressRejectReason::unknown_session;
  // Layout 2:
  std::uint64_t term = 0;  // the sender's current term (0: not said, a layout 1 frame)
  std::uint32_t leader_id = 0;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<IngressRejected, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const IngressRejected&, const IngressRejected&) = default;
};

struct StatusRequest {
  static constexpr MessageType kType = MessageType::status_request;
  static constexpr std::uint8_t kVersion = 2;
  static constexpr std::size_t kBodySize = 8;  // layout 1: 0

  /// Whether to compute the state hash, which serializes the whole replicated state on the node's loop thread: a
  /// pause that grows with the state, so only a tool comparing replicas asks. A layout 1 request asks.
  bool state_hash = false;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<StatusRequest, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const StatusRequest&, const StatusRequest&) = default;
};

/// The most configuration problems a status reply lists (each a text of at most kMaxErrorTextLength bytes).
inline constexpr std::size_t kMaxStatusProblems = 16;

struct StatusReply {
  static constexpr MessageType kType = MessageType::status_reply;
  static constexpr std::uint8_t kVersion = 2;
  static constexpr std::size_t kFixedBodySize = 104;  // without the member ids and the problems; layout 1: 72

  std::uint32_t node_id = 0;
  NodeRole role = NodeRole::follower;
  std::uint8_t standing = 0;       // consensus::Standing: 0 member, 1 fresh, 2 recovering (it votes only as a member)
  std::uint32_t leader_id = 0;     // 0: unknown
  std::uint32_t entry_faults = 0;  // committed entries this replica could not apply as they are (saturating)
  std::uint64_t term = 0;
  std::uint64_t commit_index = 0;
  std::uint64_t applied_index = 0;
  std::uint64_t last_index = 0;
  std::uint64_t state_hash = 0;  // the service's state hash, to compare replicas (0 unless asked for)
  std::uint64_t open_sessions = 0;
  // Layout 2:
  std::uint64_t snapshot_index = 0;  // the newest snapshot on disk (0: none) and its term (0 if unknown)
  std::uint64_t snapshot_term = 0;
  std::uint64_t uptime_ms = 0;  // since the node started
  bool state_hash_included = false;
  MemberIds members;  // the node's member list (its configuration)
  /// Configuration problems the node sees, for humans: a peer refused for another member list or incarnation, a
  /// peer advertising another client endpoint than this node's list names. Views, like every decoded text.
  std::uint16_t problem_count = 0;
  std::array<std::string_view, kMaxStatusProblems> problems{};

  std::size_t body_size() const noexcept {
    std::size_t size = kFixedBodySize + std::size_t{4} * members.count;
    for (std::size_t i = 0; i < problem_count; ++i) size += 2 + problems[i].size();
    return size;
  }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<StatusReply, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const StatusReply&, const StatusReply&) = default;
};

}  // namespace cohort::protocol

#include "protocol/client_messages.h"

namespace cohort::protocol {
namespace {

using detail::finish;
using detail::read_reserved;
using detail::write_zeros;

/// A u8 enum whose values run from 1 to `last`; anything else is refused (no defaulting to a known value).
template <typename Enum>
Enum read_enum(BodyReader& in, const char* field, Enum last) noexcept {
  const auto value = in.read<std::uint8_t>(field);
  const auto limit = static_cast<std::uint8_t>(last);
  if (!in.failed() && (value == 0 || value > limit)) in.fail_invalid(field, value, limit);
  return static_cast<Enum>(value);
}

/// The same, where 0 is a value too (it means "none").
template <typename Enum>
Enum read_enum_or_zero(BodyReader& in, const char* field, Enum last) noexcept {
  const auto value = in.read<std::uint8_t>(field);
  const auto limit = static_cast<std::uint8_t>(last);
  if (!in.failed() && value > limit) in.fail_invalid(field, value, limit);
  return static_cast<Enum>(value);
}

template <typename Enum>
void write_enum(BodyWriter& out, Enum value) noexcept {
  out.write<std::uint8_t>(static_cast<std::uint8_t>(value));
}

// The sender's term and leader, which layout 2 of every node-to-client message carries (as ack and session_reply
// have from layout 1): term u64 | leader_id u32 | reserved u32
void write_term_and_leader(BodyWriter& out, std::uint64_t term, std::uint32_t leader_id) noexcept {
  out.write<std::uint64_t>(term);
  out.write<std::uint32_t>(leader_id);
  write_zeros(out, 4);
}

template <typename Message>
void read_term_and_leader(BodyReader& in, Message& message) noexcept {
  message.term = in.read<std::uint64_t>("term");
  message.leader_id = in.read<std::uint32_t>("leader_id");
  read_reserved(in, 4);
}

// The session-id-only bodies (keep_alive, session_close): session_id u64
template <typename Message>
Result<Message, DecodeError> decode_session_id(BodyReader& in) noexcept {
  Message message;
  message.session_id = in.read<std::uint64_t>("session_id");
  return finish(in, message);
}

}  // namespace

const char* to_string(SessionStatus status) noexcept {
  switch (status) {
    case SessionStatus::opened: return "opened";
    case SessionStatus::redirect: return "redirect";
    case SessionStatus::no_leader: return "no_leader";
    case SessionStatus::rejected: return "rejected";
    case SessionStatus::busy: return "busy";
  }
  return "unknown";
}

const char* to_string(SessionCloseReason reason) noexcept {
  switch (reason) {
    case SessionCloseReason::client_closed: return "client_closed";
    case SessionCloseReason::timeout: return "timeout";
    case SessionCloseReason::service: return "service";
    case SessionCloseReason::unknown_session: return "unknown_session";
  }
  return "unknown";
}

const char* to_string(IngressRejectReason reason) noexcept {
  switch (reason) {
    case IngressRejectReason::unknown_session: return "unknown_session";
    case IngressRejectReason::gap: return "gap";
    case IngressRejectReason::too_large: return "too_large";
    case IngressRejectReason::not_leader: return "not_leader";
  }
  return "unknown";
}

const char* to_string(NodeRole role) noexcept {
  switch (role) {
    case NodeRole::follower: return "follower";
    case NodeRole::candidate: return "candidate";
    case NodeRole::leader: return "leader";
    case NodeRole::pre_candidate: return "pre_candidate";
  }
  return "unknown";
}

// SessionOpen v1: client_id_high u64 | client_id_low u64
//             v2: ... | session_id u64 | last_egress_seq u64 | credential_length u16 | reserved 6 | credential
void SessionOpen::encode_body(BodyWriter& out) const noexcept {
  COHORT_ASSERT(credential.size() <= kMaxCredentialLength);
  out.write<std::uint64_t>(client_id_high);
  out.write<std::uint64_t>(client_id_low);
  out.write<std::uint64_t>(session_id);
  out.write<std::uint64_t>(last_egress_seq);
  out.write<std::uint16_t>(static_cast<std::uint16_t>(credential.size()));
  write_zeros(out, 6);
  out.write_bytes(credential);
}

Result<SessionOpen, DecodeError> SessionOpen::decode_body(BodyReader& in, std::uint8_t version) noexcept {
  SessionOpen open;
  open.client_id_high = in.read<std::uint64_t>("client_id_high");
  open.client_id_low = in.read<std::uint64_t>("client_id_low");
  if (version >= 2) {
    open.session_id = in.read<std::uint64_t>("session_id");
    open.last_egress_seq = in.read<std::uint64_t>("last_egress_seq");
    const auto length = in.read<std::uint16_t>("credential_length");
    // Refused from the length, even when that many bytes follow: the limit is the protocol's, not the frame's.
    if (!in.failed() && length > kMaxCredentialLength)
      in.fail_invalid("credential_length", length, kMaxCredentialLength);
    read_reserved(in, 6);
    if (!in.failed()) open.credential = in.read_bytes(length, "credential");
  }
  return finish(in, open);
}

// SessionReply v1: status u8 | reserved 3 | leader_id u32 | term u64 | session_id u64 | last_applied_seq u64 |
//                  incarnation 2 x u64 | text_length u16 | reserved 2 | max_message_size u32 | text
//              v2: ... | max_message_size u32 | replaced_session u64 | replaced_last_seq u64 | replaced_reason u8 |
//                  reserved 7 | text (the fixed fields grow; the text stays last)
//              v3: ... | reserved 7 | keepalive_interval_ms u32 | silence_limit_ms u32 | egress_seq u64 | text
void SessionReply::encode_body(BodyWriter& out) const noexcept {
  COHORT_ASSERT(text.size() <= kMaxErrorTextLength);
  write_enum(out, status);
  write_zeros(out, 3);
  out.write<std::uint32_t>(leader_id);
  out.write<std::uint64_t>(term);
  out.write<std::uint64_t>(session_id);
  out.write<std::uint64_t>(last_applied_seq);
  write_incarnation(out, incarnation);
  out.write<std::uint16_t>(static_cast<std::uint16_t>(text.size()));
  write_zeros(out, 2);
  out.write<std::uint32_t>(max_message_size);
  out.write<std::uint64_t>(replaced_session);
  out.write<std::uint64_t>(replaced_last_seq);
  out.write<std::uint8_t>(static_cast<std::uint8_t>(replaced_reason));
  write_zeros(out, 7);
  out.write<std::uint32_t>(keepalive_interval_ms);
  out.write<std::uint32_t>(silence_limit_ms);
  out.write<std::uint64_t>(egress_seq);
  out.write_bytes(as_bytes(text));
}

Result<SessionReply, DecodeError> SessionReply::decode_body(BodyReader& in, std::uint8_t version) noexcept {
  SessionReply reply;
  reply.status = read_enum(in, "status", version >= 2 ? SessionStatus::busy : SessionStatus::rejected);
  read_reserved(in, 3);
  reply.leader_id = in.read<std::uint32_t>("leader_id");
  reply.term = in.read<std::uint64_t>("term");
  reply.session_id = in.read<std::uint64_t>("session_id");
  reply.last_applied_seq = in.read<std::uint64_t>("last_applied_seq");
  reply.incarnation = read_incarnation(in);
  const auto length = in.read<std::uint16_t>("text_length");
  if (!in.failed() && length > kMaxErrorTextLength) in.fail_invalid("text_length", length, kMaxErrorTextLength);
  read_reserved(in, 2);
  reply.max_message_size = in.read<std::uint32_t>("max_message_size");
  if (version >= 2) {
    reply.replaced_session = in.read<std::uint64_t>("replaced_session");
    reply.replaced_last_seq = in.read<std::uint64_t>("replaced_last_seq");
    reply.replaced_reason = read_enum_or_zero(in, "replaced_reason", SessionCloseReason::unknown_session);
    read_reserved(in, 7);
  }
  if (version >= 3) {
    reply.keepalive_interval_ms = in.read<std::uint32_t>("keepalive_interval_ms");
    reply.silence_limit_ms = in.read<std::uint32_t>("silence_limit_ms");
    reply.egress_seq = in.read<std::uint64_t>("egress_seq");
  }
  if (!in.failed()) reply.text = as_chars(in.read_bytes(length, "text"));
  return finish(in, reply);
}

// Ingress v1: session_id u64 | seq u64 | payload (the rest of the frame)
void Ingress::encode_body(BodyWriter& out) const noexcept {
  out.write<std::uint64_t>(session_id);
  out.write<std::uint64_t>(seq);
  out.write_bytes(payload);
}

Result<Ingress, DecodeError> Ingress::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  Ingress ingress;
  ingress.session_id = in.read<std::uint64_t>("session_id");
  ingress.seq = in.read<std::uint64_t>("seq");
  ingress.payload = in.read_bytes(in.remaining(), "payload");
  return finish(in, ingress);
}

// Ack v1: session_id u64 | applied_seq u64 | log_position u64 | term u64 | leader_id u32 | reserved u32
void Ack::encode_body(BodyWriter& out) const noexcept {
  out.write<std::uint64_t>(session_id);
  out.write<std::uint64_t>(applied_seq);
  out.write<std::uint64_t>(log_position);
  out.write<std::uint64_t>(term);
  out.write<std::uint32_t>(leader_id);
  write_zeros(out, 4);
}

Result<Ack, DecodeError> Ack::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  Ack ack;
  ack.session_id = in.read<std::uint64_t>("session_id");
  ack.applied_seq = in.read<std::uint64_t>("applied_seq");
  ack.log_position = in.read<std::uint64_t>("log_position");
  ack.term = in.read<std::uint64_t>("term");
  ack.leader_id = in.read<std::uint32_t>("leader_id");
  read_reserved(in, 4);
  return finish(in, ack);
}

// Egress v1: session_id u64 | egress_seq u64 | payload (the rest of the frame)
//        v2: session_id u64 | egress_seq u64 | term u64 | leader_id u32 | reserved u32 | payload (the rest)
void Egress::encode_body(BodyWriter& out) const noexcept {
  out.write<std::uint64_t>(session_id);
  out.write<std::uint64_t>(egress_seq);
  write_term_and_leader(out, term, leader_id);
  out.write_bytes(payload);
}

Result<Egress, DecodeError> Egress::decode_body(BodyReader& in, std::uint8_t version) noexcept {
  Egress egress;
  egress.session_id = in.read<std::uint64_t>("session_id");
  egress.egress_seq = in.read<std::uint64_t>("egress_seq");
  if (version >= 2) read_term_and_leader(in, egress);
  egress.payload = in.read_bytes(in.remaining(), "payload");
  return finish(in, egress);
}

// KeepAlive v1 and SessionClose v1: session_id u64
void KeepAlive::encode_body(BodyWriter& out) const noexcept { out.write<std::uint64_t>(session_id); }
Result<KeepAlive, DecodeError> KeepAlive::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  return decode_session_id<KeepAlive>(in);
}

void SessionClose::encode_body(BodyWriter& out) const noexcept { out.write<std::uint64_t>(session_id); }
Result<SessionClose, DecodeError> SessionClose::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  return decode_session_id<SessionClose>(in);
}

// IngressWithdrawn v1: session_id u64 | seq u64
void IngressWithdrawn::encode_body(BodyWriter& out) const noexcept {
  out.write<std::uint64_t>(session_id);
  out.write<std::uint64_t>(seq);
}

Result<IngressWithdrawn, DecodeError> IngressWithdrawn::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  IngressWithdrawn withdrawn;
  withdrawn.session_id = in.read<std::uint64_t>("session_id");
  withdrawn.seq = in.read<std::uint64_t>("seq");
  return finish(in, withdrawn);
}

const char* to_string(AdminCommand command) noexcept {
  switch (command) {
    case AdminCommand::snapshot: return "snapshot";
    case AdminCommand::transfer_leadership: return "transfer_leadership";
    case AdminCommand::shutdown: return "shutdown";
  }
  return "unknown";
}

const char* to_string(AdminOutcome outcome) noexcept {
  switch (outcome) {
    case AdminOutcome::done: return "done";
    case AdminOutcome::refused: return "refused";
    case AdminOutcome::failed: return "failed";
    case AdminOutcome::stopping: return "stopping";
    case AdminOutcome::not_leader: return "not_leader";
  }
  return "unknown";
}

// AdminRequest v1: command u8 | reserved 3 | node_id u32 | target u32 | credential_length u16 | reserved 2 |
//                  credential
void AdminRequest::encode_body(BodyWriter& out) const noexcept {
  COHORT_ASSERT(credential.size() <= kMaxCredentialLength);
  write_enum(out, command);
  write_zeros(out, 3);
  out.write<std::uint32_t>(node_id);
  out.write<std::uint32_t>(target);
  out.write<std::uint16_t>(static_cast<std::uint16_t>(credential.size()));
  write_zeros(out, 2);
  out.write_bytes(credential);
}

Result<AdminRequest, DecodeError> AdminRequest::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  AdminRequest request;
  request.command = read_enum(in, "command", AdminCommand::shutdown);
  read_reserved(in, 3);
  request.node_id = in.read<std::uint32_t>("node_id");
  request.target = in.read<std::uint32_t>("target");
  const auto length = in.read<std::uint16_t>("credential_length");
  if (!in.failed() && length > kMaxCredentialLength) in.fail_invalid("credential_length", length, kMaxCredentialLength);
  read_reserved(in, 2);
  if (!in.failed()) request.credential = in.read_bytes(length, "credential");
  return finish(in, request);
}

// AdminReply v1: command u8 | outcome u8 | reserved 2 | node_id u32 | leader_id u32 | reserved u32 | index u64 |
//                term u64 | size u64 | text_length u16 | reserved 6 | text
void AdminReply::encode_body(BodyWriter& out) const noexcept {
  COHORT_ASSERT(text.size() <= kMaxErrorTextLength);
  write_enum(out, command);
  write_enum(out, outcome);
  write_zeros(out, 2);
  out.write<std::uint32_t>(node_id);
  out.write<std::uint32_t>(leader_id);
  write_zeros(out, 4);
  out.write<std::uint64_t>(index);
  out.write<std::uint64_t>(term);
  out.write<std::uint64_t>(size);
  out.write<std::uint16_t>(static_cast<std::uint16_t>(text.size()));
  write_zeros(out, 6);
  out.write_bytes(as_bytes(text));
}

Result<AdminReply, DecodeError> AdminReply::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  AdminReply reply;
  reply.command = read_enum(in, "command", AdminCommand::shutdown);
  reply.outcome = read_enum(in, "outcome", AdminOutcome::not_leader);
  read_reserved(in, 2);
  reply.node_id = in.read<std::uint32_t>("node_id");
  reply.leader_id = in.read<std::uint32_t>("leader_id");
  read_reserved(in, 4);
  reply.index = in.read<std::uint64_t>("index");
  reply.term = in.read<std::uint64_t>("term");
  reply.size = in.read<std::uint64_t>("size");
  const auto length = in.read<std::uint16_t>("text_length");
  if (!in.failed() && length > kMaxErrorTextLength) in.fail_invalid("text_length", length, kMaxErrorTextLength);
  read_reserved(in, 6);
  if (!in.failed()) reply.text = as_chars(in.read_bytes(length, "text"));
  return finish(in, reply);
}

// SessionClosed v1: session_id u64 | last_applied_seq u64 | reason u8 | reserved 7
//               v2: ... | term u64 | leader_id u32 | reserved u32
void SessionClosed::encode_body(BodyWriter& out) const noexcept {
  out.write<std::uint64_t>(session_id);
  out.write<std::uint64_t>(last_applied_seq);
  write_enum(out, reason);
  write_zeros(out, 7);
  write_term_and_leader(out, term, leader_id);
}

Result<SessionClosed, DecodeError> SessionClosed::decode_body(BodyReader& in, std::uint8_t version) noexcept {
  SessionClosed closed;
  closed.session_id = in.read<std::uint64_t>("session_id");
  closed.last_applied_seq = in.read<std::uint64_t>("last_applied_seq");
  closed.reason = read_enum(in, "reason", SessionCloseReason::unknown_session);
  read_reserved(in, 7);
  if (version >= 2) read_term_and_leader(in, closed);
  return finish(in, closed);
}

// IngressRejected v1: session_id u64 | seq u64 | expected_seq u64 | reason u8 | reserved 7
//                 v2: ... | term u64 | leader_id u32 | reserved u32
void IngressRejected::encode_body(BodyWriter& out) const noexcept {
  out.write<std::uint64_t>(session_id);
  out.write<std::uint64_t>(seq);
  out.write<std::uint64_t>(expected_seq);
  write_enum(out, reason);
  write_zeros(out, 7);
  write_term_and_leader(out, term, leader_id);
}

Result<IngressRejected, DecodeError> IngressRejected::decode_body(BodyReader& in, std::uint8_t version) noexcept {
  IngressRejected rejected;
  rejected.session_id = in.read<std::uint64_t>("session_id");
  rejected.seq = in.read<std::uint64_t>("seq");
  rejected.expected_seq = in.read<std::uint64_t>("expected_seq");
  rejected.reason = read_enum(in, "reason", IngressRejectReason::not_leader);
  read_reserved(in, 7);
  if (version >= 2) read_term_and_leader(in, rejected);
  return finish(in, rejected);
}

// StatusRequest v1: empty
// StatusRequest v1: empty (the state hash is included); v2: flags u8 (bit 0: the state hash) | reserved 7
void StatusRequest::encode_body(BodyWriter& out) const noexcept {
  out.write<std::uint8_t>(state_hash ? 1 : 0);
  write_zeros(out, 7);
}

Result<StatusRequest, DecodeError> StatusRequest::decode_body(BodyReader& in, std::uint8_t version) noexcept {
  StatusRequest request;
  request.state_hash = true;
  if (version >= 2) {
    const auto flags = in.read<std::uint8_t>("flags");
    if (!in.failed() && flags > 1) in.fail_invalid("flags", flags, 1);
    request.state_hash = flags == 1;
    read_reserved(in, 7);
  }
  return finish(in, request);
}

// StatusReply v1 (protocol 2): node_id u32 | role u8 | reserved 3 | leader_id u32 | reserved u32 | term u64 |
//                 commit_index u64 | applied_index u64 | last_index u64 | state_hash u64 | open_sessions u64 |
//                 member_count u16 | problem_count u16 | reserved u32 | member ids member_count x u32 |
//                 problems: problem_count x (text_length u16 | text)
//              v2: ... | reserved u32 | snapshot_index u64 | snapshot_term u64 | uptime_ms u64 | flags u8 (bit 0:
//                  state_hash included) | reserved 7 | member ids | problems (the fixed fields grow; the lists stay
//                  last)
void StatusReply::encode_body(BodyWriter& out) const noexcept {
  COHORT_ASSERT(problem_count <= kMaxStatusProblems);
  out.write<std::uint32_t>(node_id);
  write_enum(out, role);
  out.write<std::uint8_t>(standing);
  write_zeros(out, 2);
  out.write<std::uint32_t>(leader_id);
  out.write<std::uint32_t>(entry_faults);
  out.write<std::uint64_t>(term);
  out.write<std::uint64_t>(commit_index);
  out.write<std::uint64_t>(applied_index);
  out.write<std::uint64_t>(last_index);
  out.write<std::uint64_t>(state_hash);
  out.write<std::uint64_t>(open_sessions);
  out.write<std::uint16_t>(members.count);
  out.write<std::uint16_t>(problem_count);
  write_zeros(out, 4);
  out.write<std::uint64_t>(snapshot_index);
  out.write<std::uint64_t>(snapshot_term);
  out.write<std::uint64_t>(uptime_ms);
  out.write<std::uint8_t>(state_hash_included ? 1 : 0);
  write_zeros(out, 7);
  write_member_ids(out, members);
  for (std::size_t i = 0; i < problem_count; ++i) {
    COHORT_ASSERT(problems[i].size() <= kMaxErrorTextLength);
    out.write<std::uint16_t>(static_cast<std::uint16_t>(problems[i].size()));
    out.write_bytes(as_bytes(problems[i]));
  }
}

Result<StatusReply, DecodeError> StatusReply::decode_body(BodyReader& in, std::uint8_t version) noexcept {
  StatusReply reply;
  reply.node_id = in.read<std::uint32_t>("node_id");
  reply.role = read_enum(in, "role", NodeRole::pre_candidate);
  reply.standing = in.read<std::uint8_t>("standing");
  if (!in.failed() && reply.standing > 2) in.fail_invalid("standing", reply.standing, 2);
  read_reserved(in, 2);
  reply.leader_id = in.read<std::uint32_t>("leader_id");
  reply.entry_faults = in.read<std::uint32_t>("entry_faults");
  reply.term = in.read<std::uint64_t>("term");
  reply.commit_index = in.read<std::uint64_t>("commit_index");
  reply.applied_index = in.read<std::uint64_t>("applied_index");
  reply.last_index = in.read<std::uint64_t>("last_index");
  reply.state_hash = in.read<std::uint64_t>("state_hash");
  reply.open_sessions = in.read<std::uint64_t>("open_sessions");
  const auto member_count = read_member_count(in);
  const auto problem_count = in.read<std::uint16_t>("problem_count");
  if (!in.failed() && problem_count > kMaxStatusProblems)
    in.fail_invalid("problem_count", problem_count, kMaxStatusProblems);
  read_reserved(in, 4);
  reply.state_hash_included = true;  // layout 1 always carried it
  if (version >= 2) {
    reply.snapshot_index = in.read<std::uint64_t>("snapshot_index");
    reply.snapshot_term = in.read<std::uint64_t>("snapshot_term");
    reply.uptime_ms = in.read<std::uint64_t>("uptime_ms");
    const auto flags = in.read<std::uint8_t>("flags");
    if (!in.failed() && flags > 1) in.fail_invalid("flags", flags, 1);
    reply.state_hash_included = flags == 1;
    read_reserved(in, 7);
  }
  reply.members = read_member_ids(in, member_count);
  for (std::uint16_t i = 0; i < problem_count && !in.failed(); ++i) {
    const auto length = in.read<std::uint16_t>("problem_length");
    if (!in.failed() && length > kMaxErrorTextLength) in.fail_invalid("problem_length", length, kMaxErrorTextLength);
    if (!in.failed()) reply.problems[i] = as_chars(in.read_bytes(length, "problem"));
  }
  if (!in.failed()) reply.problem_count = problem_count;
  return finish(in, reply);
}

}  // namespace cohort::protocol

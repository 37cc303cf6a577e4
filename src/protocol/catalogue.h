#pragma once
// The message catalogue: every message this build understands, from all three message headers. scan_frame()
// refuses types and versions not listed here (through newest_version()).

#include <cstddef>

#include "protocol/client_messages.h"
#include "protocol/messages.h"
#include "protocol/peer_messages.h"

namespace cohort::protocol {

using Catalogue = MessageList<
    // handshake and liveness (messages.h)
    Hello, Welcome, ErrorMessage, Ping, Pong,
    // consensus, node to node (peer_messages.h)
    PeerVoteRequest, PeerVoteResponse, PeerAppendRequest, PeerAppendResponse, PeerHeartbeat, PeerHeartbeatResponse,
    PeerTimeoutNow, PeerStandingQuery, PeerStandingAnswer, PeerSnapshotChunk, PeerSnapshotAck,
    // client or admin tool to node and back (client_messages.h)
    SessionOpen, SessionReply, Ingress, Ack, Egress, KeepAlive, SessionClose, SessionClosed, IngressRejected,
    StatusRequest, StatusReply, IngressWithdrawn, AdminRequest, AdminReply>;

namespace detail {

template <typename... Messages>
constexpr bool distinct_types(MessageList<Messages...> /*unused*/) noexcept {
  constexpr MessageType types[] = {Messages::kType...};
  for (std::size_t i = 0; i < sizeof...(Messages); ++i)
    for (std::size_t j = i + 1; j < sizeof...(Messages); ++j)
      if (types[i] == types[j]) return false;
  return true;
}

template <typename Visitor, typename... Messages>
bool visit_in(MessageType type, Visitor& visitor, MessageList<Messages...> /*unused*/) {
  return ((Messages::kType == type ? (visitor.template operator()<Messages>(), true) : false) || ...);
}

}  // namespace detail

static_assert(detail::distinct_types(Catalogue{}), "two messages in the catalogue share a type number");

/// Calls `visitor.template operator()<Message>()` for the catalogue's message of type `type`, e.g. with
/// `[&]<typename Message>() { ... decode<Message>(frame) ... }`. Returns false if no message has that type.
template <typename Visitor>
bool visit_message_type(MessageType type, Visitor&& visitor) {
  return detail::visit_in(type, visitor, Catalogue{});
}

}  // namespace cohort::protocol

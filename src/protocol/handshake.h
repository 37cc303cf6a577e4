#pragma once
// The connection handshake, as pure functions so the TCP transport and the simulator's network share them.
//
// The side that opened the connection sends Hello first; the accepting side answers Welcome, or an error
// frame and closes. Nothing else may be sent by either side until the handshake is complete.

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "protocol/messages.h"

namespace cohort::protocol {

/// The longest frame either side accepts before the handshake is complete: room for a hello of a later, longer
/// layout and for an error frame with the longest text. A peer that has not identified itself cannot make a node
/// buffer more than this (the full maximum frame length applies once the handshake is done).
inline constexpr std::uint32_t kMaxHandshakeFrameLength = 4096;
static_assert(kFrameHeaderSize + 8 + kMaxErrorTextLength <= kMaxHandshakeFrameLength);
static_assert(kFrameHeaderSize + Hello::kMaxBodySize <= kMaxHandshakeFrameLength);
static_assert(kFrameHeaderSize + Welcome::kMaxBodySize <= kMaxHandshakeFrameLength);

struct LocalIdentity {
  std::uint64_t cluster_id = 0;
  PeerRole role = PeerRole::client;
  std::uint32_t node_id = 0;  // non-zero exactly when role == node
  Incarnation incarnation;    // zero until the cluster's incarnation is known
  /// role == node: this node's member list, itself included. Two nodes talk only if their lists are equal.
  MemberIds members;
  /// role == node: the client endpoint this node advertises (redirects to it name this address); "" if none.
  std::string client_endpoint;
};

/// A client's or an admin tool's identity (no node id, no member list).
inline LocalIdentity client_identity(std::uint64_t cluster_id, PeerRole role = PeerRole::client) {
  LocalIdentity identity;
  identity.cluster_id = cluster_id;
  identity.role = role;
  return identity;
}

struct PeerIdentity {
  PeerRole role = PeerRole::client;
  std::uint32_t node_id = 0;
  Incarnation incarnation;
  MemberIds members;            // a node's member list (empty for clients and admin tools)
  std::string client_endpoint;  // the client endpoint a node advertises ("" if it said none)
  bool privileged = false;      // an admin tool accepted where the policy grants privilege (AcceptPolicy)
};

/// What an accepting side admits.
struct AcceptPolicy {
  bool allow_nodes = true;
  bool allow_clients = true;
  bool allow_admin = true;
  std::vector<std::uint32_t> member_ids;  // node ids allowed to connect as nodes; empty: any but our own
  /// Admin tools accepted here may change the node and the cluster (a node's admin endpoint, which the operator
  /// binds where only they can reach it); elsewhere they may only look, or show a credential.
  bool privileged = false;
};

struct HandshakeRefusal {
  ErrorCode code{};
  std::string text;                // for the log and the error frame; names the expected and the received value
  std::uint32_t peer_node_id = 0;  // the refused node, when a node's hello or welcome got that far; else 0
};

/// A configuration's id: a hash of its member list, never 0. Equal lists, equal ids; a client compares these,
/// never endpoint strings (which proxies and host names make differ for one node).
std::uint64_t configuration_id(const MemberIds& members) noexcept;
/// "[1, 2, 3]", for messages.
std::string describe(const MemberIds& members);
std::string describe(const Incarnation& incarnation);

Hello make_hello(const LocalIdentity& local) noexcept;
Welcome make_welcome(const LocalIdentity& local) noexcept;

/// Accepting side: judges the first frame received on a connection.
Result<PeerIdentity, HandshakeRefusal> accept_hello(const Frame& first, const LocalIdentity& local,
                                                    const AcceptPolicy& policy);

/// Accepting side: the first bytes did not even form a frame; which refusal to send back.
HandshakeRefusal refusal_for_bad_first_frame(const DecodeError& error, ByteSpan received);

/// Connecting side: judges the answer to its hello (a welcome, or an error frame explaining the refusal).
Result<PeerIdentity, HandshakeRefusal> accept_welcome(const Frame& reply, const LocalIdentity& local);

const char* to_string(PeerRole role) noexcept;
const char* to_string(ErrorCode code) noexcept;

}  // namespace cohort::protocol

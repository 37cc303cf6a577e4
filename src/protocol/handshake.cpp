#include "protocol/handshake.h"

#include <algorithm>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace cohort::protocol {
namespace {

HandshakeRefusal refuse(ErrorCode code, std::string text, std::uint32_t peer_node_id = 0) {
  return HandshakeRefusal{code, std::move(text), peer_node_id};
}

// Worded the same from either side, so the error frame reads right on the node that receives it too.
HandshakeRefusal membership_mismatch(std::uint32_t peer, const MemberIds& theirs, std::uint32_t self,
                                     const MemberIds& ours) {
  return refuse(ErrorCode::membership_mismatch,
                fmt::format("member lists differ: node {} lists {}, node {} lists {}; every member must list the same "
                            "members (a node with another list would form a second cluster under the same id)",
                            peer, describe(theirs), self, describe(ours)),
                peer);
}

HandshakeRefusal incarnation_mismatch(std::uint64_t cluster_id, const Incarnation& theirs, const Incarnation& ours,
                                      std::uint32_t peer_node_id) {
  return refuse(ErrorCode::wrong_incarnation,
                fmt::format("another incarnation of cluster {}: the peer's is {}, this node's {} (the cluster was "
                            "re-created)",
                            cluster_id, describe(theirs), describe(ours)),
                peer_node_id);
}

// The protocol version sits at a fixed offset in every layout of hello (after the magic) and of welcome, forever.
// It is judged before the rest of the body, whose meaning may differ in another protocol version: a peer of
// another version is told "protocol version", not "malformed", whatever else its frame holds.
std::optional<std::uint16_t> foreign_protocol_version(ByteSpan body, std::size_t at) noexcept {
  if (body.size() < at + sizeof(std::uint16_t)) return std::nullopt;
  const auto version = load_le<std::uint16_t>(body.data() + at);
  return version == kProtocolVersion ? std::nullopt : std::optional<std::uint16_t>(version);
}

}  // namespace

std::uint64_t configuration_id(const MemberIds& members) noexcept {
  // FNV-1a over the count and the ids, little-endian: stable across builds and platforms.
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  const auto mix = [&](std::uint32_t value) {
    for (int i = 0; i < 4; ++i) {
      hash ^= (value >> (8 * i)) & 0xFFU;
      hash *= 0x100000001b3ULL;
    }
  };
  mix(members.count);
  for (const std::uint32_t id : members.view()) mix(id);
  return hash == 0 ? 1 : hash;
}

std::string describe(const MemberIds& members) {
  // Long lists are cut, so that a refusal naming two of them fits in an error frame.
  constexpr std::size_t kShown = 16;
  const auto ids = members.view();
  if (ids.size() <= kShown) return fmt::format("[{}]", fmt::join(ids, ", "));
  return fmt::format("[{}, ... ({} members)]", fmt::join(ids.first(kShown), ", "), ids.size());
}

std::string describe(const Incarnation& incarnation) {
  return fmt::format("{:016x}{:016x}", incarnation.high, incarnation.low);
}

Hello make_hello(const LocalIdentity& local) noexcept {
  Hello hello;
  hello.role = local.role;
  hello.node_id = local.node_id;
  hello.cluster_id = local.cluster_id;
  hello.incarnation = local.incarnation;
  if (local.role == PeerRole::node) {
    hello.members = local.members;
    hello.client_endpoint = local.client_endpoint;
  }
  return hello;
}

Welcome make_welcome(const LocalIdentity& local) noexcept {
  Welcome welcome;
  welcome.node_id = local.node_id;
  welcome.cluster_id = local.cluster_id;
  welcome.incarnation = local.incarnation;
  welcome.members = local.members;
  welcome.client_endpoint = local.client_endpoint;
  return welcome;
}

Result<PeerIdentity, HandshakeRefusal> accept_hello(const Frame& first, const LocalIdentity& local,
                                                    const AcceptPolicy& policy) {
  if (first.header.type != MessageType::hello)
    return unexpected(refuse(ErrorCode::bad_handshake,
                             fmt::format("expected a hello frame first, got {}", to_string(first.header.type))));
  const bool cohort_magic =
      first.body.size() >= sizeof(std::uint32_t) && load_le<std::uint32_t>(first.body.data()) == kHandshakeMagic;
  if (const auto version = foreign_protocol_version(first.body, sizeof(std::uint32_t)); cohort_magic && version)
    return unexpected(
        refuse(ErrorCode::protocol_version_mismatch,
               fmt::format("protocol version {} is not supported (this node speaks {})", *version, kProtocolVersion)));
  auto decoded = decode<Hello>(first);
  if (!decoded) {
    const DecodeError& error = decoded.error();
    return unexpected(
        refuse(error.code == DecodeErrc::bad_magic ? ErrorCode::bad_handshake : ErrorCode::malformed_frame,
               "invalid hello: " + error.describe()));
  }
  const Hello& hello = decoded.value();  // its protocol_version is ours: checked above
  if (hello.cluster_id != local.cluster_id)
    return unexpected(refuse(ErrorCode::wrong_cluster, fmt::format("cluster id {} does not match this cluster's id {}",
                                                                   hello.cluster_id, local.cluster_id)));
  const bool from_node = hello.role == PeerRole::node;
  if (from_node) {
    if (hello.node_id == 0)
      return unexpected(refuse(ErrorCode::role_not_allowed, "a node must announce a non-zero node id"));
    if (!hello.members.contains(hello.node_id))
      return unexpected(
          refuse(ErrorCode::bad_handshake,
                 fmt::format("node {} sent a member list without itself: {}", hello.node_id, describe(hello.members)),
                 hello.node_id));
    // Before the incarnation: two groups with different lists have each bootstrapped their own incarnation, and
    // the list is what the operator must fix.
    if (local.role == PeerRole::node && hello.members != local.members)
      return unexpected(membership_mismatch(hello.node_id, hello.members, local.node_id, local.members));
  } else if (!hello.members.empty() || !hello.client_endpoint.empty()) {
    return unexpected(
        refuse(ErrorCode::bad_handshake,
               fmt::format("a {} must not send a member list or a client endpoint", to_string(hello.role))));
  }
  if (hello.incarnation.known() && local.incarnation.known() && hello.incarnation != local.incarnation)
    return unexpected(
        incarnation_mismatch(local.cluster_id, hello.incarnation, local.incarnation, from_node ? hello.node_id : 0));
  switch (hello.role) {
    case PeerRole::node: {
      if (!policy.allow_nodes)
        return unexpected(refuse(ErrorCode::role_not_allowed, "this port does not accept cluster members"));
      if (hello.node_id == local.node_id && local.role == PeerRole::node)
        return unexpected(refuse(ErrorCode::role_not_allowed,
                                 fmt::format("peer claims node id {}, which is this node's own id", hello.node_id)));
      if (!policy.member_ids.empty() &&
          std::find(policy.member_ids.begin(), policy.member_ids.end(), hello.node_id) == policy.member_ids.end())
        return unexpected(refuse(ErrorCode::role_not_allowed,
                                 fmt::format("node id {} is not a member of this cluster", hello.node_id)));
      break;
    }
    case PeerRole::client:
    case PeerRole::admin: {
      const bool allowed = hello.role == PeerRole::client ? policy.allow_clients : policy.allow_admin;
      if (!allowed)
        return unexpected(refuse(ErrorCode::role_not_allowed,
                                 fmt::format("this port does not accept {} connections", to_string(hello.role))));
      if (hello.node_id != 0)
        return unexpected(refuse(ErrorCode::role_not_allowed, fmt::format("{} {} must announce node id 0, not {}",
                                                                          hello.role == PeerRole::admin ? "an" : "a",
                                                                          to_string(hello.role), hello.node_id)));
      break;
    }
  }
  return PeerIdentity{hello.role,
                      hello.node_id,
                      hello.incarnation,
                      hello.members,
                      std::string(hello.client_endpoint),
                      hello.role == PeerRole::admin && policy.privileged};
}

HandshakeRefusal refusal_for_bad_first_frame(const DecodeError& error, ByteSpan received) {
  // A hello from a newer build has a layout version we do not know: say "protocol version", which is what the
  // operator must act on, rather than a generic framing error.
  const bool newer_hello =
      error.code == DecodeErrc::unsupported_version && received.size() >= kFrameHeaderSize &&
      load_le<std::uint16_t>(received.data() + 4) == static_cast<std::uint16_t>(MessageType::hello);
  if (newer_hello)
    return refuse(
        ErrorCode::protocol_version_mismatch,
        fmt::format("hello layout version {} is newer than this node understands ({})", error.value, error.limit));
  return refuse(ErrorCode::bad_handshake, "invalid first frame: " + error.describe());
}

Result<PeerIdentity, HandshakeRefusal> accept_welcome(const Frame& reply, const LocalIdentity& local) {
  if (reply.header.type == MessageType::error) {
    auto error = decode<ErrorMessage>(reply);
    if (!error)
      return unexpected(refuse(ErrorCode::malformed_frame, "invalid error frame: " + error.error().describe()));
    return unexpected(
        refuse(error->code, fmt::format("peer refused the handshake ({}): {}", to_string(error->code), error->text)));
  }
  if (reply.header.type != MessageType::welcome)
    return unexpected(
        refuse(ErrorCode::bad_handshake, fmt::format("expected welcome, got {}", to_string(reply.header.type))));
  if (const auto version = foreign_protocol_version(reply.body, 0))
    return unexpected(
        refuse(ErrorCode::protocol_version_mismatch,
               fmt::format("peer speaks protocol version {}, this build {}", *version, kProtocolVersion)));
  auto decoded = decode<Welcome>(reply);
  if (!decoded) return unexpected(refuse(ErrorCode::malformed_frame, "invalid welcome: " + decoded.error().describe()));
  const Welcome& welcome = decoded.value();
  if (welcome.cluster_id != local.cluster_id)
    return unexpected(refuse(ErrorCode::wrong_cluster,
                             fmt::format("peer belongs to cluster {}, not {}", welcome.cluster_id, local.cluster_id)));
  if (welcome.node_id == 0)
    return unexpected(refuse(ErrorCode::bad_handshake, "peer announced node id 0; only nodes accept connections"));
  if (!welcome.members.contains(welcome.node_id))
    return unexpected(
        refuse(ErrorCode::bad_handshake,
               fmt::format("node {} sent a member list without itself: {}", welcome.node_id, describe(welcome.members)),
               welcome.node_id));
  // A node checks the list as the accepting side does (a client judges a node's configuration itself).
  if (local.role == PeerRole::node && welcome.members != local.members)
    return unexpected(membership_mismatch(welcome.node_id, welcome.members, local.node_id, local.members));
  if (welcome.incarnation.known() && local.incarnation.known() && welcome.incarnation != local.incarnation)
    return unexpected(incarnation_mismatch(local.cluster_id, welcome.incarnation, local.incarnation, welcome.node_id));
  return PeerIdentity{PeerRole::node, welcome.node_id, welcome.incarnation, welcome.members,
                      std::string(welcome.client_endpoint)};
}

const char* to_string(PeerRole role) noexcept {
  switch (role) {
    case PeerRole::node: return "node";
    case PeerRole::client: return "client";
    case PeerRole::admin: return "admin";
  }
  return "unknown-role";
}

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::protocol_version_mismatch: return "protocol_version_mismatch";
    case ErrorCode::wrong_cluster: return "wrong_cluster";
    case ErrorCode::wrong_incarnation: return "wrong_incarnation";
    case ErrorCode::bad_handshake: return "bad_handshake";
    case ErrorCode::role_not_allowed: return "role_not_allowed";
    case ErrorCode::malformed_frame: return "malformed_frame";
    case ErrorCode::handshake_timeout: return "handshake_timeout";
    case ErrorCode::membership_mismatch: return "membership_mismatch";
  }
  return "unknown_error_code";
}

}  // namespace cohort::protocol

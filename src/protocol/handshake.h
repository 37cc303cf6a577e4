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
static_assert(kFrameHeaderSize + Hello::kBodySize <= kMaxHandshakeFrameLength);
static_assert(kFrameHeaderSize + Welcome::kBodySize <= kMaxHandshakeFrameLength);

struct LocalIdentity {
  std::uint64_t cluster_id = 0;
  PeerRole role = PeerRole::client;
  std::uint32_t node_id = 0;  // non-zero exactly when role == node
  Incarnation incarnation;    // zero until the cluster's incarnation is known
};

struct PeerIdentity {
  PeerRole role = PeerRole::client;
  std::uint32_t node_id = 0;
  Incarnation incarnation;
};

/// What an accepting side admits.
struct AcceptPolicy {
  bool allow_nodes = true;
  bool allow_clients = true;
  bool allow_admin = true;
  std::vector<std::uint32_t> member_ids;  // node ids allowed to connect as nodes; empty: any but our own
};

struct HandshakeRefusal {
  ErrorCode code{};
  std::string text;  // for the log and the error frame; names the expected and the received value
};

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

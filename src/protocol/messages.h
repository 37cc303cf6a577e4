#pragma once
// Messages and the generic frame encoder/decoder. Each message is a struct with:
//   kType, kVersion         its wire type and the newest body layout this build writes and reads
//   body_size()             encoded body length in bytes
//   encode_body(writer)     writes exactly body_size() bytes
//   decode_body(reader, v)  reads a body of layout version v (1..kVersion) or fails with a DecodeError
// and is listed in `Catalogue` (protocol/catalogue.h). This header holds the handshake and liveness messages;
// peer_messages.h the consensus traffic between nodes; client_messages.h sessions, ingress and egress. Adding a
// message is a struct plus one line in the catalogue; adding a field appends it, bumps kVersion, and makes
// decode_body read it only when `version` is new enough (older senders' frames still decode; a newer layout
// than this build knows is refused as unsupported_version).
//
// Decoded messages may hold views (ByteSpan, std::string_view) into the frame they came from: they are valid
// as long as that buffer is.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "protocol/codec.h"
#include "protocol/frame.h"

namespace cohort::protocol {

inline constexpr std::uint32_t kHandshakeMagic = 0x52484F43;  // "COHR" in little-endian byte order
/// Version of the protocol as a whole, exchanged in the handshake; peers must agree on it exactly. Version 2: the
/// handshake carries the member list and the advertised client endpoint, and status replies the configuration.
/// Version 3: sessions with resume (session_open names the session to resume and the last egress seen; a reply
/// says what became of a session it could not resume, from its tombstone), reliable egress, credentials, a
/// retryable "busy"; every reply to a client carries the sender's term and leader.
inline constexpr std::uint16_t kProtocolVersion = 3;
inline constexpr std::size_t kMaxErrorTextLength = 1024;
/// The most voting members a cluster may have (the handshake and status replies carry the list).
inline constexpr std::size_t kMaxMembers = 64;
/// The longest client endpoint ("host:port") a node advertises in its handshake.
inline constexpr std::size_t kMaxEndpointLength = 255;

/// Who is on the other end of a connection.
enum class PeerRole : std::uint8_t {
  node = 1,    // another cluster member (consensus traffic)
  client = 2,  // an application's client library
  admin = 3,   // an operator tool
};

/// A cluster's incarnation: random, chosen when the cluster is first bootstrapped; zero means "not known yet".
struct Incarnation {
  std::uint64_t high = 0;
  std::uint64_t low = 0;
  bool known() const noexcept { return high != 0 || low != 0; }
  friend bool operator==(const Incarnation&, const Incarnation&) = default;
};

/// A cluster's voting members as the wire carries them: node ids strictly ascending, none zero. Fixed capacity, so
/// decoding never allocates; the ids past `count` stay zero (the defaulted == relies on it).
struct MemberIds {
  std::uint16_t count = 0;
  std::array<std::uint32_t, kMaxMembers> ids{};

  /// `sorted` must be strictly ascending, without 0, and at most kMaxMembers long.
  static MemberIds of(std::span<const std::uint32_t> sorted) noexcept;
  std::span<const std::uint32_t> view() const noexcept { return {ids.data(), count}; }
  bool empty() const noexcept { return count == 0; }
  bool contains(std::uint32_t id) const noexcept;
  friend bool operator==(const MemberIds&, const MemberIds&) = default;
};

/// Reasons carried by an error frame. Stable numbers.
enum class ErrorCode : std::uint16_t {
  protocol_version_mismatch = 1,
  wrong_cluster = 2,
  wrong_incarnation = 3,
  bad_handshake = 4,     // first frame not a hello (or no frame at all), or a wrong magic
  role_not_allowed = 5,  // e.g. a node id this cluster does not have
  malformed_frame = 6,
  handshake_timeout = 7,
  membership_mismatch = 8,  // a node whose member list differs from this node's
};

// Layout versions count within one protocol version: protocol version 2 changed the hello, welcome and status
// reply layouts in place (any peer of protocol version 1 is refused at the handshake, whose magic and
// protocol_version keep their offsets forever), so they are still layout 1. Protocol version 3 appended fields to
// five client messages the usual way instead (they are layout 2, and layout 1 still decodes), so one rule covers
// every added field whether or not the protocol version moves with it.

struct Hello {
  static constexpr MessageType kType = MessageType::hello;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kFixedBodySize = 48;  // without the member ids and the endpoint
  static constexpr std::size_t kMaxBodySize = kFixedBodySize + 4 * kMaxMembers + kMaxEndpointLength;

  std::uint32_t magic = kHandshakeMagic;
  std::uint16_t protocol_version = kProtocolVersion;
  PeerRole role = PeerRole::client;
  std::uint32_t node_id = 0;  // the sender's node id when role == node, else 0
  std::uint64_t cluster_id = 0;
  Incarnation incarnation;           // what the sender believes; zero if it does not know yet
  MemberIds members;                 // role == node: the sender's member list (itself included); else empty
  std::string_view client_endpoint;  // role == node: where the sender serves clients ("" if it cannot say)

  std::size_t body_size() const noexcept {
    return kFixedBodySize + std::size_t{4} * members.count + client_endpoint.size();
  }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<Hello, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const Hello&, const Hello&) = default;
};

struct Welcome {
  static constexpr MessageType kType = MessageType::welcome;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kFixedBodySize = 40;  // without the member ids and the endpoint
  static constexpr std::size_t kMaxBodySize = kFixedBodySize + 4 * kMaxMembers + kMaxEndpointLength;

  std::uint16_t protocol_version = kProtocolVersion;
  std::uint32_t node_id = 0;  // the accepting node
  std::uint64_t cluster_id = 0;
  Incarnation incarnation;
  MemberIds members;                 // the accepting node's member list (itself included)
  std::string_view client_endpoint;  // where the accepting node serves clients ("" if it cannot say)

  std::size_t body_size() const noexcept {
    return kFixedBodySize + std::size_t{4} * members.count + client_endpoint.size();
  }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<Welcome, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const Welcome&, const Welcome&) = default;
};

struct ErrorMessage {
  static constexpr MessageType kType = MessageType::error;
  static constexpr std::uint8_t kVersion = 1;

  ErrorCode code = ErrorCode::malformed_frame;
  std::string_view text;  // human-readable, at most kMaxErrorTextLength bytes

  std::size_t body_size() const noexcept { return 8 + text.size(); }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<ErrorMessage, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const ErrorMessage&, const ErrorMessage&) = default;
};

struct Ping {
  static constexpr MessageType kType = MessageType::ping;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = 16;

  std::uint64_t id = 0;
  std::uint64_t sent_at_ns = 0;  // sender's clock, echoed unchanged in the pong

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<Ping, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const Ping&, const Ping&) = default;
};

struct Pong {
  static constexpr MessageType kType = MessageType::pong;
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::size_t kBodySize = 16;

  std::uint64_t id = 0;
  std::uint64_t sent_at_ns = 0;

  std::size_t body_size() const noexcept { return kBodySize; }
  void encode_body(BodyWriter& out) const noexcept;
  static Result<Pong, DecodeError> decode_body(BodyReader& in, std::uint8_t version) noexcept;
  friend bool operator==(const Pong&, const Pong&) = default;
};

template <typename... Messages>
struct MessageList {};

/// The newest layout version this build knows for `type` (any message of the Catalogue), or 0 if unknown.
std::uint8_t newest_version(MessageType type) noexcept;

void write_incarnation(BodyWriter& out, const Incarnation& incarnation) noexcept;
Incarnation read_incarnation(BodyReader& in) noexcept;

/// The member ids (count u16 known beforehand) as u32s; the reader fails unless they are strictly ascending and
/// non-zero.
void write_member_ids(BodyWriter& out, const MemberIds& members) noexcept;
MemberIds read_member_ids(BodyReader& in, std::uint16_t count) noexcept;
/// A member_count field: refused above kMaxMembers.
std::uint16_t read_member_count(BodyReader& in) noexcept;

// Helpers shared by the decoders and encoders of every message header.
namespace detail {

/// The decoded message, or the first error the reader met (including bytes left after the layout's end).
template <typename Message>
Result<Message, DecodeError> finish(BodyReader& in, Message message) noexcept {
  in.expect_end();
  if (in.failed()) return unexpected(in.error());
  return message;
}

/// Reads `size` (1..8) reserved bytes and refuses them unless all are zero; the error's value is the bytes read
/// as a little-endian integer.
void read_reserved(BodyReader& in, std::size_t size, const char* field = "reserved") noexcept;
void write_zeros(BodyWriter& out, std::size_t size) noexcept;

/// A u8 that must be 0 or 1.
bool read_bool(BodyReader& in, const char* field) noexcept;

inline bool bytes_equal(ByteSpan a, ByteSpan b) noexcept {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

}  // namespace detail

template <typename Message>
std::size_t frame_size(const Message& message) noexcept {
  return kFrameHeaderSize + message.body_size();
}

/// Encodes header and body into `out`, which must hold at least frame_size(message) bytes.
/// Returns the number of bytes written.
template <typename Message>
std::size_t encode_frame(const Message& message, MutableByteSpan out) noexcept {
  const std::size_t size = frame_size(message);
  COHORT_ASSERT(out.size() >= size);
  COHORT_ASSERT(size <= kMaxFrameLengthCeiling);
  store_frame_header(out.data(), FrameHeader{static_cast<std::uint32_t>(size), Message::kType, Message::kVersion, 0});
  BodyWriter writer(out.subspan(kFrameHeaderSize, size - kFrameHeaderSize));
  message.encode_body(writer);
  COHORT_ASSERT(writer.written() == message.body_size());
  return size;
}

/// Appends the encoded frame to `buffer`.
template <typename Message>
void append_frame(const Message& message, std::vector<std::byte>& buffer) {
  const std::size_t at = buffer.size();
  buffer.resize(at + frame_size(message));
  encode_frame(message, MutableByteSpan(buffer).subspan(at));
}

/// Decodes a frame (already validated by scan_frame) as `Message`. The frame's type must be Message::kType.
template <typename Message>
Result<Message, DecodeError> decode(const Frame& frame) noexcept {
  COHORT_ASSERT(frame.header.type == Message::kType);
  if (frame.header.version == 0 || frame.header.version > Message::kVersion)
    return unexpected(
        DecodeError{DecodeErrc::unsupported_version, 6, frame.header.version, Message::kVersion, "version"});
  BodyReader reader(frame.body);
  return Message::decode_body(reader, frame.header.version);
}

}  // namespace cohort::protocol

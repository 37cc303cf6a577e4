#pragma once
// Framing: every Cohort message travels as one frame, a fixed 8-byte header followed by the message body.
//
//   offset 0  u32  length    whole frame in bytes, header included (>= 8, <= the receiver's max frame length)
//   offset 4  u16  type      MessageType
//   offset 6  u8   version   layout version of this message type's body
//   offset 7  u8   flags     none defined yet; must be zero
//
// All integers are little-endian. docs/protocol.md is the byte-by-byte reference.

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/bytes.h"

namespace cohort::protocol {

inline constexpr std::size_t kFrameHeaderSize = 8;
/// The default and the hard ceiling for a frame's length; a receiver may configure a lower one.
inline constexpr std::uint32_t kDefaultMaxFrameLength = 4U << 20U;
inline constexpr std::uint32_t kMaxFrameLengthCeiling = 64U << 20U;

/// Message types on the wire. Values are stable forever: a retired type's number is never reused.
enum class MessageType : std::uint16_t {
  hello = 1,    // handshake, sent first by whoever opened the connection
  welcome = 2,  // handshake accepted
  error = 3,    // a refusal or protocol error; the sender closes the connection after it
  ping = 4,     // liveness probe and latency measurement
  pong = 5,     // answer to ping, echoing its fields

  // Consensus traffic between nodes (peer_messages.h).
  vote_request = 16,
  vote_response = 17,
  append_request = 18,
  append_response = 19,
  heartbeat = 20,
  heartbeat_response = 21,
  timeout_now = 22,
  standing_query = 23,  // from a node that may have lost state: where is the cluster?
  standing_answer = 24,
  snapshot_chunk = 25,  // install snapshot: a piece of the leader's snapshot
  snapshot_ack = 26,    // install snapshot: how much of it the follower holds

  // Between a client library or admin tool and a node (client_messages.h).
  session_open = 32,
  session_reply = 33,
  ingress = 34,
  ack = 35,
  egress = 36,
  keep_alive = 37,
  session_close = 38,
  session_closed = 39,
  ingress_rejected = 40,
  status_request = 41,
  status_reply = 42,
  ingress_withdrawn = 43,  // client to node: a message the client will not send, to be recorded as refused
  // 44 and 45 (snapshot_request, snapshot_reply) are retired: admin_request's snapshot command replaced them.
  admin_request = 46,  // admin tool to node: a command that acts on the node or the cluster (snapshot, shutdown...)
  admin_reply = 47,    // node to admin tool: the command's outcome
};

struct FrameHeader {
  std::uint32_t length = 0;
  MessageType type{};
  std::uint8_t version = 0;
  std::uint8_t flags = 0;
};

/// Why a byte string is not a valid frame or message. Each carries the offset in the frame and the offending
/// value (and the limit it broke, where there is one) so the message names exactly what was wrong.
enum class DecodeErrc : std::uint8_t {
  length_below_header,   // header's length < 8
  length_above_maximum,  // header's length > the receiver's maximum
  unknown_type,          // type not in the catalogue
  unsupported_version,   // version 0 or newer than this build understands
  reserved_flags,        // a flag bit this version does not define
  body_too_short,        // fewer body bytes than the message's layout needs
  body_too_long,         // more body bytes than the message's layout describes
  bad_magic,             // handshake magic number wrong: not a Cohort peer
  invalid_field,         // a field outside its domain (enum value, reserved bytes not zero, length field)
};

struct DecodeError {
  DecodeErrc code{};
  std::uint32_t offset = 0;  // byte offset within the frame where the problem was found
  std::uint64_t value = 0;   // the offending value
  std::uint64_t limit = 0;   // the bound it broke, where one applies
  const char* field = "";    // field name, for invalid_field and length errors inside a body

  /// One line for logs and error frames, e.g. "frame length 3 is below the 8-byte header".
  std::string describe() const;
};

/// A complete frame inside a receive buffer. `body` points into that buffer: valid until the buffer changes.
struct Frame {
  FrameHeader header;
  ByteSpan body;
};

/// The outcome of looking at the front of a byte stream.
struct FrameScan {
  enum class Status : std::uint8_t { complete, need_more, error };
  Status status = Status::need_more;
  Frame frame{};             // when complete
  std::size_t consumed = 0;  // bytes the frame occupies, when complete
  std::size_t needed = 0;    // total bytes needed for the next frame, when need_more (0: header incomplete)
  DecodeError error{};       // when error
};

/// Examines the bytes at the front of `stream`. Validates the header (length bounds, known type, supported
/// version, flags) as soon as it is complete, so a bad length is refused before its body is awaited.
/// Never reads outside `stream`.
FrameScan scan_frame(ByteSpan stream, std::uint32_t max_frame_length = kDefaultMaxFrameLength) noexcept;

void store_frame_header(std::byte* to, const FrameHeader& header) noexcept;

const char* to_string(MessageType type) noexcept;
const char* to_string(DecodeErrc code) noexcept;

}  // namespace cohort::protocol

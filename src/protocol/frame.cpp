#include "protocol/frame.h"

#include <fmt/format.h>

#include "protocol/messages.h"

namespace cohort::protocol {

FrameScan scan_frame(ByteSpan stream, std::uint32_t max_frame_length) noexcept {
  FrameScan scan;
  if (stream.size() < kFrameHeaderSize) {
    scan.status = FrameScan::Status::need_more;
    return scan;
  }
  FrameHeader header;
  header.length = load_le<std::uint32_t>(stream.data());
  header.type = static_cast<MessageType>(load_le<std::uint16_t>(stream.data() + 4));
  header.version = load_le<std::uint8_t>(stream.data() + 6);
  header.flags = load_le<std::uint8_t>(stream.data() + 7);

  auto fail = [&scan](DecodeErrc code, std::uint32_t offset, std::uint64_t value, std::uint64_t limit,
                      const char* field) {
    scan.status = FrameScan::Status::error;
    scan.error = DecodeError{code, offset, value, limit, field};
    return scan;
  };
  if (header.length < kFrameHeaderSize)
    return fail(DecodeErrc::length_below_header, 0, header.length, kFrameHeaderSize, "length");
  if (header.length > max_frame_length)
    return fail(DecodeErrc::length_above_maximum, 0, header.length, max_frame_length, "length");
  const std::uint8_t newest = newest_version(header.type);
  if (newest == 0) return fail(DecodeErrc::unknown_type, 4, static_cast<std::uint16_t>(header.type), 0, "type");
  if (header.version == 0 || header.version > newest)
    return fail(DecodeErrc::unsupported_version, 6, header.version, newest, "version");
  if (header.flags != 0) return fail(DecodeErrc::reserved_flags, 7, header.flags, 0, "flags");

  if (stream.size() < header.length) {
    scan.status = FrameScan::Status::need_more;
    scan.needed = header.length;
    return scan;
  }
  scan.status = FrameScan::Status::complete;
  scan.frame = Frame{header, stream.subspan(kFrameHeaderSize, header.length - kFrameHeaderSize)};
  scan.consumed = header.length;
  return scan;
}

void store_frame_header(std::byte* to, const FrameHeader& header) noexcept {
  store_le<std::uint32_t>(to, header.length);
  store_le<std::uint16_t>(to + 4, static_cast<std::uint16_t>(header.type));
  store_le<std::uint8_t>(to + 6, header.version);
  store_le<std::uint8_t>(to + 7, header.flags);
}

const char* to_string(MessageType type) noexcept {
  switch (type) {
    case MessageType::hello: return "hello";
    case MessageType::welcome: return "welcome";
    case MessageType::error: return "error";
    case MessageType::ping: return "ping";
    case MessageType::pong: return "pong";
    case MessageType::vote_request: return "vote_request";
    case MessageType::vote_response: return "vote_response";
    case MessageType::append_request: return "append_request";
    case MessageType::append_response: return "append_response";
    case MessageType::heartbeat: return "heartbeat";
    case MessageType::heartbeat_response: return "heartbeat_response";
    case MessageType::timeout_now: return "timeout_now";
    case MessageType::standing_query: return "standing_query";
    case MessageType::standing_answer: return "standing_answer";
    case MessageType::snapshot_chunk: return "snapshot_chunk";
    case MessageType::snapshot_ack: return "snapshot_ack";
    case MessageType::session_open: return "session_open";
    case MessageType::session_reply: return "session_reply";
    case MessageType::ingress: return "ingress";
    case MessageType::ack: return "ack";
    case MessageType::egress: return "egress";
    case MessageType::keep_alive: return "keep_alive";
    case MessageType::session_close: return "session_close";
    case MessageType::session_closed: return "session_closed";
    case MessageType::ingress_rejected: return "ingress_rejected";
    case MessageType::status_request: return "status_request";
    case MessageType::status_reply: return "status_reply";
    case MessageType::ingress_withdrawn: return "ingress_withdrawn";
    case MessageType::admin_request: return "admin_request";
    case MessageType::admin_reply: return "admin_reply";
  }
  return "unknown";
}

const char* to_string(DecodeErrc code) noexcept {
  switch (code) {
    case DecodeErrc::length_below_header: return "length_below_header";
    case DecodeErrc::length_above_maximum: return "length_above_maximum";
    case DecodeErrc::unknown_type: return "unknown_type";
    case DecodeErrc::unsupported_version: return "unsupported_version";
    case DecodeErrc::reserved_flags: return "reserved_flags";
    case DecodeErrc::body_too_short: return "body_too_short";
    case DecodeErrc::body_too_long: return "body_too_long";
    case DecodeErrc::bad_magic: return "bad_magic";
    case DecodeErrc::invalid_field: return "invalid_field";
  }
  return "unknown";
}

std::string DecodeError::describe() const {
  switch (code) {
    case DecodeErrc::length_below_header:
      return fmt::format("frame length {} is below the {}-byte header", value, limit);
    case DecodeErrc::length_above_maximum:
      return fmt::format("frame length {} exceeds the maximum frame length {}", value, limit);
    case DecodeErrc::unknown_type: return fmt::format("unknown message type {} at offset {}", value, offset);
    case DecodeErrc::unsupported_version:
      return fmt::format("message layout version {} is not supported (this build reads 1..{})", value, limit);
    case DecodeErrc::reserved_flags:
      return fmt::format("frame flags {:#04x} use bits this version does not define", value);
    case DecodeErrc::body_too_short:
      return fmt::format("body too short at offset {} reading '{}': {} bytes left, {} needed", offset, field, value,
                         limit);
    case DecodeErrc::body_too_long: return fmt::format("body has {} bytes but its layout ends at {}", value, limit);
    case DecodeErrc::bad_magic:
      return fmt::format("handshake magic {:#010x} is not Cohort's ({:#010x}): not a Cohort peer", value, limit);
    case DecodeErrc::invalid_field:
      if (limit != 0)
        return fmt::format("field '{}' at offset {} has invalid value {} (at most {})", field, offset, value, limit);
      return fmt::format("field '{}' at offset {} has invalid value {}", field, offset, value);
  }
  return "unknown decode error";
}

}  // namespace cohort::protocol

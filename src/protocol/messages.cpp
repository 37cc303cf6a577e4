#include "protocol/messages.h"

#include <algorithm>

#include "protocol/catalogue.h"

namespace cohort::protocol {
namespace {

template <typename... Messages>
constexpr std::uint8_t newest_version_in(MessageType type, MessageList<Messages...> /*unused*/) noexcept {
  std::uint8_t version = 0;
  ((version = (Messages::kType == type ? Messages::kVersion : version)), ...);
  return version;
}

using detail::finish;

}  // namespace

std::uint8_t newest_version(MessageType type) noexcept { return newest_version_in(type, Catalogue{}); }

void write_incarnation(BodyWriter& out, const Incarnation& incarnation) noexcept {
  out.write<std::uint64_t>(incarnation.high);
  out.write<std::uint64_t>(incarnation.low);
}

Incarnation read_incarnation(BodyReader& in) noexcept {
  Incarnation incarnation;
  incarnation.high = in.read<std::uint64_t>("incarnation.high");
  incarnation.low = in.read<std::uint64_t>("incarnation.low");
  return incarnation;
}

MemberIds MemberIds::of(std::span<const std::uint32_t> sorted) noexcept {
  COHORT_ASSERT(sorted.size() <= kMaxMembers);
  MemberIds members;
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    COHORT_ASSERT(sorted[i] != 0);
    COHORT_ASSERT(i == 0 || sorted[i - 1] < sorted[i]);
    members.ids[i] = sorted[i];
  }
  members.count = static_cast<std::uint16_t>(sorted.size());
  return members;
}

bool MemberIds::contains(std::uint32_t id) const noexcept {
  const auto list = view();
  return std::binary_search(list.begin(), list.end(), id);
}

void write_member_ids(BodyWriter& out, const MemberIds& members) noexcept {
  for (const std::uint32_t id : members.view()) out.write<std::uint32_t>(id);
}

std::uint16_t read_member_count(BodyReader& in) noexcept {
  const auto count = in.read<std::uint16_t>("member_count");
  if (!in.failed() && count > kMaxMembers) in.fail_invalid("member_count", count, kMaxMembers);
  return count;
}

MemberIds read_member_ids(BodyReader& in, std::uint16_t count) noexcept {
  MemberIds members;
  if (in.failed()) return members;
  COHORT_ASSERT(count <= kMaxMembers);
  for (std::uint16_t i = 0; i < count; ++i) {
    const auto id = in.read<std::uint32_t>("member_ids");
    if (in.failed()) return MemberIds{};
    // Strictly ascending and never 0: one spelling per list, so equal lists are equal bytes.
    if (id == 0 || (i > 0 && id <= members.ids[i - 1])) {
      in.fail_invalid("member_ids", id, i > 0 ? members.ids[i - 1] : 0);
      return MemberIds{};
    }
    members.ids[i] = id;
  }
  members.count = count;
  return members;
}

namespace {

std::uint16_t read_endpoint_length(BodyReader& in) noexcept {
  const auto length = in.read<std::uint16_t>("endpoint_length");
  if (!in.failed() && length > kMaxEndpointLength) in.fail_invalid("endpoint_length", length, kMaxEndpointLength);
  return length;
}

// The tail hello and welcome share: member_count u16 | endpoint_length u16 | reserved u32 | member ids | endpoint
void write_identity_tail(BodyWriter& out, const MemberIds& members, std::string_view endpoint) noexcept {
  COHORT_ASSERT(endpoint.size() <= kMaxEndpointLength);
  out.write<std::uint16_t>(members.count);
  out.write<std::uint16_t>(static_cast<std::uint16_t>(endpoint.size()));
  out.write<std::uint32_t>(0);
  write_member_ids(out, members);
  out.write_bytes(as_bytes(endpoint));
}

void read_identity_tail(BodyReader& in, MemberIds& members, std::string_view& endpoint) noexcept {
  const auto count = read_member_count(in);
  const auto length = read_endpoint_length(in);
  if (const auto reserved = in.read<std::uint32_t>("reserved"); reserved != 0) in.fail_invalid("reserved", reserved);
  members = read_member_ids(in, count);
  if (!in.failed()) endpoint = as_chars(in.read_bytes(length, "client_endpoint"));
}

}  // namespace

namespace detail {

void read_reserved(BodyReader& in, std::size_t size, const char* field) noexcept {
  COHORT_ASSERT(size >= 1 && size <= 8);
  const ByteSpan bytes = in.read_bytes(size, field);
  if (in.failed()) return;
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < size; ++i) value |= std::uint64_t{std::to_integer<std::uint8_t>(bytes[i])} << (8 * i);
  if (value != 0) in.fail_invalid(field, value);
}

void write_zeros(BodyWriter& out, std::size_t size) noexcept {
  static constexpr std::array<std::byte, 8> kZeros{};
  COHORT_ASSERT(size <= kZeros.size());
  out.write_bytes(ByteSpan(kZeros).first(size));
}

bool read_bool(BodyReader& in, const char* field) noexcept {
  const auto value = in.read<std::uint8_t>(field);
  if (value > 1) in.fail_invalid(field, value, 1);
  return value == 1;
}

}  // namespace detail

// Hello v1 (protocol 2): magic u32 | protocol_version u16 | role u8 | reserved u8 | node_id u32 | reserved u32 |
//           cluster_id u64 | incarnation 2 x u64 | member_count u16 | endpoint_length u16 | reserved u32 |
//           member ids member_count x u32 | client endpoint
void Hello::encode_body(BodyWriter& out) const noexcept {
  out.write<std::uint32_t>(magic);
  out.write<std::uint16_t>(protocol_version);
  out.write<std::uint8_t>(static_cast<std::uint8_t>(role));
  out.write<std::uint8_t>(0);
  out.write<std::uint32_t>(node_id);
  out.write<std::uint32_t>(0);
  out.write<std::uint64_t>(cluster_id);
  write_incarnation(out, incarnation);
  write_identity_tail(out, members, client_endpoint);
}

Result<Hello, DecodeError> Hello::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  Hello hello;
  hello.magic = in.read<std::uint32_t>("magic");
  if (!in.failed() && hello.magic != kHandshakeMagic)
    return unexpected(DecodeError{DecodeErrc::bad_magic, kFrameHeaderSize, hello.magic, kHandshakeMagic, "magic"});
  hello.protocol_version = in.read<std::uint16_t>("protocol_version");
  const auto role = in.read<std::uint8_t>("role");
  if (role < static_cast<std::uint8_t>(PeerRole::node) || role > static_cast<std::uint8_t>(PeerRole::admin))
    in.fail_invalid("role", role);
  hello.role = static_cast<PeerRole>(role);
  if (const auto reserved = in.read<std::uint8_t>("reserved"); reserved != 0) in.fail_invalid("reserved", reserved);
  hello.node_id = in.read<std::uint32_t>("node_id");
  if (const auto reserved = in.read<std::uint32_t>("reserved"); reserved != 0) in.fail_invalid("reserved", reserved);
  hello.cluster_id = in.read<std::uint64_t>("cluster_id");
  hello.incarnation = read_incarnation(in);
  read_identity_tail(in, hello.members, hello.client_endpoint);
  return finish(in, hello);
}

// Welcome v1 (protocol 2): protocol_version u16 | reserved u16 | node_id u32 | cluster_id u64 |
//             incarnation 2 x u64 | member_count u16 | endpoint_length u16 | reserved u32 |
//             member ids member_count x u32 | client endpoint
void Welcome::encode_body(BodyWriter& out) const noexcept {
  out.write<std::uint16_t>(protocol_version);
  out.write<std::uint16_t>(0);
  out.write<std::uint32_t>(node_id);
  out.write<std::uint64_t>(cluster_id);
  write_incarnation(out, incarnation);
  write_identity_tail(out, members, client_endpoint);
}

Result<Welcome, DecodeError> Welcome::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  Welcome welcome;
  welcome.protocol_version = in.read<std::uint16_t>("protocol_version");
  if (const auto reserved = in.read<std::uint16_t>("reserved"); reserved != 0) in.fail_invalid("reserved", reserved);
  welcome.node_id = in.read<std::uint32_t>("node_id");
  welcome.cluster_id = in.read<std::uint64_t>("cluster_id");
  welcome.incarnation = read_incarnation(in);
  read_identity_tail(in, welcome.members, welcome.client_endpoint);
  return finish(in, welcome);
}

// Error v1: code u16 | reserved u16 | text_length u32 | text (text_length bytes, UTF-8)
void ErrorMessage::encode_body(BodyWriter& out) const noexcept {
  COHORT_ASSERT(text.size() <= kMaxErrorTextLength);
  out.write<std::uint16_t>(static_cast<std::uint16_t>(code));
  out.write<std::uint16_t>(0);
  out.write<std::uint32_t>(static_cast<std::uint32_t>(text.size()));
  out.write_bytes(as_bytes(text));
}

Result<ErrorMessage, DecodeError> ErrorMessage::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  ErrorMessage error;
  // Unknown codes are kept, not refused: a newer peer may know more reasons, and its text still explains.
  error.code = static_cast<ErrorCode>(in.read<std::uint16_t>("code"));
  if (const auto reserved = in.read<std::uint16_t>("reserved"); reserved != 0) in.fail_invalid("reserved", reserved);
  const auto length = in.read<std::uint32_t>("text_length");
  if (!in.failed() && length > kMaxErrorTextLength) in.fail_invalid("text_length", length, kMaxErrorTextLength);
  if (!in.failed()) error.text = as_chars(in.read_bytes(length, "text"));
  return finish(in, error);
}

// Ping v1 and Pong v1 share a layout: id u64 | sent_at_ns u64
template <typename Probe>
void encode_probe(const Probe& probe, BodyWriter& out) noexcept {
  out.write<std::uint64_t>(probe.id);
  out.write<std::uint64_t>(probe.sent_at_ns);
}

template <typename Probe>
Result<Probe, DecodeError> decode_probe(BodyReader& in) noexcept {
  Probe probe;
  probe.id = in.read<std::uint64_t>("id");
  probe.sent_at_ns = in.read<std::uint64_t>("sent_at_ns");
  return finish(in, probe);
}

void Ping::encode_body(BodyWriter& out) const noexcept { encode_probe(*this, out); }
Result<Ping, DecodeError> Ping::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  return decode_probe<Ping>(in);
}
void Pong::encode_body(BodyWriter& out) const noexcept { encode_probe(*this, out); }
Result<Pong, DecodeError> Pong::decode_body(BodyReader& in, std::uint8_t /*version*/) noexcept {
  return decode_probe<Pong>(in);
}

}  // namespace cohort::protocol

// The wire codec, one test per sentence of the frame and message layouts (src/protocol/frame.h, messages.h).
//
// Every buffer a test decodes from is an exactly-sized heap allocation, so under AddressSanitizer a read one
// byte past the end of the input fails the test.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/catalogue.h"

namespace cohort::protocol {
namespace {

using Bytes = std::vector<std::byte>;

template <typename Message>
Bytes encoded(const Message& message) {
  Bytes bytes;
  append_frame(message, bytes);
  return bytes;
}

/// A frame built by hand: the header says `length` (by default the honest 8 + body size).
Bytes raw_frame(MessageType type, std::uint8_t version, std::uint8_t flags, const Bytes& body,
                std::optional<std::uint32_t> length = std::nullopt) {
  Bytes bytes(kFrameHeaderSize + body.size());
  store_frame_header(bytes.data(),
                     FrameHeader{length.value_or(static_cast<std::uint32_t>(bytes.size())), type, version, flags});
  std::copy(body.begin(), body.end(), bytes.begin() + static_cast<std::ptrdiff_t>(kFrameHeaderSize));
  return bytes;
}

Bytes raw_frame(std::uint16_t type, std::uint8_t version, std::uint8_t flags, const Bytes& body) {
  return raw_frame(static_cast<MessageType>(type), version, flags, body);
}

template <typename T>
void patch(Bytes& bytes, std::size_t offset, T value) {
  ASSERT_LE(offset + sizeof(T), bytes.size());
  store_le<T>(bytes.data() + offset, value);
}

Bytes body_of(const Bytes& frame) { return Bytes(frame.begin() + kFrameHeaderSize, frame.end()); }

Bytes prefix(const Bytes& bytes, std::size_t size) {
  return Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size));
}

Bytes concat(const std::vector<Bytes>& parts) {
  Bytes all;
  for (const Bytes& part : parts) all.insert(all.end(), part.begin(), part.end());
  return all;
}

/// Decodes a frame as the message type its header names, and encodes the result again.
template <typename Message>
Result<Bytes, DecodeError> reencode_as(const Frame& frame) {
  auto message = decode<Message>(frame);
  if (!message) return unexpected(message.error());
  return encoded(*message);
}

Result<Bytes, DecodeError> decode_and_reencode(const Frame& frame) {
  std::optional<Result<Bytes, DecodeError>> result;
  if (!visit_message_type(frame.header.type, [&]<typename Message>() { result = reencode_as<Message>(frame); })) {
    ADD_FAILURE() << "scan_frame accepted a type outside the catalogue";
    return unexpected(DecodeError{});
  }
  return std::move(*result);
}

/// Scans `bytes` as exactly one complete frame and returns why its body does not decode (nullopt if it does).
std::optional<DecodeError> body_error(const Bytes& bytes) {
  const FrameScan scan = scan_frame(bytes);
  EXPECT_EQ(scan.status, FrameScan::Status::complete) << scan.error.describe();
  if (scan.status != FrameScan::Status::complete) return std::nullopt;
  EXPECT_EQ(scan.consumed, bytes.size());
  auto result = decode_and_reencode(scan.frame);
  if (result) return std::nullopt;
  return result.error();
}

/// Scans `bytes` and returns the header error (nullopt if the header was accepted).
std::optional<DecodeError> header_error(const Bytes& bytes, std::uint32_t max = kDefaultMaxFrameLength) {
  const FrameScan scan = scan_frame(bytes, max);
  if (scan.status != FrameScan::Status::error) return std::nullopt;
  return scan.error;
}

struct Field {
  std::string_view name;
  std::size_t size;
};

// The fixed-layout bodies, field by field, as docs/protocol.md describes them.
const std::vector<Field>& hello_layout() {
  static const std::vector<Field> layout = {{"magic", 4},        {"protocol_version", 2}, {"role", 1},
                                            {"reserved", 1},     {"node_id", 4},          {"reserved", 4},
                                            {"cluster_id", 8},   {"incarnation.high", 8}, {"incarnation.low", 8},
                                            {"member_count", 2}, {"endpoint_length", 2},  {"reserved", 4}};
  return layout;
}
const std::vector<Field>& welcome_layout() {
  static const std::vector<Field> layout = {{"protocol_version", 2}, {"reserved", 2},         {"node_id", 4},
                                            {"cluster_id", 8},       {"incarnation.high", 8}, {"incarnation.low", 8},
                                            {"member_count", 2},     {"endpoint_length", 2},  {"reserved", 4}};
  return layout;
}
const std::vector<Field>& error_layout() {
  static const std::vector<Field> layout = {{"code", 2}, {"reserved", 2}, {"text_length", 4}};
  return layout;
}
const std::vector<Field>& ping_layout() {
  static const std::vector<Field> layout = {{"id", 8}, {"sent_at_ns", 8}};
  return layout;
}

std::size_t layout_size(const std::vector<Field>& layout) {
  std::size_t size = 0;
  for (const Field& field : layout) size += field.size;
  return size;
}

Hello sample_hello() {
  Hello hello;
  hello.role = PeerRole::node;
  hello.node_id = 0xA1B2C3D4;
  hello.cluster_id = 0x0102030405060708;
  hello.incarnation = Incarnation{0x1111222233334444, 0x5555666677778888};
  return hello;
}

Welcome sample_welcome() {
  Welcome welcome;
  welcome.node_id = 3;
  welcome.cluster_id = 0xFFFFFFFFFFFFFFFF;
  welcome.incarnation = Incarnation{1, 2};
  return welcome;
}

constexpr std::uint32_t kSampleMembers[] = {1, 7, 0xA1B2C3D4};

Hello hello_with_members() {
  Hello hello = sample_hello();
  hello.members = MemberIds::of(kSampleMembers);
  hello.client_endpoint = "db-1.example:7201";
  return hello;
}

Welcome welcome_with_members() {
  Welcome welcome = sample_welcome();
  constexpr std::uint32_t members[] = {3};
  welcome.members = MemberIds::of(members);
  welcome.client_endpoint = "[::1]:7203";
  return welcome;
}

const std::string& max_length_text() {
  static const std::string text = [] {
    std::string t(kMaxErrorTextLength, '\0');
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<char>('a' + i % 26);
    return t;
  }();
  return text;
}

/// One encoded frame of every message in the catalogue, with the extremes of the variable-length one.
std::vector<Bytes> every_sample_frame() {
  return {
      encoded(sample_hello()),
      encoded(Hello{}),
      encoded(Hello{kHandshakeMagic, kProtocolVersion, PeerRole::admin, 0, 9, Incarnation{}, {}, {}}),
      encoded(hello_with_members()),
      encoded(sample_welcome()),
      encoded(welcome_with_members()),
      encoded(ErrorMessage{ErrorCode::wrong_cluster, "cluster id 9 does not match this cluster's id 7"}),
      encoded(ErrorMessage{ErrorCode::malformed_frame, ""}),
      encoded(ErrorMessage{ErrorCode::handshake_timeout, max_length_text()}),
      encoded(Ping{0xDEADBEEFCAFEF00D, 0xFFFFFFFFFFFFFFFF}),
      encoded(Pong{0, 1}),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Round trips

TEST(CodecRoundTrip, HelloDecodesToTheSameFields) {
  const Bytes bytes = encoded(sample_hello());
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  auto hello = decode<Hello>(scan.frame);
  ASSERT_TRUE(hello) << hello.error().describe();
  EXPECT_EQ(*hello, sample_hello());
}

TEST(CodecRoundTrip, HelloOfEveryRoleDecodesToTheSameRole) {
  for (const PeerRole role : {PeerRole::node, PeerRole::client, PeerRole::admin}) {
    Hello sent = sample_hello();
    sent.role = role;
    const Bytes bytes = encoded(sent);
    const FrameScan scan = scan_frame(bytes);
    ASSERT_EQ(scan.status, FrameScan::Status::complete);
    auto received = decode<Hello>(scan.frame);
    ASSERT_TRUE(received) << received.error().describe();
    EXPECT_EQ(received->role, role);
  }
}

TEST(CodecRoundTrip, WelcomeDecodesToTheSameFields) {
  const Bytes bytes = encoded(sample_welcome());
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  auto welcome = decode<Welcome>(scan.frame);
  ASSERT_TRUE(welcome) << welcome.error().describe();
  EXPECT_EQ(*welcome, sample_welcome());
}

TEST(CodecRoundTrip, ErrorMessageDecodesToTheSameCodeAndText) {
  const ErrorMessage sent{ErrorCode::wrong_incarnation, "the cluster was re-created"};
  const Bytes bytes = encoded(sent);
  EXPECT_EQ(bytes.size(), kFrameHeaderSize + 8 + sent.text.size());
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  auto received = decode<ErrorMessage>(scan.frame);
  ASSERT_TRUE(received) << received.error().describe();
  EXPECT_EQ(*received, sent);
}

TEST(CodecRoundTrip, ErrorMessageWithEmptyTextDecodesToEmptyText) {
  const Bytes bytes = encoded(ErrorMessage{ErrorCode::bad_handshake, ""});
  EXPECT_EQ(bytes.size(), kFrameHeaderSize + 8);
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  auto received = decode<ErrorMessage>(scan.frame);
  ASSERT_TRUE(received) << received.error().describe();
  EXPECT_EQ(received->code, ErrorCode::bad_handshake);
  EXPECT_TRUE(received->text.empty());
}

TEST(CodecRoundTrip, ErrorMessageWithMaximumLengthTextDecodesToTheWholeText) {
  const Bytes bytes = encoded(ErrorMessage{ErrorCode::role_not_allowed, max_length_text()});
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  auto received = decode<ErrorMessage>(scan.frame);
  ASSERT_TRUE(received) << received.error().describe();
  EXPECT_EQ(received->text.size(), kMaxErrorTextLength);
  EXPECT_EQ(received->text, max_length_text());
}

TEST(CodecRoundTrip, ErrorMessageKeepsAReasonCodeThisBuildDoesNotKnow) {
  Bytes bytes = encoded(ErrorMessage{ErrorCode::malformed_frame, "from the future"});
  patch<std::uint16_t>(bytes, kFrameHeaderSize, 999);
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  auto received = decode<ErrorMessage>(scan.frame);
  ASSERT_TRUE(received) << received.error().describe();
  EXPECT_EQ(static_cast<std::uint16_t>(received->code), 999);
  EXPECT_EQ(received->text, "from the future");
}

TEST(CodecRoundTrip, PingDecodesToTheSameFields) {
  const Ping sent{0xDEADBEEFCAFEF00D, 0xFFFFFFFFFFFFFFFF};
  const Bytes bytes = encoded(sent);
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  auto received = decode<Ping>(scan.frame);
  ASSERT_TRUE(received) << received.error().describe();
  EXPECT_EQ(*received, sent);
}

TEST(CodecRoundTrip, PongDecodesToTheSameFields) {
  const Pong sent{42, 1234567890123};
  const Bytes bytes = encoded(sent);
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  auto received = decode<Pong>(scan.frame);
  ASSERT_TRUE(received) << received.error().describe();
  EXPECT_EQ(*received, sent);
}

TEST(CodecRoundTrip, ReencodingADecodedMessageGivesIdenticalBytes) {
  for (const Bytes& bytes : every_sample_frame()) {
    const FrameScan scan = scan_frame(bytes);
    ASSERT_EQ(scan.status, FrameScan::Status::complete);
    EXPECT_EQ(scan.consumed, bytes.size());
    auto again = decode_and_reencode(scan.frame);
    ASSERT_TRUE(again) << again.error().describe();
    EXPECT_EQ(*again, bytes) << "type " << to_string(scan.frame.header.type);
  }
}

TEST(CodecRoundTrip, EveryCatalogueTypeHasItsNewestVersionKnown) {
  EXPECT_EQ(newest_version(MessageType::hello), Hello::kVersion);
  EXPECT_EQ(newest_version(MessageType::welcome), Welcome::kVersion);
  EXPECT_EQ(newest_version(MessageType::error), ErrorMessage::kVersion);
  EXPECT_EQ(newest_version(MessageType::ping), Ping::kVersion);
  EXPECT_EQ(newest_version(MessageType::pong), Pong::kVersion);
  EXPECT_EQ(newest_version(static_cast<MessageType>(0)), 0);
  EXPECT_EQ(newest_version(static_cast<MessageType>(6)), 0);
}

// ---------------------------------------------------------------------------------------------------------------
// The bytes on the wire

TEST(CodecLayout, TheHeaderIsLengthTypeVersionFlagsLittleEndian) {
  const Bytes bytes = encoded(Ping{1, 2});
  ASSERT_EQ(bytes.size(), 24U);
  const Bytes header = prefix(bytes, kFrameHeaderSize);
  const Bytes expected = {std::byte{24}, std::byte{0}, std::byte{0}, std::byte{0},
                          std::byte{4},  std::byte{0}, std::byte{1}, std::byte{0}};
  EXPECT_EQ(header, expected);
}

TEST(CodecLayout, PingBodyIsIdThenSentAtLittleEndian) {
  const Bytes body = body_of(encoded(Ping{0x0807060504030201, 0x100F0E0D0C0B0A09}));
  ASSERT_EQ(body.size(), Ping::kBodySize);
  for (std::size_t i = 0; i < body.size(); ++i) EXPECT_EQ(body[i], static_cast<std::byte>(i + 1)) << "body byte " << i;
}

TEST(CodecLayout, HelloStartsWithTheAsciiMagicCOHR) {
  const Bytes body = body_of(encoded(sample_hello()));
  ASSERT_EQ(body.size(), Hello::kFixedBodySize);
  EXPECT_EQ(as_chars(ByteSpan(body).first(4)), "COHR");
}

TEST(CodecLayout, HelloFieldsSitAtTheirDocumentedOffsets) {
  const Bytes body = body_of(encoded(sample_hello()));
  ASSERT_EQ(body.size(), layout_size(hello_layout()));
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 4), kProtocolVersion);
  EXPECT_EQ(load_le<std::uint8_t>(body.data() + 6), static_cast<std::uint8_t>(PeerRole::node));
  EXPECT_EQ(load_le<std::uint8_t>(body.data() + 7), 0);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 8), 0xA1B2C3D4U);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 12), 0U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 16), 0x0102030405060708U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 24), 0x1111222233334444U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 32), 0x5555666677778888U);
}

TEST(CodecLayout, WelcomeFieldsSitAtTheirDocumentedOffsets) {
  const Bytes body = body_of(encoded(sample_welcome()));
  ASSERT_EQ(body.size(), layout_size(welcome_layout()));
  EXPECT_EQ(load_le<std::uint16_t>(body.data()), kProtocolVersion);
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 2), 0);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 4), 3U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 8), 0xFFFFFFFFFFFFFFFFU);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 16), 1U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 24), 2U);
}

TEST(CodecLayout, AHellosMemberIdsAndEndpointFollowItsFixedFields) {
  const Bytes body = body_of(encoded(hello_with_members()));
  ASSERT_EQ(body.size(), Hello::kFixedBodySize + 3 * 4 + 17);
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 40), 3);   // member_count
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 42), 17);  // endpoint_length
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 44), 0U);  // reserved
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 48), 1U);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 52), 7U);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 56), 0xA1B2C3D4U);
  EXPECT_EQ(as_chars(ByteSpan(body).subspan(60)), "db-1.example:7201");
  const FrameScan scan = scan_frame(encoded(hello_with_members()));
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
}

TEST(CodecRoundTrip, HelloAndWelcomeWithMembersDecodeToTheSameFields) {
  const Bytes hello_bytes = encoded(hello_with_members());
  auto hello = decode<Hello>(scan_frame(hello_bytes).frame);
  ASSERT_TRUE(hello) << hello.error().describe();
  EXPECT_EQ(*hello, hello_with_members());
  const Bytes welcome_bytes = encoded(welcome_with_members());
  auto welcome = decode<Welcome>(scan_frame(welcome_bytes).frame);
  ASSERT_TRUE(welcome) << welcome.error().describe();
  EXPECT_EQ(*welcome, welcome_with_members());
  EXPECT_EQ(welcome->members.view().size(), 1U);
}

TEST(CodecField, MemberIdsOutOfOrderRepeatedOrZeroAreAnInvalidField) {
  for (const auto& [at, value] : std::vector<std::pair<std::size_t, std::uint32_t>>{{52, 1},     // repeated
                                                                                    {52, 0},     // zero
                                                                                    {56, 5},     // below the one before
                                                                                    {48, 0}}) {  // zero first
    Bytes frame = encoded(hello_with_members());
    patch<std::uint32_t>(frame, kFrameHeaderSize + at, value);
    const auto error = body_error(frame);
    ASSERT_TRUE(error) << "decoded with " << value << " at " << at;
    EXPECT_EQ(error->code, DecodeErrc::invalid_field) << error->describe();
    EXPECT_STREQ(error->field, "member_ids");
    EXPECT_EQ(error->offset, kFrameHeaderSize + at);
  }
}

TEST(CodecField, AMemberCountAboveTheMaximumIsAnInvalidField) {
  Bytes frame = encoded(hello_with_members());
  patch<std::uint16_t>(frame, kFrameHeaderSize + 40, static_cast<std::uint16_t>(kMaxMembers + 1));
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "member_count");
  EXPECT_EQ(error->limit, kMaxMembers);
}

TEST(CodecField, AnEndpointLengthAboveTheMaximumIsAnInvalidField) {
  Bytes frame = encoded(welcome_with_members());
  patch<std::uint16_t>(frame, kFrameHeaderSize + 34, static_cast<std::uint16_t>(kMaxEndpointLength + 1));
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "endpoint_length");
}

TEST(CodecField, AHandshakeTailWithNonZeroReservedBytesIsAnInvalidField) {
  Bytes frame = encoded(hello_with_members());
  patch<std::uint32_t>(frame, kFrameHeaderSize + 44, 1);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "reserved");
}

TEST(CodecLayout, ErrorBodyIsCodeReservedTextLengthThenText) {
  const Bytes body = body_of(encoded(ErrorMessage{ErrorCode::wrong_cluster, "abc"}));
  ASSERT_EQ(body.size(), layout_size(error_layout()) + 3);
  EXPECT_EQ(load_le<std::uint16_t>(body.data()), 2);
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 2), 0);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 4), 3U);
  EXPECT_EQ(as_chars(ByteSpan(body).subspan(8)), "abc");
}

TEST(CodecLayout, ADecodedBodyAndTextAreViewsIntoTheReceiveBuffer) {
  const Bytes bytes = encoded(ErrorMessage{ErrorCode::wrong_cluster, "no copy"});
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  EXPECT_EQ(scan.frame.body.data(), bytes.data() + kFrameHeaderSize);
  auto received = decode<ErrorMessage>(scan.frame);
  ASSERT_TRUE(received);
  EXPECT_EQ(static_cast<const void*>(received->text.data()),
            static_cast<const void*>(bytes.data() + kFrameHeaderSize + 8));
}

// ---------------------------------------------------------------------------------------------------------------
// Truncation

TEST(CodecTruncation, EveryPrefixOfEveryFrameAsksForMoreBytes) {
  for (const Bytes& frame : every_sample_frame()) {
    for (std::size_t size = 0; size < frame.size(); ++size) {
      const Bytes cut = prefix(frame, size);  // exactly sized: an over-read is a heap overflow under ASan
      const FrameScan scan = scan_frame(cut);
      ASSERT_EQ(scan.status, FrameScan::Status::need_more) << "prefix " << size << " of " << frame.size();
      if (size < kFrameHeaderSize)
        EXPECT_EQ(scan.needed, 0U) << "the header is not complete at " << size << " bytes";
      else
        EXPECT_EQ(scan.needed, frame.size()) << "the header, complete at " << size << " bytes, names the length";
      EXPECT_EQ(scan.consumed, 0U);
    }
  }
}

TEST(CodecTruncation, TheWholeFrameIsCompleteAndConsumedExactly) {
  for (const Bytes& frame : every_sample_frame()) {
    const FrameScan scan = scan_frame(frame);
    ASSERT_EQ(scan.status, FrameScan::Status::complete);
    EXPECT_EQ(scan.consumed, frame.size());
    EXPECT_EQ(scan.frame.header.length, frame.size());
    EXPECT_EQ(scan.frame.body.size(), frame.size() - kFrameHeaderSize);
  }
}

/// For each honest frame whose body stops inside the layout, decoding names the field it stopped in.
void expect_every_short_body_names_its_field(const Bytes& frame, const std::vector<Field>& layout) {
  const Bytes full_body = body_of(frame);
  const auto type = static_cast<MessageType>(load_le<std::uint16_t>(frame.data() + 4));
  for (std::size_t size = 0; size < layout_size(layout); ++size) {
    const auto error = body_error(raw_frame(type, 1, 0, prefix(full_body, size)));
    ASSERT_TRUE(error) << "a " << size << "-byte " << to_string(type) << " body decoded";
    std::size_t start = 0;
    const Field* field = nullptr;
    for (const Field& candidate : layout) {
      if (start + candidate.size > size) {
        field = &candidate;
        break;
      }
      start += candidate.size;
    }
    ASSERT_NE(field, nullptr);
    EXPECT_EQ(error->code, DecodeErrc::body_too_short) << error->describe();
    EXPECT_EQ(std::string_view(error->field), field->name) << "body of " << size << " bytes";
    EXPECT_EQ(error->offset, kFrameHeaderSize + start);
    EXPECT_EQ(error->value, size - start) << "bytes left for the field";
    EXPECT_EQ(error->limit, field->size) << "bytes the field needs";
  }
}

TEST(CodecTruncation, AHelloBodyCutShortNamesTheFieldItStopsIn) {
  expect_every_short_body_names_its_field(encoded(sample_hello()), hello_layout());
}

TEST(CodecTruncation, AWelcomeBodyCutShortNamesTheFieldItStopsIn) {
  expect_every_short_body_names_its_field(encoded(sample_welcome()), welcome_layout());
}

TEST(CodecTruncation, AnErrorBodyCutShortNamesTheFieldItStopsIn) {
  expect_every_short_body_names_its_field(encoded(ErrorMessage{ErrorCode::wrong_cluster, "x"}), error_layout());
}

TEST(CodecTruncation, APingBodyCutShortNamesTheFieldItStopsIn) {
  expect_every_short_body_names_its_field(encoded(Ping{5, 6}), ping_layout());
}

TEST(CodecTruncation, APongBodyCutShortNamesTheFieldItStopsIn) {
  expect_every_short_body_names_its_field(encoded(Pong{5, 6}), ping_layout());
}

TEST(CodecTruncation, APingWhoseHeaderSaysTwelveBytesStopsInItsId) {
  const Bytes frame = raw_frame(MessageType::ping, 1, 0, Bytes(4, std::byte{0x11}));
  ASSERT_EQ(load_le<std::uint32_t>(frame.data()), 12U);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::body_too_short);
  EXPECT_STREQ(error->field, "id");
  EXPECT_EQ(error->describe(), "body too short at offset 8 reading 'id': 4 bytes left, 8 needed");
}

TEST(CodecTruncation, ErrorTextCutShortOfItsLengthIsBodyTooShort) {
  Bytes frame = encoded(ErrorMessage{ErrorCode::wrong_cluster, "hello"});
  patch<std::uint32_t>(frame, kFrameHeaderSize + 4, 9);  // claims 9 text bytes; 5 follow
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::body_too_short);
  EXPECT_STREQ(error->field, "text");
  EXPECT_EQ(error->offset, kFrameHeaderSize + 8);
  EXPECT_EQ(error->value, 5U);
  EXPECT_EQ(error->limit, 9U);
}

TEST(CodecTruncation, ErrorTextLengthAtTheMaximumButBeyondTheBodyIsBodyTooShort) {
  Bytes frame = encoded(ErrorMessage{ErrorCode::wrong_cluster, ""});
  patch<std::uint32_t>(frame, kFrameHeaderSize + 4, static_cast<std::uint32_t>(kMaxErrorTextLength));
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::body_too_short);
  EXPECT_STREQ(error->field, "text");
  EXPECT_EQ(error->value, 0U);
  EXPECT_EQ(error->limit, kMaxErrorTextLength);
}

// ---------------------------------------------------------------------------------------------------------------
// Bodies longer than their layout

TEST(CodecBody, ABodyLongerThanItsLayoutIsBodyTooLong) {
  struct Case {
    Bytes frame;
    std::size_t layout_end;
  };
  const std::vector<Case> cases = {
      {encoded(sample_hello()), Hello::kFixedBodySize},
      {encoded(sample_welcome()), Welcome::kFixedBodySize},
      {encoded(hello_with_members()), Hello::kFixedBodySize + 12 + 17},
      {encoded(ErrorMessage{ErrorCode::wrong_cluster, "abc"}), 8 + 3},
      {encoded(ErrorMessage{ErrorCode::wrong_cluster, ""}), 8},
      {encoded(Ping{1, 2}), Ping::kBodySize},
      {encoded(Pong{1, 2}), Pong::kBodySize},
  };
  for (const Case& c : cases) {
    for (const std::size_t extra : {std::size_t{1}, std::size_t{7}, std::size_t{100}}) {
      Bytes body = body_of(c.frame);
      body.resize(body.size() + extra, std::byte{0});
      const Bytes longer = raw_frame(static_cast<MessageType>(load_le<std::uint16_t>(c.frame.data() + 4)), 1, 0, body);
      const auto error = body_error(longer);
      ASSERT_TRUE(error) << "a body with " << extra << " extra bytes decoded";
      EXPECT_EQ(error->code, DecodeErrc::body_too_long) << error->describe();
      EXPECT_EQ(error->value, c.layout_end + extra) << "the body's size";
      EXPECT_EQ(error->limit, c.layout_end) << "where the layout ends";
      EXPECT_EQ(error->offset, kFrameHeaderSize + c.layout_end);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Header checks

TEST(CodecHeader, ALengthBelowTheHeaderSizeIsRefused) {
  for (std::uint32_t length = 0; length < kFrameHeaderSize; ++length) {
    const auto error = header_error(raw_frame(MessageType::ping, 1, 0, {}, length));
    ASSERT_TRUE(error) << "length " << length;
    EXPECT_EQ(error->code, DecodeErrc::length_below_header);
    EXPECT_EQ(error->value, length);
    EXPECT_EQ(error->limit, kFrameHeaderSize);
    EXPECT_EQ(error->offset, 0U);
  }
}

TEST(CodecHeader, ALengthOfExactlyTheHeaderIsAnEmptyBody) {
  const FrameScan scan = scan_frame(raw_frame(MessageType::ping, 1, 0, {}));
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  EXPECT_TRUE(scan.frame.body.empty());
  EXPECT_EQ(scan.consumed, kFrameHeaderSize);
}

TEST(CodecHeader, ALengthAboveTheDefaultMaximumIsRefusedFromTheHeaderAlone) {
  // Only the 8 header bytes are present: the bad length must be refused before its body is awaited.
  const Bytes header = raw_frame(MessageType::ping, 1, 0, {}, kDefaultMaxFrameLength + 1);
  const auto error = header_error(header);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::length_above_maximum);
  EXPECT_EQ(error->value, kDefaultMaxFrameLength + 1);
  EXPECT_EQ(error->limit, kDefaultMaxFrameLength);
}

TEST(CodecHeader, TheLargestLengthIsRefused) {
  const auto error = header_error(raw_frame(MessageType::ping, 1, 0, {}, 0xFFFFFFFF));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::length_above_maximum);
  EXPECT_EQ(error->value, 0xFFFFFFFFU);
}

TEST(CodecHeader, ALengthOfExactlyTheDefaultMaximumIsAwaited) {
  const FrameScan scan = scan_frame(raw_frame(MessageType::ping, 1, 0, {}, kDefaultMaxFrameLength));
  ASSERT_EQ(scan.status, FrameScan::Status::need_more);
  EXPECT_EQ(scan.needed, kDefaultMaxFrameLength);
}

TEST(CodecHeader, AConfiguredMaximumRefusesLongerFramesAndAcceptsItsOwnLength) {
  const Bytes ping = encoded(Ping{1, 2});  // 24 bytes
  const auto refused = header_error(ping, 23);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->code, DecodeErrc::length_above_maximum);
  EXPECT_EQ(refused->value, 24U);
  EXPECT_EQ(refused->limit, 23U);
  EXPECT_FALSE(header_error(ping, 24));
  EXPECT_EQ(scan_frame(ping, 24).status, FrameScan::Status::complete);
}

TEST(CodecHeader, AConfiguredMaximumAboveTheDefaultAdmitsLargerFrames) {
  const std::uint32_t length = kDefaultMaxFrameLength + 1;
  const FrameScan scan = scan_frame(raw_frame(MessageType::ping, 1, 0, {}, length), kMaxFrameLengthCeiling);
  ASSERT_EQ(scan.status, FrameScan::Status::need_more);
  EXPECT_EQ(scan.needed, length);
}

TEST(CodecHeader, AnUnknownTypeIsRefused) {
  for (const std::uint16_t type : {std::uint16_t{0}, std::uint16_t{6}, std::uint16_t{0x100}, std::uint16_t{0xFFFF}}) {
    const auto error = header_error(raw_frame(type, 1, 0, Bytes(16)));
    ASSERT_TRUE(error) << "type " << type;
    EXPECT_EQ(error->code, DecodeErrc::unknown_type);
    EXPECT_EQ(error->value, type);
    EXPECT_EQ(error->offset, 4U);
  }
}

TEST(CodecHeader, VersionZeroIsUnsupported) {
  const auto error = header_error(raw_frame(MessageType::ping, 0, 0, Bytes(16)));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::unsupported_version);
  EXPECT_EQ(error->value, 0U);
  EXPECT_EQ(error->limit, Ping::kVersion);
  EXPECT_EQ(error->offset, 6U);
}

TEST(CodecHeader, AVersionNewerThanThisBuildKnowsIsUnsupported) {
  for (const std::uint8_t version : {std::uint8_t{2}, std::uint8_t{255}}) {
    const auto error = header_error(raw_frame(MessageType::hello, version, 0, body_of(encoded(sample_hello()))));
    ASSERT_TRUE(error) << "version " << int{version};
    EXPECT_EQ(error->code, DecodeErrc::unsupported_version);
    EXPECT_EQ(error->value, version);
    EXPECT_EQ(error->limit, Hello::kVersion);
  }
}

TEST(CodecHeader, DecodeRefusesAVersionNewerThanTheMessageEvenWithoutAScan) {
  const Bytes body = body_of(encoded(Ping{1, 2}));
  const Frame frame{FrameHeader{24, MessageType::ping, 2, 0}, ByteSpan(body)};
  auto ping = decode<Ping>(frame);
  ASSERT_FALSE(ping);
  EXPECT_EQ(ping.error().code, DecodeErrc::unsupported_version);
  EXPECT_EQ(ping.error().value, 2U);
}

TEST(CodecHeader, EveryNonZeroFlagBitIsRefused) {
  for (unsigned bit = 0; bit < 8; ++bit) {
    const auto flags = static_cast<std::uint8_t>(1U << bit);
    const auto error = header_error(raw_frame(MessageType::ping, 1, flags, Bytes(16)));
    ASSERT_TRUE(error) << "flags " << int{flags};
    EXPECT_EQ(error->code, DecodeErrc::reserved_flags);
    EXPECT_EQ(error->value, flags);
    EXPECT_EQ(error->offset, 7U);
  }
}

TEST(CodecHeader, AHeaderErrorIsReportedBeforeTheBodyArrives) {
  // Header of a bad-typed 1000-byte frame, with none of its body yet.
  Bytes header(kFrameHeaderSize);
  store_frame_header(header.data(), FrameHeader{1000, static_cast<MessageType>(77), 1, 0});
  const auto error = header_error(header);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::unknown_type);
}

// ---------------------------------------------------------------------------------------------------------------
// Field checks

TEST(CodecField, AHelloWithTheWrongMagicIsBadMagic) {
  Bytes frame = encoded(sample_hello());
  patch<std::uint32_t>(frame, kFrameHeaderSize, 0x50545448);  // "HTTP"
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::bad_magic);
  EXPECT_EQ(error->offset, kFrameHeaderSize);
  EXPECT_EQ(error->value, 0x50545448U);
  EXPECT_EQ(error->limit, kHandshakeMagic);
}

TEST(CodecField, AHelloWithARoleOutsideTheCatalogueIsAnInvalidField) {
  for (const std::uint8_t role : {std::uint8_t{0}, std::uint8_t{4}, std::uint8_t{255}}) {
    Bytes frame = encoded(sample_hello());
    patch<std::uint8_t>(frame, kFrameHeaderSize + 6, role);
    const auto error = body_error(frame);
    ASSERT_TRUE(error) << "role " << int{role};
    EXPECT_EQ(error->code, DecodeErrc::invalid_field);
    EXPECT_STREQ(error->field, "role");
    EXPECT_EQ(error->value, role);
    EXPECT_EQ(error->offset, kFrameHeaderSize + 6) << "the offset of the role byte itself";
  }
}

TEST(CodecField, AHelloWithANonZeroReservedByteIsAnInvalidField) {
  Bytes frame = encoded(sample_hello());
  patch<std::uint8_t>(frame, kFrameHeaderSize + 7, 0x40);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "reserved");
  EXPECT_EQ(error->value, 0x40U);
  EXPECT_EQ(error->offset, kFrameHeaderSize + 7);
}

TEST(CodecField, AHelloWithNonZeroReservedWordIsAnInvalidField) {
  Bytes frame = encoded(sample_hello());
  patch<std::uint32_t>(frame, kFrameHeaderSize + 12, 0x80000000);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "reserved");
  EXPECT_EQ(error->value, 0x80000000U);
  EXPECT_EQ(error->offset, kFrameHeaderSize + 12);
}

TEST(CodecField, AWelcomeWithNonZeroReservedBytesIsAnInvalidField) {
  Bytes frame = encoded(sample_welcome());
  patch<std::uint16_t>(frame, kFrameHeaderSize + 2, 1);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "reserved");
  EXPECT_EQ(error->value, 1U);
  EXPECT_EQ(error->offset, kFrameHeaderSize + 2);
}

TEST(CodecField, AnErrorWithNonZeroReservedBytesIsAnInvalidField) {
  Bytes frame = encoded(ErrorMessage{ErrorCode::wrong_cluster, "x"});
  patch<std::uint16_t>(frame, kFrameHeaderSize + 2, 0xFFFF);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "reserved");
  EXPECT_EQ(error->value, 0xFFFFU);
  EXPECT_EQ(error->offset, kFrameHeaderSize + 2);
}

TEST(CodecField, AnErrorTextLengthAboveTheMaximumIsAnInvalidFieldEvenWhenTheBytesFollow) {
  const std::string text(kMaxErrorTextLength + 1, 'z');
  Bytes body(8);
  store_le<std::uint16_t>(body.data(), static_cast<std::uint16_t>(ErrorCode::wrong_cluster));
  store_le<std::uint32_t>(body.data() + 4, static_cast<std::uint32_t>(text.size()));
  for (const char c : text) body.push_back(static_cast<std::byte>(c));
  const auto error = body_error(raw_frame(MessageType::error, 1, 0, body));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "text_length");
  EXPECT_EQ(error->value, kMaxErrorTextLength + 1);
  EXPECT_EQ(error->limit, kMaxErrorTextLength);
  EXPECT_EQ(error->offset, kFrameHeaderSize + 4);
}

TEST(CodecField, AHugeErrorTextLengthIsRefusedWithoutReadingPastTheBody) {
  Bytes frame = encoded(ErrorMessage{ErrorCode::wrong_cluster, "abc"});
  patch<std::uint32_t>(frame, kFrameHeaderSize + 4, 0xFFFFFFFF);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "text_length");
  EXPECT_EQ(error->value, 0xFFFFFFFFU);
}

TEST(CodecField, TheFirstErrorInABodyWins) {
  // Bad magic and a bad role: the magic, read first, is what is reported.
  Bytes frame = encoded(sample_hello());
  patch<std::uint32_t>(frame, kFrameHeaderSize, 0);
  patch<std::uint8_t>(frame, kFrameHeaderSize + 6, 9);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::bad_magic);
}

using CodecDeathTest = ::testing::Test;

TEST(CodecDeathTest, DecodingAFrameAsAnotherMessageTypeIsAProgrammerError) {
  const Bytes bytes = encoded(Ping{1, 2});
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  EXPECT_DEATH((void)decode<Pong>(scan.frame), "assertion failed");
}

// ---------------------------------------------------------------------------------------------------------------
// describe()

TEST(CodecDescribe, LengthBelowHeaderNamesTheLengthAndTheHeaderSize) {
  const auto error = header_error(raw_frame(MessageType::ping, 1, 0, {}, 3));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->describe(), "frame length 3 is below the 8-byte header");
}

TEST(CodecDescribe, LengthAboveMaximumNamesTheLengthAndTheMaximum) {
  const auto error = header_error(raw_frame(MessageType::ping, 1, 0, {}, 5000), 4096);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->describe(), "frame length 5000 exceeds the maximum frame length 4096");
}

TEST(CodecDescribe, UnknownTypeNamesTheTypeAndItsOffset) {
  const auto error = header_error(raw_frame(std::uint16_t{77}, 1, 0, {}));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->describe(), "unknown message type 77 at offset 4");
}

TEST(CodecDescribe, UnsupportedVersionNamesTheVersionAndTheRangeThisBuildReads) {
  const auto error = header_error(raw_frame(MessageType::welcome, 3, 0, {}));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->describe(), "message layout version 3 is not supported (this build reads 1..1)");
}

TEST(CodecDescribe, ReservedFlagsNamesTheFlagsInHex) {
  const auto error = header_error(raw_frame(MessageType::ping, 1, 0xA0, {}));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->describe(), "frame flags 0xa0 use bits this version does not define");
}

TEST(CodecDescribe, BodyTooShortNamesTheOffsetTheFieldAndTheByteCounts) {
  const auto error = body_error(raw_frame(MessageType::pong, 1, 0, Bytes(12)));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->describe(), "body too short at offset 16 reading 'sent_at_ns': 4 bytes left, 8 needed");
}

TEST(CodecDescribe, BodyTooLongNamesTheBodySizeAndTheLayoutEnd) {
  const auto error = body_error(raw_frame(MessageType::ping, 1, 0, Bytes(17)));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->describe(), "body has 17 bytes but its layout ends at 16");
}

TEST(CodecDescribe, BadMagicNamesTheReceivedAndExpectedMagicInHex) {
  Bytes frame = encoded(sample_hello());
  patch<std::uint32_t>(frame, kFrameHeaderSize, 0x50545448);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->describe(), "handshake magic 0x50545448 is not Cohort's (0x52484f43): not a Cohort peer");
}

TEST(CodecDescribe, InvalidFieldNamesTheFieldItsOffsetAndTheValue) {
  Bytes frame = encoded(sample_hello());
  patch<std::uint8_t>(frame, kFrameHeaderSize + 6, 9);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->describe(), "field 'role' at offset 14 has invalid value 9");
}

TEST(CodecDescribe, InvalidFieldWithALimitNamesTheLimitToo) {
  Bytes frame = encoded(ErrorMessage{ErrorCode::wrong_cluster, "abc"});
  patch<std::uint32_t>(frame, kFrameHeaderSize + 4, 5000);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  const std::string text = error->describe();
  EXPECT_NE(text.find("'text_length'"), std::string::npos) << text;
  EXPECT_NE(text.find("offset 12"), std::string::npos) << text;
  EXPECT_NE(text.find("5000"), std::string::npos) << text;
  EXPECT_NE(text.find("1024"), std::string::npos) << text;
}

TEST(CodecDescribe, EveryErrorCodeHasAName) {
  for (unsigned code = 0; code <= static_cast<unsigned>(DecodeErrc::invalid_field); ++code)
    EXPECT_STRNE(to_string(static_cast<DecodeErrc>(code)), "unknown") << code;
  EXPECT_STREQ(to_string(DecodeErrc::body_too_short), "body_too_short");
  EXPECT_STREQ(to_string(MessageType::pong), "pong");
  EXPECT_STREQ(to_string(static_cast<MessageType>(99)), "unknown");
}

// ---------------------------------------------------------------------------------------------------------------
// Streams

TEST(CodecStream, FramesBackToBackAreScannedOneAfterTheOther) {
  const std::vector<Bytes> frames = every_sample_frame();
  const Bytes stream = concat(frames);
  ByteSpan rest(stream);
  for (const Bytes& expected : frames) {
    const FrameScan scan = scan_frame(rest);
    ASSERT_EQ(scan.status, FrameScan::Status::complete);
    ASSERT_EQ(scan.consumed, expected.size());
    EXPECT_EQ(scan.frame.body.data(), rest.data() + kFrameHeaderSize) << "the body is a view into the stream";
    auto again = decode_and_reencode(scan.frame);
    ASSERT_TRUE(again) << again.error().describe();
    EXPECT_EQ(*again, expected);
    rest = rest.subspan(scan.consumed);
  }
  EXPECT_TRUE(rest.empty());
  EXPECT_EQ(scan_frame(rest).status, FrameScan::Status::need_more);
}

TEST(CodecStream, AFrameFollowedByPartOfTheNextIsCompleteThenNeedsTheRest) {
  const Bytes first = encoded(Ping{1, 2});
  const Bytes second = encoded(sample_hello());
  const Bytes stream = concat({first, prefix(second, 13)});
  const FrameScan one = scan_frame(stream);
  ASSERT_EQ(one.status, FrameScan::Status::complete);
  EXPECT_EQ(one.consumed, first.size());
  const FrameScan two = scan_frame(ByteSpan(stream).subspan(one.consumed));
  ASSERT_EQ(two.status, FrameScan::Status::need_more);
  EXPECT_EQ(two.needed, second.size());
}

TEST(CodecStream, AGoodFrameBeforeABadOneIsStillDelivered) {
  Bytes bad = encoded(Pong{3, 4});
  patch<std::uint8_t>(bad, 7, 1);  // flags
  const Bytes good = encoded(Ping{1, 2});
  const Bytes stream = concat({good, bad});
  const FrameScan one = scan_frame(stream);
  ASSERT_EQ(one.status, FrameScan::Status::complete);
  const FrameScan two = scan_frame(ByteSpan(stream).subspan(one.consumed));
  ASSERT_EQ(two.status, FrameScan::Status::error);
  EXPECT_EQ(two.error.code, DecodeErrc::reserved_flags);
}

TEST(CodecStream, FramesAtOddOffsetsDecodeTheSameAsAligned) {
  for (const Bytes& frame : every_sample_frame()) {
    for (std::size_t shift = 1; shift < 8; ++shift) {
      Bytes buffer(shift, std::byte{0xEE});
      buffer.insert(buffer.end(), frame.begin(), frame.end());
      const ByteSpan unaligned = ByteSpan(buffer).subspan(shift);
      const FrameScan scan = scan_frame(unaligned);
      ASSERT_EQ(scan.status, FrameScan::Status::complete) << "shift " << shift;
      auto again = decode_and_reencode(scan.frame);
      ASSERT_TRUE(again) << again.error().describe();
      EXPECT_EQ(*again, frame) << "shift " << shift;
    }
  }
}

TEST(CodecStream, AnUnalignedPingDecodesItsFields) {
  const Bytes frame = encoded(Ping{0x0123456789ABCDEF, 0xFEDCBA9876543210});
  Bytes buffer(1, std::byte{0});
  buffer.insert(buffer.end(), frame.begin(), frame.end());
  const FrameScan scan = scan_frame(ByteSpan(buffer).subspan(1));
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  auto ping = decode<Ping>(scan.frame);
  ASSERT_TRUE(ping);
  EXPECT_EQ(ping->id, 0x0123456789ABCDEFU);
  EXPECT_EQ(ping->sent_at_ns, 0xFEDCBA9876543210U);
}

TEST(CodecStream, EncodingIntoAnUnalignedBufferGivesTheSameBytes) {
  const Bytes aligned = encoded(sample_hello());
  Bytes buffer(aligned.size() + 3);
  const std::size_t written = encode_frame(sample_hello(), MutableByteSpan(buffer).subspan(3));
  EXPECT_EQ(written, aligned.size());
  EXPECT_EQ(Bytes(buffer.begin() + 3, buffer.end()), aligned);
}

TEST(CodecStream, AppendFrameAddsAfterWhatIsAlreadyInTheBuffer) {
  Bytes buffer = {std::byte{1}, std::byte{2}};
  append_frame(Ping{5, 6}, buffer);
  ASSERT_EQ(buffer.size(), 2 + frame_size(Ping{}));
  EXPECT_EQ(buffer[0], std::byte{1});
  EXPECT_EQ(Bytes(buffer.begin() + 2, buffer.end()), encoded(Ping{5, 6}));
}

}  // namespace
}  // namespace cohort::protocol

// The peer (consensus) and client messages: src/protocol/peer_messages.h, client_messages.h and their byte
// layouts in docs/protocol.md.
//
// As in codec_test.cpp, every buffer decoded from is an exactly-sized heap allocation, so under AddressSanitizer
// a read one byte past the end of the input fails the test.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
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

/// A frame of `body` as it is: the layout `version` (by default the newest this build knows for the type).
Bytes raw_frame(MessageType type, const Bytes& body, std::uint8_t version = 0) {
  Bytes bytes(kFrameHeaderSize + body.size());
  if (version == 0) version = newest_version(type);
  store_frame_header(bytes.data(), FrameHeader{static_cast<std::uint32_t>(bytes.size()), type, version, 0});
  std::copy(body.begin(), body.end(), bytes.begin() + static_cast<std::ptrdiff_t>(kFrameHeaderSize));
  return bytes;
}

MessageType type_of(const Bytes& frame) { return static_cast<MessageType>(load_le<std::uint16_t>(frame.data() + 4)); }

Bytes body_of(const Bytes& frame) { return Bytes(frame.begin() + kFrameHeaderSize, frame.end()); }

Bytes prefix(const Bytes& bytes, std::size_t size) {
  return Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size));
}

template <typename T>
void patch(Bytes& bytes, std::size_t offset, T value) {
  ASSERT_LE(offset + sizeof(T), bytes.size());
  store_le<T>(bytes.data() + offset, value);
}

Bytes bytes_of(std::string_view text) {
  Bytes bytes;
  for (const char c : text) bytes.push_back(static_cast<std::byte>(c));
  return bytes;
}

/// A body written field by field, for layouts this build no longer writes (layout 1 of the messages protocol
/// version 3 extended).
class BodyBuilder {
 public:
  template <typename T>
  BodyBuilder& put(T value) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    store_le<T>(bytes_.data() + at, value);
    return *this;
  }
  BodyBuilder& zeros(std::size_t count) {
    bytes_.resize(bytes_.size() + count, std::byte{0});
    return *this;
  }
  BodyBuilder& append(const Bytes& more) {
    bytes_.insert(bytes_.end(), more.begin(), more.end());
    return *this;
  }
  const Bytes& bytes() const { return bytes_; }

 private:
  Bytes bytes_;
};

/// Decodes a frame as whatever message its header names and encodes that again.
Result<Bytes, DecodeError> decode_and_reencode(const Frame& frame) {
  std::optional<Result<Bytes, DecodeError>> result;
  const bool known = visit_message_type(frame.header.type, [&]<typename Message>() {
    auto message = decode<Message>(frame);
    if (message)
      result = encoded(*message);
    else
      result = unexpected(message.error());
  });
  if (!known) {
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

/// Encodes `sent`, scans the frame, decodes it as Message and returns the decoded message; checks on the way that
/// it equals `sent` and re-encodes to the same bytes. `bytes` keeps the frame the views point into.
template <typename Message>
Message round_trip(const Message& sent, Bytes& bytes) {
  bytes = encoded(sent);
  EXPECT_EQ(bytes.size(), kFrameHeaderSize + sent.body_size());
  const FrameScan scan = scan_frame(bytes);
  EXPECT_EQ(scan.status, FrameScan::Status::complete) << scan.error.describe();
  EXPECT_EQ(scan.consumed, bytes.size());
  EXPECT_EQ(scan.frame.header.type, Message::kType);
  auto received = decode<Message>(scan.frame);
  EXPECT_TRUE(received) << received.error().describe();
  if (!received) return Message{};
  EXPECT_TRUE(*received == sent) << to_string(Message::kType);
  EXPECT_EQ(encoded(*received), bytes) << to_string(Message::kType);
  return *received;
}

template <typename Message>
void expect_round_trip(const Message& sent) {
  Bytes bytes;
  (void)round_trip(sent, bytes);
}

// ---------------------------------------------------------------------------------------------------------------
// Samples

constexpr RaftHeader kHeader{0x01020304, 0x05060708, 0x1112131415161718, 0x2122232425262728};

const Bytes& payload_a() {
  static const Bytes bytes = bytes_of("set x=1");
  return bytes;
}
const Bytes& payload_b() {
  static const Bytes bytes = [] {
    Bytes b(300);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::byte>(i * 7);
    return b;
  }();
  return bytes;
}

/// Three entries, the middle one with an empty payload.
const std::vector<EntryView>& several_entries() {
  static const std::vector<EntryView> entries = {
      {10, 3, 0xAAAABBBBCCCCDDDD, 2, ByteSpan(payload_a())},
      {11, 3, 0x1111111111111111, 1, {}},
      {12, 4, 0xFFFFFFFFFFFFFFFF, 0xFF, ByteSpan(payload_b())},
  };
  return entries;
}

PeerAppendRequest append_with(std::span<const EntryView> entries) {
  PeerAppendRequest request;
  request.header = kHeader;
  request.prev_index = 9;
  request.prev_term = 3;
  request.commit = 8;
  request.to_encode = EntrySource(entries);
  return request;
}

const std::string& max_length_text() {
  static const std::string text = [] {
    std::string t(kMaxErrorTextLength, '\0');
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<char>('a' + i % 26);
    return t;
  }();
  return text;
}

SessionReply sample_session_reply() {
  SessionReply reply;
  reply.status = SessionStatus::redirect;
  reply.leader_id = 3;
  reply.term = 7;
  reply.session_id = 0x0102030405060708;
  reply.last_applied_seq = 99;
  reply.incarnation = Incarnation{0xAAAA, 0xBBBB};
  reply.max_message_size = 1U << 20U;
  reply.text = "10.0.0.3:7200";
  return reply;
}

/// An opened reply to a client that asked to resume a session the cluster had closed.
SessionReply replacing_session_reply() {
  SessionReply reply = sample_session_reply();
  reply.status = SessionStatus::opened;
  reply.text = "";
  reply.replaced_session = 0x1112131415161718;
  reply.replaced_last_seq = 41;
  reply.replaced_reason = SessionCloseReason::timeout;
  reply.keepalive_interval_ms = 250;
  reply.silence_limit_ms = 1000;
  reply.egress_seq = 0x21222324;
  return reply;
}

const Bytes& credential_bytes() {
  static const Bytes bytes = bytes_of("token:0123456789abcdef");
  return bytes;
}

SessionOpen resuming_open() {
  return SessionOpen{0x0123456789ABCDEF, 0xFEDCBA9876543210, 0x2122232425262728, 17, ByteSpan(credential_bytes())};
}

StatusReply sample_status_reply() {
  StatusReply reply;
  reply.node_id = 2;
  reply.role = NodeRole::leader;
  reply.standing = 2;
  reply.leader_id = 2;
  reply.entry_faults = 7;
  reply.term = 5;
  reply.commit_index = 100;
  reply.applied_index = 99;
  reply.last_index = 101;
  reply.state_hash = 0xFEEDFACECAFEBEEF;
  reply.open_sessions = 12;
  reply.snapshot_index = 90;
  reply.snapshot_term = 4;
  reply.uptime_ms = 123456;
  reply.state_hash_included = true;
  return reply;
}

AdminRequest sample_admin_request() {
  return AdminRequest{AdminCommand::transfer_leadership, 2, 3, ByteSpan(credential_bytes())};
}

AdminReply sample_admin_reply() {
  AdminReply reply;
  reply.command = AdminCommand::snapshot;
  reply.outcome = AdminOutcome::failed;
  reply.node_id = 2;
  reply.leader_id = 1;
  reply.index = 90;
  reply.term = 4;
  reply.size = 8192;
  reply.text = "writing the snapshot failed";
  return reply;
}

StatusReply status_reply_with_problems() {
  StatusReply reply = sample_status_reply();
  constexpr std::uint32_t members[] = {1, 2, 3};
  reply.members = MemberIds::of(members);
  reply.problem_count = 2;
  reply.problems[0] = "member lists differ: node 2 lists [1, 2, 3], node 1 lists [1]";
  reply.problems[1] = "";
  return reply;
}

struct Sample {
  std::string name;
  Bytes frame;
  std::size_t fixed_size;  // body bytes before any variable part: every shorter body must be refused
  bool payload_tail;       // the variable part is "the rest of the frame": a shorter one is still valid
};

std::vector<Sample> every_sample() {
  const Bytes ingress_payload = bytes_of("order: buy 10 @ 99");
  static const Bytes kept_payload = ingress_payload;  // the views below point into this one
  return {
      {"vote_request", encoded(PeerVoteRequest{kHeader, 41, 40, true, true}), PeerVoteRequest::kBodySize, false},
      {"vote_response", encoded(PeerVoteResponse{kHeader, true, true}), PeerVoteResponse::kBodySize, false},
      {"append_request/0", encoded(append_with({})), PeerAppendRequest::kFixedBodySize, false},
      {"append_request/1", encoded(append_with(std::span(several_entries()).first(1))),
       PeerAppendRequest::kFixedBodySize, false},
      {"append_request/3", encoded(append_with(several_entries())), PeerAppendRequest::kFixedBodySize, false},
      {"append_response", encoded(PeerAppendResponse{kHeader, true, 7, 8, 9, 10}), PeerAppendResponse::kBodySize,
       false},
      {"heartbeat", encoded(PeerHeartbeat{kHeader, 77}), PeerHeartbeat::kBodySize, false},
      {"heartbeat_response", encoded(PeerHeartbeatResponse{kHeader}), PeerHeartbeatResponse::kBodySize, false},
      {"timeout_now", encoded(PeerTimeoutNow{kHeader}), PeerTimeoutNow::kBodySize, false},
      {"standing_query", encoded(PeerStandingQuery{kHeader}), PeerStandingQuery::kBodySize, false},
      {"standing_answer", encoded(PeerStandingAnswer{kHeader, 0x3132333435363738, 2, true, 99}),
       PeerStandingAnswer::kBodySize, false},
      {"standing_answer/founded", encoded(PeerStandingAnswer{kHeader, 0x3132333435363738, 1, false, 99, true}),
       PeerStandingAnswer::kBodySize, false},
      {"snapshot_chunk", encoded(PeerSnapshotChunk{kHeader, 90, 4, 1000, 0xABCDEF, 512, ByteSpan(kept_payload)}),
       PeerSnapshotChunk::kFixedBodySize, true},
      {"snapshot_chunk/probe", encoded(PeerSnapshotChunk{kHeader, 90, 4, 1000, 0xABCDEF, 0, {}}),
       PeerSnapshotChunk::kFixedBodySize, true},
      {"snapshot_ack", encoded(PeerSnapshotAck{kHeader, 90, 4, 0xABCDEF, 512}), PeerSnapshotAck::kBodySize, false},
      {"session_open", encoded(SessionOpen{0x0123456789ABCDEF, 0xFEDCBA9876543210}), SessionOpen::kFixedBodySize,
       false},
      {"session_open/resume", encoded(resuming_open()), SessionOpen::kFixedBodySize, false},
      {"session_reply", encoded(sample_session_reply()), SessionReply::kFixedBodySize, false},
      {"session_reply/empty", encoded(SessionReply{}), SessionReply::kFixedBodySize, false},
      {"session_reply/replaced", encoded(replacing_session_reply()), SessionReply::kFixedBodySize, false},
      {"ingress", encoded(Ingress{5, 6, ByteSpan(kept_payload)}), Ingress::kFixedBodySize, true},
      {"ingress/empty", encoded(Ingress{5, 6, {}}), Ingress::kFixedBodySize, true},
      {"admin_request", encoded(sample_admin_request()), AdminRequest::kFixedBodySize, false},
      {"admin_request/no credential", encoded(AdminRequest{AdminCommand::shutdown, 0, 0, {}}),
       AdminRequest::kFixedBodySize, false},
      {"admin_reply", encoded(sample_admin_reply()), AdminReply::kFixedBodySize, false},
      {"admin_reply/done", encoded(AdminReply{}), AdminReply::kFixedBodySize, false},
      {"ack", encoded(Ack{5, 6, 1000, 7, 3}), Ack::kBodySize, false},
      {"egress", encoded(Egress{5, 1, ByteSpan(kept_payload), 7, 3}), Egress::kFixedBodySize, true},
      {"keep_alive", encoded(KeepAlive{5}), KeepAlive::kBodySize, false},
      {"session_close", encoded(SessionClose{5}), SessionClose::kBodySize, false},
      {"session_closed", encoded(SessionClosed{5, 6, SessionCloseReason::timeout, 7, 3}), SessionClosed::kBodySize,
       false},
      {"ingress_rejected", encoded(IngressRejected{5, 9, 7, IngressRejectReason::gap, 7, 3}),
       IngressRejected::kBodySize, false},
      {"status_request", encoded(StatusRequest{}), StatusRequest::kBodySize, false},
      {"status_reply", encoded(sample_status_reply()), StatusReply::kFixedBodySize, false},
      {"status_reply/problems", encoded(status_reply_with_problems()), StatusReply::kFixedBodySize, false},
      {"ingress_withdrawn", encoded(IngressWithdrawn{5, 6}), IngressWithdrawn::kBodySize, false},
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Round trips

TEST(WireRoundTrip, PeerMessagesDecodeToTheSameFields) {
  for (const bool pre_vote : {false, true})
    for (const bool transfer : {false, true}) expect_round_trip(PeerVoteRequest{kHeader, 41, 40, pre_vote, transfer});
  for (const bool granted : {false, true})
    for (const bool pre_vote : {false, true}) expect_round_trip(PeerVoteResponse{kHeader, granted, pre_vote});
  expect_round_trip(PeerAppendResponse{kHeader, true, 7, 0, 0, 0});
  expect_round_trip(PeerAppendResponse{kHeader, false, 0, 12, 9, 0xFFFFFFFFFFFFFFFF});
  expect_round_trip(PeerHeartbeat{kHeader, 0xFFFFFFFFFFFFFFFF});
  expect_round_trip(PeerHeartbeatResponse{kHeader});
  expect_round_trip(PeerTimeoutNow{RaftHeader{1, 2, 0}});
  expect_round_trip(PeerVoteRequest{});
}

TEST(WireRoundTrip, ClientMessagesDecodeToTheSameFields) {
  expect_round_trip(SessionOpen{0x0123456789ABCDEF, 0xFEDCBA9876543210});
  expect_round_trip(resuming_open());
  for (const SessionStatus status : {SessionStatus::opened, SessionStatus::redirect, SessionStatus::no_leader,
                                     SessionStatus::rejected, SessionStatus::busy}) {
    SessionReply reply = sample_session_reply();
    reply.status = status;
    expect_round_trip(reply);
  }
  expect_round_trip(SessionReply{});
  for (const SessionCloseReason reason :
       {SessionCloseReason{}, SessionCloseReason::client_closed, SessionCloseReason::timeout,
        SessionCloseReason::service, SessionCloseReason::unknown_session}) {
    SessionReply reply = replacing_session_reply();
    reply.replaced_reason = reason;  // 0: the tombstone was evicted
    expect_round_trip(reply);
  }
  expect_round_trip(Ack{5, 6, 1000, 7, 3});
  expect_round_trip(KeepAlive{0xFFFFFFFFFFFFFFFF});
  expect_round_trip(SessionClose{1});
  for (const SessionCloseReason reason : {SessionCloseReason::client_closed, SessionCloseReason::timeout,
                                          SessionCloseReason::service, SessionCloseReason::unknown_session})
    expect_round_trip(SessionClosed{5, 6, reason, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF});
  for (const IngressRejectReason reason : {IngressRejectReason::unknown_session, IngressRejectReason::gap,
                                           IngressRejectReason::too_large, IngressRejectReason::not_leader})
    expect_round_trip(IngressRejected{5, 9, 7, reason, 12, 2});
  expect_round_trip(StatusRequest{});
  expect_round_trip(StatusRequest{true});
  for (const AdminCommand command : {AdminCommand::snapshot, AdminCommand::transfer_leadership, AdminCommand::shutdown})
    expect_round_trip(AdminRequest{command, 7, 9, ByteSpan(credential_bytes())});
  for (const AdminOutcome outcome : {AdminOutcome::done, AdminOutcome::refused, AdminOutcome::failed,
                                     AdminOutcome::stopping, AdminOutcome::not_leader}) {
    AdminReply reply = sample_admin_reply();
    reply.outcome = outcome;
    expect_round_trip(reply);
  }
  expect_round_trip(IngressWithdrawn{0x0102030405060708, 9});
  for (const NodeRole role : {NodeRole::follower, NodeRole::candidate, NodeRole::leader, NodeRole::pre_candidate}) {
    StatusReply reply = sample_status_reply();
    reply.role = role;
    expect_round_trip(reply);
  }
  expect_round_trip(status_reply_with_problems());
}

TEST(WireRoundTrip, IngressAndEgressPayloadsAreTheRestOfTheFrameAndViewsIntoIt) {
  Bytes bytes;
  const Ingress ingress = round_trip(Ingress{5, 6, ByteSpan(payload_b())}, bytes);
  ASSERT_EQ(ingress.payload.size(), payload_b().size());
  EXPECT_EQ(ingress.payload.data(), bytes.data() + kFrameHeaderSize + Ingress::kFixedBodySize);
  EXPECT_TRUE(round_trip(Ingress{5, 7, {}}, bytes).payload.empty());
  EXPECT_EQ(bytes.size(), kFrameHeaderSize + Ingress::kFixedBodySize);

  const Egress egress = round_trip(Egress{5, 1, ByteSpan(payload_a()), 7, 3}, bytes);
  EXPECT_EQ(egress.payload.data(), bytes.data() + kFrameHeaderSize + Egress::kFixedBodySize);
  EXPECT_EQ(egress.term, 7U);
  EXPECT_EQ(egress.leader_id, 3U);
  EXPECT_TRUE(round_trip(Egress{5, 2, {}}, bytes).payload.empty());
}

TEST(WireRoundTrip, CredentialsFromEmptyToTheMaximumAreViewsIntoTheFrame) {
  const Bytes longest(kMaxCredentialLength, std::byte{0xC5});
  for (const Bytes& credential : {Bytes{}, Bytes{std::byte{0}}, credential_bytes(), longest}) {
    Bytes bytes;
    SessionOpen sent = resuming_open();
    sent.credential = ByteSpan(credential);
    const SessionOpen received = round_trip(sent, bytes);
    ASSERT_EQ(received.credential.size(), credential.size());
    EXPECT_EQ(bytes.size(), kFrameHeaderSize + SessionOpen::kFixedBodySize + credential.size());
    if (!credential.empty()) {
      EXPECT_EQ(received.credential.data(), bytes.data() + kFrameHeaderSize + 40);
    }
  }
}

TEST(WireRoundTrip, SessionOpensDifferingOnlyInTheirCredentialAreNotEqual) {
  const Bytes other = bytes_of("token:0123456789abcdeF");
  SessionOpen changed = resuming_open();
  changed.credential = ByteSpan(other);
  EXPECT_FALSE(changed == resuming_open());
  EXPECT_TRUE(resuming_open() == resuming_open());
}

TEST(WireRoundTrip, SessionReplyTextsFromEmptyToTheMaximumAreViewsIntoTheFrame) {
  Bytes bytes;
  for (const std::string_view text : {std::string_view{}, std::string_view{"x"}, std::string_view{max_length_text()}}) {
    SessionReply sent = sample_session_reply();
    sent.text = text;
    const SessionReply received = round_trip(sent, bytes);
    EXPECT_EQ(received.text, text);
    if (!text.empty()) {
      EXPECT_EQ(static_cast<const void*>(received.text.data()),
                static_cast<const void*>(bytes.data() + kFrameHeaderSize + SessionReply::kFixedBodySize));
    }
  }
}

TEST(WireRoundTrip, EverySampleReencodesToIdenticalBytes) {
  for (const Sample& sample : every_sample()) {
    const FrameScan scan = scan_frame(sample.frame);
    ASSERT_EQ(scan.status, FrameScan::Status::complete) << sample.name;
    auto again = decode_and_reencode(scan.frame);
    ASSERT_TRUE(again) << sample.name << ": " << again.error().describe();
    EXPECT_EQ(*again, sample.frame) << sample.name;
  }
}

TEST(WireRoundTrip, EveryTypeIsInTheCatalogueAtItsCurrentVersion) {
  // Layout 2: the client messages protocol version 3 appended fields to, and the status request and reply (the
  // state hash on demand; snapshot and uptime); layout 3: the session reply, which then gained the node's keep-alive
  // settings and the session's egress seq; every other type is at layout 1.
  const std::vector<MessageType> second_layout = {MessageType::session_open,   MessageType::egress,
                                                  MessageType::session_closed, MessageType::ingress_rejected,
                                                  MessageType::status_request, MessageType::status_reply};
  for (const Sample& sample : every_sample()) {
    const bool second =
        std::find(second_layout.begin(), second_layout.end(), type_of(sample.frame)) != second_layout.end();
    const int layout = type_of(sample.frame) == MessageType::session_reply ? 3 : second ? 2 : 1;
    EXPECT_EQ(newest_version(type_of(sample.frame)), layout) << sample.name;
    EXPECT_EQ(load_le<std::uint8_t>(sample.frame.data() + 6), layout) << sample.name << " is written as";
    EXPECT_STRNE(to_string(type_of(sample.frame)), "unknown") << sample.name;
  }
  // The gaps between the ranges, and retired types, stay unknown.
  for (const unsigned type : {6U, 15U, 27U, 31U, 44U, 45U, 48U, 0xFFFFU})
    EXPECT_EQ(newest_version(static_cast<MessageType>(type)), 0) << type;
}

// ---------------------------------------------------------------------------------------------------------------
// Append entries

TEST(WireAppend, NoEntriesIsTheFixedBodyAlone) {
  Bytes bytes;
  const PeerAppendRequest received = round_trip(append_with({}), bytes);
  EXPECT_EQ(bytes.size(), kFrameHeaderSize + PeerAppendRequest::kFixedBodySize);
  EXPECT_EQ(received.entry_count, 0U);
  EXPECT_TRUE(received.entries.empty());
  EntryCursor cursor = received.cursor();
  EntryView entry;
  EXPECT_FALSE(cursor.next(entry));
}

TEST(WireAppend, OneEntryDecodesAndIterates) {
  Bytes bytes;
  const auto one = std::span(several_entries()).first(1);
  const PeerAppendRequest received = round_trip(append_with(one), bytes);
  EXPECT_EQ(bytes.size(), kFrameHeaderSize + PeerAppendRequest::kFixedBodySize + kEntryHeaderSize + payload_a().size());
  EXPECT_EQ(received.entry_count, 1U);
  EntryCursor cursor = received.cursor();
  EntryView entry;
  ASSERT_TRUE(cursor.next(entry));
  EXPECT_EQ(entry, one[0]);
  EXPECT_FALSE(cursor.next(entry));
}

TEST(WireAppend, SeveralEntriesIncludingAnEmptyPayloadIterateInOrderAsViewsIntoTheFrame) {
  Bytes bytes;
  const PeerAppendRequest received = round_trip(append_with(several_entries()), bytes);
  EXPECT_EQ(received.entry_count, several_entries().size());
  EXPECT_EQ(received.entries.data(), bytes.data() + kFrameHeaderSize + PeerAppendRequest::kFixedBodySize);
  EXPECT_EQ(received.entries.data() + received.entries.size(), bytes.data() + bytes.size());
  EntryCursor cursor = received.cursor();
  EntryView entry;
  std::size_t at = kFrameHeaderSize + PeerAppendRequest::kFixedBodySize;
  for (const EntryView& expected : several_entries()) {
    ASSERT_TRUE(cursor.next(entry));
    EXPECT_EQ(entry, expected);
    EXPECT_EQ(entry.payload.size(), expected.payload.size());
    if (!entry.payload.empty()) {
      EXPECT_EQ(entry.payload.data(), bytes.data() + at + kEntryHeaderSize);
    }
    at += expected.encoded_size();
  }
  EXPECT_FALSE(cursor.next(entry));
  EXPECT_EQ(at, bytes.size());
}

TEST(WireAppend, EntriesSitAtTheirDocumentedOffsets) {
  const Bytes body = body_of(encoded(append_with(std::span(several_entries()).first(2))));
  EXPECT_EQ(load_le<std::uint32_t>(body.data()), kHeader.from);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 4), kHeader.to);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 8), kHeader.term);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 16), kHeader.boot);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 24), 9U);  // prev_index
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 32), 3U);  // prev_term
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 40), 8U);  // commit
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 48), 2U);  // entry_count
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 52), 0U);  // reserved
  const std::byte* entry = body.data() + 56;
  EXPECT_EQ(load_le<std::uint64_t>(entry), 10U);
  EXPECT_EQ(load_le<std::uint64_t>(entry + 8), 3U);
  EXPECT_EQ(load_le<std::uint64_t>(entry + 16), 0xAAAABBBBCCCCDDDDU);
  EXPECT_EQ(load_le<std::uint8_t>(entry + 24), 2);
  EXPECT_EQ(load_le<std::uint8_t>(entry + 25), 0);
  EXPECT_EQ(load_le<std::uint16_t>(entry + 26), 0);
  EXPECT_EQ(load_le<std::uint32_t>(entry + 28), payload_a().size());
  EXPECT_EQ(Bytes(entry + 32, entry + 32 + payload_a().size()), payload_a());
  const std::byte* second = entry + kEntryHeaderSize + payload_a().size();  // no padding between entries
  EXPECT_EQ(load_le<std::uint64_t>(second), 11U);
  EXPECT_EQ(load_le<std::uint32_t>(second + 28), 0U);
  EXPECT_EQ(second + kEntryHeaderSize, body.data() + body.size());
}

// Stands in for consensus::Entry: the protocol encodes it through a projection, without an array of views.
struct OwnEntry {
  std::uint64_t index;
  std::uint64_t term;
  std::uint8_t kind;
  std::uint64_t checksum;
  Bytes payload;
};

EntryView view_of(const OwnEntry& entry) noexcept {
  return EntryView{entry.index, entry.term, entry.checksum, entry.kind, ByteSpan(entry.payload)};
}

TEST(WireAppend, EntriesOfAnotherTypeEncodeThroughAProjectionToTheSameBytes) {
  const std::vector<OwnEntry> own = {{10, 3, 2, 0xAAAABBBBCCCCDDDD, payload_a()},
                                     {11, 3, 1, 0x1111111111111111, {}},
                                     {12, 4, 0xFF, 0xFFFFFFFFFFFFFFFF, payload_b()}};
  PeerAppendRequest request = append_with({});
  request.to_encode = EntrySource::over<OwnEntry, &view_of>(own);
  EXPECT_EQ(request.to_encode.size(), 3U);
  EXPECT_EQ(encoded(request), encoded(append_with(several_entries())));
  EXPECT_TRUE(request == append_with(several_entries()));
}

TEST(WireAppend, EqualityComparesEntriesWhicheverWayTheyAreHeld) {
  Bytes bytes;
  const PeerAppendRequest decoded = round_trip(append_with(several_entries()), bytes);
  EXPECT_TRUE(decoded == append_with(several_entries()));
  EXPECT_FALSE(decoded == append_with(std::span(several_entries()).first(2)));
  std::vector<EntryView> changed = several_entries();
  changed[1].checksum ^= 1;
  EXPECT_FALSE(decoded == append_with(changed));
  changed = several_entries();
  changed[2].payload = changed[2].payload.first(299);
  EXPECT_FALSE(decoded == append_with(changed));
}

TEST(WireAppend, TheCursorStopsAtAnEntryThatDoesNotFitInsteadOfReadingPastIt) {
  Bytes region(kEntryHeaderSize + 4);
  store_le<std::uint32_t>(region.data() + 28, 5);  // claims 5 payload bytes; 4 follow
  EntryCursor cursor{ByteSpan(region)};
  EntryView entry;
  EXPECT_FALSE(cursor.next(entry));
  EntryCursor short_header{ByteSpan(region).first(kEntryHeaderSize - 1)};
  EXPECT_FALSE(short_header.next(entry));
}

TEST(WireAppend, AnEntryLengthPointingPastTheEndIsBodyTooShort) {
  Bytes frame = encoded(append_with(std::span(several_entries()).first(1)));
  const std::size_t entry = kFrameHeaderSize + PeerAppendRequest::kFixedBodySize;
  patch<std::uint32_t>(frame, entry + 28, static_cast<std::uint32_t>(payload_a().size() + 1));
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::body_too_short) << error->describe();
  EXPECT_STREQ(error->field, "entry.payload");
  EXPECT_EQ(error->offset, entry + kEntryHeaderSize);
  EXPECT_EQ(error->value, payload_a().size());
  EXPECT_EQ(error->limit, payload_a().size() + 1);
}

TEST(WireAppend, AHugeEntryLengthIsRefusedWithoutReadingPastTheBody) {
  Bytes frame = encoded(append_with(several_entries()));
  const std::size_t entry = kFrameHeaderSize + PeerAppendRequest::kFixedBodySize;
  patch<std::uint32_t>(frame, entry + 28, 0xFFFFFFFF);
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::body_too_short);
  EXPECT_STREQ(error->field, "entry.payload");
  EXPECT_EQ(error->limit, 0xFFFFFFFFU);
}

TEST(WireAppend, ALaterEntryLengthReachingIntoNothingIsBodyTooShort) {
  Bytes frame = encoded(append_with(several_entries()));
  // The second entry (empty payload) swallows all but 4 bytes of the third: the count then wants a third entry
  // whose index does not fit.
  const std::size_t second = kFrameHeaderSize + PeerAppendRequest::kFixedBodySize + several_entries()[0].encoded_size();
  patch<std::uint32_t>(frame, second + 28, static_cast<std::uint32_t>(several_entries()[2].encoded_size() - 4));
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::body_too_short) << error->describe();
  EXPECT_STREQ(error->field, "entry.index");
  EXPECT_EQ(error->value, 4U);
  EXPECT_EQ(error->limit, 8U);
  EXPECT_EQ(error->offset + error->value, frame.size()) << "the bytes left reach the end of the frame";
}

TEST(WireAppend, ACountAboveTheEntriesPresentIsRefused) {
  const std::size_t count_at = kFrameHeaderSize + 48;
  // One more than present, still within what the region could hold by size: the walk runs out of bytes.
  Bytes frame = encoded(append_with(several_entries()));
  patch<std::uint32_t>(frame, count_at, 4);
  auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::body_too_short) << error->describe();
  EXPECT_STREQ(error->field, "entry.index");
  EXPECT_EQ(error->offset, frame.size());

  // More than the region could hold at 32 bytes an entry: refused from the count itself.
  frame = encoded(append_with(std::span(several_entries()).first(1)));
  patch<std::uint32_t>(frame, count_at, 2);
  error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field) << error->describe();
  EXPECT_STREQ(error->field, "entry_count");
  EXPECT_EQ(error->offset, count_at);
  EXPECT_EQ(error->value, 2U);
  EXPECT_EQ(error->limit, 1U);

  frame = encoded(append_with({}));
  patch<std::uint32_t>(frame, count_at, 0xFFFFFFFF);
  error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "entry_count");
  EXPECT_EQ(error->limit, 0U);
}

TEST(WireAppend, ACountBelowTheEntriesPresentLeavesBytesOverAndIsBodyTooLong) {
  for (const std::uint32_t count : {0U, 1U, 2U}) {
    Bytes frame = encoded(append_with(several_entries()));
    patch<std::uint32_t>(frame, kFrameHeaderSize + 48, count);
    const auto error = body_error(frame);
    ASSERT_TRUE(error) << "count " << count;
    EXPECT_EQ(error->code, DecodeErrc::body_too_long) << error->describe();
    EXPECT_EQ(error->value, frame.size() - kFrameHeaderSize) << "the body's size";
    std::size_t end = PeerAppendRequest::kFixedBodySize;
    for (std::size_t i = 0; i < count; ++i) end += several_entries()[i].encoded_size();
    EXPECT_EQ(error->limit, end) << "where the entries counted end";
    EXPECT_EQ(error->offset, kFrameHeaderSize + end);
  }
}

TEST(WireAppend, BytesAfterTheLastEntryAreBodyTooLong) {
  Bytes body = body_of(encoded(append_with(std::span(several_entries()).first(1))));
  const std::size_t end = body.size();
  body.resize(end + 31);  // too few to be another entry
  const auto error = body_error(raw_frame(MessageType::append_request, body));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::body_too_long) << error->describe();
  EXPECT_EQ(error->limit, end);
}

TEST(WireAppend, EntryTypeZeroAndNonZeroEntryReservedBytesAreInvalidFields) {
  const std::size_t second = kFrameHeaderSize + PeerAppendRequest::kFixedBodySize + several_entries()[0].encoded_size();
  Bytes frame = encoded(append_with(several_entries()));
  patch<std::uint8_t>(frame, second + 24, 0);
  auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "entry.type");
  EXPECT_EQ(error->offset, second + 24);
  EXPECT_EQ(error->value, 0U);

  for (std::size_t i = 0; i < 3; ++i) {
    frame = encoded(append_with(several_entries()));
    patch<std::uint8_t>(frame, second + 25 + i, 0x80);
    error = body_error(frame);
    ASSERT_TRUE(error) << "reserved byte " << i;
    EXPECT_EQ(error->code, DecodeErrc::invalid_field);
    EXPECT_STREQ(error->field, "entry.reserved");
    EXPECT_EQ(error->offset, second + 25);
    EXPECT_EQ(error->value, std::uint64_t{0x80} << (8 * i));
  }
}

TEST(WireAppend, AnyNonZeroEntryTypeIsAcceptedForConsensusToJudge) {
  for (const std::uint8_t type : {std::uint8_t{1}, std::uint8_t{2}, std::uint8_t{3}, std::uint8_t{255}}) {
    const std::vector<EntryView> entries = {{1, 1, 0, type, {}}};
    Bytes bytes;
    const PeerAppendRequest received = round_trip(append_with(entries), bytes);
    EntryCursor cursor = received.cursor();
    EntryView entry;
    ASSERT_TRUE(cursor.next(entry));
    EXPECT_EQ(entry.type, type);
  }
}

using WireAppendDeathTest = ::testing::Test;

TEST(WireAppendDeathTest, EncodingARequestHoldingBothEntrySourcesIsAProgrammerError) {
  Bytes bytes;
  PeerAppendRequest request = round_trip(append_with(several_entries()), bytes);
  request.to_encode = EntrySource(several_entries());
  EXPECT_DEATH((void)encoded(request), "assertion failed");
}

// ---------------------------------------------------------------------------------------------------------------
// Fixed fields: offsets, reserved bytes, flags and enums

TEST(WireLayout, FixedBodiesHaveTheirDocumentedSizes) {
  EXPECT_EQ(PeerVoteRequest::kBodySize, 48U);
  EXPECT_EQ(PeerVoteResponse::kBodySize, 32U);
  EXPECT_EQ(PeerAppendRequest::kFixedBodySize, 56U);
  EXPECT_EQ(PeerAppendResponse::kBodySize, 64U);
  EXPECT_EQ(PeerHeartbeat::kBodySize, 32U);
  EXPECT_EQ(PeerHeartbeatResponse::kBodySize, 24U);
  EXPECT_EQ(PeerTimeoutNow::kBodySize, 24U);
  EXPECT_EQ(PeerStandingQuery::kBodySize, 24U);
  EXPECT_EQ(PeerStandingAnswer::kBodySize, 48U);
  EXPECT_EQ(PeerSnapshotChunk::kFixedBodySize, 64U);
  EXPECT_EQ(PeerSnapshotAck::kBodySize, 56U);
  EXPECT_EQ(SessionOpen::kFixedBodySize, 40U);
  EXPECT_EQ(SessionReply::kFixedBodySize, 96U);
  EXPECT_EQ(Ingress::kFixedBodySize, 16U);
  EXPECT_EQ(Ack::kBodySize, 40U);
  EXPECT_EQ(Egress::kFixedBodySize, 32U);
  EXPECT_EQ(KeepAlive::kBodySize, 8U);
  EXPECT_EQ(SessionClose::kBodySize, 8U);
  EXPECT_EQ(SessionClosed::kBodySize, 40U);
  EXPECT_EQ(IngressRejected::kBodySize, 48U);
  EXPECT_EQ(StatusRequest::kBodySize, 8U);
  EXPECT_EQ(StatusReply::kFixedBodySize, 104U);
  EXPECT_EQ(AdminRequest::kFixedBodySize, 16U);
  EXPECT_EQ(AdminReply::kFixedBodySize, 48U);
  EXPECT_EQ(kEntryHeaderSize, 32U);
}

TEST(WireLayout, EveryPeerMessageStartsWithFromToTermBoot) {
  for (const Sample& sample : every_sample()) {
    if (static_cast<std::uint16_t>(type_of(sample.frame)) >= 32) continue;
    const Bytes body = body_of(sample.frame);
    EXPECT_EQ(load_le<std::uint32_t>(body.data()), kHeader.from) << sample.name;
    EXPECT_EQ(load_le<std::uint32_t>(body.data() + 4), kHeader.to) << sample.name;
    EXPECT_EQ(load_le<std::uint64_t>(body.data() + 8), kHeader.term) << sample.name;
    EXPECT_EQ(load_le<std::uint64_t>(body.data() + 16), kHeader.boot) << sample.name;
  }
}

TEST(WireLayout, VoteRequestFlagsArePreVoteBitZeroAndTransferBitOne) {
  const auto flags = [](bool pre_vote, bool transfer) {
    return load_le<std::uint8_t>(encoded(PeerVoteRequest{kHeader, 1, 1, pre_vote, transfer}).data() + 8 + 40);
  };
  EXPECT_EQ(flags(false, false), 0);
  EXPECT_EQ(flags(true, false), 1);
  EXPECT_EQ(flags(false, true), 2);
  EXPECT_EQ(flags(true, true), 3);
}

TEST(WireLayout, SessionReplyFieldsSitAtTheirDocumentedOffsets) {
  const Bytes body = body_of(encoded(sample_session_reply()));
  EXPECT_EQ(load_le<std::uint8_t>(body.data()), 2);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 4), 3U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 8), 7U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 16), 0x0102030405060708U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 24), 99U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 32), 0xAAAAU);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 40), 0xBBBBU);
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 48), 13U);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 52), 1U << 20U);  // max_message_size
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 56), 0U);         // replaced_session: nothing replaced
  EXPECT_EQ(as_chars(ByteSpan(body).subspan(96)), "10.0.0.3:7200");

  const Bytes replaced = body_of(encoded(replacing_session_reply()));
  ASSERT_EQ(replaced.size(), 96U);
  EXPECT_EQ(load_le<std::uint8_t>(replaced.data()), 1);  // opened
  EXPECT_EQ(load_le<std::uint64_t>(replaced.data() + 56), 0x1112131415161718U);
  EXPECT_EQ(load_le<std::uint64_t>(replaced.data() + 64), 41U);
  EXPECT_EQ(load_le<std::uint8_t>(replaced.data() + 72), 2);  // timeout
  EXPECT_EQ(load_le<std::uint8_t>(replaced.data() + 73), 0);
  EXPECT_EQ(load_le<std::uint32_t>(replaced.data() + 80), 250U);         // keepalive_interval_ms
  EXPECT_EQ(load_le<std::uint32_t>(replaced.data() + 84), 1000U);        // silence_limit_ms
  EXPECT_EQ(load_le<std::uint64_t>(replaced.data() + 88), 0x21222324U);  // egress_seq
}

TEST(WireLayout, SessionOpenFieldsSitAtTheirDocumentedOffsets) {
  const Bytes body = body_of(encoded(resuming_open()));
  ASSERT_EQ(body.size(), 40U + credential_bytes().size());
  EXPECT_EQ(load_le<std::uint64_t>(body.data()), 0x0123456789ABCDEFU);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 8), 0xFEDCBA9876543210U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 16), 0x2122232425262728U);  // session_id
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 24), 17U);                  // last_egress_seq
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 32), credential_bytes().size());
  EXPECT_EQ(Bytes(body.begin() + 40, body.end()), credential_bytes());
}

// Every node-to-client message says the sender's term and leader, as term u64 | leader_id u32 | reserved u32.
TEST(WireLayout, TermAndLeaderSitAtTheirDocumentedOffsets) {
  struct Expected {
    std::string name;
    Bytes body;
    std::size_t at;
  };
  const Bytes payload = bytes_of("reply");
  const std::vector<Expected> all = {
      {"ack", body_of(encoded(Ack{5, 6, 1000, 7, 3})), 24},
      {"egress", body_of(encoded(Egress{5, 1, ByteSpan(payload), 7, 3})), 16},
      {"session_closed", body_of(encoded(SessionClosed{5, 6, SessionCloseReason::timeout, 7, 3})), 24},
      {"ingress_rejected", body_of(encoded(IngressRejected{5, 9, 7, IngressRejectReason::gap, 7, 3})), 32},
  };
  for (const Expected& message : all) {
    EXPECT_EQ(load_le<std::uint64_t>(message.body.data() + message.at), 7U) << message.name;
    EXPECT_EQ(load_le<std::uint32_t>(message.body.data() + message.at + 8), 3U) << message.name;
    EXPECT_EQ(load_le<std::uint32_t>(message.body.data() + message.at + 12), 0U) << message.name;
  }
  const Bytes egress = body_of(encoded(Egress{5, 1, ByteSpan(payload), 7, 3}));
  EXPECT_EQ(Bytes(egress.begin() + 32, egress.end()), payload) << "the payload stays the rest of the frame";
}

TEST(WireLayout, StatusReplyFieldsSitAtTheirDocumentedOffsets) {
  const Bytes body = body_of(encoded(sample_status_reply()));
  ASSERT_EQ(body.size(), 104U);
  EXPECT_EQ(load_le<std::uint32_t>(body.data()), 2U);
  EXPECT_EQ(load_le<std::uint8_t>(body.data() + 4), 3);
  EXPECT_EQ(load_le<std::uint8_t>(body.data() + 5), 2);  // standing: recovering
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 8), 2U);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 12), 7U);  // entry_faults
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 16), 5U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 24), 100U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 32), 99U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 40), 101U);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 48), 0xFEEDFACECAFEBEEFU);
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 56), 12U);
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 64), 0U);       // member_count
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 66), 0U);       // problem_count
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 72), 90U);      // snapshot_index
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 80), 4U);       // snapshot_term
  EXPECT_EQ(load_le<std::uint64_t>(body.data() + 88), 123456U);  // uptime_ms
  EXPECT_EQ(load_le<std::uint8_t>(body.data() + 96), 1U);        // flags: the state hash is included
}

TEST(WireLayout, AdminRequestAndReplyFieldsSitAtTheirDocumentedOffsets) {
  const Bytes request = body_of(encoded(sample_admin_request()));
  ASSERT_EQ(request.size(), 16U + credential_bytes().size());
  EXPECT_EQ(load_le<std::uint8_t>(request.data()), 2U);  // transfer_leadership
  EXPECT_EQ(load_le<std::uint32_t>(request.data() + 4), 2U);
  EXPECT_EQ(load_le<std::uint32_t>(request.data() + 8), 3U);
  EXPECT_EQ(load_le<std::uint16_t>(request.data() + 12), credential_bytes().size());
  EXPECT_EQ(Bytes(request.begin() + 16, request.end()), credential_bytes());
  const Bytes reply = body_of(encoded(sample_admin_reply()));
  const std::string_view text = "writing the snapshot failed";
  ASSERT_EQ(reply.size(), 48U + text.size());
  EXPECT_EQ(load_le<std::uint8_t>(reply.data()), 1U);      // snapshot
  EXPECT_EQ(load_le<std::uint8_t>(reply.data() + 1), 3U);  // failed
  EXPECT_EQ(load_le<std::uint32_t>(reply.data() + 4), 2U);
  EXPECT_EQ(load_le<std::uint32_t>(reply.data() + 8), 1U);
  EXPECT_EQ(load_le<std::uint64_t>(reply.data() + 16), 90U);
  EXPECT_EQ(load_le<std::uint64_t>(reply.data() + 24), 4U);
  EXPECT_EQ(load_le<std::uint64_t>(reply.data() + 32), 8192U);
  EXPECT_EQ(load_le<std::uint16_t>(reply.data() + 40), text.size());
  EXPECT_EQ(as_chars(ByteSpan(reply).subspan(48)), text);
}

TEST(WireLayout, AStatusReplysMembersAndProblemsFollowItsFixedFields) {
  const Bytes body = body_of(encoded(status_reply_with_problems()));
  const std::string_view problem = "member lists differ: node 2 lists [1, 2, 3], node 1 lists [1]";
  ASSERT_EQ(body.size(), 104U + 3 * 4 + 2 + problem.size() + 2);
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 64), 3U);
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 66), 2U);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 68), 0U);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 104), 1U);
  EXPECT_EQ(load_le<std::uint32_t>(body.data() + 112), 3U);
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 116), problem.size());
  EXPECT_EQ(as_chars(ByteSpan(body).subspan(118, problem.size())), problem);
  EXPECT_EQ(load_le<std::uint16_t>(body.data() + 118 + problem.size()), 0U);
  Bytes bytes;
  const StatusReply received = round_trip(status_reply_with_problems(), bytes);
  EXPECT_EQ(static_cast<const void*>(received.problems[0].data()),
            static_cast<const void*>(bytes.data() + kFrameHeaderSize + 118))
      << "problems are views into the frame";
}

/// A byte range of a body that must hold certain values: every listed bad value there is refused as an
/// invalid_field naming `field`, at the field's own offset.
struct Violation {
  std::string name;
  Bytes frame;
  std::size_t offset;  // in the body
  std::size_t width;   // bytes patched
  std::vector<std::uint64_t> bad_values;
  std::string_view field;
  std::size_t field_offset;  // in the body: where the named field starts (a reserved run starts before `offset`)
};

std::vector<Violation> every_violation() {
  const Bytes vote = encoded(PeerVoteRequest{kHeader, 41, 40, true, false});
  const Bytes vote_response = encoded(PeerVoteResponse{kHeader, true, false});
  const Bytes append = encoded(append_with(several_entries()));
  const Bytes append_response = encoded(PeerAppendResponse{kHeader, true, 7, 8, 9, 10});
  const Bytes standing = encoded(PeerStandingAnswer{kHeader, 5, 1, false, 6});
  const Bytes reply = encoded(sample_session_reply());
  const Bytes replaced = encoded(replacing_session_reply());
  const Bytes open = encoded(resuming_open());
  const Bytes ack = encoded(Ack{5, 6, 1000, 7, 3});
  const Bytes egress = encoded(Egress{5, 1, ByteSpan(payload_a()), 7, 3});
  const Bytes closed = encoded(SessionClosed{5, 6, SessionCloseReason::timeout, 7, 3});
  const Bytes rejected = encoded(IngressRejected{5, 9, 7, IngressRejectReason::gap, 7, 3});
  const Bytes status = encoded(sample_status_reply());
  const Bytes problems = encoded(status_reply_with_problems());
  const Bytes status_request = encoded(StatusRequest{true});
  const Bytes admin_request = encoded(sample_admin_request());
  const Bytes admin_reply = encoded(sample_admin_reply());
  std::vector<Violation> all = {
      {"vote_request flags", vote, 40, 1, {0x04, 0x05, 0x80, 0xFF}, "flags", 40},
      {"vote_response granted", vote_response, 24, 1, {2, 0xFF}, "granted", 24},
      {"vote_response pre_vote", vote_response, 25, 1, {2, 0x80}, "pre_vote", 25},
      {"append_request reserved", append, 52, 4, {1, 0x80000000}, "reserved", 52},
      {"append_response success", append_response, 24, 1, {2, 0xFF}, "success", 24},
      {"standing_answer standing", standing, 32, 1, {3, 0xFF}, "standing", 32},
      {"standing_answer leader", standing, 33, 1, {2, 0xFF}, "leader", 33},
      {"standing_answer founded_with_asker", standing, 34, 1, {2, 0xFF}, "founded_with_asker", 34},
      {"session_reply status", reply, 0, 1, {0, 6, 0xFF}, "status", 0},
      {"session_reply replaced_reason", replaced, 72, 1, {5, 0xFF}, "replaced_reason", 72},
      {"session_open credential_length", open, 32, 2, {kMaxCredentialLength + 1, 0xFFFF}, "credential_length", 32},
      {"ack reserved", ack, 36, 4, {1, 0xFFFFFFFF}, "reserved", 36},
      {"session_closed reason", closed, 16, 1, {0, 5, 0xFF}, "reason", 16},
      {"ingress_rejected reason", rejected, 24, 1, {0, 5, 0xFF}, "reason", 24},
      {"status_reply role", status, 4, 1, {0, 5, 0xFF}, "role", 4},
      {"status_reply standing", status, 5, 1, {3, 0xFF}, "standing", 5},
      {"status_reply member_count", status, 64, 2, {kMaxMembers + 1, 0xFFFF}, "member_count", 64},
      {"status_reply problem_count", status, 66, 2, {kMaxStatusProblems + 1, 0xFFFF}, "problem_count", 66},
      {"status_reply problem_length", problems, 116, 2, {kMaxErrorTextLength + 1, 0xFFFF}, "problem_length", 116},
      {"status_reply member_ids", problems, 108, 4, {0, 1}, "member_ids", 108},
      {"status_reply flags", status, 96, 1, {2, 0xFF}, "flags", 96},
      {"status_request flags", status_request, 0, 1, {2, 0xFF}, "flags", 0},
      {"admin_request command", admin_request, 0, 1, {0, 4, 0xFF}, "command", 0},
      {"admin_request credential_length",
       admin_request,
       12,
       2,
       {kMaxCredentialLength + 1, 0xFFFF},
       "credential_length",
       12},
      {"admin_reply command", admin_reply, 0, 1, {0, 4, 0xFF}, "command", 0},
      {"admin_reply outcome", admin_reply, 1, 1, {0, 6, 0xFF}, "outcome", 1},
      {"admin_reply text_length", admin_reply, 40, 2, {kMaxErrorTextLength + 1, 0xFFFF}, "text_length", 40},
  };
  // Every byte of every reserved run, one at a time.
  const auto reserved_run = [&all](const std::string& name, const Bytes& frame, std::size_t start, std::size_t size) {
    for (std::size_t i = 0; i < size; ++i)
      all.push_back({name + " byte " + std::to_string(i), frame, start + i, 1, {1, 0x80}, "reserved", start});
  };
  reserved_run("vote_request reserved", vote, 41, 7);
  reserved_run("vote_response reserved", vote_response, 26, 6);
  reserved_run("append_response reserved", append_response, 25, 7);
  reserved_run("standing_answer reserved", standing, 35, 5);
  reserved_run("session_reply reserved after status", reply, 1, 3);
  reserved_run("session_reply reserved after text_length", reply, 50, 2);
  reserved_run("session_reply reserved after replaced_reason", replaced, 73, 7);
  reserved_run("status_request reserved", status_request, 1, 7);
  reserved_run("status_reply reserved after flags", status, 97, 7);
  reserved_run("admin_request reserved after command", admin_request, 1, 3);
  reserved_run("admin_request reserved after credential_length", admin_request, 14, 2);
  reserved_run("admin_reply reserved after outcome", admin_reply, 2, 2);
  reserved_run("admin_reply reserved after leader_id", admin_reply, 12, 4);
  reserved_run("admin_reply reserved after text_length", admin_reply, 42, 6);
  reserved_run("session_open reserved after credential_length", open, 34, 6);
  reserved_run("egress reserved after leader_id", egress, 28, 4);
  reserved_run("session_closed reserved", closed, 17, 7);
  reserved_run("session_closed reserved after leader_id", closed, 36, 4);
  reserved_run("ingress_rejected reserved", rejected, 25, 7);
  reserved_run("ingress_rejected reserved after leader_id", rejected, 44, 4);
  reserved_run("status_reply reserved after standing", status, 6, 2);
  reserved_run("status_reply reserved after problem_count", status, 68, 4);
  return all;
}

TEST(WireField, EveryReservedFlagAndEnumViolationIsAnInvalidFieldNamingTheField) {
  for (const Violation& violation : every_violation()) {
    for (const std::uint64_t bad : violation.bad_values) {
      Bytes frame = violation.frame;
      const std::size_t at = kFrameHeaderSize + violation.offset;
      switch (violation.width) {
        case 1: patch<std::uint8_t>(frame, at, static_cast<std::uint8_t>(bad)); break;
        case 2: patch<std::uint16_t>(frame, at, static_cast<std::uint16_t>(bad)); break;
        case 4: patch<std::uint32_t>(frame, at, static_cast<std::uint32_t>(bad)); break;
        default: FAIL() << "width " << violation.width;
      }
      const auto error = body_error(frame);
      ASSERT_TRUE(error) << violation.name << " = " << bad << " decoded";
      EXPECT_EQ(error->code, DecodeErrc::invalid_field) << violation.name << ": " << error->describe();
      EXPECT_EQ(std::string_view(error->field), violation.field) << violation.name;
      EXPECT_EQ(error->offset, kFrameHeaderSize + violation.field_offset) << violation.name;
      const std::uint64_t shift = 8 * (violation.offset - violation.field_offset);
      EXPECT_EQ(error->value, bad << shift) << violation.name;
    }
  }
}

TEST(WireField, ASessionReplyTextLongerThanTheMaximumIsRefusedEvenWhenTheBytesFollow) {
  SessionReply reply = sample_session_reply();
  const std::string text(kMaxErrorTextLength + 1, 'z');
  Bytes body = body_of(encoded(SessionReply{reply.status, 3, 7, 1, 2, Incarnation{}, 0, ""}));
  store_le<std::uint16_t>(body.data() + 48, static_cast<std::uint16_t>(text.size()));
  const Bytes tail = bytes_of(text);
  body.insert(body.end(), tail.begin(), tail.end());
  const auto error = body_error(raw_frame(MessageType::session_reply, body));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field);
  EXPECT_STREQ(error->field, "text_length");
  EXPECT_EQ(error->value, kMaxErrorTextLength + 1);
  EXPECT_EQ(error->limit, kMaxErrorTextLength);
  EXPECT_EQ(error->offset, kFrameHeaderSize + 48);
}

TEST(WireField, ACredentialLongerThanTheMaximumIsRefusedEvenWhenTheBytesFollow) {
  const Bytes longest(kMaxCredentialLength + 1, std::byte{0x5A});
  Bytes body = body_of(encoded(SessionOpen{1, 2, 3, 4, {}}));
  store_le<std::uint16_t>(body.data() + 32, static_cast<std::uint16_t>(longest.size()));
  body.insert(body.end(), longest.begin(), longest.end());
  const auto error = body_error(raw_frame(MessageType::session_open, body));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field) << error->describe();
  EXPECT_STREQ(error->field, "credential_length");
  EXPECT_EQ(error->value, kMaxCredentialLength + 1);
  EXPECT_EQ(error->limit, kMaxCredentialLength);
  EXPECT_EQ(error->offset, kFrameHeaderSize + 32);
}

TEST(WireField, ACredentialCutShortOfItsLengthIsBodyTooShort) {
  Bytes frame = encoded(resuming_open());
  patch<std::uint16_t>(frame, kFrameHeaderSize + 32, static_cast<std::uint16_t>(credential_bytes().size() + 1));
  const auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::body_too_short) << error->describe();
  EXPECT_STREQ(error->field, "credential");
  EXPECT_EQ(error->value, credential_bytes().size());
  EXPECT_EQ(error->limit, credential_bytes().size() + 1);
}

using WireFieldDeathTest = ::testing::Test;

TEST(WireFieldDeathTest, EncodingACredentialLongerThanTheMaximumIsAProgrammerError) {
  const Bytes longest(kMaxCredentialLength + 1, std::byte{1});
  EXPECT_DEATH((void)encoded(SessionOpen{1, 2, 0, 0, ByteSpan(longest)}), "assertion failed");
}

TEST(WireField, ASessionReplyTextCutShortOfItsLengthIsBodyTooShort) {
  Bytes frame = encoded(sample_session_reply());
  patch<std::uint16_t>(frame, kFrameHeaderSize + 48, 0xFFFF);
  auto error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::invalid_field) << "0xFFFF is over the maximum before it is over the body";

  patch<std::uint16_t>(frame, kFrameHeaderSize + 48, 14);  // 13 bytes follow
  error = body_error(frame);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, DecodeErrc::body_too_short);
  EXPECT_STREQ(error->field, "text");
  EXPECT_EQ(error->value, 13U);
  EXPECT_EQ(error->limit, 14U);
}

// ---------------------------------------------------------------------------------------------------------------
// Truncation and bodies too long

TEST(WireTruncation, EveryPrefixOfEveryFrameAsksForMoreBytes) {
  for (const Sample& sample : every_sample()) {
    for (std::size_t size = 0; size < sample.frame.size(); ++size) {
      const FrameScan scan = scan_frame(prefix(sample.frame, size));
      ASSERT_EQ(scan.status, FrameScan::Status::need_more) << sample.name << " prefix " << size;
      EXPECT_EQ(scan.needed, size < kFrameHeaderSize ? 0 : sample.frame.size()) << sample.name << " prefix " << size;
    }
  }
}

TEST(WireTruncation, EveryShorterBodyIsRefusedCleanlyOrIsAShorterPayload) {
  for (const Sample& sample : every_sample()) {
    const Bytes body = body_of(sample.frame);
    for (std::size_t size = 0; size < body.size(); ++size) {
      // An honest header around a body cut short: exactly sized, so an over-read is caught by ASan.
      const auto error = body_error(raw_frame(type_of(sample.frame), prefix(body, size)));
      if (size >= sample.fixed_size && sample.payload_tail) {
        EXPECT_FALSE(error) << sample.name << ": a shorter payload is still a message";
        continue;
      }
      ASSERT_TRUE(error) << sample.name << ": a " << size << "-byte body decoded";
      if (size < sample.fixed_size) {
        EXPECT_EQ(error->code, DecodeErrc::body_too_short) << sample.name << ": " << error->describe();
        EXPECT_EQ(error->offset + error->value, kFrameHeaderSize + size) << sample.name << " at " << size;
        EXPECT_GT(error->limit, error->value) << sample.name << " at " << size;
      } else {
        EXPECT_TRUE(error->code == DecodeErrc::body_too_short || error->code == DecodeErrc::invalid_field)
            << sample.name << ": " << error->describe();
      }
      EXPECT_FALSE(error->describe().empty());
    }
  }
}

struct Field {
  std::string_view name;
  std::size_t size;
};

std::vector<Field> raft_header_then(std::vector<Field> rest) {
  std::vector<Field> layout = {{"from", 4}, {"to", 4}, {"term", 8}, {"boot", 8}};
  layout.insert(layout.end(), rest.begin(), rest.end());
  return layout;
}

/// For each honest frame whose body stops inside the fixed layout, decoding names the field it stopped in.
void expect_every_short_body_names_its_field(const Bytes& frame, const std::vector<Field>& layout) {
  const Bytes full_body = body_of(frame);
  std::size_t total = 0;
  for (const Field& field : layout) total += field.size;
  for (std::size_t size = 0; size < total; ++size) {
    const auto error = body_error(raw_frame(type_of(frame), prefix(full_body, size)));
    ASSERT_TRUE(error) << "a " << size << "-byte " << to_string(type_of(frame)) << " body decoded";
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
    EXPECT_EQ(std::string_view(error->field), field->name) << to_string(type_of(frame)) << " body of " << size;
    EXPECT_EQ(error->offset, kFrameHeaderSize + start);
    EXPECT_EQ(error->limit, field->size);
  }
}

TEST(WireTruncation, ABodyCutShortNamesTheFieldItStopsIn) {
  expect_every_short_body_names_its_field(
      encoded(PeerVoteRequest{kHeader, 1, 2, true, false}),
      raft_header_then({{"last_index", 8}, {"last_term", 8}, {"flags", 1}, {"reserved", 7}}));
  expect_every_short_body_names_its_field(encoded(PeerVoteResponse{kHeader, true, true}),
                                          raft_header_then({{"granted", 1}, {"pre_vote", 1}, {"reserved", 6}}));
  expect_every_short_body_names_its_field(
      encoded(append_with(several_entries())),
      raft_header_then({{"prev_index", 8}, {"prev_term", 8}, {"commit", 8}, {"entry_count", 4}, {"reserved", 4}}));
  expect_every_short_body_names_its_field(encoded(PeerAppendResponse{kHeader, false, 1, 2, 3, 4}),
                                          raft_header_then({{"success", 1},
                                                            {"reserved", 7},
                                                            {"match_index", 8},
                                                            {"rejected_prev", 8},
                                                            {"conflict_index", 8},
                                                            {"conflict_term", 8}}));
  expect_every_short_body_names_its_field(encoded(PeerHeartbeat{kHeader, 1}), raft_header_then({{"commit", 8}}));
  expect_every_short_body_names_its_field(encoded(PeerTimeoutNow{kHeader}), raft_header_then({}));
  expect_every_short_body_names_its_field(encoded(PeerStandingAnswer{kHeader, 1, 0, false, 2}),
                                          raft_header_then({{"asker_boot", 8},
                                                            {"standing", 1},
                                                            {"leader", 1},
                                                            {"founded_with_asker", 1},
                                                            {"reserved", 5},
                                                            {"last_index", 8}}));
  expect_every_short_body_names_its_field(
      encoded(PeerSnapshotChunk{kHeader, 1, 2, 3, 4, 0, {}}),
      raft_header_then({{"index", 8}, {"term", 8}, {"size", 8}, {"checksum", 8}, {"offset", 8}}));
  expect_every_short_body_names_its_field(
      encoded(PeerSnapshotAck{kHeader, 1, 2, 3, 4}),
      raft_header_then({{"index", 8}, {"term", 8}, {"checksum", 8}, {"received", 8}}));
  expect_every_short_body_names_its_field(encoded(resuming_open()), {{"client_id_high", 8},
                                                                     {"client_id_low", 8},
                                                                     {"session_id", 8},
                                                                     {"last_egress_seq", 8},
                                                                     {"credential_length", 2},
                                                                     {"reserved", 6},
                                                                     {"credential", credential_bytes().size()}});
  expect_every_short_body_names_its_field(encoded(sample_session_reply()), {{"status", 1},
                                                                            {"reserved", 3},
                                                                            {"leader_id", 4},
                                                                            {"term", 8},
                                                                            {"session_id", 8},
                                                                            {"last_applied_seq", 8},
                                                                            {"incarnation.high", 8},
                                                                            {"incarnation.low", 8},
                                                                            {"text_length", 2},
                                                                            {"reserved", 2},
                                                                            {"max_message_size", 4},
                                                                            {"replaced_session", 8},
                                                                            {"replaced_last_seq", 8},
                                                                            {"replaced_reason", 1},
                                                                            {"reserved", 7},
                                                                            {"keepalive_interval_ms", 4},
                                                                            {"silence_limit_ms", 4},
                                                                            {"egress_seq", 8},
                                                                            {"text", 13}});
  expect_every_short_body_names_its_field(encoded(Ingress{1, 2, ByteSpan(payload_a())}),
                                          {{"session_id", 8}, {"seq", 8}});
  expect_every_short_body_names_its_field(
      encoded(Ack{1, 2, 3, 4, 5}),
      {{"session_id", 8}, {"applied_seq", 8}, {"log_position", 8}, {"term", 8}, {"leader_id", 4}, {"reserved", 4}});
  expect_every_short_body_names_its_field(
      encoded(Egress{1, 2, {}, 3, 4}),
      {{"session_id", 8}, {"egress_seq", 8}, {"term", 8}, {"leader_id", 4}, {"reserved", 4}});
  expect_every_short_body_names_its_field(encoded(KeepAlive{1}), {{"session_id", 8}});
  expect_every_short_body_names_its_field(encoded(SessionClose{1}), {{"session_id", 8}});
  expect_every_short_body_names_its_field(encoded(SessionClosed{1, 2, SessionCloseReason::service, 3, 4}),
                                          {{"session_id", 8},
                                           {"last_applied_seq", 8},
                                           {"reason", 1},
                                           {"reserved", 7},
                                           {"term", 8},
                                           {"leader_id", 4},
                                           {"reserved", 4}});
  expect_every_short_body_names_its_field(encoded(IngressRejected{1, 2, 3, IngressRejectReason::too_large, 4, 5}),
                                          {{"session_id", 8},
                                           {"seq", 8},
                                           {"expected_seq", 8},
                                           {"reason", 1},
                                           {"reserved", 7},
                                           {"term", 8},
                                           {"leader_id", 4},
                                           {"reserved", 4}});
  expect_every_short_body_names_its_field(
      encoded(sample_status_reply()),
      {{"node_id", 4},        {"role", 1},          {"standing", 1},     {"reserved", 2},      {"leader_id", 4},
       {"entry_faults", 4},   {"term", 8},          {"commit_index", 8}, {"applied_index", 8}, {"last_index", 8},
       {"state_hash", 8},     {"open_sessions", 8}, {"member_count", 2}, {"problem_count", 2}, {"reserved", 4},
       {"snapshot_index", 8}, {"snapshot_term", 8}, {"uptime_ms", 8},    {"flags", 1},         {"reserved", 7}});
}

TEST(WireTruncation, AnAppendRequestCutInsideAnEntryNamesTheEntryField) {
  // A long first entry, so that the count of 2 passes the size pre-check and the walk finds where the second ends.
  const std::vector<EntryView> entries = {several_entries()[2], several_entries()[0]};
  const Bytes body = body_of(encoded(append_with(entries)));
  const std::vector<Field> second = {{"entry.index", 8},  {"entry.term", 8},     {"entry.checksum", 8},
                                     {"entry.type", 1},   {"entry.reserved", 3}, {"entry.payload_length", 4},
                                     {"entry.payload", 7}};
  std::size_t start = PeerAppendRequest::kFixedBodySize + entries[0].encoded_size();
  for (const Field& field : second) {
    for (std::size_t size = start; size < start + field.size; ++size) {
      const auto error = body_error(raw_frame(MessageType::append_request, prefix(body, size)));
      ASSERT_TRUE(error) << size;
      EXPECT_EQ(error->code, DecodeErrc::body_too_short) << error->describe();
      EXPECT_EQ(std::string_view(error->field), field.name) << size;
      EXPECT_EQ(error->offset, kFrameHeaderSize + start);
      EXPECT_EQ(error->value, size - start);
      EXPECT_EQ(error->limit, field.size);
    }
    start += field.size;
  }
}

TEST(WireBody, ABodyLongerThanItsFixedLayoutIsBodyTooLong) {
  for (const Sample& sample : every_sample()) {
    if (sample.payload_tail) continue;  // extra bytes are more payload
    if (type_of(sample.frame) == MessageType::append_request && sample.name != "append_request/0") continue;
    for (const std::size_t extra : {std::size_t{1}, std::size_t{8}, std::size_t{100}}) {
      Bytes body = body_of(sample.frame);
      const std::size_t end = body.size();
      body.resize(end + extra, std::byte{0});
      const auto error = body_error(raw_frame(type_of(sample.frame), body));
      ASSERT_TRUE(error) << sample.name << " with " << extra << " extra bytes decoded";
      EXPECT_EQ(error->code, DecodeErrc::body_too_long) << sample.name << ": " << error->describe();
      EXPECT_EQ(error->value, end + extra) << sample.name;
      EXPECT_EQ(error->limit, end) << sample.name;
      EXPECT_EQ(error->offset, kFrameHeaderSize + end) << sample.name;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Layout 1 of the messages protocol version 3 extended: still decoded, their newer fields zero, and written again
// as layout 2 with the same fields

template <typename Message>
Result<Message, DecodeError> decode_frame(const Bytes& bytes) {
  const FrameScan scan = scan_frame(bytes);
  EXPECT_EQ(scan.status, FrameScan::Status::complete) << scan.error.describe();
  if (scan.status != FrameScan::Status::complete) return unexpected(DecodeError{});
  return decode<Message>(scan.frame);
}

/// The message re-encoded (as the newest layout) decodes to an equal message.
template <typename Message>
void expect_rewritten_alike(const Message& message) {
  const Bytes again = encoded(message);
  EXPECT_EQ(load_le<std::uint8_t>(again.data() + 6), Message::kVersion);
  const auto decoded = decode_frame<Message>(again);
  ASSERT_TRUE(decoded) << decoded.error().describe();
  EXPECT_TRUE(*decoded == message) << to_string(Message::kType);
}

TEST(WireOldLayout, ASessionOpenOfLayoutOneAsksForNoResumeAndCarriesNoCredential) {
  const Bytes body = BodyBuilder().put<std::uint64_t>(0xC1).put<std::uint64_t>(0xE7).bytes();
  const auto open = decode_frame<SessionOpen>(raw_frame(MessageType::session_open, body, 1));
  ASSERT_TRUE(open) << open.error().describe();
  EXPECT_EQ(open->client_id_high, 0xC1U);
  EXPECT_EQ(open->client_id_low, 0xE7U);
  EXPECT_EQ(open->session_id, 0U);
  EXPECT_EQ(open->last_egress_seq, 0U);
  EXPECT_TRUE(open->credential.empty());
  expect_rewritten_alike(*open);
}

TEST(WireOldLayout, ASessionReplyOfLayoutOneReplacesNothingAndHasItsTextAfterFiftySixBytes) {
  const Bytes body = BodyBuilder()
                         .put<std::uint8_t>(1)  // opened
                         .zeros(3)
                         .put<std::uint32_t>(2)   // leader_id
                         .put<std::uint64_t>(9)   // term
                         .put<std::uint64_t>(10)  // session_id
                         .put<std::uint64_t>(4)   // last_applied_seq
                         .put<std::uint64_t>(0x1C)
                         .put<std::uint64_t>(0x2D)
                         .put<std::uint16_t>(2)  // text_length
                         .zeros(2)
                         .put<std::uint32_t>(64)  // max_message_size
                         .append(bytes_of("hi"))
                         .bytes();
  // The decoded text views the frame: keep it alive while the reply is read.
  const Bytes frame = raw_frame(MessageType::session_reply, body, 1);
  const auto reply = decode_frame<SessionReply>(frame);
  ASSERT_TRUE(reply) << reply.error().describe();
  EXPECT_EQ(reply->status, SessionStatus::opened);
  EXPECT_EQ(reply->leader_id, 2U);
  EXPECT_EQ(reply->term, 9U);
  EXPECT_EQ(reply->session_id, 10U);
  EXPECT_EQ(reply->last_applied_seq, 4U);
  EXPECT_EQ(reply->incarnation, (Incarnation{0x1C, 0x2D}));
  EXPECT_EQ(reply->max_message_size, 64U);
  EXPECT_EQ(reply->text, "hi");
  EXPECT_EQ(reply->replaced_session, 0U);
  EXPECT_EQ(reply->replaced_last_seq, 0U);
  EXPECT_EQ(reply->replaced_reason, SessionCloseReason{});
  expect_rewritten_alike(*reply);
}

// A layout 1 status request (an older tool) asks for the state hash, as every request did then; a layout 1 reply
// carried it, and says nothing of snapshots or uptime.
TEST(WireOldLayout, AStatusRequestAndReplyOfLayoutOneCarryTheStateHash) {
  const auto request = decode_frame<StatusRequest>(raw_frame(MessageType::status_request, Bytes{}, 1));
  ASSERT_TRUE(request) << request.error().describe();
  EXPECT_TRUE(request->state_hash);

  Bytes body = body_of(encoded(sample_status_reply()));
  body.resize(72);  // layout 1: the fixed fields up to the reserved word, then (none) members and problems
  const auto reply = decode_frame<StatusReply>(raw_frame(MessageType::status_reply, body, 1));
  ASSERT_TRUE(reply) << reply.error().describe();
  EXPECT_EQ(reply->state_hash, 0xFEEDFACECAFEBEEFU);
  EXPECT_TRUE(reply->state_hash_included);
  EXPECT_EQ(reply->snapshot_index, 0U);
  EXPECT_EQ(reply->uptime_ms, 0U);
  EXPECT_EQ(reply->open_sessions, 12U);
}

// "busy" is new in layout 2: a layout 1 sender cannot have meant it.
TEST(WireOldLayout, ASessionReplyOfLayoutOneCannotSayBusy) {
  Bytes body = body_of(encoded(SessionReply{}));
  body.resize(56);  // layout 1's fixed fields, no text
  store_le<std::uint8_t>(body.data(), static_cast<std::uint8_t>(SessionStatus::busy));
  const auto reply = decode_frame<SessionReply>(raw_frame(MessageType::session_reply, body, 1));
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code, DecodeErrc::invalid_field) << reply.error().describe();
  EXPECT_STREQ(reply.error().field, "status");
  EXPECT_EQ(reply.error().limit, static_cast<std::uint64_t>(SessionStatus::rejected));
  store_le<std::uint8_t>(body.data(), static_cast<std::uint8_t>(SessionStatus::rejected));
  EXPECT_TRUE(decode_frame<SessionReply>(raw_frame(MessageType::session_reply, body, 1)));
}

TEST(WireOldLayout, AnEgressOfLayoutOneHasNoTermAndItsPayloadRightAfterTheSeq) {
  const Bytes body = BodyBuilder().put<std::uint64_t>(5).put<std::uint64_t>(3).append(bytes_of("abc")).bytes();
  const Bytes frame = raw_frame(MessageType::egress, body, 1);
  const auto egress = decode_frame<Egress>(frame);
  ASSERT_TRUE(egress) << egress.error().describe();
  EXPECT_EQ(egress->session_id, 5U);
  EXPECT_EQ(egress->egress_seq, 3U);
  EXPECT_EQ(egress->term, 0U) << "0: the sender did not say";
  EXPECT_EQ(egress->leader_id, 0U);
  EXPECT_EQ(as_chars(egress->payload), "abc");
  EXPECT_EQ(egress->payload.data(), frame.data() + kFrameHeaderSize + 16);
  expect_rewritten_alike(*egress);
}

TEST(WireOldLayout, ASessionClosedAndAnIngressRejectedOfLayoutOneHaveNoTermOrLeader) {
  const Bytes closed_body =
      BodyBuilder().put<std::uint64_t>(5).put<std::uint64_t>(6).put<std::uint8_t>(2).zeros(7).bytes();
  const auto closed = decode_frame<SessionClosed>(raw_frame(MessageType::session_closed, closed_body, 1));
  ASSERT_TRUE(closed) << closed.error().describe();
  EXPECT_EQ(*closed, (SessionClosed{5, 6, SessionCloseReason::timeout, 0, 0}));
  expect_rewritten_alike(*closed);

  const Bytes rejected_body = BodyBuilder()
                                  .put<std::uint64_t>(5)
                                  .put<std::uint64_t>(9)
                                  .put<std::uint64_t>(7)
                                  .put<std::uint8_t>(2)
                                  .zeros(7)
                                  .bytes();
  const auto rejected = decode_frame<IngressRejected>(raw_frame(MessageType::ingress_rejected, rejected_body, 1));
  ASSERT_TRUE(rejected) << rejected.error().describe();
  EXPECT_EQ(*rejected, (IngressRejected{5, 9, 7, IngressRejectReason::gap, 0, 0}));
  expect_rewritten_alike(*rejected);
}

// A layout 1 header on a layout 2 body: the fields layout 1 does not have are bytes too many, never misread.
TEST(WireOldLayout, ALayoutTwoBodyUnderALayoutOneHeaderIsBodyTooLong) {
  const std::vector<std::pair<Bytes, std::size_t>> cases = {
      {encoded(SessionOpen{1, 2}), 16},
      {encoded(SessionReply{}), 56},
      {encoded(SessionClosed{5, 6, SessionCloseReason::timeout, 7, 3}), 24},
      {encoded(IngressRejected{5, 9, 7, IngressRejectReason::gap, 7, 3}), 32},
      {encoded(StatusRequest{true}), 0},
  };
  for (const auto& [frame, layout_one_size] : cases) {
    const auto error = body_error(raw_frame(type_of(frame), body_of(frame), 1));
    ASSERT_TRUE(error) << to_string(type_of(frame));
    EXPECT_EQ(error->code, DecodeErrc::body_too_long) << error->describe();
    EXPECT_EQ(error->limit, layout_one_size) << to_string(type_of(frame));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Names

TEST(WireNames, EveryTypeAndEnumValueHasAName) {
  EXPECT_STREQ(to_string(MessageType::vote_request), "vote_request");
  EXPECT_STREQ(to_string(MessageType::append_request), "append_request");
  EXPECT_STREQ(to_string(MessageType::timeout_now), "timeout_now");
  EXPECT_STREQ(to_string(MessageType::session_open), "session_open");
  EXPECT_STREQ(to_string(MessageType::ingress_rejected), "ingress_rejected");
  EXPECT_STREQ(to_string(MessageType::status_reply), "status_reply");
  EXPECT_STREQ(to_string(SessionStatus::redirect), "redirect");
  EXPECT_STREQ(to_string(SessionStatus::busy), "busy");
  EXPECT_STREQ(to_string(SessionCloseReason::unknown_session), "unknown_session");
  EXPECT_STREQ(to_string(IngressRejectReason::gap), "gap");
  EXPECT_STREQ(to_string(NodeRole::pre_candidate), "pre_candidate");
  for (unsigned value = 1; value <= 4; ++value) {
    const auto byte = static_cast<std::uint8_t>(value);
    EXPECT_STRNE(to_string(static_cast<SessionStatus>(byte)), "unknown") << value;
    EXPECT_STRNE(to_string(static_cast<SessionCloseReason>(byte)), "unknown") << value;
    EXPECT_STRNE(to_string(static_cast<IngressRejectReason>(byte)), "unknown") << value;
    EXPECT_STRNE(to_string(static_cast<NodeRole>(byte)), "unknown") << value;
  }
  EXPECT_STREQ(to_string(static_cast<NodeRole>(0)), "unknown");
  EXPECT_STREQ(to_string(static_cast<SessionStatus>(6)), "unknown");
}

}  // namespace
}  // namespace cohort::protocol

// Fuzz target for the frame scanner, the message decoders and the handshake judges.
//
// For any byte string: scan frames off its front one after the other (with a small and with the default maximum
// frame length); decode each complete frame as the message its header names; every message that decodes must
// encode back to exactly the bytes it came from (one of an older layout, which is written as the newest: to a
// frame that decodes to an equal message). An append request's entries are walked and re-encoded from
// views as well; decoded enums must have names. The first frame is also judged as a hello and as a welcome.
// Any inconsistency aborts (a crash is what the fuzzer reports); over-reads and UB are the sanitizers' to find.
//
// Memory stays bounded: decoded messages are views into the input, and re-encodings go into buffers no larger
// than the input (a frame that decodes re-encodes to its own size), or a few fixed fields larger for an older
// layout.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/catalogue.h"
#include "protocol/handshake.h"

namespace cohort::protocol {
namespace {

constexpr std::uint32_t kSmallMaxFrameLength = 64;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "frame_fuzz: %s\n", what);
  std::abort();
}

void check(bool condition, const char* what) {
  if (!condition) fail(what);
}

/// A decode error must describe itself, and its numbers must be consistent with the frame it came from.
void check_body_error(const DecodeError& error, const Frame& frame) {
  check(!error.describe().empty(), "empty description");
  check(error.offset <= frame.header.length, "error offset beyond the frame");
  switch (error.code) {
    case DecodeErrc::body_too_short:
      check(error.offset + error.value == frame.header.length, "body_too_short: bytes left do not reach the end");
      check(error.value < error.limit, "body_too_short: enough bytes were left");
      break;
    case DecodeErrc::body_too_long:
      check(error.value == frame.body.size(), "body_too_long: value is not the body size");
      check(error.limit < error.value, "body_too_long: layout end not before the body end");
      break;
    case DecodeErrc::bad_magic:
      check(frame.header.type == MessageType::hello, "bad_magic outside a hello");
      check(error.value != kHandshakeMagic, "bad_magic with the right magic");
      break;
    case DecodeErrc::invalid_field: check(error.offset >= kFrameHeaderSize, "invalid_field in the header"); break;
    case DecodeErrc::length_below_header:
    case DecodeErrc::length_above_maximum:
    case DecodeErrc::unknown_type:
    case DecodeErrc::unsupported_version:
    case DecodeErrc::reserved_flags: fail("a header error from a body decoder");
  }
}

/// Encodes `message` and checks that it gives exactly `original`.
template <typename Message>
void check_encodes_to(const Message& message, ByteSpan original) {
  static std::vector<std::byte> again;  // reused: no allocation per input once it has grown
  const std::size_t size = frame_size(message);
  check(size == original.size(), "a decoded message's frame size differs from the frame it came from");
  again.assign(size, std::byte{0});
  const std::size_t written = encode_frame(message, MutableByteSpan(again));
  check(written == size, "encode_frame wrote a different size");
  if (std::memcmp(again.data(), original.data(), size) != 0) fail("re-encoding differs from the original frame");
}

/// A message decoded from an older layout, encoded (as the newest), must decode again to an equal message.
template <typename Message>
void check_rewrites_alike(const Message& message) {
  static std::vector<std::byte> again;
  again.assign(frame_size(message), std::byte{0});
  (void)encode_frame(message, MutableByteSpan(again));
  const FrameScan scan = scan_frame(again, kMaxFrameLengthCeiling);
  check(scan.status == FrameScan::Status::complete, "an older layout re-encoded does not scan");
  const auto decoded = decode<Message>(scan.frame);
  check(decoded.has_value(), "an older layout re-encoded does not decode");
  check(*decoded == message, "an older layout re-encoded decodes to another message");
}

bool inside(ByteSpan part, const Frame& frame) {
  const std::byte* end = frame.body.data() + frame.body.size();
  return part.empty() || (part.data() >= frame.body.data() && part.data() + part.size() <= end);
}

bool named(const char* name) { return std::string_view(name) != "unknown"; }

// Checks beyond the byte-exact round trip, for messages with more to check.
template <typename Message>
void check_decoded(const Message& /*message*/, const Frame& /*frame*/, ByteSpan /*original*/) {}

void check_decoded(const PeerAppendRequest& request, const Frame& frame, ByteSpan original) {
  check(inside(request.entries, frame), "the entries region is not inside the frame");
  std::vector<EntryView> views;
  EntryCursor cursor = request.cursor();
  EntryView entry;
  std::size_t region = 0;
  while (cursor.next(entry)) {
    check(entry.type != 0, "an entry of type 0 decoded");
    check(inside(entry.payload, frame), "an entry's payload is not inside the frame");
    region += entry.encoded_size();
    views.push_back(entry);
  }
  check(views.size() == request.entry_count, "the cursor found a different number of entries than entry_count");
  check(region == request.entries.size(), "the entries do not fill the region exactly");
  // The same entries, encoded from views rather than from the raw region, give the same bytes.
  PeerAppendRequest rebuilt = request;
  rebuilt.entry_count = 0;
  rebuilt.entries = {};
  rebuilt.to_encode = EntrySource(views);
  check(rebuilt == request, "a request re-built from its entries' views is not equal to it");
  check_encodes_to(rebuilt, original);
}

void check_decoded(const SessionOpen& open, const Frame& frame, ByteSpan /*original*/) {
  check(open.credential.size() <= kMaxCredentialLength, "a credential over the maximum decoded");
  check(inside(open.credential, frame), "a credential is not inside the frame");
}

void check_decoded(const SessionReply& reply, const Frame& frame, ByteSpan /*original*/) {
  check(named(to_string(reply.status)), "a session reply with an unnamed status decoded");
  check(reply.replaced_reason == SessionCloseReason{} || named(to_string(reply.replaced_reason)),
        "a session reply with an unnamed replaced_reason decoded");
  check(reply.text.size() <= kMaxErrorTextLength, "a session reply text over the maximum decoded");
  check(inside(as_bytes(reply.text), frame), "a session reply text is not inside the frame");
}

void check_decoded(const Ingress& ingress, const Frame& frame, ByteSpan /*original*/) {
  check(inside(ingress.payload, frame), "an ingress payload is not inside the frame");
}

void check_decoded(const Egress& egress, const Frame& frame, ByteSpan /*original*/) {
  check(inside(egress.payload, frame), "an egress payload is not inside the frame");
}

void check_decoded(const SessionClosed& closed, const Frame& /*frame*/, ByteSpan /*original*/) {
  check(named(to_string(closed.reason)), "a session closed with an unnamed reason decoded");
}

void check_decoded(const IngressRejected& rejected, const Frame& /*frame*/, ByteSpan /*original*/) {
  check(named(to_string(rejected.reason)), "an ingress rejection with an unnamed reason decoded");
}

void check_decoded(const StatusReply& reply, const Frame& frame, ByteSpan /*original*/) {
  check(named(to_string(reply.role)), "a status reply with an unnamed role decoded");
  check(reply.problem_count <= kMaxStatusProblems, "a status reply with too many problems decoded");
  for (std::size_t i = 0; i < reply.problem_count; ++i)
    check(inside(as_bytes(reply.problems[i]), frame), "a status problem is not inside the frame");
  for (std::size_t i = 1; i < reply.members.count; ++i)
    check(reply.members.ids[i - 1] < reply.members.ids[i], "a member list out of order decoded");
}

template <typename Message>
void check_round_trip(const Frame& frame, ByteSpan original) {
  const auto decoded = decode<Message>(frame);
  if (!decoded) {
    check_body_error(decoded.error(), frame);
    return;
  }
  if (frame.header.version == Message::kVersion)
    check_encodes_to(*decoded, original);
  else
    check_rewrites_alike(*decoded);
  check_decoded(*decoded, frame, original);
}

void check_frame(const Frame& frame, ByteSpan original) {
  const bool known =
      visit_message_type(frame.header.type, [&]<typename Message>() { check_round_trip<Message>(frame, original); });
  if (!known) fail("scan_frame completed a frame of an unknown type");
}

void scan_all(ByteSpan input, std::uint32_t max_frame_length) {
  ByteSpan rest = input;
  while (true) {
    const FrameScan scan = scan_frame(rest, max_frame_length);
    switch (scan.status) {
      case FrameScan::Status::complete: {
        check(scan.consumed >= kFrameHeaderSize, "consumed less than a header");
        check(scan.consumed <= rest.size(), "consumed more than was there");
        check(scan.consumed <= max_frame_length, "a complete frame longer than the maximum");
        check(scan.consumed == scan.frame.header.length, "consumed is not the header's length");
        check(scan.frame.body.data() == rest.data() + kFrameHeaderSize, "body is not right after the header");
        check(scan.frame.body.size() == scan.consumed - kFrameHeaderSize, "body size is not length - header");
        check(scan.frame.header.flags == 0, "a complete frame with flags");
        check_frame(scan.frame, rest.first(scan.consumed));
        rest = rest.subspan(scan.consumed);
        break;
      }
      case FrameScan::Status::need_more:
        if (rest.size() < kFrameHeaderSize) {
          check(scan.needed == 0, "needed set before the header is complete");
        } else {
          check(scan.needed > rest.size(), "need_more although the frame is all there");
          check(scan.needed <= max_frame_length, "awaiting a frame longer than the maximum");
        }
        return;
      case FrameScan::Status::error:
        check(rest.size() >= kFrameHeaderSize, "a header error before the header is complete");
        check(!scan.error.describe().empty(), "empty description");
        check(scan.error.offset < kFrameHeaderSize, "a scan error outside the header");
        return;
    }
  }
}

void judge_first_frame(ByteSpan input) {
  // Identities the seed corpus matches, so the fuzzer starts from handshakes that succeed.
  static constexpr std::uint32_t kMembers[] = {1, 2, 3};
  static const LocalIdentity acceptor{
      7, PeerRole::node, 1, Incarnation{1, 2}, MemberIds::of(kMembers), "127.0.0.1:7201"};
  static const LocalIdentity connector = [] {
    LocalIdentity client = client_identity(7);
    client.incarnation = Incarnation{1, 2};
    return client;
  }();
  static const LocalIdentity member{7, PeerRole::node, 2, Incarnation{1, 2}, MemberIds::of(kMembers), "127.0.0.1:7202"};
  static const AcceptPolicy members{true, true, true, {1, 2, 3}};
  static const AcceptPolicy anyone{};

  const FrameScan scan = scan_frame(input);
  if (scan.status == FrameScan::Status::error) {
    const HandshakeRefusal refusal = refusal_for_bad_first_frame(scan.error, input);
    check(!refusal.text.empty(), "a refusal without text");
    return;
  }
  if (scan.status != FrameScan::Status::complete) return;

  for (const AcceptPolicy* policy : {&members, &anyone}) {
    const auto peer = accept_hello(scan.frame, acceptor, *policy);
    if (peer) {
      check(scan.frame.header.type == MessageType::hello, "admitted a peer without a hello");
      check(peer->role != PeerRole::node || peer->node_id != 0, "admitted a node with id 0");
      check(peer->role != PeerRole::node || peer->node_id != acceptor.node_id, "admitted a node with our id");
      check(peer->role == PeerRole::node || peer->node_id == 0, "admitted a client or admin with a node id");
      check(peer->role != PeerRole::node || peer->members == acceptor.members, "admitted a node of another list");
      check(peer->role == PeerRole::node || peer->members.empty(), "admitted a client with a member list");
    } else {
      check(!peer.error().text.empty(), "a hello refusal without text");
    }
  }
  for (const LocalIdentity* local : {&connector, &member}) {
    const auto node = accept_welcome(scan.frame, *local);
    if (node) {
      check(scan.frame.header.type == MessageType::welcome, "accepted an answer that is not a welcome");
      check(node->node_id != 0, "accepted a welcome from node id 0");
      check(node->members.contains(node->node_id), "accepted a welcome whose list lacks its node");
      check(local->role != PeerRole::node || node->members == local->members, "a node accepted another list");
    } else {
      check(!node.error().text.empty(), "a welcome refusal without text");
      check(node.error().text.size() <= 200 + kMaxErrorTextLength, "a refusal text out of proportion");
    }
  }
}

}  // namespace
}  // namespace cohort::protocol

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cohort::protocol;
  const cohort::ByteSpan input(reinterpret_cast<const std::byte*>(data), size);  // NOLINT: the fuzzer's bytes
  scan_all(input, kSmallMaxFrameLength);
  scan_all(input, kDefaultMaxFrameLength);
  judge_first_frame(input);
  return 0;
}

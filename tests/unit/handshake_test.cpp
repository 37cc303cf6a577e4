// The connection handshake (src/protocol/handshake.h): what the accepting side admits from a hello, what the
// connecting side makes of the answer, and the refusal for a first frame that is not even a frame.

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/handshake.h"

namespace cohort::protocol {
namespace {

using Bytes = std::vector<std::byte>;

constexpr std::uint64_t kCluster = 4242;
constexpr Incarnation kIncarnation{0x00000000000000AB, 0x00000000000000CD};
constexpr Incarnation kOtherIncarnation{0x00000000000000EF, 0x0000000000000012};

/// An encoded frame together with its scanned view; the view points into `bytes`.
struct Received {
  Bytes bytes;
  Frame frame;
};

template <typename Message>
Received receive(const Message& message) {
  Received received;
  append_frame(message, received.bytes);
  const FrameScan scan = scan_frame(received.bytes);
  EXPECT_EQ(scan.status, FrameScan::Status::complete);
  received.frame = scan.frame;
  return received;
}

// Every node of these tests lists the same members (a node with another list is refused), unless a test says.
constexpr std::uint32_t kMembers[] = {1, 2, 3, 5, 7, 0xFFFFFFFF};
constexpr std::uint32_t kThree[] = {1, 2, 3};
constexpr std::uint32_t kAlone[] = {1};

/// A node's identity, kept for the whole program: make_hello and make_welcome view its endpoint, so a Hello kept
/// in a variable must not outlive the identity it was made from.
const LocalIdentity& node_listing(std::uint32_t id, std::span<const std::uint32_t> members,
                                  std::string endpoint = "10.0.0.1:7201") {
  static std::deque<LocalIdentity> kept;
  kept.push_back(
      LocalIdentity{kCluster, PeerRole::node, id, kIncarnation, MemberIds::of(members), std::move(endpoint)});
  return kept.back();
}

const LocalIdentity& this_node() { return node_listing(1, kMembers); }

const LocalIdentity& a_node(std::uint32_t id) { return node_listing(id, kMembers); }

LocalIdentity a_client() {
  LocalIdentity client = client_identity(kCluster);
  client.incarnation = kIncarnation;
  return client;
}

LocalIdentity an_admin() {
  LocalIdentity admin = client_identity(kCluster, PeerRole::admin);
  admin.incarnation = kIncarnation;
  return admin;
}

Hello hello_from(const LocalIdentity& sender) { return make_hello(sender); }

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

/// Asserts that accepting `hello` is refused with `code` and a text naming each of `parts`.
void expect_hello_refused(const Hello& hello, ErrorCode code, const std::vector<std::string_view>& parts,
                          const AcceptPolicy& policy = {}, const LocalIdentity& local = this_node()) {
  const Received first = receive(hello);
  auto result = accept_hello(first.frame, local, policy);
  ASSERT_FALSE(result) << "accepted";
  EXPECT_EQ(result.error().code, code) << to_string(result.error().code) << ": " << result.error().text;
  for (const std::string_view part : parts)
    EXPECT_TRUE(contains(result.error().text, part)) << "'" << part << "' missing from: " << result.error().text;
}

void expect_welcome_refused(const Welcome& welcome, ErrorCode code, const std::vector<std::string_view>& parts,
                            const LocalIdentity& local = a_client()) {
  const Received reply = receive(welcome);
  auto result = accept_welcome(reply.frame, local);
  ASSERT_FALSE(result) << "accepted";
  EXPECT_EQ(result.error().code, code) << to_string(result.error().code) << ": " << result.error().text;
  for (const std::string_view part : parts)
    EXPECT_TRUE(contains(result.error().text, part)) << "'" << part << "' missing from: " << result.error().text;
}

// ---------------------------------------------------------------------------------------------------------------
// make_hello / make_welcome

TEST(HandshakeMessages, AHelloCarriesTheMagicTheProtocolVersionAndTheSendersIdentity) {
  const Hello hello = make_hello(a_node(7));
  EXPECT_EQ(hello.magic, kHandshakeMagic);
  EXPECT_EQ(hello.protocol_version, kProtocolVersion);
  EXPECT_EQ(hello.role, PeerRole::node);
  EXPECT_EQ(hello.node_id, 7U);
  EXPECT_EQ(hello.cluster_id, kCluster);
  EXPECT_EQ(hello.incarnation, kIncarnation);
}

TEST(HandshakeMessages, AWelcomeCarriesTheProtocolVersionAndTheAcceptingNode) {
  const Welcome welcome = make_welcome(this_node());
  EXPECT_EQ(welcome.protocol_version, kProtocolVersion);
  EXPECT_EQ(welcome.node_id, 1U);
  EXPECT_EQ(welcome.cluster_id, kCluster);
  EXPECT_EQ(welcome.incarnation, kIncarnation);
}

// ---------------------------------------------------------------------------------------------------------------
// accept_hello: admitted peers

TEST(AcceptHello, AMemberNodeOfTheSameClusterIsAdmitted) {
  const Received first = receive(hello_from(a_node(2)));
  auto peer = accept_hello(first.frame, this_node(), AcceptPolicy{true, true, true, {1, 2, 3}});
  ASSERT_TRUE(peer) << peer.error().text;
  EXPECT_EQ(peer->role, PeerRole::node);
  EXPECT_EQ(peer->node_id, 2U);
  EXPECT_EQ(peer->incarnation, kIncarnation);
}

TEST(AcceptHello, WithNoMemberListAnyNodeIdButOurOwnIsAdmitted) {
  const Received first = receive(hello_from(a_node(0xFFFFFFFF)));
  auto peer = accept_hello(first.frame, this_node(), AcceptPolicy{});
  ASSERT_TRUE(peer) << peer.error().text;
  EXPECT_EQ(peer->node_id, 0xFFFFFFFFU);
}

TEST(AcceptHello, AClientIsAdmittedWithNodeIdZero) {
  const Received first = receive(hello_from(a_client()));
  auto peer = accept_hello(first.frame, this_node(), AcceptPolicy{});
  ASSERT_TRUE(peer) << peer.error().text;
  EXPECT_EQ(peer->role, PeerRole::client);
  EXPECT_EQ(peer->node_id, 0U);
}

TEST(AcceptHello, AnAdminToolIsAdmitted) {
  const Received first = receive(hello_from(client_identity(kCluster, PeerRole::admin)));
  auto peer = accept_hello(first.frame, this_node(), AcceptPolicy{});
  ASSERT_TRUE(peer) << peer.error().text;
  EXPECT_EQ(peer->role, PeerRole::admin);
}

TEST(AcceptHello, APeerThatDoesNotKnowTheIncarnationYetIsAdmitted) {
  LocalIdentity fresh = a_node(2);
  fresh.incarnation = Incarnation{};
  const Received first = receive(hello_from(fresh));
  auto peer = accept_hello(first.frame, this_node(), AcceptPolicy{});
  ASSERT_TRUE(peer) << peer.error().text;
  EXPECT_FALSE(peer->incarnation.known());
}

TEST(AcceptHello, ANodeThatDoesNotKnowTheIncarnationYetAdmitsAnyIncarnation) {
  LocalIdentity fresh = this_node();
  fresh.incarnation = Incarnation{};
  const Received first = receive(hello_from(a_node(2)));
  auto peer = accept_hello(first.frame, fresh, AcceptPolicy{});
  ASSERT_TRUE(peer) << peer.error().text;
  EXPECT_EQ(peer->incarnation, kIncarnation) << "the peer's incarnation is reported so the node can learn it";
}

TEST(AcceptHello, AnIncarnationDifferingOnlyInItsLowHalfIsStillKnown) {
  EXPECT_TRUE((Incarnation{0, 1}).known());
  EXPECT_TRUE((Incarnation{1, 0}).known());
  EXPECT_FALSE((Incarnation{0, 0}).known());
}

// ---------------------------------------------------------------------------------------------------------------
// accept_hello: refusals

TEST(AcceptHello, AWrongClusterIdIsRefusedNamingBothIds) {
  LocalIdentity stranger = a_node(2);
  stranger.cluster_id = 9999;
  expect_hello_refused(hello_from(stranger), ErrorCode::wrong_cluster, {"9999", "4242"});
}

TEST(AcceptHello, AWrongProtocolVersionIsRefusedNamingBothVersions) {
  Hello hello = hello_from(a_node(2));
  hello.protocol_version = 77;
  const std::string ours = "speaks " + std::to_string(kProtocolVersion);
  expect_hello_refused(hello, ErrorCode::protocol_version_mismatch, {"protocol version 77", ours});
}

TEST(AcceptHello, AProtocolVersionMismatchIsReportedBeforeAClusterMismatch) {
  Hello hello = hello_from(a_node(2));
  hello.protocol_version = 0;
  hello.cluster_id = 1;
  expect_hello_refused(hello, ErrorCode::protocol_version_mismatch, {"protocol version 0"});
}

TEST(AcceptHello, ADifferentKnownIncarnationIsRefusedNamingBoth) {
  LocalIdentity recreated = a_node(2);
  recreated.incarnation = kOtherIncarnation;
  expect_hello_refused(hello_from(recreated), ErrorCode::wrong_incarnation,
                       {"another incarnation of cluster 4242", "00000000000000ef0000000000000012",
                        "00000000000000ab00000000000000cd", "re-created"});
  auto result = accept_hello(receive(hello_from(recreated)).frame, this_node(), AcceptPolicy{});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().peer_node_id, 2U) << "the node is named, so the refusing node can show it in status";
}

TEST(AcceptHello, ANodeWithAnotherMemberListIsRefusedNamingBothLists) {
  const Received first = receive(hello_from(node_listing(2, kThree)));
  auto result = accept_hello(first.frame, node_listing(1, kAlone), AcceptPolicy{});
  ASSERT_FALSE(result) << "accepted";
  EXPECT_EQ(result.error().code, ErrorCode::membership_mismatch) << result.error().text;
  EXPECT_EQ(result.error().peer_node_id, 2U);
  for (const std::string_view part : {"node 2 lists [1, 2, 3]", "node 1 lists [1]"})
    EXPECT_TRUE(contains(result.error().text, part)) << "'" << part << "' missing from: " << result.error().text;
}

TEST(AcceptHello, ANodeWithTheSameMemberListIsAdmittedWithItsAdvertisedClientEndpoint) {
  const Received first = receive(hello_from(node_listing(2, kThree, "db-2.example:7202")));
  auto peer = accept_hello(first.frame, node_listing(1, kThree), AcceptPolicy{true, true, true, {2, 3}});
  ASSERT_TRUE(peer) << peer.error().text;
  EXPECT_EQ(peer->members, MemberIds::of(kThree));
  EXPECT_EQ(peer->client_endpoint, "db-2.example:7202");
}

TEST(AcceptHello, AListThatIsASupersetIsRefusedToo) {
  constexpr std::uint32_t four[] = {1, 2, 3, 4};
  expect_hello_refused(hello_from(node_listing(2, four)), ErrorCode::membership_mismatch, {"[1, 2, 3, 4]", "[1, 2, 3]"},
                       AcceptPolicy{}, node_listing(1, kThree));
}

TEST(AcceptHello, TheMemberListIsJudgedBeforeTheIncarnation) {
  // Two groups with different lists have each bootstrapped an incarnation: the list is what the operator must fix.
  LocalIdentity other = node_listing(2, kThree);
  other.incarnation = kOtherIncarnation;
  expect_hello_refused(hello_from(other), ErrorCode::membership_mismatch, {"[1, 2, 3]", "[1]"}, AcceptPolicy{},
                       node_listing(1, kAlone));
}

TEST(AcceptHello, ALoneNodeRefusesAPeerForItsListNotForThePortPolicy) {
  // A single-node cluster's peer port admits no node; a node that thinks it belongs must hear why it does not.
  expect_hello_refused(hello_from(node_listing(2, kThree)), ErrorCode::membership_mismatch, {"[1, 2, 3]", "[1]"},
                       AcceptPolicy{false, false, false, {}}, node_listing(1, kAlone));
}

TEST(AcceptHello, ANodeWhoseListLacksItselfIsABadHandshake) {
  expect_hello_refused(hello_from(node_listing(9, kThree)), ErrorCode::bad_handshake,
                       {"node 9", "without itself", "[1, 2, 3]"}, AcceptPolicy{}, node_listing(1, kThree));
}

TEST(AcceptHello, AClientSendingAMemberListOrAnEndpointIsABadHandshake) {
  Hello with_list = hello_from(a_client());
  with_list.members = MemberIds::of(kThree);
  expect_hello_refused(with_list, ErrorCode::bad_handshake, {"client", "member list"});
  Hello with_endpoint = hello_from(a_client());
  with_endpoint.client_endpoint = "1.2.3.4:5";
  expect_hello_refused(with_endpoint, ErrorCode::bad_handshake, {"client", "endpoint"});
}

TEST(AcceptHello, ANodeAnnouncingIdZeroIsRefused) {
  Hello hello = hello_from(a_node(2));
  hello.node_id = 0;
  expect_hello_refused(hello, ErrorCode::role_not_allowed, {"node", "non-zero node id"});
}

TEST(AcceptHello, ANodeClaimingOurOwnIdIsRefusedNamingTheId) {
  expect_hello_refused(hello_from(a_node(1)), ErrorCode::role_not_allowed, {"node id 1", "own id"});
}

TEST(AcceptHello, ANodeIdNotInTheMemberListIsRefusedNamingTheId) {
  expect_hello_refused(hello_from(a_node(5)), ErrorCode::role_not_allowed, {"node id 5", "not a member"},
                       AcceptPolicy{true, true, true, {1, 2, 3}});
}

TEST(AcceptHello, AClientAnnouncingANonZeroNodeIdIsRefusedNamingTheId) {
  Hello hello = hello_from(a_client());
  hello.node_id = 12;
  expect_hello_refused(hello, ErrorCode::role_not_allowed, {"client", "node id 0", "not 12"});
}

TEST(AcceptHello, AnAdminAnnouncingANonZeroNodeIdIsRefusedNamingTheId) {
  Hello hello = hello_from(an_admin());
  hello.node_id = 3;
  expect_hello_refused(hello, ErrorCode::role_not_allowed, {"admin", "node id 0", "not 3"});
}

TEST(AcceptHello, NodesAreRefusedWhereThePolicyDisallowsThem) {
  expect_hello_refused(hello_from(a_node(2)), ErrorCode::role_not_allowed, {"cluster members"},
                       AcceptPolicy{false, true, true, {}});
}

TEST(AcceptHello, ClientsAreRefusedWhereThePolicyDisallowsThem) {
  expect_hello_refused(hello_from(a_client()), ErrorCode::role_not_allowed, {"client connections"},
                       AcceptPolicy{true, false, true, {}});
}

TEST(AcceptHello, AdminToolsAreRefusedWhereThePolicyDisallowsThem) {
  expect_hello_refused(hello_from(an_admin()), ErrorCode::role_not_allowed, {"admin connections"},
                       AcceptPolicy{true, true, false, {}});
}

TEST(AcceptHello, DisallowingClientsStillAdmitsNodes) {
  const Received first = receive(hello_from(a_node(2)));
  auto peer = accept_hello(first.frame, this_node(), AcceptPolicy{true, false, false, {}});
  ASSERT_TRUE(peer) << peer.error().text;
  EXPECT_EQ(peer->role, PeerRole::node);
}

TEST(AcceptHello, AFirstFrameThatIsNotAHelloIsABadHandshake) {
  const Received first = receive(Ping{1, 2});
  auto result = accept_hello(first.frame, this_node(), AcceptPolicy{});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::bad_handshake);
  EXPECT_TRUE(contains(result.error().text, "expected a hello")) << result.error().text;
  EXPECT_TRUE(contains(result.error().text, "got ping")) << result.error().text;
}

TEST(AcceptHello, AWelcomeAsTheFirstFrameIsABadHandshake) {
  const Received first = receive(make_welcome(a_node(2)));
  auto result = accept_hello(first.frame, this_node(), AcceptPolicy{});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::bad_handshake);
  EXPECT_TRUE(contains(result.error().text, "got welcome")) << result.error().text;
}

TEST(AcceptHello, AHelloWithTheWrongMagicIsABadHandshakeNamingBothMagics) {
  Received first = receive(hello_from(a_node(2)));
  store_le<std::uint32_t>(first.bytes.data() + kFrameHeaderSize, 0xDEADBEEF);
  auto result = accept_hello(first.frame, this_node(), AcceptPolicy{});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::bad_handshake);
  EXPECT_TRUE(contains(result.error().text, "0xdeadbeef")) << result.error().text;
  EXPECT_TRUE(contains(result.error().text, "0x52484f43")) << result.error().text;
}

TEST(AcceptHello, AHelloWithAnInvalidRoleIsAMalformedFrame) {
  Received first = receive(hello_from(a_node(2)));
  store_le<std::uint8_t>(first.bytes.data() + kFrameHeaderSize + 6, 9);
  auto result = accept_hello(first.frame, this_node(), AcceptPolicy{});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::malformed_frame);
  EXPECT_TRUE(contains(result.error().text, "'role'")) << result.error().text;
  EXPECT_TRUE(contains(result.error().text, "value 9")) << result.error().text;
}

TEST(AcceptHello, AShortHelloIsAMalformedFrameNamingTheMissingField) {
  Received first = receive(hello_from(a_node(2)));
  first.frame.body = first.frame.body.first(20);
  first.frame.header.length = kFrameHeaderSize + 20;
  auto result = accept_hello(first.frame, this_node(), AcceptPolicy{});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::malformed_frame);
  EXPECT_TRUE(contains(result.error().text, "'cluster_id'")) << result.error().text;
}

TEST(AcceptHello, AnotherProtocolVersionIsReportedAsSuchWhateverTheRestOfTheHelloHolds) {
  // Another protocol version may give the reserved bytes, the roles or the body length another meaning: the
  // peer must still hear "protocol version", not "malformed".
  Received first = receive(hello_from(a_node(2)));
  constexpr std::uint16_t kNewer = kProtocolVersion + 1;
  store_le<std::uint16_t>(first.bytes.data() + kFrameHeaderSize + 4, kNewer);  // protocol_version
  store_le<std::uint8_t>(first.bytes.data() + kFrameHeaderSize + 6, 9);        // a role this version does not know
  store_le<std::uint8_t>(first.bytes.data() + kFrameHeaderSize + 7, 1);        // reserved in this version
  auto result = accept_hello(first.frame, this_node(), AcceptPolicy{});
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::protocol_version_mismatch) << result.error().text;
  EXPECT_TRUE(contains(result.error().text, "protocol version " + std::to_string(kNewer))) << result.error().text;
}

// ---------------------------------------------------------------------------------------------------------------
// refusal_for_bad_first_frame

TEST(RefusalForBadFirstFrame, AHelloOfANewerLayoutIsAProtocolVersionMismatch) {
  Bytes bytes;
  append_frame(hello_from(a_node(2)), bytes);
  store_le<std::uint8_t>(bytes.data() + 6, 2);  // layout version 2
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::error);
  const HandshakeRefusal refusal = refusal_for_bad_first_frame(scan.error, bytes);
  EXPECT_EQ(refusal.code, ErrorCode::protocol_version_mismatch) << refusal.text;
  EXPECT_TRUE(contains(refusal.text, "version 2")) << refusal.text;
  EXPECT_TRUE(contains(refusal.text, "(1)")) << refusal.text;
}

TEST(RefusalForBadFirstFrame, ANewerLayoutOfAnotherTypeIsABadHandshake) {
  Bytes bytes;
  append_frame(Ping{1, 2}, bytes);
  store_le<std::uint8_t>(bytes.data() + 6, 2);
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::error);
  const HandshakeRefusal refusal = refusal_for_bad_first_frame(scan.error, bytes);
  EXPECT_EQ(refusal.code, ErrorCode::bad_handshake) << refusal.text;
  EXPECT_TRUE(contains(refusal.text, "version 2")) << refusal.text;
}

TEST(RefusalForBadFirstFrame, AnOversizedFirstFrameIsABadHandshakeNamingTheLength) {
  Bytes bytes(kFrameHeaderSize);
  store_frame_header(bytes.data(), FrameHeader{kDefaultMaxFrameLength + 8, MessageType::hello, 1, 0});
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::error);
  const HandshakeRefusal refusal = refusal_for_bad_first_frame(scan.error, bytes);
  EXPECT_EQ(refusal.code, ErrorCode::bad_handshake);
  EXPECT_TRUE(contains(refusal.text, std::to_string(kDefaultMaxFrameLength + 8))) << refusal.text;
  EXPECT_TRUE(contains(refusal.text, std::to_string(kDefaultMaxFrameLength))) << refusal.text;
}

TEST(RefusalForBadFirstFrame, AnHttpRequestIsABadHandshake) {
  const std::string_view request = "GET / HTTP/1.1\r\nHost: cohort\r\n\r\n";
  const ByteSpan bytes = as_bytes(request);
  const FrameScan scan = scan_frame(bytes);
  ASSERT_EQ(scan.status, FrameScan::Status::error);
  const HandshakeRefusal refusal = refusal_for_bad_first_frame(scan.error, bytes);
  EXPECT_EQ(refusal.code, ErrorCode::bad_handshake);
  EXPECT_TRUE(contains(refusal.text, "invalid first frame")) << refusal.text;
}

TEST(RefusalForBadFirstFrame, AnErrorWithoutTheHeaderBytesIsStillABadHandshake) {
  // The error came from somewhere other than these bytes (too few to hold a type): no out-of-bounds look.
  const Bytes few(3);
  const DecodeError error{DecodeErrc::unsupported_version, 6, 9, 1, "version"};
  const HandshakeRefusal refusal = refusal_for_bad_first_frame(error, few);
  EXPECT_EQ(refusal.code, ErrorCode::bad_handshake);
}

// ---------------------------------------------------------------------------------------------------------------
// accept_welcome

TEST(AcceptWelcome, AWelcomeFromANodeOfTheSameClusterIsAccepted) {
  const Received reply = receive(make_welcome(a_node(3)));
  auto peer = accept_welcome(reply.frame, a_client());
  ASSERT_TRUE(peer) << peer.error().text;
  EXPECT_EQ(peer->role, PeerRole::node);
  EXPECT_EQ(peer->node_id, 3U);
  EXPECT_EQ(peer->incarnation, kIncarnation);
}

TEST(AcceptWelcome, AWelcomeIsAcceptedWhenEitherSideDoesNotKnowTheIncarnation) {
  LocalIdentity fresh_node = a_node(3);
  fresh_node.incarnation = Incarnation{};
  const Received unknown_there = receive(make_welcome(fresh_node));
  auto a = accept_welcome(unknown_there.frame, a_client());
  ASSERT_TRUE(a) << a.error().text;

  LocalIdentity fresh_client = a_client();
  fresh_client.incarnation = Incarnation{};
  const Received known_there = receive(make_welcome(a_node(3)));
  auto b = accept_welcome(known_there.frame, fresh_client);
  ASSERT_TRUE(b) << b.error().text;
  EXPECT_EQ(b->incarnation, kIncarnation);
}

TEST(AcceptWelcome, AWrongProtocolVersionIsRefusedNamingBothVersions) {
  Welcome welcome = make_welcome(a_node(3));
  welcome.protocol_version = 5;
  const std::string ours = "this build " + std::to_string(kProtocolVersion);
  expect_welcome_refused(welcome, ErrorCode::protocol_version_mismatch, {"version 5", ours});
}

TEST(AcceptWelcome, AWrongClusterIdIsRefusedNamingBothIds) {
  Welcome welcome = make_welcome(a_node(3));
  welcome.cluster_id = 31337;
  expect_welcome_refused(welcome, ErrorCode::wrong_cluster, {"31337", "4242"});
}

TEST(AcceptWelcome, ADifferentKnownIncarnationIsRefusedNamingBoth) {
  LocalIdentity recreated = a_node(3);
  recreated.incarnation = kOtherIncarnation;
  expect_welcome_refused(
      make_welcome(recreated), ErrorCode::wrong_incarnation,
      {"another incarnation of cluster 4242", "00000000000000ef0000000000000012", "00000000000000ab00000000000000cd"});
}

TEST(AcceptWelcome, ANodeRefusesAWelcomeWithAnotherMemberListNamingBoth) {
  const Received reply = receive(make_welcome(node_listing(3, kThree)));
  auto result = accept_welcome(reply.frame, node_listing(1, kMembers));
  ASSERT_FALSE(result) << "accepted";
  EXPECT_EQ(result.error().code, ErrorCode::membership_mismatch) << result.error().text;
  EXPECT_EQ(result.error().peer_node_id, 3U);
  EXPECT_TRUE(contains(result.error().text, "node 3 lists [1, 2, 3]")) << result.error().text;
  EXPECT_TRUE(contains(result.error().text, "node 1 lists [1, 2, 3, 5, 7, 4294967295]")) << result.error().text;
}

TEST(AcceptWelcome, AClientAcceptsAnyMemberListAndLearnsItWithTheAdvertisedEndpoint) {
  // The client library judges a node's configuration itself (client_core.h), so it can skip rather than close.
  const Received reply = receive(make_welcome(node_listing(1, kAlone, "127.0.0.1:7201")));
  auto peer = accept_welcome(reply.frame, a_client());
  ASSERT_TRUE(peer) << peer.error().text;
  EXPECT_EQ(peer->members, MemberIds::of(kAlone));
  EXPECT_EQ(peer->client_endpoint, "127.0.0.1:7201");
}

TEST(AcceptWelcome, AWelcomeWhoseListLacksTheNodeIsABadHandshake) {
  const Received reply = receive(make_welcome(node_listing(9, kThree)));
  auto result = accept_welcome(reply.frame, a_client());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::bad_handshake);
  EXPECT_TRUE(contains(result.error().text, "without itself")) << result.error().text;
}

TEST(AcceptWelcome, AWelcomeFromNodeIdZeroIsABadHandshake) {
  expect_welcome_refused(make_welcome(a_client()), ErrorCode::bad_handshake, {"node id 0"});
}

TEST(AcceptWelcome, AnErrorFrameBecomesARefusalWithThePeersCodeAndText) {
  const Received reply = receive(ErrorMessage{ErrorCode::wrong_cluster, "cluster id 9 does not match 4242"});
  auto result = accept_welcome(reply.frame, a_client());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::wrong_cluster);
  EXPECT_TRUE(contains(result.error().text, "wrong_cluster")) << result.error().text;
  EXPECT_TRUE(contains(result.error().text, "cluster id 9 does not match 4242")) << result.error().text;
}

TEST(AcceptWelcome, AnErrorFrameWithAnUnknownCodeKeepsTheCodeAndTheText) {
  Received reply = receive(ErrorMessage{ErrorCode::malformed_frame, "a reason from the future"});
  store_le<std::uint16_t>(reply.bytes.data() + kFrameHeaderSize, 500);
  auto result = accept_welcome(reply.frame, a_client());
  ASSERT_FALSE(result);
  EXPECT_EQ(static_cast<std::uint16_t>(result.error().code), 500);
  EXPECT_TRUE(contains(result.error().text, "a reason from the future")) << result.error().text;
}

TEST(AcceptWelcome, AMalformedErrorFrameIsAMalformedFrame) {
  Received reply = receive(ErrorMessage{ErrorCode::wrong_cluster, "abc"});
  store_le<std::uint32_t>(reply.bytes.data() + kFrameHeaderSize + 4, 4000);
  auto result = accept_welcome(reply.frame, a_client());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::malformed_frame);
  EXPECT_TRUE(contains(result.error().text, "text_length")) << result.error().text;
}

TEST(AcceptWelcome, AnAnswerThatIsNeitherWelcomeNorErrorIsABadHandshake) {
  const Received reply = receive(Pong{1, 2});
  auto result = accept_welcome(reply.frame, a_client());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::bad_handshake);
  EXPECT_TRUE(contains(result.error().text, "expected welcome, got pong")) << result.error().text;
}

TEST(AcceptWelcome, AnotherProtocolVersionIsReportedAsSuchWhateverTheRestOfTheWelcomeHolds) {
  Received reply = receive(make_welcome(a_node(3)));
  constexpr std::uint16_t kNewer = kProtocolVersion + 1;
  store_le<std::uint16_t>(reply.bytes.data() + kFrameHeaderSize, kNewer);  // protocol_version
  store_le<std::uint16_t>(reply.bytes.data() + kFrameHeaderSize + 2, 7);   // reserved in this version
  auto result = accept_welcome(reply.frame, a_client());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::protocol_version_mismatch) << result.error().text;
  EXPECT_TRUE(contains(result.error().text, "protocol version " + std::to_string(kNewer))) << result.error().text;
}

TEST(AcceptWelcome, AWelcomeWithNonZeroReservedBytesIsAMalformedFrame) {
  Received reply = receive(make_welcome(a_node(3)));
  store_le<std::uint16_t>(reply.bytes.data() + kFrameHeaderSize + 2, 7);
  auto result = accept_welcome(reply.frame, a_client());
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::malformed_frame);
  EXPECT_TRUE(contains(result.error().text, "'reserved'")) << result.error().text;
}

// ---------------------------------------------------------------------------------------------------------------
// Both sides together

TEST(Handshake, TwoNodesOfTheSameClusterAdmitEachOther) {
  const LocalIdentity connecting = a_node(2);
  const LocalIdentity accepting = a_node(3);
  const Received hello = receive(make_hello(connecting));
  auto seen_by_acceptor = accept_hello(hello.frame, accepting, AcceptPolicy{true, true, true, {2, 3}});
  ASSERT_TRUE(seen_by_acceptor) << seen_by_acceptor.error().text;
  EXPECT_EQ(seen_by_acceptor->node_id, 2U);
  const Received welcome = receive(make_welcome(accepting));
  auto seen_by_connector = accept_welcome(welcome.frame, connecting);
  ASSERT_TRUE(seen_by_connector) << seen_by_connector.error().text;
  EXPECT_EQ(seen_by_connector->node_id, 3U);
}

TEST(Handshake, AMemberListMismatchReachesTheConnectorWithBothLists) {
  const LocalIdentity connecting = node_listing(2, kThree);
  const LocalIdentity accepting = node_listing(1, kAlone);
  auto refused = accept_hello(receive(make_hello(connecting)).frame, accepting, AcceptPolicy{});
  ASSERT_FALSE(refused);
  const Received answer = receive(ErrorMessage{refused.error().code, refused.error().text});
  auto result = accept_welcome(answer.frame, connecting);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::membership_mismatch);
  EXPECT_TRUE(contains(result.error().text, "node 2 lists [1, 2, 3]")) << result.error().text;
  EXPECT_TRUE(contains(result.error().text, "node 1 lists [1]")) << result.error().text;
}

TEST(Handshake, NodesAgreeingOnTheirListLearnEachOthersAdvertisedClientEndpoint) {
  const LocalIdentity connecting = node_listing(2, kThree, "10.0.0.2:7202");
  const LocalIdentity accepting = node_listing(3, kThree, "10.0.0.3:7203");
  auto seen_by_acceptor = accept_hello(receive(make_hello(connecting)).frame, accepting, AcceptPolicy{});
  ASSERT_TRUE(seen_by_acceptor) << seen_by_acceptor.error().text;
  EXPECT_EQ(seen_by_acceptor->client_endpoint, "10.0.0.2:7202");
  auto seen_by_connector = accept_welcome(receive(make_welcome(accepting)).frame, connecting);
  ASSERT_TRUE(seen_by_connector) << seen_by_connector.error().text;
  EXPECT_EQ(seen_by_connector->client_endpoint, "10.0.0.3:7203");
}

TEST(Handshake, AClientsHelloCarriesNoMemberListOrEndpoint) {
  const Hello hello = make_hello(a_client());
  EXPECT_TRUE(hello.members.empty());
  EXPECT_TRUE(hello.client_endpoint.empty());
}

TEST(ConfigurationId, EqualListsHaveEqualIdsAndDifferentListsDifferentOnes) {
  EXPECT_EQ(configuration_id(MemberIds::of(kThree)), configuration_id(MemberIds::of(kThree)));
  EXPECT_NE(configuration_id(MemberIds::of(kThree)), configuration_id(MemberIds::of(kAlone)));
  constexpr std::uint32_t other_three[] = {1, 2, 4};
  EXPECT_NE(configuration_id(MemberIds::of(kThree)), configuration_id(MemberIds::of(other_three)));
  EXPECT_NE(configuration_id(MemberIds{}), 0U) << "0 means 'not known'";
  EXPECT_EQ(describe(MemberIds::of(kThree)), "[1, 2, 3]");
  EXPECT_EQ(describe(MemberIds{}), "[]");
}

TEST(Handshake, ARefusalSentAsAnErrorFrameReachesTheConnectorWithItsCode) {
  LocalIdentity stranger = a_client();
  stranger.cluster_id = 7;
  const Received hello = receive(make_hello(stranger));
  auto refused = accept_hello(hello.frame, this_node(), AcceptPolicy{});
  ASSERT_FALSE(refused);
  const Received answer = receive(ErrorMessage{refused.error().code, refused.error().text});
  auto result = accept_welcome(answer.frame, stranger);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, ErrorCode::wrong_cluster);
  EXPECT_TRUE(contains(result.error().text, refused.error().text)) << result.error().text;
}

TEST(Handshake, EveryRoleAndErrorCodeHasAName) {
  EXPECT_STREQ(to_string(PeerRole::node), "node");
  EXPECT_STREQ(to_string(PeerRole::client), "client");
  EXPECT_STREQ(to_string(PeerRole::admin), "admin");
  for (std::uint16_t code = 1; code <= static_cast<std::uint16_t>(ErrorCode::membership_mismatch); ++code)
    EXPECT_STRNE(to_string(static_cast<ErrorCode>(code)), "unknown_error_code") << code;
  EXPECT_STREQ(to_string(static_cast<ErrorCode>(0)), "unknown_error_code");
}

}  // namespace
}  // namespace cohort::protocol

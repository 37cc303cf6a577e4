// The client's sans-I/O state machine (client/client_core.h) driven by hand: the test plays the runtime (it
// answers take_connect with on_connected) and the node (it hands in frames encoded with append_frame and read
// back with scan_frame). Time is a value; nothing here sleeps.

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "client/client_core.h"
#include "common/bytes.h"
#include "protocol/catalogue.h"
#include "protocol/frame.h"

namespace cohort::client {
namespace {

using namespace std::chrono_literals;
using protocol::IngressRejectReason;
using protocol::MessageType;
using protocol::SessionStatus;
using ByteVector = std::vector<std::byte>;
using Seqs = std::vector<std::uint64_t>;

const std::vector<std::string> kMembers{"n1:7001", "n2:7002", "n3:7003"};
constexpr std::uint64_t kClientHigh = 0xC1;
constexpr std::uint64_t kClientLow = 0xE7;
constexpr protocol::Incarnation kIncarnation{0x1C, 0x2D};
constexpr std::uint64_t kSession = 10;
constexpr std::string_view kCredential = "token:c1e7";

constexpr std::uint32_t kThree[] = {1, 2, 3};

/// What a node's welcome says of it: by default a member of the 3-node cluster the client lists.
protocol::PeerIdentity a_node(std::uint32_t id = 1, std::span<const std::uint32_t> members = kThree,
                              protocol::Incarnation incarnation = kIncarnation) {
  protocol::PeerIdentity node;
  node.role = protocol::PeerRole::node;
  node.node_id = id;
  node.incarnation = incarnation;
  node.members = protocol::MemberIds::of(members);
  node.client_endpoint = "ignored:1";  // the client never compares endpoint strings
  return node;
}

ClientOptions test_options() {
  ClientOptions options;
  options.cluster_id = 7;
  options.members = kMembers;
  options.max_buffered_messages = 8;
  options.max_buffered_bytes = 1024;
  options.max_message_size = 64;
  options.credential = std::string(kCredential);
  return options;
}

// A frame the client sent, decoded.
struct Sent {
  MessageType type{};
  std::uint64_t session = 0;
  std::uint64_t seq = 0;
  std::string payload;
  std::uint64_t client_high = 0;
  std::uint64_t client_low = 0;
  std::uint64_t last_egress = 0;  // session_open: the last egress delivered in `session`, the one to resume
  std::string credential;         // session_open
};

// The frames the core asked to send since the last call; clears its outgoing bytes as the runtime does.
std::vector<Sent> take_sent(ClientCore& core) {
  std::vector<Sent> frames;
  ByteSpan rest(core.outgoing());
  while (!rest.empty()) {
    const protocol::FrameScan scan = protocol::scan_frame(rest);
    EXPECT_EQ(scan.status, protocol::FrameScan::Status::complete);
    if (scan.status != protocol::FrameScan::Status::complete) break;
    Sent sent;
    sent.type = scan.frame.header.type;
    switch (sent.type) {
      case MessageType::session_open: {
        const auto open = protocol::decode<protocol::SessionOpen>(scan.frame);
        EXPECT_TRUE(open.has_value());
        if (open.has_value()) {
          sent.client_high = open->client_id_high;
          sent.client_low = open->client_id_low;
          sent.session = open->session_id;
          sent.last_egress = open->last_egress_seq;
          sent.credential = std::string(as_chars(open->credential));
        }
        break;
      }
      case MessageType::ingress: {
        const auto ingress = protocol::decode<protocol::Ingress>(scan.frame);
        EXPECT_TRUE(ingress.has_value());
        if (ingress.has_value()) {
          sent.session = ingress->session_id;
          sent.seq = ingress->seq;
          sent.payload = std::string(as_chars(ingress->payload));
        }
        break;
      }
      case MessageType::keep_alive: {
        const auto keep_alive = protocol::decode<protocol::KeepAlive>(scan.frame);
        EXPECT_TRUE(keep_alive.has_value());
        if (keep_alive.has_value()) sent.session = keep_alive->session_id;
        break;
      }
      case MessageType::session_close: {
        const auto close = protocol::decode<protocol::SessionClose>(scan.frame);
        EXPECT_TRUE(close.has_value());
        if (close.has_value()) sent.session = close->session_id;
        break;
      }
      case MessageType::ingress_withdrawn: {
        const auto withdrawn = protocol::decode<protocol::IngressWithdrawn>(scan.frame);
        EXPECT_TRUE(withdrawn.has_value());
        if (withdrawn.has_value()) {
          sent.session = withdrawn->session_id;
          sent.seq = withdrawn->seq;
        }
        break;
      }
      default: ADD_FAILURE() << "the client sent a " << protocol::to_string(sent.type) << " frame";
    }
    frames.push_back(sent);
    rest = rest.subspan(scan.consumed);
  }
  core.outgoing().clear();
  return frames;
}

std::vector<MessageType> types(const std::vector<Sent>& frames) {
  std::vector<MessageType> found;
  for (const Sent& frame : frames) found.push_back(frame.type);
  return found;
}

Seqs ingress_seqs(const std::vector<Sent>& frames) {
  Seqs seqs;
  for (const Sent& frame : frames)
    if (frame.type == MessageType::ingress) seqs.push_back(frame.seq);
  return seqs;
}

protocol::SessionReply opened_reply(std::uint64_t session, std::uint64_t last_applied,
                                    protocol::Incarnation incarnation = kIncarnation, std::uint64_t term = 1) {
  protocol::SessionReply reply;
  reply.status = SessionStatus::opened;
  reply.leader_id = 1;
  reply.term = term;
  reply.session_id = session;
  reply.last_applied_seq = last_applied;
  reply.incarnation = incarnation;
  return reply;
}

protocol::SessionReply status_reply(SessionStatus status, std::string_view text, std::uint32_t leader = 0,
                                    std::uint64_t term = 1) {
  protocol::SessionReply reply;
  reply.status = status;
  reply.leader_id = leader;
  reply.term = term;
  reply.text = text;
  return reply;
}

protocol::Ack ack(std::uint64_t applied_seq, std::uint64_t position, std::uint64_t session = kSession,
                  std::uint64_t term = 1, std::uint32_t leader = 1) {
  protocol::Ack message;
  message.session_id = session;
  message.applied_seq = applied_seq;
  message.log_position = position;
  message.term = term;
  message.leader_id = leader;
  return message;
}

/// An egress frame; `payload` must outlive it (a view, as in a decoded frame).
protocol::Egress egress(std::uint64_t seq, std::string_view payload, std::uint64_t term = 1,
                        std::uint64_t session = kSession) {
  return protocol::Egress{session, seq, as_bytes(payload), term, 1};
}

protocol::IngressRejected rejection(std::uint64_t seq, std::uint64_t expected, IngressRejectReason reason) {
  protocol::IngressRejected message;
  message.session_id = kSession;
  message.seq = seq;
  message.expected_seq = expected;
  message.reason = reason;
  return message;
}

class ClientCoreTest : public ::testing::Test {
 protected:
  /// Hands `message` to the core as the node's frame.
  template <typename Message>
  void deliver(const Message& message) {
    ByteVector bytes;
    protocol::append_frame(message, bytes);
    const protocol::FrameScan scan = protocol::scan_frame(bytes);
    ASSERT_EQ(scan.status, protocol::FrameScan::Status::complete);
    core_.on_frame(scan.frame, now_);
  }

  /// Ticks (now, then every 10 ms, for at most 10 s) until the core asks for a connection.
  std::optional<std::string> await_connect() {
    for (int i = 0; i < 1000; ++i) {
      core_.tick(now_);
      if (auto endpoint = core_.take_connect()) return endpoint;
      now_ += 10ms;
    }
    ADD_FAILURE() << "the client never asked to connect";
    return std::nullopt;
  }

  /// Connects (wherever the core asks) and opens session kSession with the node reporting `last_applied`.
  void open(std::uint64_t last_applied = 0, protocol::Incarnation incarnation = kIncarnation) {
    open_with(opened_reply(kSession, last_applied, incarnation));
  }

  /// Connects (wherever the core asks) and answers the session open with `reply`.
  void open_with(const protocol::SessionReply& reply) {
    take_sent(core_);  // what the last connection left unsent: the runtime clears it after every turn
    ASSERT_TRUE(await_connect().has_value());
    core_.on_connected(now_, a_node());
    const auto frames = take_sent(core_);
    ASSERT_FALSE(frames.empty());
    ASSERT_EQ(frames.front().type, MessageType::session_open);
    deliver(reply);
  }

  /// Starts over with a core built from `options`.
  void use(ClientOptions options, std::uint64_t seed = 1234) {
    core_ = ClientCore(std::move(options), kClientHigh, kClientLow, seed);
  }

  Offer offer(std::string_view text) { return core_.offer(as_bytes(text), now_); }

  /// The events since the last call; every fate among them is counted in fates_.
  std::vector<Event> take_events() {
    std::vector<Event> events = std::move(core_.events());
    core_.events().clear();
    for (const Event& event : events) {
      if (const auto* applied = std::get_if<AppliedEvent>(&event)) ++fates_[applied->seq];
      if (const auto* rejected = std::get_if<RejectedEvent>(&event)) ++fates_[rejected->seq];
      if (const auto* unknown = std::get_if<UnknownEvent>(&event)) ++fates_[unknown->seq];
    }
    return events;
  }

  template <typename T>
  std::vector<T> take(std::vector<Event> events) {
    std::vector<T> found;
    for (const Event& event : events)
      if (const T* value = std::get_if<T>(&event)) found.push_back(*value);
    return found;
  }
  template <typename T>
  std::vector<T> take() {
    return take<T>(take_events());
  }

  static Seqs seqs_of(const std::vector<AppliedEvent>& events) {
    Seqs seqs;
    for (const auto& event : events) seqs.push_back(event.seq);
    return seqs;
  }
  static Seqs seqs_of(const std::vector<UnknownEvent>& events) {
    Seqs seqs;
    for (const auto& event : events) seqs.push_back(event.seq);
    return seqs;
  }
  static Seqs seqs_of(const std::vector<RejectedEvent>& events) {
    Seqs seqs;
    for (const auto& event : events) seqs.push_back(event.seq);
    return seqs;
  }

  Time now_{0};
  ClientCore core_{test_options(), kClientHigh, kClientLow, 1234};
  std::map<std::uint64_t, int> fates_;
};

// --- connecting -------------------------------------------------------------------------------------------------

TEST_F(ClientCoreTest, TickWithNoConnectionAsksToConnectToAMemberOnce) {
  core_.tick(now_);
  const auto endpoint = core_.take_connect();
  ASSERT_TRUE(endpoint.has_value());
  EXPECT_TRUE(std::find(kMembers.begin(), kMembers.end(), *endpoint) != kMembers.end()) << *endpoint;
  EXPECT_FALSE(core_.take_connect().has_value());
  core_.tick(now_ + 100ms);  // still connecting: the transport bounds the attempt
  EXPECT_FALSE(core_.take_connect().has_value());
  EXPECT_EQ(core_.state(), ClientState::connecting);
}

TEST_F(ClientCoreTest, FailedConnectionsCycleThroughEveryMember) {
  std::set<std::string> tried;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const auto endpoint = await_connect();
    ASSERT_TRUE(endpoint.has_value());
    tried.insert(*endpoint);
    core_.on_disconnected(now_, Disconnect{Reason::connection_refused, "connection refused"});
  }
  EXPECT_EQ(tried, (std::set<std::string>(kMembers.begin(), kMembers.end())));
  EXPECT_EQ(core_.state(), ClientState::connecting);
}

TEST_F(ClientCoreTest, OnConnectedSendsSessionOpenWithTheClientId) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  const auto frames = take_sent(core_);
  ASSERT_EQ(frames.size(), 1U);
  EXPECT_EQ(frames[0].type, MessageType::session_open);
  EXPECT_EQ(frames[0].client_high, kClientHigh);
  EXPECT_EQ(frames[0].client_low, kClientLow);
  EXPECT_EQ(frames[0].session, 0U) << "no session to resume yet";
  EXPECT_EQ(frames[0].last_egress, 0U);
  EXPECT_EQ(frames[0].credential, kCredential);
}

TEST_F(ClientCoreTest, ARedirectDropsTheConnectionAndFollowsItAtOnce) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  take_sent(core_);
  deliver(status_reply(SessionStatus::redirect, "n3:7003", 3, 2));
  EXPECT_TRUE(core_.take_close());
  core_.tick(now_);  // no time passes
  EXPECT_EQ(core_.take_connect(), "n3:7003");
  const auto leaders = take<LeaderEvent>();
  ASSERT_EQ(leaders.size(), 1U);
  EXPECT_EQ(leaders[0].leader, 3U);
  EXPECT_EQ(leaders[0].term, 2U);
}

TEST_F(ClientCoreTest, ASecondRedirectInTheSameRoundWaitsForTheBackoff) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(status_reply(SessionStatus::redirect, "n3:7003", 3, 2));
  ASSERT_TRUE(core_.take_close());
  core_.tick(now_);
  ASSERT_EQ(core_.take_connect(), "n3:7003");
  core_.on_connected(now_, a_node());
  deliver(status_reply(SessionStatus::redirect, "n2:7002", 2, 3));
  EXPECT_TRUE(core_.take_close());
  core_.tick(now_);
  EXPECT_FALSE(core_.take_connect().has_value()) << "a second redirect in one round is not followed at once";
  const Time redirected_at = now_;
  EXPECT_EQ(await_connect(), "n2:7002") << "after the backoff it goes where the redirect pointed";
  EXPECT_GT(now_, redirected_at);
}

TEST_F(ClientCoreTest, NoLeaderKeepsTheConnectionOpen) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  take_sent(core_);
  deliver(status_reply(SessionStatus::no_leader, "election under way"));
  EXPECT_FALSE(core_.take_close());
  now_ += 500ms;
  core_.tick(now_);
  EXPECT_FALSE(core_.take_connect().has_value());
  EXPECT_EQ(core_.state(), ClientState::connecting);

  // The node answers on the same connection once a leader is elected.
  deliver(opened_reply(kSession, 0));
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_EQ(core_.session(), kSession);
}

TEST_F(ClientCoreTest, ANodeThatAnswersNoLeaderForTwoSilenceLimitsIsLeftForTheOtherMembers) {
  const auto first = await_connect();
  ASSERT_TRUE(first.has_value());
  core_.on_connected(now_, a_node());
  take_sent(core_);
  // The node answers every keep-alive, so the silence limit never fires; the client still moves on.
  for (int i = 0; i < 8; ++i) {
    now_ += 250ms;
    deliver(status_reply(SessionStatus::no_leader, "cut off from the quorum"));
    core_.tick(now_);
    EXPECT_FALSE(core_.take_close()) << "left after only " << (i + 1) * 250 << " ms";
  }
  now_ += 250ms;
  deliver(status_reply(SessionStatus::no_leader, "cut off from the quorum"));
  core_.tick(now_);
  EXPECT_TRUE(core_.take_close()) << "still waiting after 2.25 s";
  const auto next = await_connect();
  ASSERT_TRUE(next.has_value());
  EXPECT_NE(*next, *first) << "it must try another member";
  EXPECT_EQ(core_.state(), ClientState::connecting);
}

TEST_F(ClientCoreTest, NoLeaderWhileConnectedHoldsTheMessagesUntilAnotherMemberOpensTheSession) {
  open();
  const Time lost_at = now_;
  deliver(status_reply(SessionStatus::no_leader, "the leader stepped down"));
  EXPECT_TRUE(core_.take_close()) << "a leader deposed with no successor is left at once";
  EXPECT_EQ(core_.state(), ClientState::reconnecting);
  EXPECT_EQ(offer("held").status, OfferStatus::accepted);
  EXPECT_TRUE(ingress_seqs(take_sent(core_)).empty()) << "no session: the message waits in the buffer";
  core_.tick(now_);
  EXPECT_TRUE(core_.take_connect().has_value()) << "another member is tried without a backoff";
  EXPECT_EQ(now_, lost_at);
  core_.on_connected(now_, a_node());
  take_sent(core_);
  deliver(opened_reply(kSession, 0));
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{1}));
}

// --- messages ---------------------------------------------------------------------------------------------------

TEST_F(ClientCoreTest, OpenedConnectsAndSendsTheMessagesOfferedBeforeInOrder) {
  EXPECT_EQ(offer("a").seq, 1U);
  EXPECT_EQ(offer("b").seq, 2U);
  EXPECT_EQ(offer("c").seq, 3U);
  open();
  EXPECT_EQ(core_.state(), ClientState::connected);
  const auto frames = take_sent(core_);
  ASSERT_EQ(frames.size(), 3U);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(frames[i].type, MessageType::ingress);
    EXPECT_EQ(frames[i].session, kSession);
    EXPECT_EQ(frames[i].seq, i + 1);
  }
  EXPECT_EQ(frames[0].payload, "a");
  EXPECT_EQ(frames[2].payload, "c");
  const auto sessions = take<SessionEvent>();
  ASSERT_EQ(sessions.size(), 1U);
  EXPECT_EQ(sessions[0].session, kSession);
  EXPECT_EQ(sessions[0].change, SessionChange::opened);

  // Once connected, an offer is sent at once.
  EXPECT_EQ(offer("d").seq, 4U);
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{4}));
}

TEST_F(ClientCoreTest, AnAckFreesTheBufferAndReportsEachSeqAppliedInOrder) {
  open();
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  take_events();
  deliver(ack(2, 55));
  const auto applied = take<AppliedEvent>();
  ASSERT_EQ(applied.size(), 2U);
  EXPECT_EQ(applied[0].seq, 1U);
  EXPECT_EQ(applied[1].seq, 2U);
  EXPECT_EQ(applied[0].position, 55U);
  EXPECT_EQ(core_.unacknowledged(), 1U);

  deliver(ack(2, 55));  // an ack again: nothing new
  EXPECT_TRUE(take<AppliedEvent>().empty());
  deliver(ack(3, 60, /*session=*/kSession + 1));  // another session's: ignored
  EXPECT_TRUE(take<AppliedEvent>().empty());
  deliver(ack(3, 60));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{3}));
  EXPECT_EQ(core_.unacknowledged(), 0U);
}

TEST_F(ClientCoreTest, OnReconnectTheNodesLastAppliedSeqIsReportedAndTheRestResent) {
  open();
  for (const char* text : {"a", "b", "c", "d"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  take_sent(core_);
  take_events();
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  EXPECT_EQ(core_.state(), ClientState::reconnecting);

  open(/*last_applied=*/2);
  EXPECT_EQ(core_.state(), ClientState::connected);
  const auto events = take_events();
  EXPECT_EQ(seqs_of(take<AppliedEvent>(events)), (Seqs{1, 2}));
  const auto sessions = take<SessionEvent>(events);
  ASSERT_EQ(sessions.size(), 1U);
  EXPECT_EQ(sessions[0].change, SessionChange::resumed);
  const auto frames = take_sent(core_);
  EXPECT_EQ(ingress_seqs(frames), (Seqs{3, 4}));
  EXPECT_EQ(core_.unacknowledged(), 2U);
}

TEST_F(ClientCoreTest, AGapResendsFromTheExpectedSeqOnceForEveryEchoOfIt) {
  open();
  for (const char* text : {"a", "b", "c", "d"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  take_sent(core_);
  deliver(ack(1, 10));
  // Seq 2 was lost on the way: 3 and 4 each report the same gap.
  deliver(rejection(3, 2, IngressRejectReason::gap));
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{2, 3, 4}));
  deliver(rejection(4, 2, IngressRejectReason::gap));
  EXPECT_TRUE(take_sent(core_).empty()) << "the second report of the same gap resends nothing";
  // A gap is not a fate.
  EXPECT_TRUE(take<RejectedEvent>().empty());
  EXPECT_EQ(core_.unacknowledged(), 3U);

  // A later, different gap is resent again.
  deliver(ack(2, 11));
  deliver(rejection(4, 3, IngressRejectReason::gap));
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{3, 4}));
}

TEST_F(ClientCoreTest, ATooLargeRejectionIsTheFateOfThatSeqOnly) {
  open();
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  take_events();
  deliver(rejection(2, 3, IngressRejectReason::too_large));
  const auto events = take_events();
  EXPECT_EQ(seqs_of(take<RejectedEvent>(events)), (Seqs{2}));
  EXPECT_TRUE(take<AppliedEvent>(events).empty());
  EXPECT_EQ(core_.unacknowledged(), 2U);
  deliver(ack(3, 40));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{1, 3}));
  EXPECT_EQ(core_.unacknowledged(), 0U);
}

TEST_F(ClientCoreTest, AnOfferBeyondTheBufferedMessageCountIsBackPressured) {
  for (int i = 0; i < 8; ++i) ASSERT_EQ(offer("x").status, OfferStatus::accepted);
  const Offer refused = offer("x");
  EXPECT_EQ(refused.status, OfferStatus::back_pressured);
  // Room again once an ack frees it; the refused offer did not take a seq.
  open();
  deliver(ack(1, 5));
  const Offer accepted = offer("x");
  EXPECT_EQ(accepted.status, OfferStatus::accepted);
  EXPECT_EQ(accepted.seq, 9U);
}

TEST_F(ClientCoreTest, AnOfferBeyondTheBufferedBytesIsBackPressured) {
  ClientOptions options = test_options();
  options.max_buffered_bytes = 100;
  ClientCore core(options, kClientHigh, kClientLow, 1);
  const std::string sixty(60, 'x');
  EXPECT_EQ(core.offer(as_bytes(sixty), now_).status, OfferStatus::accepted);
  EXPECT_EQ(core.offer(as_bytes(sixty), now_).status, OfferStatus::back_pressured);
  EXPECT_EQ(core.offer(as_bytes(std::string(40, 'y')), now_).status, OfferStatus::accepted);
}

TEST_F(ClientCoreTest, AnOfferOverTheMessageSizeIsTooLarge) {
  EXPECT_EQ(offer(std::string(64, 'x')).status, OfferStatus::accepted);
  const Offer refused = offer(std::string(65, 'x'));
  EXPECT_EQ(refused.status, OfferStatus::too_large);
  EXPECT_EQ(offer("next").seq, 2U) << "a refused offer takes no seq";
}

TEST_F(ClientCoreTest, CloseReportsEveryUnacknowledgedSeqAsUnknownAndLaterOffersAsClosed) {
  open();
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  deliver(ack(1, 5));
  take_sent(core_);
  take_events();
  core_.close(now_);
  const auto events = take_events();
  EXPECT_EQ(seqs_of(take<UnknownEvent>(events)), (Seqs{2, 3}));
  EXPECT_EQ(core_.state(), ClientState::closed);
  EXPECT_EQ(types(take_sent(core_)), (std::vector<MessageType>{MessageType::session_close}));
  EXPECT_TRUE(core_.take_close());
  EXPECT_EQ(core_.unacknowledged(), 0U);
  EXPECT_EQ(offer("late").status, OfferStatus::closed);
  core_.tick(now_ + 10s);
  EXPECT_FALSE(core_.take_connect().has_value()) << "closed is terminal";
}

// --- liveness ---------------------------------------------------------------------------------------------------

TEST_F(ClientCoreTest, SilenceBeyondTheLimitDropsTheConnection) {
  open();
  take_sent(core_);
  const Time heard = now_;
  core_.tick(heard + 1000ms);  // exactly the limit: still alive
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_FALSE(core_.take_close());
  now_ = heard + 900ms;
  deliver(ack(0, 0));  // heard from again: the silence starts over
  core_.tick(heard + 1900ms);
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_FALSE(core_.take_close());
  core_.tick(heard + 1901ms);
  EXPECT_EQ(core_.state(), ClientState::reconnecting);
  EXPECT_TRUE(core_.take_close());
  // It reconnects after the backoff.
  now_ = heard + 1901ms;
  EXPECT_TRUE(await_connect().has_value());
}

TEST_F(ClientCoreTest, KeepAlivesAreSentEveryIntervalWhileConnected) {
  open();
  take_sent(core_);
  const Time start = now_;
  std::vector<Time> sent_at;
  for (Time t = start; t <= start + 1000ms; t += 10ms) {
    now_ = t;
    deliver(ack(0, 0));  // the node is heard from, so the link stays up
    core_.tick(t);
    for (const Sent& frame : take_sent(core_)) {
      EXPECT_EQ(frame.type, MessageType::keep_alive);
      EXPECT_EQ(frame.session, kSession);
      sent_at.push_back(t - start);
    }
  }
  EXPECT_EQ(sent_at, (std::vector<Time>{250ms, 500ms, 750ms, 1000ms}));
}

// A client waiting for a leader keeps talking: the node keeps a waiting connection only while it hears from it.
TEST_F(ClientCoreTest, KeepAlivesAreSentWhileWaitingForASession) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  take_sent(core_);
  deliver(status_reply(SessionStatus::no_leader, "election"));
  for (int i = 0; i < 50; ++i) {
    now_ += 10ms;
    deliver(status_reply(SessionStatus::no_leader, "election"));
    core_.tick(now_);
  }
  const auto sent = types(take_sent(core_));
  EXPECT_EQ(sent, (std::vector<MessageType>{MessageType::keep_alive, MessageType::keep_alive}));
  EXPECT_EQ(core_.state(), ClientState::connecting) << "still waiting on the same connection";
}

// --- nodes of another configuration ----------------------------------------------------------------------------

TEST_F(ClientCoreTest, ANodeReportingAnotherMemberCountIsSkippedNeverServesAndIsReported) {
  ASSERT_EQ(offer("a").status, OfferStatus::accepted);
  const auto endpoint = await_connect();
  ASSERT_TRUE(endpoint.has_value());
  constexpr std::uint32_t alone[] = {1};
  core_.on_connected(now_, a_node(1, alone));
  EXPECT_TRUE(take_sent(core_).empty()) << "no session is opened on a 1-member cluster's node";
  EXPECT_TRUE(core_.take_close());
  const auto events = take_events();
  const auto refused = take<ConnectFailedEvent>(events);
  ASSERT_EQ(refused.size(), 1U);
  EXPECT_EQ(refused[0].endpoint, *endpoint);
  EXPECT_NE(refused[0].text.find("1-member cluster [1]"), std::string::npos) << refused[0].text;
  EXPECT_NE(refused[0].text.find("lists 3 members"), std::string::npos) << refused[0].text;
  EXPECT_TRUE(take<StateEvent>(events).empty()) << "skipping a node is not a state change";
  EXPECT_EQ(core_.state(), ClientState::connecting) << "a misconfigured member is no reason to give up";
  EXPECT_TRUE(fates_.empty()) << "the buffered message waits for a node that may serve it";

  // The next member, of the right configuration, serves the client; the buffered message goes there.
  const auto next = await_connect();
  ASSERT_TRUE(next.has_value());
  EXPECT_NE(*next, *endpoint);
  core_.on_connected(now_, a_node(2));
  ASSERT_EQ(types(take_sent(core_)), (std::vector<MessageType>{MessageType::session_open}));
  deliver(opened_reply(kSession, 0));
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{1}));
}

TEST_F(ClientCoreTest, ASkippedNodeIsTriedAgainInItsTurnAndTheClientNeverCloses) {
  // Every member misconfigured (the operator's to fix): the client goes round them all, again and again.
  constexpr std::uint32_t five[] = {1, 2, 3, 4, 5};
  std::map<std::string, int> refusals;
  for (int attempt = 0; attempt < 9; ++attempt) {
    const auto endpoint = await_connect();
    ASSERT_TRUE(endpoint.has_value());
    core_.on_connected(now_, a_node(1, five));
    ASSERT_TRUE(core_.take_close());
    for (const auto& refused : take<ConnectFailedEvent>()) ++refusals[refused.endpoint];
  }
  EXPECT_EQ(refusals, (std::map<std::string, int>{{"n1:7001", 3}, {"n2:7002", 3}, {"n3:7003", 3}}));
  EXPECT_EQ(core_.state(), ClientState::connecting);
}

TEST_F(ClientCoreTest, OnceServedANodeOfAnotherMemberListIsSkippedEvenWithTheSameCount) {
  open();
  EXPECT_EQ(core_.configuration(), protocol::configuration_id(protocol::MemberIds::of(kThree)));
  take_events();
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  ASSERT_TRUE(await_connect().has_value());
  constexpr std::uint32_t other[] = {1, 2, 4};
  core_.on_connected(now_, a_node(4, other));
  EXPECT_TRUE(take_sent(core_).empty());
  EXPECT_TRUE(core_.take_close());
  const auto refused = take<ConnectFailedEvent>();
  ASSERT_EQ(refused.size(), 1U);
  EXPECT_NE(refused[0].text.find("node 4"), std::string::npos) << refused[0].text;
  EXPECT_NE(refused[0].text.find("[1, 2, 4]"), std::string::npos) << refused[0].text;
  EXPECT_NE(refused[0].text.find("[1, 2, 3]"), std::string::npos) << refused[0].text;
  EXPECT_EQ(core_.state(), ClientState::reconnecting);

  // Its own configuration serves it again.
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node(2));
  deliver(opened_reply(kSession, 0));
  EXPECT_EQ(core_.state(), ClientState::connected);
}

TEST_F(ClientCoreTest, AClientListingOneEndpointCannotCountMembersButStillComparesConfigurations) {
  // Behind a load balancer or one DNS name: the endpoint count says nothing about the cluster's size.
  ClientOptions options = test_options();
  options.members = {"cluster.example:7000"};
  ClientCore core(options, kClientHigh, kClientLow, 99);
  const auto connect = [&](const protocol::PeerIdentity& node) {
    core.outgoing().clear();
    for (int i = 0; i < 1000 && !core.take_connect(); ++i) core.tick(now_ += 10ms);
    core.on_connected(now_, node);
  };
  constexpr std::uint32_t five[] = {1, 2, 3, 4, 5};
  connect(a_node(1, five));
  ASSERT_FALSE(core.take_close()) << "any member count is accepted";
  ByteVector bytes;
  protocol::append_frame(opened_reply(kSession, 0), bytes);
  core.on_frame(protocol::scan_frame(bytes).frame, now_);
  ASSERT_EQ(core.state(), ClientState::connected);

  core.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  connect(a_node(1, kThree));
  EXPECT_TRUE(core.take_close()) << "but not a node of another configuration than the one that served it";
  EXPECT_EQ(core.state(), ClientState::reconnecting);
}

TEST_F(ClientCoreTest, ANodeOfAnotherIncarnationAtTheHandshakeIsSkippedUntilEveryMemberSaysSo) {
  open();
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  std::set<std::string> refused;
  while (refused.size() < kMembers.size()) {
    ASSERT_EQ(core_.state(), ClientState::reconnecting) << "a stray process on one port must not close the client";
    const auto endpoint = await_connect();
    ASSERT_TRUE(endpoint.has_value());
    refused.insert(*endpoint);
    core_.on_connected(now_, a_node(2, kThree, protocol::Incarnation{0x99, 0x98}));
    EXPECT_TRUE(take_sent(core_).empty()) << "no session is opened on a re-created cluster";
    EXPECT_TRUE(core_.take_close());
  }
  EXPECT_EQ(core_.state(), ClientState::closed);
  EXPECT_EQ(core_.reason(), Reason::another_incarnation);
}

TEST_F(ClientCoreTest, ANodeThatKnowsNoIncarnationYetMayServe) {
  open();
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node(2, kThree, protocol::Incarnation{}));
  EXPECT_EQ(types(take_sent(core_)), (std::vector<MessageType>{MessageType::session_open}));
  EXPECT_NE(core_.state(), ClientState::closed);
}

// --- permanent refusals -----------------------------------------------------------------------------------------

TEST_F(ClientCoreTest, ADifferentIncarnationInAnOpenedReplyClosesTheClient) {
  open();
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  open(0, protocol::Incarnation{0x99, 0x98});
  EXPECT_EQ(core_.state(), ClientState::closed);
  EXPECT_TRUE(core_.take_close());
  EXPECT_EQ(offer("x").status, OfferStatus::closed);
  core_.tick(now_ + 10s);
  EXPECT_FALSE(core_.take_connect().has_value());
}

TEST_F(ClientCoreTest, AHandshakeRefusalFromEveryMemberClosesTheClientAndRejectsEveryBufferedSeq) {
  for (const char* text : {"a", "b"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  std::set<std::string> refused;
  while (refused.size() < kMembers.size()) {
    ASSERT_EQ(core_.state(), ClientState::connecting) << "refused by " << refused.size() << " of 3 members";
    const auto endpoint = await_connect();
    ASSERT_TRUE(endpoint.has_value());
    refused.insert(*endpoint);
    core_.on_refused(now_, protocol::ErrorCode::wrong_cluster, "wrong cluster");
  }
  EXPECT_EQ(core_.state(), ClientState::closed);
  EXPECT_EQ(core_.reason(), Reason::another_cluster);
  const auto rejected = take<RejectedEvent>();
  EXPECT_EQ(seqs_of(rejected), (Seqs{1, 2})) << "never sent: definitely not applied";
}

// A client that closes because the cluster was re-created still owes every buffered seq its one fate (client.h):
// unknown, since the old incarnation may have applied it before it went.
TEST_F(ClientCoreTest, ClosingOnAnotherIncarnationGivesEveryBufferedSeqAFate) {
  open();
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  deliver(ack(1, 5));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  open(0, protocol::Incarnation{0x99, 0x98});
  ASSERT_EQ(core_.state(), ClientState::closed);
  core_.close(now_);
  take_events();
  EXPECT_EQ(fates_, (std::map<std::uint64_t, int>{{1, 1}, {2, 1}, {3, 1}}));
  EXPECT_EQ(core_.unacknowledged(), 0U);
}

// The same for a session refused for good.
TEST_F(ClientCoreTest, ARejectedSessionReplyGivesEveryBufferedSeqAFate) {
  for (const char* text : {"a", "b"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(status_reply(SessionStatus::rejected, "not authorised"));
  ASSERT_EQ(core_.state(), ClientState::closed);
  core_.close(now_);
  take_events();
  EXPECT_EQ(fates_, (std::map<std::uint64_t, int>{{1, 1}, {2, 1}}));
  EXPECT_EQ(core_.unacknowledged(), 0U);
}

TEST_F(ClientCoreTest, ARefusalThatAnotherMemberContradictsNeverClosesTheClient) {
  // A stray process of another cluster listens on n1's port; n2 and n3 serve the client, then drop it.
  ASSERT_EQ(offer("a").status, OfferStatus::accepted);
  int refusals = 0;
  int sessions = 0;
  for (int connection = 0; connection < 30; ++connection) {
    const auto endpoint = await_connect();
    ASSERT_TRUE(endpoint.has_value());
    if (*endpoint == "n1:7001") {
      core_.on_refused(now_, protocol::ErrorCode::wrong_cluster, "cluster id 8, not 7");
      ++refusals;
    } else {
      core_.on_connected(now_, a_node(static_cast<std::uint32_t>((*endpoint)[1] - '0')));
      deliver(opened_reply(kSession, 0));
      ASSERT_EQ(core_.state(), ClientState::connected);
      ++sessions;
      core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
    }
    ASSERT_NE(core_.state(), ClientState::closed) << "after " << refusals << " refusals";
    take_sent(core_);
  }
  EXPECT_GE(refusals, 5);
  EXPECT_GE(sessions, 5);
  const auto failed = take<ConnectFailedEvent>();
  ASSERT_EQ(failed.size(), static_cast<std::size_t>(refusals)) << "each refusal reached the application";
  for (const auto& event : failed) {
    EXPECT_EQ(event.endpoint, "n1:7001");
    EXPECT_EQ(event.reason, Reason::another_cluster);
  }
}

TEST_F(ClientCoreTest, OnlyRefusalsFromEveryMemberInARowCloseTheClientWithTheRefusalsReason) {
  for (const auto& [code, reason] :
       {std::pair{protocol::ErrorCode::wrong_cluster, Reason::another_cluster},
        std::pair{protocol::ErrorCode::protocol_version_mismatch, Reason::incompatible_version}}) {
    use(test_options());
    now_ = Time{0};
    // Two members refuse; the third accepts, which clears their refusals.
    std::set<std::string> refused;
    while (refused.size() < 2) {
      const auto endpoint = await_connect();
      ASSERT_TRUE(endpoint.has_value());
      core_.on_refused(now_, code, "refused");
      refused.insert(*endpoint);
    }
    const auto third = await_connect();
    ASSERT_TRUE(third.has_value());
    ASSERT_EQ(refused.count(*third), 0U);
    core_.on_connected(now_, a_node());
    core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
    // The same two again: not every member in a row.
    for (int i = 0; i < 2; ++i) {
      const auto endpoint = await_connect();
      ASSERT_TRUE(endpoint.has_value());
      ASSERT_EQ(refused.count(*endpoint), 1U);
      core_.on_refused(now_, code, "refused");
      ASSERT_NE(core_.state(), ClientState::closed) << "the third member accepted in between";
    }
    // Now the third refuses too: every member in a row.
    ASSERT_EQ(await_connect(), third);
    core_.on_refused(now_, code, "refused");
    EXPECT_EQ(core_.state(), ClientState::closed);
    EXPECT_EQ(core_.reason(), reason);
    core_.tick(now_ + 10s);
    EXPECT_FALSE(core_.take_connect().has_value());
  }
}

// --- a session closed by the cluster ----------------------------------------------------------------------------

protocol::SessionClosed session_closed(std::uint64_t last_applied) {
  protocol::SessionClosed closed;
  closed.session_id = kSession;
  closed.last_applied_seq = last_applied;
  closed.reason = protocol::SessionCloseReason::service;
  return closed;
}

TEST_F(ClientCoreTest, ASessionClosedByTheClusterReportsItsAppliedSeqsAndOpensANewSessionOnTheSameConnection) {
  open();
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  take_sent(core_);
  take_events();
  deliver(session_closed(1));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{1}));
  const auto reopen = take_sent(core_);
  ASSERT_EQ(types(reopen), (std::vector<MessageType>{MessageType::session_open}));
  EXPECT_EQ(reopen[0].session, 0U) << "every fate is known: nothing to resume";
  EXPECT_EQ(reopen[0].credential, kCredential);
  EXPECT_FALSE(core_.take_close());

  deliver(opened_reply(kSession + 10, 0));
  const auto events = take_events();
  const auto sessions = take<SessionEvent>(events);
  ASSERT_EQ(sessions.size(), 1U);
  EXPECT_EQ(sessions[0].session, kSession + 10);
  EXPECT_EQ(sessions[0].change, SessionChange::replaced) << "a new session in place of the closed one";
  // Every seq of the old session has exactly one fate. The application's seqs go on; on the wire the new
  // session numbers its messages from 1.
  EXPECT_EQ(fates_, (std::map<std::uint64_t, int>{{1, 1}, {2, 1}, {3, 1}}));
  EXPECT_EQ(core_.unacknowledged(), 0U);
  take_sent(core_);
  EXPECT_EQ(offer("d").seq, 4U);
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{1}));
  deliver(ack(1, 200, kSession + 10));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{4}));
}

// When the cluster closes the session (a session_closed frame carrying last_applied_seq k), the seqs after k were
// definitely not applied (design.md section 3): rejected, not unknown. A message offered after the close goes to
// the next session.
TEST_F(ClientCoreTest, ASessionClosedByTheClusterRejectsTheSeqsItNeverApplied) {
  open();
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  take_events();
  deliver(session_closed(1));
  ASSERT_EQ(offer("offered between close and reopen").seq, 4U);
  take_sent(core_);
  deliver(opened_reply(kSession + 10, 0));
  const auto events = take_events();
  EXPECT_TRUE(take<UnknownEvent>(events).empty());
  const auto rejected = take<RejectedEvent>(events);
  EXPECT_EQ(seqs_of(rejected), (Seqs{2, 3}));
  ASSERT_FALSE(rejected.empty());
  EXPECT_EQ(rejected[0].text, "the cluster closed the session (service) before applying it");
  EXPECT_EQ(rejected[0].reason, Reason::session_replaced);
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{1})) << "seq 4 is the new session's first message";
}

// A message buffered before the cluster announced its limit, and above it, is withdrawn (never sent whole): its
// fate is "rejected" even when it is only covered by a later "applied up to", and offers above the limit are
// refused from then on.
TEST_F(ClientCoreTest, AMessageAboveTheAnnouncedLimitIsWithdrawnAndRejected) {
  ASSERT_EQ(offer("small").status, OfferStatus::accepted);
  ASSERT_EQ(offer("far too large for the cluster").status, OfferStatus::accepted);
  ASSERT_EQ(offer("fits").status, OfferStatus::accepted);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  take_sent(core_);
  protocol::SessionReply reply = opened_reply(kSession, 0);
  reply.max_message_size = 10;
  deliver(reply);
  EXPECT_EQ(types(take_sent(core_)),
            (std::vector<MessageType>{MessageType::ingress, MessageType::ingress_withdrawn, MessageType::ingress}));
  take_events();
  deliver(ack(3, 40));  // the withdrawal consumed seq 2: "applied up to 3" covers it
  const auto events = take_events();
  EXPECT_EQ(seqs_of(take<AppliedEvent>(events)), (Seqs{1, 3}));
  EXPECT_EQ(seqs_of(take<RejectedEvent>(events)), (Seqs{2}));
  EXPECT_EQ(offer("again far too large").status, OfferStatus::too_large);
}

// --- exactly one fate -------------------------------------------------------------------------------------------

TEST_F(ClientCoreTest, EveryAcceptedSeqGetsExactlyOneFateAcrossAScriptedScenario) {
  std::vector<std::uint64_t> accepted;
  const auto offer_ok = [&](std::string_view text) {
    const Offer result = offer(text);
    EXPECT_EQ(result.status, OfferStatus::accepted);
    accepted.push_back(result.seq);
  };
  offer_ok("1");
  offer_ok("2");
  offer_ok("3");
  open();
  deliver(ack(1, 100));
  offer_ok("4");
  offer_ok("5");
  // The cluster applies 4 and refuses 5 as too large for its own limit (the ack for 4 is lost with the link).
  deliver(rejection(5, 6, IngressRejectReason::too_large));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  offer_ok("6");  // while reconnecting: buffered
  open(/*last_applied=*/5);
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{6}));
  deliver(ack(6, 120));
  offer_ok("7");
  offer_ok("8");
  deliver(rejection(8, 7, IngressRejectReason::gap));
  deliver(ack(8, 130));
  deliver(ack(8, 130));  // a duplicate ack
  offer_ok("9");
  offer_ok("10");
  core_.close(now_);
  take_events();

  ASSERT_EQ(accepted, (Seqs{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
  for (const std::uint64_t seq : accepted) EXPECT_EQ(fates_[seq], 1) << "seq " << seq;
  EXPECT_EQ(fates_.size(), accepted.size());
  EXPECT_EQ(core_.unacknowledged(), 0U);
}

TEST_F(ClientCoreTest, AppliedFatesArriveInSeqOrderAcrossAReconnect) {
  open();
  for (const char* text : {"a", "b", "c", "d", "e"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  deliver(ack(2, 10));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "reset"});
  open(/*last_applied=*/4);
  deliver(ack(5, 20));
  // take_events() in one go: the order of the whole history.
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{1, 2, 3, 4, 5}));
}

// --- resuming a session, and what became of one the cluster closed -------------------------------------------

protocol::SessionReply replacing_reply(std::uint64_t session, std::uint64_t replaced, std::uint64_t replaced_last,
                                       protocol::SessionCloseReason reason) {
  protocol::SessionReply reply = opened_reply(session, 0);
  reply.replaced_session = replaced;
  reply.replaced_last_seq = replaced_last;
  reply.replaced_reason = reason;
  return reply;
}

TEST_F(ClientCoreTest, TheResumeOpenCarriesTheSessionItsLastEgressDeliveredAndTheCredential) {
  open();
  const std::string_view payload = "e";
  deliver(egress(1, payload));
  deliver(egress(2, payload));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  take_sent(core_);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node(2));
  const auto frames = take_sent(core_);
  ASSERT_EQ(types(frames), (std::vector<MessageType>{MessageType::session_open}));
  EXPECT_EQ(frames[0].client_high, kClientHigh);
  EXPECT_EQ(frames[0].client_low, kClientLow);
  EXPECT_EQ(frames[0].session, kSession);
  EXPECT_EQ(frames[0].last_egress, 2U);
  EXPECT_EQ(frames[0].credential, kCredential);
}

// The tombstone's k (design.md section 3): the old session's messages up to k were applied, the rest never will
// be, including one offered while reconnecting (numbered in the old session, never sent).
TEST_F(ClientCoreTest, AReplacedSessionsTombstoneSettlesTheBufferAppliedUpToItsSeqAndRejectedAfter) {
  open();
  for (const char* text : {"a", "b", "c", "d"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  deliver(ack(1, 7));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  ASSERT_EQ(offer("e").seq, 5U);
  take_events();
  fates_.clear();

  take_sent(core_);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  take_sent(core_);
  deliver(replacing_reply(kSession + 30, kSession, 3, protocol::SessionCloseReason::timeout));
  const auto events = take_events();
  const auto applied = take<AppliedEvent>(events);
  EXPECT_EQ(seqs_of(applied), (Seqs{2, 3}));
  for (const auto& event : applied) EXPECT_EQ(event.position, 0U) << "the tombstone names no log position";
  const auto rejected = take<RejectedEvent>(events);
  EXPECT_EQ(seqs_of(rejected), (Seqs{4, 5}));
  for (const auto& event : rejected)
    EXPECT_EQ(event.text, "the cluster closed the session (timeout) before applying it");
  EXPECT_TRUE(take<UnknownEvent>(events).empty());
  EXPECT_EQ(fates_, (std::map<std::uint64_t, int>{{2, 1}, {3, 1}, {4, 1}, {5, 1}}));

  // The fates come before the news of the new session, which numbers its messages from 1 again.
  const auto session_at = std::find_if(events.begin(), events.end(),
                                       [](const Event& event) { return std::holds_alternative<SessionEvent>(event); });
  ASSERT_NE(session_at, events.end());
  EXPECT_EQ(std::get<SessionEvent>(*session_at).session, kSession + 30);
  EXPECT_EQ(std::get<SessionEvent>(*session_at).change, SessionChange::replaced);
  EXPECT_TRUE(std::none_of(session_at, events.end(), [](const Event& event) {
    return std::holds_alternative<AppliedEvent>(event) || std::holds_alternative<RejectedEvent>(event);
  }));
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_EQ(core_.unacknowledged(), 0U);
  EXPECT_TRUE(ingress_seqs(take_sent(core_)).empty()) << "nothing of the old session is resent";
  EXPECT_EQ(offer("f").seq, 6U);
  const auto sent = take_sent(core_);
  ASSERT_EQ(ingress_seqs(sent), (Seqs{1}));
  EXPECT_EQ(sent[0].session, kSession + 30);
}

TEST_F(ClientCoreTest, AnEvictedTombstoneLeavesEveryBufferedMessageUnknown) {
  open();
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  deliver(ack(1, 7));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  take_events();
  fates_.clear();
  take_sent(core_);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  // The cluster says which session it replaced, but its tombstone is gone: reason 0.
  deliver(replacing_reply(kSession + 30, kSession, 0, protocol::SessionCloseReason{}));
  const auto events = take_events();
  const auto unknown = take<UnknownEvent>(events);
  EXPECT_EQ(seqs_of(unknown), (Seqs{2, 3}));
  ASSERT_FALSE(unknown.empty());
  EXPECT_NE(unknown[0].text.find("evicted"), std::string::npos) << unknown[0].text;
  EXPECT_EQ(unknown[0].reason, Reason::session_replaced);
  EXPECT_TRUE(take<AppliedEvent>(events).empty());
  EXPECT_TRUE(take<RejectedEvent>(events).empty());
  const auto sessions = take<SessionEvent>(events);
  ASSERT_EQ(sessions.size(), 1U);
  EXPECT_EQ(sessions[0].change, SessionChange::replaced);
  EXPECT_EQ(core_.unacknowledged(), 0U);
}

// A tombstone is only the client's to read if it is the session the client asked to resume.
TEST_F(ClientCoreTest, ATombstoneOfAnotherSessionThanTheOneAskedForSettlesNothingExactly) {
  open();
  for (const char* text : {"a", "b"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  take_events();
  take_sent(core_);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(replacing_reply(kSession + 30, kSession + 1, 2, protocol::SessionCloseReason::timeout));
  const auto events = take_events();
  EXPECT_EQ(seqs_of(take<UnknownEvent>(events)), (Seqs{1, 2}));
  EXPECT_TRUE(take<AppliedEvent>(events).empty());
}

TEST_F(ClientCoreTest, OpenedResumedAndReplacedAreToldApart) {
  open();
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  open();  // the same session again
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  take_sent(core_);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(replacing_reply(kSession + 1, kSession, 0, protocol::SessionCloseReason::service));
  const auto events = take_events();
  std::vector<SessionChange> changes;
  for (const auto& session : take<SessionEvent>(events)) changes.push_back(session.change);
  EXPECT_EQ(changes,
            (std::vector<SessionChange>{SessionChange::opened, SessionChange::resumed, SessionChange::replaced}));
  std::vector<std::string> connected;
  for (const auto& state : take<StateEvent>(events))
    if (state.state == ClientState::connected) connected.push_back(state.text);
  ASSERT_EQ(connected.size(), 3U);
  EXPECT_NE(connected[0].find("opened"), std::string::npos) << connected[0];
  EXPECT_NE(connected[1].find("resumed"), std::string::npos) << connected[1];
  EXPECT_NE(connected[2].find("replaced"), std::string::npos) << connected[2];
}

// --- a busy cluster -----------------------------------------------------------------------------------------------

TEST_F(ClientCoreTest, BusyKeepsTheBufferDropsTheConnectionAndTriesAgainAfterABackoffStep) {
  for (const char* text : {"a", "b"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  take_sent(core_);
  take_events();
  deliver(status_reply(SessionStatus::busy, "at the session limit (1000)", 1, 1));
  EXPECT_TRUE(core_.take_close());
  EXPECT_EQ(core_.state(), ClientState::connecting) << "busy is not permanent";
  EXPECT_EQ(core_.unacknowledged(), 2U);
  const auto events = take_events();
  EXPECT_TRUE(fates_.empty()) << "the buffer waits";
  EXPECT_TRUE(take<StateEvent>(events).empty()) << "not a state change";
  const auto failures = take<ConnectFailedEvent>(events);
  ASSERT_EQ(failures.size(), 1U) << "the application hears why it waits";
  EXPECT_EQ(failures[0].reason, Reason::cluster_busy);
  EXPECT_NE(failures[0].text.find("at the session limit (1000)"), std::string::npos) << failures[0].text;

  core_.tick(now_);
  EXPECT_FALSE(core_.take_connect().has_value()) << "not at once: after a backoff step";
  const Time busy_at = now_;
  ASSERT_TRUE(await_connect().has_value());
  EXPECT_GT(now_, busy_at);
  EXPECT_LE(now_ - busy_at, 200ms) << "the backoff after one busy answer: at most 4 x the initial 50 ms";
  core_.on_connected(now_, a_node());
  EXPECT_EQ(types(take_sent(core_)), (std::vector<MessageType>{MessageType::session_open}));
  deliver(opened_reply(kSession, 0));
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{1, 2}));
}

TEST_F(ClientCoreTest, BusyWhileReconnectingKeepsTheClientReconnecting) {
  open();
  ASSERT_EQ(offer("a").status, OfferStatus::accepted);
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  take_sent(core_);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(status_reply(SessionStatus::busy, "full", 1, 1));
  EXPECT_TRUE(core_.take_close());
  EXPECT_EQ(core_.state(), ClientState::reconnecting);
  EXPECT_EQ(core_.unacknowledged(), 1U);
  EXPECT_TRUE(ingress_seqs(take_sent(core_)).empty());
}

// --- egress -------------------------------------------------------------------------------------------------------

std::vector<std::uint64_t> egress_seqs(const std::vector<EgressEvent>& events) {
  std::vector<std::uint64_t> seqs;
  for (const auto& event : events) seqs.push_back(event.egress_seq);
  return seqs;
}

TEST_F(ClientCoreTest, EgressIsDeliveredOnceAndInOrderAndResentEgressIsDropped) {
  open();
  take_events();
  const std::string_view one = "one";
  const std::string_view two = "two";
  const std::string_view three = "three";
  deliver(egress(1, one));
  deliver(egress(2, two));
  deliver(egress(2, two));
  deliver(egress(1, one));
  deliver(egress(3, three));
  const auto events = take_events();
  const auto delivered = take<EgressEvent>(events);
  EXPECT_EQ(egress_seqs(delivered), (Seqs{1, 2, 3}));
  ASSERT_EQ(delivered.size(), 3U);
  EXPECT_EQ(as_chars(ByteSpan(delivered[2].message)), "three");
  EXPECT_TRUE(take<EgressGapEvent>(events).empty());

  // After a resume the leader resends from what the open named; what the client had is dropped again.
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  open();
  take_events();
  deliver(egress(3, three));
  deliver(egress(4, "four"));
  EXPECT_EQ(egress_seqs(take<EgressEvent>()), (Seqs{4}));
  deliver(egress(5, "another session's", 1, kSession + 1));
  EXPECT_TRUE(take<EgressEvent>().empty()) << "another session's egress is not this one's";
}

TEST_F(ClientCoreTest, AnEgressGapIsReportedWithItsRangeJustBeforeTheEgressAfterIt) {
  open();
  take_events();
  deliver(egress(1, "a"));
  deliver(egress(5, "e"));
  deliver(egress(6, "f"));
  const auto events = take_events();
  ASSERT_EQ(events.size(), 4U);
  ASSERT_TRUE(std::holds_alternative<EgressEvent>(events[0]));
  EXPECT_EQ(std::get<EgressEvent>(events[0]).egress_seq, 1U);
  ASSERT_TRUE(std::holds_alternative<EgressGapEvent>(events[1]));
  EXPECT_EQ(std::get<EgressGapEvent>(events[1]).from, 2U);
  EXPECT_EQ(std::get<EgressGapEvent>(events[1]).to, 4U);
  ASSERT_TRUE(std::holds_alternative<EgressEvent>(events[2]));
  EXPECT_EQ(std::get<EgressEvent>(events[2]).egress_seq, 5U);
  ASSERT_TRUE(std::holds_alternative<EgressEvent>(events[3]));
  EXPECT_EQ(std::get<EgressEvent>(events[3]).egress_seq, 6U);
  deliver(egress(3, "c"));  // too late: the gap was given up
  EXPECT_TRUE(take_events().empty());
}

TEST_F(ClientCoreTest, EgressSeqsStartAgainFromOneInAReplacingSession) {
  open();
  deliver(egress(1, "a"));
  deliver(egress(2, "b"));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  take_sent(core_);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(replacing_reply(kSession + 30, kSession, 0, protocol::SessionCloseReason::timeout));
  take_events();
  deliver(egress(1, "first of the new session", 1, kSession + 30));
  const auto events = take_events();
  EXPECT_EQ(egress_seqs(take<EgressEvent>(events)), (Seqs{1}));
  EXPECT_TRUE(take<EgressGapEvent>(events).empty());
  // A later resume names the new session and its egress.
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  take_sent(core_);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  const auto frames = take_sent(core_);
  ASSERT_EQ(types(frames), (std::vector<MessageType>{MessageType::session_open}));
  EXPECT_EQ(frames[0].session, kSession + 30);
  EXPECT_EQ(frames[0].last_egress, 1U);
}

// --- terms --------------------------------------------------------------------------------------------------------

TEST_F(ClientCoreTest, AStaleTermsAckEgressRejectionOrCloseIsIgnoredWhileTheNewerTermsIsTaken) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(opened_reply(kSession, 0, kIncarnation, /*term=*/3));
  ASSERT_EQ(core_.term(), 3U);
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  take_sent(core_);
  take_events();

  deliver(ack(2, 40, kSession, /*term=*/2, /*leader=*/2));
  deliver(egress(1, "from a deposed leader", /*term=*/2));
  protocol::IngressRejected gap = rejection(3, 1, IngressRejectReason::gap);
  gap.term = 2;
  deliver(gap);
  protocol::SessionClosed closed = session_closed(0);
  closed.term = 2;
  deliver(closed);
  EXPECT_TRUE(take_events().empty()) << "nothing of term 2 is taken once term 3 is known";
  EXPECT_TRUE(take_sent(core_).empty()) << "no resend, no new session";
  EXPECT_EQ(core_.session(), kSession);
  EXPECT_EQ(core_.unacknowledged(), 3U);

  deliver(ack(1, 50, kSession, /*term=*/3));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{1}));
  deliver(egress(1, "from the leader", /*term=*/4));
  const auto events = take_events();
  EXPECT_EQ(egress_seqs(take<EgressEvent>(events)), (Seqs{1}));
  EXPECT_EQ(core_.term(), 4U) << "a newer term is learned from a leader's frame";
  deliver(ack(3, 60, kSession, /*term=*/3));
  EXPECT_TRUE(take<AppliedEvent>().empty()) << "term 3 is stale now";
}

// A deposed leader that goes on talking must not hold the client: its frames do not count as hearing the node.
TEST_F(ClientCoreTest, StaleFramesDoNotKeepTheConnectionAlive) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(opened_reply(kSession, 0, kIncarnation, /*term=*/3));
  take_sent(core_);
  for (int i = 0; i < 120; ++i) {
    now_ += 10ms;
    deliver(ack(0, 0, kSession, /*term=*/2));
    core_.tick(now_);
  }
  EXPECT_EQ(core_.state(), ClientState::reconnecting) << "silent for the silence limit, as far as the client can tell";
  EXPECT_TRUE(core_.take_close());
}

TEST_F(ClientCoreTest, AnOpenedReplyFromAStaleTermOpensNoSession) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(status_reply(SessionStatus::redirect, "n3:7003", 3, 5));
  ASSERT_EQ(core_.term(), 5U) << "a redirect that names a leader teaches its term";
  core_.tick(now_);
  ASSERT_EQ(core_.take_connect(), "n3:7003");
  core_.on_connected(now_, a_node(3));
  deliver(opened_reply(kSession, 0, kIncarnation, /*term=*/4));
  EXPECT_EQ(core_.state(), ClientState::connecting);
  EXPECT_EQ(core_.session(), 0U);
  EXPECT_TRUE(take<SessionEvent>().empty());
  deliver(opened_reply(kSession, 0, kIncarnation, /*term=*/5));
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_EQ(core_.session(), kSession);
}

// A deposed leader's refusal (say, its old credentials file) must not close the client for good, nor its "busy"
// hold it back: both are ignored when their term is older than the one the client knows.
TEST_F(ClientCoreTest, ARejectedOrBusyReplyFromAStaleTermIsIgnored) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(status_reply(SessionStatus::redirect, "n3:7003", 3, 5));
  ASSERT_EQ(core_.term(), 5U);
  core_.tick(now_);
  ASSERT_EQ(core_.take_connect(), "n3:7003");
  core_.on_connected(now_, a_node(3));
  take_events();
  deliver(status_reply(SessionStatus::rejected, "credential not allowed", 2, /*term=*/4));
  EXPECT_NE(core_.state(), ClientState::closed);
  deliver(status_reply(SessionStatus::busy, "too many sessions", 2, /*term=*/4));
  deliver(opened_reply(kSession, 0, kIncarnation, /*term=*/5));
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_EQ(core_.session(), kSession);
}

// A partitioned node may have a higher term than the real leader (elections it could not win): its "no leader"
// must not make the client ignore the leader's frames.
TEST_F(ClientCoreTest, NoLeaderWithAHigherTermDoesNotBlockTheLeadersFrames) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node(3));
  deliver(status_reply(SessionStatus::no_leader, "no leader known", 0, /*term=*/9));
  EXPECT_EQ(core_.term(), 0U);
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  take_sent(core_);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node(1));
  deliver(opened_reply(kSession, 0, kIncarnation, /*term=*/2));
  EXPECT_EQ(core_.state(), ClientState::connected);
  ASSERT_EQ(offer("a").status, OfferStatus::accepted);
  take_events();
  deliver(ack(1, 10, kSession, /*term=*/2));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{1}));
  EXPECT_EQ(core_.term(), 2U);
}

// A frame of layout 1 carries no term (it decodes as 0): the client cannot judge it, and takes it.
TEST_F(ClientCoreTest, AFrameThatSaysNoTermIsTaken) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(opened_reply(kSession, 0, kIncarnation, /*term=*/3));
  take_events();
  deliver(egress(1, "x", /*term=*/0));
  EXPECT_EQ(egress_seqs(take<EgressEvent>()), (Seqs{1}));
  EXPECT_EQ(core_.term(), 3U);
}

TEST_F(ClientCoreTest, EveryKindOfFrameFromAStaleTermIsIgnoredAndTheSilenceLimitStillDropsTheConnection) {
  open_with(opened_reply(kSession, 0, kIncarnation, /*term=*/3));
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  take_sent(core_);
  take_events();
  const Time heard = now_;
  // A deposed leader of term 2 goes on talking: acks, egress, a rejection, a session close, a session opened.
  protocol::IngressRejected too_large = rejection(2, 3, IngressRejectReason::too_large);
  too_large.term = 2;
  protocol::SessionClosed closed = session_closed(0);
  closed.term = 2;
  protocol::SessionReply reopened = opened_reply(kSession + 1, 3, kIncarnation, /*term=*/2);
  const std::string_view payload = "stale";
  for (std::uint64_t i = 1; now_ < heard + 1000ms; ++i) {
    now_ += 20ms;
    deliver(ack(3, 40, kSession, /*term=*/2, /*leader=*/2));
    deliver(egress(i, payload, /*term=*/2));
    deliver(too_large);
    deliver(closed);
    deliver(reopened);
    core_.tick(now_);
    ASSERT_EQ(core_.state(), ClientState::connected) << "dropped before the silence limit";
  }
  ASSERT_EQ(now_, heard + 1000ms);
  core_.tick(now_ + 1ms);
  EXPECT_EQ(core_.state(), ClientState::reconnecting) << "the stale frames counted as hearing from the node";
  EXPECT_EQ(core_.reason(), Reason::timed_out);
  EXPECT_TRUE(core_.take_close());
  const auto events = take_events();
  ASSERT_EQ(events.size(), 1U) << "nothing but the state change";
  EXPECT_EQ(std::get<StateEvent>(events[0]).state, ClientState::reconnecting);
  EXPECT_TRUE(fates_.empty());
  EXPECT_EQ(core_.unacknowledged(), 3U);
  EXPECT_EQ(core_.session(), kSession);
  EXPECT_EQ(core_.term(), 3U);
  for (const Sent& frame : take_sent(core_)) EXPECT_EQ(frame.type, MessageType::keep_alive);
}

TEST_F(ClientCoreTest, AStaleOpenedReplyWhileWaitingForASessionDoesNotCountAsHearingFromTheNode) {
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  deliver(status_reply(SessionStatus::redirect, "n3:7003", 3, 5));
  ASSERT_TRUE(core_.take_close());
  core_.tick(now_);
  ASSERT_EQ(core_.take_connect(), "n3:7003");
  core_.on_connected(now_, a_node(3));
  take_events();
  const Time connected_at = now_;
  while (now_ < connected_at + 1000ms) {
    now_ += 50ms;
    deliver(opened_reply(kSession, 0, kIncarnation, /*term=*/4));
    core_.tick(now_);
    ASSERT_FALSE(core_.take_close());
  }
  core_.tick(now_ + 1ms);
  EXPECT_TRUE(core_.take_close()) << "silent for the silence limit, as far as the client can tell";
  const auto failed = take<ConnectFailedEvent>();
  ASSERT_EQ(failed.size(), 1U);
  EXPECT_EQ(failed[0].reason, Reason::timed_out);
  EXPECT_EQ(failed[0].endpoint, "n3:7003");
  EXPECT_EQ(core_.session(), 0U);
}

// --- options ------------------------------------------------------------------------------------------------------

TEST_F(ClientCoreTest, ACredentialLongerThanTheProtocolCarriesLeavesTheClientClosedNamingIt) {
  ClientOptions options = test_options();
  options.credential = std::string(protocol::kMaxCredentialLength, 'k');
  ClientCore longest(options, kClientHigh, kClientLow, 1);  // the longest allowed is fine
  EXPECT_EQ(longest.state(), ClientState::connecting);
  options.credential.push_back('k');
  EXPECT_NE(validate(options), std::nullopt);
  ClientCore refused(options, kClientHigh, kClientLow, 1);
  EXPECT_EQ(refused.state(), ClientState::closed);
  EXPECT_EQ(refused.reason(), Reason::invalid_options);
  EXPECT_NE(refused.reason_text().find("credential"), std::string::npos) << refused.reason_text();
  EXPECT_EQ(refused.offer(as_bytes(std::string_view("x")), now_).status, OfferStatus::closed);
  refused.tick(now_);
  EXPECT_FALSE(refused.take_connect().has_value());
}

TEST_F(ClientCoreTest, ValidateNamesEachBadOption) {
  EXPECT_EQ(validate(test_options()), std::nullopt);
  struct Case {
    const char* what;
    void (*spoil)(ClientOptions&);
    const char* named;
  };
  const Case cases[] = {
      {"no members", [](ClientOptions& o) { o.members.clear(); }, "members: at least one"},
      {"no port", [](ClientOptions& o) { o.members[1] = "nohostport"; }, "'nohostport' is not host:port"},
      {"no host", [](ClientOptions& o) { o.members[0] = ":7000"; }, "':7000' is not host:port"},
      {"empty port", [](ClientOptions& o) { o.members[0] = "n1:"; }, "'n1:' is not host:port"},
      {"port 0", [](ClientOptions& o) { o.members[0] = "n1:0"; }, "'n1:0' is not host:port"},
      {"port too high", [](ClientOptions& o) { o.members[0] = "n1:65536"; }, "'n1:65536'"},
      {"port not a number", [](ClientOptions& o) { o.members[0] = "n1:70x1"; }, "'n1:70x1'"},
      {"keep-alive 0", [](ClientOptions& o) { o.keepalive_interval = 0ms; }, "keepalive_interval"},
      {"silence equal to keep-alive", [](ClientOptions& o) { o.silence_limit = o.keepalive_interval; },
       "silence_limit: 250 ms must be above keepalive_interval"},
      {"silence below keep-alive", [](ClientOptions& o) { o.silence_limit = 100ms; }, "silence_limit"},
      {"backoff initial 0", [](ClientOptions& o) { o.backoff_initial = 0ms; }, "backoff_initial"},
      {"backoff max below initial", [](ClientOptions& o) { o.backoff_max = 10ms; },
       "backoff_max: 10 ms is below backoff_initial (50 ms)"},
      {"refused backoff 0", [](ClientOptions& o) { o.refused_backoff_max = 0ms; }, "refused_backoff_max"},
      {"give up negative", [](ClientOptions& o) { o.give_up_after = -1ms; }, "give_up_after"},
      {"give up 'never' as a huge value", [](ClientOptions& o) { o.give_up_after = std::chrono::milliseconds::max(); },
       "give_up_after"},
      {"silence of centuries", [](ClientOptions& o) { o.silence_limit = std::chrono::hours(24 * 365 * 300); },
       "silence_limit"},
      {"backoff of hours", [](ClientOptions& o) { o.refused_backoff_max = std::chrono::hours(3); },
       "refused_backoff_max: 10800000 ms is above 1 h"},
      {"a member twice", [](ClientOptions& o) { o.members[2] = o.members[0]; }, "'n1:7001' is listed twice"},
      {"an unbounded buffer", [](ClientOptions& o) { o.max_buffered_bytes = SIZE_MAX; }, "max_buffered_bytes"},
      {"connect timeout negative", [](ClientOptions& o) { o.connect_timeout = -1ms; }, "connect_timeout"},
      {"no buffered messages", [](ClientOptions& o) { o.max_buffered_messages = 0; }, "max_buffered_messages"},
      {"message size 0", [](ClientOptions& o) { o.max_message_size = 0; }, "max_message_size: must be above 0"},
      {"message size past the protocol",
       [](ClientOptions& o) { o.max_message_size = o.max_buffered_bytes = 1U << 31U; }, "above the protocol's limit"},
      {"buffer below one message", [](ClientOptions& o) { o.max_buffered_bytes = 63; },
       "max_buffered_bytes: 63 cannot hold one message of max_message_size (64)"},
  };
  for (const Case& bad : cases) {
    ClientOptions options = test_options();
    bad.spoil(options);
    const auto problems = validate(options);
    ASSERT_TRUE(problems.has_value()) << bad.what;
    EXPECT_NE(problems->find(bad.named), std::string::npos) << bad.what << ": " << *problems;
    EXPECT_EQ(problems->find('\n'), std::string::npos) << bad.what << ": one problem, one line: " << *problems;

    ClientCore core(options, kClientHigh, kClientLow, 1);
    EXPECT_EQ(core.state(), ClientState::closed) << bad.what;
    EXPECT_EQ(core.reason(), Reason::invalid_options) << bad.what;
    EXPECT_EQ(core.reason_text(), *problems);
    EXPECT_EQ(core.offer(as_bytes(std::string_view("x")), now_).status, OfferStatus::closed) << bad.what;
    for (Time t{0}; t < 5s; t += 100ms) core.tick(t);
    EXPECT_FALSE(core.take_connect().has_value()) << bad.what << ": a closed core never asks to connect";
    core.close_after_drain(now_, now_ + 1s);
    EXPECT_EQ(core.reason(), Reason::invalid_options) << "the first reason stays";
  }
  // Every problem is named, one per line.
  ClientOptions options = test_options();
  options.members = {"n1:7001", "bad"};
  options.backoff_max = 1ms;
  options.max_buffered_bytes = 1;
  const auto problems = validate(options);
  ASSERT_TRUE(problems.has_value());
  EXPECT_EQ(std::count(problems->begin(), problems->end(), '\n'), 2) << *problems;
  EXPECT_NE(problems->find("'bad'"), std::string::npos);
  EXPECT_NE(problems->find("backoff_max"), std::string::npos);
  EXPECT_NE(problems->find("max_buffered_bytes"), std::string::npos);
  // What is fine: an IPv6 endpoint, the longest port, one endpoint.
  options = test_options();
  options.members = {"[::1]:65535"};
  EXPECT_EQ(validate(options), std::nullopt);
}

// --- backoff ------------------------------------------------------------------------------------------------------

/// Ticks `core` every millisecond from `now` until it asks to connect, and returns how long that took (the wait,
/// rounded up to the millisecond); gives up after 10 s.
Time time_to_next_connect(ClientCore& core, Time& now) {
  const Time from = now;
  for (int step = 0; step <= 10000; ++step) {
    core.tick(now);
    if (core.take_connect().has_value()) return now - from;
    now += 1ms;
  }
  ADD_FAILURE() << "no connect within 10 s";
  return now - from;
}

/// Where waits fell, as fractions of their bound.
struct Spread {
  int samples = 0;
  int lower_half = 0;
  double lowest = 1.0;
  double highest = 0.0;

  void add(Time wait, Time bound) {
    const double fraction = static_cast<double>(wait.count()) / static_cast<double>(bound.count());
    ++samples;
    if (fraction < 0.5) ++lower_half;
    lowest = std::min(lowest, fraction);
    highest = std::max(highest, fraction);
  }
  // Full jitter is uniform over [0, bound]: about half the waits fall in each half.
  bool halves_balanced() const { return lower_half > samples * 2 / 5 && lower_half < samples * 3 / 5; }
};

TEST_F(ClientCoreTest, AfterNFailedConnectsTheWaitIsAtMostInitialTimesTwoToTheNCappedAtTheMaxAndSpreadOverIt) {
  constexpr std::size_t kAttempts = 8;  // 50 ms * 2^6 passes the 2 s cap: the last three are capped
  std::vector<Spread> by_attempt(kAttempts + 1);
  Spread all;
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    ClientCore core(test_options(), kClientHigh, kClientLow, seed);
    Time now{0};
    core.tick(now);
    ASSERT_TRUE(core.take_connect().has_value()) << "the first attempt goes at once";
    for (std::size_t n = 1; n <= kAttempts; ++n) {
      core.on_disconnected(now, Disconnect{Reason::connection_reset, "connection reset"});
      const Time wait = time_to_next_connect(core, now);
      const Time bound = std::min<Time>(2000ms, 50ms * (1U << n));
      ASSERT_LE(wait, bound) << "seed " << seed << ", after " << n << " failed connects";
      by_attempt[n].add(wait, bound);
      all.add(wait, bound);
    }
  }
  for (std::size_t n = 1; n <= kAttempts; ++n) {
    EXPECT_LT(by_attempt[n].lowest, 0.05) << "after " << n << " failed connects: no wait near 0";
    EXPECT_GT(by_attempt[n].highest, 0.95) << "after " << n << " failed connects: no wait near the bound";
  }
  EXPECT_TRUE(all.halves_balanced()) << all.lower_half << " of " << all.samples << " waits in the lower half";
}

TEST_F(ClientCoreTest, AfterRefusedConnectsTheWaitNeverExceedsTheRefusedCapHoweverManyInARow) {
  Spread capped;  // the attempts whose exponential bound is past the 250 ms cap
  Time longest_after_timeout{0};
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    ClientCore core(test_options(), kClientHigh, kClientLow, seed);
    Time now{0};
    core.tick(now);
    ASSERT_TRUE(core.take_connect().has_value());
    for (int n = 1; n <= 20; ++n) {
      core.on_disconnected(now, Disconnect{Reason::connection_refused, "connection refused"});
      const Time wait = time_to_next_connect(core, now);
      ASSERT_LE(wait, std::min<Time>(250ms, 50ms * (1 << n))) << "seed " << seed << ", refusal " << n;
      if (n >= 3) capped.add(wait, 250ms);
    }
    // A timeout after all those refusals backs off for long again: the cap is for refused connections only.
    core.on_disconnected(now, Disconnect{Reason::timed_out, "the handshake timed out"});
    longest_after_timeout = std::max(longest_after_timeout, time_to_next_connect(core, now));
  }
  EXPECT_LT(capped.lowest, 0.05);
  EXPECT_GT(capped.highest, 0.95) << "the waits reach the cap";
  EXPECT_TRUE(capped.halves_balanced()) << capped.lower_half << " of " << capped.samples;
  EXPECT_GT(longest_after_timeout, 1000ms);
  EXPECT_LE(longest_after_timeout, 2000ms);
}

// --- redirect loops -----------------------------------------------------------------------------------------------

/// Plays the nodes for a client that connects wherever it is asked, for `span` of virtual time (ticking every
/// millisecond): a node in `redirects` answers the session open with a redirect to its value, the node `leader`
/// (if any) opens kSession, and any other is down. Returns the times of the connects.
std::vector<Time> run_against(ClientCore& core, Time& now, Time span,
                              const std::map<std::string, std::string>& redirects,
                              std::optional<std::string> leader = std::nullopt) {
  std::vector<Time> connects;
  const Time end = now + span;
  for (; now < end && core.state() != ClientState::connected; now += 1ms) {
    core.tick(now);
    int at_this_instant = 0;
    while (auto endpoint = core.take_connect()) {
      if (++at_this_instant > 10) {
        ADD_FAILURE() << "the client spins: " << at_this_instant << " connects at " << now.count() << " ns";
        return connects;
      }
      connects.push_back(now);
      ByteVector reply;
      const std::uint32_t id = static_cast<std::uint32_t>((*endpoint)[1] - '0');  // "n2:7002" is node 2
      if (const auto redirect = redirects.find(*endpoint); redirect != redirects.end()) {
        const std::uint32_t named = static_cast<std::uint32_t>(redirect->second[1] - '0');
        protocol::append_frame(status_reply(SessionStatus::redirect, redirect->second, named, 1), reply);
      } else if (endpoint == leader) {
        protocol::SessionReply opened = opened_reply(kSession, 0);
        opened.leader_id = id;
        protocol::append_frame(opened, reply);
      } else {
        core.on_disconnected(now, Disconnect{Reason::connection_refused, "connection refused"});
        core.tick(now);
        continue;
      }
      core.on_connected(now, a_node(id));
      core.on_frame(protocol::scan_frame(reply).frame, now);
      (void)core.take_close();
      core.tick(now);  // a redirect followed at once asks for its connection in this very tick
    }
    core.outgoing().clear();
    core.events().clear();
  }
  return connects;
}

TEST_F(ClientCoreTest, TwoNodesThatRedirectToEachOtherNeverMakeTheClientSpin) {
  // Stale views: n1 names n2 the leader and n2 names n1; n3 is down.
  const std::map<std::string, std::string> loop{{"n1:7001", "n2:7002"}, {"n2:7002", "n1:7001"}};
  const std::vector<Time> connects = run_against(core_, now_, 10s, loop);
  ASSERT_GT(connects.size(), 10U) << "the client keeps trying";
  // Find the first redirect: the connect to the node it named follows at once, the next one after a backoff step.
  std::size_t first = 0;
  while (first + 1 < connects.size() && connects[first + 1] != connects[first]) ++first;
  ASSERT_LT(first + 2, connects.size()) << "no redirect was followed at once";
  EXPECT_GT(connects[first + 2], connects[first + 1]) << "a second redirect in the round is not followed at once";
  // A redirect is followed at once only once a round (a round takes every member in turn, so at least as many
  // connects lie between two), and the connects per second are bounded: nodes that answer without serving do not
  // start the backoff over, so its steps grow towards backoff_max.
  std::map<std::int64_t, int> per_second;
  std::size_t last_at_once = first + 1;
  for (std::size_t i = first + 2; i < connects.size(); ++i) {
    ++per_second[std::chrono::duration_cast<std::chrono::seconds>(connects[i]).count()];
    if (connects[i] != connects[i - 1]) continue;
    EXPECT_GE(i - last_at_once, kMembers.size()) << "connect " << i << " followed at once within the round";
    last_at_once = i;
  }
  for (const auto& [second, count] : per_second) EXPECT_LE(count, 40) << "in second " << second;
  EXPECT_LT(connects.size(), 40U) << "in 10 s: the backoff grows while no node serves";
}

TEST_F(ClientCoreTest, ARedirectLoopBetweenTwoMembersDoesNotKeepTheClientFromTheThird) {
  const std::map<std::string, std::string> loop{{"n1:7001", "n2:7002"}, {"n2:7002", "n1:7001"}};
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {  // seeds that start at each member
    use(test_options(), seed);
    now_ = Time{0};
    run_against(core_, now_, 10s, loop, "n3:7003");
    EXPECT_EQ(core_.state(), ClientState::connected) << "seed " << seed << ": stuck between n1 and n2";
    EXPECT_LT(now_, 8s) << "seed " << seed << ": a few growing backoff steps at most";
  }
}

// --- deadlines ----------------------------------------------------------------------------------------------------

TEST_F(ClientCoreTest, TheGiveUpDeadlineClosesALostClientAndGivesEveryBufferedSeqItsOneFate) {
  ClientOptions options = test_options();
  options.give_up_after = 5s;
  use(options);
  open();
  for (const char* text : {"1", "2", "3", "4"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  deliver(ack(2, 20));
  take_sent(core_);
  now_ += 100ms;
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  const Time lost_at = now_;
  ASSERT_EQ(offer("5").seq, 5U);  // never sent
  take_events();
  // It never gets back: n2 knows no leader, the others are down.
  std::optional<Time> closed_at;
  for (; !closed_at && now_ < lost_at + 10s; now_ += 10ms) {
    core_.tick(now_);
    if (auto endpoint = core_.take_connect()) {
      if (*endpoint == "n2:7002") {
        core_.on_connected(now_, a_node(2));
        deliver(status_reply(SessionStatus::no_leader, "election"));
      } else {
        core_.on_disconnected(now_, Disconnect{Reason::connection_refused, "connection refused"});
      }
    }
    (void)core_.take_close();
    take_sent(core_);
    if (core_.state() == ClientState::closed) closed_at = now_;
  }
  ASSERT_TRUE(closed_at.has_value());
  EXPECT_GE(*closed_at - lost_at, 5s);
  EXPECT_LE(*closed_at - lost_at, 5s + 10ms);
  EXPECT_EQ(core_.reason(), Reason::give_up_deadline);
  const auto events = take_events();
  const auto unknown = take<UnknownEvent>(events);
  EXPECT_EQ(seqs_of(unknown), (Seqs{3, 4})) << "sent and never acknowledged";
  for (const auto& event : unknown) EXPECT_EQ(event.reason, Reason::give_up_deadline);
  const auto rejected = take<RejectedEvent>(events);
  EXPECT_EQ(seqs_of(rejected), (Seqs{5})) << "never sent";
  for (const auto& event : rejected) EXPECT_EQ(event.reason, Reason::give_up_deadline);
  EXPECT_EQ(fates_, (std::map<std::uint64_t, int>{{1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}}));
  const auto states = take<StateEvent>(events);
  ASSERT_FALSE(states.empty());
  EXPECT_EQ(states.back().state, ClientState::closed);
  EXPECT_EQ(states.back().reason, Reason::give_up_deadline);
  EXPECT_EQ(offer("6").status, OfferStatus::closed);
  core_.tick(now_ + 10s);
  EXPECT_FALSE(core_.take_connect().has_value());
}

TEST_F(ClientCoreTest, TheConnectDeadlineClosesAClientThatNeverConnects) {
  ClientOptions options = test_options();
  options.connect_timeout = 3s;
  use(options);
  for (const char* text : {"a", "b"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  const Time started = now_;
  int refused = 0;
  while (core_.state() != ClientState::closed && now_ < started + 10s) {
    core_.tick(now_);
    if (core_.take_connect()) {
      core_.on_disconnected(now_, Disconnect{Reason::connection_refused, "connection refused"});
      ++refused;
    }
    if (core_.state() != ClientState::closed) now_ += 10ms;
  }
  ASSERT_EQ(core_.state(), ClientState::closed);
  EXPECT_GE(now_ - started, 3s);
  EXPECT_LE(now_ - started, 3s + 10ms);
  EXPECT_EQ(core_.reason(), Reason::connect_deadline);
  EXPECT_NE(core_.reason_text().find("connection refused"), std::string::npos) << core_.reason_text();
  const auto events = take_events();
  EXPECT_EQ(take<ConnectFailedEvent>(events).size(), static_cast<std::size_t>(refused))
      << "every failed attempt reached the application";
  const auto rejected = take<RejectedEvent>(events);
  EXPECT_EQ(seqs_of(rejected), (Seqs{1, 2}));
  for (const auto& event : rejected) EXPECT_EQ(event.reason, Reason::connect_deadline);
  EXPECT_EQ(fates_.size(), 2U);
}

TEST_F(ClientCoreTest, NeitherDeadlineFiresWhileConnectedAndTheGiveUpClockStartsAtEveryLoss) {
  ClientOptions options = test_options();
  options.give_up_after = 2s;
  options.connect_timeout = 1s;
  use(options);
  open();
  // Connected for 20 s: the node's keep-alive acks come every 100 ms.
  const Time opened_at = now_;
  while (now_ < opened_at + 20s) {
    now_ += 100ms;
    deliver(ack(0, 0));
    core_.tick(now_);
    ASSERT_EQ(core_.state(), ClientState::connected) << "at " << (now_ - opened_at).count() << " ns";
  }
  take_sent(core_);
  // Lost for 1.5 s (longer than connect_timeout, which bounds only the first connection), then back.
  const auto lose_for = [&](Time span) {
    core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
    for (const Time end = now_ + span; now_ < end; now_ += 10ms) {
      core_.tick(now_);
      if (core_.take_connect()) core_.on_disconnected(now_, Disconnect{Reason::connection_refused, "refused"});
    }
  };
  lose_for(1500ms);
  EXPECT_EQ(core_.state(), ClientState::reconnecting);
  open();
  EXPECT_EQ(core_.state(), ClientState::connected);
  lose_for(1500ms);
  EXPECT_EQ(core_.state(), ClientState::reconnecting) << "the give-up clock started over at the second loss";
  lose_for(600ms);
  EXPECT_EQ(core_.state(), ClientState::closed);
  EXPECT_EQ(core_.reason(), Reason::give_up_deadline);
}

// --- a draining close ---------------------------------------------------------------------------------------------

TEST_F(ClientCoreTest, ADrainingCloseRefusesOffersAndClosesAsSoonAsTheLastAckArrives) {
  open();
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  take_sent(core_);
  take_events();
  core_.close_after_drain(now_, now_ + 5s);
  EXPECT_EQ(core_.state(), ClientState::connected) << "it drains first";
  EXPECT_EQ(offer("late").status, OfferStatus::closed);
  now_ += 100ms;
  core_.tick(now_);
  deliver(ack(2, 20));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{1, 2}));
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_FALSE(core_.take_close());
  const auto draining = types(take_sent(core_));
  EXPECT_EQ(std::count(draining.begin(), draining.end(), MessageType::session_close), 0) << "still draining";
  deliver(ack(3, 30));
  const auto events = take_events();
  EXPECT_EQ(seqs_of(take<AppliedEvent>(events)), (Seqs{3}));
  EXPECT_TRUE(take<UnknownEvent>(events).empty());
  EXPECT_EQ(core_.state(), ClientState::closed);
  EXPECT_EQ(core_.reason(), Reason::closed_by_application);
  const auto sent = take_sent(core_);
  ASSERT_EQ(types(sent), (std::vector<MessageType>{MessageType::session_close}));
  EXPECT_EQ(sent[0].session, kSession);
  EXPECT_TRUE(core_.take_close());
  EXPECT_EQ(fates_, (std::map<std::uint64_t, int>{{1, 1}, {2, 1}, {3, 1}}));
}

TEST_F(ClientCoreTest, ADrainWithAnEmptyBufferClosesAtOnce) {
  open();
  take_sent(core_);
  core_.close_after_drain(now_, now_ + 5s);
  EXPECT_EQ(core_.state(), ClientState::closed);
  EXPECT_EQ(types(take_sent(core_)), (std::vector<MessageType>{MessageType::session_close}));
}

TEST_F(ClientCoreTest, ADrainThatIsNeverAcknowledgedClosesAtItsDeadlineWithTheRestUnknown) {
  open();
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  deliver(ack(1, 10));
  take_sent(core_);
  take_events();
  const Time deadline = now_ + 2s;
  core_.close_after_drain(now_, deadline);
  while (core_.state() != ClientState::closed && now_ < deadline + 1s) {
    now_ += 100ms;
    deliver(ack(1, 10));  // the node is there, but applies nothing more
    core_.tick(now_);
    if (core_.state() != ClientState::closed) take_sent(core_);
  }
  EXPECT_EQ(now_, deadline);
  EXPECT_EQ(core_.reason(), Reason::closed_by_application);
  const auto unknown = take<UnknownEvent>();
  EXPECT_EQ(seqs_of(unknown), (Seqs{2, 3}));
  for (const auto& event : unknown) EXPECT_EQ(event.reason, Reason::closed_by_application);
  EXPECT_EQ(types(take_sent(core_)), (std::vector<MessageType>{MessageType::session_close}));
  EXPECT_EQ(fates_.size(), 3U);
}

TEST_F(ClientCoreTest, ADrainWhileReconnectingThatNeverReconnectsRejectsWhatWasNeverSent) {
  open();
  for (const char* text : {"a", "b"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  deliver(ack(1, 10));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  ASSERT_EQ(offer("c").seq, 3U);  // never sent
  take_events();
  const Time deadline = now_ + 1s;
  core_.close_after_drain(now_, deadline);
  while (core_.state() != ClientState::closed && now_ < deadline + 1s) {
    now_ += 10ms;
    core_.tick(now_);
    if (core_.take_connect()) core_.on_disconnected(now_, Disconnect{Reason::connection_refused, "refused"});
  }
  EXPECT_EQ(now_, deadline);
  const auto events = take_events();
  EXPECT_EQ(seqs_of(take<UnknownEvent>(events)), (Seqs{2}));
  EXPECT_EQ(seqs_of(take<RejectedEvent>(events)), (Seqs{3}));
  EXPECT_EQ(fates_.size(), 3U);
}

TEST_F(ClientCoreTest, ADrainWhileReconnectingReconnectsResendsAndClosesOnceAcknowledged) {
  open();
  for (const char* text : {"a", "b", "c"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  deliver(ack(1, 10));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  take_events();
  core_.close_after_drain(now_, now_ + 5s);
  EXPECT_EQ(core_.state(), ClientState::reconnecting);
  open(/*last_applied=*/1);
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{2, 3})) << "resent after the resume";
  deliver(ack(3, 30));
  EXPECT_EQ(core_.state(), ClientState::closed);
  EXPECT_EQ(types(take_sent(core_)), (std::vector<MessageType>{MessageType::session_close}));
  EXPECT_TRUE(core_.take_close());
  const auto events = take_events();
  EXPECT_EQ(seqs_of(take<AppliedEvent>(events)), (Seqs{2, 3}));
  EXPECT_EQ(fates_, (std::map<std::uint64_t, int>{{1, 1}, {2, 1}, {3, 1}}));
}

// --- data loss ----------------------------------------------------------------------------------------------------

/// A layout 3 session reply (keepalive_interval_ms set) saying where the session's egress stands.
protocol::SessionReply layout3_reply(std::uint64_t last_applied, std::uint64_t egress_seq) {
  protocol::SessionReply reply = opened_reply(kSession, last_applied);
  reply.keepalive_interval_ms = 250;
  reply.silence_limit_ms = 1000;
  reply.egress_seq = egress_seq;
  return reply;
}

TEST_F(ClientCoreTest, AResumeBelowWhatWasAcknowledgedReportsTheLostSeqsOnceAndGoesOnFromTheClustersPosition) {
  open();
  for (const char* text : {"1", "2", "3", "4", "5", "6", "7"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  deliver(ack(5, 50));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{1, 2, 3, 4, 5}));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  take_events();

  // Every node lost power under sync policy none: the cluster's last applied seq of the session is 2.
  open(/*last_applied=*/2);
  const auto events = take_events();
  const auto lost = take<DataLossEvent>(events);
  ASSERT_EQ(lost.size(), 1U);
  EXPECT_EQ(lost[0].from, 3U);
  EXPECT_EQ(lost[0].to, 5U);
  EXPECT_TRUE(take<AppliedEvent>(events).empty()) << "not a second fate";
  EXPECT_TRUE(take<RejectedEvent>(events).empty());
  EXPECT_TRUE(take<UnknownEvent>(events).empty());
  const auto sessions = take<SessionEvent>(events);
  ASSERT_EQ(sessions.size(), 1U);
  EXPECT_EQ(sessions[0].change, SessionChange::resumed);
  // The session goes on from the cluster's position: the lost seqs 3-5 are withdrawn (the cluster records them
  // refused), then seqs 6 and 7 go out under their own wire seqs: no wire seq ever names two messages.
  const auto sent = take_sent(core_);
  EXPECT_EQ(types(sent),
            (std::vector<MessageType>{MessageType::ingress_withdrawn, MessageType::ingress_withdrawn,
                                      MessageType::ingress_withdrawn, MessageType::ingress, MessageType::ingress}));
  ASSERT_EQ(sent.size(), 5U);
  EXPECT_EQ(sent[0].seq, 3U);
  EXPECT_EQ(sent[2].seq, 5U);
  EXPECT_EQ(ingress_seqs(sent), (Seqs{6, 7}));
  EXPECT_EQ(sent[3].payload, "6");
  deliver(ack(6, 60));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{6}));
  ASSERT_EQ(offer("8").seq, 8U);
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{8}));
  deliver(ack(8, 70));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{7, 8}));
  EXPECT_EQ(core_.settled_seq(), 8U);
  EXPECT_EQ(core_.unacknowledged(), 0U);
  for (std::uint64_t seq = 1; seq <= 8; ++seq) EXPECT_EQ(fates_[seq], 1) << "seq " << seq;

  // A later resume at the cluster's new position loses nothing.
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  open(/*last_applied=*/8);
  EXPECT_TRUE(take<DataLossEvent>().empty());
}

// A message the cluster rejected as too large keeps its seq in the buffer (resent as a withdrawal) until an ack
// covers it: a renumbering after a data loss then still starts from the cluster's position, without a hole.
TEST_F(ClientCoreTest, AMessageRejectedFromTheMiddleKeepsTheNumberingContiguousThroughADataLoss) {
  ASSERT_EQ(offer("a").seq, 1U);
  ASSERT_EQ(offer(std::string(40, 'x')).seq, 2U);  // above the cluster's limit, which the client does not know yet
  ASSERT_EQ(offer("c").seq, 3U);
  ASSERT_TRUE(await_connect().has_value());
  core_.on_connected(now_, a_node());
  take_sent(core_);
  protocol::SessionReply reply = opened_reply(kSession, 0);
  reply.max_message_size = 32;
  deliver(reply);
  EXPECT_EQ(types(take_sent(core_)),
            (std::vector<MessageType>{MessageType::ingress, MessageType::ingress_withdrawn, MessageType::ingress}));
  deliver(ack(1, 10));
  deliver(rejection(2, 2, IngressRejectReason::too_large));
  EXPECT_EQ(seqs_of(take<RejectedEvent>()), (Seqs{2}));
  EXPECT_EQ(core_.unacknowledged(), 1U) << "seq 2 has its fate; only seq 3 waits";

  // Every node lost power: the cluster is back at wire seq 0.
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  open(/*last_applied=*/0);
  const auto events = take_events();
  const auto lost = take<DataLossEvent>(events);
  ASSERT_EQ(lost.size(), 1U);
  EXPECT_EQ(lost[0].from, 1U);
  EXPECT_EQ(lost[0].to, 1U);
  const auto sent = take_sent(core_);
  EXPECT_EQ(types(sent), (std::vector<MessageType>{MessageType::ingress_withdrawn, MessageType::ingress_withdrawn,
                                                   MessageType::ingress}));
  ASSERT_EQ(sent.size(), 3U);
  EXPECT_EQ(sent[0].seq, 1U) << "the lost seq, withdrawn";
  EXPECT_EQ(sent[1].seq, 2U) << "the rejected seq keeps its place, withdrawn";
  EXPECT_EQ(sent[2].seq, 3U);
  deliver(ack(3, 20));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{3}));
  EXPECT_EQ(core_.unacknowledged(), 0U);
  for (std::uint64_t seq = 1; seq <= 3; ++seq) EXPECT_EQ(fates_[seq], 1) << "seq " << seq;
}

// Two losses in one session, the second reaching below the first: each lost seq is reported once (simulator seed
// 4155), and the session always goes on under new wire seqs, the lost ones withdrawn.
TEST_F(ClientCoreTest, ASecondLossBelowTheFirstReportsEachLostSeqOnce) {
  open();
  for (int i = 1; i <= 5; ++i) ASSERT_EQ(offer("m").status, OfferStatus::accepted);
  deliver(ack(5, 50));
  for (int i = 6; i <= 10; ++i) ASSERT_EQ(offer("m").status, OfferStatus::accepted);
  deliver(ack(10, 100));
  take_events();
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  open(/*last_applied=*/6);
  auto lost = take<DataLossEvent>();
  ASSERT_EQ(lost.size(), 1U);
  EXPECT_EQ(std::make_pair(lost[0].from, lost[0].to), std::make_pair(std::uint64_t{7}, std::uint64_t{10}));
  auto sent = take_sent(core_);
  ASSERT_EQ(sent.size(), 4U);
  EXPECT_EQ(sent[0].type, MessageType::ingress_withdrawn);
  EXPECT_EQ(sent[0].seq, 7U);
  EXPECT_EQ(sent[3].seq, 10U);
  for (int i = 11; i <= 14; ++i) ASSERT_EQ(offer("m").seq, static_cast<std::uint64_t>(i));
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{11, 12, 13, 14})) << "never a wire seq of a lost message";
  deliver(ack(14, 140));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{11, 12, 13, 14}));

  // The second loss: the cluster is back at seq 4. 7-10 were reported lost already and are not named again.
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  open(/*last_applied=*/4);
  lost = take<DataLossEvent>();
  ASSERT_EQ(lost.size(), 2U);
  EXPECT_EQ(std::make_pair(lost[0].from, lost[0].to), std::make_pair(std::uint64_t{5}, std::uint64_t{6}));
  EXPECT_EQ(std::make_pair(lost[1].from, lost[1].to), std::make_pair(std::uint64_t{11}, std::uint64_t{14}));
  sent = take_sent(core_);
  EXPECT_EQ(sent.size(), 10U) << "seqs 5-14 withdrawn";
  ASSERT_EQ(offer("m").seq, 15U);
  EXPECT_EQ(ingress_seqs(take_sent(core_)), (Seqs{15}));
  deliver(ack(15, 150));
  EXPECT_EQ(seqs_of(take<AppliedEvent>()), (Seqs{15}));
}

TEST_F(ClientCoreTest, AResumeWhoseEgressWentBackDeliversTheNextEgressInsteadOfDroppingItAsSeen) {
  open();
  for (const std::string_view text : {"e1", "e2", "e3", "e4", "e5"})
    deliver(egress(static_cast<std::uint64_t>(text[1] - '0'), text));
  EXPECT_EQ(egress_seqs(take<EgressEvent>()), (Seqs{1, 2, 3, 4, 5}));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  // The cluster's egress of the session is back at 2; its ingress lost nothing (nothing was offered).
  open_with(layout3_reply(/*last_applied=*/0, /*egress_seq=*/2));
  const auto lost = take<EgressLostEvent>();
  ASSERT_EQ(lost.size(), 1U) << "the application hears that egress 3-5 it was handed are gone and come again";
  EXPECT_EQ(lost[0].from, 3U);
  EXPECT_EQ(lost[0].to, 5U);
  deliver(egress(3, "new 3"));
  deliver(egress(4, "new 4"));
  const auto delivered = take<EgressEvent>();
  EXPECT_EQ(egress_seqs(delivered), (Seqs{3, 4})) << "new egress, not the resend of what the client had";
  ASSERT_EQ(delivered.size(), 2U);
  EXPECT_EQ(as_chars(ByteSpan(delivered[0].message)), "new 3");
}

TEST_F(ClientCoreTest, AResumeThatLostBothIngressAndEgressGoesOnFromBoth) {
  open();
  for (const char* text : {"1", "2", "3"}) ASSERT_EQ(offer(text).status, OfferStatus::accepted);
  deliver(ack(3, 30));
  deliver(egress(1, "a"));
  deliver(egress(2, "b"));
  deliver(egress(3, "c"));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  take_events();
  open_with(layout3_reply(/*last_applied=*/1, /*egress_seq=*/1));
  const auto lost = take<DataLossEvent>();
  ASSERT_EQ(lost.size(), 1U);
  EXPECT_EQ(lost[0].from, 2U);
  EXPECT_EQ(lost[0].to, 3U);
  deliver(egress(2, "new b"));
  EXPECT_EQ(egress_seqs(take<EgressEvent>()), (Seqs{2}));
}

// A layout 2 reply says nothing of the egress (egress_seq decodes as 0): the client keeps its own position.
TEST_F(ClientCoreTest, AResumeReplyThatSaysNothingOfTheEgressKeepsTheClientsOwnPosition) {
  open();
  deliver(egress(1, "a"));
  deliver(egress(2, "b"));
  core_.on_disconnected(now_, Disconnect{Reason::connection_reset, "connection reset"});
  open();  // keepalive_interval_ms 0: no layout 3 fields
  take_events();
  deliver(egress(2, "b"));
  deliver(egress(3, "c"));
  EXPECT_EQ(egress_seqs(take<EgressEvent>()), (Seqs{3}));
}

// --- the node's keep-alive settings -------------------------------------------------------------------------------

TEST_F(ClientCoreTest, TheNodesShorterKeepAliveIntervalAndLongerSilenceLimitAreTaken) {
  protocol::SessionReply reply = opened_reply(kSession, 0);
  reply.keepalive_interval_ms = 100;
  reply.silence_limit_ms = 4000;
  open_with(reply);
  EXPECT_EQ(core_.keepalive_interval(), 100ms);
  EXPECT_EQ(core_.silence_limit(), 4000ms);
  take_sent(core_);
  // The node says nothing from now on.
  const Time heard = now_;
  Time last_keepalive = heard;
  while (core_.state() == ClientState::connected && now_ < heard + 5s) {
    now_ += 10ms;
    core_.tick(now_);
    for (const Sent& frame : take_sent(core_)) {
      ASSERT_EQ(frame.type, MessageType::keep_alive);
      EXPECT_LE(now_ - last_keepalive, 100ms);
      last_keepalive = now_;
    }
    ASSERT_LE(now_ - last_keepalive, 100ms) << "no keep-alive for longer than the node's interval";
    if (now_ - heard <= 4000ms) {
      ASSERT_EQ(core_.state(), ClientState::connected) << "dropped after its own 1 s";
    }
  }
  EXPECT_EQ(core_.state(), ClientState::reconnecting);
  EXPECT_EQ(now_ - heard, 4010ms) << "dropped once the node's silence limit passed";
}

TEST_F(ClientCoreTest, TheClientsOwnShorterKeepAliveIntervalAndLongerSilenceLimitAreKept) {
  protocol::SessionReply reply = opened_reply(kSession, 0);
  reply.keepalive_interval_ms = 1000;
  reply.silence_limit_ms = 500;
  open_with(reply);
  EXPECT_EQ(core_.keepalive_interval(), 250ms);
  EXPECT_EQ(core_.silence_limit(), 1000ms);
}

// --- the bounded wait at a node with no leader --------------------------------------------------------------------

TEST_F(ClientCoreTest, ANodeWithNoLeaderHoldsTheClientAtMostTheBoundedWaitAndIsReportedOncePerConnection) {
  constexpr Time kBoundedWait = kNoSessionWaitSilenceLimits * Time(1000ms);
  std::optional<std::string> previous;
  for (int connection = 0; connection < 4; ++connection) {
    const auto endpoint = await_connect();
    ASSERT_TRUE(endpoint.has_value());
    if (previous) {
      EXPECT_NE(*endpoint, *previous) << "it moves on to another member";
    }
    previous = endpoint;
    const Time connected_at = now_;
    core_.on_connected(now_, a_node());
    deliver(status_reply(SessionStatus::no_leader, "cut off from the quorum"));
    // The node answers every 100 ms: "no leader" again, and a keep-alive ack of no session.
    while (!core_.take_close()) {
      ASSERT_LE(now_ - connected_at, kBoundedWait + 10ms) << "held beyond the bounded wait";
      now_ += 10ms;
      if ((now_ - connected_at) % 100ms == Time{0}) {
        deliver(status_reply(SessionStatus::no_leader, "cut off from the quorum"));
        deliver(ack(0, 0, /*session=*/0, /*term=*/0, /*leader=*/0));
      }
      core_.tick(now_);
    }
    EXPECT_GT(now_ - connected_at, kBoundedWait) << "left before the bounded wait";
    const auto events = take_events();
    EXPECT_TRUE(take<StateEvent>(events).empty());
    const auto failed = take<ConnectFailedEvent>(events);
    ASSERT_EQ(failed.size(), 1U) << "connection " << connection << ": told once per connection";
    EXPECT_EQ(failed[0].reason, Reason::no_leader);
    EXPECT_EQ(failed[0].endpoint, *endpoint);
    take_sent(core_);
  }
  EXPECT_EQ(core_.state(), ClientState::connecting);
}

TEST_F(ClientCoreTest, ALeaderDeposedWithNoSuccessorIsLeftForAnotherMemberAtOnceAndReportedOnce) {
  // A leader cut off from its peers steps down (check-quorum) knowing no successor; it could hold the client for as
  // long as the partition lasts, while the majority elects a leader within a second.
  const auto first = await_connect();
  ASSERT_TRUE(first.has_value());
  core_.on_connected(now_, a_node());
  take_sent(core_);
  deliver(opened_reply(kSession, 0));
  take_events();
  deliver(status_reply(SessionStatus::no_leader, "the leader stepped down"));
  EXPECT_TRUE(core_.take_close());
  core_.tick(now_);
  const auto next = core_.take_connect();
  ASSERT_TRUE(next.has_value()) << "the next member is dialled in the same turn";
  EXPECT_NE(*next, *first) << "not the deposed leader again";
  const auto events = take_events();
  const auto states = take<StateEvent>(events);
  ASSERT_EQ(states.size(), 1U);
  EXPECT_EQ(states[0].state, ClientState::reconnecting);
  EXPECT_EQ(states[0].reason, Reason::no_leader);
  EXPECT_TRUE(take<ConnectFailedEvent>(events).empty()) << "the state change told it already";
}

// --- an invoker-mode run ------------------------------------------------------------------------------------------

/// Three nodes as the client sees them, on the test's clock, playing the runtime's part as well (the connection the
/// core asks for, the frames both ways). One leader at a time (none during an election); one session, whose state
/// (the messages applied, the egress) is the replicated state, so it survives a leader change. A leader that
/// crashes or steps down may have applied messages whose acks never left (lose_acks).
class FakeCluster {
 public:
  explicit FakeCluster(ClientCore& core) : core_(core) {}

  std::uint32_t leader = 1;  // 0: an election is under way
  std::uint64_t term = 1;
  std::set<std::uint32_t> down;
  std::vector<std::string> applied;  // the service's messages, in order (the session's wire seq is index + 1)
  std::vector<std::string> egress;   // its egress to the session (egress seq is index + 1)
  bool lose_acks = false;            // the node applies what arrives but its acks are lost
  bool lose_ingress = false;         // what the client sends is lost on the way

  /// The runtime's turn after the core's: carries out what it asked for and lets the node answer, until quiet.
  void turn(Time now) {
    for (int round = 0; round < 8; ++round) {
      if (core_.take_close()) drop();
      const std::vector<Sent> sent = take_sent(core_);
      if (node_ && !lose_ingress)
        for (const Sent& frame : sent) receive(frame, now);
      if (bound_) send_egress(now);
      if (const auto endpoint = core_.take_connect()) {
        connect(*endpoint, now);
      } else if (sent.empty() || lose_ingress) {
        return;
      }
    }
    ADD_FAILURE() << "the client and the cluster never went quiet at " << now.count() << " ns";
  }

  /// The leader crashes: its connections break.
  void crash(Time now) {
    down.insert(leader);
    if (node_ == leader) {
      drop();
      core_.on_disconnected(now, Disconnect{Reason::connection_reset, "connection reset by peer"});
    }
    leader = 0;
  }

  /// The leader steps down (it lost the quorum): a client it serves is told, and leaves for another member.
  void step_down(Time now) {
    if (node_ == leader && bound_) {
      bound_ = false;
      waiting_ = true;
      hand(status_reply(SessionStatus::no_leader, "the leader stepped down"), now);
    }
    leader = 0;
  }

  /// A leader is elected: a client waiting on a node hears of it at once.
  void elect(std::uint32_t id, std::uint64_t new_term, Time now) {
    leader = id;
    term = new_term;
    down.erase(id);
    if (!node_ || !waiting_) return;
    if (*node_ == leader)
      open_session(waiting_egress_, now);
    else
      hand(status_reply(SessionStatus::redirect, endpoint_of(leader), leader, term), now);
  }

 private:
  static std::string endpoint_of(std::uint32_t id) { return fmt::format("n{}:700{}", id, id); }

  template <typename Message>
  void hand(const Message& message, Time now) {
    ByteVector bytes;
    protocol::append_frame(message, bytes);
    core_.on_frame(protocol::scan_frame(bytes).frame, now);
  }

  void drop() {
    node_.reset();
    bound_ = false;
    waiting_ = false;
  }

  void connect(const std::string& endpoint, Time now) {
    const auto id = static_cast<std::uint32_t>(endpoint[1] - '0');  // "n2:7002" is node 2
    if (down.count(id) != 0) {
      core_.on_disconnected(now, Disconnect{Reason::connection_refused, "connection refused"});
      return;
    }
    drop();
    node_ = id;
    core_.on_connected(now, a_node(id));
  }

  void open_session(std::uint64_t last_egress, Time now) {
    bound_ = true;
    waiting_ = false;
    egress_sent_ = last_egress;
    protocol::SessionReply reply = opened_reply(kSession, applied.size(), kIncarnation, term);
    reply.leader_id = leader;
    hand(reply, now);
  }

  void acknowledge(Time now) {
    if (!lose_acks) hand(ack(applied.size(), 100 + applied.size(), kSession, term, leader), now);
  }

  void receive(const Sent& frame, Time now) {
    switch (frame.type) {
      case MessageType::session_open:
        waiting_egress_ = frame.session == kSession ? frame.last_egress : 0;
        if (leader == 0) {
          waiting_ = true;
          hand(status_reply(SessionStatus::no_leader, "election under way"), now);
        } else if (*node_ != leader) {
          hand(status_reply(SessionStatus::redirect, endpoint_of(leader), leader, term), now);
        } else {
          open_session(waiting_egress_, now);
        }
        return;
      case MessageType::ingress:
        if (!bound_) return;
        if (frame.seq == applied.size() + 1) {
          applied.push_back(frame.payload);
          if (applied.size() % 3 == 0) egress.push_back("egress after " + frame.payload);
        } else if (frame.seq > applied.size() + 1) {
          protocol::IngressRejected gap = rejection(frame.seq, applied.size() + 1, IngressRejectReason::gap);
          gap.term = term;
          gap.leader_id = leader;
          hand(gap, now);
          return;
        }
        acknowledge(now);
        return;
      case MessageType::keep_alive:
        if (bound_)
          acknowledge(now);
        else if (waiting_ && leader == 0)
          hand(status_reply(SessionStatus::no_leader, "election under way"), now);
        return;
      default: return;
    }
  }

  void send_egress(Time now) {
    for (; egress_sent_ < egress.size(); ++egress_sent_)
      hand(egress_frame(egress_sent_ + 1, egress[egress_sent_]), now);
  }

  protocol::Egress egress_frame(std::uint64_t seq, std::string_view payload) const {
    return protocol::Egress{kSession, seq, as_bytes(payload), term, leader};
  }

  ClientCore& core_;
  std::optional<std::uint32_t> node_;  // the node the client's connection is open to
  bool bound_ = false;                 // a session open on that connection
  bool waiting_ = false;               // the client waits there for a leader
  std::uint64_t waiting_egress_ = 0;   // the last egress the waiting client's open named
  std::uint64_t egress_sent_ = 0;      // on the connection
};

TEST_F(ClientCoreTest, AnInvokerModeRunThroughACrashAndAStepDownGivesEverySeqOneFateAndEveryEgressOnce) {
  ClientOptions options = test_options();
  options.max_buffered_messages = 64;
  options.max_buffered_bytes = 1U << 20U;
  use(options, 77);
  FakeCluster cluster(core_);

  std::vector<std::string> offered;  // payload of seq i + 1
  std::map<std::uint64_t, int> fates;
  std::vector<std::uint64_t> applied_seqs;
  std::vector<std::string> delivered_egress;
  std::vector<StateEvent> states;
  std::vector<Time> connected_at;
  std::vector<LeaderEvent> leaders;
  std::vector<SessionChange> sessions;
  std::vector<Event> events;  // as the runtime's: swapped with the core's, told, recycled
  const auto offer_one = [&] {
    const std::string payload = fmt::format("m{}", offered.size() + 1);
    const Offer result = core_.offer(as_bytes(payload), now_);
    ASSERT_EQ(result.status, OfferStatus::accepted);
    ASSERT_EQ(result.seq, offered.size() + 1);
    offered.push_back(payload);
  };
  // One poll(): a tick, the offers of this turn, the frames and connections, then the listener's callbacks.
  const auto poll = [&](int offers) {
    core_.tick(now_);
    for (int i = 0; i < offers && core_.unacknowledged() < 32; ++i) offer_one();
    cluster.turn(now_);
    events.swap(core_.events());
    for (const Event& event : events) {
      if (const auto* applied = std::get_if<AppliedEvent>(&event)) {
        ++fates[applied->seq];
        applied_seqs.push_back(applied->seq);
      } else if (const auto* rejected = std::get_if<RejectedEvent>(&event)) {
        ++fates[rejected->seq];
      } else if (const auto* unknown = std::get_if<UnknownEvent>(&event)) {
        ++fates[unknown->seq];
      } else if (const auto* egress = std::get_if<EgressEvent>(&event)) {
        EXPECT_EQ(egress->egress_seq, delivered_egress.size() + 1) << "egress out of order";
        delivered_egress.emplace_back(as_chars(ByteSpan(egress->message)));
      } else if (const auto* state = std::get_if<StateEvent>(&event)) {
        states.push_back(*state);
        if (state->state == ClientState::connected) connected_at.push_back(now_);
      } else if (const auto* leader = std::get_if<LeaderEvent>(&event)) {
        leaders.push_back(*leader);
      } else if (const auto* session = std::get_if<SessionEvent>(&event)) {
        sessions.push_back(session->change);
      } else {
        EXPECT_FALSE(std::holds_alternative<EgressGapEvent>(event) || std::holds_alternative<DataLossEvent>(event));
      }
    }
    core_.recycle(events);
  };
  const auto run_until = [&](Time end, int offers) {
    for (; now_ < end; now_ += 5ms) poll(offers);
  };

  run_until(1500ms, 1);
  ASSERT_EQ(core_.state(), ClientState::connected);
  // Leader 1 applies a burst and crashes before it acknowledges it.
  cluster.lose_acks = true;
  poll(5);
  cluster.crash(now_);
  cluster.lose_acks = false;
  run_until(1800ms, 1);  // an election: nodes 2 and 3 know no leader
  EXPECT_NE(core_.state(), ClientState::connected);
  cluster.elect(2, 2, now_);
  run_until(3000ms, 1);
  // Leader 2 loses a turn's messages on the way, applies the next ones without acknowledging them, and steps down.
  cluster.lose_ingress = true;
  poll(3);
  cluster.lose_ingress = false;
  cluster.lose_acks = true;
  poll(3);
  cluster.lose_acks = false;
  cluster.step_down(now_);
  run_until(3300ms, 1);
  cluster.elect(3, 3, now_);
  run_until(4500ms, 1);
  // No more offers: everything drains, then the application closes.
  run_until(5500ms, 0);
  EXPECT_EQ(core_.state(), ClientState::connected);
  EXPECT_EQ(core_.unacknowledged(), 0U);
  core_.close(now_);
  poll(0);
  EXPECT_EQ(core_.state(), ClientState::closed);

  // Every accepted seq has exactly one fate, applied, in seq order; the service applied each once, in order.
  ASSERT_GT(offered.size(), 500U);
  for (std::uint64_t seq = 1; seq <= offered.size(); ++seq) EXPECT_EQ(fates[seq], 1) << "seq " << seq;
  EXPECT_EQ(fates.size(), offered.size());
  EXPECT_TRUE(std::is_sorted(applied_seqs.begin(), applied_seqs.end()));
  EXPECT_EQ(applied_seqs.size(), offered.size()) << "every fate is applied";
  EXPECT_EQ(cluster.applied, offered);
  // Every egress message once, in order.
  EXPECT_EQ(delivered_egress, cluster.egress);
  // Connected, lost by the crash, back; lost by the step-down, back; closed by the application.
  std::vector<std::pair<ClientState, Reason>> changes;
  for (const StateEvent& state : states) changes.emplace_back(state.state, state.reason);
  EXPECT_EQ(changes, (std::vector<std::pair<ClientState, Reason>>{
                         {ClientState::connected, Reason::none},
                         {ClientState::reconnecting, Reason::connection_reset},
                         {ClientState::connected, Reason::none},
                         {ClientState::reconnecting, Reason::no_leader},
                         {ClientState::connected, Reason::none},
                         {ClientState::closed, Reason::closed_by_application},
                     }));
  ASSERT_EQ(connected_at.size(), 3U);
  EXPECT_LE(connected_at[1] - 1800ms, 200ms) << "back soon after leader 2's election";
  EXPECT_LE(connected_at[2] - 3300ms, 200ms) << "back soon after leader 3's election";
  EXPECT_EQ(sessions,
            (std::vector<SessionChange>{SessionChange::opened, SessionChange::resumed, SessionChange::resumed}));
  ASSERT_FALSE(leaders.empty());
  for (std::size_t i = 1; i < leaders.size(); ++i) EXPECT_GT(leaders[i].term, leaders[i - 1].term);
  EXPECT_EQ(leaders.back().leader, 3U);
  EXPECT_EQ(leaders.back().term, 3U);
}

}  // namespace
}  // namespace cohort::client

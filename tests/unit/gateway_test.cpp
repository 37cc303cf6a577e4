// The client gateway (gateway/gateway.h) on real Replicas over in-memory logs, driven as the node runtime drives it:
// a tick (replica, then gateway), then a flush (take_ready, storage completed at once, after_ready); client frames
// go in encoded and the gateway's frames come out decoded. A small cluster of such nodes passes consensus messages
// by hand and can cut a node off. Time is a value; nothing here sleeps.

#include "gateway/gateway.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "consensus/memory_log.h"
#include "protocol/catalogue.h"
#include "raft_cluster_config.h"
#include "recording_service.h"

namespace cohort::gateway {
namespace {

using consensus::MemoryLogStore;
using protocol::MessageType;
using protocol::SessionStatus;
using testing::RecordingService;
using namespace std::chrono_literals;

constexpr ClusterTime kWall{std::chrono::seconds(1'750'000'000)};
constexpr Duration kKeepAlive = 250ms;
constexpr std::uint32_t kMaxMessageSize = 1024;

std::string endpoint_of(NodeId member) { return "node" + std::to_string(member.value()) + ":7000"; }

template <typename Message>
std::vector<std::byte> encoded(const Message& message) {
  std::vector<std::byte> bytes;
  protocol::append_frame(message, bytes);
  return bytes;
}

protocol::SessionOpen open_of(std::uint64_t client) { return protocol::SessionOpen{client, 1}; }

// The frames the gateway sent to one connection, in order. Decoded messages view these bytes: keep the inbox.
struct Inbox {
  std::vector<std::vector<std::byte>> frames;

  template <typename Message>
  std::vector<Message> all() const {
    std::vector<Message> found;
    for (const auto& bytes : frames) {
      const protocol::FrameScan scan = protocol::scan_frame(bytes);
      EXPECT_EQ(scan.status, protocol::FrameScan::Status::complete);
      if (scan.status != protocol::FrameScan::Status::complete || scan.frame.header.type != Message::kType) continue;
      auto decoded = protocol::decode<Message>(scan.frame);
      EXPECT_TRUE(decoded.has_value());
      if (decoded.has_value()) found.push_back(*decoded);
    }
    return found;
  }
  template <typename Message>
  std::size_t count() const {
    return all<Message>().size();
  }
};

struct Closed {
  ConnectionId connection{};
  CloseCause cause{};
  std::string detail;
  Time at{0};
};

// Changes a node's configuration before it is built (limits, an authenticator).
using Configure = std::function<void(host::ReplicaConfig&, GatewayConfig&)>;

// One node: a Replica on a MemoryLogStore hosting a RecordingService, and its Gateway. Plays the node runtime's
// part: consensus messages wait for their `after` to be durable; the gateway's frames are "sent" into inboxes, except
// to connections whose send buffer a test declares full (the gateway hears on_send_failed, as from the node); a
// connection's silence is the time since its last frame (or its handshake), as the transport would tell.
class Station {
 public:
  Station(NodeId id, std::size_t members, Time now, Duration keepalive, const Configure& configure) : id_(id) {
    host::ReplicaConfig config;
    config.raft = consensus::cluster_config(id, members);
    config.limits.max_message_size = kMaxMessageSize;
    GatewayConfig gateway_config;
    gateway_config.self = id;
    gateway_config.heartbeat_interval = config.raft.heartbeat_interval;
    gateway_config.client_keepalive_interval = keepalive;
    gateway_config.max_message_size = kMaxMessageSize;
    if (configure) configure(config, gateway_config);
    replica_ = std::make_unique<host::Replica>(config, log_, service_, 4242 + id.value(), now, kWall + now);
    gateway_ = std::make_unique<Gateway>(gateway_config, *replica_);
    for (std::uint32_t member = 1; member <= members; ++member)
      gateway_->set_client_endpoint(NodeId{member}, endpoint_of(NodeId{member}));
  }

  NodeId id() const { return id_; }
  host::Replica& replica() { return *replica_; }
  Gateway& gateway() { return *gateway_; }
  RecordingService& service() { return service_; }
  Inbox& inbox(ConnectionId connection) { return inboxes_[connection]; }
  const std::vector<Closed>& closed() const { return closed_; }
  bool was_closed(ConnectionId connection) const {
    for (const Closed& closed : closed_)
      if (closed.connection == connection) return true;
    return false;
  }

  void connect(ConnectionId connection, Time now, protocol::PeerRole role = protocol::PeerRole::client) {
    gateway_->on_connected(connection, role);
    last_heard_[connection] = now;
  }
  /// A frame from a client: the gateway's answer is collected; false if it left the frame to the node.
  template <typename Message>
  bool receive(ConnectionId connection, const Message& message, Time now) {
    const std::vector<std::byte> bytes = encoded(message);
    const protocol::FrameScan scan = protocol::scan_frame(bytes);
    EXPECT_EQ(scan.status, protocol::FrameScan::Status::complete);
    last_heard_[connection] = now;
    const bool handled = gateway_->on_frame(connection, scan.frame, now);
    collect(now);
    return handled;
  }

  /// The node's flush: take_ready, storage completes (if `durable`), after_ready, until nothing more happens; the
  /// consensus messages that may leave are appended to `out`.
  void flush(Time now, std::vector<consensus::Message>& out) {
    for (int round = 0; round < 100; ++round) {
      consensus::Ready ready;
      replica_->take_ready(ready);
      for (consensus::Outgoing& outgoing : ready.messages) outbox_.push_back(std::move(outgoing));
      gateway_->after_ready(now);
      collect(now);
      const bool writes_pending = log_.last_seq() > log_.durable_seq();
      if (durable && writes_pending) {
        replica_->on_persisted(log_.make_durable(log_.last_seq()), now);
        continue;
      }
      if (replica_->host().applied_index() < replica_->raft().commit_index()) continue;
      break;
    }
    std::erase_if(outbox_, [&](consensus::Outgoing& outgoing) {
      if (outgoing.after > log_.durable_seq()) return false;
      out.push_back(std::move(outgoing.message));
      return true;
    });
  }

  void tick(Time now) {
    replica_->tick(now, kWall + now);
    gateway_->tick(now, [&](ConnectionId connection) { return now - last_heard_.at(connection); });
    collect(now);
  }

  bool durable = true;
  std::set<ConnectionId> full;         // connections whose send buffer is full
  std::set<ConnectionId> refuse_next;  // connections that refuse their next frame only (then have room again)

 private:
  void collect(Time now) {
    gateway_->send_frames([this](ConnectionId connection, ByteSpan bytes) {
      if (full.contains(connection) || refuse_next.erase(connection) != 0) return false;
      inboxes_[connection].frames.emplace_back(bytes.begin(), bytes.end());
      return true;
    });
    GatewayOutputs& out = gateway_->outputs();
    for (const Closing& closing : out.closing)
      closed_.push_back({closing.connection, closing.cause, closing.detail, now});
    out.clear();
  }

  NodeId id_;
  MemoryLogStore log_;
  RecordingService service_;
  std::unique_ptr<host::Replica> replica_;
  std::unique_ptr<Gateway> gateway_;
  std::vector<consensus::Outgoing> outbox_;
  std::map<ConnectionId, Inbox> inboxes_;
  std::map<ConnectionId, Time> last_heard_;
  std::vector<Closed> closed_;
};

// Nodes 1..size on one clock, passing consensus messages to each other unless one is cut off.
class Cluster {
 public:
  explicit Cluster(std::size_t size, Duration keepalive = kKeepAlive, const Configure& configure = {}) {
    for (std::uint32_t id = 1; id <= size; ++id)
      stations_.push_back(std::make_unique<Station>(NodeId{id}, size, now_, keepalive, configure));
  }

  Station& node(std::uint32_t id) { return *stations_.at(id - 1); }
  Time now() const { return now_; }

  /// Every node flushes and its messages are delivered, until no message is left.
  void settle() {
    for (int round = 0; round < 1000; ++round) {
      std::vector<consensus::Message> messages;
      for (auto& station : stations_) station->flush(now_, messages);
      if (messages.empty()) return;
      for (const consensus::Message& message : messages) {
        if (cut_.contains(message.from) || cut_.contains(message.to)) continue;
        node(message.to.value()).replica().step(message, now_);
      }
    }
    FAIL() << "the cluster kept talking for 1000 rounds";
  }

  /// Moves the clock, ticks every node (replica, then gateway, as the node's tick does), then settles.
  void tick(Duration step = 10ms) {
    now_ += step;
    for (auto& station : stations_) station->tick(now_);
    settle();
  }

  /// Ticks until a node serves clients; returns it.
  Station* elect() {
    for (int i = 0; i < 1000; ++i) {
      for (auto& station : stations_)
        if (station->replica().serving()) return station.get();
      tick();
    }
    return nullptr;
  }

  void cut(NodeId id) { cut_.insert(id); }
  void heal(NodeId id) { cut_.erase(id); }

 private:
  Time now_{0};
  std::vector<std::unique_ptr<Station>> stations_;
  std::set<NodeId> cut_;
};

// A client connected to a serving single node with its session open: the session id, or nullopt.
std::optional<SessionId> open_session(Cluster& cluster, ConnectionId connection, std::uint64_t client,
                                      const protocol::SessionOpen* open = nullptr) {
  Station& node = cluster.node(1);
  node.connect(connection, cluster.now());
  EXPECT_TRUE(node.receive(connection, open != nullptr ? *open : open_of(client), cluster.now()));
  cluster.settle();
  const auto replies = node.inbox(connection).all<protocol::SessionReply>();
  if (replies.empty() || replies.back().status != SessionStatus::opened) return std::nullopt;
  return replies.back().session_id;
}

// --- waiting for a leader -----------------------------------------------------------------------------------------

TEST(Gateway, AClientThatOpensBeforeTheNodeServesWaitsOnItsConnectionAndIsOpenedAsSoonAsTheNodeServes) {
  Cluster cluster(1);
  Station& node = cluster.node(1);
  const ConnectionId client{1};
  node.connect(client, cluster.now());
  EXPECT_TRUE(node.receive(client, open_of(7), cluster.now()));
  cluster.settle();

  auto replies = node.inbox(client).all<protocol::SessionReply>();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].status, SessionStatus::no_leader);
  EXPECT_EQ(std::string(replies[0].text), "no leader yet: waiting for an election");

  // The open is answered in the very turn the node starts serving (its no-op and bootstrap entry applied), not at the
  // next keep-alive tick: the node's tick runs the gateway before the flush that finds it serving.
  bool served = false;
  for (int i = 0; i < 500 && !served; ++i) {
    cluster.tick();
    served = node.replica().serving();
    const bool opened = node.inbox(client).count<protocol::SessionReply>() > 0 &&
                        node.inbox(client).all<protocol::SessionReply>().back().status == SessionStatus::opened;
    ASSERT_EQ(opened, served) << "at " << cluster.now().count() << " ns";
  }
  ASSERT_TRUE(served);
  EXPECT_FALSE(node.was_closed(client));

  replies = node.inbox(client).all<protocol::SessionReply>();
  const protocol::SessionReply& opened = replies.back();
  EXPECT_NE(opened.session_id, 0U);
  EXPECT_EQ(opened.leader_id, 1U);
  EXPECT_EQ(opened.term, node.replica().raft().term().value());
  EXPECT_EQ(opened.last_applied_seq, 0U);
  EXPECT_EQ(opened.max_message_size, kMaxMessageSize);
  EXPECT_TRUE(opened.incarnation.known());
  EXPECT_EQ(opened.incarnation.high, node.replica().host().incarnation().high);
  EXPECT_EQ(node.service().count(testing::ServiceCall::Kind::session_open), 1U);
}

TEST(Gateway, AStoppingNodeTellsItsWaitingClientsSoAndOpensNoSession) {
  Cluster cluster(1);
  Station& node = cluster.node(1);
  const ConnectionId client{1};
  node.connect(client, cluster.now());
  EXPECT_TRUE(node.receive(client, open_of(7), cluster.now()));
  node.gateway().set_stopping(cluster.now());
  cluster.settle();
  // The inbox decodes into views of its bytes: the text is read before the inbox grows.
  auto replies = node.inbox(client).all<protocol::SessionReply>();
  ASSERT_EQ(replies.size(), 2U);
  EXPECT_EQ(std::string(replies[1].text), "this node is stopping");

  ASSERT_NE(cluster.elect(), nullptr);
  for (int i = 0; i < 50; ++i) cluster.tick();
  replies = node.inbox(client).all<protocol::SessionReply>();
  for (const protocol::SessionReply& reply : replies) EXPECT_NE(reply.status, SessionStatus::opened);
  EXPECT_EQ(std::string(replies.back().text), "this node is stopping");
  EXPECT_EQ(node.service().count(testing::ServiceCall::Kind::session_open), 0U);
}

// --- ingress and acknowledgements ---------------------------------------------------------------------------------

TEST(Gateway, IngressIsAcknowledgedOnlyOnceCommittedAndApplied) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const ConnectionId client{1};
  const auto session = open_session(cluster, client, 7);
  ASSERT_TRUE(session.has_value());

  // Appended, but not durable: a lone node cannot commit it, and the client hears nothing yet.
  node.durable = false;
  const std::string payload = "hello";
  EXPECT_TRUE(node.receive(client, protocol::Ingress{*session, 1, as_bytes(payload)}, cluster.now()));
  cluster.settle();
  EXPECT_EQ(node.inbox(client).count<protocol::Ack>(), 0U);
  EXPECT_EQ(node.service().count(testing::ServiceCall::Kind::message), 0U);

  node.durable = true;
  cluster.settle();
  const auto acks = node.inbox(client).all<protocol::Ack>();
  ASSERT_EQ(acks.size(), 1U);
  EXPECT_EQ(acks[0].session_id, *session);
  EXPECT_EQ(acks[0].applied_seq, 1U);
  EXPECT_EQ(acks[0].log_position, node.replica().host().applied_index().value());
  EXPECT_EQ(acks[0].term, node.replica().raft().term().value());
  EXPECT_EQ(acks[0].leader_id, 1U);
  const auto messages = node.service().of(testing::ServiceCall::Kind::message);
  ASSERT_EQ(messages.size(), 1U);
  EXPECT_EQ(messages[0].message, "hello");
}

TEST(Gateway, AcknowledgementsAreBatchedOnePerSessionPerPass) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const ConnectionId first{1};
  const ConnectionId second{2};
  const auto a = open_session(cluster, first, 7);
  const auto b = open_session(cluster, second, 8);
  ASSERT_TRUE(a.has_value() && b.has_value());
  node.durable = false;  // all of them commit in one pass
  const std::string payload = "x";
  for (std::uint64_t seq = 1; seq <= 5; ++seq) {
    EXPECT_TRUE(node.receive(first, protocol::Ingress{*a, seq, as_bytes(payload)}, cluster.now()));
    EXPECT_TRUE(node.receive(second, protocol::Ingress{*b, seq, as_bytes(payload)}, cluster.now()));
  }
  cluster.settle();
  node.durable = true;
  cluster.settle();
  EXPECT_EQ(node.service().count(testing::ServiceCall::Kind::message), 10U);
  for (const auto& [connection, session] : {std::pair{first, *a}, std::pair{second, *b}}) {
    const auto acks = node.inbox(connection).all<protocol::Ack>();
    ASSERT_EQ(acks.size(), 1U) << "one ack for five applied messages";
    EXPECT_EQ(acks[0].session_id, session);
    EXPECT_EQ(acks[0].applied_seq, 5U);
  }
}

TEST(Gateway, TheLeaderNotesItsBoundSessionsAsActivitySoTheyOutliveTheTimeoutWhileAnUnboundOneExpires) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const ConnectionId live{1};
  const ConnectionId gone{2};
  const auto kept = open_session(cluster, live, 7);
  const auto dropped = open_session(cluster, gone, 8);
  ASSERT_TRUE(kept.has_value() && dropped.has_value());
  node.gateway().on_disconnected(gone);  // its client crashed
  // 12 s, longer than the default 10 s session timeout; the live client keeps talking.
  for (int i = 0; i < 1200; ++i) {
    cluster.tick(10ms);
    if (i % 20 == 0) {
      EXPECT_TRUE(node.receive(live, protocol::KeepAlive{*kept}, cluster.now()));
    }
  }
  EXPECT_TRUE(node.replica().host().session_open(*kept)) << "a bound client's session expired";
  EXPECT_FALSE(node.replica().host().session_open(*dropped)) << "an abandoned session never expired";
  const auto closes = node.service().of(testing::ServiceCall::Kind::session_close);
  ASSERT_EQ(closes.size(), 1U);
  EXPECT_EQ(closes[0].session, *dropped);
  EXPECT_EQ(closes[0].reason, CloseReason::timeout);
}

TEST(Gateway, IngressForASessionNotBoundToTheConnectionIsRejectedAsUnknownAndNotAppended) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const auto session = open_session(cluster, ConnectionId{1}, 7);
  ASSERT_TRUE(session.has_value());

  const ConnectionId stranger{2};
  node.connect(stranger, cluster.now());
  EXPECT_TRUE(node.receive(stranger, protocol::Ingress{*session, 1, as_bytes("x")}, cluster.now()));
  cluster.settle();
  const auto rejected = node.inbox(stranger).all<protocol::IngressRejected>();
  ASSERT_EQ(rejected.size(), 1U);
  EXPECT_EQ(rejected[0].reason, protocol::IngressRejectReason::unknown_session);
  EXPECT_EQ(rejected[0].seq, 1U);
  EXPECT_EQ(node.service().count(testing::ServiceCall::Kind::message), 0U);
}

// --- binding ------------------------------------------------------------------------------------------------------

TEST(Gateway, ASecondConnectionOfTheSameClientTakesTheBindingAndTheFirstClosingLateDoesNotUnbindIt) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const ConnectionId first{1};
  const ConnectionId second{2};
  const auto session = open_session(cluster, first, 7);
  ASSERT_TRUE(session.has_value());

  // The client reconnects (its first connection looks dead to it) and opens again: the same session, on the new one.
  const auto resumed = open_session(cluster, second, 7);
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(*resumed, *session);

  // The old connection no longer speaks for the session...
  EXPECT_TRUE(node.receive(first, protocol::Ingress{*session, 1, as_bytes("old")}, cluster.now()));
  cluster.settle();
  const auto rejected = node.inbox(first).all<protocol::IngressRejected>();
  ASSERT_EQ(rejected.size(), 1U);
  EXPECT_EQ(rejected[0].reason, protocol::IngressRejectReason::unknown_session);

  // ... and its late close leaves the binding with the new one: the ack of the next message reaches it.
  node.gateway().on_disconnected(first);
  EXPECT_TRUE(node.receive(second, protocol::Ingress{*session, 1, as_bytes("new")}, cluster.now()));
  cluster.settle();
  const auto acks = node.inbox(second).all<protocol::Ack>();
  ASSERT_EQ(acks.size(), 1U);
  EXPECT_EQ(acks[0].applied_seq, 1U);
  EXPECT_EQ(node.inbox(first).count<protocol::Ack>(), 0U);
}

TEST(Gateway, ASessionClosedByItsClientIsReportedClosedAndUnbound) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const ConnectionId client{1};
  const auto session = open_session(cluster, client, 7);
  ASSERT_TRUE(session.has_value());

  EXPECT_TRUE(node.receive(client, protocol::SessionClose{*session}, cluster.now()));
  cluster.settle();
  const auto closed = node.inbox(client).all<protocol::SessionClosed>();
  ASSERT_EQ(closed.size(), 1U);
  EXPECT_EQ(closed[0].session_id, *session);
  EXPECT_EQ(closed[0].reason, protocol::SessionCloseReason::client_closed);
  // Unbound: the connection no longer speaks for it, and keep-alive acks stop.
  const std::size_t acks = node.inbox(client).count<protocol::Ack>();
  for (int i = 0; i < 60; ++i) cluster.tick();
  EXPECT_EQ(node.inbox(client).count<protocol::Ack>(), acks);
}

// --- keep-alives and silence --------------------------------------------------------------------------------------

TEST(Gateway, ABoundClientHearsAnAckEveryKeepAliveInterval) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const ConnectionId client{1};
  const auto session = open_session(cluster, client, 7);
  ASSERT_TRUE(session.has_value());

  const std::size_t before = node.inbox(client).count<protocol::Ack>();
  // 1 s in 10 ms steps, the client keeping itself alive: one ack per 250 ms interval.
  for (int i = 0; i < 100; ++i) {
    cluster.tick();
    if (i % 10 == 0) {
      EXPECT_TRUE(node.receive(client, protocol::KeepAlive{*session}, cluster.now()));
    }
  }
  const auto acks = node.inbox(client).all<protocol::Ack>();
  ASSERT_EQ(acks.size() - before, 4U);
  EXPECT_EQ(acks.back().session_id, *session);
  EXPECT_EQ(acks.back().applied_seq, 0U);
  EXPECT_EQ(acks.back().leader_id, 1U);
  EXPECT_FALSE(node.was_closed(client));
}

TEST(Gateway, AClientSilentForFourKeepAliveIntervalsIsClosedWhileOnesThatSpeakAndAdminToolsStay) {
  Cluster cluster(1);
  Station& node = cluster.node(1);
  const ConnectionId silent{1};
  const ConnectionId talking{2};  // pings only: the node answers those, but they are life all the same
  const ConnectionId admin{3};
  const Time connected = cluster.now();
  node.connect(silent, connected);
  node.connect(talking, connected);
  node.connect(admin, connected, protocol::PeerRole::admin);

  std::optional<Time> closed_at;
  for (int i = 0; i < 200; ++i) {
    cluster.tick();
    if (i % 10 == 0) {
      EXPECT_FALSE(node.receive(talking, protocol::Ping{1, 0}, cluster.now()));
    }
    for (const Closed& closed : node.closed())
      if (closed.connection == silent && !closed_at) {
        closed_at = closed.at;
        EXPECT_EQ(closed.cause, CloseCause::silent);
      }
  }
  ASSERT_TRUE(closed_at.has_value());
  EXPECT_GT(*closed_at - connected, 4 * kKeepAlive);
  EXPECT_LE(*closed_at - connected, 5 * kKeepAlive);
  EXPECT_FALSE(node.was_closed(talking));
  EXPECT_FALSE(node.was_closed(admin));
  EXPECT_EQ(node.closed().size(), 1U);
}

// --- bad clients --------------------------------------------------------------------------------------------------

TEST(Gateway, AMalformedFrameClosesTheConnectionAndTakesItsBindingAlong) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const ConnectionId client{1};
  const auto session = open_session(cluster, client, 7);
  ASSERT_TRUE(session.has_value());

  // A session_open frame three bytes short of its body.
  std::vector<std::byte> bytes = encoded(open_of(7));
  protocol::Frame frame;
  frame.header = protocol::FrameHeader{static_cast<std::uint32_t>(bytes.size() - 3), MessageType::session_open,
                                       protocol::SessionOpen::kVersion, 0};
  frame.body = ByteSpan(bytes).subspan(protocol::kFrameHeaderSize, bytes.size() - protocol::kFrameHeaderSize - 3);
  EXPECT_TRUE(node.gateway().on_frame(client, frame, cluster.now()));
  GatewayOutputs& out = node.gateway().outputs();
  ASSERT_EQ(out.closing.size(), 1U);
  EXPECT_EQ(out.closing[0].connection, client);
  EXPECT_EQ(out.closing[0].cause, CloseCause::malformed_frame);
  EXPECT_NE(out.closing[0].detail.find("short"), std::string::npos) << out.closing[0].detail;
  EXPECT_TRUE(out.frames.empty());
  out.clear();

  // Forgotten: its frames are ignored, and its session hears nothing more there (no keep-alive acks).
  const std::size_t frames_before = node.inbox(client).frames.size();
  EXPECT_TRUE(node.receive(client, protocol::Ingress{*session, 1, as_bytes("x")}, cluster.now()));
  for (int i = 0; i < 60; ++i) cluster.tick();
  EXPECT_EQ(node.service().count(testing::ServiceCall::Kind::message), 0U);
  EXPECT_EQ(node.inbox(client).frames.size(), frames_before);
}

TEST(Gateway, AFrameNoClientMaySendClosesTheConnection) {
  Cluster cluster(1);
  Station& node = cluster.node(1);
  const ConnectionId client{1};
  node.connect(client, cluster.now());
  EXPECT_TRUE(node.receive(client, protocol::Ack{1, 1, 1, 1, 1}, cluster.now()));
  ASSERT_EQ(node.closed().size(), 1U);
  EXPECT_EQ(node.closed()[0].cause, CloseCause::unexpected_frame);
  EXPECT_EQ(node.closed()[0].detail, "unexpected ack frame");
}

TEST(Gateway, PingAndStatusRequestsAreLeftToTheNode) {
  Cluster cluster(1);
  Station& node = cluster.node(1);
  const ConnectionId admin{1};
  node.connect(admin, cluster.now(), protocol::PeerRole::admin);
  EXPECT_FALSE(node.receive(admin, protocol::StatusRequest{}, cluster.now()));
  EXPECT_FALSE(node.receive(admin, protocol::Ping{1, 2}, cluster.now()));
  EXPECT_FALSE(node.receive(admin, protocol::AdminRequest{}, cluster.now()));
  EXPECT_TRUE(node.inbox(admin).frames.empty());
  EXPECT_TRUE(node.closed().empty());
}

TEST(Gateway, AnAdminRequestFromAClientConnectionClosesIt) {
  Cluster cluster(1);
  Station& node = cluster.node(1);
  const ConnectionId client{1};
  node.connect(client, cluster.now());
  EXPECT_TRUE(node.receive(client, protocol::AdminRequest{protocol::AdminCommand::shutdown, 0, 0, {}}, cluster.now()));
  ASSERT_EQ(node.closed().size(), 1U);
  EXPECT_EQ(node.closed()[0].cause, CloseCause::unexpected_frame);
  EXPECT_EQ(node.closed()[0].detail, "an admin_request on a client connection");
}

TEST(Gateway, AClientWhoseSendBufferIsFullIsClosedAndItsSessionUnbound) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const ConnectionId client{1};
  const auto session = open_session(cluster, client, 7);
  ASSERT_TRUE(session.has_value());

  node.full.insert(client);
  EXPECT_TRUE(node.receive(client, protocol::Ingress{*session, 1, as_bytes("x")}, cluster.now()));
  cluster.settle();  // applied: its ack finds the buffer full
  ASSERT_EQ(node.closed().size(), 1U);
  EXPECT_EQ(node.closed()[0].connection, client);
  EXPECT_EQ(node.closed()[0].cause, CloseCause::send_buffer_full);
  EXPECT_EQ(node.service().count(testing::ServiceCall::Kind::message), 1U);

  // Nothing more is produced for it (no keep-alive acks), and the client's new connection resumes the session.
  node.full.clear();
  for (int i = 0; i < 60; ++i) cluster.tick();
  EXPECT_EQ(node.inbox(client).count<protocol::Ack>(), 0U);
  const ConnectionId again{2};
  const auto resumed = open_session(cluster, again, 7);
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(*resumed, *session);
  EXPECT_EQ(node.inbox(again).all<protocol::SessionReply>().back().last_applied_seq, 1U);
}

// --- three nodes --------------------------------------------------------------------------------------------------

TEST(Gateway, AFollowerRedirectsToTheEndpointTheLeaderAdvertisesWhileTheLeaderIsAlive) {
  Cluster cluster(3);
  Station* leader = cluster.elect();
  ASSERT_NE(leader, nullptr);
  for (int i = 0; i < 5; ++i) cluster.tick();  // every follower hears from it
  Station& follower = cluster.node(leader->id().value() % 3 + 1);
  ASSERT_EQ(follower.replica().raft().leader(), leader->id());

  const ConnectionId client{1};
  follower.connect(client, cluster.now());
  EXPECT_TRUE(follower.receive(client, open_of(7), cluster.now()));
  auto replies = follower.inbox(client).all<protocol::SessionReply>();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].status, SessionStatus::redirect);
  EXPECT_EQ(replies[0].leader_id, leader->id().value());
  EXPECT_EQ(std::string(replies[0].text), endpoint_of(leader->id()));
  EXPECT_FALSE(follower.was_closed(client));

  // The leader advertises another address in its handshake: redirects name that one.
  follower.gateway().set_client_endpoint(leader->id(), "leader.example:9000");
  EXPECT_TRUE(follower.receive(client, open_of(7), cluster.now()));
  replies = follower.inbox(client).all<protocol::SessionReply>();
  ASSERT_EQ(replies.size(), 2U);
  EXPECT_EQ(std::string(replies[1].text), "leader.example:9000");
}

TEST(Gateway, AFollowerWhoseLeaderIsSilentForThreeHeartbeatsKeepsTheClientWaitingInsteadOfRedirecting) {
  Cluster cluster(3);
  Station* leader = cluster.elect();
  ASSERT_NE(leader, nullptr);
  for (int i = 0; i < 5; ++i) cluster.tick();
  Station& follower = cluster.node(leader->id().value() % 3 + 1);
  ASSERT_EQ(follower.replica().raft().leader(), leader->id());

  // Cut off for 200 ms: more than three 50 ms heartbeats, less than an election timeout (500 ms at least).
  cluster.cut(leader->id());
  for (int i = 0; i < 20; ++i) cluster.tick();
  ASSERT_EQ(follower.replica().raft().leader(), leader->id());

  const ConnectionId client{1};
  follower.connect(client, cluster.now());
  EXPECT_TRUE(follower.receive(client, open_of(7), cluster.now()));
  const auto replies = follower.inbox(client).all<protocol::SessionReply>();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].status, SessionStatus::no_leader);
  EXPECT_EQ(replies[0].leader_id, 0U);
  EXPECT_FALSE(follower.was_closed(client));
}

TEST(Gateway, WhenLeadershipMovesABoundClientIsUnboundAndSentToTheNewLeader) {
  Cluster cluster(3);
  Station* leader = cluster.elect();
  ASSERT_NE(leader, nullptr);
  for (int i = 0; i < 5; ++i) cluster.tick();
  const ConnectionId client{1};
  leader->connect(client, cluster.now());
  EXPECT_TRUE(leader->receive(client, open_of(7), cluster.now()));
  cluster.settle();
  auto replies = leader->inbox(client).all<protocol::SessionReply>();
  ASSERT_EQ(replies.size(), 1U);
  ASSERT_EQ(replies[0].status, SessionStatus::opened);
  const SessionId session = replies[0].session_id;

  const NodeId successor{leader->id().value() % 3 + 1};
  ASSERT_TRUE(leader->replica().raft().transfer_leadership(successor, cluster.now()).ok());
  for (int i = 0; i < 100 && !cluster.node(successor.value()).replica().serving(); ++i) cluster.tick();
  ASSERT_TRUE(cluster.node(successor.value()).replica().serving());

  // Told at once, without asking: the old leader names the new one.
  replies = leader->inbox(client).all<protocol::SessionReply>();
  ASSERT_GE(replies.size(), 2U);
  EXPECT_EQ(replies.back().status, SessionStatus::redirect);
  EXPECT_EQ(replies.back().leader_id, successor.value());
  EXPECT_EQ(std::string(replies.back().text), endpoint_of(successor));
  // Unbound: ingress on the old connection is not appended there.
  EXPECT_TRUE(leader->receive(client, protocol::Ingress{session, 1, as_bytes("x")}, cluster.now()));
  const auto rejected = leader->inbox(client).all<protocol::IngressRejected>();
  ASSERT_EQ(rejected.size(), 1U);
  EXPECT_EQ(rejected[0].reason, protocol::IngressRejectReason::unknown_session);
}

TEST(Gateway, ALeaderThatLosesLeadershipWithAnOpenItCouldNotCommitTellsTheWaitingClientAtOnce) {
  // Keep-alive ticks (which retry waiting opens too) only every 10 s: whatever the client hears here, it hears
  // because leadership changed.
  Cluster cluster(3, 10s);
  Station* leader = cluster.elect();
  ASSERT_NE(leader, nullptr);
  for (int i = 0; i < 5; ++i) cluster.tick();

  // Cut off, the leader appends the client's open but cannot commit it: the client waits.
  cluster.cut(leader->id());
  const ConnectionId client{1};
  leader->connect(client, cluster.now());
  EXPECT_TRUE(leader->receive(client, open_of(7), cluster.now()));
  cluster.settle();
  EXPECT_EQ(leader->inbox(client).frames.size(), 0U);

  // The others elect a leader; the old one, back in touch, follows it and sends the client there at once.
  Station* successor = nullptr;
  for (int i = 0; i < 300 && successor == nullptr; ++i) {
    cluster.tick();
    for (std::uint32_t id = 1; id <= 3; ++id)
      if (NodeId{id} != leader->id() && cluster.node(id).replica().serving()) successor = &cluster.node(id);
  }
  ASSERT_NE(successor, nullptr);
  cluster.heal(leader->id());
  for (int i = 0; i < 10 && leader->replica().raft().leader() != successor->id(); ++i) cluster.tick();
  ASSERT_EQ(leader->replica().raft().leader(), successor->id());
  const auto replies = leader->inbox(client).all<protocol::SessionReply>();
  ASSERT_FALSE(replies.empty());
  EXPECT_EQ(replies.back().status, SessionStatus::redirect);
  EXPECT_EQ(replies.back().leader_id, successor->id().value());
  EXPECT_EQ(std::string(replies.back().text), endpoint_of(successor->id()));
  EXPECT_FALSE(leader->was_closed(client));
}

// --- sessions: authentication, limits, resumes ---------------------------------------------------------------------

// Refuses every credential but "letmein".
class OneCredential final : public Authenticator {
 public:
  std::optional<std::string> refuse(std::uint64_t, std::uint64_t, std::span<const std::byte> credential) override {
    ++asked;
    if (std::string_view(reinterpret_cast<const char*>(credential.data()), credential.size()) == "letmein")
      return std::nullopt;
    return "credential not allowed";
  }
  int asked = 0;
};

TEST(Gateway, TheAuthenticatorRefusesBeforeTheOpenIsAppendedAndTheClientHearsWhy) {
  auto authenticator = std::make_shared<OneCredential>();
  Cluster cluster(1, kKeepAlive,
                  [&](host::ReplicaConfig&, GatewayConfig& config) { config.authenticator = authenticator; });
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const std::string wrong = "guess";
  protocol::SessionOpen open = open_of(7);
  open.credential = as_bytes(wrong);
  EXPECT_FALSE(open_session(cluster, ConnectionId{1}, 7, &open).has_value());
  const auto refused = node.inbox(ConnectionId{1}).all<protocol::SessionReply>();
  ASSERT_EQ(refused.size(), 1U);
  EXPECT_EQ(refused[0].status, SessionStatus::rejected);
  EXPECT_EQ(refused[0].text, "credential not allowed");
  EXPECT_EQ(node.replica().host().open_sessions(), 0U) << "a refused open reached the log";

  const std::string right = "letmein";
  open.credential = as_bytes(right);
  EXPECT_TRUE(open_session(cluster, ConnectionId{2}, 7, &open).has_value());
  EXPECT_EQ(authenticator->asked, 2);
}

class ThrowingAuthenticator final : public Authenticator {
 public:
  std::optional<std::string> refuse(std::uint64_t, std::uint64_t, std::span<const std::byte>) override {
    throw std::runtime_error("the credential store is unreachable");
  }
};

TEST(Gateway, AnAuthenticatorThatThrowsRefusesTheOpenNamingTheFailureAndTheNodeGoesOn) {
  auto authenticator = std::make_shared<ThrowingAuthenticator>();
  Cluster cluster(1, kKeepAlive,
                  [&](host::ReplicaConfig&, GatewayConfig& config) { config.authenticator = authenticator; });
  ASSERT_NE(cluster.elect(), nullptr);
  EXPECT_FALSE(open_session(cluster, ConnectionId{1}, 7).has_value());
  const auto refused = cluster.node(1).inbox(ConnectionId{1}).all<protocol::SessionReply>();
  ASSERT_EQ(refused.size(), 1U);
  EXPECT_EQ(refused[0].status, SessionStatus::rejected);
  EXPECT_EQ(std::string(refused[0].text), "the authenticator failed: the credential store is unreachable");
  EXPECT_EQ(cluster.node(1).replica().host().open_sessions(), 0U);
}

// An open that takes longer than the client's silence limit to commit: the client hears a keep-alive every interval
// meanwhile (it would otherwise drop the connection, and the open's answer would find no one).
TEST(Gateway, AClientWhoseOpenIsCommittingHearsKeepAlivesMeanwhile) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const ConnectionId client{1};
  node.durable = false;  // the open is appended, not committed
  node.connect(client, cluster.now());
  EXPECT_TRUE(node.receive(client, open_of(7), cluster.now()));
  for (int i = 0; i < 100; ++i) cluster.tick();  // 4 keep-alive intervals and more
  EXPECT_GE(node.inbox(client).count<protocol::KeepAlive>(), 3U);
  EXPECT_EQ(node.inbox(client).count<protocol::SessionReply>(), 0U);
  EXPECT_FALSE(node.was_closed(client));
  node.durable = true;
  cluster.settle();
  const auto replies = node.inbox(client).all<protocol::SessionReply>();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].status, SessionStatus::opened);
}

TEST(Gateway, AnOpenBeyondTheSessionLimitIsAnsweredBusy) {
  Cluster cluster(1, kKeepAlive, [](host::ReplicaConfig& config, GatewayConfig&) { config.limits.max_sessions = 1; });
  ASSERT_NE(cluster.elect(), nullptr);
  ASSERT_TRUE(open_session(cluster, ConnectionId{1}, 7).has_value());
  EXPECT_FALSE(open_session(cluster, ConnectionId{2}, 8).has_value());
  const auto replies = cluster.node(1).inbox(ConnectionId{2}).all<protocol::SessionReply>();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].status, SessionStatus::busy);
}

// A send buffer that refuses one frame and would take the next: the next must not be sent, or the client would see
// egress 2 right after nothing, a hole it takes for a gap beyond the window. The connection is closed instead, and
// the resume resends both.
TEST(Gateway, AfterAFrameIsRefusedTheConnectionGetsNoLaterFrameOfThePassAndTheResumeResendsThem) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  node.service().on_message_hook = [](cohort::Cluster& c, SessionId session, std::string_view message) {
    for (const char letter : message) c.send(session, as_bytes(std::string(1, letter)));
  };
  const auto session = open_session(cluster, ConnectionId{1}, 7);
  ASSERT_TRUE(session.has_value());
  const std::size_t frames_before = node.inbox(ConnectionId{1}).frames.size();
  node.refuse_next.insert(ConnectionId{1});
  const std::string ab = "ab";
  EXPECT_TRUE(node.receive(ConnectionId{1}, protocol::Ingress{*session, 1, as_bytes(ab)}, cluster.now()));
  cluster.settle();
  EXPECT_EQ(node.inbox(ConnectionId{1}).frames.size(), frames_before) << "a frame after the refused one was sent";
  ASSERT_EQ(node.closed().size(), 1U);
  EXPECT_EQ(node.closed()[0].cause, CloseCause::send_buffer_full);

  protocol::SessionOpen resume = open_of(7);
  resume.session_id = *session;
  ASSERT_TRUE(open_session(cluster, ConnectionId{2}, 7, &resume).has_value());
  const auto egress = node.inbox(ConnectionId{2}).all<protocol::Egress>();
  ASSERT_EQ(egress.size(), 2U);
  EXPECT_EQ(egress[0].egress_seq, 1U);
  EXPECT_EQ(egress[1].egress_seq, 2U);
}

TEST(Gateway, AResumeBindsRepliesThenResendsTheUnseenEgressInOrderThenLiveEgressFollows) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  node.service().on_message_hook = [](cohort::Cluster& c, SessionId session, std::string_view message) {
    for (const char letter : message) c.send(session, as_bytes(std::string(1, letter)));
  };
  const auto session = open_session(cluster, ConnectionId{1}, 7);
  ASSERT_TRUE(session.has_value());
  const std::string abcde = "abcde";
  EXPECT_TRUE(node.receive(ConnectionId{1}, protocol::Ingress{*session, 1, as_bytes(abcde)}, cluster.now()));
  cluster.settle();
  ASSERT_EQ(node.inbox(ConnectionId{1}).count<protocol::Egress>(), 5U);
  node.gateway().on_disconnected(ConnectionId{1});

  // It had delivered egress 1 and 2 when its connection broke.
  protocol::SessionOpen resume = open_of(7);
  resume.session_id = *session;
  resume.last_egress_seq = 2;
  ASSERT_EQ(open_session(cluster, ConnectionId{2}, 7, &resume), session);
  const std::string f = "f";
  EXPECT_TRUE(node.receive(ConnectionId{2}, protocol::Ingress{*session, 2, as_bytes(f)}, cluster.now()));
  cluster.settle();

  std::vector<std::string> seen;
  const Inbox& inbox = node.inbox(ConnectionId{2});
  for (const auto& bytes : inbox.frames) {
    const protocol::FrameScan scan = protocol::scan_frame(bytes);
    if (scan.frame.header.type == MessageType::session_reply) seen.emplace_back("reply");
    if (scan.frame.header.type != MessageType::egress) continue;
    const auto egress = protocol::decode<protocol::Egress>(scan.frame);
    ASSERT_TRUE(egress.has_value());
    EXPECT_EQ(egress->term, node.replica().raft().term().value()) << "egress carries the term";
    EXPECT_EQ(egress->leader_id, 1U) << "and the leader";
    seen.push_back(std::to_string(egress->egress_seq) + std::string(as_chars(egress->payload)));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"reply", "3c", "4d", "5e", "6f"}));
}

TEST(Gateway, AResumeOfAClosedSessionOpensANewOneAndSaysWhatWasAppliedOfTheOld) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const auto session = open_session(cluster, ConnectionId{1}, 7);
  ASSERT_TRUE(session.has_value());
  const std::string x = "x";
  EXPECT_TRUE(node.receive(ConnectionId{1}, protocol::Ingress{*session, 1, as_bytes(x)}, cluster.now()));
  EXPECT_TRUE(node.receive(ConnectionId{1}, protocol::SessionClose{*session}, cluster.now()));
  cluster.settle();
  node.gateway().on_disconnected(ConnectionId{1});

  protocol::SessionOpen resume = open_of(7);
  resume.session_id = *session;
  const auto fresh = open_session(cluster, ConnectionId{2}, 7, &resume);
  ASSERT_TRUE(fresh.has_value());
  EXPECT_NE(*fresh, *session);
  const auto reply = node.inbox(ConnectionId{2}).all<protocol::SessionReply>().back();
  EXPECT_EQ(reply.replaced_session, *session);
  EXPECT_EQ(reply.replaced_last_seq, 1U);
  EXPECT_EQ(reply.replaced_reason, protocol::SessionCloseReason::client_closed);
}

TEST(Gateway, EgressAppliedRightAfterAResumeCannotEvictTheWindowItResends) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  // "flood S N": N egress messages to session S; anything else: one egress, the message itself, to its sender.
  node.service().on_message_hook = [](cohort::Cluster& c, SessionId session, std::string_view message) {
    if (message.starts_with("flood ")) {
      const auto space = message.find(' ', 6);
      const SessionId target = std::stoull(std::string(message.substr(6, space - 6)));
      const int count = std::stoi(std::string(message.substr(space + 1)));
      for (int i = 0; i < count; ++i) c.send(target, as_bytes(std::to_string(i)));
      return;
    }
    c.send(session, as_bytes(message));
  };
  const auto session = open_session(cluster, ConnectionId{1}, 7);
  const auto other = open_session(cluster, ConnectionId{2}, 8);
  ASSERT_TRUE(session.has_value() && other.has_value());
  for (std::uint64_t seq = 1; seq <= 3; ++seq) {
    const std::string text = fmt::format("m{}", seq);
    EXPECT_TRUE(node.receive(ConnectionId{1}, protocol::Ingress{*session, seq, as_bytes(text)}, cluster.now()));
  }
  cluster.settle();
  node.gateway().on_disconnected(ConnectionId{1});  // it had delivered egress 1 only

  // Its resume and 200 egress to it commit together: the default window holds 128.
  node.durable = false;
  protocol::SessionOpen resume = open_of(7);
  resume.session_id = *session;
  resume.last_egress_seq = 1;
  node.connect(ConnectionId{3}, cluster.now());
  EXPECT_TRUE(node.receive(ConnectionId{3}, resume, cluster.now()));
  const std::string flood = fmt::format("flood {} 200", *session);
  EXPECT_TRUE(node.receive(ConnectionId{2}, protocol::Ingress{*other, 1, as_bytes(flood)}, cluster.now()));
  cluster.settle();
  node.durable = true;
  cluster.settle();

  const auto egress = node.inbox(ConnectionId{3}).all<protocol::Egress>();
  ASSERT_EQ(egress.size(), 202U) << "2 resent (2, 3) and 200 live";
  for (std::size_t i = 0; i < egress.size(); ++i) EXPECT_EQ(egress[i].egress_seq, i + 2) << "at " << i;
}

TEST(Gateway, AConnectionThatOpensASecondSessionLetsTheFirstGoSoItCanExpire) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  const auto first = open_session(cluster, ConnectionId{1}, 7);
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(node.receive(ConnectionId{1}, open_of(8), cluster.now()));
  cluster.settle();
  const auto second = node.inbox(ConnectionId{1}).all<protocol::SessionReply>().back().session_id;
  ASSERT_NE(second, *first);
  for (int i = 0; i < 1200; ++i) {
    cluster.tick(10ms);
    if (i % 20 == 0) {
      EXPECT_TRUE(node.receive(ConnectionId{1}, protocol::KeepAlive{second}, cluster.now()));
    }
  }
  EXPECT_FALSE(node.replica().host().session_open(*first)) << "the first session stayed bound to the connection";
  EXPECT_TRUE(node.replica().host().session_open(second));
}

TEST(Gateway, AnOpenTakenOverByANewerConnectionIsNotAppendedAgainForTheOlderOne) {
  Cluster cluster(1);
  ASSERT_NE(cluster.elect(), nullptr);
  Station& node = cluster.node(1);
  node.durable = false;  // the open stays pending
  node.connect(ConnectionId{1}, cluster.now());
  EXPECT_TRUE(node.receive(ConnectionId{1}, open_of(7), cluster.now()));
  node.connect(ConnectionId{2}, cluster.now());
  EXPECT_TRUE(node.receive(ConnectionId{2}, open_of(7), cluster.now()));
  for (int i = 0; i < 60; ++i) cluster.tick(10ms);  // keep-alive passes retry waiting opens
  node.durable = true;
  cluster.settle();
  for (int i = 0; i < 60; ++i) cluster.tick(10ms);
  EXPECT_EQ(node.inbox(ConnectionId{1}).count<protocol::SessionReply>(), 0U) << "the older connection took it back";
  const auto replies = node.inbox(ConnectionId{2}).all<protocol::SessionReply>();
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].status, SessionStatus::opened);
  EXPECT_EQ(node.service().count(testing::ServiceCall::Kind::session_open), 1U);
}

}  // namespace
}  // namespace cohort::gateway

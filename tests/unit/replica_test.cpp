// The Replica (host/replica.h) on an in-memory log, driven by hand: tick, take_ready, and storage completions made
// with MemoryLogStore::make_durable. A one-node cluster elects itself, so the leader's own decisions (its no-op,
// the bootstrap entry, stamps, timer firings) can be watched one step at a time.

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cohort/services/kv_codec.h"
#include "cohort/services/kv_service.h"
#include "consensus/memory_log.h"
#include "host/entry_codec.h"
#include "host/replica.h"
#include "recording_service.h"

namespace cohort::host {
namespace {

using consensus::EntryType;
using consensus::MemoryLogStore;
using testing::RecordingService;
using testing::ServiceCall;
using Kind = ServiceCall::Kind;
using namespace std::chrono_literals;

// A wall clock well into the 2020s, so "the stamp follows the wall clock" cannot pass by accident at 0.
constexpr ClusterTime kWall{std::chrono::seconds(1'750'000'000)};
constexpr Id128 kClient{0xC0FFEE, 1};

ReplicaConfig config_of(std::size_t members) {
  ReplicaConfig config;
  config.raft.id = NodeId{1};
  for (std::uint32_t member = 1; member <= members; ++member) config.raft.members.push_back(NodeId{member});
  config.limits.max_message_size = 1024;
  return config;
}

// One replica and its clocks. Storage completes at once after every input unless `durable` is off, in which case
// writes stay pending (so nothing new commits in a one-node cluster) until it is turned back on.
class Driver {
 public:
  Driver(MemoryLogStore& log, Service& service, ClusterTime wall, std::size_t members = 1, Time mono = Time{0},
         std::optional<ByteSpan> snapshot = std::nullopt)
      : log_(log), mono_(mono), wall_(wall) {
    replica_ = std::make_unique<Replica>(config_of(members), log, service, 4242, mono_, wall_, snapshot);
  }

  Replica& replica() { return *replica_; }
  ServiceHost& host() { return replica_->host(); }
  Time mono() const { return mono_; }
  ClusterTime wall() const { return wall_; }

  /// Moves both clocks by `step` (the wall clock additionally by `wall_jump`), ticks, and settles.
  void tick(std::chrono::nanoseconds step = 10ms, std::chrono::nanoseconds wall_jump = 0ns) {
    mono_ += step;
    wall_ += step + wall_jump;
    replica_->tick(mono_, wall_);
    settle();
  }

  /// Hands the replica its outputs and, if storage is on, the completion of every pending write, until nothing
  /// more happens; every committed entry is then applied.
  void settle() {
    for (int round = 0; round < 100; ++round) {
      consensus::Ready ready;
      replica_->take_ready(ready);
      if (!durable || log_.last_seq() == log_.durable_seq()) return;
      replica_->on_persisted(log_.make_durable(log_.last_seq()), mono_);
    }
    FAIL() << "the replica kept writing for 100 rounds";
  }

  /// Ticks until the replica serves as leader with the incarnation known (its bootstrap entry applied).
  bool elect() {
    for (int i = 0; i < 500; ++i) {
      if (replica_->serving() && host().incarnation().known()) return true;
      tick();
    }
    return false;
  }

  std::vector<HostOutput> take_outputs() {
    std::vector<HostOutput> outputs = std::move(host().outputs());
    host().outputs().clear();
    return outputs;
  }

  bool durable = true;

 private:
  MemoryLogStore& log_;
  std::unique_ptr<Replica> replica_;
  Time mono_;
  ClusterTime wall_;
};

// The state hash of the log's entries 1..`upto` replayed into a fresh host on `service` (fresh too). A restarted
// replica cannot be compared directly once it leads again: its new term's first entry renews every session.
std::uint64_t replayed_hash(const MemoryLogStore& log, Service& service, LogIndex upto) {
  ServiceHost host(service, config_of(1).limits);
  host.start();
  for (LogIndex i{1}; i <= upto; i = i.next()) host.apply(log.entry(i));
  return host.state_hash();
}

ClusterTime stamp_at(const MemoryLogStore& log, LogIndex index) {
  const auto stamp = entry_stamp(log.entry(index).payload);
  EXPECT_TRUE(stamp.has_value()) << "entry " << index.value() << " has no stamp";
  return stamp.value_or(ClusterTime{0});
}

std::optional<EntryKind> kind_at(const MemoryLogStore& log, LogIndex index) {
  const consensus::Entry& entry = log.entry(index);
  if (entry.type != EntryType::command) return std::nullopt;
  auto decoded = decode_entry(entry.payload);
  EXPECT_TRUE(decoded.has_value());
  return decoded.has_value() ? std::optional(decoded->kind) : std::nullopt;
}

std::size_t count_kind(const MemoryLogStore& log, EntryKind kind) {
  std::size_t found = 0;
  for (LogIndex i{1}; i <= log.last_index(); i = i.next())
    if (kind_at(log, i) == kind) ++found;
  return found;
}

template <typename T>
std::vector<T> only(const std::vector<HostOutput>& outputs) {
  std::vector<T> found;
  for (const HostOutput& output : outputs)
    if (const T* value = std::get_if<T>(&output)) found.push_back(*value);
  return found;
}

// --- leadership -------------------------------------------------------------------------------------------------

TEST(Replica, ASingleNodeLeadsAppliesItsNoopThenServesAndAppendsTheBootstrapEntry) {
  MemoryLogStore log;
  RecordingService service;
  Driver node(log, service, kWall);
  ASSERT_TRUE(node.elect());

  const Replica& replica = node.replica();
  EXPECT_EQ(replica.raft().role(), consensus::Role::leader);
  EXPECT_TRUE(replica.serving());
  ASSERT_GE(log.last_index(), LogIndex{2});
  EXPECT_EQ(log.entry(LogIndex{1}).type, EntryType::noop);
  EXPECT_EQ(log.entry(LogIndex{1}).term, replica.raft().term());
  // Right after the no-op, the entry that renews every session's activity in this term; then the bootstrap.
  EXPECT_EQ(kind_at(log, LogIndex{2}), EntryKind::activity);
  EXPECT_EQ(kind_at(log, LogIndex{3}), EntryKind::bootstrap);
  EXPECT_EQ(count_kind(log, EntryKind::bootstrap), 1U);
  EXPECT_EQ(replica.host().renewed_term(), replica.raft().term());
  EXPECT_EQ(replica.host().applied_index(), log.last_index());
  EXPECT_TRUE(replica.host().incarnation().known());

  // The service heard it became the leader.
  const auto roles = service.of(Kind::role);
  ASSERT_FALSE(roles.empty());
  EXPECT_EQ(roles.back().role, ClusterRole::leader);

  // Serving on, it never appends a second bootstrap entry.
  for (int i = 0; i < 20; ++i) node.tick();
  EXPECT_EQ(count_kind(log, EntryKind::bootstrap), 1U);
}

TEST(Replica, ALeaderDoesNotServeUntilItsNoopIsApplied) {
  MemoryLogStore log;
  RecordingService service;
  Driver node(log, service, kWall);
  node.durable = false;  // its no-op can never become durable, so never commits
  for (int i = 0; i < 300 && node.replica().raft().role() != consensus::Role::leader; ++i) {
    // The vote must be durable before the candidate counts it: let hard state through, nothing else.
    node.tick();
    if (log.last_index() == LogIndex{0} && log.last_seq() > log.durable_seq()) {
      node.replica().on_persisted(log.make_durable(log.last_seq()), node.mono());
      node.settle();
    }
  }
  ASSERT_EQ(node.replica().raft().role(), consensus::Role::leader);
  for (int i = 0; i < 20; ++i) node.tick();
  EXPECT_FALSE(node.replica().serving());
  EXPECT_EQ(count_kind(log, EntryKind::bootstrap), 0U) << "no decision is made from a state that may be stale";
  EXPECT_FALSE(node.host().incarnation().known());
}

TEST(Replica, OpenSessionAndIngressAtTheLeaderAreAppliedAndAnswered) {
  MemoryLogStore log;
  RecordingService service;
  Driver node(log, service, kWall);
  ASSERT_TRUE(node.elect());
  node.take_outputs();

  auto opened = node.replica().open_session(kClient, node.mono());
  ASSERT_TRUE(opened.has_value());
  node.settle();
  auto outputs = node.take_outputs();
  const auto sessions = only<SessionOpened>(outputs);
  ASSERT_EQ(sessions.size(), 1U);
  EXPECT_EQ(sessions[0].session, opened->value());
  EXPECT_EQ(sessions[0].client, kClient);
  EXPECT_FALSE(sessions[0].resumed);
  const SessionId session = sessions[0].session;

  auto first = node.replica().ingress(session, 1, as_bytes("one"), node.mono());
  auto second = node.replica().ingress(session, 2, as_bytes("two"), node.mono());
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(second.has_value());
  node.settle();
  outputs = node.take_outputs();
  const auto applied = only<Applied>(outputs);
  ASSERT_EQ(applied.size(), 2U);
  EXPECT_EQ(applied[0].seq, 1U);
  EXPECT_EQ(applied[0].position, *first);
  EXPECT_EQ(applied[1].seq, 2U);
  EXPECT_EQ(applied[1].position, *second);
  const auto messages = service.of(Kind::message);
  ASSERT_EQ(messages.size(), 2U);
  EXPECT_EQ(messages[0].message, "one");
  EXPECT_EQ(messages[1].message, "two");

  // Closing it at the leader ends the session.
  ASSERT_TRUE(node.replica().close_session(session, node.mono()).has_value());
  node.settle();
  const auto ended = only<SessionEnded>(node.take_outputs());
  ASSERT_EQ(ended.size(), 1U);
  EXPECT_EQ(ended[0].reason, CloseReason::client_closed);
  EXPECT_EQ(ended[0].last_seq, 2U);
}

// A message above the cluster's limit never enters the log (it could outgrow the frames that replicate it): a
// small marker takes its place and its seq, so the client hears "rejected" and the next seq is no gap.
TEST(Replica, AnOversizedMessageIsReplacedByAMarkerThatConsumesItsSeq) {
  MemoryLogStore log;
  RecordingService service;
  Driver node(log, service, kWall);
  ASSERT_TRUE(node.elect());
  auto opened = node.replica().open_session(kClient, node.mono());
  ASSERT_TRUE(opened.has_value());
  node.settle();
  const SessionId session = only<SessionOpened>(node.take_outputs()).at(0).session;

  const std::vector<std::byte> huge(host::HostLimits{}.max_message_size + 1, std::byte{1});
  const auto refused = node.replica().ingress(session, 1, huge, node.mono());
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(kind_at(log, *refused), EntryKind::ingress_refused);
  EXPECT_LT(log.entry(*refused).payload.size(), 64U);
  ASSERT_TRUE(node.replica().ingress(session, 2, as_bytes("after"), node.mono()).has_value());
  node.settle();
  const auto outputs = node.take_outputs();
  const auto rejected = only<Rejected>(outputs);
  ASSERT_EQ(rejected.size(), 1U);
  EXPECT_EQ(rejected[0].seq, 1U);
  EXPECT_EQ(rejected[0].reason, RejectReason::too_large);
  const auto applied = only<Applied>(outputs);
  ASSERT_EQ(applied.size(), 1U);
  EXPECT_EQ(applied[0].seq, 2U);
  const auto messages = service.of(Kind::message);
  ASSERT_EQ(messages.size(), 1U);
  EXPECT_EQ(messages[0].message, "after");
}

TEST(Replica, AFollowerRefusesClientRequestsWithNotLeader) {
  MemoryLogStore log;
  RecordingService service;
  Driver node(log, service, kWall, /*members=*/3);  // it never hears from the other two
  for (int i = 0; i < 300; ++i) node.tick();
  ASSERT_NE(node.replica().raft().role(), consensus::Role::leader);
  EXPECT_FALSE(node.replica().serving());

  auto open = node.replica().open_session(kClient, node.mono());
  ASSERT_FALSE(open.has_value());
  EXPECT_EQ(open.error(), ClientError::not_leader);
  auto ingress = node.replica().ingress(1, 1, as_bytes("x"), node.mono());
  ASSERT_FALSE(ingress.has_value());
  EXPECT_EQ(ingress.error(), ClientError::not_leader);
  auto close = node.replica().close_session(1, node.mono());
  ASSERT_FALSE(close.has_value());
  EXPECT_EQ(close.error(), ClientError::not_leader);
  EXPECT_EQ(log.last_index(), LogIndex{0});
}

// --- cluster time -----------------------------------------------------------------------------------------------

TEST(Replica, ClusterTimeStartsAtTheWallClockAndThenFollowsTheMonotonicClockOnly) {
  MemoryLogStore log;
  RecordingService service;
  Driver node(log, service, kWall);
  ASSERT_TRUE(node.elect());
  const ClusterTime bootstrap = stamp_at(log, LogIndex{2});
  EXPECT_GE(bootstrap, kWall);
  EXPECT_LE(bootstrap, node.wall());

  const auto first = node.replica().open_session(kClient, node.mono());
  ASSERT_TRUE(first.has_value());
  node.settle();
  const ClusterTime first_stamp = stamp_at(log, *first);
  const Time first_mono = node.mono();
  EXPECT_GE(first_stamp, bootstrap);

  // NTP steps the wall clock back by an hour: cluster time does not follow it.
  node.tick(10ms, -1h);
  node.tick(10ms);
  const SessionId session = first->value();
  const auto second = node.replica().ingress(session, 1, as_bytes("x"), node.mono());
  ASSERT_TRUE(second.has_value());
  node.settle();
  const ClusterTime second_stamp = stamp_at(log, *second);
  EXPECT_GT(second_stamp, first_stamp);
  EXPECT_EQ(second_stamp - first_stamp, node.mono() - first_mono);
  EXPECT_GT(second_stamp, node.wall() + 59min);
  EXPECT_EQ(node.replica().cluster_time(node.mono()), second_stamp);
  EXPECT_EQ(service.of(Kind::message).at(0).cluster_time, second_stamp);

  // A wall clock that jumps forward is not followed either.
  node.tick(10ms, 2h);
  const auto third = node.replica().ingress(session, 2, as_bytes("y"), node.mono());
  ASSERT_TRUE(third.has_value());
  node.settle();
  EXPECT_EQ(stamp_at(log, *third) - second_stamp, 10ms);
}

TEST(Replica, ClusterTimeOfANewLeaderStartsFromTheLastStampInItsLogWhenItsWallClockIsBehind) {
  MemoryLogStore log;
  ClusterTime last_stamp{0};
  {
    RecordingService service;
    Driver node(log, service, kWall);
    ASSERT_TRUE(node.elect());
    for (int i = 0; i < 50; ++i) node.tick();  // half a second of cluster time
    const auto open = node.replica().open_session(kClient, node.mono());
    ASSERT_TRUE(open.has_value());
    node.settle();
    last_stamp = stamp_at(log, *open);
    ASSERT_GE(last_stamp, kWall + 500ms);
  }
  // The node restarts with a wall clock an hour behind and a monotonic clock from zero.
  RecordingService service;
  Driver node(log, service, kWall - 1h);
  ASSERT_TRUE(node.elect());
  EXPECT_GE(node.replica().cluster_time(node.mono()), last_stamp);
  const auto open = node.replica().open_session(Id128{9, 9}, node.mono());
  ASSERT_TRUE(open.has_value());
  node.settle();
  EXPECT_GE(stamp_at(log, *open), last_stamp);
  EXPECT_EQ(node.host().last_stamp(), stamp_at(log, *open));
}

TEST(Replica, ClusterTimeOfANewLeaderStartsFromItsWallClockWhenItIsAheadOfTheLog) {
  MemoryLogStore log;
  {
    RecordingService service;
    Driver node(log, service, kWall);
    ASSERT_TRUE(node.elect());
  }
  RecordingService service;
  Driver node(log, service, kWall + 24h);
  ASSERT_TRUE(node.elect());
  const auto open = node.replica().open_session(kClient, node.mono());
  ASSERT_TRUE(open.has_value());
  node.settle();
  EXPECT_GE(stamp_at(log, *open), kWall + 24h);
  EXPECT_LE(stamp_at(log, *open), node.wall());
}

// --- timers -----------------------------------------------------------------------------------------------------

TEST(Replica, ATimerFiresOnceAfterClusterTimePassesItsDeadlineHoweverOftenTheLeaderTicksMeanwhile) {
  MemoryLogStore log;
  RecordingService service;
  std::optional<ClusterTime> deadline;
  service.on_message_hook = [&](Cluster& cluster, SessionId /*session*/, std::string_view /*message*/) {
    deadline = cluster.time() + 200ms;
    cluster.schedule_timer(7, *deadline);
  };
  Driver node(log, service, kWall);
  ASSERT_TRUE(node.elect());
  const auto open = node.replica().open_session(kClient, node.mono());
  ASSERT_TRUE(open.has_value());
  node.settle();
  ASSERT_TRUE(node.replica().ingress(open->value(), 1, as_bytes("arm"), node.mono()).has_value());
  node.settle();
  ASSERT_TRUE(deadline.has_value());
  EXPECT_EQ(node.host().pending_timers(), 1U);

  // Up to the deadline: no firing.
  while (node.replica().cluster_time(node.mono() + 10ms) < *deadline) node.tick();
  EXPECT_EQ(count_kind(log, EntryKind::timer), 0U);

  // Past it, with storage stalled: the leader ticks many times before its firing can be applied.
  node.durable = false;
  for (int i = 0; i < 50; ++i) node.tick();
  EXPECT_EQ(count_kind(log, EntryKind::timer), 1U) << "a firing in flight is not appended again";
  EXPECT_EQ(service.count(Kind::timer), 0U);

  node.durable = true;
  node.settle();
  for (int i = 0; i < 50; ++i) node.tick();
  const auto timers = service.of(Kind::timer);
  ASSERT_EQ(timers.size(), 1U);
  EXPECT_EQ(timers[0].timer, 7U);
  EXPECT_GE(timers[0].timestamp, *deadline);
  EXPECT_EQ(node.host().pending_timers(), 0U);
  EXPECT_EQ(node.host().timers_fired(), 1U);
}

TEST(Replica, ManyDueTimersFireOnceEachInDeadlineOrderWhenFiringsPerTickAreLimited) {
  MemoryLogStore log;
  RecordingService service;
  service.on_message_hook = [&](Cluster& cluster, SessionId /*session*/, std::string_view /*message*/) {
    for (TimerId id = 1; id <= 5; ++id) cluster.schedule_timer(id, cluster.time() + std::chrono::milliseconds(id));
  };
  ReplicaConfig config = config_of(1);
  config.max_timer_firings_per_tick = 2;
  Replica replica(config, log, service, 99, Time{0}, kWall);
  Time mono{0};
  const auto step = [&]() {
    mono += 10ms;
    replica.tick(mono, kWall + mono);
    for (int round = 0; round < 100; ++round) {
      consensus::Ready ready;
      replica.take_ready(ready);
      if (log.last_seq() == log.durable_seq()) break;
      replica.on_persisted(log.make_durable(log.last_seq()), mono);
    }
  };
  for (int i = 0; i < 300 && !(replica.serving() && replica.host().incarnation().known()); ++i) step();
  ASSERT_TRUE(replica.serving());
  const auto open = replica.open_session(kClient, mono);
  ASSERT_TRUE(open.has_value());
  ASSERT_TRUE(replica.ingress(open->value(), 1, as_bytes("arm"), mono).has_value());
  for (int i = 0; i < 50; ++i) step();
  const auto timers = service.of(Kind::timer);
  ASSERT_EQ(timers.size(), 5U);
  for (TimerId id = 1; id <= 5; ++id) EXPECT_EQ(timers[id - 1].timer, id) << "fired in deadline order";
  EXPECT_EQ(replica.host().pending_timers(), 0U);
}

// --- restart ----------------------------------------------------------------------------------------------------

std::vector<std::byte> kv_put(std::uint64_t id, std::string key, std::string value) {
  services::KvRequest request;
  request.op = services::KvOp::put;
  request.request_id = id;
  request.key = std::move(key);
  request.value = std::move(value);
  auto bytes = services::encode_kv_request(request);
  EXPECT_TRUE(bytes.has_value());
  return bytes.has_value() ? *bytes : std::vector<std::byte>{};
}

std::vector<std::byte> kv_put_with_ttl(std::uint64_t id, std::string key, std::string value, std::uint64_t ttl_ms) {
  services::KvRequest request;
  request.op = services::KvOp::put_with_ttl;
  request.request_id = id;
  request.key = std::move(key);
  request.value = std::move(value);
  request.ttl_ms = ttl_ms;
  auto bytes = services::encode_kv_request(request);
  EXPECT_TRUE(bytes.has_value());
  return bytes.has_value() ? *bytes : std::vector<std::byte>{};
}

TEST(Replica, ARestartedReplicaReplaysItsLogToTheSameStateHash) {
  MemoryLogStore log;
  std::uint64_t hash = 0;
  std::uint64_t kv_hash = 0;
  LogIndex replay_upto;
  Id128 incarnation;
  SessionId session = 0;
  {
    services::KvService kv;
    Driver node(log, kv, kWall);
    ASSERT_TRUE(node.elect());
    const auto open = node.replica().open_session(kClient, node.mono());
    ASSERT_TRUE(open.has_value());
    node.settle();
    session = open->value();
    for (std::uint64_t seq = 1; seq <= 20; ++seq) {
      const auto put = kv_put(seq, "key" + std::to_string(seq % 7), "value" + std::to_string(seq));
      ASSERT_TRUE(node.replica().ingress(session, seq, put, node.mono()).has_value());
      if (seq % 5 == 0) node.tick();
    }
    // A key that expires in an hour: its timer is pending across the restart.
    ASSERT_TRUE(
        node.replica().ingress(session, 21, kv_put_with_ttl(21, "ttl", "v", 3'600'000), node.mono()).has_value());
    node.settle();
    ASSERT_EQ(node.host().last_seq(session), 21U);
    ASSERT_EQ(node.host().pending_timers(), 1U);
    hash = node.host().state_hash();
    replay_upto = node.host().applied_index();
    kv_hash = kv.state_hash();
    incarnation = node.host().incarnation();
  }
  ASSERT_EQ(log.pending_writes(), 0U);

  services::KvService kv;
  Driver node(log, kv, kWall + 1s, 1, Time{5s});
  ASSERT_TRUE(node.elect());
  services::KvService replayed;
  EXPECT_EQ(replayed_hash(log, replayed, replay_upto), hash);
  EXPECT_EQ(kv.state_hash(), kv_hash);
  EXPECT_EQ(node.host().incarnation(), incarnation);
  EXPECT_EQ(node.host().last_seq(session), 21U);
  EXPECT_EQ(kv.get("key3"), "value17");
  EXPECT_EQ(count_kind(log, EntryKind::bootstrap), 1U) << "the incarnation is learnt from the log, not re-made";
}

// A restart from a snapshot: the host restores it (the service's on_start gets its part), Raft knows its index
// committed, and only the entries after it are applied again; the state matches a full replay.
TEST(Replica, ARestartedReplicaRestoresItsSnapshotAndAppliesOnlyTheLogAfterIt) {
  MemoryLogStore log;
  std::vector<std::byte> snapshot;
  LogIndex snapshot_at;
  std::uint64_t hash = 0;
  LogIndex replay_upto;
  {
    RecordingService service;
    Driver node(log, service, kWall);
    ASSERT_TRUE(node.elect());
    const auto open = node.replica().open_session(kClient, node.mono());
    ASSERT_TRUE(open.has_value());
    node.settle();
    for (std::uint64_t seq = 1; seq <= 10; ++seq) {
      ASSERT_TRUE(node.replica().ingress(open->value(), seq, as_bytes(fmt::format("m{}", seq)), node.mono()));
      node.settle();
      if (seq == 6) {
        node.host().write_snapshot(snapshot);
        snapshot_at = node.host().applied_index();
      }
    }
    hash = node.host().state_hash();
    replay_upto = node.host().applied_index();
  }

  RecordingService service;
  Driver node(log, service, kWall + 1s, 1, Time{5s}, ByteSpan(snapshot));
  EXPECT_TRUE(node.replica().snapshot_problem().empty()) << node.replica().snapshot_problem();
  EXPECT_EQ(node.replica().raft().commit_index(), snapshot_at);
  EXPECT_EQ(node.host().applied_index(), snapshot_at);
  node.settle();
  ASSERT_TRUE(node.elect());
  const auto messages = service.of(Kind::message);
  ASSERT_EQ(messages.size(), 4U) << "only the messages after the snapshot are applied again";
  EXPECT_EQ(messages.front().message, "m7");
  RecordingService replayed;
  EXPECT_EQ(replayed_hash(log, replayed, replay_upto), hash);
}

// A snapshot the log does not hold with its term (here: a position past the log's end) is not used: the host
// starts empty, the whole log replays, and the reason is there for the node to log.
TEST(Replica, ASnapshotBeyondTheLogIsNotUsedAndTheWholeLogReplays) {
  MemoryLogStore log;
  std::vector<std::byte> snapshot;
  {
    RecordingService service;
    Driver node(log, service, kWall);
    ASSERT_TRUE(node.elect());
    ASSERT_TRUE(node.replica().open_session(kClient, node.mono()).has_value());
    node.settle();
    node.host().write_snapshot(snapshot);
  }
  MemoryLogStore shorter;
  RecordingService service;
  Driver node(shorter, service, kWall, 1, Time{0}, ByteSpan(snapshot));
  EXPECT_FALSE(node.replica().snapshot_problem().empty());
  EXPECT_EQ(node.host().applied_index(), LogIndex{0});
  EXPECT_EQ(node.replica().raft().commit_index(), LogIndex{0});
  EXPECT_EQ(service.count(Kind::start), 1U);
  EXPECT_TRUE(service.restored_from.empty());
}

// --- a start's log and snapshot (prepare_start) ------------------------------------------------------------------

// A durable log of `last` entries of term 1, compacted up to `base`.
void fill(MemoryLogStore& log, std::uint64_t last, std::uint64_t base) {
  std::vector<consensus::Entry> entries;
  for (std::uint64_t i = 1; i <= last; ++i) {
    consensus::Entry entry;
    entry.index = LogIndex{i};
    entry.term = Term{1};
    entries.push_back(entry);
  }
  (void)log.save_hard_state(consensus::HardState{Term{1}, NodeId{1}, consensus::Standing::member});
  (void)log.append(entries);
  (void)log.compact(LogIndex{base});
  (void)log.make_durable(log.last_seq());
}

TEST(PrepareStart, ASnapshotTheLogHoldsIsRestoredAndNothingIsWritten) {
  MemoryLogStore log;
  fill(log, 10, 4);
  const auto seq = log.last_seq();
  EXPECT_EQ(prepare_start(log, consensus::LogBase{LogIndex{7}, Term{1}}), StartPath::restore);
  EXPECT_EQ(prepare_start(log, consensus::LogBase{LogIndex{4}, Term{1}}), StartPath::restore) << "at the base";
  EXPECT_EQ(log.last_seq(), seq);
}

// A crash lost the log's unsynced tail, which the node had applied and snapshotted: the log restarts at the snapshot,
// and the node keeps its standing (it forgot nothing it acknowledged).
TEST(PrepareStart, ASnapshotBeyondTheLogsEndIsAdoptedAsAnInstallWould) {
  for (const std::uint64_t base : {0U, 3U}) {
    MemoryLogStore log;
    fill(log, 6, base);
    EXPECT_EQ(prepare_start(log, consensus::LogBase{LogIndex{9}, Term{2}}), StartPath::adopt);
    EXPECT_EQ(log.base(), (consensus::LogBase{LogIndex{9}, Term{2}}));
    EXPECT_EQ(log.last_index(), LogIndex{9});
    EXPECT_EQ(log.hard_state().standing, consensus::Standing::member);
    // Its term catches up with the snapshot's (never behind the log's last), with no vote cast in it.
    EXPECT_EQ(log.hard_state().term, Term{2});
    EXPECT_EQ(log.hard_state().voted_for, std::nullopt);
  }
  // A term already past the snapshot's stays, vote and all.
  MemoryLogStore log;
  fill(log, 6, 0);
  (void)log.save_hard_state(consensus::HardState{Term{5}, NodeId{2}, consensus::Standing::member});
  EXPECT_EQ(prepare_start(log, consensus::LogBase{LogIndex{9}, Term{2}}), StartPath::adopt);
  EXPECT_EQ(log.hard_state(), (consensus::HardState{Term{5}, NodeId{2}, consensus::Standing::member}));
}

TEST(PrepareStart, WithoutAUsableSnapshotALogFromIndexOneReplaysWhole) {
  MemoryLogStore log;
  fill(log, 6, 0);
  const auto seq = log.last_seq();
  EXPECT_EQ(prepare_start(log, std::nullopt), StartPath::replay);
  EXPECT_EQ(prepare_start(log, consensus::LogBase{LogIndex{5}, Term{2}}), StartPath::replay) << "another term";
  EXPECT_EQ(log.last_seq(), seq);
}

// Nothing stands for the entries up to the base: the node empties its log and repairs as a recovering node. The
// standing is written before the reset, so a crash that keeps only the first write never leaves a member with an
// empty log.
TEST(PrepareStart, ABaseNoSnapshotCoversIsRepairedRecoveringFirstThenAnEmptyLog) {
  const std::optional<consensus::LogBase> snapshots[] = {
      std::nullopt,                              // none at all
      consensus::LogBase{LogIndex{3}, Term{1}},  // below the base: the entries between are gone
      consensus::LogBase{LogIndex{6}, Term{2}},  // the log holds its index with another term
  };
  for (const auto& snapshot : snapshots) {
    MemoryLogStore log;
    fill(log, 8, 4);
    EXPECT_EQ(prepare_start(log, snapshot), StartPath::repair);
    EXPECT_EQ(log.base(), consensus::LogBase{});
    EXPECT_EQ(log.last_index(), LogIndex{0});
    EXPECT_EQ(log.hard_state(), (consensus::HardState{Term{1}, NodeId{1}, consensus::Standing::recovering}));
    (void)log.crash(1);
    EXPECT_EQ(log.base().index, LogIndex{4}) << "only the first write reached the disk";
    EXPECT_EQ(log.hard_state().standing, consensus::Standing::recovering);
  }
}

// --- entries a replica cannot apply -------------------------------------------------------------------------------

// The leader appends raw bytes as a command, as a bug (or a build of another version) would: they are committed
// and replicated like any entry.
LogIndex append_raw(Driver& node, const std::vector<std::byte>& payload) {
  auto index = node.replica().raft().propose(EntryType::command, payload, node.mono());
  EXPECT_TRUE(index.has_value());
  node.settle();
  return index.has_value() ? *index : LogIndex{0};
}

// A throwing service for the replica tests: a message "throw" makes on_message throw after recording the call.
void throw_on_request(RecordingService& service) {
  service.on_message_hook = [](Cluster& /*cluster*/, SessionId /*session*/, std::string_view message) {
    if (message == "throw") throw std::runtime_error("asked to");
  };
}

TEST(Replica, ACommittedEntryThatDoesNotDecodeIsSkippedAndTheReplicaKeepsServingAndReplaysItAlike) {
  MemoryLogStore log;
  std::uint64_t hash = 0;
  LogIndex replay_upto;
  LogIndex bad;
  SessionId session = 0;
  {
    RecordingService service;
    Driver node(log, service, kWall);
    ASSERT_TRUE(node.elect());
    const auto open = node.replica().open_session(kClient, node.mono());
    ASSERT_TRUE(open.has_value());
    node.settle();
    session = open->value();
    bad = append_raw(node, std::vector<std::byte>(20, std::byte{0xEE}));
    ASSERT_GE(node.host().applied_index(), bad);
    EXPECT_EQ(node.replica().entry_faults(), (EntryFaultCounts{1, 0, 0}));
    ASSERT_TRUE(node.replica().last_entry_fault().has_value());
    EXPECT_EQ(node.replica().last_entry_fault()->index, bad);
    EXPECT_EQ(node.replica().last_entry_fault()->fault, EntryFault::undecodable);
    ASSERT_EQ(node.host().fault_reports().size(), 1U);
    node.host().fault_reports().clear();

    node.take_outputs();
    const auto next = node.replica().ingress(session, 1, as_bytes("after"), node.mono());
    ASSERT_TRUE(next.has_value());
    node.settle();
    const auto applied = only<Applied>(node.take_outputs());
    ASSERT_EQ(applied.size(), 1U);
    EXPECT_EQ(applied[0].position, *next);
    EXPECT_TRUE(node.replica().serving());
    hash = node.host().state_hash();
    replay_upto = node.host().applied_index();
  }
  // Every replay meets it again at the same index, and skips it again: no crash loop, the same state.
  RecordingService service;
  Driver node(log, service, kWall + 1s, 1, Time{5s});
  ASSERT_TRUE(node.elect());
  EXPECT_EQ(node.replica().entry_faults(), (EntryFaultCounts{1, 0, 0}));
  EXPECT_EQ(node.replica().last_entry_fault()->index, bad);
  EXPECT_EQ(node.host().last_seq(session), 1U);
  RecordingService replayed;
  EXPECT_EQ(replayed_hash(log, replayed, replay_upto), hash);
}

TEST(Replica, AServiceThatThrowsDoesNotTakeTheReplicaDownAndReplaysToTheSameCountsAndHash) {
  MemoryLogStore log;
  std::uint64_t hash = 0;
  LogIndex replay_upto;
  LogIndex threw;
  {
    RecordingService service;
    throw_on_request(service);
    Driver node(log, service, kWall);
    ASSERT_TRUE(node.elect());
    const auto open = node.replica().open_session(kClient, node.mono());
    ASSERT_TRUE(open.has_value());
    node.settle();
    const SessionId session = open->value();
    node.take_outputs();
    const auto first = node.replica().ingress(session, 1, as_bytes("throw"), node.mono());
    const auto second = node.replica().ingress(session, 2, as_bytes("fine"), node.mono());
    ASSERT_TRUE(first.has_value());
    ASSERT_TRUE(second.has_value());
    threw = *first;
    node.settle();
    const auto applied = only<Applied>(node.take_outputs());
    ASSERT_EQ(applied.size(), 2U);
    EXPECT_EQ(applied[0].position, *first);
    EXPECT_EQ(applied[1].position, *second);
    EXPECT_EQ(node.replica().entry_faults(), (EntryFaultCounts{0, 0, 1}));
    EXPECT_EQ(node.replica().last_entry_fault()->index, threw);
    EXPECT_EQ(node.replica().last_entry_fault()->detail, "Service::on_message threw: asked to");
    hash = node.host().state_hash();
    replay_upto = node.host().applied_index();
  }
  RecordingService service;
  throw_on_request(service);
  Driver node(log, service, kWall + 1s, 1, Time{5s});
  ASSERT_TRUE(node.elect());
  EXPECT_EQ(node.replica().entry_faults(), (EntryFaultCounts{0, 0, 1}));
  EXPECT_EQ(node.replica().last_entry_fault()->index, threw);
  RecordingService replayed;
  throw_on_request(replayed);
  EXPECT_EQ(replayed_hash(log, replayed, replay_upto), hash);
}

// An entry stamped ahead of the leader's clock is no fault itself (the host applies it as written), but the
// leader's own next entries would then go back, each a fault of its own. Its clock moves up instead.
TEST(Replica, AnEntryStampedAheadOfTheLeadersClockMovesTheClockSoItsNextEntriesDoNotGoBack) {
  MemoryLogStore log;
  RecordingService service;
  Driver node(log, service, kWall);
  ASSERT_TRUE(node.elect());
  std::vector<std::byte> ahead;
  const ClusterTime future = node.wall() + 1h;
  encode_session_open(ahead, future, Id128{7, 7});
  append_raw(node, ahead);
  ASSERT_EQ(node.host().last_stamp(), future);
  EXPECT_EQ(node.replica().cluster_time(node.mono()), future);

  const auto open = node.replica().open_session(kClient, node.mono());
  ASSERT_TRUE(open.has_value());
  node.settle();
  EXPECT_GE(stamp_at(log, *open), future);
  node.tick();
  const auto later = node.replica().ingress(open->value(), 1, as_bytes("x"), node.mono());
  ASSERT_TRUE(later.has_value());
  node.settle();
  EXPECT_EQ(stamp_at(log, *later), future + 10ms) << "and moves on from there with the monotonic clock";
  EXPECT_EQ(node.replica().entry_faults().total(), 0U);

  // One stamped behind is applied at the last stamp and counted; the leader's next entry is no fault.
  std::vector<std::byte> behind;
  encode_session_open(behind, kWall, Id128{8, 8});
  const LogIndex back = append_raw(node, behind);
  EXPECT_EQ(node.replica().entry_faults(), (EntryFaultCounts{0, 1, 0}));
  EXPECT_EQ(node.replica().last_entry_fault()->index, back);
  EXPECT_EQ(node.host().last_stamp(), future + 10ms);
  ASSERT_TRUE(node.replica().open_session(Id128{9, 9}, node.mono()).has_value());
  node.settle();
  EXPECT_EQ(node.replica().entry_faults().total(), 1U);
}

TEST(ClusterClock, SaturatesAtTheEndOfTimeInsteadOfOverflowing) {
  ClusterClock clock;
  clock.lead(ClusterTime::max() - 1s, ClusterTime{0}, Time{10s});
  EXPECT_EQ(clock.now(Time{10s}), ClusterTime::max() - 1s);
  EXPECT_EQ(clock.now(Time{11s}), ClusterTime::max());
  EXPECT_EQ(clock.now(Time{1h}), ClusterTime::max());
}

TEST(Replica, ClusterTimeStampedAtTheEndOfTimeStaysThereInsteadOfOverflowing) {
  MemoryLogStore log;
  RecordingService service;
  Driver node(log, service, kWall);
  ASSERT_TRUE(node.elect());
  std::vector<std::byte> last;
  encode_session_open(last, ClusterTime::max(), Id128{7, 7});
  append_raw(node, last);
  node.tick();
  const auto open = node.replica().open_session(kClient, node.mono());
  ASSERT_TRUE(open.has_value());
  node.settle();
  EXPECT_EQ(stamp_at(log, *open), ClusterTime::max());
  EXPECT_EQ(node.replica().cluster_time(node.mono() + 1h), ClusterTime::max());
  EXPECT_EQ(node.replica().entry_faults().total(), 0U);
}

// --- sessions: activity and expiry ------------------------------------------------------------------------------

TEST(ReplicaExpiry, TheLeaderClosesASessionIdleForTheTimeoutOnceAndKeepsOneItHearsFrom) {
  MemoryLogStore log;
  RecordingService service;
  Driver node(log, service, kWall);
  ASSERT_TRUE(node.elect());
  const auto open_one = [&](Id128 client) {
    EXPECT_TRUE(node.replica().open_session(client, node.mono()).has_value());
    node.settle();
    const auto opened = only<SessionOpened>(node.take_outputs());
    return opened.empty() ? SessionId{0} : opened.at(0).session;
  };
  const SessionId idle = open_one(kClient);
  const SessionId alive = open_one(Id128{0xC0FFEE, 2});
  ASSERT_NE(idle, 0U);
  ASSERT_NE(alive, 0U);

  // 9.5 s: nothing expires yet. The leader heard from `alive` (its gateway notes it, at most once a second).
  for (int i = 0; i < 19; ++i) {
    node.tick(500ms);
    const SessionId sessions[] = {alive};
    ASSERT_TRUE(node.replica().note_activity(sessions, node.mono()).has_value());
    node.settle();
  }
  EXPECT_TRUE(node.host().session_open(idle));
  std::vector<SessionEnded> ended;
  for (int i = 0; i < 4; ++i) {
    node.tick(500ms);
    for (const SessionEnded& end : only<SessionEnded>(node.take_outputs())) ended.push_back(end);
  }
  ASSERT_EQ(ended.size(), 1U);
  EXPECT_EQ(ended[0].session, idle);
  EXPECT_EQ(ended[0].reason, CloseReason::timeout);
  EXPECT_TRUE(node.host().session_open(alive)) << "its activity entries kept it";
  EXPECT_EQ(count_kind(log, EntryKind::session_close), 1U) << "decided once, not every tick";
  ASSERT_EQ(service.of(Kind::session_close).size(), 1U);
  EXPECT_EQ(service.of(Kind::session_close).at(0).reason, CloseReason::timeout);
}

TEST(ReplicaExpiry, NoteActivitySplitsALongListIntoEntriesOfAtMostTheMaximum) {
  MemoryLogStore log;
  RecordingService service;
  Driver node(log, service, kWall);
  ASSERT_TRUE(node.elect());
  const std::size_t before = count_kind(log, EntryKind::activity);
  std::vector<SessionId> sessions(kMaxActivitySessions + 5);
  for (std::size_t i = 0; i < sessions.size(); ++i) sessions[i] = 1000 + i;
  ASSERT_TRUE(node.replica().note_activity(sessions, node.mono()).has_value());
  node.settle();
  EXPECT_EQ(count_kind(log, EntryKind::activity), before + 2);
}

}  // namespace
}  // namespace cohort::host

// Compaction and install snapshot in the consensus core: a leader sends its snapshot to a follower that needs
// entries before its log's first, in chunks paced by the follower's acknowledgements, resumable after a drop; the
// follower installs it through its SnapshotInstaller and the log after it follows. A small in-process cluster
// with instant storage and a filter on every message; the state machine is the list of applied payloads.

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "consensus/memory_log.h"
#include "consensus/raft.h"
#include "raft_cluster_config.h"

namespace cohort::consensus {
namespace {

using namespace std::chrono_literals;

// The replicated state: every command payload applied, in order. Its snapshot is the applied position followed by
// the payloads, length-prefixed.
struct Applied final : SnapshotInstaller {
  LogIndex index;
  Term term;
  std::vector<std::string> payloads;
  int restores = 0;
  bool refuse = false;

  std::vector<std::byte> encode() const {
    std::vector<std::byte> out;
    const auto put = [&](std::uint64_t value) {
      for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(value >> (8 * i)));
    };
    put(index.value());
    put(term.value());
    for (const auto& payload : payloads) {
      put(payload.size());
      for (const char c : payload) out.push_back(static_cast<std::byte>(c));
    }
    return out;
  }

  std::string restore(const Snapshot& snapshot) override {
    if (refuse) return "refused by the test";
    const auto& bytes = snapshot.bytes;
    std::size_t at = 0;
    const auto get = [&] {
      std::uint64_t value = 0;
      for (int i = 0; i < 8; ++i)
        value |= std::to_integer<std::uint64_t>(bytes[at + static_cast<std::size_t>(i)]) << (8 * i);
      at += 8;
      return value;
    };
    index = LogIndex{get()};
    term = Term{get()};
    payloads.clear();
    while (at < bytes.size()) {
      const std::uint64_t size = get();
      payloads.emplace_back(reinterpret_cast<const char*>(bytes.data() + at), size);
      at += size;
    }
    ++restores;
    return {};
  }
};

class SnapshotCluster {
 public:
  explicit SnapshotCluster(std::size_t size) {
    for (std::uint32_t member = 1; member <= size; ++member) {
      const NodeId id{member};
      Config config = cluster_config(id, size, true, true);
      config.snapshot_chunk_bytes = 64;  // many chunks for a small snapshot
      config.max_inflight_snapshot_chunks = 2;
      auto& node = nodes_[id];
      node.log = std::make_unique<MemoryLogStore>();
      node.raft = std::make_unique<Raft>(config, *node.log, id.value() * 7919, now_);
      node.raft->set_installer(&node.state);
    }
  }

  Raft& raft(std::uint32_t id) { return *node(id).raft; }
  MemoryLogStore& log(std::uint32_t id) { return *node(id).log; }
  Applied& state(std::uint32_t id) { return node(id).state; }
  int installs(std::uint32_t id) { return node(id).installs; }

  /// Every message passes here first: return false to drop it (it may also be changed).
  std::function<bool(Message&)> filter = [](Message&) { return true; };

  void run_for(Duration duration) {
    const Time end = now_ + duration;
    while (now_ < end) {
      now_ += 10ms;
      for (auto& [id, node] : nodes_) node.raft->tick(now_);
      settle();
    }
  }

  void settle() {
    for (int round = 0; round < 10000; ++round) {
      std::vector<Outgoing> flying;
      for (auto& [id, node] : nodes_) {
        Ready ready;
        node.raft->take_ready(ready);
        if (ready.installed != nullptr) ++node.installs;
        if (node.log->last_seq() > node.log->durable_seq())
          node.raft->on_persisted(node.log->make_durable(node.log->last_seq()), now_);
        apply(node, ready.commit);
        for (auto& out : ready.messages) flying.push_back(std::move(out));
      }
      if (flying.empty()) return;
      for (auto& out : flying) {
        if (!filter(out.message)) continue;
        nodes_.at(out.message.to).raft->step(out.message, now_);
      }
      std::vector<Message> late;
      late.swap(later_);
      for (const Message& message : late) nodes_.at(message.to).raft->step(message, now_);
    }
    FAIL() << "messages kept flowing";
  }

  /// Hands `message` to its addressee now (bypassing the filter), then settles.
  /// Delivers `message` after the ones of the current round (a filter holding a message back and letting a later
  /// one overtake it).
  void deliver_later(const Message& message) { later_.push_back(message); }

  void deliver(const Message& message) {
    nodes_.at(message.to).raft->step(message, now_);
    settle();
  }

  std::uint32_t leader() {
    for (auto& [id, node] : nodes_)
      if (node.raft->role() == Role::leader) return id.value();
    ADD_FAILURE() << "no leader";
    return 0;
  }

  void propose(std::uint32_t at, int count) {
    for (int i = 0; i < count; ++i) {
      ASSERT_TRUE(raft(at).propose(EntryType::command, as_bytes("entry " + std::to_string(next_++)), now_).has_value());
      settle();
    }
  }

  /// `id` snapshots what it applied, offers it, and compacts its log up to `compact_to` (default: the snapshot).
  SnapshotPtr snapshot_and_compact(std::uint32_t id, std::optional<LogIndex> compact_to = std::nullopt) {
    Node& n = node(id);
    auto snapshot = std::make_shared<Snapshot>();
    snapshot->position = LogBase{n.state.index, n.state.term};
    snapshot->bytes = n.state.encode();
    snapshot->checksum = snapshot_checksum(snapshot->bytes);
    n.raft->offer_snapshot(snapshot);
    n.raft->compact(compact_to.value_or(n.state.index));
    settle();
    return snapshot;
  }

 private:
  struct Node {
    std::unique_ptr<MemoryLogStore> log;
    std::unique_ptr<Raft> raft;
    Applied state;
    int installs = 0;
  };

  Node& node(std::uint32_t id) { return nodes_.at(NodeId{id}); }

  static void apply(Node& node, LogIndex commit) {
    while (node.state.index < commit) {
      const Entry& entry = node.log->entry(node.state.index.next());
      if (entry.type == EntryType::command)
        node.state.payloads.emplace_back(reinterpret_cast<const char*>(entry.payload.data()), entry.payload.size());
      node.state.index = entry.index;
      node.state.term = entry.term;
    }
  }

  std::map<NodeId, Node> nodes_;
  std::vector<Message> later_;
  Time now_{0};
  int next_ = 0;
};

std::uint32_t other_than(std::uint32_t a, std::uint32_t b = 0) {
  for (std::uint32_t id = 1;; ++id)
    if (id != a && id != b) return id;
}

// Cuts `follower` off, writes `count` entries, and has the leader snapshot and compact everything it applied.
struct Lagging {
  std::uint32_t leader;
  std::uint32_t follower;
  SnapshotPtr snapshot;
};
Lagging lag_behind_a_compaction(SnapshotCluster& cluster, int count) {
  cluster.run_for(1100ms);
  Lagging out{cluster.leader(), 0, nullptr};
  out.follower = other_than(out.leader);
  cluster.propose(out.leader, 3);
  cluster.run_for(100ms);
  const NodeId follower{out.follower};
  cluster.filter = [follower](Message& m) { return m.to != follower && m.from != follower; };
  cluster.propose(out.leader, count);
  out.snapshot = cluster.snapshot_and_compact(out.leader);
  return out;
}

TEST(RaftSnapshot, AFollowerNeedingTheEntryAtTheBaseGetsTheSnapshotAndThenTheLogAfterIt) {
  SnapshotCluster cluster(3);
  const Lagging lag = lag_behind_a_compaction(cluster, 20);
  cluster.propose(lag.leader, 5);  // the log after the snapshot
  cluster.filter = [](Message&) { return true; };
  cluster.run_for(500ms);
  EXPECT_EQ(cluster.installs(lag.follower), 1);
  EXPECT_EQ(cluster.log(lag.follower).base(), lag.snapshot->position);
  EXPECT_EQ(cluster.log(lag.follower).last_index(), cluster.log(lag.leader).last_index());
  EXPECT_EQ(cluster.state(lag.follower).payloads, cluster.state(lag.leader).payloads);
  EXPECT_EQ(cluster.raft(lag.follower).commit_index(), cluster.raft(lag.leader).commit_index());
  // The install is durable with the reset: a restart would find it.
  ASSERT_NE(cluster.log(lag.follower).durable_snapshot(), nullptr);
  EXPECT_EQ(cluster.log(lag.follower).durable_snapshot()->position, lag.snapshot->position);
}

TEST(RaftSnapshot, CompactionBoundaries) {
  // A follower whose log ends at the base needs base + 1, the log's first entry: it gets appends. One whose log
  // ends at base - 1 needs the entry at the base, which is gone (first - 1): it gets the snapshot.
  for (const std::int64_t behind : {0, 1}) {
    SnapshotCluster cluster(3);
    cluster.run_for(1100ms);
    const std::uint32_t leader = cluster.leader();
    const std::uint32_t follower = other_than(leader);
    cluster.propose(leader, 10);
    cluster.run_for(100ms);
    const LogIndex follower_end = cluster.log(follower).last_index();
    const NodeId cut{follower};
    cluster.filter = [cut](Message& m) { return m.to != cut && m.from != cut; };
    cluster.propose(leader, 10);
    const auto base = LogIndex{follower_end.value() + static_cast<std::uint64_t>(behind)};
    cluster.snapshot_and_compact(leader, base);
    ASSERT_EQ(cluster.log(leader).base().index, base);
    cluster.filter = [](Message&) { return true; };
    cluster.run_for(500ms);
    EXPECT_EQ(cluster.installs(follower), behind == 0 ? 0 : 1) << "behind " << behind;
    EXPECT_EQ(cluster.log(follower).last_index(), cluster.log(leader).last_index()) << "behind " << behind;
    EXPECT_EQ(cluster.state(follower).payloads, cluster.state(leader).payloads) << "behind " << behind;
  }
}

TEST(RaftSnapshot, AnInstallCutOffPartWayResumesWhereItStopped) {
  SnapshotCluster cluster(3);
  const Lagging lag = lag_behind_a_compaction(cluster, 40);
  const std::uint64_t size = lag.snapshot->bytes.size();
  ASSERT_GT(size, 64U * 8);
  // Deliver about half the snapshot, then drop everything between the two for a while (a connection drop).
  std::uint64_t delivered = 0;
  std::vector<std::uint64_t> offsets;
  const NodeId follower{lag.follower};
  bool cut = false;
  cluster.filter = [&](Message& m) {
    if (m.to != follower && m.from != follower) return true;
    if (cut) return false;
    if (auto* chunk = std::get_if<SnapshotChunk>(&m.body)) {
      if (delivered + chunk->data.size() > size / 2) {
        cut = true;
        return false;
      }
      delivered += chunk->data.size();
    }
    return true;
  };
  cluster.run_for(300ms);
  ASSERT_TRUE(cut);
  ASSERT_EQ(cluster.installs(lag.follower), 0);
  const std::uint64_t before = delivered;
  cluster.filter = [&](Message& m) {
    if (auto* chunk = std::get_if<SnapshotChunk>(&m.body); chunk != nullptr && m.to == follower && !chunk->data.empty())
      offsets.push_back(chunk->offset);
    return true;
  };
  cluster.run_for(1s);
  EXPECT_EQ(cluster.installs(lag.follower), 1);
  ASSERT_FALSE(offsets.empty());
  // The first chunk after the drop starts where the follower stopped, not at 0.
  EXPECT_EQ(offsets.front(), before);
  EXPECT_EQ(cluster.state(lag.follower).payloads, cluster.state(lag.leader).payloads);
}

TEST(RaftSnapshot, ANewLeaderWithTheSameSnapshotResumesTheInstallOfTheOldOne) {
  SnapshotCluster cluster(3);
  const Lagging lag = lag_behind_a_compaction(cluster, 40);
  const std::uint32_t other = other_than(lag.leader, lag.follower);
  // The other follower takes the same snapshot (same state at the same position: the same bytes).
  cluster.run_for(100ms);
  const SnapshotPtr same = cluster.snapshot_and_compact(other, lag.snapshot->position.index);
  ASSERT_EQ(same->checksum, lag.snapshot->checksum);
  const NodeId follower{lag.follower};
  const NodeId old_leader{lag.leader};
  std::uint64_t delivered = 0;
  cluster.filter = [&](Message& m) {
    if (auto* chunk = std::get_if<SnapshotChunk>(&m.body); chunk != nullptr && m.to == follower) {
      if (delivered >= lag.snapshot->bytes.size() / 2) return false;
      delivered += chunk->data.size();
    }
    return true;
  };
  cluster.run_for(200ms);
  ASSERT_GT(delivered, 0U);
  ASSERT_EQ(cluster.installs(lag.follower), 0);
  // The old leader goes; the other node is elected and resumes from what the follower holds.
  std::vector<std::uint64_t> offsets;
  cluster.filter = [&](Message& m) {
    if (m.from == old_leader || m.to == old_leader) return false;
    if (auto* chunk = std::get_if<SnapshotChunk>(&m.body); chunk != nullptr && !chunk->data.empty())
      offsets.push_back(chunk->offset);
    return true;
  };
  cluster.run_for(3s);
  ASSERT_EQ(cluster.leader(), other);
  EXPECT_EQ(cluster.installs(lag.follower), 1);
  ASSERT_FALSE(offsets.empty());
  EXPECT_EQ(offsets.front(), delivered);
  EXPECT_EQ(cluster.state(lag.follower).payloads, cluster.state(other).payloads);
}

// Acknowledgements overtake one another on the way: one below what the leader holds acknowledged already is stale
// (the follower goes back only to 0, when it drops what it had). Taking it for a drop sent the window again, every
// chunk of which the follower acknowledged again, some of those overtaken in turn: in the simulator (seed 5394, 64-byte
// chunks, delays up to 18 ms) 137,000 chunks in one simulated second for a 20 KiB snapshot.
TEST(RaftSnapshot, AnAcknowledgementOvertakenByALaterOneIsStaleNotADrop) {
  SnapshotCluster cluster(3);
  const Lagging lag = lag_behind_a_compaction(cluster, 40);
  const std::uint64_t size = lag.snapshot->bytes.size();
  ASSERT_GT(size, 64U * 8);
  const NodeId follower{lag.follower};
  std::optional<Message> held;
  int dropped = 0;
  std::vector<std::uint64_t> sent_after;
  cluster.filter = [&](Message& m) {
    if (m.to != follower && m.from != follower) return true;
    if (const auto* ack = std::get_if<SnapshotAck>(&m.body); ack != nullptr && ack->received == 64 && !held) {
      held = m;  // overtaken by every acknowledgement after it
      return false;
    }
    if (const auto* chunk = std::get_if<SnapshotChunk>(&m.body); chunk != nullptr && !chunk->data.empty()) {
      sent_after.push_back(chunk->offset);
      // Past half the snapshot, chunks are lost: the leader waits with its window full.
      if (chunk->offset >= size / 2) {
        ++dropped;
        return false;
      }
    }
    return true;
  };
  for (int i = 0; i < 100 && dropped == 0; ++i) cluster.run_for(10ms);
  ASSERT_TRUE(held.has_value());
  ASSERT_GT(dropped, 0);
  sent_after.clear();
  cluster.deliver(*held);
  EXPECT_TRUE(sent_after.empty()) << "the stale acknowledgement sent " << sent_after.size()
                                  << " chunks again, from offset " << sent_after.front();
  // The loss is resent once rounds pass without progress, and the install completes.
  cluster.filter = [](Message&) { return true; };
  cluster.run_for(1s);
  EXPECT_EQ(cluster.installs(lag.follower), 1);
  EXPECT_EQ(cluster.state(lag.follower).payloads, cluster.state(lag.leader).payloads);
}

// An acknowledgement of 0 is the follower dropping what it had (here: another snapshot replaced it): the leader sends
// the snapshot again from the start.
TEST(RaftSnapshot, AnAcknowledgementOfNothingSendsTheSnapshotAgainFromTheStart) {
  SnapshotCluster cluster(3);
  const Lagging lag = lag_behind_a_compaction(cluster, 40);
  const NodeId follower{lag.follower};
  std::vector<std::uint64_t> offsets;
  bool cut = false;
  cluster.filter = [&](Message& m) {
    if (m.to != follower && m.from != follower) return true;
    if (const auto* chunk = std::get_if<SnapshotChunk>(&m.body); chunk != nullptr && !chunk->data.empty()) {
      if (chunk->offset >= 64 * 4) cut = true;
      if (cut) offsets.push_back(chunk->offset);
      return !cut;
    }
    return true;
  };
  for (int i = 0; i < 100 && !cut; ++i) cluster.run_for(10ms);
  ASSERT_TRUE(cut);
  offsets.clear();
  Message reset;
  reset.from = follower;
  reset.to = NodeId{lag.leader};
  reset.term = cluster.raft(lag.leader).term();
  reset.boot = cluster.raft(lag.follower).boot();
  reset.body = SnapshotAck{lag.snapshot->position, lag.snapshot->checksum, 0};
  cluster.deliver(reset);
  ASSERT_FALSE(offsets.empty());
  EXPECT_EQ(offsets.front(), 0U);
}

TEST(RaftSnapshot, AChunkLostOnTheWayIsSentAgainAtOnceNotAfterRoundsOfSilence) {
  SnapshotCluster cluster(3);
  const Lagging lag = lag_behind_a_compaction(cluster, 40);
  int data_chunks = 0;
  const NodeId follower{lag.follower};
  cluster.filter = [&](Message& m) {
    if (auto* chunk = std::get_if<SnapshotChunk>(&m.body); chunk != nullptr && m.to == follower && !chunk->data.empty())
      return ++data_chunks != 3;  // the third is lost
    return true;
  };
  // Well within the three heartbeat rounds (150 ms) after which a silent install is probed again.
  cluster.run_for(60ms);
  EXPECT_GT(data_chunks, 3);
  EXPECT_EQ(cluster.installs(lag.follower), 1);
}

TEST(RaftSnapshot, ChunksThatOvertakeOneAnotherAreKeptUntilTheOnesBeforeThemArrive) {
  SnapshotCluster cluster(3);
  const Lagging lag = lag_behind_a_compaction(cluster, 40);
  const NodeId follower{lag.follower};
  // Every data chunk is held back until the next one has passed it: each pair arrives in reverse order.
  std::optional<Message> held;
  std::uint64_t largest_step = 0;  // the most the follower's holding grew by at once
  std::uint64_t held_before = 0;
  cluster.filter = [&](Message& m) {
    if (const auto* ack = std::get_if<SnapshotAck>(&m.body); ack != nullptr && m.from == follower) {
      if (ack->received > held_before) largest_step = std::max(largest_step, ack->received - held_before);
      held_before = std::max(held_before, ack->received);
      return true;
    }
    auto* chunk = std::get_if<SnapshotChunk>(&m.body);
    if (chunk == nullptr || m.to != follower || chunk->data.empty()) return true;
    if (!held) {
      held = m;
      return false;
    }
    cluster.deliver_later(*held);
    held.reset();
    return true;
  };
  cluster.run_for(500ms);
  EXPECT_EQ(cluster.installs(lag.follower), 1);
  // The early chunk was kept: the late one before it brought both in (two chunks of 64 bytes at once).
  EXPECT_GE(largest_step, 128U);
  EXPECT_EQ(cluster.state(lag.follower).payloads, cluster.state(lag.leader).payloads);
}

TEST(RaftSnapshot, ADamagedChunkIsCaughtByTheChecksumAndTheSnapshotSentAgain) {
  SnapshotCluster cluster(3);
  const Lagging lag = lag_behind_a_compaction(cluster, 20);
  bool damaged = false;
  cluster.filter = [&](Message& m) {
    if (auto* chunk = std::get_if<SnapshotChunk>(&m.body); chunk != nullptr && !damaged && !chunk->data.empty()) {
      chunk->data[0] ^= std::byte{1};
      damaged = true;
    }
    return true;
  };
  cluster.run_for(1s);
  ASSERT_TRUE(damaged);
  EXPECT_EQ(cluster.installs(lag.follower), 1);
  EXPECT_EQ(cluster.state(lag.follower).payloads, cluster.state(lag.leader).payloads);
}

TEST(RaftSnapshot, AFollowerThatCannotRestoreTheSnapshotKeepsItsLogAndAcknowledgesNothing) {
  SnapshotCluster cluster(3);
  const Lagging lag = lag_behind_a_compaction(cluster, 20);
  const LogIndex before = cluster.log(lag.follower).last_index();
  cluster.state(lag.follower).refuse = true;
  cluster.filter = [](Message&) { return true; };
  cluster.run_for(300ms);
  EXPECT_EQ(cluster.installs(lag.follower), 0);
  EXPECT_EQ(cluster.log(lag.follower).last_index(), before);
  EXPECT_EQ(cluster.log(lag.follower).base().index, LogIndex{0});
  // Once it can, it does.
  cluster.state(lag.follower).refuse = false;
  cluster.run_for(500ms);
  EXPECT_EQ(cluster.installs(lag.follower), 1);
}

TEST(RaftSnapshot, AFollowerWhoseLogHoldsThePositionCommitsInsteadOfResetting) {
  SnapshotCluster cluster(3);
  cluster.run_for(1100ms);
  const std::uint32_t leader = cluster.leader();
  const std::uint32_t follower = other_than(leader);
  cluster.propose(leader, 10);
  // The follower has every entry but learns no commit index beyond the first ones (heartbeats dropped).
  const NodeId to{follower};
  cluster.filter = [to](Message& m) { return m.to != to || !std::holds_alternative<Heartbeat>(m.body); };
  const SnapshotPtr snapshot = cluster.snapshot_and_compact(leader);
  ASSERT_EQ(cluster.log(follower).last_index(), snapshot->position.index);
  // A snapshot sent anyway (the leader's picture of the follower was reset, say) finds the position in its log.
  Message chunk{NodeId{leader}, to, cluster.raft(leader).term(),
                SnapshotChunk{snapshot->position, snapshot->bytes.size(), snapshot->checksum, 0, snapshot->bytes},
                cluster.raft(leader).boot()};
  cluster.raft(follower).step(chunk, Time{0});
  cluster.settle();
  EXPECT_EQ(cluster.installs(follower), 0);
  EXPECT_EQ(cluster.state(follower).restores, 0);
  EXPECT_EQ(cluster.log(follower).base().index, LogIndex{0});
  EXPECT_EQ(cluster.raft(follower).commit_index(), snapshot->position.index);
  EXPECT_EQ(cluster.state(follower).payloads, cluster.state(leader).payloads);
}

TEST(RaftSnapshot, MalformedChunksAreDroppedNotAsserted) {
  SnapshotCluster cluster(3);
  cluster.run_for(1100ms);
  const std::uint32_t leader = cluster.leader();
  const std::uint32_t follower = other_than(leader);
  const Term term = cluster.raft(leader).term();
  const std::uint64_t boot = cluster.raft(leader).boot();
  const auto send = [&](SnapshotChunk chunk) {
    cluster.raft(follower).step(Message{NodeId{leader}, NodeId{follower}, term, std::move(chunk), boot}, Time{0});
  };
  const std::vector<std::byte> data(10);
  send(SnapshotChunk{LogBase{LogIndex{50}, term.next()}, 10, 0, 0, data});         // a term newer than the sender's
  send(SnapshotChunk{LogBase{LogIndex{0}, Term{0}}, 10, 0, 0, data});              // index 0
  send(SnapshotChunk{LogBase{LogIndex{50}, term}, 10, 0, 5, data});                // data past the end
  send(SnapshotChunk{LogBase{LogIndex{50}, term}, 10, 0, ~std::uint64_t{0}, {}});  // offset past the end
  send(SnapshotChunk{LogBase{LogIndex{50}, term}, 10, 0, 0, data});                // whole, but its checksum is wrong
  cluster.settle();
  EXPECT_EQ(cluster.installs(follower), 0);
  EXPECT_EQ(cluster.log(follower).base().index, LogIndex{0});
}

TEST(RaftSnapshot, AFollowerSkipsTheEntriesItsBaseCovers) {
  // The follower compacted further than the leader believes: a request starting before its base still lands.
  SnapshotCluster cluster(3);
  cluster.run_for(1100ms);
  const std::uint32_t leader = cluster.leader();
  const std::uint32_t follower = other_than(leader);
  cluster.propose(leader, 10);
  cluster.run_for(100ms);
  cluster.snapshot_and_compact(follower);
  const LogIndex base = cluster.log(follower).base().index;
  ASSERT_GT(base, LogIndex{3});
  AppendRequest request;
  request.prev_index = LogIndex{2};
  request.prev_term = *cluster.log(leader).term_at(request.prev_index);
  request.commit = cluster.raft(leader).commit_index();
  for (LogIndex i{3}; i <= cluster.log(leader).last_index(); i = i.next())
    request.entries.push_back(cluster.log(leader).entry(i));
  Entry next;
  next.index = cluster.log(leader).last_index().next();
  next.term = cluster.raft(leader).term();
  next.payload = Payload(std::vector<std::byte>{std::byte{7}});
  next.checksum = compute_checksum(next.index, next.term, next.type, next.payload);
  request.entries.push_back(next);
  cluster.raft(follower).step(
      Message{NodeId{leader}, NodeId{follower}, cluster.raft(leader).term(), request, cluster.raft(leader).boot()},
      Time{0});
  EXPECT_EQ(cluster.log(follower).last_index(), next.index);
  EXPECT_EQ(cluster.log(follower).base().index, base);
}

// A late chunk of a snapshot the follower has committed already (of an install that completed) leaves alone the
// newer snapshot the follower is half way through: the install goes on from where it was.
TEST(RaftSnapshot, AStaleChunkOfACommittedSnapshotDoesNotDropTheNewerOneBeingReceived) {
  SnapshotCluster cluster(3);
  const Lagging lag = lag_behind_a_compaction(cluster, 40);
  const std::uint64_t size = lag.snapshot->bytes.size();
  const NodeId follower{lag.follower};
  std::uint64_t delivered = 0;
  bool cut = false;
  std::optional<Message> sample;
  cluster.filter = [&](Message& m) {
    if (m.to != follower && m.from != follower) return true;
    if (cut) return false;
    if (auto* chunk = std::get_if<SnapshotChunk>(&m.body)) {
      if (delivered + chunk->data.size() > size / 2) {
        cut = true;
        return false;
      }
      delivered += chunk->data.size();
      sample = m;
    }
    return true;
  };
  cluster.run_for(300ms);
  ASSERT_TRUE(cut);
  ASSERT_TRUE(sample.has_value());
  ASSERT_EQ(cluster.installs(lag.follower), 0);
  const std::uint64_t before = delivered;
  // A late chunk from the same leader and term, of a snapshot at a position the follower has committed.
  Message stale = *sample;
  auto& chunk = std::get<SnapshotChunk>(stale.body);
  const LogIndex committed = cluster.raft(lag.follower).commit_index();
  ASSERT_GT(committed, LogIndex{0});
  chunk.position = LogBase{committed, *cluster.log(lag.follower).term_at(committed)};
  chunk.offset = 0;
  chunk.size = 8;
  chunk.checksum = 1;
  chunk.data.assign(8, std::byte{0});
  cluster.deliver(stale);
  std::vector<std::uint64_t> offsets;
  cluster.filter = [&](Message& m) {
    if (auto* c = std::get_if<SnapshotChunk>(&m.body); c != nullptr && m.to == follower && !c->data.empty())
      offsets.push_back(c->offset);
    return true;
  };
  cluster.run_for(1s);
  EXPECT_EQ(cluster.installs(lag.follower), 1);
  ASSERT_FALSE(offsets.empty());
  EXPECT_EQ(offsets.front(), before) << "the follower dropped the half it held: the install started over";
}

// A position at term 0 (index > 0) names no snapshot a correct leader takes; installed, it would reach the snapshot
// writer's assertion on a peer's input.
TEST(RaftSnapshot, AChunkAtTermZeroIsRefused) {
  SnapshotCluster cluster(3);
  cluster.run_for(1100ms);
  const std::uint32_t leader = cluster.leader();
  const std::uint32_t follower = other_than(leader);
  const Term term = cluster.raft(leader).term();
  const std::uint64_t boot = cluster.raft(leader).boot();
  Applied fake;
  fake.index = LogIndex{50};
  fake.term = Term{0};
  const auto bytes = fake.encode();
  SnapshotChunk chunk{LogBase{LogIndex{50}, Term{0}}, bytes.size(), snapshot_checksum(bytes), 0, bytes};
  cluster.raft(follower).step(Message{NodeId{leader}, NodeId{follower}, term, std::move(chunk), boot}, Time{0});
  cluster.settle();
  EXPECT_EQ(cluster.installs(follower), 0) << "a snapshot at term 0 was installed";
  EXPECT_NE(cluster.log(follower).base(), (LogBase{LogIndex{50}, Term{0}}));
}

}  // namespace
}  // namespace cohort::consensus

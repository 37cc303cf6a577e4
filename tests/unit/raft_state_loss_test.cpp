// Rejoining after state loss (docs/consensus.md), interleaving by interleaving: a tiny cluster of real cores on
// MemoryLogStores, storage made durable at once after every step, and the test deciding which message is
// delivered, dropped or held back (an asynchronous network may do any of these). Each test is an interleaving a
// review found against an earlier version of the rejoin rules; each failed then.

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>

#include "consensus/memory_log.h"
#include "consensus/raft.h"
#include "raft_cluster_config.h"

namespace cohort::consensus {
namespace {

using namespace std::chrono_literals;

template <typename T>
bool is(const Message& m) {
  return std::holds_alternative<T>(m.body);
}

class Net {
 public:
  explicit Net(std::size_t size, bool pre_vote = true, bool check_quorum = true)
      : size_(size), pre_vote_(pre_vote), check_quorum_(check_quorum) {
    for (std::uint32_t id = 1; id <= size; ++id) start(id);
  }

  Raft& raft(std::uint32_t id) { return *nodes_[id].raft; }
  MemoryLogStore& store(std::uint32_t id) { return nodes_[id].store; }
  LogIndex commit(std::uint32_t id) { return nodes_[id].commit; }

  void start(std::uint32_t id) {
    Node& node = nodes_[id];
    Config config = cluster_config(NodeId{id}, size_, pre_vote_, check_quorum_);
    config.boot = ++seed_;  // every start a larger boot id, as the node's wall clock gives
    node.raft = std::make_unique<Raft>(config, node.store, seed_, now_);
    flush(id);
  }
  /// The node's disk is replaced by an empty one; messages to its old life are lost with it.
  void wipe(std::uint32_t id) {
    nodes_[id].store.restore({}, {}, HardState{Term{0}, std::nullopt, Standing::fresh});
    drop([&](const Message& m) { return m.to == NodeId{id}; });
    start(id);
  }
  /// A process restart that loses nothing (new boot id).
  void restart(std::uint32_t id) { start(id); }

  void flush(std::uint32_t id) {
    Node& node = nodes_[id];
    if (node.store.last_seq() > node.store.durable_seq())
      node.raft->on_persisted(node.store.make_durable(node.store.last_seq()), now_);
    Ready ready;
    node.raft->take_ready(ready);
    node.commit = ready.commit;
    for (Outgoing& out : ready.messages) pool_.push_back(std::move(out.message));
    // Writes made while taking ready (appends broadcast) are durable at once, too.
    if (node.store.last_seq() > node.store.durable_seq()) flush(id);
  }
  void tick(std::uint32_t id, Duration by) {
    now_ += by;
    nodes_[id].raft->tick(now_);
    flush(id);
  }
  void advance(Duration by) { now_ += by; }
  Time now() const { return now_; }

  /// Delivers every message in the pool that matches, in order, and those they cause that match, until none.
  std::size_t deliver(const std::function<bool(const Message&)>& match) {
    std::size_t delivered = 0;
    for (bool progress = true; progress;) {
      progress = false;
      for (auto it = pool_.begin(); it != pool_.end(); ++it) {
        if (!match(*it)) continue;
        const Message message = *it;
        pool_.erase(it);
        nodes_[message.to.value()].raft->step(message, now_);
        flush(message.to.value());
        ++delivered;
        progress = true;
        break;
      }
    }
    return delivered;
  }
  void drop(const std::function<bool(const Message&)>& match) {
    std::erase_if(pool_, [&](const Message& m) { return match(m); });
  }
  const std::deque<Message>& pool() const { return pool_; }

  static std::function<bool(const Message&)> link(std::uint32_t from, std::uint32_t to) {
    return [=](const Message& m) { return m.from == NodeId{from} && m.to == NodeId{to}; };
  }
  static std::function<bool(const Message&)> among(std::vector<std::uint32_t> ids) {
    return [=](const Message& m) {
      auto in = [&](NodeId n) { return std::find(ids.begin(), ids.end(), n.value()) != ids.end(); };
      return in(m.from) && in(m.to);
    };
  }

 private:
  struct Node {
    MemoryLogStore store;
    std::unique_ptr<Raft> raft;
    LogIndex commit;
  };
  std::size_t size_;
  bool pre_vote_;
  bool check_quorum_;
  std::uint64_t seed_ = 1000;
  Time now_{};
  std::map<std::uint32_t, Node> nodes_;
  std::deque<Message> pool_;
};

/// Elects `id` in a cluster where everyone hears everyone.
void elect(Net& net, std::uint32_t id, std::vector<std::uint32_t> all) {
  net.tick(id, 1000ms);
  net.deliver(Net::among(all));
  ASSERT_EQ(net.raft(id).role(), Role::leader);
}

// ----------------------------------------------------------------------------------------------------------------
// n = 3, one wiped node: before it has learned its vote floor, a node that lost its state must not acknowledge the
// appends of a term below the one it promised in its forgotten life. Otherwise a stale leader commits with that
// acknowledgement, and the leader the forgotten vote elected overwrites the committed entry.
TEST(RaftStateLoss, WipedNodeAcksAStaleLeaderBeforeItsFloorAndACommittedEntryIsLost) {
  Net net(3);
  // 1 = A, 2 = B, 3 = R.
  elect(net, 2, {1, 2, 3});  // B leads term 1; no-op 1/1 everywhere, committed
  ASSERT_EQ(net.commit(2), LogIndex{1});

  // B hands over to A. A stands in term 2; only R hears it and votes (durably). A leads term 2.
  ASSERT_TRUE(net.raft(2).transfer_leadership(NodeId{1}, net.now()).ok());
  net.flush(2);
  net.deliver([](const Message& m) { return is<TimeoutNow>(m); });
  ASSERT_EQ(net.raft(1).role(), Role::candidate);
  net.deliver(Net::link(1, 3));
  net.deliver(Net::link(3, 1));
  ASSERT_EQ(net.raft(1).role(), Role::leader);
  ASSERT_EQ(net.store(3).durable_hard_state().voted_for, NodeId{1});
  net.drop([](const Message& m) { return m.from == NodeId{1} && m.to == NodeId{2} && is<VoteRequest>(m); });
  // A's append of its no-op to B is held back (slow link); nothing from A reaches B yet.

  // R's disk is replaced (the documented procedure), R restarts empty: fresh, term 0.
  net.wipe(3);
  ASSERT_EQ(net.raft(3).standing(), Standing::fresh);
  ASSERT_EQ(net.raft(3).term(), Term{0});

  // B (still leader of term 1, unaware of term 2) and R talk; A's link to R is slow. R's first standing query
  // reaches only B (enough to make it recovering, not enough for a floor).
  for (int i = 0; i < 10; ++i) {  // 500 ms: B's transfer deadline passes; check-quorum deposes B only after that
    net.tick(2, 50ms);
    net.tick(3, 0ms);
    net.drop([](const Message& m) { return m.to == NodeId{1} || m.from == NodeId{1}; });  // held back: see below
    net.deliver(Net::among({2, 3}));
  }
  ASSERT_EQ(net.raft(2).role(), Role::leader);
  ASSERT_EQ(net.raft(2).term(), Term{1});
  EXPECT_EQ(net.raft(3).standing(), Standing::recovering);
  EXPECT_EQ(net.raft(3).term(), Term{1});  // the term it promised (2) is forgotten

  // A client write at B: R acknowledges it, B commits it with {B, R}.
  ASSERT_TRUE(net.raft(2).propose(EntryType::command, as_bytes(std::string_view("X")), net.now()).has_value());
  net.flush(2);
  net.deliver([](const Message& m) { return is<AppendRequest>(m) && m.from == NodeId{2} && m.to == NodeId{3}; });
  net.deliver([](const Message& m) { return is<AppendResponse>(m) && m.from == NodeId{3} && m.to == NodeId{2}; });
  ASSERT_EQ(net.store(2).term_at(LogIndex{2}), Term{1});
  EXPECT_EQ(net.commit(2), LogIndex{1}) << "B committed 2/1 (X) counting the wiped node's acknowledgement";
  net.drop([](const Message&) { return true; });  // B's later heartbeats (with commit 2) are lost

  // A, leader of term 2 (elected with R's forgotten vote), now reaches both.
  net.tick(1, 50ms);
  net.deliver(Net::among({1, 2, 3}));
  net.tick(1, 50ms);
  net.deliver(Net::among({1, 2, 3}));
  EXPECT_FALSE(net.commit(1).value() >= 2 && net.commit(2).value() >= 2 &&
               net.store(1).term_at(LogIndex{2}) != net.store(2).term_at(LogIndex{2}))
      << "two different entries committed at index 2: A has term " << net.store(1).term_at(LogIndex{2})->value()
      << ", B has term " << net.store(2).term_at(LogIndex{2})->value();
}

// ----------------------------------------------------------------------------------------------------------------
// n = 5, one wiped node: a vote floor from f + 1 answers would not cover a term in which the forgotten life voted
// for a candidate whose election was still under way (the candidate is the only other node that holds that term,
// and f + 1 answers need not include it): two leaders in term 2. The floor waits for every member's answer.
TEST(RaftStateLoss, FivenodesFloorFromMajorityMissesAnOpenElectionAndTwoLeadersWinOneTerm) {
  Net net(5);
  // 1 = R, 2 = C, 3 = D, 4 = Y, 5 = Z.
  elect(net, 5, {1, 2, 3, 4, 5});
  // Z hands over to C: C stands in term 2; its request reaches R (votes, durably) and Y (held back).
  ASSERT_TRUE(net.raft(5).transfer_leadership(NodeId{2}, net.now()).ok());
  net.flush(5);
  net.deliver([](const Message& m) { return is<TimeoutNow>(m); });
  ASSERT_EQ(net.raft(2).role(), Role::candidate);
  ASSERT_EQ(net.raft(2).term(), Term{2});
  net.deliver(Net::link(2, 1));
  net.deliver(Net::link(1, 2));  // C has 2 of the 3 votes it needs
  ASSERT_EQ(net.store(1).durable_hard_state().voted_for, NodeId{2});
  net.drop([](const Message& m) { return m.from == NodeId{2} && (m.to == NodeId{3} || m.to == NodeId{5}); });
  // (C's request to Y, 2 -> 4, stays in the network.)

  // R's disk is replaced. It asks; D, Y and Z answer (C's link is slow): no floor yet.
  net.wipe(1);
  net.tick(1, 0ms);
  net.deliver([](const Message& m) { return is<StandingQuery>(m) && m.to != NodeId{2}; });
  net.deliver([](const Message& m) { return is<StandingAnswer>(m); });
  ASSERT_EQ(net.raft(1).standing(), Standing::recovering);
  EXPECT_NE(net.raft(1).voted_for(), kForgottenVote) << "a floor taken before C answered";
  net.drop([](const Message& m) { return is<StandingQuery>(m); });

  // Z (leader of term 1) would repair R; without a floor, R does not rejoin.
  net.tick(5, 50ms);
  net.drop([](const Message& m) { return m.to == NodeId{2}; });
  net.deliver([](const Message& m) { return m.from != NodeId{2} && m.to != NodeId{2}; });
  EXPECT_NE(net.raft(1).standing(), Standing::member);

  // Z hands over to D: D stands in term 2; R (now a member) and Z vote for it. D leads term 2.
  ASSERT_TRUE(net.raft(5).transfer_leadership(NodeId{3}, net.now()).ok());
  net.flush(5);
  net.deliver([](const Message& m) { return is<TimeoutNow>(m); });
  ASSERT_EQ(net.raft(3).role(), Role::candidate);
  ASSERT_EQ(net.raft(3).term(), Term{2});
  net.drop([](const Message& m) { return m.from == NodeId{3} && (m.to == NodeId{4} || m.to == NodeId{2}); });
  net.deliver([](const Message& m) { return is<VoteRequest>(m) && m.from == NodeId{3}; });
  net.deliver([](const Message& m) { return is<VoteResponse>(m) && m.to == NodeId{3}; });

  // C's old request finally reaches Y: Y votes for C, which had R's forgotten vote: C leads term 2 as well.
  net.deliver(Net::link(2, 4));
  net.deliver(Net::link(4, 2));
  EXPECT_FALSE(net.raft(2).role() == Role::leader && net.raft(3).role() == Role::leader &&
               net.raft(2).term() == net.raft(3).term())
      << "two leaders in term " << net.raft(2).term().value();
}

// ----------------------------------------------------------------------------------------------------------------
// Liveness: the catch-up bar for U = M is the leader's log end in its *first* answer of its term in this life. With
// its latest answer, under a steady write load, when the follower's write and sync take longer than one query
// interval, each answer would raise the bar past what the follower has made durable: it would never rejoin.
TEST(RaftStateLoss, UnderSteadyLoadARecoveringNodeChasesAMovingBarForever) {
  MemoryLogStore log;
  std::vector<Entry> old_log;
  for (std::uint64_t i = 1; i <= 2; ++i) {
    Entry e;
    e.index = LogIndex{i};
    e.term = Term{1};
    e.checksum = compute_checksum(e.index, e.term, e.type, e.payload);
    old_log.push_back(e);
  }
  log.restore({}, old_log, HardState{Term{3}, NodeId{2}, Standing::recovering});
  Time now{};
  Raft raft(cluster_config(NodeId{1}, 3), log, 7, now);
  auto answer = [&](std::uint32_t from, bool leader, std::uint64_t last) {
    raft.step(Message{NodeId{from}, NodeId{1}, Term{3},
                      StandingAnswer{raft.boot(), Standing::member, leader, LogIndex{last}}, 1},
              now);
  };
  answer(3, false, 2);
  std::uint64_t leader_last = 3;  // the leader (node 2) appends one entry per query interval
  answer(2, true, leader_last);
  for (int round = 0; round < 100; ++round) {
    // The entry the leader appended last reaches us; our write of it is under way (sync slower than 50 ms).
    Entry e;
    e.index = LogIndex{leader_last};
    e.term = Term{3};
    e.checksum = compute_checksum(e.index, e.term, e.type, e.payload);
    raft.step(
        Message{NodeId{2}, NodeId{1}, Term{3},
                AppendRequest{LogIndex{leader_last - 1}, Term{leader_last - 1 <= 2 ? 1U : 3U}, LogIndex{0}, {e}}, 1},
        now);
    // Meanwhile the leader appended the next one, and its next answer says so.
    ++leader_last;
    now += 50ms;
    answer(2, true, leader_last);
    // Now our write completes.
    raft.on_persisted(log.make_durable(log.last_seq()), now);
    Ready ready;
    raft.take_ready(ready);
  }
  EXPECT_EQ(log.durable_entries().size(), 102U);
  EXPECT_EQ(raft.durable_index(), LogIndex{102});
  EXPECT_EQ(raft.standing(), Standing::member) << "after 100 rounds (5 s) it still chases the leader's log end";
}

// A restarted follower's first acknowledgement only starts its repair: the leader reset its progress, and the probe
// the new boot set off asks again; that answer counts.
TEST(RaftStateLoss, TheFirstAcknowledgementOfANewBootIsNotCounted) {
  Net net(3);
  elect(net, 1, {1, 2, 3});
  net.restart(2);
  net.drop([](const Message& m) { return m.from == NodeId{2} || m.to == NodeId{2}; });
  net.drop([](const Message& m) { return m.to == NodeId{3} || m.from == NodeId{3}; });  // node 3 is down
  ASSERT_TRUE(net.raft(1).propose(EntryType::command, as_bytes(std::string_view("a")), net.now()).has_value());
  net.flush(1);
  // The first word the leader hears from node 2's new boot is an acknowledgement claiming index 2: not counted.
  AppendResponse claim;
  claim.success = true;
  claim.match_index = LogIndex{2};
  net.raft(1).step(Message{NodeId{2}, NodeId{1}, net.raft(1).term(), claim, net.raft(2).boot()}, net.now());
  net.flush(1);
  EXPECT_EQ(net.commit(1), LogIndex{1});
  net.drop([](const Message& m) { return m.to == NodeId{3}; });
  for (int i = 0; i < 3; ++i) {
    net.tick(1, 50ms);
    net.drop([](const Message& m) { return m.to == NodeId{3} || m.from == NodeId{3}; });
    net.deliver(Net::among({1, 2}));
  }
  EXPECT_EQ(net.commit(1), LogIndex{2});
}

// Boots are ordered: a late message from a follower's earlier life that the leader never heard from (node 2
// restarted twice), arriving after its newest life has been heard from, is dropped. It must not pass for yet
// another restart, after which the leader would drop the live life's answers as stale (found by the simulator,
// seed 262311: a follower cut off from replication for the rest of the term).
TEST(RaftStateLoss, ALateMessageFromAnEarlierLifeAfterTheNewOneIsDroppedAndReplicationGoesOn) {
  Net net(3);
  elect(net, 1, {1, 2, 3});
  net.restart(2);
  net.drop([](const Message& m) { return m.from == NodeId{2}; });  // that life's words are delayed
  const std::uint64_t old_boot = net.raft(2).boot();
  net.restart(2);
  ASSERT_GT(net.raft(2).boot(), old_boot);
  for (int i = 0; i < 3; ++i) {
    net.tick(1, 50ms);
    net.deliver(Net::among({1, 2, 3}));
  }
  // The old life's heartbeat answer, delayed until now.
  net.raft(1).step(Message{NodeId{2}, NodeId{1}, net.raft(1).term(), HeartbeatResponse{}, old_boot}, net.now());
  net.flush(1);
  net.drop([](const Message& m) { return m.to == NodeId{3} || m.from == NodeId{3}; });  // node 3 goes quiet
  ASSERT_TRUE(net.raft(1).propose(EntryType::command, as_bytes(std::string_view("b")), net.now()).has_value());
  for (int i = 0; i < 5; ++i) {
    net.flush(1);
    net.drop([](const Message& m) { return m.to == NodeId{3} || m.from == NodeId{3}; });
    net.deliver(Net::among({1, 2}));
    net.tick(1, 50ms);
  }
  EXPECT_EQ(net.commit(1), net.raft(1).commit_index());
  EXPECT_EQ(net.raft(1).commit_index(), net.store(1).last_index()) << "node 2's new life still acknowledges";
}

}  // namespace
}  // namespace cohort::consensus

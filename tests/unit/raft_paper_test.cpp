// The Raft paper, rule by rule. Each test is named after one sentence of "In Search of an Understandable
// Consensus Algorithm" (Ongaro & Ousterhout, 2014) or of Ongaro's dissertation (pre-vote §9.6, check-quorum
// §6.2, leadership transfer §3.10, durability §10.2.1), and drives one Raft object directly: crafted messages
// in, the Ready batch and the MemoryLogStore inspected after. The scenario tests (raft_scenario_test.cpp)
// show whole clusters; these pin down one rule at a time.

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string_view>

#include "consensus/memory_log.h"
#include "consensus/raft.h"

namespace cohort::consensus {
namespace {

using namespace std::chrono_literals;

Term term(std::uint64_t value) { return Term{value}; }
LogIndex index(std::uint64_t value) { return LogIndex{value}; }

Entry make_entry(std::uint64_t at, std::uint64_t of_term, std::string_view text = "x",
                 EntryType type = EntryType::command) {
  Entry entry;
  entry.index = LogIndex{at};
  entry.term = Term{of_term};
  entry.type = type;
  entry.payload = Payload(as_bytes(text));
  entry.checksum = compute_checksum(entry.index, entry.term, entry.type, entry.payload);
  return entry;
}

/// Entries first, first+1, ... with the given terms.
std::vector<Entry> entries_from(std::uint64_t first, std::vector<std::uint64_t> terms) {
  std::vector<Entry> entries;
  for (const std::uint64_t of_term : terms) entries.push_back(make_entry(first++, of_term));
  return entries;
}

AppendResponse accepted(std::uint64_t match) {
  AppendResponse response;
  response.success = true;
  response.match_index = LogIndex{match};
  return response;
}

AppendResponse refused(std::uint64_t rejected_prev, std::uint64_t conflict_index, std::uint64_t conflict_term) {
  AppendResponse response;
  response.rejected_prev = LogIndex{rejected_prev};
  response.conflict_index = LogIndex{conflict_index};
  response.conflict_term = Term{conflict_term};
  return response;
}

AppendRequest append(std::uint64_t prev_index, std::uint64_t prev_term, std::vector<Entry> entries,
                     std::uint64_t commit = 0) {
  return AppendRequest{LogIndex{prev_index}, Term{prev_term}, LogIndex{commit}, std::move(entries)};
}

/// The single message of a batch is a successful AppendResponse reporting `match`.
::testing::AssertionResult acknowledges(const std::vector<Outgoing>& batch, std::uint64_t match) {
  if (batch.size() != 1) return ::testing::AssertionFailure() << batch.size() << " messages, not 1";
  const auto* response = std::get_if<AppendResponse>(&batch[0].message.body);
  if (response == nullptr) return ::testing::AssertionFailure() << type_name(batch[0].message);
  if (!response->success || response->match_index != LogIndex{match})
    return ::testing::AssertionFailure() << "success " << response->success << " match "
                                         << response->match_index.value();
  return ::testing::AssertionSuccess();
}

/// The messages of type T in a batch, optionally only those to one node.
template <typename T>
std::vector<std::pair<Message, T>> only(const std::vector<Outgoing>& batch, std::uint32_t to = 0) {
  std::vector<std::pair<Message, T>> found;
  for (const Outgoing& out : batch) {
    const auto* body = std::get_if<T>(&out.message.body);
    if (body != nullptr && (to == 0 || out.message.to == NodeId{to})) found.emplace_back(out.message, *body);
  }
  return found;
}

/// One node under test, node 1 of a cluster of 3 unless told otherwise. Its peers are played by the test.
class RaftPaperTest : public ::testing::Test {
 protected:
  RaftPaperTest() { cluster_of(3); }

  void cluster_of(std::uint32_t size) {
    config_.id = NodeId{1};
    config_.members.clear();
    for (std::uint32_t id = 1; id <= size; ++id) config_.members.push_back(NodeId{id});
  }
  /// Election timeout exactly election_timeout_min, for tests about when timers fire.
  void fixed_election_timeout() { config_.election_timeout_max = config_.election_timeout_min + 1ns; }

  /// Starts the node the way a restart finds it: the log (terms of entries 1..n) and hard state, all durable.
  void start(const std::vector<std::uint64_t>& terms = {}, std::uint64_t current_term = 0,
             std::optional<std::uint32_t> vote = std::nullopt, Standing standing = Standing::member) {
    if (!terms.empty()) {
      const auto entries = entries_from(1, terms);
      (void)log_.append(entries);
    }
    if (current_term != 0 || vote || standing != Standing::member) {
      std::optional<NodeId> voted;
      if (vote) voted = NodeId{*vote};
      (void)log_.save_hard_state(HardState{Term{current_term}, voted, standing});
    }
    if (log_.last_seq() > 0) (void)log_.make_durable(log_.last_seq());
    raft_ = std::make_unique<Raft>(config_, log_, seed_, now_);
  }

  Raft& raft() { return *raft_; }

  std::vector<Outgoing> take() {
    Ready ready;
    raft_->take_ready(ready);
    commit_seen_ = ready.commit;
    return std::move(ready.messages);
  }

  void receive(std::uint32_t from, std::uint64_t of_term, Message::Body body, std::uint32_t to = 1) {
    raft_->step(Message{NodeId{from}, NodeId{to}, Term{of_term}, std::move(body)}, now_);
  }
  /// receive(), from a sender in the life it started as `boot`.
  void receive_from_boot(std::uint64_t boot, std::uint32_t from, std::uint64_t of_term, Message::Body body) {
    raft_->step(Message{NodeId{from}, NodeId{1}, Term{of_term}, std::move(body), boot}, now_);
  }
  /// Member `from` answers this node's standing query.
  void answer(std::uint32_t from, std::uint64_t of_term, Standing standing, bool leader, std::uint64_t last) {
    receive(from, of_term, StandingAnswer{raft_->boot(), standing, leader, LogIndex{last}});
  }
  void advance(Duration duration) {
    now_ += duration;
    raft_->tick(now_);
  }
  /// Makes every write so far durable and tells the node.
  void persist() {
    if (log_.last_seq() > log_.durable_seq()) raft_->on_persisted(log_.make_durable(log_.last_seq()), now_);
  }
  /// The hard state a crash right now would leave behind.
  HardState durable_hard_state_after(PersistSeq seq) {
    MemoryLogStore copy = log_;
    (void)copy.make_durable(seq);
    (void)copy.crash(0);
    return copy.hard_state();
  }
  /// Lets the election timer fire, whatever its randomized value.
  void fire_election_timer() { advance(config_.election_timeout_max); }

  std::size_t quorum() const { return config_.members.size() / 2 + 1; }

  /// Takes the node from follower to leader of the next term with just enough votes; drains the outputs and
  /// makes everything durable. Every follower is then probing, its first AppendRequest in flight.
  void elect() {
    fire_election_timer();
    if (raft_->role() == Role::pre_candidate) {
      const std::uint64_t next = raft_->term().next().value();
      for (std::uint32_t id = 2; id <= quorum(); ++id) receive(id, next, VoteResponse{true, true});
    }
    ASSERT_EQ(raft_->role(), Role::candidate);
    for (std::uint32_t id = 2; id <= quorum(); ++id) receive(id, raft_->term().value(), VoteResponse{true, false});
    ASSERT_EQ(raft_->role(), Role::leader);
    (void)take();
    persist();
  }
  /// elect(), then every follower acknowledges the whole log: they all replicate, nothing in flight.
  void elect_and_replicate() {
    elect();
    for (std::uint32_t id = 2; id <= config_.members.size(); ++id)
      receive(id, raft_->term().value(), accepted(log_.last_index().value()));
    (void)take();
  }

  Config config_;
  MemoryLogStore log_;
  std::unique_ptr<Raft> raft_;
  std::uint64_t seed_ = 42;
  Time now_{1s};
  LogIndex commit_seen_;
};

// --- §5.1: terms ------------------------------------------------------------------------------------------

TEST_F(RaftPaperTest, FollowerUpdatesItsTermFromAHigherTermMessage) {
  start({1}, 1, 3);
  receive(2, 3, Heartbeat{LogIndex{0}});
  EXPECT_EQ(raft().term(), term(3));
  EXPECT_EQ(raft().role(), Role::follower);
  EXPECT_EQ(raft().leader(), NodeId{2});
  EXPECT_EQ(raft().voted_for(), std::nullopt);  // the vote of term 1 does not carry over
  EXPECT_EQ(log_.hard_state(), (HardState{term(3), std::nullopt}));
}

TEST_F(RaftPaperTest, CandidateStepsDownToFollowerOnAHigherTerm) {
  config_.pre_vote = false;
  start();
  fire_election_timer();
  ASSERT_EQ(raft().role(), Role::candidate);
  receive(2, 5, VoteResponse{false, false});
  EXPECT_EQ(raft().role(), Role::follower);
  EXPECT_EQ(raft().term(), term(5));
}

TEST_F(RaftPaperTest, LeaderStepsDownToFollowerOnAHigherTermResponse) {
  start();
  elect();
  receive(2, raft().term().value() + 1, AppendResponse{});
  EXPECT_EQ(raft().role(), Role::follower);
  EXPECT_EQ(raft().term(), term(2));
  EXPECT_EQ(raft().leader(), std::nullopt);
}

TEST_F(RaftPaperTest, AStaleTermAppendIsAnsweredWithTheCurrentTermAndChangesNothing) {
  start({1, 2}, 3);
  receive(2, 2, append(2, 2, entries_from(3, {2}), 2));
  const auto out = take();
  const auto answers = only<HeartbeatResponse>(out, 2);
  ASSERT_EQ(answers.size(), 1U);  // the stale leader learns term 3 from it and stands down
  EXPECT_EQ(answers[0].first.term, term(3));
  EXPECT_EQ(log_.last_index(), index(2));
  EXPECT_EQ(raft().commit_index(), index(0));
  EXPECT_EQ(raft().leader(), std::nullopt);
}

TEST_F(RaftPaperTest, AStaleTermVoteRequestIsDroppedButAStalePreVoteIsRefused) {
  start({1}, 3);
  receive(2, 2, VoteRequest{index(5), term(2), false, false});
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(raft().voted_for(), std::nullopt);
  receive(2, 2, VoteRequest{index(5), term(2), true, false});  // a pre-vote for term 2: this node is past it
  const auto out = take();
  const auto answers = only<VoteResponse>(out, 2);
  ASSERT_EQ(answers.size(), 1U);
  EXPECT_FALSE(answers[0].second.granted);
  EXPECT_TRUE(answers[0].second.pre_vote);
  EXPECT_EQ(answers[0].first.term, term(3));
  EXPECT_EQ(raft().term(), term(3));
}

TEST_F(RaftPaperTest, LeaderIgnoresResponsesFromAnOlderTerm) {
  start({1}, 1);
  elect();  // term 2, noop at 2
  const LogIndex commit = raft().commit_index();
  receive(2, 1, accepted(2));
  receive(3, 1, accepted(2));
  EXPECT_EQ(raft().commit_index(), commit);
  EXPECT_EQ(raft().role(), Role::leader);
}

// --- §5.2: leader election --------------------------------------------------------------------------------

TEST_F(RaftPaperTest, FollowerStartsAnElectionWhenItHearsNothingForAnElectionTimeout) {
  config_.pre_vote = false;
  fixed_election_timeout();
  start();
  advance(config_.election_timeout_min - 1ms);
  EXPECT_EQ(raft().role(), Role::follower);
  EXPECT_TRUE(take().empty());
  advance(1ms);
  EXPECT_EQ(raft().role(), Role::candidate);
  const auto out = take();
  EXPECT_EQ(only<VoteRequest>(out, 2).size(), 1U);
  EXPECT_EQ(only<VoteRequest>(out, 3).size(), 1U);
}

TEST_F(RaftPaperTest, CandidateStartsElectionByIncrementingTermAndVotingForItself) {
  config_.pre_vote = false;
  start({1, 1, 2}, 2);
  fire_election_timer();
  EXPECT_EQ(raft().role(), Role::candidate);
  EXPECT_EQ(raft().term(), term(3));
  EXPECT_EQ(raft().voted_for(), NodeId{1});
  EXPECT_EQ(log_.hard_state(), (HardState{term(3), NodeId{1}}));
  const auto out = take();
  for (const auto& [message, request] : only<VoteRequest>(out)) {
    EXPECT_EQ(message.term, term(3));
    EXPECT_EQ(request, (VoteRequest{index(3), term(2), false, false}));  // its last entry, for the up-to-date check
  }
  EXPECT_EQ(only<VoteRequest>(out).size(), 2U);
}

TEST_F(RaftPaperTest, TermAndVoteAreDurableBeforeVoteRequestsLeave) {
  config_.pre_vote = false;
  start();
  fire_election_timer();
  const auto out = take();
  ASSERT_EQ(out.size(), 2U);
  for (const Outgoing& request : out) {
    EXPECT_GE(request.after, log_.last_seq());  // the HardState {1, vote 1} is the last write
    EXPECT_EQ(durable_hard_state_after(request.after), (HardState{term(1), NodeId{1}}));
  }
  // Had a request left any earlier, a crash could forget the candidate's own vote.
  EXPECT_NE(durable_hard_state_after(log_.last_seq() - 1), (HardState{term(1), NodeId{1}}));
}

TEST_F(RaftPaperTest, CandidateBecomesLeaderOnMajorityVotes) {
  config_.pre_vote = false;
  cluster_of(5);
  start();
  fire_election_timer();
  receive(2, 1, VoteResponse{true, false});
  EXPECT_EQ(raft().role(), Role::candidate);  // 2 of 5
  receive(2, 1, VoteResponse{true, false});   // the same voter twice is still one vote
  EXPECT_EQ(raft().role(), Role::candidate);
  receive(3, 1, VoteResponse{true, false});
  EXPECT_EQ(raft().role(), Role::leader);  // 3 of 5
  EXPECT_EQ(raft().leader(), NodeId{1});
}

TEST_F(RaftPaperTest, CandidateReturnsToFollowerWhenAMajorityRefuses) {
  config_.pre_vote = false;
  start();
  fire_election_timer();
  receive(2, 1, VoteResponse{false, false});
  EXPECT_EQ(raft().role(), Role::candidate);  // one vote for, one against: 3 decides
  receive(3, 1, VoteResponse{false, false});
  EXPECT_EQ(raft().role(), Role::follower);
  EXPECT_EQ(raft().term(), term(1));
}

TEST_F(RaftPaperTest, CandidateStepsDownOnAppendFromLeaderOfSameTerm) {
  config_.pre_vote = false;
  start();
  fire_election_timer();
  ASSERT_EQ(raft().role(), Role::candidate);
  receive(2, 1, append(0, 0, entries_from(1, {1})));
  EXPECT_EQ(raft().role(), Role::follower);
  EXPECT_EQ(raft().leader(), NodeId{2});
  EXPECT_EQ(raft().term(), term(1));
  EXPECT_EQ(log_.last_index(), index(1));
}

TEST_F(RaftPaperTest, CandidateStartsANewElectionWhenItsElectionTimesOutWithoutAWinner) {
  config_.pre_vote = false;
  start();
  fire_election_timer();
  ASSERT_EQ(raft().term(), term(1));
  (void)take();
  fire_election_timer();  // split vote: nobody won term 1
  EXPECT_EQ(raft().role(), Role::candidate);
  EXPECT_EQ(raft().term(), term(2));
  EXPECT_EQ(only<VoteRequest>(take()).size(), 2U);
}

TEST_F(RaftPaperTest, VoterGrantsAtMostOneVotePerTerm) {
  start();
  receive(2, 1, VoteRequest{index(0), term(0), false, false});
  receive(3, 1, VoteRequest{index(0), term(0), false, false});
  receive(2, 1, VoteRequest{index(0), term(0), false, false});  // a retry from the same candidate
  const auto out = take();
  const auto to2 = only<VoteResponse>(out, 2);
  const auto to3 = only<VoteResponse>(out, 3);
  ASSERT_EQ(to2.size(), 2U);
  ASSERT_EQ(to3.size(), 1U);
  EXPECT_TRUE(to2[0].second.granted);
  EXPECT_FALSE(to3[0].second.granted);
  EXPECT_TRUE(to2[1].second.granted);
  EXPECT_EQ(raft().voted_for(), NodeId{2});
}

TEST_F(RaftPaperTest, VoteIsDurableBeforeTheGrantLeaves) {
  start();
  receive(2, 4, VoteRequest{index(0), term(0), false, false});
  const auto out = take();
  ASSERT_EQ(out.size(), 1U);
  ASSERT_TRUE(std::get<VoteResponse>(out[0].message.body).granted);
  EXPECT_EQ(durable_hard_state_after(out[0].after), (HardState{term(4), NodeId{2}}));
}

TEST_F(RaftPaperTest, VoterRefusesCandidateWithLessUpToDateLog) {
  start({1, 2, 2}, 2);
  receive(2, 3, VoteRequest{index(5), term(1), false, false});  // longer, but its last term is older
  receive(3, 4, VoteRequest{index(2), term(2), false, false});  // same last term, shorter
  const auto out = take();
  ASSERT_EQ(only<VoteResponse>(out, 2).size(), 1U);
  ASSERT_EQ(only<VoteResponse>(out, 3).size(), 1U);
  EXPECT_FALSE(only<VoteResponse>(out, 2)[0].second.granted);
  EXPECT_FALSE(only<VoteResponse>(out, 3)[0].second.granted);
  EXPECT_EQ(raft().voted_for(), std::nullopt);
  EXPECT_EQ(raft().term(), term(4));  // the term is still adopted
}

TEST_F(RaftPaperTest, VoterGrantsCandidateWithANewerLastTermEvenIfShorter) {
  start({1, 1, 1}, 1);
  receive(2, 3, VoteRequest{index(1), term(2), false, false});
  const auto out = take();
  ASSERT_EQ(out.size(), 1U);
  EXPECT_TRUE(std::get<VoteResponse>(out[0].message.body).granted);
  EXPECT_EQ(raft().voted_for(), NodeId{2});
}

TEST_F(RaftPaperTest, ElectionTimeoutIsRandomizedWithinTheConfiguredRange) {
  // Each seed: a node stands and a majority refuses it; find the first millisecond at which it stands again. It
  // must lie within [min, max] of the refusal.
  std::set<Duration::rep> seen;
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    MemoryLogStore store;
    Raft node(config_, store, seed, Time{0});
    const Time refused{config_.election_timeout_max};
    node.tick(refused);
    ASSERT_EQ(node.role(), Role::pre_candidate);
    for (std::uint32_t from = 2; from <= 3; ++from)
      node.step(Message{NodeId{from}, NodeId{1}, Term{0}, VoteResponse{false, true}}, refused);
    ASSERT_EQ(node.role(), Role::follower);
    Duration fired{};
    for (Duration after = 1ms; after <= 2 * config_.election_timeout_max; after += 1ms) {
      node.tick(refused + after);
      if (node.role() != Role::follower) {
        fired = after;
        break;
      }
    }
    EXPECT_GE(fired, config_.election_timeout_min) << "seed " << seed;
    EXPECT_LE(fired, config_.election_timeout_max) << "seed " << seed;
    seen.insert(fired.count());
  }
  EXPECT_GE(seen.size(), 20U);  // spread out, so that split votes rarely repeat
}

// --- prompt elections (docs/consensus.md) --------------------------------------------------------------------

TEST_F(RaftPaperTest, ANodeThatKnowsNoLeaderStandsAfterAShortRandomDelay) {
  // At its start it has heard from no leader: it pre-votes within a few heartbeat intervals, not an election timeout.
  const Duration spread = kPromptElectionSpreadHeartbeats * config_.heartbeat_interval;
  std::set<Duration::rep> seen;
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    MemoryLogStore store;
    Raft node(config_, store, seed, Time{0});
    Duration fired = -1ms;
    for (Duration at{}; at <= spread; at += 1ms) {
      node.tick(Time{at});
      if (node.role() != Role::follower) {
        fired = at;
        break;
      }
    }
    EXPECT_GE(fired, Duration::zero()) << "seed " << seed;
    EXPECT_LE(fired, spread) << "seed " << seed;
    seen.insert(fired.count());
  }
  EXPECT_GE(seen.size(), 20U);  // spread out, so that nodes starting together rarely stand together
}

TEST_F(RaftPaperTest, AFollowerStandsOnlyOnceItsLeaderIsSilentForTheMinimumElectionTimeout) {
  const Duration spread = kPromptElectionSpreadHeartbeats * config_.heartbeat_interval;
  start({1}, 1);
  receive(2, 1, Heartbeat{index(0)});
  advance(config_.election_timeout_min - 1ms);  // a slow heartbeat is no dead leader
  EXPECT_EQ(raft().role(), Role::follower);
  receive(2, 1, Heartbeat{index(0)});
  advance(config_.election_timeout_min - 1ms);
  EXPECT_EQ(raft().role(), Role::follower);
  EXPECT_TRUE(only<VoteRequest>(take()).empty());
  advance(spread + 1ms);  // silent for the minimum timeout: presumed dead; it stands after the short delay
  EXPECT_EQ(raft().role(), Role::pre_candidate);
  EXPECT_EQ(only<VoteRequest>(take()).size(), 2U);
}

TEST_F(RaftPaperTest, ALeaderThatStepsDownForWantOfAQuorumStandsAfterAShortRandomDelay) {
  const Duration spread = kPromptElectionSpreadHeartbeats * config_.heartbeat_interval;
  start();
  elect();
  for (Duration passed{}; passed <= config_.election_timeout_min && raft().role() == Role::leader; passed += 10ms)
    advance(10ms);
  ASSERT_EQ(raft().role(), Role::follower);  // check-quorum: it heard from no one
  ASSERT_EQ(raft().leader(), std::nullopt);
  (void)take();
  for (Duration passed{}; passed <= spread && raft().role() == Role::follower; passed += 1ms) advance(1ms);
  EXPECT_EQ(raft().role(), Role::pre_candidate);
}

TEST_F(RaftPaperTest, APreCandidateAsksAgainEveryHeartbeatIntervalWhoeverHasNotAnswered) {
  start({1}, 1);
  fire_election_timer();
  ASSERT_EQ(raft().role(), Role::pre_candidate);
  ASSERT_EQ(only<VoteRequest>(take()).size(), 2U);
  receive(2, 1, VoteResponse{false, true});  // 2 refuses; 3 was not reached (its connection was not up yet)
  advance(config_.heartbeat_interval - 1ms);
  EXPECT_TRUE(take().empty());
  advance(1ms);
  const auto out = take();
  const auto again = only<VoteRequest>(out);
  ASSERT_EQ(again.size(), 1U);
  EXPECT_EQ(again[0].first.to, NodeId{3});
  EXPECT_EQ(again[0].first.term, term(2));
  EXPECT_TRUE(again[0].second.pre_vote);
  receive(3, 2, VoteResponse{true, true});
  EXPECT_EQ(raft().role(), Role::candidate);
}

TEST_F(RaftPaperTest, ACandidateAsksAgainEveryHeartbeatIntervalWhoeverHasNotAnswered) {
  config_.pre_vote = false;
  cluster_of(5);
  start();
  fire_election_timer();
  ASSERT_EQ(raft().role(), Role::candidate);
  const PersistSeq vote = log_.last_seq();
  (void)take();
  receive(2, 1, VoteResponse{true, false});
  receive(3, 1, VoteResponse{false, false});
  advance(config_.heartbeat_interval);
  const auto out = take();
  const auto again = only<VoteRequest>(out);
  ASSERT_EQ(again.size(), 2U);
  for (const auto& [message, request] : again) {
    EXPECT_TRUE(message.to == NodeId{4} || message.to == NodeId{5});
    EXPECT_EQ(message.term, term(1));
    EXPECT_FALSE(request.pre_vote);
  }
  for (const Outgoing& request : out) EXPECT_GE(request.after, vote);  // still only once the vote is durable
  EXPECT_EQ(log_.last_seq(), vote);                                    // and nothing written again
}

TEST_F(RaftPaperTest, GrantingAVoteRestartsTheElectionTimer) {
  fixed_election_timeout();
  start({}, 1);
  fire_election_timer();  // it pre-votes for term 2 and hears nothing: its next round is an election timeout away
  ASSERT_EQ(raft().role(), Role::pre_candidate);
  advance(config_.election_timeout_min - 100ms);
  receive(2, 2, VoteRequest{index(0), term(0), false, false});
  ASSERT_EQ(raft().voted_for(), NodeId{2});
  ASSERT_EQ(raft().role(), Role::follower);
  advance(200ms);  // past the first deadline, but within a timeout of the grant
  EXPECT_EQ(raft().role(), Role::follower);
  advance(config_.election_timeout_min - 200ms);
  EXPECT_NE(raft().role(), Role::follower);
}

TEST_F(RaftPaperTest, HearingFromTheLeaderRestartsTheElectionTimer) {
  start({}, 1);
  receive(2, 1, Heartbeat{index(0)});
  for (int beat = 0; beat < 10; ++beat) {
    advance(config_.election_timeout_min - 1ms);
    receive(2, 1, Heartbeat{index(0)});
  }
  EXPECT_EQ(raft().role(), Role::follower);
  fire_election_timer();
  EXPECT_EQ(raft().role(), Role::pre_candidate);
}

// --- dissertation §9.6: pre-vote --------------------------------------------------------------------------

TEST_F(RaftPaperTest, PreVoteDoesNotIncreaseTerms) {
  start({1}, 1);
  const PersistSeq writes = log_.last_seq();
  fire_election_timer();
  EXPECT_EQ(raft().role(), Role::pre_candidate);
  EXPECT_EQ(raft().term(), term(1));
  EXPECT_EQ(raft().voted_for(), std::nullopt);
  EXPECT_EQ(log_.last_seq(), writes);  // nothing written
  const auto out = take();
  const auto requests = only<VoteRequest>(out);
  ASSERT_EQ(requests.size(), 2U);
  for (const auto& [message, request] : requests) {
    EXPECT_TRUE(request.pre_vote);
    EXPECT_EQ(message.term, term(2));  // the term it would stand in
  }
}

TEST_F(RaftPaperTest, VoterGrantsAPreVoteWithoutChangingItsTermOrVote) {
  start({1}, 1);
  receive(2, 2, VoteRequest{index(1), term(1), true, false});
  const auto out = take();
  ASSERT_EQ(out.size(), 1U);
  const auto& response = std::get<VoteResponse>(out[0].message.body);
  EXPECT_TRUE(response.granted);
  EXPECT_TRUE(response.pre_vote);
  EXPECT_EQ(out[0].message.term, term(2));  // answered in the term asked about
  EXPECT_EQ(raft().term(), term(1));
  EXPECT_EQ(raft().voted_for(), std::nullopt);
  EXPECT_EQ(log_.hard_state(), (HardState{term(1), std::nullopt}));
}

TEST_F(RaftPaperTest, VoterRefusesAPreVoteForALessUpToDateLog) {
  start({1, 2}, 2);
  receive(2, 3, VoteRequest{index(1), term(1), true, false});
  const auto out = take();
  ASSERT_EQ(out.size(), 1U);
  EXPECT_FALSE(std::get<VoteResponse>(out[0].message.body).granted);
  EXPECT_EQ(out[0].message.term, term(2));
  EXPECT_EQ(raft().term(), term(2));
}

TEST_F(RaftPaperTest, PreCandidateStandsForRealOnlyOnMajorityPreVotes) {
  cluster_of(5);
  start({1}, 1);
  fire_election_timer();
  (void)take();
  receive(2, 2, VoteResponse{true, true});
  EXPECT_EQ(raft().role(), Role::pre_candidate);
  EXPECT_EQ(raft().term(), term(1));
  receive(3, 2, VoteResponse{true, true});
  EXPECT_EQ(raft().role(), Role::candidate);
  EXPECT_EQ(raft().term(), term(2));
  EXPECT_EQ(raft().voted_for(), NodeId{1});
  const auto out = take();
  const auto requests = only<VoteRequest>(out);
  ASSERT_EQ(requests.size(), 4U);
  for (const auto& [message, request] : requests) EXPECT_FALSE(request.pre_vote);
}

TEST_F(RaftPaperTest, PreCandidateRefusedByAMajorityReturnsToFollowerInItsTerm) {
  start({1}, 1);
  fire_election_timer();
  receive(2, 1, VoteResponse{false, true});
  receive(3, 1, VoteResponse{false, true});
  EXPECT_EQ(raft().role(), Role::follower);
  EXPECT_EQ(raft().term(), term(1));
}

// --- dissertation §6.2 and §4.2.3: check-quorum and leader stickiness ----------------------------------------

TEST_F(RaftPaperTest, NodeInLeaderLeaseIgnoresVoteRequests) {
  start({1}, 1);
  receive(2, 1, Heartbeat{index(0)});
  (void)take();
  now_ += config_.election_timeout_min - 1ms;
  receive(3, 2, VoteRequest{index(1), term(1), false, false});
  receive(3, 2, VoteRequest{index(1), term(1), true, false});
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(raft().term(), term(1));
  EXPECT_EQ(raft().leader(), NodeId{2});
  now_ += 1ms;  // the lease is over: the leader may be gone
  receive(3, 2, VoteRequest{index(1), term(1), false, false});
  const auto out = take();
  ASSERT_EQ(only<VoteResponse>(out, 3).size(), 1U);
  EXPECT_TRUE(only<VoteResponse>(out, 3)[0].second.granted);
  EXPECT_EQ(raft().term(), term(2));
}

TEST_F(RaftPaperTest, LeaderWithCheckQuorumIgnoresVoteRequestsOfHigherTerms) {
  start();
  elect();
  receive(3, 5, VoteRequest{index(9), term(4), false, false});
  EXPECT_EQ(raft().role(), Role::leader);
  EXPECT_EQ(raft().term(), term(1));
  EXPECT_TRUE(only<VoteResponse>(take()).empty());
}

TEST_F(RaftPaperTest, LeaderWithoutQuorumStepsDownAfterElectionTimeout) {
  start();
  elect();
  const Duration timeout = config_.election_timeout_min;
  for (Duration passed{}; passed < timeout; passed += 10ms) advance(10ms);
  EXPECT_EQ(raft().role(), Role::leader);  // a new leader counts everyone as heard from at its election
  receive(2, 1, HeartbeatResponse{});      // one follower of two: itself and 2 make a majority of 3
  for (Duration passed{}; passed < timeout; passed += 10ms) advance(10ms);
  EXPECT_EQ(raft().role(), Role::leader) << "heard from a majority within the last election timeout";
  advance(10ms);
  EXPECT_EQ(raft().role(), Role::follower) << "judged at every tick, not once a round";
  EXPECT_EQ(raft().term(), term(1));
  EXPECT_EQ(raft().leader(), std::nullopt);
  auto refused_proposal = raft().propose(EntryType::command, as_bytes("x"), now_);
  ASSERT_FALSE(refused_proposal.has_value());
  EXPECT_EQ(refused_proposal.error(), ProposeError::not_leader);
}

TEST_F(RaftPaperTest, LeaderWithoutCheckQuorumStaysLeaderAlone) {
  config_.check_quorum = false;
  start();
  elect();
  advance(10 * config_.election_timeout_max);
  EXPECT_EQ(raft().role(), Role::leader);
}

// --- §5.3: log replication --------------------------------------------------------------------------------

TEST_F(RaftPaperTest, LeaderAppendsNoopOfItsTermOnElection) {
  start({1, 1}, 1);
  fire_election_timer();
  receive(2, 2, VoteResponse{true, true});
  receive(2, 2, VoteResponse{true, false});
  ASSERT_EQ(raft().role(), Role::leader);
  ASSERT_EQ(log_.last_index(), index(3));
  EXPECT_EQ(log_.entry(index(3)).type, EntryType::noop);
  EXPECT_EQ(log_.entry(index(3)).term, term(2));
  const auto out = take();
  for (std::uint32_t follower = 2; follower <= 3; ++follower) {
    const auto appends = only<AppendRequest>(out, follower);
    ASSERT_EQ(appends.size(), 1U);
    EXPECT_EQ(appends[0].second.prev_index, index(2));
    EXPECT_EQ(appends[0].second.prev_term, term(1));
    ASSERT_EQ(appends[0].second.entries.size(), 1U);
    EXPECT_EQ(appends[0].second.entries[0], log_.entry(index(3)));
  }
}

TEST_F(RaftPaperTest, LeaderSendsHeartbeatsEveryHeartbeatInterval) {
  start();
  elect();
  const Duration interval = config_.heartbeat_interval;
  advance(interval - 1ms);
  EXPECT_TRUE(only<Heartbeat>(take()).empty());
  advance(1ms);
  auto out = take();
  EXPECT_EQ(only<Heartbeat>(out, 2).size(), 1U);
  EXPECT_EQ(only<Heartbeat>(out, 3).size(), 1U);
  advance(interval - 1ms);
  EXPECT_TRUE(only<Heartbeat>(take()).empty());
  advance(1ms);
  EXPECT_EQ(only<Heartbeat>(take()).size(), 2U);
}

TEST_F(RaftPaperTest, HeartbeatCarriesOnlyTheCommitTheFollowerIsKnownToHold) {
  start();
  elect();  // noop at 1
  receive(2, 1, accepted(1));
  ASSERT_EQ(raft().commit_index(), index(1));
  (void)take();
  advance(config_.heartbeat_interval);
  const auto out = take();
  ASSERT_EQ(only<Heartbeat>(out, 2).size(), 1U);
  ASSERT_EQ(only<Heartbeat>(out, 3).size(), 1U);
  EXPECT_EQ(only<Heartbeat>(out, 2)[0].second.commit, index(1));
  EXPECT_EQ(only<Heartbeat>(out, 3)[0].second.commit, index(0));  // 3 may not hold entry 1 yet
}

TEST_F(RaftPaperTest, FollowerAppendsEntriesAfterAMatchingPrevEntryAndReportsTheMatch) {
  start({1}, 1);
  receive(2, 1, append(1, 1, entries_from(2, {1, 1}), 2));
  EXPECT_EQ(log_.last_index(), index(3));
  EXPECT_EQ(raft().commit_index(), index(2));
  EXPECT_TRUE(acknowledges(take(), 3));
}

TEST_F(RaftPaperTest, FollowerAcknowledgesOnlyAfterEntriesAreDurable) {
  start({1}, 1);
  receive(2, 1, append(1, 1, entries_from(2, {1, 1})));
  const auto out = take();
  ASSERT_EQ(out.size(), 1U);
  EXPECT_GE(out[0].after, log_.last_seq());  // the append of 2..3 is the last write
  MemoryLogStore crashed = log_;
  (void)crashed.make_durable(out[0].after);
  (void)crashed.crash(0);
  EXPECT_EQ(crashed.last_index(), index(3));  // what it acknowledged survives a crash
}

TEST_F(RaftPaperTest, FollowerRejectsAppendWhosePrevEntryDoesNotMatch) {
  start({1, 1, 2, 2, 2}, 2);
  receive(3, 3, append(2, 1, {}, 2));  // commit 2: entries 1..2 agree with this leader
  ASSERT_EQ(raft().commit_index(), index(2));
  ASSERT_EQ(log_.last_index(), index(5));
  (void)take();
  // prev beyond the log: "try after my last entry".
  receive(3, 3, append(7, 3, {}));
  auto out = take();
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(std::get<AppendResponse>(out[0].message.body), refused(7, 6, 0));
  // prev of another term: "I hold term 2 there, from index 3 on": the leader can skip the whole term.
  receive(3, 3, append(5, 3, entries_from(6, {3})));
  out = take();
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(std::get<AppendResponse>(out[0].message.body), refused(5, 3, 2));
  EXPECT_EQ(log_.last_index(), index(5));  // nothing changed
  EXPECT_EQ(log_.entry(index(5)).term, term(2));
}

TEST_F(RaftPaperTest, FollowerConflictHintStopsAtItsCommitIndex) {
  start({1, 1, 1, 1}, 1);
  receive(2, 2, append(2, 1, {}, 2));
  ASSERT_EQ(raft().commit_index(), index(2));
  (void)take();
  receive(2, 2, append(4, 2, {}));
  const auto out = take();
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(std::get<AppendResponse>(out[0].message.body), refused(4, 3, 1));  // not below commit + 1
}

TEST_F(RaftPaperTest, FollowerTruncatesConflictingSuffixAndAppends) {
  start({1, 1, 2, 2}, 2);
  receive(3, 3, append(2, 1, entries_from(3, {3})));
  ASSERT_EQ(log_.last_index(), index(3));
  EXPECT_EQ(log_.entry(index(2)).term, term(1));
  EXPECT_EQ(log_.entry(index(3)).term, term(3));
  const auto out = take();
  EXPECT_TRUE(acknowledges(out, 3));
  MemoryLogStore crashed = log_;
  (void)crashed.make_durable(out[0].after);
  (void)crashed.crash(0);
  EXPECT_EQ(crashed.durable_entries().size(), 3U);  // the truncation and the append, both durable first
  EXPECT_EQ(crashed.durable_entries().back().term, term(3));
}

TEST_F(RaftPaperTest, FollowerKeepsEntriesAStaleAppendAlreadyAgreesWith) {
  start({1}, 1);
  receive(2, 1, append(1, 1, entries_from(2, {1, 1, 1})));
  ASSERT_EQ(log_.last_index(), index(4));
  (void)take();
  receive(2, 1, append(1, 1, entries_from(2, {1})));  // an older request, delivered late
  EXPECT_EQ(log_.last_index(), index(4));             // the entries after it are not dropped
  EXPECT_TRUE(acknowledges(take(), 2));
}

TEST_F(RaftPaperTest, FollowerNeverTruncatesCommittedEntries) {
  start({1}, 1);
  receive(2, 1, append(1, 1, entries_from(2, {1, 1}), 3));
  ASSERT_EQ(raft().commit_index(), index(3));
  // A late, reordered request of the same leader cannot take committed entries away...
  receive(2, 1, append(0, 0, entries_from(1, {1}), 1));
  EXPECT_EQ(log_.last_index(), index(3));
  EXPECT_EQ(raft().commit_index(), index(3));
  // ...and a request that would replace one can only come from a broken peer (Leader Completeness): it comes
  // from the network, so the core drops it rather than truncate or crash (both the conflicting-entry path and
  // the conflicting-prev path).
  receive(3, 2, append(1, 1, entries_from(2, {2})));
  receive(3, 2, append(2, 2, {}));
  EXPECT_EQ(log_.last_index(), index(3));
  EXPECT_EQ(log_.term_at(index(2)), Term{1});
  EXPECT_EQ(log_.term_at(index(3)), Term{1});
  EXPECT_EQ(raft().commit_index(), index(3));
}

TEST_F(RaftPaperTest, FollowerCommitsNoFurtherThanTheEntriesTheRequestVouchedFor) {
  start({1, 1, 1, 1}, 1);  // 2..4 may not be the leader's
  receive(2, 2, append(1, 1, {}, 4));
  EXPECT_EQ(raft().commit_index(), index(1));
  receive(2, 2, Heartbeat{index(9)});
  EXPECT_EQ(raft().commit_index(), index(4));  // a heartbeat's commit the leader knows this log holds
}

TEST_F(RaftPaperTest, FollowerDropsDamagedEntries) {
  start({1}, 1);
  auto entries = entries_from(2, {1, 1});
  std::vector<std::byte> damaged = entries[1].payload.to_vector();
  damaged[0] = std::byte{'y'};
  entries[1].payload = Payload(damaged);
  receive(2, 1, append(1, 1, entries));
  EXPECT_TRUE(take().empty());  // the leader resends; no answer
  EXPECT_EQ(log_.last_index(), index(1));
  receive(2, 1, append(1, 1, {make_entry(3, 1)}));  // not contiguous with prev
  receive(2, 1, append(1, 1, {make_entry(2, 2)}));  // newer than the leader's term
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(log_.last_index(), index(1));
}

TEST_F(RaftPaperTest, FollowerRefusesProposals) {
  start();
  auto result = raft().propose(EntryType::command, as_bytes("x"), now_);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error(), ProposeError::not_leader);
  EXPECT_EQ(log_.last_index(), index(0));
}

TEST_F(RaftPaperTest, LeaderCommitsAnEntryOnceAMajorityHoldsIt) {
  cluster_of(5);
  start();
  elect_and_replicate();  // noop 1 committed
  ASSERT_EQ(raft().commit_index(), index(1));
  const auto proposed = raft().propose(EntryType::command, as_bytes("x"), now_);
  ASSERT_TRUE(proposed.has_value());
  (void)take();
  persist();
  receive(2, 1, accepted(2));
  EXPECT_EQ(raft().commit_index(), index(1));  // 2 of 5
  receive(3, 1, accepted(2));
  EXPECT_EQ(raft().commit_index(), index(2));  // 3 of 5
  EXPECT_TRUE(take().empty());                 // nothing more to send to 2 and 3
  EXPECT_EQ(commit_seen_, index(2));
}

TEST_F(RaftPaperTest, LeaderCommitsOnlyEntriesOfItsOwnTermByCounting) {
  // Figure 8: entry 2 of term 2 sits on a majority, yet a later leader might overwrite it; only an entry of
  // the leader's own term commits by counting, and it commits everything before it.
  start({1, 2}, 3);
  elect();  // term 4, noop at 3
  ASSERT_EQ(raft().term(), term(4));
  receive(2, 4, accepted(2));
  receive(3, 4, accepted(2));
  EXPECT_EQ(raft().commit_index(), index(0));
  receive(2, 4, accepted(3));
  EXPECT_EQ(raft().commit_index(), index(3));
}

TEST_F(RaftPaperTest, LeaderCountsItselfOnlyOnceDurable) {
  start();
  fire_election_timer();
  receive(2, 1, VoteResponse{true, true});
  receive(2, 1, VoteResponse{true, false});
  ASSERT_EQ(raft().role(), Role::leader);
  (void)take();
  // Nothing durable yet, not even the noop at 1. One follower has it: with the leader's memory, a majority,
  // with the leader's disk, not.
  receive(2, 1, accepted(1));
  EXPECT_EQ(raft().commit_index(), index(0));
  EXPECT_EQ(raft().durable_index(), index(0));
  persist();
  EXPECT_EQ(raft().durable_index(), index(1));
  EXPECT_EQ(raft().commit_index(), index(1));
}

TEST_F(RaftPaperTest, ASingleNodeLeadsOnceItsVoteIsDurableAndCommitsOnceItsEntryIs) {
  // Alone, its own vote is the majority: it counts only once durable, like any voter's.
  cluster_of(1);
  start();
  fire_election_timer();
  EXPECT_EQ(raft().term(), term(1));
  EXPECT_NE(raft().role(), Role::follower);
  persist();
  ASSERT_EQ(raft().role(), Role::leader);
  EXPECT_EQ(raft().commit_index(), index(0));  // its noop is not on disk yet
  persist();
  EXPECT_EQ(raft().commit_index(), index(1));
}

TEST_F(RaftPaperTest, LeaderReplicatesInParallelWithItsOwnDiskWrite) {
  // Dissertation §10.2.1: the leader need not wait for its own disk before sending entries.
  start();
  elect_and_replicate();
  const auto proposed = raft().propose(EntryType::command, as_bytes("x"), now_);
  ASSERT_TRUE(proposed.has_value());
  const auto out = take();
  const PersistSeq append_seq = log_.last_seq();
  ASSERT_EQ(only<AppendRequest>(out).size(), 2U);
  for (const Outgoing& request : out) EXPECT_LT(request.after, append_seq);
}

TEST_F(RaftPaperTest, CompletionForTruncatedEntriesDoesNotCount) {
  start({1}, 1);
  receive(2, 1, append(1, 1, entries_from(2, {1, 1})));  // 2..3 of term 1, not yet durable
  const PersistSeq first_append = log_.last_seq();
  receive(3, 2, append(1, 1, entries_from(2, {2, 2, 2})));  // a new leader replaces them with 2..4 of term 2
  (void)take();
  // Storage finishes the first append only: "durable up to 3 of term 1". Index 3 now holds term 2.
  raft().on_persisted(log_.make_durable(first_append), now_);
  EXPECT_EQ(raft().durable_index(), index(1));
  persist();
  EXPECT_EQ(raft().durable_index(), index(4));
}

TEST_F(RaftPaperTest, LeaderProbesAFollowerWithOneAppendAtATime) {
  start();
  elect();  // both followers probing, the first request in flight
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(raft().propose(EntryType::command, as_bytes("x"), now_).has_value());
  EXPECT_TRUE(only<AppendRequest>(take()).empty());  // until the probe is answered
  receive(2, 1, accepted(1));
  const auto out = take();
  const auto appends = only<AppendRequest>(out, 2);
  ASSERT_EQ(appends.size(), 1U);
  EXPECT_EQ(appends[0].second.prev_index, index(1));
  EXPECT_EQ(appends[0].second.entries.size(), 3U);  // batched
  EXPECT_TRUE(only<AppendRequest>(out, 3).empty());
}

TEST_F(RaftPaperTest, LeaderPipelinesUpToMaxInflightAppends) {
  config_.max_append_entries = 1;
  config_.max_inflight_appends = 3;
  start();
  elect_and_replicate();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(raft().propose(EntryType::command, as_bytes("x"), now_).has_value());
  auto out = take();
  auto appends = only<AppendRequest>(out, 2);
  ASSERT_EQ(appends.size(), 3U);
  for (std::size_t i = 0; i < appends.size(); ++i) {
    EXPECT_EQ(appends[i].second.prev_index, index(1 + i));
    EXPECT_EQ(appends[i].second.entries.size(), 1U);
  }
  receive(2, 1, accepted(3));  // acknowledges the first two: two slots free up
  out = take();
  appends = only<AppendRequest>(out, 2);
  ASSERT_EQ(appends.size(), 2U);
  EXPECT_EQ(appends[0].second.prev_index, index(4));
  EXPECT_EQ(appends[1].second.prev_index, index(5));
}

TEST_F(RaftPaperTest, LeaderBatchesEntriesUpToTheConfiguredSize) {
  config_.max_append_entries = 2;
  start();
  elect_and_replicate();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(raft().propose(EntryType::command, as_bytes("x"), now_).has_value());
  const auto appends = only<AppendRequest>(take(), 3);
  ASSERT_EQ(appends.size(), 3U);
  EXPECT_EQ(appends[0].second.entries.size(), 2U);
  EXPECT_EQ(appends[1].second.entries.size(), 2U);
  EXPECT_EQ(appends[2].second.entries.size(), 1U);
}

TEST_F(RaftPaperTest, LeaderBacktracksPastAWholeConflictingTermAtOnce) {
  // The leader (term 5) has 1:1 2:1 3:3 4:3 5:3 and appends its noop at 6; the follower holds 2:2 3:2 4:2 5:2.
  start({1, 1, 3, 3, 3}, 4);
  elect();
  ASSERT_EQ(raft().term(), term(5));
  receive(2, 5, refused(5, 2, 2));  // "term 2 at 5, since 2": the leader has no term 2, so it retries at 2
  auto appends = only<AppendRequest>(take(), 2);
  ASSERT_EQ(appends.size(), 1U);
  EXPECT_EQ(appends[0].second.prev_index, index(1));
  EXPECT_EQ(appends[0].second.entries.size(), 5U);
  // Follower 3 holds 1:1 2:1 3:1 4:1 5:1: the leader has term 1 up to 2, so the logs may agree there.
  receive(3, 5, refused(5, 1, 1));
  appends = only<AppendRequest>(take(), 3);
  ASSERT_EQ(appends.size(), 1U);
  EXPECT_EQ(appends[0].second.prev_index, index(2));
  EXPECT_EQ(appends[0].second.prev_term, term(1));
}

TEST_F(RaftPaperTest, LeaderJumpsBackToTheEndOfAShortFollowerLog) {
  start({1, 1, 1, 1}, 1);
  elect();
  receive(2, 2, refused(4, 2, 0));  // the follower has only entry 1
  const auto appends = only<AppendRequest>(take(), 2);
  ASSERT_EQ(appends.size(), 1U);
  EXPECT_EQ(appends[0].second.prev_index, index(1));
  EXPECT_EQ(appends[0].second.prev_term, term(1));
}

TEST_F(RaftPaperTest, AStaleResponseIsIgnored) {
  config_.max_append_entries = 1;
  start();
  elect_and_replicate();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(raft().propose(EntryType::command, as_bytes("x"), now_).has_value());
  (void)take();
  persist();
  receive(2, 1, accepted(4));
  ASSERT_EQ(raft().commit_index(), index(4));
  (void)take();
  // Late answers to older requests: a refusal for a prefix the follower has since matched, a smaller match.
  receive(2, 1, refused(2, 2, 0));
  receive(2, 1, accepted(2));
  EXPECT_TRUE(only<AppendRequest>(take(), 2).empty());  // no rewind, no resend
  EXPECT_EQ(raft().commit_index(), index(4));
  // And a fresh proposal still goes straight to the end: the follower was not set back to probing.
  ASSERT_TRUE(raft().propose(EntryType::command, as_bytes("y"), now_).has_value());
  const auto appends = only<AppendRequest>(take(), 2);
  ASSERT_EQ(appends.size(), 1U);
  EXPECT_EQ(appends[0].second.prev_index, index(4));
}

TEST_F(RaftPaperTest, AStaleRefusalDuringProbingIsIgnored) {
  start({1, 1, 1, 1}, 1);
  elect();  // noop at 5, probe at prev 4
  receive(2, 2, refused(4, 2, 0));
  auto appends = only<AppendRequest>(take(), 2);
  ASSERT_EQ(appends.size(), 1U);
  ASSERT_EQ(appends[0].second.prev_index, index(1));
  receive(2, 2, refused(4, 2, 0));  // a duplicate of the first refusal
  EXPECT_TRUE(only<AppendRequest>(take(), 2).empty());
}

TEST_F(RaftPaperTest, LeaderResendsTheTailAfterAHeartbeatResponseFromALaggingFollower) {
  start();
  elect_and_replicate();
  ASSERT_TRUE(raft().propose(EntryType::command, as_bytes("x"), now_).has_value());
  (void)take();  // the request carrying entry 2 to follower 2 is lost
  receive(2, 1, HeartbeatResponse{});
  const auto appends = only<AppendRequest>(take(), 2);
  ASSERT_EQ(appends.size(), 1U);  // an empty append at the end makes the follower confirm or refuse it
  EXPECT_EQ(appends[0].second.prev_index, index(2));
  EXPECT_TRUE(appends[0].second.entries.empty());
}

// --- dissertation §3.10: leadership transfer ----------------------------------------------------------------

TEST_F(RaftPaperTest, TimeoutNowMakesTargetStandImmediately) {
  start({1}, 1);
  receive(2, 1, Heartbeat{index(1)});  // in the lease of leader 2, pre-vote on: still it stands at once
  receive(2, 1, TimeoutNow{});
  EXPECT_EQ(raft().role(), Role::candidate);
  EXPECT_EQ(raft().term(), term(2));
  const auto out = take();
  const auto requests = only<VoteRequest>(out);
  ASSERT_EQ(requests.size(), 2U);
  for (const auto& [message, request] : requests) {
    EXPECT_FALSE(request.pre_vote);
    EXPECT_TRUE(request.transfer);
  }
}

TEST_F(RaftPaperTest, ATransferVoteRequestOverridesTheLeaderLease) {
  start({1}, 1);
  receive(2, 1, Heartbeat{index(1)});
  receive(3, 2, VoteRequest{index(1), term(1), false, true});
  EXPECT_EQ(raft().term(), term(2));
  const auto out = take();
  ASSERT_EQ(only<VoteResponse>(out, 3).size(), 1U);
  EXPECT_TRUE(only<VoteResponse>(out, 3)[0].second.granted);
}

TEST_F(RaftPaperTest, LeaderSendsTimeoutNowOnlyOnceTheTargetIsCaughtUp) {
  start();
  elect_and_replicate();
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(raft().propose(EntryType::command, as_bytes("x"), now_).has_value());
  (void)take();
  persist();
  ASSERT_TRUE(raft().transfer_leadership(NodeId{3}, now_).ok());
  EXPECT_TRUE(only<TimeoutNow>(take()).empty());
  receive(3, 1, accepted(2));
  EXPECT_TRUE(only<TimeoutNow>(take()).empty());
  receive(3, 1, accepted(3));
  const auto out = take();
  ASSERT_EQ(only<TimeoutNow>(out).size(), 1U);
  EXPECT_EQ(only<TimeoutNow>(out)[0].first.to, NodeId{3});
}

TEST_F(RaftPaperTest, ProposalsAreRefusedDuringTransfer) {
  start();
  elect();
  ASSERT_TRUE(raft().transfer_leadership(NodeId{2}, now_).ok());
  auto result = raft().propose(EntryType::command, as_bytes("x"), now_);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error(), ProposeError::transferring);
}

TEST_F(RaftPaperTest, TransferIsAbandonedAfterElectionTimeout) {
  start();
  elect();
  ASSERT_TRUE(raft().transfer_leadership(NodeId{2}, now_).ok());
  // Keep the leader's quorum alive while the target never catches up.
  for (Duration passed{}; passed < config_.election_timeout_min - 10ms; passed += 10ms) {
    advance(10ms);
    receive(3, 1, HeartbeatResponse{});
  }
  EXPECT_EQ(raft().transfer_target(), NodeId{2});
  advance(10ms);
  EXPECT_EQ(raft().transfer_target(), std::nullopt);
  EXPECT_EQ(raft().role(), Role::leader);
  EXPECT_TRUE(raft().propose(EntryType::command, as_bytes("x"), now_).has_value());
}

TEST_F(RaftPaperTest, TransferIsRefusedForSelfAnUnknownNodeOrByAFollower) {
  start();
  EXPECT_EQ(raft().transfer_leadership(NodeId{2}, now_).error(), TransferError::not_leader);
  elect();
  EXPECT_EQ(raft().transfer_leadership(NodeId{1}, now_).error(), TransferError::is_self);
  EXPECT_EQ(raft().transfer_leadership(NodeId{7}, now_).error(), TransferError::unknown_member);
  EXPECT_EQ(raft().transfer_target(), std::nullopt);
}

TEST_F(RaftPaperTest, MessagesNotAddressedToThisNodeOrFromStrangersAreIgnored) {
  start();
  receive(2, 5, Heartbeat{index(0)}, /*to=*/3);
  receive(9, 5, Heartbeat{index(0)});
  EXPECT_EQ(raft().term(), term(0));
  EXPECT_TRUE(take().empty());
}

// --- review findings: late messages and malformed input -------------------------------------------------------

TEST_F(RaftPaperTest, APreVoteGrantFromAnEarlierRoundDoesNotCountInTheNextOne) {
  cluster_of(5);
  start({1}, 1);
  fire_election_timer();  // asks for term 2
  receive(2, 2, VoteResponse{true, true});
  receive(3, 2, VoteResponse{true, true});
  ASSERT_EQ(raft().role(), Role::candidate);
  ASSERT_EQ(raft().term(), term(2));
  for (std::uint32_t id = 2; id <= 4; ++id) receive(id, 2, VoteResponse{false, false});
  ASSERT_EQ(raft().role(), Role::follower);
  fire_election_timer();  // asks for term 3
  ASSERT_EQ(raft().role(), Role::pre_candidate);
  // Late duplicates of the grants for term 2: they said nothing about term 3.
  receive(2, 2, VoteResponse{true, true});
  receive(3, 2, VoteResponse{true, true});
  EXPECT_EQ(raft().role(), Role::pre_candidate);
  EXPECT_EQ(raft().term(), term(2));
  receive(2, 3, VoteResponse{true, true});
  receive(3, 3, VoteResponse{true, true});
  EXPECT_EQ(raft().role(), Role::candidate);
  EXPECT_EQ(raft().term(), term(3));
}

TEST_F(RaftPaperTest, ARefusalOfARequestBeyondTheLeadersLogIsIgnored) {
  start();
  elect_and_replicate();              // follower 2 replicating, match 1
  receive(2, 1, refused(50, 50, 0));  // no such request was sent: a buggy peer or a damaged frame
  EXPECT_TRUE(only<AppendRequest>(take(), 2).empty());
  EXPECT_EQ(raft().role(), Role::leader);
  // Replication to it still works from where it was.
  ASSERT_TRUE(raft().propose(EntryType::command, as_bytes("x"), now_).has_value());
  const auto appends = only<AppendRequest>(take(), 2);
  ASSERT_EQ(appends.size(), 1U);
  EXPECT_EQ(appends[0].second.prev_index, index(1));
}

TEST_F(RaftPaperTest, FollowerDropsAnAppendWhosePrevEntryNoLeaderCouldHold) {
  start({1}, 2);
  receive(2, 2, append(0, 1, {}));  // index 0 has term 0
  receive(2, 2, append(1, 3, {}));  // an entry of a term newer than the sender's
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(log_.last_index(), index(1));
}

TEST_F(RaftPaperTest, LeaderResendsALostTimeoutNowWhenTheCaughtUpTargetAnswersAHeartbeat) {
  start();
  elect_and_replicate();
  ASSERT_TRUE(raft().transfer_leadership(NodeId{2}, now_).ok());
  ASSERT_EQ(only<TimeoutNow>(take(), 2).size(), 1U);  // lost on the way
  receive(2, 1, HeartbeatResponse{});
  EXPECT_EQ(only<TimeoutNow>(take(), 2).size(), 1U);
  receive(3, 1, HeartbeatResponse{});  // only the target is told to stand
  EXPECT_TRUE(only<TimeoutNow>(take()).empty());
}

// --- Stable storage that forgets (design.md section 2; docs/consensus.md "Rejoining after state loss") ------------

TEST_F(RaftPaperTest, LeaderRepairsAFollowerThatCameBackWithAShorterLog) {
  start();
  elect();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(raft().propose(EntryType::command, as_bytes("x"), now_).has_value());
  (void)take();
  persist();
  receive_from_boot(11, 2, 1, accepted(5));
  receive_from_boot(21, 3, 1, accepted(5));
  (void)take();
  ASSERT_EQ(raft().commit_index(), index(5));
  // Follower 2 restarts with an empty disk: its first answer comes from a new boot.
  receive_from_boot(12, 2, 1, HeartbeatResponse{});
  auto probes = only<AppendRequest>(take(), 2);
  ASSERT_EQ(probes.size(), 1U);
  EXPECT_EQ(probes[0].second.prev_index, index(5));  // a probe from the leader's log end
  receive_from_boot(12, 2, 1, refused(5, 1, 0));     // "my log ends at 0"
  probes = only<AppendRequest>(take(), 2);
  ASSERT_EQ(probes.size(), 1U);
  EXPECT_EQ(probes[0].second.prev_index, index(0));  // before: stuck probing prev = match = 5 forever
  EXPECT_EQ(probes[0].second.entries.size(), 5U);
}

TEST_F(RaftPaperTest, AnAcknowledgementFromAFollowersEarlierLifeDoesNotCount) {
  start();
  elect();
  receive_from_boot(11, 2, 1, accepted(1));
  receive_from_boot(21, 3, 1, accepted(1));
  receive_from_boot(12, 2, 1, HeartbeatResponse{});  // follower 2 restarted
  ASSERT_TRUE(raft().propose(EntryType::command, as_bytes("x"), now_).has_value());
  (void)take();
  persist();
  receive_from_boot(11, 2, 1, accepted(2));  // sent before the restart, delivered late: its disk may be gone
  EXPECT_EQ(raft().commit_index(), index(1));
  receive_from_boot(12, 2, 1, accepted(2));
  EXPECT_EQ(raft().commit_index(), index(2));
}

TEST_F(RaftPaperTest, AnEmptyNodeInAClusterWithAHistoryNeitherVotesNorStandsUntilItCaughtUp) {
  start({}, 0, std::nullopt, Standing::fresh);
  fire_election_timer();
  EXPECT_EQ(raft().role(), Role::follower);
  EXPECT_EQ(only<StandingQuery>(take()).size(), 2U);
  answer(2, 5, Standing::member, false, 10);
  answer(3, 5, Standing::member, true, 12);
  EXPECT_EQ(raft().standing(), Standing::recovering);
  // It may have voted in term 5 in the life it forgot: it holds that term with a vote it cannot give again.
  EXPECT_EQ(raft().term(), term(5));
  EXPECT_EQ(raft().voted_for(), kForgottenVote);
  receive(2, 6, VoteRequest{index(20), term(5), false, false});
  EXPECT_FALSE(only<VoteResponse>(take(), 2).at(0).second.granted);
  EXPECT_EQ(raft().voted_for(), std::nullopt);  // term 6 adopted, no vote in it
  receive(3, 6, append(0, 0, entries_from(1, {1, 1, 2, 2, 2, 2, 2, 2, 5, 5})));
  (void)take();
  persist();
  EXPECT_EQ(raft().standing(), Standing::recovering);  // term 6 has no entry of its own in our log yet
  receive(3, 6, append(10, 5, entries_from(11, {6})));
  (void)take();
  persist();
  EXPECT_EQ(raft().standing(), Standing::member);
  EXPECT_EQ(log_.hard_state().standing, Standing::member);
  now_ += config_.election_timeout_max;  // leader 3 went silent: no stickiness in the way
  receive(2, 7, VoteRequest{index(11), term(6), false, false});
  EXPECT_TRUE(only<VoteResponse>(take(), 2).at(0).second.granted);
}

TEST_F(RaftPaperTest, ARecoveringNodeCatchesUpToWhatTheLeaderHeldWhenItAnswered) {
  start({1, 1}, 3, NodeId{2}.value(), Standing::recovering);
  (void)take();
  fire_election_timer();
  answer(2, 3, Standing::member, true, 8);
  answer(3, 3, Standing::member, false, 6);
  EXPECT_EQ(raft().voted_for(), NodeId{2});  // its vote in term 3 survived: kept as it is
  receive(2, 3, append(2, 1, entries_from(3, {3, 3, 3})));
  (void)take();
  persist();
  EXPECT_EQ(raft().standing(), Standing::recovering);  // index 5 < 8: the leader may count acks of our past life
  receive(2, 3, append(5, 3, entries_from(6, {3, 3, 3})));
  (void)take();
  persist();
  EXPECT_EQ(raft().standing(), Standing::member);
}

TEST_F(RaftPaperTest, AnEmptyNodeAmongEmptyNodesStartsANewCluster) {
  start({}, 0, std::nullopt, Standing::fresh);
  answer(2, 0, Standing::member, false, 0);  // it may only lag behind a cluster whose history this node forgot
  EXPECT_EQ(raft().standing(), Standing::fresh);
  answer(3, 0, Standing::fresh, false, 0);  // every member without history: no majority ever voted
  EXPECT_EQ(raft().standing(), Standing::member);
  fire_election_timer();
  EXPECT_EQ(raft().role(), Role::pre_candidate);
}

TEST_F(RaftPaperTest, ARecoveringNodeRefusesPreVotesAndNeverStands) {
  start({1, 2}, 2, std::nullopt, Standing::recovering);
  fire_election_timer();
  fire_election_timer();
  EXPECT_EQ(raft().role(), Role::follower);
  EXPECT_EQ(raft().term(), term(2));
  receive(2, 3, VoteRequest{index(9), term(2), true, false});
  const auto answers = only<VoteResponse>(take(), 2);
  ASSERT_EQ(answers.size(), 1U);
  EXPECT_FALSE(answers[0].second.granted);
  receive(2, 2, TimeoutNow{});
  EXPECT_EQ(raft().role(), Role::follower);
}

TEST_F(RaftPaperTest, WhenEveryMemberAnswersAndTooFewAreWholeANodeStandsOnItsLog) {
  start({1, 2}, 2, std::nullopt, Standing::recovering);
  answer(2, 3, Standing::recovering, false, 4);
  EXPECT_EQ(raft().standing(), Standing::recovering);  // node 3 may still hold what was lost
  answer(3, 4, Standing::recovering, false, 1);
  EXPECT_EQ(raft().standing(), Standing::member);
  EXPECT_EQ(raft().term(), term(4));
  EXPECT_EQ(raft().voted_for(), kForgottenVote);
  Ready ready;
  raft().take_ready(ready);
  EXPECT_FALSE(ready.notices.empty());  // the possible loss is said loudly
}

TEST_F(RaftPaperTest, ASingleNodeClusterAlwaysStands) {
  cluster_of(1);
  start({1, 1}, 1, std::nullopt, Standing::recovering);
  EXPECT_EQ(raft().standing(), Standing::member);
  fire_election_timer();
  persist();
  EXPECT_EQ(raft().role(), Role::leader);
}

TEST_F(RaftPaperTest, TermsThatCouldWrapAroundAreDropped) {
  start({1}, 1);
  receive(2, std::uint64_t{1} << 63U, Heartbeat{index(0)});
  receive(2, ~std::uint64_t{0}, VoteRequest{index(9), term(9), false, false});
  EXPECT_TRUE(take().empty());
  EXPECT_EQ(raft().term(), term(1));
}

TEST_F(RaftPaperTest, ARepeatedVoteRequestDoesNotRewriteTheHardState) {
  start({1}, 1);
  receive(2, 2, VoteRequest{index(1), term(1), false, false});
  const PersistSeq after_first = log_.last_seq();
  receive(2, 2, VoteRequest{index(1), term(1), false, false});
  const auto votes = only<VoteResponse>(take(), 2);
  ASSERT_EQ(votes.size(), 2U);
  EXPECT_TRUE(votes[1].second.granted);
  EXPECT_EQ(log_.last_seq(), after_first);
}

}  // namespace
}  // namespace cohort::consensus

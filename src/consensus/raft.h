#pragma once
// The consensus core: Raft (Ongaro's dissertation) as a single-threaded, sans-I/O state machine.
//
// Inputs: tick(now), step(message, now), propose(...), transfer_leadership(...), on_persisted(completion).
// Outputs: writes through the LogStore (which only queues them), and the Ready batch taken by take_ready():
// messages to send, each marked with the PersistSeq that must be durable before it leaves, and the commit index.
//
// The driver's contract (the runtime and the simulator obey it alike):
//  1. Hand every input to the core on one thread, with a monotonic `now`.
//  2. After a batch of inputs (one event-loop turn), call take_ready(). Send each message only once storage
//     has reported PersistCompletion.seq >= message.after. Messages may be sent in any order; the protocol
//     tolerates loss, duplication and reordering.
//  3. Report storage completions with on_persisted(), in sequence order.
//  4. Entries up to Ready::commit may be applied, in log order, reading them from the LogStore.
// Nothing here reads a clock, sleeps, does I/O, or draws randomness other than from the seed it was given.

#include <array>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/random.h"
#include "common/result.h"
#include "common/strong_id.h"
#include "consensus/log.h"
#include "consensus/messages.h"

namespace cohort::consensus {

using Duration = std::chrono::nanoseconds;
/// Monotonic time since an arbitrary origin, as the driver passes it in.
using Time = std::chrono::nanoseconds;

struct Config {
  NodeId id;
  std::vector<NodeId> members;  // every voting member, this node included
  Duration heartbeat_interval = std::chrono::milliseconds(50);
  Duration election_timeout_min = std::chrono::milliseconds(500);
  Duration election_timeout_max = std::chrono::milliseconds(1000);  // exclusive
  std::size_t max_append_entries = 1024;                            // per AppendRequest
  std::size_t max_append_bytes = 1U << 20U;  // payload bytes per AppendRequest (at least one entry is sent)
  std::size_t max_inflight_appends = 8;      // pipelined AppendRequests per follower
  // Install snapshot: bytes per SnapshotChunk, and chunks sent ahead of the follower's acknowledgement. The
  // acknowledgements pace the transfer: a follower or a connection that falls behind slows the leader's sending.
  std::size_t snapshot_chunk_bytes = std::size_t{1} << 20U;
  std::size_t max_inflight_snapshot_chunks = 4;
  // With both on (the default), a node that knows no live leader stands promptly: docs/consensus.md, "Prompt
  // elections". Without either, no stickiness guards a working leader, and every node waits out a whole timeout.
  bool pre_vote = true;
  bool check_quorum = true;
  // This life's boot id, stamped on every message: it must be larger than any earlier life's of the same node (the
  // node uses its wall clock at start, the simulator its incarnation count), since a leader takes a smaller one for
  // a message of a life that is over. 0: drawn from the seed, for a core that never restarts.
  std::uint64_t boot = 0;
};

/// A node that knows no live leader pre-votes after a delay drawn uniformly from [0, this many heartbeat intervals):
/// 150 ms by default. Wide enough that nodes starting together rarely stand within one pre-vote and vote round of
/// each other (a few round trips and one fsync), short enough for a recovery within a few hundred milliseconds.
inline constexpr int kPromptElectionSpreadHeartbeats = 3;

/// Problems with a Config, for the node to refuse at start.
std::optional<std::string> validate(const Config& config);

enum class Role : std::uint8_t { follower, pre_candidate, candidate, leader };
const char* to_string(Role role) noexcept;

struct Outgoing {
  Message message;
  PersistSeq after = 0;  // send only once storage has made everything up to this sequence durable
};

struct Ready {
  /// What both message vectors (the core's and the driver's, swapped at every take_ready) hold from the start: a
  /// busy turn's messages, so that the steady state never meets a new high-water mark and allocates.
  static constexpr std::size_t kReservedMessages = 64;

  std::vector<Outgoing> messages;
  LogIndex commit;  // entries up to here are committed (never decreases)
  // A snapshot this follower installed from its leader since the last call: its log now starts after it, and the
  // installer (set_installer) restored it. The driver counts it as its newest snapshot (storage has written it).
  SnapshotPtr installed;
  // Rare events an operator must see (a change of standing, a possible loss of acknowledged entries), one line
  // each, for the driver's log. Empty on every ordinary turn.
  std::vector<std::string> notices;
};

enum class ProposeError : std::uint8_t {
  not_leader,
  transferring,  // a leadership transfer is under way; retry at the new leader
};

enum class TransferError : std::uint8_t { not_leader, unknown_member, is_self };

/// What a follower calls on a snapshot it received whole and intact, before it resets its log to the snapshot's
/// position: the layer above restores its state from it. Returns why it cannot (the install is then dropped, and the
/// log left as it was), or an empty string.
class SnapshotInstaller {
 public:
  virtual ~SnapshotInstaller() = default;
  virtual std::string restore(const Snapshot& snapshot) = 0;
};

class Raft {
 public:
  /// Restores term, vote and log from `log`; starts as a follower whose election timer starts at `now`.
  /// `committed`: an index known committed (the snapshot the node restored, at most the log's last index).
  /// It knows no live leader yet, so it pre-votes after a short random delay (kPromptElectionSpreadHeartbeats), at
  /// once if it is the only voter. Where a leader lives, its followers ignore that pre-vote (stickiness), and its next
  /// heartbeat makes this node follow.
  Raft(Config config, LogStore& log, std::uint64_t seed, Time now, LogIndex committed = LogIndex{});

  void tick(Time now);
  void step(const Message& message, Time now);
  /// Appends an entry at the leader. Replication leaves with the next take_ready(), batched with the others.
  Result<LogIndex, ProposeError> propose(EntryType type, ByteSpan payload, Time now);
  /// Brings `target` up to date and tells it to stand for election at once. Proposals are refused meanwhile;
  /// the attempt ends when another leader appears or after an election timeout.
  Status<TransferError> transfer_leadership(NodeId target, Time now);
  void on_persisted(const PersistCompletion& completion, Time now);
  /// The newest snapshot of the replicated state, at a committed position: what this node sends, as leader, to a
  /// follower that needs entries before the log's first. The driver offers each one it takes or loads before it
  /// compacts the log up to it.
  void offer_snapshot(SnapshotPtr snapshot);
  const SnapshotPtr& snapshot() const noexcept { return snapshot_; }
  /// Removes the log's entries up to `up_to` (or fewer: LogStore::compact), which the offered snapshot must cover.
  /// Through the core, so its writes are sequenced with the core's own.
  void compact(LogIndex up_to);
  /// Without one, this node refuses every snapshot sent to it (it answers nothing, and stays behind).
  void set_installer(SnapshotInstaller* installer) noexcept { installer_ = installer; }

  /// Moves the outputs accumulated since the last call into `out` (whose vectors are reused).
  void take_ready(Ready& out);
  /// Hands back a message the driver has sent (or dropped): an AppendRequest's vector of entries is kept for the
  /// next one, so steady replication allocates nothing. Optional; a driver that never calls it only allocates more.
  void recycle(Message&& message);

  Role role() const noexcept { return role_; }
  Term term() const noexcept { return term_; }
  std::optional<NodeId> voted_for() const noexcept { return voted_for_; }
  std::optional<NodeId> leader() const noexcept { return leader_; }
  /// Follower: when the leader of term() was last heard from (an append or a heartbeat).
  Time last_leader_contact() const noexcept { return last_leader_contact_; }
  LogIndex commit_index() const noexcept { return commit_; }
  LogIndex durable_index() const noexcept { return durable_index_; }
  NodeId id() const noexcept { return config_.id; }
  const Config& config() const noexcept { return config_; }
  std::optional<NodeId> transfer_target() const noexcept { return transfer_target_; }
  /// Since this Raft was made, for metrics: elections this node stood in (as candidate, in a new term) and won.
  std::uint64_t elections_started() const noexcept { return elections_started_; }
  std::uint64_t elections_won() const noexcept { return elections_won_; }
  /// Leader: the highest index `follower` is known to hold durably, matching this log; nullopt elsewhere.
  std::optional<LogIndex> match_index(NodeId follower) const;
  /// Whether this node votes and stands (member), or first learns where the cluster is (fresh, recovering).
  Standing standing() const noexcept { return standing_; }
  /// This life's boot id, stamped on every message (Message::boot).
  std::uint64_t boot() const noexcept { return boot_; }
  /// Leader: the follower whose log matches furthest (recently heard from ones first), the natural successor for
  /// a graceful stop; nullopt on a non-leader or a single-node cluster.
  std::optional<NodeId> best_transfer_target() const;

 private:
  // Replication state of one follower, kept by the leader.
  struct Progress {
    NodeId id;
    LogIndex match;  // highest index known to match the leader's log, durably on the follower
    LogIndex next;   // next index to send. Invariant: match < next <= last_index + 1
    // probing: one AppendRequest at a time, until a response shows where the logs agree;
    // replicating: up to max_inflight_appends pipelined requests, `next` advanced optimistically.
    bool probing = true;
    std::vector<LogIndex> inflight;  // last index of each pipelined request not yet acknowledged, ascending
    Time last_heard{};               // its last answer (check-quorum)
    // The follower's newest boot id (0: not heard from yet): answers from an older boot were sent by a life whose
    // log may be gone, and are dropped.
    std::uint64_t boot = 0;
    // Set while the follower needs entries before the log's first: it is sent this snapshot instead, and then
    // the log after it. No AppendRequest leaves meanwhile.
    struct Install {
      SnapshotPtr snapshot;
      std::uint64_t sent = 0;   // bytes sent; invariant: acked <= sent <= size
      std::uint64_t acked = 0;  // bytes the follower said it holds
      bool probing = true;      // one empty chunk out, asking where to resume
      int stalled_rounds = 0;   // heartbeat answers in a row with no progress: lost chunks are sent again
      // After sending again from `acked`, not again before the follower holds what had been sent by then.
      std::uint64_t resent_up_to = 0;
    };
    std::optional<Install> install;
  };

  // A StandingAnswer kept by a node that is not a member yet: the latest from each other member, this life.
  struct Answer {
    NodeId from;
    Term term;
    Standing standing = Standing::member;
    bool leader = false;
    LogIndex last_index;
    std::uint64_t boot = 0;  // the sender's life that answered
  };

  // Role changes.
  void become_follower(Term term, std::optional<NodeId> leader, Time now);
  void become_pre_candidate(Time now);
  void become_candidate(Time now, bool transfer);
  void become_leader(Time now);

  // Handlers, by message.
  void handle_vote_request(const Message& message, const VoteRequest& request, Time now);
  void handle_vote_response(const Message& message, const VoteResponse& response, Time now);
  void handle_append_request(const Message& message, const AppendRequest& request, Time now);
  void handle_append_response(const Message& message, const AppendResponse& response, Time now);
  void handle_heartbeat(const Message& message, const Heartbeat& heartbeat, Time now);
  void handle_heartbeat_response(const Message& message, Time now);
  void handle_standing_answer(const Message& message, const StandingAnswer& answer, Time now);
  void handle_snapshot_chunk(const Message& message, const SnapshotChunk& chunk, Time now);
  void handle_snapshot_ack(const Message& message, const SnapshotAck& ack, Time now);
  // Follower: the snapshot being received is whole and intact: install it, unless the log already holds it.
  void finish_snapshot(NodeId leader);

  // Standing (docs/consensus.md, "Rejoining after state loss").
  void query_standing(Time now);
  void decide_standing(Time now);
  // Fresh until now, this node is a member of a new cluster: it waits for the others to be members too before it
  // stands promptly (unconfirmed_), a whole election timeout at most.
  void join_new_cluster(Time now);
  void maybe_rejoin();
  void set_standing(Standing standing, std::string notice);
  enum class BootCheck : std::uint8_t { same, restarted, stale };
  BootCheck note_boot(Progress& progress, std::uint64_t boot);
  // Leader.
  bool send_append(Progress& progress, bool send_empty);
  void send_snapshot_chunks(Progress& progress);
  void send_snapshot_probe(Progress& progress);
  void replicate_to(Progress& progress);
  void broadcast_appends();
  void broadcast_heartbeats();
  void maybe_commit();
  void maybe_finish_transfer(Progress& progress);
  Progress* progress_of(NodeId id);

  // Helpers.
  // Whether the leader's log holds what `progress.next` needs (the entry before it included), so an
  // AppendRequest can be built; else the follower gets the snapshot.
  bool needs_snapshot(const Progress& progress) const { return progress.next.prev() < log_.base().index; }
  void set_term(Term term);
  void vote_for(NodeId candidate);
  void persist_hard_state();
  void send(NodeId to, Message::Body body, PersistSeq after);
  bool in_leader_lease(Time now) const;
  // Whether this node answers a leader's appends and heartbeats: a member does, and a node that lost its state
  // does once it holds its vote floor (it then knows no term it promised is above the leader's).
  bool acknowledges() const noexcept { return standing_ == Standing::member || vote_floor_.has_value(); }
  bool log_up_to_date(LogIndex last_index, Term last_term) const;
  LogIndex last_index() const { return log_.last_index(); }
  Term last_term() const;
  Term term_at(LogIndex index) const;
  std::size_t quorum() const { return config_.members.size() / 2 + 1; }
  void start_election(Time now, bool transfer);
  // The (pre-)vote request of the current round to `member`: sent when the round starts, and again every heartbeat
  // interval to members that have not answered (a request lost, or sent before the connection to it was up).
  void request_vote(NodeId member);
  // Election timer. The full randomized timeout [min, max): after a (pre-)election round of its own, a vote granted,
  // a higher term heard from a non-leader.
  void reset_election_timer(Time now);
  // No live leader known (a start, a leader that stepped down): stand after a short random delay.
  void schedule_prompt_election(Time now);
  // Heard from the leader of term_: it is presumed dead once silent for election_timeout_min (when the others'
  // stickiness lapses too), and this node stands a short random delay after that.
  void note_leader_contact(Time now);
  bool prompt_elections() const noexcept { return config_.pre_vote && config_.check_quorum; }
  Duration random_spread();
  void check_invariants() const;

  Config config_;
  LogStore& log_;
  Random random_;

  // Persistent state (mirrored in the LogStore's HardState). term_ never decreases; voted_for_ is the
  // candidate this node voted for in term_, if any. Both are saved through the LogStore before any message
  // that depends on them: every outgoing message waits for hard_state_seq_.
  Term term_;
  std::optional<NodeId> voted_for_;
  PersistSeq hard_state_seq_ = 0;  // sequence of the last HardState write
  PersistSeq last_seq_ = 0;        // sequence of the last write of any kind

  Role role_ = Role::follower;
  std::optional<NodeId> leader_;  // the leader of term_, once known
  // Invariant: commit_ never decreases, and never exceeds last_index() on a leader.
  LogIndex commit_;
  // Highest index known durable in this node's own log (storage completion whose (index, term) still match).
  // A leader counts itself towards a commit only up to here.
  LogIndex durable_index_;

  // Timers. election_deadline_: when this node, not leading, stands next (a new round, for a (pre-)candidate).
  // Following a leader, election_timeout_min plus a short random delay after the leader was last heard from;
  // knowing none since a start or a step-down, the short delay alone; otherwise randomized in [min, max).
  Time election_deadline_{};
  Time last_leader_contact_{};  // follower: last time the leader of term_ was heard from
  Time next_vote_request_{};    // (pre-)candidate: when the requests not answered yet are sent again
  Time next_heartbeat_{};       // leader

  // Elections: votes received in the current (pre-)election, granted or refused, by voter.
  std::vector<std::pair<NodeId, bool>> votes_;
  bool transfer_election_ = false;  // candidate: stands because its leader handed over (TimeoutNow)

  // Leader only.
  std::vector<Progress> progress_;  // one per other member, in member order
  std::uint64_t elections_started_ = 0;
  std::uint64_t elections_won_ = 0;
  bool replicate_pending_ = false;  // new entries not yet offered to followers
  std::optional<NodeId> transfer_target_;
  Time transfer_deadline_{};

  // Standing. Invariant: standing_ == member whenever this node votes, pre-votes or stands; in a single-node
  // cluster it is always member (no one to ask). While not a member, vote_floor_ is the highest term a majority
  // of members in good standing reported once known (this node holds at least that term, with kForgottenVote in
  // it). It rejoins once its log durably matches a leader of a term >= vote_floor_ far enough (maybe_rejoin).
  Standing standing_ = Standing::member;
  std::uint64_t boot_ = 0;
  std::vector<Answer> answers_;
  // This life made the cluster new (decide_standing): the life of each other member counted then, every one of them
  // fresh and empty. Asked by such a life again, this node says so (StandingAnswer::founded_with_asker).
  std::vector<std::pair<NodeId, std::uint64_t>> founders_;
  // A new cluster's member (fresh until now) does not stand promptly until every other member has answered it as a
  // member: the ones it still waits for. It asks them every heartbeat interval meanwhile (docs/consensus.md, "Prompt
  // elections", the stall).
  std::vector<NodeId> unconfirmed_;
  std::optional<Term> vote_floor_;
  LogIndex leader_match_;  // follower: the highest match acknowledged to the leader of term_
  Time next_standing_query_{};

  // Snapshots. snapshot_ covers at least the log's base (the driver compacts only up to a snapshot it offered).
  SnapshotPtr snapshot_;
  SnapshotInstaller* installer_ = nullptr;
  // Follower: the snapshot being received from the leader, kept across leaders and dropped connections so an
  // install resumes where it stopped. Its bytes are the first `bytes.size()` of a snapshot of that size.
  struct Receiving {
    LogBase position;
    std::uint64_t size = 0;
    std::uint64_t checksum = 0;
    std::vector<std::byte> bytes;
    // Chunks that arrived before one they follow (messages overtake one another), by offset, each after
    // bytes.size(): appended once the bytes before them are in. At most kMaxAheadBytes of them.
    std::map<std::uint64_t, std::vector<std::byte>> ahead;
    std::size_t ahead_bytes = 0;
  };
  static constexpr std::size_t kMaxAheadBytes = std::size_t{16} << 20U;
  std::optional<Receiving> receiving_;

  Ready ready_;
  std::vector<LogIndex> match_scratch_;  // maybe_commit's working space, so an acknowledgement allocates nothing
  // Entry vectors of sent AppendRequests (recycle()), empty, their capacity kept: send_append takes one first.
  std::vector<std::vector<Entry>> spare_entries_;
  static constexpr std::size_t kMaxSpareEntryVectors = 64;
};

}  // namespace cohort::consensus

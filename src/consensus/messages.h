#pragma once
// Messages between consensus cores. The runtime encodes them as frames (src/protocol); the simulator passes
// them as they are.

#include <cstdint>
#include <variant>
#include <vector>

#include "common/strong_id.h"
#include "consensus/log.h"

namespace cohort::consensus {

/// A request for a vote (pre_vote: "would you vote for me at `term`?", which changes no one's term).
struct VoteRequest {
  LogIndex last_index;
  Term last_term;
  bool pre_vote = false;
  bool transfer = false;  // sent after a TimeoutNow: overrides leader stickiness
  friend bool operator==(const VoteRequest&, const VoteRequest&) = default;
};

struct VoteResponse {
  bool granted = false;
  bool pre_vote = false;
  friend bool operator==(const VoteResponse&, const VoteResponse&) = default;
};

struct AppendRequest {
  LogIndex prev_index;
  Term prev_term;
  LogIndex commit;
  std::vector<Entry> entries;
  friend bool operator==(const AppendRequest&, const AppendRequest&) = default;
};

struct AppendResponse {
  bool success = false;
  LogIndex match_index;     // success: the follower's log matches the leader's up to here (durably)
  LogIndex rejected_prev;   // failure: the prev_index of the request refused
  LogIndex conflict_index;  // failure: where the leader should look next (see the core)
  Term conflict_term;       // failure: the follower's term at rejected_prev, 0 if it has no such entry
  friend bool operator==(const AppendResponse&, const AppendResponse&) = default;
};

/// Leader to follower while idle: keeps the follower's election timer from firing and carries a commit index
/// the follower is known to have (min of its match and the leader's commit).
struct Heartbeat {
  LogIndex commit;
  friend bool operator==(const Heartbeat&, const Heartbeat&) = default;
};

struct HeartbeatResponse {
  friend bool operator==(const HeartbeatResponse&, const HeartbeatResponse&) = default;
};

/// Install snapshot, leader to follower: a piece of the snapshot at `position` (identified by it and its checksum),
/// for a follower that needs entries the leader has compacted away. An empty chunk at offset 0 asks where to
/// resume: the follower keeps what it received of a snapshot across dropped connections and leaders.
struct SnapshotChunk {
  LogBase position;
  std::uint64_t size = 0;      // of the whole snapshot
  std::uint64_t checksum = 0;  // of the whole snapshot
  std::uint64_t offset = 0;    // of `data` in it
  std::vector<std::byte> data;
  friend bool operator==(const SnapshotChunk&, const SnapshotChunk&) = default;
};

/// The follower holds the first `received` bytes of that snapshot: the leader sends on from there. Once the
/// follower has it whole, it installs it and answers with an AppendResponse matching up to its position instead.
struct SnapshotAck {
  LogBase position;
  std::uint64_t checksum = 0;
  std::uint64_t received = 0;
  friend bool operator==(const SnapshotAck&, const SnapshotAck&) = default;
};

/// Leadership transfer: "start an election now", from the leader to its chosen successor.
struct TimeoutNow {
  friend bool operator==(const TimeoutNow&, const TimeoutNow&) = default;
};

/// From a node that is not a member in good standing (Standing::fresh or recovering) to every other member:
/// "where is the cluster?". Everyone answers, whatever its own standing. Neither this nor its answer moves
/// anyone's term.
struct StandingQuery {
  friend bool operator==(const StandingQuery&, const StandingQuery&) = default;
};

struct StandingAnswer {
  std::uint64_t asker_boot = 0;  // the boot of the query answered: answers to an earlier life do not count
  Standing standing = Standing::member;
  bool leader = false;  // the sender leads its term (Message::term)
  LogIndex last_index;  // the sender's log end when it answered
  // The sender made this cluster new (every other member answered it fresh and without history) counting the asker
  // in the life that asks now (the query's boot): that life started empty and has forgotten nothing since, so the
  // asker is a member at once (docs/consensus.md, "Rejoining after state loss").
  bool founded_with_asker = false;
  friend bool operator==(const StandingAnswer&, const StandingAnswer&) = default;
};

/// Terms at or above this are refused from the network: a term can then never wrap around.
inline constexpr std::uint64_t kTermLimit = std::uint64_t{1} << 63U;

struct Message {
  using Body = std::variant<VoteRequest, VoteResponse, AppendRequest, AppendResponse, Heartbeat, HeartbeatResponse,
                            TimeoutNow, StandingQuery, StandingAnswer, SnapshotChunk, SnapshotAck>;
  NodeId from;
  NodeId to;
  Term term;  // the sender's current term (for a pre-vote request: the term it would stand in)
  Body body;
  // The sender's life: larger in every later start of a node (Config::boot). A leader that sees a follower's boot
  // grow knows the follower restarted and may have lost what it acknowledged (a replaced disk): it repairs it from
  // scratch; a smaller one is a late message from a life that is over, and is dropped.
  std::uint64_t boot = 0;
  friend bool operator==(const Message&, const Message&) = default;
};

const char* type_name(const Message& message) noexcept;

}  // namespace cohort::consensus

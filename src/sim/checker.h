#pragma once
// Raft's safety invariants (Figure 3 of the paper), checked incrementally while the simulator drives the real
// cores. Each check costs time proportional to what changed in one step, so it can run after every step of a
// long run; the first violation is kept, described, and stops the run.
//
//  - Election Safety: at most one leader per term, ever (every (term, leader) seen is remembered).
//  - Log Matching: an (index, term) names one entry, with one predecessor term, across all nodes and all
//    time. By induction on the index, two logs sharing an (index, term) are then identical up to it.
//  - Leader Completeness: a node that becomes leader of term T holds every entry known committed in an
//    earlier term.
//  - State Machine Safety: whenever a node's commit index covers i, its entry i is the globally committed
//    entry i. A newly committed entry is durable on a majority, and committed entries stay durable on a
//    majority across crashes (a node alone may lose non-durable writes, never a committed majority), counting
//    as holders the nodes that lost state and do not vote until they caught up.
//  - The durability contract when a message leaves a node, and terms below 2^63 (forged ones are dropped).
//  - Within one incarnation of a node the commit index never decreases, and no write truncates below it.
//  - Logs start after a base once compacted or reset by an install: the entries up to it are covered by a snapshot.
//    A base is always a committed position with the committed entry's term; entries at or below a node's base are
//    not compared (its snapshot stands for them, and the replicas' state hashes are compared instead: cluster.h),
//    and count as durable on that node when its durable base covers them.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "consensus/log.h"
#include "consensus/memory_log.h"
#include "consensus/raft.h"

namespace cohort::sim {

class Checker {
 public:
  explicit Checker(std::size_t cluster_size) : cluster_size_(cluster_size) {}

  bool failed() const noexcept { return !failure_.empty(); }
  const std::string& failure() const noexcept { return failure_; }
  /// Keeps the first violation only: later ones are usually its consequences.
  void fail(std::string description);

  /// Every append a core makes, before it reaches the node's store (which still holds the log before it).
  void on_append(NodeId node, const consensus::LogStore& log, std::span<const consensus::Entry> entries);
  /// Every truncation a core makes; `commit` is the core's commit index at that moment.
  void on_truncate(NodeId node, LogIndex after, LogIndex commit);

  /// After every step of a node: its role and term, and its commit index moving from `previous` to `commit`.
  /// `stores` are every node's store, for the durability checks.
  void on_step(NodeId node, consensus::Role role, Term term, bool became_leader, LogIndex previous, LogIndex commit,
               const consensus::LogStore& log, std::span<const consensus::MemoryLogStore* const> stores);

  /// The core's belief that its log is durable up to `claimed` is true: the store's durable log reaches that far
  /// and holds the same entry there as the log the core sees (a completion for since-truncated entries must
  /// not count).
  void check_durable_claim(NodeId node, LogIndex claimed, const consensus::MemoryLogStore& store);

  /// A message `node` releases: the durability contract holds at the moment it leaves (raft.h). Its term is
  /// durable (a pre-vote's asks about the next one), a granted vote is durable, and an acknowledged match lies
  /// within the durable log. `model` is the node's storage model.
  void on_release(NodeId node, const consensus::Message& message, const consensus::MemoryLogStore& model);

  /// Every committed entry is durable on a majority (after crashes, and at the end of a run). A node that lost
  /// state and has not caught up since (durably fresh or recovering) counts as holding every entry: it votes for
  /// no one, so no election can leave the entry out through it.
  void check_committed_durable(std::span<const consensus::MemoryLogStore* const> stores);
  /// Every node lost power at once (sync policy none), and `stores` are what each kept: the committed entries from
  /// the first that no majority holds on are forgotten (a later leader may hold them, and commits them again, or
  /// not). Returns the index of the last committed entry kept.
  LogIndex forget_lost_commits(std::span<const consensus::MemoryLogStore* const> stores);

  std::size_t committed() const noexcept { return committed_.size(); }
  /// The term of the committed entry at `index`, if it is known committed.
  std::optional<Term> committed_term(LogIndex index) const;
  std::size_t leaders_seen() const noexcept { return leaders_.size(); }

 private:
  struct Key {
    std::uint64_t index;
    std::uint64_t term;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& key) const noexcept {
      return std::hash<std::uint64_t>{}(key.index * 0x9E3779B97F4A7C15ULL ^ key.term);
    }
  };
  struct Record {
    Term previous_term;  // term of the entry before it in every log that holds it
    consensus::Entry entry;
  };
  struct Committed {
    consensus::Entry entry;
    // An upper bound of the term in which the entry was committed: the term of the first node seen to commit
    // it. Leader Completeness is checked for leaders of later terms only, so an upper bound never false-alarms.
    Term observed_in;
  };

  /// `lost_state_holds`: a node that lost state counts as a holder (it votes for no one until it caught up).
  bool durable_on_majority(std::size_t position, std::span<const consensus::MemoryLogStore* const> stores,
                           bool lost_state_holds = true) const;

  std::size_t cluster_size_;
  std::string failure_;
  std::unordered_map<std::uint64_t, NodeId> leaders_;  // by term
  std::unordered_map<Key, Record, KeyHash> entries_;
  std::vector<Committed> committed_;  // position i holds index i + 1
};

}  // namespace cohort::sim

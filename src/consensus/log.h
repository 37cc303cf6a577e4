#pragma once
// Log entries and the narrow storage interface the consensus core is written against. The in-memory store
// (memory_log.h) serves the simulator; the durable segmented store (the storage layer) serves the node.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/bytes.h"
#include "common/strong_id.h"

namespace cohort::consensus {

enum class EntryType : std::uint8_t {
  noop = 1,     // appended by every new leader at once: lets it commit entries of earlier terms
  command = 2,  // an opaque payload for the layers above
};

/// Whether `type` is one this build knows: storage refuses a record of any other as damaged.
constexpr bool is_known(EntryType type) noexcept { return type == EntryType::noop || type == EntryType::command; }

struct Entry {
  LogIndex index;
  Term term;
  EntryType type = EntryType::command;
  // Computed once by the leader when it appends the entry, over index, term, type and payload; it travels
  // with the entry and is verified by every follower before the entry is stored.
  std::uint64_t checksum = 0;
  std::vector<std::byte> payload;

  friend bool operator==(const Entry&, const Entry&) = default;
};

std::uint64_t compute_checksum(LogIndex index, Term term, EntryType type, ByteSpan payload) noexcept;
inline bool checksum_ok(const Entry& entry) noexcept {
  return entry.checksum == compute_checksum(entry.index, entry.term, entry.type, entry.payload);
}

/// Whether a node may vote and stand for election (design.md section 2, docs/consensus.md "Rejoining after state
/// loss"). Raft assumes stable storage never forgets; a node that may have forgotten something it acknowledged
/// or a vote it cast must first learn from the others where the cluster is.
enum class Standing : std::uint8_t {
  member = 0,      // votes and stands
  fresh = 1,       // an empty data directory: a new cluster's first start, or a node whose disk was replaced
  recovering = 2,  // may have lost acknowledged entries or votes: catches up first, then becomes a member
};
const char* to_string(Standing standing) noexcept;

/// A vote that stands for "this node may have voted in this term, for whom it no longer knows": a recovering
/// node holds it for the highest term the others reported, so it never votes twice in a term it forgot.
inline constexpr NodeId kForgottenVote{0xFFFF'FFFFU};

/// The durable part of a node's state besides the log. Invariant (enforced by the core): a message of term
/// t leaves the node only after a HardState with term >= t, and the vote it carries, is durable; a node whose
/// durable standing is not `member` neither votes nor stands.
struct HardState {
  Term term;
  std::optional<NodeId> voted_for;
  Standing standing = Standing::member;
  friend bool operator==(const HardState&, const HardState&) = default;
};

/// Orders writes to storage. Each mutation gets the next sequence number; storage completes them in order.
using PersistSeq = std::uint64_t;

/// "Every write up to `seq` is durable; the log then ended at (last_index, last_term)". The core counts the
/// entries as durable only if its log still holds last_index with last_term (a completion for entries
/// truncated since must not count, as etcd's stableTo(i, t)).
struct PersistCompletion {
  PersistSeq seq = 0;
  LogIndex last_index;
  Term last_term;
};

class LogStore {
 public:
  virtual ~LogStore() = default;

  /// The log holds [first_index(), last_index()]; empty when last_index() == first_index() - 1.
  virtual LogIndex first_index() const = 0;
  virtual LogIndex last_index() const = 0;
  /// Term of the entry at `index`; Term{0} for index 0; nullopt if the index is outside the log.
  virtual std::optional<Term> term_at(LogIndex index) const = 0;
  /// The entry at `index`, which must be inside the log.
  virtual const Entry& entry(LogIndex index) const = 0;

  // Mutations are visible to the reads above at once and become durable later, in order; each returns the
  // sequence number a PersistCompletion will name.
  virtual PersistSeq append(std::span<const Entry> entries) = 0;
  /// Removes every entry after `index`.
  virtual PersistSeq truncate_after(LogIndex index) = 0;
  virtual PersistSeq save_hard_state(const HardState& state) = 0;
  virtual HardState hard_state() const = 0;
};

}  // namespace cohort::consensus

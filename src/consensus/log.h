#pragma once
// Log entries and the narrow storage interface the consensus core is written against. The in-memory store
// (memory_log.h) serves the simulator; the durable segmented store (the storage layer) serves the node.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/bytes.h"
#include "common/payload.h"
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
  Payload payload;  // shared, not copied, by the cache, AppendRequests and the apply

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

/// The position just before a log's first entry: what a snapshot covers once the entries up to it are removed
/// (compaction), or what a follower's log restarts from when it installs a snapshot its log does not match (reset).
/// (0, 0) for a log that was never compacted: index 0 has term 0.
struct LogBase {
  LogIndex index;
  Term term;
  friend bool operator==(const LogBase&, const LogBase&) = default;
};

/// A snapshot as the consensus core ships it to a follower that needs entries the leader no longer holds: the
/// replicated state (opaque bytes, the host's business) once the entries up to `position` are applied. Immutable once
/// made: the leader's sends in flight, the driver and the storage thread share it.
struct Snapshot {
  LogBase position;
  std::uint64_t checksum = 0;  // snapshot_checksum(bytes): the receiver checks it before installing
  std::vector<std::byte> bytes;
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

/// XXH3-64 of a snapshot's bytes (also the checksum a snapshot file's header holds for its body).
std::uint64_t snapshot_checksum(ByteSpan bytes) noexcept;

/// A log of entries after a base. Invariants every store keeps:
///  - first_index() == base().index + 1; the log holds [first_index(), last_index()], empty when last_index() ==
///    base().index (a reset leaves it so, and the next append is base().index + 1);
///  - term_at(base().index) == base().term, and term_at(i) is nullopt for i < base().index or i > last_index():
///    the entry at the base is gone, its term is not (the consistency check of an append after it needs it);
///  - entry(i) requires first_index() <= i <= last_index();
///  - terms never decrease from the base on.
class LogStore {
 public:
  virtual ~LogStore() = default;

  virtual LogBase base() const = 0;
  LogIndex first_index() const { return base().index.next(); }
  virtual LogIndex last_index() const = 0;
  /// Term of the entry at `index`, or of the base at its index; nullopt outside [base().index, last_index()].
  virtual std::optional<Term> term_at(LogIndex index) const = 0;
  /// The entry at `index`, which must be inside the log. The reference is valid only until the next mutation (the
  /// segmented log's cache is a ring that an append may grow or reuse): copy the entry (its payload is shared, not
  /// copied) to keep it longer.
  virtual const Entry& entry(LogIndex index) const = 0;

  // Mutations are visible to the reads above at once and become durable later, in order; each returns the
  // sequence number a PersistCompletion will name, and that completion reports the log's end (last_index, last
  // term) as that mutation left it.
  virtual PersistSeq append(std::span<const Entry> entries) = 0;
  /// Removes every entry after `index`, which must be at least base().index (entries at or before the base are
  /// covered by a snapshot: committed, never cut).
  virtual PersistSeq truncate_after(LogIndex index) = 0;
  /// Removes entries up to `up_to` (<= last_index()), which a snapshot covers: the base moves up to at most
  /// `up_to`, never down. A store may remove fewer than asked (the segmented log removes whole segments only, and
  /// keeps the one taking appends), and nothing if `up_to` is at or below the base. Entries after the new base
  /// are untouched.
  virtual PersistSeq compact(LogIndex up_to) = 0;
  /// Empties the log after (index, term), which becomes the base: for a follower installing a snapshot at a
  /// position its log does not hold with that term. Any index: below, inside or beyond the current log. Index 0
  /// takes term 0.
  virtual PersistSeq reset(LogIndex index, Term term) = 0;
  /// A follower installs `snapshot` (at a position its log does not hold): the snapshot is made durable first, then
  /// the log is reset to its position, so a crash never leaves a base that no snapshot covers.
  virtual PersistSeq install(const SnapshotPtr& snapshot) = 0;
  virtual PersistSeq save_hard_state(const HardState& state) = 0;
  virtual HardState hard_state() const = 0;
};

}  // namespace cohort::consensus

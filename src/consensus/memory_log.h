#pragma once
// An in-memory LogStore with crash semantics, for tests and the simulator. Writes are visible at once and
// queue up as pending; the driver decides when they become durable (make_durable) and what a crash keeps
// (crash): everything durable, plus optionally a prefix of the pending writes, in order, the last of which
// may be torn (an append batch that reached the disk only in part). A compaction or a reset is kept whole or
// not at all.
//
// It removes exactly what a compaction asks for. Beside a store that removes fewer (the segmented log), the
// simulator compacts it to the base that store reached (sim::CheckedLog), so both hold the same log.

#include <deque>
#include <string>
#include <variant>
#include <vector>

#include "consensus/log.h"

namespace cohort::consensus {

class MemoryLogStore final : public LogStore {
 public:
  LogBase base() const override { return current_.base; }
  LogIndex last_index() const override { return current_.last_index(); }
  std::optional<Term> term_at(LogIndex index) const override { return current_.term_at(index); }
  const Entry& entry(LogIndex index) const override;

  PersistSeq append(std::span<const Entry> entries) override;
  PersistSeq truncate_after(LogIndex index) override;
  PersistSeq compact(LogIndex up_to) override;
  PersistSeq reset(LogIndex index, Term term) override;
  PersistSeq install(const SnapshotPtr& snapshot) override;
  PersistSeq save_hard_state(const HardState& state) override;
  HardState hard_state() const override { return current_.hard_state; }

  /// Sequence of the last write, and of the last durable one.
  PersistSeq last_seq() const { return next_seq_ - 1; }
  PersistSeq durable_seq() const { return durable_seq_; }
  /// Makes every write up to `seq` durable and returns the completion to report to the core.
  PersistCompletion make_durable(PersistSeq seq);
  /// A crash: the state reverts to what is durable, plus the first `keep` pending writes (which reached the
  /// disk before the crash). If the next pending write is an append, its first `torn_entries` entries (fewer
  /// than all) reached the disk too: a torn write. Returns how many pending writes were lost or torn.
  std::size_t crash(std::size_t keep, std::size_t torn_entries = 0);
  std::size_t pending_writes() const { return pending_.size(); }

  /// Whether a log (its base and the entries after it) and hard state recovered from real storage after a crash
  /// are ones the crash could leave: the durable state, then a prefix of the pending writes applied in order, the
  /// last of which may have reached the disk in part:
  ///  - an append: a prefix of its entries;
  ///  - a truncation: the log cut anywhere between its old end and the truncation point;
  ///  - a compaction: the base anywhere from where it was up to where the compaction put it (a store removes
  ///    whole pieces, and may stop between them), with the term the log held there and every entry after it;
  ///  - a reset: nothing in part: the old log or the new empty one, never old entries after the new base (the
  ///    segmented log makes its base durable first, marked as a reset under way, which voids whatever it had not
  ///    removed yet).
  /// The hard state is the durable one or any pending one: it is written apart from the log. Returns what is
  /// wrong, or an empty string.
  std::string explain_recovery(const LogBase& base, std::span<const Entry> entries, const HardState& state) const;
  /// Forgets the pending writes and makes (base, entries after it, state) the durable and current state, as
  /// recovered from real storage; sequence numbers keep counting.
  void restore(LogBase base, std::vector<Entry> entries, HardState state);

  /// The durable log (its base, and the entries after it) and hard state, as a restarted node would find them.
  const LogBase& durable_base() const { return durable_.base; }
  const std::vector<Entry>& durable_entries() const { return durable_.entries; }
  const HardState& durable_hard_state() const { return durable_.hard_state; }
  /// The newest snapshot an install made durable (null: none).
  const SnapshotPtr& durable_snapshot() const { return durable_.snapshot; }
  /// The disk lost its installed snapshot (wiped, or the snapshot damaged): durable_snapshot() is null until the
  /// next install.
  void forget_snapshot() { current_.snapshot = durable_.snapshot = nullptr; }

 private:
  struct State {
    LogBase base;
    std::vector<Entry> entries;  // those after base.index, in order
    HardState hard_state;
    SnapshotPtr snapshot;  // the newest installed

    LogIndex last_index() const { return LogIndex{base.index.value() + entries.size()}; }
    std::optional<Term> term_at(LogIndex index) const;
  };
  struct Append {
    std::vector<Entry> entries;
  };
  struct Truncate {
    LogIndex after;
  };
  struct Compact {
    LogBase base;  // where the compaction puts the base: at or above the base before it
  };
  struct Reset {
    LogBase base;
    SnapshotPtr snapshot;  // an install's: durable with the reset
  };
  using Change = std::variant<Append, Truncate, Compact, Reset, HardState>;
  struct Write {
    PersistSeq seq;
    Change change;
  };
  static void apply(State& state, const Write& write);
  PersistSeq record(Change change);

  State current_;
  State durable_;
  std::deque<Write> pending_;
  PersistSeq next_seq_ = 1;
  PersistSeq durable_seq_ = 0;
};

}  // namespace cohort::consensus

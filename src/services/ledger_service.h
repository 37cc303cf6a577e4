#pragma once
// The built-in ledger: it counts how many times each (client tag, stream number) was applied, so a client that
// streams numbered messages (`cohort stream`) can compare what it was told with what the replicated state holds.
// It is keyed by the stream's own number, not the session's seq (seqs restart when a session is replaced), and a
// duplicate and a loss do not cancel out as they would in a counter. The wire format is in ledger_codec.h.
//
// Every request gets one reply (egress): a record its `recorded` (saying whether the number had been applied
// before), a query its `report`, a malformed request an `error` (and it is counted; nothing else changes).
//
// Memory: per tag, the numbers applied are a set of runs (first..last), and so are the numbers applied more than
// once. A stream applied in order with no loss is one run, whatever its length: ten million numbers cost a few
// hundred bytes. Each gap or duplicate that splits a run costs one map node (about 64 bytes), so the worst case,
// every other number missing, is about as large as the log that carried it.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "cohort/service.h"
#include "services/ledger_codec.h"

namespace cohort::services {

/// A set of numbers in [1, kLedgerMaxNumber] kept as disjoint runs.
/// Invariant: runs are non-empty, disjoint and not adjacent (a run ends at least two below the next one's start),
/// so a set has exactly one representation and equal sets write equal snapshots; size_ is the numbers they hold.
class NumberSet {
 public:
  /// Adds `number`; true if it was not in the set. Precondition: 1 <= number <= kLedgerMaxNumber.
  bool insert(std::uint64_t number);
  bool contains(std::uint64_t number) const;
  std::uint64_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  /// The largest number held, 0 if empty.
  std::uint64_t max() const noexcept { return runs_.empty() ? 0 : runs_.rbegin()->second; }
  std::size_t run_count() const noexcept { return runs_.size(); }
  /// The runs, first -> last, ascending.
  const std::map<std::uint64_t, std::uint64_t>& runs() const noexcept { return runs_; }

  /// Appends to `out` the runs of numbers NOT in the set within [from, max()], in order, clipped to start at
  /// `from`: at most `limit`; returns whether more follow.
  bool gaps_from(std::uint64_t from, std::size_t limit, std::vector<NumberRange>& out) const;
  /// Appends to `out` the runs of the set at or above `from` (the first clipped to start at `from`): at most
  /// `limit`; returns whether more follow.
  bool runs_from(std::uint64_t from, std::size_t limit, std::vector<NumberRange>& out) const;

  /// Appends one run at the end. Returns false, changing nothing, if it is invalid or does not follow the last run
  /// with a gap of at least one number (so restoring a snapshot keeps the invariant).
  [[nodiscard]] bool append_run(NumberRange run);

 private:
  std::map<std::uint64_t, std::uint64_t> runs_;  // first -> last (inclusive)
  std::uint64_t size_ = 0;
};

class LedgerService final : public Service {
 public:
  /// Throws std::runtime_error if `snapshot` is malformed.
  void on_start(Cluster& cluster, std::optional<Bytes> snapshot) override;
  /// Every field is in the snapshot, so restoring is starting from it.
  void on_restore(Cluster& /*cluster*/, Bytes snapshot) override { restore(snapshot); }
  void on_session_open(Cluster& /*cluster*/, SessionId /*session*/) override {}
  void on_session_close(Cluster& /*cluster*/, SessionId /*session*/, CloseReason /*reason*/) override {}
  void on_message(Cluster& cluster, SessionId session, ClusterTime timestamp, Bytes message) override;
  void on_timer(Cluster& /*cluster*/, TimerId /*id*/, ClusterTime /*timestamp*/) override {}
  void on_take_snapshot(Cluster& cluster, std::vector<std::byte>& out) override;

  void write_snapshot(std::vector<std::byte>& out) const;
  std::uint64_t state_hash() const;

  /// What a query of `tag` answers (request_id left 0): counts of the whole stream, ranges at or above `from`.
  LedgerReport report(std::uint64_t tag, std::uint64_t from = 1) const;
  /// How many times `number` of `tag` was applied, as far as the ledger can tell: 0, 1 or 2 (twice or more).
  int times_applied(std::uint64_t tag, std::uint64_t number) const;
  std::size_t tags() const noexcept { return accounts_.size(); }
  /// Runs held across every tag's two sets: what the memory grows with.
  std::size_t run_count() const noexcept;
  std::uint64_t records() const noexcept { return records_; }
  std::uint64_t queries() const noexcept { return queries_; }
  std::uint64_t malformed() const noexcept { return malformed_; }

 private:
  struct Account {
    NumberSet applied;               // numbers applied at least once
    NumberSet duplicated;            // numbers applied more than once: a subset of `applied`
    std::uint64_t applications = 0;  // records applied: >= applied.size() + duplicated.size()
  };

  void reply(Cluster& cluster, SessionId session, const LedgerReply& message);
  void restore(ByteSpan snapshot);

  // Replicated state, all in the snapshot. Ordered by tag, so the snapshot's bytes are a function of the state.
  std::map<std::uint64_t, Account> accounts_;
  std::uint64_t records_ = 0;    // record requests applied, every tag
  std::uint64_t queries_ = 0;    // query requests applied
  std::uint64_t malformed_ = 0;  // requests that did not decode

  std::vector<std::byte> reply_buffer_;  // scratch, reused per reply: not state
};

}  // namespace cohort::services

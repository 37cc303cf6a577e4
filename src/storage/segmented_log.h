#pragma once
// The event-loop side of the durable log: the LogStore the consensus core works against. It keeps the log's
// picture in memory (segments, term runs, recent entries), encodes every mutation into the batch being built,
// and never touches a file for writing: the driver takes the batches (take_batch), has the storage side
// (LogWriter, on the storage thread) perform them, and hands back the results (complete).
//
// Reads: recent entries come from the cache; older ones are read back from their segment (a lagging
// follower's catch-up), through a read-ahead window, seeking from the segment's nearest sample. Entries not yet
// written are always cached, so a read never races the storage thread.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/random.h"
#include "common/ring.h"
#include "consensus/log.h"
#include "storage/batch.h"
#include "storage/file.h"
#include "storage/format.h"
#include "storage/log_index.h"

namespace cohort::storage {

struct RecoveredLog;

class SegmentedLog final : public consensus::LogStore {
 public:
  /// `seed` draws each new segment's nonce (format.h); the node seeds it from std::random_device.
  SegmentedLog(Directory& directory, Identity identity, LogOptions options, RecoveredLog recovered, std::uint64_t seed);

  consensus::LogBase base() const override { return base_; }
  LogIndex last_index() const override { return last_index_; }
  std::optional<Term> term_at(LogIndex index) const override;
  /// From the cache, or read from disk into a scratch entry that the next call on this store may replace.
  const consensus::Entry& entry(LogIndex index) const override;

  consensus::PersistSeq append(std::span<const consensus::Entry> entries) override;
  consensus::PersistSeq truncate_after(LogIndex index) override;
  /// Removes the whole segments that end at or before `up_to`, oldest first, never the last one (it takes the
  /// appends): the base becomes the end of the last one removed.
  consensus::PersistSeq compact(LogIndex up_to) override;
  /// Drops every segment; the next append starts a segment at index + 1.
  consensus::PersistSeq reset(LogIndex index, Term term) override;
  /// A reset whose storage operation writes the snapshot file first.
  consensus::PersistSeq install(const consensus::SnapshotPtr& snapshot) override;
  consensus::PersistSeq save_hard_state(const consensus::HardState& state) override;
  consensus::HardState hard_state() const override { return hard_state_; }

  // ---- the driver's side

  /// The batch built since the last call, or null if nothing was written since. Hand it to the storage side,
  /// then back to complete().
  std::unique_ptr<Batch> take_batch();
  /// The storage side's result for a batch taken earlier (results arrive in order). Returns the completion
  /// to report to the consensus core, or nullopt if storage failed: the node must then stop (failure()).
  std::optional<consensus::PersistCompletion> complete(std::unique_ptr<Batch> batch, const BatchResult& result);

  const std::optional<IoError>& failure() const noexcept { return failure_; }
  consensus::PersistSeq last_seq() const noexcept { return next_seq_ - 1; }
  /// Every write up to this sequence number is complete.
  consensus::PersistSeq completed_seq() const noexcept { return completed_seq_; }
  /// Every segment, ascending: what the storage side starts from.
  /// Bytes appended and not yet taken by take_batch(): what waits for the storage thread.
  std::size_t queued_bytes() const noexcept;
  std::vector<SegmentKey> segment_keys() const;
  std::size_t cached_entries() const noexcept { return cache_.size(); }
  /// Bytes of records appended by this object so far (never decreases): how busy the log has been.
  std::uint64_t appended_bytes() const noexcept { return appended_bytes_; }
  /// About how many bytes of log follow entry `index` (to within a segment's sample spacing, segment_size / 64):
  /// what a restart would replay after a snapshot at `index`. Reads nothing from disk.
  std::uint64_t bytes_after(LogIndex index) const;

 private:
  struct Cached {
    consensus::Entry entry;
    std::uint64_t offset;       // where its record starts in its segment
    consensus::PersistSeq seq;  // the append that writes it; evictable once that is complete
  };
  struct Located {
    std::size_t segment;  // position in segments_
    std::uint64_t offset;
  };

  Batch& batch();
  consensus::PersistSeq reset_to(consensus::LogBase base, consensus::SnapshotPtr snapshot);
  consensus::PersistSeq next_seq() { return next_seq_++; }
  std::size_t segment_of(LogIndex index) const;
  /// Where record `index` (inside the log) starts.
  Located locate(LogIndex index) const;
  /// Reads the record at `offset` of segment `position` into scratch_; it must hold `index`.
  void read_record(std::size_t position, std::uint64_t offset, LogIndex index) const;
  ByteSpan read_window(std::size_t position, std::uint64_t offset, std::size_t size) const;
  void evict();
  /// Forgets the read-ahead window. Called whenever writes complete or the log is cut: a window loaded later
  /// holds every record that may be read from disk until the next call.
  void forget_window() const;
  /// Forgets everything the read state holds: positions in segments_ change (a cut, a compaction, a reset).
  void forget_reads() const;

  Directory& directory_;
  Identity identity_;
  LogOptions options_;
  consensus::HardState hard_state_;
  consensus::LogBase base_;  // term_at(base_.index) answers from here: no run or segment holds it
  LogIndex last_index_;      // base_.index while the log is empty
  // Ascending by first index; the first one starts at base_.index + 1, the last one takes appends. Empty only
  // while the log is (a reset, a truncation to the base, a new log): the next append creates one.
  std::vector<SegmentInfo> segments_;
  // Ascending; the last run ends at last_index_. Only runs that end after the base are needed: a compaction drops
  // the others, so the first may start at or before the base.
  std::vector<TermRun> terms_;
  // Invariant: cache_ holds [last_index_ - cache_.size() + 1, last_index_], including every entry whose append
  // is not yet complete; cache_bytes_ is what they cost (cached_cost()).
  Ring<Cached> cache_;
  std::size_t cache_bytes_ = 0;
  std::uint64_t appended_bytes_ = 0;
  consensus::PersistSeq next_seq_ = 1;
  consensus::PersistSeq completed_seq_ = 0;
  std::unique_ptr<Batch> batch_;
  // Emptied batches back from the storage side, reused so that a steady stream allocates nothing. Invariant:
  // spare_bytes_ is the sum of their byte buffers' capacities, at most kSpareBatchBytes (segmented_log.cpp).
  std::vector<std::unique_ptr<Batch>> spare_batches_;
  std::size_t spare_bytes_ = 0;
  std::optional<IoError> failure_;
  Random random_;

  // Reading back: one open handle and one read-ahead window, both for the segment last read.
  mutable std::size_t read_segment_ = ~std::size_t{0};
  mutable std::unique_ptr<File> read_file_;
  mutable std::vector<std::byte> window_;  // its first window_length_ bytes hold the file from window_offset_
  mutable std::size_t window_length_ = 0;
  mutable std::uint64_t window_offset_ = 0;
  mutable consensus::Entry scratch_;
  // Where the record after scratch_ starts, so sequential reads do not seek.
  mutable Located cursor_{~std::size_t{0}, 0};
  mutable LogIndex cursor_index_;
};

}  // namespace cohort::storage

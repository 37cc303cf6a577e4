#pragma once
// What the event-loop side of the log (SegmentedLog) hands the storage side (LogWriter, on the storage
// thread): a batch of operations in log order, with the encoded records they write. The loop side decides
// where every record goes (segment and offset), so the storage side is a plain executor and both sides keep
// the same picture of the files without sharing any state. Batches are recycled, capacity and all, so a
// steady stream of appends allocates nothing.

#include <cstdint>
#include <optional>
#include <vector>

#include "consensus/log.h"
#include "storage/file.h"

namespace cohort::storage {

enum class SyncPolicy : std::uint8_t {
  fsync,  // group commit: an append is complete once an fdatasync covers it (the default)
  none,   // an append is complete once written to the page cache; durability comes from replication
};

struct StorageOp {
  enum class Kind : std::uint8_t { append, truncate, compact, reset, hard_state };
  Kind kind = Kind::append;
  consensus::PersistSeq seq = 0;
  // The log's end once this operation is done: what its completion reports.
  LogIndex last_index;
  Term last_term;

  // append: the records in Batch::bytes[begin, end), written at `offset` of the segment starting at `segment`,
  // which is created first when `new_segment` (its first record is this operation's first).
  LogIndex segment;
  bool new_segment = false;
  std::uint64_t nonce = 0;  // of the new segment
  std::uint64_t offset = 0;
  std::size_t begin = 0;
  std::size_t end = 0;

  // truncate: removes every segment starting after `after`, then cuts the segment holding `after` (if any)
  // to `cut_size` bytes.
  LogIndex after;
  LogIndex cut_segment;  // zero: no segment holds `after`
  std::uint64_t cut_size = 0;

  // compact: the log's base once it is done. Every segment starting at or before base.index ends there too, and
  // goes: the segments kept are synced, the base file written, then those segments removed, oldest first. None:
  // the base stays, nothing is written.
  // reset: the log becomes empty after `base`. The base file is written marked as a reset under way, every
  // segment removed from the last backwards, then the base file written again, settled. An install's reset writes
  // `snapshot` as a snapshot file first (durably) and removes the older ones: the new base needs it.
  consensus::LogBase base;
  consensus::SnapshotPtr snapshot;

  // hard_state: replaces the metadata file.
  consensus::HardState hard_state;
};

/// How many batches may be submitted to the storage side and not yet handed back (the storage thread's queue
/// depth). With one more being built, that is every batch a node needs: the log keeps that many ready from the
/// start (about 2 MiB), so that no burst meets a batch it has to allocate. A shallower queue costs throughput under
/// load (16: about a tenth at 4 x 1,024 messages in flight): a group commit then leaves turns' batches waiting
/// in the one being built, handed over only after the loop has collected the group's results.
constexpr std::size_t kBatchesInFlight = 64;
/// What each batch reserves when it is made: a loop turn's records at a few thousand messages per second, so that
/// only a busier turn grows one (and keeps the capacity for good, below the log's bound on spare bytes).
constexpr std::size_t kBatchInitialBytes = 32U << 10U;
constexpr std::size_t kBatchInitialOps = 8;
/// The parts one group commit gathers into one write: about one run of records per batch.
constexpr std::size_t kGatherParts = 2 * kBatchesInFlight;

struct Batch {
  Batch() {
    ops.reserve(kBatchInitialOps);
    bytes.reserve(kBatchInitialBytes);
  }

  std::vector<StorageOp> ops;
  std::vector<std::byte> bytes;

  bool empty() const noexcept { return ops.empty(); }
  /// What performing the batch completes: its last operation (operations are performed in order).
  consensus::PersistCompletion completion() const noexcept {
    const StorageOp& last = ops.back();
    return consensus::PersistCompletion{last.seq, last.last_index, last.last_term};
  }
  void clear() noexcept {
    ops.clear();
    bytes.clear();
  }
};

/// What the storage side reports for a batch: the completion of its last operation, or the failure that
/// stopped it (the node must then stop: nothing after a failed write or sync is trusted).
struct BatchResult {
  consensus::PersistCompletion completion;
  std::optional<IoError> error;
};

}  // namespace cohort::storage

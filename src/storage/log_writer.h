#pragma once
// The storage side of the log: executes batches against the files, on the storage thread (or, in the
// simulator, at the storage events it schedules). Single-threaded; it shares nothing with the loop side.
//
// Invariants it keeps:
//  - Every segment file with a final name has a durable, valid header (created as `.tmp`, synced, renamed,
//    directory synced).
//  - durable_index(): every record up to it is durable; records written later carry it as durable_before.
//  - A truncation is durable before anything after it is: later segments are removed from the last one
//    backwards (so a crash never leaves a gap), the directory is synced, then the holding segment is cut and
//    synced.
//  - The metadata file is replaced atomically and durably (temp, sync, rename, directory sync), whatever the
//    sync policy: a vote must never be lost.
//  - The base file is replaced the same way, and is durable before any segment it makes unnecessary is removed.
//    A compaction first syncs the segments it keeps: once its base is durable, so is everything written before
//    it. A reset marks its base as a reset under way until every old segment is gone, so a crash part way
//    leaves segments recovery knows to be void, never old entries that seem to follow the new base.
//  - After any failed write or sync the writer refuses everything: an fsync is never retried.

#include <memory>
#include <span>
#include <vector>

#include "storage/batch.h"
#include "storage/file.h"
#include "storage/format.h"
#include "storage/log_index.h"

namespace cohort::storage {

/// Replaces the metadata file atomically and durably: `meta.tmp` written and synced, renamed over `meta`,
/// directory synced. A crash at any step leaves the old file or the new one, whole.
IoStatus write_metadata(Directory& directory, const Identity& identity, const consensus::HardState& state);

/// Replaces the base file atomically and durably, as write_metadata does the metadata file. `resetting`: the
/// segments on disk are leftovers of the log before a reset, to be removed (format.h).
IoStatus write_base(Directory& directory, const Identity& identity, const consensus::LogBase& base, bool resetting);

class LogWriter {
 public:
  /// `segments`: the segments on disk, ascending; `durable`: the log's last index, all of which is durable
  /// (recovery syncs what it keeps).
  LogWriter(Directory& directory, Identity identity, SyncPolicy policy, const std::vector<SegmentKey>& segments,
            LogIndex durable);

  /// Performs the batches' operations in order, with one gather write per run of records bound for one
  /// segment. Appends are written, not synced; truncations and metadata are synced at once.
  IoStatus write(std::span<Batch* const> batches);
  IoStatus write(Batch& batch) {
    Batch* one[] = {&batch};
    return write(one);
  }
  /// Makes every append written so far durable: one fdatasync per segment written since the last (policy
  /// fsync). Under policy none it syncs nothing; there a segment is synced once complete, when the next one
  /// is created, so a power loss costs at most the last segment and durable_before keeps proving the rest.
  IoStatus sync();

  LogIndex durable_index() const noexcept { return durable_index_; }
  std::uint64_t syncs() const noexcept { return syncs_; }

 private:
  struct Segment {
    LogIndex first;
    std::uint64_t nonce;
    std::unique_ptr<File> file;  // open while it may be written or synced; closed once complete and synced
    bool unsynced = false;       // holds writes no fdatasync has covered yet (under policy none, until its roll)
  };

  IoStatus fail(IoError error);
  IoResult<Segment*> segment_of(LogIndex first);
  IoStatus sync_segment(Segment& segment);
  IoStatus create_segment(LogIndex first, std::uint64_t nonce);
  IoStatus flush_parts();
  IoStatus truncate(const StorageOp& op);
  IoStatus compact(const StorageOp& op);
  IoStatus reset(const StorageOp& op);

  Directory& directory_;
  Identity identity_;
  SyncPolicy policy_;
  std::vector<Segment> segments_;  // ascending by first index
  LogIndex durable_index_;
  LogIndex written_index_;  // the log's end as written
  std::uint64_t syncs_ = 0;
  bool failed_ = false;

  // The run of records being gathered into one write.
  std::vector<ByteSpan> parts_;
  File* parts_file_ = nullptr;
  std::uint64_t parts_offset_ = 0;
  std::uint64_t parts_end_ = 0;
};

}  // namespace cohort::storage

#include "storage/log_writer.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "common/assert.h"
#include "common/planted_bug.h"
#include "storage/snapshot_file.h"

// Planted bugs, for the simulator's self-test only (common/planted_bug.h; see consensus/raft.cpp):
//   5: report appends durable without syncing them
//   6: stamp records with the index written so far as durable_before, claiming durability too early

namespace cohort::storage {

namespace {

/// Replaces `name` with `bytes` atomically and durably: `temp` written and synced, renamed over `name`, directory
/// synced. A crash at any step leaves the old file or the new one, whole.
IoStatus replace_file(Directory& directory, std::string_view name, std::string_view temp, ByteSpan bytes) {
  auto opened = directory.open(temp, OpenMode::create_new);
  if (!opened && opened.error().code == EEXIST) {  // left by a replacement that failed part way
    if (auto removed = directory.remove(temp); !removed) return removed;
    opened = directory.open(temp, OpenMode::create_new);
  }
  if (!opened) return unexpected(std::move(opened).error());
  const ByteSpan parts[] = {bytes};
  if (auto status = (*opened)->write_at(0, parts); !status) return status;
  if (auto status = (*opened)->sync(); !status) return status;
  if (auto status = directory.rename(temp, name); !status) return status;
  return directory.sync();
}

}  // namespace

IoStatus write_metadata(Directory& directory, const Identity& identity, const consensus::HardState& state) {
  std::array<std::byte, kMetadataSize> bytes{};
  encode_metadata(bytes.data(), identity, state);
  return replace_file(directory, kMetadataName, kMetadataTempName, bytes);
}

IoStatus write_base(Directory& directory, const Identity& identity, const consensus::LogBase& base, bool resetting) {
  std::array<std::byte, kBaseFileSize> bytes{};
  encode_base(bytes.data(), identity, base, resetting);
  return replace_file(directory, kBaseName, kBaseTempName, bytes);
}

LogWriter::LogWriter(Directory& directory, Identity identity, SyncPolicy policy,
                     const std::vector<SegmentKey>& segments, LogIndex durable)
    : directory_(directory), identity_(identity), policy_(policy), durable_index_(durable), written_index_(durable) {
  parts_.reserve(kGatherParts);
  segments_.reserve(segments.size());
  for (const SegmentKey& key : segments) {
    COHORT_ASSERT(segments_.empty() || segments_.back().first < key.first);
    segments_.push_back(Segment{key.first, key.nonce, nullptr, false});
  }
}

IoStatus LogWriter::fail(IoError error) {
  failed_ = true;
  return unexpected(std::move(error));
}

IoResult<LogWriter::Segment*> LogWriter::segment_of(LogIndex first) {
  const auto it = std::lower_bound(segments_.begin(), segments_.end(), first,
                                   [](const Segment& s, LogIndex f) { return s.first < f; });
  COHORT_ASSERT(it != segments_.end() && it->first == first);  // the loop side names only segments it made
  if (it->file == nullptr) {
    auto opened = directory_.open(segment_name(first), OpenMode::existing);
    if (!opened) return unexpected(std::move(opened).error());
    it->file = std::move(opened).value();
  }
  it->unsynced = true;
  return &*it;
}

IoStatus LogWriter::create_segment(LogIndex first, std::uint64_t nonce) {
  COHORT_ASSERT(segments_.empty() || segments_.back().first < first);
  const std::string name = segment_name(first);
  const std::string temp = name + std::string(kTempSuffix);
  auto opened = directory_.open(temp, OpenMode::create_new);
  if (!opened && opened.error().code == EEXIST) {  // left by a write that failed before a restart
    if (auto removed = directory_.remove(temp); !removed) return removed;
    opened = directory_.open(temp, OpenMode::create_new);
  }
  if (!opened) return unexpected(std::move(opened).error());
  std::unique_ptr<File> file = std::move(opened).value();
  std::array<std::byte, kSegmentHeaderSize> header{};
  encode_segment_header(header.data(), identity_, first, nonce);
  const ByteSpan parts[] = {header};
  if (auto status = file->write_at(0, parts); !status) return status;
  if (auto status = file->sync(); !status) return status;
  if (auto status = directory_.rename(temp, name); !status) return status;
  if (auto status = directory_.sync(); !status) return status;
  syncs_ += 2;
  // The first write opens it again by its final name (segment_of), which is what any error must name: the handle
  // made for the temporary name would keep calling it "....seg.tmp". One open per segment.
  file.reset();
  // Earlier segments are complete: their handles are closed once synced.
  segments_.push_back(Segment{first, nonce, nullptr, false});
  return {};
}

IoStatus LogWriter::flush_parts() {
  if (parts_.empty()) return {};
  IoStatus status = parts_file_->write_at(parts_offset_, parts_);
  parts_.clear();
  parts_file_ = nullptr;
  return status;
}

IoStatus LogWriter::write(std::span<Batch* const> batches) {
  if (failed_) return unexpected(IoError{EIO, "storage stopped after an earlier failure"});
  for (Batch* batch : batches) {
    for (const StorageOp& op : batch->ops) {
      switch (op.kind) {
        case StorageOp::Kind::append: {
          if (op.new_segment) {
            if (auto status = flush_parts(); !status) return fail(status.error());
            // Under policy none a segment is synced once complete. Only the last one can hold unsynced
            // writes: every earlier one was synced at its own roll, or cut and synced by a truncation.
            if (policy_ == SyncPolicy::none && !segments_.empty()) {
              if (auto status = sync_segment(segments_.back()); !status) return fail(status.error());
              segments_.back().file.reset();
              durable_index_ = written_index_;
            }
            if (auto status = create_segment(op.segment, op.nonce); !status) return fail(status.error());
          }
          auto segment = segment_of(op.segment);
          if (!segment) return fail(std::move(segment).error());
          File* file = (*segment)->file.get();
          // Only this side knows what is durable: stamp it into every record, then seal the header.
          for (std::size_t at = op.begin; at < op.end;) {
            std::byte* header = batch->bytes.data() + at;
            seal_record(header, planted_bug() == 6 ? written_index_ : durable_index_, (*segment)->nonce);
            at += record_size(load_le<std::uint32_t>(header));
          }
          const ByteSpan records(batch->bytes.data() + op.begin, op.end - op.begin);
          if (parts_file_ != file || parts_end_ != op.offset) {
            if (auto status = flush_parts(); !status) return fail(status.error());
            parts_file_ = file;
            parts_offset_ = op.offset;
          }
          parts_.push_back(records);
          parts_end_ = op.offset + records.size();
          written_index_ = op.last_index;
          break;
        }
        case StorageOp::Kind::truncate:
          if (auto status = flush_parts(); !status) return fail(status.error());
          if (auto status = truncate(op); !status) return fail(status.error());
          break;
        case StorageOp::Kind::compact:
          if (auto status = flush_parts(); !status) return fail(status.error());
          if (auto status = compact(op); !status) return fail(status.error());
          break;
        case StorageOp::Kind::reset:
          if (auto status = flush_parts(); !status) return fail(status.error());
          if (auto status = reset(op); !status) return fail(status.error());
          break;
        case StorageOp::Kind::hard_state:
          // The metadata does not depend on the log's writes, nor they on it: no flush needed first.
          if (auto status = write_metadata(directory_, identity_, op.hard_state); !status) return fail(status.error());
          syncs_ += 2;
          break;
      }
    }
  }
  if (auto status = flush_parts(); !status) return fail(status.error());
  return {};
}

IoStatus LogWriter::truncate(const StorageOp& op) {
  // Later segments go first, from the last backwards: a crash part way leaves a shorter log, never a gap.
  bool removed = false;
  while (!segments_.empty() && segments_.back().first > op.after) {
    const std::string name = segment_name(segments_.back().first);
    segments_.pop_back();
    if (auto status = directory_.remove(name); !status) return status;
    removed = true;
  }
  if (removed) {
    if (auto status = directory_.sync(); !status) return status;
    ++syncs_;
  }
  if (op.cut_segment != LogIndex{0}) {
    COHORT_ASSERT(!segments_.empty() && segments_.back().first == op.cut_segment);
    auto segment = segment_of(op.cut_segment);
    if (!segment) return unexpected(std::move(segment).error());
    File& file = *(*segment)->file;
    if (auto status = file.truncate(op.cut_size); !status) return status;
    if (auto status = sync_segment(**segment); !status) return status;
  }
  written_index_ = op.after;
  durable_index_ = std::min(durable_index_, op.after);
  return {};
}

IoStatus LogWriter::compact(const StorageOp& op) {
  // The loop side chose the base at a segment boundary: every segment starting at or before it ends there too.
  const auto kept = std::find_if(segments_.begin(), segments_.end(),
                                 [&](const Segment& segment) { return segment.first > op.base.index; });
  if (kept == segments_.begin()) return {};  // nothing to remove: the base stays where it is
  // Whatever was written before the compaction is durable before its base is: a crash then never keeps the
  // compaction and loses an append that came first. Costs a sync only when compacting right behind appends.
  for (auto segment = kept; segment != segments_.end(); ++segment) {
    if (auto status = sync_segment(*segment); !status) return status;
  }
  durable_index_ = written_index_;  // what the segments to be removed hold, the base covers
  if (auto status = write_base(directory_, identity_, op.base, /*resetting=*/false); !status) return status;
  syncs_ += 2;
  // Oldest first. Recovery removes any that a crash leaves, by name: they start at or before the base.
  for (auto segment = segments_.begin(); segment != kept; ++segment) {
    if (auto status = directory_.remove(segment_name(segment->first)); !status) return status;
  }
  segments_.erase(segments_.begin(), kept);
  if (auto status = directory_.sync(); !status) return status;
  ++syncs_;
  return {};
}

IoStatus LogWriter::reset(const StorageOp& op) {
  if (op.snapshot != nullptr) {
    const consensus::Snapshot& snapshot = *op.snapshot;
    if (auto written = write_snapshot(directory_, identity_.cluster_id, snapshot.position.index, snapshot.position.term,
                                      snapshot.bytes);
        !written)
      return unexpected(written.error());
    syncs_ += 3;
  }
  if (!segments_.empty()) {
    // Until the last old segment is gone, the base file says they are all void: one that starts right after
    // the new base, or holds it with another term, must not pass for the new log's entries after a crash.
    if (auto status = write_base(directory_, identity_, op.base, /*resetting=*/true); !status) return status;
    syncs_ += 2;
    while (!segments_.empty()) {
      const std::string name = segment_name(segments_.back().first);
      segments_.pop_back();
      if (auto status = directory_.remove(name); !status) return status;
    }
    if (auto status = directory_.sync(); !status) return status;
    ++syncs_;
  }
  if (auto status = write_base(directory_, identity_, op.base, /*resetting=*/false); !status) return status;
  syncs_ += 2;
  // The log is empty after its base, which is durable: records written from here on claim no more than it.
  written_index_ = op.base.index;
  durable_index_ = op.base.index;
  if (op.snapshot != nullptr) {
    // Only now: until the new base is durable, a crash leaves the old log, which an older snapshot may cover.
    if (auto removed = remove_snapshots_before(directory_, op.snapshot->position.index); !removed)
      return unexpected(removed.error());
  }
  return {};
}

IoStatus LogWriter::sync_segment(Segment& segment) {
  if (segment.unsynced) {
    COHORT_ASSERT(segment.file != nullptr);
    if (auto status = segment.file->sync(); !status) return status;
    ++syncs_;
  }
  segment.unsynced = false;
  return {};
}

IoStatus LogWriter::sync() {
  if (failed_) return unexpected(IoError{EIO, "storage stopped after an earlier failure"});
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    Segment& segment = segments_[i];
    if (policy_ == SyncPolicy::fsync && planted_bug() != 5) {
      if (auto status = sync_segment(segment); !status) return fail(status.error());
    }
    // Complete and synced: no more writes or syncs go there.
    if (i + 1 != segments_.size() && !segment.unsynced) segment.file.reset();
  }
  if (policy_ == SyncPolicy::fsync) durable_index_ = written_index_;
  return {};
}

}  // namespace cohort::storage

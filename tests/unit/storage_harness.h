#pragma once
// A node's log on the in-memory file layer, driven by hand: recover, mutate through the LogStore interface,
// then write (and sync) the batches when the test says so, and crash and recover at any point between.

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "storage/log_writer.h"
#include "storage/memory_file.h"
#include "storage/recovery.h"
#include "storage/segmented_log.h"

namespace cohort::storage::testing {

inline const Identity kIdentity{0xC0FFEE, NodeId{1}};

inline consensus::Entry make_entry(std::uint64_t index, std::uint64_t term, std::size_t payload_size = 64) {
  consensus::Entry entry;
  entry.index = LogIndex{index};
  entry.term = Term{term};
  entry.type = consensus::EntryType::command;
  entry.payload.resize(payload_size);
  for (std::size_t i = 0; i < payload_size; ++i)
    entry.payload[i] = static_cast<std::byte>((index * 31 + term * 7 + i) & 0xFFU);
  entry.checksum = consensus::compute_checksum(entry.index, entry.term, entry.type, entry.payload);
  return entry;
}

class LogHarness {
 public:
  explicit LogHarness(LogOptions options = small_segments(), SyncPolicy policy = SyncPolicy::fsync)
      : options_(options), policy_(policy) {}

  static LogOptions small_segments() {
    LogOptions options;
    options.segment_size = 4096;
    options.cache_bytes = 1024;
    return options;
  }

  MemoryDirectory& disk() { return disk_; }
  SegmentedLog& log() { return *log_; }
  LogWriter& writer() { return *writer_; }
  const RecoveredLog& recovered() const { return recovered_; }

  /// Recovers from the disk; the error message if recovery refuses.
  std::string open() {
    log_.reset();
    writer_.reset();
    auto recovered = recover(disk_, kIdentity, options_);
    if (!recovered) return recovered.error();
    recovered_ = *recovered;
    log_ = std::make_unique<SegmentedLog>(disk_, kIdentity, options_, std::move(recovered).value(), ++opened_);
    writer_ = std::make_unique<LogWriter>(disk_, kIdentity, policy_, log_->segment_keys(), log_->last_index());
    return {};
  }

  /// Writes every batch built so far and, if `sync`, syncs it; returns the last completion (or the failure).
  BatchResult write(bool sync = true) {
    BatchResult result;
    while (auto batch = log_->take_batch()) {
      if (auto status = writer_->write(*batch); !status) {
        result.error = status.error();
      } else if (sync) {
        if (auto synced = writer_->sync(); !synced) result.error = synced.error();
      }
      const StorageOp& last = batch->ops.back();
      if (!result.error) result.completion = consensus::PersistCompletion{last.seq, last.last_index, last.last_term};
      if (sync || result.error) (void)log_->complete(std::move(batch), result);
      if (result.error) break;
    }
    return result;
  }

  void append(std::uint64_t first, std::uint64_t count, std::uint64_t term, std::size_t payload = 64) {
    std::vector<consensus::Entry> entries;
    for (std::uint64_t i = first; i < first + count; ++i) entries.push_back(make_entry(i, term, payload));
    (void)log_->append(entries);
  }

  /// The first index of every segment, ascending.
  std::vector<LogIndex> segment_firsts() const {
    std::vector<LogIndex> firsts;
    for (const SegmentKey& key : log_->segment_keys()) firsts.push_back(key.first);
    return firsts;
  }

  /// The whole log, read back through the LogStore interface.
  std::vector<consensus::Entry> entries() const {
    std::vector<consensus::Entry> all;
    for (LogIndex i = log_->first_index(); i <= log_->last_index(); i = i.next()) all.push_back(log_->entry(i));
    return all;
  }

 private:
  LogOptions options_;
  SyncPolicy policy_;
  MemoryDirectory disk_;
  RecoveredLog recovered_;
  std::unique_ptr<SegmentedLog> log_;
  std::unique_ptr<LogWriter> writer_;
  std::uint64_t opened_ = 0;  // seeds each life's segment nonces differently
};

}  // namespace cohort::storage::testing

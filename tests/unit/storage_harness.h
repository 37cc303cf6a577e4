#pragma once
// A node's log on the in-memory file layer, driven by hand: recover, mutate through the LogStore interface,
// then write (and sync) the batches when the test says so, and crash and recover at any point between. Below it,
// the helpers the storage tests share: entries, a log made durable in steps, crash kinds.

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/random.h"
#include "storage/log_writer.h"
#include "storage/memory_file.h"
#include "storage/recovery.h"
#include "storage/segmented_log.h"

namespace cohort::consensus {
// How GoogleTest shows entries and bases in a failure: index and term, not bytes.
inline void PrintTo(const Entry& entry, std::ostream* out) { *out << entry.index.value() << '@' << entry.term.value(); }
inline void PrintTo(const LogBase& base, std::ostream* out) {
  *out << "base (" << base.index.value() << ", " << base.term.value() << ")";
}
}  // namespace cohort::consensus

namespace cohort::storage::testing {

inline const Identity kIdentity{0xC0FFEE, NodeId{1}};

inline consensus::Entry make_entry(std::uint64_t index, std::uint64_t term, std::size_t payload_size = 64) {
  consensus::Entry entry;
  entry.index = LogIndex{index};
  entry.term = Term{term};
  entry.type = consensus::EntryType::command;
  std::vector<std::byte> bytes(payload_size);
  for (std::size_t i = 0; i < payload_size; ++i) bytes[i] = static_cast<std::byte>((index * 31 + term * 7 + i) & 0xFFU);
  entry.payload = Payload(bytes);
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

using Entries = std::vector<consensus::Entry>;

// ---- helpers shared by the storage tests

inline bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

inline bool mentions(const std::vector<std::string>& lines, std::string_view part) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& line) { return contains(line, part); });
}

inline std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& line : lines) out += line + "\n";
  return out;
}

/// Index and term of each entry: enough to see what went wrong without dumping payloads.
inline std::string describe(const Entries& entries) {
  std::string out = "[";
  for (const consensus::Entry& entry : entries) {
    out += ' ';
    out += std::to_string(entry.index.value());
    out += '@';
    out += std::to_string(entry.term.value());
  }
  out += " ]";
  return out;
}

inline bool is_prefix(const Entries& prefix, const Entries& of) {
  return prefix.size() <= of.size() && std::equal(prefix.begin(), prefix.end(), of.begin());
}

inline Entries make_entries(std::uint64_t first, std::uint64_t count, std::uint64_t term, std::size_t payload = 64) {
  Entries entries;
  for (std::uint64_t i = first; i < first + count; ++i) entries.push_back(make_entry(i, term, payload));
  return entries;
}

inline Entries concat(Entries a, const Entries& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// A fresh log holding `entries` (synced in batches of 10, so later records claim earlier ones durable) with
/// hard state `state`.
inline void make_log(LogHarness& h, const Entries& entries, consensus::HardState state) {
  ASSERT_EQ(h.open(), "");
  (void)h.log().save_hard_state(state);
  for (std::size_t at = 0; at < entries.size(); at += 10) {
    const std::size_t end = std::min(entries.size(), at + 10);
    (void)h.log().append(std::span<const consensus::Entry>(entries.data() + at, end - at));
    const auto result = h.write();
    ASSERT_FALSE(result.error) << result.error->message;
  }
}

enum class CrashKind : std::uint8_t { clean, random, keep_all };

inline void crash(LogHarness& h, CrashKind kind, std::uint64_t seed) {
  Random random(seed);
  switch (kind) {
    case CrashKind::clean: h.disk().crash_clean(); break;
    case CrashKind::random: h.disk().crash(random); break;
    case CrashKind::keep_all: h.disk().crash_keep_all(); break;
  }
}

inline std::string name_of(CrashKind kind, std::uint64_t seed) {
  switch (kind) {
    case CrashKind::clean: return "crash_clean";
    case CrashKind::random: return "crash(random " + std::to_string(seed) + ")";
    case CrashKind::keep_all: return "crash_keep_all";
  }
  return {};
}

/// Every crash kind a step-by-step test tries: a clean machine crash, random ones, and a process crash.
inline std::vector<std::pair<CrashKind, std::uint64_t>> crash_kinds(std::uint64_t random_seeds) {
  std::vector<std::pair<CrashKind, std::uint64_t>> kinds{{CrashKind::clean, 0}, {CrashKind::keep_all, 0}};
  for (std::uint64_t seed = 1; seed <= random_seeds; ++seed) kinds.emplace_back(CrashKind::random, seed);
  return kinds;
}

/// A fresh directory under the system's temp directory, removed with everything in it at the end of the test (empty
/// path if it could not be made).
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "cohort-storage-test-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : std::string();
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace cohort::storage::testing

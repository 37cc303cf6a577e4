#pragma once
// The in-memory picture of a segmented log, built by recovery and kept by the loop side. Its size grows with
// the number of segments and of terms, never with the number of records: a segment keeps at most
// kSamplesPerSegment (index, offset) samples, and a read seeks from the nearest one.

#include <cstdint>
#include <vector>

#include "common/strong_id.h"

namespace cohort::storage {

inline constexpr std::size_t kSamplesPerSegment = 64;

struct LogOptions {
  /// A segment is closed once the next record would take it past this size (a record larger than this gets
  /// a segment of its own).
  std::uint64_t segment_size = 64ULL << 20U;
  /// Recent entries kept in memory for replication, besides those not yet written (which always are). Held for
  /// good once the log has written that much, so it is part of every node's resident memory. 16 MiB is a third of
  /// a second of the fastest stream measured (about 45 MB/s of log: 450 k messages/s of 64 B on 3 nodes) and
  /// seconds of a usual one, while a healthy follower lags by milliseconds; one further behind reads its
  /// catch-up from the segments (mostly the page cache) through the 256 KiB read-ahead window.
  std::size_t cache_bytes = 16ULL << 20U;
};

struct Sample {
  LogIndex index;
  std::uint64_t offset;
};

/// What the storage side needs to know of a segment: where it starts and the nonce its records are sealed with.
struct SegmentKey {
  LogIndex first;
  std::uint64_t nonce = 0;
};

struct SegmentInfo {
  LogIndex first;
  std::uint64_t nonce = 0;      // from the segment header: seeds every record header's checksum
  LogIndex last;                // first - 1 while the segment holds no record
  std::uint64_t size;           // bytes in use, segment header included: where the next record goes
  std::vector<Sample> samples;  // ascending; a sample at least every segment_size / kSamplesPerSegment bytes
  std::uint64_t next_sample_at = 0;

  /// Notes where record `index` starts, if it is time for a sample.
  void add_record(LogIndex index, std::uint64_t offset, std::uint64_t segment_size) {
    if (offset >= next_sample_at && samples.size() < kSamplesPerSegment) {
      samples.push_back(Sample{index, offset});
      next_sample_at = offset + segment_size / kSamplesPerSegment;
    }
  }
  /// Forgets the samples past `end` (a truncation), keeping the spacing of those before it.
  void drop_samples_after(LogIndex end, std::uint64_t segment_size) {
    while (!samples.empty() && samples.back().index > end) samples.pop_back();
    next_sample_at = samples.empty() ? 0 : samples.back().offset + segment_size / kSamplesPerSegment;
  }
};

/// Terms never decrease along the log, so the log's terms are runs: `first` is where run `term` starts.
struct TermRun {
  LogIndex first;
  Term term;
};

}  // namespace cohort::storage

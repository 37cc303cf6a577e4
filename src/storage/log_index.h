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
  /// Recent entries kept in memory for replication, besides those not yet written (which always are).
  std::size_t cache_bytes = 64ULL << 20U;
};

struct Sample {
  LogIndex index;
  std::uint64_t offset;
};

struct SegmentInfo {
  LogIndex first;
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
};

/// Terms never decrease along the log, so the log's terms are runs: `first` is where run `term` starts.
struct TermRun {
  LogIndex first;
  Term term;
};

}  // namespace cohort::storage

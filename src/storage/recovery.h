#pragma once
// Recovery at start (design.md section 5): reads the metadata, scans every segment record by record, and
// decides what the first damaged record (bad checksum, zeros, a break in index or term order, a gap between
// segments) means:
//  - if it lies beyond the durable_before of every intact record after it, it was never made durable: it and
//    everything after it are a torn tail, and are cut off (a damaged *last* record cannot be told from a torn
//    write: it is cut off too, and reported loudly);
//  - otherwise a durable record is damaged: recovery says so loudly, naming the file and the offset, cuts the log
//    there and marks the node recovering (consensus::Standing), so it repairs itself from the cluster before it
//    votes again. A lost or damaged metadata file is rebuilt the same way. Only another cluster's or node's data
//    is refused.
// Before the scan, the base file (format.h) says where the log starts. Segments that a compaction or a reset cut
// short did not get to remove are removed: during a reset all of them, otherwise those starting at or before the
// base. A log that starts after its base + 1 lost entries: damage, cut at the start (the node recovers). A lost or
// damaged base file is rebuilt from the segments (the node recovers): the index before the first one, term 0.
// Whatever it keeps it syncs, so the log it returns is durable as a whole.

#include <string>
#include <vector>

#include "common/result.h"
#include "consensus/log.h"
#include "storage/batch.h"
#include "storage/file.h"
#include "storage/format.h"
#include "storage/log_index.h"

namespace cohort::storage {

struct RecoveredLog {
  consensus::HardState hard_state;
  /// The position before the first entry: segments.front() (if any) starts right after it, and last_index is
  /// base.index while the log is empty.
  consensus::LogBase base;
  std::vector<SegmentInfo> segments;
  std::vector<TermRun> terms;
  LogIndex last_index;
  /// What recovery repaired, one line each, for the operator's log: a torn tail cut off, leftovers removed.
  std::vector<std::string> repairs;
  /// Whether the directory held no log yet (a new node): recovery created its metadata.
  bool created = false;
};

/// Recovers the log in `directory` for `identity`, creating an empty one if the directory holds no Cohort
/// files. The error names the file, the offset and the reason.
Result<RecoveredLog, std::string> recover(Directory& directory, const Identity& identity, const LogOptions& options);

/// Right after recover(): under sync policy none, a machine crash loses whatever no fsync covered, acknowledged
/// entries included, while a process crash loses nothing (the page cache keeps it). If the machine restarted
/// since the last life ran under policy none, the node rejoins as a recovering one (the metadata says so before
/// anything else changes). Then the machine file records `current` (policy none) or goes (policy fsync).
Status<std::string> note_machine_boot(Directory& directory, const Identity& identity, RecoveredLog& recovered,
                                      const MachineBoot& current, SyncPolicy policy);

}  // namespace cohort::storage

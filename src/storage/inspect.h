#pragma once
// A read-only inspection of a data directory, for post-mortems (`cohort log inspect`): what the metadata, base,
// machine, segment and snapshot files hold, and every problem named with its file, offset and record index. It
// reads by the rules recovery cuts by (recovery.h; check_record and find_records_after are shared), so it says
// which damage recovery would take for a torn tail and which it would call DATA LOSS, without cutting or removing
// anything: it never calls a Directory or File operation that changes the disk, so a read-only directory serves.
//
// Unlike recovery it does not know the node's configuration: the identity it checks every file against is the one
// the metadata file records (else the base file's, else the first segment's). It reads files as the kernel shows
// them, page cache included (recovery syncs and drops the cache first, which an inspection must not do), and a
// node may be writing them meanwhile: whatever changes under it is reported as found, never trusted to stay.
// Every length and offset read from a file is checked before use; no file content can make it assert.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "consensus/log.h"
#include "storage/file.h"
#include "storage/format.h"
#include "storage/snapshot_file.h"

namespace cohort::storage {

enum class FindingKind : std::uint8_t {
  damage,      // data lost or unusable, or a start refused: recovery says DATA LOSS or refuses
  unreadable,  // a file that could not be read: nothing can be said of it
  torn_tail,   // records no later record proves durable: recovery cuts them, and nothing acknowledged is lost
  leftover,    // an update a crash cut short (a `.tmp`, a compaction or reset part way): recovery finishes it
  note,        // worth knowing, and harmless: an unknown file, another machine boot, a file that vanished
};
const char* to_string(FindingKind kind) noexcept;

struct Finding {
  FindingKind kind = FindingKind::note;
  std::string file;  // its name in the directory; empty for the directory as a whole
  std::optional<std::uint64_t> offset;
  std::optional<LogIndex> index;  // of the record that is, or should be, at `offset`
  std::string what;
};

/// One segment file, as far as its records could be read in order from its header on.
struct SegmentSummary {
  std::string name;
  std::uint64_t bytes = 0;  // the file's size as read
  std::optional<SegmentHeader> header;
  /// A leftover of a compaction or a reset cut short: recovery removes it by name, unread; so does this.
  bool leftover = false;
  /// The intact records read in order from the header on, up to the first that fails its checks (or the end).
  std::uint64_t entries = 0;
  LogIndex first;  // of those; last == first - 1 when there are none
  LogIndex last;
  Term first_term;
  Term last_term;
  LogIndex durable_mark;           // the highest durable_before among them: what the writer knew durable
  std::uint64_t intact_bytes = 0;  // where those records end: the file's size unless something follows them
  bool beyond_damage = false;      // past the log's first damage: recovery cuts it, whole or in part
};

struct SnapshotSummary {
  std::string name;
  SnapshotFileName named;   // what its name says
  std::uint64_t bytes = 0;  // the file's size
  std::optional<SnapshotMeta> header;
  std::optional<bool> body_ok;  // whether the body matches the header's checksum; nullopt: not read that far
  bool intact = false;          // complete, header and name agree, size as announced, body checksum ok
  std::string problem;          // why a complete one is not intact (a temp one is not checked)
};

/// A record read back, for a listing of the entries: valid during the callback only.
struct InspectedEntry {
  LogIndex index;
  Term term;
  consensus::EntryType type = consensus::EntryType::command;
  std::uint64_t checksum = 0;  // the entry checksum (verified)
  LogIndex durable_before;
  ByteSpan payload;
  const std::string* segment = nullptr;
  std::uint64_t offset = 0;
  bool kept = true;  // false: past the log's first damage, so recovery cuts it
};

struct InspectOptions {
  /// Called for every intact record read in order from each segment's header on, in log order. Empty: none.
  std::function<void(const InspectedEntry&)> on_entry;
};

struct Inspection {
  std::optional<Identity> identity;
  std::string identity_from;  // the file the identity is taken from

  std::optional<consensus::HardState> hard_state;  // from an intact metadata file
  std::optional<BaseFile> base_file;               // from an intact base file
  std::optional<MachineBoot> machine;              // from an intact machine file

  /// The log as recovery would keep it: base and last entry (last_index == base.index when it keeps none).
  consensus::LogBase base;
  LogIndex last_index;
  Term last_term;

  std::vector<SegmentSummary> segments;    // by first index
  std::vector<SnapshotSummary> snapshots;  // newest first, temp ones (leftovers) included
  std::vector<Finding> findings;           // in the order found: files, then the log, then the snapshots

  /// What a start would do with this directory, as this build's recovery decides (one sentence).
  std::string at_start;

  /// Whether anything found is damage or could not be read: what makes `cohort log inspect` exit 1.
  bool damaged() const;
};

/// A kernel boot id as the kernel prints it (8-4-4-4-12 hex digits).
std::string boot_id_text(const MachineBoot& boot);

/// Inspects `directory`, reading only. The error: the directory cannot be listed, or holds no Cohort file.
/// `current_boot`: this machine's kernel boot id, to compare with the machine file (nullopt: unknown).
Result<Inspection, std::string> inspect(Directory& directory, const InspectOptions& options,
                                        const std::optional<MachineBoot>& current_boot);

}  // namespace cohort::storage

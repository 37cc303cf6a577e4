#pragma once
// Snapshot files: the durable form of a snapshot (design.md section 5) and the code that writes, lists,
// verifies, loads and removes them. What goes into a snapshot's body is the service host's business;
// here the body is opaque bytes. docs/durability.md draws the format.
//
// File `snapshot-<index, 20 digits>-<term, 20 digits>`: a 64-byte header, then the body.
//   magic u64 | version u32 | header length u32 | cluster id u64 | index u64 | term u64 | body size u64 |
//   body checksum u64 (XXH3-64 of the body) | header checksum u64 (XXH3-64 of the 56 bytes before it)
// `index` and `term` are those of the last log entry the snapshot covers. No node id: a snapshot is the same on
// every node, and install-snapshot ships it from one to another. Names sort by index. Every snapshot file is
// written whole, from a body in memory: one this node took, or one installed from the leader, which the
// consensus core receives in memory (docs/architecture.md, "Snapshots").
//
// Invariants the writer keeps:
//  - A snapshot under its final name is complete and durable: it is written under `<name>.tmp`, its size and
//    checksum are checked, it is synced, renamed, and the directory is synced. A crash at any step leaves the old
//    set of snapshots, or the old set plus the new one whole; recovery removes the `.tmp` left behind.
//  - Every sync interval of body bytes the staging file is synced, so a snapshot holds at most one interval of
//    dirty pages instead of leaving its whole body to finish()'s sync.
//  - After any failed write or sync the writer refuses everything: an fsync is never retried.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "common/strong_id.h"
#include "consensus/log.h"
#include "storage/file.h"

namespace cohort::storage {

inline constexpr std::size_t kSnapshotHeaderSize = 64;
/// How many body bytes write_snapshot() hands the writer at a time.
inline constexpr std::size_t kSnapshotPieceSize = std::size_t{1} << 20U;
/// Body bytes between two syncs of a snapshot being written (see the invariants above).
inline constexpr std::uint64_t kSnapshotSyncInterval = std::uint64_t{4} << 20U;

/// What a snapshot file announces in its header: the position it covers, and its body's size and checksum.
struct SnapshotMeta {
  LogIndex index;  // the last entry the snapshot covers
  Term term;       // that entry's term
  std::uint64_t size = 0;
  std::uint64_t checksum = 0;  // XXH3-64 of the body
  friend bool operator==(const SnapshotMeta&, const SnapshotMeta&) = default;
};

/// XXH3-64 of a body: what SnapshotMeta::checksum holds (the checksum install-snapshot ships, too).
using consensus::snapshot_checksum;

enum class SnapshotFileKind : std::uint8_t {
  complete,  // the final name: durable and whole
  temp,      // `.tmp`: a snapshot being written; a leftover is removed by recovery, like every `.tmp`
};

/// What a snapshot file's name says.
struct SnapshotFileName {
  LogIndex index;
  Term term;
  SnapshotFileKind kind = SnapshotFileKind::complete;
  friend bool operator==(const SnapshotFileName&, const SnapshotFileName&) = default;
};

std::string snapshot_name(LogIndex index, Term term, SnapshotFileKind kind = SnapshotFileKind::complete);
/// Nullopt if `name` is not a snapshot file's name (index and term must be non-zero). A `.part` is not one: no
/// build has written one (received snapshots are written whole, as `.tmp`), so none is listed, loaded or removed.
std::optional<SnapshotFileName> parse_snapshot_name(std::string_view name);

/// Why a snapshot file cannot be used.
struct SnapshotError {
  enum class Kind : std::uint8_t {
    io,       // the file could not be opened or read: `code` is the errno
    damaged,  // its bytes fail a check: torn or corrupted; another snapshot may still serve
    foreign,  // another cluster's snapshot: never used, and a reason to refuse to start
  };
  Kind kind = Kind::io;
  int code = 0;
  std::string message;  // names the file and what is wrong with it
};

// ---- header

/// Writes the header of a snapshot of `cluster_id` announcing `meta` into `out` (kSnapshotHeaderSize bytes).
void encode_snapshot_header(std::byte* out, std::uint64_t cluster_id, const SnapshotMeta& meta) noexcept;
/// Decodes and checks a header: size, magic, version, checksum, header length, a non-zero position, a body
/// size that fits a file, then the cluster id (foreign). The message gives the reason, without the file.
Result<SnapshotMeta, SnapshotError> decode_snapshot_header(ByteSpan bytes, std::uint64_t cluster_id);

// ---- writing

/// Writes one snapshot in pieces of any size, checking what arrives against the announced size and checksum
/// before it takes the final name. Single-threaded; `directory` must outlive it.
class SnapshotWriter {
 public:
  /// `sync_interval`: body bytes between syncs (see the invariants above); tests make it small.
  explicit SnapshotWriter(std::uint64_t sync_interval = kSnapshotSyncInterval);
  ~SnapshotWriter();
  SnapshotWriter(SnapshotWriter&&) noexcept;
  SnapshotWriter& operator=(SnapshotWriter&&) noexcept;

  /// Creates the `.tmp` staging file (a leftover of that name is replaced) and writes the header announcing
  /// `meta`. Once per writer.
  IoStatus begin(Directory& directory, std::uint64_t cluster_id, const SnapshotMeta& meta);
  /// Appends `piece` at offset(). More bytes than announced fail.
  IoStatus write(ByteSpan piece);
  /// Checks that exactly meta().size bytes arrived and that they hash to meta().checksum, then syncs the file,
  /// renames it to its final name and syncs the directory. A checksum mismatch removes the staging file at once:
  /// its bytes can never verify.
  IoStatus finish();

  /// Body bytes written so far: where the next piece goes.
  std::uint64_t offset() const noexcept { return offset_; }
  const SnapshotMeta& meta() const noexcept { return meta_; }
  bool failed() const noexcept { return state_ == State::failed; }
  bool finished() const noexcept { return state_ == State::finished; }

 private:
  enum class State : std::uint8_t { idle, writing, finished, failed };
  struct Hash;

  IoStatus fail(IoError error);
  IoError error(int code, std::string_view what) const;

  std::uint64_t sync_interval_;
  State state_ = State::idle;
  Directory* directory_ = nullptr;
  SnapshotMeta meta_;
  std::string name_;  // of the staging file
  std::unique_ptr<File> file_;
  std::unique_ptr<Hash> hash_;  // the running XXH3 of the body written so far
  std::uint64_t offset_ = 0;
};

/// Writes `body` as the snapshot of `cluster_id` at (`index`, `term`): begin, pieces of kSnapshotPieceSize, finish.
IoResult<SnapshotMeta> write_snapshot(Directory& directory, std::uint64_t cluster_id, LogIndex index, Term term,
                                      ByteSpan body);

// ---- listing and loading

/// A snapshot file that could not be used, and why.
struct DamagedSnapshot {
  std::string name;
  LogIndex index;  // as its name says
  Term term;
  std::string reason;
};

/// The complete snapshot files, newest index first; temp files are left out.
struct SnapshotListing {
  std::vector<SnapshotMeta> snapshots;   // their headers intact and their sizes as announced
  std::vector<DamagedSnapshot> damaged;  // the others: a damaged header, a size that differs from the header's
};
/// Reads each complete snapshot's header only (the bodies are checked by load_snapshot). Another cluster's
/// snapshot or an I/O error fails the whole listing.
Result<SnapshotListing, SnapshotError> list_snapshots(Directory& directory, std::uint64_t cluster_id);

struct LoadedSnapshot {
  SnapshotMeta meta;
  std::vector<std::byte> body;
};
/// Loads the complete snapshot `name`, as the disk holds it (synced, cache dropped, then read: a page that a
/// failed fsync of an earlier life left cached must not pass for data), checking the header, that the name
/// and the header agree, the file's size, and the body's checksum.
Result<LoadedSnapshot, SnapshotError> load_snapshot(Directory& directory, std::uint64_t cluster_id,
                                                    std::string_view name);

struct LatestSnapshot {
  std::optional<LoadedSnapshot> snapshot;  // nullopt: no usable snapshot (none at all, or every one damaged)
  std::vector<DamagedSnapshot> skipped;    // the damaged snapshots newer than `snapshot`, newest first
};
/// Walks the complete snapshots newest first and loads the first one intact, skipping damaged ones: the caller
/// logs each skipped one loudly and checks that its log reaches back to the snapshot loaded. A directory
/// without snapshots is no error. Another cluster's snapshot or an I/O error is.
Result<LatestSnapshot, SnapshotError> load_latest_snapshot(Directory& directory, std::uint64_t cluster_id);

// ---- cleanup

/// Removes the complete snapshots below `keep_from`, and the temp files below it (a writer still
/// writing one of those fails at finish()), then syncs the directory. `keep_from` should be the index of a
/// snapshot the caller has loaded or written: nothing here checks that a usable one remains. Returns the names
/// removed. The `.tmp` of a snapshot cut short by a crash goes at start, with every other `.tmp` (recover()).
IoResult<std::vector<std::string>> remove_snapshots_before(Directory& directory, LogIndex keep_from);

}  // namespace cohort::storage

#pragma once
// The on-disk formats: segment files of log records, and the metadata file (snapshot files: snapshot_file.h). All
// little-endian, all checksummed with XXH3; docs/durability.md draws them.
//
// Segment file `log-<first index, 20 digits>.seg`:
//   segment header (56 bytes): magic, format version, header length, cluster id, node id, first index, nonce,
//   checksum
//   records, back to back, each starting at a multiple of 8 bytes
// Record: header (48 bytes) + body (the entry's payload) + zero padding to a multiple of 8:
//   u32 body length | u8 entry type | 3 bytes zero | u64 index | u64 term | u64 durable_before |
//   u64 entry checksum | u64 header checksum
// The entry checksum is the consensus entry's own (computed once by the leader over index, term, type and
// payload; it travels with the entry end to end), so storage hashes only the 40 header bytes; the header
// checksum covers those, entry checksum included, and so the body transitively. It is seeded with the
// segment's random nonce: a record is intact only in the segment it was written to, and a client cannot plant,
// inside a command's payload, bytes that recovery would take for a record (it does not know the nonce).
// `durable_before` is the highest index the storage thread knew durable when it wrote the record: recovery uses it to
// tell a torn tail from a damaged durable record (design.md section 5).
//
// Machine file `machine` (40 bytes): magic, format version, length, the kernel's boot id when this node last ran
// under sync policy none, checksum. Present only while the log may hold writes no fsync covered.
//
// Metadata file `meta` (56 bytes): magic, format version, length, cluster id, node id, current term, vote,
// standing (consensus::Standing: whether the node may vote), checksum. Replaced atomically: written to `meta.tmp`,
// synced, renamed over `meta`, directory synced.
//
// Base file `base` (56 bytes): magic, format version, length, cluster id, node id, a flag saying a reset is under
// way, the log's base (the index and term just before its first entry), checksum. Absent until the log's first
// compaction or reset: the base is then (0, 0). Replaced atomically like the metadata file, and always durable
// before any segment it makes unnecessary is removed. While the flag is set, every segment on disk is a leftover
// of the log before the reset: recovery removes them all.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/result.h"
#include "common/strong_id.h"
#include "consensus/log.h"

namespace cohort::storage {

/// Whose log this is. A data directory of another cluster or node is refused at start.
struct Identity {
  std::uint64_t cluster_id = 0;
  NodeId node_id;
  friend bool operator==(const Identity&, const Identity&) = default;
};

inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::size_t kSegmentHeaderSize = 56;
inline constexpr std::size_t kRecordHeaderSize = 48;
inline constexpr std::size_t kRecordAlignment = 8;
inline constexpr std::size_t kMetadataSize = 56;
inline constexpr std::string_view kMetadataName = "meta";
inline constexpr std::string_view kMetadataTempName = "meta.tmp";
inline constexpr std::string_view kTempSuffix = ".tmp";
inline constexpr std::size_t kMachineFileSize = 40;
inline constexpr std::string_view kMachineName = "machine";
inline constexpr std::string_view kMachineTempName = "machine.tmp";
inline constexpr std::size_t kBaseFileSize = 56;
inline constexpr std::string_view kBaseName = "base";
inline constexpr std::string_view kBaseTempName = "base.tmp";

/// Bytes a record with a body of `body` bytes takes in a segment, padding included.
constexpr std::uint64_t record_size(std::size_t body) noexcept {
  return (kRecordHeaderSize + body + kRecordAlignment - 1) / kRecordAlignment * kRecordAlignment;
}

std::string segment_name(LogIndex first_index);
/// The first index a segment file name encodes; nullopt if `name` is not a segment name.
std::optional<LogIndex> parse_segment_name(std::string_view name);

// ---- segment header

void encode_segment_header(std::byte* out, const Identity& identity, LogIndex first_index,
                           std::uint64_t nonce) noexcept;
struct SegmentHeader {
  Identity identity;
  LogIndex first_index;
  std::uint64_t nonce = 0;  // seeds the checksum of every record header in the segment
};
/// Nullopt and a reason if the bytes are not a valid segment header.
std::optional<SegmentHeader> decode_segment_header(ByteSpan bytes, std::string& reason);

// ---- records

struct RecordHeader {
  std::uint32_t body_length = 0;
  consensus::EntryType type = consensus::EntryType::command;
  LogIndex index;
  Term term;
  LogIndex durable_before;
  std::uint64_t entry_checksum = 0;
};

/// Writes a record's header (with durable_before zero and no header checksum yet), its body and its padding
/// into `out`, which holds record_size(entry.payload.size()) bytes.
void encode_record(std::byte* out, const consensus::Entry& entry) noexcept;
/// Sets durable_before in an encoded record header and seals it with the header checksum, seeded with the
/// segment's nonce. The storage thread does this just before the write: only it knows what is durable.
void seal_record(std::byte* header, LogIndex durable_before, std::uint64_t nonce) noexcept;
/// Decodes and checks a record header: its checksum, zero reserved bytes and a known type. It does not check
/// the body (see body_ok).
std::optional<RecordHeader> decode_record_header(ByteSpan bytes, std::uint64_t nonce) noexcept;
/// Whether `body` matches the header's entry checksum.
bool body_ok(const RecordHeader& header, ByteSpan body) noexcept;

// ---- reading a segment's records: the rules recovery cuts by, which the read-only inspection applies too

/// Checks the record that should start at `offset` of `segment` (a whole segment file's bytes, sealed with
/// `nonce`) and hold index `expected` with a term of at least `floor`: room for a header, its checksum and zeros,
/// the index, the term, a body inside the file, and the body against the entry checksum, in that order. Returns
/// the header, or what is wrong with the record.
Result<RecordHeader, std::string> check_record(ByteSpan segment, std::uint64_t offset, std::uint64_t nonce,
                                               LogIndex expected, Term floor);

/// The intact records in segment[from, end), found by probing every aligned offset: past damage, lengths cannot
/// be followed; the nonce in the header checksum keeps bytes inside a payload from passing for a record.
struct RecordsFound {
  std::uint64_t records = 0;
  LogIndex lowest;  // of their indexes; meaningful when records != 0
  LogIndex highest;
  /// The highest durable_before that a record of an index above the damaged one claims, below its own index:
  /// if it reaches the damaged index, the damaged record had been made durable. Anything else is no proof.
  LogIndex durable_claim;
  std::uint64_t claim_offset = 0;  // of the record that claims it
};
RecordsFound find_records_after(ByteSpan segment, std::uint64_t from, std::uint64_t nonce, LogIndex damaged);

// ---- metadata

void encode_metadata(std::byte* out, const Identity& identity, const consensus::HardState& state) noexcept;
struct Metadata {
  Identity identity;
  consensus::HardState hard_state;
};
std::optional<Metadata> decode_metadata(ByteSpan bytes, std::string& reason);

// ---- base file

struct BaseFile {
  Identity identity;
  consensus::LogBase base;
  /// A reset is under way: the segments on disk belong to the log before it, whatever their indexes.
  bool resetting = false;
};
void encode_base(std::byte* out, const Identity& identity, const consensus::LogBase& base, bool resetting) noexcept;
std::optional<BaseFile> decode_base(ByteSpan bytes, std::string& reason);

// ---- machine file

/// The kernel's boot id (/proc/sys/kernel/random/boot_id, as 16 bytes): it changes exactly when the machine
/// restarts, which tells a machine crash (the page cache lost) from a process crash (the page cache kept).
using MachineBoot = std::array<std::byte, 16>;
void encode_machine_boot(std::byte* out, const MachineBoot& boot) noexcept;
std::optional<MachineBoot> decode_machine_boot(ByteSpan bytes, std::string& reason);

}  // namespace cohort::storage

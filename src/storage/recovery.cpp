#include "storage/recovery.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "storage/log_writer.h"

namespace cohort::storage {
namespace {

struct SegmentFile {
  LogIndex first;
  std::string name;
};

/// The first damaged record: where it starts, the index it should hold, and what is wrong with it.
struct Damage {
  std::size_t segment;  // position in the segment list
  std::uint64_t offset;
  LogIndex index;
  std::string what;
};

/// Reads a whole file as the disk holds it: synced first (a process crash leaves writes in the page cache
/// only), then the cache dropped (a failed fsync of an earlier life may have left pages that read fine but
/// never reached the disk), then read.
IoResult<std::vector<std::byte>> read_durable(File& file) {
  if (auto status = file.sync(); !status) return unexpected(status.error());
  if (auto status = file.drop_cache(); !status) return unexpected(status.error());
  auto size = file.size();
  if (!size) return unexpected(std::move(size).error());
  std::vector<std::byte> bytes(*size);
  auto read = file.read_at(0, bytes);
  if (!read) return unexpected(std::move(read).error());
  bytes.resize(*read);
  return bytes;
}

struct OpenedSegment {
  std::vector<std::byte> bytes;
  std::uint64_t nonce = 0;
};

/// Reads a segment and checks its header. Its header is durable before its name exists (log_writer.h), so
/// damage there is never a torn write.
Result<OpenedSegment, std::string> open_segment(Directory& directory, const SegmentFile& segment,
                                                const Identity& identity) {
  const std::string& dir = directory.path();
  auto file = directory.open(segment.name, OpenMode::existing);
  if (!file) return unexpected(fmt::format("cannot open {}/{}: {}", dir, segment.name, file.error().message));
  auto bytes = read_durable(**file);
  if (!bytes) return unexpected(fmt::format("cannot read {}/{}: {}", dir, segment.name, bytes.error().message));
  std::string reason;
  const auto header = decode_segment_header(*bytes, reason);
  if (!header)
    return unexpected(
        fmt::format("log segment {}/{} is damaged at offset 0: {}; refusing to start", dir, segment.name, reason));
  if (header->identity != identity)
    return unexpected(
        fmt::format("log segment {}/{} belongs to node {} of cluster {}, not to node {} of cluster "
                    "{}; refusing to start",
                    dir, segment.name, header->identity.node_id.value(), header->identity.cluster_id,
                    identity.node_id.value(), identity.cluster_id));
  if (header->first_index != segment.first)
    return unexpected(fmt::format("log segment {}/{} is damaged at offset 0: its header says it starts at index {}",
                                  dir, segment.name, header->first_index.value()));
  return OpenedSegment{std::move(bytes).value(), header->nonce};
}

}  // namespace

Result<RecoveredLog, std::string> recover(Directory& directory, const Identity& identity, const LogOptions& options) {
  const std::string& dir = directory.path();
  RecoveredLog out;
  auto names = directory.list();
  if (!names) return unexpected(fmt::format("cannot list the data directory {}: {}", dir, names.error().message));

  // Leftovers of a replacement or a segment creation cut short: never trusted, always removed.
  bool has_metadata = false;
  bool has_base = false;
  bool removed = false;
  std::vector<SegmentFile> segments;
  for (const std::string& name : *names) {
    if (name.ends_with(kTempSuffix)) {
      if (auto status = directory.remove(name); !status)
        return unexpected(fmt::format("cannot remove the leftover {}/{}: {}", dir, name, status.error().message));
      out.repairs.push_back(fmt::format("removed {}/{}, left by an update cut short", dir, name));
      removed = true;
    } else if (name == kMetadataName) {
      has_metadata = true;
    } else if (name == kBaseName) {
      has_base = true;
    } else if (const auto first = parse_segment_name(name)) {
      segments.push_back(SegmentFile{*first, name});
    }
  }
  if (removed) {
    if (auto status = directory.sync(); !status)
      return unexpected(fmt::format("cannot sync the data directory {}: {}", dir, status.error().message));
  }
  std::sort(segments.begin(), segments.end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.first < b.first; });

  if (!has_metadata && !has_base && segments.empty()) {
    // An empty directory: a new cluster's first start, or a node whose disk was replaced. Only the other
    // members can tell which (consensus::Standing::fresh).
    out.hard_state.standing = consensus::Standing::fresh;
    if (auto status = write_metadata(directory, identity, out.hard_state); !status)
      return unexpected(fmt::format("cannot create the metadata file in {}: {}", dir, status.error().message));
    out.created = true;
    return out;
  }

  // Whether the term and vote are lost: the metadata is rebuilt from the log and the node rejoins as a
  // recovering one, which takes a term a majority reports as one it may have voted in.
  bool metadata_lost = false;
  if (!has_metadata) {
    metadata_lost = true;
    out.repairs.push_back(fmt::format(
        "DATA LOSS: the data directory {} holds a log ({}) but no metadata file '{}': this node's term and vote are "
        "lost; it rejoins as a recovering node and votes again once it has caught up",
        dir, segments.empty() ? std::string(kBaseName) : segments.front().name + " and more", kMetadataName));
  } else {
    auto file = directory.open(kMetadataName, OpenMode::existing);
    if (!file) return unexpected(fmt::format("cannot open {}/{}: {}", dir, kMetadataName, file.error().message));
    auto bytes = read_durable(**file);
    if (!bytes) return unexpected(fmt::format("cannot read {}/{}: {}", dir, kMetadataName, bytes.error().message));
    std::string reason;
    const auto metadata = decode_metadata(*bytes, reason);
    if (!metadata) {
      // Only ever replaced atomically: this is damage, not a torn write. The segments still say whose log it is.
      metadata_lost = true;
      out.repairs.push_back(fmt::format(
          "DATA LOSS: {}/{}: {}: this node's term and vote are lost; it rejoins as a recovering node and votes "
          "again once it has caught up",
          dir, kMetadataName, reason));
    } else {
      if (metadata->identity != identity)
        return unexpected(fmt::format(
            "the data directory {} belongs to node {} of cluster {}, not to node {} of "
            "cluster {} (another node's or cluster's data is never repaired into this one: to replace this node's "
            "disk, empty its data directory and start it again, and it rejoins from the cluster); refusing to start",
            dir, metadata->identity.node_id.value(), metadata->identity.cluster_id, identity.node_id.value(),
            identity.cluster_id));
      out.hard_state = metadata->hard_state;
    }
  }
  if (metadata_lost) out.hard_state = consensus::HardState{Term{0}, std::nullopt, consensus::Standing::recovering};

  // The base: where the log starts (format.h). Absent until the first compaction or reset: (0, 0).
  bool base_lost = false;
  bool resetting = false;
  std::string base_reason;
  if (has_base) {
    auto file = directory.open(kBaseName, OpenMode::existing);
    if (!file) return unexpected(fmt::format("cannot open {}/{}: {}", dir, kBaseName, file.error().message));
    auto bytes = read_durable(**file);
    if (!bytes) return unexpected(fmt::format("cannot read {}/{}: {}", dir, kBaseName, bytes.error().message));
    const auto decoded = decode_base(*bytes, base_reason);
    if (!decoded) {
      // Only ever replaced atomically: this is damage, not a torn write.
      base_lost = true;
    } else if (decoded->identity != identity) {
      return unexpected(
          fmt::format("{}/{} belongs to node {} of cluster {}, not to node {} of cluster {}; refusing to start", dir,
                      kBaseName, decoded->identity.node_id.value(), decoded->identity.cluster_id,
                      identity.node_id.value(), identity.cluster_id));
    } else {
      out.base = decoded->base;
      resetting = decoded->resetting;
    }
  } else if (!segments.empty() && segments.front().first != LogIndex{1}) {
    // The base file is written before the first segment goes: a log that does not start at 1 had one.
    base_lost = true;
    base_reason = fmt::format("missing, while the log's first segment, {}, starts at index {}", segments.front().name,
                              segments.front().first.value());
  }

  // Leftovers of a reset or a compaction cut short, decided by name alone (they are never read): during a reset
  // every segment on disk belongs to the log before it; otherwise a segment starting at or before the base ends
  // there too (a compaction's base is the end of a segment it removes).
  std::vector<SegmentFile> leftovers;
  if (resetting) {
    leftovers = std::move(segments);
    segments.clear();
  } else if (!base_lost) {
    const auto kept = std::find_if(segments.begin(), segments.end(),
                                   [&](const SegmentFile& segment) { return segment.first > out.base.index; });
    leftovers.assign(segments.begin(), kept);
    segments.erase(segments.begin(), kept);
  }
  if (base_lost) {
    // What the segments prove: the log starts at its first segment. The term before it is unknown; term 0, which
    // no entry has, claims none: no leader's log matches this one at its base, so the leader repairs it.
    if (!segments.empty() && segments.front().first != LogIndex{1})
      out.base = consensus::LogBase{segments.front().first.prev(), Term{0}};
  }
  // A log that starts after its base has lost entries a compaction never removed (it removes whole segments up to
  // the base, oldest first, and a new segment is durable before its name exists): damage to durable data, never a
  // torn write.
  const bool start_gap = !segments.empty() && segments.front().first != out.base.index.next();

  // Scan every record in log order up to the first damage, one segment in memory at a time.
  std::optional<Damage> damage;
  std::vector<std::byte> damaged_bytes;  // the segment holding the damage, for the search below
  LogIndex expected = out.base.index.next();
  Term last_term = out.base.term;  // terms never decrease, from the base on
  std::size_t scanned = 0;         // segments read so far
  for (; scanned < segments.size() && !damage && !start_gap; ++scanned) {
    const SegmentFile& segment = segments[scanned];
    auto opened = open_segment(directory, segment, identity);
    if (!opened) return unexpected(std::move(opened).error());
    if (segment.first != expected) {
      // A gap or an overlap: the damage is at the end of the previous segment, whose bytes are needed again.
      auto previous = open_segment(directory, segments[scanned - 1], identity);
      if (!previous) return unexpected(std::move(previous).error());
      damaged_bytes = std::move(previous->bytes);
      damage = Damage{scanned - 1, out.segments.back().size, expected,
                      fmt::format("the next segment, {}, starts at index {}", segment.name, segment.first.value())};
      break;
    }
    SegmentInfo info{segment.first, opened->nonce, segment.first.prev(), kSegmentHeaderSize, {}, 0};
    const ByteSpan all(opened->bytes);
    std::uint64_t offset = kSegmentHeaderSize;
    while (offset < all.size()) {
      const auto record = check_record(all, offset, opened->nonce, expected, last_term);
      if (!record) {
        damage = Damage{scanned, offset, expected, record.error()};
        damaged_bytes = std::move(opened->bytes);
        break;
      }
      info.add_record(expected, offset, options.segment_size);
      info.last = expected;
      if (out.terms.empty() || record->term != last_term) out.terms.push_back(TermRun{expected, record->term});
      last_term = record->term;
      expected = expected.next();
      offset += record_size(record->body_length);
    }
    info.size = offset;
    out.segments.push_back(std::move(info));
  }

  // Checked before any repair: a refusal leaves the disk as it found it.
  if (metadata_lost) out.hard_state.term = std::max(out.hard_state.term, last_term);
  if (last_term > out.hard_state.term)
    return unexpected(
        fmt::format("the log in {} holds entries of term {}, but {} says the current term is {}: "
                    "the metadata is damaged; refusing to start",
                    dir, last_term.value(), kMetadataName, out.hard_state.term.value()));

  if (start_gap) {
    // Read like any segment the log holds, so that another node's data is refused rather than cut.
    for (const SegmentFile& segment : segments) {
      auto opened = open_segment(directory, segment, identity);
      if (!opened) return unexpected(std::move(opened).error());
    }
  }

  // Does an intact record after the damage say the damaged one was durable when it was written? Only a record of a
  // later index that claims less than itself can: anything else is no proof.
  LogIndex claimed;
  std::string claimed_where;
  if (damage) {
    const auto claims_in = [&](ByteSpan bytes, std::uint64_t from, std::uint64_t nonce, const std::string& name) {
      const RecordsFound found = find_records_after(bytes, from, nonce, damage->index);
      if (found.durable_claim > claimed) {
        claimed = found.durable_claim;
        claimed_where = fmt::format("{}/{} at offset {}", dir, name, found.claim_offset);
      }
    };
    claims_in(damaged_bytes, damage->offset + kRecordAlignment, out.segments[damage->segment].nonce,
              segments[damage->segment].name);
    for (std::size_t s = damage->segment + 1; s < segments.size(); ++s) {
      auto later = open_segment(directory, segments[s], identity);
      if (!later) return unexpected(std::move(later).error());
      claims_in(later->bytes, kSegmentHeaderSize, later->nonce, segments[s].name);
    }
  }
  const bool durable_damaged = damage && claimed >= damage->index;

  // Repairs from here on. Whatever may have lost entries this node acknowledged makes it a recovering node, durably,
  // before anything is cut or rewritten: a crash part way (or a failure to write this) must leave a node that knows
  // it is recovering, never a member with a shorter log that forgot what it acknowledged. The cut also removes the
  // evidence that a damaged record was durable.
  if (base_lost || start_gap || durable_damaged) out.hard_state.standing = consensus::Standing::recovering;
  if (metadata_lost || base_lost || start_gap || durable_damaged) {
    if (auto status = write_metadata(directory, identity, out.hard_state); !status)
      return unexpected(fmt::format("cannot rewrite {}/{}: {}", dir, kMetadataName, status.error().message));
  }

  if (resetting || !leftovers.empty()) {
    // A reset's leftovers go from the last backwards, a compaction's from the oldest on, as they would have.
    if (resetting) std::reverse(leftovers.begin(), leftovers.end());
    for (const SegmentFile& leftover : leftovers) {
      if (auto status = directory.remove(leftover.name); !status)
        return unexpected(fmt::format("cannot remove {}/{}: {}", dir, leftover.name, status.error().message));
    }
    if (auto status = directory.sync(); !status)
      return unexpected(fmt::format("cannot sync the data directory {}: {}", dir, status.error().message));
    if (resetting) {
      if (auto status = write_base(directory, identity, out.base, /*resetting=*/false); !status)
        return unexpected(fmt::format("cannot rewrite {}/{}: {}", dir, kBaseName, status.error().message));
      out.repairs.push_back(fmt::format(
          "finished a reset of the log to index {} (term {}) that was cut short: removed {} segment(s) of the log "
          "before it",
          out.base.index.value(), out.base.term.value(), leftovers.size()));
    } else {
      out.repairs.push_back(fmt::format(
          "finished a compaction of the log to index {} that was cut short: removed {} segment(s) from {}/{} on, "
          "which end at or before it",
          out.base.index.value(), leftovers.size(), dir, leftovers.front().name));
    }
  }

  if (base_lost) {
    if (auto status = write_base(directory, identity, out.base, /*resetting=*/false); !status)
      return unexpected(fmt::format("cannot rewrite {}/{}: {}", dir, kBaseName, status.error().message));
    out.repairs.push_back(fmt::format(
        "DATA LOSS: {}/{}: {}. Where the log starts and the term there are lost: taking the base just before the "
        "log's first segment, index {}, with term {} (above index 0 no entry has term 0, so no leader's log matches "
        "this one there). This node rejoins as a recovering node, repairs its log from the leader and votes again "
        "once it has caught up",
        dir, kBaseName, base_reason, out.base.index.value(), out.base.term.value()));
  }

  if (start_gap) {
    // Nothing after the gap can be placed: the log is cut at its start, later segments first.
    for (std::size_t s = segments.size(); s-- > 0;) {
      if (auto status = directory.remove(segments[s].name); !status)
        return unexpected(fmt::format("cannot remove {}/{}: {}", dir, segments[s].name, status.error().message));
    }
    if (auto status = directory.sync(); !status)
      return unexpected(fmt::format("cannot sync the data directory {}: {}", dir, status.error().message));
    out.repairs.push_back(fmt::format(
        "DATA LOSS: the log in {} starts at index {} ({}), but its base is index {}: the entries between are lost. "
        "Cut the log there ({} segment(s)): it is empty after its base; this node rejoins as a recovering node, "
        "repairs its log from the leader and votes again once it has caught up",
        dir, segments.front().first.value(), segments.front().name, out.base.index.value(), segments.size()));
  }

  if (damage) {
    // Cut the log at the damage; later segments go first, as in a truncation. A torn tail was never proven
    // durable; damage to a durable record loses entries this node may have acknowledged, which the cluster
    // still holds: the node rejoins as a recovering one and repairs its log from the leader.
    const std::string& name = segments[damage->segment].name;
    std::uint64_t dropped = damaged_bytes.size() - damage->offset;
    std::size_t dropped_segments = 0;
    for (std::size_t s = segments.size(); s-- > damage->segment + 1;) {
      ++dropped_segments;
      if (auto status = directory.remove(segments[s].name); !status)
        return unexpected(fmt::format("cannot remove {}/{}: {}", dir, segments[s].name, status.error().message));
    }
    if (dropped_segments != 0) {
      if (auto status = directory.sync(); !status)
        return unexpected(fmt::format("cannot sync the data directory {}: {}", dir, status.error().message));
    }
    auto file = directory.open(name, OpenMode::existing);
    if (!file) return unexpected(fmt::format("cannot open {}/{}: {}", dir, name, file.error().message));
    if (auto status = (*file)->truncate(damage->offset); !status)
      return unexpected(fmt::format("cannot cut {}/{}: {}", dir, name, status.error().message));
    if (auto status = (*file)->sync(); !status)
      return unexpected(fmt::format("cannot sync {}/{}: {}", dir, name, status.error().message));
    out.segments.resize(damage->segment + 1);
    if (durable_damaged) {
      out.repairs.push_back(fmt::format(
          "DATA LOSS: log segment {}/{} is damaged at offset {} (index {}): {}. The intact record in {} was written "
          "once entries up to {} were durable, so this is damage to a durable record, not a torn write. Cut the log "
          "there ({} bytes and {} later segment(s)); this node rejoins as a recovering node, repairs its log from "
          "the leader and votes again once it has caught up",
          dir, name, damage->offset, damage->index.value(), damage->what, claimed_where, claimed.value(), dropped,
          dropped_segments));
    } else {
      out.repairs.push_back(fmt::format(
          "cut off a torn tail at {}/{} offset {} (index {}: {}): {} bytes, and {} later segment(s). No later "
          "record says it was durable. Records written since the last sync cannot be told from a torn write when "
          "damaged: if they were acknowledged after all, a majority of intact replicas still holds them",
          dir, name, damage->offset, damage->index.value(), damage->what, dropped, dropped_segments));
    }
  }

  // The names may be in the page cache only, too: a segment's creation, a truncation's removals or the
  // metadata's rename that the previous life did not get to sync. A later machine crash must not undo them
  // under the log handed out.
  if (auto status = directory.sync(); !status)
    return unexpected(fmt::format("cannot sync the data directory {}: {}", dir, status.error().message));

  out.last_index = expected.prev();
  return out;
}

Status<std::string> note_machine_boot(Directory& directory, const Identity& identity, RecoveredLog& recovered,
                                      const MachineBoot& current, SyncPolicy policy) {
  const std::string& dir = directory.path();
  auto names = directory.list();
  if (!names) return unexpected(fmt::format("cannot list the data directory {}: {}", dir, names.error().message));
  const bool present = std::find(names->begin(), names->end(), kMachineName) != names->end();
  if (present) {
    std::optional<MachineBoot> last;
    std::string reason;
    auto file = directory.open(kMachineName, OpenMode::existing);
    if (!file) return unexpected(fmt::format("cannot open {}/{}: {}", dir, kMachineName, file.error().message));
    auto bytes = read_durable(**file);
    if (!bytes) return unexpected(fmt::format("cannot read {}/{}: {}", dir, kMachineName, bytes.error().message));
    last = decode_machine_boot(*bytes, reason);
    const bool has_history = recovered.last_index != LogIndex{0} || recovered.hard_state.term != Term{0};
    // All zeros: the kernel did not say. Then no start can rule a machine restart out.
    const bool unknown = current == MachineBoot{};
    if ((!last || *last != current || unknown) && has_history &&
        recovered.hard_state.standing == consensus::Standing::member) {
      recovered.hard_state.standing = consensus::Standing::recovering;
      if (auto status = write_metadata(directory, identity, recovered.hard_state); !status)
        return unexpected(fmt::format("cannot rewrite {}/{}: {}", dir, kMetadataName, status.error().message));
      recovered.repairs.push_back(fmt::format(
          "POSSIBLE DATA LOSS: the machine restarted since this node last ran under sync policy none ({}), so "
          "entries it acknowledged may not have reached the disk. It rejoins as a recovering node, repairs its log "
          "from the cluster and votes again once it has caught up",
          !last     ? fmt::format("its machine file is unreadable: {}", reason)
          : unknown ? std::string("the kernel gives no boot id")
                    : std::string("a new kernel boot id")));
    }
  }
  if (policy == SyncPolicy::none) {
    std::array<std::byte, kMachineFileSize> bytes{};
    encode_machine_boot(bytes.data(), current);
    auto opened = directory.open(kMachineTempName, OpenMode::create_new);
    if (!opened)
      return unexpected(fmt::format("cannot create {}/{}: {}", dir, kMachineTempName, opened.error().message));
    const ByteSpan parts[] = {bytes};
    IoStatus status = (*opened)->write_at(0, parts);
    if (status) status = (*opened)->sync();
    if (status) status = directory.rename(kMachineTempName, kMachineName);
    if (status) status = directory.sync();
    if (!status) return unexpected(fmt::format("cannot write {}/{}: {}", dir, kMachineName, status.error().message));
  } else if (present) {
    // Everything the log holds is synced now (recover() synced what it kept): no machine crash can cost it.
    IoStatus status = directory.remove(kMachineName);
    if (status) status = directory.sync();
    if (!status) return unexpected(fmt::format("cannot remove {}/{}: {}", dir, kMachineName, status.error().message));
  }
  return {};
}

}  // namespace cohort::storage

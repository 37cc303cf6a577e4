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
  std::unique_ptr<File> file;
  std::vector<std::byte> bytes;
};

/// The first damaged record: where it starts, the index it should hold, and what is wrong with it.
struct Damage {
  std::size_t segment;  // position in the segment list
  std::uint64_t offset;
  LogIndex index;
  std::string what;
};

/// The highest durable_before among the intact records in bytes[from, end). Records after damage cannot be
/// found by following lengths, so this looks for an intact record at every aligned offset.
LogIndex durable_claimed_after(ByteSpan bytes, std::uint64_t from, std::uint64_t& claimed_at) {
  LogIndex highest;
  std::uint64_t offset = (from + kRecordAlignment - 1) / kRecordAlignment * kRecordAlignment;
  while (offset + kRecordHeaderSize <= bytes.size()) {
    const auto header = decode_record_header(bytes.subspan(offset, kRecordHeaderSize));
    if (header && offset + record_size(header->body_length) <= bytes.size() &&
        body_ok(*header, bytes.subspan(offset + kRecordHeaderSize, header->body_length))) {
      if (header->durable_before > highest) {
        highest = header->durable_before;
        claimed_at = offset;
      }
      offset += record_size(header->body_length);
    } else {
      offset += kRecordAlignment;
    }
  }
  return highest;
}

IoResult<std::vector<std::byte>> read_all(File& file) {
  auto size = file.size();
  if (!size) return unexpected(std::move(size).error());
  std::vector<std::byte> bytes(*size);
  auto read = file.read_at(0, bytes);
  if (!read) return unexpected(std::move(read).error());
  bytes.resize(*read);
  return bytes;
}

}  // namespace

Result<RecoveredLog, std::string> recover(Directory& directory, const Identity& identity, const LogOptions& options) {
  const std::string& dir = directory.path();
  RecoveredLog out;
  auto names = directory.list();
  if (!names) return unexpected(fmt::format("cannot list the data directory {}: {}", dir, names.error().message));

  // Leftovers of a replacement or a segment creation cut short: never trusted, always removed.
  bool has_metadata = false;
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
    } else if (const auto first = parse_segment_name(name)) {
      segments.push_back(SegmentFile{*first, name, nullptr, {}});
    }
  }
  if (removed) {
    if (auto status = directory.sync(); !status)
      return unexpected(fmt::format("cannot sync the data directory {}: {}", dir, status.error().message));
  }
  std::sort(segments.begin(), segments.end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.first < b.first; });

  if (!has_metadata) {
    if (!segments.empty())
      return unexpected(
          fmt::format("the data directory {} holds log segments ({} and more) but no metadata file "
                      "'{}': it is damaged or incomplete; refusing to start",
                      dir, segments.front().name, kMetadataName));
    if (auto status = write_metadata(directory, identity, consensus::HardState{}); !status)
      return unexpected(fmt::format("cannot create the metadata file in {}: {}", dir, status.error().message));
    out.created = true;
    return out;
  }

  {
    auto file = directory.open(kMetadataName, OpenMode::existing);
    if (!file) return unexpected(fmt::format("cannot open {}/{}: {}", dir, kMetadataName, file.error().message));
    auto bytes = read_all(**file);
    if (!bytes) return unexpected(fmt::format("cannot read {}/{}: {}", dir, kMetadataName, bytes.error().message));
    std::string reason;
    const auto metadata = decode_metadata(*bytes, reason);
    if (!metadata) return unexpected(fmt::format("{}/{}: {}; refusing to start", dir, kMetadataName, reason));
    if (metadata->identity != identity)
      return unexpected(
          fmt::format("the data directory {} belongs to node {} of cluster {}, not to node {} of "
                      "cluster {}; refusing to start",
                      dir, metadata->identity.node_id.value(), metadata->identity.cluster_id, identity.node_id.value(),
                      identity.cluster_id));
    out.hard_state = metadata->hard_state;
  }

  // Scan every record in log order up to the first damage.
  std::optional<Damage> damage;
  LogIndex expected{1};
  Term last_term{0};
  for (std::size_t s = 0; s < segments.size(); ++s) {
    SegmentFile& segment = segments[s];
    auto file = directory.open(segment.name, OpenMode::existing);
    if (!file) return unexpected(fmt::format("cannot open {}/{}: {}", dir, segment.name, file.error().message));
    segment.file = std::move(file).value();
    auto bytes = read_all(*segment.file);
    if (!bytes) return unexpected(fmt::format("cannot read {}/{}: {}", dir, segment.name, bytes.error().message));
    segment.bytes = std::move(bytes).value();
    // A segment's header is durable before its name exists (log_writer.h): damage there is never a torn write.
    std::string reason;
    const auto header = decode_segment_header(segment.bytes, reason);
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
    if (damage) continue;  // later segments are read only to look for durability claims
    if (segment.first != expected) {
      if (s == 0)
        return unexpected(
            fmt::format("the log in {} starts at index {} ({}), but no snapshot covers the entries "
                        "before it; refusing to start",
                        dir, segment.first.value(), segment.name));
      damage = Damage{s - 1, out.segments.back().size, expected,
                      fmt::format("the next segment, {}, starts at index {}", segment.name, segment.first.value())};
      continue;
    }
    SegmentInfo info{segment.first, segment.first.prev(), kSegmentHeaderSize, {}, 0};
    const ByteSpan all(segment.bytes);
    std::uint64_t offset = kSegmentHeaderSize;
    while (offset < all.size()) {
      const auto record =
          decode_record_header(all.subspan(offset, std::min<std::size_t>(kRecordHeaderSize, all.size() - offset)));
      std::string what;
      if (all.size() - offset < kRecordHeaderSize) {
        what = fmt::format("{} bytes are left, too few for a record header", all.size() - offset);
      } else if (!record) {
        const bool zeros = std::all_of(all.begin() + static_cast<std::ptrdiff_t>(offset),
                                       all.begin() + static_cast<std::ptrdiff_t>(offset + kRecordHeaderSize),
                                       [](std::byte b) { return b == std::byte{0}; });
        what = zeros ? "the record header is zeros" : "the record header fails its checksum";
      } else if (record->index != expected) {
        what = fmt::format("the record holds index {} where index {} belongs", record->index.value(), expected.value());
      } else if (record->term < last_term) {
        what = fmt::format("the record's term {} is below the previous record's term {}", record->term.value(),
                           last_term.value());
      } else if (offset + record_size(record->body_length) > all.size()) {
        what = fmt::format("the record's body of {} bytes runs past the end of the file", record->body_length);
      } else if (!body_ok(*record, all.subspan(offset + kRecordHeaderSize, record->body_length))) {
        what = "the record's body fails its checksum";
      }
      if (!what.empty()) {
        damage = Damage{s, offset, expected, std::move(what)};
        break;
      }
      info.add_record(expected, offset, options.segment_size);
      info.last = expected;
      if (record->term != last_term) out.terms.push_back(TermRun{expected, record->term});
      last_term = record->term;
      expected = expected.next();
      offset += record_size(record->body_length);
    }
    info.size = offset;
    out.segments.push_back(std::move(info));
  }

  if (damage) {
    // Does any intact record after the damage say the damaged one was durable when it was written?
    LogIndex claimed;
    std::string claimed_where;
    for (std::size_t s = damage->segment; s < segments.size(); ++s) {
      const std::uint64_t from = s == damage->segment ? damage->offset + kRecordAlignment : kSegmentHeaderSize;
      std::uint64_t at = 0;
      const LogIndex highest = durable_claimed_after(segments[s].bytes, from, at);
      if (highest > claimed) {
        claimed = highest;
        claimed_where = fmt::format("{}/{} at offset {}", dir, segments[s].name, at);
      }
    }
    const std::string& name = segments[damage->segment].name;
    if (claimed >= damage->index)
      return unexpected(fmt::format(
          "log segment {}/{} is damaged at offset {} (index {}): {}. The intact record in {} was written once "
          "entries up to {} were durable, so this is damage to a durable record, not a torn write; refusing to "
          "start. Replace this node's data directory with a copy from a healthy replica",
          dir, name, damage->offset, damage->index.value(), damage->what, claimed_where, claimed.value()));

    // A torn tail: never made durable, so never acknowledged. Later segments go first, as in a truncation.
    std::uint64_t dropped = segments[damage->segment].bytes.size() - damage->offset;
    std::size_t dropped_segments = 0;
    for (std::size_t s = segments.size(); s-- > damage->segment + 1;) {
      dropped += segments[s].bytes.size();
      ++dropped_segments;
      segments[s].file.reset();
      if (auto status = directory.remove(segments[s].name); !status)
        return unexpected(fmt::format("cannot remove {}/{}: {}", dir, segments[s].name, status.error().message));
    }
    segments.resize(damage->segment + 1);
    if (dropped_segments != 0) {
      if (auto status = directory.sync(); !status)
        return unexpected(fmt::format("cannot sync the data directory {}: {}", dir, status.error().message));
    }
    if (auto status = segments.back().file->truncate(damage->offset); !status)
      return unexpected(fmt::format("cannot cut {}/{}: {}", dir, name, status.error().message));
    out.segments.resize(damage->segment + 1);
    out.repairs.push_back(fmt::format(
        "cut off a torn tail at {}/{} offset {} (index {}: {}): {} bytes, {} later segment(s). No later record "
        "says it was durable: if it was after all (a damaged last record cannot be told from a torn write), a "
        "majority of intact replicas still holds it",
        dir, name, damage->offset, damage->index.value(), damage->what, dropped, dropped_segments));
  }

  // What was read back may sit in the page cache only (a process crash keeps unsynced writes): sync it, so
  // that the log handed to the core is durable as a whole.
  for (SegmentFile& segment : segments) {
    if (auto status = segment.file->sync(); !status)
      return unexpected(fmt::format("cannot sync {}/{}: {}", dir, segment.name, status.error().message));
  }
  // So may the names: a segment's creation, a removal by a truncation or the metadata's rename that the previous
  // life did not get to sync. A later machine crash must not undo them under the log handed out.
  if (auto status = directory.sync(); !status)
    return unexpected(fmt::format("cannot sync the data directory {}: {}", dir, status.error().message));

  out.last_index = expected.prev();
  if (last_term > out.hard_state.term)
    return unexpected(
        fmt::format("the log in {} holds entries of term {}, but the metadata file says the current "
                    "term is {}: the metadata is damaged; refusing to start",
                    dir, last_term.value(), out.hard_state.term.value()));
  return out;
}

}  // namespace cohort::storage

#include "storage/inspect.h"

#include <algorithm>
#include <array>
#include <iterator>
#include <limits>
#include <memory>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <xxhash.h>

#include "storage/log_index.h"

namespace cohort::storage {
namespace {

/// The metadata, base and machine files are 40 to 56 bytes: a larger one is damaged whatever it holds, and is
/// not read whole.
constexpr std::uint64_t kSmallFileLimit = 4096;
/// Snapshot bodies are hashed in pieces of this size, never held whole.
constexpr std::size_t kSnapshotReadPiece = std::size_t{1} << 20U;

struct FileBytes {
  std::vector<std::byte> bytes;  // at most the limit asked for
  std::uint64_t size = 0;        // the file's size when it was opened
};

/// Reads `name` from its start, at most `limit` bytes.
IoResult<FileBytes> read_prefix(Directory& directory, std::string_view name, std::uint64_t limit) {
  auto file = directory.open(name, OpenMode::existing);
  if (!file) return unexpected(std::move(file).error());
  auto size = (*file)->size();
  if (!size) return unexpected(std::move(size).error());
  FileBytes read;
  read.size = *size;
  read.bytes.resize(static_cast<std::size_t>(std::min(*size, limit)));
  auto done = (*file)->read_at(0, read.bytes);
  if (!done) return unexpected(std::move(done).error());
  read.bytes.resize(*done);  // the file shrank since: what was there is what there is
  return read;
}

std::string identity_text(const Identity& identity) {
  return fmt::format("node {} of cluster {}", identity.node_id.value(), identity.cluster_id);
}

struct NamedSegment {
  LogIndex first;
  std::string name;
};

/// The first place the log as recovery reads it breaks: from there on recovery cuts everything, or refuses.
struct Break {
  std::size_t segment = 0;  // position among the kept segments
  std::uint64_t offset = 0;
  LogIndex index;  // the index that belongs there
  std::string what;
  // A damaged record or a gap, which later records' claims make a torn tail or damage; not so a segment that cannot
  // be read or whose header is damaged, reported where it was found.
  bool classify = true;
};

/// What the kept segments past the break hold, as recovery's search for proof reads them.
struct AfterBreak {
  std::uint64_t records = 0;
  LogIndex lowest;
  LogIndex highest;
  LogIndex claim;
  std::string claim_where;

  void add(const RecordsFound& found, const std::string& name) {
    if (found.records == 0) return;
    if (records == 0 || found.lowest < lowest) lowest = found.lowest;
    if (records == 0 || found.highest > highest) highest = found.highest;
    records += found.records;
    if (found.durable_claim > claim) {
      claim = found.durable_claim;
      claim_where = fmt::format("{} at offset {}", name, found.claim_offset);
    }
  }
};

class Inspector {
 public:
  Inspector(Directory& directory, const InspectOptions& options, const std::optional<MachineBoot>& current_boot)
      : directory_(directory), options_(options), current_boot_(current_boot) {}

  Result<Inspection, std::string> run();

 private:
  void add(FindingKind kind, std::string file, std::string what, std::optional<std::uint64_t> offset = std::nullopt,
           std::optional<LogIndex> index = std::nullopt) {
    out_.findings.push_back(Finding{kind, std::move(file), offset, index, std::move(what)});
  }
  /// A file that could not be read: one that vanished between the listing and the read (a running node removes
  /// segments, snapshots and temporary files) is no damage.
  void add_io(std::string_view name, const IoError& error) {
    if (error.code == ENOENT)
      add(FindingKind::note, std::string(name), "vanished while being read: a running node removed it");
    else
      add(FindingKind::unreadable, std::string(name), error.message);
  }
  void refuse(std::string reason) {
    if (refusal_.empty()) refusal_ = std::move(reason);
  }

  void read_metadata();
  void read_base();
  void read_machine();
  void take_identity_from_segments();
  void walk_segments();
  void walk_segment(std::size_t position);
  void classify_break();
  void check_snapshots();
  /// `foreign`: set if the snapshot belongs to another cluster.
  SnapshotSummary check_snapshot(const std::string& name, const SnapshotFileName& named, bool& foreign);
  void decide_start();
  std::optional<Term> term_at(LogIndex index) const;

  Directory& directory_;
  const InspectOptions& options_;
  const std::optional<MachineBoot>& current_boot_;
  Inspection out_;

  bool has_metadata_ = false;
  bool has_base_ = false;
  bool has_machine_ = false;
  bool metadata_lost_ = false;  // missing or damaged: recovery rebuilds it
  bool base_lost_ = false;
  bool resetting_ = false;
  std::vector<NamedSegment> all_segments_;
  std::vector<NamedSegment> kept_;  // the segments recovery reads (not leftovers)
  std::vector<std::pair<std::string, SnapshotFileName>> snapshot_files_;
  std::string refusal_;  // why recovery would refuse to start, if it would

  // The walk in log order, as recovery makes it.
  bool start_gap_ = false;
  std::optional<Break> break_;
  AfterBreak after_;
  // Findings (positions in Inspection::findings) of problems in segments past the break: recovery cuts them with
  // everything there, so they take the break's kind.
  std::vector<std::size_t> later_stops_;
  bool durable_damage_ = false;  // the break is damage to a durable record
  LogIndex expected_;
  Term floor_;
  std::vector<TermRun> terms_;  // of the log recovery keeps
};

Result<Inspection, std::string> Inspector::run() {
  auto names = directory_.list();
  if (!names) return unexpected(std::move(names).error().message);
  bool cohort_files = false;
  for (const std::string& name : *names) {
    if (const auto snapshot = parse_snapshot_name(name)) {
      cohort_files = true;
      snapshot_files_.emplace_back(name, *snapshot);
      if (snapshot->kind == SnapshotFileKind::temp)
        add(FindingKind::leftover, name, "a snapshot whose writing was cut short: recovery removes it");
    } else if (name.ends_with(kTempSuffix)) {
      cohort_files = cohort_files || name == kMetadataTempName || name == kBaseTempName || name == kMachineTempName ||
                     parse_segment_name(std::string_view(name).substr(0, name.size() - kTempSuffix.size()));
      add(FindingKind::leftover, name, "left by an update cut short: recovery removes every *.tmp");
    } else if (name == kMetadataName) {
      cohort_files = has_metadata_ = true;
    } else if (name == kBaseName) {
      cohort_files = has_base_ = true;
    } else if (name == kMachineName) {
      cohort_files = has_machine_ = true;
    } else if (const auto first = parse_segment_name(name)) {
      cohort_files = true;
      all_segments_.push_back(NamedSegment{*first, name});
    } else {
      add(FindingKind::note, name, "not a Cohort file: recovery leaves it alone");
    }
  }
  if (!cohort_files)
    return unexpected(
        fmt::format("{} is not a Cohort data directory: it holds no metadata, base, machine, log "
                    "segment or snapshot file",
                    directory_.path()));
  std::sort(all_segments_.begin(), all_segments_.end(),
            [](const NamedSegment& a, const NamedSegment& b) { return a.first < b.first; });
  std::sort(snapshot_files_.begin(), snapshot_files_.end(), [](const auto& a, const auto& b) {
    return std::tie(a.second.index, a.second.term, a.first) > std::tie(b.second.index, b.second.term, b.first);
  });

  read_metadata();
  read_base();
  read_machine();

  // Leftovers of a reset or a compaction cut short, decided by name alone, as recovery decides them.
  std::vector<NamedSegment> leftovers;
  if (resetting_) {
    leftovers = all_segments_;
  } else if (!base_lost_) {
    for (const NamedSegment& segment : all_segments_)
      (segment.first <= out_.base.index ? leftovers : kept_).push_back(segment);
  }
  if (base_lost_) kept_ = all_segments_;
  if (base_lost_ && !kept_.empty() && kept_.front().first != LogIndex{1})
    out_.base = consensus::LogBase{kept_.front().first.prev(), Term{0}};
  for (const NamedSegment& segment : leftovers) {
    SegmentSummary summary;
    summary.name = segment.name;
    summary.first = segment.first;
    summary.last = segment.first.prev();
    summary.leftover = true;
    if (auto file = directory_.open(segment.name, OpenMode::existing)) {
      if (auto size = (*file)->size()) summary.bytes = *size;
    }
    out_.segments.push_back(std::move(summary));
  }
  if (!leftovers.empty()) {
    if (resetting_) {
      add(FindingKind::leftover, std::string(kBaseName),
          fmt::format("a reset of the log to index {} (term {}) was cut short: recovery removes every segment "
                      "({}), all of the log before it",
                      out_.base.index.value(), out_.base.term.value(), leftovers.size()));
    } else {
      add(FindingKind::leftover, leftovers.front().name,
          fmt::format("a compaction of the log to index {} was cut short: recovery removes {} segment(s) from here "
                      "on, which end at or before it",
                      out_.base.index.value(), leftovers.size()));
    }
  }

  if (!out_.identity) take_identity_from_segments();
  walk_segments();
  classify_break();

  if (!metadata_lost_ && out_.hard_state && out_.last_term > out_.hard_state->term) {
    const std::string what = fmt::format(
        "the log holds entries of term {}, but the metadata says the current term is {}: "
        "recovery refuses to start",
        out_.last_term.value(), out_.hard_state->term.value());
    add(FindingKind::damage, std::string(kMetadataName), what);
    refuse(what);
  }

  check_snapshots();
  decide_start();
  return std::move(out_);
}

void Inspector::read_metadata() {
  const std::string name(kMetadataName);
  if (!has_metadata_) {
    metadata_lost_ = true;
    // The metadata file is the first a node writes: a first start cut short leaves at most its `.tmp`.
    const bool only_leftovers = all_segments_.empty() && !has_base_ && !has_machine_ &&
                                std::none_of(snapshot_files_.begin(), snapshot_files_.end(), [](const auto& file) {
                                  return file.second.kind == SnapshotFileKind::complete;
                                });
    if (only_leftovers)
      add(FindingKind::note, name, "missing, beside leftovers only: a start takes this for a new data directory");
    else if (all_segments_.empty() && !has_base_)
      add(FindingKind::damage, name,
          "missing, beside other Cohort files: a start takes this for a new data directory (standing fresh)");
    else
      add(FindingKind::damage, name,
          "missing: this node's term and vote are lost (DATA LOSS); recovery rebuilds the file from the log (its "
          "last term, no vote) and the node rejoins as a recovering node");
    return;
  }
  auto read = read_prefix(directory_, name, kSmallFileLimit);
  if (!read) return add_io(name, read.error());
  std::string reason;
  std::optional<Metadata> metadata;
  if (read->size > kSmallFileLimit)
    reason = fmt::format("metadata file is {} bytes, expected {}", read->size, kMetadataSize);
  else
    metadata = decode_metadata(read->bytes, reason);
  if (!metadata) {
    metadata_lost_ = true;
    add(FindingKind::damage, name,
        fmt::format("{}: this node's term and vote are lost (DATA LOSS); recovery rebuilds the file from the log "
                    "and the node rejoins as a recovering node",
                    reason),
        std::uint64_t{0});
    return;
  }
  out_.identity = metadata->identity;
  out_.identity_from = name;
  out_.hard_state = metadata->hard_state;
}

void Inspector::read_base() {
  const std::string name(kBaseName);
  if (!has_base_) {
    if (!all_segments_.empty() && all_segments_.front().first != LogIndex{1}) {
      base_lost_ = true;
      add(FindingKind::damage, name,
          fmt::format("missing, while the log's first segment, {}, starts at index {}: where the log starts and the "
                      "term there are lost (DATA LOSS); recovery rebuilds the base from the segments and the node "
                      "rejoins as a recovering node",
                      all_segments_.front().name, all_segments_.front().first.value()));
    }
    return;
  }
  auto read = read_prefix(directory_, name, kSmallFileLimit);
  if (!read) {
    add_io(name, read.error());
    return;
  }
  std::string reason;
  std::optional<BaseFile> base;
  if (read->size > kSmallFileLimit)
    reason = fmt::format("base file is {} bytes, expected {}", read->size, kBaseFileSize);
  else
    base = decode_base(read->bytes, reason);
  if (!base) {
    base_lost_ = true;
    add(FindingKind::damage, name,
        fmt::format("{}: where the log starts and the term there are lost (DATA LOSS); recovery rebuilds the base "
                    "from the segments and the node rejoins as a recovering node",
                    reason),
        std::uint64_t{0});
    return;
  }
  out_.base_file = *base;
  if (!out_.identity) {
    out_.identity = base->identity;
    out_.identity_from = name;
  } else if (base->identity != *out_.identity) {
    const std::string what =
        fmt::format("belongs to {}, while {} belongs to {}: recovery refuses to start", identity_text(base->identity),
                    out_.identity_from, identity_text(*out_.identity));
    add(FindingKind::damage, name, what, std::uint64_t{0});
    refuse(fmt::format("{} {}", name, what));
    // Recovery stops before it reads the base: nothing it says counts.
    return;
  }
  out_.base = base->base;
  resetting_ = base->resetting;
}

void Inspector::read_machine() {
  if (!has_machine_) return;
  const std::string name(kMachineName);
  auto read = read_prefix(directory_, name, kSmallFileLimit);
  if (!read) return add_io(name, read.error());
  std::string reason;
  std::optional<MachineBoot> boot;
  if (read->size > kSmallFileLimit)
    reason = fmt::format("machine file is {} bytes, expected {}", read->size, kMachineFileSize);
  else
    boot = decode_machine_boot(read->bytes, reason);
  if (!boot) {
    add(FindingKind::damage, name,
        fmt::format("{}: a start cannot tell whether the machine restarted, and makes the node a recovering one "
                    "(POSSIBLE DATA LOSS)",
                    reason),
        std::uint64_t{0});
    return;
  }
  out_.machine = *boot;
  if (current_boot_ && *current_boot_ != *boot)
    add(FindingKind::note, name,
        fmt::format("the node last ran under sync policy none on kernel boot {}, and this machine runs boot {}: if "
                    "this is the node's machine, it restarted since, and a start makes the node a recovering one "
                    "(POSSIBLE DATA LOSS: writes no fsync covered may be gone)",
                    boot_id_text(*boot), boot_id_text(*current_boot_)));
}

void Inspector::take_identity_from_segments() {
  for (const NamedSegment& segment : kept_.empty() ? all_segments_ : kept_) {
    auto read = read_prefix(directory_, segment.name, kSegmentHeaderSize);
    if (!read) continue;
    std::string reason;
    if (const auto header = decode_segment_header(read->bytes, reason)) {
      out_.identity = header->identity;
      out_.identity_from = segment.name;
      return;
    }
  }
}

void Inspector::walk_segments() {
  start_gap_ = !kept_.empty() && kept_.front().first != out_.base.index.next();
  if (start_gap_) {
    const NamedSegment& first = kept_.front();
    add(FindingKind::damage, first.name,
        fmt::format("the log starts at index {}, but its base is index {}: entries {} to {} are lost (DATA LOSS); "
                    "recovery cuts the whole log ({} segment(s)) and the node rejoins as a recovering node",
                    first.first.value(), out_.base.index.value(), out_.base.index.next().value(),
                    first.first.prev().value(), kept_.size()),
        std::uint64_t{0}, out_.base.index.next());
  }
  expected_ = out_.base.index.next();
  floor_ = out_.base.term;
  for (std::size_t position = 0; position < kept_.size(); ++position) walk_segment(position);
  out_.last_index = start_gap_ ? out_.base.index : expected_.prev();
  out_.last_term = start_gap_ ? out_.base.term : floor_;
}

void Inspector::walk_segment(std::size_t position) {
  const NamedSegment& named = kept_[position];
  SegmentSummary summary;
  summary.name = named.name;
  summary.first = named.first;
  summary.last = named.first.prev();
  summary.beyond_damage = start_gap_ || break_.has_value();

  // Whether this segment continues the log as recovery reads it: a gap or an overlap breaks it at the end of the
  // previous segment (which was read to its end, or it would have broken there).
  if (!summary.beyond_damage && named.first != expected_) {
    break_ = Break{position - 1, out_.segments.back().intact_bytes, expected_,
                   named.first > expected_
                       ? fmt::format("the next segment, {}, starts at index {}: entries {} to {} are missing",
                                     named.name, named.first.value(), expected_.value(), named.first.prev().value())
                       : fmt::format("the next segment, {}, starts at index {}, which this one holds already",
                                     named.name, named.first.value())};
    summary.beyond_damage = true;
  }
  const bool in_log = !summary.beyond_damage;

  auto read = read_prefix(directory_, named.name, std::numeric_limits<std::uint64_t>::max());
  if (!read) {
    add_io(named.name, read.error());
    if (read.error().code != ENOENT) refuse(fmt::format("{} cannot be read: {}", named.name, read.error().message));
    if (in_log) break_ = Break{position, 0, expected_, "the segment cannot be read", /*classify=*/false};
    out_.segments.push_back(std::move(summary));
    return;
  }
  const ByteSpan all(read->bytes);
  summary.bytes = all.size();

  std::string reason;
  summary.header = decode_segment_header(all, reason);
  if (!summary.header) {
    const std::string what = fmt::format("{}: recovery refuses to start", reason);
    add(FindingKind::damage, named.name, what, std::uint64_t{0});
    refuse(fmt::format("log segment {} is damaged at offset 0: {}", named.name, reason));
    if (in_log) break_ = Break{position, 0, expected_, reason, /*classify=*/false};
    out_.segments.push_back(std::move(summary));
    return;
  }
  if (out_.identity && summary.header->identity != *out_.identity) {
    const std::string what =
        fmt::format("its header says it belongs to {}, while {} belongs to {}: recovery refuses to start",
                    identity_text(summary.header->identity), out_.identity_from, identity_text(*out_.identity));
    add(FindingKind::damage, named.name, what, std::uint64_t{0});
    refuse(fmt::format("log segment {}: {}", named.name, what));
  }
  if (summary.header->first_index != named.first) {
    const std::string what = fmt::format("its header says it starts at index {}: recovery refuses to start",
                                         summary.header->first_index.value());
    add(FindingKind::damage, named.name, what, std::uint64_t{0});
    refuse(fmt::format("log segment {}: {}", named.name, what));
  }

  // The records in order from the header on. In the log, the index and term carry on from the previous segment;
  // past the break each segment is read on its own, from the index its name gives.
  LogIndex expected = in_log ? expected_ : named.first;
  Term floor = in_log ? floor_ : Term{0};
  std::uint64_t offset = kSegmentHeaderSize;
  const std::uint64_t nonce = summary.header->nonce;
  std::optional<std::string> stop;
  while (offset < all.size()) {
    const auto record = check_record(all, offset, nonce, expected, floor);
    if (!record) {
      stop = record.error();
      break;
    }
    if (summary.entries == 0) summary.first_term = record->term;
    ++summary.entries;
    summary.last = expected;
    summary.last_term = record->term;
    summary.durable_mark = std::max(summary.durable_mark, record->durable_before);
    if (in_log && (terms_.empty() || terms_.back().term != record->term))
      terms_.push_back(TermRun{expected, record->term});
    if (options_.on_entry) {
      options_.on_entry(
          InspectedEntry{expected, record->term, record->type, record->entry_checksum, record->durable_before,
                         all.subspan(offset + kRecordHeaderSize, record->body_length), &named.name, offset, in_log});
    }
    floor = record->term;
    expected = expected.next();
    offset += record_size(record->body_length);
  }
  summary.intact_bytes = offset;

  if (in_log) {
    expected_ = expected;
    floor_ = floor;
    if (stop) {
      break_ = Break{position, offset, expected, *stop};
      after_.add(find_records_after(all, offset + kRecordAlignment, nonce, expected), named.name);
    }
  } else {
    if (stop) {
      later_stops_.push_back(out_.findings.size());
      add(FindingKind::damage, named.name, *stop, offset, expected);
    }
    if (break_) after_.add(find_records_after(all, kSegmentHeaderSize, nonce, break_->index), named.name);
  }
  out_.segments.push_back(std::move(summary));
}

void Inspector::classify_break() {
  if (!break_) return;
  // Every segment of the log before the break was read, so the summaries of kept segments follow the leftovers'.
  const std::size_t first_kept = out_.segments.size() - kept_.size();
  for (std::size_t s = first_kept + break_->segment + 1; s < out_.segments.size(); ++s)
    out_.segments[s].beyond_damage = true;
  SegmentSummary& holder = out_.segments[first_kept + break_->segment];
  holder.beyond_damage = break_->offset < holder.bytes;  // not so at a gap after it: it is kept whole
  if (!break_->classify) return;                         // refused or unreadable: said where it was found

  const std::size_t later = kept_.size() - break_->segment - 1;
  const std::uint64_t here = holder.bytes - std::min(holder.bytes, break_->offset);
  const std::string cut =
      fmt::format("{} byte(s) of this segment and {} later segment(s), which hold {}", here, later,
                  after_.records == 0 ? std::string("no intact record")
                                      : fmt::format("{} intact record(s), indexes {} to {}", after_.records,
                                                    after_.lowest.value(), after_.highest.value()));
  const bool durable = after_.claim >= break_->index;
  durable_damage_ = durable;
  const FindingKind kind = durable ? FindingKind::damage : FindingKind::torn_tail;
  const std::string what =
      durable
          ? fmt::format(
                "{}. The intact record in {} was written once entries up to {} were durable, so {}, not a "
                "torn write (DATA LOSS). Recovery cuts the log here: {}; the node rejoins as a recovering node, "
                "repaired from the leader",
                break_->what, after_.claim_where, after_.claim.value(),
                break_->offset < holder.bytes ? "this is damage to a durable record" : "durable entries are lost", cut)
          : fmt::format(
                "{}. No later record says it was durable: a torn tail, which recovery cuts off: {}. "
                "Nothing acknowledged is lost, unless it was synced; then a majority of intact replicas "
                "holds it",
                break_->what, cut);
  // Before the problems found past it, which it explains.
  const std::size_t at = later_stops_.empty() ? out_.findings.size() : later_stops_.front();
  out_.findings.insert(out_.findings.begin() + static_cast<std::ptrdiff_t>(at),
                       Finding{kind, holder.name, break_->offset, break_->index, what});
  for (const std::size_t stop : later_stops_) {
    Finding& finding = out_.findings[stop + 1];
    finding.kind = kind;
    finding.what += durable ? " (past the damage above: recovery cuts it too)"
                            : " (part of the torn tail above: recovery cuts it too)";
  }
}

void Inspector::check_snapshots() {
  // A start reads them newest first and stops at the first intact one: only those it reads can refuse it.
  bool found_intact = false;
  for (const auto& [name, named] : snapshot_files_) {
    if (named.kind == SnapshotFileKind::temp) {
      SnapshotSummary summary;
      summary.name = name;
      summary.named = named;
      if (auto file = directory_.open(name, OpenMode::existing)) {
        if (auto size = (*file)->size()) summary.bytes = *size;
      }
      out_.snapshots.push_back(std::move(summary));
      continue;
    }
    bool foreign = false;
    SnapshotSummary summary = check_snapshot(name, named, foreign);
    if (summary.intact) {
      found_intact = true;
    } else if (foreign) {
      add(FindingKind::damage, name,
          fmt::format("{}{}", summary.problem, found_intact ? "" : ": recovery refuses to start"));
      if (!found_intact) refuse(fmt::format("snapshot {}: {}", name, summary.problem));
    } else if (!summary.problem.empty()) {
      add(FindingKind::damage, name,
          fmt::format("{}: {}", summary.problem,
                      found_intact ? "a start uses a newer intact snapshot"
                                   : "a start skips it and uses an older intact snapshot, if any"));
    }
    out_.snapshots.push_back(std::move(summary));
  }
}

SnapshotSummary Inspector::check_snapshot(const std::string& name, const SnapshotFileName& named, bool& foreign) {
  SnapshotSummary summary;
  summary.name = name;
  summary.named = named;
  auto opened = directory_.open(name, OpenMode::existing);
  if (!opened) {
    add_io(name, opened.error());
    return summary;
  }
  File& file = **opened;
  auto size = file.size();
  if (!size) {
    add_io(name, size.error());
    return summary;
  }
  summary.bytes = *size;
  std::array<std::byte, kSnapshotHeaderSize> header{};
  auto read = file.read_at(0, header);
  if (!read) {
    add_io(name, read.error());
    return summary;
  }
  const ByteSpan header_bytes(header.data(), *read);
  // Without an identity from the other files, the snapshot's own cluster id is the one it is read against.
  const std::uint64_t cluster_id = out_.identity                   ? out_.identity->cluster_id
                                   : header_bytes.size() >= 16 + 8 ? load_le<std::uint64_t>(header.data() + 16)
                                                                   : 0;
  auto meta = decode_snapshot_header(header_bytes, cluster_id);
  if (!meta) {
    summary.problem = meta.error().message;
    foreign = meta.error().kind == SnapshotError::Kind::foreign;
    if (foreign) summary.problem += fmt::format(" (as {} says)", out_.identity_from);
    return summary;
  }
  summary.header = *meta;
  if (meta->index != named.index || meta->term != named.term) {
    summary.problem = fmt::format("its header covers index {} of term {}, its name index {} of term {}",
                                  meta->index.value(), meta->term.value(), named.index.value(), named.term.value());
    return summary;
  }
  const std::uint64_t body = *size - std::min<std::uint64_t>(*size, kSnapshotHeaderSize);
  if (body != meta->size) {
    summary.problem =
        body < meta->size
            ? fmt::format("the file holds {} body bytes of the {} its header announces", body, meta->size)
            : fmt::format("{} bytes follow the {}-byte body its header announces", body - meta->size, meta->size);
    return summary;
  }
  const std::unique_ptr<XXH3_state_t, decltype(&XXH3_freeState)> state(XXH3_createState(), &XXH3_freeState);
  if (!state || XXH3_64bits_reset(state.get()) != XXH_OK) {
    add(FindingKind::unreadable, name, "cannot hash the body: out of memory");
    return summary;
  }
  std::vector<std::byte> piece(static_cast<std::size_t>(std::min<std::uint64_t>(kSnapshotReadPiece, body)));
  for (std::uint64_t at = 0; at < body;) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(piece.size(), body - at));
    auto got = file.read_at(kSnapshotHeaderSize + at, MutableByteSpan(piece.data(), want));
    if (!got) {
      add_io(name, got.error());
      return summary;
    }
    if (*got == 0) {
      summary.problem = fmt::format("the body ends after {} of its {} bytes", at, body);
      return summary;
    }
    (void)XXH3_64bits_update(state.get(), piece.data(), *got);
    at += *got;
  }
  const std::uint64_t digest = XXH3_64bits_digest(state.get());
  summary.body_ok = digest == meta->checksum;
  if (!*summary.body_ok) {
    summary.problem =
        fmt::format("the body fails its checksum (XXH3 {:016x}, the header says {:016x})", digest, meta->checksum);
    return summary;
  }
  summary.intact = true;
  return summary;
}

std::optional<Term> Inspector::term_at(LogIndex index) const {
  if (index == out_.base.index) return out_.base.term;
  if (index < out_.base.index || index > out_.last_index) return std::nullopt;
  const auto run =
      std::upper_bound(terms_.begin(), terms_.end(), index, [](LogIndex i, const TermRun& r) { return i < r.first; });
  if (run == terms_.begin()) return std::nullopt;
  return std::prev(run)->term;
}

void Inspector::decide_start() {
  if (!refusal_.empty()) {
    out_.at_start = fmt::format("refuses to start: {}", refusal_);
    return;
  }
  // What makes recovery (or note_machine_boot after it) write standing recovering.
  const bool had_log = has_base_ || !all_segments_.empty();
  const bool machine_restarted = has_machine_ && (!out_.machine || (current_boot_ && *current_boot_ != *out_.machine));
  const bool data_loss =
      (metadata_lost_ && had_log) || base_lost_ || start_gap_ || durable_damage_ ||
      (machine_restarted && had_log && out_.hard_state && out_.hard_state->standing == consensus::Standing::member);
  std::string what;
  const auto newest = std::find_if(out_.snapshots.begin(), out_.snapshots.end(),
                                   [](const SnapshotSummary& snapshot) { return snapshot.intact; });
  bool repair = false;
  if (newest != out_.snapshots.end() && newest->header->index >= out_.base.index &&
      newest->header->index > out_.last_index) {
    what = fmt::format(
        "restores the snapshot at index {} (term {}); the log recovered ends at index {}, before it, "
        "so the log starts again after the snapshot",
        newest->header->index.value(), newest->header->term.value(), out_.last_index.value());
  } else if (newest != out_.snapshots.end() && newest->header->index >= out_.base.index &&
             term_at(newest->header->index) == newest->header->term) {
    what = fmt::format("restores the snapshot at index {} (term {}) and replays entries {} to {}",
                       newest->header->index.value(), newest->header->term.value(),
                       newest->header->index.next().value(), out_.last_index.value());
  } else if (out_.base.index == LogIndex{0}) {
    what = out_.last_index == LogIndex{0} ? std::string("starts with an empty log")
                                          : fmt::format("replays the log from index 1 to {}", out_.last_index.value());
  } else {
    repair = true;
    what = fmt::format(
        "empties the log and rejoins as a recovering node, repaired from the cluster: the log starts after index {} "
        "and no intact snapshot covers it",
        out_.base.index.value());
    add(FindingKind::damage, std::string(),
        fmt::format("the log starts after index {} and no intact snapshot covers it{} (DATA LOSS): a start empties "
                    "the log and the node rejoins as a recovering node, repaired from the cluster",
                    out_.base.index.value(),
                    newest == out_.snapshots.end()
                        ? std::string()
                        : fmt::format(" (the newest intact one is at index {}, term {})", newest->header->index.value(),
                                      newest->header->term.value())));
  }
  const consensus::Standing standing = data_loss || repair ? consensus::Standing::recovering
                                       : out_.hard_state   ? out_.hard_state->standing
                                                           : consensus::Standing::fresh;
  out_.at_start = fmt::format("{}; standing {}", what, consensus::to_string(standing));
}

}  // namespace

const char* to_string(FindingKind kind) noexcept {
  switch (kind) {
    case FindingKind::damage: return "damage";
    case FindingKind::unreadable: return "unreadable";
    case FindingKind::torn_tail: return "torn_tail";
    case FindingKind::leftover: return "leftover";
    case FindingKind::note: return "note";
  }
  return "unknown";
}

std::string boot_id_text(const MachineBoot& boot) {
  std::string out;
  for (std::size_t i = 0; i < boot.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += fmt::format("{:02x}", std::to_integer<unsigned>(boot[i]));
  }
  return out;
}

bool Inspection::damaged() const {
  return std::any_of(findings.begin(), findings.end(), [](const Finding& finding) {
    return finding.kind == FindingKind::damage || finding.kind == FindingKind::unreadable;
  });
}

Result<Inspection, std::string> inspect(Directory& directory, const InspectOptions& options,
                                        const std::optional<MachineBoot>& current_boot) {
  return Inspector(directory, options, current_boot).run();
}

}  // namespace cohort::storage

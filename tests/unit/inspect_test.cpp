// The read-only inspection of a data directory (storage/inspect.h), for `cohort log inspect`: it summarizes what
// the files hold, names every problem with its file, offset and index, tells a torn tail from damage to a durable
// record exactly as recovery does, and never changes the directory (a real directory opened read-only refuses every
// change: posix_read_only_test.cpp).
//
// The harness's small segments hold 36 records of 64 bytes: a log of 120 entries has segments at 1, 37, 73, 109.

#include <string>
#include <vector>

#include "common/random.h"
#include "storage/inspect.h"
#include "storage/snapshot_file.h"
#include "storage_harness.h"

namespace cohort::storage::testing {
namespace {

using consensus::HardState;
using consensus::LogBase;

constexpr std::uint64_t kRecord = record_size(64);

/// Inspects `disk` and checks that it attempted no change at all.
Inspection inspect_unchanged(MemoryDirectory& disk, const InspectOptions& options = {}) {
  const std::uint64_t before = disk.operations();
  auto inspection = inspect(disk, options, std::nullopt);
  EXPECT_EQ(disk.operations(), before) << "the inspection attempted a change";
  EXPECT_TRUE(inspection) << inspection.error();
  return inspection ? std::move(inspection).value() : Inspection{};
}

std::string describe(const Inspection& inspection) {
  std::string out = "at start: " + inspection.at_start + "\n";
  for (const Finding& finding : inspection.findings)
    out += std::string(to_string(finding.kind)) + " " + finding.file + " @" +
           (finding.offset ? std::to_string(*finding.offset) : "-") + " #" +
           (finding.index ? std::to_string(finding.index->value()) : "-") + ": " + finding.what + "\n";
  return out;
}

std::vector<const Finding*> findings_of(const Inspection& inspection, FindingKind kind) {
  std::vector<const Finding*> found;
  for (const Finding& finding : inspection.findings)
    if (finding.kind == kind) found.push_back(&finding);
  return found;
}

std::vector<std::byte> body_of(std::size_t size) {
  std::vector<std::byte> body(size);
  for (std::size_t i = 0; i < size; ++i) body[i] = static_cast<std::byte>((i * 13) & 0xFFU);
  return body;
}

/// 120 entries (1 to 60 of term 1, 61 to 120 of term 2), a snapshot at 72 and the log compacted up to it: segments
/// 73 and 109 are left, with the base at (72, 2).
void make_compacted_log_with_snapshot(LogHarness& h) {
  make_log(h, concat(make_entries(1, 60, 1), make_entries(61, 60, 2)), HardState{Term{2}, NodeId{1}});
  ASSERT_TRUE(write_snapshot(h.disk(), kIdentity.cluster_id, LogIndex{72}, Term{2}, body_of(5000)));
  (void)h.log().compact(LogIndex{72});
  const auto result = h.write();
  ASSERT_FALSE(result.error) << result.error->message;
}

TEST(Inspect, AnIntactLogIsSummarizedAndNothingIsFound) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_compacted_log_with_snapshot(h));
  const Inspection inspection = inspect_unchanged(h.disk());

  EXPECT_EQ(inspection.identity, kIdentity);
  EXPECT_EQ(inspection.identity_from, "meta");
  EXPECT_EQ(inspection.hard_state, (HardState{Term{2}, NodeId{1}}));
  EXPECT_EQ(inspection.base, (LogBase{LogIndex{72}, Term{2}}));
  EXPECT_EQ(inspection.last_index, LogIndex{120});
  EXPECT_EQ(inspection.last_term, Term{2});
  ASSERT_EQ(inspection.segments.size(), 2U);
  const SegmentSummary& first = inspection.segments[0];
  EXPECT_EQ(first.name, segment_name(LogIndex{73}));
  EXPECT_EQ(first.first, LogIndex{73});
  EXPECT_EQ(first.last, LogIndex{108});
  EXPECT_EQ(first.entries, 36U);
  EXPECT_EQ(first.first_term, Term{2});
  EXPECT_EQ(first.bytes, kSegmentHeaderSize + 36 * kRecord);
  EXPECT_EQ(first.intact_bytes, first.bytes);
  EXPECT_FALSE(first.leftover || first.beyond_damage);
  EXPECT_EQ(inspection.segments[1].last, LogIndex{120});
  // Written in batches of 10, each synced: the last record written knew 110 durable.
  EXPECT_EQ(inspection.segments[1].durable_mark, LogIndex{110});
  ASSERT_EQ(inspection.snapshots.size(), 1U);
  EXPECT_TRUE(inspection.snapshots[0].intact) << inspection.snapshots[0].problem;
  EXPECT_EQ(inspection.snapshots[0].body_ok, true);
  EXPECT_EQ(inspection.snapshots[0].header->index, LogIndex{72});
  EXPECT_EQ(inspection.snapshots[0].bytes, kSnapshotHeaderSize + 5000);
  EXPECT_TRUE(inspection.findings.empty()) << describe(inspection);
  EXPECT_FALSE(inspection.damaged());
  EXPECT_EQ(inspection.at_start,
            "restores the snapshot at index 72 (term 2) and replays entries 73 to 120; standing member");
}

TEST(Inspect, ADamagedRecordInTheMiddleIsDamageToADurableRecordNamedWithItsFileOffsetAndIndex) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), HardState{Term{1}, std::nullopt}));
  const std::string segment = segment_name(LogIndex{37});
  const std::uint64_t offset = kSegmentHeaderSize + 3 * kRecord;  // index 40
  h.disk().corrupt(segment, offset + kRecordHeaderSize + 5, std::byte{0x20});

  const Inspection inspection = inspect_unchanged(h.disk());
  EXPECT_TRUE(inspection.damaged());
  const auto damage = findings_of(inspection, FindingKind::damage);
  ASSERT_EQ(damage.size(), 1U) << describe(inspection);
  EXPECT_EQ(damage[0]->file, segment);
  EXPECT_EQ(damage[0]->offset, offset);
  EXPECT_EQ(damage[0]->index, LogIndex{40});
  EXPECT_TRUE(contains(damage[0]->what, "the record's body fails its checksum")) << damage[0]->what;
  EXPECT_TRUE(contains(damage[0]->what, "DATA LOSS")) << damage[0]->what;
  EXPECT_TRUE(contains(damage[0]->what, "2 later segment(s), which hold 80 intact record(s), indexes 41 to 120"))
      << damage[0]->what;
  EXPECT_EQ(inspection.last_index, LogIndex{39});
  EXPECT_TRUE(inspection.segments[1].beyond_damage);
  EXPECT_FALSE(inspection.segments[0].beyond_damage);
  EXPECT_TRUE(contains(inspection.at_start, "standing recovering")) << inspection.at_start;

  // Recovery reads it the same way.
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.log().last_index(), LogIndex{39});
  EXPECT_TRUE(mentions(h.recovered().repairs, "DATA LOSS")) << joined(h.recovered().repairs);
}

TEST(Inspect, AMissingSegmentInTheMiddleIsAGapThatLosesDurableEntries) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), HardState{Term{1}, std::nullopt}));
  ASSERT_TRUE(h.disk().remove(segment_name(LogIndex{37})));
  const Inspection inspection = inspect_unchanged(h.disk());
  const auto damage = findings_of(inspection, FindingKind::damage);
  ASSERT_EQ(damage.size(), 1U) << describe(inspection);
  EXPECT_EQ(damage[0]->file, segment_name(LogIndex{1}));
  EXPECT_EQ(damage[0]->offset, kSegmentHeaderSize + 36 * kRecord);
  EXPECT_EQ(damage[0]->index, LogIndex{37});
  EXPECT_TRUE(contains(damage[0]->what, "starts at index 73: entries 37 to 72 are missing")) << damage[0]->what;
  EXPECT_TRUE(contains(damage[0]->what, "durable entries are lost")) << damage[0]->what;
  EXPECT_EQ(inspection.last_index, LogIndex{36});
  EXPECT_FALSE(inspection.segments[0].beyond_damage) << "kept whole";
  EXPECT_TRUE(inspection.segments[1].beyond_damage);

  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.log().last_index(), LogIndex{36});
  EXPECT_TRUE(mentions(h.recovered().repairs, "DATA LOSS")) << joined(h.recovered().repairs);
}

TEST(Inspect, ATornTailIsReportedAsOneRecoveryCutsAndIsNoDamage) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 100, 1), HardState{Term{1}, std::nullopt}));
  const std::string segment = segment_name(LogIndex{73});
  const std::uint64_t size = h.disk().bytes(segment)->size();
  {
    auto file = h.disk().open(segment, OpenMode::existing);
    ASSERT_TRUE(file);
    ASSERT_TRUE((*file)->truncate(size - 30));
  }
  const Inspection inspection = inspect_unchanged(h.disk());
  EXPECT_FALSE(inspection.damaged()) << describe(inspection);
  const auto torn = findings_of(inspection, FindingKind::torn_tail);
  ASSERT_EQ(torn.size(), 1U) << describe(inspection);
  EXPECT_EQ(torn[0]->file, segment);
  EXPECT_EQ(torn[0]->offset, size - kRecord);
  EXPECT_EQ(torn[0]->index, LogIndex{100});
  EXPECT_TRUE(contains(torn[0]->what, "runs past the end of the file")) << torn[0]->what;
  EXPECT_EQ(inspection.last_index, LogIndex{99});
  EXPECT_TRUE(contains(inspection.at_start, "standing member")) << inspection.at_start;

  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.log().last_index(), LogIndex{99});
  EXPECT_TRUE(mentions(h.recovered().repairs, "torn tail")) << joined(h.recovered().repairs);
}

TEST(Inspect, ASnapshotThatFailsItsChecksumIsDamageAndTheStartFallsBackToTheLog) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 50, 1), HardState{Term{1}, std::nullopt}));
  ASSERT_TRUE(write_snapshot(h.disk(), kIdentity.cluster_id, LogIndex{40}, Term{1}, body_of(3000)));
  const std::string name = snapshot_name(LogIndex{40}, Term{1});
  h.disk().corrupt(name, kSnapshotHeaderSize + 2999, std::byte{0x01});

  const Inspection inspection = inspect_unchanged(h.disk());
  EXPECT_TRUE(inspection.damaged());
  ASSERT_EQ(inspection.snapshots.size(), 1U);
  EXPECT_FALSE(inspection.snapshots[0].intact);
  EXPECT_EQ(inspection.snapshots[0].body_ok, false);
  const auto damage = findings_of(inspection, FindingKind::damage);
  ASSERT_EQ(damage.size(), 1U) << describe(inspection);
  EXPECT_EQ(damage[0]->file, name);
  EXPECT_TRUE(contains(damage[0]->what, "the body fails its checksum")) << damage[0]->what;
  EXPECT_EQ(inspection.at_start, "replays the log from index 1 to 50; standing member");
}

TEST(Inspect, AMissingMetadataFileIsDamageAndTheIdentityComesFromTheSegments) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 50, 1), HardState{Term{1}, std::nullopt}));
  ASSERT_TRUE(h.disk().remove(kMetadataName));

  const Inspection inspection = inspect_unchanged(h.disk());
  EXPECT_TRUE(inspection.damaged());
  const auto damage = findings_of(inspection, FindingKind::damage);
  ASSERT_EQ(damage.size(), 1U) << describe(inspection);
  EXPECT_EQ(damage[0]->file, "meta");
  EXPECT_TRUE(contains(damage[0]->what, "missing: this node's term and vote are lost")) << damage[0]->what;
  EXPECT_EQ(inspection.identity, kIdentity);
  EXPECT_EQ(inspection.identity_from, segment_name(LogIndex{1}));
  EXPECT_EQ(inspection.last_index, LogIndex{50});
  EXPECT_TRUE(contains(inspection.at_start, "standing recovering")) << inspection.at_start;
}

TEST(Inspect, ASegmentHeaderThatDisagreesWithItsNameOrItsOwnerRefusesTheStart) {
  for (const bool other_node : {false, true}) {
    LogHarness h;
    ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 50, 1), HardState{Term{1}, std::nullopt}));
    const std::string segment = segment_name(LogIndex{37});
    std::vector<std::byte> image = *h.disk().bytes(segment);
    const std::uint64_t nonce = load_le<std::uint64_t>(image.data() + 40);
    // The same records, under a header that names another first index or another node: they still verify.
    encode_segment_header(image.data(), other_node ? Identity{kIdentity.cluster_id, NodeId{2}} : kIdentity,
                          LogIndex{other_node ? 37U : 36U}, nonce);
    ASSERT_TRUE(h.disk().remove(segment));
    auto file = h.disk().open(segment, OpenMode::create_new);
    ASSERT_TRUE(file);
    const ByteSpan parts[] = {image};
    ASSERT_TRUE((*file)->write_at(0, parts));

    const Inspection inspection = inspect_unchanged(h.disk());
    EXPECT_TRUE(inspection.damaged());
    const auto damage = findings_of(inspection, FindingKind::damage);
    ASSERT_EQ(damage.size(), 1U) << describe(inspection);
    EXPECT_EQ(damage[0]->file, segment);
    EXPECT_EQ(damage[0]->offset, 0U);
    EXPECT_TRUE(contains(damage[0]->what, other_node ? "its header says it belongs to node 2 of cluster"
                                                     : "its header says it starts at index 36"))
        << damage[0]->what;
    EXPECT_TRUE(inspection.at_start.starts_with("refuses to start")) << inspection.at_start;
    EXPECT_EQ(inspection.segments[1].entries, 14U) << "its records are still read";

    auto recovered = recover(h.disk(), kIdentity, LogHarness::small_segments());
    EXPECT_FALSE(recovered) << "recovery should refuse too";
  }
}

TEST(Inspect, LeftoversAndUnknownFilesAreNamedAndAreNoDamage) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 20, 1), HardState{Term{1}, std::nullopt}));
  for (const char* name : {"meta.tmp", "notes.txt", "snapshot-00000000000000000010-00000000000000000001.tmp"}) {
    auto file = h.disk().open(name, OpenMode::create_new);
    ASSERT_TRUE(file);
  }
  const Inspection inspection = inspect_unchanged(h.disk());
  EXPECT_FALSE(inspection.damaged()) << describe(inspection);
  EXPECT_EQ(findings_of(inspection, FindingKind::leftover).size(), 2U) << describe(inspection);
  const auto notes = findings_of(inspection, FindingKind::note);
  ASSERT_EQ(notes.size(), 1U) << describe(inspection);
  EXPECT_EQ(notes[0]->file, "notes.txt");
  ASSERT_EQ(inspection.snapshots.size(), 1U);
  EXPECT_EQ(inspection.snapshots[0].named.kind, SnapshotFileKind::temp);
}

// Files under Cohort's names holding anything at all: every one is read with its lengths checked, named, and never
// trusted.
TEST(Inspect, GarbageUnderCohortNamesIsNamedAndNeverTrusted) {
  const std::string names[] = {std::string(kMetadataName), std::string(kBaseName),
                               std::string(kMachineName),  segment_name(LogIndex{1}),
                               segment_name(LogIndex{5}),  snapshot_name(LogIndex{3}, Term{1})};
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    Random random(seed);
    MemoryDirectory disk;
    for (const std::string& name : names) {
      std::vector<std::byte> bytes(random.below(400));
      for (std::byte& b : bytes) b = static_cast<std::byte>(random.below(256));
      // Some files start like the real thing, so the checks past the first ones run too.
      if (name == names[3] && bytes.size() >= kSegmentHeaderSize && random.below(2) == 0)
        encode_segment_header(bytes.data(), kIdentity, LogIndex{1}, random.next());
      auto file = disk.open(name, OpenMode::create_new);
      ASSERT_TRUE(file);
      const ByteSpan parts[] = {bytes};
      ASSERT_TRUE((*file)->write_at(0, parts));
    }
    const Inspection inspection = inspect_unchanged(disk);
    EXPECT_TRUE(inspection.damaged()) << "seed " << seed << "\n" << describe(inspection);
  }
}

TEST(Inspect, ACompactionCutShortLeavesSegmentsRecoveryRemoves) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), HardState{Term{1}, std::nullopt}));
  // The snapshot and the base written, the segments they make unnecessary not removed yet.
  ASSERT_TRUE(write_snapshot(h.disk(), kIdentity.cluster_id, LogIndex{72}, Term{1}, body_of(100)));
  ASSERT_TRUE(write_base(h.disk(), kIdentity, LogBase{LogIndex{72}, Term{1}}, /*resetting=*/false));
  const Inspection inspection = inspect_unchanged(h.disk());
  EXPECT_FALSE(inspection.damaged()) << describe(inspection);
  ASSERT_EQ(inspection.segments.size(), 4U);
  EXPECT_TRUE(inspection.segments[0].leftover);
  EXPECT_TRUE(inspection.segments[1].leftover);
  EXPECT_FALSE(inspection.segments[2].leftover);
  const auto leftovers = findings_of(inspection, FindingKind::leftover);
  ASSERT_EQ(leftovers.size(), 1U) << describe(inspection);
  EXPECT_TRUE(contains(leftovers[0]->what, "recovery removes 2 segment(s)")) << leftovers[0]->what;
  EXPECT_EQ(inspection.base, (LogBase{LogIndex{72}, Term{1}}));
  EXPECT_EQ(inspection.last_index, LogIndex{120});
  EXPECT_EQ(inspection.at_start,
            "restores the snapshot at index 72 (term 1) and replays entries 73 to 120; standing member");
}

TEST(Inspect, AFirstStartCutShortBeforeItsMetadataFileIsNoDamage) {
  MemoryDirectory disk;
  ASSERT_TRUE(disk.open(kMetadataTempName, OpenMode::create_new));
  const Inspection inspection = inspect_unchanged(disk);
  EXPECT_FALSE(inspection.damaged()) << describe(inspection);
  EXPECT_EQ(inspection.at_start, "starts with an empty log; standing fresh");
}

TEST(Inspect, ADirectoryWithoutCohortFilesIsNoDataDirectory) {
  MemoryDirectory disk;
  auto empty = inspect(disk, {}, std::nullopt);
  ASSERT_FALSE(empty);
  EXPECT_TRUE(contains(empty.error(), "is not a Cohort data directory")) << empty.error();
  ASSERT_TRUE(disk.open("notes.txt", OpenMode::create_new));
  EXPECT_FALSE(inspect(disk, {}, std::nullopt));
}

TEST(Inspect, EntriesAreListedInLogOrderWithinTheRangeAsked) {
  LogHarness h;
  const Entries entries = concat(make_entries(1, 40, 1), make_entries(41, 20, 3));
  ASSERT_NO_FATAL_FAILURE(make_log(h, entries, HardState{Term{3}, std::nullopt}));
  std::vector<consensus::Entry> listed;
  std::vector<std::string> segments;
  InspectOptions options;
  options.on_entry = [&](const InspectedEntry& entry) {
    if (entry.index < LogIndex{30} || entry.index > LogIndex{45}) return;
    consensus::Entry copy;
    copy.index = entry.index;
    copy.term = entry.term;
    copy.type = entry.type;
    copy.checksum = entry.checksum;
    copy.payload = Payload(entry.payload);
    listed.push_back(copy);
    segments.push_back(*entry.segment);
    EXPECT_TRUE(entry.kept);
  };
  (void)inspect_unchanged(h.disk(), options);
  EXPECT_EQ(listed, Entries(entries.begin() + 29, entries.begin() + 45));
  ASSERT_EQ(segments.size(), 16U);
  EXPECT_EQ(segments.front(), segment_name(LogIndex{1}));
  EXPECT_EQ(segments.back(), segment_name(LogIndex{37}));
}

// Whatever a crash or a flipped byte leaves, the inspection reads the log exactly as recovery then cuts it: the
// same end, the same base, damage where recovery says DATA LOSS, a torn tail where it cuts one, a refusal where it
// refuses.
TEST(Inspect, ReadsEveryCrashedOrDamagedLogAsRecoveryThenCutsIt) {
  std::size_t torn = 0;
  std::size_t damaged = 0;
  std::size_t refused = 0;
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    Random random(seed);
    LogHarness h;
    Entries entries;
    for (std::uint64_t i = 1; i <= 60; ++i) entries.push_back(make_entry(i, 1 + i / 25, (i * 37) % 300));
    ASSERT_NO_FATAL_FAILURE(make_log(h, entries, HardState{Term{3}, std::nullopt}));
    Entries more;
    for (std::uint64_t i = 61; i <= 90; ++i) more.push_back(make_entry(i, 3, (i * 37) % 300));
    (void)h.log().append(std::span<const consensus::Entry>(more.data(), 15));
    ASSERT_FALSE(h.write(/*sync=*/false).error);
    (void)h.log().append(std::span<const consensus::Entry>(more.data() + 15, 15));
    ASSERT_FALSE(h.write(/*sync=*/false).error);
    h.disk().crash(random);
    if (random.below(2) == 0) {
      const auto names = h.disk().list();
      std::vector<std::string> segments;
      for (const std::string& name : names.value())
        if (parse_segment_name(name)) segments.push_back(name);
      const std::string& victim = segments[random.below(segments.size())];
      const std::uint64_t size = h.disk().bytes(victim)->size();
      h.disk().corrupt(victim, random.below(size), static_cast<std::byte>(1U << random.below(8)));
    }

    const Inspection inspection = inspect_unchanged(h.disk());
    auto recovered = recover(h.disk(), kIdentity, LogHarness::small_segments());
    const std::string where = "seed " + std::to_string(seed) + "\n" + describe(inspection);
    if (!recovered) {
      ++refused;
      EXPECT_TRUE(inspection.at_start.starts_with("refuses to start")) << where << recovered.error();
      EXPECT_TRUE(inspection.damaged()) << where;
      continue;
    }
    EXPECT_FALSE(inspection.at_start.starts_with("refuses to start")) << where;
    EXPECT_EQ(inspection.last_index, recovered->last_index) << where << joined(recovered->repairs);
    EXPECT_EQ(inspection.base, recovered->base) << where;
    const bool data_loss = mentions(recovered->repairs, "DATA LOSS");
    const bool cut_torn_tail = mentions(recovered->repairs, "torn tail");
    EXPECT_EQ(inspection.damaged(), data_loss) << where << joined(recovered->repairs);
    EXPECT_EQ(!findings_of(inspection, FindingKind::torn_tail).empty(), cut_torn_tail)
        << where << joined(recovered->repairs);
    torn += cut_torn_tail ? 1 : 0;
    damaged += data_loss ? 1 : 0;
  }
  // The seeds cover each outcome.
  EXPECT_GT(torn, 10U);
  EXPECT_GT(damaged, 10U);
  EXPECT_GT(refused, 0U);
}

}  // namespace
}  // namespace cohort::storage::testing

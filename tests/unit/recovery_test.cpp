// Recovery against the fault-injecting file layer (design.md section 5): torn tails are cut back to a
// contiguous prefix, damage to a durable record is cut, named loudly with the file and offset, and makes the node a
// recovering one (it repairs from the cluster before it votes), metadata and truncations
// survive a crash at every step, a full disk or a failing fsync stops the node without losing what was synced,
// and a randomized run of appends, truncations, hard-state saves and crashes never loses the durable prefix.

#include <algorithm>
#include <array>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "common/random.h"
#include "storage_harness.h"

namespace cohort::storage::testing {
namespace {

/// The nonce of the segment whose bytes are `image` (format.h: the segment header's u64 at offset 40).
std::uint64_t nonce_of(const std::vector<std::byte>& image) { return load_le<std::uint64_t>(image.data() + 40); }

using consensus::Entry;
using consensus::HardState;

// ---- helpers

/// Payloads of 0 to 499 bytes, so records straddle sectors and segments at irregular places.
Entries varied_entries(std::uint64_t first, std::uint64_t count, std::uint64_t term) {
  Entries entries;
  for (std::uint64_t i = first; i < first + count; ++i) entries.push_back(make_entry(i, term, (i * 37) % 500));
  return entries;
}

Entry random_entry(std::uint64_t index, Term term, std::size_t payload, Random& random) {
  Entry entry;
  entry.index = LogIndex{index};
  entry.term = term;
  std::vector<std::byte> bytes(payload);
  for (std::byte& b : bytes) b = static_cast<std::byte>(random.next() & 0xFFU);
  entry.payload = Payload(bytes);
  entry.checksum = consensus::compute_checksum(entry.index, entry.term, entry.type, entry.payload);
  return entry;
}

void append(LogHarness& h, const Entries& entries) { (void)h.log().append(entries); }

/// The total size of the segment files in the directory now.
std::uint64_t segment_bytes(MemoryDirectory& disk) {
  std::uint64_t total = 0;
  const auto names = disk.list();
  for (const std::string& name : names.value())
    if (parse_segment_name(name)) total += disk.bytes(name)->size();
  return total;
}

/// A durable file holding `bytes`, created through the Directory interface.
void put_file(MemoryDirectory& disk, std::string_view name, ByteSpan bytes) {
  auto file = disk.open(name, OpenMode::create_new);
  ASSERT_TRUE(file) << file.error().message;
  const ByteSpan parts[] = {bytes};
  ASSERT_TRUE((*file)->write_at(0, parts));
  ASSERT_TRUE((*file)->sync());
  ASSERT_TRUE(disk.sync());
}

/// What a restarted node does to bring its recovered log to `target`: cut what differs, append the rest, save the
/// hard state; the write must complete.
void reach(LogHarness& h, const Entries& target, const HardState& state) {
  const Entries now = h.entries();
  std::size_t common = 0;
  while (common < now.size() && common < target.size() && now[common] == target[common]) ++common;
  if (h.log().hard_state() != state) (void)h.log().save_hard_state(state);
  if (common < now.size()) (void)h.log().truncate_after(LogIndex{common});
  if (common < target.size())
    (void)h.log().append(std::span<const Entry>(target.data() + common, target.size() - common));
  const auto result = h.write();
  ASSERT_FALSE(result.error) << result.error->message;
}

// ---- 1. torn tails

TEST(Recovery, TornTailIsCutBackToAContiguousPrefixOfTheUnsyncedEntries) {
  std::size_t cuts = 0;
  std::size_t kept_some = 0;
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    LogHarness h;
    const Entries synced = varied_entries(1, 30, 1);
    ASSERT_NO_FATAL_FAILURE(make_log(h, synced, HardState{Term{1}, std::nullopt}));
    const Entries unsynced = varied_entries(31, 40, 1);  // spans new segments
    append(h, unsynced);
    ASSERT_FALSE(h.write(/*sync=*/false).error);
    const Entries appended = concat(synced, unsynced);

    Random random(seed);
    h.disk().crash(random);
    const std::uint64_t before = segment_bytes(h.disk());
    ASSERT_EQ(h.open(), "") << "seed " << seed;
    const Entries got = h.entries();
    ASSERT_GE(got.size(), synced.size()) << "seed " << seed << ": synced entries lost";
    ASSERT_TRUE(is_prefix(got, appended)) << "seed " << seed << ": " << describe(got);
    if (got.size() > synced.size()) ++kept_some;
    if (segment_bytes(h.disk()) < before) {
      ++cuts;
      const std::string last_segment = segment_name(h.segment_firsts().back());
      EXPECT_TRUE(mentions(h.recovered().repairs, "torn tail") && mentions(h.recovered().repairs, last_segment))
          << "seed " << seed << ": bytes were cut but the repairs say\n"
          << joined(h.recovered().repairs);
    }
    // What recovery kept it made durable.
    h.disk().crash_clean();
    ASSERT_EQ(h.open(), "") << "seed " << seed;
    ASSERT_EQ(h.entries(), got) << "seed " << seed;
  }
  // The seeds exercised both outcomes.
  EXPECT_GT(cuts, 30U);
  EXPECT_GT(kept_some, 30U);
}

// ---- 2. unsynced writes that reached the disk out of order

constexpr std::uint64_t kRecord = record_size(64);  // 112 bytes

TEST(Recovery, LaterWriteOnDiskWithoutAnEarlierOneIsATornTail) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), HardState{Term{1}, std::nullopt}));
  append(h, make_entries(11, 5, 1));
  ASSERT_FALSE(h.write(/*sync=*/false).error);  // batch A: records 11..15
  append(h, make_entries(16, 5, 1));
  ASSERT_FALSE(h.write(/*sync=*/false).error);  // batch B: records 16..20
  const std::string segment = segment_name(LogIndex{1});
  const std::vector<std::byte> image = *h.disk().bytes(segment);
  const std::uint64_t a_offset = kSegmentHeaderSize + 10 * kRecord;
  const std::uint64_t b_offset = kSegmentHeaderSize + 15 * kRecord;
  const std::uint64_t end = kSegmentHeaderSize + 20 * kRecord;
  ASSERT_EQ(image.size(), end);
  const auto b_header = decode_record_header(ByteSpan(image).subspan(b_offset, kRecordHeaderSize), nonce_of(image));
  ASSERT_TRUE(b_header);
  ASSERT_EQ(b_header->durable_before, LogIndex{10});

  // The machine loses both, then B's pages reach the disk and A's do not: A's place reads as zeros.
  h.disk().crash_clean();
  {
    auto file = h.disk().open(segment, OpenMode::existing);
    ASSERT_TRUE(file);
    const ByteSpan parts[] = {ByteSpan(image).subspan(b_offset, end - b_offset)};
    ASSERT_TRUE((*file)->write_at(b_offset, parts));
    ASSERT_TRUE((*file)->sync());
  }
  ASSERT_EQ(h.disk().bytes(segment)->size(), end);

  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.entries(), make_entries(1, 10, 1));
  EXPECT_TRUE(mentions(h.recovered().repairs, "torn tail at memory/" + segment + " offset " + std::to_string(a_offset)))
      << joined(h.recovered().repairs);
  EXPECT_EQ(h.disk().bytes(segment)->size(), a_offset);
}

TEST(Recovery, RandomCrashesThatPersistOnlyTheLaterWriteAreTornTails) {
  // The same out-of-order outcome, drawn by the crash model: search seeds until the disk shows it.
  const std::string segment = segment_name(LogIndex{1});
  const std::uint64_t a_offset = kSegmentHeaderSize + 10 * kRecord;
  const std::uint64_t b_offset = kSegmentHeaderSize + 15 * kRecord;
  std::size_t found = 0;
  for (std::uint64_t seed = 1; seed <= 2000 && found < 10; ++seed) {
    LogHarness h;
    ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), HardState{Term{1}, std::nullopt}));
    append(h, make_entries(11, 5, 1));
    ASSERT_FALSE(h.write(/*sync=*/false).error);
    append(h, make_entries(16, 5, 1));
    ASSERT_FALSE(h.write(/*sync=*/false).error);
    Random random(seed);
    h.disk().crash(random);
    const std::vector<std::byte> image = *h.disk().bytes(segment);
    if (image.size() < b_offset + kRecord) continue;
    const ByteSpan bytes(image);
    if (decode_record_header(bytes.subspan(a_offset, kRecordHeaderSize), nonce_of(image)) ||
        !decode_record_header(bytes.subspan(b_offset, kRecordHeaderSize), nonce_of(image)))
      continue;
    ++found;
    ASSERT_EQ(h.open(), "") << "seed " << seed;
    EXPECT_EQ(h.entries(), make_entries(1, 10, 1)) << "seed " << seed;
    EXPECT_TRUE(mentions(h.recovered().repairs, "offset " + std::to_string(a_offset))) << "seed " << seed << "\n"
                                                                                       << joined(h.recovered().repairs);
  }
  EXPECT_GT(found, 0U) << "no seed persisted the later write alone";
}

// ---- 3. damage

TEST(Recovery, DamagedDurableRecordIsCutNamedLoudlyAndTheNodeRecovers) {
  for (const std::uint64_t byte : {std::uint64_t{16}, kRecordHeaderSize + 10}) {  // in the header, in the body
    LogHarness h;
    ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 20, 1), HardState{Term{1}, NodeId{2}}));
    const std::string segment = segment_name(LogIndex{1});
    const std::uint64_t offset = kSegmentHeaderSize + 4 * kRecord;  // record 5
    h.disk().corrupt(segment, offset + byte, std::byte{0x01});
    h.disk().crash_clean();
    ASSERT_EQ(h.open(), "") << "byte " << byte;
    EXPECT_EQ(h.entries(), make_entries(1, 4, 1));
    EXPECT_EQ(h.log().hard_state(), (HardState{Term{1}, NodeId{2}, consensus::Standing::recovering}));
    const auto& repairs = h.recovered().repairs;
    EXPECT_TRUE(
        mentions(repairs, "memory/" + segment + " is damaged at offset " + std::to_string(offset) + " (index 5)"))
        << joined(repairs);
    EXPECT_TRUE(mentions(repairs, "DATA LOSS")) << joined(repairs);
    // The standing is durable: a crash right after recovery still finds the node recovering.
    h.disk().crash_clean();
    ASSERT_EQ(h.open(), "");
    EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::recovering);
    EXPECT_EQ(h.entries(), make_entries(1, 4, 1));
  }
}

// The node is marked recovering before anything is cut: a crash (or a failed write and a restart) at any step of
// the repair leaves it recovering or its log uncut, never a member holding fewer entries than it acknowledged.
TEST(Recovery, ACrashWhileCuttingADamagedDurableRecordNeverLeavesAMemberThatForgot) {
  for (std::uint64_t step = 0; step < 12; ++step) {
    for (const auto& [kind, seed] : crash_kinds(4)) {
      const std::string where = "crash point " + std::to_string(step) + ", " + name_of(kind, seed);
      LogHarness h;
      ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 20, 1), HardState{Term{1}, NodeId{2}}));
      h.disk().corrupt(segment_name(LogIndex{1}), kSegmentHeaderSize + 4 * kRecord + 16, std::byte{0x01});
      h.disk().crash_clean();
      h.disk().fail_after(step);
      (void)h.open();  // fails part way, or completes
      crash(h, kind, seed);
      ASSERT_EQ(h.open(), "") << where;
      const bool member = h.log().hard_state().standing == consensus::Standing::member;
      EXPECT_FALSE(member && h.entries().size() < 20)
          << where << ": a member holding " << h.entries().size() << " of its 20 durable entries; repairs:\n"
          << joined(h.recovered().repairs);
    }
  }
}

TEST(Recovery, DamagedDurableRecordInAnEarlierSegmentIsCutThere) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 100, 1), HardState{Term{1}, std::nullopt}));
  ASSERT_EQ(h.segment_firsts(), (std::vector<LogIndex>{LogIndex{1}, LogIndex{37}, LogIndex{73}}));
  const std::string segment = segment_name(LogIndex{37});
  const std::uint64_t offset = kSegmentHeaderSize + 3 * kRecord;  // record 40
  h.disk().corrupt(segment, offset + kRecordHeaderSize + 63, std::byte{0x80});
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.entries(), make_entries(1, 39, 1));
  EXPECT_EQ(h.segment_firsts(), (std::vector<LogIndex>{LogIndex{1}, LogIndex{37}}));
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::recovering);
  const auto& repairs = h.recovered().repairs;
  EXPECT_TRUE(
      mentions(repairs, "memory/" + segment + " is damaged at offset " + std::to_string(offset) + " (index 40)"))
      << joined(repairs);
  EXPECT_TRUE(mentions(repairs, "body fails its checksum")) << joined(repairs);
}

TEST(Recovery, DamagedLastRecordIsCutAndReportedLoudly) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), HardState{Term{1}, std::nullopt}));
  const std::string segment = segment_name(LogIndex{1});
  const std::uint64_t offset = kSegmentHeaderSize + 9 * kRecord;  // record 10, the last
  h.disk().corrupt(segment, offset + kRecordHeaderSize, std::byte{0xFF});
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.entries(), make_entries(1, 9, 1));
  const auto& repairs = h.recovered().repairs;
  EXPECT_TRUE(mentions(repairs, "memory/" + segment + " offset " + std::to_string(offset) + " (index 10"))
      << joined(repairs);
  EXPECT_TRUE(mentions(repairs, "cannot be told from a torn write")) << joined(repairs);
}

// ---- 4. metadata

TEST(Recovery, MetadataSurvivesACrashAtEveryStepOfItsUpdate) {
  const HardState old_state{Term{3}, NodeId{2}};
  const HardState new_state{Term{4}, NodeId{3}};
  bool completed = false;
  for (std::uint64_t step = 0; !completed; ++step) {
    ASSERT_LT(step, 20U) << "the update never completes";
    for (const auto& [kind, seed] : crash_kinds(8)) {
      const std::string where = "crash point " + std::to_string(step) + ", " + name_of(kind, seed);
      LogHarness h;
      ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 5, 3), old_state));
      h.disk().fail_after(step);
      (void)h.log().save_hard_state(new_state);
      completed = !h.write().error;
      crash(h, kind, seed);
      ASSERT_EQ(h.open(), "") << where;
      const HardState got = h.log().hard_state();
      EXPECT_TRUE(got == old_state || got == new_state) << where << ": term " << got.term.value();
      if (completed) {
        EXPECT_EQ(got, new_state) << where;
      }
      EXPECT_EQ(h.entries(), make_entries(1, 5, 3)) << where;
      // What recovery handed out stays, whatever crash comes next: a vote must never go back.
      h.disk().crash_clean();
      ASSERT_EQ(h.open(), "") << where;
      EXPECT_EQ(h.log().hard_state(), got) << where << ", then crash_clean";
    }
  }
}

// ---- 5. truncation

TEST(Recovery, TruncationNeverResurrectsRemovedEntries) {
  const Entries old_log = make_entries(1, 120, 1);  // segments at 1, 37, 73, 109
  const HardState state{Term{2}, std::nullopt};
  for (const std::uint64_t x : {50U, 72U, 0U, 110U}) {  // mid-segment, a segment's end, everything, the last one
    const Entries fresh = make_entries(x + 1, 10, 2);
    const Entries target = concat(Entries(old_log.begin(), old_log.begin() + static_cast<std::ptrdiff_t>(x)), fresh);
    bool completed = false;
    for (std::uint64_t step = 0; !completed; ++step) {
      ASSERT_LT(step, 40U) << "the truncation never completes";
      for (const auto& [kind, seed] : crash_kinds(6)) {
        const std::string where =
            "x " + std::to_string(x) + ", crash point " + std::to_string(step) + ", " + name_of(kind, seed);
        LogHarness h;
        ASSERT_NO_FATAL_FAILURE(make_log(h, old_log, state));
        ASSERT_EQ(h.segment_firsts().size(), 4U);
        h.disk().fail_after(step);
        (void)h.log().truncate_after(LogIndex{x});
        const bool truncated = !h.write().error;
        if (truncated) {
          append(h, fresh);
          completed = !h.write().error;
        }
        crash(h, kind, seed);
        ASSERT_EQ(h.open(), "") << where;
        const Entries got = h.entries();
        ASSERT_GE(got.size(), x) << where << ": " << describe(got);
        if (is_prefix(got, old_log) && got.size() > x) {
          EXPECT_FALSE(truncated) << where << ": a completed truncation came undone: " << describe(got);
        } else {
          EXPECT_TRUE(is_prefix(got, target)) << where << ": " << describe(got);
        }
        if (completed) {
          EXPECT_EQ(got, target) << where << ": " << describe(got);
        }

        // The restarted node truncates again if it must and completes the new suffix; no crash after that may
        // bring back an entry of term 1 beyond x.
        ASSERT_NO_FATAL_FAILURE(reach(h, target, state));
        for (std::uint64_t after = 0; after <= 2; ++after) {
          // First a crash that loses everything unsynced, then random ones.
          Random random(seed * 10 + after);
          if (after == 0) {
            h.disk().crash_clean();
          } else {
            h.disk().crash(random);
          }
          ASSERT_EQ(h.open(), "") << where << ", then reach, then crash " << after;
          ASSERT_EQ(h.entries(), target) << where << ", then reach, then crash " << after << ": "
                                         << describe(h.entries());
        }
      }
    }
  }
}

// ---- process crashes part way: what recovery hands out must be durable

TEST(Recovery, ProcessCrashAtAnyStepThenCompletedWritesSurviveAMachineCrash) {
  // Appends that open a new segment (index 37): a crash point falls at every step of its creation.
  const Entries initial = make_entries(1, 30, 1);
  const Entries target = make_entries(1, 45, 1);
  bool completed = false;
  for (std::uint64_t step = 0; !completed; ++step) {
    ASSERT_LT(step, 20U);
    const std::string where = "crash point " + std::to_string(step);
    LogHarness h;
    ASSERT_NO_FATAL_FAILURE(make_log(h, initial, HardState{Term{1}, std::nullopt}));
    h.disk().fail_after(step);
    append(h, make_entries(31, 10, 1));
    completed = !h.write().error;
    h.disk().crash_keep_all();
    ASSERT_EQ(h.open(), "") << where;
    ASSERT_TRUE(is_prefix(h.entries(), target)) << where;
    ASSERT_GE(h.log().last_index(), LogIndex{30}) << where;
    ASSERT_NO_FATAL_FAILURE(reach(h, target, HardState{Term{1}, std::nullopt}));  // completes: durable
    h.disk().crash_clean();
    ASSERT_EQ(h.open(), "") << where;
    EXPECT_EQ(h.log().last_index(), LogIndex{45}) << where << ": completed entries lost";
    EXPECT_EQ(h.entries(), target) << where;
  }
}

// ---- 6. a full disk, a failing fsync

TEST(Recovery, DiskFullStopsTheNodeAndRecoveryKeepsTheSyncedLog) {
  for (std::uint64_t seed = 0; seed <= 20; ++seed) {  // seed 0: a clean crash
    LogHarness h;
    const Entries synced = make_entries(1, 20, 1);
    ASSERT_NO_FATAL_FAILURE(make_log(h, synced, HardState{Term{1}, std::nullopt}));
    h.disk().set_capacity(h.disk().used_bytes() + 1000);
    const Entries more = make_entries(21, 20, 1);
    append(h, more);
    auto batch = h.log().take_batch();
    ASSERT_NE(batch, nullptr);
    const IoStatus status = h.writer().write(*batch);
    ASSERT_FALSE(status);
    EXPECT_TRUE(status.error().disk_full()) << status.error().message;
    EXPECT_TRUE(contains(status.error().message, segment_name(LogIndex{1}))) << status.error().message;
    BatchResult result;
    result.error = status.error();
    EXPECT_FALSE(h.log().complete(std::move(batch), result).has_value());
    ASSERT_TRUE(h.log().failure().has_value());
    EXPECT_TRUE(h.log().failure()->disk_full());
    // Nothing is written after a failure.
    h.append(41, 1, 1);
    EXPECT_FALSE(h.write().error == std::nullopt);

    // The disk is still full: recovery needs no room.
    if (seed == 0) {
      h.disk().crash_clean();
      ASSERT_EQ(h.open(), "");
      EXPECT_EQ(h.entries(), synced);
    } else {
      Random random(seed);
      h.disk().crash(random);
      ASSERT_EQ(h.open(), "") << "seed " << seed;
      const Entries got = h.entries();
      EXPECT_GE(got.size(), synced.size()) << "seed " << seed;
      EXPECT_TRUE(is_prefix(got, concat(synced, more))) << "seed " << seed << ": " << describe(got);
    }
  }
}

TEST(Recovery, DiskFullWhileCreatingASegmentLeavesATempFileThatRecoveryRemoves) {
  LogHarness h;
  const Entries synced = make_entries(1, 36, 1);  // fills segment 1 exactly
  ASSERT_NO_FATAL_FAILURE(make_log(h, synced, HardState{Term{1}, std::nullopt}));
  h.disk().set_capacity(h.disk().used_bytes());
  h.append(37, 1, 1);
  const auto result = h.write();
  ASSERT_TRUE(result.error);
  EXPECT_TRUE(result.error->disk_full());
  EXPECT_TRUE(contains(result.error->message, segment_name(LogIndex{37}) + ".tmp")) << result.error->message;
  h.disk().crash_keep_all();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.entries(), synced);
  EXPECT_TRUE(mentions(h.recovered().repairs, segment_name(LogIndex{37}) + ".tmp")) << joined(h.recovered().repairs);
}

TEST(Recovery, FailingSyncStopsTheNodeAndRecoveryKeepsTheSyncedPrefix) {
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    LogHarness h;
    const Entries synced = make_entries(1, 20, 1);
    ASSERT_NO_FATAL_FAILURE(make_log(h, synced, HardState{Term{1}, std::nullopt}));
    h.disk().fail_syncs(true);
    // Odd seeds: the batch stays in segment 1 and its sync fails; even ones: creating segment 37 fails.
    const Entries more = make_entries(21, seed % 2 == 1 ? 10 : 25, 1);
    append(h, more);
    const auto result = h.write();
    ASSERT_TRUE(result.error) << "seed " << seed;
    EXPECT_EQ(result.error->code, EIO);
    EXPECT_TRUE(contains(result.error->message, "sync")) << result.error->message;
    EXPECT_TRUE(h.log().failure().has_value());

    Random random(seed);
    h.disk().crash(random);
    // The disk still fails its syncs: recovery cannot make what it keeps durable, so it refuses.
    const std::string refused = h.open();
    EXPECT_TRUE(contains(refused, "sync") && contains(refused, "Input/output error"))
        << "seed " << seed << ": " << refused;
    h.disk().fail_syncs(false);
    ASSERT_EQ(h.open(), "") << "seed " << seed;
    const Entries got = h.entries();
    EXPECT_GE(got.size(), synced.size()) << "seed " << seed;
    EXPECT_TRUE(is_prefix(got, concat(synced, more))) << "seed " << seed << ": " << describe(got);
  }
}

// ---- 7. refusals, leftovers, what recovery syncs, policy none

TEST(Recovery, SegmentOfAnotherNodeIsRefusedNamingBoth) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), HardState{Term{1}, std::nullopt}));
  const Identity other{77, NodeId{9}};
  std::array<std::byte, kSegmentHeaderSize> header{};
  encode_segment_header(header.data(), other, LogIndex{11}, 1234);
  put_file(h.disk(), segment_name(LogIndex{11}), header);
  const std::string error = h.open();
  EXPECT_TRUE(contains(error, segment_name(LogIndex{11}))) << error;
  EXPECT_TRUE(contains(error, "node 9 of cluster 77")) << error;
  EXPECT_TRUE(contains(error, "not to node 1 of cluster " + std::to_string(kIdentity.cluster_id))) << error;

  // A whole directory of another node is refused at its metadata.
  const auto foreign = recover(h.disk(), other, LogHarness::small_segments());
  ASSERT_FALSE(foreign);
  EXPECT_TRUE(contains(foreign.error(), "node 1 of cluster " + std::to_string(kIdentity.cluster_id)))
      << foreign.error();
  EXPECT_TRUE(contains(foreign.error(), "not to node 9 of cluster 77")) << foreign.error();
}

TEST(Recovery, LostOrDamagedMetadataIsRebuiltAndTheNodeRecovers) {
  for (const bool removed : {true, false}) {
    LogHarness h;
    ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 3), HardState{Term{5}, NodeId{2}}));
    if (removed)
      ASSERT_TRUE(h.disk().remove(kMetadataName));
    else
      h.disk().corrupt(std::string(kMetadataName), 33, std::byte{0x04});
    ASSERT_TRUE(h.disk().sync());
    h.disk().crash_clean();
    ASSERT_EQ(h.open(), "");
    // The term comes back from the log; the vote is lost, which the recovering standing makes safe.
    EXPECT_EQ(h.log().hard_state(), (HardState{Term{3}, std::nullopt, consensus::Standing::recovering}));
    EXPECT_EQ(h.entries(), make_entries(1, 10, 3));
    EXPECT_TRUE(mentions(h.recovered().repairs, "DATA LOSS")) << joined(h.recovered().repairs);
    h.disk().crash_clean();
    ASSERT_EQ(h.open(), "");
    EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::recovering);
  }
}

TEST(Recovery, AnEmptyDirectoryIsAFreshNode) {
  LogHarness h;
  ASSERT_EQ(h.open(), "");
  EXPECT_TRUE(h.recovered().created);
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::fresh);
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::fresh);  // until the cluster says otherwise
}

TEST(Recovery, AMachineRestartUnderPolicyNoneMakesTheNodeRecover) {
  const MachineBoot first{std::byte{1}};
  const MachineBoot second{std::byte{2}};
  LogHarness h(LogHarness::small_segments(), SyncPolicy::none);
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), HardState{Term{1}, std::nullopt}));
  auto note = [&](const MachineBoot& boot, SyncPolicy policy) {
    RecoveredLog recovered = h.recovered();
    const auto status = note_machine_boot(h.disk(), kIdentity, recovered, boot, policy);
    EXPECT_TRUE(status) << status.error();
    return recovered;
  };
  EXPECT_EQ(note(first, SyncPolicy::none).hard_state.standing, consensus::Standing::fresh);  // recorded
  // A process crash: the same kernel boot, the page cache kept everything.
  h.disk().crash_keep_all();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(note(first, SyncPolicy::none).hard_state.standing, consensus::Standing::member);
  // A machine crash: a new kernel boot id.
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  const RecoveredLog after = note(second, SyncPolicy::none);
  EXPECT_EQ(after.hard_state.standing, consensus::Standing::recovering);
  EXPECT_TRUE(mentions(after.repairs, "POSSIBLE DATA LOSS")) << joined(after.repairs);
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::recovering);  // durable before anything else
}

// A kernel that gives no boot id cannot rule a machine restart out: under policy none the node recovers.
TEST(Recovery, AnUnknownKernelBootIdCountsAsAMachineRestart) {
  const MachineBoot unknown{};
  LogHarness h(LogHarness::small_segments(), SyncPolicy::none);
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), HardState{Term{1}, std::nullopt}));
  RecoveredLog recovered = h.recovered();
  ASSERT_TRUE(note_machine_boot(h.disk(), kIdentity, recovered, unknown, SyncPolicy::none));
  h.disk().crash_clean();  // a machine crash: the page cache is gone
  ASSERT_EQ(h.open(), "");
  recovered = h.recovered();
  ASSERT_TRUE(note_machine_boot(h.disk(), kIdentity, recovered, unknown, SyncPolicy::none));
  EXPECT_EQ(recovered.hard_state.standing, consensus::Standing::recovering);
}

TEST(Recovery, PolicyFsyncForgetsTheMachineBoot) {
  const MachineBoot first{std::byte{1}};
  const MachineBoot second{std::byte{2}};
  LogHarness h(LogHarness::small_segments(), SyncPolicy::none);
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), HardState{Term{1}, std::nullopt}));
  RecoveredLog recovered = h.recovered();
  ASSERT_TRUE(note_machine_boot(h.disk(), kIdentity, recovered, first, SyncPolicy::none));
  // Restarted under fsync in the same boot: recovery synced the log, so no machine crash can cost it now.
  h.disk().crash_keep_all();
  ASSERT_EQ(h.open(), "");
  recovered = h.recovered();
  ASSERT_TRUE(note_machine_boot(h.disk(), kIdentity, recovered, first, SyncPolicy::fsync));
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  recovered = h.recovered();
  ASSERT_TRUE(note_machine_boot(h.disk(), kIdentity, recovered, second, SyncPolicy::fsync));
  EXPECT_EQ(recovered.hard_state.standing, consensus::Standing::member);
}

TEST(Recovery, LeftoverTempFilesAreRemovedWithARepairLine) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), HardState{Term{1}, std::nullopt}));
  const std::vector<std::byte> junk(30, std::byte{0x5A});
  put_file(h.disk(), kMetadataTempName, junk);
  const std::string segment_temp = segment_name(LogIndex{11}) + std::string(kTempSuffix);
  put_file(h.disk(), segment_temp, junk);
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  const auto& repairs = h.recovered().repairs;
  EXPECT_TRUE(mentions(repairs, "removed memory/meta.tmp")) << joined(repairs);
  EXPECT_TRUE(mentions(repairs, "removed memory/" + segment_temp)) << joined(repairs);
  EXPECT_EQ(h.entries(), make_entries(1, 10, 1));
  // The removals are durable.
  h.disk().crash_clean();
  EXPECT_FALSE(h.disk().bytes(kMetadataTempName).has_value());
  EXPECT_FALSE(h.disk().bytes(segment_temp).has_value());
  ASSERT_EQ(h.open(), "");
  EXPECT_TRUE(h.recovered().repairs.empty()) << joined(h.recovered().repairs);
}

TEST(Recovery, RecoverySyncsWhatItKeeps) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), HardState{Term{1}, std::nullopt}));
  append(h, make_entries(11, 40, 1));  // into segment 1 and a new segment 37
  ASSERT_FALSE(h.write(/*sync=*/false).error);
  h.disk().crash_keep_all();  // the page cache survives
  ASSERT_EQ(h.open(), "");
  ASSERT_EQ(h.entries(), make_entries(1, 50, 1));
  h.disk().crash_clean();  // then the machine loses whatever is unsynced
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.entries(), make_entries(1, 50, 1));
}

TEST(Recovery, PolicyNoneCompletesAppendsWithoutSyncing) {
  LogHarness h(LogHarness::small_segments(), SyncPolicy::none);
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 5, 1), HardState{Term{1}, std::nullopt}));
  const std::uint64_t writer_syncs = h.writer().syncs();
  const std::uint64_t disk_syncs = h.disk().syncs();
  append(h, make_entries(6, 10, 1));
  const auto result = h.write();
  ASSERT_FALSE(result.error);
  EXPECT_EQ(result.completion.last_index, LogIndex{15});
  EXPECT_EQ(h.writer().syncs(), writer_syncs);
  EXPECT_EQ(h.disk().syncs(), disk_syncs);
  h.disk().crash_keep_all();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.entries(), make_entries(1, 15, 1));
}

// ---- 8. randomized

/// The model of one randomized run: what the log may hold after a crash.
struct Model {
  Entries current;               // the loop side's log
  Entries written;               // the log as of the last successful write: a crash keeps a prefix of it...
  std::size_t durable = 0;       // ...at least this long
  HardState hard_state;          // the loop side's
  HardState written_hard_state;  // durable once written
  // Operations since the last write: the log and the hard state after each.
  std::vector<Entries> pending_logs;
  std::vector<HardState> pending_hard_states;
  std::size_t pending_cut = std::numeric_limits<std::size_t>::max();
  // After a failed write or sync: the batch was done part way, so the log may be a prefix of any state it went
  // through, and the hard state any it wrote.
  bool failed = false;
  std::vector<Entries> maybe_logs;
  std::vector<HardState> maybe_hard_states;

  void written_ok(bool synced) {
    durable = std::min(durable, pending_cut);
    written = current;
    written_hard_state = hard_state;
    if (synced) durable = written.size();
    clear_pending();
  }
  void write_failed() {
    failed = true;
    durable = std::min(durable, pending_cut);
    maybe_logs = pending_logs;
    maybe_hard_states = pending_hard_states;
    clear_pending();
  }
  void recovered(const Entries& log, const HardState& state) {
    current = written = log;
    durable = log.size();
    hard_state = written_hard_state = state;
    clear_pending();
    failed = false;
    maybe_logs.clear();
    maybe_hard_states.clear();
  }
  void clear_pending() {
    pending_logs.clear();
    pending_hard_states.clear();
    pending_cut = std::numeric_limits<std::size_t>::max();
  }
};

void random_run(std::uint64_t seed) {
  Random random(seed);
  LogHarness h;
  ASSERT_EQ(h.open(), "") << "seed " << seed;
  Model model;
  model.hard_state = model.written_hard_state = h.log().hard_state();  // a new directory's: a fresh node
  const auto where = [&](std::size_t step) { return "seed " + std::to_string(seed) + " step " + std::to_string(step); };

  const auto save_hard_state = [&](HardState state) {
    (void)h.log().save_hard_state(state);
    model.hard_state = state;
    model.pending_hard_states.push_back(state);
  };
  save_hard_state(HardState{Term{1}, std::nullopt});

  const auto crash_and_check = [&](std::size_t step) {
    h.disk().fail_syncs(false);
    const std::uint64_t kind = random.below(5);
    if (kind == 0) {
      h.disk().crash_clean();
    } else if (kind == 1) {
      h.disk().crash_keep_all();
    } else {
      h.disk().crash(random);
    }
    ASSERT_EQ(h.open(), "") << where(step) << ", crash kind " << kind;
    const Entries got = h.entries();
    const HardState state = h.log().hard_state();
    ASSERT_GE(got.size(), model.durable) << where(step) << ": durable entries lost: " << describe(got) << " written "
                                         << describe(model.written);
    const bool allowed =
        is_prefix(got, model.written) || std::any_of(model.maybe_logs.begin(), model.maybe_logs.end(),
                                                     [&](const Entries& log) { return is_prefix(got, log); });
    ASSERT_TRUE(allowed) << where(step) << ": recovered " << describe(got) << ", written " << describe(model.written);
    const bool state_allowed = state == model.written_hard_state ||
                               std::find(model.maybe_hard_states.begin(), model.maybe_hard_states.end(), state) !=
                                   model.maybe_hard_states.end();
    ASSERT_TRUE(state_allowed) << where(step) << ": hard state term " << state.term.value();
    if (!model.failed && kind == 1) {
      ASSERT_EQ(got.size(), model.written.size()) << where(step) << ": a process crash lost written entries";
    }
    for (const Entry& entry : got) ASSERT_EQ(h.log().term_at(entry.index), entry.term) << where(step);
    model.recovered(got, state);
  };

  for (std::size_t step = 0; step < 100; ++step) {
    if (model.failed) {
      crash_and_check(step);
      if (::testing::Test::HasFatalFailure()) return;
      continue;
    }
    const std::uint64_t roll = random.below(100);
    if (roll < 35) {
      if (model.hard_state.term == Term{0}) save_hard_state(HardState{Term{1}, std::nullopt});
      Entries entries;
      const std::uint64_t count = random.between(1, 6);
      for (std::uint64_t i = 0; i < count; ++i) {
        const std::size_t payload = random.chance(1, 4) ? random.between(0, 3000) : random.between(0, 200);
        entries.push_back(random_entry(model.current.size() + 1, model.hard_state.term, payload, random));
        model.current.push_back(entries.back());
      }
      append(h, entries);
      model.pending_logs.push_back(model.current);
    } else if (roll < 45) {
      if (model.current.empty()) continue;
      const std::size_t after = random.below(model.current.size());
      (void)h.log().truncate_after(LogIndex{after});
      model.current.resize(after);
      model.pending_logs.push_back(model.current);
      model.pending_cut = std::min(model.pending_cut, after);
    } else if (roll < 52) {
      HardState state = model.hard_state;
      state.term = Term{state.term.value() + random.below(2)};
      state.voted_for =
          random.chance(1, 2) ? std::optional<NodeId>{} : NodeId{static_cast<std::uint32_t>(random.between(1, 5))};
      save_hard_state(state);
    } else if (roll < 85) {
      if (random.chance(1, 10)) h.disk().fail_after(random.below(12));
      if (random.chance(1, 25)) h.disk().fail_syncs(true);
      const bool sync = random.chance(2, 3);
      bool ok = true;
      if (model.pending_logs.empty() && model.pending_hard_states.empty()) {
        if (sync) ok = static_cast<bool>(h.writer().sync());
      } else {
        ok = !h.write(sync).error;
      }
      if (ok) {
        model.written_ok(sync);
        ASSERT_EQ(h.log().last_index(), LogIndex{model.current.size()}) << where(step);
        if (random.chance(1, 4)) {
          ASSERT_EQ(h.entries(), model.current) << where(step) << ": reading back";
        }
      } else {
        model.write_failed();
      }
    } else {
      crash_and_check(step);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  crash_and_check(100);
}

TEST(Recovery, RandomizedOperationsAndCrashesNeverLoseTheDurablePrefix) {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    random_run(seed);
    if (::testing::Test::HasFatalFailure()) break;
  }
}

// Terms never decrease along a log; a record whose term goes back is damage, not a record to keep. Written
// through the LogWriter directly, which (unlike SegmentedLog) does not check the order.
TEST(Recovery, ARecordWhoseTermGoesBackIsCutAsDamage) {
  LogHarness h;
  ASSERT_EQ(h.open(), "");
  (void)h.log().save_hard_state(consensus::HardState{Term{3}, std::nullopt});
  ASSERT_FALSE(h.write().error);
  Batch batch;
  const consensus::Entry entries[] = {make_entry(1, 2), make_entry(2, 1), make_entry(3, 2)};
  StorageOp op;
  op.kind = StorageOp::Kind::append;
  op.segment = LogIndex{1};
  op.new_segment = true;
  op.nonce = 99;
  op.offset = kSegmentHeaderSize;
  for (const auto& entry : entries) {
    const std::size_t at = batch.bytes.size();
    batch.bytes.resize(at + record_size(entry.payload.size()));
    encode_record(batch.bytes.data() + at, entry);
  }
  op.end = batch.bytes.size();
  op.seq = 1;
  op.last_index = LogIndex{3};
  op.last_term = Term{2};
  batch.ops.push_back(op);
  ASSERT_TRUE(h.writer().write(batch));
  ASSERT_TRUE(h.writer().sync());
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.log().last_index(), LogIndex{1});
  ASSERT_EQ(h.recovered().repairs.size(), 1U);
  EXPECT_NE(h.recovered().repairs[0].find("term 1 is below the previous record's term 2"), std::string::npos)
      << h.recovered().repairs[0];
}

// ---- review findings: a planted record, pages a failed fsync left behind, policy none's proofs

// A client controls command payloads. A payload shaped like a record claiming everything durable must not make
// a torn tail look like damage: record headers are sealed with the segment's nonce, which the client cannot know.
TEST(Recovery, ARecordPlantedInAPayloadIsNeverTakenForAClaim) {
  std::size_t torn = 0;
  for (std::uint64_t seed = 1; seed <= 400; ++seed) {
    LogHarness h;
    ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), HardState{Term{1}, std::nullopt}));
    Entry planted = make_entry(11, 1, 1024);
    std::vector<std::byte> bytes = planted.payload.to_vector();
    for (std::uint64_t guess = 0; guess < 8; ++guess) {  // forged headers, each sealed with a guessed nonce
      Entry fake = make_entry(12 + guess, 1, 8);
      std::byte* at = bytes.data() + 8 + guess * 120;
      encode_record(at, fake);
      seal_record(at, LogIndex{11}, guess);
    }
    planted.payload = Payload(bytes);
    planted.checksum = consensus::compute_checksum(planted.index, planted.term, planted.type, planted.payload);
    const Entries more = {planted};
    append(h, more);
    ASSERT_FALSE(h.write(/*sync=*/false).error);
    Random random(seed);
    h.disk().crash(random);
    ASSERT_EQ(h.open(), "") << "seed " << seed;
    torn += h.recovered().repairs.empty() ? 0U : 1U;
  }
  EXPECT_GT(torn, 0U);
}

// A failed fsync may leave pages that read back fine but never reached the disk. After a process crash the
// restarted node must not take them for durable: recovery reads what the disk holds.
TEST(Recovery, PagesAFailedSyncLeftBehindAreNotTrustedAfterAProcessCrash) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), HardState{Term{1}, std::nullopt}));
  append(h, make_entries(11, 10, 1));
  h.disk().fail_syncs(true);
  ASSERT_TRUE(h.write().error);
  h.disk().fail_syncs(false);
  h.disk().crash_keep_all();  // the process dies; the page cache still shows entries 11..20
  ASSERT_EQ(h.open(), "");
  const Entries recovered = h.entries();
  EXPECT_EQ(recovered, make_entries(1, 10, 1));
  h.disk().crash_clean();  // whatever recovery handed out was durable
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.entries(), recovered);
}

// Policy none syncs a segment once it is complete, so records of later segments prove the earlier ones durable
// and damage there is named as damage to a durable record (the node recovers) rather than cut off as a torn tail.
TEST(Recovery, PolicyNoneProvesCompletedSegmentsDurable) {
  LogHarness h(LogHarness::small_segments(), SyncPolicy::none);
  ASSERT_EQ(h.open(), "");
  (void)h.log().save_hard_state(HardState{Term{1}, std::nullopt});
  append(h, make_entries(1, 120, 1));
  ASSERT_FALSE(h.write().error);
  ASSERT_GE(h.segment_firsts().size(), 3U);
  const std::uint64_t offset = kSegmentHeaderSize + 4 * record_size(64);  // record 5, in the first segment
  h.disk().corrupt(segment_name(LogIndex{1}), offset + 20, std::byte{0x10});
  h.disk().crash_keep_all();
  ASSERT_EQ(h.open(), "");
  EXPECT_TRUE(mentions(h.recovered().repairs, "damaged at offset " + std::to_string(offset) + " (index 5)"))
      << joined(h.recovered().repairs);
  EXPECT_TRUE(mentions(h.recovered().repairs, "damage to a durable record")) << joined(h.recovered().repairs);
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::recovering);
}

// Under policy none every completed segment is synced at its roll, even when its last write came in an earlier
// group than the roll: otherwise later records would "prove" unsynced ones durable.
TEST(Recovery, PolicyNoneSyncsASegmentWhoseRollComesInALaterGroup) {
  LogHarness h(LogHarness::small_segments(), SyncPolicy::none);
  ASSERT_EQ(h.open(), "");
  (void)h.log().save_hard_state(HardState{Term{1}, std::nullopt});
  const std::uint64_t per_segment = (4096 - kSegmentHeaderSize) / record_size(64);
  append(h, make_entries(1, per_segment, 1));  // group A fills the first segment exactly
  ASSERT_FALSE(h.write().error);
  append(h, make_entries(per_segment + 1, 1, 1));  // group B: one record, the roll to the second segment
  ASSERT_FALSE(h.write().error);
  const std::uint64_t last = 2 * per_segment + 5;  // group C fills the second and rolls to a third
  append(h, make_entries(per_segment + 2, last - per_segment - 1, 1));
  ASSERT_FALSE(h.write().error);
  ASSERT_EQ(h.segment_firsts().size(), 3U);
  h.disk().crash_clean();  // a power loss: only what was synced is left
  ASSERT_EQ(h.open(), "");
  const Entries got = h.entries();
  EXPECT_GE(got.size(), 2 * per_segment) << "the completed segments were synced";
  EXPECT_TRUE(is_prefix(got, make_entries(1, last, 1)));
}

}  // namespace
}  // namespace cohort::storage::testing

// Removing the log's prefix (design.md section 5): compaction removes whole segments up to a snapshot's index and
// moves the base; a reset empties the log after a new base. Both survive a crash at every step: recovery finds the
// old log, the new one or a valid mid-point (never a base beyond what was asked, never an entry after the base lost,
// never a removed entry back with a stale term). A damaged or missing base file, or a gap after the base, makes the
// node a recovering one. A randomized run checks the real log against the in-memory model's account of crashes.
//
// The harness's small segments hold 36 records of 64 bytes: a log of 120 entries has segments at 1, 37, 73, 109.

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "common/random.h"
#include "consensus/memory_log.h"
#include "storage_harness.h"

namespace cohort::storage::testing {
namespace {

using consensus::HardState;
using consensus::LogBase;

const HardState kState{Term{4}, std::nullopt};  // no entry in these tests has a later term

/// The entries of `log` after `base`.
Entries after(const Entries& log, LogIndex base) {
  return Entries(log.begin() + static_cast<std::ptrdiff_t>(base.value()), log.end());
}

std::string describe_log(const LogBase& base, const Entries& entries) {
  return "base (" + std::to_string(base.index.value()) + ", " + std::to_string(base.term.value()) + ") then " +
         describe(entries);
}

/// The segment files on disk, by first index.
std::vector<LogIndex> segments_on_disk(MemoryDirectory& disk) {
  std::vector<LogIndex> firsts;
  const auto names = disk.list();
  for (const std::string& name : names.value())
    if (const auto first = parse_segment_name(name)) firsts.push_back(*first);
  return firsts;
}

/// The base file as the disk holds it durably; nullopt if there is none (or it does not decode).
std::optional<BaseFile> durable_base_file(MemoryDirectory& disk) {
  const auto bytes = disk.durable_bytes(kBaseName);
  if (!bytes) return std::nullopt;
  std::string reason;
  return decode_base(*bytes, reason);
}

// ---- compaction

TEST(Compaction, UpToInsideTheFirstSegmentRemovesNothing) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), kState));
  const consensus::PersistSeq seq = h.log().compact(LogIndex{35});
  EXPECT_EQ(h.log().base(), LogBase{});
  EXPECT_EQ(h.log().first_index(), LogIndex{1});
  const auto result = h.write();
  ASSERT_FALSE(result.error) << result.error->message;
  // It completes like any write, reporting the log's end.
  EXPECT_EQ(result.completion.seq, seq);
  EXPECT_EQ(result.completion.last_index, LogIndex{120});
  EXPECT_EQ(result.completion.last_term, Term{1});
  EXPECT_EQ(segments_on_disk(h.disk()),
            (std::vector<LogIndex>{LogIndex{1}, LogIndex{37}, LogIndex{73}, LogIndex{109}}));
  EXPECT_FALSE(h.disk().bytes(kBaseName).has_value()) << "nothing moved, nothing written";
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.recovered().base, LogBase{});
  EXPECT_EQ(h.entries(), make_entries(1, 120, 1));
}

TEST(Compaction, UpToASegmentsLastIndexRemovesIt) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), kState));
  (void)h.log().compact(LogIndex{36});
  EXPECT_EQ(h.log().base(), (LogBase{LogIndex{36}, Term{1}}));
  EXPECT_EQ(h.log().first_index(), LogIndex{37});
  EXPECT_EQ(h.log().last_index(), LogIndex{120});
  EXPECT_EQ(h.log().term_at(LogIndex{36}), Term{1});
  EXPECT_EQ(h.log().term_at(LogIndex{35}), std::nullopt);
  EXPECT_EQ(h.log().term_at(LogIndex{0}), std::nullopt);
  EXPECT_EQ(h.segment_firsts(), (std::vector<LogIndex>{LogIndex{37}, LogIndex{73}, LogIndex{109}}));
  const std::uint64_t syncs = h.disk().syncs();
  ASSERT_FALSE(h.write().error);
  // Its cost, behind synced appends: the base file and its rename, then the removals.
  EXPECT_EQ(h.disk().syncs() - syncs, 3U);
  EXPECT_EQ(segments_on_disk(h.disk()), (std::vector<LogIndex>{LogIndex{37}, LogIndex{73}, LogIndex{109}}));
  const auto file = durable_base_file(h.disk());
  ASSERT_TRUE(file.has_value());
  EXPECT_EQ(file->base, (LogBase{LogIndex{36}, Term{1}}));
  EXPECT_FALSE(file->resetting);
  EXPECT_EQ(h.entries(), make_entries(37, 84, 1));

  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.recovered().base, (LogBase{LogIndex{36}, Term{1}}));
  EXPECT_EQ(h.log().term_at(LogIndex{36}), Term{1});
  EXPECT_EQ(h.entries(), make_entries(37, 84, 1));
  EXPECT_TRUE(h.recovered().repairs.empty()) << joined(h.recovered().repairs);
}

TEST(Compaction, KeepsTheSegmentTakingAppends) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), kState));
  (void)h.log().compact(LogIndex{120});
  EXPECT_EQ(h.log().base(), (LogBase{LogIndex{108}, Term{1}}));
  EXPECT_EQ(h.segment_firsts(), (std::vector<LogIndex>{LogIndex{109}}));
  // Appends go on in the kept segment; with it the only one, compacting again removes nothing.
  h.append(121, 10, 2);
  (void)h.log().compact(LogIndex{130});
  EXPECT_EQ(h.log().base(), (LogBase{LogIndex{108}, Term{1}}));
  ASSERT_FALSE(h.write().error);
  EXPECT_EQ(segments_on_disk(h.disk()), (std::vector<LogIndex>{LogIndex{109}}));
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.entries(), concat(make_entries(109, 12, 1), make_entries(121, 10, 2)));
  EXPECT_EQ(h.log().term_at(LogIndex{120}), Term{1});
  EXPECT_EQ(h.log().term_at(LogIndex{121}), Term{2});
}

TEST(Compaction, TheBaseTakesItsTermFromTheTermRuns) {
  LogHarness h;
  // Terms 1 (1..30), 2 (31..36: the first segment ends in it), 3 (37..60), 4 (61..120).
  const Entries log = concat(concat(make_entries(1, 30, 1), make_entries(31, 6, 2)),
                             concat(make_entries(37, 24, 3), make_entries(61, 60, 4)));
  ASSERT_NO_FATAL_FAILURE(make_log(h, log, HardState{Term{4}, std::nullopt}));
  (void)h.log().compact(LogIndex{40});
  EXPECT_EQ(h.log().base(), (LogBase{LogIndex{36}, Term{2}}));
  EXPECT_EQ(h.log().term_at(LogIndex{37}), Term{3});
  (void)h.log().compact(LogIndex{100});
  EXPECT_EQ(h.log().base(), (LogBase{LogIndex{72}, Term{4}}));
  EXPECT_EQ(h.log().term_at(LogIndex{72}), Term{4});
  EXPECT_EQ(h.log().term_at(LogIndex{73}), Term{4});
  ASSERT_FALSE(h.write().error);
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.recovered().base, (LogBase{LogIndex{72}, Term{4}}));
  EXPECT_EQ(h.entries(), after(log, LogIndex{72}));
  // A truncation to the base empties the log; the next append follows the base's term.
  (void)h.log().truncate_after(LogIndex{72});
  EXPECT_EQ(h.log().last_index(), LogIndex{72});
  h.append(73, 5, 4);
  ASSERT_FALSE(h.write().error);
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.entries(), make_entries(73, 5, 4));
  EXPECT_EQ(h.log().term_at(LogIndex{72}), Term{4});
}

// Positions in the segment list shift when segments go: the read-back window and cursor must not follow a position
// into another segment.
TEST(Compaction, ReadsOfWhatRemainsComeBackFromDisk) {
  LogHarness h;
  const Entries log = make_entries(1, 300, 1);
  ASSERT_NO_FATAL_FAILURE(make_log(h, log, kState));
  ASSERT_LT(h.log().cached_entries(), 10U);
  EXPECT_EQ(h.log().entry(LogIndex{80}), log[79]);  // segment 73, the third: the window and the cursor are there
  EXPECT_EQ(h.log().entry(LogIndex{81}), log[80]);
  (void)h.log().compact(LogIndex{36});  // segment 109 is third now
  EXPECT_EQ(h.log().entry(LogIndex{115}), log[114]);
  EXPECT_EQ(h.log().entry(LogIndex{116}), log[115]);
  EXPECT_EQ(h.log().entry(LogIndex{37}), log[36]);
  ASSERT_FALSE(h.write().error);
  for (std::uint64_t i : {290U, 37U, 150U, 151U, 72U, 73U, 300U, 38U})
    EXPECT_EQ(h.log().entry(LogIndex{i}), log[i - 1]) << i;
  EXPECT_EQ(h.entries(), after(log, LogIndex{36}));
}

// What the loop side keeps in memory follows the segments kept, not the entries ever written.
TEST(Compaction, TheInMemoryPictureShrinksWithTheLog) {
  LogHarness h;
  const Entries log = make_entries(1, 2000, 1);
  ASSERT_NO_FATAL_FAILURE(make_log(h, log, kState));
  EXPECT_EQ(h.segment_firsts().size(), 56U);
  const std::uint64_t kept_bytes = h.log().bytes_after(LogIndex{1872});
  (void)h.log().compact(LogIndex{1900});
  EXPECT_EQ(h.log().base(), (LogBase{LogIndex{1872}, Term{1}}));
  EXPECT_EQ(h.segment_firsts(),
            (std::vector<LogIndex>{LogIndex{1873}, LogIndex{1909}, LogIndex{1945}, LogIndex{1981}}));
  EXPECT_EQ(h.log().bytes_after(LogIndex{0}), kept_bytes);
  EXPECT_EQ(h.log().bytes_after(LogIndex{1872}), kept_bytes);
  ASSERT_FALSE(h.write().error);
  EXPECT_EQ(segments_on_disk(h.disk()).size(), 4U);
  EXPECT_EQ(h.entries(), after(log, LogIndex{1872}));
}

// Entries appended right before a compaction, in the same group, are durable once its base is: a crash never keeps
// the compaction and loses them.
TEST(Compaction, AppendsBeforeItAreDurableOnceItsBaseIs) {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    LogHarness h;
    const Entries log = make_entries(1, 130, 1);
    ASSERT_NO_FATAL_FAILURE(make_log(h, Entries(log.begin(), log.begin() + 120), kState));
    h.append(121, 10, 1);
    (void)h.log().compact(LogIndex{80});
    ASSERT_FALSE(h.write(/*sync=*/false).error);
    crash(h, CrashKind::random, seed);
    ASSERT_EQ(h.open(), "") << "seed " << seed;
    ASSERT_EQ(h.recovered().base, (LogBase{LogIndex{72}, Term{1}})) << "seed " << seed;
    EXPECT_EQ(h.entries(), after(log, LogIndex{72})) << "seed " << seed;
  }
}

TEST(Compaction, SurvivesACrashAtEveryStep) {
  const Entries log = make_entries(1, 130, 1);
  const LogBase asked_base{LogIndex{72}, Term{1}};  // compact(80): segments 1 and 37 go
  for (const bool unsynced_appends : {false, true}) {
    bool completed = false;
    for (std::uint64_t step = 0; !completed; ++step) {
      ASSERT_LT(step, 40U) << "the compaction never completes";
      for (const auto& [kind, seed] : crash_kinds(6)) {
        const std::string where = std::string(unsynced_appends ? "with appends before it, " : "") + "crash point " +
                                  std::to_string(step) + ", " + name_of(kind, seed);
        LogHarness h;
        ASSERT_NO_FATAL_FAILURE(make_log(h, Entries(log.begin(), log.begin() + 120), kState));
        if (unsynced_appends) h.append(121, 10, 1);
        h.disk().fail_after(step);
        (void)h.log().compact(LogIndex{80});
        completed = !h.write().error;
        crash(h, kind, seed);
        ASSERT_EQ(h.open(), "") << where;
        const LogBase base = h.recovered().base;
        const Entries got = h.entries();
        // The old base or the new one; every entry after it still there.
        ASSERT_TRUE(base == LogBase{} || base == asked_base) << where << ": " << describe_log(base, got);
        const Entries expected = after(Entries(log.begin(), log.begin() + (unsynced_appends ? 130 : 120)), base.index);
        ASSERT_GE(got.size(), 120 - base.index.value()) << where << ": " << describe_log(base, got);
        ASSERT_TRUE(is_prefix(got, expected)) << where << ": " << describe_log(base, got);
        if (base == asked_base) {
          EXPECT_TRUE(got == expected) << where << ": appends before the compaction were not durable with it: "
                                       << describe_log(base, got);
        }
        if (completed) {
          EXPECT_EQ(base, asked_base) << where;
        }
        EXPECT_EQ(h.log().term_at(base.index), base.term) << where;
        EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::member) << where;
        EXPECT_FALSE(mentions(h.recovered().repairs, "DATA LOSS")) << where << "\n" << joined(h.recovered().repairs);
        // No segment a compaction should have removed is left.
        for (const LogIndex first : segments_on_disk(h.disk())) EXPECT_GT(first, base.index) << where;

        // What recovery handed out is durable, and the log goes on from it.
        h.append(h.log().last_index().value() + 1, 5, 2);
        ASSERT_FALSE(h.write().error) << where;
        const Entries now = h.entries();
        h.disk().crash_clean();
        ASSERT_EQ(h.open(), "") << where;
        EXPECT_EQ(h.recovered().base, base) << where;
        EXPECT_EQ(h.entries(), now) << where;
      }
    }
  }
}

TEST(Compaction, SegmentsACompactionLeftBehindAreRemovedWithARepairLine) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), kState));
  // A compaction to 72 that got as far as its base file.
  ASSERT_TRUE(write_base(h.disk(), kIdentity, LogBase{LogIndex{72}, Term{1}}, /*resetting=*/false));
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.recovered().base, (LogBase{LogIndex{72}, Term{1}}));
  EXPECT_EQ(h.entries(), make_entries(73, 48, 1));
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::member);
  const auto& repairs = h.recovered().repairs;
  EXPECT_TRUE(mentions(repairs,
                       "compaction of the log to index 72 that was cut short: removed 2 segment(s) from "
                       "memory/" +
                           segment_name(LogIndex{1})))
      << joined(repairs);
  h.disk().crash_clean();  // the removals are durable
  EXPECT_EQ(segments_on_disk(h.disk()), (std::vector<LogIndex>{LogIndex{73}, LogIndex{109}}));
  ASSERT_EQ(h.open(), "");
  EXPECT_TRUE(h.recovered().repairs.empty()) << joined(h.recovered().repairs);
}

// ---- reset

struct ResetCase {
  const char* name;
  LogBase to;
};

// From a log compacted to 36 (segments 37, 73, 109, entries up to 120): a base below it, one inside the log at a
// segment's end (an old segment starts right after it), one inside a segment, one beyond the log.
const ResetCase kResets[] = {
    {"below", LogBase{LogIndex{20}, Term{2}}},
    {"inside, at a segment's end", LogBase{LogIndex{72}, Term{2}}},
    {"inside", LogBase{LogIndex{80}, Term{2}}},
    {"beyond", LogBase{LogIndex{500}, Term{3}}},
};

void make_compacted_log(LogHarness& h, std::size_t unsynced = 0) {
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), kState));
  (void)h.log().compact(LogIndex{36});
  ASSERT_FALSE(h.write().error);
  if (unsynced != 0) h.append(121, unsynced, 1);
}

TEST(Reset, BelowInsideAndBeyondTheLogThenAppends) {
  for (const ResetCase& reset : kResets) {
    LogHarness h;
    ASSERT_NO_FATAL_FAILURE(make_compacted_log(h));
    const consensus::PersistSeq seq = h.log().reset(reset.to.index, reset.to.term);
    EXPECT_EQ(h.log().base(), reset.to) << reset.name;
    EXPECT_EQ(h.log().last_index(), reset.to.index) << reset.name;
    EXPECT_EQ(h.log().term_at(reset.to.index), reset.to.term) << reset.name;
    EXPECT_EQ(h.log().term_at(reset.to.index.next()), std::nullopt) << reset.name;
    EXPECT_EQ(h.log().term_at(reset.to.index.prev()), std::nullopt) << reset.name;
    EXPECT_TRUE(h.segment_firsts().empty()) << reset.name;
    const std::uint64_t syncs = h.disk().syncs();
    const auto result = h.write();
    ASSERT_FALSE(result.error) << reset.name << ": " << result.error->message;
    // Its cost: the marked base file and its rename, the removals, the settled base file and its rename.
    EXPECT_EQ(h.disk().syncs() - syncs, 5U) << reset.name;
    EXPECT_EQ(result.completion.seq, seq) << reset.name;
    EXPECT_EQ(result.completion.last_index, reset.to.index) << reset.name;
    EXPECT_EQ(result.completion.last_term, reset.to.term) << reset.name;
    EXPECT_TRUE(segments_on_disk(h.disk()).empty()) << reset.name;
    const auto file = durable_base_file(h.disk());
    ASSERT_TRUE(file.has_value()) << reset.name;
    EXPECT_EQ(file->base, reset.to) << reset.name;
    EXPECT_FALSE(file->resetting) << reset.name;

    // Appends start a segment right after the base and roll on as usual.
    const Entries appended = make_entries(reset.to.index.value() + 1, 50, 4);
    (void)h.log().append(appended);
    ASSERT_FALSE(h.write().error) << reset.name;
    EXPECT_EQ(h.segment_firsts(), (std::vector<LogIndex>{reset.to.index.next(), LogIndex{reset.to.index.value() + 37}}))
        << reset.name;
    h.disk().crash_clean();
    ASSERT_EQ(h.open(), "") << reset.name;
    EXPECT_EQ(h.recovered().base, reset.to) << reset.name;
    EXPECT_EQ(h.entries(), appended) << reset.name;
    EXPECT_EQ(h.log().term_at(reset.to.index), reset.to.term) << reset.name;
    EXPECT_TRUE(h.recovered().repairs.empty()) << reset.name << "\n" << joined(h.recovered().repairs);
  }
}

TEST(Reset, SurvivesACrashAtEveryStep) {
  const LogBase old_base{LogIndex{36}, Term{1}};
  for (const ResetCase& reset : kResets) {
    for (const std::size_t unsynced : {std::size_t{0}, std::size_t{5}}) {
      bool completed = false;
      for (std::uint64_t step = 0; !completed; ++step) {
        ASSERT_LT(step, 40U) << "the reset never completes";
        for (const auto& [kind, seed] : crash_kinds(6)) {
          const std::string where = std::string(reset.name) + (unsynced != 0 ? ", with appends before it" : "") +
                                    ", crash point " + std::to_string(step) + ", " + name_of(kind, seed);
          LogHarness h;
          ASSERT_NO_FATAL_FAILURE(make_compacted_log(h, unsynced));
          h.disk().fail_after(step);
          (void)h.log().reset(reset.to.index, reset.to.term);
          completed = !h.write().error;
          crash(h, kind, seed);
          ASSERT_EQ(h.open(), "") << where;
          const LogBase base = h.recovered().base;
          const Entries got = h.entries();
          // The old log (with a prefix of what was appended unsynced), or the new empty one: nothing between.
          if (base == old_base) {
            EXPECT_FALSE(completed) << where << ": a completed reset came undone";
            EXPECT_GE(got.size(), 84U) << where << ": " << describe_log(base, got);
            EXPECT_TRUE(is_prefix(got, make_entries(37, 84 + unsynced, 1))) << where << ": " << describe_log(base, got);
          } else {
            EXPECT_EQ(base, reset.to) << where << ": " << describe_log(base, got);
            EXPECT_TRUE(got.empty()) << where << ": old entries after the new base: " << describe_log(base, got);
            EXPECT_TRUE(segments_on_disk(h.disk()).empty()) << where;
          }
          EXPECT_EQ(h.log().term_at(base.index), base.term) << where;
          EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::member) << where;
          EXPECT_FALSE(mentions(h.recovered().repairs, "DATA LOSS")) << where << "\n" << joined(h.recovered().repairs);

          // The node resets again if it must, then appends; nothing of the old log ever comes back.
          if (base != reset.to) (void)h.log().reset(reset.to.index, reset.to.term);
          const Entries appended = make_entries(reset.to.index.value() + 1, 40, 4);
          (void)h.log().append(appended);
          ASSERT_FALSE(h.write().error) << where;
          for (std::uint64_t again = 0; again <= 2; ++again) {
            crash(h, again == 0 ? CrashKind::clean : CrashKind::random, seed * 10 + again);
            ASSERT_EQ(h.open(), "") << where << ", then crash " << again;
            EXPECT_EQ(h.recovered().base, reset.to) << where << ", then crash " << again;
            EXPECT_EQ(h.entries(), appended) << where << ", then crash " << again;
          }
        }
      }
    }
  }
}

// The hard case a reset marks its base for: an old segment that starts right after the new base, whose entries follow
// another history. Recovery must not take it for the new log.
TEST(Reset, EverySegmentLeftBehindByAResetIsRemovedWithARepairLine) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), kState));
  // A reset to (0, 0) that got as far as its marked base file: segment 1 starts right after it.
  ASSERT_TRUE(write_base(h.disk(), kIdentity, LogBase{}, /*resetting=*/true));
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.recovered().base, LogBase{});
  EXPECT_EQ(h.log().last_index(), LogIndex{0});
  EXPECT_TRUE(segments_on_disk(h.disk()).empty());
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::member);
  EXPECT_TRUE(mentions(h.recovered().repairs,
                       "reset of the log to index 0 (term 0) that was cut short: removed 4 "
                       "segment(s)"))
      << joined(h.recovered().repairs);
  // Settled: a crash now finds the base unmarked, and new segments are kept.
  h.append(1, 3, 3);
  ASSERT_FALSE(h.write().error);
  h.disk().crash_clean();
  const auto file = durable_base_file(h.disk());
  ASSERT_TRUE(file.has_value());
  EXPECT_FALSE(file->resetting);
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.entries(), make_entries(1, 3, 3));
  EXPECT_TRUE(h.recovered().repairs.empty()) << joined(h.recovered().repairs);
}

// ---- damage

TEST(BaseFile, DamagedBaseFileIsNamedLoudlyAndTheNodeRecoversOnWhatTheSegmentsProve) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), HardState{Term{3}, NodeId{2}}));
  (void)h.log().compact(LogIndex{72});
  ASSERT_FALSE(h.write().error);
  h.disk().corrupt(std::string(kBaseName), 40, std::byte{0x02});  // the term
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  // The segments start at 73; the term at 72 is unknown, and term 0 matches no leader's entry.
  EXPECT_EQ(h.recovered().base, (LogBase{LogIndex{72}, Term{0}}));
  EXPECT_EQ(h.log().term_at(LogIndex{72}), Term{0});
  EXPECT_EQ(h.entries(), make_entries(73, 48, 1));
  EXPECT_EQ(h.log().hard_state(), (HardState{Term{3}, NodeId{2}, consensus::Standing::recovering}));
  const auto& repairs = h.recovered().repairs;
  EXPECT_TRUE(mentions(repairs, "DATA LOSS: memory/base: base file fails its checksum")) << joined(repairs);
  // Rebuilt, and the standing is durable.
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.recovered().base, (LogBase{LogIndex{72}, Term{0}}));
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::recovering);
  EXPECT_TRUE(h.recovered().repairs.empty()) << joined(h.recovered().repairs);
}

TEST(BaseFile, DamagedBaseFileBesideALogFromIndexOneKeepsAllOfIt) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), kState));
  ASSERT_TRUE(write_base(h.disk(), kIdentity, LogBase{LogIndex{36}, Term{1}}, /*resetting=*/false));
  h.disk().corrupt(std::string(kBaseName), 0, std::byte{0x01});  // the magic number
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.recovered().base, LogBase{});
  EXPECT_EQ(h.entries(), make_entries(1, 120, 1));
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::recovering);
  EXPECT_TRUE(mentions(h.recovered().repairs, "DATA LOSS: memory/base: not a Cohort base file"))
      << joined(h.recovered().repairs);
}

TEST(BaseFile, AMissingBaseFileBesideALogNotStartingAtOneIsDamage) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), kState));
  (void)h.log().compact(LogIndex{72});
  ASSERT_FALSE(h.write().error);
  ASSERT_TRUE(h.disk().remove(kBaseName));
  ASSERT_TRUE(h.disk().sync());
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.recovered().base, (LogBase{LogIndex{72}, Term{0}}));
  EXPECT_EQ(h.entries(), make_entries(73, 48, 1));
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::recovering);
  EXPECT_TRUE(mentions(h.recovered().repairs, "DATA LOSS: memory/base: missing, while the log's first segment, " +
                                                  segment_name(LogIndex{73}) + ", starts at index 73"))
      << joined(h.recovered().repairs);
}

TEST(BaseFile, OfAnotherNodeIsRefusedNamingBoth) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 10, 1), kState));
  ASSERT_TRUE(write_base(h.disk(), Identity{77, NodeId{9}}, LogBase{LogIndex{5}, Term{1}}, /*resetting=*/false));
  const std::string error = h.open();
  EXPECT_TRUE(contains(error, "memory/base belongs to node 9 of cluster 77")) << error;
  EXPECT_TRUE(contains(error, "not to node 1 of cluster " + std::to_string(kIdentity.cluster_id))) << error;
  EXPECT_TRUE(h.disk().bytes(segment_name(LogIndex{1})).has_value()) << "a refusal leaves the disk as it was";
}

TEST(BaseFile, AGapAfterTheBaseIsDamageCutAtTheStart) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), kState));
  (void)h.log().compact(LogIndex{72});
  ASSERT_FALSE(h.write().error);
  ASSERT_TRUE(h.disk().remove(segment_name(LogIndex{73})));  // lost: never how a compaction leaves it
  ASSERT_TRUE(h.disk().sync());
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.recovered().base, (LogBase{LogIndex{72}, Term{1}}));
  EXPECT_EQ(h.log().last_index(), LogIndex{72});
  EXPECT_TRUE(segments_on_disk(h.disk()).empty());
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::recovering);
  EXPECT_TRUE(mentions(h.recovered().repairs, "DATA LOSS: the log in memory starts at index 109 (" +
                                                  segment_name(LogIndex{109}) + "), but its base is index 72"))
      << joined(h.recovered().repairs);
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.log().hard_state().standing, consensus::Standing::recovering);
  EXPECT_EQ(h.log().last_index(), LogIndex{72});
}

// A first record whose term is below the base's breaks the rule that terms never decrease: damage, cut there.
TEST(BaseFile, AFirstRecordOfATermBelowTheBasesIsCut) {
  LogHarness h;
  ASSERT_NO_FATAL_FAILURE(make_log(h, make_entries(1, 120, 1), kState));
  (void)h.log().compact(LogIndex{72});
  ASSERT_FALSE(h.write().error);
  ASSERT_TRUE(write_base(h.disk(), kIdentity, LogBase{LogIndex{72}, Term{2}}, /*resetting=*/false));
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.log().last_index(), LogIndex{72});
  EXPECT_TRUE(mentions(h.recovered().repairs, "the record's term 1 is below the previous record's term 2"))
      << joined(h.recovered().repairs);
}

// ---- randomized, against the model

/// Appends, truncations, compactions, resets, hard states, writes (some unsynced, some failing part way) and crashes;
/// after every crash what recovery finds must be something MemoryLogStore's crash model explains.
void random_run(std::uint64_t seed, std::size_t& compactions, std::size_t& resets) {
  Random random(seed);
  LogHarness h;
  ASSERT_EQ(h.open(), "");
  consensus::MemoryLogStore model;
  model.restore({}, {}, h.log().hard_state());
  consensus::PersistSeq offset = model.last_seq();  // the model's sequence = the log's + offset
  Term term{1};
  bool failed = false;
  const auto where = [&](std::size_t step) { return "seed " + std::to_string(seed) + " step " + std::to_string(step); };
  const auto save = [&]() {
    (void)h.log().save_hard_state(HardState{term, std::nullopt});
    (void)model.save_hard_state(HardState{term, std::nullopt});
  };
  save();

  const auto crash_and_check = [&](std::size_t step) {
    crash(h, static_cast<CrashKind>(random.below(3)), random.next());
    ASSERT_EQ(h.open(), "") << where(step);
    const LogBase base = h.log().base();
    const Entries got = h.entries();
    const HardState state = h.log().hard_state();
    const std::string wrong = model.explain_recovery(base, got, state);
    ASSERT_EQ(wrong, "") << where(step) << ": " << describe_log(base, got) << "\nrepairs:\n"
                         << joined(h.recovered().repairs);
    ASSERT_EQ(h.log().term_at(base.index), base.term) << where(step);
    model.restore(base, got, state);
    offset = model.last_seq();
    failed = false;
    // Appends carry the durable term: one whose save a crash lost would be refused at the next start.
    term = state.term;
    if (term == Term{0}) {
      term = Term{1};
      save();
    }
  };

  for (std::size_t step = 0; step < 150; ++step) {
    if (failed) {
      ASSERT_NO_FATAL_FAILURE(crash_and_check(step));
      continue;
    }
    const std::uint64_t roll = random.below(100);
    const LogIndex first = h.log().first_index();
    const LogIndex last = h.log().last_index();
    ASSERT_EQ(model.last_index(), last) << where(step);
    ASSERT_EQ(model.base(), h.log().base()) << where(step);
    if (roll < 35) {
      Entries entries;
      for (std::uint64_t i = 0, count = random.between(1, 6); i < count; ++i)
        entries.push_back(make_entry(last.value() + 1 + i, term.value(),
                                     random.chance(1, 4) ? random.between(0, 3000) : random.between(0, 200)));
      (void)h.log().append(entries);
      (void)model.append(entries);
    } else if (roll < 42) {
      const LogIndex at{random.between(first.prev().value(), last.value())};
      (void)h.log().truncate_after(at);
      (void)model.truncate_after(at);
    } else if (roll < 52) {
      const LogIndex up_to{random.below(last.value() + 1)};
      const LogBase before = h.log().base();
      (void)h.log().compact(up_to);
      (void)model.compact(h.log().base().index);  // as the simulator does: the model follows what the log removed
      compactions += h.log().base() != before ? 1U : 0U;
    } else if (roll < 56) {
      const LogIndex at{random.below(last.value() + 40)};
      const Term at_term = at == LogIndex{0} ? Term{0} : Term{random.between(1, term.value())};
      (void)h.log().reset(at, at_term);
      (void)model.reset(at, at_term);
      ++resets;
    } else if (roll < 62) {
      term = Term{term.value() + random.below(2)};
      save();
    } else if (roll < 88) {
      if (random.chance(1, 10)) h.disk().fail_after(random.below(12));
      const bool sync = random.chance(2, 3);
      const auto result = h.write(sync);
      if (result.error) {
        failed = true;
      } else if (sync && result.completion.seq != 0) {
        const consensus::PersistCompletion durable = model.make_durable(result.completion.seq + offset);
        ASSERT_EQ(durable.last_index, result.completion.last_index) << where(step);
        ASSERT_EQ(durable.last_term, result.completion.last_term) << where(step);
      }
      if (!failed && random.chance(1, 4)) {
        for (LogIndex i = h.log().first_index(); i <= h.log().last_index(); i = i.next())
          ASSERT_EQ(h.log().entry(i), model.entry(i)) << where(step) << ": reading back index " << i.value();
      }
    } else {
      ASSERT_NO_FATAL_FAILURE(crash_and_check(step));
    }
  }
  ASSERT_NO_FATAL_FAILURE(crash_and_check(150));
}

TEST(Compaction, RandomizedRunsRecoverWhatTheCrashModelExplains) {
  std::size_t compactions = 0;
  std::size_t resets = 0;
  for (std::uint64_t seed = 1; seed <= 150; ++seed) {
    random_run(seed, compactions, resets);
    if (::testing::Test::HasFatalFailure()) break;
  }
  // The runs exercised both.
  EXPECT_GT(compactions, 100U);
  EXPECT_GT(resets, 100U);
}

}  // namespace
}  // namespace cohort::storage::testing

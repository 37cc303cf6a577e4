// The in-memory store's compaction and reset, and its crash model for them: what a crash keeps, and what a recovery
// of real storage may legitimately return (explain_recovery), which the simulator checks the real log against.

#include <gtest/gtest.h>

#include <ostream>
#include <vector>

#include "consensus/memory_log.h"

namespace cohort::consensus {

// How GoogleTest shows entries and bases in a failure: index and term, not bytes.
void PrintTo(const Entry& entry, std::ostream* out) { *out << entry.index.value() << '@' << entry.term.value(); }
void PrintTo(const LogBase& base, std::ostream* out) {
  *out << "base (" << base.index.value() << ", " << base.term.value() << ")";
}

namespace {

Entry make_entry(std::uint64_t index, std::uint64_t term) {
  Entry entry;
  entry.index = LogIndex{index};
  entry.term = Term{term};
  entry.payload = Payload(std::vector<std::byte>(3, static_cast<std::byte>(index)));
  entry.checksum = compute_checksum(entry.index, entry.term, entry.type, entry.payload);
  return entry;
}

std::vector<Entry> make_entries(std::uint64_t first, std::uint64_t last, std::uint64_t term) {
  std::vector<Entry> entries;
  for (std::uint64_t i = first; i <= last; ++i) entries.push_back(make_entry(i, term));
  return entries;
}

std::vector<Entry> concat(std::vector<Entry> a, const std::vector<Entry>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const HardState kState{Term{3}, std::nullopt};

/// A store whose durable log is entries 1..5 of term 1 and 6..10 of term 2.
MemoryLogStore durable_log() {
  MemoryLogStore store;
  (void)store.save_hard_state(kState);
  (void)store.append(concat(make_entries(1, 5, 1), make_entries(6, 10, 2)));
  (void)store.make_durable(store.last_seq());
  return store;
}

TEST(MemoryLogStore, CompactionMovesTheBaseAndKeepsEverythingAfterIt) {
  MemoryLogStore store = durable_log();
  EXPECT_EQ(store.base(), LogBase{});
  EXPECT_EQ(store.term_at(LogIndex{0}), Term{0});
  const PersistSeq seq = store.compact(LogIndex{7});
  EXPECT_EQ(store.base(), (LogBase{LogIndex{7}, Term{2}}));
  EXPECT_EQ(store.first_index(), LogIndex{8});
  EXPECT_EQ(store.last_index(), LogIndex{10});
  EXPECT_EQ(store.term_at(LogIndex{7}), Term{2});
  EXPECT_EQ(store.term_at(LogIndex{6}), std::nullopt);
  EXPECT_EQ(store.term_at(LogIndex{0}), std::nullopt);
  EXPECT_EQ(store.entry(LogIndex{8}), make_entry(8, 2));
  // At or below the base: nothing moves, yet the write is recorded and completes.
  const PersistSeq again = store.compact(LogIndex{3});
  EXPECT_EQ(again, seq + 1);
  EXPECT_EQ(store.base(), (LogBase{LogIndex{7}, Term{2}}));
  // Durable only once made so; the completion reports the log's end.
  EXPECT_EQ(store.durable_base(), LogBase{});
  const PersistCompletion completion = store.make_durable(again);
  EXPECT_EQ(completion.seq, again);
  EXPECT_EQ(completion.last_index, LogIndex{10});
  EXPECT_EQ(completion.last_term, Term{2});
  EXPECT_EQ(store.durable_base(), (LogBase{LogIndex{7}, Term{2}}));
  EXPECT_EQ(store.durable_entries(), make_entries(8, 10, 2));
}

TEST(MemoryLogStore, CompactionOfTheWholeLogLeavesItEmptyAtTheBase) {
  MemoryLogStore store = durable_log();
  (void)store.compact(LogIndex{10});
  EXPECT_EQ(store.last_index(), LogIndex{10});
  EXPECT_EQ(store.first_index(), LogIndex{11});
  EXPECT_EQ(store.term_at(LogIndex{10}), Term{2});
  (void)store.append(make_entries(11, 11, 3));
  EXPECT_EQ(store.entry(LogIndex{11}), make_entry(11, 3));
  // A truncation to the base empties it again.
  (void)store.truncate_after(LogIndex{10});
  EXPECT_EQ(store.last_index(), LogIndex{10});
  const PersistCompletion completion = store.make_durable(store.last_seq());
  EXPECT_EQ(completion.last_index, LogIndex{10});
  EXPECT_EQ(completion.last_term, Term{2});
}

TEST(MemoryLogStore, ResetEmptiesTheLogAfterItsNewBase) {
  struct Case {
    const char* name;
    LogBase to;
  };
  // From a log compacted to 4 (entries 5..10).
  for (const Case& c : {Case{"below", LogBase{LogIndex{2}, Term{1}}}, Case{"inside", LogBase{LogIndex{7}, Term{3}}},
                        Case{"beyond", LogBase{LogIndex{40}, Term{3}}}, Case{"to zero", LogBase{}}}) {
    MemoryLogStore store = durable_log();
    (void)store.compact(LogIndex{4});
    const PersistSeq seq = store.reset(c.to.index, c.to.term);
    EXPECT_EQ(store.base(), c.to) << c.name;
    EXPECT_EQ(store.last_index(), c.to.index) << c.name;
    EXPECT_EQ(store.term_at(c.to.index), c.to.term) << c.name;
    EXPECT_EQ(store.term_at(c.to.index.next()), std::nullopt) << c.name;
    (void)store.append(make_entries(c.to.index.value() + 1, c.to.index.value() + 2, 3));
    EXPECT_EQ(store.last_index(), LogIndex{c.to.index.value() + 2}) << c.name;
    const PersistCompletion completion = store.make_durable(seq);
    EXPECT_EQ(completion.last_index, c.to.index) << c.name;
    EXPECT_EQ(completion.last_term, c.to.term) << c.name;
    EXPECT_EQ(store.durable_base(), c.to) << c.name;
    EXPECT_TRUE(store.durable_entries().empty()) << c.name;
  }
}

TEST(MemoryLogStore, ACrashKeepsACompactionOrAResetWholeOrNotAtAll) {
  for (std::size_t keep = 0; keep <= 2; ++keep) {
    MemoryLogStore store = durable_log();
    (void)store.compact(LogIndex{7});
    (void)store.append(make_entries(11, 14, 2));
    (void)store.crash(keep, /*torn_entries=*/2);
    const std::vector<Entry> after_base = make_entries(8, 10, 2);
    switch (keep) {
      case 0:  // the compaction lost; a torn compaction does not exist
        EXPECT_EQ(store.base(), LogBase{});
        EXPECT_EQ(store.last_index(), LogIndex{10});
        break;
      case 1:  // the compaction kept, the append torn to its first two entries
        EXPECT_EQ(store.base(), (LogBase{LogIndex{7}, Term{2}}));
        EXPECT_EQ(store.durable_entries(), concat(after_base, make_entries(11, 12, 2)));
        break;
      default:
        EXPECT_EQ(store.base(), (LogBase{LogIndex{7}, Term{2}}));
        EXPECT_EQ(store.durable_entries(), concat(after_base, make_entries(11, 14, 2)));
    }
  }
  MemoryLogStore store = durable_log();
  (void)store.reset(LogIndex{20}, Term{3});
  EXPECT_EQ(store.crash(0), 1U);
  EXPECT_EQ(store.base(), LogBase{});
  EXPECT_EQ(store.last_index(), LogIndex{10});
  (void)store.reset(LogIndex{20}, Term{3});
  (void)store.crash(1);
  EXPECT_EQ(store.base(), (LogBase{LogIndex{20}, Term{3}}));
  EXPECT_EQ(store.last_index(), LogIndex{20});
}

TEST(MemoryLogStore, RecoveryMayStopACompactionBetweenItsBaseAndTheOldOne) {
  MemoryLogStore store = durable_log();
  (void)store.compact(LogIndex{7});
  const auto explain = [&](LogBase base, const std::vector<Entry>& entries) {
    return store.explain_recovery(base, entries, kState);
  };
  const std::vector<Entry> log = concat(make_entries(1, 5, 1), make_entries(6, 10, 2));
  const auto from = [&](std::uint64_t base) {
    return std::vector<Entry>(log.begin() + static_cast<std::ptrdiff_t>(base), log.end());
  };
  // The old log, the new one, and a base between them with every entry after it.
  EXPECT_EQ(explain(LogBase{}, log), "");
  EXPECT_EQ(explain(LogBase{LogIndex{7}, Term{2}}, from(7)), "");
  EXPECT_EQ(explain(LogBase{LogIndex{5}, Term{1}}, from(5)), "");
  // Never beyond what was asked, never with another term at the base, never an entry after it lost.
  EXPECT_NE(explain(LogBase{LogIndex{8}, Term{2}}, from(8)), "");
  EXPECT_NE(explain(LogBase{LogIndex{5}, Term{2}}, from(5)), "");
  EXPECT_NE(explain(LogBase{LogIndex{7}, Term{2}}, make_entries(8, 9, 2)), "");
  // Once durable, the compaction stays: the old base would bring removed entries back.
  (void)store.make_durable(store.last_seq());
  EXPECT_NE(explain(LogBase{}, log), "");
  EXPECT_EQ(explain(LogBase{LogIndex{7}, Term{2}}, from(7)), "");
}

TEST(MemoryLogStore, RecoveryTakesAResetWholeOrNotAtAll) {
  MemoryLogStore store = durable_log();
  (void)store.reset(LogIndex{8}, Term{3});
  (void)store.append(make_entries(9, 12, 3));
  const auto explain = [&](LogBase base, const std::vector<Entry>& entries) {
    return store.explain_recovery(base, entries, kState);
  };
  const std::vector<Entry> old_log = concat(make_entries(1, 5, 1), make_entries(6, 10, 2));
  const LogBase new_base{LogIndex{8}, Term{3}};
  EXPECT_EQ(explain(LogBase{}, old_log), "");
  EXPECT_EQ(explain(new_base, {}), "");
  EXPECT_EQ(explain(new_base, make_entries(9, 10, 3)), "");  // the append after it, torn
  EXPECT_EQ(explain(new_base, make_entries(9, 12, 3)), "");
  // Old entries after the new base, with their stale term; a reset undone part way, as a truncation would be.
  EXPECT_NE(explain(new_base, make_entries(9, 10, 2)), "");
  EXPECT_NE(explain(LogBase{}, make_entries(1, 4, 1)), "");
  EXPECT_NE(explain(LogBase{LogIndex{8}, Term{2}}, {}), "");
}

TEST(MemoryLogStore, RestoreMakesARecoveredLogDurableAndCurrent) {
  MemoryLogStore store = durable_log();
  (void)store.append(make_entries(11, 12, 2));
  const PersistSeq last = store.last_seq();
  store.restore(LogBase{LogIndex{20}, Term{2}}, make_entries(21, 22, 3), kState);
  EXPECT_EQ(store.pending_writes(), 0U);
  EXPECT_EQ(store.durable_seq(), last);
  EXPECT_EQ(store.base(), (LogBase{LogIndex{20}, Term{2}}));
  EXPECT_EQ(store.durable_base(), (LogBase{LogIndex{20}, Term{2}}));
  EXPECT_EQ(store.last_index(), LogIndex{22});
  EXPECT_EQ(store.term_at(LogIndex{20}), Term{2});
  EXPECT_EQ(store.entry(LogIndex{21}), make_entry(21, 3));
  EXPECT_EQ(store.append(make_entries(23, 23, 3)), last + 1);
}

}  // namespace
}  // namespace cohort::consensus

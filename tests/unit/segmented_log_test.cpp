// The durable log's normal life: appends across segments, reads back from cache and disk, truncation,
// metadata, and a clean restart that finds everything again.

#include "storage_harness.h"

namespace cohort::storage::testing {
namespace {

TEST(SegmentedLog, NewDirectoryRecoversEmptyAndCreatesMetadata) {
  LogHarness h;
  ASSERT_EQ(h.open(), "");
  EXPECT_TRUE(h.recovered().created);
  EXPECT_EQ(h.log().last_index(), LogIndex{0});
  EXPECT_EQ(h.log().term_at(LogIndex{0}), Term{0});
  EXPECT_TRUE(h.disk().durable_bytes("meta").has_value());
}

TEST(SegmentedLog, AppendsSurviveRestartAcrossSegments) {
  LogHarness h;
  ASSERT_EQ(h.open(), "");
  (void)h.log().save_hard_state(consensus::HardState{Term{3}, NodeId{2}});
  h.append(1, 100, 2);
  h.append(101, 100, 3);
  const auto result = h.write();
  ASSERT_FALSE(result.error) << result.error->message;
  EXPECT_EQ(result.completion.last_index, LogIndex{200});
  const auto before = h.entries();
  EXPECT_GT(h.segment_firsts().size(), 3U);

  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.log().last_index(), LogIndex{200});
  EXPECT_EQ(h.log().hard_state(), (consensus::HardState{Term{3}, NodeId{2}}));
  EXPECT_EQ(h.entries(), before);
  EXPECT_EQ(h.log().term_at(LogIndex{100}), Term{2});
  EXPECT_EQ(h.log().term_at(LogIndex{101}), Term{3});
  EXPECT_EQ(h.log().term_at(LogIndex{201}), std::nullopt);
  EXPECT_TRUE(h.recovered().repairs.empty());
}

TEST(SegmentedLog, ReadsBackInAnyOrderFromDisk) {
  LogHarness h;
  ASSERT_EQ(h.open(), "");
  h.append(1, 300, 1, 100);
  ASSERT_FALSE(h.write().error);
  EXPECT_LT(h.log().cached_entries(), 300U);
  for (std::uint64_t i : {1U, 300U, 150U, 2U, 151U, 152U, 77U, 299U})
    EXPECT_EQ(h.log().entry(LogIndex{i}), make_entry(i, 1, 100)) << i;
}

TEST(SegmentedLog, TruncationAndNewSuffixSurviveRestart) {
  LogHarness h;
  ASSERT_EQ(h.open(), "");
  (void)h.log().save_hard_state(consensus::HardState{Term{5}, std::nullopt});
  h.append(1, 200, 1);
  ASSERT_FALSE(h.write().error);
  (void)h.log().truncate_after(LogIndex{57});
  h.append(58, 10, 4);
  ASSERT_FALSE(h.write().error);
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  ASSERT_EQ(h.log().last_index(), LogIndex{67});
  EXPECT_EQ(h.log().entry(LogIndex{57}), make_entry(57, 1));
  EXPECT_EQ(h.log().entry(LogIndex{58}), make_entry(58, 4));
  EXPECT_EQ(h.log().entry(LogIndex{67}), make_entry(67, 4));
}

TEST(SegmentedLog, UnsyncedAppendsAreLostCleanlyOnCrash) {
  LogHarness h;
  ASSERT_EQ(h.open(), "");
  (void)h.log().save_hard_state(consensus::HardState{Term{1}, std::nullopt});
  h.append(1, 10, 1);
  ASSERT_FALSE(h.write().error);
  h.append(11, 10, 1);
  ASSERT_FALSE(h.write(/*sync=*/false).error);
  h.disk().crash_clean();
  ASSERT_EQ(h.open(), "");
  EXPECT_EQ(h.log().last_index(), LogIndex{10});
}

}  // namespace
}  // namespace cohort::storage::testing

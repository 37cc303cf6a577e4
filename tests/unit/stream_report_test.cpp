// `cohort stream`'s bookkeeping (tools/cohort/stream_report.h): the fate table, the comparison of the client's
// fates with the ledger's record (a loss and a duplicate must each be seen, a rejected number found in the ledger
// is a fault), the exit status, and the JSON summary.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cohort/stream_report.h"

namespace cohort::tool {
namespace {

using services::NumberRange;

LedgerView ledger_with(std::uint64_t highest, std::vector<NumberRange> gaps, std::uint64_t duplicated = 0) {
  LedgerView view;
  view.report.highest = highest;
  std::uint64_t missing = 0;
  for (const auto& gap : gaps) missing += gap.size();
  view.report.missing = missing;
  view.report.distinct = highest - missing;
  view.report.duplicated = duplicated;
  view.report.applications = view.report.distinct + duplicated;
  view.gaps = std::move(gaps);
  return view;
}

FateTable all(Fate fate, std::uint64_t count) {
  FateTable fates;
  for (std::uint64_t n = 1; n <= count; ++n) (void)fates.set(n, fate);
  return fates;
}

Summary clean_summary() {
  Summary summary;
  summary.tag = "00000000000000ab";
  summary.accepted = summary.applied = 10;
  summary.ledger = ledger_with(10, {});
  return summary;
}

TEST(FateTable, KeepsTwoBitsANumberAndCountsEachFate) {
  FateTable fates;
  EXPECT_EQ(fates.get(1), Fate::none);
  EXPECT_EQ(fates.get(0), Fate::none);
  EXPECT_EQ(fates.set(1, Fate::applied), Fate::none);
  EXPECT_EQ(fates.set(6, Fate::rejected), Fate::none);
  EXPECT_EQ(fates.set(1'000'000, Fate::unknown), Fate::none);
  EXPECT_EQ(fates.get(1), Fate::applied);
  EXPECT_EQ(fates.get(5), Fate::none);
  EXPECT_EQ(fates.get(6), Fate::rejected);
  EXPECT_EQ(fates.get(7), Fate::none);
  EXPECT_EQ(fates.get(1'000'000), Fate::unknown);
  EXPECT_EQ(fates.set(6, Fate::applied), Fate::rejected);
  EXPECT_EQ(fates.count(Fate::applied), 2U);
  EXPECT_EQ(fates.count(Fate::rejected), 0U);
  EXPECT_EQ(fates.count(Fate::unknown), 1U);
}

TEST(Compare, EverythingAppliedAndInTheLedgerIsClean) {
  const Comparison result = compare(all(Fate::applied, 100), 100, ledger_with(100, {}));
  EXPECT_EQ(result.lost, 0U);
  EXPECT_EQ(result.rejected_but_applied, 0U);
  EXPECT_EQ(result.beyond_accepted, 0U);
}

TEST(Compare, AppliedNumbersInAGapOrAboveTheHighestAreLost) {
  const Comparison result = compare(all(Fate::applied, 100), 100, ledger_with(95, {{10, 12}, {50, 50}}));
  EXPECT_EQ(result.lost, 4U + 5U);  // 10, 11, 12, 50 and 96..100
}

TEST(Compare, RejectedNumbersMayBeMissingButNotPresent) {
  FateTable fates = all(Fate::applied, 20);
  for (std::uint64_t n = 11; n <= 20; ++n) (void)fates.set(n, Fate::rejected);
  // 11..15 missing from the ledger, as they should be; 16..20 present: applied although said rejected.
  const Comparison result = compare(fates, 20, ledger_with(20, {{11, 15}}));
  EXPECT_EQ(result.lost, 0U);
  EXPECT_EQ(result.rejected_but_applied, 5U);
}

TEST(Compare, UnknownNumbersFoundInTheLedgerAreCountedForInformation) {
  FateTable fates = all(Fate::applied, 10);
  (void)fates.set(9, Fate::unknown);
  (void)fates.set(10, Fate::unknown);
  const Comparison result = compare(fates, 10, ledger_with(9, {}));
  EXPECT_EQ(result.unknown_applied, 1U);
  EXPECT_EQ(result.lost, 0U);
}

TEST(Compare, NumbersAboveTheLastAcceptedAreCounted) {
  const Comparison result = compare(all(Fate::applied, 10), 10, ledger_with(20, {{12, 14}}));
  EXPECT_EQ(result.beyond_accepted, 7U);  // 11, 15..20
}

TEST(Summary, OkOnlyWithNothingLostDuplicatedOrUnknownAndALedger) {
  Summary summary = clean_summary();
  EXPECT_TRUE(summary.ok());
  EXPECT_EQ(exit_status(summary), 0);

  Summary lost = clean_summary();
  lost.comparison.lost = 1;
  EXPECT_EQ(exit_status(lost), 1);
  Summary duplicated = clean_summary();
  duplicated.ledger->report.duplicated = 1;
  EXPECT_EQ(exit_status(duplicated), 1);
  Summary unknown = clean_summary();
  unknown.unknown = 1;
  EXPECT_EQ(exit_status(unknown), 1);
  Summary no_ledger = clean_summary();
  no_ledger.ledger.reset();
  EXPECT_EQ(exit_status(no_ledger), 1);
  Summary phantom = clean_summary();
  phantom.comparison.rejected_but_applied = 1;
  EXPECT_EQ(exit_status(phantom), 1);
  Summary rejected = clean_summary();
  rejected.rejected = 3;  // definitely not applied, and not in the ledger: not a fault
  EXPECT_EQ(exit_status(rejected), 0);
}

TEST(Summary, TheLongestOutageIsTheLongestListed) {
  Summary summary = clean_summary();
  EXPECT_EQ(summary.longest_outage_s(), 0);
  summary.outages = {{1.0, 0.25, "a", true}, {2.0, 0.75, "b", true}, {3.0, 0.5, "c", false}};
  EXPECT_EQ(summary.longest_outage_s(), 0.75);
}

TEST(Json, IsOneLineWithTheFieldsAScriptReads) {
  Summary summary = clean_summary();
  summary.outages = {{1.5, 0.6126, "connection \"reset\"", true}};
  summary.longest_stall_s = 0.25;
  const std::string json = to_json(summary);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
  for (const char* field : {"\"ok\":true", "\"accepted\":10", "\"applied\":10", "\"lost\":0", "\"duplicated\":0",
                            "\"unknown\":0", "\"longest_outage_ms\":613", "\"reason\":\"connection \\\"reset\\\"\"",
                            "\"ledger\":{\"distinct\":10,\"highest\":10", "\"longest_stall_ms\":250"})
    EXPECT_NE(json.find(field), std::string::npos) << field << " in " << json;

  Summary failed = clean_summary();
  failed.ledger.reset();
  failed.ledger_error = "no\nanswer";
  const std::string failed_json = to_json(failed);
  EXPECT_NE(failed_json.find("\"lost\":null"), std::string::npos);
  EXPECT_NE(failed_json.find("\"ledger\":null,\"ledger_error\":\"no\\nanswer\""), std::string::npos);
}

TEST(Json, StringsAreEscaped) { EXPECT_EQ(json_string("a\"b\\c\td\x01"), "\"a\\\"b\\\\c\\td\\u0001\""); }

}  // namespace
}  // namespace cohort::tool

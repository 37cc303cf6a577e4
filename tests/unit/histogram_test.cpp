// `cohort bench`'s latency histogram: every value lands in a bucket within 1/64 of it, percentiles read back within
// that precision, and merging adds up.

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "cohort/histogram.h"

namespace cohort::tool {
namespace {

TEST(Histogram, EveryValueLandsInABucketWithinItsPrecision) {
  for (std::uint64_t value :
       {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{127}, std::uint64_t{128}, std::uint64_t{129},
        std::uint64_t{1000}, std::uint64_t{123'456'789}, std::numeric_limits<std::uint64_t>::max()}) {
    const std::size_t bucket = Histogram::index(value);
    ASSERT_LT(bucket, Histogram::kBuckets) << value;
    const std::uint64_t lowest = Histogram::lowest(bucket);
    EXPECT_LE(lowest, value);
    EXPECT_LE(value - lowest, value / 64) << value;  // the bucket is at most 1/64 of its values wide
    if (bucket + 1 < Histogram::kBuckets) {
      EXPECT_GT(Histogram::lowest(bucket + 1), value) << value;
    }
  }
}

TEST(Histogram, PercentilesOfAUniformSpreadAreWithinTwoPercent) {
  Histogram h;
  for (std::uint64_t v = 1; v <= 1'000'000; ++v) h.record(v * 1000);  // 1 us .. 1 s in ns
  EXPECT_EQ(h.count(), 1'000'000U);
  EXPECT_EQ(h.min(), 1000U);
  EXPECT_EQ(h.max(), 1'000'000'000U);
  for (const double p : {0.5, 0.9, 0.99, 0.999}) {
    const double expected = p * 1e9;
    EXPECT_NEAR(static_cast<double>(h.percentile(p)), expected, expected * 0.02) << p;
  }
  EXPECT_EQ(h.percentile(1.0), h.max());
}

TEST(Histogram, MergeAddsCountsAndKeepsTheExtremes) {
  Histogram a;
  Histogram b;
  a.record(10);
  a.record(20);
  b.record(5);
  b.record(1'000'000);
  a.merge(b);
  EXPECT_EQ(a.count(), 4U);
  EXPECT_EQ(a.min(), 5U);
  EXPECT_EQ(a.max(), 1'000'000U);
  EXPECT_EQ(a.percentile(0.5), 10U);  // exact below 128
  a.clear();
  EXPECT_EQ(a.count(), 0U);
  EXPECT_EQ(a.percentile(0.5), 0U);
}

}  // namespace
}  // namespace cohort::tool

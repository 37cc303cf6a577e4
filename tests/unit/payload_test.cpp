// Payload: copies share one block, the last one gives it back to the thread's pool, and the next payload of that
// size class reuses it (steady state allocates nothing); equality is by bytes.

#include <gtest/gtest.h>

#include <cstddef>
#include <vector>

#include "common/payload.h"

namespace cohort {
namespace {

std::vector<std::byte> bytes_of(std::size_t size, std::byte fill) { return std::vector<std::byte>(size, fill); }

TEST(Payload, CopiesShareTheBytesAndEqualityIsByBytes) {
  const Payload a(bytes_of(100, std::byte{1}));
  const Payload b = a;  // NOLINT(performance-unnecessary-copy-initialization): the sharing is the point
  EXPECT_EQ(a.data(), b.data());
  EXPECT_EQ(b.size(), 100U);
  const Payload c(bytes_of(100, std::byte{1}));
  EXPECT_NE(a.data(), c.data());
  EXPECT_EQ(a, c);
  EXPECT_FALSE(a == Payload(bytes_of(100, std::byte{2})));
  EXPECT_FALSE(a == Payload(bytes_of(99, std::byte{1})));
}

TEST(Payload, TheLastCopyGivesTheBlockBackAndTheNextPayloadReusesIt) {
  const std::byte* block = nullptr;
  std::size_t pooled = 0;
  {
    Payload a(bytes_of(64, std::byte{7}));
    pooled = Payload::pooled_blocks();  // a may have taken a block another test gave back
    block = a.data();
    Payload b = std::move(a);
    Payload c = b;
    EXPECT_EQ(Payload::pooled_blocks(), pooled);
  }
  EXPECT_EQ(Payload::pooled_blocks(), pooled + 1);
  const Payload reused(bytes_of(60, std::byte{8}));  // the same size class
  EXPECT_EQ(reused.data(), block);
  EXPECT_EQ(Payload::pooled_blocks(), pooled);
}

TEST(Payload, EmptyHoldsNoBlockAndHugeOnesAreNotPooled) {
  const Payload empty(ByteSpan{});
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.data(), nullptr);
  EXPECT_EQ(Payload(), empty);
  const std::size_t pooled = Payload::pooled_blocks();
  { const Payload huge(bytes_of(2U << 20U, std::byte{3})); }
  EXPECT_EQ(Payload::pooled_blocks(), pooled);
}

TEST(Payload, AssignmentKeepsTheCountsRight) {
  Payload a(bytes_of(10, std::byte{1}));
  Payload b(bytes_of(20, std::byte{2}));
  a = b;  // a's old block goes back, b's is shared
  EXPECT_EQ(a.data(), b.data());
  const Payload& same = a;
  a = same;  // self-assignment must keep the block
  EXPECT_EQ(a.size(), 20U);
  b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): a moved-from payload is empty
  EXPECT_EQ(b.size(), 20U);
  EXPECT_EQ(b.to_vector(), bytes_of(20, std::byte{2}));
}

}  // namespace
}  // namespace cohort

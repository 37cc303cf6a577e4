#include <gtest/gtest.h>

#include "protocol/messages.h"

namespace cohort::protocol {
namespace {

TEST(Codec, PingRoundTrips) {
  std::vector<std::byte> buffer;
  append_frame(Ping{7, 99}, buffer);
  const auto scan = scan_frame(buffer);
  ASSERT_EQ(scan.status, FrameScan::Status::complete);
  auto ping = decode<Ping>(scan.frame);
  ASSERT_TRUE(ping);
  EXPECT_EQ(*ping, (Ping{7, 99}));
}

}  // namespace
}  // namespace cohort::protocol

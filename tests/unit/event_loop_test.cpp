// The event loop's idle strategies: whichever it is, run() runs posted tasks, timers and doorbells, and returns
// after stop(). (Only what the loop does differs: blocking in epoll, or polling.)

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "io/event_loop.h"

namespace cohort::io {
namespace {

using namespace std::chrono_literals;

class EventLoopIdle : public ::testing::TestWithParam<IdleStrategy> {};

TEST_P(EventLoopIdle, RunsTasksTimersAndDoorbellsAndStops) {
  EventLoop loop;
  std::atomic<int> ticks{0};
  std::atomic<int> rings{0};
  std::atomic<bool> posted{false};
  const auto timer = loop.every(1ms, [&] { ticks.fetch_add(1); });
  const auto bell = loop.doorbell([&] { rings.fetch_add(1); });
  loop.post([&] { posted = true; });
  std::thread runner([&] { loop.run(GetParam()); });
  bell->ring();  // from another thread, as the storage thread does
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((ticks.load() < 3 || rings.load() < 1 || !posted) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  loop.stop();
  runner.join();  // returns after stop(), whatever the strategy
  EXPECT_TRUE(posted);
  EXPECT_GE(ticks.load(), 3);
  EXPECT_GE(rings.load(), 1);
}

INSTANTIATE_TEST_SUITE_P(Strategies, EventLoopIdle,
                         ::testing::Values(IdleStrategy::block, IdleStrategy::yield, IdleStrategy::spin),
                         [](const auto& param_info) { return std::string(to_string(param_info.param)); });

TEST(IdleStrategy, NamesParseBack) {
  for (const IdleStrategy strategy : {IdleStrategy::block, IdleStrategy::yield, IdleStrategy::spin})
    EXPECT_EQ(parse_idle_strategy(to_string(strategy)), strategy);
  EXPECT_EQ(parse_idle_strategy("busy"), std::nullopt);
  EXPECT_EQ(parse_idle_strategy(""), std::nullopt);
}

}  // namespace
}  // namespace cohort::io

// The libraries' logging (include/cohort/log.h, src/io/logging.h): loggers that hand lines to a LogSink at a
// minimum level, the stderr and file sinks, and the promise that none of it touches spdlog's default logger.

#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cohort/log.h"
#include "fd_capture.h"
#include "io/logging.h"

namespace cohort::io {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Pair;

using Lines = std::vector<std::pair<LogLevel, std::string>>;

LogSink into(Lines& lines) {
  return [&lines](LogLevel level, std::string_view line) { lines.emplace_back(level, std::string(line)); };
}

TEST(Logging, LinesBelowTheMinimumAreDropped) {
  Lines lines;
  const auto logger = make_logger(into(lines), LogLevel::info, "node 2");
  logger->debug("not shown {}", 1);
  logger->trace("not shown either");
  logger->info("shown {}", 2);
  logger->warn("a warning");
  logger->error("an error");
  EXPECT_THAT(lines, ElementsAre(Pair(LogLevel::info, "[node 2] shown 2"), Pair(LogLevel::warn, "[node 2] a warning"),
                                 Pair(LogLevel::error, "[node 2] an error")));
}

TEST(Logging, DebugMinimumShowsTraceAsDebugAndCriticalIsAnError) {
  Lines lines;
  const auto logger = make_logger(into(lines), LogLevel::debug, "node 2");
  logger->trace("fine");
  logger->debug("detail");
  logger->critical("fatal");
  EXPECT_THAT(lines, ElementsAre(Pair(LogLevel::debug, "[node 2] fine"), Pair(LogLevel::debug, "[node 2] detail"),
                                 Pair(LogLevel::error, "[node 2] fatal")));
}

TEST(Logging, WarnMinimumDropsInfo) {
  Lines lines;
  const auto logger = make_logger(into(lines), LogLevel::warn);
  logger->info("dropped");
  logger->warn("kept");
  EXPECT_THAT(lines, ElementsAre(Pair(LogLevel::warn, "kept")));  // no tag: no prefix
}

TEST(Logging, OffAnEmptySinkAndTheSilentLoggerSayNothing) {
  Lines lines;
  make_logger(into(lines), LogLevel::off, "node 2")->error("dropped");
  EXPECT_TRUE(lines.empty());

  testing::FdCapture out(STDOUT_FILENO);
  testing::FdCapture err(STDERR_FILENO);
  ASSERT_TRUE(out.ok() && err.ok());
  make_logger(LogSink{}, LogLevel::debug, "node 2")->error("dropped");
  silent_logger()->error("dropped");
  EXPECT_EQ(out.finish(), "");
  EXPECT_EQ(err.finish(), "");
}

TEST(Logging, SpdlogsDefaultLoggerIsLeftAlone) {
  const auto before = spdlog::default_logger();
  const auto level = before->level();
  Lines lines;
  make_logger(into(lines), LogLevel::debug, "node 2")->info("x");
  EXPECT_EQ(spdlog::default_logger(), before);
  EXPECT_EQ(spdlog::default_logger()->level(), level);
  EXPECT_EQ(spdlog::get("node 2"), nullptr);  // not registered: two nodes may share a tag
}

TEST(Logging, AThrowingSinkDoesNotThrowIntoTheLibrary) {
  const auto logger =
      make_logger([](LogLevel, std::string_view) { throw std::runtime_error("sink broke"); }, LogLevel::info, "node 2");
  testing::FdCapture err(STDERR_FILENO);
  ASSERT_TRUE(err.ok());
  EXPECT_NO_THROW(logger->info("x"));
  EXPECT_NO_THROW(logger->warn("y"));
  EXPECT_THAT(err.finish(), HasSubstr("sink broke"));
}

TEST(Logging, LevelNamesAndParsing) {
  EXPECT_STREQ(to_string(LogLevel::debug), "debug");
  EXPECT_STREQ(to_string(LogLevel::info), "info");
  EXPECT_STREQ(to_string(LogLevel::warn), "warn");
  EXPECT_STREQ(to_string(LogLevel::error), "error");
  EXPECT_STREQ(to_string(LogLevel::off), "off");
  for (const LogLevel level : {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error, LogLevel::off})
    EXPECT_EQ(parse_log_level(to_string(level)), level);
  EXPECT_EQ(parse_log_level("trace"), LogLevel::debug);
  EXPECT_EQ(parse_log_level("warning"), std::nullopt);
  EXPECT_EQ(parse_log_level(""), std::nullopt);
}

// "2026-11-25T19:30:10.928419 [tag] info: line": the layout tools read time stamps from.
constexpr const char* kStamp = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{6}";

TEST(Logging, StderrSinkWritesStampTagLevelAndLine) {
  testing::FdCapture out(STDOUT_FILENO);
  testing::FdCapture err(STDERR_FILENO);
  ASSERT_TRUE(out.ok() && err.ok());
  stderr_log_sink("my-app")(LogLevel::warn, "disk nearly full");
  stderr_log_sink()(LogLevel::info, "[node 3] started");
  const std::string written = err.finish();
  EXPECT_EQ(out.finish(), "");
  EXPECT_THAT(written, MatchesRegex(std::string(kStamp) + " \\[my-app\\] warn: disk nearly full\n" + kStamp +
                                    " info: \\[node 3\\] started\n"));
}

class TempPath {
 public:
  TempPath() {
    std::random_device random;
    path_ = std::filesystem::temp_directory_path() /
            ("cohort-logging-test-" + std::to_string(random()) + "-" + std::to_string(random()) + ".log");
  }
  ~TempPath() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  TempPath(const TempPath&) = delete;
  TempPath& operator=(const TempPath&) = delete;
  std::string string() const { return path_.string(); }
  std::string content() const {
    std::ifstream in(path_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

 private:
  std::filesystem::path path_;
};

TEST(Logging, FileSinkAppendsEachLineAtOnce) {
  TempPath path;
  {
    std::ofstream existing(path.string());
    existing << "from before\n";
  }
  std::string error;
  const LogSink sink = file_log_sink(path.string(), "node 1", error);
  ASSERT_TRUE(sink) << error;
  EXPECT_EQ(error, "");
  sink(LogLevel::error, "first");
  // Flushed per line: readable while the sink is still open, as after a crash.
  EXPECT_THAT(path.content(), MatchesRegex(std::string("from before\n") + kStamp + " \\[node 1\\] error: first\n"));
  const LogSink copy = sink;  // copies share the one open file
  copy(LogLevel::debug, "second");
  EXPECT_THAT(path.content(), MatchesRegex(std::string("from before\n") + kStamp + " \\[node 1\\] error: first\n" +
                                           kStamp + " \\[node 1\\] debug: second\n"));
}

TEST(Logging, FileSinkThatCannotOpenSaysWhy) {
  const std::string path =
      (std::filesystem::temp_directory_path() / "cohort-logging-test-no-such-dir" / "x.log").string();
  std::string error;
  const LogSink sink = file_log_sink(path, {}, error);
  EXPECT_FALSE(sink);
  EXPECT_EQ(error, "cannot open " + path + ": No such file or directory");
}

}  // namespace
}  // namespace cohort::io

#include "io/logging.h"

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <mutex>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>

namespace cohort {

const char* to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
    case LogLevel::off: return "off";
  }
  return "unknown";
}

namespace {

// "2026-11-25T19:30:10.928419 [tag] info: line\n", local time: the layout cohortd has always written, which tools
// (bench/restart_bench.cpp) read the time stamp from.
void format_line(fmt::memory_buffer& out, std::string_view tag, LogLevel level, std::string_view line) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now - std::chrono::system_clock::from_time_t(seconds));
  std::tm local{};
  ::localtime_r(&seconds, &local);
  std::array<char, 32> stamp{};
  const std::size_t length = std::strftime(stamp.data(), stamp.size(), "%Y-%m-%dT%H:%M:%S", &local);
  fmt::format_to(std::back_inserter(out), "{}.{:06}", std::string_view(stamp.data(), length), micros.count());
  if (!tag.empty()) fmt::format_to(std::back_inserter(out), " [{}]", tag);
  fmt::format_to(std::back_inserter(out), " {}: {}\n", to_string(level), line);
}

struct StderrSink {
  std::string tag;
  void operator()(LogLevel level, std::string_view line) const {
    fmt::memory_buffer out;
    format_line(out, tag, level, line);
    // One call per line: stdio locks the stream for it, so lines from several threads never interleave.
    std::fwrite(out.data(), 1, out.size(), stderr);
  }
};

struct FileSink {
  struct Open {
    std::mutex mutex;
    std::FILE* file = nullptr;
    ~Open() {
      if (file != nullptr) std::fclose(file);
    }
  };
  std::shared_ptr<Open> open;  // shared by every copy of the sink
  std::string tag;
  void operator()(LogLevel level, std::string_view line) const {
    fmt::memory_buffer out;
    format_line(out, tag, level, line);
    const std::lock_guard lock(open->mutex);
    std::fwrite(out.data(), 1, out.size(), open->file);
    std::fflush(open->file);
  }
};

LogLevel from_spdlog(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug: return LogLevel::debug;
    case spdlog::level::info: return LogLevel::info;
    case spdlog::level::warn: return LogLevel::warn;
    case spdlog::level::err:
    case spdlog::level::critical: return LogLevel::error;
    default: return LogLevel::off;
  }
}

spdlog::level::level_enum to_spdlog(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return spdlog::level::trace;  // trace lines arrive as debug, so they pass a debug minimum
    case LogLevel::info: return spdlog::level::info;
    case LogLevel::warn: return spdlog::level::warn;
    case LogLevel::error: return spdlog::level::err;
    case LogLevel::off: return spdlog::level::off;
  }
  return spdlog::level::off;
}

// spdlog's sink that forwards to a LogSink. spdlog has formatted the message (only if its level passed); the line
// handed on is assembled in a buffer kept across lines, so steady logging does not allocate here.
class CallbackSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  CallbackSink(LogSink target, std::string_view tag)
      : sink_(std::move(target)), prefix_(tag.empty() ? std::string() : fmt::format("[{}] ", tag)) {}

 private:
  void sink_it_(const spdlog::details::log_msg& message) override {
    line_.assign(prefix_);
    line_.append(message.payload.data(), message.payload.size());
    // A throwing sink must not take down the thread that logged (spdlog rethrows what is not a std::exception).
    try {
      sink_(from_spdlog(message.level), line_);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "cohort: the log sink threw: %s\n", error.what());
    } catch (...) {
      std::fputs("cohort: the log sink threw\n", stderr);
    }
  }
  void flush_() override {}

  LogSink sink_;
  std::string prefix_;
  std::string line_;
};

}  // namespace

LogSink stderr_log_sink(std::string tag) { return StderrSink{std::move(tag)}; }

LogSink file_log_sink(const std::string& path, std::string tag, std::string& error) {
  auto open = std::make_shared<FileSink::Open>();
  open->file = std::fopen(path.c_str(), "ae");  // append, close-on-exec
  if (open->file == nullptr) {
    error = fmt::format("cannot open {}: {}", path, std::error_code(errno, std::generic_category()).message());
    return {};
  }
  return FileSink{std::move(open), std::move(tag)};
}

namespace io {

std::shared_ptr<spdlog::logger> make_logger(LogSink sink, LogLevel min, std::string_view tag) {
  if (!sink || min == LogLevel::off) return silent_logger();
  auto logger = std::make_shared<spdlog::logger>(tag.empty() ? std::string("cohort") : std::string(tag),
                                                 std::make_shared<CallbackSink>(std::move(sink), tag));
  logger->set_level(to_spdlog(min));
  return logger;
}

std::shared_ptr<spdlog::logger> silent_logger() {
  auto logger = std::make_shared<spdlog::logger>("cohort");  // no sink at all
  logger->set_level(spdlog::level::off);
  return logger;
}

std::optional<LogLevel> parse_log_level(std::string_view text) {
  if (text == "trace" || text == "debug") return LogLevel::debug;
  if (text == "info") return LogLevel::info;
  if (text == "warn") return LogLevel::warn;
  if (text == "error") return LogLevel::error;
  if (text == "off") return LogLevel::off;
  return std::nullopt;
}

}  // namespace io

}  // namespace cohort

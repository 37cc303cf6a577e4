#pragma once
// Where Cohort's diagnostic lines go. The libraries never write to stdout (it belongs to the application) and never
// use a process-wide logger: each node, and each client, hands its lines to the LogSink its options name.
//
//   cohort::NodeOptions options;
//   options.log = [](cohort::LogLevel level, std::string_view line) { my_logger.write(level, line); };
//   options.log_level = cohort::LogLevel::warn;

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace cohort {

/// Ordered: a sink given a minimum level receives that level and the ones after it. `off` as a minimum: nothing.
enum class LogLevel : std::uint8_t { debug, info, warn, error, off };

/// "debug", "info", "warn", "error", "off".
const char* to_string(LogLevel level) noexcept;

/// Receives the library's diagnostic lines, one call per line, without a trailing newline. A node's lines start with
/// its tag ("[node 2] ..."). Called on the library's own thread (the node's event loop, the client's I/O thread):
/// it must not block for long, and should not throw (an exception is caught and noted on stderr). One sink shared
/// by several nodes or clients of a process is called from each one's thread, so it must then be thread-safe.
using LogSink = std::function<void(LogLevel level, std::string_view line)>;

/// A sink that writes each line to stderr as "TIMESTAMP [TAG] LEVEL: LINE" (local time, microseconds; the "[TAG] "
/// only with a non-empty `tag`, e.g. "my-app"). Thread-safe: lines from several threads never interleave.
LogSink stderr_log_sink(std::string tag = {});

/// A sink that appends each line, formatted as stderr_log_sink() does, to the file at `path` (created if missing).
/// The file is opened here, once, and each line is flushed as it is written, so a crash loses no line. Thread-safe.
/// If the file cannot be opened: an empty LogSink, and `error` says why (e.g. "cannot open /var/log/cohort.log:
/// Permission denied").
LogSink file_log_sink(const std::string& path, std::string tag, std::string& error);

}  // namespace cohort

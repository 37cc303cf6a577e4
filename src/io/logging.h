#pragma once
// The libraries' loggers: an spdlog logger per node (or client, or tool) that hands its lines to the LogSink the
// application chose (include/cohort/log.h). None is registered with spdlog or made its default, so an application's
// own spdlog setup and Cohort's never touch each other, and two nodes in one process log to two places.
//
// Only lines at the logger's level or above are formatted at all: a debug line on a node logging at info costs one
// comparison.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cohort/log.h"

namespace spdlog {
class logger;
}

namespace cohort::io {

/// Hands each line at `min` or above to `sink` as "[TAG] MESSAGE" (just MESSAGE for an empty `tag`). spdlog's levels
/// map onto LogLevel: trace to debug, critical to error. An empty `sink`, or `min` off: a silent logger.
std::shared_ptr<spdlog::logger> make_logger(LogSink sink, LogLevel min, std::string_view tag = {});

/// Formats nothing and writes nothing: what a component given no logger uses.
std::shared_ptr<spdlog::logger> silent_logger();

/// "trace" (taken as debug: no line of Cohort's is finer), "debug", "info", "warn", "error", "off"; nullopt for any
/// other text.
std::optional<LogLevel> parse_log_level(std::string_view text);

}  // namespace cohort::io

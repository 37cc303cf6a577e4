#pragma once
// Process-wide logging setup: spdlog to stderr (stdout stays free for a tool's own output), one line per
// event, with the process's identity (e.g. "node 2") in every line.

#include <string_view>

namespace cohort::io {

/// `level` is one of trace, debug, info, warn, error, off. Returns false (and changes nothing) for another.
bool init_logging(std::string_view identity, std::string_view level);

}  // namespace cohort::io

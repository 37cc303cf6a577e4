#pragma once
// `cohort log inspect DATA_DIR`: decodes a node's data directory offline, for post-mortems (storage/inspect.h does
// the reading): identity, term and vote, base, machine boot record, every segment and snapshot, what a start would
// do, and every problem named with its file, byte offset and record index. It opens the directory read-only and
// changes nothing in it, not even access times where the kernel allows, so it serves on a running node's directory
// too (it says so, and what changes under it is reported as found).
//
// Exit status: 0 nothing damaged (a torn tail that recovery cuts, leftovers of updates cut short and unknown files
// are reported, and are no damage); 1 damage found, a file that cannot be read, or no data directory to read;
// 2 bad arguments.

#include <cstdint>
#include <limits>
#include <string>

namespace CLI {
class App;
}  // namespace CLI

namespace cohort::tool {

struct LogInspectOptions {
  std::string dir;
  bool json = false;
  bool entries = false;  // list every entry in [from, to]; --from and --to imply it
  std::uint64_t from = 1;
  std::uint64_t to = std::numeric_limits<std::uint64_t>::max();
};

/// Adds `inspect` and its options to `log` (the `cohort log` subcommand); they land in `options`.
CLI::App* add_log_inspect(CLI::App& log, LogInspectOptions& options);

/// Prints the inspection (text, or one JSON document on stdout) and returns the exit status.
int run_log_inspect(const LogInspectOptions& options);

}  // namespace cohort::tool

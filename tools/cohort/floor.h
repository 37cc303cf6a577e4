#pragma once
// This machine's floor: what the hardware and the kernel allow before Cohort adds anything, measured in the same
// run as the figures it is held against (issue 16). Three references, and a minimal replicator:
//   - a TCP round trip between two processes over loopback (blocking reads, TCP_NODELAY);
//   - an appended write + fdatasync on the data directory's disk;
//   - a minimal leader-to-two-followers replicator (three processes, loopback TCP, one frame per message,
//     committed when both followers acknowledged it), its commit latency and its throughput.
// `cohort floor` prints it; `cohort bench` prints each of its figures beside it.
//
// The calling process is the replicator's leader and the client of the round trip; the followers and the echo
// peer are forked children (no exec) that use only system calls and _exit. So measure_floor must run before the
// calling process starts any thread: fork copies only the calling thread, and a lock another thread held at that
// moment would stay held in the child forever.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace cohort::tool {

struct FloorOptions {
  std::size_t message_size = 64;  // bytes per frame
  bool fsync = false;             // the replicator's processes fdatasync their file before acknowledging
  std::filesystem::path dir;  // where the replicator's and the fdatasync probe's files go (the data directory's disk);
                              // created if missing; files removed at the end
  double rate = 0;            // latency part: messages per second, open loop (latency from each message's intended send
                              // time); 0: one at a time, back to back
  double seconds = 2;         // length of each timed part (after a short warm-up of its own)
  std::size_t window = 256;   // throughput part: messages in flight (and the most the latency part lets be in flight
                              // if `rate` outruns the replicator; the latencies still count from intended times)
};

struct LatencyFigures {
  double p50_us = 0, p90_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
  std::uint64_t count = 0;
};

struct FloorFigures {
  LatencyFigures tcp_round_trip;  // 64 B ping-pong between two processes over loopback TCP (TCP_NODELAY), blocking
                                  // reads (64 B whatever message_size is)
  LatencyFigures fdatasync;       // write message_size bytes appended to a file in `dir` + fdatasync, one at a time
  LatencyFigures replicator;      // the minimal replicator's commit latency, with options.fsync, paced at options.rate
  double replicator_messages_per_s = 0;  // the minimal replicator's throughput with `window` in flight, with
                                         // options.fsync
};

/// Measures the floor: the round trip, then fdatasync, then the replicator's latency, then its throughput, each for
/// options.seconds after a warm-up. Forks helper processes: call it before the calling process starts any thread.
/// Throws std::runtime_error with a clear message on failure (dir not writable, a helper process failed, ...);
/// every helper process is killed and reaped, and every file removed, on success and on failure.
FloorFigures measure_floor(const FloorOptions& options);

/// Latency figures as a JSON object: {"p50":..,"p90":..,"p99":..,"p99_9":..,"max":.. (microseconds),"count":..}.
std::string latency_json(const LatencyFigures& figures);
/// The figures as a readable table (with the options they were measured with), lines ending in '\n'.
std::string floor_table(const FloorOptions& options, const FloorFigures& figures);
/// The options and the figures as one JSON object (no newline at the end).
std::string floor_json(const FloorOptions& options, const FloorFigures& figures);

/// `cohort floor`: measures and prints the floor (as JSON with `json`). An empty options.dir means a fresh directory
/// under the temp directory, removed afterwards. Returns the exit status: 0 measured, 1 failed (the reason on
/// stderr).
int run_floor(FloorOptions options, bool json);

}  // namespace cohort::tool

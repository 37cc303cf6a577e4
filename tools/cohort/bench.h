#pragma once
// `cohort bench`: drives a cluster running the echo service through the real client and prints what it costs,
// beside this machine's floor measured in the same run (floor.h). docs/benchmarks.md shows its output and the
// commands behind every figure there.
//   latency     open loop at --rate: every latency counts from the message's intended send time, so a stall is
//               charged to every message behind it (no coordinated omission); --rate 0 sends one at a time
//   throughput  --window messages in flight per client
//   --failover  kills the leader with SIGKILL under load, round after round: the client's outage, the time to a
//               new leader
//   --sweep     throughput and latency over client counts, message sizes and both sync policies: a Markdown
//               table and SVG charts

#include <cstdint>
#include <string>
#include <vector>

namespace cohort::tool {

struct BenchOptions {
  int nodes = 3;                     // a local cluster of this many cohortd processes (echo service)
  std::vector<std::string> members;  // instead: a running cluster's client endpoints (it must run `echo`)
  std::uint64_t cluster_id = 7;
  std::string cohortd;  // empty: find_cohortd()
  std::string dir;      // the local cluster's directory (empty: a fresh one under the temp dir)
  bool keep = false;    // leave the local cluster's directory behind
  int clients = 1;
  std::size_t size = 64;       // bytes per message
  std::string sync = "fsync";  // the local cluster's policy: fsync or none
  std::string mode = "both";   // latency, throughput or both
  std::string idle = "block";  // the nodes' and the clients' idle strategy: block, yield or spin
  double rate = 1000;          // latency mode: messages per second over all clients; 0: one at a time
  std::size_t window = 256;    // throughput mode: messages in flight per client
  double duration_s = 5;       // each mode's measured time
  double warmup_s = 1;         // before each mode's measured time, unmeasured
  bool floor = true;           // measure the machine's floor too
  bool json = false;           // one JSON object on stdout, nothing else there
  std::string plot;            // an SVG file: the latency distribution beside the floor's
  bool failover = false;
  int rounds = 5;  // failover rounds
  bool sweep = false;
  std::string output;  // sweep: the Markdown file to write (replaces its marked section if it has one)
};

/// Runs the benchmark; returns the exit status: 0 done and every message answered, 1 failed, 2 bad options.
int run_bench(const BenchOptions& options);

}  // namespace cohort::tool

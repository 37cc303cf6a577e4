// cohort: the operator's command-line tool.
//   cohort snapshot   asks nodes to take a snapshot now
//   cohort stream     sends a numbered stream through the client to a cluster running the ledger service, shows
//                     what the client goes through, and checks every message against the ledger (stream.h)
//   cohort floor      measures this machine's floor: a loopback TCP round trip, fdatasync on a directory's disk,
//                     and a minimal 3-process replicator's commit latency and throughput (floor.h)
// (The operations issue adds the other admin commands; `cohort-kv status` shows a cluster today.)
// Exit status: 0 done (stream: nothing lost, duplicated or unknown); 1 a node could not do it (unreachable, refused,
// failed), the stream found a problem, or the floor could not be measured; 2 bad arguments.

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <cohort/admin.h>
#include <cohort/version.h>
#include <CLI/CLI.hpp>

#include "cohort/floor.h"
#include "cohort/stream.h"

namespace {

constexpr int kBadArguments = 2;

int run_snapshot(const std::vector<std::string>& nodes, std::uint64_t cluster_id, int timeout_ms) {
  const std::chrono::milliseconds timeout(timeout_ms);
  int exit_code = 0;
  for (const std::string& node : nodes) {
    const cohort::SnapshotResult result = cohort::request_snapshot(node, cluster_id, timeout);
    if (result.ok) {
      std::printf("%s: snapshot at index %llu (term %llu), %llu bytes\n", node.c_str(),
                  static_cast<unsigned long long>(result.index), static_cast<unsigned long long>(result.term),
                  static_cast<unsigned long long>(result.size));
    } else {
      std::fprintf(stderr, "%s: %s\n", node.c_str(), result.error.c_str());
      exit_code = 1;
    }
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cohort: operate a Cohort cluster"};
  app.set_version_flag("--version", cohort::kVersionString);
  app.require_subcommand(1);

  std::uint64_t cluster_id = 1;
  int timeout_ms = 60000;
  std::vector<std::string> nodes;
  CLI::App* snapshot =
      app.add_subcommand("snapshot", "take a snapshot now on each node given, and wait until it is written");
  snapshot->add_option("nodes", nodes, "client endpoints of the nodes, host:port")->required();
  snapshot->add_option("--cluster-id", cluster_id, "the cluster's id");
  snapshot->add_option("--timeout-ms", timeout_ms, "give up on a node after this long")->check(CLI::Range(1, 3600000));

  cohort::tool::StreamOptions stream_options;
  CLI::App* stream = app.add_subcommand(
      "stream",
      "send a numbered stream through the client to a cluster running the ledger service (cohortd --service "
      "ledger), show the client's states as they change, and check every message against the ledger at the end. "
      "Exit status: 0 if nothing was lost, duplicated or left unknown; 1 otherwise; 2 for bad arguments");
  stream->add_option("--members", stream_options.members, "the members' client endpoints, HOST:PORT,...")
      ->required()
      ->delimiter(',');
  stream->add_option("--cluster-id", stream_options.cluster_id, "the cluster's id")->required();
  stream->add_option("--rate", stream_options.rate, "messages per second; 0: as fast as the client's buffer allows")
      ->check(CLI::Range(0.0, 10'000'000.0))
      ->capture_default_str();
  stream->add_option("--count", stream_options.count, "stop after this many messages (default: no limit)")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1} << 40U));
  stream
      ->add_option("--duration", stream_options.duration_s,
                   "stop sending after this many seconds (without --count or --duration: until Ctrl-C)")
      ->check(CLI::Range(0.001, 1e7));
  stream
      ->add_option("--drain", stream_options.drain_s,
                   "after the last message, wait this many seconds for every fate and for the ledger's answer")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  stream
      ->add_option("--give-up-after", stream_options.give_up_after_s,
                   "the client closes after this many seconds without a connection (default: it never gives up)")
      ->check(CLI::Range(0.001, 1e6));
  stream->add_flag("--json", stream_options.json, "print the summary as one JSON object on stdout, nothing else");
  stream->add_flag("-v,--verbose", stream_options.verbose, "also print the client library's own log lines");

  cohort::tool::FloorOptions floor_options;
  std::string floor_sync = "none";
  std::string floor_dir;
  bool floor_json = false;
  CLI::App* floor = app.add_subcommand(
      "floor",
      "measure this machine's floor: a 64 B loopback TCP round trip, an appended write + fdatasync in --dir, and a "
      "minimal leader-to-two-followers replicator (3 processes, loopback TCP), its commit latency and throughput. "
      "Exit status: 0 measured; 1 failed; 2 for bad arguments");
  floor->add_option("--size", floor_options.message_size, "bytes per message")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 24U))
      ->capture_default_str();
  floor
      ->add_option("--sync", floor_sync,
                   "fsync: the replicator's processes fdatasync their file before acknowledging; none: they do not")
      ->check(CLI::IsMember({"fsync", "none"}))
      ->capture_default_str();
  floor->add_option("--dir", floor_dir,
                    "directory for the replicator's and the fdatasync probe's files, on the disk to measure "
                    "(default: a fresh directory under the temp directory, removed afterwards)");
  floor
      ->add_option("--rate", floor_options.rate,
                   "latency part: messages per second, open loop (from each message's intended send time); 0: one "
                   "at a time")
      ->check(CLI::Range(0.0, 10'000'000.0))
      ->capture_default_str();
  floor->add_option("--duration", floor_options.seconds, "seconds for each timed part (after its own warm-up)")
      ->check(CLI::Range(0.01, 3600.0))
      ->capture_default_str();
  floor->add_option("--window", floor_options.window, "throughput part: messages in flight")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20U))
      ->capture_default_str();
  floor->add_flag("--json", floor_json, "print the options and figures as one JSON object on stdout, nothing else");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : kBadArguments;  // --help and --version are not errors
  }
  if (*snapshot) return run_snapshot(nodes, cluster_id, timeout_ms);
  if (*floor) {
    floor_options.fsync = floor_sync == "fsync";
    floor_options.dir = floor_dir;
    return cohort::tool::run_floor(floor_options, floor_json);
  }
  return cohort::tool::run_stream(stream_options);
}

// cohort: the operator's command-line tool.
//   cohort snapshot   asks nodes to take a snapshot now
//   cohort stream     sends a numbered stream through the client to a cluster running the ledger service, shows
//                     what the client goes through, and checks every message against the ledger (stream.h)
// (The operations issue adds the other admin commands; `cohort-kv status` shows a cluster today.)
// Exit status: 0 done (stream: nothing lost, duplicated or unknown); 1 a node could not do it (unreachable, refused,
// failed), or the stream found a problem; 2 bad arguments.

#include <cstdio>
#include <string>
#include <vector>

#include <cohort/admin.h>
#include <cohort/version.h>
#include <CLI/CLI.hpp>

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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : kBadArguments;  // --help and --version are not errors
  }
  if (*snapshot) return run_snapshot(nodes, cluster_id, timeout_ms);
  return cohort::tool::run_stream(stream_options);
}

// cohort: the operator's command-line tool. `cohort snapshot` asks nodes to take a snapshot now. (The operations
// issue adds the other admin commands; `cohort-kv status` shows a cluster today.)
// Exit status: 0 done; 1 a node could not do it (unreachable, refused, failed); 2 bad arguments.

#include <cstdio>
#include <string>
#include <vector>

#include <cohort/admin.h>
#include <cohort/version.h>
#include <CLI/CLI.hpp>

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

  CLI11_PARSE(app, argc, argv);
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

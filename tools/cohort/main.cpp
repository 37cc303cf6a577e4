// cohort: the operator's command-line tool.
//   cohort status, leader, members          how the nodes see the cluster (admin_commands.h)
//   cohort snapshot, transfer-leadership, shutdown   change a node or the cluster, through its admin endpoint
//   cohort config     writes a local cluster's configuration files (config_gen.h)
//   cohort stream     sends a numbered stream through the client to a cluster running the ledger service, shows
//                     what the client goes through, and checks every message against the ledger (stream.h)
//   cohort floor      measures this machine's floor: a loopback TCP round trip, fdatasync on a directory's disk,
//                     and a minimal 3-process replicator's commit latency and throughput (floor.h)
//   cohort bench      drives a cluster running the echo service (one it starts, or a running one) through the
//                     client: latency, throughput, failover, sweeps, beside this machine's floor (bench.h)
//   cohort log inspect  decodes a node's data directory offline and names any damage: exit status 1 if it finds
//                     some (log_inspect.h)
// Exit status: 0 done (stream: nothing lost, duplicated or unknown); 1 a node could not do it (unreachable, refused,
// failed), the stream found a problem, the floor could not be measured, or the bench failed or saw a message not
// applied; 2 bad arguments. docs/operations.md has the table.

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <cohort/admin.h>
#include <cohort/version.h>
#include <CLI/CLI.hpp>

#include "cohort/admin_commands.h"
#include "cohort/bench.h"
#include "cohort/config_gen.h"
#include "cohort/floor.h"
#include "cohort/log_inspect.h"
#include "cohort/stream.h"
#include "cohortd/config.h"

namespace {

constexpr int kBadArguments = 2;

// The options every admin command takes: which nodes, which cluster, how long to wait.
void add_cluster_options(CLI::App& command, cohort::tool::AdminOptions& options) {
  command.add_option("--config", options.config,
                     "a node's cohortd configuration file: every member's client and admin endpoint, the cluster id");
  command.add_option("--members", options.members, "client endpoints HOST:PORT,... (node ids learned from them)")
      ->delimiter(',');
  command.add_option("--admin", options.admin, "admin endpoints HOST:PORT,... (node ids learned from them)")
      ->delimiter(',');
  command.add_option("--cluster-id", options.cluster_id, "the cluster's id (default: the --config file's)");
  command.add_option("--timeout-ms", options.timeout, "give up on a node after this long (default: per command)")
      ->check(CLI::Range(1, 3600000));
}

void add_node_choice(CLI::App& command, cohort::tool::AdminOptions& options) {
  auto* node = command.add_option("--node", options.node, "this node only")->check(CLI::Range(1U, 0xFFFFFFFFU));
  auto* all = command.add_flag("--all", options.all, "every node given");
  node->excludes(all);
  all->excludes(node);
  command.add_option("--credential-file", options.credential_file,
                     "send the command to the client endpoint with this file's first credential (the nodes' "
                     "credentials_file format), instead of to the admin endpoint");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cohort: operate a Cohort cluster"};
  app.set_version_flag("--version", cohort::kVersionString);
  app.require_subcommand(1);

  cohort::tool::AdminOptions admin_options;
  const auto admin_command = [&](const char* name, const char* help) {
    CLI::App* command = app.add_subcommand(name, help);
    add_cluster_options(*command, admin_options);
    return command;
  };
  CLI::App* status = admin_command(
      "status",
      "each node's role, term, leader, commit/applied/last positions, newest snapshot, sessions, uptime and standing "
      "(unreachable ones named). Exit status: 0 every node answered; 1 some did not; 2 bad arguments");
  status->add_flag("--json", admin_options.json, "one JSON document on stdout");
  status->add_flag("--state-hash", admin_options.state_hash,
                   "have each node compute its state hash, to compare replicas (it serializes the node's whole state)");
  CLI::App* leader = admin_command("leader", "which node leads. Exit status: 0 a reachable node leads; 1 none does");
  leader->add_flag("--json", admin_options.json, "one JSON document on stdout");
  CLI::App* members = admin_command(
      "members",
      "every node's endpoints and the member list each holds. Exit status: 0 they agree; 1 they do not, or "
      "no node answered");
  members->add_flag("--json", admin_options.json, "one JSON document on stdout");
  CLI::App* snapshot =
      admin_command("snapshot",
                    "take a snapshot now on --node N or --all, and wait until it is written. Exit status: 0 written; 1 "
                    "not (each node's reason printed)");
  add_node_choice(*snapshot, admin_options);
  CLI::App* transfer = admin_command(
      "transfer-leadership",
      "have the leader hand leadership to --to N, and wait until N leads. Exit status: 0 N leads; 1 it does not");
  transfer->add_option("--to", admin_options.to, "the node to lead")->required()->check(CLI::Range(1U, 0xFFFFFFFFU));
  transfer->add_option("--credential-file", admin_options.credential_file,
                       "send the command to the leader's client endpoint with this file's first credential");
  CLI::App* shutdown = admin_command(
      "shutdown",
      "stop --node N or --all gracefully (the leader last; a leader hands over first) and wait until each "
      "has exited. Exit status: 0 stopped; 1 not every one");
  add_node_choice(*shutdown, admin_options);

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
  std::string stream_credential_file;
  stream->add_option("--credential-file", stream_credential_file,
                     "present the first credential in FILE (the nodes' credentials_file format)");

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
  cohort::tool::BenchOptions bench_options;
  CLI::App* bench = app.add_subcommand(
      "bench",
      "measure a cluster running the echo service through the client, beside this machine's floor (a TCP round "
      "trip, fdatasync and a minimal 3-process replicator, measured in the same run). By default it starts a local "
      "cluster of cohortd processes. Exit status: 0 if every message was applied; 1 otherwise or on failure");
  // Durations take a unit: 10s, 500ms, 2m (a bare number is seconds).
  const auto seconds = CLI::AsNumberWithUnit(std::map<std::string, double>{{"ms", 0.001}, {"s", 1}, {"m", 60}},
                                             CLI::AsNumberWithUnit::CASE_SENSITIVE);
  bench->add_option("--nodes", bench_options.nodes, "start a local cluster of this many nodes")
      ->check(CLI::IsMember({1, 3, 5}))
      ->capture_default_str();
  bench->add_option("--members", bench_options.members, "instead, a running cluster's client endpoints HOST:PORT,...")
      ->delimiter(',')
      ->excludes("--nodes");
  bench->add_option("--cluster-id", bench_options.cluster_id, "the cluster's id")->capture_default_str();
  bench->add_option("--cohortd", bench_options.cohortd, "the cohortd binary (default: next to cohort, else on PATH)");
  bench->add_option("--dir", bench_options.dir, "the local cluster's directory (default: a fresh one, removed after)");
  bench->add_flag("--keep", bench_options.keep, "leave the local cluster's directory (data, logs) behind");
  bench->add_option("--clients", bench_options.clients, "clients, each with its own session")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  bench->add_option("--size", bench_options.size, "bytes per message")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20U))
      ->capture_default_str();
  bench->add_option("--sync", bench_options.sync, "the local cluster's sync policy")
      ->check(CLI::IsMember({"fsync", "none"}))
      ->capture_default_str();
  bench->add_option("--mode", bench_options.mode, "latency, throughput or both")
      ->check(CLI::IsMember({"latency", "throughput", "both"}))
      ->capture_default_str();
  bench
      ->add_option("--idle", bench_options.idle,
                   "the nodes' and the clients' idle strategy: block (sleep), yield or spin (poll, a CPU kept busy)")
      ->check(CLI::IsMember({"block", "yield", "spin"}))
      ->capture_default_str();
  bench
      ->add_option("--rate", bench_options.rate,
                   "latency mode: messages per second over all clients, open loop; 0: one at a time per client")
      ->check(CLI::Range(0.0, 10'000'000.0))
      ->capture_default_str();
  bench->add_option("--window", bench_options.window, "throughput mode: messages in flight per client")
      ->check(CLI::Range(std::size_t{1}, std::size_t{8192}))
      ->capture_default_str();
  bench->add_option("--duration", bench_options.duration_s, "each mode's measured time, e.g. 10s")
      ->transform(seconds)
      ->check(CLI::Range(0.01, 86400.0))
      ->capture_default_str();
  bench->add_option("--warmup", bench_options.warmup_s, "unmeasured time before each mode's")
      ->transform(seconds)
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  bench->add_flag("!--no-floor", bench_options.floor, "skip measuring this machine's floor");
  bench->add_flag("--json", bench_options.json, "print one JSON object on stdout, nothing else there");
  bench->add_option("--plot", bench_options.plot, "write the latency distribution, beside the floor's, to FILE.svg");
  bench->add_flag("--failover", bench_options.failover, "kill the leader under load, round after round");
  bench->add_option("--rounds", bench_options.rounds, "--failover: rounds")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  bench->add_flag("--sweep", bench_options.sweep,
                  "throughput over 1-256 clients, 64 B-16 KiB messages and both sync policies, into --output");
  bench->add_option("--output", bench_options.output,
                    "--sweep: the Markdown file for its table (its marked section is replaced if it has one); "
                    "charts go to bench/ beside it");

  cohort::tool::ConfigGenOptions config_options;
  CLI::App* config = app.add_subcommand(
      "config",
      "write the configuration files of a local cluster, nodeN.toml for each node (node N: peer port BASE+N, client "
      "port BASE+100+N, admin endpoint 127.0.0.1:BASE+200+N, data directory DATA_ROOT/nN). Exit status: 0 written; 1 a "
      "file exists (without --force) or "
      "cannot be written; 2 for bad arguments");
  config->add_option("--nodes", config_options.nodes, "members")->check(CLI::Range(1, 64))->capture_default_str();
  config
      ->add_option("--base-port", config_options.base_port,
                   "node N listens on BASE+N (peers), BASE+100+N (clients) and BASE+200+N (admin)")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  config->add_option("--host", config_options.host, "every endpoint's host (an address or a name)")
      ->capture_default_str();
  config->add_option("--cluster-id", config_options.cluster_id, "the cluster's id")
      ->check(CLI::Range(std::uint64_t{1}, ~std::uint64_t{0}))
      ->capture_default_str();
  config->add_option("--data-root", config_options.data_root, "node N's data directory is DATA_ROOT/nN")
      ->capture_default_str();
  config->add_option("--service", config_options.service, "the replicated service")
      ->check(CLI::IsMember({"kv", "counter", "echo", "ledger"}))
      ->capture_default_str();
  config->add_option("--sync", config_options.sync, "fsync or none")
      ->check(CLI::IsMember({"fsync", "none"}))
      ->capture_default_str();
  config->add_option("--output", config_options.output, "the directory the files go to")->capture_default_str();
  config->add_flag("--force", config_options.force, "overwrite files that exist");

  cohort::tool::LogInspectOptions inspect_options;
  CLI::App* log_command = app.add_subcommand("log", "read a node's data directory offline");
  log_command->require_subcommand(1);
  cohort::tool::add_log_inspect(*log_command, inspect_options);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : kBadArguments;  // --help and --version are not errors
  }
  if (*status) return cohort::tool::run_status(admin_options);
  if (*leader) return cohort::tool::run_leader(admin_options);
  if (*members) return cohort::tool::run_members(admin_options);
  if ((*snapshot || *shutdown) && admin_options.node == 0 && !admin_options.all) {
    std::fprintf(stderr, "cohort %s: say which nodes: --node N or --all\n", *snapshot ? "snapshot" : "shutdown");
    return kBadArguments;
  }
  if (*snapshot) return cohort::tool::run_snapshot(admin_options);
  if (*transfer) return cohort::tool::run_transfer_leadership(admin_options);
  if (*shutdown) return cohort::tool::run_shutdown(admin_options);
  if (*floor) {
    floor_options.fsync = floor_sync == "fsync";
    floor_options.dir = floor_dir;
    return cohort::tool::run_floor(floor_options, floor_json);
  }
  if (*bench) return cohort::tool::run_bench(bench_options);
  if (*stream && !stream_credential_file.empty()) {
    auto credentials = cohortd::read_credentials(stream_credential_file);
    if (!credentials) {
      std::fprintf(stderr, "cohort stream: --credential-file: %s\n", credentials.error().c_str());
      return kBadArguments;
    }
    stream_options.credential = credentials->front();
  }
  if (*config) return cohort::tool::run_config(config_options);
  if (*log_command) return cohort::tool::run_log_inspect(inspect_options);
  return cohort::tool::run_stream(stream_options);
}

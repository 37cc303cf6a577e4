// cohort-sim: runs the deterministic simulator. One seed with a readable trace, to reproduce a failure; or a
// range of seeds with a summary, to hunt for one. Every failure prints its seed and the command reproducing it.

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <cohort/version.h>
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "sim/simulator.h"

namespace {

using namespace cohort;

struct Settings {
  std::uint64_t steps = sim::Options{}.steps;
  std::optional<std::size_t> nodes;
  std::string hunt;  // a named fault mix (sim::hunt_mix) instead of the seed's
};

std::string reproduce(std::uint64_t seed, const Settings& settings) {
  std::string command = fmt::format("cohort-sim --seed {}", seed);
  if (settings.steps != sim::Options{}.steps) command += fmt::format(" --steps {}", settings.steps);
  if (settings.nodes) command += fmt::format(" --nodes {}", *settings.nodes);
  if (!settings.hunt.empty()) command += fmt::format(" --hunt {}", settings.hunt);
  return command + " --trace";
}

// A broken invariant inside the core aborts the process (COHORT_ASSERT) before the simulator can report it:
// the handler still names the seed. Only async-signal-safe calls here, so the text is prepared in advance.
char g_abort_note[256];
std::size_t g_abort_note_size = 0;

void note_running(std::uint64_t seed, const Settings& settings) {
  const std::string note = fmt::format("cohort-sim: seed {} aborted (an assertion in the core). Reproduce with: {}\n",
                                       seed, reproduce(seed, settings));
  g_abort_note_size = std::min(note.size(), sizeof(g_abort_note));
  std::memcpy(g_abort_note, note.data(), g_abort_note_size);
}

extern "C" void on_abort(int /*signal*/) {
  if (g_abort_note_size > 0) {
    const ssize_t written = ::write(STDERR_FILENO, g_abort_note, g_abort_note_size);
    (void)written;
  }
  std::signal(SIGABRT, SIG_DFL);  // NOLINT: restore, so the abort that follows terminates as it should
}

bool parse_range(const std::string& text, std::uint64_t& first, std::uint64_t& last) {
  const auto dots = text.find("..");
  try {
    if (dots == std::string::npos) {
      first = last = std::stoull(text);
    } else {
      first = std::stoull(text.substr(0, dots));
      last = std::stoull(text.substr(dots + 2));
    }
  } catch (const std::exception&) {
    return false;
  }
  return first <= last;
}

bool read_seed_file(const std::string& path, std::vector<std::uint64_t>& seeds) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    const auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    try {
      seeds.push_back(std::stoull(line.substr(start)));
    } catch (const std::exception&) {
      return false;
    }
  }
  return true;
}

sim::Outcome run_seed(std::uint64_t seed, const Settings& settings, std::FILE* trace) {
  note_running(seed, settings);
  sim::Options options;
  options.seed = seed;
  options.steps = settings.steps;
  options.nodes = settings.nodes;
  if (!settings.hunt.empty()) options.mix = sim::hunt_mix(settings.hunt);
  options.trace = trace;
  sim::Simulator simulator(options);
  return simulator.run();
}

void print_stats(const sim::Outcome& outcome) {
  const auto& s = outcome.stats;
  fmt::print(
      "events {} simulated {:.3f} s; delivered {} dropped {} duplicated {}; crashes {} fsync failures {} "
      "recoveries {} torn tails {} state losses {} forged {} partitions {} transfers {} outages {}; leaders {}; "
      "committed {}; snapshots taken {} restored {} installed {} adopted {}; compactions {}; start repairs {}; "
      "fingerprint {:016x}\n"
      "clients: offers {} back-pressured {}; fates applied {} rejected {} unknown {}; egress {}; cut-offs {} restarts "
      "{} sessions expired {}; connects {} resets {} stalls {}; frames {} lost {}; sends refused {}\n"
      "closes {} (application {}, deadlines {}); power losses {}, seqs lost {}; blackouts {}, reconnects timed {} "
      "(max {:.3f} s)\n",
      outcome.events, std::chrono::duration<double>(outcome.simulated).count(), s.delivered, s.dropped, s.duplicated,
      s.crashes, s.fsync_failures, s.recoveries, s.torn_tails, s.state_losses, s.forged, s.partitions, s.transfers,
      s.outages, s.leaders, s.committed, s.snapshots_taken, s.snapshots_restored, s.snapshots_installed,
      s.snapshots_adopted, s.compactions, s.start_repairs, outcome.fingerprint, s.offers, s.back_pressured, s.applied,
      s.rejected, s.unknown, s.egress, s.cutoffs, s.client_restarts, s.expiries, s.client_connects, s.connection_resets,
      s.connection_stalls, s.client_frames, s.client_frames_lost, s.client_sends_refused, s.client_closes,
      s.closes_by_application, s.closes_by_deadline, s.power_losses, s.seqs_lost, s.blackouts, s.blackout_reconnects,
      static_cast<double>(s.blackout_reconnect_max_us) / 1e6);
}

int run(int argc, char** argv) {
  CLI::App app{"cohort-sim: the deterministic Raft simulator"};
  app.set_version_flag("--version", cohort::kVersionString);
  std::optional<std::uint64_t> seed;
  std::string range;
  std::string seed_file;
  Settings settings;
  bool trace = false;
  bool determinism = false;
  auto* seed_option = app.add_option("--seed", seed, "run one seed, printing its outcome");
  auto* range_option = app.add_option("--seeds", range, "run a range of seeds A..B (inclusive) and summarize");
  auto* file_option = app.add_option("--seed-file", seed_file, "run the seeds listed in a file (# comments)");
  seed_option->excludes(range_option)->excludes(file_option);
  range_option->excludes(file_option);
  app.add_option("--steps", settings.steps, "events in the safety phase")->check(CLI::Range(1ULL, 100'000'000ULL));
  app.add_option("--nodes", settings.nodes, "cluster size, overriding the seed's choice")
      ->check(CLI::IsMember({1, 3, 5}));
  app.add_option("--hunt", settings.hunt, "use a fault mix aimed at one narrow window instead of the seed's")
      ->check(CLI::IsMember(
          {"figure8", "vote", "storage", "loss", "clients", "outage", "snapshot", "closes", "power", "blackout"}));
  app.add_flag("--trace", trace, "print one line per event (with --seed)");
  app.add_flag("--check-determinism", determinism, "run every seed twice and compare the runs' fingerprints");
  CLI11_PARSE(app, argc, argv);

  std::vector<std::uint64_t> seeds;
  if (seed) {
    seeds.push_back(*seed);
  } else if (!range.empty()) {
    std::uint64_t first = 0;
    std::uint64_t last = 0;
    if (!parse_range(range, first, last)) {
      fmt::print(stderr, "cohort-sim: bad --seeds '{}': expected A..B with A <= B\n", range);
      return 2;
    }
    for (std::uint64_t s = first;; ++s) {
      seeds.push_back(s);
      if (s == last) break;
    }
  } else if (!seed_file.empty()) {
    if (!read_seed_file(seed_file, seeds)) {
      fmt::print(stderr, "cohort-sim: cannot read seeds from '{}'\n", seed_file);
      return 2;
    }
  } else {
    fmt::print(stderr, "cohort-sim: give --seed N, --seeds A..B or --seed-file PATH\n{}", app.help());
    return 2;
  }
  if (trace && seeds.size() != 1) {
    fmt::print(stderr, "cohort-sim: --trace needs a single --seed\n");
    return 2;
  }

  std::signal(SIGABRT, on_abort);
  const auto wall_start = std::chrono::steady_clock::now();
  std::vector<std::uint64_t> failed;
  std::chrono::nanoseconds simulated{0};
  std::uint64_t events = 0;
  std::uint64_t real_storage = 0;
  sim::Stats total;  // every count, summed over the seeds
  for (const std::uint64_t s : seeds) {
    const sim::Outcome outcome = run_seed(s, settings, trace ? stdout : nullptr);
    simulated += outcome.simulated;
    events += outcome.events;
    real_storage += outcome.mix.real_storage ? 1 : 0;
    total += outcome.stats;
    bool ok = outcome.ok;
    std::string failure = outcome.failure;
    if (ok && determinism) {
      const sim::Outcome again = run_seed(s, settings, nullptr);
      if (again.fingerprint != outcome.fingerprint || again.events != outcome.events) {
        ok = false;
        failure = fmt::format("not deterministic: fingerprints {:016x} and {:016x}, events {} and {}",
                              outcome.fingerprint, again.fingerprint, outcome.events, again.events);
      }
    }
    if (seeds.size() == 1) {
      fmt::print("seed {}: {}\n", s, outcome.mix.describe());
      print_stats(outcome);
    }
    if (!ok) {
      failed.push_back(s);
      fmt::print("FAILED seed {} ({}): {}\n  reproduce: {}\n", s, outcome.mix.describe(), failure,
                 reproduce(s, settings));
      std::fflush(stdout);
    }
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  fmt::print("seeds run: {}; failed: {}", seeds.size(), failed.size());
  if (!failed.empty()) {
    fmt::print(" (");
    for (std::size_t i = 0; i < failed.size(); ++i) fmt::print("{}{}", i == 0 ? "" : " ", failed[i]);
    fmt::print(")");
  }
  fmt::print("; events {}; simulated {:.1f} s; wall {:.2f} s\n", events,
             std::chrono::duration<double>(simulated).count(), wall);
  fmt::print("real storage: {} seeds, {} recoveries after crashes, {} torn tails cut off\n", real_storage,
             total.recoveries, total.torn_tails);
  fmt::print("state losses (wiped disks, damaged durable records, page caches lost): {}; forged messages: {}\n",
             total.state_losses, total.forged);
  fmt::print(
      "snapshots: {} taken, {} restored at a start, {} installed from a leader, {} adopted at a start (the log ended "
      "before it); {} compactions; {} starts repaired (no snapshot covered the log's base)\n",
      total.snapshots_taken, total.snapshots_restored, total.snapshots_installed, total.snapshots_adopted,
      total.compactions, total.start_repairs);
  fmt::print(
      "clients: offers {} (back-pressured {}); fates applied {} rejected {} unknown {}; egress {}; cut-offs {} "
      "restarts {} resets {} stalls {} outages {}; sessions expired {}; sends refused {}\n",
      total.offers, total.back_pressured, total.applied, total.rejected, total.unknown, total.egress, total.cutoffs,
      total.client_restarts, total.connection_resets, total.connection_stalls, total.outages, total.expiries,
      total.client_sends_refused);
  fmt::print(
      "closes: {} by the application, {} by a deadline (each client replaced); power losses of every node: {}, seqs "
      "reported lost {}; blackouts: {}, clients back in their session {} (mean {:.3f} s, max {:.3f} s after a quorum "
      "was back)\n",
      total.closes_by_application, total.closes_by_deadline, total.power_losses, total.seqs_lost, total.blackouts,
      total.blackout_reconnects,
      total.blackout_reconnects == 0
          ? 0.0
          : static_cast<double>(total.blackout_reconnect_sum_us) / 1e6 / static_cast<double>(total.blackout_reconnects),
      static_cast<double>(total.blackout_reconnect_max_us) / 1e6);
  return failed.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s: fatal: %s\n", "cohort-sim", error.what());
    return 1;
  }
}

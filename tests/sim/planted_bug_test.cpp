// The simulator's self-test: this program is linked against a copy of the consensus core with one planted bug
// (COHORT_PLANTED_BUG, see raft.cpp) and passes only if the simulator's checkers catch it within the stated
// number of seeds, with the expected kind of failure. A checker that cannot fail is a defect.
//
//   planted_bug_N --seeds LIMIT --expect TEXT [--nodes K] [--hunt figure8]
//
// --hunt figure8 uses a fault mix aimed at the window of Figure 8 (five nodes, one entry per request, leaders
// crashing right after they win or commit), which random mixes reach too rarely to test in seconds.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "sim/simulator.h"

namespace {

cohort::sim::FaultMix figure8_hunt() {
  using namespace std::chrono_literals;
  cohort::sim::FaultMix mix;
  mix.nodes = 5;
  mix.delay_max = 5ms;
  mix.partition_every = 2s;
  mix.crash_every = 1s;
  mix.crash_after_role_change_per_mille = 300;
  mix.crash_after_commit_per_mille = 200;
  mix.client_every = 30ms;
  mix.max_append_entries = 1;
  mix.max_inflight_appends = 1;
  return mix;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t limit = 0;
  std::string expect;
  std::optional<std::size_t> nodes;
  std::optional<cohort::sim::FaultMix> hunt;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--seeds") == 0) limit = std::strtoull(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--expect") == 0) expect = argv[i + 1];
    if (std::strcmp(argv[i], "--nodes") == 0) nodes = std::strtoull(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--hunt") == 0 && std::strcmp(argv[i + 1], "figure8") == 0) hunt = figure8_hunt();
  }
  if (limit == 0 || expect.empty()) {
    std::fprintf(stderr, "usage: %s --seeds LIMIT --expect TEXT [--nodes K]\n", argv[0]);
    return 2;
  }
  for (std::uint64_t seed = 1; seed <= limit; ++seed) {
    cohort::sim::Options options;
    options.seed = seed;
    options.nodes = nodes;
    options.mix = hunt;
    const cohort::sim::Outcome outcome = cohort::sim::Simulator(options).run();
    if (outcome.ok) continue;
    if (outcome.failure.find(expect) == std::string::npos) {
      std::printf("planted bug caught by seed %llu, but not as '%s':\n%s\n", static_cast<unsigned long long>(seed),
                  expect.c_str(), outcome.failure.c_str());
      return 1;
    }
    std::printf("planted bug caught by seed %llu (limit %llu):\n%s\n", static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(limit), outcome.failure.c_str());
    return 0;
  }
  std::printf("planted bug NOT caught within %llu seeds: the checkers missed it\n",
              static_cast<unsigned long long>(limit));
  return 1;
}

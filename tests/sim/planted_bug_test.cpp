// The simulator's self-test: this program holds the planted bugs (common/planted_bug.h) and passes only if the
// simulator's checkers catch the one chosen by --bug within the stated number of seeds, with the expected kind
// of failure. A checker that cannot fail is a defect.
//
//   planted_bugs --bug N --seeds LIMIT --expect TEXT[|TEXT...] [--nodes K] [--hunt NAME]   (hunts: fault_mix.h)

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "common/planted_bug.h"
#include "sim/simulator.h"

#ifndef COHORT_PLANTED_BUGS
#error "planted_bugs must be compiled with COHORT_PLANTED_BUGS (tests/sim/CMakeLists.txt)"
#endif

int main(int argc, char** argv) {
  long bug = 0;
  std::uint64_t limit = 0;
  std::string expect;
  std::optional<std::size_t> nodes;
  std::optional<cohort::sim::FaultMix> hunt;
  bool hunt_given = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--bug") == 0) bug = std::strtol(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--seeds") == 0) limit = std::strtoull(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--expect") == 0) expect = argv[i + 1];
    if (std::strcmp(argv[i], "--nodes") == 0) nodes = std::strtoull(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--hunt") == 0) {
      hunt_given = true;
      hunt = cohort::sim::hunt_mix(argv[i + 1]);
    }
  }
  // Bug 0 would run the correct code, which the seed and hunt tests cover: here it can only be a mistake.
  if (bug <= 0 || limit == 0 || expect.empty() || (hunt_given && !hunt)) {
    std::fprintf(stderr, "usage: %s --bug N --seeds LIMIT --expect TEXT [--nodes K] [--hunt NAME]\n", argv[0]);
    return 2;
  }
  cohort::plant_bug(static_cast<int>(bug));
  for (std::uint64_t seed = 1; seed <= limit; ++seed) {
    cohort::sim::Options options;
    options.seed = seed;
    options.nodes = nodes;
    options.mix = hunt;
    const cohort::sim::Outcome outcome = cohort::sim::Simulator(options).run();
    if (outcome.ok) continue;
    // TEXT may name several kinds of failure, separated by '|': any of them will do.
    bool expected = false;
    for (std::size_t from = 0; from <= expect.size();) {
      const std::size_t bar = std::min(expect.find('|', from), expect.size());
      expected = expected || outcome.failure.find(expect.substr(from, bar - from)) != std::string::npos;
      from = bar + 1;
    }
    if (!expected) {
      std::printf("planted bug %ld caught by seed %llu, but not as '%s':\n%s\n", bug,
                  static_cast<unsigned long long>(seed), expect.c_str(), outcome.failure.c_str());
      return 1;
    }
    std::printf("planted bug %ld caught by seed %llu (limit %llu):\n%s\n", bug, static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(limit), outcome.failure.c_str());
    return 0;
  }
  std::printf("planted bug %ld NOT caught within %llu seeds: the checkers missed it\n", bug,
              static_cast<unsigned long long>(limit));
  return 1;
}

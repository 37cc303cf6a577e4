#!/usr/bin/env bash
# Runs the transport benchmark from the release build (`./run bench` builds it first) and keeps its output.
#
#   scripts/bench.sh [transport] [ARGS]   ARGS go to transport_bench, e.g. --quick, --spin, --samples 50000
#
# The figures are printed and also saved under build/bench-results/, one file per run; the last line of each
# is a JSON summary. Figures on a busy machine are noisy: compare runs made while nothing else is compiling.
# COHORT_BUILD_DIR picks another build directory than build/release.
set -euo pipefail
cd "$(dirname "$0")/.."

[[ "${1:-}" == "transport" ]] && shift
binary=${COHORT_BUILD_DIR:-build/release}/bench/transport_bench
if [[ ! -x "$binary" ]]; then
  echo "bench: $binary is missing; build it with: ./run build release" >&2
  exit 1
fi

results=build/bench-results
mkdir -p "$results"
output="$results/transport-$(date +%Y%m%d-%H%M%S).txt"
echo "bench: results go to $output"
"$binary" "$@" | tee "$output"
echo "bench: saved to $output"

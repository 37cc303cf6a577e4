#!/usr/bin/env bash
# Runs the benchmarks from the release build (`./run bench` builds it first) and keeps their output.
#
#   scripts/bench.sh [transport|storage|snapshot|cluster|restart|all] [ARGS]   ARGS go to the benchmark, e.g. --quick; default: all
#
#   transport: round-trip latency and streaming throughput of the TCP transport (bench/transport_bench.cpp)
#   storage:   the durable log's append throughput under each sync policy, against the disk's fdatasync floor
#              (bench/storage_bench.cpp; --dir DIR picks the file system, default a fresh dir under /var/tmp)
#   snapshot:  the event-loop pause of a snapshot of a large state, and the time to write, load and restore it
#              (bench/snapshot_bench.cpp; --state-mib, --sessions)
#   cluster:   commit latency and throughput of a real 3-node cohortd cluster on loopback, one client
#              (bench/cluster_bench.cpp; --sync fsync,none picks the policies)
#   restart:   a single cohortd node's restart-to-serving time after 4 M and 40 M messages, at the worst point of
#              the snapshot cycle, and its memory with 10,000 open sessions after 1 GiB of log
#              (bench/restart_bench.cpp; --messages 4M,40M, --figures restart,memory, --log-mib, --sessions)
#
# The figures are printed and also saved under build/bench-results/, one file per run; the last line of each
# is a JSON summary. Figures on a busy machine are noisy: compare runs made while nothing else is compiling.
# COHORT_BUILD_DIR picks another build directory than build/release.
set -euo pipefail
cd "$(dirname "$0")/.."

which=all
case "${1:-}" in
  transport | storage | snapshot | cluster | restart | all) which=$1; shift ;;
esac
build=${COHORT_BUILD_DIR:-build/release}
results=build/bench-results
mkdir -p "$results"

run_one() {
  local name=$1
  shift
  local binary="$build/bench/${name}_bench"
  if [[ ! -x "$binary" ]]; then
    echo "bench: $binary is missing; build it with: ./run build release" >&2
    exit 1
  fi
  local output
  output="$results/$name-$(date +%Y%m%d-%H%M%S).txt"
  echo "bench: $name: results go to $output"
  "$binary" "$@" | tee "$output"
  echo "bench: saved to $output"
}

if [[ $which == all ]]; then
  run_one transport "$@"
  run_one storage "$@"
  run_one snapshot "$@"
  run_one cluster "$@"
  run_one restart "$@"
else
  run_one "$which" "$@"
fi

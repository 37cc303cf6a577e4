#!/usr/bin/env bash
# The demo, run by `./run demo` after it has built the release preset. It grows with Cohort: today it starts one
# node, pings it, shows that a client of another cluster is refused with a clear reason, stops the node
# gracefully, and runs the Raft core through the deterministic simulator. --short runs it quickly (the system
# tests use this).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${COHORT_BIN:-build/release/tools}  # the system tests point it at their own build
count=20
[[ "${1:-}" == "--short" ]] && count=3

work=$(mktemp -d -t cohort-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; echo "interrupted"; exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }

say "starting node 1 of cluster 42 (logs: $work/node1.log)"
"$bin/cohortd" --node-id 1 --cluster-id 42 --listen 127.0.0.1:0 >"$work/node1.out" 2>"$work/node1.log" &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q '^listening on ' "$work/node1.out" 2>/dev/null && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/node1.log"; echo "node 1 failed to start" >&2; exit 1; }
  sleep 0.05
done
address=$(sed -n 's/^listening on //p' "$work/node1.out")
[[ -n "$address" ]] || { echo "node 1 did not report its address" >&2; exit 1; }
echo "node 1 listens on $address"

say "pinging node 1 ($count round trips through Cohort's transport)"
"$bin/cohort-ping" "$address" --cluster-id 42 --count "$count" --interval-ms 20

say "a tool configured for cluster 7 is refused, with the reason"
if "$bin/cohort-ping" "$address" --cluster-id 7 --count 1; then
  echo "expected a refusal" >&2
  exit 1
fi

say "stopping node 1 with SIGTERM"
kill -TERM "${pids[0]}"
status=0
wait "${pids[0]}" || status=$?
echo "node 1 exited with status $status"
[[ $status -eq 0 ]] || exit 1
pids=()

say "node 1's log"
cat "$work/node1.log"

say "the consensus core (not in cohortd yet) under simulated faults: 3-node cluster, seed 7, then 200 seeds"
"$bin/cohort-sim" --seed 7 --nodes 3
"$bin/cohort-sim" --seeds 1..$(( count == 3 ? 50 : 200 ))

say "the durable log (not in cohortd yet): nodes crash between write and fsync; recovery cuts torn tails"
"$bin/cohort-sim" --hunt storage --seeds 1..$(( count == 3 ? 20 : 100 ))
rm -rf "$work"
say "demo finished"

#!/usr/bin/env bash
# The demo, run by `./run demo` after it has built the release preset: a local 3-node cluster with the key-value
# service. It writes through the client with a live progress line, kills the leader with SIGKILL mid-way, shows the
# new leader and that every acknowledged write survived, restarts the old leader and shows it catch up, then runs
# the deterministic simulator. --short runs it quickly (the system tests use this).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${COHORT_BIN:-build/release/tools}              # the system tests point these at their own build
kv=${COHORT_KV:-build/release/examples/kv/cohort-kv}
count=30000
rate=10000  # writes per second: slow enough that the leader dies in the middle of the stream
[[ "${1:-}" == "--short" ]] && count=3000 && rate=2000
cluster=42

work=$(mktemp -d -t cohort-demo.XXXXXX)
declare -A pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; echo "interrupted: stopping the cluster"; exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }

# Six free loopback ports: three for peers, three for clients.
read -r -a ports <<<"$(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
members=()
clients=""
for i in 1 2 3; do
  members+=(--member "$i,127.0.0.1:${ports[$((i - 1))]},127.0.0.1:${ports[$((i + 2))]}")
  clients+="${clients:+,}127.0.0.1:${ports[$((i + 2))]}"
done
client_of() { echo "127.0.0.1:${ports[$(($1 + 2))]}"; }

start_node() {
  local i=$1
  "$bin/cohortd" --node-id "$i" --cluster-id $cluster --data-dir "$work/node$i" --service kv "${members[@]}" \
    >>"$work/node$i.out" 2>>"$work/node$i.log" &
  pids[$i]=$!
  for _ in $(seq 1 200); do
    grep -q '^clients on ' "$work/node$i.out" 2>/dev/null && return 0
    kill -0 "${pids[$i]}" 2>/dev/null || { cat "$work/node$i.log"; echo "node $i failed to start" >&2; exit 1; }
    sleep 0.05
  done
  echo "node $i did not start" >&2
  exit 1
}

# The node every reachable member names as leader, once they agree; empty if they do not (yet).
leader() {
  "$kv" --cluster-id $cluster --members "$clients" status 2>/dev/null |
    awk '/ leader +member +term/ {print $3}' | head -1
}
wait_leader() {
  local found=""
  for _ in $(seq 1 400); do
    found=$(leader)
    [[ -n "$found" && "$found" != "${1:-}" ]] && { echo "$found"; return 0; }
    sleep 0.025
  done
  return 1
}

say "starting a 3-node cluster (data and logs in $work)"
for i in 1 2 3; do start_node "$i"; done
started=$(date +%s%N)
first=$(wait_leader) || { echo "no leader elected" >&2; exit 1; }
echo "node $first leads, elected in $(( ($(date +%s%N) - started) / 1000000 )) ms"

say "writing $count keys through the client; the leader (node $first) is killed with SIGKILL on the way"
"$kv" --cluster-id $cluster --members "$clients" --timeout 120 -v load --count "$count" --rate "$rate" >"$work/load.out" &
load=$!
# Kill once about a third of the writes are committed.
for _ in $(seq 1 1200); do
  commit=$("$kv" --cluster-id $cluster --members "$(client_of "$first")" status 2>/dev/null | sed -n 's/.* commit \([0-9]*\).*/\1/p')
  [[ -n "$commit" && "$commit" -gt $((count / 3)) ]] && break
  sleep 0.025
done
killed_at=$(date +%s%N)
kill -KILL "${pids[$first]}"
wait "${pids[$first]}" 2>/dev/null || true
unset "pids[$first]"
printf '\n'
echo "killed node $first (SIGKILL) at commit index $commit"
second=$(wait_leader "$first") || { echo "no new leader" >&2; exit 1; }
echo "node $second leads now, $(( ($(date +%s%N) - killed_at) / 1000000 )) ms after the kill"
wait "$load" || { cat "$work/load.out"; echo "the writer failed" >&2; exit 1; }
cat "$work/load.out"

say "reading every key back through the new leader"
"$kv" --cluster-id $cluster --members "$clients" --timeout 120 verify --count "$count"

say "restarting node $first: it catches up from the new leader"
start_node "$first"
for _ in $(seq 1 400); do
  status=$("$kv" --cluster-id $cluster --members "$clients" status 2>/dev/null || true)
  applied=$(awk '{for (i = 1; i < NF; i++) if ($i == "applied") print $(i + 1)}' <<<"$status" | sort -u | wc -l)
  hashes=$(awk '{for (i = 1; i < NF; i++) if ($i == "hash") print $(i + 1)}' <<<"$status" | sort -u | wc -l)
  [[ $(wc -l <<<"$status") -eq 3 && "$applied" -eq 1 && "$hashes" -eq 1 ]] && break
  sleep 0.05
done
echo "$status"
[[ "$applied" -eq 1 && "$hashes" -eq 1 ]] || { echo "node $first did not catch up" >&2; exit 1; }
echo "every replica has applied the same log and holds the same state (equal hashes)"

say "stopping the cluster with SIGTERM (the leader hands over first)"
for i in "${!pids[@]}"; do kill -TERM "${pids[$i]}"; done
for i in "${!pids[@]}"; do
  status=0
  wait "${pids[$i]}" || status=$?
  echo "node $i exited with status $status"
  [[ $status -eq 0 ]] || exit 1
done
pids=()

say "the same cores under simulated faults: seeds of crashes, partitions and lost messages, each checking"
echo "Raft's safety rules, equal KV state hashes at equal log positions, exactly-once delivery and timers"
"$bin/cohort-sim" --seeds 1..$(( count < 10000 ? 40 : 200 ))
say "the durable log: nodes crash between write and fsync; recovery cuts torn tails"
"$bin/cohort-sim" --hunt storage --seeds 1..$(( count < 10000 ? 20 : 100 ))
rm -rf "$work"
say "demo finished"

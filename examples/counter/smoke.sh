#!/usr/bin/env bash
# Smoke test of the counter example (ctest: example.counter): a one-node cluster on free ports, "add 5" twice,
# "get" answers 10, a reset timer brings it back to 0, and SIGTERM stops the node with status 0.
#   smoke.sh BIN_DIR    (the directory holding counter-node and counter-cli)
set -euo pipefail
bin=${1:?usage: smoke.sh BIN_DIR}
work=$(mktemp -d -t cohort-counter-smoke.XXXXXX)
node_pid=""

cleanup() {
  local status=$?
  if [[ -n "$node_pid" ]] && kill -0 "$node_pid" 2>/dev/null; then
    kill -KILL "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 && -f "$work/node.log" ]]; then
    echo "--- node log"
    cat "$work/node.log"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Port 0: the node binds free ports itself and prints them, so concurrent tests never collide.
"$bin/counter-node" --node-id 1 --cluster-id 42 --data-dir "$work/data" \
  --member 1,127.0.0.1:0,127.0.0.1:0 >"$work/node.out" 2>"$work/node.log" &
node_pid=$!
for _ in $(seq 1 200); do
  grep -q '^clients on ' "$work/node.out" 2>/dev/null && break
  kill -0 "$node_pid" 2>/dev/null || fail "the node exited before it was listening"
  sleep 0.05
done
endpoint=$(sed -n 's/^clients on //p' "$work/node.out")
[[ -n "$endpoint" ]] || fail "the node did not print its client endpoint"
echo "node listening for clients on $endpoint"

cli() { "$bin/counter-cli" --cluster-id 42 --members "$endpoint" --timeout-ms 5000 "$@"; }

# Until the node has elected itself a client's command waits; "get" changes nothing, so retrying it is safe.
ready=""
for _ in $(seq 1 5); do
  if ready=$(cli get) && [[ "$ready" == 0 ]]; then break; fi
  ready=""
  sleep 0.5
done
[[ -n "$ready" ]] || fail "the counter never answered get with 0"

# Not retried: a retried add could apply twice.
[[ "$(cli add 5)" == 5 ]] || fail "first add 5 did not answer 5"
[[ "$(cli add 5)" == 10 ]] || fail "second add 5 did not answer 10"
answer=$(cli get)
[[ "$answer" == 10 ]] || fail "get answered '$answer', expected 10"
echo "add 5, add 5, get: $answer"

if cli frobnicate >/dev/null; then fail "an unknown command did not fail"; fi

# A cluster timer: the reset happens once cluster time passes the deadline.
cli reset-after 100 | grep -q '^reset at [0-9]*$' || fail "reset-after did not answer 'reset at T'"
for _ in $(seq 1 50); do
  answer=$(cli get)
  [[ "$answer" == 0 ]] && break
  sleep 0.1
done
[[ "$answer" == 0 ]] || fail "the counter was not reset by its timer (get answered '$answer')"
echo "reset-after 100: the timer reset the counter to 0"

kill -TERM "$node_pid"
status=0
wait "$node_pid" || status=$?
node_pid=""
[[ $status -eq 0 ]] || fail "the node exited with status $status after SIGTERM"
echo "node stopped gracefully; PASS"

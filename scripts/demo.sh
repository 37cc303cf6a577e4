#!/usr/bin/env bash
# The demo, run by `./run demo` after it has built the release preset. It shows what Cohort is for: a client that
# keeps every message's fate exact while the cluster under it fails. Three cohortd nodes run the ledger service,
# which counts how often each stream number was applied; `cohort stream` sends a numbered stream through the real
# client with its live line and its event lines, while this script kills the leader and later stops and restarts
# every node. The stream's summary, checked against the ledger, ends it: 0 lost, 0 duplicated.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: ./run demo [--short] [--keep] [--dir DIR] [--base-port N]

Starts a local 3-node Cohort cluster (cohortd, ledger service) and streams numbered messages through the client
(cohort stream) while it kills the leader with SIGKILL, then stops every node and starts them again. Ends with
the stream's summary, checked against the ledger, and a short run of the deterministic simulator; the exit
status is 0 only if nothing was lost, duplicated or left unknown and every step worked.

  --short        a quick run with the same steps (the system tests use it)
  --keep         leave the cluster running at the end, and say how to talk to it and how to stop it
  --dir DIR      data and logs in DIR (absent or empty; kept afterwards); default: a fresh temporary directory,
                 removed after a successful run
  --base-port N  peers on ports N..N+2, clients on N+3..N+5; default: free ports found automatically
  -h, --help     this text
EOF
}

short=false
keep=false
dir=""
base_port=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --short) short=true ;;
    --keep) keep=true ;;
    --dir)
      [[ $# -ge 2 ]] || { echo "demo: --dir needs a directory" >&2; exit 2; }
      dir=$(realpath -m -- "$2")  # before the cd below: DIR is relative to where the user stands
      shift
      ;;
    --base-port)
      [[ $# -ge 2 && "$2" =~ ^[0-9]+$ && "$2" -ge 1024 && "$2" -le 65530 ]] ||
        { echo "demo: --base-port needs a port from 1024 to 65530" >&2; exit 2; }
      base_port=$2
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "demo: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [[ -n "$dir" && -e "$dir" && -n "$(ls -A -- "$dir")" ]]; then
  echo "demo: $dir is not empty: give an empty or new directory, so nothing there is mixed up or overwritten" >&2
  exit 2
fi

cd "$(dirname "$0")/.."
# The system tests point these at their own build.
bin=$(realpath -- "${COHORT_BIN:-build/release/tools}")
kv=$(realpath -- "${COHORT_KV:-build/release/examples/kv/cohort-kv}")
for tool in "$bin/cohortd" "$bin/cohort" "$kv"; do
  [[ -x "$tool" ]] || { echo "demo: $tool is missing: run ./run demo, which builds first" >&2; exit 1; }
done

cluster=42
rate=1000          # messages a second: a thousand make the numbers easy to follow
steady=3           # seconds the stream runs undisturbed before each step and at the end
outage=2           # seconds every node stays down in step 2
sim_seeds=200      # simulator seeds at the end: a few seconds
if $short; then
  steady=1
  outage=1
  sim_seeds=20
fi
deadline_s=15      # for anything the cluster must do (start, elect, catch up): far above what it takes
# Entries past a commit index seen before a step that show the stream flowing after it. Half a second of the
# stream: more than a new leader's own entry, the entries in flight at a stop, or those committed while a status
# query ran; less than what the client sends at once when it is back, having kept what it accepted meanwhile.
progress=$((rate / 2))

tty=false
[[ -t 1 ]] && tty=true
bold="" plain=""
if $tty && [[ -z "${NO_COLOR:-}" ]]; then
  bold=$'\033[1m' plain=$'\033[0m'
fi

now_ms() {
  local t=${EPOCHREALTIME//[.,]/}  # microseconds; the separator follows the locale
  echo $((t / 1000))
}

# One narration line. The stream's live line sits at the bottom of a terminal without a newline: each line of
# ours clears that row first (the stream draws its line again within 200 ms), and is written whole by one printf,
# as the stream writes each of its updates whole, so neither lands inside the other's line. Not on a terminal,
# the stream prints its progress as ordinary lines and there is nothing to clear.
say() {
  local clear="" now=$EPOCHREALTIME
  $tty && clear=$'\r\033[2K'
  printf '%s%s== %(%H:%M:%S)T.%s %s%s\n' "$clear" "$bold" "${now%[.,]*}" "${now:(-6):3}" "$*" "$plain"
}
fail() {
  say "FAILED: $*"
  exit 1
}

# Six consecutive ports: peers on the first three, clients on the last three. Chosen below the kernel's ephemeral
# range, where no outgoing connection (the stream's own reconnects among them) can take one while a node is down.
if [[ -z "$base_port" ]]; then
  base_port=$(python3 - <<'EOF'
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(100):
    base = random.randrange(10000, max(10001, low - 6))
    socks = []
    try:
        for port in range(base, base + 6):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    print(base)
    break
EOF
  )
  [[ -n "$base_port" ]] || { echo "demo: found no six free consecutive ports; choose them with --base-port" >&2; exit 1; }
fi
members=()
clients=""
for i in 1 2 3; do
  members+=(--member "$i,127.0.0.1:$((base_port + i - 1)),127.0.0.1:$((base_port + i + 2))")
  clients+="${clients:+,}127.0.0.1:$((base_port + i + 2))"
done

# The data directory: the user's (kept) or a fresh one (removed after a successful run, kept after a failure so
# its logs can be read).
own_dir=false
if [[ -z "$dir" ]]; then
  dir=$(mktemp -d -t cohort-demo.XXXXXX)
  own_dir=true
fi
mkdir -p -- "$dir"

declare -A pids=()  # node id -> pid of its cohortd
stream_pid=""
finished=false
cleanup() {
  local status=$?
  set +e  # every step of the cleanup is tried, whatever the one before it did
  trap - EXIT INT TERM
  local doomed=()
  [[ -n "$stream_pid" ]] && doomed+=("$stream_pid")
  $finished && $keep || doomed+=("${pids[@]}")
  for pid in "${doomed[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  for pid in "${doomed[@]}"; do wait "$pid" 2>/dev/null; done  # not a bare wait: kept nodes would never end
  if $own_dir && ! $keep && [[ $status -eq 0 || $status -eq 130 ]]; then
    rm -rf -- "$dir"
  elif [[ $status -ne 0 && $status -ne 130 ]]; then
    echo "the nodes' logs and the stream's output are in $dir" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted: stopping every process it started" >&2; exit 130' INT TERM

start_node() {
  local i=$1
  "$bin/cohortd" --node-id "$i" --cluster-id $cluster --data-dir "$dir/node$i" --service ledger "${members[@]}" \
    >"$dir/node$i.out" 2>>"$dir/node$i.log" &
  pids[$i]=$!
}
# Waits until node i has opened its ports (it prints them once it listens).
wait_node_up() {
  local i=$1 until=$(($(now_ms) + deadline_s * 1000))
  until grep -q '^clients on ' "$dir/node$i.out" 2>/dev/null; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      tail -5 "$dir/node$i.log" >&2
      fail "node $i did not start (its log: $dir/node$i.log)"
    fi
    (($(now_ms) < until)) || fail "node $i did not open its ports within $deadline_s s"
    sleep 0.02
  done
}
# Signals every node given (all of them before waiting for any, so they go down together), and waits for each.
stop_nodes() {
  local signal=$1 i status
  shift
  for i in "$@"; do kill "-$signal" "${pids[$i]}"; done
  for i in "$@"; do
    status=0
    { wait "${pids[$i]}"; } 2>/dev/null || status=$?  # without bash's own "Killed" line for it
    unset "pids[$i]"
    # SIGTERM is a graceful stop, which exits 0; SIGKILL is meant to kill.
    [[ $signal == KILL || $status -eq 0 ]] ||
      fail "node $i exited with status $status on SIGTERM (its log: $dir/node$i.log)"
  done
}

# "id role term leader commit applied", one line per node that answers the admin status query.
cluster_status() {
  "$kv" --cluster-id $cluster --members "$clients" status 2>/dev/null |
    awk '$2 == "node" {
      for (i = 1; i < NF; i++) f[$i] = $(i + 1)
      print $3, $4, f["term"], f["leader"], f["commit"], f["applied"]
    }' || true
}
# The leader as "id term commit": a node that says it leads and that every answering node names, so a deposed
# leader that has not heard yet is not taken for the leader. Empty if there is none (yet).
agreed_leader() {
  cluster_status | awk '
    { n++; named[$4]++ }
    $2 == "leader" { id = $1; term = $3; commit = $5 }
    END { if (id != "" && named[id] == n) print id, term, commit }'
}
# Waits for an agreed leader other than node $1 (0: any); sets leader, term and commit.
wait_leader() {
  local not=$1 until=$(($(now_ms) + deadline_s * 1000)) found
  while true; do
    found=$(agreed_leader)
    if [[ -n "$found" ]]; then
      read -r leader term commit <<<"$found"
      [[ "$leader" != "$not" ]] && return 0
    fi
    (($(now_ms) < until)) || fail "no leader within $deadline_s s"
    sleep 0.02
  done
}
# Node $1's commit (or applied, with $2 = applied) index, empty if it does not answer.
index_of() {
  cluster_status | awk -v id="$1" -v field="${2:-commit}" '$1 == id { print field == "applied" ? $6 : $5 }'
}
# Waits until node $1 has committed (or, with $4 = applied, applied) past index $2; $3 says what failed if not.
wait_index_above() {
  local i=$1 above=$2 what=$3 field=${4:-commit} until=$(($(now_ms) + deadline_s * 1000)) at
  while true; do
    at=$(index_of "$i" "$field")
    [[ -n "$at" && "$at" -gt "$above" ]] && return 0
    (($(now_ms) < until)) || fail "$what within $deadline_s s"
    sleep 0.02
  done
}
# Checks the stream is still running (it only ends when told).
stream_alive() {
  kill -0 "$stream_pid" 2>/dev/null || fail "cohort stream ended early: $(cat "$dir/stream.summary")"
}

cat <<EOF
${bold}Cohort demo${plain}: three cohortd nodes on this machine run the ledger service, which counts how many times each
message was applied. A client (cohort stream) sends numbered messages, $rate a second, while the demo
  1. kills the leader with SIGKILL: the client follows to the new leader;
  2. stops every node and starts them all again: the client resumes its session by itself;
  3. ends the stream and holds every message's fate against the ledger: 0 lost, 0 duplicated.
Lines starting with == are the demo's; the others are cohort stream's (times of day, and since its start).

EOF

say "starting 3 nodes: peers on ports $base_port-$((base_port + 2)), clients on $((base_port + 3))-$((base_port + 5))," \
  "data and logs in $dir"
started=$(now_ms)
for i in 1 2 3; do start_node "$i"; done
for i in 1 2 3; do wait_node_up "$i"; done
wait_leader 0
say "node $leader leads (term $term), $(($(now_ms) - started)) ms after the nodes started"

say "cohort stream --cluster-id $cluster --members $clients --rate $rate"
# Its live line and event lines (stderr) go where ours go, so on a terminal it redraws the live line in place; its
# summary (stdout) goes to a file, printed at the end.
# shellcheck disable=SC2069  # stderr to our stdout, then stdout to the file: the order is the point
"$bin/cohort" stream --cluster-id $cluster --members "$clients" --rate $rate 2>&1 >"$dir/stream.summary" &
stream_pid=$!
wait_index_above "$leader" "$((commit + progress))" "the stream's first messages were not committed"
sleep "$steady"  # the stream runs undisturbed: this wait is the show, not a hope that something happened
stream_alive

# Step 1.
wait_leader 0
old=$leader
say "1. killing the leader, node $old, with SIGKILL"
killed=$(now_ms)
stop_nodes KILL "$old"
wait_leader "$old"
say "node $leader leads now (term $term), $(($(now_ms) - killed)) ms after the kill"
wait_index_above "$leader" "$((commit + progress))" "no message was committed through node $leader"
say "messages commit again through node $leader: the client found the new leader by itself"
say "restarting node $old: it catches up from node $leader"
start_node "$old"
wait_node_up "$old"
target=$(index_of "$leader")
[[ -n "$target" ]] || fail "node $leader did not answer the status query"
wait_index_above "$old" "$((target - 1))" "node $old did not catch up" applied
say "node $old has applied everything the cluster had committed when it came back: the cluster is whole again"
sleep "$steady"
stream_alive

# Step 2.
wait_leader 0
before=$commit
say "2. stopping every node (SIGTERM); they stay down $outage s, while the client keeps the messages it accepts"
stop_nodes TERM 1 2 3
sleep "$outage"  # the outage the client must ride out
say "starting all three again"
restarted=$(now_ms)
for i in 1 2 3; do start_node "$i"; done
for i in 1 2 3; do wait_node_up "$i"; done
wait_leader 0
say "node $leader leads (term $term), $(($(now_ms) - restarted)) ms after the nodes started"
# Measured from what was committed before the stop: a restarted leader learns what is committed only once it has
# committed an entry of its own term, and its index jumps then.
wait_index_above "$leader" "$((before + progress))" "no message was committed after the restart"
say "messages commit again: the client found the cluster and resumed its session by itself"
sleep "$steady"
stream_alive

# Step 3.
say "3. ending the stream with Ctrl-C (SIGINT), as you would: it stops sending, waits for every message's fate," \
  "and asks the ledger"
kill -INT "$stream_pid"
# It drains for at most 30 s and asks the ledger for at most 10 s more (cohort stream --help): past that, it hangs.
until=$(($(now_ms) + 60000))
while kill -0 "$stream_pid" 2>/dev/null; do
  (($(now_ms) < until)) || fail "cohort stream did not finish within 60 s of SIGINT"
  sleep 0.05
done
stream_status=0
wait "$stream_pid" || stream_status=$?
stream_pid=""
echo
cat "$dir/stream.summary"
echo
summary=$(cat "$dir/stream.summary")
[[ $stream_status -eq 0 ]] || fail "cohort stream exited with status $stream_status: something was lost, duplicated" \
  "or left unknown, or the ledger did not answer"
grep -q 'lost 0  duplicated 0' <<<"$summary" || fail "the summary does not say 0 lost and 0 duplicated"
grep -q ' 0 replaced' <<<"$summary" || fail "the client did not keep its session"
accepted=$(sed -n 's/^  accepted \([0-9]*\) .*/\1/p' <<<"$summary")
longest=$(sed -n 's/^  outages: [0-9]*, longest \([0-9]*\) ms.*/\1/p' <<<"$summary")
say "all $accepted messages the client accepted were applied exactly once, through a leader kill and a full" \
  "restart; the longest outage the client saw: ${longest:-0} ms (the nodes were down for $outage s of it)"

say "the same replicas, gateways and clients under $sim_seeds seeded fault schedules in the deterministic simulator" \
  "(cohort-sim), every guarantee checked:"
"$bin/cohort-sim" --seeds "1..$sim_seeds" >"$dir/sim.out" || { cat "$dir/sim.out"; fail "a simulator seed failed"; }
head -1 "$dir/sim.out"

if $keep; then
  finished=true
  cat <<EOF

The cluster keeps running (cohortd pids ${pids[1]} ${pids[2]} ${pids[3]}); data and logs in $dir.
  stream through it:  $bin/cohort stream --cluster-id $cluster --members $clients --count 10000
  see each node:      $kv --cluster-id $cluster --members $clients status
  stop it:            kill -TERM ${pids[1]} ${pids[2]} ${pids[3]}
EOF
  exit 0
fi
say "stopping the cluster (SIGTERM: the leader hands over first)"
stop_nodes TERM 1 2 3
say "demo finished"

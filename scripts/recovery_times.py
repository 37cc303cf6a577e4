#!/usr/bin/env python3
"""Recovery times of the seed scenarios, median and maximum over many runs (issue 15's targets).

Runs the scenario tests (tests/system/scenario_test.cpp: real cohortd processes, `cohort stream` at 1,000 msg/s)
RUNS times each, with a 3 s outage, and reads the "[ recovery ]" lines they print. Prints a Markdown table for
docs/benchmarks.md. The tests' own assertions (0 lost, 0 duplicated, the same session) must hold in every run:
a failed run is reported and the script exits 1.

    ./run build && scripts/recovery_times.py [--runs 20] [--outage-ms 3000] [--binary PATH]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys

# (gtest name, what the recovery is measured from, target in ms): the targets with default settings,
# 0.3 s from the last needed node's start, election_timeout_min + 0.2 s = 0.7 s from a leader kill.
SCENARIOS = [
    ("ScenarioTest.SingleNodeStoppedAndKilledRestartsAndTheClientResumes", "1. single node", 300),
    ("ScenarioTest.ThreeNodesLeaderKilledTheClientFollowsTheNewLeader", "2. leader killed", 700),
    ("ScenarioTest.ThreeNodesTwoStoppedTheClientResumesOnceAQuorumIsBack", "3. two stopped, one restarted", 300),
    ("ScenarioTest.ThreeNodesAllStoppedAndStartedInARandomOrderTheClientResumes", "4. all stopped, random order", 300),
]
RECOVERY = re.compile(r"\[ recovery \] connected again (\d+) ms after (.*)")


def kind(what: str) -> str:
    """The event a recovery is measured from, without the run's node numbers."""
    return re.sub(r"node \d+", "node N", what)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--outage-ms", type=int, default=3000)
    parser.add_argument("--binary", default="build/release/tests/system/cohort_scenario_tests")
    args = parser.parse_args()
    if not os.access(args.binary, os.X_OK):
        print(f"{args.binary} not found: build the release preset first (./run build)", file=sys.stderr)
        return 2
    env = dict(os.environ, COHORT_SCENARIO_OUTAGE_MS=str(args.outage_ms))
    rows = []
    failed = 0
    for test, label, target in SCENARIOS:
        figures: dict[str, list[int]] = {}
        for run in range(args.runs):
            result = subprocess.run([args.binary, f"--gtest_filter={test}"], env=env, capture_output=True, text=True)
            if result.returncode != 0:
                failed += 1
                print(f"{label}: run {run + 1} FAILED\n{result.stdout[-4000:]}", file=sys.stderr)
                continue
            for ms, what in RECOVERY.findall(result.stdout):
                figures.setdefault(kind(what), []).append(int(ms))
            print(f"{label}: run {run + 1}/{args.runs} done", file=sys.stderr)
        for what, values in figures.items():
            rows.append((label, what, len(values), statistics.median(values), max(values), target))
    print(f"Outage {args.outage_ms} ms, {args.runs} runs per scenario; client connected again after the event:\n")
    print("| scenario | measured from | runs | median | max | target |")
    print("|---|---|---|---|---|---|")
    for label, what, count, median, worst, target in rows:
        print(f"| {label} | {what} | {count} | {median:.0f} ms | {worst} ms | {target} ms |")
    if failed:
        print(f"\n{failed} run(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

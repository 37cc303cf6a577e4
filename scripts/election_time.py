#!/usr/bin/env python3
"""Measures how long a local 3-node cluster of real cohortd processes takes to elect a leader (not run in CI).

Three scenarios, each repeated --runs times:
  fresh    start 3 nodes at once on empty data directories: process start to the first 'leads' line
  restart  the same cluster killed (SIGKILL) and started again at once on its data: process start to 'leads'
  kill     the leader killed with SIGKILL while the others run: the kill to the new leader's 'leads' line

Times come from the nodes' own log lines (microsecond wall-clock stamps) against the script's wall clock taken just
before the first process is spawned (or the kill is sent). Prints each run and the median, minimum and maximum.

  scripts/election_time.py [--bin build/release/tools] [--runs 10] [--scenarios fresh,restart,kill]
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

LEADS = re.compile(r"^(\S+) info: \[node (\d+)\] \[t(\d+) leader\] leads ")


def free_ports(count):
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def stamp_seconds(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f").timestamp()


class Cluster:
    def __init__(self, binary, work, cluster_id):
        self.binary = binary
        self.work = work
        self.cluster_id = cluster_id
        ports = free_ports(6)
        self.members = []
        for i in range(1, 4):
            self.members += ["--member", f"{i},127.0.0.1:{ports[i - 1]},127.0.0.1:{ports[i + 2]}"]
        self.procs = {}

    def log(self, node):
        return os.path.join(self.work, f"node{node}.log")

    def start(self, node):
        args = [self.binary, "--node-id", str(node), "--cluster-id", str(self.cluster_id),
                "--data-dir", os.path.join(self.work, f"node{node}"), "--service", "kv",
                "--log-file", self.log(node)] + self.members
        self.procs[node] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, node):
        proc = self.procs.pop(node)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def kill_all(self):
        for node in list(self.procs):
            self.kill(node)

    def leads_after(self, since, deadline=10.0):
        """(seconds from `since` to the first 'leads' line stamped after it, node), polling the logs."""
        end = time.time() + deadline
        while time.time() < end:
            found = []
            for node in range(1, 4):
                try:
                    with open(self.log(node), encoding="utf-8", errors="replace") as f:
                        for line in f:
                            match = LEADS.match(line)
                            if match and stamp_seconds(match.group(1)) >= since:
                                found.append((stamp_seconds(match.group(1)) - since, int(match.group(2))))
                except FileNotFoundError:
                    pass
            if found:
                return min(found)
            time.sleep(0.02)
        raise RuntimeError("no leader within the deadline")


def summary(name, values):
    ms = sorted(v * 1000 for v in values)
    print(f"{name}: median {statistics.median(ms):.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms "
          f"over {len(ms)} runs: {' '.join(f'{v:.0f}' for v in ms)}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default="build/release/tools")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--scenarios", default="fresh,restart,kill")
    args = parser.parse_args()
    binary = os.path.join(args.bin, "cohortd")
    scenarios = args.scenarios.split(",")
    results = {name: [] for name in scenarios}
    for run in range(args.runs):
        work = tempfile.mkdtemp(prefix="cohort-election.")
        cluster = Cluster(binary, work, 100 + run)
        try:
            began = time.time()
            for node in range(1, 4):
                cluster.start(node)
            took, leader = cluster.leads_after(began)
            if "fresh" in results:
                results["fresh"].append(took)
                print(f"run {run + 1} fresh: node {leader} leads after {took * 1000:.0f} ms", flush=True)
            time.sleep(1.0)  # a little log, every node caught up
            if "restart" in results:
                cluster.kill_all()
                time.sleep(0.2)
                began = time.time()
                for node in range(1, 4):
                    cluster.start(node)
                took, leader = cluster.leads_after(began)
                results["restart"].append(took)
                print(f"run {run + 1} restart: node {leader} leads after {took * 1000:.0f} ms", flush=True)
                time.sleep(1.0)
            if "kill" in results:
                killed_at = time.time()
                cluster.kill(leader)
                took, leader = cluster.leads_after(killed_at)
                results["kill"].append(took)
                print(f"run {run + 1} kill: node {leader} leads {took * 1000:.0f} ms after the kill", flush=True)
        finally:
            cluster.kill_all()
            shutil.rmtree(work, ignore_errors=True)
    for name in scenarios:
        summary(name, results[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())

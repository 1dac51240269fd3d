#!/usr/bin/env python3
"""What Consul's own faults cost the database today (issue 21's baseline), on a local cluster whose Consul
is three real servers and the client agent the nodes talk to (`local up --consul-servers 3`).

For each fault, under write probes on every node (an INSERT every --probe-period on each, counted only
where acknowledged), it reports: the longest stretch without an acknowledged write, how many times the
lock moved to another node (history), fences logged, and, as safety checks, acknowledged writes missing
at the end and samples with two writable nodes. Beside each row: issue 21's target.

    python3 bench/consul_faults.py [--flavor mariadb] [--faults kill-leader,rolling-restart,freeze-3,freeze-10]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.failover import WriteProbe, fences_since, leader_changes, log_offsets, max_gap  # noqa: E402
from mysqlpilot.local import consul_cluster  # noqa: E402
from tests.harness.cluster import Cluster, ReadOnlyPoller  # noqa: E402

FAULTS = ("kill-leader", "rolling-restart", "freeze-3", "freeze-10")
TARGET = "0 failovers, gap <= 1 s"


def run_fault(c: Cluster, fault: str) -> None:
    if fault == "kill-leader":
        consul_cluster.kill_leader(c.dir)
        time.sleep(5.0)                                  # a quorum of two serves meanwhile
        down = [d for d in consul_cluster.server_dirs(c.dir) if not consul_cluster.ConsulAgent.is_running(d)]
        for d in down:
            consul_cluster.restart_server(d)
    elif fault == "rolling-restart":
        consul_cluster.rolling_restart(c.dir, pause=2.0)
    elif fault.startswith("freeze-"):
        consul_cluster.freeze(c.dir, float(fault.split("-", 1)[1]))
    else:
        raise ValueError(fault)


def trial(c: Cluster, fault: str, period: float) -> Dict:
    st = c.wait_healthy(3, timeout=300)
    p = c.node(st, st["primary"])
    c.sql(p["host"], p["port"], "CREATE DATABASE IF NOT EXISTS bench")
    c.sql(p["host"], p["port"], "CREATE TABLE IF NOT EXISTS bench.w (id BIGINT PRIMARY KEY, n INT)")
    probes = [WriteProbe(c, n, h, port, period) for n, h, port in c.addresses()]
    poll = ReadOnlyPoller(c, c.addresses())
    for pr in probes:
        pr.start()
    poll.start()
    offsets = log_offsets(c)
    time.sleep(2.0)
    t0 = time.time()
    run_fault(c, fault)
    t_fault_end = time.time()
    final = c.wait_healthy(3, timeout=300)
    time.sleep(3.0)
    t_end = time.time()
    for pr in probes:
        pr.stop_evt.set()
    poll.stop()
    for pr in probes:
        pr.join(35)
    acks = sorted(t for pr in probes for t in pr.acks)
    return {"fault": fault, "gap": max_gap(acks, t0, t_end), "fault_seconds": t_fault_end - t0,
            "moves": len(leader_changes(final.get("history") or [], t0)), "fences": len(fences_since(c, offsets)),
            "double": len(poll.violations()), "acked": len([t for t in acks if t0 <= t <= t_end])}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flavor", default="mariadb", choices=("mariadb", "mysql"))
    ap.add_argument("--faults", default=",".join(FAULTS))
    ap.add_argument("--probe-period", type=float, default=0.02)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    for f in faults:
        if f not in FAULTS and not f.startswith("freeze-"):
            ap.error(f"unknown fault {f!r}; choose from {', '.join(FAULTS)} (freeze-N for N seconds)")
    work = args.dir or tempfile.mkdtemp(prefix="mysqlpilot-bench-consul-")
    c = Cluster(os.path.join(work, "cl"), env={"MYSQL_ROOT_PASSWORD": "bench-root-pw",
                                               "MYSQL_REPL_PASSWORD": "bench-repl-pw",
                                               "MYSQLPILOT_FAILOVER_BUDGET": "1000",
                                               "MYSQLPILOT_FAILSAFE": os.environ.get("MYSQLPILOT_FAILSAFE", "1")}, flavor=args.flavor)
    rows: List[Dict] = []
    try:
        c.up(3, "--durability", "semi-sync", "--consul-servers", "3")
        for f in faults:
            r = trial(c, f, args.probe_period)
            rows.append(r)
            print(f"  {f}: longest write gap {r['gap']:.2f}s, lock moved {r['moves']}x, fences {r['fences']}, "
                  f"two writable in {r['double']} samples", flush=True)
    finally:
        c.down()
    print(f"\nConsul faults on 3 servers (+ the nodes' client agent), {args.flavor}, semi-sync, default timings; "
          f"write probes every {args.probe_period * 1000:.0f} ms on each node")
    hdr = f"{'fault':<16} {'fault took':>10} {'longest gap':>12} {'lock moved':>11} {'fences':>7} {'2 writable':>11}   target (issue 21)"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['fault']:<16} {r['fault_seconds']:>9.1f}s {r['gap']:>11.2f}s {r['moves']:>11} {r['fences']:>7} "
              f"{r['double']:>11}   {TARGET}")
    return 1 if any(r["double"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Seeded chaos on a real local cluster: write load, faults, and a verdict on safety.

Starts a cluster with `mysqlpilot local up`, runs W writers inserting unique ids into one table on the
current primary and a sampler reading every node's @@read_only every ~75 ms, injects faults one after
another (waiting, bounded, for one primary with every other node replicating before the next), then
reports acknowledged writes lost, phantom rows, samples with two writable nodes and convergence
failures. The cluster is always torn down; its directory (logs) is kept and printed.

    python3 bench/chaos.py --faults 10 --seed 7
    python3 bench/chaos.py --schedule issue13 --hold 14 --json chaos.json

Exit status: 0 when the verdict passes, 1 when it does not, 2 on a usage or harness error.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.harness.chaos import FAULTS, SCHEDULES, make_schedule, run_chaos, write_json  # noqa: E402
from tests.harness.cluster import Cluster  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="faults: " + "; ".join(f"{k}: {v}" for k, v in FAULTS.items()))
    ap.add_argument("--faults", type=int, default=None, help="how many faults to draw (a schedule: its first N)")
    ap.add_argument("--seed", type=int, default=1, help="seeds the draw and the choice of replica targets")
    ap.add_argument("--schedule", choices=sorted(SCHEDULES), default=None, help="a fixed order instead of a draw")
    ap.add_argument("--json", default=None, help="also write the verdict and every event to this file")
    ap.add_argument("--durability", choices=("semi-sync", "async"), default="semi-sync")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--hold", type=float, default=14.0, help="seconds a freeze or partition lasts "
                    "(default 14: longer than the lease and than a failover)")
    ap.add_argument("--converge-timeout", type=float, default=120.0,
                    help="bound on the wait for convergence after each fault")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="seconds for the faults; later ones are not run (and the verdict fails)")
    ap.add_argument("--dir", default=None, help="where the cluster lives (default: a new temporary directory)")
    args = ap.parse_args()
    try:
        faults = make_schedule(args.faults, args.seed, args.schedule)
    except ValueError as exc:
        ap.error(str(exc))
    if args.nodes < 2:
        ap.error("--nodes must be at least 2")
    work = args.dir or tempfile.mkdtemp(prefix="mysqlpilot-chaos-")
    c = Cluster(os.path.join(work, "cl"), env={"MYSQL_ROOT_PASSWORD": "chaos-root-pw",
                                               "MYSQL_REPL_PASSWORD": "chaos-repl-pw"})

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)       # a TERM tears the cluster down like Ctrl-C

    t0 = time.time()
    print(f"chaos: {len(faults)} faults: {', '.join(faults)}", flush=True)
    try:
        verdict = run_chaos(c, faults, nodes=args.nodes, seed=args.seed, hold=args.hold, writers=args.writers,
                            durability=args.durability, converge_timeout=args.converge_timeout,
                            schedule=args.schedule, time_budget=args.time_budget,
                            echo=lambda s: print(s, flush=True))
    except KeyboardInterrupt:
        print(f"interrupted after {time.time() - t0:.0f}s; cluster torn down, logs in {c.dir}", file=sys.stderr)
        return 130
    except AssertionError as exc:
        print(f"chaos run failed before a verdict: {exc}\nlogs in {c.dir}", file=sys.stderr)
        return 2
    print()
    print(verdict.render())
    print()
    print(verdict.render_logs())
    print(f"\ncluster logs: {c.dir}/nodes/*/logs/")
    if args.json:
        write_json(verdict, args.json)
        print(f"verdict written to {args.json}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())

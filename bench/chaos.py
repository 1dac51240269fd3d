#!/usr/bin/env python3
"""Seeded chaos on a real local cluster: write load, faults, and a verdict on safety.

Starts a cluster with `mysqlpilot local up` (its Consul a single-node server with a data dir, so that
it can be restarted), runs W writers inserting unique ids into one table on the current primary and a
sampler reading every node's @@read_only every ~75 ms, injects faults from a seeded plan one after
another, or in overlapping pairs (--overlap: the next fault starts inside a freeze's or partition's
hold), and after each waits (bounded) for one primary with every other node replicating, then checks:
no acknowledged write missing on the primary (semi-sync; in async mode a write may be missing only after an
unplanned failover, acknowledged at most max_lag_on_failover before it, and the report shows lost writes
per failover beside that bound), no sample with two writable nodes (samples in
the first 0.5 s after a frozen node's SIGCONT are reported apart), no datadir moved aside without an
errant transaction. At the end also: no phantom row, replicas' CHECKSUM TABLE equal to the primary's,
and, once the cluster is down, nothing of it left running (processes, nft table, mounts). It stops at
the first violation and prints a one-line verdict with the seed and the fault; `--seed S --faults N`
(with the same --overlap/--durability/--flavor) replays the same plan. The cluster directory is always kept.

--consul-servers 3 makes Consul three real servers (the nodes talk to a client agent, as through their
host's) and adds Consul's own faults to the draw; the failsafe is on (the default since issue 21; --no-failsafe turns it off).

--flavor mysql runs the cluster on Oracle MySQL 9.7 (the sid root of scripts/install-deps.sh, run by
scripts/mysqld-sid; $MYSQLPILOT_MYSQL_ROOT points elsewhere): the writers' refusals are then MySQL's
(1290), a node counts as writable while its super_read_only is OFF (root writes through read_only alone),
and replicas are caught up with WAIT_FOR_EXECUTED_GTID_SET before the checksums.

The failover budget (anti-flapping) is lifted for the run: it is not what this tests.

    python3 bench/chaos.py --faults 10 --seed 7
    python3 bench/chaos.py --faults 200 --seed 1 --overlap --json chaos.json
    python3 bench/chaos.py --schedule issue13 --hold 14 --json chaos.json
    python3 bench/chaos.py --flavor mysql --faults 30 --seed 97 --json chaos-mysql.json
    python3 bench/chaos.py --consul-servers 3 --failsafe --faults 50 --seed 21 --json chaos-consul.json

Exit status: 0 when every check held, 1 when one did not, 2 on a usage or harness error.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.harness.chaos import (ALL_FAULTS, FLAVORS, SCHEDULES, make_plan, make_schedule, replay_command,  # noqa: E402
                                 run_chaos, write_json)
from tests.harness.cluster import Cluster  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="faults: " + "; ".join(f"{k}: {v}" for k, v in ALL_FAULTS.items()))
    ap.add_argument("--faults", type=int, default=None, help="how many faults to draw (a schedule: its first N)")
    ap.add_argument("--seed", type=int, default=1, help="seeds the draw and the choice of replica targets")
    ap.add_argument("--schedule", choices=sorted(SCHEDULES), default=None, help="a fixed order instead of a draw")
    ap.add_argument("--json", default=None, help="also write the verdict and every event to this file")
    ap.add_argument("--durability", choices=("semi-sync", "async"), default="semi-sync")
    ap.add_argument("--flavor", choices=FLAVORS, default="mariadb",
                    help="the server: MariaDB (Debian's), or MySQL 9.7 from the sid root of scripts/install-deps.sh "
                         "($MYSQLPILOT_MYSQL_ROOT)")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--hold", type=float, default=14.0, help="seconds a freeze or partition lasts "
                    "(default 14: longer than the lease and than a failover)")
    ap.add_argument("--converge-timeout", type=float, default=120.0,
                    help="bound on the wait for convergence after each fault")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="seconds for the faults; later ones are not run (and the verdict fails)")
    ap.add_argument("--dir", default=None, help="where the cluster lives (default: a new temporary directory)")
    ap.add_argument("--overlap", action="store_true",
                    help="faults may overlap: after a freeze or partition, the next fault starts at a seeded "
                         "point of its hold")
    ap.add_argument("--keep-going", action="store_true",
                    help="do not stop at the first violation (report them all at the end)")
    ap.add_argument("--writer-timeout", type=float, default=1.0,
                    help="the writers' read timeout in seconds; 0: none (a client that waits as long as it takes)")
    ap.add_argument("--kinds", default=None, help="comma-separated fault kinds to draw from (default: all)")
    ap.add_argument("--consul-servers", type=int, default=1, choices=(1, 3, 5),
                    help="Consul as this many real servers (local up --consul-servers); with 3 or 5 the draw "
                         "includes Consul's own faults (consul-kill-leader, consul-rolling-restart, consul-freeze)")
    ap.add_argument("--failsafe", dest="failsafe", action="store_true", default=True,
                    help="the failsafe on (config key failsafe; the default): the primary rides out Consul "
                         "outages on its members' promises")
    ap.add_argument("--no-failsafe", dest="failsafe", action="store_false",
                    help="the failsafe off, as before issue 21: the primary fences whenever it cannot renew")
    ap.add_argument("--plan", action="store_true", help="print the seeded plan and exit (no cluster)")
    args = ap.parse_args()
    try:
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else None
        faults = make_schedule(args.faults, args.seed, args.schedule, kinds, args.consul_servers)
    except ValueError as exc:
        ap.error(str(exc))
    if args.nodes < 2:
        ap.error("--nodes must be at least 2")
    replay = replay_command(len(faults), args.seed, args.schedule, args.overlap, args.durability, args.nodes,
                            args.hold, kinds, args.flavor, args.writer_timeout or None, args.consul_servers,
                            args.failsafe)
    if args.plan:
        for spec in make_plan(faults, args.seed, overlap=args.overlap, hold=args.hold):
            print(f"{spec.index:4d} {spec.kind}" + (f" ({spec.variant})" if spec.variant else "")
                  + (f", {spec.overlap_after}s into #{spec.index - 1}" if spec.overlap_after is not None else "")
                  + f"  [replica rank {spec.pick:.3f}]")
        print(f"run it: {replay}")
        return 0
    from tests.harness.mariadb_server import flavor_unavailable
    why = flavor_unavailable(args.flavor)
    if why:
        print(f"bench/chaos.py: cannot run {args.flavor}: {why}", file=sys.stderr)
        return 2
    work = args.dir or tempfile.mkdtemp(prefix="mysqlpilot-chaos-")
    c = Cluster(os.path.join(work, "cl"), env={"MYSQL_ROOT_PASSWORD": "chaos-root-pw",
                                               "MYSQL_REPL_PASSWORD": "chaos-repl-pw"}, flavor=args.flavor)

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)       # a TERM tears the cluster down like Ctrl-C

    t0 = time.time()
    print(f"chaos: {args.flavor}, seed {args.seed}, {len(faults)} faults{' (overlapping)' if args.overlap else ''}: "
          f"{', '.join(faults)}\nreplay: {replay}", flush=True)
    try:
        verdict = run_chaos(c, faults, nodes=args.nodes, seed=args.seed, hold=args.hold, writers=args.writers,
                            durability=args.durability, converge_timeout=args.converge_timeout,
                            schedule=args.schedule, time_budget=args.time_budget, overlap=args.overlap, kinds=kinds,
                            stop_on_violation=not args.keep_going, echo=lambda s: print(s, flush=True),
                            writer_timeout=args.writer_timeout or None, consul_servers=args.consul_servers,
                            failsafe=args.failsafe)
    except KeyboardInterrupt:
        print(f"interrupted after {time.time() - t0:.0f}s; cluster torn down, logs in {c.dir}", file=sys.stderr)
        return 130
    except AssertionError as exc:
        print(f"chaos run failed before a verdict: {exc}\nlogs in {c.dir}", file=sys.stderr)
        return 2
    print()
    print(verdict.render_logs())
    print()
    print(verdict.render())
    print(f"\ncluster logs: {c.dir}/nodes/*/logs/")
    if args.json:
        write_json(verdict, args.json)
        print(f"verdict written to {args.json}")
    print(verdict.verdict_line())
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())

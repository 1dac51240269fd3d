#!/usr/bin/env python3
"""Failover benchmark on a real local cluster (Consul + 3 mariadbd + supervisors).

For each scenario and trial it measures, from the moment of the fault:
  - first write: the first INSERT the new primary acknowledges;
  - all replicating: every other live node replicates from the new primary.
It prints median and p95 beside the worst-case bound docs/timing.md derives from the configured
TTLs, lock-delay and intervals (the bound is the baseline these figures are held against).

    python3 bench/failover.py --trials 10 [--durability semi-sync]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mysqlpilot import config as config_mod  # noqa: E402
from tests.harness.cluster import Cluster  # noqa: E402


def bounds(cfg) -> dict:
    """Worst cases from docs/timing.md."""
    lease_anchor = cfg.loop_wait
    promote = 1.0
    return {
        "node SIGKILL": cfg.check_ttl + lease_anchor + cfg.lock_delay + cfg.loop_wait + promote,
        "mysqld crash": cfg.loop_wait + 2 + cfg.lock_delay + cfg.loop_wait + promote,
        # target already caught up: one wake-up of its loop plus the promotion
        "switchover": cfg.loop_wait + promote,
    }


class FirstWrite(threading.Thread):
    """Tries an INSERT on the current primary every 50 ms; records the first success after start."""

    def __init__(self, c: Cluster, exclude: str):
        super().__init__(daemon=True)
        self.c, self.exclude = c, exclude
        self.t_ok = None
        self.stop_evt = threading.Event()

    def run(self):
        n = 0
        while not self.stop_evt.is_set() and self.t_ok is None:
            try:
                st = self.c.status()
                p = st["primary"]
                if p and p != self.exclude:
                    pn = self.c.node(st, p)
                    self.c.sql(pn["host"], pn["port"], f"INSERT INTO bench.w VALUES ({time.time_ns()}, {n})")
                    self.t_ok = time.time()
            except Exception:  # noqa: BLE001
                pass
            n += 1
            time.sleep(0.05)


def pct(vals, q):
    if not vals:
        return float("nan")
    s = sorted(vals)
    k = max(0, min(len(s) - 1, int(round(q * (len(s) - 1)))))
    return s[k]


def trial(c: Cluster, scenario: str) -> tuple:
    st = c.wait_healthy(3, timeout=300)
    old = st["primary"]
    p = c.node(st, old)
    c.sql(p["host"], p["port"], "CREATE DATABASE IF NOT EXISTS bench")
    c.sql(p["host"], p["port"], "CREATE TABLE IF NOT EXISTS bench.w (id BIGINT PRIMARY KEY, n INT)")
    time.sleep(1.0)
    t0 = time.time()
    if scenario == "node SIGKILL":
        c.cli("local", "kill", old, "--dir", c.dir, "--signal", "KILL")
    elif scenario == "mysqld crash":
        c.kill_mysqld(old)
    else:
        # Planned switchover: what matters is how long writes were refused, which the new primary
        # measures from the moment the old one fenced until it accepts writes (recorded in history).
        target = sorted(n["name"] for n in st["nodes"] if n["name"] != old)[0]
        c.cli("switchover", "--to", target, config=True)
        rec = c.status()["history"][-1]
        c.wait_healthy(3, timeout=120, primary_not=old)
        return float(rec["durations"]["write_unavailable"]), time.time() - t0
    fw = FirstWrite(c, old)
    fw.start()
    live = 2 if scenario == "node SIGKILL" else 3
    c.wait_healthy(live, timeout=120, primary_not=old)
    t_all = time.time()
    fw.join(60)
    fw.stop_evt.set()
    if scenario == "node SIGKILL":
        c.cli("local", "start", old, "--dir", c.dir)
    return (fw.t_ok - t0) if fw.t_ok else float("nan"), t_all - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--durability", default="semi-sync", choices=("async", "semi-sync"))
    ap.add_argument("--scenarios", default="node SIGKILL,mysqld crash,switchover")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--flavor", default="mariadb", choices=("mariadb", "mysql"),
                    help="mysql: MySQL 9.7 from the sid root of scripts/install-deps.sh")
    args = ap.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="mysqlpilot-bench-")
    # Repeated failovers on purpose: lift the anti-flapping budget for the benchmark.
    c = Cluster(os.path.join(work, "cl"), env={"MYSQL_ROOT_PASSWORD": "bench-root-pw",
                                               "MYSQL_REPL_PASSWORD": "bench-repl-pw",
                                               "MYSQLPILOT_FAILOVER_BUDGET": "1000"}, flavor=args.flavor)
    results = {}
    try:
        c.up(3, "--durability", args.durability)
        cfg = config_mod.load(c.config_path, env={})
        bound = bounds(cfg)
        for sc in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
            fw, alls = [], []
            for i in range(args.trials):
                a, b = trial(c, sc)
                fw.append(a)
                alls.append(b)
                print(f"  {sc} trial {i + 1}/{args.trials}: first write {a:.2f}s, all replicating {b:.2f}s",
                      flush=True)
            results[sc] = (fw, alls)
    finally:
        c.down()
    print()
    print(f"failover on this machine ({args.flavor}), {args.trials} trials each, durability {args.durability}")
    print("first write = fault until the new primary accepts a write (switchover: writes refused, from "
          "history);")
    print("all replicating = fault until every live replica replicates from the new primary")
    hdr = f"{'scenario':<14} {'first write p50':>16} {'p95':>7} {'all replicating p50':>20} {'p95':>7} " \
          f"{'documented bound':>17}"
    print(hdr)
    print("-" * len(hdr))
    for sc, (fw, alls) in results.items():
        ok = [x for x in fw if x == x]
        print(f"{sc:<14} {statistics.median(ok) if ok else float('nan'):>15.2f}s {pct(ok, .95):>6.2f}s "
              f"{statistics.median(alls):>19.2f}s {pct(alls, .95):>6.2f}s {bound[sc]:>16.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

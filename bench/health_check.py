#!/usr/bin/env python3
"""CPU of one ContainerPilot health check, before and after issue 20, on a real local cluster.

Runs, for each node of a 3-node cluster, the shipped health check (docker/containerpilot.json5: a curl
of the node API's /read-only, `mysqlpilot health` only when that is not 200) and the old one
(`mysqlpilot health`, a Python start each time) --runs times each, and prints the CPU (user + system,
from the children's rusage) and wall time per run. The old check is the baseline, measured in the same
run on the same nodes.

    python3 bench/health_check.py [--runs 20] [--flavor mariadb] [--dir DIR]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mysqlpilot.local import cp_config  # noqa: E402
from mysqlpilot.local.cluster import node_env  # noqa: E402
from tests.harness.cluster import Cluster  # noqa: E402

SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docker", "containerpilot.json5")


def shipped_health(env) -> List[str]:
    cfg = cp_config.load(SHIPPED, env)
    return next(j["health"]["exec"] for j in cfg["jobs"] if "health" in j)


def measure(cmd: List[str], env, runs: int) -> Tuple[float, float, int]:
    """(CPU seconds per run, wall seconds per run, runs that exited 0)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    ok = 0
    t0 = time.monotonic()
    for _ in range(runs):
        ok += subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / runs, wall / runs, ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--flavor", default="mariadb", choices=("mariadb", "mysql"))
    ap.add_argument("--dir", default=None)
    args = ap.parse_args(argv)
    work = args.dir or tempfile.mkdtemp(prefix="mysqlpilot-bench-health-")
    c = Cluster(os.path.join(work, "cl"), env={"MYSQL_ROOT_PASSWORD": "bench-root-pw",
                                               "MYSQL_REPL_PASSWORD": "bench-repl-pw"}, flavor=args.flavor)
    try:
        c.up(3, "--durability", "semi-sync")
        st = c.wait_healthy(3)
        reg = c.registry()
        rows = []
        for name, n in sorted(reg["nodes"].items(), key=lambda x: x[1]["k"]):
            env = dict(os.environ, **node_env(c.dir, name, n["k"], n["port"], reg["consul"], reg.get("durability")))
            role = "primary" if name == st["primary"] else "replica"
            old = measure(["mysqlpilot", "health"], env, args.runs)
            new = measure(shipped_health(env), env, args.runs)
            rows.append((name, role, old, new))
        print(f"\nCPU of one health check, {args.runs} runs per node and check, {args.flavor}, this machine "
              f"({os.cpu_count()} CPUs); baseline: `mysqlpilot health` (before issue 20)")
        hdr = f"{'node':<7} {'role':<8} {'before: CPU':>12} {'wall':>8} {'ok':>5}   {'after: CPU':>11} {'wall':>8} {'ok':>5}   {'CPU saved':>9}"
        print(hdr)
        print("-" * len(hdr))
        for name, role, (oc, ow, ook), (nc, nw, nok) in rows:
            print(f"{name:<7} {role:<8} {oc * 1000:>10.1f}ms {ow * 1000:>6.0f}ms {ook:>2}/{args.runs:<2}   "
                  f"{nc * 1000:>9.1f}ms {nw * 1000:>6.0f}ms {nok:>2}/{args.runs:<2}   {(1 - nc / oc) * 100:>8.0f}%")
        every = 2.0
        worst = max(r[3][0] for r in rows)
        print(f"at one check every {every:g} s (health_interval): before {max(r[2][0] for r in rows) / every * 100:.1f} % "
              f"of one CPU, after {worst / every * 100:.2f} %")
        return 0
    finally:
        c.down()


if __name__ == "__main__":
    sys.exit(main())

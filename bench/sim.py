#!/usr/bin/env python3
"""Deterministic simulation of the HA protocol (issue 19): runs seeds S..S+N-1, each a whole cluster (the
real Node code, simulated Consul and mysqld, faults) on a virtual clock, checks the invariants after every
step, and reports what the runs reached of the decision table. A failing seed replays exactly, and is
shrunk to the shortest fault schedule that still breaks the same invariant, with the command that
replays that schedule.

    python3 bench/sim.py --seeds 10000 [--start 0] [--jobs N] [--scenario short] [--json FILE]
    python3 bench/sim.py --minutes 60 [--start S]            # nightly: seeds from S until the time is up
    python3 bench/sim.py --start 25 --seeds 1 [--schedule "t:kind:node:seed,..."] -v    # replay one
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.sim import coverage  # noqa: E402
from tests.sim.defects import DEFECTS  # noqa: E402
from tests.sim.runner import Options, Runner, run_world, spell, world  # noqa: E402
from tests.sim.shrink import shrink  # noqa: E402
from tests.sim.world import SCENARIOS  # noqa: E402


def args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=None, help="how many seeds (default 100; with --minutes: at most)")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--minutes", type=float, help="run seeds from --start until this much time has passed "
                    "(with --seeds: or that many seeds have run, whichever comes first)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)")
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--defect", choices=sorted(DEFECTS), help="put a fixed defect back (tests/sim/defects.py)")
    ap.add_argument("--faults", default="", help="fault weights, e.g. freeze=6,failover=6 (default: every kind)")
    ap.add_argument("--durability", choices=("async", "semi-sync"), help="default: each seed draws one")
    ap.add_argument("--failsafe", choices=("on", "off", "draw"), default="off",
                    help="config key failsafe on every node: on, off (its default), or drawn per seed")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="full", help="run length (world.SCENARIOS)")
    ap.add_argument("--schedule", help='a fault schedule in place of the seed\'s: "t:kind:node:seed,..."')
    ap.add_argument("--no-shrink", action="store_true", help="report failing seeds without shrinking them")
    ap.add_argument("--shrink-findings", action="store_true", help="shrink known findings too")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every step (replay one seed)")
    a = ap.parse_args(argv)
    a.seeds_given = a.seeds is not None
    a.seeds = 100 if a.seeds is None else a.seeds
    return a


def replay_verbose(a, opts: Options) -> int:
    """One seed, every step printed."""
    w = world(a.start, opts, verbose=True)
    v = run_world(w, opts)
    print(f"schedule: {spell(w.plan)}")
    if v is None:
        print(f"PASS: seed {a.start}, {w.steps} steps")
        return 0
    print(f"seed {a.start}: {v.invariant}: {v.detail}")
    return 1


def main(argv=None) -> int:
    a = args(argv)
    opts = Options(a.faults, a.durability, a.defect, a.scenario, a.schedule, a.failsafe)
    if a.verbose:
        return replay_verbose(a, opts)
    t0 = time.monotonic()
    with Runner(opts, a.jobs) as r:
        # --minutes with --seeds: at most that many seeds, stopping early when the time is up.
        s = r.run_for(a.start, a.minutes * 60, most=a.seeds if a.seeds_given else None) if a.minutes \
            else r.run(a.start, a.seeds)
    secs = time.monotonic() - t0
    for v in s.violations + (s.findings if a.shrink_findings else []):
        if not a.no_shrink:
            got = shrink(v["seed"], opts)
            if got is not None:
                v["shrunk"] = got.to_dict()
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"seeds": s.seeds, "start": s.first, "steps": s.steps, "seconds": round(secs, 3),
                       "jobs": a.jobs, "scenario": a.scenario, "violations": s.violations, "findings": s.findings,
                       "coverage": coverage.report(s.coverage)}, fh, indent=1)
    verdict = "FAIL" if s.violations else "PASS"
    print(f"{verdict}: {s.seeds} seeds ({s.first}..{s.last}), {s.steps} steps, {len(s.violations)} violations, "
          f"{len(s.findings)} known findings, {secs:.1f}s ({s.seeds / secs:.2f} seeds/s, {a.jobs} jobs, "
          f"scenario {a.scenario})")
    for v in s.violations + s.findings:
        print(f"  seed {v['seed']}: {v['invariant']}: {v['detail']}\n    replay: {v['replay']}")
        if "shrunk" in v:
            print(f"    shrunk to {v['shrunk']['faults']} of {v['faults']} faults: {v['shrunk']['replay']}")
    return 1 if s.violations else 0


if __name__ == "__main__":
    sys.exit(main())

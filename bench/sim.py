#!/usr/bin/env python3
"""Deterministic simulation of the HA protocol (issue 19, first slice): runs seeds S..S+N-1, each a whole
cluster (the real Node code, simulated Consul and mysqld, faults) on a virtual clock, and checks the
invariants after every step. A failing seed replays exactly: `bench/sim.py --seeds 1 --start SEED -v`.

    python3 bench/sim.py --seeds 200 [--start 0] [--json FILE] [-v]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import contextlib  # noqa: E402

from tests.sim.defects import DEFECTS, put_back  # noqa: E402
from tests.sim.world import FINDINGS, World, params  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--defect", choices=sorted(DEFECTS), help="put a fixed defect back (tests/sim/defects.py)")
    ap.add_argument("--faults", default="", help="fault weights, e.g. freeze=6,failover=6 (default: every kind)")
    ap.add_argument("--durability", choices=("async", "semi-sync"), help="default: each seed draws one")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every step (replay one seed)")
    a = ap.parse_args(argv)
    extra = "".join(f" --{k} {v}" for k, v in (("defect", a.defect), ("faults", a.faults),
                                                  ("durability", a.durability)) if v)
    t0 = time.monotonic()
    steps, violations, findings, faults = 0, [], [], {}
    for seed in range(a.start, a.start + a.seeds):
        w = World(seed, params(a.faults, a.durability), verbose=a.verbose)
        with put_back(a.defect) if a.defect else contextlib.nullcontext():
            v = w.run()
        steps += w.steps
        for k, n in w.faults_seen.items():
            faults[k] = faults.get(k, 0) + n
        if v is not None:
            rec = {"seed": seed, "invariant": v.invariant, "detail": v.detail,
                   "replay": f"python3 bench/sim.py --seeds 1 --start {seed}{extra} -v"}
            (findings if v.invariant in FINDINGS else violations).append(rec)
            if a.verbose:
                print("\n".join(w.log[-40:]))
    secs = time.monotonic() - t0
    verdict = "FAIL" if violations else "PASS"
    print(f"{verdict}: {a.seeds} seeds ({a.start}..{a.start + a.seeds - 1}), {steps} steps, {len(violations)} "
          f"violations, {len(findings)} known findings, {secs:.1f}s ({a.seeds / secs:.2f} seeds/s)")
    for r in violations + findings:
        print(f"  seed {r['seed']}: {r['invariant']}: {r['detail']}\n    replay: {r['replay']}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"seeds": a.seeds, "start": a.start, "steps": steps, "seconds": round(secs, 3),
                       "violations": violations, "findings": findings, "coverage": {"faults": faults}},
                      fh, indent=1)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())

"""Shrinking a failing seed: delta debugging (Zeller's ddmin) over its fault schedule. A candidate
schedule is kept if the seed, replayed with it, still breaks the same invariant; the result is
1-minimal (dropping any one fault more makes it pass, or fail otherwise)."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

from .faults import Fault
from .runner import Options, run_world, spell, with_schedule, world


def ddmin(plan: Sequence[Fault], fails: Callable[[List[Fault]], bool], budget: int = 300) -> List[Fault]:
    """The smallest sub-schedule found (order kept) for which `fails` holds; at most `budget` tests."""
    cur, n, tests = list(plan), 2, 0

    def test(sub: List[Fault]) -> bool:
        nonlocal tests
        tests += 1
        return fails(sub)

    if test([]):
        return []
    while len(cur) >= 2 and tests < budget:
        size = -(-len(cur) // n)
        chunks = [cur[i:i + size] for i in range(0, len(cur), size)]
        for c in chunks:                                # one chunk alone
            if tests < budget and test(c):
                cur, n = c, 2
                break
        else:
            for i in range(len(chunks) if len(chunks) > 2 else 0):   # all but one chunk (of 2: tried above)
                rest = [f for j, c in enumerate(chunks) if j != i for f in c]
                if tests < budget and test(rest):
                    cur, n = rest, max(n - 1, 2)
                    break
            else:
                if n >= len(cur):
                    break
                n = min(len(cur), 2 * n)
    return cur


class Shrunk:
    def __init__(self, seed: int, opts: Options, invariant: str, plan: List[Fault], tests: int):
        self.seed, self.invariant, self.plan, self.tests = seed, invariant, plan, tests
        self.opts = with_schedule(opts, plan)

    @property
    def replay(self) -> str:
        return self.opts.replay(self.seed)

    def to_dict(self) -> dict:
        return {"faults": len(self.plan), "schedule": spell(self.plan), "tests": self.tests,
                "replay": self.replay}


def shrink(seed: int, opts: Options, budget: int = 300) -> Optional[Shrunk]:
    """The seed's shortest failing schedule, or None if the seed passes."""
    w = world(seed, opts)
    v = run_world(w, opts)
    if v is None:
        return None
    tests = 0

    def fails(sub: List[Fault]) -> bool:
        nonlocal tests
        tests += 1
        got = run_world(world(seed, with_schedule(opts, sub)), opts)
        return got is not None and got.invariant == v.invariant

    plan = ddmin(w.plan, fails, budget)
    return Shrunk(seed, opts, v.invariant, plan, tests)

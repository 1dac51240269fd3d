"""Runs many seeds, in one process or a pool of workers, and sums them up. Each seed is a world of its
own, run to the end in one worker: results are the same whatever the number of workers, and are
gathered in seed order."""
from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterable, Iterator, List, Optional

from . import coverage
from .defects import put_back
from .faults import Fault
from .invariants import FINDINGS
from .world import World, params


@dataclass(frozen=True)
class Options:
    """What every seed of a run shares (sent to the workers, so plain values only)."""
    faults: str = ""                  # fault weights, as the CLI spells them
    durability: Optional[str] = None
    defect: Optional[str] = None      # a fixed defect put back (defects.py)
    scenario: str = "full"            # world.SCENARIOS
    schedule: Optional[str] = None    # a fault schedule in place of the seed's, spelled "t:kind:node:seed,..."
    failsafe: str = "off"             # "on", "off", or "draw" (world.Params)

    def flags(self) -> str:
        """The CLI flags that give the same run."""
        out = "".join(f" --{k} {v}" for k, v in (("defect", self.defect), ("faults", self.faults),
                                                  ("durability", self.durability)) if v)
        if self.failsafe != "off":
            out += f" --failsafe {self.failsafe}"
        if self.scenario != "full":
            out += f" --scenario {self.scenario}"
        if self.schedule is not None:
            out += f' --schedule "{self.schedule}"'
        return out

    def replay(self, seed: int) -> str:
        return f"python3 bench/sim.py --start {seed} --seeds 1{self.flags()} -v"


def spell(plan: Iterable[Fault]) -> str:
    # The time as repr() gives it, which float() reads back to the same number: Fault.spell's three
    # decimals would move each fault a little, and the replay would no longer be exact.
    return ",".join(f"{f.t!r}:{f.kind}:{f.node}:{f.seed}" for f in plan)


def unspell(text: Optional[str]) -> Optional[List[Fault]]:
    if text is None:
        return None
    return [Fault.parse(x) for x in text.split(",") if x]


def world(seed: int, opts: Options, verbose: bool = False) -> World:
    return World(seed, params(opts.faults, opts.durability, opts.scenario, opts.failsafe), verbose=verbose,
                 schedule=unspell(opts.schedule))


def run_world(w: World, opts: Options):
    with put_back(opts.defect) if opts.defect else contextlib.nullcontext():
        return w.run()


def run_seed(seed: int, opts: Options) -> Dict[str, Any]:
    """One seed, summed up in plain values."""
    w = world(seed, opts)
    v = run_world(w, opts)
    out: Dict[str, Any] = {"seed": seed, "steps": w.steps, "coverage": w.coverage.to_dict(w.faults_seen)}
    if v is not None:
        out["violation"] = {"seed": seed, "invariant": v.invariant, "detail": v.detail,
                            "schedule": spell(w.plan), "faults": len(w.plan), "replay": opts.replay(seed)}
    return out


def _run_one(job) -> Dict[str, Any]:
    return run_seed(*job)


@dataclass
class Summary:
    seeds: int = 0
    first: Optional[int] = None
    last: Optional[int] = None
    steps: int = 0
    violations: List[Dict[str, Any]] = field(default_factory=list)
    findings: List[Dict[str, Any]] = field(default_factory=list)
    coverage: Dict[str, Dict[str, int]] = field(default_factory=dict)

    def add(self, r: Dict[str, Any]) -> None:
        self.seeds += 1
        self.first = r["seed"] if self.first is None else self.first
        self.last = r["seed"]
        self.steps += r["steps"]
        coverage.merge(self.coverage, r["coverage"])
        v = r.get("violation")
        if v is not None:
            (self.findings if v["invariant"] in FINDINGS else self.violations).append(v)


GC_THRESHOLD = (50_000, 20, 100)   # a run allocates many short-lived objects: collect less often (~4% faster)


def _worker_init() -> None:
    gc.set_threshold(*GC_THRESHOLD)


class Runner:
    """Seeds run by `jobs` workers (1: in this process). A pool is forked once and kept for every batch."""

    def __init__(self, opts: Options, jobs: Optional[int] = None):
        self.opts, self.jobs = opts, max(1, jobs or os.cpu_count() or 1)
        self._pool = None
        self._gc = gc.get_threshold()

    def __enter__(self) -> "Runner":
        if self.jobs > 1:
            self._pool = multiprocessing.get_context("fork").Pool(self.jobs, initializer=_worker_init)
        else:
            _worker_init()
        return self

    def __exit__(self, *exc) -> None:
        gc.set_threshold(*self._gc)
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def results(self, seeds: Iterable[int]) -> Iterator[Dict[str, Any]]:
        jobs = [(s, self.opts) for s in seeds]
        if self._pool is None:
            return map(_run_one, jobs)
        # Small chunks keep both workers busy to the end; imap keeps seed order.
        return self._pool.imap(_run_one, jobs, chunksize=max(1, min(16, len(jobs) // (8 * self.jobs))))

    def run(self, start: int, count: int, summary: Optional[Summary] = None) -> Summary:
        s = summary or Summary()
        for r in self.results(range(start, start + count)):
            s.add(r)
        return s

    def run_for(self, start: int, seconds: float, summary: Optional[Summary] = None,
                most: Optional[int] = None) -> Summary:
        """Seeds from `start` on, in batches, until `seconds` have passed (the nightly run), or `most` seeds
        have run (CI: a seed count, cut short on a slower machine rather than overrun its budget)."""
        s, end, seed = summary or Summary(), time.monotonic() + seconds, start
        batch = 20 * self.jobs
        while time.monotonic() < end and (most is None or seed - start < most):
            self.run(seed, batch if most is None else min(batch, start + most - seed), s)
            seed += batch
        return s


def with_schedule(opts: Options, plan: Iterable[Fault]) -> Options:
    return replace(opts, schedule=spell(plan))

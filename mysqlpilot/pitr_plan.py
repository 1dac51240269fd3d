"""Which archived binlog bytes a point-in-time restore replays on top of a snapshot. Pure.

Runs are read oldest first. A run is trusted only up to where the next run's history begins (its first
file's start set): what an old primary archived after that point never reached the new primary, so it
is not the cluster's history (a failover lost it). Within that, a transaction is replayed when the
snapshot (or an earlier step) lacks it and it is not past the target. Before the first transaction a
file adds, every transaction before that file must already be applied; otherwise the archive has a gap.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional

from . import gtid as gtidlib
from .binlog_catalog import ArchiveFile, ArchiveRun
from .errors import PilotError


class PlanError(PilotError):
    """The archive cannot take the snapshot to the target; the message says what it covers."""


@dataclass(frozen=True)
class Target:
    time: Optional[int] = None      # replay transactions committed at or before this second
    gtid: Optional[str] = None      # replay until this GTID set is applied

    def describe(self) -> str:
        if self.gtid:
            return f"GTID {self.gtid}"
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time)) if self.time else "the end"


@dataclass(frozen=True)
class Step:
    run: str
    file: str
    start: int          # replay from this offset (a transaction's GTID event)
    stop: int           # truncate the file here
    txns: int
    last_gtid: str


@dataclass
class Plan:
    steps: List[Step] = field(default_factory=list)
    reached: str = ""               # the GTID set the result holds
    gaps: List[str] = field(default_factory=list)   # crossed only with force
    last_ts: int = 0                # the newest replayed transaction's time

    @property
    def txns(self) -> int:
        return sum(s.txns for s in self.steps)


def _fmt(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def covered(runs: List[ArchiveRun]) -> str:
    """What the archive covers, for refusals."""
    firsts = [t.ts for r in runs for f in r.files for t in f.transactions()[:1]]
    if not firsts:
        return "the archive holds no transactions"
    until = max(r.covered_until for r in runs)
    return f"the archive covers {_fmt(min(firsts))} to {_fmt(until)}"


class _Walk:
    def __init__(self, dialect: str, snapshot_gtid: str, target: Target, force: bool):
        self.d, self.target, self.force = dialect, target, force
        self.plan = Plan(reached=snapshot_gtid or "")
        self.done = False

    def has(self, g: str) -> bool:
        return bool(self.plan.reached) and gtidlib.contains(self.d, self.plan.reached, g)

    def past_target(self, ts: int) -> bool:
        if self.target.gtid:
            return self.has(self.target.gtid)
        return self.target.time is not None and ts > self.target.time

    def file(self, f: ArchiveFile, caps: List[str]) -> bool:
        """Add the file's step; False when the run must not be read further."""
        start = stop = None
        n, last = 0, ""
        for t in f.transactions():
            if self.has(t.gtid):
                if start is None:
                    continue
                stop = t.offset                          # already applied after new ones: end here
                break
            if any(not gtidlib.contains(self.d, c, t.gtid) for c in caps) or self.past_target(t.ts):
                stop = t.offset
                self.done = self.past_target(t.ts)
                break
            if start is None:
                self.check_continuity(f)
                start = t.offset
            self.plan.reached = gtidlib.union_all(self.d, [self.plan.reached, t.gtid])
            self.plan.last_ts = max(self.plan.last_ts, t.ts)
            n, last = n + 1, t.gtid
        if start is not None:
            self.plan.steps.append(Step(f.run, f.name, start, stop if stop is not None else f.end, n, last))
        return stop is None

    def check_continuity(self, f: ArchiveFile) -> None:
        before = f.start_set
        why = f.hole
        if not why and before is None:
            why = f"{f.name} (run {f.run}) lacks its first segment"
        if not why and before and not self.has(before):
            why = (f"transactions {gtidlib.subtract(self.d, before, self.plan.reached)} come before {f.name} "
                   f"(run {f.run}) and are in no earlier segment")
        if why:
            if not self.force:
                raise PlanError(f"the archive has a gap: {why}; a restore across it would miss them (--force "
                                "crosses it)")
            self.plan.gaps.append(why)


def plan(dialect: str, snapshot_gtid: str, runs: List[ArchiveRun], target: Target,
         force: bool = False, within: Optional[str] = None) -> Plan:
    """`within`: replay nothing outside this set (a new replica's: the primary's executed set, so it
    never takes what an old primary archived and a failover lost)."""
    w = _Walk(dialect, snapshot_gtid, target, force)
    for i, run in enumerate(runs):
        cap = runs[i + 1].start_set if i + 1 < len(runs) else None
        caps = [c for c in (cap, within) if c is not None]
        for f in run.files:
            if not w.file(f, caps) or w.done:
                break
        if w.done:
            break
    if target.gtid and not w.has(target.gtid):
        raise PlanError(f"GTID {target.gtid} is not in the archive: the snapshot and the archive reach "
                        f"{w.plan.reached or 'nothing'}; {covered(runs)}")
    if target.time is not None and not w.done:
        until = max((r.covered_until for r in runs), default=0.0)
        if target.time > until:
            raise PlanError(f"{target.describe()} is past what the archive holds: {covered(runs)}")
    return w.plan

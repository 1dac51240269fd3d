"""The walk of `mysqlpilot restart` (issue 24), as pure functions over the members' records.

Replicas restart one at a time, each back and caught up before the next; then the primary role moves with a
switchover (the only moment writes wait); then the old primary restarts as a replica. A restart of the
primary alone is the same switchover and restart. `--pending` keeps only the nodes whose records list
settings that wait for a restart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

from . import gtid
from .errors import PilotError
from .model import MemberState

RESTART, SWITCHOVER = "restart", "switchover"


@dataclass
class Step:
    kind: str                          # RESTART or SWITCHOVER
    node: str                          # the node restarted, or the primary the role moves away from


def plan(members: Sequence[MemberState], primary: Optional[str], node: Optional[str], rolling: bool,
         pending: bool) -> List[Step]:
    """The steps, in order; a walk that cannot be done safely raises a one-line PilotError before any."""
    if primary is None:
        raise PilotError("there is no primary: a restart walk needs one (mysqlpilot status says why)")
    if node is None and not rolling:
        raise PilotError("name the node to restart, or pass --rolling for every node")
    by_name = {m.name: m for m in members}
    if node is not None and node not in by_name:
        raise PilotError(f"no member named {node!r} in this cluster (mysqlpilot status lists them)")
    chosen = [m for m in sorted(members, key=lambda m: m.name) if node is None or m.name == node]
    if pending:
        chosen = [m for m in chosen if m.pending_restart]
        if not chosen:
            raise PilotError("no node has settings pending a restart (mysqlpilot status shows them)")
    for m in members:
        if m.name != primary and not (m.alive and m.healthy):
            # Restarting beside a broken replica could leave no replica to switch over to, or lose the
            # only copy that acknowledges writes: fix it (or `forget` it) first.
            raise PilotError(f"{m.name} is not a healthy replica ({m.message or 'no recent health report'}); "
                             "fix or forget it before a restart")
    replicas = [m for m in members if m.name != primary]
    steps = [Step(RESTART, m.name) for m in chosen if m.name != primary]
    if any(m.name == primary for m in chosen):
        if not any(not m.nofailover for m in replicas):
            raise PilotError(f"{primary} is the primary and no replica can take the role: restarting it would "
                             "stop writes; add a replica first, or stop it by hand")
        steps += [Step(SWITCHOVER, primary), Step(RESTART, primary)]
    return steps


def caught_up(dialect: str, replica: Optional[MemberState], primary_executed: str) -> bool:
    """The replica is back serving and holds every transaction the primary had when it came back."""
    return (replica is not None and replica.alive and replica.healthy and replica.role == "replica"
            and gtid.contains(dialect, replica.gtid_executed or "", primary_executed or ""))

"""Which member takes a due snapshot. Pure.

A healthy replica by preference, so the primary's disks and buffer pool are spared the backup's reads: a
nofailover one first (it is never promoted anyway), else the lowest priority, least lagging, by name. A
replica qualifies only if, without it, another replica is left to promote: while its backup runs it is
ranked last among equally advanced failover candidates (analysis.rank_candidates). With no replica that
qualifies, the primary takes it. If a replica was chosen but no snapshot came within REPLICA_GRACE past
the interval (its job failed, or is not running), the primary takes it too; the Consul snapshot lock keeps
the two from running at once.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

from .model import MemberState, SnapshotManifest

REPLICA_MAX_LAG = 30.0      # seconds: a snapshot is taken from what the cluster has now, not minutes ago
REPLICA_GRACE = 150.0       # two of the snapshot job's default 60 s checks, and some


def choose(members: List[MemberState], primary: str) -> Tuple[Optional[str], str]:
    """(the replica to take it, why) or (None, why the primary takes it)."""
    fit = [m for m in members if m.name != primary and m.alive and m.healthy and m.role == "replica"
           and m.lag_seconds is not None and m.lag_seconds <= REPLICA_MAX_LAG]
    promotable = [m.name for m in fit if not m.nofailover]

    def leaves_one(m: MemberState) -> bool:
        return m.nofailover or any(n != m.name for n in promotable)
    ok = [m for m in fit if leaves_one(m)]
    if not ok:
        return None, (f"no replica qualifies (healthy, lag at most {REPLICA_MAX_LAG:.0f}s, and another "
                      "replica left to promote meanwhile)")
    best = sorted(ok, key=lambda m: (not m.nofailover, m.priority, m.lag_seconds, m.name))[0]
    return best.name, (f"replica {best.name} ({'nofailover' if best.nofailover else f'priority {best.priority}'}, "
                       f"lag {best.lag_seconds:.0f}s)")


def primary_takes_over(latest: Optional[SnapshotManifest], now: float, interval: int) -> bool:
    """The chosen replica has had its chance: the snapshot is overdue by more than the grace."""
    return latest is None or now - latest.created >= interval + REPLICA_GRACE

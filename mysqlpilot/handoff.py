"""The free lock: how long this node has waited, and whether a hand-off lets anyone skip the wait.

Pure functions over what one pass read (no I/O; callers pass the clocks). A hand-off is one fact, written
by the holder into the leader key in the same operation as the release (dcs.base.Release): "I released
lock generation G at time T, fenced; (to X)". Operator requests (`switchover` key) are bound to the
lock generation they were made in, never to the wall clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

from .dcs.base import Release, Request


@dataclass(frozen=True)
class FreeWait:
    """This node's own first sight of one free state of the lock: a lock generation, at a DCS index."""
    lock_index: int
    index: int
    since: float                       # boot-time clock

    def to_dict(self) -> dict:
        return {"lock_index": self.lock_index, "index": self.index, "since": self.since}


def lock_wait(saved: Any, lock_index: int, index: int, now: float) -> Tuple[FreeWait, float]:
    """(the first sight to keep, seconds since it). A remembered sight counts only for the same
    generation, if Consul's history did not restart since (its index went backwards: data lost, a
    snapshot restored, the key deleted and LockIndex back at 0 is caught by the caller clearing the
    sight whenever the lock is held)."""
    if isinstance(saved, dict):
        li, ix, since = saved.get("lock_index"), saved.get("index"), saved.get("since")
        if li == lock_index and isinstance(ix, int) and not isinstance(ix, bool) and ix <= index \
                and isinstance(since, (int, float)) and since <= now:
            return FreeWait(lock_index, ix, float(since)), now - float(since)
    return FreeWait(lock_index, index, now), 0.0


def handoff_valid(rel: Optional[Release], lock_index: int, wall_now: float, max_age: float) -> Tuple[bool, str]:
    """Does this release marker speak for the free lock now? Only for the generation it released, and only
    while young: one brought back by a Consul snapshot restore or `kv import` must not skip lock-delay."""
    if rel is None:
        return False, "no hand-off marker"
    if rel.lock_index is None or rel.lock_index != lock_index:
        return False, (f"hand-off marker of {rel.name} is for lock generation {rel.lock_index}, the lock is at "
                       f"{lock_index}")
    age = wall_now - rel.at
    if not -1.0 <= age <= max_age:
        return False, f"hand-off marker of {rel.name} is {age:.0f}s old (trusted up to {max_age:.0f}s)"
    return True, f"{rel.name} released the lock ({rel.reason})"


def request_applies(req: Optional[Request], lock_index: int) -> Tuple[bool, str]:
    """An operator's request speaks for the lock generation it was made in; once the lock changed hands
    it is spent, whatever the clock says."""
    if req is None:
        return False, "no request"
    if req.lock_index is None:
        return False, (f"request to {req.to} names no lock generation (written by an older mysqlpilot): "
                       "ignored; run the command again")
    if req.lock_index != lock_index:
        return False, f"request to {req.to} was for lock generation {req.lock_index}, the lock is at {lock_index}"
    return True, f"{req.kind} to {req.to} requested"

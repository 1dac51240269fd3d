"""Fixed defects put back, one patch each, to show the simulator finds them (issue 19: "the simulator
finds real bugs"). Each is the old behaviour of one function, installed for a run and undone after."""
from __future__ import annotations

import contextlib
from typing import Iterator

from mysqlpilot import analysis, handoff, handover


def _lock_wait_any_generation(saved, lock_index, index, now):
    # Old: a remembered first sight of a free lock counted whatever generation or Consul index it was for.
    if isinstance(saved, dict) and isinstance(saved.get("since"), (int, float)) and saved["since"] <= now:
        return handoff.FreeWait(lock_index, index, float(saved["since"])), now - float(saved["since"])
    return handoff.FreeWait(lock_index, index, now), 0.0


def _writable_after_abort_unconditionally(self, sid):
    # Old: an aborted switchover turned writes back on without asking whose lock and lease it was.
    srv = self.n.local()
    srv.set_read_only(False)


def _designated_turn_without_union_rule(cands, policy, me, must_contain, contains_fn, force=False):
    # Old: a designated target (switchover or manual failover) took the lock without the union rule:
    # it did not have to hold what every reachable member holds.
    return True, "designated by a switchover/failover request", []


DEFECTS = {
    "designated-skips-union-rule": (analysis, "designated_turn", _designated_turn_without_union_rule),
    "lock-wait-any-generation": (handoff, "lock_wait", _lock_wait_any_generation),
    "abort-writable-unconditionally": (handover.HandOver, "writable_again_after_abort",
                                       _writable_after_abort_unconditionally),
}


@contextlib.contextmanager
def put_back(name: str) -> Iterator[None]:
    obj, attr, old = DEFECTS[name]
    fixed = getattr(obj, attr)
    setattr(obj, attr, old)
    try:
        yield
    finally:
        setattr(obj, attr, fixed)

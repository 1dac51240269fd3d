"""Fixed defects put back, one or more patches each, to show the simulator finds them (issue 19: "the
simulator finds real bugs"). Each is the old behaviour of the fixed code, installed for a run and undone
after; the comment over each names the commit that fixed it."""
from __future__ import annotations

import contextlib
from typing import Iterator

from mysqlpilot import analysis, handoff, handover, lease, observer


# ---- 4952922 (item 4): the lock-delay wait remembered across lock generations ------------------------
def _lock_wait_any_generation(saved, lock_index, index, now):
    # Old (ha.Node._free_for before 4952922): a remembered first sight of a free lock counted for the same
    # LockIndex whatever Consul's index said, so one seen long ago counted again once the LockIndex
    # repeated (the key deleted, Consul's data lost) ...
    if isinstance(saved, dict) and saved.get("lock_index") == lock_index \
            and isinstance(saved.get("since"), (int, float)) and saved["since"] <= now:
        return handoff.FreeWait(lock_index, index, float(saved["since"])), now - float(saved["since"])
    return handoff.FreeWait(lock_index, index, now), 0.0


def _observe_keeping_old_sights(self):
    # ... and the sight was never cleared while the lock was held (4952922 clears it in observe).
    saved = self.n.state.get("free_seen")
    seen = _FIXED_OBSERVE(self)
    if saved is not None and self.n.state.get("free_seen") is None:
        self.n.state.update(free_seen=saved)
    return seen


_FIXED_OBSERVE = observer.Observer.observe


# ---- 4952922 (item 1): the aborted switchover that turned writable -------------------------------------
def _writable_after_abort_unconditionally(self, sid):
    # Old: an aborted switchover turned writes back on without asking whose lock and lease it was.
    srv = self.n.local()
    srv.set_read_only(False)


# ---- 4952922 (item 2): the designated target that skipped the union rule ------------------------------
def _designated_turn_without_union_rule(cands, policy, me, must_contain, contains_fn, force=False):
    # Old: a designated target (switchover or manual failover) took the lock without the union rule:
    # it did not have to hold what every reachable member holds.
    return True, "designated by a switchover/failover request", []


# ---- c319fa4: the NULL-lag winner --------------------------------------------------------------------
_FIXED_INELIGIBLE = analysis._ineligible


def _ineligible_null_lag_is_zero(c, policy, must_contain, contains_fn):
    # Old: an unknown lag (NULL: the source is gone) passed as no lag, relay backlog or not; only a known
    # lag over max_lag_on_failover kept a candidate out.
    if policy.durability != "semi-sync" and c.lag_seconds is None and not c.caught_up and c.sql_running:
        c = analysis.replace(c, caught_up=True)
    return _FIXED_INELIGIBLE(c, policy, must_contain, contains_fn)


# ---- c319fa4: the restarted watch that never fenced -----------------------------------------------------
_FIXED_CHECK = lease.Watchdog.check_once


def _check_once_only_after_own_promotion(self):
    # Old (ha.Node._watchdog before c319fa4): the watchdog fenced only while `writable_primary`, a flag of
    # the process that saw itself writable under the lock. A restarted watch (or the health hook) that
    # found mysqld writable without a lease never fenced it.
    left, _ = self.lease.writer_view(self.margin)
    if left > 0:
        self._sim_was_primary = True
    if not getattr(self, "_sim_was_primary", False):
        return None
    return _FIXED_CHECK(self)


# ---- 4134513: the fence that released semi-sync waits before read-only --------------------------------
_FIXED_FENCE = lease.Fencer.fence


def _fence_telling_keep_lease(self, reason, deadline, keep_lease=False):
    # The fence of d245b87..4134513 told its loop whether it kept the lease (a switchover's fence).
    self._sim_keep_lease = keep_lease
    try:
        return _FIXED_FENCE(self, reason, deadline, keep_lease)
    finally:
        self._sim_keep_lease = False


def _fence_releasing_commit_waits(self, reason, deadline, bs):
    # Old (d245b87, removed by 4134513): a read_only blocked behind a commit waiting for its semi-sync ACK
    # was released by switching semi-sync off after the kill; a client reconnecting in between got OK
    # for a commit no replica had.
    last, fast, blocked, keep_lease = "", True, False, getattr(self, "_sim_keep_lease", False)
    while True:
        try:
            srv = self._conn()
            if fast:
                fast = False
                try:
                    srv.execute("SET SESSION lock_wait_timeout = 0")
                    srv.set_read_only(True)
                except lease.PilotError as exc:
                    if getattr(exc, "errno", 0) != lease.ER_LOCK_WAIT_TIMEOUT:
                        raise
                    blocked = True
            killed = srv.kill_client_connections()
            if blocked and not keep_lease:
                blocked = False
                srv.execute("SET GLOBAL rpl_semi_sync_master_enabled = OFF")    # MySQLFlavor's release
            srv.execute("SET SESSION lock_wait_timeout = 1")
            srv.set_read_only(True)
            killed += srv.kill_client_connections()
            if self._ask(srv):
                if bs.end():
                    self._drop()
                    return bs.result()
                return "read-only"
            last = "read_only still OFF after setting it"
        except lease.PilotError as exc:
            last = str(exc)
            self._drop()
        if bs.fired():
            self._drop()
            return bs.result()
        if not self.mysqld_running():
            return "mysqld down"
        if self.clock() >= deadline:
            killed_it = self.kill_mysqld()
            self._drop()
            return ("mysqld killed" if killed_it else "mysqld down") + f" ({last})"
        lease.time.sleep(0.05)


# name -> the patches (object, attribute, old function) that put it back
def _writable_after_abort_before_own_promotion(self, sid):
    # Before the simulator found it: the session and lease were checked, not whether this holder had
    # finished its own promotion (the key's `promoted` flag).
    leader = self.n.dcs.get_cluster().leader
    if not (sid and self.n.sid == sid and leader is not None and leader.session == sid):
        return
    if self.n.lease.left(sid) <= handover.MIN_LEASE_TO_PROMOTE:
        return
    self.n.lease.mark_writer(sid)
    srv = self.n.local()
    try:
        srv.set_read_only(False)
    finally:
        srv.close()


_decide = analysis.decide


def _decide_stays_primary_unmarked(o):
    # Before the second fix the simulator led to: a writable holder stayed primary whatever the key said.
    d = _decide(o)
    if d.action == analysis.PROMOTE and o.read_only is False:
        return analysis.Decision(analysis.STAY_PRIMARY, "holding the leader lock")
    return d


DEFECTS = {
    # The code before both fixes: either one alone keeps the cluster converging.
    "abort-writable-before-own-promotion": [(handover.HandOver, "writable_again_after_abort",
                                             _writable_after_abort_before_own_promotion),
                                            (analysis, "decide", _decide_stays_primary_unmarked)],
    "designated-skips-union-rule": [(analysis, "designated_turn", _designated_turn_without_union_rule)],
    "lock-wait-any-generation": [(handoff, "lock_wait", _lock_wait_any_generation),
                                 (observer.Observer, "observe", _observe_keeping_old_sights)],
    "abort-writable-unconditionally": [(handover.HandOver, "writable_again_after_abort",
                                        _writable_after_abort_unconditionally)],
    "null-lag-wins": [(analysis, "_ineligible", _ineligible_null_lag_is_zero)],
    "restarted-watch-never-fences": [(lease.Watchdog, "check_once", _check_once_only_after_own_promotion)],
    "fence-releases-semi-sync-waits": [(lease.Fencer, "fence", _fence_telling_keep_lease),
                                       (lease.Fencer, "_fence", _fence_releasing_commit_waits)],
}


@contextlib.contextmanager
def put_back(name: str) -> Iterator[None]:
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in DEFECTS[name]]
    for obj, attr, old in DEFECTS[name]:
        setattr(obj, attr, old)
    try:
        yield
    finally:
        for obj, attr, fixed in reversed(saved):
            setattr(obj, attr, fixed)

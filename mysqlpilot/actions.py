"""The actions a decision maps to, one table (orchestrator's recovery switch), each run the same way."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, Dict, Optional, Tuple

from . import analysis, journal, mysqld
from .analysis import Decision, Observation
from .dcs.base import REINIT_PREFIX, REQUEST_KEY, ClusterView, Release, Request
from .errors import PilotError
from .lease import WRITER, boottime
from .model import FailoverRecord, LeaderInfo

log = logging.getLogger(__name__)

MIN_LEASE_TO_PROMOTE = 0.5        # never turn writable with less lease than this left
PROMOTION_BACKOFF = analysis.PROMOTION_BACKOFF
PROMOTE_WAIT = 600.0              # longest a promotion waits for its relay log (the lease is kept meanwhile)
SNAPSHOT_RETRY = 300.0            # after a background snapshot failed, the next waits this long (or the interval)


@dataclass
class Outcome:
    """What one pass did: the action run (or `wait` when a guard refused one), why, and how long it took."""
    action: str
    reason: str
    target: Optional[LeaderInfo] = None
    refused: str = ""                 # the action a guard refused, if any
    seconds: float = 0.0


class Actions:
    def __init__(self, node):
        self.n = node
        self._last_said = ""
        self.recent: Deque[Outcome] = deque(maxlen=50)
        self._snap_proc: Optional[subprocess.Popen] = None
        self._snap_ended: Optional[float] = None

    def table(self) -> Dict[str, Tuple[Callable, Optional[Callable]]]:
        """Decision -> (action, anti-flapping guard). A guard returns why the action must not run now."""
        return {analysis.WAIT: (self.do_wait, None), analysis.STAY_PRIMARY: (self.do_stay_primary, None),
                analysis.FENCE: (self.do_fence, None), analysis.TAKE_LOCK: (self.do_take_lock, self.guard_takeover),
                analysis.PROMOTE: (self.do_promote, None), analysis.FOLLOW: (self.do_follow, None),
                analysis.REBUILD: (self.do_rebuild, self.guard_rebuild),
                analysis.HAND_OVER: (self.do_hand_over, None), analysis.RETAKE: (self.do_retake, None),
                analysis.RESTART: (self.do_restart, None)}

    def run(self, d: Decision, seen) -> Outcome:
        """Every action the same way: its guard, one log line when the decision changes, the run, its
        duration, and the outcome kept (`recent`) and returned."""
        action, guard = self.table()[d.action]
        refused = guard(d, seen) if guard is not None else ""
        if refused:
            out = Outcome(analysis.WAIT, refused, d.target, refused=d.action)
        else:
            out = Outcome(d.action, d.reason, d.target)
        summary = f"{out.action}: {out.reason}"
        if summary != self._last_said:
            log.info("decision %s", summary)
            self._last_said = summary
        if not refused:
            t0 = time.monotonic()
            action(d, seen)
            out.seconds = round(time.monotonic() - t0, 3)
        self.recent.append(out)
        return out

    def guard_takeover(self, d: Decision, seen) -> str:
        """Promotion back-off and the failover budget; a designated take (switchover, manual failover) is
        an operator's, and is not limited."""
        if seen.o.switchover_to == self.n.cfg.node_name:
            return ""
        failed = self.n.state.get("promotion_failed")
        failed_ago = boottime() - failed if isinstance(failed, (int, float)) else None
        ok, why = analysis.takeover_guard(failed_ago, seen.view.history, time.time(),
                                          self.n.last_leader is not None, self.n.policy)
        return "" if ok else why

    def guard_rebuild(self, d: Decision, seen) -> str:
        """A rebuild that keeps failing (the newest snapshot cannot follow this primary) must not loop."""
        ok, why = analysis.rebuild_guard(self.n.state.get("rebuilds", []) or [], time.time())
        if ok:
            return ""
        msg = f"{why}, still cannot follow {seen.o.leader.name}: {d.reason}"
        if seen.report.message != msg:
            log.error("%s", msg)
        seen.report.role, seen.report.healthy, seen.report.message = "rebuilding", False, msg
        return msg

    def do_wait(self, d, seen) -> None:
        # Waiting with the key free and read-only: a list this node wrote as primary protects nothing now.
        self.n.failsafe_list.withdraw(seen)

    def do_stay_primary(self, d, seen) -> None:
        self.n.failsafe_list.publish(seen.view)
        if self.n.lease.state.get(WRITER) != self.n.sid and self.n.lease_left() >= MIN_LEASE_TO_PROMOTE:
            # Taken back after a Consul outage (do_retake) with too little lease to move the writes then.
            self.n.lease.mark_writer(self.n.sid)
        self.n.catalog.promoted()
        self.n.accounts.on_primary(seen.view.members, seen.view.lock_index)
        if not seen.view.latest_snapshot:
            self.spawn_snapshot("no snapshot exists yet")

    def do_fence(self, d, seen) -> None:
        # Not the holder: another node may be primary already, so fence at once.
        self.n.fence(d.reason, urgent=not seen.o.i_hold_lock)
        seen.report.refresh = True

    def do_take_lock(self, d, seen) -> None:
        req: Optional[Request] = seen.request
        info = LeaderInfo(self.n.cfg.node_name, self.n.cfg.advertise_host, self.n.cfg.port,
                          seen.probe.get("server_id") or self.n.cfg.server_id, since=time.time())
        ok, why = self.n.promises.claim()
        if not ok:
            log.info("not taking the leader lock: %s", why)
            return
        try:
            took = self.n.dcs.acquire_leader(self.n.sid, info)
        except PilotError:
            self.n.promises.drop_claim()    # not acquired, or unknown: a key we hold shows in the next view
            raise
        if not took:
            self.n.promises.drop_claim()
            log.info("leader lock not acquired (held, or in Consul's lock-delay)")
            return
        log.warning("acquired the leader lock (%s)", d.reason)
        self.promote(d.reason, seen.ranking, req, seen)
        seen.report.refresh = True

    def do_retake(self, d, seen) -> None:
        """Writable on the members' promises, the key free (Consul ended our session while it could not be
        reached): take the key back under the new session; no promotion, no failover. Consul's lock-delay
        may refuse it for a moment; the promises cover the writes meanwhile."""
        probe = seen.probe
        info = LeaderInfo(self.n.cfg.node_name, self.n.cfg.advertise_host, self.n.cfg.port,
                          probe.get("server_id") or self.n.cfg.server_id, since=time.time(),
                          promoted_gtid=probe.get("executed", ""), promoted=True)
        if not self.n.dcs.acquire_leader(self.n.sid, info):
            self.n.say_once("retake", "failsafe: the leader key is free but Consul's lock-delay refuses it for now; "
                                      "retrying, the members' promises cover the writes")
            self.n._due = 0.25
            return
        if self.n.lease_left() >= MIN_LEASE_TO_PROMOTE:
            self.n.lease.mark_writer(self.n.sid)
        log.warning("failsafe: took the leader lock back under a new Consul session; no failover (%s)", d.reason)
        self.n.last_leader = info
        self.n.state.update(last_leader=info.to_json())
        self.n.events.count("failsafe_retakes")
        journal.record(self.n.state, journal.event("failsafe-retake", self.n.cfg.node_name,
                                                   "took the leader lock back under a new Consul session"))
        seen.report.refresh = True

    def do_promote(self, d, seen) -> None:
        self.promote(d.reason, [], None, seen)
        seen.report.refresh = True

    def promote(self, reason: str, ranking, req: Optional[Request], seen) -> None:
        o: Observation = seen.o
        t0 = time.monotonic()
        srv = self.n.local()
        st = srv.replica_status()
        if st:
            # Apply everything already received before accepting writes. The heartbeat keeps the lease
            # meanwhile, so this wait is not cut short by it.
            if not srv.wait_relay_applied(timeout=PROMOTE_WAIT):
                log.error("relay log not applied within %.0fs; staying read-only, releasing the lock and "
                          "standing aside for %.0fs", time.monotonic() - t0, PROMOTION_BACKOFF)
                self.n.state.update(promotion_failed=boottime())
                self.n.dcs.release_leader(self.n.sid)
                return
            srv.stop_replica()
            srv.reset_replica_all()
        # A restored snapshot's seed belongs to following, never to a node that has been primary.
        self.n.state.update(seed_gtid=None, promotion_failed=None)
        gtid = srv.gtid_executed()
        server_id = int(srv.scalar("SELECT @@GLOBAL.server_id") or 0) or self.n.cfg.server_id
        info = LeaderInfo(self.n.cfg.node_name, self.n.cfg.advertise_host, self.n.cfg.port, server_id,
                          since=time.time(), promoted_gtid=gtid)
        if not self.n.dcs.acquire_leader(self.n.sid, info):
            log.error("lost the leader lock during promotion; staying read-only")
            return
        if self.n.cfg.durability == "semi-sync":
            srv.semi_sync_replica(False)
            srv.semi_sync_primary(True)       # no timeout: never acknowledged without a replica
        left = self.n.lease_left()
        self.n.lease.mark_writer(self.n.sid)
        if left < MIN_LEASE_TO_PROMOTE:
            log.error("lease has %.2fs left (under %.1fs) after %.1fs of promotion; staying read-only until "
                      "the session is renewed", left, MIN_LEASE_TO_PROMOTE, time.monotonic() - t0)
            return
        srv.set_read_only(False)
        srv.close()
        info.promoted = True
        self.n.dcs.acquire_leader(self.n.sid, info)
        took = time.monotonic() - t0
        log.warning("PROMOTED: %s is the writable primary at GTID %s (%s)", self.n.cfg.node_name, gtid or "-",
                    reason)
        self.n.catalog.promoted()
        self.n.state.update(errant=None)
        view: ClusterView = seen.view
        history = view.history
        old = self.n.last_leader.name if self.n.last_leader and not analysis.after_clean_stop(history) else None
        durations = {"promote": round(took, 3)}
        rel: Optional[Release] = seen.handoff
        handed = rel if rel is not None and rel.to == self.n.cfg.node_name else None
        if handed is not None or (req is not None and req.to == self.n.cfg.node_name):
            kind = req.kind if req is not None else handed.kind
            why = (req.reason if req is not None else "") or (handed.reason if handed else "") or kind
            if handed is not None and handed.fenced_at:
                durations["write_unavailable"] = round(time.time() - float(handed.fenced_at), 3)
            if req is not None:
                self.n.dcs.put_json(REQUEST_KEY, None)
            old = (handed.name if handed else None) or (req.origin if req else None) or old
        elif old == self.n.cfg.node_name and o.leader is not None and o.leader.name == old:
            # We held the lock all along and only fenced (lease lapse, a blocked pass): not a failover.
            kind, why = "re-promotion", f"{reason}; this node kept the lock"
        elif old == self.n.cfg.node_name:
            kind, why = "failover", f"primary {old} (this node) lost its session and won again; {reason}"
        else:
            kind = "failover" if old else ("bootstrap" if not history else "election")
            if old and rel is not None and rel.name == old:
                why = f"primary {old} released the lock ({rel.reason}); {reason}"
            else:
                why = reason if not old else f"primary {old} lost its session; {reason}"
            if seen.free_for is not None:
                took_free = seen.free_for_seen if seen.free_for_seen is not None else seen.free_for
                durations["leader_free"] = round(took_free, 3)
        rec = FailoverRecord(kind=kind, time=time.time(), old_primary=old, new_primary=self.n.cfg.node_name,
                             reason=why, candidates=[{"name": r.name, "chosen": r.name == self.n.cfg.node_name,
                                                      "why": r.why} for r in ranking],
                             durations=durations)
        self.record(rec)
        # From this node's first sight of the free lock (a hand-over: the old primary's fence) to writable.
        self.n.events.promoted(kind, durations.get("write_unavailable",
                                                   durations.get("leader_free", 0.0) + durations["promote"]))
        # We are the last primary now, also for the next record (a re-promotion is not a failover).
        self.n.last_leader = info
        self.n.state.update(last_leader=info.to_json())
        if not view.latest_snapshot:
            self.spawn_snapshot("first primary: taking the first snapshot now")

    def do_follow(self, d, seen) -> None:
        leader = d.target
        self.replicate_from(leader.name, leader.host, leader.port)
        seen.report.refresh = True

    def replicate_from(self, name: str, host: str, port: int) -> None:
        srv = self.n.local()
        seed = self.n.state.get("seed_gtid")
        srv.stop_replica()
        if seed:
            # A restored datadir carries its source's replication metadata (a snapshot taken on a replica:
            # MySQL keeps it in InnoDB tables, naming relay logs that were not copied; START REPLICA then
            # fails with 1872). It is stale by definition.
            srv.reset_replica_all()
            srv.seed_gtid(seed)
            log.info("seeded GTID position %s from the restored snapshot", seed)
            self.n.state.update(seed_gtid=None)
        elif self.n.flavor.name == "mariadb":
            # An ex-primary's position lives in its binlog, not in gtid_slave_pos.
            srv.execute("SET GLOBAL gtid_slave_pos = @@gtid_current_pos")
        cfg = self.n.cfg
        srv.change_source(host, port, cfg.repl_user, cfg.repl_password, tls=bool(cfg.mysql_tls_cert or cfg.mysql_tls_ca),
                          ca=cfg.mysql_tls_ca)
        if self.n.cfg.durability == "semi-sync":
            srv.semi_sync_primary(False)
            srv.semi_sync_replica(True)
        srv.start_replica()
        srv.close()
        self.n.events.serving()
        log.info("replicating from %s (%s:%s) with GTID auto-position", name, host, port)

    def do_rebuild(self, d, seen) -> None:
        reason, errant = d.reason, seen.o.errant
        if self.n.cfg.node_name in seen.view.reinit:
            # Spent once the rebuild starts (else it would rebuild again after the restore); a failed
            # delete raises, and this pass rebuilds nothing.
            self.n.dcs.put_json(REINIT_PREFIX + self.n.cfg.node_name, None)
        recent = [t for t in self.n.state.get("rebuilds", []) or [] if isinstance(t, (int, float))]
        self.n.state.update(rebuilds=recent[-10:] + [time.time()])
        self.n.events.count("rebuilds")
        journal.record(self.n.state, journal.event("rebuild", self.n.cfg.node_name, reason,
                                                   errant=errant or None))
        log.error("REBUILD: %s; moving the datadir aside and restoring the newest snapshot", reason)
        self.n.state.update(rebuild_reason=reason, errant=[e for e in errant.split(",") if e] or None)
        seen.report.role, seen.report.healthy, seen.report.message = "rebuilding", False, reason
        # run-mysqld performs the rebuild before it starts mysqld again.
        mysqld.stop_mysqld(self.n.cfg)

    def do_restart(self, d, seen) -> None:
        self.n.restarter.do_restart(d, seen)

    def do_hand_over(self, d, seen) -> None:
        req: Optional[Request] = seen.request
        self.n.handover.hand_over(req.to if req else "", req, seen.view)
        seen.report.refresh = True

    def record(self, rec: FailoverRecord) -> None:
        try:
            self.n.dcs.append_history(rec.to_dict())
        except PilotError as exc:
            log.error("could not record history: %s", exc)

    def spawn_snapshot(self, why: str) -> None:
        proc = getattr(self, "_snap_proc", None)
        if proc is not None:
            if proc.poll() is None:
                return                                   # one at a time
            if getattr(self, "_snap_ended", None) is None:
                # Just ended: this pass's view may predate what it published. A failed one is retried
                # after a pause, not on every pass: each is a full backup and upload.
                self._snap_ended = time.monotonic()
                if proc.returncode:
                    log.warning("background snapshot failed (exit %s, see %s); trying again in %.0fs",
                                proc.returncode, os.path.join(self.n.cfg.state_dir, "snapshot.log"),
                                min(SNAPSHOT_RETRY, self.n.cfg.snapshot_interval))
                return
            if proc.returncode and time.monotonic() - self._snap_ended < min(SNAPSHOT_RETRY,
                                                                             self.n.cfg.snapshot_interval):
                return
        self._snap_ended = None
        log.info("starting a snapshot in the background: %s", why)
        logf = open(os.path.join(self.n.cfg.state_dir, "snapshot.log"), "ab")
        self._snap_proc = subprocess.Popen([sys.executable, "-m", "mysqlpilot", "snapshot", "--force", "--no-wait"],
                                           stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()

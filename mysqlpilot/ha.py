"""The HA loop (Patroni's ha.py, orchestrator's "recovery" half): observe, decide (analysis.py), act.

One `Node` per mysqld. `mysqlpilot watch` runs `Node.run_forever()`: the pass loop, plus the heartbeat
(session, liveness check, lease), the mysqld prober and the fence watchdog, each its own thread (lease.py).
The hooks call single methods. Every pass holds the node's ha.lock so the loop, on-change and pre-stop
never act at the same time.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

from . import analysis, mysqld
from .analysis import Candidate, Decision, Observation, Policy
from .config import heartbeat_interval
from .dcs.base import ClusterView, Release, Request
from .dcs.consul import ConsulDCS
from .errors import PilotError
from .flavors import get_flavor, quote
from .lease import Fencer, Heartbeat, Lease, Watchdog, boottime
from .model import STARTING_ROLES, FailoverRecord, LeaderInfo, MemberState
from .sqlclient import Server
from .statefile import StateFile, ha_lock
from .timeouts import HANDOVER_CATCHUP, PRE_STOP_WAIT

log = logging.getLogger(__name__)

REQUEST_KEY = "switchover"        # <kv_root>/switchover: pending switchover / manual failover
REQUEST_MAX_AGE = 120.0
SEMI_SYNC_LAPSED = ("primary, writable; semi-sync is off although mysqlpilot set it with no timeout (switched off "
                    "by hand or by the server): commits from now on may be lost on failover; a switchover turns it "
                    "on again")
MIN_LEASE_TO_PROMOTE = 0.5        # never turn writable with less lease than this left
RELEASE_PROOF_WAIT = 1.0         # longest a crashed mysqld's socket and port may take to stop accepting
PID_POLL = 0.1                    # how often the prober looks for mysqld's process (the crash fast path)
MYSQLD_QUIET_LIMIT = 3.0          # seconds without an answer from mysqld before it counts as hung (no renew)
PROMOTION_BACKOFF = analysis.PROMOTION_BACKOFF
ERRANT_RECHECK = 5.0              # seconds between errant checks of a MySQL replica that replicates fine
PROMOTE_WAIT = 600.0              # longest a promotion waits for its relay log (the lease is kept meanwhile)


def probe_candidates(flavor, members: List[MemberState], root_password: str,
                     extra: Optional[List[Candidate]] = None, old_primary: Optional[str] = None,
                     released_by: Optional[str] = None) -> List[Candidate]:
    """Fresh failover facts, read from each member's mysqld directly (published state is stale).

    A member without a session is asked too: it cannot win, but what it holds counts (its watch may be
    restarting while its mysqld holds the only copy of an acknowledged commit). Not the old primary: a
    cut-off or frozen one holds only what no replica acknowledged, and waiting for it would stall the
    failover it caused."""
    cands: List[Candidate] = list(extra or [])
    for m in members:
        if m.name == released_by or \
                (not m.alive and (m.name == old_primary or m.role in ("down", "rebuilding") or m.role in STARTING_ROLES)):
            continue
        try:
            t = 2 if m.alive else 1
            srv = Server(flavor, host=m.host, port=m.port, user="root", password=root_password,
                         connect_timeout=t, read_timeout=t)
            executed = srv.gtid_executed()
            st = srv.replica_status() or {}
            recv = flavor.gtid_union(executed, st["retrieved"]) if st.get("retrieved") else executed
            srv.close()
            c = candidate_from(m.name, m.nofailover, m.priority, executed, recv, st, flavor)
            c.has_session = m.alive
            cands.append(c)
        except PilotError as exc:
            if m.alive:          # a member without a session that does not answer is simply gone
                cands.append(Candidate(m.name, False, False, m.nofailover, m.priority))
                log.info("candidate %s unreachable: %s", m.name, exc)
    for c in cands:
        c.was_primary = c.name == old_primary
        c.gtid_count = flavor.gtid_count(c.gtid_received)
        for o in cands:
            if o.name != c.name and o.reachable:
                c.contains[o.name] = flavor.gtid_contains(c.gtid_received, o.gtid_received)
    return cands


def candidate_from(name: str, nofailover: bool, priority: int, executed: str, received: str,
                   status: Optional[Dict], flavor) -> Candidate:
    st = status or {}
    return Candidate(name, True, True, nofailover, priority, st.get("lag_seconds"), received or executed,
                     caught_up=flavor.gtid_contains(executed, received or ""),
                     sql_running=bool(st.get("sql_running")) if st else True)


class Node:
    def __init__(self, cfg, dcs: Optional[ConsulDCS] = None):
        self.cfg = cfg
        self.flavor = get_flavor(cfg.flavor, cfg.flavor_version)
        self.dcs = dcs or ConsulDCS.from_config(cfg)
        self.state = StateFile(cfg.state_dir)
        self.policy = Policy.from_config(cfg)
        self.lease = Lease(self.state, self.policy.lease)
        self.fencer = Fencer(self._fence_conn, self.lease, cfg)
        self.leader_index = 0
        # Persisted: on-change and a restarted loop are new processes, and must still know whose
        # failure they are handling (failover budget, semi-sync check, history's old primary).
        self.last_leader: Optional[LeaderInfo] = self._saved_leader()
        self.last_decision = ""
        self._semi_sync_lapsed = False
        self._errant_checked = -1e9       # monotonic time of the last errant check while replicating (MySQL)
        self._sql_ok_at = -1e9            # boot-time clock of the prober's last answer from mysqld
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._heartbeat: Optional[Heartbeat] = None
        self._released_for = ""           # the session whose lock was released after a mysqld crash
        self._last_executed = ""          # gtid_executed at the last probe that reached mysqld
        self._logged_release: Optional[Release] = None
        self._due: Optional[float] = None  # seconds until this node's lock-delay wait ends, if it is waiting

    def _saved_leader(self) -> Optional[LeaderInfo]:
        text = self.state.get("last_leader")
        try:
            return LeaderInfo.from_json(text) if text else None
        except (ValueError, TypeError, AttributeError):
            return None                  # a name only, from an older release, or garbage

    @property
    def sid(self) -> Optional[str]:
        sid = self.state.get("session")
        return sid if isinstance(sid, str) and sid else None

    # ---- connections -------------------------------------------------------------------------
    def local(self, read_timeout: float = 30) -> Server:
        return Server(self.flavor, socket=self.cfg.socket, user="root", password=self.cfg.root_password,
                      connect_timeout=2, read_timeout=read_timeout)

    def probe_conn(self) -> Server:
        """For probes: a hung mysqld costs at most the connect timeout, handshake included."""
        return self.local(read_timeout=2)

    def _fence_conn(self) -> Server:
        # A blocked statement returns within this and the fence retries; the fence's deadline does not wait for
        # it (lease.py _Backstop).
        return Server(self.flavor, socket=self.cfg.socket, user="root", password=self.cfg.root_password,
                      connect_timeout=1, read_timeout=1.5)

    def remote(self, host: str, port: int) -> Server:
        return Server(self.flavor, host=host, port=port, user="root", password=self.cfg.root_password,
                      connect_timeout=2, read_timeout=2)

    # ---- lease, heartbeat, fencing -------------------------------------------------------------
    def lease_left(self) -> float:
        sid = self.sid
        return self.lease.left(sid) if sid else -1.0

    def mysqld_alive(self) -> Optional[bool]:
        """False: mysqld is not running (no process). True: it answered the prober recently. None: it runs
        but does not answer us (hung, or refusing our login)."""
        if mysqld.mysqld_pid(self.cfg) is None:
            return False
        return True if boottime() - self._sql_ok_at < MYSQLD_QUIET_LIMIT else None

    def _prober(self) -> None:
        """Asks mysqld `SELECT 1` every 0.5 s, and looks for its process every PID_POLL: when the process
        goes, the heartbeat runs at once (the crash fast path) instead of at its next tick."""
        srv, asked, was_running = None, 0.0, True
        while not self._stop.wait(PID_POLL):
            running = mysqld.mysqld_pid(self.cfg) is not None
            if was_running and not running and self._heartbeat is not None:
                self._heartbeat.poke()
            was_running = running
            if not running or time.monotonic() - asked < 0.5:
                continue
            asked = time.monotonic()
            try:
                srv = srv or self.probe_conn()
                srv.scalar("SELECT 1")
                self._sql_ok_at = boottime()
            except PilotError:
                if srv is not None:
                    srv.close()
                srv = None

    def beat(self) -> None:
        """One heartbeat: pass the liveness check and renew the session, then extend the lease from the
        moment they were sent. When mysqld is gone, give up the lease *before* failing the check, which
        ends the session at once (the fast failover path)."""
        alive = self.mysqld_alive()
        cid = self.cfg.liveness_check_id
        if alive is False:
            if self.state.get("starting"):
                return
            self.lease.void("mysqld is not running")
            self._release_after_crash()
            try:
                self.dcs.fail_check(cid, "mysqld is not running")
            except PilotError as exc:
                log.debug("check fail: %s", exc)
            return
        if alive is None:
            return               # hung or refusing us: the lease lapses and the watchdog fences
        if self.state.get("stopping") and not self.sid:
            return
        sent = boottime()
        try:
            self.dcs.pass_check(cid, "mysqld answers")
        except PilotError:
            self.dcs.register_check(cid, f"mysqlpilot liveness of {self.cfg.node_name}", self.cfg.check_ttl)
            self.dcs.pass_check(cid, "mysqld answers")
        sid = self.sid
        if sid and self.dcs.renew_session(sid) is None:
            log.warning("Consul session %s is gone; creating a new one", sid[:8])
            self.lease.void("session gone")
            sid = None
        if not sid:
            sid = self.dcs.create_session(self.cfg.session_ttl, self.cfg.lock_delay,
                                          ["serfHealth", self.cfg.liveness_check_id])
            self.state.update(session=sid)
        self.lease.extend(sid, sent)
        if self.state.get("starting"):
            self.state.update(starting=None)

    def _release_after_crash(self) -> None:
        """mysqld is not running and the lease is void: if this node holds the lock, release it with a
        marker, so the best candidate promotes at once. A release has no lock-delay, and none is needed:
        nothing here can write (mysqld always starts read-only, and only a lease turns writes on)."""
        sid = self.sid
        if not sid or sid == self._released_for:
            return
        self._released_for = sid         # once per session; failing the check below ends it anyway
        # A SIGKILLed mysqld's main thread shows as a zombie while its other threads still hold the
        # listening sockets, for some milliseconds: give it a moment to let go.
        until = time.monotonic() + RELEASE_PROOF_WAIT
        while mysqld.accepts_connections(self.cfg):
            if time.monotonic() >= until:
                # No pid, yet something answers on its socket or port: not provably dead. Take the slow
                # path (the session ends with the check, then lock-delay).
                log.warning("mysqld has no pid but its socket or port still accepts connections after %.1fs; "
                            "not releasing the leader lock early", RELEASE_PROOF_WAIT)
                return
            time.sleep(0.05)
        marker = Release(name=self.cfg.node_name, reason="mysqld is not running", at=time.time(),
                         gtid_executed=self._last_executed)
        try:
            if self.dcs.release_leader(sid, marker):
                log.warning("mysqld is not running: released the leader lock so that the best replica "
                            "promotes now (this node cannot write)")
        except PilotError as exc:
            log.warning("could not release the leader lock (%s); the session ends with the failed check "
                        "instead, and lock-delay applies", exc)

    def fence(self, reason: str, urgent: bool = False, keep_lease: bool = False) -> str:
        """Fence now. Urgent: another node may already hold the lock, so the deadline is short."""
        now = boottime()
        deadline = now + 0.5 if urgent else self.lease.fence_deadline(self.cfg.fence_margin)   # fixed at the grant
        result = self.fencer.fence(reason, deadline, keep_lease=keep_lease)
        try:
            self.dcs.deregister_service(self._primary_service_id())
        except PilotError:
            pass
        return result

    def start_threads(self, heartbeat: bool = True) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._threads = [threading.Thread(target=self._prober, name="mysqld-prober", daemon=True),
                         Watchdog(self.lease, self.fencer, self.cfg.fence_margin)]
        if heartbeat:
            self._heartbeat = Heartbeat(self.beat, heartbeat_interval(self.cfg.lock_delay, self.cfg.fence_margin))
            self._threads.append(self._heartbeat)
        for t in self._threads:
            t.start()

    def stop_threads(self) -> None:
        self._stop.set()
        for t in self._threads:
            if hasattr(t, "stop"):
                t.stop()
        self._threads = []
        self._heartbeat = None

    # ---- observation -------------------------------------------------------------------------
    def probe_local(self) -> Dict:
        """mysqld's own view: up, read_only, replication, GTIDs."""
        out: Dict = {"up": False, "read_only": None, "status": None, "executed": "", "received": ""}
        try:
            srv = self.probe_conn()
            out["read_only"] = srv.read_only()
            out["status"] = srv.replica_status()
            out["executed"] = srv.gtid_executed()
            # The live one: a restore gives the node a new server_id that a long-running watch's
            # config does not know.
            out["server_id"] = int(srv.scalar("SELECT @@GLOBAL.server_id") or 0)
            st = out["status"] or {}
            out["received"] = self.flavor.gtid_union(out["executed"], st["retrieved"]) \
                if st.get("retrieved") else out["executed"]
            if self.cfg.durability == "semi-sync" and out["read_only"] is False:
                out["semi_sync"] = srv.semi_sync_status()
            out["up"] = True
            self._last_executed = out["executed"]
            srv.close()
        except PilotError as exc:
            out["error"] = str(exc)
            out["refused"] = "refused user" in str(exc)
        return out

    def health_of(self, probe: Dict, leader: Optional[LeaderInfo]) -> Tuple[bool, str, str]:
        """(healthy, role, message) from what mysqld and Consul say."""
        if not probe["up"]:
            if self.state.get("starting"):
                return False, "starting", "mysqld is starting"
            return False, "down", f"mysqld not answering: {probe.get('error', '')}"
        st = probe["status"]
        # Reporting only: the leader key names us. Decisions use the session id (observe()).
        if leader is not None and leader.name == self.cfg.node_name:
            if probe["read_only"] is False:
                semi = probe.get("semi_sync")
                if semi is not None and not semi.get("status"):
                    return True, "primary", SEMI_SYNC_LAPSED
                return True, "primary", "primary, writable"
            return True, "primary", "primary, promotion in progress"
        if st and not st.get("sql_running") and st.get("last_sql_error"):
            return False, "replica", f"replication SQL thread stopped: {st.get('last_sql_error')}"
        if leader is None:
            return True, "candidate", "no primary; awaiting election"
        if probe["read_only"] is False:
            return False, "fenced", "writable without the lock; fencing"
        if not st:
            return False, "replica", f"not replicating yet from {leader.name}"
        if not (st.get("io_running") and st.get("sql_running")):
            err = st.get("last_io_error") or st.get("last_sql_error") or "threads stopped"
            return False, "replica", f"replication from {leader.name} broken: {err}"
        lag = st.get("lag_seconds")
        if lag is not None and lag > self.cfg.max_replica_lag:
            return False, "replica", f"lag {lag}s above max_replica_lag {self.cfg.max_replica_lag}s"
        return True, "replica", f"replicating from {leader.name}"

    def member_state(self, probe: Dict, healthy: bool, role: str, message: str, errant: str = ""
                     ) -> MemberState:
        st = probe.get("status") or {}
        src = None
        if st.get("source_host"):
            src = f"{st['source_host']}:{st.get('source_port')}"
        return MemberState(
            name=self.cfg.node_name, host=self.cfg.advertise_host, port=self.cfg.port, role=role,
            healthy=healthy, read_only=probe.get("read_only"), replicating_from=src,
            io_running=bool(st.get("io_running")), sql_running=bool(st.get("sql_running")),
            lag_seconds=st.get("lag_seconds"), gtid_executed=probe.get("executed", ""),
            gtid_received=probe.get("received", ""), server_id=probe.get("server_id") or self.cfg.server_id,
            priority=self.cfg.priority, nofailover=self.cfg.nofailover, flavor=self.flavor.name,
            version=self.flavor.version,
            semi_sync_replicas=int((probe.get("semi_sync") or {}).get("clients", 0) or 0),
            errant=[e for e in errant.split(",") if e] or list(self.state.get("errant", []) or []),
            message=message, updated=time.time())

    def errant_against(self, leader: LeaderInfo, mine: str, replicating: bool = False) -> Tuple[str, str]:
        """(errant GTIDs, leader's set). Raises PilotError if the leader is unreachable. Compared with
        everything the leader has, relay log included. `replicating`: this node replicates from the
        leader right now (MySQL only)."""
        srv = self.remote(leader.host, leader.port)
        try:
            theirs = srv.gtid_received()
            if not mine:
                return "", theirs
            if self.flavor.name == "mariadb":
                from .gtid import parse_mariadb
                return analysis.mariadb_errant(mine, theirs, leader.promoted_gtid, leader.server_id,
                                               parse_mariadb), theirs
            # MySQL: the leader's own GTID_SUBTRACT on the real sets (server-UUID intervals, tags).
            errant = "".join(str(srv.scalar(f"SELECT GTID_SUBTRACT({quote(mine)}, {quote(theirs)})")
                                 or "").split())
            if errant and replicating:
                # A transaction the leader is committing can be applied here before the leader's own
                # gtid_executed shows it (AFTER_SYNC): its own UUID's GTIDs are not errant while we follow.
                from .gtid import format_mysql, parse_mysql
                uuid = str(srv.scalar("SELECT @@GLOBAL.server_uuid") or "").lower()
                errant = format_mysql({k: v for k, v in parse_mysql(errant).items()
                                       if k.split(":")[0] != uuid})
            return errant, theirs
        finally:
            srv.close()

    def gather_candidates(self, members: List[MemberState], probe: Dict, released_by: Optional[str] = None
                          ) -> List[Candidate]:
        # Every node ranks the same set, the old primary included (if it is alive again), so that they
        # agree on the winner. One that released the lock because its mysqld died is left out while
        # its session still lives a moment: it would read as unreachable.
        old = released_by or (self.last_leader.name if self.last_leader is not None else None)
        me = self.cfg.node_name
        mine = candidate_from(me, self.cfg.nofailover, self.cfg.priority, probe.get("executed", ""),
                              probe.get("received", ""), probe.get("status"), self.flavor)
        mine.healthy = bool(probe["up"])
        others = [m for m in members if m.name != me]
        return probe_candidates(self.flavor, others, self.cfg.root_password, extra=[mine], old_primary=old,
                                released_by=released_by)

    def takeover_verdict(self, view: ClusterView, probe: Dict, free_for: float
                         ) -> Tuple[bool, str, List[analysis.Ranked]]:
        """May this node take the free lock now? `free_for`: seconds since this node first saw this
        generation of the lock free."""
        failed = self.state.get("promotion_failed")
        failed_ago = boottime() - failed if isinstance(failed, (int, float)) else None
        ok, why = analysis.takeover_gate(free_for, self.cfg.lock_delay, failed_ago, view.history, time.time(),
                                         self.last_leader is not None, self.policy)
        if not ok:
            return False, why, []
        cands = self.gather_candidates(view.members, probe, view.released.name if view.released else None)
        must = ""
        if self.cfg.durability == "semi-sync" and self.last_leader is not None:
            # What the old primary last published: it may have acknowledged all of it.
            old = view.member(self.last_leader.name)
            must = (old.gtid_received or old.gtid_executed) if old else ""
        return analysis.takeover_turn(cands, self.policy, self.cfg.node_name, must, self.flavor.gtid_contains,
                                      free_for - self.cfg.lock_delay)

    def _free_for(self, lock_index: int) -> float:
        """Seconds since this node (any of its processes) first saw lock generation `lock_index` free."""
        seen = self.state.get("free_seen")
        now = boottime()
        if not (isinstance(seen, dict) and seen.get("lock_index") == lock_index
                and isinstance(seen.get("since"), (int, float)) and seen["since"] <= now):
            seen = {"lock_index": lock_index, "since": now}
            self.state.update(free_seen=seen)
        return now - seen["since"]

    def observe(self) -> Tuple[Observation, Dict, ClusterView]:
        probe = self.probe_local()
        view = self.dcs.get_cluster()
        leader = view.leader
        self.leader_index = view.index
        healthy, role, message = self.health_of(probe, leader)
        lapsed = message == SEMI_SYNC_LAPSED
        if lapsed != self._semi_sync_lapsed:
            if lapsed:
                log.warning("%s", message)
            else:
                log.info("semi-sync acknowledgements are back: no acknowledged commit can be lost")
            self._semi_sync_lapsed = lapsed
        if probe.get("refused"):
            log.error("%s", probe.get("error"))
        sid = self.sid
        i_hold = bool(leader is not None and sid and leader.session == sid)
        st = probe.get("status") or {}
        src = f"{st['source_host']}:{st.get('source_port')}" if st.get("source_host") else None
        req = view.request
        if req is not None and not (0 <= time.time() - req.requested <= REQUEST_MAX_AGE):
            req = None
        o = Observation(
            me=self.cfg.node_name, now=time.time(), mysqld_up=probe["up"], read_only=probe["read_only"],
            have_session=bool(sid), lease_left=self.lease_left(), leader=leader, i_hold_lock=i_hold,
            replicating_from=src, replication_ok=bool(st.get("io_running") and st.get("sql_running")),
            replication_errno=int(st.get("last_io_errno") or 0),
            replication_error=str(st.get("last_io_error") or ""), paused=bool(view.paused),
            stopping=bool(self.state.get("stopping")), switchover_to=req.to if req else None,
            needs_rebuild=self.state.get("rebuild_reason", "") or "")
        extra = {"probe": probe, "role": role, "healthy": healthy, "message": message, "request": req}
        if leader is None:
            free_for = self._free_for(view.lock_index)
            rel = view.released
            if rel is not None and rel.name != self.cfg.node_name:
                # The holder released this generation itself because its mysqld is not running: it cannot
                # write, so there is nothing for lock-delay to wait out.
                if self._logged_release != rel:
                    self._logged_release = rel
                    log.info("%s released the leader lock (%s): no lock-delay to wait out", rel.name, rel.reason)
                extra["free_for_seen"] = free_for
                free_for += self.cfg.lock_delay
            extra["free_for"] = free_for
            left = self.cfg.lock_delay - free_for
            self._due = left if left > 0 else None
            if probe["up"] and sid and not o.stopping and req is None and not o.paused:
                ok, why, ranking = self.takeover_verdict(view, probe, free_for)
                o.takeover = (ok, why)
                extra["ranking"] = ranking
            elif req is not None and req.to == self.cfg.node_name and not req.handed_over \
                    and free_for < self.cfg.lock_delay:
                # A manual failover destroyed the old primary's session: it may not have fenced yet.
                o.switchover_to = None
                o.takeover = (False, f"request designates us; waiting out lock-delay "
                                     f"({self.cfg.lock_delay - free_for:.1f}s left)")
        elif not i_hold and probe["up"] and leader.promoted and not (src == leader.address and o.replication_ok):
            try:
                o.errant, _ = self.errant_against(leader, probe.get("executed", ""))
            except PilotError as exc:
                o.errant_unknown = str(exc)
        elif not i_hold and probe["up"] and leader.promoted and self.flavor.dialect == "mysql" \
                and time.monotonic() - self._errant_checked >= ERRANT_RECHECK:
            # MySQL's auto-position keeps a replica's extra GTIDs silently and replication runs on, so a
            # write that slipped into this replica would never be noticed: look while replicating too.
            self._errant_checked = time.monotonic()
            try:
                o.errant, _ = self.errant_against(leader, probe.get("executed", ""), replicating=True)
            except PilotError as exc:
                log.info("errant-transaction check against %s did not run (%s); replication runs on, "
                         "checking again in %ds", leader.name, exc, ERRANT_RECHECK)
        return o, extra, view

    # ---- actions -----------------------------------------------------------------------------
    def run_once(self) -> Decision:
        with ha_lock(self.cfg.state_dir):
            o, extra, view = self.observe()
            d = analysis.decide(o)
            summary = f"{d.action}: {d.reason}"
            if summary != self.last_decision:
                log.info("decision %s", summary)
                self.last_decision = summary
            extra["view"] = view
            self.actions()[d.action](o, d, extra)
            if o.leader is not None:
                self.last_leader = o.leader
                if self.state.get("last_leader") != o.leader.to_json():
                    self.state.update(last_leader=o.leader.to_json())
            self.publish(extra, o)
        return d

    def actions(self):
        """The explicit table from decision to action (orchestrator's recovery switch)."""
        return {analysis.WAIT: self.do_wait, analysis.STAY_PRIMARY: self.do_stay_primary,
                analysis.FENCE: self.do_fence, analysis.TAKE_LOCK: self.do_take_lock,
                analysis.PROMOTE: self.do_promote, analysis.FOLLOW: self.do_follow,
                analysis.REBUILD: self.do_rebuild, analysis.HAND_OVER: self.do_hand_over}

    def publish(self, extra: Dict, o: Observation) -> None:
        role = extra["role"]
        probe = self.probe_local() if extra.get("refresh") else extra["probe"]
        if extra.get("refresh"):
            leader = self.dcs.get_cluster().leader
            extra["healthy"], role, extra["message"] = self.health_of(probe, leader)
        self.publish_member(probe, self.member_state(probe, extra["healthy"], role, extra["message"], o.errant))

    def publish_member(self, probe: Dict, m: MemberState) -> None:
        if not self.sid and self.state.get("starting") and m.role not in ("down", "starting"):
            # Published without a session, this would read as "down" until the first one exists.
            m.role, m.message = "starting", f"joining: {m.message}"
        try:
            if not probe["up"]:
                # mysqld cannot say what it holds now: keep what it last said, which the election's
                # acknowledged-commit check reads (a crashed primary's position must not read as empty).
                cur = self.dcs.member(m.name)
                if cur is not None:
                    m.gtid_executed, m.gtid_received = cur.gtid_executed, cur.gtid_received
            self.dcs.publish_member(self.sid, m)
        except PilotError as exc:
            log.debug("publish failed: %s", exc)

    def do_wait(self, o, d, extra) -> None:
        pass

    def do_stay_primary(self, o, d, extra) -> None:
        self._ensure_primary_service()
        if not extra["view"].latest_snapshot:
            self.spawn_snapshot("no snapshot exists yet")

    def do_fence(self, o, d, extra) -> None:
        # Not the holder: another node may be primary already, so fence at once.
        self.fence(d.reason, urgent=not o.i_hold_lock)
        extra["refresh"] = True

    def do_take_lock(self, o, d, extra) -> None:
        req: Optional[Request] = extra.get("request")
        info = LeaderInfo(self.cfg.node_name, self.cfg.advertise_host, self.cfg.port,
                          extra["probe"].get("server_id") or self.cfg.server_id, since=time.time())
        if not self.dcs.acquire_leader(self.sid, info):
            log.info("leader lock not acquired (held, or in Consul's lock-delay)")
            return
        log.warning("acquired the leader lock (%s)", d.reason)
        self.promote(o, d.reason, extra.get("ranking", []), req, extra)
        extra["refresh"] = True

    def do_promote(self, o, d, extra) -> None:
        self.promote(o, d.reason, [], None, extra)
        extra["refresh"] = True

    def promote(self, o: Observation, reason: str, ranking, req: Optional[Request], extra: Dict) -> None:
        t0 = time.monotonic()
        srv = self.local()
        st = srv.replica_status()
        if st:
            # Apply everything already received before accepting writes. The heartbeat keeps the lease
            # meanwhile, so this wait is not cut short by it.
            if not srv.wait_relay_applied(timeout=PROMOTE_WAIT):
                log.error("relay log not applied within %.0fs; staying read-only, releasing the lock and "
                          "standing aside for %.0fs", time.monotonic() - t0, PROMOTION_BACKOFF)
                self.state.update(promotion_failed=boottime())
                self.dcs.release_leader(self.sid)
                return
            srv.stop_replica()
            srv.reset_replica_all()
        # A restored snapshot's seed belongs to following, never to a node that has been primary.
        self.state.update(seed_gtid=None, promotion_failed=None)
        gtid = srv.gtid_executed()
        server_id = int(srv.scalar("SELECT @@GLOBAL.server_id") or 0) or self.cfg.server_id
        info = LeaderInfo(self.cfg.node_name, self.cfg.advertise_host, self.cfg.port, server_id,
                          since=time.time(), promoted_gtid=gtid)
        if not self.dcs.acquire_leader(self.sid, info):
            log.error("lost the leader lock during promotion; staying read-only")
            return
        if self.cfg.durability == "semi-sync":
            srv.semi_sync_replica(False)
            srv.semi_sync_primary(True)       # no timeout: never acknowledged without a replica
        left = self.lease_left()
        self.lease.mark_writer(self.sid)
        if left < MIN_LEASE_TO_PROMOTE:
            log.error("lease has %.2fs left (under %.1fs) after %.1fs of promotion; staying read-only until "
                      "the session is renewed", left, MIN_LEASE_TO_PROMOTE, time.monotonic() - t0)
            return
        srv.set_read_only(False)
        srv.close()
        info.promoted = True
        self.dcs.acquire_leader(self.sid, info)
        took = time.monotonic() - t0
        log.warning("PROMOTED: %s is the writable primary at GTID %s (%s)", self.cfg.node_name, gtid or "-",
                    reason)
        self._ensure_primary_service()
        self.state.update(errant=None)
        view: ClusterView = extra["view"]
        history = view.history
        old = self.last_leader.name if self.last_leader and not analysis.after_clean_stop(history) else None
        durations = {"promote": round(took, 3)}
        if req is not None and req.to == self.cfg.node_name:
            kind, why = req.kind, req.reason or req.kind
            if req.fenced_at:
                durations["write_unavailable"] = round(time.time() - float(req.fenced_at), 3)
            self.dcs.put_json(REQUEST_KEY, None)
            old = req.origin or old
        elif old == self.cfg.node_name and o.leader is not None and o.leader.name == old:
            # We held the lock all along and only fenced (lease lapse, a blocked pass): not a failover.
            kind, why = "re-promotion", f"{reason}; this node kept the lock"
        elif old == self.cfg.node_name:
            kind, why = "failover", f"primary {old} (this node) lost its session and won again; {reason}"
        else:
            kind = "failover" if old else ("bootstrap" if not history else "election")
            rel = view.released
            if old and rel is not None and rel.name == old:
                why = f"primary {old} released the lock ({rel.reason}); {reason}"
            else:
                why = reason if not old else f"primary {old} lost its session; {reason}"
            if "free_for" in extra:
                durations["leader_free"] = round(extra.get("free_for_seen", extra["free_for"]), 3)
        rec = FailoverRecord(kind=kind, time=time.time(), old_primary=old, new_primary=self.cfg.node_name,
                             reason=why, candidates=[{"name": r.name, "chosen": r.name == self.cfg.node_name,
                                                      "why": r.why} for r in ranking],
                             durations=durations)
        self._record(rec)
        # We are the last primary now, also for the next record (a re-promotion is not a failover).
        self.last_leader = info
        self.state.update(last_leader=info.to_json())
        if not view.latest_snapshot:
            self.spawn_snapshot("first primary: taking the first snapshot now")

    def do_follow(self, o, d, extra) -> None:
        leader = d.target
        self.replicate_from(leader.name, leader.host, leader.port)
        extra["refresh"] = True

    def replicate_from(self, name: str, host: str, port: int) -> None:
        srv = self.local()
        seed = self.state.get("seed_gtid")
        srv.stop_replica()
        if seed:
            srv.seed_gtid(seed)
            log.info("seeded GTID position %s from the restored snapshot", seed)
            self.state.update(seed_gtid=None)
        elif self.flavor.name == "mariadb":
            # An ex-primary's position lives in its binlog, not in gtid_slave_pos.
            srv.execute("SET GLOBAL gtid_slave_pos = @@gtid_current_pos")
        srv.change_source(host, port, self.cfg.repl_user, self.cfg.repl_password)
        if self.cfg.durability == "semi-sync":
            srv.semi_sync_primary(False)
            srv.semi_sync_replica(True)
        srv.start_replica()
        srv.close()
        log.info("replicating from %s (%s:%s) with GTID auto-position", name, host, port)

    def do_rebuild(self, o, d, extra) -> None:
        reason = d.reason
        errant = o.errant
        # A rebuild that keeps failing (the newest snapshot cannot follow this primary) must not loop.
        recent = [t for t in self.state.get("rebuilds", []) if time.time() - t < 600]
        if len(recent) >= 3:
            msg = (f"rebuilt {len(recent)} times in 10 minutes and still cannot follow {o.leader.name}: "
                   f"{reason}; take a fresh snapshot on the primary (`mysqlpilot snapshot --force`) and "
                   "restart this node")
            if extra.get("message") != msg:
                log.error("%s", msg)
            extra["role"], extra["healthy"], extra["message"] = "rebuilding", False, msg
            return
        self.state.update(rebuilds=recent + [time.time()])
        log.error("REBUILD: %s; moving the datadir aside and restoring the newest snapshot", reason)
        self.state.update(rebuild_reason=reason, errant=[e for e in errant.split(",") if e] or None)
        extra["role"], extra["healthy"], extra["message"] = "rebuilding", False, reason
        # run-mysqld performs the rebuild before it starts mysqld again.
        mysqld.stop_mysqld(self.cfg)

    def do_hand_over(self, o, d, extra) -> None:
        req: Optional[Request] = extra.get("request")
        self.hand_over(req.to if req else "", req, extra["view"])
        extra["refresh"] = True

    def hand_over(self, target: str, req: Optional[Request], view: ClusterView) -> bool:
        """Planned switchover from this primary: fence (confirmed), let the target catch up, release."""
        tm = view.member(target)
        if tm is None:
            log.error("switchover target %s is not a member; ignoring the request", target)
            self.dcs.put_json(REQUEST_KEY, None)
            return False
        t_fence = time.time()
        fenced = self.fence(f"switchover to {target}", keep_lease=True)
        if fenced != "read-only":
            # mysqld is gone: the session ends with it and the election takes over, lock-delay included.
            log.error("switchover to %s aborted: fencing ended with %s; not releasing the lock", target, fenced)
            self.dcs.put_json(REQUEST_KEY, None)
            return False
        srv = self.local()
        gtid = srv.gtid_executed()
        srv.close()
        t0 = time.monotonic()
        try:
            tsrv = self.remote(tm.host, tm.port)
            caught_up = tsrv.wait_for_gtid(gtid, timeout=HANDOVER_CATCHUP) if gtid else True
            tsrv.close()
        except PilotError as exc:
            caught_up, gtid = False, f"{gtid} ({exc})"
        if not caught_up:
            log.error("switchover to %s aborted after %.1fs: it did not apply %s; staying primary", target,
                      time.monotonic() - t0, gtid)
            self.dcs.put_json(REQUEST_KEY, None)
            if self.lease_left() > MIN_LEASE_TO_PROMOTE:
                srv = self.local()
                srv.set_read_only(False)
                srv.close()
            return False
        body = {"to": target, "kind": req.kind if req else "switchover",
                "reason": (req.reason if req else "") or "switchover", "from": self.cfg.node_name,
                "requested": (req.requested if req and req.requested else time.time()),
                "fenced_at": t_fence, "handed_over": True}
        self.dcs.put_json(REQUEST_KEY, body)
        self.dcs.release_leader(self.sid)
        log.warning("handed the leader lock to %s at GTID %s", target, gtid or "-")
        # Follow the target now, while it promotes: with semi-sync its first commit waits for a replica's
        # ACK, and this node is the one that can give it soonest. The errant check is done: the target
        # confirmed it applied everything this node has. Until it is promoted nothing is written there.
        try:
            self.replicate_from(target, tm.host, tm.port)
        except PilotError as exc:
            log.info("following %s at once did not work (%s); the next pass will", target, exc)
        return True

    def _record(self, rec: FailoverRecord) -> None:
        try:
            self.dcs.append_history(rec.to_dict())
        except PilotError as exc:
            log.error("could not record history: %s", exc)

    def _primary_service_id(self) -> str:
        return f"{self.cfg.primary_service}-{self.cfg.node_name}"

    def _ensure_primary_service(self) -> None:
        try:
            self.dcs.register_service(self.cfg.primary_service, self._primary_service_id(),
                                      self.cfg.advertise_host, self.cfg.port, tags=("primary",))
        except PilotError as exc:
            log.warning("could not register %s: %s", self.cfg.primary_service, exc)

    def spawn_snapshot(self, why: str) -> None:
        if getattr(self, "_snap_proc", None) is not None and self._snap_proc.poll() is None:
            return
        log.info("starting a snapshot in the background: %s", why)
        logf = open(os.path.join(self.cfg.state_dir, "snapshot.log"), "ab")
        self._snap_proc = subprocess.Popen([sys.executable, "-m", "mysqlpilot", "snapshot", "--force"],
                                           stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()

    # ---- the loop ----------------------------------------------------------------------------
    def run_forever(self) -> None:
        # The watchdog first, before any Consul call: a restarted loop of a cut-off primary must fence
        # on the lease it finds in the state file. A short GIL switch interval lets it run within a
        # millisecond of waking (after a freeze) instead of waiting behind the other threads.
        sys.setswitchinterval(0.001)
        self.start_threads()
        log.info("HA loop started for %s (%s); session ttl %ss, lock-delay %ss, lease %ss",
                 self.cfg.node_name, self.cfg.address, self.cfg.session_ttl, self.cfg.lock_delay,
                 self.policy.lease)
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.run_once()
            except PilotError as exc:
                log.error("%s", exc)
            except Exception as exc:  # noqa: BLE001 - the loop never dies; the watchdog still guards the lease
                log.exception("HA pass failed unexpectedly: %s", exc)
            wait = max(0.2, self.cfg.loop_wait - (time.monotonic() - t0))
            due, self._due = self._due, None
            if due is not None and due < wait:
                # Lock-delay ends before the watch would return: pass again then, not up to a loop later.
                self._stop.wait(due + 0.01)
                continue
            try:
                # Wake at once when the leader key changes.
                self.dcs.watch_leader(self.leader_index, wait)
            except Exception as exc:  # noqa: BLE001
                log.error("%s", exc)
                self._stop.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        self.stop_threads()

    # ---- hooks -------------------------------------------------------------------------------
    def health_hook(self) -> Tuple[bool, str]:
        """ContainerPilot's health check: report the role and publish it. It never touches the session or
        the liveness check: only the watch's heartbeat does, so that whatever invalidates the session is
        preceded by giving up the lease.

        It is also a second, coarse watchdog: if `watch` is dead (crash-looping, killed), nothing else
        would fence a writable mysqld whose lease ended."""
        try:
            Watchdog(self.lease, self.fencer, self.cfg.fence_margin).check_once()
        except Exception as exc:  # noqa: BLE001 - the report below still runs
            log.error("health: fence check failed: %s", exc)
        probe = self.probe_local()
        leader = self.dcs.get_cluster().leader
        healthy, role, msg = self.health_of(probe, leader)
        self.publish_member(probe, self.member_state(probe, healthy, role, msg))
        return healthy, msg

    def pre_stop(self, timeout: float = PRE_STOP_WAIT) -> str:
        """SIGTERM: a primary hands over with a switchover before mysqld stops. Never costs a commit.
        It keeps its own heartbeat: ContainerPilot stops the watch job at the same time."""
        self.state.update(stopping=True)
        self.start_threads()
        try:
            return self._pre_stop(timeout)
        finally:
            self.stop_threads()

    def _pre_stop(self, timeout: float) -> str:
        with ha_lock(self.cfg.state_dir):
            view = self.dcs.get_cluster()
            leader = view.leader
            sid = self.sid
            if not (leader is not None and sid and leader.session == sid):
                self._leave()
                return "replica stopping"
            target, why = analysis.choose_switchover_target(view.members, self.cfg.node_name, None)
            if target is None:
                fenced = self.fence(f"stopping; {why}")
                self._record(FailoverRecord(kind="shutdown", time=time.time(), old_primary=self.cfg.node_name,
                                            new_primary=None, reason=f"pre-stop with no replica to hand over "
                                            f"to ({why}); the next election is a cold start"))
                if fenced != "read-only":
                    return f"primary stopping with no replica to hand over to ({why}); fence: {fenced}"
                self.stop_threads()
                self.dcs.release_leader(sid)
                self._leave()
                return f"primary stopping with no replica to hand over to ({why})"
            req = Request(to=target, kind="switchover", reason=f"pre-stop of {self.cfg.node_name}: {why}",
                          requested=time.time())
            if not self.hand_over(target, req, view):
                return "switchover failed; primary stays until mysqld stops"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.dcs.get_cluster().leader
            if leader is not None and leader.name == target:
                self.stop_threads()
                self._leave()
                return f"handed over to {target}"
            time.sleep(0.2)
        return f"handed the lock to {target}, which has not taken it yet"

    def _leave(self) -> None:
        sid = self.sid
        self.lease.void("leaving")
        if sid:
            try:
                self.dcs.destroy_session(sid)
            except PilotError:
                pass

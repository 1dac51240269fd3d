"""The HA loop (Patroni's ha.py, orchestrator's "recovery" half): observe, decide (analysis.py), act.

One `Node` per mysqld. `mysqlpilot watch` runs `Node.run_forever()`; the hooks call single methods.
Every pass holds the node's ha.lock so the loop, on-change and pre-stop never act at the same time.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

from . import analysis
from .analysis import Candidate, Decision, Observation, Policy
from .dcs.consul import ConsulDCS
from .errors import PilotError
from .flavors import get_flavor
from .model import FailoverRecord, LeaderInfo, MemberState
from .sqlclient import Server
from .statefile import StateFile, ha_lock

log = logging.getLogger(__name__)

REQUEST_KEY = "switchover"        # <kv_root>/switchover: pending switchover / manual failover
REQUEST_MAX_AGE = 120.0
SEMI_SYNC_LAPSED = ("primary, writable; semi-sync fell back to async (no replica acknowledged in time): "
                    "commits from now on may be lost on failover")


def probe_candidates(flavor, members: List[MemberState], root_password: str,
                     extra: Optional[List[Candidate]] = None, old_primary: Optional[str] = None
                     ) -> List[Candidate]:
    """Fresh failover facts, read from each live member's mysqld directly (published state is stale).

    Only members with a live session are asked: a frozen or cut-off old primary has none."""
    cands: List[Candidate] = list(extra or [])
    for m in members:
        if not m.alive:
            continue
        try:
            srv = Server(flavor, host=m.host, port=m.port, user="root", password=root_password,
                         connect_timeout=2)
            recv = srv.gtid_received() or srv.gtid_executed()
            st = srv.replica_status() or {}
            srv.close()
            cands.append(Candidate(m.name, True, m.healthy, m.nofailover, m.priority, st.get("lag_seconds"),
                                   recv))
        except PilotError as exc:
            cands.append(Candidate(m.name, False, False, m.nofailover, m.priority))
            log.info("candidate %s unreachable: %s", m.name, exc)
    for c in cands:
        c.was_primary = c.name == old_primary
        c.gtid_count = flavor.gtid_count(c.gtid_received)
        for o in cands:
            if o.name != c.name and o.reachable:
                c.contains[o.name] = flavor.gtid_contains(c.gtid_received, o.gtid_received)
    return cands


class Node:
    def __init__(self, cfg, dcs: Optional[ConsulDCS] = None):
        self.cfg = cfg
        self.flavor = get_flavor(cfg.flavor, cfg.flavor_version)
        self.dcs = dcs or ConsulDCS.from_config(cfg)
        self.state = StateFile(cfg.state_dir)
        self.policy = Policy.from_config(cfg)
        self.sid: Optional[str] = None
        self.last_ok: float = 0.0           # monotonic time a renew + heartbeat was last SENT and succeeded
        self.writable_primary = False       # this process made mysqld writable under the lock
        self.leader_index = 0
        self.free_since: Optional[float] = None
        # Persisted: on-change and a restarted loop are new processes, and must still know whose
        # failure they are handling (failover budget, semi-sync check, history's old primary).
        self.last_leader: Optional[LeaderInfo] = self._saved_leader()
        self.last_decision = ""
        self._semi_sync_lapsed = False
        self._fence_lock = threading.Lock()
        self._fence_srv: Optional[Server] = None
        self._stop = threading.Event()

    def _saved_leader(self) -> Optional[LeaderInfo]:
        text = self.state.get("last_leader")
        try:
            return LeaderInfo.from_json(text) if text else None
        except (ValueError, TypeError, AttributeError):
            return None                  # a name only, from an older release, or garbage

    # ---- connections -------------------------------------------------------------------------
    def local(self) -> Server:
        return Server(self.flavor, socket=self.cfg.socket, user="root", password=self.cfg.root_password,
                      connect_timeout=2)

    def remote(self, host: str, port: int) -> Server:
        return Server(self.flavor, host=host, port=port, user="root", password=self.cfg.root_password,
                      connect_timeout=2)

    # ---- lease -------------------------------------------------------------------------------
    def lease_left(self) -> float:
        if not self.last_ok:
            return -1.0
        return self.last_ok + self.policy.lease - time.monotonic()

    def ensure_session(self, healthy: bool, sent: Optional[float] = None) -> None:
        """Renew (or create) our session; track the lease. A node that is not healthy gets none.

        `sent` is when the heartbeat that preceded this renew was sent: the lease counts from the
        earlier of the two, so Consul cannot expire the check or the session before our lease ends.
        """
        sent = time.monotonic() if sent is None else sent
        sid = self.sid or self.state.get("session")
        if sid:
            ttl = self.dcs.renew_session(sid)
            if ttl is None:
                log.warning("Consul session %s is gone; creating a new one", sid[:8])
                sid = None
        if not sid and healthy:
            try:
                sid = self.dcs.create_session(self.cfg.session_ttl, self.cfg.lock_delay,
                                              ["serfHealth", self.cfg.liveness_check_id])
            except PilotError as exc:
                log.info("no session yet: %s", exc)
                sid = None
        self.sid = sid
        if self.state.get("session") != sid:
            self.state.update(session=sid)
        if sid and healthy:
            self.last_ok = sent
            if self.state.get("starting"):
                self.state.update(starting=None)

    def heartbeat(self, alive: bool, note: str) -> bool:
        """Drive the liveness check linked to our session: pass while mysqld answers, fail at once
        when it does not (that invalidates the session immediately: the fast failover path).

        Replication health is NOT part of it: a replica whose primary just died must keep its session
        to stand in the election. ContainerPilot's own service check carries the health hook's verdict.
        """
        cid = self.cfg.liveness_check_id
        try:
            if alive:
                try:
                    self.dcs.pass_check(cid, note)
                except PilotError:
                    self.dcs.register_check(cid, f"mysqlpilot liveness of {self.cfg.node_name}",
                                            self.cfg.check_ttl)
                    self.dcs.pass_check(cid, note)
            else:
                for c in (cid, self.cfg.check_id):
                    try:
                        self.dcs.fail_check(c, note)
                    except PilotError:
                        pass
            return True
        except PilotError as exc:
            log.debug("check update failed: %s", exc)
            return False

    # ---- fencing -----------------------------------------------------------------------------
    def fence(self, reason: str) -> None:
        with self._fence_lock:
            # A connection kept open for this: after a freeze (SIGSTOP, VM pause) fencing must not wait
            # for a new login.
            srv, self._fence_srv = self._fence_srv, None
            for attempt in (1, 2):
                try:
                    srv = srv or self.local()
                    srv.set_read_only(True)
                    killed = srv.kill_client_connections()
                    log.warning("FENCED: read-only now (%s); killed %s client connections", reason, killed)
                    break
                except PilotError as exc:
                    if srv is not None:
                        srv.close()
                    srv = None
                    if attempt == 2:
                        log.error("fencing failed (%s): %s", reason, exc)
            if srv is not None:
                srv.close()
            self.writable_primary = False
        try:
            self.dcs.deregister_service(self._primary_service_id())
        except PilotError:
            pass

    def _watchdog(self) -> None:
        """Fence on time alone: a primary that cannot renew must be read-only before its lease ends,
        even when a Consul call hangs inside the main loop."""
        while not self._stop.wait(0.05):
            if self.writable_primary and self.lease_left() <= 0:
                self.fence("lease expired: could not renew the Consul session in time")
            elif self.writable_primary and self._fence_srv is None:
                with self._fence_lock:
                    try:
                        self._fence_srv = self.local()
                        self._fence_srv.ping()
                    except PilotError:
                        self._fence_srv = None

    # ---- observation -------------------------------------------------------------------------
    def probe_local(self) -> Dict:
        """mysqld's own view: up, read_only, replication, GTIDs."""
        out: Dict = {"up": False, "read_only": None, "status": None, "executed": "", "received": ""}
        try:
            srv = self.local()
            out["read_only"] = srv.read_only()
            out["status"] = srv.replica_status()
            out["executed"] = srv.gtid_executed()
            out["received"] = srv.gtid_received()
            if self.cfg.durability == "semi-sync" and out["read_only"] is False:
                out["semi_sync"] = srv.semi_sync_status()
            out["up"] = True
            srv.close()
        except PilotError as exc:
            out["error"] = str(exc)
            # mysqld answered but refused us: it is alive, so do not drop the session over a config error.
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
            gtid_received=probe.get("received", ""), server_id=self.cfg.server_id,
            priority=self.cfg.priority, nofailover=self.cfg.nofailover, flavor=self.flavor.name,
            version=self.flavor.version,
            semi_sync_replicas=int((probe.get("semi_sync") or {}).get("clients", 0) or 0),
            errant=[e for e in errant.split(",") if e] or list(self.state.get("errant", []) or []),
            message=message, updated=time.time())

    def errant_against(self, leader: LeaderInfo, mine: str) -> Tuple[str, str]:
        """(errant GTIDs, leader's executed set). Raises PilotError if the leader is unreachable."""
        srv = self.remote(leader.host, leader.port)
        theirs = srv.gtid_executed()
        srv.close()
        if not mine:
            return "", theirs
        if self.flavor.name == "mariadb":
            from .gtid import parse_mariadb
            return analysis.mariadb_errant(mine, theirs, leader.promoted_gtid, leader.server_id,
                                           parse_mariadb), theirs
        return self.flavor.gtid_subtract(mine, theirs), theirs

    def gather_candidates(self, members: List[MemberState], probe: Dict) -> List[Candidate]:
        # Every node ranks the same set, the old primary included (if it is alive again), so that they
        # agree on the winner.
        old = self.last_leader.name if self.last_leader is not None else None
        me = self.cfg.node_name
        st = probe.get("status") or {}
        mine = Candidate(me, True, probe["up"], self.cfg.nofailover, self.cfg.priority, st.get("lag_seconds"),
                         probe.get("received") or probe.get("executed", ""))
        others = [m for m in members if m.name != me]
        return probe_candidates(self.flavor, others, self.cfg.root_password, extra=[mine], old_primary=old)

    def takeover_verdict(self, members: List[MemberState], probe: Dict
                         ) -> Tuple[bool, str, List[analysis.Ranked]]:
        now = time.time()
        history = self.dcs.history()
        allowed, why = analysis.failover_budget(history, now, self.policy)
        if self.last_leader is not None and not allowed and not analysis.after_clean_stop(history):
            return False, why, []
        cands = self.gather_candidates(members, probe)
        must = ""
        if self.cfg.durability == "semi-sync" and self.last_leader is not None:
            old = next((m for m in members if m.name == self.last_leader.name), None)
            must = old.gtid_executed if old else ""
            lost = [c.name for c in cands if not c.reachable]
            if lost:
                return False, (f"semi-sync: replica(s) {', '.join(lost)} unreachable and may hold "
                               "acknowledged commits; not promoting automatically"), []
        ranking = analysis.rank_candidates(cands, self.policy, must, self.flavor.gtid_contains)
        # Nobody can take the lock during Consul's lock-delay: count the grace from its end, or the
        # second best would race the best at the very moment the lock becomes free.
        free_for = time.monotonic() - (self.free_since or time.monotonic()) - self.cfg.lock_delay
        ok, why = analysis.my_turn(ranking, self.cfg.node_name, free_for, self.policy.failover_grace)
        return ok, why, ranking

    def pending_request(self) -> Optional[Dict]:
        req = self.dcs.get_json(REQUEST_KEY)
        if not req or time.time() - float(req.get("requested", 0)) > REQUEST_MAX_AGE:
            return None
        return req

    def observe(self) -> Tuple[Observation, Dict]:
        probe = self.probe_local()
        leader, self.leader_index = self.dcs.get_leader()
        healthy, role, message = self.health_of(probe, leader)
        lapsed = message == SEMI_SYNC_LAPSED
        if lapsed != self._semi_sync_lapsed:
            if lapsed:
                log.warning("%s", message)
            else:
                log.info("semi-sync acknowledgements are back: no acknowledged commit can be lost")
            self._semi_sync_lapsed = lapsed
        t_hb = time.monotonic()
        # A failing check invalidates our session at once: the fast path when mysqld dies.
        if probe.get("refused"):
            log.error("%s", probe.get("error"))
            hb_ok = False
        else:
            hb_ok = self.heartbeat(probe["up"], message)
        self.ensure_session(probe["up"] and hb_ok, sent=t_hb)
        if leader is not None and self.sid and leader.session == self.sid and probe["read_only"] is False:
            self.writable_primary = True
        i_hold = bool(leader is not None and self.sid and leader.session == self.sid)
        st = probe.get("status") or {}
        src = f"{st['source_host']}:{st.get('source_port')}" if st.get("source_host") else None
        req = self.pending_request()
        o = Observation(
            me=self.cfg.node_name, now=time.time(), mysqld_up=probe["up"], read_only=probe["read_only"],
            have_session=bool(self.sid), lease_left=self.lease_left(), leader=leader, i_hold_lock=i_hold,
            replicating_from=src, replication_ok=bool(st.get("io_running") and st.get("sql_running")),
            replication_errno=int(st.get("last_io_errno") or 0), paused=bool(self.dcs.get_paused()),
            stopping=bool(self.state.get("stopping")), switchover_to=(req or {}).get("to"),
            needs_rebuild=self.state.get("rebuild_reason", "") or "")
        extra = {"probe": probe, "role": role, "healthy": healthy, "message": message, "request": req}
        if leader is None:
            if self.free_since is None:
                self.free_since = time.monotonic()
            if probe["up"] and self.sid and not o.stopping and req is None and not o.paused:
                members = self.dcs.members()
                ok, why, ranking = self.takeover_verdict(members, probe)
                o.takeover = (ok, why)
                extra["ranking"] = ranking
        else:
            self.free_since = None
            if not i_hold and probe["up"] and not (src == leader.address and o.replication_ok):
                try:
                    o.errant, _ = self.errant_against(leader, probe.get("executed", ""))
                except PilotError as exc:
                    log.info("cannot compare GTIDs with %s yet: %s", leader.name, exc)
        return o, extra

    # ---- actions -----------------------------------------------------------------------------
    def run_once(self) -> Decision:
        with ha_lock(self.cfg.state_dir):
            o, extra = self.observe()
            d = analysis.decide(o)
            summary = f"{d.action}: {d.reason}"
            if summary != self.last_decision:
                log.info("decision %s", summary)
                self.last_decision = summary
            getattr(self, "do_" + d.action)(o, d, extra)
            if o.leader is not None:
                self.last_leader = o.leader
                if self.state.get("last_leader") != o.leader.to_json():
                    self.state.update(last_leader=o.leader.to_json())
            self.publish(extra, o)
        return d

    def publish(self, extra: Dict, o: Observation) -> None:
        role = extra["role"]
        probe = self.probe_local() if extra.get("refresh") else extra["probe"]
        if extra.get("refresh"):
            leader, _ = self.dcs.get_leader()
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
        self.writable_primary = True
        self._ensure_primary_service()
        if not self.dcs.get_latest_snapshot():
            self.spawn_snapshot("no snapshot exists yet")

    def do_fence(self, o, d, extra) -> None:
        self.fence(d.reason)
        extra["refresh"] = True

    def do_take_lock(self, o, d, extra) -> None:
        req = extra.get("request")
        info = LeaderInfo(self.cfg.node_name, self.cfg.advertise_host, self.cfg.port, self.cfg.server_id,
                          since=time.time())
        if not self.dcs.acquire_leader(self.sid, info):
            log.info("leader lock not acquired (held, or in Consul's lock-delay)")
            return
        log.warning("acquired the leader lock (%s)", d.reason)
        self.promote(o, d.reason, extra.get("ranking", []), req)
        extra["refresh"] = True

    def do_promote(self, o, d, extra) -> None:
        self.promote(o, d.reason, [], None)
        extra["refresh"] = True

    def promote(self, o: Observation, reason: str, ranking, req: Optional[Dict]) -> None:
        t0 = time.monotonic()
        srv = self.local()
        st = srv.replica_status()
        if st:
            # Apply everything already received before accepting writes.
            if not srv.wait_relay_applied(timeout=60):
                log.error("relay log not applied within 60s; staying read-only and releasing the lock")
                self.dcs.release_leader(self.sid)
                return
            srv.stop_replica()
            srv.reset_replica_all()
        gtid = srv.gtid_executed()
        info = LeaderInfo(self.cfg.node_name, self.cfg.advertise_host, self.cfg.port, self.cfg.server_id,
                          since=time.time(), promoted_gtid=gtid)
        if not self.dcs.update_leader(self.sid, info):
            log.error("lost the leader lock during promotion; staying read-only")
            return
        if self.lease_left() <= 0:
            log.error("lease expired during promotion; staying read-only")
            return
        if self.cfg.durability == "semi-sync":
            srv.semi_sync_replica(False)
            srv.semi_sync_primary(True, self.cfg.semi_sync_timeout_ms)
        srv.set_read_only(False)
        self.writable_primary = True
        srv.close()
        took = time.monotonic() - t0
        log.warning("PROMOTED: %s is the writable primary at GTID %s (%s)", self.cfg.node_name, gtid or "-",
                    reason)
        self._ensure_primary_service()
        self.state.update(errant=None)
        # The old primary may be this very node: its mysqld crashed, came back and was still the best.
        history = self.dcs.history()
        old = self.last_leader.name if self.last_leader and not analysis.after_clean_stop(history) else None
        if req and req.get("to") == self.cfg.node_name:
            kind = req.get("kind", "switchover")
            why = req.get("reason", kind)
            durations = {"promote": round(took, 3)}
            if req.get("fenced_at"):
                durations["write_unavailable"] = round(time.time() - float(req["fenced_at"]), 3)
            self.dcs.put_json(REQUEST_KEY, None)
        else:
            kind = "failover" if old else ("bootstrap" if not history else "election")
            why = reason if not old else f"primary {old} lost its session; {reason}"
            durations = {"promote": round(took, 3)}
            if self.free_since is not None:
                durations["leader_free"] = round(time.monotonic() - self.free_since, 3)
        rec = FailoverRecord(kind=kind, time=time.time(), old_primary=old or (req or {}).get("from"),
                             new_primary=self.cfg.node_name, reason=why,
                             candidates=[{"name": r.name, "chosen": r.name == self.cfg.node_name,
                                          "why": r.why} for r in ranking],
                             durations=durations)
        self._record(rec)
        if not self.dcs.get_latest_snapshot():
            self.spawn_snapshot("first primary: taking the first snapshot now")

    def do_follow(self, o, d, extra) -> None:
        leader = d.target
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
        srv.change_source(leader.host, leader.port, self.cfg.repl_user, self.cfg.repl_password)
        if self.cfg.durability == "semi-sync":
            srv.semi_sync_primary(False, self.cfg.semi_sync_timeout_ms)
            srv.semi_sync_replica(True)
        srv.start_replica()
        srv.close()
        log.info("replicating from %s (%s) with GTID auto-position", leader.name, leader.address)
        extra["refresh"] = True

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
        from .mysqld import stop_mysqld
        stop_mysqld(self.cfg)

    def do_hand_over(self, o, d, extra) -> None:
        req = extra.get("request") or {}
        self.hand_over(req.get("to"), req)
        extra["refresh"] = True

    def hand_over(self, target: str, req: Dict) -> bool:
        """Planned switchover from this primary: fence, let the target catch up, release the lock."""
        members = {m.name: m for m in self.dcs.members()}
        tm = members.get(target)
        if tm is None:
            log.error("switchover target %s is not a member; ignoring the request", target)
            self.dcs.put_json(REQUEST_KEY, None)
            return False
        t_fence = time.time()
        self.fence(f"switchover to {target}")
        srv = self.local()
        gtid = srv.gtid_executed()
        srv.close()
        try:
            tsrv = self.remote(tm.host, tm.port)
            caught_up = tsrv.wait_for_gtid(gtid, timeout=30) if gtid else True
            tsrv.close()
        except PilotError as exc:
            caught_up, gtid = False, f"{gtid} ({exc})"
        if not caught_up or self.lease_left() <= 0:
            log.error("switchover to %s aborted: it did not apply %s in 30s; staying primary", target, gtid)
            self.dcs.put_json(REQUEST_KEY, None)
            if self.lease_left() > 0:
                srv = self.local()
                srv.set_read_only(False)
                srv.close()
                self.writable_primary = True
            return False
        req = dict(req, to=target, fenced_at=t_fence, gtid=gtid, **{"from": self.cfg.node_name})
        req.setdefault("requested", time.time())
        self.dcs.put_json(REQUEST_KEY, req)
        self.dcs.release_leader(self.sid)
        log.warning("handed the leader lock to %s at GTID %s", target, gtid or "-")
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
        wd = threading.Thread(target=self._watchdog, name="fence-watchdog", daemon=True)
        wd.start()
        log.info("HA loop started for %s (%s); session ttl %ss, lock-delay %ss, lease %ss",
                 self.cfg.node_name, self.cfg.address, self.cfg.session_ttl, self.cfg.lock_delay,
                 self.policy.lease)
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.run_once()
            except PilotError as exc:
                log.error("%s", exc)
            wait = max(0.2, self.cfg.loop_wait - (time.monotonic() - t0))
            try:
                # Wake at once when the leader key changes.
                self.dcs.watch_leader(self.leader_index, wait)
            except PilotError as exc:
                log.error("%s", exc)
                self._stop.wait(wait)

    def stop(self) -> None:
        self._stop.set()

    # ---- hooks -------------------------------------------------------------------------------
    def health_hook(self) -> Tuple[bool, str]:
        """ContainerPilot's health check: renew, confirm the role, publish. Exit code follows `healthy`."""
        probe = self.probe_local()
        leader, _ = self.dcs.get_leader()
        self.sid = self.state.get("session")
        if self.sid and self.dcs.renew_session(self.sid) is None:
            self.sid = None
        healthy, role, msg = self.health_of(probe, leader)
        if not probe["up"] and not probe.get("refused"):
            self.heartbeat(False, msg)     # mysqld died in a live container: drop the session now
        elif self.sid and probe["up"]:
            self.heartbeat(True, msg)
        # Fencing is the HA loop's job: it holds ha.lock and a consistent view; a hook must not act on
        # a view that may be a moment stale (it could fence a primary that was just promoted).
        self.publish_member(probe, self.member_state(probe, healthy, role, msg))
        return healthy, msg

    def pre_stop(self, timeout: float = 60.0) -> str:
        """SIGTERM: a primary hands over with a switchover before mysqld stops. Never costs a commit."""
        self.state.update(stopping=True)
        with ha_lock(self.cfg.state_dir):
            probe = self.probe_local()
            leader, _ = self.dcs.get_leader()
            self.sid = self.state.get("session")
            if not (leader is not None and self.sid and leader.session == self.sid):
                self._leave()
                return "replica stopping"
            if probe["up"]:
                t_hb = time.monotonic()
                self.ensure_session(self.heartbeat(True, "stopping: handing over"), sent=t_hb)
            members = self.dcs.members()
            target, why = analysis.choose_switchover_target(members, self.cfg.node_name, None)
            if target is None:
                self.fence(f"stopping; {why}")
                self._record(FailoverRecord(kind="shutdown", time=time.time(), old_primary=self.cfg.node_name,
                                            new_primary=None, reason=f"pre-stop with no replica to hand over "
                                            f"to ({why}); the next election is a cold start"))
                self.dcs.release_leader(self.sid)
                self._leave()
                return f"primary stopping with no replica to hand over to ({why})"
            req = {"to": target, "kind": "switchover", "reason": f"pre-stop of {self.cfg.node_name}: {why}",
                   "requested": time.time()}
            if not self.hand_over(target, req):
                return "switchover failed; primary stays until mysqld stops"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader, _ = self.dcs.get_leader()
            if leader is not None and leader.name == target:
                self._leave()
                return f"handed over to {target}"
            time.sleep(0.2)
        return f"handed the lock to {target}, which has not taken it yet"

    def _leave(self) -> None:
        if self.sid:
            try:
                self.dcs.destroy_session(self.sid)
            except PilotError:
                pass

"""One observation per pass: the local mysqld probed once, the cluster read once (one consistent
Consul read), and everything the decisions need derived from them, the lock-delay wait and the hand-off
included (handoff.py). I/O here is reading only; nothing is changed but this node's own memory of what
it saw (first sight of a free lock, members seen without a session)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from . import accounts, analysis, handoff, node_requests
from .analysis import Candidate, Observation, Ranked
from .candidates import candidate_from, probe_candidates
from .dcs.base import ClusterView, Release, Request
from .errors import PilotError
from .failsafe_keeper import CLAIM, ConsulSeen, promise_of
from .flavors import quote
from .heartbeat import ENDED
from .lease import WRITER, boottime
from .model import LeaderInfo, MemberState
from .statefile import snapshot_running

log = logging.getLogger(__name__)

SEMI_SYNC_LAPSED = ("primary, writable; semi-sync is off although mysqlpilot set it with no timeout (switched off "
                    "by hand or by the server): commits from now on may be lost on failover; a switchover turns it "
                    "on again")
ERRANT_RECHECK = 5.0              # seconds between errant checks of a MySQL replica that replicates fine


@dataclass
class Report:
    """What this pass publishes about the node; an action may change it (a rebuild says so)."""
    role: str
    healthy: bool
    message: str
    refresh: bool = False             # the action changed mysqld: probe again before publishing


@dataclass
class Seen:
    """One pass's observation: what the decisions read (`o`) and the facts the actions need."""
    o: Observation
    view: ClusterView
    probe: Dict
    report: Report
    request: Optional[Request] = None            # an operator's request that applies to this generation
    handoff: Optional[Release] = None            # a valid hand-off marker of the free lock
    free_for: Optional[float] = None             # seconds this node counts the free lock waited out
    free_for_seen: Optional[float] = None        # ... by its own sight only (before a hand-off's credit)
    ranking: List[Ranked] = field(default_factory=list)


class Observer:
    def __init__(self, node):
        self.n = node
        self._semi_sync_lapsed = False
        self._errant_checked = -1e9       # monotonic time of the last errant check while replicating (MySQL)

    def probe_local(self) -> Dict:
        """mysqld's own view: up, read_only, replication, GTIDs."""
        out: Dict = {"up": False, "read_only": None, "status": None, "executed": "", "received": ""}
        try:
            srv = self.n.probe_conn()
            out["read_only"] = srv.read_only()
            out["status"] = srv.replica_status()
            out["executed"] = srv.gtid_executed()
            # The live one: a restore gives the node a new server_id that a long-running watch's
            # config does not know.
            out["server_id"] = int(srv.scalar("SELECT @@GLOBAL.server_id") or 0)
            out["version"] = str(srv.scalar("SELECT VERSION()") or "")     # the running server's, for status
            st = out["status"] or {}
            out["received"] = self.n.flavor.gtid_union(out["executed"], st["retrieved"]) \
                if st.get("retrieved") else out["executed"]
            if self.n.cfg.durability == "semi-sync" and out["read_only"] is False:
                out["semi_sync"] = srv.semi_sync_status()
            out["up"] = True
            self.n._last_executed = out["executed"]
            srv.close()
        except PilotError as exc:
            out["error"] = str(exc)
            out["refused"] = "refused user" in str(exc)
        return out

    def sql_stop(self, st: Dict, executed: str) -> Tuple[int, str, int]:
        """(errno, error, passes in a row) of a SQL thread stopped by an error that may mean diverged data,
        counted while gtid_executed stays put (kept in the state file: on-change passes count too)."""
        errno = int(st.get("last_sql_errno") or 0) if st and not st.get("sql_running") else 0
        prev = self.n.state.get("sql_stop")
        if errno not in analysis.DIVERGED_ERRNOS:
            if prev is not None:
                self.n.state.update(sql_stop=None)
            return errno, str(st.get("last_sql_error") or "") if errno else "", 0
        same = isinstance(prev, dict) and prev.get("errno") == errno and prev.get("executed") == executed
        n = int(prev.get("n") or 0) + 1 if same else 1
        self.n.state.update(sql_stop={"errno": errno, "executed": executed, "n": n})
        return errno, str(st.get("last_sql_error") or ""), n

    def health_of(self, probe: Dict, leader: Optional[LeaderInfo]) -> Tuple[bool, str, str]:
        """(healthy, role, message) from what mysqld and Consul say."""
        if not probe["up"]:
            if self.n.state.get("starting"):
                return False, "starting", "mysqld is starting"
            return False, "down", f"mysqld not answering: {probe.get('error', '')}"
        st = probe["status"]
        # Reporting only: the leader key names us. Decisions use the session id (observe()).
        if leader is not None and leader.name == self.n.cfg.node_name:
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
        if lag is not None and lag > self.n.cfg.max_replica_lag:
            return False, "replica", f"lag {lag}s above max_replica_lag {self.n.cfg.max_replica_lag}s"
        return True, "replica", f"replicating from {leader.name}"

    def member_state(self, probe: Dict, healthy: bool, role: str, message: str, errant: str = ""
                     ) -> MemberState:
        st = probe.get("status") or {}
        src = None
        if st.get("source_host"):
            src = f"{st['source_host']}:{st.get('source_port')}"
        return MemberState(
            name=self.n.cfg.node_name, host=self.n.cfg.advertise_host, port=self.n.cfg.port, role=role,
            healthy=healthy, read_only=probe.get("read_only"), replicating_from=src,
            io_running=bool(st.get("io_running")), sql_running=bool(st.get("sql_running")),
            lag_seconds=st.get("lag_seconds"), gtid_executed=probe.get("executed", ""),
            gtid_received=probe.get("received", ""), server_id=probe.get("server_id") or self.n.cfg.server_id,
            priority=self.n.cfg.priority, nofailover=self.n.cfg.nofailover, snapshotting=snapshot_running(self.n.state),
            flavor=self.n.flavor.name, version=self.n.flavor.version, server_version=probe.get("version") or "",
            semi_sync_replicas=int((probe.get("semi_sync") or {}).get("clients", 0) or 0),
            api=self.n.cfg.api_advertised, accounts=accounts.SCHEME,
            errant=[e for e in errant.split(",") if e] or list(self.n.state.get("errant", []) or []),
            message=message, updated=time.time())

    def errant_against(self, leader: LeaderInfo, mine: str, replicating: bool = False) -> Tuple[str, str]:
        """(errant GTIDs, leader's set). Raises PilotError if the leader is unreachable. Compared with
        everything the leader has, relay log included. `replicating`: this node replicates from the
        leader right now (MySQL only)."""
        srv = self.n.remote(leader.host, leader.port)
        try:
            theirs = srv.gtid_received()
            if not mine:
                return "", theirs
            if self.n.flavor.name == "mariadb":
                from .gtid import parse_mariadb
                return analysis.mariadb_errant(mine, theirs, leader.promoted_gtid, leader.server_id,
                                               parse_mariadb), theirs
            # MySQL: the leader's own GTID_SUBTRACT on the real sets (server-UUID intervals, tags).
            errant = "".join(str(srv.scalar(f"SELECT GTID_SUBTRACT({quote(mine)}, {quote(theirs)})")
                                 or "").split())
            if errant:
                uuid = str(srv.scalar("SELECT @@GLOBAL.server_uuid") or "").lower()
                if replicating:
                    # Following it now: its own UUID's GTIDs here are its commits in flight (AFTER_SYNC).
                    from .gtid import format_mysql, parse_mysql
                    errant = format_mysql({k: v for k, v in parse_mysql(errant).items()
                                           if k.split(":")[0] != uuid})
                else:
                    # Not connected (a partition just healed): only the tail above its commits is in flight.
                    errant = analysis.mysql_inflight_tail(errant, theirs, uuid)
            return errant, theirs
        finally:
            srv.close()

    def gather_candidates(self, members: List[MemberState], probe: Dict, released_by: Optional[str] = None
                          ) -> List[Candidate]:
        # Every node ranks the same set, the old primary included (if it is alive again), so that they
        # agree on the winner. One that released the lock because its mysqld died is left out while
        # its session still lives a moment: it would read as unreachable.
        old = released_by or (self.n.last_leader.name if self.n.last_leader is not None else None)
        me = self.n.cfg.node_name
        mine = candidate_from(me, self.n.cfg.nofailover, self.n.cfg.priority, probe.get("executed", ""),
                              probe.get("received", ""), probe.get("status"), self.n.flavor)
        mine.healthy = bool(probe["up"])
        mine.snapshotting = snapshot_running(self.n.state)
        others = [m for m in members if m.name != me]
        # A member without a session is waited for as long as a live one's session may take to end.
        since, now = self.n.state.get("no_session_since") or {}, boottime()
        recent = [n for n, t in since.items() if now - t < 2 * self.n.policy.session_ttl]
        return probe_candidates(self.n.flavor, others, self.n.cfg, extra=[mine], old_primary=old,
                                released_by=released_by, count_sessionless=recent)

    def note_sessions(self, members: List[MemberState]) -> None:
        """Remember when this node first saw each member without a session (boot-time clock, persisted:
        on-change is another process)."""
        old, now = self.n.state.get("no_session_since"), boottime()
        old = {k: v for k, v in old.items() if isinstance(v, (int, float)) and v <= now} \
            if isinstance(old, dict) else {}
        new = {m.name: old.get(m.name, now) for m in members if not m.alive}
        if new != self.n.state.get("no_session_since"):
            self.n.state.update(no_session_since=new)

    def takeover_verdict(self, view: ClusterView, probe: Dict, free_for: float
                         ) -> Tuple[bool, str, List[analysis.Ranked]]:
        """May this node take the free lock now? `free_for`: seconds since this node first saw this
        generation of the lock free."""
        if free_for < self.n.cfg.lock_delay:
            # Candidates wait out lock-delay themselves: Consul keeps its own only in its leader's memory.
            return False, f"waiting out lock-delay ({self.n.cfg.lock_delay - free_for:.1f}s left)", []
        rel = view.released
        cands = self.gather_candidates(view.members, probe, rel.name if rel is not None else None)
        return analysis.takeover_turn(cands, self.n.policy, self.n.cfg.node_name, self.must_contain(view),
                                      self.n.flavor.gtid_contains, free_for - self.n.cfg.lock_delay)

    def must_contain(self, view: ClusterView) -> str:
        """With semi-sync, what the old primary last published: it may have acknowledged all of it."""
        if self.n.cfg.durability != "semi-sync" or self.n.last_leader is None:
            return ""
        old = view.member(self.n.last_leader.name)
        return (old.gtid_received or old.gtid_executed) if old else ""

    def free_lock(self, o: Observation, view: ClusterView, probe: Dict, req: Optional[Request],
                           seen: "Seen") -> None:
        """The leader key is free: how long this node has waited, whether a hand-off lets it skip the
        wait or leaves the lock to another node, and whether it may take the lock now."""
        me, lock_delay = self.n.cfg.node_name, self.n.cfg.lock_delay
        saved = self.n.state.get("free_seen")
        sight, free_for = handoff.lock_wait(saved, view.lock_index, view.index, boottime())
        if saved != sight.to_dict():
            self.n.state.update(free_seen=sight.to_dict())
        rel = view.released
        valid, why = handoff.handoff_valid(rel, view.lock_index, time.time(), self.n.timing.handoff_max_age)
        if rel is not None and rel.name != me:
            self.n.say_once("release", why if valid else f"{why}: waiting out lock-delay")
        if valid and rel.name != me:
            # The holder released this generation itself, fenced: nothing for lock-delay to wait out.
            seen.handoff = rel
            seen.free_for_seen = free_for
            free_for += lock_delay
        seen.free_for = free_for
        left = lock_delay - free_for
        self.n._due = left if left > 0 else None
        target = rel.to if seen.handoff is not None and rel.to else (req.to if req else None)
        if target is not None and target != me and free_for >= lock_delay + self.n.cfg.failover_grace:
            self.n.say_once("designation", f"{target} was designated but did not take the lock within "
                                          f"{lock_delay + self.n.cfg.failover_grace:.1f}s; electing")
            target = None
        o.switchover_to = target
        if not (probe["up"] and self.n.sid and not o.stopping):
            return
        ok, why = self.n.promises.may_take(view, rel.name if rel is not None and valid else None)
        if not ok and not (target == me and req is not None and req.force):   # `failover --force`: the operator's call
            o.takeover = (False, why)
            return
        if target == me:
            if free_for < lock_delay:
                # A manual failover destroyed the old primary's session: it may not have fenced yet.
                o.takeover = (False, f"waiting out lock-delay ({lock_delay - free_for:.1f}s left)")
                return
            cands = self.gather_candidates(view.members, probe, rel.name if seen.handoff is not None else None)
            ok, why, ranking = analysis.designated_turn(cands, self.n.policy, me, self.must_contain(view),
                                                        self.n.flavor.gtid_contains,
                                                        force=bool(req is not None and req.to == me and req.force))
            o.takeover = (ok, why)
            seen.ranking = ranking
        elif target is None and not o.paused:
            ok, why, ranking = self.takeover_verdict(view, probe, free_for)
            o.takeover = (ok, why)
            seen.ranking = ranking

    def observe(self) -> "Seen":
        probe = self.probe_local()
        view = self.n.dcs.get_cluster()
        leader = view.leader
        self.n.leader_index = view.index
        self.note_sessions(view.members)
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
        sid = self.n.sid
        i_hold = bool(leader is not None and sid and leader.session == sid)
        if i_hold:
            self.n._generation = view.lock_index
        st = probe.get("status") or {}
        src = f"{st['source_host']}:{st.get('source_port')}" if st.get("source_host") else None
        req = view.request
        applies, why = handoff.request_applies(req, view.lock_index)
        if req is not None and not applies:
            self.n.say_once("request", why)
            req = None
        d = self.n.state.read()
        promised_to, promised_left = promise_of(d)
        self.n.consul_seen = ConsulSeen(boottime(), leader.name if leader is not None else None,
                                        req.to if req is not None else None, probe["read_only"])
        if d.get(CLAIM) is not None and leader is not None and leader.name != self.n.cfg.node_name:
            self.n.promises.drop_claim()          # another node holds the lock: a claim of ours is over
        o = Observation(
            failsafe_left=self.n.lease.failsafe_left(), promised_left=promised_left, promised_to=promised_to,
            me=self.n.cfg.node_name, now=time.time(), mysqld_up=probe["up"], read_only=probe["read_only"],
            have_session=bool(sid), lease_left=self.n.lease_left(), leader=leader, i_hold_lock=i_hold,
            replicating_from=src, replication_ok=bool(st.get("io_running") and st.get("sql_running")),
            replication_errno=int(st.get("last_io_errno") or 0),
            replication_error=str(st.get("last_io_error") or ""), paused=bool(view.paused),
            stopping=bool(self.n.state.get("stopping")), switchover_to=req.to if req else None,
            needs_rebuild=self.n.state.get("rebuild_reason", "") or "",
            keeps_lease=session_ended_under_writes(self.n, d, sid, leader, probe))
        o.needs_rebuild, o.restart_asked = node_requests.asked(view, self.n.cfg.node_name, i_hold,
                                                               o.needs_rebuild, self.n.say_once)
        if leader is not None and not i_hold:
            o.sql_errno, o.sql_error, o.sql_stuck = self.sql_stop(st, probe.get("executed", ""))
        seen = Seen(o, view, probe, Report(role, healthy, message), request=req)
        if leader is None:
            self.free_lock(o, view, probe, req, seen)
            return seen
        if self.n.state.get("free_seen") is not None:
            # The lock is held: a wait remembered from an earlier free state must never count again (its
            # LockIndex repeats if the key is deleted or Consul loses its data).
            self.n.state.update(free_seen=None)
        if not i_hold and probe["up"] and leader.promoted and not (src == leader.address and o.replication_ok):
            try:
                o.errant, _ = self.errant_against(leader, probe.get("executed", ""))
            except PilotError as exc:
                o.errant_unknown = str(exc)
        elif not i_hold and probe["up"] and leader.promoted and self.n.flavor.dialect == "mysql" \
                and time.monotonic() - self._errant_checked >= ERRANT_RECHECK:
            # MySQL's auto-position keeps a replica's extra GTIDs silently and replication runs on, so a
            # write that slipped into this replica would never be noticed: look while replicating too.
            self._errant_checked = time.monotonic()
            try:
                o.errant, _ = self.errant_against(leader, probe.get("executed", ""), replicating=True)
            except PilotError as exc:
                log.info("errant-transaction check against %s did not run (%s); replication runs on, "
                         "checking again in %ds", leader.name, exc, ERRANT_RECHECK)
        return seen


def session_ended_under_writes(n, d: Dict, sid: Optional[str], leader, probe: Dict) -> bool:
    """Failsafe on, writable, the key free, and the lease of the session mysqld's writes belong to still
    runs, though Consul says that session is gone (heartbeat.py ride_out). Only for a session Consul
    said is gone: a live one keeps renewing, and a key deleted by hand under it must be fenced for (the
    simulator's delete_leader found that). The pass may see the key go before the heartbeat sees why
    (its watch wakes on the change): then it asks Consul itself."""
    if not (n.cfg.failsafe and sid and leader is None and probe.get("read_only") is False
            and d.get(WRITER) == sid and n.lease_left() > 0):
        return False
    if d.get(ENDED) == sid:
        return True
    if n.dcs.renew_session(sid) is not None:
        return False
    n.state.update(**{ENDED: sid})
    return True

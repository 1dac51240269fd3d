"""What the node API reads: an immutable view the HA loop publishes once per pass (`PassView`, built from
what the pass already observed: no I/O), joined at request time with the facts that can change between
passes (the lease, the session, whether mysqld answers, whether the loop still runs)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

from . import analysis, api_verdicts
from .api_verdicts import Facts
from .failsafe_keeper import promise_of
from .lease import boottime
from .logsetup import SecretMask
from .model import LeaderInfo, MemberState

@dataclass(frozen=True)
class PassView:
    """One pass's view of this node and its cluster, as published (frozen: the API threads share it)."""
    name: str
    cluster: str
    role: str
    healthy: bool
    message: str
    mysqld_up: bool
    writable: Optional[bool]
    io_running: bool
    sql_running: bool
    lag_seconds: Optional[float]
    following: Optional[str]
    gtid_executed: int
    gtid_received: int
    gtids_behind: Optional[int]
    primary: Optional[str]
    primary_address: Optional[str]
    primary_session: str
    paused: bool
    failover_budget_left: int
    snapshot_created: Optional[float]
    snapshot_bytes: Optional[int]
    snapshot_seconds: Optional[float]
    errant: tuple = ()
    published_at: float = 0.0           # boot-time clock
    published_wall: float = 0.0         # epoch seconds
    budget_why: str = ""                # failover_budget()'s line
    snapshot_verified: Optional[bool] = None    # the newest snapshot proven restorable (None: not checked)


def _behind(flavor, leader: Optional[MemberState], mine: str, holder: bool) -> Optional[int]:
    """GTIDs the primary last published that this node has not applied (None: unknown)."""
    if holder:
        return 0
    if leader is None or not leader.gtid_executed:
        return None
    try:
        return max(0, flavor.gtid_count(flavor.gtid_union(leader.gtid_executed, mine or ""))
                   - flavor.gtid_count(mine or ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _count(flavor, gtids: str) -> int:
    try:
        return flavor.gtid_count(gtids or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0


def pass_view(node, seen, m: MemberState, leader: Optional[LeaderInfo]) -> PassView:
    """Built from the pass's observation `seen`, the member record `m` it published and the leader it was
    judged against (read again after an action changed things: a promotion shows at once)."""
    view, cfg, flavor = seen.view, node.cfg, node.flavor
    sid = node.sid
    holder = bool(leader is not None and sid and leader.session == sid)
    _, budget_why = analysis.failover_budget(view.history, seen.o.now, node.policy)
    snap = view.latest_snapshot
    return PassView(
        name=cfg.node_name, cluster=cfg.cluster, role=m.role, healthy=m.healthy, message=m.message,
        mysqld_up=bool(seen.probe.get("up")), writable=None if m.read_only is None else not m.read_only,
        io_running=m.io_running, sql_running=m.sql_running, lag_seconds=m.lag_seconds,
        following=m.replicating_from, gtid_executed=_count(flavor, m.gtid_executed),
        gtid_received=_count(flavor, m.gtid_received),
        gtids_behind=_behind(flavor, view.member(leader.name) if leader else None, m.gtid_executed,
                             holder),
        primary=leader.name if leader else None, primary_address=leader.address if leader else None,
        primary_session=(leader.session or "") if leader else "", paused=bool(view.paused),
        failover_budget_left=analysis.failover_budget_left(view.history, seen.o.now, node.policy),
        snapshot_created=snap.created if snap else None, snapshot_bytes=snap.bytes if snap else None,
        snapshot_seconds=(snap.duration_seconds or None) if snap else None, errant=tuple(m.errant),
        published_at=boottime(), published_wall=time.time(), budget_why=budget_why,
        snapshot_verified=bool((snap.verified or {}).get("ok")) if snap and snap.verified else None)


class NodeSource:
    """The live side: what the API threads ask of the node. Reads only (a state file read, a pid check)."""

    def __init__(self, node):
        self.node = node

    @property
    def cfg(self):
        return self.node.cfg

    def view(self) -> Optional[PassView]:
        return getattr(self.node, "api_view", None)

    def facts(self) -> Facts:
        n, v = self.node, self.view()
        sid = n.sid
        lease = n.lease.left(sid) if sid else -1.0
        mark = getattr(n, "loop_mark", None)
        if mark is None:
            mark = v.published_at if v is not None else None
        stalled = 0.0 if mark is None else max(0.0, boottime() - mark - float(n.cfg.loop_wait))
        common = dict(name=n.cfg.node_name, lease_left=lease, mysqld_up=n.mysqld_alive() is True,
                      failsafe_left=n.lease.failsafe_left(),
                      loop_stalled=stalled, lease_span=float(n.timing.lease),
                      max_replica_lag=float(n.cfg.max_replica_lag))
        if v is None:
            return Facts(**common)
        writable = v.writable
        # Fenced (a hand-over, the watchdog) since the pass saw it writable. Only a reading after both the
        # view and the last promotion mark counts: one taken mid-promotion, before writes were on, does not.
        if writable and n.fencer.read_only_since(max(n.lease.writer_marked_at(), v.published_at)):
            writable = False
        return Facts(role=v.role, holds_lock=bool(sid and v.primary_session == sid), writable=writable,
                     io_running=v.io_running, sql_running=v.sql_running, lag_seconds=v.lag_seconds,
                     gtids_behind=v.gtids_behind, primary=v.primary, primary_address=v.primary_address,
                     following=v.following, paused=v.paused, **common)

    def status(self) -> Dict[str, Any]:
        """This node's view as JSON-able data. Built field by field (never a config dump), then masked."""
        f, v = self.facts(), self.view()
        checks = {p: asdict(api_verdicts.decide(p, {}, f)) for p in
                  ("/primary", "/replica", "/read-only", "/health", "/liveness", "/readiness")}
        doc: Dict[str, Any] = {
            "name": f.name, "cluster": self.cfg.cluster, "api": self.cfg.api_advertised,
            "lock_held": f.holds_lock, "lease_seconds_left": round(max(f.lease_left, 0.0), 3),
            "mysqld_up": f.mysqld_up, "checks": checks,
            "ha_loop": {"stalled_seconds": round(f.loop_stalled, 3), "lease_seconds": f.lease_span},
            "fenced": self.node.events.fenced,
            "failsafe": failsafe_status(self.node),
            "archive": archive_status(self.node),
        }
        if v is not None:
            doc.update({
                "role": v.role, "healthy": v.healthy, "message": v.message, "writable": v.writable,
                "primary": v.primary, "primary_address": v.primary_address, "paused": v.paused,
                "replication": {"following": v.following, "io_running": v.io_running,
                                "sql_running": v.sql_running, "lag_seconds": v.lag_seconds,
                                "gtids_behind": v.gtids_behind},
                "gtid": {"executed_transactions": v.gtid_executed, "received_transactions": v.gtid_received},
                "errant": list(v.errant), "failover_budget_left": v.failover_budget_left,
                "failover_budget": v.budget_why,
                "last_pass_age_seconds": round(max(0.0, boottime() - v.published_at), 3),
            })
        else:
            doc.update({"role": "unknown", "message": "no HA pass has completed yet"})
        return mask_json(doc, SecretMask(self.cfg.secrets()))


def archive_status(node) -> Optional[Dict[str, Any]]:
    """The binlog archive job's last report, while it streams here (None: not streaming, or gone quiet)."""
    a = node.state.get("archive")
    if not isinstance(a, dict) or time.time() - float(a.get("at") or 0) > 30:
        return None
    return {k: a.get(k) for k in ("run", "file", "uploaded_bytes", "waiting_bytes", "lag_seconds", "gap", "error")}


def failsafe_status(node) -> Dict[str, Any]:
    """Failsafe as status shows it: active (writes on promises), since when (epoch), who confirmed; and
    on a member, the promise it keeps."""
    now_b, now_w = boottime(), time.time()
    out: Dict[str, Any] = {"active": False}
    info = node.lease.failsafe_info()
    if info is not None:
        out.update(active=True, since=round(now_w - (now_b - float(info["since"])), 3),
                   seconds_left=round(info["left"], 3), confirmed_by=info["by"])
    to, left = promise_of(node.state.read())
    if left > 0:
        out["promised"] = {"to": to, "seconds_left": round(left, 3)}
    return out


def mask_json(doc: Any, mask: SecretMask) -> Any:
    """Every string in `doc` with secrets masked (a mysqld error message could quote one)."""
    if isinstance(doc, str):
        return mask(doc)
    if isinstance(doc, dict):
        return {k: mask_json(v, mask) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [mask_json(v, mask) for v in doc]
    return doc

"""What the HA code knows of a DCS: the interface, and one typed, validated view of the cluster per pass.

Every value read from the DCS goes through a parser here. A malformed value (anyone with write access
to the KV can put anything there) becomes "absent" with one warning line; it never raises in the loop.
"""
from __future__ import annotations

import abc
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .. import gtid
from ..model import FailoverRecord, LeaderInfo, MemberState, SnapshotManifest, _from_dict

log = logging.getLogger(__name__)

# Keys under the cluster's kv_root that the HA code names (the DCS maps them to its own paths).
REQUEST_KEY = "switchover"        # a pending switchover or manual failover: its designated target
REINIT_PREFIX = "reinit/"         # reinit/<node>: an operator asked that node to rebuild from the newest snapshot
RESTART_PREFIX = "restart/"       # restart/<node>: an operator asked that replica to restart its mysqld

_warned: Dict[str, str] = {}


def _warn_once(key: str, msg: str) -> None:
    """One line per bad key and problem, not one per pass."""
    if _warned.get(key) != msg:
        _warned[key] = msg
        log.warning("ignoring Consul key %s: %s; fix or delete it (consul kv put / kv delete)", key, msg)


def decode_json(key: str, raw: Any) -> Any:
    if raw in (None, b"", ""):
        return None
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError) as exc:
        _warn_once(key, f"not JSON ({str(exc)[:60]})")
        return None


@dataclass(frozen=True)
class Request:
    """A pending switchover or manual failover (`<kv_root>/switchover`)."""
    to: str
    kind: str = "switchover"           # switchover | manual-failover
    origin: Optional[str] = None       # the primary it moves away from ("from" in the JSON)
    reason: str = ""
    requested: float = 0.0             # epoch seconds
    lock_index: Optional[int] = None   # the lock generation it was made in: spent once the lock moves
    force: bool = False                # `failover --force`: the target skips the data-safety rules


@dataclass(frozen=True)
class Release:
    """The one hand-off marker: what a primary writes into the leader key as it releases it, fenced (its
    mysqld is not running, or confirmed read-only for a switchover).

    Only the holding session can release the key (Consul checks), in the same operation as this value.
    It speaks for the generation it names only, and only while young (handoff.handoff_valid): then
    candidates skip their lock-delay wait, and with `to` set, the others leave the lock to that node."""
    name: str                          # the node that released
    reason: str = ""
    at: float = 0.0                    # epoch seconds
    gtid_executed: str = ""            # its position at the release
    lock_index: Optional[int] = None   # the lock generation released
    to: str = ""                       # a switchover's target ("" after a crash: the best candidate)
    kind: str = "crash"                # crash | switchover | manual-failover
    fenced_at: Optional[float] = None  # epoch seconds the fence began (writes unavailable since)


def parse_release(key: str, value: Any, session: Optional[str]) -> Optional[Release]:
    """The release marker of a *free* leader key, or None (held, no marker, or malformed)."""
    if session or value in (None, b"", ""):
        return None
    data = decode_json(key, value)
    if not isinstance(data, dict) or not isinstance(data.get("released"), dict):
        return None
    rel = dict(data["released"])
    rel.setdefault("name", data.get("name"))
    try:
        return _from_dict(Release, rel)
    except ValueError as exc:
        _warn_once(key, f"release marker: {exc}")
        return None


def _drop_bad_gtids(key: str, obj: Any, names: Tuple[str, ...], dialect: str) -> None:
    """A GTID field that does not parse reads as "" (unknown), with one line for the key: left in, it
    raised in every pass that compared it (the election's ranking, the errant check)."""
    bad = [f"{n} {str(getattr(obj, n))[:40]!r}" for n in names if gtid.problem(dialect, getattr(obj, n))]
    if bad:
        _warn_once(key, f"not a {dialect or 'MariaDB or MySQL'} GTID position: {', '.join(bad)} (read as unknown)")
        for n in names:
            if gtid.problem(dialect, getattr(obj, n)):
                setattr(obj, n, "")


def parse_leader(key: str, value: Any, session: Optional[str], dialect: str = "") -> Optional[LeaderInfo]:
    """`dialect`: "mariadb" or "mysql", the GTID syntax to accept ("": either)."""
    if not session or value in (None, b"", ""):
        return None          # behavior release keeps a dead holder's Value: without a Session it is free
    data = decode_json(key, value)
    try:
        info = _from_dict(LeaderInfo, data)
    except ValueError as exc:
        _warn_once(key, str(exc))
        return None
    _drop_bad_gtids(key, info, ("promoted_gtid",), dialect)
    info.session = session
    return info


def parse_member(key: str, value: Any, session: Optional[str], dialect: str = "") -> Optional[MemberState]:
    """A member, or None (no value). A value that does not parse is a member whose data is unknown (role
    "unreadable", no address): it may hold the only copy of an acknowledged commit, so the election counts
    it as it counts a readable key whose server does not answer (live session or not) instead of forgetting
    it. Its node rewrites the key at its next pass."""
    data = decode_json(key, value)
    try:
        m = _from_dict(MemberState, data) if data is not None else None
    except ValueError as exc:
        _warn_once(key, str(exc))
        m = None
    if m is None:
        if value in (None, b"", "") and not session:
            return None
        return MemberState(name=key.rsplit("/", 1)[-1], host="", port=0, role="unreadable", alive=bool(session),
                           message=f"its key {key} is unreadable")
    # Only the field is dropped: the member still counts (probed for what it holds), and a good
    # gtid_executed beside a bad gtid_received still guards the election.
    _drop_bad_gtids(key, m, ("gtid_executed", "gtid_received"), dialect)
    m.alive = bool(session)
    return m


def parse_request(key: str, value: Any) -> Optional[Request]:
    data = decode_json(key, value)
    if data is None:
        return None
    if not isinstance(data, dict):
        _warn_once(key, "expected a JSON object")
        return None
    d = dict(data)
    if "from" in d:
        d["origin"] = d.pop("from")
    try:
        req = _from_dict(Request, {k: v for k, v in d.items()})
    except ValueError as exc:
        _warn_once(key, str(exc))
        return None
    return req


def parse_history(key: str, value: Any) -> List[Dict[str, Any]]:
    data = decode_json(key, value)
    if data is None:
        return []
    if not isinstance(data, list):
        _warn_once(key, "expected a JSON list")
        return []
    out = []
    for i, entry in enumerate(data):
        try:
            out.append(_from_dict(FailoverRecord, entry).to_dict())
        except ValueError as exc:
            _warn_once(f"{key}[{i}]", str(exc))
    return out


def parse_manifest(key: str, value: Any) -> Optional[SnapshotManifest]:
    """snapshots/latest: a manifest, or None (absent, or unreadable: one line naming the key). Readers
    treat both alike, so pre-start waits and the primary takes one snapshot, which replaces the value."""
    data = decode_json(key, value)
    if data is None:
        return None
    try:
        m = _from_dict(SnapshotManifest, data)
    except ValueError as exc:
        _warn_once(key, f"not a snapshot manifest ({exc}); the primary takes a new snapshot to replace it, "
                        "or point it at a stored one with `mysqlpilot snapshot use <id>`")
        return None
    if not (m.id and m.object_key and math.isfinite(m.created)):
        _warn_once(key, "not a snapshot manifest (empty id or object_key, or no finite created); the primary "
                        "takes a new snapshot to replace it, or `mysqlpilot snapshot use <id>`")
        return None
    return m


def parse_object(key: str, value: Any) -> Optional[Dict[str, Any]]:
    data = decode_json(key, value)
    if data is not None and not isinstance(data, dict):
        _warn_once(key, "expected a JSON object")
        return None
    return data


@dataclass(frozen=True)
class ServiceCheck:
    """The check a catalog entry carries: a TTL its owner passes, or an HTTP GET the agent makes."""
    ttl: float = 0.0
    http: str = ""                       # URL; 2xx passes
    interval: float = 1.0
    timeout: float = 1.0
    deregister_after: float = 0.0        # the agent drops the entry once critical this long (0: never)
    check_id: str = ""                   # "" = the agent's own (service:<service_id>)


@dataclass
class ClusterView:
    """Everything one pass decides on, read in one consistent request."""
    leader: Optional[LeaderInfo] = None
    lock_index: int = 0                 # the leader key's LockIndex: one value per lock generation
    released: Optional[Release] = None  # the free key's release marker (a primary whose mysqld died)
    index: int = 0                      # the DCS index of the read (for blocking watches)
    members: List[MemberState] = field(default_factory=list)
    request: Optional[Request] = None
    history: List[Dict[str, Any]] = field(default_factory=list)
    paused: Optional[Dict[str, Any]] = None
    latest_snapshot: Optional[SnapshotManifest] = None
    failsafe: Optional[Dict[str, Any]] = None   # the members the primary asks for promises (failsafe.py)
    reinit: Dict[str, Dict[str, Any]] = field(default_factory=dict)   # node -> `mysqlpilot reinit` request
    restart: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # node -> `mysqlpilot restart` request
    config: Any = None                  # the cluster's settings as stored (cluster_config.parse reads it)

    def member(self, name: str) -> Optional[MemberState]:
        return next((m for m in self.members if m.name == name), None)


class DCS(abc.ABC):
    """Everything mysqlpilot asks of its DCS. ConsulDCS implements it; every test fake subclasses it, so a
    renamed or changed primitive cannot drift apart from its fakes. Consul's mechanics (session ids and
    their checks, `serfHealth`, LockIndex, X-Consul-Index) stay inside the adapter: callers see a session
    handle, a lock generation (`ClusterView.lock_index`) and a read index."""

    # ---- the view ------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_cluster(self) -> ClusterView:
        """Leader, members, request, history, pause flag and snapshot pointer in one consistent read."""

    @abc.abstractmethod
    def watch_leader(self, index: int, wait: float):
        """Block until the leader key changes after `index`, or `wait` seconds."""

    @abc.abstractmethod
    def get_leader(self) -> Tuple[Optional[LeaderInfo], int]: ...

    @abc.abstractmethod
    def member(self, name: str) -> Optional[MemberState]: ...

    # ---- sessions and the liveness check ---------------------------------------------------------
    @abc.abstractmethod
    def create_session(self, ttl: float, lock_delay: float, checks: List[str]) -> str:
        """A session bound to the node's own `checks` (the adapter adds the agent's node health)."""

    @abc.abstractmethod
    def renew_session(self, sid: str) -> Optional[int]:
        """The session's TTL if it is still alive, else None."""

    @abc.abstractmethod
    def destroy_session(self, sid: str) -> None: ...

    @abc.abstractmethod
    def register_check(self, check_id: str, name: str, ttl: float, service_id: Optional[str] = None) -> None:
        """A TTL check (initially critical); with `service_id`, it belongs to that service only: a node-level
        check that fails would hide every service of the agent's node."""

    @abc.abstractmethod
    def pass_check(self, check_id: str, note: str = "") -> None: ...

    @abc.abstractmethod
    def fail_check(self, check_id: str, note: str = "") -> None: ...

    # ---- the leader lock -----------------------------------------------------------------------
    @abc.abstractmethod
    def acquire_leader(self, sid: str, info: LeaderInfo) -> bool: ...

    @abc.abstractmethod
    def release_leader(self, sid: str, marker: Optional[Release] = None) -> bool:
        """Release the lock held by `sid`; with `marker`, write it into the key in the same operation."""

    # ---- services (the catalog clients use) ------------------------------------------------------
    @abc.abstractmethod
    def register_service(self, name: str, service_id: str, address: str, port: int, tags=(),
                         check: Optional[ServiceCheck] = None) -> None:
        """Register (or refresh: an unchanged check keeps its status) a service entry on the local agent."""

    @abc.abstractmethod
    def deregister_service(self, service_id: str) -> None: ...

    # ---- values ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def publish_member(self, sid: Optional[str], state: MemberState) -> None: ...

    @abc.abstractmethod
    def forget_member(self, name: str) -> None:
        """Delete a member key that no session holds (`mysqlpilot forget`)."""

    @abc.abstractmethod
    def append_history(self, record: Dict[str, Any], keep: int = 50) -> None: ...

    @abc.abstractmethod
    def append_journal(self, records: List[Dict[str, Any]], keep: int = 200) -> None:
        """Append fence, rebuild and failsafe events to `<kv_root>/journal` (journal.py), newest last."""

    @abc.abstractmethod
    def journal(self) -> List[Dict[str, Any]]: ...

    @abc.abstractmethod
    def get_json(self, rel: str) -> Any: ...

    @abc.abstractmethod
    def put_json(self, rel: str, value: Any, cas: Optional[int] = None) -> bool: ...

"""Plain dataclasses shared by the decision code and the adapters. No I/O here."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional


def _check(kind: str, v: Any, name: str) -> Any:
    """Validate one value against a field annotation (kept as a string by `from __future__`)."""
    if kind.startswith("Optional["):
        return None if v is None else _check(kind[9:-1], v, name)
    ok = {
        "str": lambda x: isinstance(x, str),
        "int": lambda x: isinstance(x, int) and not isinstance(x, bool),
        "float": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
        "bool": lambda x: isinstance(x, bool),
        "List[str]": lambda x: isinstance(x, list) and all(isinstance(i, str) for i in x),
        "List[Dict[str, Any]]": lambda x: isinstance(x, list) and all(isinstance(i, dict) for i in x),
        "Dict[str, Any]": lambda x: isinstance(x, dict),
        "Dict[str, float]": lambda x: isinstance(x, dict) and all(
            isinstance(i, (int, float)) and not isinstance(i, bool) for i in x.values()),
    }.get(kind)
    if ok is not None and not ok(v):
        raise ValueError(f"field {name!r} is {type(v).__name__} {str(v)[:40]!r}, expected {kind}")
    return float(v) if kind == "float" else v


def _from_dict(cls, data: Any):
    """Build a dataclass from decoded JSON, rejecting wrong types with a ValueError that names the field:
    values come from Consul, where anyone with write access can put anything."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    kw = {f.name: _check(str(f.type), data[f.name], f.name) for f in fields(cls) if f.name in data}
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ValueError(f"missing field: {exc}") from None


# What pre-start publishes while it prepares the datadir; the node has no session yet.
STARTING_ROLES = ("bootstrapping", "waiting", "restoring", "starting")


@dataclass
class MemberState:
    """What a node publishes about itself under `<kv_root>/members/<name>` (and what status shows)."""
    name: str
    host: str
    port: int
    role: str = "unknown"              # primary | replica | candidate | fenced | rebuilding | down, or a
                                      # STARTING_ROLES one that pre-start publishes before any session
    healthy: bool = False
    read_only: Optional[bool] = None
    replicating_from: Optional[str] = None   # host:port of its source, if replicating
    io_running: bool = False
    sql_running: bool = False
    lag_seconds: Optional[float] = None
    gtid_executed: str = ""           # MariaDB gtid_current_pos / MySQL gtid_executed
    gtid_received: str = ""           # MariaDB Gtid_IO_Pos / MySQL Retrieved+executed; "" if unknown
    server_id: int = 0
    priority: int = 100
    nofailover: bool = False
    snapshotting: bool = False        # its snapshot job is taking the cluster's snapshot (snapshot_source)
    flavor: str = ""
    version: str = ""                 # the configured flavor_version (CLONE donors must match it)
    server_version: str = ""          # VERSION() as the running server answers it (status only)
    semi_sync_replicas: int = 0       # on a primary: replicas currently acknowledging (semi-sync)
    api: str = ""                     # host:port of its node API (/primary, /replica, /status, /metrics)
    accounts: int = 0                 # the account scheme it logs in to others with (accounts.SCHEME)
    pending_restart: List[str] = field(default_factory=list)   # cluster settings not loaded yet (cluster_config)
    errant: List[str] = field(default_factory=list)
    message: str = ""                 # one line: what the node is doing or why it is unhealthy
    updated: float = 0.0              # epoch seconds of publication
    alive: bool = True                # set by the reader: key still bound to a live session

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("alive", None)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "MemberState":
        return _from_dict(cls, json.loads(text))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class LeaderInfo:
    """Value of the leader key `<kv_root>/leader`; only valid while the key's Session is set."""
    name: str
    host: str
    port: int
    server_id: int = 0
    since: float = 0.0
    promoted_gtid: str = ""           # GTID position at the moment this node became primary
    promoted: bool = False            # promotion finished (relay log applied): safe to compare GTIDs with
    session: str = ""                 # filled by the reader from the key's Session field

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("session", None)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, session: str = "") -> "LeaderInfo":
        obj = _from_dict(cls, json.loads(text))
        obj.session = session
        return obj

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class SnapshotManifest:
    """Written last, next to the snapshot object; the snapshot counts only once its manifest exists."""
    id: str
    created: float
    source: str                       # node name that took it
    object_key: str                   # store key of the data object
    bytes: int                        # size of the stored (compressed) object
    raw_bytes: int                    # size of the backup stream before compression
    sha256: str                       # of the stored object
    flavor: str
    version: str
    gtid: str                         # GTID position of the backup (seed for replicas)
    binlog_file: str = ""
    binlog_pos: int = 0
    compression: str = "zstd"
    format: str = "xbstream"
    tool: str = ""                    # backup tool and version line
    cluster: str = ""                 # the cluster that took it ("" in the old store layout)
    duration_seconds: float = 0.0     # how long taking it took (0: unknown, an older release took it)
    verified: Optional[Dict[str, Any]] = None   # snapshot_verify's proof before it was published

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "SnapshotManifest":
        return _from_dict(cls, json.loads(text))


@dataclass
class FailoverRecord:
    """One entry of `<kv_root>/history`: every failover and switchover."""
    kind: str                         # failover | switchover | manual-failover | bootstrap | election |
                                      # shutdown | re-promotion
    time: float
    old_primary: Optional[str]
    new_primary: Optional[str]
    reason: str
    candidates: List[Dict[str, Any]] = field(default_factory=list)   # {name, chosen, why}
    durations: Dict[str, float] = field(default_factory=dict)        # detect, promote, total, ...

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "FailoverRecord":
        return _from_dict(cls, data)

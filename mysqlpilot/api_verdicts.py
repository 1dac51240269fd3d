"""What each endpoint of the node API answers: pure functions over one `Facts` snapshot (no I/O, no clock).

Patroni-compatible names and meaning, so HAProxy templates and operators' habits carry over:
`/primary` (`/read-write`), `/replica`, `/read-only`, `/health`, `/liveness`, `/readiness`. Each verdict is
a status (200, 503; 400 for a bad query, 404 for an unknown path) and one line saying why.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence

OK, UNAVAILABLE, BAD_REQUEST, NOT_FOUND = 200, 503, 400, 404


@dataclass(frozen=True)
class Facts:
    """This node as the API sees it at one request: the last pass's view plus the live lease facts."""
    name: str = ""
    role: str = "unknown"                   # what the last pass reported: primary, replica, candidate, ...
    holds_lock: bool = False                # the leader key's session is this node's current session
    lease_left: float = -1.0                # seconds of lease left (<= 0: none)
    failsafe_left: float = -1.0             # seconds the members' promises still cover the writes (failsafe)
    mysqld_up: bool = False                 # mysqld answered the prober lately
    writable: Optional[bool] = None         # read_only OFF (None: unknown)
    io_running: bool = False
    sql_running: bool = False
    lag_seconds: Optional[float] = None     # None: unknown
    gtids_behind: Optional[int] = None      # transactions the primary has that this node has not applied
    primary: Optional[str] = None           # the lock holder's name
    primary_address: Optional[str] = None   # its host:port
    following: Optional[str] = None         # host:port of the source this node replicates from
    paused: bool = False
    loop_stalled: float = 0.0               # seconds the HA loop is late for its next pass
    lease_span: float = 1.5                 # the lease length: the loop may be late this long
    max_replica_lag: float = 60.0


@dataclass(frozen=True)
class Verdict:
    status: int
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class Bounds:
    lag: Optional[float] = None             # ?lag=<seconds>
    lag_transactions: Optional[int] = None  # ?lag_transactions=<n>


class BadQuery(ValueError):
    """A query parameter the endpoint cannot use; the message is the one-line 400 reason."""


def primary(f: Facts) -> Verdict:
    if f.failsafe_left > 0 and f.writable is True and f.mysqld_up and (f.holds_lock or f.primary is None):
        # Its session lapsed in a Consul outage, the key is free or still its own, and every member
        # promised to keep off the lock: still the one primary (failsafe.py).
        return Verdict(OK, f"primary, writable on its members' promises (failsafe: Consul does not renew its "
                           f"session), {f.failsafe_left:.1f}s left")
    if not f.holds_lock:
        who = f"the primary is {f.primary}" if f.primary else "no node holds the lock"
        return Verdict(UNAVAILABLE, f"not the primary: {who}")
    if f.lease_left <= 0:
        return Verdict(UNAVAILABLE, "holds the lock but its lease has ended: fencing, writes are not safe here")
    if not f.mysqld_up:
        return Verdict(UNAVAILABLE, "holds the lock but mysqld is not answering")
    if f.writable is not True:
        return Verdict(UNAVAILABLE, "holds the lock but mysqld is read-only: promotion in progress")
    return Verdict(OK, f"primary, writable, lease {f.lease_left:.1f}s left")


def replica(f: Facts, b: Bounds = Bounds()) -> Verdict:
    if f.holds_lock:
        return Verdict(UNAVAILABLE, "this node is the primary, not a replica")
    if not f.mysqld_up:
        return Verdict(UNAVAILABLE, "mysqld is not answering")
    if f.role == "rebuilding":
        return Verdict(UNAVAILABLE, "rebuilding from a snapshot")
    if f.writable is not False:
        return Verdict(UNAVAILABLE, "mysqld is writable without the lock: being fenced" if f.writable
                       else "mysqld's read_only is unknown")
    if not f.primary or not f.primary_address:
        return Verdict(UNAVAILABLE, "no primary: awaiting election")
    if f.following != f.primary_address:
        src = f"replicates from {f.following}" if f.following else "does not replicate"
        return Verdict(UNAVAILABLE, f"{src}, not from the primary {f.primary} ({f.primary_address})")
    if not (f.io_running and f.sql_running):
        down = [n for n, on in (("IO", f.io_running), ("SQL", f.sql_running)) if not on]
        return Verdict(UNAVAILABLE, f"replication {' and '.join(down)} thread{'s' if len(down) > 1 else ''} "
                                    f"stopped")
    if b.lag is not None:
        if f.lag_seconds is None:
            return Verdict(UNAVAILABLE, f"lag unknown, bound lag={b.lag:g}s")
        if f.lag_seconds > b.lag:
            return Verdict(UNAVAILABLE, f"lag {f.lag_seconds:g}s above lag={b.lag:g}s")
    if b.lag_transactions is not None:
        if f.gtids_behind is None:
            return Verdict(UNAVAILABLE, f"transactions behind unknown, bound lag_transactions={b.lag_transactions}")
        if f.gtids_behind > b.lag_transactions:
            return Verdict(UNAVAILABLE, f"{f.gtids_behind} transactions behind, above "
                                        f"lag_transactions={b.lag_transactions}")
    lag = "lag unknown" if f.lag_seconds is None else f"lag {f.lag_seconds:g}s"
    return Verdict(OK, f"replica of {f.primary}, {lag}")


def read_only(f: Facts, b: Bounds = Bounds()) -> Verdict:
    p = primary(f)
    return p if p.ok or f.holds_lock else replica(f, b)


def health(f: Facts) -> Verdict:
    return Verdict(OK, "mysqld answers") if f.mysqld_up else Verdict(UNAVAILABLE, "mysqld is not answering")


def liveness(f: Facts) -> Verdict:
    if f.loop_stalled > f.lease_span:
        return Verdict(UNAVAILABLE, f"HA loop stalled: {f.loop_stalled:.1f}s late for its next pass, longer than "
                                    f"its lease ({f.lease_span:g}s)")
    return Verdict(OK, "HA loop running")


def readiness(f: Facts) -> Verdict:
    """Ready for traffic in its role: the writable primary, or a replica within max_replica_lag."""
    if f.holds_lock:
        return primary(f)
    v = replica(f, Bounds(lag=f.max_replica_lag))
    if v.ok:
        return v
    return Verdict(UNAVAILABLE, f"not ready: {v.reason}")


# path -> (verdict function, the query parameters it takes)
ENDPOINTS: Dict[str, tuple] = {
    # "/" as Patroni: HAProxy's bare `option httpchk` sends OPTIONS / and so checks for the primary.
    "/": (primary, ()), "/primary": (primary, ()), "/read-write": (primary, ()),
    "/replica": (replica, ("lag", "lag_transactions")),
    "/read-only": (read_only, ("lag", "lag_transactions")),
    "/health": (health, ()), "/liveness": (liveness, ()), "/readiness": (readiness, ()),
}


def _number(name: str, text: str, integer: bool):
    try:
        v = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number of transactions" if integer else "a number of seconds"
        raise BadQuery(f"query parameter {name}={text!r} is not {kind}, e.g. {name}=10") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise BadQuery(f"query parameter {name}={text!r} must be a finite number of seconds")
    if v < 0:
        raise BadQuery(f"query parameter {name}={text!r} must not be negative")
    return v


def parse_bounds(path: str, query: Mapping[str, Sequence[str]], allowed: Sequence[str]) -> Bounds:
    """Bounds from the query (as urllib.parse.parse_qs gives it). Unknown parameters are refused rather than
    ignored: a mistyped bound would silently route reads to a lagging replica."""
    vals: Dict[str, object] = {}
    for name, texts in query.items():
        if name not in allowed:
            takes = f"; it takes {', '.join(allowed)}" if allowed else "; it takes none"
            raise BadQuery(f"query parameter {name!r} does not apply to {path}{takes}")
        if len(texts) != 1:
            raise BadQuery(f"query parameter {name} is given {len(texts)} times; give it once")
        vals[name] = _number(name, texts[0], integer=(name == "lag_transactions"))
    return Bounds(**vals)


def decide(path: str, query: Mapping[str, Sequence[str]], f: Facts) -> Verdict:
    """The verdict for a role-check request; 404 for a path that is not one."""
    entry = ENDPOINTS.get(path.rstrip("/") or "/")
    if entry is None:
        return Verdict(NOT_FOUND, f"no endpoint {path}; try /primary, /replica, /read-only, /health, /liveness, "
                                  "/readiness, /status or /metrics")
    fn, allowed = entry
    try:
        bounds = parse_bounds(path, query, allowed)
    except BadQuery as exc:
        return Verdict(BAD_REQUEST, str(exc))
    return fn(f, bounds) if allowed else fn(f)

"""A simulated mysqld per node, and the connection object the HA code gets instead of sqlclient.Server.

GTIDs are MySQL GTID sets of (server_uuid, n): executed, and received into the relay log. A new datadir
(a rebuild) gets a new server_uuid, so a GTID names one transaction for the whole run."""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Set, Tuple

from mysqlpilot import gtid as gtidlib
from mysqlpilot.errors import PilotError

Gtid = Tuple[str, int]


_FMT: Dict[frozenset, str] = {}


def fmt(gs: Set[Gtid]) -> str:
    key = frozenset(gs)
    got = _FMT.get(key)
    if got is None:
        if len(_FMT) > 5000:
            _FMT.clear()
        got = _FMT[key] = _fmt(gs)
    return got


def _fmt(gs: Set[Gtid]) -> str:
    by: Dict[str, List[int]] = {}
    for u, n in gs:
        by.setdefault(u, []).append(n)
    parts = []
    for u in sorted(by):
        ns, ivs = sorted(by[u]), []
        for n in ns:
            if ivs and n == ivs[-1][1] + 1:
                ivs[-1][1] = n
            else:
                ivs.append([n, n])
        parts.append(u + "".join(f":{a}" if a == b else f":{a}-{b}" for a, b in ivs))
    return ",".join(parts)


def parse(text: str) -> Set[Gtid]:
    out: Set[Gtid] = set()
    for u, ivs in gtidlib.parse_mysql(text or "").items():
        for a, b in ivs:
            out.update((u, n) for n in range(a, b + 1))
    return out


class SimMySQL:
    def __init__(self, world, name: str, index: int):
        self.w, self.name, self.index = world, name, index
        self.host, self.port = f"h-{name}", 3306
        self.incarnation = 0
        self.uuid = self._uuid()
        self.server_id = 100 + index
        self.up = True
        self.ro = True                   # mysqld always starts read-only
        self.executed: Set[Gtid] = set()
        self.retrieved: Set[Gtid] = set()    # received, not applied
        self.source: Optional[str] = None    # node name it replicates from
        self.io_on = self.sql_on = False
        self.connected = False
        self.semi_primary = self.semi_replica = False
        self.pending: List[Tuple[Gtid, int]] = []   # commits waiting for a semi-sync ACK: (gtid, write id)
        self.sql_error_until = -1.0      # the SQL thread stops on an apply error until then

    def _uuid(self) -> str:
        return f"{self.index + 1:08x}-0000-4000-8000-{self.incarnation:012x}"

    # ---- faults ------------------------------------------------------------------------------
    def crash(self, why: str) -> None:
        if not self.up:
            return
        self.up = False
        self.fail_pending(f"mysqld {why}")
        self.connected = False

    def fail_pending(self, why: str) -> None:
        for g, wid in self.pending:
            self.w.write_failed(wid, why)
        self.pending = []

    def start(self, rebuild: bool = False) -> None:
        """A (re)start: read-only, replication threads stopped, relay log gone (relay_log_recovery)."""
        if rebuild:
            self.incarnation += 1
            self.uuid = self._uuid()
            self.server_id = 100 + self.index + 1000 * self.incarnation
            self.executed = set()
            self.source = None
        self.up, self.ro, self.retrieved, self.sql_error_until = True, True, set(), -1.0
        self.io_on = self.sql_on = self.connected = False
        self.semi_primary = self.semi_replica = False

    # ---- what clients and replication do ---------------------------------------------------------
    def accepts_writes(self) -> bool:
        return self.up and not self.ro and not self.w.frozen(self.name)

    def acks_writes(self) -> bool:
        """Writable, and a commit here can be acknowledged now: with semi-sync, a semi-sync replica is
        connected to it (a writable server nobody acknowledges for loses nothing a client was told)."""
        if not self.accepts_writes():
            return False
        if not self.semi_primary:
            return True
        return any(x.source == self.name and x.semi_replica and x.io_on and x.connected and x.up
                   and not self.w.frozen(x.name) for x in self.w.mysqld.values())

    def commit(self, wid: int) -> Gtid:
        n = 1 + max((k for u, k in self.executed if u == self.uuid), default=0)
        g = (self.uuid, n)
        self.executed.add(g)             # AFTER_SYNC: in the binlog (replicas may receive it) before the ACK
        if self.semi_primary:
            self.pending.append((g, wid))
        else:
            self.w.write_acked(wid, self.name, g)
        return g

    def pull(self) -> None:
        """The IO thread (auto-position: the source sends what this server lacks), then the SQL thread."""
        if not (self.up and self.io_on and self.source) or self.w.frozen(self.name):
            return
        src = self.w.mysqld.get(self.source)
        if src is None or not src.up or self.w.frozen(src.name):
            self.connected = False
            return
        self.connected = True
        new = src.executed - self.executed - self.retrieved
        if new:
            self.retrieved |= new
        if self.semi_replica and src.semi_primary and src.pending:
            have = self.executed | self.retrieved
            acked = [(g, wid) for g, wid in src.pending if g in have]
            if acked:
                src.pending = [p for p in src.pending if p[0] not in have]
                for g, wid in acked:
                    self.w.write_acked(wid, src.name, g)
        if self.sql_on and self.retrieved and self.w.now < self.sql_error_until:
            self.sql_on = False          # the error recurs on every START REPLICA until it is gone
        if self.sql_on and self.retrieved:
            self.executed |= self.retrieved
            self.retrieved = set()

    @property
    def sql_error(self) -> bool:
        return not self.sql_on and self.io_on and self.w.now < self.sql_error_until

    def status(self) -> Optional[Dict]:
        if self.source is None:
            return None
        src = self.w.mysqld.get(self.source)
        io = self.io_on and self.connected
        return {"io_running": io, "io_state": "Yes" if io else ("Connecting" if self.io_on else "No"),
                "sql_running": self.sql_on, "lag_seconds": (0.0 if not self.retrieved else 1.0) if io else None,
                "source_host": src.host if src else self.source, "source_port": 3306, "source_user": "repl",
                "last_io_errno": 0, "last_io_error": "",
                "last_sql_errno": 1062 if self.sql_error else 0,
                "last_sql_error": "Could not execute Write_rows event (simulated)" if self.sql_error else "",
                "gtid_io_pos": fmt(self.retrieved), "retrieved": fmt(self.retrieved),
                "executed_gtid_set": fmt(self.executed), "using_gtid": "1", "sql_state": ""}


_SUBTRACT = re.compile(r"GTID_SUBTRACT\('([^']*)', '([^']*)'\)", re.I)


class SimConn:
    """What the HA code calls on sqlclient.Server, against one SimMySQL. A frozen server blocks the
    caller up to the read timeout, then fails; a stopped one fails at once."""

    def __init__(self, world, target: str, read_timeout: float = 2.0):
        self.w, self.target, self.read_timeout = world, target, read_timeout

    @property
    def m(self) -> SimMySQL:
        m = self.w.mysqld[self.target]
        if not m.up:
            raise PilotError(f"cannot connect to MySQL {self.target}: (2002) connection refused")
        if self.w.frozen(self.target):
            self.w.sleep(self.read_timeout)
            m = self.w.mysqld[self.target]
            if not m.up or self.w.frozen(self.target):
                raise PilotError(f"MySQL {self.target}: (2013) lost connection (read timeout)")
        return m

    def close(self):
        pass

    def ping(self):
        return self.m is not None

    def scalar(self, sql: str):
        m = self.m
        s = sql.upper()
        if "SERVER_ID" in s:
            return m.server_id
        if "SERVER_UUID" in s:
            return m.uuid
        mo = _SUBTRACT.search(sql)
        if mo:
            return fmt(parse(mo.group(1)) - parse(mo.group(2)))
        return 1

    def query(self, sql):
        self.m
        return []

    def execute(self, sql):
        self.m

    def read_only(self) -> bool:
        return self.m.ro

    def set_read_only(self, on: bool) -> None:
        m = self.m
        was, m.ro = m.ro, bool(on)
        if was and not on:
            self.w.became_writable(m.name)

    def kill_client_connections(self, *a) -> int:
        m = self.m
        n = len(m.pending)
        m.fail_pending("connection killed")
        return n

    def replica_status(self):
        return self.m.status()

    def gtid_executed(self) -> str:
        return fmt(self.m.executed)

    def gtid_received(self) -> str:
        m = self.m
        return fmt(m.executed | m.retrieved)

    def wait_for_gtid(self, g: str, timeout: float) -> bool:
        want = parse(g)
        return self._wait(lambda: want <= self.m.executed, timeout)

    def wait_relay_applied(self, timeout: float, poll: float = 0.1) -> bool:
        def done():
            m = self.m
            if m.source is None or not m.retrieved:
                return True
            if not m.sql_on:
                raise _Stopped()
            return False
        try:
            return self._wait(done, timeout)
        except _Stopped:
            return False

    def _wait(self, pred, timeout: float) -> bool:
        # A server-side wait (WAIT_FOR_EXECUTED_GTID_SET): the socket timeout covers it, so a frozen
        # server only delays the answer.
        end = self.w.now + timeout
        while True:
            if self.w.frozen(self.target) and self.w.mysqld[self.target].up:
                if self.w.now >= end:
                    return False
                self.w.sleep(min(0.1, end - self.w.now))
                continue
            if pred():
                return True
            if self.w.now >= end:
                return False
            self.w.sleep(min(0.1, end - self.w.now))

    def change_source(self, host, port, user, password) -> None:
        m = self.m
        m.source = next((n for n, x in self.w.mysqld.items() if x.host == host), host)
        m.retrieved = set()

    def start_replica(self) -> None:
        m = self.m
        if m.source:
            m.io_on = m.sql_on = True

    def stop_replica(self) -> None:
        m = self.m
        m.io_on = m.sql_on = m.connected = False

    def reset_replica_all(self) -> None:
        m = self.m
        m.source, m.retrieved, m.io_on, m.sql_on, m.connected = None, set(), False, False, False

    def seed_gtid(self, g: str) -> None:
        self.m.executed |= parse(g)

    def semi_sync_primary(self, on: bool, timeout_ms=None) -> None:
        m = self.m
        m.semi_primary = bool(on)
        if not on:                        # switched off: waiting commits are acknowledged as they are
            for g, wid in m.pending:
                self.w.write_acked(wid, m.name, g)
            m.pending = []

    def semi_sync_replica(self, on: bool) -> None:
        self.m.semi_replica = bool(on)

    def semi_sync_status(self):
        m = self.m
        clients = sum(1 for x in self.w.mysqld.values() if x.source == m.name and x.semi_replica and x.connected)
        return {"status": m.semi_primary, "clients": clients}


class _Stopped(Exception):
    pass

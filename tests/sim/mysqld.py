"""A simulated mysqld per node, and the connection object the HA code gets instead of sqlclient.Server.

GTIDs are MySQL GTID sets of (server_uuid, n): executed, and received into the relay log. A new datadir
(a rebuild) gets a new server_uuid, so a GTID names one transaction for the whole run.

MySQL semantics modelled (docs/flavors.md, facts.md): AFTER_SYNC semi-sync (in the binlog before the
ACK; a replica ACKs what reached its relay log); `SET GLOBAL read_only = ON` waits behind commits in
flight, a commit waiting for its ACK included, up to the session's lock_wait_timeout (1205) or the
connection's read timeout; KILL does not end a commit's wait for its ACK (its client gets an error,
the commit goes on waiting); switching semi-sync off, or its timeout, ends every wait with OK; a killed
client reconnects and writes again; Seconds_Behind_Source from the oldest unapplied transaction, NULL
when a thread is not running; relay-log recovery (the relay log is gone at a restart)."""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Set, Tuple

from mysqlpilot import gtid as gtidlib
from mysqlpilot.errors import PilotError
from mysqlpilot.sqlclient import SQLError

from . import clients, hooks, net

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
        self.up, self.up_since = True, 0.0
        self.ro = True                   # mysqld always starts read-only
        self.executed: Set[Gtid] = set()
        self.retrieved: Set[Gtid] = set()    # received, not applied
        self.source: Optional[str] = None    # node name it replicates from
        self.io_on = self.sql_on = False
        self.connected = False
        self.semi_primary = self.semi_replica = False
        # commits waiting for a semi-sync ACK: (gtid, write id, or None once its client was killed)
        self.pending: List[Tuple[Gtid, Optional[int]]] = []
        self.semi_timeout = float("inf")     # rpl_semi_sync_source_timeout, seconds
        self.ro_waiting = 0              # SET GLOBAL read_only = ON statements waiting behind commits
        self.sql_error_until = -1.0      # the SQL thread stops on an apply error until then
        self.slow_until = -1.0           # a slow SQL thread until then: one transaction every slow_every s
        self.slow_every, self.slow_last = 1.0, -1e9
        self.commit_at: Dict[Gtid, float] = world.__dict__.setdefault("commit_at", {})
        self.aside: List[frozenset] = []     # the GTIDs of each datadir moved aside by a rebuild

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
            if wid is not None:
                self.w.write_failed(wid, why)
        self.pending = []

    def ack(self, wid: Optional[int], g: Gtid) -> None:
        """The client of write `wid` gets OK for the commit `g` (none once killed or timed out)."""
        if wid is None or self.w.writes[wid]["state"] != "pending":
            return
        self.w.inv.acked(self.name, g)
        self.w.write_acked(wid, self.name, g)

    def release_pending(self) -> None:
        """Every commit's wait ends with OK (semi-sync switched off, or its timeout)."""
        pending, self.pending = self.pending, []
        for g, wid in pending:
            self.ack(wid, g)

    def start(self, rebuild: bool = False) -> None:
        """A (re)start: read-only, replication threads stopped, relay log gone (relay_log_recovery)."""
        if rebuild:
            self.aside.append(frozenset(self.executed))   # run-mysqld moves the old datadir aside, never deletes
            self.incarnation += 1
            self.uuid = self._uuid()
            self.server_id = 100 + self.index + 1000 * self.incarnation
            self.executed = set()
            self.source = None
        self.up, self.ro, self.retrieved, self.sql_error_until = True, True, set(), -1.0
        self.up_since = self.w.now
        self.io_on = self.sql_on = self.connected = False
        self.semi_primary = self.semi_replica = False

    # ---- what clients and replication do ---------------------------------------------------------
    def accepts_writes(self) -> bool:
        # A commit behind a waiting SET read_only = ON waits too, then fails: not accepted.
        return self.up and not self.ro and not self.ro_waiting and not self.w.frozen(self.name)

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
        self.commit_at[g] = self.w.now
        if self.semi_primary:
            self.pending.append((g, wid))
            if self.semi_timeout < float("inf"):
                self.w.at(self.semi_timeout, "", "semi-timeout", self.semi_sync_timed_out)
        else:
            self.ack(wid, g)
        return g

    def errant_commit(self) -> Gtid:
        """A transaction written on this server by hand (a SUPER client past read_only): errant."""
        g = (self.uuid, 1 + max((k for u, k in self.executed if u == self.uuid), default=0))
        self.executed.add(g)
        self.commit_at[g] = self.w.now
        return g

    def semi_sync_timed_out(self) -> None:
        """rpl_semi_sync_source_timeout: commits waiting longer fall back to async (OK without an ACK)."""
        if self.up and self.semi_primary and self.pending and \
                self.w.now - self.commit_at.get(self.pending[0][0], self.w.now) >= self.semi_timeout - 1e-9:
            self.release_pending()

    def pull(self) -> None:
        """The IO thread (auto-position: the source sends what this server lacks), then the SQL thread."""
        if not (self.up and self.io_on and self.source) or self.w.frozen(self.name):
            return
        src = self.w.mysqld.get(self.source)
        if src is None or not src.up or self.w.frozen(src.name) or net.of(self.w).cut(self.name, src.name):
            self.connected = False
            self.apply()                 # the SQL thread goes on with the relay log it has
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
                    src.ack(wid, g)
        self.apply()

    def apply(self) -> None:
        """The SQL thread: all of the relay log, or the oldest transaction only while it is slow."""
        if self.sql_on and self.retrieved and self.w.now < self.sql_error_until:
            self.sql_on = False          # the error recurs on every START REPLICA until it is gone
        if not (self.sql_on and self.retrieved):
            return
        if self.w.now < self.slow_until:
            if self.w.now - self.slow_last >= self.slow_every:
                g = min(self.retrieved, key=lambda x: (self.commit_at.get(x, 0.0), x))
                self.executed.add(g)
                self.retrieved.discard(g)
                self.slow_last = self.w.now
        else:
            self.executed |= self.retrieved
            self.retrieved = set()

    def backlog_age(self) -> float:
        """Seconds since the oldest transaction in the relay log not applied yet was committed (0: none)."""
        if not self.retrieved:
            return 0.0
        return max(0.0, self.w.now - min(self.commit_at.get(g, self.w.now) for g in self.retrieved))

    def lag(self) -> Optional[float]:
        """Seconds_Behind_Source: NULL unless both threads run and the source is connected; else the age
        of the oldest transaction not applied yet (0 with none)."""
        if not (self.io_on and self.connected and self.sql_on):
            return None
        return self.backlog_age()

    @property
    def sql_error(self) -> bool:
        return not self.sql_on and self.io_on and self.w.now < self.sql_error_until

    def status(self) -> Optional[Dict]:
        if self.source is None:
            return None
        src = self.w.mysqld.get(self.source)
        io = self.io_on and self.connected
        return {"io_running": io, "io_state": "Yes" if io else ("Connecting" if self.io_on else "No"),
                "sql_running": self.sql_on, "lag_seconds": self.lag(),
                "source_host": src.host if src else self.source, "source_port": 3306, "source_user": "repl",
                "last_io_errno": 0, "last_io_error": "",
                # A transient apply error (a lock wait): 1062/1032 that repeat mean diverged data, a rebuild.
                "last_sql_errno": 1205 if self.sql_error else 0,
                "last_sql_error": "Lock wait timeout exceeded (simulated)" if self.sql_error else "",
                "gtid_io_pos": fmt(self.retrieved), "retrieved": fmt(self.retrieved),
                "executed_gtid_set": fmt(self.executed), "using_gtid": "1", "sql_state": ""}


_SUBTRACT = re.compile(r"GTID_SUBTRACT\('([^']*)', '([^']*)'\)", re.I)
_SET = re.compile(r"^\s*SET\s+(SESSION\s+lock_wait_timeout|GLOBAL\s+rpl_semi_sync_\w+)\s*=\s*(\w+)", re.I)


class SimConn:
    """What the HA code calls on sqlclient.Server, against one SimMySQL. A frozen server blocks the
    caller up to the read timeout, then fails; a stopped one fails at once."""

    RTT = 0.0015          # a fence statement's round trip: the window a reconnecting client can use

    def __init__(self, world, target: str, read_timeout: float = 2.0):
        self.w, self.target, self.read_timeout = world, target, read_timeout
        self.lock_wait_timeout = 31536000.0      # the server's default

    @property
    def m(self) -> SimMySQL:
        hooks.of(self.w).call()
        m = self.w.mysqld[self.target]
        caller = self.w.current.node if self.w.current is not None else ""
        if caller and caller != self.target and net.of(self.w).cut(caller, self.target):
            self.w.sleep(min(2.0, self.read_timeout))        # the connect timeout: no answer
            raise PilotError(f"cannot connect to MySQL {self.target}: (2003) timed out (partition)")
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

    def add_secret(self, secret) -> None:
        pass

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
        m = self.m
        mo = _SET.search(sql)
        if mo:
            var, on = mo.group(1).split()[-1].lower(), mo.group(2).upper() in ("ON", "1")
            if var == "lock_wait_timeout":
                self.lock_wait_timeout = float(mo.group(2))
            elif var.endswith("_enabled") and ("_source_" in var or "_master_" in var):
                self.semi_sync_primary(on)
            elif var.endswith("_enabled"):
                self.semi_sync_replica(on)
        if sql.lstrip().upper().startswith("SET"):
            self.w.sleep(self.RTT)
        return m is not None

    def read_only(self) -> bool:
        return self.m.ro

    def set_read_only(self, on: bool) -> None:
        m = self.m
        if on and not m.ro and m.pending:
            self._wait_behind_commits(m)
        was, m.ro = m.ro, bool(on)
        if was and not on:
            self.w.became_writable(m.name)

    def _wait_behind_commits(self, m: SimMySQL) -> None:
        """SET GLOBAL read_only = ON waits for commits in flight (a commit waiting for its ACK holds the
        commit lock); new commits queue behind it. 1205 after lock_wait_timeout, 2013 at the read timeout."""
        if self.lock_wait_timeout <= 0:
            raise SQLError("(1205) Lock wait timeout exceeded; try restarting transaction", 1205)
        limit = min(self.lock_wait_timeout, self.read_timeout)
        end, inc = self.w.now + limit, m.incarnation
        m.ro_waiting += 1
        try:
            while m.pending and m.up and self.w.now < end:
                self.w.sleep(min(0.05, end - self.w.now))
        finally:
            m.ro_waiting = max(0, m.ro_waiting - 1)
        if not m.up or m.incarnation != inc:
            raise PilotError(f"MySQL {self.target}: (2013) lost connection (server gone)")
        if m.pending:
            if self.lock_wait_timeout < self.read_timeout:
                raise SQLError("(1205) Lock wait timeout exceeded; try restarting transaction", 1205)
            raise PilotError(f"MySQL {self.target}: (2013) lost connection (read timeout)")

    def kill_client_connections(self, *a) -> int:
        """KILL CONNECTION of every client: a killed client gets an error; on MySQL its commit goes on
        waiting for the ACK. Each killed client reconnects and writes again (clients.reconnect)."""
        m = self.m
        killed = [wid for _, wid in m.pending if wid is not None]
        m.pending = [(g, None) for g, _ in m.pending]
        for wid in killed:
            self.w.write_failed(wid, "connection killed")
            clients.reconnect(self.w, m.name)
        self.w.sleep(self.RTT)
        return len(killed)

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

    def change_source(self, host, port, user, password, tls=False, ca=None) -> None:
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
        if on:
            m.semi_timeout = float("inf") if timeout_ms is None or timeout_ms >= 4294967295 else timeout_ms / 1000.0
        else:                             # switched off: waiting commits return OK as they are
            m.release_pending()

    def semi_sync_replica(self, on: bool) -> None:
        self.m.semi_replica = bool(on)

    def semi_sync_status(self):
        m = self.m
        clients = sum(1 for x in self.w.mysqld.values() if x.source == m.name and x.semi_replica and x.connected)
        return {"status": m.semi_primary, "clients": clients}


class _Stopped(Exception):
    pass

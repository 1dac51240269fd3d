"""Seeded chaos against a real `mysqlpilot local` cluster (issue 13).

The pieces bench/chaos.py and tests/integration/test_chaos_schedule.py share: the fault catalogue,
schedules, a ledger of every write's outcome as the client saw it, a read_only sampler, and the
verdict (acknowledged writes lost, phantom rows, moments with two writable nodes, convergence).

    cluster = Cluster(dir, env={...})
    verdict = run_chaos(cluster, make_schedule(0, seed, "issue13"), nodes=3, seed=seed, hold=7)
    print(verdict.render())
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Set, Tuple

import pymysql

from mysqlpilot.local.cluster import socket_path

from .cluster import Cluster

# name -> what it does. Targets are taken from the cluster's status at the moment of the fault.
# Bound of the window after a frozen node's SIGCONT in which it may still answer read_only OFF before its
# watchdog fences (measured: a few tens of ms; the bound leaves room for a loaded 2-core machine).
THAW_WINDOW = 0.5
THAW_LABEL = f"  and within {THAW_WINDOW}s of a frozen node's SIGCONT"

FAULTS: Dict[str, str] = {
    "kill-primary": "SIGKILL the primary's whole node; once another leads (bounded), start it again",
    "kill-replica": "SIGKILL a replica's whole node, start it again",
    "crash-mysqld": "SIGKILL the primary's mysqld only; its supervisor restarts it",
    "freeze-primary": "SIGSTOP the primary's node for HOLD s (longer than the lease), then SIGCONT",
    "freeze-replica": "SIGSTOP a replica's node for HOLD s, then SIGCONT",
    "partition-primary": "cut the primary off from Consul only for HOLD s, then heal",
    "partition-full": "cut the primary off from Consul and from every mysqld client for HOLD s, then heal",
    "term-primary": "SIGTERM the primary's node (pre-stop hands over), start it again",
    "switchover": "mysqlpilot switchover",
    "kill-watch": "SIGKILL the primary's HA loop (`mysqlpilot watch`) only; its supervisor restarts it",
}

# Issue 13's reproduction, in this exact order.
ISSUE13: Tuple[str, ...] = (
    "kill-replica", "partition-primary", "switchover", "kill-primary", "freeze-primary", "term-primary",
    "freeze-primary", "freeze-primary", "crash-mysqld", "freeze-primary", "partition-full", "freeze-replica",
    "kill-primary", "kill-replica",
)
SCHEDULES = {"issue13": ISSUE13}

# Server errors that mean the statement did not run. Anything else after the INSERT was sent (lost
# connection, read timeout, KILL during a semi-sync wait, which commits locally) leaves the outcome unknown.
REJECTED_ERRNOS = {1290, 1836}     # --read-only refusals (MySQL's and MariaDB's)

# Node log lines worth showing per fault.
LOG_MARKERS = re.compile(r"FENCED|PROMOTED|REBUILD|errant|acquired the leader lock|handed the leader lock|"
                         r"lease expired|fencing failed")
LOG_NOISE = re.compile(r"until the errant-transaction check completes")     # repeated each pass while waiting


def make_schedule(faults: Optional[int], seed: int, schedule: Optional[str] = None) -> List[str]:
    """A named schedule (truncated to `faults` if given), or `faults` faults drawn with `seed`."""
    if schedule:
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
        s = list(SCHEDULES[schedule])
        return s[:faults] if faults else s
    if not faults or faults < 1:
        raise ValueError("give --faults N (N >= 1) or a --schedule")
    rng = random.Random(seed)
    names = sorted(FAULTS)
    return [rng.choice(names) for _ in range(faults)]


# ---- the ledger: what clients were told ------------------------------------------------------------
class Ledger:
    """Every id a writer sent, with its outcome: acked (autocommit INSERT returned OK), unknown (the
    connection broke during the statement) or rejected (the server refused it)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.next = 0
        self.rows: Dict[int, Tuple[str, float, str]] = {}    # id -> (outcome, time, node it went to)
        self.errors: Dict[str, int] = {}

    def allocate(self) -> int:
        with self.lock:
            self.next += 1
            return self.next

    def record(self, i: int, outcome: str, node: str, err: str = "") -> None:
        with self.lock:
            self.rows[i] = (outcome, time.time(), node)
            if err:
                self.errors[err] = self.errors.get(err, 0) + 1

    def ids(self, outcome: str) -> Set[int]:
        with self.lock:
            return {i for i, r in self.rows.items() if r[0] == outcome}

    def count(self, outcome: str, t0: float = 0.0, t1: float = float("inf")) -> int:
        with self.lock:
            return sum(1 for r in self.rows.values() if r[0] == outcome and t0 <= r[1] < t1)


def classify(exc: BaseException) -> Tuple[str, str]:
    code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None
    err = f"{code}" if isinstance(code, int) else exc.__class__.__name__
    return ("rejected" if code in REJECTED_ERRNOS else "unknown"), err


class PrimaryLocator:
    """Where a client sends writes: the primary `mysqlpilot status --json` names (the leader key,
    read consistently), cached briefly and shared by the writers."""

    def __init__(self, cluster: Cluster, max_age: float = 0.3):
        self.c = cluster
        self.max_age = max_age
        self.lock = threading.Lock()
        self.cached: Optional[Tuple[str, str, int]] = None
        self.at = 0.0

    def get(self) -> Optional[Tuple[str, str, int]]:
        with self.lock:
            if time.monotonic() - self.at > self.max_age:
                self.cached = None
                try:
                    st = self.c.status_fast()
                    if st["primary"]:
                        n = self.c.node(st, st["primary"])
                        self.cached = (n["name"], n["host"], int(n["port"]))
                except Exception:  # noqa: BLE001 - Consul briefly unreachable: no primary known
                    pass
                self.at = time.monotonic()
            return self.cached

    def invalidate(self) -> None:
        with self.lock:
            self.at = 0.0


class Writer(threading.Thread):
    """Inserts unique ids one by one on the primary, keeping its connection until it breaks (as a
    pooled client does). 1 s connect and read timeouts."""

    def __init__(self, idx: int, cluster: Cluster, ledger: Ledger, locator: PrimaryLocator, table: str,
                 interval: float = 0.02, timeout: float = 1.0):
        super().__init__(daemon=True, name=f"chaos-writer-{idx}")
        self.idx, self.c, self.ledger, self.locator = idx, cluster, ledger, locator
        self.table, self.interval, self.timeout = table, interval, timeout
        self.stop_evt = threading.Event()
        self.connect_errors = 0

    def run(self) -> None:
        conn, node = None, ""
        while not self.stop_evt.is_set():
            if conn is None:
                loc = self.locator.get()
                if loc is None:
                    self.stop_evt.wait(0.1)
                    continue
                try:
                    conn = self.c.connect(loc[1], loc[2], timeout=self.timeout)
                    node = loc[0]
                except Exception:  # noqa: BLE001 - nothing sent: no outcome to record
                    self.connect_errors += 1
                    self.locator.invalidate()
                    self.stop_evt.wait(0.1)
                    continue
            i = self.ledger.allocate()
            try:
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (id, writer, node, at) VALUES (%s, %s, %s, %s)",
                                (i, self.idx, node, time.time()))
                self.ledger.record(i, "acked", node)
            except Exception as exc:  # noqa: BLE001
                outcome, err = classify(exc)
                self.ledger.record(i, outcome, node, err)
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
                self.locator.invalidate()
                self.stop_evt.wait(0.05)
                continue
            self.stop_evt.wait(self.interval)
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def stop(self) -> None:
        self.stop_evt.set()


# ---- the sampler: who is writable ----------------------------------------------------------------
class ReadOnlySampler(threading.Thread):
    """Every `period` s reads @@global.read_only on every node at once (one thread per node, short
    timeouts) and records the nodes that answered OFF. A node under a full partition is read over its
    unix socket instead: a writable node nobody here can reach is still a second primary."""

    def __init__(self, cluster: Cluster, nodes: List[Tuple[str, str, int]], period: float = 0.075,
                 timeout: float = 0.3):
        super().__init__(daemon=True, name="chaos-sampler")
        self.c, self.nodes, self.period, self.timeout = cluster, nodes, period, timeout
        self.stop_evt = threading.Event()
        self.via_socket: Set[str] = set()
        # (tick start, nodes that answered OFF within timeout + 0.1 s of it)
        self.samples: List[Tuple[float, Tuple[str, ...]]] = []
        self.unanswered: Dict[str, int] = {n: 0 for n, _, _ in nodes}
        self.conns: Dict[str, Tuple[str, object]] = {}
        self.pools = {n: ThreadPoolExecutor(1, thread_name_prefix=f"chaos-probe-{n}") for n, _, _ in nodes}

    def _conn(self, name: str, host: str, port: int):
        how = "socket" if name in self.via_socket else "tcp"
        cur = self.conns.get(name)
        if cur is not None and cur[0] == how:
            return cur[1]
        self._drop(name)
        pw = self.c.settings["root_password"]
        if how == "socket":
            conn = pymysql.connect(unix_socket=socket_path(self.c.dir, name), user="root", password=pw,
                                   connect_timeout=self.timeout, read_timeout=self.timeout, autocommit=True)
        else:
            conn = self.c.connect(host, port, timeout=self.timeout)
        self.conns[name] = (how, conn)
        return conn

    def _drop(self, name: str) -> None:
        cur = self.conns.pop(name, None)
        if cur is not None:
            try:
                cur[1].close()
            except Exception:  # noqa: BLE001
                pass

    def _probe(self, name: str, host: str, port: int) -> Optional[bool]:
        try:
            conn = self._conn(name, host, port)
            with conn.cursor() as cur:
                cur.execute("SELECT @@global.read_only")
                return bool(cur.fetchone()[0])
        except Exception:  # noqa: BLE001 - down, frozen, killed connection: not seen writable
            self._drop(name)
            return None

    def run(self) -> None:
        busy: Dict[str, object] = {}
        while not self.stop_evt.is_set():
            t = time.time()
            futs = {}
            for name, host, port in self.nodes:
                prev = busy.get(name)
                if prev is not None and not prev.done():     # still stuck on a frozen node
                    continue
                futs[name] = busy[name] = self.pools[name].submit(self._probe, name, host, port)
            writable = []
            for name, _, _ in self.nodes:
                f = futs.get(name)
                try:
                    ro = f.result(max(0.0, t + self.timeout + 0.1 - time.time())) if f is not None else None
                except FutureTimeout:
                    ro = None
                if ro is None:
                    self.unanswered[name] += 1
                elif ro is False:
                    writable.append(name)
            self.samples.append((t, tuple(writable)))
            self.stop_evt.wait(max(0.0, self.period - (time.time() - t)))
        for name in list(self.conns):
            self._drop(name)
        for p in self.pools.values():
            p.shutdown(wait=False)

    def stop(self) -> None:
        self.stop_evt.set()
        self.join(10)

    def double(self, t0: float = 0.0, t1: float = float("inf")) -> List[Tuple[float, Tuple[str, ...]]]:
        return [(t, w) for t, w in self.samples if len(w) > 1 and t0 <= t < t1]


# ---- faults and the run --------------------------------------------------------------------------
@dataclass
class FaultEvent:
    index: int
    fault: str
    target: Optional[str] = None
    primary_before: Optional[str] = None
    primary_after: Optional[str] = None
    start: float = 0.0
    fault_done: float = 0.0            # the fault is over (node restarted, SIGCONT, healed)
    restore_at: Optional[float] = None  # just before the restart/SIGCONT/heal was sent
    converged_after: Optional[float] = None    # seconds from start; None: not within the bound
    note: str = ""
    acked: int = 0
    unknown: int = 0
    rejected: int = 0
    double_writable: int = 0
    lost: int = 0
    # freeze/partition of the primary: did another node lead before it came back? Only then does the
    # fault test what happens to an old primary that returns after a failover.
    taken_over: Optional[bool] = None
    thawed: Optional[str] = None       # the node a freeze fault resumed (SIGCONT at restore_at)
    history: List[str] = field(default_factory=list)
    log: List[str] = field(default_factory=list)


@dataclass
class Verdict:
    config: Dict
    final_primary: Optional[str]
    acked: int
    unknown: int
    rejected: int
    lost: List[int]
    phantom: Dict[str, List[int]]
    unknown_committed: int
    samples: int
    double_writable: List[Tuple[float, Tuple[str, ...]]]
    convergence_failures: List[str]
    nodes: Dict[str, Dict]
    events: List[FaultEvent]
    lost_by: Dict[str, int]
    errors: Dict[str, int]
    seconds: float
    markers: Dict[str, Dict[str, int]]
    not_run: List[str] = field(default_factory=list)      # faults left out when the time budget ran out
    # Two writable nodes, one of them a frozen node in the first THAW_WINDOW s after its SIGCONT: mysqld
    # and its fence watchdog wake together, and mysqld answers a client queued during the freeze before
    # the watchdog's first statement lands (docs/timing.md, "What remains"). Counted apart, bounded.
    thaw_window: List[Tuple[float, Tuple[str, ...]]] = field(default_factory=list)

    @property
    def phantom_count(self) -> int:
        return sum(len(v) for v in self.phantom.values())

    @property
    def ok(self) -> bool:
        return (self.final_primary is not None and not self.lost and not self.phantom_count
                and not self.double_writable and not self.convergence_failures and not self.not_run)

    def to_json(self) -> Dict:
        d = asdict(self)
        d["lost"] = sorted(self.lost)
        d["lost_count"] = len(self.lost)
        d["phantom_count"] = self.phantom_count
        d["double_writable_count"] = len(self.double_writable)
        d["double_writable_samples"] = len(self.double_writable)
        d["thaw_window_samples"] = len(self.thaw_window)
        d["ok"] = self.ok
        return d

    def render_events(self) -> str:
        cols = ("#", "fault", "target", "primary", "converged", "acked", "unknown", "rejected", "lost",
                "2-writable", "note")
        rows = [cols]
        for e in self.events:
            conv = f"{e.converged_after:.1f}s" if e.converged_after is not None else (
                "-" if e.note.startswith("skipped") else "NO")
            rows.append((str(e.index), e.fault, e.target or "-",
                         f"{e.primary_before or '-'}->{e.primary_after or '-'}", conv, str(e.acked),
                         str(e.unknown), str(e.rejected), str(e.lost), str(e.double_writable), e.note))
        widths = [max(len(r[i]) for r in rows) for i in range(len(cols) - 1)]
        out = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) + "  " + r[-1] for r in rows]
        return "\n".join(x.rstrip() for x in out)

    def render_logs(self, per_fault: int = 12) -> str:
        out = []
        for e in self.events:
            if e.history or e.log:
                out.append(f"#{e.index} {e.fault} ({e.target or '-'}):")
                out += [f"    history: {h}" for h in e.history]
                out += [f"    {line}" for line in e.log[:per_fault]]
                if len(e.log) > per_fault:
                    out.append(f"    ... {len(e.log) - per_fault} more")
        return "\n".join(out)

    def _when(self, t: float, w: Tuple[str, ...]) -> str:
        """A sample's time, its nodes, and where it fell relative to the fault's end (SIGCONT, heal...)."""
        s = f"{time.strftime('%H:%M:%S', time.localtime(t))}.{int(t % 1 * 1000):03d} {'+'.join(w)}"
        ev = None
        for e in self.events:
            if e.start <= t:
                ev = e
        if ev is not None:
            rel = f", {t - ev.restore_at:+.2f}s from its restore" if ev.restore_at else ""
            s += f" (#{ev.index} {ev.fault}{rel})"
        return s

    def render(self) -> str:
        c = self.config
        dw = len(self.double_writable)
        lines = [f"chaos: schedule {c.get('schedule') or 'random'}, seed {c['seed']}, {len(self.events)} faults, "
                 f"{c['durability']}, {c['nodes']} nodes, {c['writers']} writers, hold {c['hold']}s, "
                 f"{self.seconds:.0f}s in all",
                 self.render_events(), "",
                 f"{'verdict':<42} {'PASS' if self.ok else 'FAIL'}",
                 f"{'acknowledged writes':<42} {self.acked}",
                 f"{'outcome unknown (committed / not)':<42} {self.unknown} ({self.unknown_committed} / "
                 f"{self.unknown - self.unknown_committed})",
                 f"{'rejected (read-only)':<42} {self.rejected}",
                 f"{'LOST: acked, missing on final primary':<42} {len(self.lost)}"
                 + (f" (final primary {self.final_primary})" if self.final_primary else " (NO final primary)"),
                 f"{'phantom: on a node, never sent or refused':<42} {self.phantom_count}",
                 f"{'samples with two writable nodes':<42} {dw} of {self.samples}",
                 f"{THAW_LABEL:<42} {len(self.thaw_window)}",
                 f"{'convergence failures':<42} {len(self.convergence_failures)}"]
        if self.not_run:
            lines.append(f"{'NOT RUN (time budget spent)':<42} {len(self.not_run)}: {', '.join(self.not_run)}")
        if self.lost:
            lines.append("lost by (fault window, node that acked): " + ", ".join(
                f"{k}: {v}" for k, v in sorted(self.lost_by.items())) + f"; e.g. ids {sorted(self.lost)[:10]}")
        for name, ids in sorted(self.phantom.items()):
            if ids:
                lines.append(f"phantom on {name}: {len(ids)}, e.g. {sorted(ids)[:10]}")
        if dw:
            lines.append("two writable at: " + ", ".join(self._when(t, w) for t, w in self.double_writable[:12]))
        if self.thaw_window:
            lines.append("in a thaw window at: " + ", ".join(self._when(t, w) for t, w in self.thaw_window[:12]))
        for f in self.convergence_failures:
            lines.append(f"not converged: {f}")
        for name, n in sorted(self.nodes.items()):
            lines.append(f"node {name}: " + ", ".join(f"{k} {v}" for k, v in n.items()))
        for name, m in sorted(self.markers.items()):
            lines.append(f"log markers {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(m.items())))
        return "\n".join(lines)


class ChaosRun:
    """Load, sampler and faults on a running cluster. start(), inject() each fault, verdict(), and
    always cleanup()."""

    def __init__(self, cluster: Cluster, nodes: int, seed: int, hold: float = 14.0, writers: int = 4,
                 converge_timeout: float = 120.0, write_interval: float = 0.02,
                 echo: Callable[[str], None] = print, table: str = "chaos.ledger"):
        self.c, self.n, self.hold, self.writers_n = cluster, nodes, hold, writers
        self.converge_timeout, self.write_interval = converge_timeout, write_interval
        self.echo, self.table = echo, table
        self.rng = random.Random(f"{seed}/targets")      # which replica a replica fault hits
        self.ledger = Ledger()
        self.locator = PrimaryLocator(cluster)
        self.writers: List[Writer] = []
        self.sampler: Optional[ReadOnlySampler] = None
        self.events: List[FaultEvent] = []
        self.paused: Set[str] = set()
        self.partitioned: Set[str] = set()
        self.log_offsets: Dict[str, int] = {}
        self.t_start = time.time()
        self.deadline: Optional[float] = None          # time.monotonic() after which waits are cut short

    def bound(self) -> float:
        """The convergence bound, cut to what is left of the time budget (never below 10 s)."""
        if self.deadline is None:
            return self.converge_timeout
        return max(10.0, min(self.converge_timeout, self.deadline - time.monotonic()))

    # ---- helpers ---------------------------------------------------------------------------
    def st(self) -> Optional[Dict]:
        try:
            return self.c.status_fast()
        except Exception:  # noqa: BLE001
            return None

    def wait(self, pred, timeout: float, interval: float = 0.5) -> Optional[Dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.st()
            if st is not None and pred(st):
                return st
            time.sleep(interval)
        return None

    def settled(self, st: Dict, since: float, allow_rebuilding: bool = True) -> bool:
        """Converged, as every node reported after `since`: right after a restart the Consul view still
        shows the node's previous life (its session outlives it by up to a TTL), and a node killed while
        rebuilding would read as rebuilding forever."""
        if not self.c.converged(st, self.n, allow_rebuilding):
            return False
        now = time.time()
        return all(n["age_seconds"] is not None and n["age_seconds"] < now - since for n in st["nodes"])

    def local(self, *args: str) -> str:
        """`mysqlpilot local VERB NODE --dir DIR`; returns '' or the error's last line (never raises)."""
        p = self.c.cli("local", *args, "--dir", self.c.dir, check=False, timeout=240)
        return "" if p.returncode == 0 else f"local {args[0]} failed: {(p.stderr or p.stdout).strip()[-200:]}"

    def _log_files(self) -> List[Tuple[str, str]]:
        base = os.path.join(self.c.dir, "nodes")
        out = []
        for node in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            logs = os.path.join(base, node, "logs")
            for f in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
                if f.endswith(".log") and f != "mysql.log":
                    out.append((node, os.path.join(logs, f)))
        return out

    def _mark_logs(self) -> None:
        for _, path in self._log_files():
            try:
                self.log_offsets[path] = os.path.getsize(path)
            except OSError:
                pass

    def _new_log_lines(self) -> List[str]:
        out = []
        for node, path in self._log_files():
            try:
                with open(path, "rb") as fh:
                    fh.seek(self.log_offsets.get(path, 0))
                    text = fh.read().decode(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if LOG_MARKERS.search(line) and not LOG_NOISE.search(line):
                    out.append(f"{node}/{os.path.basename(path)[:-4]}: {line.strip()[:240]}")
        # Lines start with an ISO time: sort across nodes.
        return sorted(out, key=lambda s: s.split(": ", 1)[1][:23])

    # ---- load --------------------------------------------------------------------------------
    def start(self) -> None:
        st = self.wait(lambda s: self.c.converged(s, self.n, allow_rebuilding=False), self.converge_timeout)
        if st is None:
            raise AssertionError(f"cluster never converged before the run\n{self.c.logs_tail()}")
        p = self.c.node(st, st["primary"])
        db = self.table.split(".")[0]
        self.c.sql(p["host"], p["port"], f"CREATE DATABASE IF NOT EXISTS {db}")
        self.c.sql(p["host"], p["port"], f"CREATE TABLE IF NOT EXISTS {self.table} (id BIGINT PRIMARY KEY, "
                                         "writer INT, node VARCHAR(32), at DOUBLE) ENGINE=InnoDB")
        self.sampler = ReadOnlySampler(self.c, self.c.addresses())
        self.sampler.start()
        for i in range(self.writers_n):
            w = Writer(i, self.c, self.ledger, self.locator, self.table, interval=self.write_interval)
            self.writers.append(w)
            w.start()
        deadline = time.monotonic() + 30
        while self.ledger.count("acked") < 20 * self.writers_n:
            if time.monotonic() > deadline:
                raise AssertionError(f"write load never got going: {self.ledger.errors}")
            time.sleep(0.1)
        self.t_start = time.time()
        self.echo(f"load running: {self.writers_n} writers on {st['primary']}, sampler on "
                  f"{len(self.c.addresses())} nodes")

    def stop_load(self) -> None:
        for w in self.writers:
            w.stop()
        for w in self.writers:
            w.join(10)
        if self.sampler is not None:
            self.sampler.stop()

    # ---- faults ------------------------------------------------------------------------------
    def inject(self, fault: str) -> FaultEvent:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(FAULTS))}")
        ev = FaultEvent(index=len(self.events) + 1, fault=fault)
        self.events.append(ev)
        st = self.st()
        primary = st["primary"] if st else None
        ev.primary_before = primary
        replicas = sorted(n["name"] for n in (st or {}).get("nodes", []) if n["name"] != primary
                          and n["role"] != "down") or sorted(n for n, _, _ in self.c.addresses() if n != primary)
        on_primary = not fault.endswith("replica")
        ev.target = primary if on_primary else (self.rng.choice(replicas) if replicas else None)
        self._mark_logs()
        ev.start = time.time()
        self.echo(f"[{ev.start - self.t_start:6.1f}s] #{ev.index} {fault} on {ev.target or '-'} "
                  f"(primary {primary or 'NONE'})")
        try:
            if ev.target is None:
                ev.note = "skipped: no primary" if on_primary else "skipped: no replica"
            else:
                ev.note = self._do(fault, ev.target, primary)
        finally:
            self._undo_all()
            ev.fault_done = time.time()
        bound = self.bound()
        got = self.wait(lambda s: self.settled(s, ev.fault_done), bound)
        if got is not None:
            ev.converged_after = time.time() - ev.start
        st = got or self.st()
        ev.primary_after = st["primary"] if st else None
        if st:
            # By time, not by index: Consul keeps the last 50 records only.
            ev.history = [f"{h.get('kind')}: {h.get('old_primary') or '-'} -> {h.get('new_primary') or '-'} "
                          f"({h.get('reason')})" for h in st["history"] if float(h.get("time") or 0) >= ev.start]
        ev.log = self._new_log_lines()
        conv = f"converged after {ev.converged_after:.1f}s" if got is not None else \
            f"NOT converged within {bound:.0f}s"
        self.echo(f"         {conv}; primary {ev.primary_after or 'NONE'}"
                  + (f"; {ev.note}" if ev.note else ""))
        return ev

    def _hold(self, ev_target: str, primary: Optional[str], notes: List[str]) -> None:
        time.sleep(self.hold)
        if ev_target == primary:
            st = self.st()
            other = st["primary"] if st and st["primary"] not in (None, ev_target) else None
            self.events[-1].taken_over = other is not None
            notes.append(f"{other} led before the thaw/heal" if other else "nobody else led before the thaw/heal")

    def _do(self, fault: str, target: str, primary: Optional[str]) -> str:
        c, notes = self.c, []
        if fault in ("kill-primary", "term-primary"):
            notes.append(self.local("kill", target, "--signal", "KILL" if fault == "kill-primary" else "TERM"))
            if fault == "kill-primary":
                # Restart only once someone else leads, so the failover itself is what gets tested.
                t0 = time.time()
                bound = self.bound()
                if self.wait(lambda s: s["primary"] not in (None, target), bound) is None:
                    notes.append(f"no other primary within {bound:.0f}s")
                else:
                    notes.append(f"new primary after {time.time() - t0:.1f}s")
            self.events[-1].restore_at = time.time()
            notes.append(self.local("start", target))
        elif fault == "kill-replica":
            notes.append(self.local("kill", target, "--signal", "KILL"))
            time.sleep(1.0)
            self.events[-1].restore_at = time.time()
            notes.append(self.local("start", target))
        elif fault == "crash-mysqld":
            try:
                c.kill_mysqld(target)
            except (AssertionError, OSError, ValueError) as exc:
                notes.append(f"crash-mysqld failed: {exc}")
        elif fault in ("freeze-primary", "freeze-replica"):
            self.paused.add(target)
            notes.append(self.local("pause", target))
            self._hold(target, primary, notes)
            self.paused.discard(target)
            self.events[-1].restore_at = c.signal_group(target, signal.SIGCONT)
            self.events[-1].thawed = target
            notes.append(f"{target} resumed (SIGCONT)")
        elif fault in ("partition-primary", "partition-full"):
            full = fault == "partition-full"
            self.partitioned.add(target)
            if full and self.sampler is not None:
                self.sampler.via_socket.add(target)
            notes.append(self.local("partition", target, *(("--full",) if full else ())))
            self._hold(target, primary, notes)
            self.partitioned.discard(target)
            self.events[-1].restore_at = time.time()
            notes.append(self.local("heal", target))
            if self.sampler is not None:
                self.sampler.via_socket.discard(target)
        elif fault == "switchover":
            p = c.cli("switchover", config=True, check=False, timeout=120)
            out = (p.stdout + p.stderr).strip().splitlines()
            notes.append(("" if p.returncode == 0 else "switchover failed: ") + (out[-1][:160] if out else ""))
        elif fault == "kill-watch":
            pids = c.kill_job(target, "watch")
            notes.append(f"killed watch pid {','.join(map(str, pids))}" if pids else "no watch process found")
        return "; ".join(n for n in notes if n)

    def _undo_all(self) -> None:
        """Whatever a fault left behind when interrupted: frozen nodes thawed, partitions healed."""
        for name in list(self.paused):
            try:
                self.c.cli("local", "unpause", name, "--dir", self.c.dir, check=False, timeout=60)
            finally:
                self.paused.discard(name)
        for name in list(self.partitioned):
            try:
                self.c.cli("local", "heal", name, "--dir", self.c.dir, check=False, timeout=60)
            finally:
                self.partitioned.discard(name)
                if self.sampler is not None:
                    self.sampler.via_socket.discard(name)

    def cleanup(self) -> None:
        try:
            self.stop_load()
        finally:
            self._undo_all()
            # SIGCONT every node's processes: harmless if running, vital if a pause was interrupted.
            try:
                for name, n in self.c.registry()["nodes"].items():
                    if n.get("pid"):
                        try:
                            os.killpg(os.getpgid(n["pid"]), signal.SIGCONT)
                        except (ProcessLookupError, PermissionError):
                            pass
            except (OSError, ValueError):
                pass

    # ---- verdict -----------------------------------------------------------------------------
    def read_ids(self, st: Dict) -> Tuple[Dict[str, Optional[Set[int]]], Dict[str, str]]:
        """Every node's ids, replicas first caught up to the primary's binlog position (bounded)."""
        got: Dict[str, Optional[Set[int]]] = {}
        why: Dict[str, str] = {}
        p = st["primary"]
        pos = ""
        if p:
            pn = self.c.node(st, p)
            try:
                pos = self.c.sql(pn["host"], pn["port"], "SELECT @@gtid_binlog_pos")[0][0] or ""
            except Exception as exc:  # noqa: BLE001
                why[p] = f"position unreadable: {exc}"
        for name, host, port in self.c.addresses():
            try:
                conn = self.c.connect(host, port, timeout=60)      # read timeout covers the wait below
                try:
                    with conn.cursor() as cur:
                        if name != p and pos:
                            cur.execute("SELECT MASTER_GTID_WAIT(%s, 45)", (pos,))
                            if cur.fetchone()[0] != 0:
                                why[name] = "did not catch up with the primary in 45s"
                        cur.execute(f"SELECT id FROM {self.table}")
                        got[name] = {int(r[0]) for r in cur.fetchall()}
                finally:
                    conn.close()
            except Exception as exc:  # noqa: BLE001
                got[name] = None
                why[name] = f"unreadable: {str(exc)[:120]}"
        return got, why

    def verdict(self, final_timeout: float = 180.0, config: Optional[Dict] = None,
                not_run: Optional[List[str]] = None) -> Verdict:
        self.stop_load()
        failures = [f"#{e.index} {e.fault} on {e.target}: no single primary with every other node "
                    f"replicating (or rebuilding) within the bound"
                    for e in self.events if e.converged_after is None and not e.note.startswith("skipped")]
        t_stop = time.time()
        st = self.wait(lambda s: self.settled(s, t_stop, allow_rebuilding=False), final_timeout)
        if st is None:
            failures.append(f"final: no primary with {self.n - 1} healthy replicas within {final_timeout:.0f}s")
            st = self.st() or {"primary": None, "nodes": []}
        final = st["primary"]
        ids, why = self.read_ids(st) if final else ({}, {})
        acked, unknown, rejected = self.ledger.ids("acked"), self.ledger.ids("unknown"), self.ledger.ids("rejected")
        on_primary = ids.get(final) if final else None
        if final and on_primary is None:
            failures.append(f"final primary {final} unreadable: {why.get(final)}")
        lost = sorted(acked - on_primary) if on_primary is not None else sorted(acked)
        sent = acked | unknown
        phantom = {name: sorted(have - sent) for name, have in ids.items() if have is not None and have - sent}
        nodes = {}
        for name, have in ids.items():
            d: Dict = {"role": next((n["role"] for n in st["nodes"] if n["name"] == name), "?")}
            if have is None:
                d["rows"] = "?"
            else:
                d.update(rows=len(have), missing_acked=len(acked - have), unknown_present=len(unknown & have))
            if name in why:
                d["note"] = why[name]
            nodes[name] = d
        # Attribute losses to the fault window their ack fell in, and to the node that acked them.
        starts = [e.start for e in self.events]
        lost_by: Dict[str, int] = {}
        for i in lost:
            _, t, node = self.ledger.rows[i]
            k = sum(1 for s in starts if s <= t)
            key = (f"#{k} {self.events[k - 1].fault}" if k else "before faults") + f" @{node}"
            lost_by[key] = lost_by.get(key, 0) + 1
            if k:
                self.events[k - 1].lost += 1
        dw = self.sampler.double() if self.sampler else []
        thaws = [(e.restore_at, e.thawed) for e in self.events if e.thawed and e.restore_at]

        def in_thaw_window(t: float, w: Tuple[str, ...]) -> bool:
            # A sample stamped up to probe timeout + 0.1 s before the SIGCONT may be answered after it.
            lead = self.sampler.timeout + 0.1 if self.sampler else 0.0
            return any(node in w and at - lead <= t <= at + THAW_WINDOW for at, node in thaws)
        thaw_window = [(t, w) for t, w in dw if in_thaw_window(t, w)]
        dw = [(t, w) for t, w in dw if not in_thaw_window(t, w)]
        for k, e in enumerate(self.events):
            t1 = self.events[k + 1].start if k + 1 < len(self.events) else float("inf")
            e.acked = self.ledger.count("acked", e.start, t1)
            e.unknown = self.ledger.count("unknown", e.start, t1)
            e.rejected = self.ledger.count("rejected", e.start, t1)
            e.double_writable = len([1 for t, _ in dw if e.start <= t < t1])
        markers: Dict[str, Dict[str, int]] = {}
        for node, path in self._log_files():
            try:
                with open(path, errors="replace") as fh:
                    text = fh.read()
            except OSError:
                continue
            m = markers.setdefault(node, {})
            for line in text.splitlines():
                if LOG_NOISE.search(line):
                    continue
                for word in ("FENCED", "PROMOTED", "REBUILD", "errant"):
                    if word in line:
                        m[word] = m.get(word, 0) + 1
        return Verdict(
            config=dict(config or {}), final_primary=final, acked=len(acked), unknown=len(unknown),
            rejected=len(rejected), lost=lost, phantom=phantom,
            unknown_committed=len(unknown & on_primary) if on_primary else 0,
            samples=len(self.sampler.samples) if self.sampler else 0, double_writable=dw,
            convergence_failures=failures, nodes=nodes, events=self.events, lost_by=lost_by,
            errors=dict(self.ledger.errors), seconds=time.time() - self.t_start, markers=markers,
            not_run=list(not_run or []), thaw_window=thaw_window)


def run_chaos(cluster: Cluster, faults: List[str], nodes: int = 3, seed: int = 0, hold: float = 14.0,
              writers: int = 4, durability: str = "semi-sync", converge_timeout: float = 120.0,
              schedule: Optional[str] = None, failover_budget: int = 1000, time_budget: Optional[float] = None,
              final_timeout: float = 180.0, echo: Callable[[str], None] = print) -> Verdict:
    """Up, load, faults, verdict; the cluster always goes down (failure, Ctrl-C included).

    The cluster fails over on purpose far more often than the default budget allows: the budget goes in
    through the environment every node inherits (`local up`/`local start` pass theirs on) and into the
    mysqlpilot.yaml `local up` wrote, so `mysqlpilot status` agrees.

    time_budget: seconds for the faults once the load runs; faults that would start later are not run
    (the verdict says so and fails) and the convergence waits are cut to what is left."""
    cluster.env["MYSQLPILOT_FAILOVER_BUDGET"] = str(failover_budget)
    config = {"schedule": schedule, "seed": seed, "faults": list(faults), "nodes": nodes, "writers": writers,
              "hold": hold, "durability": durability, "converge_timeout": converge_timeout,
              "failover_budget": failover_budget, "dir": cluster.dir}
    run: Optional[ChaosRun] = None
    try:
        echo(f"starting a {nodes}-node {durability} cluster in {cluster.dir}")
        cluster.up(nodes, "--durability", durability)
        cluster.set_settings(failover_budget=failover_budget)
        run = ChaosRun(cluster, nodes, seed, hold=hold, writers=writers, converge_timeout=converge_timeout,
                       echo=echo)
        run.start()
        if time_budget is not None:
            run.deadline = time.monotonic() + time_budget
        not_run = []
        for k, f in enumerate(faults):
            if run.deadline is not None and time.monotonic() >= run.deadline:
                not_run = [f"#{len(run.events) + 1 + j} {x}" for j, x in enumerate(faults[k:])]
                echo(f"time budget of {time_budget:.0f}s spent: {len(not_run)} faults not run")
                break
            run.inject(f)
        return run.verdict(final_timeout=final_timeout, config=config, not_run=not_run)
    finally:
        if run is not None:
            run.cleanup()
        cluster.down()


def write_json(verdict: Verdict, path: str) -> None:
    with open(path, "w") as fh:
        json.dump(verdict.to_json(), fh, indent=1, default=str)

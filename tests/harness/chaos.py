"""Seeded chaos against a real `mysqlpilot local` cluster (issues 13 and 9).

The pieces bench/chaos.py and the chaos tests share: the fault catalogue, seeded plans (one fault at
a time, or overlapping), a ledger of every write's outcome as the client saw it, a read_only sampler,
checks after every fault (convergence, acknowledged writes present on the primary, never two writable
nodes, no moved-aside datadir without an errant transaction) and at the end (the same, plus phantom
rows, replicas' CHECKSUM TABLE equal to the primary's, and nothing of the cluster left running), a
per-kind report, and a one-line verdict that names the seed and the fault so a run can be replayed.
Either server flavor (`Cluster(..., flavor="mysql")`: MySQL 9.7): what differs between them (the
read-only query, GTID position and wait, the error codes of a read-only refusal) is in `chaos_sql`.

    cluster = Cluster(dir, env={...})
    verdict = run_chaos(cluster, make_schedule(0, seed, "issue13"), nodes=3, seed=seed, hold=7)
    print(verdict.render())
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, FrozenSet, List, Optional, Set, Tuple

import pymysql

from mysqlpilot.analysis import Policy
from mysqlpilot.local.cluster import socket_path

from . import nodelogs
from .cluster import Cluster

# Bound of the window after a frozen node's SIGCONT in which it may still answer read_only OFF before its
# watchdog fences (measured: a few tens of ms; the bound leaves room for a loaded 2-core machine).
THAW_WINDOW = 0.5
THAW_LABEL = f"  and within {THAW_WINDOW}s of a frozen node's SIGCONT"

# name -> what it does. Targets are taken from the cluster's status at the moment of the fault.
FAULTS: Dict[str, str] = {
    "kill-primary": "SIGKILL the primary's whole node; once another leads (bounded), start it again",
    "kill-replica": "SIGKILL a replica's whole node, start it again",
    "crash-mysqld": "SIGKILL the primary's mysqld only; its supervisor restarts it",
    "freeze-primary": "SIGSTOP the primary's node for HOLD s (longer than the lease), then SIGCONT",
    "freeze-replica": "SIGSTOP a replica's node for HOLD s, then SIGCONT",
    "partition-primary": "cut the primary off from Consul only for HOLD s, then heal",
    "partition-full": "cut the primary off from Consul and from every mysqld client for HOLD s, then heal",
    "partition-replicas": "cut the primary's mysqld off from its replicas only (Consul and clients still reach "
                          "it) for HOLD s, then heal",
    "term-primary": "SIGTERM the primary's node (pre-stop hands over), start it again",
    "switchover": "mysqlpilot switchover",
    "switchover-under-lock": "mysqlpilot switchover while a client holds LOCK TABLES ... WRITE, or an open "
                             "transaction with a ledger row in it (committed after), on the primary",
    "manual-failover": "mysqlpilot failover --force while the primary is healthy (its session is destroyed): "
                       "it must end read-only and rejoin",
    "kill-watch": "SIGKILL the primary's HA loop (`mysqlpilot watch`) only; its supervisor restarts it",
    "restart-consul": "restart the Consul server with its data kept (SIGTERM, then started again on the same "
                      "ports and data dir)",
    "replica-mysqld-restart-then-kill-primary": "SIGKILL a replica's mysqld, wait until it answers again "
                                                "(relay-log recovery), then SIGKILL the primary's node",
    "store-down-snapshot": "the snapshot store unavailable while the primary takes a forced snapshot (from the "
                           "start, or once its upload has begun); with the store back, a snapshot must work again",
    "store-down-restore": "a replica killed, its datadir emptied (a new volume), restarted with the store "
                          "unavailable until a restore attempt has failed, then the store back",
}

# Consul's own faults (issue 21), on a cluster whose Consul is several real servers (--consul-servers 3).
# Apart from FAULTS so that the default draw, and every documented seed's replay, stays what it was.
CONSUL_FAULTS: Dict[str, str] = {
    "consul-kill-leader": "SIGKILL the Consul Raft leader; started again 5 s later with its data",
    "consul-rolling-restart": "restart every Consul server in turn, followers first, each back in the quorum "
                              "before the next",
    "consul-freeze": "SIGSTOP every Consul server for 3 s, 10 s or HOLD s (drawn), then SIGCONT",
}
ALL_FAULTS: Dict[str, str] = {**FAULTS, **CONSUL_FAULTS}

# Faults that come in variants, one drawn per fault from the seed.
VARIANTS: Dict[str, Tuple[str, ...]] = {
    "switchover-under-lock": ("lock-tables", "long-trx"),
    "store-down-snapshot": ("before", "during"),
    "consul-freeze": ("3s", "10s", "hold"),
}

# Faults that hand the primary over on purpose: they wait for the new primary to hold everything, so even in
# async mode an acknowledged write lost at one of them is a violation.
PLANNED = {"switchover", "switchover-under-lock", "term-primary"}

# What async mode promises (docs/timing.md): a failover loses at most the writes acknowledged in the last
# replication-delay window, bounded by max_lag_on_failover (a replica lagging more is never promoted).
ASYNC_LOSS_BOUND = Policy().max_lag_on_failover


def async_loss_problem(faults: List[Tuple[str, bool]], ages: List[float], bound: float = ASYNC_LOSS_BOUND
                       ) -> Optional[str]:
    """Why acknowledged writes found missing after these faults break async mode's promise, or None.
    `faults`: (kind, whether the primary changed during it) for the faults since the last check; `ages`:
    for each lost write, seconds from its acknowledgement to the start of the fault (negative: acked after)."""
    if not ages:
        return None
    if not any(changed and kind not in PLANNED for kind, changed in faults):
        what = ", ".join(k for k, _ in faults) or "no fault"
        return f"lost at {what}, which is no unplanned failover: async mode loses writes only at a failover"
    oldest = max(ages)
    if oldest > bound:
        return (f"the oldest lost write was acknowledged {oldest:.1f}s before the fault, beyond the "
                f"max_lag_on_failover bound of {bound:.0f}s")
    return None


# Faults that hold the cluster in a faulty state for HOLD s: with --overlap the next fault starts inside it.
HOLDING = {"freeze-primary", "freeze-replica", "partition-primary", "partition-full", "partition-replicas",
           "consul-freeze"}

# Issue 13's reproduction, in this exact order.
ISSUE13: Tuple[str, ...] = (
    "kill-replica", "partition-primary", "switchover", "kill-primary", "freeze-primary", "term-primary",
    "freeze-primary", "freeze-primary", "crash-mysqld", "freeze-primary", "partition-full", "freeze-replica",
    "kill-primary", "kill-replica",
)
# Every way a primary is fenced or demoted under write load, one each, in a few minutes: its mysqld
# crashed and restarted by the supervisor, frozen past its lease (a failover, then the thawed node
# fences and is rebuilt), a switchover, a forced failover of a healthy primary. The freeze comes early
# so that its rebuild runs during the later faults. CI's MySQL campaign (test_chaos_campaign.py).
FENCES: Tuple[str, ...] = ("crash-mysqld", "freeze-primary", "switchover", "manual-failover")
SCHEDULES = {"issue13": ISSUE13, "fences": FENCES}

FLAVORS = ("mariadb", "mysql")      # `mysqlpilot local up --flavor`

# Server errors that mean the statement did not run: a read-only server's refusals, per flavor. Anything
# else after the INSERT was sent (lost connection, read timeout, KILL during a semi-sync wait, which
# commits locally) leaves the outcome unknown. A row found on a node whose INSERT was rejected is a
# phantom, so a code belongs here only if it proves the statement did not run.
REJECTED_ERRNOS: Dict[str, FrozenSet[int]] = {
    # 1290 ER_OPTION_PREVENTS_STATEMENT ("running with the --read-only option"), 1836 ER_READ_ONLY_MODE.
    "mariadb": frozenset({1290, 1836}),
    # MySQL refuses a write under read_only or super_read_only with 1290 alone, for the statement and at
    # COMMIT ("running with the --super-read-only option"). Not here: 1792
    # (ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION) comes only from a session's own transaction_read_only,
    # which no writer sets, and 1836 (ER_READ_ONLY_MODE) only from innodb_read_only. Either one would be
    # something else going on: counted unknown, and shown by code in the report's errors.
    "mysql": frozenset({1290}),
}


@dataclass(frozen=True)
class ChaosSQL:
    """What the run asks the servers that differs by flavor. Written here, not taken from
    mysqlpilot.flavors: the observer does not borrow the observed code's SQL (a wrong read-only query
    there would hide its own bug here)."""
    flavor: str
    read_only: str             # one value: 0 while the writers' account (root) can write
    position: str              # the primary's executed GTIDs (whitespace is not part of it)
    wait: str                  # %s = that position, %s = timeout in s; 0 once this server has executed it
    rejected: FrozenSet[int]   # error codes of a read-only refusal (the statement did not run)


def chaos_sql(flavor: str) -> ChaosSQL:
    if flavor == "mariadb":
        # Remote root lacks READ_ONLY ADMIN (10.11+; bootstrap revokes it): read_only binds the writers.
        return ChaosSQL(flavor, read_only="SELECT @@global.read_only", position="SELECT @@global.gtid_binlog_pos",
                        wait="SELECT MASTER_GTID_WAIT(%s, %s)", rejected=REJECTED_ERRNOS["mariadb"])
    if flavor == "mysql":
        # root has SUPER and CONNECTION_ADMIN: read_only alone lets it write, so the node is writable as long
        # as super_read_only is OFF (ON implies read_only ON; read_only OFF implies it OFF). This is what a
        # fence must set and what a ProxySQL-style router reads. WAIT_FOR_EXECUTED_GTID_SET: 0 reached, 1 not.
        return ChaosSQL(flavor, read_only="SELECT @@global.super_read_only",
                        position="SELECT @@global.gtid_executed", wait="SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s)",
                        rejected=REJECTED_ERRNOS["mysql"])
    raise ValueError(f"unknown flavor {flavor!r}; known: {', '.join(FLAVORS)}")

# Node log lines worth showing per fault.
LOG_MARKERS = re.compile(r"FENCED|PROMOTED|REBUILD|errant|acquired the leader lock|handed the leader lock|"
                         r"lease expired|fencing failed|restore attempt|snapshot .*published|decision")
LOG_NOISE = re.compile(r"until the errant-transaction check completes")     # repeated each pass while waiting
REBUILD_LINE = re.compile(r"REBUILD: ")                                       # one per rebuild decision (ha.py)
ERRANT_REBUILD = re.compile(r"REBUILD.*errant")
RESTORE_FAILED = re.compile(r"restore attempt \d+ failed")                     # datadir.py
SEEDED_BY_CLONE = re.compile(r"cloned \S+; the replica will start from GTID")  # datadir.py, seed_by_clone


def make_schedule(faults: Optional[int], seed: int, schedule: Optional[str] = None,
                  kinds: Optional[List[str]] = None, consul_servers: int = 1) -> List[str]:
    """A named schedule (truncated to `faults` if given), or `faults` faults drawn with `seed` from the
    whole catalogue (or from `kinds`); Consul's own faults are in it when Consul is several servers."""
    if schedule:
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
        s = list(SCHEDULES[schedule])
        return s[:faults] if faults else s
    if not faults or faults < 1:
        raise ValueError("give --faults N (N >= 1) or a --schedule")
    unknown = sorted(set(kinds or ()) - set(ALL_FAULTS))
    if unknown:
        raise ValueError(f"unknown fault kinds {', '.join(unknown)}; known: {', '.join(sorted(ALL_FAULTS))}")
    need = sorted(set(kinds or ()) & set(CONSUL_FAULTS))
    if need and consul_servers < 3:
        raise ValueError(f"fault kinds {', '.join(need)} need a Consul of several servers: add --consul-servers 3")
    rng = random.Random(seed)
    names = sorted(kinds or (ALL_FAULTS if consul_servers >= 3 else FAULTS))
    return [rng.choice(names) for _ in range(faults)]


@dataclass
class FaultSpec:
    """One fault of a plan, every random choice drawn from the seed up front, so that `--seed S --faults N`
    replays the same plan whatever the cluster did: the kind, which replica (by rank among the sorted
    replicas), the variant, and with --overlap when it starts inside the previous fault's hold."""
    index: int
    kind: str
    pick: float = 0.0                   # replica = sorted(replicas)[int(pick * len)]
    variant: str = ""                   # one of VARIANTS[kind]
    overlap_after: Optional[float] = None  # start this many s after the previous fault started (its hold runs)


def make_plan(faults: List[str], seed: int, overlap: bool = False, hold: float = 14.0) -> List[FaultSpec]:
    rng = random.Random(f"{seed}/plan")
    plan: List[FaultSpec] = []
    for k, kind in enumerate(faults, 1):
        spec = FaultSpec(index=k, kind=kind, pick=rng.random(), variant=rng.choice(VARIANTS[kind]) if kind in VARIANTS
                         else "")
        u = rng.random()
        # An overlapping pair: a fault that holds (freeze, partition), and the next one started at a seeded
        # point of its hold. Pairs do not chain: the fault after a pair waits for convergence first.
        if overlap and plan and plan[-1].kind in HOLDING and plan[-1].overlap_after is None:
            spec.overlap_after = round(1.0 + u * max(0.0, hold - 3.0), 2)
        plan.append(spec)
    return plan


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

    def ack_times(self) -> List[float]:
        with self.lock:
            return sorted(r[1] for r in self.rows.values() if r[0] == "acked")


def classify(exc: BaseException, rejected: FrozenSet[int] = REJECTED_ERRNOS["mariadb"]) -> Tuple[str, str]:
    """(outcome, error label) of a write that raised `exc`: rejected only for a refusal code of the flavor."""
    code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None
    err = f"{code}" if isinstance(code, int) else exc.__class__.__name__
    return ("rejected" if code in rejected else "unknown"), err


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
                 interval: float = 0.02, timeout: float = 1.0, rejected: FrozenSet[int] = REJECTED_ERRNOS["mariadb"],
                 io_timeout: Optional[float] = -1.0):
        super().__init__(daemon=True, name=f"chaos-writer-{idx}")
        self.idx, self.c, self.ledger, self.locator = idx, cluster, ledger, locator
        self.table, self.interval, self.timeout = table, interval, timeout
        self.io_timeout = io_timeout      # None: no read timeout (a client that waits as long as it takes)
        self.rejected = rejected
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
                    conn = self.c.connect(loc[1], loc[2], timeout=self.timeout, io_timeout=self.io_timeout)
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
                outcome, err = classify(exc, self.rejected)
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
    """Every `period` s reads whether each node takes the writers' writes (`query`: @@global.read_only on
    MariaDB, @@global.super_read_only on MySQL; chaos_sql) on every node at once (one thread per node, short
    timeouts) and records the nodes that answered OFF. A node under a full partition is read over its
    unix socket instead: a writable node nobody here can reach is still a second primary."""

    def __init__(self, cluster: Cluster, nodes: List[Tuple[str, str, int]], period: float = 0.075,
                 timeout: float = 0.3, query: str = "SELECT @@global.read_only"):
        super().__init__(daemon=True, name="chaos-sampler")
        self.c, self.nodes, self.period, self.timeout = cluster, nodes, period, timeout
        self.query = query
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
                cur.execute(self.query)
                return bool(int(cur.fetchone()[0]))
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
    lost: int = 0                      # acked in this fault's window and missing at the end
    # freeze/partition of the primary: did another node lead before it came back? Only then does the
    # fault test what happens to an old primary that returns after a failover.
    taken_over: Optional[bool] = None
    thawed: Optional[str] = None       # the node a freeze fault resumed (SIGCONT at restore_at)
    history: List[str] = field(default_factory=list)
    log: List[str] = field(default_factory=list)
    variant: str = ""
    overlaps: Optional[int] = None     # index of the fault whose hold this one started in
    unavailable: Optional[float] = None  # longest gap between acknowledged writes around the fault (s)
    lost_seen: int = 0                 # acked ids found missing on the primary by the check after this fault
    lost_oldest_age: Optional[float] = None  # s from the oldest of those acks to the fault's start
    rebuilds: int = 0                  # REBUILD decisions logged during the fault and its convergence
    violations: List[str] = field(default_factory=list)


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
    not_run: List[str] = field(default_factory=list)      # faults left out (time budget, or a violation)
    # Two writable nodes, one of them a frozen node in the first THAW_WINDOW s after its SIGCONT: mysqld
    # and its fence watchdog wake together, and mysqld answers a client queued during the freeze before
    # the watchdog's first statement lands (docs/timing.md, "What remains"). Counted apart, bounded.
    thaw_window: List[Tuple[float, Tuple[str, ...]]] = field(default_factory=list)
    # Every check that did not hold: {"fault": index or None (end), "kind", "check", "detail"}.
    violations: List[Dict] = field(default_factory=list)
    checksums: Dict[str, str] = field(default_factory=dict)
    leftovers: List[str] = field(default_factory=list)
    stopped_early: bool = False         # stopped at the first violation

    @property
    def phantom_count(self) -> int:
        return sum(len(v) for v in self.phantom.values())

    @property
    def ok(self) -> bool:
        return (self.final_primary is not None and not self.violations and not self.not_run
                and not self.double_writable and not self.phantom_count and not self.convergence_failures
                and (not self.lost or self.config.get("durability") == "async"))

    @property
    def converged(self) -> int:
        return sum(1 for e in self.events if e.converged_after is not None)

    def verdict_line(self) -> str:
        c = self.config
        n = len(c.get("faults") or [])
        replay = c.get("replay") or ""
        if self.ok:
            return (f"VERDICT PASS: seed {c.get('seed')}, {len(self.events)} of {n} faults, {self.converged} converged, "
                    f"{len(self.lost)} of {self.acked} acknowledged writes lost, {len(self.double_writable)} of "
                    f"{self.samples} samples with two writable nodes" + self._on())
        v = self.violations[0] if self.violations else {"fault": None, "kind": "", "check": "incomplete",
                                                        "detail": f"not run: {', '.join(self.not_run[:5])}"}
        where = (f"fault {v['fault']} of {n} ({v['kind']}{' on ' + v['target'] if v.get('target') else ''})"
                 if v.get("fault") else "at the end")
        more = f" (+{len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        return (f"VERDICT FAIL: seed {c.get('seed')}, {where}: {v['check']}: {v['detail'][:300]}{more}; "
                f"replay: {replay}; cluster dir kept: {c.get('dir')}")

    def _on(self) -> str:
        """", on mysql 9.7.4" for a run on another flavor than MariaDB (the default), else ""."""
        f = self.config.get("flavor") or "mariadb"
        v = self.config.get("flavor_version")
        return "" if f == "mariadb" else f", on {f}" + (f" {v}" if v else "")

    def per_kind(self) -> Dict[str, Dict]:
        out: Dict[str, Dict] = {}
        for kind in sorted({e.fault for e in self.events}):
            evs = [e for e in self.events if e.fault == kind]
            conv = [e.converged_after for e in evs if e.converged_after is not None]
            un = [e.unavailable for e in evs if e.unavailable is not None]
            out[kind] = {"count": len(evs), "converged": len(conv),
                         "convergence": _stats(conv), "unavailable": _stats(un),
                         "lost": sum(e.lost_seen for e in evs), "double_writable": sum(e.double_writable for e in evs),
                         "rebuilds": sum(e.rebuilds for e in evs)}
        return out

    def failovers(self) -> List[FaultEvent]:
        """The faults after which another node was primary, not by a planned hand-over."""
        return [e for e in self.events if e.fault not in PLANNED and e.primary_before
                and e.primary_after and e.primary_before != e.primary_after]

    def failover_losses(self) -> Dict:
        """Async mode's figure: acknowledged writes lost per unplanned failover, beside the bound."""
        fo = self.failovers()
        lost = [e.lost_seen for e in fo]
        ages = [e.lost_oldest_age for e in fo if e.lost_oldest_age is not None]
        return {"failovers": len(fo), "lost": sum(lost), "per_failover": _stats([float(x) for x in lost]),
                "oldest_lost_age_max": max(ages) if ages else None, "bound_s": ASYNC_LOSS_BOUND,
                "by_kind": {k: {"failovers": sum(1 for e in fo if e.fault == k),
                                "lost": sum(e.lost_seen for e in fo if e.fault == k)}
                            for k in sorted({e.fault for e in fo})}}

    def render_failover_losses(self) -> str:
        d = self.failover_losses()
        p = d["per_failover"]
        age = d["oldest_lost_age_max"]
        rows = [("unplanned failovers", "lost writes", "per failover p50", "p95", "max",
                 "oldest lost write before the fault", "bound (max_lag_on_failover)"),
                (str(d["failovers"]), str(d["lost"]), *("-" if p[k] is None else f"{p[k]:.0f}"
                                                        for k in ("p50", "p95", "max")),
                 "-" if age is None else f"{age:.2f}s", f"{d['bound_s']:.0f}s")]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)

    def render_table(self) -> str:
        cols = ("fault kind", "n", "conv p50", "p95", "max", "unavail p50", "p95", "max", "lost", "2-writable",
                "rebuilds")
        rows = [cols]

        def f(x: Optional[float]) -> str:
            return "-" if x is None else f"{x:.1f}s"
        for kind, d in self.per_kind().items():
            c, u = d["convergence"], d["unavailable"]
            n = f"{d['count']}" + ("" if d["converged"] == d["count"] else f" ({d['count'] - d['converged']} NOT conv.)")
            rows.append((kind, n, f(c["p50"]), f(c["p95"]), f(c["max"]), f(u["p50"]), f(u["p95"]), f(u["max"]),
                         str(d["lost"]), str(d["double_writable"]), str(d["rebuilds"])))
        widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
        return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)

    def to_json(self) -> Dict:
        d = asdict(self)
        d["faults"] = len(self.events)
        d["faults_planned"] = len(self.config.get("faults") or [])
        d["converged"] = self.converged
        d["seed"] = self.config.get("seed")
        d["lost"] = len(self.lost)
        d["lost_ids"] = sorted(self.lost)
        d["lost_count"] = len(self.lost)
        d["phantom_count"] = self.phantom_count
        d["double_writable_count"] = len(self.double_writable)
        d["double_writable_samples"] = len(self.double_writable)
        d["thaw_window_samples"] = len(self.thaw_window)
        d["per_kind"] = self.per_kind()
        d["failover_losses"] = self.failover_losses()
        d["verdict"] = self.verdict_line()
        d["ok"] = self.ok
        return d

    def render_events(self) -> str:
        cols = ("#", "fault", "target", "primary", "converged", "unavail", "acked", "unknown", "rejected", "lost",
                "2-writable", "note")
        rows = [cols]
        for e in self.events:
            conv = f"{e.converged_after:.1f}s" if e.converged_after is not None else (
                "-" if e.note.startswith("skipped") else "NO")
            rows.append((str(e.index) + (f"~{e.overlaps}" if e.overlaps else ""), e.fault + (
                f" ({e.variant})" if e.variant else ""), e.target or "-",
                f"{e.primary_before or '-'}->{e.primary_after or '-'}", conv,
                "-" if e.unavailable is None else f"{e.unavailable:.1f}s", str(e.acked),
                str(e.unknown), str(e.rejected), str(max(e.lost, e.lost_seen)), str(e.double_writable), e.note))
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
        lines = [f"chaos: schedule {c.get('schedule') or 'random'}{' with overlaps' if c.get('overlap') else ''}, "
                 f"seed {c['seed']}, {len(self.events)} faults, {c['durability']}, "
                 f"{c.get('flavor') or 'mariadb'}{' ' + str(c['flavor_version']) if c.get('flavor_version') else ''}, "
                 f"{c['nodes']} nodes, "
                 f"{c['writers']} writers, hold {c['hold']}s, {self.seconds:.0f}s in all",
                 self.render_events(), "", "per fault kind (convergence from the fault's start; write "
                 "unavailability: longest gap between acknowledged writes around it):", self.render_table(), ""]
        if c.get("durability") == "async":
            lines += ["async: acknowledged writes lost per unplanned failover (planned hand-overs must lose none):",
                      self.render_failover_losses(), ""]
        lines += [f"{'verdict':<42} {'PASS' if self.ok else 'FAIL'}",
                 f"{'faults run / converged':<42} {len(self.events)} / {self.converged}",
                 f"{'acknowledged writes':<42} {self.acked}",
                 f"{'outcome unknown (committed / not)':<42} {self.unknown} ({self.unknown_committed} / "
                 f"{self.unknown - self.unknown_committed})",
                 f"{'rejected (read-only)':<42} {self.rejected}",
                 f"{'LOST: acked, missing on final primary':<42} {len(self.lost)}"
                 + (f" (final primary {self.final_primary})" if self.final_primary else " (NO final primary)")
                 + (" (async: within its bound unless a violation says otherwise)"
                    if self.lost and c.get("durability") == "async" else ""),
                 f"{'phantom: on a node, never sent or refused':<42} {self.phantom_count}",
                 f"{'samples with two writable nodes':<42} {dw} of {self.samples}",
                 f"{THAW_LABEL:<42} {len(self.thaw_window)}",
                 f"{'convergence failures':<42} {len(self.convergence_failures)}",
                 f"{'replica checksums equal to the primary':<42} "
                 + (("yes" if len(set(self.checksums.values())) == 1 else "NO") if self.checksums else "not compared"),
                 f"{'left running after the tool stopped':<42} " + ("; ".join(self.leftovers) or "nothing")]
        if self.not_run:
            lines.append(f"{'NOT RUN':<42} {len(self.not_run)}: {', '.join(self.not_run[:20])}")
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
        for v in self.violations:
            lines.append(f"VIOLATION {'#' + str(v['fault']) + ' ' + v['kind'] if v.get('fault') else 'end'}: "
                         f"{v['check']}: {v['detail'][:400]}")
        for name, n in sorted(self.nodes.items()):
            lines.append(f"node {name}: " + ", ".join(f"{k} {v}" for k, v in n.items()))
        for name, m in sorted(self.markers.items()):
            lines.append(f"log markers {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(m.items())))
        lines.append(self.verdict_line())
        return "\n".join(lines)


def _stats(xs: List[float]) -> Dict[str, Optional[float]]:
    if not xs:
        return {"p50": None, "p95": None, "max": None}
    s = sorted(xs)

    def pct(p: float) -> float:          # nearest rank
        return s[max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))]
    return {"p50": round(pct(50), 2), "p95": round(pct(95), 2), "max": round(s[-1], 2)}


def longest_gap(acks: List[float], t0: float, t1: float) -> Optional[float]:
    """The longest time without an acknowledged write in [t0, t1], counting from the last ack before t0
    and up to the first ack after t1 (the gap a fault opened is measured whole)."""
    import bisect
    if not acks:
        return None
    i = bisect.bisect_left(acks, t0)
    j = bisect.bisect_right(acks, t1)
    pts = ([acks[i - 1]] if i > 0 else [t0]) + acks[i:j] + ([acks[j]] if j < len(acks) else [t1])
    return round(max((b - a for a, b in zip(pts, pts[1:])), default=0.0), 3)


class ChaosRun:
    """Load, sampler and faults on a running cluster. start(), inject() each fault (or run_plan()),
    verdict(), and always cleanup()."""

    def __init__(self, cluster: Cluster, nodes: int, seed: int, hold: float = 14.0, writers: int = 4,
                 converge_timeout: float = 120.0, write_interval: float = 0.02,
                 echo: Callable[[str], None] = print, table: str = "chaos.ledger", durability: str = "semi-sync",
                 stop_on_violation: bool = False, writer_timeout: Optional[float] = 1.0):
        self.c, self.n, self.hold, self.writers_n = cluster, nodes, hold, writers
        self.writer_timeout = writer_timeout
        self.sql = chaos_sql(getattr(cluster, "flavor", "mariadb"))
        self.converge_timeout, self.write_interval = converge_timeout, write_interval
        self.echo, self.table = echo, table
        self.side_table = table.split(".")[0] + ".side"
        self.durability, self.stop_on_violation = durability, stop_on_violation
        self.seed = seed
        self.rng = random.Random(f"{seed}/targets")      # which replica a replica fault hits (inject())
        self.ledger = Ledger()
        self.locator = PrimaryLocator(cluster)
        self.writers: List[Writer] = []
        self.sampler: Optional[ReadOnlySampler] = None
        self.events: List[FaultEvent] = []
        self.ev_lock = threading.Lock()
        self.paused: Set[str] = set()
        self.partitioned: Set[str] = set()
        self.store_down_n = 0
        self.store_lock = threading.Lock()
        self.log_offsets: Dict[str, int] = {}
        self.t_start = time.time()
        self.deadline: Optional[float] = None          # time.monotonic() after which waits are cut short
        self.total = 0                                 # faults planned (progress)
        self.violations: List[Dict] = []
        self.known_lost: Set[int] = set()
        self.dw_reported = 0.0                         # two-writable samples before this time were checked
        self.asides_seen: Set[str] = set()

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

    def _log_files(self, all_logs: bool = False) -> List[Tuple[str, str]]:
        return nodelogs.log_files(self.c.dir, all_logs)

    def _log_marks(self) -> Dict[str, int]:
        return nodelogs.marks(self.c.dir)

    def _mark_logs(self) -> None:
        self.log_offsets = self._log_marks()

    def _new_log_lines(self, marks: Optional[Dict[str, int]] = None) -> List[str]:
        marks = self.log_offsets if marks is None else marks
        out = []
        for node, path, text in nodelogs.read_since(self.c.dir, marks):
            for line in text.splitlines():
                if LOG_MARKERS.search(line) and not LOG_NOISE.search(line):
                    out.append(f"{node}/{os.path.basename(path)[:-4]}: {line.strip()[:240]}")
        # Lines start with an ISO time: sort across nodes.
        return sorted(out, key=lambda s: s.split(": ", 1)[1][:23])

    def _grep_since(self, node: str, pattern: str, marks: Dict[str, int]) -> bool:
        for n, path in self._log_files(all_logs=True):
            if n != node:
                continue
            try:
                with open(path, "rb") as fh:
                    fh.seek(marks.get(path, 0))
                    if re.search(pattern, fh.read().decode(errors="replace")):
                        return True
            except OSError:
                pass
        return False

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
        self.c.sql(p["host"], p["port"], f"CREATE TABLE IF NOT EXISTS {self.side_table} (id BIGINT "
                                         "AUTO_INCREMENT PRIMARY KEY, what VARCHAR(64), at DOUBLE) ENGINE=InnoDB")
        self.sampler = ReadOnlySampler(self.c, self.c.addresses(), query=self.sql.read_only)
        self.sampler.start()
        for i in range(self.writers_n):
            w = Writer(i, self.c, self.ledger, self.locator, self.table, interval=self.write_interval,
                       rejected=self.sql.rejected,
                       io_timeout=self.writer_timeout if self.writer_timeout is None else -1.0)
            self.writers.append(w)
            w.start()
        deadline = time.monotonic() + 30
        while self.ledger.count("acked") < 20 * self.writers_n:
            if time.monotonic() > deadline:
                raise AssertionError(f"write load never got going: {self.ledger.errors}")
            time.sleep(0.1)
        self.t_start = time.time()
        self.asides_seen = set(self.asides())
        self.echo(f"load running: {self.writers_n} writers on {st['primary']}, sampler on "
                  f"{len(self.c.addresses())} nodes")

    def stop_load(self) -> None:
        for w in self.writers:
            w.stop()
        for w in self.writers:
            w.join(10)
        if self.sampler is not None and self.sampler.is_alive():
            self.sampler.stop()

    # ---- faults ------------------------------------------------------------------------------
    def inject(self, fault: str) -> FaultEvent:
        """One fault, then the wait for convergence (the issue-13 way: the replica drawn as it goes)."""
        spec = FaultSpec(index=len(self.events) + 1, kind=fault, pick=self.rng.random())
        ev = self._begin(spec)
        self._act(ev, spec)
        self._settle([ev])
        return ev

    def run_plan(self, plan: List[FaultSpec], time_budget: Optional[float] = None) -> List[str]:
        """Every fault of the plan (overlapping pairs run together), the checks after each; stops at the
        first violation when stop_on_violation. Returns the faults not run."""
        self.total = len(plan)
        k = 0
        while k < len(plan):
            if self.deadline is not None and time.monotonic() >= self.deadline:
                self.echo(f"time budget of {time_budget:.0f}s spent: {len(plan) - k} faults not run")
                return [f"#{s.index} {s.kind}" for s in plan[k:]]
            group = [plan[k]]
            if k + 1 < len(plan) and plan[k + 1].overlap_after is not None:
                group.append(plan[k + 1])
            k += len(group)
            if len(group) == 1:
                evs = [self._begin(group[0])]
                self._act(evs[0], group[0])
            else:
                evs = self._run_pair(group[0], group[1])
            self._settle(evs)
            if self.violations and self.stop_on_violation:
                rest = [f"#{s.index} {s.kind}" for s in plan[k:]]
                if rest:
                    self.echo(f"stopping at the first violation: {len(rest)} faults not run")
                return rest
        return []

    def _run_pair(self, first: FaultSpec, second: FaultSpec) -> List[FaultEvent]:
        ev1 = self._begin(first)
        t = threading.Thread(target=self._act, args=(ev1, first), name=f"chaos-fault-{first.index}", daemon=True)
        t.start()
        time.sleep(second.overlap_after or 0.0)
        ev2 = self._begin(second)
        ev2.overlaps = first.index
        self._act(ev2, second)
        t.join()
        return [ev1, ev2]

    def _begin(self, spec: FaultSpec) -> FaultEvent:
        fault = spec.kind
        if fault not in ALL_FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(ALL_FAULTS))}")
        ev = FaultEvent(index=spec.index, fault=fault, variant=spec.variant)
        with self.ev_lock:
            self.events.append(ev)
        st = self.st()
        primary = st["primary"] if st else None
        on_replica = fault.endswith("replica") or fault == "store-down-restore"
        on_consul = fault == "restart-consul" or fault in CONSUL_FAULTS
        if primary is None and not on_replica and not on_consul:
            # No primary now (typically the second fault of a pair, inside a freeze or partition of the
            # primary): strike the next one, once elected, rather than nothing.
            st = self.wait(lambda s: s["primary"] is not None, max(5.0, min(self.hold, self.bound()))) or st
            primary = st["primary"] if st else None
        ev.primary_before = primary
        replicas = sorted(n["name"] for n in (st or {}).get("nodes", []) if n["name"] != primary
                          and n["role"] != "down") or sorted(n for n, _, _ in self.c.addresses() if n != primary)
        if on_consul:
            ev.target = "consul"
        elif on_replica:
            ev.target = replicas[int(spec.pick * len(replicas))] if replicas else None
        else:
            ev.target = primary
        ev.log_marks = self._log_marks()          # type: ignore[attr-defined]
        ev.start = time.time()
        self.echo(f"[{ev.start - self.t_start:7.1f}s] fault {ev.index} of {self.total or '?'}: {fault}"
                  + (f" ({spec.variant})" if spec.variant else "") + f" on {ev.target or '-'} "
                  f"(primary {primary or 'NONE'})" + (f", inside #{spec.index - 1}'s hold" if spec.overlap_after
                                                       is not None else ""))
        return ev

    def _act(self, ev: FaultEvent, spec: FaultSpec) -> None:
        try:
            if ev.target is None:
                ev.note = "skipped: no replica" if ev.fault.endswith("replica") else "skipped: no primary"
            else:
                ev.note = self._do(ev, spec)
        except Exception as exc:  # noqa: BLE001 - a fault that could not be carried out says so
            ev.note = f"fault error: {exc.__class__.__name__}: {str(exc)[:200]}"
        finally:
            self._undo(ev)
            ev.fault_done = time.time()

    def _settle(self, evs: List[FaultEvent]) -> None:
        """Wait for convergence after the fault(s), then run every check."""
        done = max(e.fault_done for e in evs)
        bound = self.bound()
        got = self.wait(lambda s: self.settled(s, done), bound)
        now = time.time()
        st = got or self.st()
        for ev in evs:
            if got is not None:
                ev.converged_after = now - ev.start
            ev.primary_after = st["primary"] if st else None
            if st:
                # By time, not by index: Consul keeps the last 50 records only.
                ev.history = [f"{h.get('kind')}: {h.get('old_primary') or '-'} -> {h.get('new_primary') or '-'} "
                              f"({h.get('reason')})" for h in st["history"] if float(h.get("time") or 0) >= ev.start]
            ev.log = self._new_log_lines(getattr(ev, "log_marks", {}))
            ev.rebuilds = sum(1 for line in ev.log if REBUILD_LINE.search(line))
            conv = f"converged after {ev.converged_after:.1f}s" if got is not None else \
                f"NOT converged within {bound:.0f}s"
            self.echo(f"          #{ev.index} {conv}; primary {ev.primary_after or 'NONE'}"
                      + (f"; {ev.note}" if ev.note else ""))
        # A pair's second fault sees a tail of the first one's log window: count each rebuild once.
        for a, b in zip(evs, evs[1:]):
            a.rebuilds = max(0, a.rebuilds - b.rebuilds)
        self.check(evs, st if got is not None else None)

    # ---- checks after every fault ---------------------------------------------------------------
    def violate(self, ev: Optional[FaultEvent], check: str, detail: str) -> None:
        v = {"fault": ev.index if ev else None, "kind": ev.fault if ev else "", "target": ev.target if ev else None,
             "check": check, "detail": detail, "at": time.time()}
        self.violations.append(v)
        if ev is not None:
            ev.violations.append(f"{check}: {detail}")
        self.echo(f"          VIOLATION {check}" + (f" after #{ev.index} {ev.fault}" if ev else "") + f": {detail[:300]}")

    def thaws(self) -> List[Tuple[float, str]]:
        return [(e.restore_at, e.thawed) for e in self.events if e.thawed and e.restore_at]

    def in_thaw_window(self, t: float, w: Tuple[str, ...]) -> bool:
        # A sample stamped up to probe timeout + 0.1 s before the SIGCONT may be answered after it.
        lead = self.sampler.timeout + 0.1 if self.sampler else 0.0
        return any(node in w and at - lead <= t <= at + THAW_WINDOW for at, node in self.thaws())

    def check(self, evs: List[FaultEvent], st: Optional[Dict]) -> None:
        ev = evs[-1]          # where a violation seen after an overlapping pair is filed
        for e in evs:
            if e.converged_after is None and not e.note.startswith("skipped"):
                self.violate(e, "convergence", f"no single primary with every other node replicating (or "
                                               f"rebuilding) within {self.bound():.0f}s of the fault's end")
        t_check = time.time()
        # Never two writable nodes (thaw-window samples are reported apart, at the end).
        if self.sampler is not None:
            dw = [(t, w) for t, w in self.sampler.double(self.dw_reported, t_check) if not self.in_thaw_window(t, w)]
            self.dw_reported = t_check
            for e in evs:
                nxt = [x.start for x in self.events if x.start > e.start]
                e.double_writable = len([1 for t, _ in dw if e.start <= t < (min(nxt) if nxt else t_check)])
            if dw:
                self.violate(ev, "double-writable", f"{len(dw)} samples with two writable nodes, first at "
                             f"{dw[0][0]:.3f} ({'+'.join(dw[0][1])})")
        # No acknowledged id missing on the primary.
        if st is not None and st.get("primary"):
            acked = self.ledger.ids("acked")
            have = self.primary_ids(st)
            if have is None:
                # The role can move between the convergence sample and this read (a killed watch's session
                # lapsed while it restarted): read the primary of a new convergence, not a dead one's.
                since = time.time()
                again = self.wait(lambda s: self.settled(s, since), self.bound())
                if again is not None and again.get("primary"):
                    self.echo(f"          the primary {st['primary']} did not answer; reading "
                              f"{again['primary']}, the primary of a new convergence")
                    st = again
                    have = self.primary_ids(st)
            if have is None:
                self.violate(ev, "lost", f"the primary {st['primary']}'s ledger is unreadable")
            else:
                missing = acked - have - self.known_lost
                if missing:
                    self.known_lost |= missing
                    for e in evs:
                        e.lost_seen = len(missing) if e is ev else 0
                    t0 = min(e.start for e in evs)
                    ages = [t0 - self.ledger.rows[i][1] for i in missing]
                    ev.lost_oldest_age = round(max(ages), 3)
                    if self.durability == "semi-sync":
                        self.violate(ev, "lost", f"{len(missing)} acknowledged ids missing on the primary "
                                     f"{st['primary']}, e.g. {sorted(missing)[:8]}")
                    else:
                        problem = async_loss_problem(
                            [(e.fault, e.primary_before is not None and e.primary_before != st["primary"])
                             for e in evs], ages)
                        if problem:
                            self.violate(ev, "lost", f"async: {len(missing)} acknowledged ids missing on the "
                                         f"primary {st['primary']}: {problem}, e.g. {sorted(missing)[:8]}")
                        else:
                            self.echo(f"          async: {len(missing)} acknowledged writes lost at this failover, "
                                      f"the oldest acknowledged {max(ages):.2f}s before it (bound "
                                      f"{ASYNC_LOSS_BOUND:.0f}s)")
        # No moved-aside datadir except on a node that reported an errant transaction.
        for path in sorted(set(self.asides()) - self.asides_seen):
            self.asides_seen.add(path)
            node = path.split(os.sep)[-2]
            if not self._grep_since(node, ERRANT_REBUILD.pattern, {}):
                self.violate(ev, "moved-aside", f"{path}: a datadir moved aside, and {node}'s logs report no "
                             "errant transaction")
        # The store is back: latest must name a snapshot that exists in it.
        if any(e.fault.startswith("store-down") for e in evs):
            why = self.latest_snapshot_problem()
            if why:
                self.violate(ev, "snapshot-latest", why)
        # Write unavailability around each fault (a quick figure now; final figures in the verdict).
        acks = self.ledger.ack_times()
        for e in evs:
            e.unavailable = longest_gap(acks, e.start, t_check)

    def asides(self) -> List[str]:
        base = os.path.join(self.c.dir, "nodes")
        out = []
        for node in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            for f in os.listdir(os.path.join(base, node)):
                if f.startswith("data.aside-"):
                    out.append(os.path.join(base, node, f))
        return out

    def primary_ids(self, st: Dict) -> Optional[Set[int]]:
        pn = self.c.node(st, st["primary"])
        try:
            conn = self.c.connect(pn["host"], pn["port"], timeout=30)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT id FROM {self.table}")
                    return {int(r[0]) for r in cur.fetchall()}
            finally:
                conn.close()
        except Exception:  # noqa: BLE001
            return None

    def latest_snapshot_problem(self) -> str:
        s = self.c.settings
        if s.get("store", "local") != "local":
            return ""
        try:
            from mysqlpilot import config as config_mod
            from mysqlpilot.dcs.consul import ConsulDCS
            latest = ConsulDCS.from_config(config_mod.load(self.c.config_path, env={})).get_latest_snapshot()
        except Exception as exc:  # noqa: BLE001
            return f"latest snapshot unreadable: {exc}"
        if not latest:
            return ""
        key = latest.object_key
        path = os.path.join(s["store_path"], key)
        if not key or not os.path.isfile(path):
            return f"snapshots/latest names {latest.id}, whose object {path} is not in the store"
        return ""

    # ---- the faults ------------------------------------------------------------------------------
    def _hold(self, ev: FaultEvent, primary: Optional[str], notes: List[str]) -> None:
        time.sleep(self.hold)
        if ev.target == primary:
            st = self.st()
            other = st["primary"] if st and st["primary"] not in (None, ev.target) else None
            ev.taken_over = other is not None
            notes.append(f"{other} led before the thaw/heal" if other else "nobody else led before the thaw/heal")

    def _wait_other_primary(self, target: str, notes: List[str]) -> None:
        t0 = time.time()
        bound = self.bound()
        if self.wait(lambda s: s["primary"] not in (None, target), bound) is None:
            notes.append(f"no other primary within {bound:.0f}s")
        else:
            notes.append(f"new primary after {time.time() - t0:.1f}s")

    def _do(self, ev: FaultEvent, spec: FaultSpec) -> str:
        c, notes, fault, target, primary = self.c, [], ev.fault, ev.target, ev.primary_before
        if fault in ("kill-primary", "term-primary"):
            notes.append(self.local("kill", target, "--signal", "KILL" if fault == "kill-primary" else "TERM"))
            if fault == "kill-primary":
                # Restart only once someone else leads, so the failover itself is what gets tested.
                self._wait_other_primary(target, notes)
            ev.restore_at = time.time()
            notes.append(self.local("start", target))
        elif fault == "kill-replica":
            notes.append(self.local("kill", target, "--signal", "KILL"))
            time.sleep(1.0)
            ev.restore_at = time.time()
            notes.append(self.local("start", target))
        elif fault == "crash-mysqld":
            try:
                c.kill_mysqld(target)
            except (AssertionError, OSError, ValueError) as exc:
                notes.append(f"crash-mysqld failed: {exc}")
        elif fault in ("freeze-primary", "freeze-replica"):
            self.paused.add(target)
            notes.append(self.local("pause", target))
            self._hold(ev, primary, notes)
            self.paused.discard(target)
            try:
                ev.restore_at = c.signal_group(target, signal.SIGCONT)
            except ProcessLookupError:
                ev.restore_at = time.time()
                notes.append(f"{target} was gone at the thaw")
            ev.thawed = target
            notes.append(f"{target} resumed (SIGCONT)")
        elif fault in ("partition-primary", "partition-full", "partition-replicas"):
            mode = {"partition-full": ("--full",), "partition-replicas": ("--replicas-only",)}.get(fault, ())
            self.partitioned.add(target)
            if fault == "partition-full" and self.sampler is not None:
                self.sampler.via_socket.add(target)
            notes.append(self.local("partition", target, *mode))
            self._hold(ev, primary, notes)
            self.partitioned.discard(target)
            ev.restore_at = time.time()
            notes.append(self.local("heal", target))
            if self.sampler is not None:
                self.sampler.via_socket.discard(target)
        elif fault == "switchover":
            notes.append(self._switchover())
        elif fault == "switchover-under-lock":
            notes.append(self._switchover_under_lock(ev, spec))
        elif fault == "manual-failover":
            p = c.cli("failover", "--force", config=True, check=False, timeout=120)
            out = (p.stdout + p.stderr).strip().splitlines()
            notes.append(("" if p.returncode == 0 else "failover failed: ") + (out[-1][:160] if out else ""))
        elif fault == "kill-watch":
            pids = c.kill_job(target, "watch")
            notes.append(f"killed watch pid {','.join(map(str, pids))}" if pids else "no watch process found")
        elif fault == "restart-consul":
            # SIGTERM (a server does not leave), the same ports and data, back once it leads again.
            p = c.cli("local", "consul-restart", "--dir", c.dir, check=False, timeout=240)
            ev.restore_at = time.time()
            out = [x for x in (p.stdout + p.stderr).strip().splitlines() if x.strip()]
            notes.append(("" if p.returncode == 0 else "consul-restart failed: ") + (out[-1][-160:] if out else ""))
        elif fault in CONSUL_FAULTS:
            notes.append(self._consul_fault(ev, spec))
        elif fault == "replica-mysqld-restart-then-kill-primary":
            notes.append(self._replica_restart_then_kill_primary(ev, spec))
        elif fault == "store-down-snapshot":
            notes.append(self._store_down_snapshot(ev, spec))
        elif fault == "store-down-restore":
            notes.append(self._store_down_restore(ev, target))
        return "; ".join(n for n in notes if n)

    def _consul_fault(self, ev: FaultEvent, spec: FaultSpec) -> str:
        """Consul's own faults: the database nodes are not touched (the failsafe rides them out when on)."""
        from mysqlpilot.local import consul_cluster as cc
        if ev.fault == "consul-kill-leader":
            d = cc.kill_leader(self.c.dir)
            time.sleep(5.0)
            ev.restore_at = time.time()
            cc.restart_server(d)
            return f"killed the leader {os.path.basename(d)}, restarted it"
        if ev.fault == "consul-rolling-restart":
            cc.rolling_restart(self.c.dir, pause=2.0)
            ev.restore_at = time.time()
            return "every server restarted in turn"
        seconds = self.hold if spec.variant == "hold" else float(spec.variant.rstrip("s"))
        cc.freeze(self.c.dir, seconds)
        ev.restore_at = time.time()
        return f"every server frozen {seconds:g}s"

    def _switchover(self) -> str:
        p = self.c.cli("switchover", config=True, check=False, timeout=120)
        out = (p.stdout + p.stderr).strip().splitlines()
        return ("" if p.returncode == 0 else "switchover failed: ") + (out[-1][:160] if out else "")

    def _switchover_under_lock(self, ev: FaultEvent, spec: FaultSpec) -> str:
        """A client on the primary holds LOCK TABLES side WRITE (variant lock-tables), or an open
        transaction with one ledger row in it (long-trx), through `mysqlpilot switchover`; the
        transaction is committed afterwards and its outcome goes in the ledger like any write."""
        st = self.st()
        pn = next((n for n in (st or {}).get("nodes", []) if n["name"] == ev.target), None)
        if pn is None:
            return f"no status for {ev.target}: skipped"
        conn = pymysql.connect(host=pn["host"], port=int(pn["port"]), user="root",
                               password=self.c.settings["root_password"], connect_timeout=5, read_timeout=120,
                               write_timeout=120, autocommit=True)
        notes = []
        i = None
        try:
            with conn.cursor() as cur:
                if spec.variant == "lock-tables":
                    cur.execute(f"LOCK TABLES {self.side_table} WRITE")
                    cur.execute(f"INSERT INTO {self.side_table} (what, at) VALUES ('under lock', %s)", (time.time(),))
                    notes.append(f"LOCK TABLES {self.side_table} WRITE held")
                else:
                    cur.execute("BEGIN")
                    i = self.ledger.allocate()
                    cur.execute(f"INSERT INTO {self.table} (id, writer, node, at) VALUES (%s, %s, %s, %s)",
                                (i, -1, ev.target, time.time()))
                    notes.append(f"transaction with id {i} open")
        except Exception as exc:  # noqa: BLE001
            if i is not None:
                outcome, err = classify(exc, self.sql.rejected)
                self.ledger.record(i, outcome, ev.target or "", err)
            conn.close()
            return f"could not take the lock: {exc}"
        try:
            notes.append(self._switchover())
        finally:
            try:
                with conn.cursor() as cur:
                    if spec.variant == "lock-tables":
                        cur.execute("UNLOCK TABLES")
                        notes.append("unlocked")
                    else:
                        cur.execute("COMMIT")
                        self.ledger.record(i, "acked", ev.target or "")
                        notes.append(f"COMMIT of id {i} acknowledged after the switchover")
            except Exception as exc:  # noqa: BLE001
                if i is not None:
                    outcome, err = classify(exc, self.sql.rejected)
                    self.ledger.record(i, outcome, ev.target or "", err)
                    notes.append(f"COMMIT of id {i}: {outcome} ({err})")
                else:
                    notes.append(f"the lock's connection ended: {exc.__class__.__name__}")
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        return "; ".join(n for n in notes if n)

    def _replica_restart_then_kill_primary(self, ev: FaultEvent, spec: FaultSpec) -> str:
        st = self.st() or {"nodes": [], "primary": None}
        primary = ev.target
        reps = sorted(n["name"] for n in st["nodes"] if n["name"] != primary and n["role"] != "down")
        if not reps:
            return "skipped: no replica"
        r = reps[int(spec.pick * len(reps))]        # drawn like the other replica faults' targets
        notes = []
        old = self.c.kill_mysqld(r)
        rn = self.c.node(st, r)
        t0 = time.time()
        answered = False
        while time.time() - t0 < 90:
            try:
                pid = self._mysqld_pid(r)
                if pid and pid != old:
                    self.c.sql(rn["host"], rn["port"], "SELECT 1")
                    answered = True
                    break
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.1)
        notes.append(f"{r}'s mysqld killed and " + (f"answering again after {time.time() - t0:.1f}s"
                                                    if answered else "NOT answering within 90s"))
        notes.append(self.local("kill", primary, "--signal", "KILL"))
        self._wait_other_primary(primary, notes)
        ev.restore_at = time.time()
        notes.append(self.local("start", primary))
        return "; ".join(n for n in notes if n)

    def _mysqld_pid(self, node: str) -> Optional[int]:
        """From the node's pid file (mysqlpilot.mysqld.pid_file). Under scripts/mysqld-sid (MySQL) too: it
        execs its way to mysqld in a mount namespace only, so the file names mysqld's own host pid."""
        try:
            with open(os.path.join(self.c.dir, "nodes", node, "state", "mysqld.pid")) as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            return None

    def _store_down_snapshot(self, ev: FaultEvent, spec: FaultSpec) -> str:
        """`snapshot --force` on the primary with the store down from the start (variant before), or taken
        down once the upload has begun (during: a partial object appears). Then, the store back, a
        second forced snapshot must work: a failed one may not wedge the job (its Consul lock, say)."""
        c, notes = self.c, []
        argv = ["local", "exec", ev.target, "--dir", c.dir, "--", "snapshot", "--force"]
        before = self._partial_uploads()     # a failed upload may have left one (abort could not unlink it)
        if spec.variant != "during":
            self.store_down()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "mysqlpilot", *argv], env=c.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
            if spec.variant == "during":
                t0 = time.time()
                while proc.poll() is None and time.time() - t0 < 120 and not self._partial_uploads() - before:
                    time.sleep(0.02)
                if proc.poll() is None:
                    self.store_down()
                    notes.append(f"store down {time.time() - t0:.1f}s into the snapshot, its upload begun")
                else:
                    notes.append("the snapshot ended before its upload was seen: store not taken down")
            try:
                out = proc.communicate(timeout=600)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                out = proc.communicate()[0] + "\n(killed after 600s)"
            lines = [x for x in out.strip().splitlines() if x.strip()]
            notes.append(f"snapshot --force exit {proc.returncode}" + (f": {lines[-1][:140]}" if lines else ""))
            if proc.returncode == 0 and spec.variant == "before":
                notes.append("(it did not fail: was the store really down?)")
        finally:
            ev.restore_at = time.time()
            self.store_up()
        p = c.cli(*argv, check=False, timeout=600)
        lines = [x for x in (p.stdout + p.stderr).strip().splitlines() if x.strip()]
        notes.append("with the store back, a forced snapshot " + ("works" if p.returncode == 0 else
                     f"FAILS (exit {p.returncode}: {lines[-1][:140] if lines else ''})"))
        left = self._partial_uploads() - before
        if left:
            notes.append(f"{len(left)} partial upload(s) left in the store: {', '.join(sorted(left))[:160]}")
        return "; ".join(n for n in notes if n)

    def _partial_uploads(self) -> Set[str]:
        return {os.path.join(d, f) for d, _, files in os.walk(self.store_path()) for f in files if ".partial-" in f}

    def _store_down_restore(self, ev: FaultEvent, target: str) -> str:
        """On MySQL (seed_method auto) the node seeds by CLONE INSTANCE FROM a healthy replica and needs no
        store: the fault then checks that an unreachable store does not stand in the way of that."""
        notes = [self.local("kill", target, "--signal", "KILL")]
        data = os.path.join(self.c.dir, "nodes", target, "data")
        shutil.rmtree(data, ignore_errors=True)      # a new, empty volume: the node must restore a snapshot
        notes.append(f"{target} killed, its datadir emptied")
        marks = self._log_marks()
        self.store_down()
        try:
            notes.append(self.local("start", target))
            t0 = time.time()
            seen = ""
            while time.time() - t0 < max(self.hold, 20.0) + 30 and not seen:
                if self._grep_since(target, RESTORE_FAILED.pattern, marks):
                    seen = f"a restore attempt failed after {time.time() - t0:.1f}s"
                elif self._grep_since(target, SEEDED_BY_CLONE.pattern, marks):
                    seen = f"{target} seeded by remote CLONE, without the store, after {time.time() - t0:.1f}s"
                else:
                    time.sleep(0.2)
            notes.append(seen or "no restore attempt failed (nor a remote CLONE seeded it) while the store was down")
        finally:
            ev.restore_at = time.time()
            self.store_up()
        return "; ".join(n for n in notes if n)

    # ---- the store going away (directory store: a read-only empty tmpfs over it) ----------------
    def store_path(self) -> str:
        s = self.c.settings
        if s.get("store", "local") != "local":
            raise AssertionError("store faults need the directory store (store: local)")
        return s["store_path"]

    def store_down(self) -> None:
        """The store unreachable for every node: an empty read-only tmpfs mounted over the directory
        (root ignores file modes, so chmod 000 would not stop it). Reads find nothing, writes fail."""
        with self.store_lock:
            self.store_down_n += 1
            if self.store_down_n > 1:
                return
            path = self.store_path()
            os.makedirs(path, exist_ok=True)
            p = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m,mode=0755", "mysqlpilot-store-down", path],
                               capture_output=True, text=True)
            if p.returncode != 0:
                self.store_down_n -= 1
                raise AssertionError(f"could not take the store down: {p.stderr.strip()}")

    def store_up(self) -> None:
        with self.store_lock:
            if self.store_down_n == 0:
                return
            self.store_down_n -= 1
            if self.store_down_n == 0:
                self._umount(self.store_path())

    @staticmethod
    def _umount(path: str) -> None:
        for args in (["umount", path], ["umount", "-l", path]):
            if subprocess.run(args, capture_output=True).returncode == 0:
                return

    def _undo(self, ev: FaultEvent) -> None:
        """What this fault left behind when interrupted: its frozen node thawed, its partition healed."""
        t = ev.target
        if t in self.paused and ev.fault.startswith("freeze"):
            try:
                self.c.cli("local", "unpause", t, "--dir", self.c.dir, check=False, timeout=60)
            finally:
                self.paused.discard(t)
        if t in self.partitioned and ev.fault.startswith("partition"):
            try:
                self.c.cli("local", "heal", t, "--dir", self.c.dir, check=False, timeout=60)
            finally:
                self.partitioned.discard(t)
                if self.sampler is not None:
                    self.sampler.via_socket.discard(t)

    def _undo_all(self) -> None:
        """Whatever faults left behind when interrupted: frozen nodes thawed, partitions healed, the store back."""
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
        from mysqlpilot.local import consul_cluster as cc
        from mysqlpilot.local.consul_agent import ConsulAgent
        for d in cc.server_dirs(self.c.dir):       # a Consul freeze interrupted: SIGCONT is harmless otherwise
            pid = ConsulAgent.read_pidfile(d)[0]
            if pid:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        with self.store_lock:
            if self.store_down_n:
                self.store_down_n = 0
                self._umount(self.store_path())

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
    def read_ids(self, st: Dict) -> Tuple[Dict[str, Optional[Set[int]]], Dict[str, str], Dict[str, str]]:
        """Every node's ids and CHECKSUM TABLE of the chaos tables, replicas first caught up to the
        primary's binlog position (bounded)."""
        got: Dict[str, Optional[Set[int]]] = {}
        why: Dict[str, str] = {}
        sums: Dict[str, str] = {}
        p = st["primary"]
        pos = ""
        if p:
            pn = self.c.node(st, p)
            try:
                # MySQL's gtid_executed has a newline after each comma.
                pos = "".join(str(self.c.sql(pn["host"], pn["port"], self.sql.position)[0][0] or "").split())
            except Exception as exc:  # noqa: BLE001
                why[p] = f"position unreadable: {exc}"
        for name, host, port in self.c.addresses():
            try:
                conn = self.c.connect(host, port, timeout=60)      # read timeout covers the wait below
                try:
                    with conn.cursor() as cur:
                        if name != p and pos:
                            cur.execute(self.sql.wait, (pos, 45))
                            if cur.fetchone()[0] != 0:
                                why[name] = "did not catch up with the primary in 45s"
                        cur.execute(f"SELECT id FROM {self.table}")
                        got[name] = {int(r[0]) for r in cur.fetchall()}
                        cur.execute(f"CHECKSUM TABLE {self.table}, {self.side_table}")
                        sums[name] = " ".join(f"{r[0]}={r[1]}" for r in cur.fetchall())
                finally:
                    conn.close()
            except Exception as exc:  # noqa: BLE001
                got[name] = None
                why[name] = f"unreadable: {str(exc)[:120]}"
        return got, why, sums

    def verdict(self, final_timeout: float = 180.0, config: Optional[Dict] = None,
                not_run: Optional[List[str]] = None) -> Verdict:
        self.stop_load()
        stopped = bool(self.violations) and self.stop_on_violation
        failures = [f"#{e.index} {e.fault} on {e.target}: no single primary with every other node "
                    f"replicating (or rebuilding) within the bound"
                    for e in self.events if e.converged_after is None and not e.note.startswith("skipped")]
        t_stop = time.time()
        st = self.wait(lambda s: self.settled(s, t_stop, allow_rebuilding=False),
                       min(final_timeout, 30.0) if stopped else final_timeout)
        if st is None:
            failures.append(f"final: no primary with {self.n - 1} healthy replicas within {final_timeout:.0f}s")
            if not stopped:
                self.violate(None, "convergence", failures[-1])
            st = self.st() or {"primary": None, "nodes": []}
        final = st["primary"]
        ids, why, sums = self.read_ids(st) if final else ({}, {}, {})
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
            if name in sums:
                d["checksum"] = sums[name]
            if name in why:
                d["note"] = why[name]
            nodes[name] = d
        if not stopped:
            new_lost = set(lost) - self.known_lost
            if new_lost:      # the check after each fault saw every failover: a loss now follows none
                self.violate(None, "lost", f"{len(new_lost)} acknowledged ids missing on the final primary {final}, "
                             f"e.g. {sorted(new_lost)[:8]}")
            if phantom:
                self.violate(None, "phantom", "; ".join(f"{n}: {len(v)} rows no client wrote or that were refused, "
                                                        f"e.g. {v[:5]}" for n, v in sorted(phantom.items())))
            if final and sums.get(final):
                bad = {n: s for n, s in sums.items() if s != sums[final]}
                lag = [n for n in why if n != final and n in [a for a, _, _ in self.c.addresses()]]
                if bad or lag:
                    self.violate(None, "checksum", "; ".join(
                        [f"{n}: {s} (primary {final}: {sums[final]})" for n, s in sorted(bad.items())]
                        + [f"{n}: {why[n]}" for n in sorted(lag)]))
            elif final:
                self.violate(None, "checksum", f"the final primary {final}'s tables could not be checksummed: "
                             f"{why.get(final)}")
            self.check_tail()
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
        thaw_window = [(t, w) for t, w in dw if self.in_thaw_window(t, w)]
        dw = [(t, w) for t, w in dw if not self.in_thaw_window(t, w)]
        acks = self.ledger.ack_times()
        for k, e in enumerate(self.events):
            t1 = min([x.start for x in self.events if x.start > e.start] or [t_stop])
            e.acked = self.ledger.count("acked", e.start, t1)
            e.unknown = self.ledger.count("unknown", e.start, t1)
            e.rejected = self.ledger.count("rejected", e.start, t1)
            e.double_writable = len([1 for t, _ in dw if e.start <= t < t1])
            e.unavailable = longest_gap(acks, e.start, t1)
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
            not_run=list(not_run or []), thaw_window=thaw_window, violations=self.violations,
            checksums=sums, stopped_early=stopped)

    def check_tail(self) -> None:
        """The checks after every fault that hold at the end too: two writable, moved aside."""
        if self.sampler is not None:
            dw = [(t, w) for t, w in self.sampler.double(self.dw_reported) if not self.in_thaw_window(t, w)]
            if dw:
                self.violate(None, "double-writable", f"{len(dw)} samples with two writable nodes after the last "
                             f"fault's check, first at {dw[0][0]:.3f} ({'+'.join(dw[0][1])})")
        for path in sorted(set(self.asides()) - self.asides_seen):
            self.asides_seen.add(path)
            node = path.split(os.sep)[-2]
            if not self._grep_since(node, ERRANT_REBUILD.pattern, {}):
                self.violate(None, "moved-aside", f"{path}: moved aside without an errant transaction reported")


# ---- after the tool stops: nothing of the cluster may be left --------------------------------------
def leftovers(cluster: Cluster, wait: float = 15.0) -> List[str]:
    """Processes of the cluster (by command line, working directory or MYSQLPILOT_CONFIG), its nft table,
    mounts under its directory. Waits up to `wait` s for stragglers to exit first."""
    d = os.path.abspath(cluster.dir)
    deadline = time.monotonic() + wait
    while True:
        found = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
                with open(f"/proc/{pid}/stat") as fh:
                    if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue
                cwd = os.readlink(f"/proc/{pid}/cwd")
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    env = fh.read()
            except (OSError, IndexError):
                continue
            if d + "/" in cmd + "/" or cwd == d or cwd.startswith(d + "/") or \
                    f"MYSQLPILOT_CONFIG={d}/".encode() in env:
                found.append(f"pid {pid}: {cmd[:120]}")
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    try:
        from mysqlpilot.local.cluster import LocalCluster
        table = LocalCluster(d, echo=lambda s: None).nft_table()
        nft = shutil.which("nft") or "/usr/sbin/nft"
        if os.access(nft, os.X_OK) and subprocess.run([nft, "list", "table", "inet", table],
                                                      capture_output=True).returncode == 0:
            found.append(f"nft table inet {table}")
    except Exception:  # noqa: BLE001
        pass
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                mp = line.split()[1]
                if mp == d or mp.startswith(d + "/"):
                    found.append(f"mount on {mp}")
    except OSError:
        pass
    return found


def replay_command(faults: int, seed: int, schedule: Optional[str], overlap: bool, durability: str, nodes: int,
                   hold: float, kinds: Optional[List[str]] = None, flavor: str = "mariadb",
                   writer_timeout: Optional[float] = 1.0, consul_servers: int = 1, failsafe: bool = True) -> str:
    cmd = "python3 bench/chaos.py " + (f"--flavor {flavor} " if flavor != "mariadb" else "") + \
        (f"--schedule {schedule} " if schedule else "") + f"--seed {seed} --faults {faults}"
    if kinds:
        cmd += f" --kinds {','.join(kinds)}"
    if overlap:
        cmd += " --overlap"
    if durability != "semi-sync":
        cmd += f" --durability {durability}"
    if nodes != 3:
        cmd += f" --nodes {nodes}"
    if hold != 14.0:
        cmd += f" --hold {hold:g}"
    if writer_timeout != 1.0:
        cmd += f" --writer-timeout {writer_timeout or 0:g}"
    if consul_servers != 1:
        cmd += f" --consul-servers {consul_servers}"
    if not failsafe:
        cmd += " --no-failsafe"           # on by default since issue 21
    return cmd


def run_chaos(cluster: Cluster, faults: List[str], nodes: int = 3, seed: int = 0, hold: float = 14.0,
              writers: int = 4, durability: str = "semi-sync", converge_timeout: float = 120.0,
              schedule: Optional[str] = None, failover_budget: int = 1000, time_budget: Optional[float] = None,
              final_timeout: float = 180.0, echo: Callable[[str], None] = print, overlap: bool = False,
              stop_on_violation: bool = False, consul_mode: str = "server",
              kinds: Optional[List[str]] = None, max_moved_aside: int = 1000,
              writer_timeout: Optional[float] = 1.0, consul_servers: int = 1, failsafe: bool = True) -> Verdict:
    """Up, load, faults, checks, verdict; the cluster always goes down (failure, Ctrl-C included), its
    directory kept; then nothing of it may be left running.

    The cluster fails over on purpose far more often than the default budget allows: the budget goes in
    through the environment every node inherits (`local up`/`local start` pass theirs on) and into the
    mysqlpilot.yaml `local up` wrote, so `mysqlpilot status` agrees.

    time_budget: seconds for the faults once the load runs; faults that would start later are not run
    (the verdict says so and fails) and the convergence waits are cut to what is left.
    stop_on_violation: stop at the first check that does not hold (bench/chaos.py does).
    kinds: only for the replay command line (the kinds `faults` were drawn from).
    max_moved_aside: like the budget, lifted: a long run rebuilds the same node many times (each frozen
    primary's unacknowledged commits are errant), and at the default cap of 3 a node waits for an
    operator to clear its old copies, which is right in production and not what this run tests."""
    cluster.env["MYSQLPILOT_FAILOVER_BUDGET"] = str(failover_budget)
    cluster.env["MYSQLPILOT_MAX_MOVED_ASIDE"] = str(max_moved_aside)
    cluster.env["MYSQLPILOT_FAILSAFE"] = "1" if failsafe else "0"
    flavor = getattr(cluster, "flavor", "mariadb")
    chaos_sql(flavor)                   # an unknown flavor fails here, before a cluster starts
    plan = make_plan(faults, seed, overlap=overlap, hold=hold)
    config = {"schedule": schedule, "seed": seed, "faults": list(faults), "nodes": nodes, "writers": writers,
              "flavor": flavor,
              "hold": hold, "durability": durability, "converge_timeout": converge_timeout,
              "failover_budget": failover_budget, "max_moved_aside": max_moved_aside, "dir": cluster.dir,
              "overlap": overlap,
              "consul_mode": consul_mode, "consul_servers": consul_servers, "failsafe": failsafe,
              "plan": [asdict(p) for p in plan],
              "kinds": list(kinds or []),
              "replay": replay_command(len(faults), seed, schedule, overlap, durability, nodes, hold, kinds, flavor,
                                        writer_timeout, consul_servers, failsafe)}
    run: Optional[ChaosRun] = None
    verdict: Optional[Verdict] = None
    try:
        consul = (f"{consul_servers} servers" if consul_servers > 1 else consul_mode) + \
            (", failsafe on" if failsafe else ", failsafe off")
        echo(f"starting a {nodes}-node {durability} {flavor} cluster in {cluster.dir} (Consul: {consul})")
        cluster.up(nodes, "--durability", durability, *(("--consul-servers", str(consul_servers)) if consul_servers > 1
                                                         else ("--consul-mode", consul_mode)))
        if flavor != "mariadb":
            config["flavor_version"] = cluster.settings.get("flavor_version")
        cluster.set_settings(failover_budget=failover_budget, max_moved_aside=max_moved_aside)
        echo(f"failover budget lifted to {failover_budget} failovers: anti-flapping is not what this run tests")
        echo(f"moved-aside cap lifted to {max_moved_aside} copies per node: each rebuild keeps its datadir, and "
             "the run checks that each was reported errant")
        run = ChaosRun(cluster, nodes, seed, hold=hold, writers=writers, converge_timeout=converge_timeout,
                       echo=echo, durability=durability, stop_on_violation=stop_on_violation,
                       writer_timeout=writer_timeout)
        run.start()
        if time_budget is not None:
            run.deadline = time.monotonic() + time_budget
        not_run = run.run_plan(plan, time_budget)
        verdict = run.verdict(final_timeout=final_timeout, config=config, not_run=not_run)
        return verdict
    finally:
        try:
            if run is not None:
                run.cleanup()
        finally:
            cluster.down()
            if verdict is not None:
                verdict.leftovers = leftovers(cluster)
                if verdict.leftovers:
                    v = {"fault": None, "kind": "", "target": None, "check": "leftover",
                         "detail": "; ".join(verdict.leftovers), "at": time.time()}
                    verdict.violations.append(v)
                    echo(f"VIOLATION leftover: {v['detail'][:300]}")


def write_json(verdict: Verdict, path: str) -> None:
    with open(path, "w") as fh:
        json.dump(verdict.to_json(), fh, indent=1, default=str)


# The host binaries a node of each flavor runs: server and snapshot tools (MySQL's server comes from the
# sid root, checked apart; its snapshots are CLONE | tar | zstd, its seeds remote CLONE).
FLAVOR_BINARIES: Dict[str, Tuple[str, ...]] = {
    "mariadb": ("mariadbd", "mariadb-install-db", "mariadb-backup", "mbstream", "zstd"),
    "mysql": ("tar", "zstd", "unshare", "chroot"),
}


def missing_for_chaos(campaign: bool = False, flavor: str = "mariadb") -> str:
    """What a chaos run on `flavor` needs and this machine lacks ("" when nothing): the tests skip with it.
    campaign: also what partition-replicas and the store faults need."""
    import shutil
    from mysqlpilot.errors import PilotError
    from mysqlpilot.local.cluster import LocalCluster
    from mysqlpilot.local.consul_agent import find_consul_binary
    if flavor not in FLAVOR_BINARIES:
        raise ValueError(f"unknown flavor {flavor!r}; known: {', '.join(FLAVORS)}")
    need = [b for b in FLAVOR_BINARIES[flavor] if not shutil.which(b) and not os.access(f"/usr/sbin/{b}", os.X_OK)]
    if flavor == "mysql":
        from .mariadb_server import flavor_unavailable        # the MySQL 9.7 root, root itself
        why = flavor_unavailable("mysql")
        if why:
            need.append(f"MySQL 9.7 ({why})")
    try:
        find_consul_binary()
    except PilotError:
        need.append("consul")
    if not os.access(shutil.which("nft") or "/usr/sbin/nft", os.X_OK) or os.geteuid() != 0:
        need.append("nft as root (partitions)")
    if campaign and not LocalCluster.cgroup2_mount():
        need.append("cgroup v2 (partition-replicas)")
    if campaign and not shutil.which("mount"):
        need.append("mount (store-down faults)")
    return ", ".join(need)

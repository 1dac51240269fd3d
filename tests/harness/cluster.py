"""Drive a real `mysqlpilot local` cluster from tests and benchmarks: CLI calls, SQL, write load,
and a read_only poller. Nothing here is mocked: Consul, mariadbd and the supervisors are real."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

import pymysql
import requests
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Cluster:
    def __init__(self, dir: str, env: Optional[Dict[str, str]] = None, flavor: str = "mariadb"):
        self.dir = dir
        self.flavor = flavor            # `local up --flavor`; the tests' own SQL follows it too
        self.env = dict(os.environ, **(env or {}))
        self.env.pop("MYSQLPILOT_CONFIG", None)
        self.env["PYTHONPATH"] = REPO + os.pathsep + self.env.get("PYTHONPATH", "")

    # ---- CLI ------------------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True, timeout: float = 600, config: bool = False
            ) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if config:
            env["MYSQLPILOT_CONFIG"] = self.config_path
        p = subprocess.run([sys.executable, "-m", "mysqlpilot", *args], env=env, capture_output=True,
                           text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"mysqlpilot {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
                                 f"\n{self.logs_tail()}")
        return p

    def up(self, nodes: int, *extra: str, timeout: float = 420) -> subprocess.CompletedProcess:
        return self.cli("local", "up", "--nodes", str(nodes), "--dir", self.dir, "--flavor", self.flavor,
                        *extra, "--timeout", str(int(timeout)), timeout=timeout + 60)

    @property
    def sql_flavor(self):
        """The mysqlpilot Flavor of this cluster's servers, for the SQL a test sends itself."""
        from mysqlpilot.flavors import get_flavor
        return get_flavor(self.flavor, self.settings.get("flavor_version", "10.11"))

    def gtid_position(self, host: str, port: int) -> str:
        """The server's executed GTID position/set (MariaDB gtid_current_pos, MySQL gtid_executed)."""
        return "".join(str(self.sql(host, port, self.sql_flavor.gtid_executed_sql())[0][0] or "").split())

    def wait_gtid(self, host: str, port: int, gtid: str, timeout: float = 60) -> bool:
        """True once the server at host:port has executed `gtid` (asked of the server itself)."""
        conn = self.connect(host, port, timeout=timeout + 30)
        try:
            with conn.cursor() as cur:
                cur.execute(self.sql_flavor.wait_for_gtid_sql(gtid, timeout))
                return int(cur.fetchone()[0]) == 0
        finally:
            conn.close()

    def down(self, kill: bool = True) -> None:
        """At a test's end the cluster is killed (a graceful stop costs up to 20 s on MySQL and proves
        nothing there); tests of stopping stop nodes themselves."""
        if os.path.exists(self.dir):
            self.cli("local", "down", "--dir", self.dir, *(["--kill"] if kill else []), check=False, timeout=180)

    @property
    def config_path(self) -> str:
        return os.path.join(self.dir, "mysqlpilot.yaml")

    @property
    def settings(self) -> Dict:
        with open(self.config_path) as fh:
            return yaml.safe_load(fh)

    def status(self) -> Dict:
        p = self.cli("status", "--json", config=True, timeout=60)
        return json.loads(p.stdout)

    def status_fast(self) -> Dict:
        """What `status --json` prints, gathered in this process: no interpreter start per call, which
        matters when load threads poll it on a 2-core machine. One Consul client per thread."""
        from mysqlpilot import config as config_mod
        from mysqlpilot.dcs.consul import ConsulDCS
        from mysqlpilot.errors import PilotError
        from mysqlpilot.status import gather
        tl = self.__dict__.setdefault("_tl", threading.local())
        if getattr(tl, "dcs", None) is None:
            tl.cfg = config_mod.load(self.config_path, env={})
            tl.dcs = ConsulDCS.from_config(tl.cfg)
        try:
            return gather(tl.cfg, dcs=tl.dcs, history=50)
        except PilotError as exc:
            raise AssertionError(f"status: {exc}") from None

    def registry(self) -> Dict:
        with open(os.path.join(self.dir, "cluster.json")) as fh:
            return json.load(fh)

    def consul_ports(self) -> Dict[str, int]:
        """The local Consul agent's ports: http, and dns (what clients using Consul DNS ask)."""
        with open(os.path.join(self.dir, "consul", "agent.json")) as fh:
            s = json.load(fh)
        return {"http": int(s["http_port"]), "dns": int(s["ports"]["-dns-port"])}

    def passing(self, service: str) -> List[Tuple[str, int]]:
        """(address, port) of each entry of `service` that Consul's health API lists as passing."""
        r = requests.get(f"http://127.0.0.1:{self.consul_ports()['http']}/v1/health/service/{service}?passing",
                         timeout=5)
        r.raise_for_status()
        return sorted((e["Service"]["Address"], int(e["Service"]["Port"])) for e in r.json())

    def addresses(self) -> List[Tuple[str, str, int]]:
        """(name, host, port) of every node, from the local cluster's registry: known even when down."""
        reg = self.registry()
        return [(name, n["host"], int(n["port"])) for name, n in sorted(reg["nodes"].items(),
                                                                      key=lambda x: x[1]["k"])]

    def set_settings(self, **kv) -> None:
        """Add keys to the mysqlpilot.yaml `local up` wrote (atomically: hooks read it all the time)."""
        settings = self.settings
        settings.update(kv)
        tmp = self.config_path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(settings, fh, sort_keys=True)
        os.replace(tmp, self.config_path)

    def snapshot_path(self, snapshot_id: str) -> str:
        """Where a snapshot lives in the local store (`local up` uses store: local, cluster `local`)."""
        from mysqlpilot.snapshot_catalog import snapshot_dir
        return os.path.join(self.dir, "snapshots", snapshot_dir("local", snapshot_id))

    def snapshot_manifest(self, snapshot_id: str) -> Dict:
        """The manifest of a snapshot in the local store."""
        with open(os.path.join(self.snapshot_path(snapshot_id), "manifest.json")) as fh:
            return json.load(fh)

    def node_log(self, node: str, job: str) -> str:
        """The job's log; under the real ContainerPilot every job's output is in containerpilot.log."""
        logs = os.path.join(self.dir, "nodes", node, "logs")
        for name in (f"{job}.log", "containerpilot.log"):
            try:
                with open(os.path.join(logs, name), errors="replace") as fh:
                    return fh.read()
            except FileNotFoundError:
                continue
        return ""

    def logs_tail(self, lines: int = 15) -> str:
        out = []
        base = os.path.join(self.dir, "nodes")
        for node in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            for job in ("supervisor", "preStart", "pilot", "mysql"):
                text = self.node_log(node, job).splitlines()[-lines:]
                if text:
                    out.append(f"--- {node}/{job}\n" + "\n".join(text))
        return "\n".join(out)

    # ---- waiting --------------------------------------------------------------------------------
    def wait_for(self, pred, timeout: float, what: str, interval: float = 0.5, fast: bool = False):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.status_fast() if fast else self.status()
                got = pred(last)
                if got:
                    return got
            except AssertionError:
                pass
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last status:\n"
                             f"{json.dumps(last, indent=1)}\n{self.logs_tail()}")

    @staticmethod
    def healthy(st: Dict, n: int, primary_not: Optional[str] = None) -> Optional[Dict]:
        """`st` if it shows a writable healthy primary and n-1 healthy replicas replicating from it."""
        p = st["primary"]
        if not p or p == primary_not:
            return None
        nodes = {x["name"]: x for x in st["nodes"]}
        pn = nodes.get(p)
        if not pn or not pn["healthy"] or pn["read_only"] is not False:
            return None
        reps = [x for x in st["nodes"] if x["name"] != p and x["healthy"]
                and x["replicating_from"] == f"{pn['host']}:{pn['port']}"]
        return st if len(reps) >= n - 1 else None

    @staticmethod
    def converged(st: Dict, n: int, allow_rebuilding: bool = True) -> Optional[Dict]:
        """`st` if one writable healthy primary leads and each of the other n-1 nodes replicates from it
        or (allow_rebuilding) is reported rebuilding: a node restoring a snapshot is where it should be."""
        p = st["primary"]
        nodes = {x["name"]: x for x in st["nodes"]}
        pn = nodes.get(p) if p else None
        if not pn or not pn["healthy"] or pn["read_only"] is not False:
            return None
        addr = f"{pn['host']}:{pn['port']}"
        ok = [x for x in st["nodes"] if x["name"] != p and (
            (x["healthy"] and x["replicating_from"] == addr)
            or (allow_rebuilding and x["role"] in ("rebuilding", "restoring")))]
        return st if len(ok) >= n - 1 else None

    def wait_healthy(self, n: int, timeout: float = 240, primary_not: Optional[str] = None) -> Dict:
        return self.wait_for(lambda st: self.healthy(st, n, primary_not), timeout,
                             f"one primary and {n - 1} replicas replicating from it")

    # ---- SQL ------------------------------------------------------------------------------------
    def node(self, st: Dict, name: str) -> Dict:
        return next(n for n in st["nodes"] if n["name"] == name)

    def connect(self, host: str, port: int, timeout: float = 2.0, db: Optional[str] = None,
                io_timeout: Optional[float] = -1.0):
        """io_timeout: the read/write timeout (-1: the connect timeout; None: none, as many clients run)."""
        io = timeout if io_timeout == -1.0 else io_timeout
        ca = self.env.get("MYSQLPILOT_TLS_CA")       # a TLS cluster: as its members connect
        tls = {"ssl_ca": ca, "ssl_verify_identity": True} if ca else {}
        return pymysql.connect(host=host, port=int(port), user="root", password=self.settings["root_password"],
                               connect_timeout=timeout, read_timeout=io, write_timeout=io,
                               autocommit=True, database=db, **tls)

    def connect_socket(self, node: str):
        """root@localhost over the node's socket: the account mysqlpilot itself uses."""
        from mysqlpilot.local.cluster import socket_path
        sock = socket_path(self.dir, node)
        return pymysql.connect(unix_socket=sock, user="root", password=self.settings["root_password"],
                               connect_timeout=2, autocommit=True)

    def sql(self, host: str, port: int, query: str, db: Optional[str] = None):
        conn = self.connect(host, port, db=db)
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                return cur.fetchall()
        finally:
            conn.close()

    def node_processes(self, node: str) -> List[Tuple[int, str]]:
        """(pid, command line) of every process in the node's process group (its "container")."""
        pid = self.registry()["nodes"][node].get("pid")
        if not pid:
            return []
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return []
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                if os.getpgid(int(d)) != pgid:
                    continue
                with open(f"/proc/{d}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except (ProcessLookupError, FileNotFoundError, PermissionError):
                continue
            out.append((int(d), cmd))
        return out

    def signal_group(self, node: str, sig: int) -> float:
        """Signal the node's whole process group (what `local pause/unpause` do), in-process: returns the
        time the signal was sent, without a CLI start-up in between (the thaw-window measure needs it)."""
        pid = self.registry()["nodes"][node].get("pid")
        t = time.time()
        if pid:
            os.killpg(os.getpgid(pid), sig)
        return t

    def kill_job(self, node: str, subcommand: str, sig: int = signal.SIGKILL) -> List[int]:
        """Signal the node's `mysqlpilot SUBCOMMAND` process(es) only, e.g. the HA loop (`watch`)."""
        pids = [pid for pid, cmd in self.node_processes(node)
                if cmd.split()[-1:] == [subcommand] and "mysqlpilot" in cmd]
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids

    def kill_mysqld(self, node: str) -> int:
        pidfile = None
        state = os.path.join(self.dir, "nodes", node, "state")
        for name in os.listdir(state):
            if name.endswith(".pid"):
                pidfile = os.path.join(state, name)
        assert pidfile, f"no mysqld pid file in {state}"
        pid = int(open(pidfile).read().strip())
        os.kill(pid, signal.SIGKILL)
        return pid


def module_cluster(tmp_path_factory, flavor: str, tag: str, env: Dict[str, str], nodes: int = 3,
                   *up_args: str, check=None):
    """The body of a module-scoped cluster fixture: up, healthy, yielded, down. `check(up's result)` may
    assert on what `local up` printed."""
    c = Cluster(str(tmp_path_factory.mktemp(tag) / "cl"), env=env, flavor=flavor)
    p = c.up(nodes, *up_args)
    if check is not None:
        check(p)
    c.wait_healthy(nodes, timeout=120)
    yield c
    c.down()


class WriteLoad(threading.Thread):
    """Inserts rows one by one into whichever node is primary; remembers every acknowledged id."""

    def __init__(self, cluster: Cluster, table: str = "loadtest.t", interval: float = 0.01):
        super().__init__(daemon=True)
        self.c = cluster
        self.table = table
        self.interval = interval
        self.acked: List[int] = []
        self.acked_at: Dict[int, float] = {}            # id -> when its INSERT returned
        self.errors = 0
        self.stop_evt = threading.Event()
        self.first_ok_after: Dict[float, float] = {}
        self.last_ok = 0.0
        self.gaps: List[Tuple[float, float]] = []     # (from, to) of write unavailability

    def setup(self, host: str, port: int) -> None:
        db = self.table.split(".")[0]
        self.c.sql(host, port, f"CREATE DATABASE IF NOT EXISTS {db}")
        self.c.sql(host, port, f"CREATE TABLE IF NOT EXISTS {self.table} (id INT PRIMARY KEY, "
                               "at DOUBLE) ENGINE=InnoDB")

    def run(self) -> None:
        n = 0
        conn = None
        while not self.stop_evt.is_set():
            try:
                if conn is None:
                    st = self.c.status()
                    p = st["primary"]
                    if not p:
                        raise RuntimeError("no primary")
                    pn = self.c.node(st, p)
                    conn = self.c.connect(pn["host"], pn["port"], timeout=1.0)
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (id, at) VALUES (%s, %s)", (n + 1, time.time()))
                n += 1
                self.acked.append(n)
                now = time.time()
                self.acked_at[n] = now
                if self.last_ok and now - self.last_ok > 0.5:
                    self.gaps.append((self.last_ok, now))
                self.last_ok = now
            except Exception:  # noqa: BLE001 - any failure: reconnect to the (possibly new) primary
                self.errors += 1
                try:
                    if conn is not None:
                        conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
                time.sleep(0.1)
            self.stop_evt.wait(self.interval)

    def stop(self) -> None:
        self.stop_evt.set()
        self.join(10)


class ReadOnlyPoller(threading.Thread):
    """Samples @@read_only on every node every 100 ms; records which nodes were writable."""

    def __init__(self, cluster: Cluster, nodes: List[Tuple[str, str, int]], period: float = 0.1):
        super().__init__(daemon=True)
        self.c = cluster
        self.nodes = nodes
        self.period = period
        self.samples: List[Tuple[float, List[str]]] = []
        self.stop_evt = threading.Event()
        self.conns: Dict[str, object] = {}

    def _read_only(self, name: str, host: str, port: int) -> Optional[bool]:
        try:
            conn = self.conns.get(name)
            if conn is None:
                conn = self.c.connect(host, port, timeout=0.3)
                self.conns[name] = conn
            with conn.cursor() as cur:
                cur.execute("SELECT @@global.read_only")
                return bool(cur.fetchone()[0])
        except Exception:  # noqa: BLE001 - unreachable counts as not writable to clients
            conn = self.conns.pop(name, None)
            try:
                if conn is not None:
                    conn.close()
            except Exception:  # noqa: BLE001
                pass
            return None

    def run(self) -> None:
        while not self.stop_evt.is_set():
            t = time.time()
            writable = [n for n, h, p in self.nodes if self._read_only(n, h, p) is False]
            self.samples.append((t, writable))
            self.stop_evt.wait(max(0.0, self.period - (time.time() - t)))

    def stop(self) -> None:
        self.stop_evt.set()
        self.join(10)

    def max_writable(self) -> int:
        return max((len(w) for _, w in self.samples), default=0)

    def violations(self) -> List[Tuple[float, List[str]]]:
        return [(t, w) for t, w in self.samples if len(w) > 1]

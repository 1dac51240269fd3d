"""`mysqlpilot local`: a whole cluster on this machine. A Consul agent (an in-memory dev agent, or a
single-node server with a data dir), and per node the real ContainerPilot (`$MYSQLPILOT_CONTAINERPILOT`,
or `containerpilot` on PATH) or, without one, mysqlpilot's own supervisor, either running
docker/containerpilot.json5, on its own loopback address 127.0.1.K and port. Run as root, each real
ContainerPilot gets a UTS namespace with the node's name as host name (ContainerPilot names its service
`<job>-<hostname>`, as in a container). `MYSQLPILOT_CONTAINERPILOT=builtin` forces the supervisor. Where cgroup v2 is available each node's processes also
get a cgroup of their own (its "container"), so that `local partition --replicas-only` can tell one
node's connections from another's on the shared loopback."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import yaml

from .. import config as config_mod
from ..errors import PilotError
from . import consul_cluster
from . import secure as local_secure
from .consul_agent import REPO, ConsulAgent, _alive
from .partitions import PARTITIONABLE, Partitions
from .ports import free_port

log = logging.getLogger(__name__)

CP_CONFIG = os.path.join(REPO, "docker", "containerpilot.json5")


def containerpilot_bin(env=None) -> Optional[str]:
    """The ContainerPilot binary `local` runs nodes under, or None for the built-in supervisor."""
    import shutil
    env = os.environ if env is None else env
    want = env.get("MYSQLPILOT_CONTAINERPILOT", "")
    if want in ("builtin", "supervisor", "none"):
        return None
    if want:
        if not os.access(want, os.X_OK):
            raise PilotError(f"MYSQLPILOT_CONTAINERPILOT={want} is not an executable; point it at a "
                             "ContainerPilot 3 binary, or set it to 'builtin' for mysqlpilot's own supervisor")
        return want
    return shutil.which("containerpilot", path=env.get("PATH"))


def _own_hostname(name: str) -> None:
    """In the child, before exec: a UTS namespace of its own with host name NAME (root only)."""
    import ctypes
    import socket as socket_mod
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x04000000) != 0:                     # CLONE_NEWUTS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUTS)")
    socket_mod.sethostname(name)


def session_pids(leader: int) -> List[int]:
    """Every process of the session `leader` started (a node: its supervisor or ContainerPilot, the hooks,
    mysqld). ContainerPilot gives each job a process group of its own, so a node is its session."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getsid(int(d)) == leader:
                    out.append(int(d))
            except (ProcessLookupError, PermissionError):
                pass
    return out


def signal_session(leader: int, sig: int) -> None:
    for pid in session_pids(leader):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def node_name(k: int) -> str:
    return f"node{k}"


def node_address(k: int) -> str:
    return f"127.0.1.{k}"


def consul_address_for(k: int, consul: str) -> str:
    """Each node talks to Consul on its own loopback address, so one node can be cut off alone."""
    port = consul.rsplit(":", 1)[1]
    return f"127.0.2.{k}:{port}" if k <= PARTITIONABLE else consul


def socket_path(dir: str, name: str) -> str:
    """Unix socket paths are limited to ~107 bytes; keep them short whatever DIR is."""
    h = hashlib.sha1(os.path.abspath(dir).encode()).hexdigest()[:10]
    return f"/tmp/mysqlpilot-{h}/{name}.sock"


def node_env(dir: str, name: str, k: int, port: int, consul: str, durability: Optional[str]) -> Dict[str, str]:
    nd = os.path.join(dir, "nodes", name)
    env = {
        "MYSQLPILOT_CONFIG": os.path.join(dir, "mysqlpilot.yaml"),
        "MYSQLPILOT_NODE": name, "HOSTNAME": name,
        "MYSQLPILOT_ADVERTISE_HOST": node_address(k), "MYSQLPILOT_BIND_ADDRESS": node_address(k),
        "MYSQLPILOT_API_ADDRESS": node_address(k),      # each node's API on its own address, same port
        "HOST": node_address(k), "MYSQLPILOT_PORT": str(port), "PORT0": str(port),
        "MYSQLPILOT_DATADIR": os.path.join(nd, "data"), "MYSQLPILOT_STATE_DIR": os.path.join(nd, "state"),
        "MYSQLPILOT_SOCKET": socket_path(dir, name), "CONSUL": consul,
        "MYSQLPILOT_CP_SOCKET": socket_path(dir, name + "-cp"),
        "PYTHONPATH": REPO,
    }
    # ContainerPilot sleeps out its whole stopTimeout on every stop: 180 s per node is too long for
    # `local down`; small local datadirs shut down in seconds.
    env["MYSQLPILOT_CP_STOP_TIMEOUT"] = os.environ.get("MYSQLPILOT_CP_STOP_TIMEOUT") or "30"
    if os.environ.get("MYSQLPILOT_HOOK_TRACE"):         # tests: each node's hooks say what they saw
        env["MYSQLPILOT_HOOK_TRACE"] = os.path.join(nd, "logs", "hooks.jsonl")
    if durability:
        env["MYSQLPILOT_DURABILITY"] = durability
    return env


MYSQLD_SID = os.path.join(REPO, "scripts", "mysqld-sid")


def mysql_server_settings() -> Dict[str, str]:
    """flavor_version and mysqld_bin of the MySQL server a local cluster runs: $MYSQLPILOT_MYSQLD, else
    scripts/mysqld-sid (MySQL 9.7 in the sid root of scripts/install-deps.sh). The version is what the
    server itself says (`mysqld --version`), so the SQL dialect follows the real server."""
    import re
    binary = os.environ.get("MYSQLPILOT_MYSQLD") or MYSQLD_SID
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise PilotError(f"cannot run {binary} --version ({exc.strerror}); run bash scripts/install-deps.sh "
                         "or set $MYSQLPILOT_MYSQLD") from None
    m = re.search(r"Ver (\d+\.\d+\.\d+)", out.stdout)
    if out.returncode != 0 or not m:
        detail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise PilotError(f"{binary} --version failed (exit {out.returncode}): {detail[0]}; run bash "
                         "scripts/install-deps.sh or set $MYSQLPILOT_MYSQLD")
    if "mariadb" in out.stdout.lower():
        raise PilotError(f"{binary} is MariaDB, not MySQL; set $MYSQLPILOT_MYSQLD to a MySQL server")
    tools = {}
    if os.path.realpath(binary) == os.path.realpath(MYSQLD_SID):     # its client tools come from the same root (the archive, restores)
        tools = {"binlog_tool": os.path.join(REPO, "scripts", "mysqlbinlog-sid"),
                 "client_tool": os.path.join(REPO, "scripts", "mysql-sid")}
    return {"flavor_version": m.group(1), "mysqld_bin": binary, **tools}


class LocalCluster(Partitions):
    def __init__(self, dir: str, echo: Callable[[str], None] = print):
        self.dir = os.path.abspath(dir)
        self.echo = echo

    # ---- registry ----------------------------------------------------------------------------
    @property
    def reg_path(self) -> str:
        return os.path.join(self.dir, "cluster.json")

    def load(self) -> Dict:
        try:
            with open(self.reg_path) as fh:
                return json.load(fh)
        except FileNotFoundError:
            raise PilotError(f"{self.dir} holds no local cluster (no cluster.json); run `mysqlpilot local up "
                             f"--dir {self.dir}` first") from None

    def save(self, reg: Dict) -> None:
        tmp = self.reg_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(reg, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.reg_path)

    def node(self, reg: Dict, name: str) -> Dict:
        if name not in reg["nodes"]:
            raise PilotError(f"no node {name!r} in {self.dir}; nodes: {', '.join(sorted(reg['nodes']))}")
        return reg["nodes"][name]

    def cfg(self):
        return config_mod.load(os.path.join(self.dir, "mysqlpilot.yaml"), env={})

    # ---- up ----------------------------------------------------------------------------------
    def up(self, nodes: int, store: str = "local", s3_endpoint: Optional[str] = None,
           s3_bucket: Optional[str] = None, durability: Optional[str] = None, timeout: float = 300,
           consul_mode: str = "dev", flavor: str = "mariadb", consul_servers: int = 1, secure: bool = False) -> None:
        if nodes < 1 or nodes > 200:
            raise PilotError("--nodes must be between 1 and 200")
        if os.path.exists(self.reg_path):
            raise PilotError(f"{self.dir} already holds a cluster; use `local start`/`local add`, or another --dir")
        if not os.path.exists(CP_CONFIG):
            raise PilotError(f"{CP_CONFIG} is missing; run mysqlpilot local from a checkout of the repository")
        server = mysql_server_settings() if flavor == "mysql" else {}     # before anything is started
        os.makedirs(self.dir, exist_ok=True)
        agent, extra = local_secure.start_consul(self.dir, consul_mode, consul_servers,
                                                 [f"127.0.2.{k}" for k in range(1, PARTITIONABLE + 1)], secure)
        self.write_config(agent.address, store, s3_endpoint, s3_bucket, durability,
                          dict(server, **extra, **({"flavor": flavor} if flavor != "mariadb" else {})))
        reg = {"consul": agent.address, "consul_mode": "server" if consul_servers > 1 else consul_mode,
               "consul_servers": consul_servers, "durability": durability, "nodes": {}}
        self.save(reg)
        self.echo(f"consul {'dev agent' if consul_mode == 'dev' else 'server (data kept in consul/data)'} "
                  f"at {agent.address}" if consul_servers <= 1 else
                  f"consul: {consul_servers} servers (consul-server-*/), the nodes' agent at {agent.address}")
        for k in range(1, nodes + 1):
            self.create_node(reg, k)
        self.save(reg)
        for name in sorted(reg["nodes"]):
            self.start_node(reg, name)
        self.save(reg)
        self.wait_ready(nodes, timeout)

    def write_config(self, consul: str, store: str, s3_endpoint, s3_bucket, durability,
                     server: Optional[Dict[str, str]] = None) -> None:
        env = os.environ
        gen = {}
        settings = {"cluster": "local", "consul": consul, "store": store,
                    "store_path": os.path.join(self.dir, "snapshots"), "snapshot_interval": 3600,
                    "innodb_buffer_pool_size": "64M", "snapshot_wait_timeout": 600}
        settings.update(server or {})
        if os.geteuid() == 0:
            settings["mysqld_user"] = "root"
        if durability:
            settings["durability"] = durability
        if store == "s3":
            if not s3_bucket:
                raise PilotError("--s3-bucket is required with --store s3")
            settings.update({"s3_bucket": s3_bucket, "s3_endpoint": s3_endpoint})
        for key, var in (("root_password", "MYSQL_ROOT_PASSWORD"), ("repl_password", "MYSQL_REPL_PASSWORD")):
            if env.get(var):
                settings[key] = env[var]
            else:
                settings[key] = gen[var] = secrets.token_urlsafe(18)
        for key, var in (("user", "MYSQL_USER"), ("password", "MYSQL_PASSWORD"), ("database", "MYSQL_DATABASE"),
                         ("repl_user", "MYSQL_REPL_USER")):
            if env.get(var):
                settings[key] = env[var]
        path = os.path.join(self.dir, "mysqlpilot.yaml")
        local_secure.private_write(path, yaml.safe_dump(settings, sort_keys=True))
        if gen:
            self.echo("generated credentials (shown once; also in " + path + ", mode 0600):")
            for var, val in gen.items():
                self.echo(f"  {var}={val}")

    def create_node(self, reg: Dict, k: int) -> str:
        name = node_name(k)
        nd = os.path.join(self.dir, "nodes", name)
        for sub in ("state", "logs"):
            os.makedirs(os.path.join(nd, sub), exist_ok=True)
        os.makedirs(os.path.dirname(socket_path(self.dir, name)), exist_ok=True)
        reg["nodes"][name] = {"k": k, "host": node_address(k), "port": free_port(node_address(k)), "pid": None}
        return name

    def env_of(self, reg: Dict, name: str) -> Dict[str, str]:
        """The environment a node's processes run with, as ContainerPilot's would inside its container."""
        n = self.node(reg, name)
        env = dict(os.environ)
        for var in ("MYSQLPILOT_CONFIG", "MYSQL_ROOT_PASSWORD", "MYSQL_REPL_PASSWORD", "MYSQL_PASSWORD"):
            env.pop(var, None)                   # the node reads its secrets from the 0600 config file
            env.pop(var + "_FILE", None)
        env.update(node_env(self.dir, name, n["k"], n["port"], consul_address_for(n["k"], reg["consul"]),
                            reg.get("durability")), **local_secure.node_env(self.dir))
        # The config's jobs call `mysqlpilot` by name. Our supervisor maps that to this interpreter; a real
        # ContainerPilot looks it up on PATH, so this interpreter's bin dir (the project virtualenv's, where
        # its console script lives) comes first, activated or not.
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = os.pathsep.join([bindir] + [p for p in env.get("PATH", "").split(os.pathsep)
                                                  if p and p != bindir])
        return env

    def exec_in(self, name: str, args: List[str]) -> int:
        """Run `mysqlpilot ARGS` as node NAME would (`docker exec` for a local cluster)."""
        env = self.env_of(self.load(), name)
        return subprocess.call([sys.executable, "-m", "mysqlpilot", *args], env=env,
                               cwd=os.path.join(self.dir, "nodes", name))

    def start_node(self, reg: Dict, name: str) -> None:
        n = self.node(reg, name)
        if n.get("pid") and _alive(n["pid"]):
            raise PilotError(f"{name} is already running (pid {n['pid']})")
        nd = os.path.join(self.dir, "nodes", name)
        env = self.env_of(reg, name)
        cp = containerpilot_bin(env)
        procs = self.node_cgroup(name, create=True)
        if procs:
            procs = os.path.join(procs, "cgroup.procs")
        uts = cp is not None and os.geteuid() == 0

        def child_setup() -> None:       # in the child, before exec: everything the node starts is inside
            if procs:
                try:
                    with open(procs, "w") as fh:
                        fh.write(str(os.getpid()))
                except OSError:
                    pass
            if uts:
                _own_hostname(name)
        if cp:
            argv = [cp, "-config", CP_CONFIG]
            logname, runner = "containerpilot.log", "containerpilot"
        else:
            argv = [sys.executable, "-m", "mysqlpilot.local.supervisor", "--config", CP_CONFIG, "--node-dir", nd]
            logname, runner = "supervisor.out", "supervisor"
        out = open(os.path.join(nd, "logs", logname), "ab")
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, cwd=nd,
                             preexec_fn=child_setup if (procs or uts) else None)
        out.close()
        n["pid"] = p.pid
        n["runner"] = runner
        self.echo(f"started {name} at {n['host']}:{n['port']} ({runner} pid {p.pid}"
                  f"{'' if runner == 'supervisor' else ', ' + cp}{', host name ' + name if uts else ''})")

    # ---- readiness ---------------------------------------------------------------------------
    def wait_ready(self, nodes: int, timeout: float) -> Dict:
        from ..status import gather
        cfg = self.cfg()
        deadline = time.monotonic() + timeout
        last = ""
        st: Dict = {}
        while time.monotonic() < deadline:
            try:
                st = gather(cfg, history=0)
            except PilotError as exc:
                st = {}
                line = f"waiting: {exc}"
            else:
                line = self.progress_line(st)
                if self.ready(st, nodes):
                    self.echo(f"ready: {line}")
                    return st
            if line != last:
                self.echo(line)
                last = line
            time.sleep(1.0)
        raise PilotError(f"cluster not ready after {timeout:.0f}s: {last}; see {self.dir}/nodes/*/logs/")

    @staticmethod
    def ready(st: Dict, nodes: int) -> bool:
        p = st.get("primary")
        if not p:
            return False
        byname = {n["name"]: n for n in st["nodes"]}
        pn = byname.get(p)
        if not pn or not pn["healthy"] or pn["read_only"] is not False:
            return False
        addr = f"{pn['host']}:{pn['port']}"
        reps = [n for n in st["nodes"] if n["name"] != p and n["healthy"] and n["replicating_from"] == addr]
        return len(reps) >= nodes - 1

    @staticmethod
    def progress_line(st: Dict) -> str:
        parts = [f"primary {st.get('primary') or '-'}"]
        for n in st.get("nodes", []):
            parts.append(f"{n['name']} {n['role']}{'' if n['healthy'] else ' (' + (n['message'] or 'unhealthy') + ')'}")
        return "; ".join(parts)

    # ---- other verbs -------------------------------------------------------------------------
    def add(self) -> str:
        reg = self.load()
        k = max(n["k"] for n in reg["nodes"].values()) + 1 if reg["nodes"] else 1
        name = self.create_node(reg, k)
        self.save(reg)
        self.start_node(reg, name)
        self.save(reg)
        return name

    def leader(self, reg: Dict, name: str) -> int:
        """The node's session leader (its supervisor or ContainerPilot)."""
        n = self.node(reg, name)
        if not n.get("pid") or not _alive(n["pid"]):
            raise PilotError(f"{name} is not running")
        return n["pid"]

    def kill(self, name: str, sig: str = "KILL", timeout: float = 360) -> None:
        if sig == "KILL":
            reg = self.load()
            n = self.node(reg, name)
            signal_session(self.leader(reg, name), signal.SIGKILL)   # the whole node: supervisor, hooks, mysqld
            deadline = time.monotonic() + 10
            while _alive(n["pid"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.echo(f"{name} stopped ({sig})")
        else:
            self.stop_nodes([name], timeout)

    def stop_nodes(self, names: List[str], timeout: float = 360) -> None:
        reg = self.load()
        stopped, stuck = stop_together([(n, self.node(reg, n)["pid"], self.leader(reg, n)) for n in names], timeout)
        for name in stopped:
            self.echo(f"{name} stopped (TERM)")
        if stuck:
            raise PilotError(f"{', '.join(stuck)} did not stop within {timeout:.0f}s; killed")

    def start(self, name: str) -> None:
        reg = self.load()
        self.start_node(reg, name)
        self.save(reg)

    def signal_node(self, name: str, sig: int) -> None:
        reg = self.load()
        signal_session(self.leader(reg, name), sig)

    def down(self, kill: bool = False) -> None:
        reg = self.load()
        running = [n for n, v in reg["nodes"].items() if v.get("pid") and _alive(v["pid"])]
        if kill:
            stop_together([(n, reg["nodes"][n]["pid"], reg["nodes"][n]["pid"]) for n in running], 10, signal.SIGKILL)
        else:
            self.stop_gracefully(running)
        consul_cluster.stop(self.dir, kill)
        if any(n.get("partitioned") for n in reg["nodes"].values()):
            for n in reg["nodes"].values():
                n.pop("partitioned", None)
            self.apply_partitions(reg)
            self.save(reg)
        self.remove_cgroups(reg)
        self.echo(f"cluster in {self.dir} {'killed' if kill else 'stopped'}; data kept")

    def stop_gracefully(self, running: List[str]) -> None:
        primary = _primary(self.cfg())
        # Replicas first (together): the primary then has nobody to hand over to and stops without a
        # switchover.
        for group in ([n for n in running if n != primary], [n for n in running if n == primary]):
            try:
                if group:
                    self.stop_nodes(group)
            except PilotError as exc:
                self.echo(str(exc))

    def consul_restart(self, down_for: float = 0.0, timeout: float = 60) -> None:
        """Restart the cluster's Consul agent with its data (a `--consul-mode server` cluster; a dev agent
        would come back empty, so it is refused)."""
        reg = self.load()
        if reg.get("consul_mode", "dev") != "server":
            raise PilotError("this cluster's Consul is an in-memory dev agent: a restart would lose every key. "
                             "Start the cluster with `local up --consul-mode server` to restart Consul")
        t0 = time.monotonic()
        ConsulAgent.restart(os.path.join(self.dir, "consul"), down_for=down_for, timeout=timeout)
        self.echo(f"consul restarted with its data ({time.monotonic() - t0:.1f}s without a Consul)")

    def list(self) -> List[str]:
        reg = self.load()
        return [f"{name} {v['host']}:{v['port']} {'running pid ' + str(v['pid']) if v.get('pid') and _alive(v['pid']) else 'stopped'}"
                for name, v in sorted(reg["nodes"].items(), key=lambda x: x[1]["k"])]


def _primary(cfg) -> Optional[str]:
    try:
        from ..status import gather
        return gather(cfg, history=0).get("primary")
    except PilotError:
        return None


def stop_together(procs, timeout: float, sig: int = signal.SIGTERM):
    """SIGTERM to each node's supervisor ((name, pid, session leader)) at once, then wait for all: each
    stops gracefully on its own, and one after another would only add their shutdowns up. Returns (the
    names that stopped, the names killed after `timeout`). SIGKILL kills each node's whole session."""
    for _, pid, lead in procs:
        signal_session(lead, sig) if sig == signal.SIGKILL else os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for _, pid, _ in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    stopped, stuck = [], []
    for name, pid, lead in procs:
        alive = _alive(pid)
        signal_session(lead, signal.SIGKILL if alive else signal.SIGTERM)   # else: stragglers of that node
        (stuck if alive else stopped).append(name)
    return stopped, stuck

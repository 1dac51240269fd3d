"""A Consul agent on loopback for `mysqlpilot local` and the tests: an in-memory `-dev` agent (the
default), a real server with a data dir (`mode="server"`; one alone, or one of `bootstrap_expect` joined
with `join`) whose state survives a restart, or a client agent joined to servers (`mode="client"`), which
is what a production host runs (consul_cluster.py)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import requests

from ..errors import PilotError
from .ports import free_port, free_ports

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_consul_binary() -> str:
    cand = [os.environ.get("MYSQLPILOT_CONSUL_BIN"), os.path.join(REPO, ".cache", "consul", "usr", "bin", "consul"),
            shutil.which("consul")]
    for c in cand:
        if c and os.access(c, os.X_OK):
            return c
    raise PilotError("no consul binary: run scripts/install-deps.sh (it unpacks Consul 1.8.7 into .cache/) or "
                     "set $MYSQLPILOT_CONSUL_BIN")


MODES = ("dev", "server", "client")
SETTINGS = "agent.json"        # <data_dir>/agent.json: what a restart needs to come back the same


class ConsulAgent:
    """`consul agent -dev` on loopback, every port free-picked; a context manager too.

    mode="server": `consul agent -server -bootstrap-expect 1 -data-dir <data_dir>/data`, its KV store,
    sessions and registrations on disk. Its ports and node name are written to <data_dir>/agent.json so
    that restart() brings back the same server (a Raft peer must keep its address)."""

    def __init__(self, data_dir: str, http_port: Optional[int] = None, bind: str = "127.0.0.1",
                 log_path: Optional[str] = None, extra_client_addrs: Sequence[str] = (),
                 extra_args: Sequence[str] = (), mode: str = "dev", bootstrap_expect: int = 1,
                 join: Sequence[str] = (), tls: Optional[Dict[str, str]] = None):
        if mode not in MODES:
            raise PilotError(f"unknown consul mode {mode!r}; known: {', '.join(MODES)}")
        self.mode = mode
        self.data_dir = data_dir
        self.bind = bind
        self.log_path = log_path or os.path.join(data_dir, "consul.log")
        # Extra loopback addresses the HTTP API also listens on: `mysqlpilot local` gives each node its
        # own, so `local partition` can cut one node off from Consul and nobody else.
        self.client_addrs = [bind] + list(extra_client_addrs)
        self.extra_args = list(extra_args)          # e.g. `-hcl` with an ACL block (tests)
        self.http_port = http_port or free_port(bind)
        self.ports: Dict[str, int] = {}              # -dns-port etc.; picked at the first start
        self.node_name = f"mysqlpilot-{mode}-{uuid.uuid4().hex[:8]}"
        self.bootstrap_expect = bootstrap_expect      # servers: how many form the Raft cluster
        self.join = list(join)                        # serf LAN addresses (host:port) to join
        self.proc: Optional[subprocess.Popen] = None
        self.pid: Optional[int] = None
        # consul_tls.ConsulTLS.to_dict(): HTTPS only on http_port, client certificates required.
        self.tls = dict(tls) if tls else None

    @classmethod
    def from_settings(cls, data_dir: str) -> "ConsulAgent":
        """The agent a previous start(detach=True) left described in <data_dir>/agent.json."""
        try:
            with open(os.path.join(data_dir, SETTINGS)) as fh:
                s = json.load(fh)
        except (OSError, ValueError) as exc:
            raise PilotError(f"no usable {SETTINGS} in {data_dir} ({exc}); was this agent started by "
                             "`mysqlpilot local up`?") from None
        agent = cls(data_dir, http_port=int(s["http_port"]), bind=s["bind"], extra_client_addrs=s["client_addrs"][1:],
                    extra_args=s.get("extra_args", []), mode=s.get("mode", "dev"),
                    bootstrap_expect=int(s.get("bootstrap_expect", 1)), join=s.get("join", []),
                    tls=s.get("tls"))
        agent.ports = {k: int(v) for k, v in s["ports"].items()}
        agent.node_name = s["node"]
        return agent

    def _save_settings(self) -> None:
        tmp = os.path.join(self.data_dir, SETTINGS + ".tmp")
        with open(tmp, "w") as fh:
            json.dump({"mode": self.mode, "bind": self.bind, "client_addrs": self.client_addrs,
                       "http_port": self.http_port, "ports": self.ports, "node": self.node_name,
                       "extra_args": self.extra_args, "bootstrap_expect": self.bootstrap_expect,
                       "join": self.join, "tls": self.tls}, fh, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(self.data_dir, SETTINGS))

    def pick_ports(self) -> Dict[str, int]:
        flags = ("-dns-port", "-grpc-port", "-serf-lan-port", "-serf-wan-port", "-server-port")
        if not self.ports:
            self.ports = dict(zip(flags, free_ports(len(flags), self.bind, avoid=[self.http_port])))
        return self.ports

    @property
    def serf_address(self) -> str:
        return f"{self.bind}:{self.pick_ports()['-serf-lan-port']}"

    @property
    def server_address(self) -> str:
        """What /v1/status/leader names when this server leads."""
        return f"{self.bind}:{self.pick_ports()['-server-port']}"

    def argv(self) -> List[str]:
        self.pick_ports()
        argv = [find_consul_binary(), "agent"]
        if self.mode == "dev":
            argv.append("-dev")
        elif self.mode == "server":
            # A real server: Raft log, KV, sessions and the agent's own registrations kept in the data
            # dir. raft_multiplier 1: elects in about a second, as -dev does (production's default is 5).
            argv += ["-server", "-bootstrap-expect", str(self.bootstrap_expect),
                     "-hcl", "performance { raft_multiplier = 1 }"]
        for addr in self.join:
            argv += ["-retry-join", addr, "-retry-interval", "1s"]
        if self.tls:
            from .consul_tls import ConsulTLS
            argv += ["-hcl", ConsulTLS(**self.tls).agent_hcl(self.http_port)]
        else:
            argv += ["-http-port", str(self.http_port)]
        argv += ["-bind", self.bind, "-client", " ".join(self.client_addrs),
                 "-data-dir", os.path.join(self.data_dir, "data"),
                 # unique: several agents may run side by side (tests, local clusters)
                 "-node", self.node_name, "-log-level", "warn"]
        for flag, port in self.ports.items():
            argv += [flag, str(port)]
        return argv + self.extra_args

    @property
    def address(self) -> str:
        return f"{self.bind}:{self.http_port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"

    def request_tls(self) -> Dict[str, object]:
        """requests' keyword arguments for talking to this agent."""
        if not self.tls:
            return {}
        return {"verify": self.tls["ca"], "cert": (self.tls["client_cert"], self.tls["client_key"])}

    @property
    def pidfile(self) -> str:
        return os.path.join(self.data_dir, "consul.pid")

    def start(self, timeout: float = 30, detach: bool = False, wait_leader: bool = True) -> "ConsulAgent":
        """Start and wait for a leader (or, without `wait_leader`, for the agent to answer: a server of a
        cluster not yet formed has none). detach=True: own session, survives us (`mysqlpilot local up`)."""
        os.makedirs(os.path.join(self.data_dir, "data"), exist_ok=True)
        argv = self.argv()
        with open(self.log_path, "ab") as logfh:
            self.proc = subprocess.Popen(argv, stdout=logfh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=detach)
        self.pid = self.proc.pid
        if detach:
            with open(self.pidfile, "w") as fh:
                fh.write(f"{self.pid} {self.http_port}\n")
            self._save_settings()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.pid = None
                self._drop_pidfile()
                raise PilotError(f"consul agent exited with status {code} at start; see {self.log_path}")
            try:
                r = requests.get(f"{self.url}/v1/status/leader", timeout=1, **self.request_tls())
                if r.ok and (r.json() or not wait_leader):
                    return self
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.2)
        self.stop()
        raise PilotError(f"consul agent at {self.address} elected no leader within {timeout:.0f}s; "
                         f"see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10s."""
        if self.pid:
            if self.proc is not None:
                _terminate_child(self.proc)
            else:
                _terminate(self.pid)
            self.pid = None
        self._drop_pidfile()

    def _drop_pidfile(self) -> None:
        pid, _ = self.read_pidfile(self.data_dir)
        if pid is not None and (pid == self.pid or not _alive(pid)):
            try:
                os.unlink(self.pidfile)
            except FileNotFoundError:
                pass

    @classmethod
    def restart(cls, data_dir: str, down_for: float = 0.0, timeout: float = 60) -> "ConsulAgent":
        """Stop the detached agent of <data_dir> (SIGTERM: a server does not leave on TERM), wait
        `down_for` s, start it again with the same ports, node name and data; returns once it has a leader.
        A dev agent comes back empty: only a server keeps its data."""
        agent = cls.from_settings(data_dir)
        cls.stop_from_pidfile(data_dir)
        if down_for > 0:
            time.sleep(down_for)
        return agent.start(timeout=timeout, detach=True)

    def __enter__(self) -> "ConsulAgent":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @staticmethod
    def read_pidfile(data_dir: str) -> Tuple[Optional[int], Optional[int]]:
        """(pid, http_port) from `<data_dir>/consul.pid`, or (None, None)."""
        try:
            with open(os.path.join(data_dir, "consul.pid")) as fh:
                pid, port = fh.read().split()
            return int(pid), int(port)
        except (OSError, ValueError):
            return None, None

    @classmethod
    def is_running(cls, data_dir: str) -> bool:
        pid, _ = cls.read_pidfile(data_dir)
        return bool(pid and _alive(pid) and _is_consul(pid))

    @classmethod
    def stop_from_pidfile(cls, data_dir: str, kill: bool = False) -> bool:
        """Stop a detached agent (SIGKILL at once with `kill`); False if none ran. A recycled pid (not
        consul) is left alone."""
        pid, _ = cls.read_pidfile(data_dir)
        stopped = False
        if pid and _alive(pid) and _is_consul(pid):
            _terminate(pid, sig=signal.SIGKILL if kill else signal.SIGTERM)
            stopped = True
        try:
            os.unlink(os.path.join(data_dir, "consul.pid"))
        except FileNotFoundError:
            pass
        return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def _is_consul(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return True                      # no /proc: trust the pid file
    return b"consul" in os.path.basename(argv[0]) and b"agent" in argv


def _terminate_child(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _terminate(pid: int, timeout: float = 10, sig: int = signal.SIGTERM) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

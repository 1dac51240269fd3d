"""A Consul dev agent on loopback for `mysqlpilot local` and the tests."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Optional, Sequence

import requests

from ..errors import PilotError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_consul_binary() -> str:
    cand = [os.environ.get("MYSQLPILOT_CONSUL_BIN"), os.path.join(REPO, ".cache", "consul", "usr", "bin", "consul"),
            shutil.which("consul")]
    for c in cand:
        if c and os.access(c, os.X_OK):
            return c
    raise PilotError("no consul binary: run scripts/install-deps.sh (it unpacks Consul 1.8.7 into .cache/) or "
                     "set $MYSQLPILOT_CONSUL_BIN")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ConsulAgent:
    def __init__(self, data_dir: str, http_port: Optional[int] = None, bind: str = "127.0.0.1",
                 extra_client_addrs: Sequence[str] = ()):
        self.data_dir = data_dir
        self.bind = bind
        # Extra loopback addresses the HTTP API also listens on: `mysqlpilot local` gives each node its
        # own, so `local partition` can cut one node off from Consul and nobody else.
        self.client_addrs = [bind] + list(extra_client_addrs)
        self.http_port = http_port or free_port(bind)
        self.proc: Optional[subprocess.Popen] = None
        self.pid: Optional[int] = None

    @property
    def address(self) -> str:
        return f"{self.bind}:{self.http_port}"

    @property
    def pidfile(self) -> str:
        return os.path.join(self.data_dir, "consul.pid")

    def start(self, timeout: float = 30, detach: bool = False) -> "ConsulAgent":
        os.makedirs(os.path.join(self.data_dir, "data"), exist_ok=True)
        argv = [find_consul_binary(), "agent", "-dev", "-bind", self.bind, "-client", " ".join(self.client_addrs),
                "-http-port", str(self.http_port), "-dns-port", "-1", "-grpc-port", "-1",
                "-serf-lan-port", str(free_port(self.bind)), "-serf-wan-port", str(free_port(self.bind)),
                "-server-port", str(free_port(self.bind)), "-data-dir", os.path.join(self.data_dir, "data"),
                "-node", f"mysqlpilot-local-{self.http_port}", "-log-level", "warn"]
        log = open(os.path.join(self.data_dir, "consul.log"), "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=detach)
        log.close()
        self.pid = self.proc.pid
        with open(self.pidfile, "w") as fh:
            fh.write(f"{self.pid} {self.http_port}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PilotError(f"consul exited with {self.proc.returncode}; see {self.data_dir}/consul.log")
            try:
                r = requests.get(f"http://{self.address}/v1/status/leader", timeout=1)
                if r.ok and r.json():
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise PilotError(f"consul did not elect a leader within {timeout}s; see {self.data_dir}/consul.log")

    def stop(self) -> None:
        if self.pid:
            _terminate(self.pid)
            if self.proc is not None:
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            self.pid = None

    def __enter__(self) -> "ConsulAgent":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @staticmethod
    def read_pidfile(data_dir: str):
        try:
            pid, port = open(os.path.join(data_dir, "consul.pid")).read().split()
            return int(pid), int(port)
        except (FileNotFoundError, ValueError):
            return None, None

    @classmethod
    def is_running(cls, data_dir: str) -> bool:
        pid, _ = cls.read_pidfile(data_dir)
        return bool(pid and _alive(pid))

    @classmethod
    def stop_from_pidfile(cls, data_dir: str) -> None:
        pid, _ = cls.read_pidfile(data_dir)
        if pid:
            _terminate(pid)


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


def _terminate(pid: int, timeout: float = 10) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
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

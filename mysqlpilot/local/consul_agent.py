"""A Consul dev agent on loopback for `mysqlpilot local` and the tests."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from typing import Optional, Sequence, Tuple

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


class ConsulAgent:
    """`consul agent -dev` on loopback, every port free-picked; a context manager too."""

    def __init__(self, data_dir: str, http_port: Optional[int] = None, bind: str = "127.0.0.1",
                 log_path: Optional[str] = None, extra_client_addrs: Sequence[str] = (),
                 extra_args: Sequence[str] = ()):
        self.data_dir = data_dir
        self.bind = bind
        self.log_path = log_path or os.path.join(data_dir, "consul.log")
        # Extra loopback addresses the HTTP API also listens on: `mysqlpilot local` gives each node its
        # own, so `local partition` can cut one node off from Consul and nobody else.
        self.client_addrs = [bind] + list(extra_client_addrs)
        self.extra_args = list(extra_args)          # e.g. `-hcl` with an ACL block (tests)
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
        """Start and wait for a leader. detach=True: own session, survives us (`mysqlpilot local up`)."""
        os.makedirs(os.path.join(self.data_dir, "data"), exist_ok=True)
        flags = ("-dns-port", "-grpc-port", "-serf-lan-port", "-serf-wan-port", "-server-port")
        ports = dict(zip(flags, free_ports(len(flags), self.bind, avoid=[self.http_port])))
        argv = [find_consul_binary(), "agent", "-dev", "-bind", self.bind, "-client", " ".join(self.client_addrs),
                "-http-port", str(self.http_port), "-data-dir", os.path.join(self.data_dir, "data"),
                # unique: several dev agents may run side by side (tests, local clusters)
                "-node", f"mysqlpilot-dev-{uuid.uuid4().hex[:8]}", "-log-level", "warn"]
        for flag, port in ports.items():
            argv += [flag, str(port)]
        argv += self.extra_args
        with open(self.log_path, "ab") as logfh:
            self.proc = subprocess.Popen(argv, stdout=logfh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=detach)
        self.pid = self.proc.pid
        if detach:
            with open(self.pidfile, "w") as fh:
                fh.write(f"{self.pid} {self.http_port}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.pid = None
                self._drop_pidfile()
                raise PilotError(f"consul agent exited with status {code} at start; see {self.log_path}")
            try:
                r = requests.get(f"http://{self.address}/v1/status/leader", timeout=1)
                if r.ok and r.json():
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
    def stop_from_pidfile(cls, data_dir: str) -> bool:
        """Stop a detached agent; False if none ran. A recycled pid (not consul) is left alone."""
        pid, _ = cls.read_pidfile(data_dir)
        stopped = False
        if pid and _alive(pid) and _is_consul(pid):
            _terminate(pid)
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

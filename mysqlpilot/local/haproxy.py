"""`mysqlpilot local up --haproxy`: Debian's HAProxy in front of the local cluster, with the checks and
timings of docs/routing.md (the same text: tests/unit/test_local_haproxy.py compares them).

A write port whose backend passes only the node whose API answers 200 on /primary, and a read port whose
backend passes replicas answering /replica?lag=10, falling back to the write port. HAProxy runs as a
daemon with its pid file in <dir>/haproxy/; `local down` stops it, `local add` and `local haproxy`
rewrite the server list and reload it (the old process hands its listeners over: -sf).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import PilotError
from .ports import free_ports

HAPROXY = "/usr/sbin/haproxy"

WRITE_CHECK = ("option httpchk GET /primary", "http-check expect status 200",
               "default-server check port {api} inter 500ms fastinter 200ms downinter 1s rise 1 fall 2 "
               "on-marked-down shutdown-sessions")
READ_CHECK = ("balance leastconn", "option httpchk GET /replica?lag=10", "http-check expect status 200",
              "default-server check port {api} inter 1s fastinter 500ms downinter 2s rise 2 fall 3 "
              "on-marked-down shutdown-sessions")


def render(nodes: Sequence[Tuple[str, str, int]], api_port: int, write_port: int, read_port: int,
           bind: str = "127.0.0.1") -> str:
    """haproxy.cfg for `nodes` ((name, host, mysqld port)); checks on each host's `api_port`."""
    servers = [f"    server {name} {host}:{port}" for name, host, port in nodes]
    lines = ["global", "    maxconn 4096", "", "defaults", "    mode tcp", "    timeout connect 2s",
             "    timeout client 8h", "    timeout server 8h", "    timeout check 1s", "",
             "frontend mysql_write", f"    bind {bind}:{write_port}", "    default_backend mysql_primary", "",
             "backend mysql_primary", *(f"    {x.format(api=api_port)}" for x in WRITE_CHECK), *servers, "",
             "frontend mysql_read", f"    bind {bind}:{read_port}", "    default_backend mysql_replicas", "",
             "backend mysql_replicas", *(f"    {x.format(api=api_port)}" for x in READ_CHECK), *servers,
             f"    server via-primary {bind}:{write_port} backup no-check", ""]
    return "\n".join(lines)


class LocalHAProxy:
    def __init__(self, dir: str):
        self.base = os.path.join(dir, "haproxy")
        self.cfg_path = os.path.join(self.base, "haproxy.cfg")
        self.pid_path = os.path.join(self.base, "haproxy.pid")

    def pid(self) -> Optional[int]:
        try:
            with open(self.pid_path) as fh:
                pid = int(fh.read().split()[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            return None

    def start(self, nodes: Sequence[Tuple[str, str, int]], api_port: int,
              ports: Optional[Dict[str, int]] = None) -> Dict[str, int]:
        """Write the config and start HAProxy, or reload a running one with the new server list. Returns
        {"write": port, "read": port} (kept from `ports` when given)."""
        binary = shutil.which("haproxy") or (HAPROXY if os.path.exists(HAPROXY) else None)
        if binary is None:
            raise PilotError("haproxy is not installed: apt-get install haproxy (or run scripts/install-deps.sh)")
        if not api_port:
            raise PilotError("the node API is off (api_port 0): HAProxy's checks need it; set api_port")
        if not ports:
            w, r = free_ports(2)
            ports = {"write": w, "read": r}
        os.makedirs(self.base, exist_ok=True)
        with open(self.cfg_path + ".tmp", "w") as fh:
            fh.write(render(nodes, api_port, ports["write"], ports["read"]))
        check = subprocess.run([binary, "-c", "-q", "-f", self.cfg_path + ".tmp"], capture_output=True, text=True)
        if check.returncode != 0:
            raise PilotError(f"haproxy refused {self.cfg_path}.tmp: {(check.stderr or check.stdout).strip()[:300]}")
        os.replace(self.cfg_path + ".tmp", self.cfg_path)
        old = self.pid()
        cmd = [binary, "-D", "-f", self.cfg_path, "-p", self.pid_path] + (["-sf", str(old)] if old else [])
        p = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise PilotError(f"haproxy did not start ({(p.stderr or p.stdout).strip()[:300]}); config {self.cfg_path}")
        return ports

    def stop(self, timeout: float = 10.0) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.1)
        return True


def node_list(reg: Dict) -> List[Tuple[str, str, int]]:
    """(name, host, port) of every node in a local cluster's registry, in creation order."""
    return [(name, n["host"], int(n["port"])) for name, n in sorted(reg["nodes"].items(), key=lambda x: x[1]["k"])]


def ensure(cluster) -> Dict[str, int]:
    """Start (or reload) the HAProxy of a local cluster with its current nodes; the ports stay the same
    across reloads (kept in the registry)."""
    reg = cluster.load()
    ports = LocalHAProxy(cluster.dir).start(node_list(reg), cluster.cfg().api_port, reg.get("haproxy"))
    reg = cluster.load()
    reg["haproxy"] = ports
    cluster.save(reg)
    return ports

"""Consul as production runs it, on loopback: N servers forming a Raft cluster (`<dir>/consul-server-<i>`)
and, in `<dir>/consul`, the client agent the nodes talk to, as each host's agent would (`mysqlpilot local
up --consul-servers N`). With one server (the default) `<dir>/consul` is that server or a dev agent, as
before. The faults of issue 21 act on the servers: kill the Raft leader, restart them one by one, or
freeze them all; the client agent, the nodes' sessions and their checks stay where they are.
"""
from __future__ import annotations

import glob
import os
import signal
import time
from typing import List, Optional, Sequence

import requests

from ..errors import PilotError
from .consul_agent import ConsulAgent

CLIENT_DIR = "consul"


def server_dirs(dir: str) -> List[str]:
    return sorted(glob.glob(os.path.join(dir, "consul-server-*")), key=lambda d: int(d.rsplit("-", 1)[1]))


def start(dir: str, mode: str, servers: int, client_addrs: Sequence[str], timeout: float = 60,
          tls: Optional[dict] = None, extra_args: Sequence[str] = ()) -> ConsulAgent:
    """Start the cluster's Consul; returns the agent the nodes talk to (its HTTP address). `tls` and
    `extra_args` (one agent only): `local up --secure`."""
    if servers <= 1:
        return ConsulAgent(os.path.join(dir, CLIENT_DIR), extra_client_addrs=client_addrs, mode=mode, tls=tls,
                           extra_args=extra_args).start(detach=True)
    agents = [ConsulAgent(os.path.join(dir, f"consul-server-{i}"), mode="server", bootstrap_expect=servers)
              for i in range(1, servers + 1)]
    for a in agents:
        a.join = [b.serf_address for b in agents if b is not a]
    for a in agents:
        a.start(timeout=timeout, detach=True, wait_leader=False)
    # As docs/runbooks.md asks of a database host's agent: a restart must not leave the cluster (a client
    # leaves on SIGTERM by default, and leaving invalidates every session on its node: the primary's too).
    client = ConsulAgent(os.path.join(dir, CLIENT_DIR), extra_client_addrs=client_addrs, mode="client",
                         join=[a.serf_address for a in agents], extra_args=["-hcl", "leave_on_terminate = false"])
    return client.start(timeout=timeout, detach=True)


def stop(dir: str, kill: bool = False) -> None:
    """The client agent first (it leaves nothing behind to repair), then every server."""
    ConsulAgent.stop_from_pidfile(os.path.join(dir, CLIENT_DIR), kill)
    for d in server_dirs(dir):
        ConsulAgent.stop_from_pidfile(d, kill)


def leader_dir(dir: str, timeout: float = 30) -> str:
    """The data dir of the server that leads the Raft cluster now."""
    dirs = server_dirs(dir)
    if not dirs:
        raise PilotError(f"{dir} has no Consul servers of its own; start it with `local up --consul-servers 3`")
    deadline = time.monotonic() + timeout
    while True:
        # Only running servers, and only a running leader: the others name a killed one for a moment.
        live = [d for d in dirs if ConsulAgent.is_running(d)]
        for d in live:
            agent = ConsulAgent.from_settings(d)
            try:
                lead = requests.get(f"http://{agent.address}/v1/status/leader", timeout=1).json()
            except (requests.RequestException, ValueError):
                continue
            for e in live:
                if lead and ConsulAgent.from_settings(e).server_address == lead:
                    return e
        if time.monotonic() > deadline:
            raise PilotError(f"no Consul server of {dir} leads (see {dirs[0]}/consul.log)")
        time.sleep(0.2)


def kill_leader(dir: str) -> str:
    """SIGKILL the Raft leader (a crashed server); returns its dir. `restart_server` brings it back."""
    d = leader_dir(dir)
    pid, _ = ConsulAgent.read_pidfile(d)
    if pid:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while ConsulAgent.is_running(d) and time.monotonic() < deadline:
            time.sleep(0.05)
    return d


def restart_server(d: str, down_for: float = 0.0, timeout: float = 60) -> None:
    agent = ConsulAgent.from_settings(d)
    ConsulAgent.stop_from_pidfile(d)
    if down_for > 0:
        time.sleep(down_for)
    agent.start(timeout=timeout, detach=True, wait_leader=False)


def rolling_restart(dir: str, pause: float = 2.0, timeout: float = 60) -> None:
    """Each server in turn (followers first, the leader last), each back in the cluster before the next."""
    lead = leader_dir(dir)
    for d in [d for d in server_dirs(dir) if d != lead] + [lead]:
        restart_server(d, timeout=timeout)
        leader_dir(dir, timeout=timeout)        # a quorum again before the next one goes
        time.sleep(pause)


def freeze(dir: str, seconds: float, which: Optional[Sequence[str]] = None) -> None:
    """SIGSTOP every server (a GC pause, a hung VM) for `seconds`, then SIGCONT."""
    pids = [ConsulAgent.read_pidfile(d)[0] for d in (which or server_dirs(dir))]
    pids = [p for p in pids if p]
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)

"""`mysqlpilot restart [--rolling] [--pending] [NODE]`: restart mysqld with no write outage but a switchover.

For each replica the command writes `<kv_root>/restart/<node>`; that node's HA loop stops mysqld cleanly on its
next pass and run-mysqld starts it again with the cluster's current settings (node_requests.py). The command
waits until the node serves again and holds every transaction the primary had when it came back, then goes on
to the next. The primary's turn is a switchover, then its restart as a replica (restart_plan.py).
"""
from __future__ import annotations

import time
from typing import Optional

import click

from ..dcs.base import RESTART_PREFIX
from ..errors import PilotError
from ..restart_plan import RESTART, SWITCHOVER, caught_up, plan
from .reinit import progress_line, requester


def _wait(dcs, node: str, until, timeout: float, what: str, said: list):
    """Poll the cluster every half second, echoing the node's record when it changes (`said`: the last line
    echoed, across the waits of one node), until `until(view)`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = dcs.get_cluster()
        line = progress_line(v.member(node))
        if line != said[0]:
            click.echo(f"  {time.monotonic() - t0:6.1f}s  {node} {line}")
            said[0] = line
        if until(v):
            return v
        time.sleep(0.5)
    raise PilotError(f"{node} is not {what} {timeout:.0f}s on; its pilot and mysql logs say why (mysqlpilot "
                     "status shows it); the walk stopped here, and running it again goes on")


def restart_one(dcs, node: str, reason: str, timeout: float) -> float:
    """Restart one replica's mysqld and wait until it is back and caught up; returns the seconds it took."""
    def serving(v) -> bool:
        m = v.member(node)
        return m is not None and m.alive and m.healthy and m.role == "replica" and v.leader is not None
    said = [""]
    _wait(dcs, node, serving, timeout, "a healthy replica", said)       # the old primary, just handed over
    t0 = time.monotonic()
    dcs.put_json(RESTART_PREFIX + node, {"by": requester(), "at": time.time(), "reason": reason})
    away = []

    def back(v) -> bool:
        # The record from before the restart must not count: done once the request is spent and the node
        # was seen out of service, then serving again.
        if node not in v.restart and not serving(v):
            away.append(True)
        return bool(away) and serving(v)
    v = _wait(dcs, node, back, timeout, "back as a replica", said)
    lead = v.member(v.leader.name)
    want = lead.gtid_executed if lead is not None else ""
    dialect = "mariadb" if (lead is not None and lead.flavor == "mariadb") else "mysql"
    _wait(dcs, node, lambda v: caught_up(dialect, v.member(node), want), timeout, "caught up with the primary",
          said)
    return time.monotonic() - t0


@click.command("restart")
@click.argument("node", required=False)
@click.option("--rolling", is_flag=True, help="Every node: replicas one at a time, then a switchover and the "
              "old primary.")
@click.option("--pending", is_flag=True, help="Only nodes with settings pending a restart (see status).")
@click.option("--reason", default="", help="Why, for the log and the history.")
@click.option("--timeout", default=600.0, show_default=True,
              help="Seconds each node may take to come back and catch up.")
@click.pass_context
def restart(ctx, node: Optional[str], rolling: bool, pending: bool, reason: str, timeout: float) -> None:
    """Restart mysqld on NODE, or on every node with --rolling; writes wait only for a switchover."""
    from ..dcs.consul import ConsulDCS
    from .operator import switchover
    dcs = ConsulDCS.from_config(ctx.obj.config(credentials=False))
    view = dcs.get_cluster()
    steps = plan(view.members, view.leader.name if view.leader else None, node, rolling, pending)
    click.echo("restart: " + ", then ".join(f"{s.kind} {s.node}" if s.kind == RESTART else
                                             f"switchover away from {s.node}" for s in steps))
    why = reason or ("settings pending a restart" if pending else "operator restart")
    t0 = time.monotonic()
    for s in steps:
        if s.kind == SWITCHOVER:
            ctx.invoke(switchover, to=None, timeout=60.0)
        else:
            took = restart_one(dcs, s.node, why, timeout)
            click.echo(f"restart: {s.node} back and caught up in {took:.1f}s")
    done = sum(1 for s in steps if s.kind == RESTART)
    click.echo(f"restart done: {done} node{'s' if done != 1 else ''} in {time.monotonic() - t0:.0f}s")


def register(group: click.Group) -> None:
    group.add_command(restart)

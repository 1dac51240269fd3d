"""`mysqlpilot reinit NODE`: rebuild one replica from the newest snapshot, on demand (issue 24).

The command writes `<kv_root>/reinit/<node>`; that node's HA loop sees it on its next pass and rebuilds as it
does for errant transactions: the request is spent (deleted) as the rebuild starts, mysqld stops, and
run-mysqld moves the datadir aside (never deletes it) and restores the newest snapshot. The primary is
refused: move the role first.
"""
from __future__ import annotations

import getpass
import socket
import time
from typing import Optional

import click

from ..dcs.base import REINIT_PREFIX
from ..errors import PilotError


def requester() -> str:
    """Who asks, for the journal and the node's log: user@host of the operator's shell."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def progress_line(m) -> str:
    """A member's record as one progress line of a command that follows it (reinit, restart)."""
    if m is None:
        return "no member record (restarting)"
    return f"{m.role}{' (healthy)' if m.healthy else ''}: {m.message or ''}".rstrip(": ")


@click.command("reinit")
@click.argument("node")
@click.option("--reason", default="", help="Why, for the log and the journal.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the rebuild until the node replicates again.")
@click.option("--timeout", default=1800.0, show_default=True, help="Seconds --wait waits.")
@click.pass_obj
def reinit(obj, node: str, reason: str, wait: bool, timeout: float) -> None:
    """Rebuild a replica from the newest snapshot: its datadir is moved aside, never deleted."""
    from ..dcs.consul import ConsulDCS
    dcs = ConsulDCS.from_config(obj.config(credentials=False))
    view = dcs.get_cluster()
    if view.member(node) is None:
        raise PilotError(f"no member named {node!r} in this cluster (mysqlpilot status lists them)")
    if view.leader is not None and view.leader.name == node:
        raise PilotError(f"{node} is the primary; move the role first (mysqlpilot switchover), then reinit it")
    if view.latest_snapshot is None:
        raise PilotError("the store has no snapshot yet (snapshots/latest is empty): there is nothing to "
                         f"rebuild {node} from")
    dcs.put_json(REINIT_PREFIX + node, {"by": requester(), "at": time.time(), "reason": reason})
    click.echo(f"reinit: asked {node} to rebuild from snapshot {view.latest_snapshot.id}")
    if not wait:
        return
    t0, last, away = time.monotonic(), None, False
    while time.monotonic() - t0 < timeout:
        v = dcs.get_cluster()
        m = v.member(node)
        line = progress_line(m)
        if line != last:
            click.echo(f"  {time.monotonic() - t0:6.1f}s  {node} {line}")
            last = line
        serving = m is not None and m.role == "replica" and m.healthy
        # Done once the request is spent and the node was seen out of service and back: the record it
        # published before the rebuild started must not count.
        away = away or (node not in v.reinit and not serving)
        if away and serving and v.leader is not None:
            click.echo(f"reinit: {node} rebuilt and replicating from {v.leader.name} in "
                       f"{time.monotonic() - t0:.0f}s")
            return
        time.sleep(1.0)
    raise PilotError(f"{node} is not a healthy replica {timeout:.0f}s after the reinit request; its "
                     "pre-start and mysql logs say why (the request stays until it starts)")


def register(group: click.Group) -> None:
    group.add_command(reinit)

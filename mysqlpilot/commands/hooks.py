"""Hooks ContainerPilot calls (see docker/containerpilot.json5)."""
from __future__ import annotations

import logging
import sys

import click

log = logging.getLogger("mysqlpilot.hooks")


@click.command("pre-start")
@click.pass_obj
def pre_start(obj) -> None:
    """Prepare the datadir: keep it, bootstrap the first primary, or restore the newest snapshot."""
    from ..datadir import Preparer
    did = Preparer(obj.config()).pre_start()
    click.echo(f"pre-start: {did}")


@click.command("run-mysqld")
@click.pass_obj
def run_mysqld(obj) -> None:
    """Exec mysqld (always read-only at start); performs a pending rebuild first."""
    from .. import mysqld
    from ..datadir import Preparer
    from ..flavors import get_flavor
    cfg = obj.config()
    prep = Preparer(cfg)
    if prep.state.get("rebuild_reason"):
        prep.rebuild()
    mysqld.write_mycnf(cfg, prep.flavor)
    mysqld.exec_mysqld(cfg, get_flavor(cfg.flavor, cfg.flavor_version))


@click.command("health")
@click.pass_obj
def health(obj) -> None:
    """Health check: exit 0 when this node is healthy in its role, 1 otherwise (one line says why)."""
    from ..ha import Node
    ok, msg = Node(obj.config()).health_hook()
    click.echo(f"{'healthy' if ok else 'UNHEALTHY'}: {msg}")
    sys.exit(0 if ok else 1)


@click.command("on-change")
@click.pass_obj
def on_change(obj) -> None:
    """One pass of the HA loop, when the primary service changed."""
    from ..ha import Node
    d = Node(obj.config()).run_once()
    click.echo(f"on-change: {d.action}: {d.reason}")


@click.command("watch")
@click.pass_obj
def watch(obj) -> None:
    """The HA loop: keep the session, block on the leader key, elect, fence, promote, repoint."""
    from ..ha import Node
    Node(obj.config()).run_forever()


@click.command("pre-stop")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the hand-over.")
@click.pass_obj
def pre_stop(obj, timeout: float) -> None:
    """On SIGTERM: a primary hands its role over (switchover) before mysqld stops."""
    from ..ha import Node
    click.echo(f"pre-stop: {Node(obj.config()).pre_stop(timeout)}")


def register(group: click.Group) -> None:
    for cmd in (pre_start, run_mysqld, health, on_change, watch, pre_stop):
        group.add_command(cmd)

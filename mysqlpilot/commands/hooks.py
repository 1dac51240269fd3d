"""Hooks ContainerPilot calls (see docker/containerpilot.json5)."""
from __future__ import annotations

import logging
import os
import signal
import sys

import click

from ..timeouts import PRE_STOP_WAIT

log = logging.getLogger("mysqlpilot.hooks")


@click.command("pre-start")
@click.pass_obj
def pre_start(obj) -> None:
    """Prepare the datadir: keep it, bootstrap the first primary, or restore the newest snapshot."""
    from ..datadir import Preparer
    did = Preparer(obj.config()).pre_start()
    click.echo(f"pre-start: {did}")


@click.command("prestart-failed")
def prestart_failed() -> None:
    """ContainerPilot's preStartFailed job: end the container so that the platform replaces it."""
    from .. import pid1
    try:
        click.echo(f"prestart-failed: {pid1.stop_after_failed_prestart(os.environ)}")
    except ValueError as exc:
        click.echo(f"prestart-failed: error: {exc}", err=True)
        sys.exit(1)


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
    # What this mysqld starts with, for `status`'s pending restart (cluster_config.pending_restart).
    prep.state.update(mysqld_settings=dict((cfg.cluster_settings or {}).get("mysqld") or {}))
    flavor = get_flavor(cfg.flavor, cfg.flavor_version)
    from .. import stopguard
    if stopguard.under_containerpilot():
        # ContainerPilot may SIGTERM mysqld while pre-stop still hands over (see stopguard.py).
        sys.exit(stopguard.run_guarded(mysqld._before_start(cfg, flavor), cfg.state_dir))
    mysqld.exec_mysqld(cfg, flavor)


@click.command("health")
@click.pass_obj
def health(obj) -> None:
    """Health check: exit 0 when this node is healthy in its role, 1 otherwise (one line says why)."""
    from ..ha import Node
    # Its own settings only: this hook fences a writable mysqld when the loop is dead, and must not first
    # wait on Consul for the cluster's (cluster=False), as pre-stop must not before it ignores SIGTERM.
    ok, msg = Node(obj.config(cluster=False)).health_hook()
    click.echo(f"{'healthy' if ok else 'UNHEALTHY'}: {msg}")
    sys.exit(0 if ok else 1)


@click.command("probe")
@click.pass_obj
def probe(obj) -> None:
    """Read-only liveness probe (Marathon's health check): exit 0 when the local mysqld answers a query,
    1 otherwise. It never talks to Consul and never writes the node's state, unlike `health`."""
    from ..errors import PilotError
    from ..flavors import get_flavor
    from ..sqlclient import Server
    cfg = obj.config(cluster=False)     # never asks Consul (see above)
    try:
        srv = Server(get_flavor(cfg.flavor, cfg.flavor_version), socket=cfg.socket, user="root",
                     password=cfg.root_password, connect_timeout=2, read_timeout=5)
        try:
            srv.scalar("SELECT 1")
        finally:
            srv.close()
    except PilotError as exc:
        click.echo(f"DOWN: mysqld does not answer on {cfg.socket}: {exc}")
        sys.exit(1)
    click.echo(f"UP: mysqld answers on {cfg.socket}")


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
    """The HA loop: keep the session, block on the leader key, elect, fence, promote, repoint. It also serves
    the node API (api_address:api_port; api_port 0 disables it) from threads of its own."""
    from ..ha import Node
    from .. import config as config_mod
    cfg = obj.config()
    node = Node(cfg, reload=lambda doc: config_mod.load(obj.config_path, cluster=doc))
    from ..cli import trace

    def on_term(signum, frame) -> None:  # noqa: ARG001
        # The container stops: finish the pass, then keep the heartbeat until pre-stop has taken over.
        trace("signal", hook="watch", signal="SIGTERM")
        node.terminate()
    signal.signal(signal.SIGTERM, on_term)
    if cfg.api_port:
        from .. import api
        api.start(node)
    node.run_forever()


@click.command("pre-stop")
@click.option("--timeout", default=PRE_STOP_WAIT, show_default=True,
              help="Seconds to wait for the new primary to take the leader key.")
@click.pass_obj
def pre_stop(obj, timeout: float) -> None:
    """On SIGTERM: a primary hands its role over (switchover) before mysqld stops."""
    from .. import stopguard
    from ..ha import Node
    cfg = obj.config(cluster=False)
    if stopguard.under_containerpilot():
        # Its SIGTERM may come right after it starts; the hand-over must finish (see stopguard.py).
        stopguard.ignore_termination()
    stopguard.write_record(cfg.state_dir, done=False)
    try:
        click.echo(f"pre-stop: {Node(cfg).pre_stop(timeout)}")
    finally:
        stopguard.write_record(cfg.state_dir, done=True)


def register(group: click.Group) -> None:
    for cmd in (pre_start, prestart_failed, run_mysqld, health, probe, on_change, watch, pre_stop):
        group.add_command(cmd)

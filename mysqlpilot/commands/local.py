"""`mysqlpilot local ...`: run and poke a whole cluster on this machine."""
from __future__ import annotations

import signal
import sys
import time

import click


def _cluster(dir: str):
    from ..local.cluster import LocalCluster
    return LocalCluster(dir, echo=click.echo)


@click.group("local")
def local() -> None:
    """A whole cluster on this machine: Consul plus N nodes on 127.0.1.x."""


@local.command("up")
@click.option("--nodes", default=3, show_default=True, type=int)
@click.option("--dir", "dir", required=True, type=click.Path(file_okay=False))
@click.option("--store", type=click.Choice(["local", "s3"]), default="local", show_default=True)
@click.option("--s3-endpoint", default=None)
@click.option("--s3-bucket", default=None)
@click.option("--durability", type=click.Choice(["async", "semi-sync"]), default=None,
              envvar="MYSQLPILOT_DURABILITY")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait until ready.")
@click.option("--consul-mode", type=click.Choice(["dev", "server"]), default="dev", show_default=True,
              help="dev: an in-memory Consul agent. server: a single-node Consul server with a data dir "
                   "(DIR/consul/data), which `local consul-restart` can restart with its data.")
@click.option("--flavor", type=click.Choice(["mariadb", "mysql"]), default="mariadb", show_default=True,
              help="mariadb: the host's MariaDB. mysql: Oracle MySQL 9.7 from the Debian sid root that "
                   "scripts/install-deps.sh makes, run by scripts/mysqld-sid (or $MYSQLPILOT_MYSQLD), "
                   "snapshots by CLONE.")
@click.option("--consul-servers", default=1, show_default=True, type=click.IntRange(1, 7),
              help="More than 1: that many Consul servers forming a Raft cluster (data kept), and a client agent "
                   "the nodes talk to, as each host's agent would; see `local consul-fault`.")
@click.option("--haproxy", "with_haproxy", is_flag=True,
              help="Also start Debian's haproxy in front (docs/routing.md's checks) and print its write and read "
                   "ports.")
@click.option("--secure", is_flag=True,
              help="As a shared network asks (docs/security.md): Consul over HTTPS only with client certificates "
                   "and default-deny ACLs (the nodes' token has only the shipped policy), MySQL with TLS and "
                   "require_secure_transport, root on the local socket only. Certificates in DIR/secure/.")
def up(nodes, dir, store, s3_endpoint, s3_bucket, durability, timeout, consul_mode, flavor, consul_servers,
       with_haproxy, secure) -> None:
    """Start Consul and N nodes; return once one primary and N-1 replicas are healthy."""
    c = _cluster(dir)
    c.up(nodes, store, s3_endpoint, s3_bucket, durability, timeout, consul_mode=consul_mode, flavor=flavor,
         consul_servers=consul_servers, secure=secure)
    if with_haproxy:
        _haproxy_up(c)


def _haproxy_up(c) -> None:
    from ..local import haproxy
    ports = haproxy.ensure(c)
    click.echo(f"haproxy: writes on 127.0.0.1:{ports['write']} (the primary), reads on 127.0.0.1:{ports['read']} "
               f"(replicas); config {haproxy.LocalHAProxy(c.dir).cfg_path}")


@local.command("haproxy")
@click.option("--dir", "dir", required=True)
def haproxy_cmd(dir) -> None:
    """Start HAProxy in front of an existing local cluster, or reload it with the current nodes."""
    _haproxy_up(_cluster(dir))


@local.command("add")
@click.option("--dir", "dir", required=True)
@click.option("--wait", "wait", is_flag=True, help="Wait until the new node replicates.")
@click.option("--timeout", default=300.0, show_default=True)
def add(dir, wait, timeout) -> None:
    """Add a node (scale up): it restores the newest snapshot and replicates."""
    c = _cluster(dir)
    name = c.add()
    if c.load().get("haproxy"):
        _haproxy_up(c)                       # the new node joins both backends
    if wait:
        c.wait_ready(len(c.load()["nodes"]), timeout)
    click.echo(name)


@local.command("kill")
@click.argument("node")
@click.option("--dir", "dir", required=True)
@click.option("--signal", "sig", type=click.Choice(["TERM", "KILL"]), default="KILL", show_default=True)
def kill(node, dir, sig) -> None:
    """Stop a node: KILL takes it down at once, TERM runs pre-stop first."""
    _cluster(dir).kill(node, sig)


@local.command("start")
@click.argument("node")
@click.option("--dir", "dir", required=True)
def start(node, dir) -> None:
    """Bring a stopped node back with its data."""
    _cluster(dir).start(node)


@local.command("pause")
@click.argument("node")
@click.option("--dir", "dir", required=True)
def pause(node, dir) -> None:
    """SIGSTOP the node's every process (mysqld included): a frozen node."""
    _cluster(dir).signal_node(node, signal.SIGSTOP)
    click.echo(f"{node} paused (SIGSTOP)")


@local.command("unpause")
@click.argument("node")
@click.option("--dir", "dir", required=True)
def unpause(node, dir) -> None:
    """SIGCONT a paused node."""
    _cluster(dir).signal_node(node, signal.SIGCONT)
    click.echo(f"{node} resumed (SIGCONT)")


@local.command("partition")
@click.argument("node")
@click.option("--dir", "dir", required=True)
@click.option("--full", is_flag=True, help="Also cut clients and other nodes off its mysqld.")
@click.option("--replicas-only", is_flag=True,
              help="Cut it off from the other nodes only (replication both ways, their probes); Consul and "
                   "clients still reach it. Needs cgroup v2 (each node runs in a cgroup of its own).")
def partition(node, dir, full, replicas_only) -> None:
    """Cut a node off from Consul (nftables drop on loopback): it must fence itself."""
    _cluster(dir).partition(node, full, replicas_only)


@local.command("heal")
@click.argument("node")
@click.option("--dir", "dir", required=True)
def heal(node, dir) -> None:
    """Undo `local partition`."""
    _cluster(dir).heal(node)


@local.command("consul-restart")
@click.option("--dir", "dir", required=True)
@click.option("--down-for", default=0.0, show_default=True, help="Seconds without a Consul between stop and start.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for a leader after the start.")
def consul_restart(dir, down_for, timeout) -> None:
    """Restart the cluster's Consul server with its data kept (clusters started with --consul-mode server)."""
    _cluster(dir).consul_restart(down_for, timeout)


@local.command("consul-fault")
@click.argument("kind", type=click.Choice(["kill-leader", "restart-leader", "rolling-restart", "freeze"]))
@click.option("--dir", "dir", required=True)
@click.option("--seconds", default=3.0, show_default=True,
              help="freeze: how long every server stays stopped; restart-leader: how long it stays down.")
def consul_fault(kind, dir, seconds) -> None:
    """Consul servers' faults (a cluster started with --consul-servers 3): SIGKILL the Raft leader (it stays
    down: `local consul-fault restart-leader` after a kill-leader brings back any server that is down),
    restart the leader, restart every server in turn, or SIGSTOP them all for --seconds."""
    import os

    from ..local import consul_cluster as cc
    t0 = time.monotonic()
    if kind == "kill-leader":
        click.echo(f"killed the Consul leader {os.path.basename(cc.kill_leader(dir))}")
    elif kind == "restart-leader":
        down = [d for d in cc.server_dirs(dir) if not cc.ConsulAgent.is_running(d)]
        for d in down or [cc.leader_dir(dir)]:
            cc.restart_server(d, down_for=seconds if not down else 0.0)
            click.echo(f"restarted {os.path.basename(d)}")
    elif kind == "rolling-restart":
        cc.rolling_restart(dir)
        click.echo("restarted every Consul server in turn")
    else:
        cc.freeze(dir, seconds)
        click.echo(f"froze every Consul server for {seconds:g}s")
    click.echo(f"done in {time.monotonic() - t0:.1f}s")


@local.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.option("--dir", "dir", required=True)
@click.argument("args", nargs=-1, type=click.UNPROCESSED, required=True)
def exec_(node, dir, args) -> None:
    """Run `mysqlpilot ARGS` as NODE does (its config, socket, state): `docker exec` for a local cluster.

    Example: mysqlpilot local exec node1 --dir DIR -- snapshot --force
    """
    sys.exit(_cluster(dir).exec_in(node, list(args)))


@local.command("restore")
@click.option("--dir", "dir", required=True)
@click.option("--name", "name", required=True, help="Names the restore: DIR/restores/NAME.")
@click.option("--to-time", "to_time", help="YYYY-MM-DD HH:MM:SS, this machine's time zone unless --utc.")
@click.option("--to-gtid", "to_gtid")
@click.option("--utc", is_flag=True)
@click.option("--force", is_flag=True, help="Cross a gap in the archive.")
def restore_cmd(dir, name, to_time, to_gtid, utc, force) -> None:
    """Restore the cluster's data to a point in time and start it as a standalone server."""
    from ..flavors import get_flavor
    from ..local.restores import LocalRestores
    from .archive import target_from
    cfg = _cluster(dir).cfg()
    target = target_from(to_time, to_gtid, utc, get_flavor(cfg.flavor, cfg.flavor_version).dialect)
    LocalRestores(dir, cfg, echo=click.echo).restore(name, target, force)


@local.command("down")
@click.option("--dir", "dir", required=True)
@click.option("--kill", is_flag=True, help="SIGKILL every node and Consul at once (a power cut) instead of "
              "stopping them in turn; the data is kept.")
def down(dir, kill) -> None:
    """Stop every node (replicas first), its HAProxy and Consul; keep the data."""
    from ..local.haproxy import LocalHAProxy
    from ..local.restores import LocalRestores
    LocalRestores(dir, _cluster(dir).cfg(), echo=click.echo).stop_all()
    _cluster(dir).down(kill)
    if LocalHAProxy(dir).stop():
        click.echo("haproxy stopped")


@local.command("list")
@click.option("--dir", "dir", required=True)
def list_(dir) -> None:
    """Nodes with their addresses and whether they run."""
    for line in _cluster(dir).list():
        click.echo(line)


def register(group: click.Group) -> None:
    group.add_command(local)

"""`mysqlpilot snapshot` (the periodic task) and `mysqlpilot snapshot list`."""
from __future__ import annotations

import json
import time

import click


@click.group("snapshot", invoke_without_command=True)
@click.option("--force", is_flag=True, help="Take one now even if the last one is recent.")
@click.pass_context
def snapshot(ctx: click.Context, force: bool) -> None:
    """Periodic task: on the primary, take a snapshot when one is due (or with --force)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..snapshot_job import run_snapshot_job
    m = run_snapshot_job(ctx.obj.config(), force=force)
    if m is not None:
        click.echo(f"snapshot {m.id}: {m.bytes} bytes, sha256 {m.sha256[:12]}..., GTID {m.gtid or '-'}")


@snapshot.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def snapshot_list(obj, as_json: bool) -> None:
    """List the snapshots in the store, newest first; the one Consul points new replicas at is marked."""
    from ..dcs.consul import ConsulDCS
    from ..snapshot_catalog import list_legacy, list_snapshots
    from ..store import open_store
    cfg = obj.config()
    store = open_store(cfg)
    snaps = list_snapshots(store, cfg.cluster)
    old = {m.id for m in list_legacy(store, cfg.cluster)}
    snaps += [m for m in list_legacy(store, cfg.cluster) if m.id not in {s.id for s in snaps}]
    try:
        latest = getattr(ConsulDCS.from_config(cfg).get_latest_snapshot(), "id", None)
    except Exception:  # noqa: BLE001 - listing the store must work while Consul is down
        latest = None
    if as_json:
        click.echo(json.dumps([dict(s.__dict__, latest=(s.id == latest), old_layout=(s.id in old)) for s in snaps],
                              indent=1))
        return
    if not snaps:
        click.echo("no snapshots in the store")
        return
    click.echo(f"{'id':<36} {'taken':<19} {'MB':>9} {'source':<12} gtid")
    for s in snaps:
        mark = (" *latest" if s.id == latest else "") + (" (old layout: names no cluster)" if s.id in old else "")
        click.echo(f"{s.id:<36} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(s.created)):<19} "
                   f"{s.bytes / 1e6:>9.1f} {s.source:<12} {s.gtid or '-'}{mark}")


@snapshot.command("verify")
@click.argument("snapshot_id")
@click.pass_obj
def snapshot_verify(obj, snapshot_id: str) -> None:
    """Read a snapshot back from the store and check it against its manifest's sha256 and size."""
    from ..snapshot import verify_snapshot
    from ..snapshot_catalog import find_snapshot
    from ..store import open_store
    cfg = obj.config()
    store = open_store(cfg)
    m = find_snapshot(store, cfg.cluster, snapshot_id)
    click.echo(f"snapshot {m.id}: intact ({verify_snapshot(store, m)})")


@snapshot.command("use")
@click.argument("snapshot_id")
@click.option("--no-verify", is_flag=True, help="Publish without reading the object back first.")
@click.pass_obj
def snapshot_use(obj, snapshot_id: str, no_verify: bool) -> None:
    """Point new and rebuilt replicas at this snapshot (say the newest one is corrupt)."""
    from ..dcs.consul import ConsulDCS
    from ..snapshot import verify_snapshot
    from ..snapshot_catalog import find_snapshot
    from ..store import open_store
    cfg = obj.config()
    dcs = ConsulDCS.from_config(cfg)
    store = open_store(cfg)
    m = find_snapshot(store, cfg.cluster, snapshot_id)
    if not no_verify:
        verify_snapshot(store, m)
    dcs.set_latest_snapshot(m.__dict__.copy())
    click.echo(f"new replicas now restore {m.id} (taken {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(m.created))}"
               f", GTID {m.gtid or '-'}); they replicate from there, so the primary must still hold its binlogs "
               "from that GTID on")


def register(group: click.Group) -> None:
    group.add_command(snapshot)

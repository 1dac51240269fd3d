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
    from ..snapshot import list_snapshots
    from ..store import open_store
    cfg = obj.config()
    snaps = list_snapshots(open_store(cfg))
    try:
        latest = (ConsulDCS.from_config(cfg).get_latest_snapshot() or {}).get("id")
    except Exception:  # noqa: BLE001 - listing the store must work while Consul is down
        latest = None
    if as_json:
        click.echo(json.dumps([dict(s.__dict__, latest=(s.id == latest)) for s in snaps], indent=1))
        return
    if not snaps:
        click.echo("no snapshots in the store")
        return
    click.echo(f"{'id':<36} {'taken':<19} {'MB':>9} {'source':<12} gtid")
    for s in snaps:
        mark = " *latest" if s.id == latest else ""
        click.echo(f"{s.id:<36} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(s.created)):<19} "
                   f"{s.bytes / 1e6:>9.1f} {s.source:<12} {s.gtid or '-'}{mark}")


def register(group: click.Group) -> None:
    group.add_command(snapshot)

"""`mysqlpilot snapshot` (the periodic task) and `mysqlpilot snapshot list`."""
from __future__ import annotations

import json
import time

import click


@click.group("snapshot", invoke_without_command=True)
@click.option("--force", is_flag=True, help="Take one now even if the last one is recent (after waiting for one "
              "already running on this node).")
@click.option("--no-wait", is_flag=True, hidden=True, help="Skip instead when a snapshot job runs (the HA loop's).")
@click.pass_context
def snapshot(ctx: click.Context, force: bool, no_wait: bool) -> None:
    """Periodic task: take a snapshot when one is due, on the replica chosen for it or else the primary
    (--force: on the primary, now)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..snapshot_job import run_snapshot_job
    m = run_snapshot_job(ctx.obj.config(), force=force, wait=force and not no_wait)
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
@click.option("--restore", "full", is_flag=True, help="Prove it restorable: restore it into a scratch datadir "
              "under state_dir, replay the archive to a GTID a healthy replica holds, and compare every table's "
              "checksum with that replica's (docs/backup.md).")
@click.pass_obj
def snapshot_verify(obj, snapshot_id: str, full: bool) -> None:
    """Read a snapshot back from the store and check it against its manifest's sha256 and size."""
    from ..snapshot import verify_snapshot
    from ..snapshot_catalog import find_snapshot
    from ..store import open_store
    cfg = obj.config()
    store = open_store(cfg)
    m = find_snapshot(store, cfg.cluster, snapshot_id)
    click.echo(f"snapshot {m.id}: intact ({verify_snapshot(store, m)})")
    if not full:
        return
    from ..dcs.consul import ConsulDCS
    from ..flavors import get_flavor
    from ..snapshot_verify import healthy_replica, verify
    flavor = get_flavor(cfg.flavor, cfg.flavor_version)
    srv, name = healthy_replica(cfg, flavor, ConsulDCS.from_config(cfg))
    try:
        v = verify(cfg, flavor, store, m, srv, name, echo=click.echo)
    finally:
        if srv is not None:
            srv.close()
    click.echo(v.line())
    if not v.ok:
        raise SystemExit(1)


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


@snapshot.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be removed, and why each other one stays.")
@click.pass_obj
def snapshot_prune(obj, dry_run: bool) -> None:
    """Remove the snapshots retention no longer keeps (snapshot_keep, snapshot_keep_seconds); the primary
    also does this after each snapshot it publishes."""
    from ..dcs.consul import ConsulDCS
    from ..errors import PilotError
    from ..snapshot_retention import Retention, prune
    from ..store import open_store
    cfg = obj.config(credentials=False)        # the store and Consul only: no MySQL password needed
    rule = Retention.from_config(cfg)
    try:
        latest = ConsulDCS.from_config(cfg).get_latest_snapshot()
    except PilotError as exc:
        # Without latest a prune could remove the snapshot new replicas are told to restore.
        raise PilotError(f"snapshot prune needs Consul's snapshots/latest and could not read it ({exc}); "
                         "retry when Consul answers") from None
    store = open_store(cfg)
    from ..flavors import get_flavor
    verdicts, removed = prune(store, cfg.cluster, getattr(latest, "id", None), rule, time.time(),
                              dry_run=dry_run, echo=click.echo,
                              dialect=get_flavor(cfg.flavor, cfg.flavor_version).dialect)
    for v in verdicts:
        if v.keep:
            click.echo(f"keep snapshot {v.manifest.id} ({v.why})")
    gone = [v for v in verdicts if not v.keep]
    if dry_run:
        click.echo(f"dry run: {len(gone)} of {len(verdicts)} snapshots would be removed")
    else:
        click.echo(f"{len(removed)} of {len(verdicts)} snapshots removed"
                   + (f"; {len(gone) - len(removed)} could not be (see above)" if len(removed) < len(gone) else ""))
        if len(removed) < len(gone):
            raise SystemExit(1)


def register(group: click.Group) -> None:
    group.add_command(snapshot)

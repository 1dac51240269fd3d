"""`mysqlpilot archive` (the job that streams the primary's binlogs into the store), `archive status`,
and `mysqlpilot restore --to-time/--to-gtid --into DIR` (issue 22)."""
from __future__ import annotations

import calendar
import signal
import threading
import time
from typing import Optional

import click

from ..errors import PilotError


@click.group("archive", invoke_without_command=True)
@click.pass_context
def archive(ctx: click.Context) -> None:
    """The archive job: on the primary, stream binlogs into the store (config key archive)."""
    if ctx.invoked_subcommand is not None:
        return
    cfg = ctx.obj.config()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if not cfg.archive:
        click.echo("archive: off (config key archive); idle until stopped")
        stop.wait()         # a job that exits is restarted at once: idle instead
        return
    from ..binlog_archiver import Archiver
    from ..flavors import get_flavor
    from ..sqlclient import Server
    from ..store import open_store
    flavor = get_flavor(cfg.flavor, cfg.flavor_version)
    Archiver(cfg, flavor, open_store(cfg),
             lambda: Server(flavor, socket=cfg.socket, user="root", password=cfg.root_password,
                            read_timeout=10)).loop(stop)


@archive.command("status")
@click.pass_obj
def archive_status(obj) -> None:
    """What the store's binlog archive holds: its runs, what each covers, and any gap."""
    from ..binlog_catalog import read_runs
    from ..pitr_plan import covered
    from ..store import open_store
    cfg = obj.config(credentials=False)
    runs = read_runs(open_store(cfg), cfg.cluster)
    if not runs:
        click.echo("the archive is empty" + ("" if cfg.archive else " (config key archive is off)"))
        return
    click.echo(f"{'run':<40} {'from file':<18} {'files':>5} {'txns':>7} {'MB':>8}  covered until")
    for r in runs:
        n = sum(len(f.transactions()) for f in r.files)
        mb = sum(f.end for f in r.files) / 1e6
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.covered_until)) if r.covered_until else "-"
        click.echo(f"{r.manifest.id:<40} {r.manifest.first_file:<18} {len(r.files):>5} {n:>7} {mb:>8.1f}  {until}"
                   + (f"  GAP before it: {r.manifest.gap}" if r.manifest.gap else ""))
    click.echo(covered(runs))


def parse_time(text: str, utc: bool) -> int:
    try:
        tm = time.strptime(text.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise PilotError(f"--to-time {text!r} is not YYYY-MM-DD HH:MM:SS") from None
    return int(calendar.timegm(tm) if utc else time.mktime(tm))


def target_from(to_time: Optional[str], to_gtid: Optional[str], utc: bool, dialect: str):
    """The restore target the options name: exactly one of --to-time and --to-gtid, checked."""
    from .. import gtid as gtidlib
    from ..pitr_plan import Target
    if bool(to_time) == bool(to_gtid):
        raise PilotError("name exactly one of --to-time and --to-gtid")
    why = gtidlib.problem(dialect, to_gtid) if to_gtid else ""
    if why:
        raise PilotError(f"--to-gtid: {why}")
    return Target(time=parse_time(to_time, utc) if to_time else None, gtid=to_gtid)


@click.command("restore")
@click.option("--to-time", "to_time", help="Replay transactions committed up to this second "
              "(YYYY-MM-DD HH:MM:SS, this machine's time zone unless --utc).")
@click.option("--to-gtid", "to_gtid", help="Replay until this GTID set is applied.")
@click.option("--utc", is_flag=True, help="--to-time is in UTC.")
@click.option("--into", "into", required=True, type=click.Path(file_okay=False),
              help="A new, empty directory for the datadir.")
@click.option("--force", is_flag=True, help="Cross a gap in the archive (transactions will be missing).")
@click.pass_obj
def restore(obj, to_time: Optional[str], to_gtid: Optional[str], utc: bool, into: str, force: bool) -> None:
    """Build a datadir at a point in time: the newest snapshot before it plus the archived binlogs."""
    from ..flavors import get_flavor
    from ..pitr_restore import restore_to_point
    from ..store import open_store
    cfg = obj.config()
    flavor = get_flavor(cfg.flavor, cfg.flavor_version)
    target = target_from(to_time, to_gtid, utc, flavor.dialect)
    restore_to_point(cfg, flavor, open_store(cfg), target, into, force=force, echo=click.echo)


def register(group: click.Group) -> None:
    group.add_command(archive)
    group.add_command(restore)

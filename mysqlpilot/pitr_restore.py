"""`mysqlpilot restore --to-time/--to-gtid --into DIR`: a datadir at a point in time.

The newest snapshot before the target, restored into DIR; the archived binlog files the plan names,
each read back and checked against its segments' sha256, cut at the target; a private mysqld on DIR
(socket only, no network) that replays them with the server's own binlog client piped into its own
command-line client; then a check that the server holds exactly the GTIDs the plan reached. The plan is
made (and a target outside the archive refused) before anything is downloaded.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

from . import gtid as gtidlib
from . import mysqld
from .binlog_catalog import ArchiveRun, read_runs, segment_key
from .errors import PilotError
from .model import SnapshotManifest
from .pitr_plan import Plan, PlanError, Step, Target, covered, plan
from .snapshot import restore_snapshot
from .snapshot_catalog import list_snapshots
from .sqlclient import Server

log = logging.getLogger(__name__)


@dataclass
class Result:
    datadir: str
    snapshot: str
    gtid: str
    txns: int
    seconds: float
    inspected: Any = None       # what `inspect` returned from the restored server


def pick_snapshot(snaps: List[SnapshotManifest], target: Target, dialect: str,
                  runs: List[ArchiveRun]) -> SnapshotManifest:
    """The newest snapshot before the target: for a GTID target, one that lacks part of it (history is a line,
    so it is not past it) or holds nothing beyond it; for a time, one taken by then."""
    def before(s: SnapshotManifest) -> bool:
        if target.gtid:
            return (not gtidlib.contains(dialect, s.gtid, target.gtid)
                    or gtidlib.contains(dialect, target.gtid, s.gtid))
        return s.created <= (target.time or 0)
    ok = [s for s in snaps if s.gtid and before(s)]
    if not ok:
        oldest = min(snaps, key=lambda s: s.created) if snaps else None
        what = (f"the oldest is {oldest.id} ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(oldest.created))}, "
                f"GTID {oldest.gtid or '-'})" if oldest else "the store holds none")
        raise PilotError(f"no snapshot is older than {target.describe()}: {what}; {covered(runs)}")
    return max(ok, key=lambda s: s.created)


def fetch_file(store, cluster: str, runs: List[ArchiveRun], step: Step, path: str) -> int:
    """Write the file's bytes [0, step.stop) to `path`, each segment checked against its sha256, and
    return how many were fetched. Between the file's first segment (its header: the binlog client reads
    the format description there before it seeks to --start-position) and the segment holding
    step.start the file is left sparse: a restore from a recent snapshot does not download what the
    snapshot already holds."""
    f = next(f for r in runs if r.manifest.id == step.run for f in r.files if f.name == step.file)
    got = 0
    with open(path, "wb") as out:
        for s in f.segments:
            if s.start >= step.stop:
                break
            if s.start > 0 and s.end <= step.start:
                continue
            out.seek(s.start)
            got += s.end - s.start
            data = store.get_bytes(segment_key(cluster, s.run, s.file, s.start))
            if hashlib.sha256(data).hexdigest() != s.sha256 or len(data) != s.end - s.start:
                raise PilotError(f"archive segment {segment_key(cluster, s.run, s.file, s.start)} is corrupt "
                                 "(its sha256 or size differs from its manifest); restore to a point before it")
            out.write(data[:step.stop - s.start])
        out.truncate(step.stop)
    return got


def _replay(cfg, flavor, wcfg, path: str, step: Step) -> None:
    binlog = [cfg.binlog_tool or flavor.binlog_tool, f"--start-position={step.start}", path]
    with mysqld.client_defaults_file("root", cfg.root_password, socket=wcfg.socket,
                                     dir=wcfg.state_dir) as df:
        client = [cfg.client_tool or flavor.client_tool, f"--defaults-extra-file={df}", "--binary-mode"]
        src = subprocess.Popen(binlog, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        dst = subprocess.run(client, stdin=src.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        src.stdout.close()
        serr = src.stderr.read().decode(errors="replace")
        src.wait()
    if src.returncode != 0:
        raise PilotError(f"replaying {step.file} (run {step.run}): {binlog[0]} exited {src.returncode}: "
                         f"{serr.strip().splitlines()[-1:] or ''}")
    if dst.returncode != 0:
        err = dst.stderr.decode(errors="replace").strip().splitlines()
        raise PilotError(f"replaying {step.file} (run {step.run}): {client[0]} exited {dst.returncode}: "
                         f"{err[-1] if err else 'no message'}")


def _work_config(cfg, into: str, work: str):
    # The socket in a short directory of its own: a Unix socket path has at most 107 bytes.
    sockdir = tempfile.mkdtemp(prefix="mysqlpilot-restore-")
    for d in (work, sockdir):           # mysqld writes its pid file and socket there
        mysqld.chown_tree(d, cfg.mysqld_user)
    return cfg.with_overrides(datadir=into, state_dir=work, socket=os.path.join(sockdir, "mysqld.sock"),
                              mycnf=os.path.join(work, "my.cnf"), bind_address="127.0.0.1",
                              binlog_expire_seconds=0)


def _make_work(into: str) -> str:
    work = into.rstrip("/") + ".restore-work"
    if os.path.exists(work):
        raise PilotError(f"{work} exists (a restore into {into} is running, or one failed): remove it first")
    os.makedirs(work, mode=0o750)
    return work


def _cleanup(work: str, wcfg) -> None:
    shutil.rmtree(work, ignore_errors=True)         # made by this restore, as is the socket's directory
    if wcfg is not None:
        shutil.rmtree(os.path.dirname(wcfg.socket), ignore_errors=True)


def _fetch_and_apply(cfg, flavor, store, runs, p: Plan, wcfg, seed: str, echo, inspect=None):
    paths, fetched = [], 0
    for i, step in enumerate(p.steps):
        path = os.path.join(wcfg.state_dir, f"{i:04d}-{step.file}")
        fetched += fetch_file(store, cfg.cluster, runs, step, path)
        paths.append(path)
    echo(f"restore: {len(paths)} binlog file(s), {fetched / 1e6:.1f} MB of archive fetched and checked; "
         "starting a private mysqld")
    return _apply(cfg, flavor, wcfg, seed, p, paths, echo, inspect)


def restore_to_point(cfg, flavor, store, target: Target, into: str, force: bool = False,
                     echo: Callable[[str], None] = print, snapshot: Optional[SnapshotManifest] = None,
                     inspect: Optional[Callable[[Server], Any]] = None) -> Result:
    """`snapshot`: start from this one (else the newest before the target). `inspect`: called with the
    restored server after the replay and the check, before it stops (verification reads checksums)."""
    t0 = time.monotonic()
    into = os.path.abspath(into)
    if os.path.exists(into) and (not os.path.isdir(into) or os.listdir(into)):
        raise PilotError(f"--into {into} exists and is not an empty directory: a restore builds a new datadir; "
                         "name a new one")
    runs = read_runs(store, cfg.cluster)
    snap = snapshot or pick_snapshot(list_snapshots(store, cfg.cluster), target, flavor.dialect, runs)
    p = plan(flavor.dialect, snap.gtid, runs, target, force)
    for g in p.gaps:
        echo(f"WARNING: crossing a gap in the archive (--force): {g}")
    echo(f"restore: snapshot {snap.id} (GTID {snap.gtid}), then {p.txns} archived transactions from "
         f"{len(p.steps)} binlog file(s), to {target.describe()}")
    work = _make_work(into)
    wcfg, ok = None, False
    try:
        wcfg = _work_config(cfg, into, work)
        echo(f"restore: downloading and preparing snapshot {snap.id} ({snap.bytes / 1e6:.1f} MB)")
        gtid = restore_snapshot(wcfg, flavor, store, snap, datadir=into, mysqld_user=wcfg.mysqld_user)
        if gtid and gtid != snap.gtid:
            p = plan(flavor.dialect, gtid, runs, target, force)
        result, seen = _fetch_and_apply(cfg, flavor, store, runs, p, wcfg, gtid or snap.gtid, echo, inspect)
        ok = True
    finally:
        _cleanup(work, wcfg)
        if not ok:
            echo(f"restore failed; {into} is left as it is for inspection (this restore made it)")
    secs = time.monotonic() - t0
    echo(f"restore: {into} holds GTID {result} ({p.txns} transactions replayed) in {secs:.1f}s")
    return Result(into, snap.id, result, p.txns, secs, seen)


def catch_up(cfg, flavor, store, datadir: str, seed: str, within: str,
             echo: Callable[[str], None]) -> Optional[str]:
    """A datadir just restored from a snapshot holding `seed`: replay what the archive holds past it and
    the primary holds too (`within`), so a new replica never needs binlogs the primary may have purged.
    Returns the GTID set it then holds, or None when the archive adds nothing (or cannot: a gap, said in
    one line; replication decides)."""
    runs = read_runs(store, cfg.cluster)
    try:
        p = plan(flavor.dialect, seed, runs, Target(), within=within)
    except PlanError as exc:
        echo(f"not replaying the binlog archive: {exc}")
        return None
    if not p.steps:
        return None
    echo(f"replaying {p.txns} archived transactions past the snapshot ({len(p.steps)} binlog file(s))")
    work = _make_work(datadir)
    wcfg = None
    try:
        wcfg = _work_config(cfg, datadir, work)
        have, _ = _fetch_and_apply(cfg, flavor, store, runs, p, wcfg, seed, echo)
    finally:
        _cleanup(work, wcfg)
    return have


def _apply(cfg, flavor, wcfg, seed: str, p: Plan, paths: List[str], echo, inspect=None):
    proc = mysqld.start_mysqld(wcfg, flavor, extra_args=["--skip-networking", "--read-only=OFF"]
                               + (["--super-read-only=OFF"] if flavor.has_super_read_only else []))
    try:
        mysqld.wait_ready(wcfg, 600, proc)
        srv = Server(flavor, socket=wcfg.socket, user="root", password=cfg.root_password, read_timeout=600)
        try:
            if seed and not gtidlib.contains(flavor.dialect, srv.gtid_executed() or "", seed):
                srv.seed_gtid(seed)
            for i, (step, path) in enumerate(zip(p.steps, paths), 1):
                _replay(cfg, flavor, wcfg, path, step)
                echo(f"restore: replayed {i}/{len(p.steps)}: {step.file} of run {step.run}, {step.txns} "
                     f"transactions, to {step.last_gtid}")
            have = srv.gtid_executed() or ""
            if flavor.replayed_gtids_sql:
                have = gtidlib.union_all(flavor.dialect, [have, str(srv.scalar(flavor.replayed_gtids_sql) or "")])
            if p.reached and not gtidlib.contains(flavor.dialect, have, p.reached):
                raise PilotError(f"after the replay the server holds GTID {have}, short of {p.reached}: the "
                                 "archive and the snapshot disagree; do not use this datadir")
            return have, (inspect(srv) if inspect else None)
        finally:
            srv.close()
    finally:
        mysqld.stop_mysqld(wcfg)
        proc.wait()

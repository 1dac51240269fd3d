"""Archive retention: the binlog files no kept snapshot needs go with the snapshots a prune removes.

A restore starts from a kept snapshot and replays only transactions that snapshot lacks, so a file whose
every transaction the oldest kept snapshot holds is never read again. The live file of the newest run is
never removed, and run manifests stay (they are tiny, and a run's start set decides how far the run
before it is trusted)."""
from __future__ import annotations

import logging
from typing import Callable, List, Tuple

from . import gtid as gtidlib
from .binlog_catalog import ArchiveFile, ArchiveRun, read_runs, segment_key
from .store import Store

log = logging.getLogger(__name__)


def unneeded(runs: List[ArchiveRun], oldest_kept_gtid: str, dialect: str) -> List[ArchiveFile]:
    """Files every transaction of which the oldest kept snapshot holds. Pure."""
    if not oldest_kept_gtid or not runs:
        return []
    live = runs[-1].files[-1] if runs[-1].files else None
    return [f for r in runs for f in r.files if f is not live
            and all(gtidlib.contains(dialect, oldest_kept_gtid, t.gtid) for t in f.transactions())]


def prune_archive(store: Store, cluster: str, oldest_kept_gtid: str, dialect: str, dry_run: bool = False,
                  echo: Callable[[str], None] = log.info) -> Tuple[int, int]:
    """(files, objects) removed, or that would be with dry_run. Manifests go before their bytes, so an
    interrupted prune leaves only bytes no manifest names (ignored by restores)."""
    files = unneeded(read_runs(store, cluster), oldest_kept_gtid, dialect)
    objects = 0
    for f in files:
        if dry_run:
            echo(f"would remove archived binlog {f.name} of run {f.run} ({len(f.segments)} segments: the oldest "
                 "kept snapshot holds all of it)")
            continue
        for s in f.segments:
            store.delete(segment_key(cluster, s.run, s.file, s.start, "json"))
            store.delete(segment_key(cluster, s.run, s.file, s.start))
            objects += 2
        echo(f"removed archived binlog {f.name} of run {f.run} ({len(f.segments)} segments)")
    return len(files), objects

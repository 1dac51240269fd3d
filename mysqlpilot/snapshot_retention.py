"""Snapshot retention: which of a cluster's snapshots the store keeps, and pruning the rest.

Kept: the newest `keep` snapshots, every snapshot younger than `keep_seconds`, the one Consul's
`snapshots/latest` names and every snapshot newer than it (a replica restores latest; an operator who
pointed latest at an older one with `snapshot use` wants the ones after it too), and anything the cluster's
own snapshot job did not write (a manifest naming no cluster was moved there by hand). `keep` is at least 2:
a replica that began restoring the previous newest snapshot must not lose it under its feet. So the kept
snapshots are always a run of the newest ones, and a prune never opens a hole in the middle.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from .errors import PilotError
from .model import SnapshotManifest
from .snapshot_catalog import list_snapshots, snapshot_dir
from .store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    keep: int                 # the newest this many (0: keep every snapshot, prune nothing)
    keep_seconds: int = 0     # and every one younger than this (0: by count alone)

    @classmethod
    def from_config(cls, cfg) -> "Retention":
        return cls(int(cfg.snapshot_keep), int(cfg.snapshot_keep_seconds))


@dataclass(frozen=True)
class Verdict:
    manifest: SnapshotManifest
    keep: bool
    why: str


def plan(snaps: List[SnapshotManifest], cluster: str, latest_id: Optional[str], rule: Retention,
         now: float) -> List[Verdict]:
    """One verdict per snapshot, newest first. Pure: the prune and its --dry-run print the same plan."""
    snaps = sorted(snaps, key=lambda m: m.created, reverse=True)
    ids = [m.id for m in snaps]
    at_latest = ids.index(latest_id) if latest_id in ids else -1
    out = []
    for i, m in enumerate(snaps):
        age = now - m.created
        if rule.keep == 0:
            why = "snapshot_keep is 0: every snapshot is kept"
        elif m.id == latest_id:
            why = "Consul's snapshots/latest: new replicas restore it"
        elif i < at_latest:
            why = "newer than snapshots/latest"
        elif i < rule.keep:
            why = f"one of the newest {rule.keep} (snapshot_keep)"
        elif rule.keep_seconds and age < rule.keep_seconds:
            why = f"younger than snapshot_keep_seconds ({rule.keep_seconds}s)"
        elif m.cluster != cluster:
            why = "its manifest names no cluster (moved here by hand): never pruned"
        else:
            out.append(Verdict(m, False, f"beyond the newest {rule.keep}"
                               + (f" and older than {rule.keep_seconds}s" if rule.keep_seconds else "")))
            continue
        out.append(Verdict(m, True, why))
    return out


def remove_snapshot(store: Store, cluster: str, m: SnapshotManifest) -> int:
    """The manifest first (the snapshot stops being listed or restorable), then the rest of its directory.
    Only this snapshot's own directory: another cluster's objects, or ours elsewhere, are never touched."""
    base = snapshot_dir(cluster, m.id)
    store.delete(f"{base}/manifest.json")
    rest = [k for k in store.list(f"{base}/") if k.startswith(f"{base}/")]
    for key in rest:
        store.delete(key)
    return 1 + len(rest)


def prune(store: Store, cluster: str, latest_id: Optional[str], rule: Retention, now: float,
          dry_run: bool = False, echo: Callable[[str], None] = log.info,
          dialect: str = "") -> Tuple[List[Verdict], List[str]]:
    """Apply the plan; returns it and the ids removed. A snapshot that cannot be removed is said in one
    line and left (the next prune tries again); the others still go. With `dialect`, the binlog archive's
    files that the oldest kept snapshot no longer needs go too."""
    verdicts = plan(list_snapshots(store, cluster), cluster, latest_id, rule, now)
    removed = []
    for v in verdicts:
        if v.keep:
            continue
        if dry_run:
            echo(f"would remove snapshot {v.manifest.id} ({v.why})")
            continue
        try:
            n = remove_snapshot(store, cluster, v.manifest)
        except PilotError as exc:
            echo(f"snapshot {v.manifest.id} not removed: {exc}")
            continue
        removed.append(v.manifest.id)
        echo(f"removed snapshot {v.manifest.id} ({v.why}; {n} objects)")
    kept = [v.manifest for v in verdicts if v.keep]
    if dialect and kept and rule.keep:
        from .binlog_retention import prune_archive
        oldest = min(kept, key=lambda m: m.created)
        prune_archive(store, cluster, oldest.gtid or "", dialect, dry_run=dry_run, echo=echo)
    return verdicts, removed

"""Where a cluster's snapshots live in a store, and finding them there.

Every cluster keeps its objects under its own name, `clusters/<cluster>/snapshots/<id>/`, so two clusters
sharing a bucket and prefix never see each other's snapshots (a new cluster must bootstrap, not "recover"
another cluster's data and passwords). Releases before this one wrote `snapshots/<id>/`, naming no cluster:
those are still read where the cluster points at one on purpose (Consul's `snapshots/latest`,
`snapshot use ID`), never picked blindly.
"""
from __future__ import annotations

import logging
import posixpath
from typing import List, Optional

from .errors import SnapshotError
from .model import SnapshotManifest
from .store import Store

log = logging.getLogger(__name__)

LEGACY_PREFIX = "snapshots"       # the layout before cluster names: shared by every cluster in the store
_warned_legacy = set()            # (store, cluster) pairs told once how to move old-layout snapshots


def cluster_prefix(cluster: str) -> str:
    return f"clusters/{cluster}/snapshots"


def snapshot_dir(cluster: str, sid: str) -> str:
    return f"{cluster_prefix(cluster)}/{sid}"


def _read(store: Store, key: str) -> SnapshotManifest:
    m = SnapshotManifest.from_json(store.get_bytes(key).decode())
    # The data object is the manifest's sibling: a snapshot moved with its directory still restores.
    m.object_key = posixpath.join(posixpath.dirname(key), posixpath.basename(m.object_key))
    return m


def _scan(store: Store, prefix: str) -> List[SnapshotManifest]:
    out = []
    for key in store.list(f"{prefix}/"):
        if key.endswith("/manifest.json"):
            try:
                out.append(_read(store, key))
            except (ValueError, TypeError, AttributeError) as exc:
                log.warning("skipping unreadable manifest %s: %s", key, exc.__class__.__name__)
    return sorted(out, key=lambda m: m.created, reverse=True)


def list_snapshots(store: Store, cluster: str) -> List[SnapshotManifest]:
    """This cluster's snapshots, newest first. A manifest in this cluster's directory that names another
    cluster was copied there by hand: skipped, and said."""
    out = []
    for m in _scan(store, cluster_prefix(cluster)):
        if m.cluster and m.cluster != cluster:
            log.warning("skipping snapshot %s in %s/: its manifest names cluster %r, not %r", m.id,
                        cluster_prefix(cluster), m.cluster, cluster)
            continue
        out.append(m)
    return out


def list_legacy(store: Store, cluster: str) -> List[SnapshotManifest]:
    """Snapshots in the old layout (`snapshots/<id>/`), which name no cluster. Says once how to move them."""
    old = _scan(store, LEGACY_PREFIX)
    if old and (store.describe(), cluster) not in _warned_legacy:
        _warned_legacy.add((store.describe(), cluster))
        log.warning("%s holds %d snapshot(s) in the old layout %s/<id>/, which names no cluster: if they are "
                    "cluster %r's, move the directory %s/ to %s/ (docs/runbooks.md, \"Snapshots in the old "
                    "layout\"); until then they are used only when named (snapshot use ID, snapshots/latest)",
                    store.describe(), len(old), LEGACY_PREFIX, cluster, LEGACY_PREFIX, cluster_prefix(cluster))
    return old


def latest_snapshot(store: Store, cluster: str) -> Optional[SnapshotManifest]:
    snaps = list_snapshots(store, cluster)
    return snaps[0] if snaps else None


def find_snapshot(store: Store, cluster: str, snapshot_id: str) -> SnapshotManifest:
    """The snapshot with this id: this cluster's, else one in the old layout (named on purpose)."""
    if not snapshot_id or "/" in snapshot_id or snapshot_id.startswith("."):
        raise SnapshotError(f"no snapshot {snapshot_id!r} in {store.describe()}; see `mysqlpilot snapshot list`")
    for base in (snapshot_dir(cluster, snapshot_id), f"{LEGACY_PREFIX}/{snapshot_id}"):
        key = f"{base}/manifest.json"
        if not store.exists(key):
            continue
        try:
            m = _read(store, key)
        except (ValueError, TypeError, AttributeError) as exc:
            raise SnapshotError(f"manifest {key} in {store.describe()} is unreadable ({exc.__class__.__name__}); "
                                "pick another snapshot") from None
        if m.cluster and m.cluster != cluster:
            raise SnapshotError(f"snapshot {snapshot_id} in {store.describe()} belongs to cluster {m.cluster!r}, "
                                f"not {cluster!r}; pick one of this cluster's (`mysqlpilot snapshot list`)")
        return m
    raise SnapshotError(f"no snapshot {snapshot_id!r} of cluster {cluster!r} in {store.describe()}; see "
                        "`mysqlpilot snapshot list`")


def locate(store: Store, cluster: str, m: SnapshotManifest) -> SnapshotManifest:
    """The manifest to restore: as published, unless its object has moved (an operator moved old-layout
    snapshots under the cluster's name after Consul's `snapshots/latest` was written)."""
    if m.cluster and m.cluster != cluster:
        raise SnapshotError(f"snapshot {m.id} belongs to cluster {m.cluster!r}, not {cluster!r}: this cluster's "
                            "snapshots/latest points at another cluster's snapshot; point it at one of this "
                            "cluster's (`mysqlpilot snapshot use ID`)")
    if m.object_key and store.exists(m.object_key):
        return m
    try:
        return find_snapshot(store, cluster, m.id)
    except SnapshotError:
        return m              # the restore then fails on the missing object, naming it

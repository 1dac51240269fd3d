"""The periodic snapshot task: only the primary exports, one node at a time, and the result is
published in Consul only after the upload and its manifest are complete."""
from __future__ import annotations

import logging
import time
from typing import Optional

from .dcs.consul import ConsulDCS
from .errors import PilotError
from .flavors import get_flavor
from .model import SnapshotManifest
from .snapshot import take_snapshot
from .statefile import StateFile
from .store import open_store

log = logging.getLogger(__name__)

LOCK = "snapshot"


def snapshot_due(latest: Optional[dict], now: float, interval: int) -> bool:
    return latest is None or now - float(latest.get("created", 0)) >= interval


def run_snapshot_job(cfg, force: bool = False, dcs: Optional[ConsulDCS] = None) -> Optional[SnapshotManifest]:
    """Returns the new manifest, or None when there was nothing to do (and says why in the log)."""
    dcs = dcs or ConsulDCS.from_config(cfg)
    leader, _ = dcs.get_leader()
    if leader is None or leader.name != cfg.node_name:
        log.info("snapshot: skipped, this node is not the primary (primary: %s)",
                 leader.name if leader else "none")
        return None
    sid = StateFile(cfg.state_dir).get("session")
    if not sid or leader.session != sid:
        log.info("snapshot: skipped, this node does not hold the leader session")
        return None
    latest = dcs.get_latest_snapshot()
    if not force and not snapshot_due(latest, time.time(), cfg.snapshot_interval):
        log.debug("snapshot: not due yet")
        return None
    # Serialise through Consul: a slow upload must not overlap the next periodic run or a forced one.
    if not dcs.acquire_lock(LOCK, sid):
        log.info("snapshot: another snapshot is running; skipped")
        return None
    try:
        store = open_store(cfg)
        store.check()
        flavor = get_flavor(cfg.flavor, cfg.flavor_version)
        manifest = take_snapshot(cfg, flavor, store, user="root", password=cfg.root_password,
                                 node_name=cfg.node_name)
        dcs.set_latest_snapshot(manifest.__dict__.copy())
        log.info("snapshot %s published as the latest (%d bytes, GTID %s)", manifest.id, manifest.bytes,
                 manifest.gtid or "-")
        return manifest
    finally:
        try:
            dcs.release_lock(LOCK, sid)
        except PilotError:
            pass

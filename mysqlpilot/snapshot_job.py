"""The periodic snapshot task: one node exports (a replica snapshot_source chooses, else the primary), one
at a time, and the result is published in Consul only after the upload and its manifest are complete,
and only if, at that moment, the primary it was taken under still holds the leader lock, this node holds
the snapshot lock, and `snapshots/latest` would not move backwards (one Consul transaction: check-session
on the leader key and on the snapshot lock, check-and-set on latest). A node runs one job at a time (a
file lock): its jobs share one session, for which Consul's acquire is re-entrant."""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, Optional

from .dcs.consul import ConsulDCS
from . import gtid as gtidlib
from . import snapshot_source
from .errors import PilotError
from .flavors import get_flavor
from .model import SnapshotManifest
from .snapshot import take_snapshot
from .statefile import StateFile, snapshot_job_lock
from .store import open_store

log = logging.getLogger(__name__)

LOCK = "snapshot"


def snapshot_due(latest: Optional[SnapshotManifest], now: float, interval: int) -> bool:
    return latest is None or now - latest.created >= interval


def unusable_for_replicas(latest: Optional[SnapshotManifest], purged: str, dialect: str) -> bool:
    """The newest snapshot lacks transactions this primary no longer has in its binlogs (MySQL's
    gtid_purged): a replica restored from it could never catch up. A node seeded by CLONE starts its
    binlogs at the clone, so once promoted it needs a snapshot of its own before the next interval."""
    if latest is None or not latest.gtid or not purged or gtidlib.problem(dialect, purged):
        return False
    return not gtidlib.contains(dialect, latest.gtid, purged)


def archive_bridges(cfg, latest: SnapshotManifest, purged: str, dialect: str) -> bool:
    """The binlog archive takes a replica restored from `latest` past `purged` (new replicas replay it
    before they replicate), so what the primary purged does not make a new snapshot urgent."""
    from .binlog_catalog import read_runs
    from .pitr_plan import Target, plan
    try:
        plan(dialect, latest.gtid, read_runs(open_store(cfg), cfg.cluster), Target(gtid=purged))
        return True
    except PilotError as exc:
        log.info("snapshot: the binlog archive cannot bridge %s to this primary's binlogs (%s)", latest.id, exc)
        return False


def purged_gtids(cfg, flavor) -> str:
    """This server's gtid_purged ("" where the flavor has none, or on any error: the interval rules)."""
    if flavor.dialect != "mysql":
        return ""
    from .sqlclient import Server
    try:
        srv = Server(flavor, socket=cfg.socket, user="root", password=cfg.root_password, read_timeout=10)
        try:
            return srv.gtid_purged()
        finally:
            srv.close()
    except PilotError as exc:
        log.info("snapshot: gtid_purged unreadable (%s); the interval alone decides", exc)
        return ""


def older_than_latest(manifest: Dict[str, Any], latest: Optional[SnapshotManifest]) -> str:
    """Why `manifest` must not replace `latest` (it would move the pointer backwards), or "".

    Judged by `created`. Not by GTID: after a failover that lost unreplicated transactions the new
    primary's position is legitimately "behind" the old primary's last snapshot (MariaDB compares
    sequence numbers per domain), and its snapshots must still win."""
    if not latest:
        return ""
    mine, theirs = float(manifest.get("created") or 0), latest.created
    if mine < theirs:
        return (f"it is older than the current latest {latest.id} (taken {theirs - mine:.0f}s "
                "later)")
    return ""


def publish(dcs: ConsulDCS, sid: str, manifest: SnapshotManifest, latest: Optional[SnapshotManifest],
            latest_index: int, tries: int = 5, leader_sid: Optional[str] = None) -> bool:
    """Make `manifest` snapshots/latest, proving in one Consul transaction that this node still holds
    the leader lock (on a replica: that `leader_sid`, the primary it followed, still does) and that latest
    is what was read at `latest_index` (and checked not newer). If
    latest changed meanwhile, read it again and re-check. False (with one log line) when refused; the
    snapshot stays in the store either way."""
    m = manifest.__dict__.copy()
    for _ in range(tries):
        why = older_than_latest(m, latest)
        if why:
            log.warning("snapshot %s not published: %s; it stays in the store (`mysqlpilot snapshot use %s` "
                        "publishes it anyway)", manifest.id, why, manifest.id)
            return False
        if dcs.publish_snapshot(sid, m, latest_index, lock=LOCK, leader_session=leader_sid):
            return True
        leader, _ = dcs.get_leader()
        if leader is None or leader.session != (leader_sid or sid):
            log.warning("snapshot %s not published: the primary it was taken under no longer holds the leader "
                        "lock (primary now: %s); it stays in the store, new replicas restore from the primary's snapshots",
                        manifest.id, leader.name if leader else "none")
            return False
        latest, latest_index = dcs.latest_snapshot_with_index()
        log.info("snapshots/latest changed during snapshot %s (now %s); checking again", manifest.id,
                 latest.id if latest else "none")
    log.warning("snapshot %s not published: refused %d times (snapshots/latest kept changing, or this node lost "
                "the snapshot lock); it stays in the store", manifest.id, tries)
    return False


def prune_after(cfg, store, latest_id: str) -> None:
    """Retention, still under the snapshot lock (so two prunes of this cluster do not interleave). Best
    effort: the new snapshot is published whatever a prune does."""
    from .snapshot_retention import Retention, prune
    rule = Retention.from_config(cfg)
    if not rule.keep:
        return
    try:
        prune(store, cfg.cluster, latest_id, rule, time.time(),
              dialect=get_flavor(cfg.flavor, cfg.flavor_version).dialect)
    except Exception as exc:  # noqa: BLE001 - published already: a prune's failure must not undo that
        log.warning("snapshot prune after %s failed: %s; the next snapshot tries again", latest_id,
                    exc if isinstance(exc, PilotError) else exc.__class__.__name__)


def verified(cfg, flavor, store, dcs, manifest: SnapshotManifest) -> bool:
    """config key snapshot_verify: prove the new snapshot restorable before it may become latest."""
    from .snapshot_verify import healthy_replica, verify
    srv, name = healthy_replica(cfg, flavor, dcs)
    try:
        v = verify(cfg, flavor, store, manifest, srv, name)
    finally:
        if srv is not None:
            srv.close()
    if v.ok:
        log.info("%s", v.line())
        manifest.verified = {"ok": True, "at": v.at, "seconds": v.seconds, "gtid": v.gtid, "tables": v.tables,
                             "reference": v.reference}
        return True
    log.error("%s; it stays in the store but is not published as latest", v.line())
    return False


def run_snapshot_job(cfg, force: bool = False, dcs: Optional[ConsulDCS] = None, wait: bool = False
                     ) -> Optional[SnapshotManifest]:
    """Returns the new manifest, or None when there was nothing to do (and says why in the log). With
    `wait`, a job already running on this node is waited for rather than counted as this one."""
    dcs = dcs or ConsulDCS.from_config(cfg)
    leader, _ = dcs.get_leader()
    sid = StateFile(cfg.state_dir).get("session")
    if leader is not None and leader.name != cfg.node_name and not force:
        return _as_replica(cfg, dcs, leader, sid)
    if leader is None or leader.name != cfg.node_name:
        log.info("snapshot: skipped, this node is not the primary (primary: %s)",
                 leader.name if leader else "none")
        return None
    if not sid or leader.session != sid:
        log.info("snapshot: skipped, this node does not hold the leader session")
        return None
    waiting = (lambda: log.info("snapshot: waiting for the snapshot job already running on this node to "
                                "finish, then taking a new one")) if wait else None
    with snapshot_job_lock(cfg.state_dir, on_wait=waiting) as mine:
        if not mine:
            log.info("snapshot: another snapshot job of this node is running; skipped")
            return None
        # Read under the lock: a job that just finished may have moved it. The index is the check-and-set
        # base of the publish: latest must not change under a long backup.
        latest, latest_index = dcs.latest_snapshot_with_index()
        if not force and not due(cfg, latest):
            return None
        if not force and not snapshot_source.primary_takes_over(latest, time.time(), cfg.snapshot_interval):
            replica, why = snapshot_source.choose(dcs.get_cluster().members, cfg.node_name)
            if replica:
                log.info("snapshot: due; left to %s, which spares the primary the backup", why)
                return None
        return _locked_job(cfg, dcs, sid, latest, latest_index, sid)


def _as_replica(cfg, dcs: ConsulDCS, leader, sid: Optional[str]) -> Optional[SnapshotManifest]:
    """A replica takes the due snapshot when snapshot_source chooses it. While it runs, the HA loop
    publishes it as snapshotting (ranked last among failover candidates); the publish proves the primary
    it followed still holds the leader lock, so a snapshot of a deposed primary's history never becomes
    latest."""
    if not sid:
        return None
    view = dcs.get_cluster()
    chosen, why = snapshot_source.choose(view.members, leader.name)
    latest = view.latest_snapshot
    if chosen != cfg.node_name or not snapshot_due(latest, time.time(), cfg.snapshot_interval):
        log.debug("snapshot: not this replica's turn (%s)", why)
        return None
    me = view.member(cfg.node_name)
    if me is None or me.replicating_from != f"{leader.host}:{leader.port}":
        # Its data must be a prefix of this primary's history, which the publish then proves still leads.
        log.info("snapshot: due, but this replica does not replicate from the primary %s yet; skipped", leader.name)
        return None
    state = StateFile(cfg.state_dir)
    with snapshot_job_lock(cfg.state_dir) as mine:
        if not mine:
            return None
        latest, latest_index = dcs.latest_snapshot_with_index()
        if not snapshot_due(latest, time.time(), cfg.snapshot_interval):
            return None
        log.info("snapshot: due, and taken here: %s", why)
        state.update(snapshotting={"pid": os.getpid(), "since": time.time()})
        try:
            _await_mark(dcs, cfg.node_name)
            return _locked_job(cfg, dcs, sid, latest, latest_index, leader.session)
        finally:
            state.update(snapshotting=None)


def _await_mark(dcs: ConsulDCS, me: str, timeout: float = 5.0) -> None:
    """Until this node's published state says it is snapshotting (the HA loop's next pass)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = dcs.member(me)
        if m is not None and m.snapshotting:
            return
        time.sleep(0.25)
    log.info("snapshot: the HA loop has not published this node as snapshotting within %.0fs; going on", timeout)


def due(cfg, latest: Optional[SnapshotManifest]) -> bool:
    if snapshot_due(latest, time.time(), cfg.snapshot_interval):
        return True
    flavor = get_flavor(cfg.flavor, cfg.flavor_version)
    purged = purged_gtids(cfg, flavor)
    if not unusable_for_replicas(latest, purged, flavor.dialect):
        log.debug("snapshot: not due yet")
        return False
    if cfg.archive and archive_bridges(cfg, latest, purged, flavor.dialect):
        log.debug("snapshot: not due yet (the binlog archive holds what this primary purged)")
        return False
    log.warning("snapshot: due now, not in %ds: the newest snapshot %s lacks transactions this primary "
                "has purged from its binlogs (%s), so a replica restored from it could not catch up",
                cfg.snapshot_interval, latest.id if latest else "-", purged)
    return True


def _locked_job(cfg, dcs: ConsulDCS, sid: str, latest: Optional[SnapshotManifest], latest_index: int,
                leader_sid: str) -> Optional[SnapshotManifest]:
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
        if cfg.snapshot_verify and not verified(cfg, flavor, store, dcs, manifest):
            return None
        if not publish(dcs, sid, manifest, latest, latest_index, leader_sid=leader_sid):
            return None
        log.info("snapshot %s published as the latest (%d bytes, GTID %s)", manifest.id, manifest.bytes,
                 manifest.gtid or "-")
        prune_after(cfg, store, manifest.id)
        return manifest
    finally:
        try:
            dcs.release_lock(LOCK, sid)
        except PilotError:
            pass

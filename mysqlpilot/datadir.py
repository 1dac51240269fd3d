"""Getting a datadir ready before mysqld starts: keep it, bootstrap the first primary, or restore the
newest snapshot (waiting for one if none exists yet). Used by `pre-start` and `run-mysqld`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import shutil
import subprocess
import time
from typing import Any, Dict, Optional

from . import clone_seed, mysqld
from .dcs.consul import ConsulDCS
from .errors import PilotError, SnapshotError
from .flavors import get_flavor
from .model import MemberState, SnapshotManifest
from .snapshot import restore_snapshot
from .snapshot_catalog import cluster_prefix, latest_snapshot, list_legacy, locate
from .sqlclient import Server
from .statefile import StateFile
from .store import open_store

log = logging.getLogger(__name__)

INIT_KEY = "initialized"          # <kv_root>/initialized: which node bootstrapped the cluster, CAS-created
ASIDE_KEY = "moved_aside"         # <kv_root>/moved_aside/<node>: moved_aside_report() of that node
RESTORE_TRIES = 3


def moved_aside_report(cfg) -> Dict[str, Any]:
    """This node's moved-aside datadirs, as status shows them: {count, limit, newest, updated}.
    pre-start and rebuild publish it under <kv_root>/moved_aside/<node>; the HA loop may publish it
    too (say, once a minute) so status also reflects copies an operator removed by hand."""
    kept = mysqld.moved_aside(cfg.datadir)
    return {"count": len(kept), "limit": cfg.max_moved_aside, "newest": kept[-1] if kept else "",
            "updated": time.time()}


def publish_moved_aside(dcs, cfg) -> None:
    """Best effort: put moved_aside_report(cfg) where status reads it."""
    try:
        dcs.put_json(f"{ASIDE_KEY}/{cfg.node_name}", moved_aside_report(cfg))
    except (PilotError, OSError) as exc:
        log.debug("could not publish the moved-aside count: %s", exc)


class Preparer:
    def __init__(self, cfg, dcs: Optional[ConsulDCS] = None):
        self.cfg = cfg
        self.flavor = get_flavor(cfg.flavor, cfg.flavor_version)
        self.dcs = dcs or ConsulDCS.from_config(cfg)
        self.state = StateFile(cfg.state_dir)

    def pre_start(self) -> str:
        """Returns what it did: kept | bootstrapped | restored | rebuilt."""
        try:
            return self._pre_start()
        finally:
            publish_moved_aside(self.dcs, self.cfg)

    def _move_aside(self) -> str:
        aside = mysqld.move_aside(self.cfg.datadir, limit=self.cfg.max_moved_aside)
        n = len(mysqld.moved_aside(self.cfg.datadir))
        if n >= self.cfg.max_moved_aside:
            log.warning("%d moved-aside datadirs now beside %s (max_moved_aside=%d): the next move aside will be "
                        "refused; remove the ones you no longer need by hand", n, self.cfg.datadir,
                        self.cfg.max_moved_aside)
        return aside

    def _pre_start(self) -> str:
        os.makedirs(self.cfg.state_dir, exist_ok=True)
        self.state.update(stopping=None, left=None, starting=True)      # until the HA loop first holds a session
        mysqld.write_mycnf(self.cfg, self.flavor)
        leader, _ = self.dcs.get_leader()          # also proves Consul is reachable, with a clear error
        if self.state.get("rebuild_reason"):
            return self.rebuild()
        if mysqld.datadir_initialised(self.cfg):
            log.info("datadir %s holds data; mysqld will start read-only and the HA loop decides its role",
                     self.cfg.datadir)
            return "kept"
        if os.path.isdir(self.cfg.datadir) and os.listdir(self.cfg.datadir):
            aside = self._move_aside()
            log.warning("datadir %s was not an initialised data directory; moved it aside to %s",
                        self.cfg.datadir, aside)
        latest = self.dcs.get_latest_snapshot()        # None also if unreadable: then wait, as for none
        if latest:
            return self.restore(latest)
        if leader is None:
            # No leader and no latest: a new cluster, or a Consul that lost its data. The store tells.
            stored = self.newest_stored_snapshot()
            if stored is not None:
                return self.recover_from_store(stored)
            if self.dcs.put_json(INIT_KEY, {"node": self.cfg.node_name, "time": time.time()}, cas=0):
                self.bootstrap()
                return "bootstrapped"
        who = (self.dcs.get_json(INIT_KEY) or {}).get("node", leader.name if leader else "another node")
        log.info("cluster was bootstrapped by %s; waiting for its first snapshot", who)
        return self.restore(self.wait_for_snapshot())

    def newest_stored_snapshot(self) -> Optional[SnapshotManifest]:
        """The newest snapshot in the store, or None if it holds none (or force_fresh_bootstrap is set).
        A store that cannot be read is an error: bootstrapping blind could start an empty cluster over
        existing data."""
        force = self.cfg.force_fresh_bootstrap
        try:
            store = open_store(self.cfg)
            newest = latest_snapshot(store, self.cfg.cluster)
            old = list_legacy(store, self.cfg.cluster) if newest is None else []
        except PilotError as exc:
            if force:
                log.warning("force_fresh_bootstrap: not checking the snapshot store (%s)", exc)
                return None
            raise PilotError(f"cannot read the snapshot store before bootstrapping a new cluster: {exc}; fix "
                             "the store settings, or set force_fresh_bootstrap to start an empty cluster "
                             "anyway") from None
        if old and not force:
            # Old-layout snapshots name no cluster: they may be another cluster's (its data, its passwords).
            # Neither restore them blindly nor bootstrap empty over what may be this cluster's only copy.
            raise PilotError(f"cluster {self.cfg.cluster!r} has no snapshots under {cluster_prefix(self.cfg.cluster)}/ "
                             f"in {store.describe()}, but {len(old)} in the old layout that name no cluster (newest "
                             f"{old[0].id}): if they are this cluster's, run `mysqlpilot snapshot use {old[0].id}` "
                             "or move them (docs/runbooks.md); to start an empty cluster, set force_fresh_bootstrap")
        if newest is not None and force:
            log.warning("force_fresh_bootstrap is set: ignoring the snapshots in %s (newest %s, taken %s) and "
                        "bootstrapping an empty cluster; unset it after this start", store.describe(), newest.id,
                        _when(newest.created))
            return None
        return newest

    def recover_from_store(self, m: SnapshotManifest) -> str:
        """Consul has no trace of the cluster but the store has snapshots: restore the newest rather
        than bootstrap an empty cluster, and publish it as the latest for the other nodes."""
        if _family(m.flavor) != _family(self.flavor.name):
            raise PilotError(f"the snapshot store's newest snapshot {m.id} is {m.flavor} {m.version}, this node "
                             f"runs {self.flavor.name} {self.flavor.version}; point store settings at this "
                             "cluster's snapshots, or set force_fresh_bootstrap to start an empty cluster")
        if not self.dcs.put_json(INIT_KEY, {"node": self.cfg.node_name, "time": time.time(),
                                            "restored_from": m.id}, cas=0):
            who = (self.dcs.get_json(INIT_KEY) or {}).get("node", "another node")
            log.info("cluster was (re)initialised by %s; waiting for its snapshot", who)
            return self.restore(self.wait_for_snapshot())
        log.warning("RECOVER: Consul holds no leader, no %s and no snapshots/latest for cluster %r, but the "
                    "snapshot store holds snapshots: restoring the newest, %s (taken %s, GTID %s), instead of "
                    "bootstrapping an empty cluster (set force_fresh_bootstrap to start empty)",
                    INIT_KEY, self.cfg.cluster, m.id, _when(m.created), m.gtid or "-")
        if not self.dcs.put_json("snapshots/latest", m.__dict__.copy(), cas=0):
            published = self.dcs.get_latest_snapshot()
            if published:
                m = published                   # someone published one meanwhile: follow it
        return self.restore(m)

    def announce(self, role: str, message: str) -> None:
        """Tell `status` what pre-start is doing. Best effort; the GTIDs last published stay (the
        election's acknowledged-commit check reads them)."""
        try:
            base = self.dcs.member(self.cfg.node_name) or MemberState(name=self.cfg.node_name, host=self.cfg.advertise_host, port=self.cfg.port,
                                      server_id=self.cfg.server_id, priority=self.cfg.priority,
                                      nofailover=self.cfg.nofailover, flavor=self.flavor.name,
                                      version=self.flavor.version)
            self.dcs.publish_member(None, dataclasses.replace(
                base, host=self.cfg.advertise_host, port=self.cfg.port, role=role, healthy=False,
                read_only=None, replicating_from=None, lag_seconds=None, message=message, updated=time.time()))
        except PilotError as exc:
            log.debug("could not publish the pre-start state: %s", exc)

    def bootstrap(self) -> None:
        """First primary: initialise the datadir and create the users from the environment."""
        self.announce("bootstrapping", "initialising the first primary's datadir")
        log.warning("BOOTSTRAP: %s initialises a new cluster %r in %s", self.cfg.node_name, self.cfg.cluster,
                    self.cfg.datadir)
        mysqld.init_datadir(self.cfg, self.flavor)
        proc = mysqld.start_mysqld(self.cfg, self.flavor)
        try:
            mysqld.wait_ready(self.cfg, timeout=120)
            srv = Server(self.flavor, socket=self.cfg.socket, user=self.flavor.bootstrap_login(), password=None)
            srv.bootstrap_users(self.cfg)
            srv.close()
        finally:
            mysqld.stop_mysqld(self.cfg)
            try:
                proc.wait(timeout=60)
            except Exception:  # noqa: BLE001 - best effort; stop_mysqld already escalated
                pass
        log.info("bootstrap done: users %s, %s%s created", "root", self.cfg.repl_user,
                 f", {self.cfg.user}" if self.cfg.user else "")

    def wait_for_snapshot(self) -> SnapshotManifest:
        deadline = time.monotonic() + self.cfg.snapshot_wait_timeout
        start = time.monotonic()
        index = 0
        last_log = 0.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SnapshotError(
                    f"no snapshot appeared in {self.cfg.snapshot_wait_timeout}s (key "
                    f"{self.cfg.kv_root}/snapshots/latest); check the primary's snapshot job "
                    "(`mysqlpilot status`) or raise snapshot_wait_timeout")
            latest, index = self.dcs.wait_latest_snapshot(index, min(10.0, left))
            if latest:
                return latest
            if time.monotonic() - last_log >= 10:
                last_log = time.monotonic()
                log.info("waiting for the first snapshot: %.0fs elapsed, giving up in %.0fs",
                         time.monotonic() - start, left)
                self.announce("waiting", f"waiting for the first snapshot; gives up in {left:.0f}s")

    def restore(self, manifest: SnapshotManifest) -> str:
        """Seed the datadir: by remote CLONE when seed_method allows and a member can donate, else from
        the snapshot `manifest` in the store. Returns cloned | restored."""
        started = time.monotonic()
        if self.seed_by_clone():
            self._note_seed("clone", started)
            return "cloned"
        store = open_store(self.cfg)
        manifest = locate(store, self.cfg.cluster, manifest)
        last: Optional[Exception] = None
        replay = bool(self.cfg.archive)
        for attempt in range(1, RESTORE_TRIES + 1):
            try:
                log.info("restoring snapshot %s (%d MB, GTID %s) from %s, attempt %d", manifest.id,
                         manifest.bytes // 1_000_000, manifest.gtid or "-", store.describe(), attempt)
                self.announce("restoring", f"restoring snapshot {manifest.id} ({manifest.bytes / 1e6:.0f} MB), "
                                           f"attempt {attempt}")
                gtid = restore_snapshot(self.cfg, self.flavor, store, manifest, datadir=self.cfg.datadir,
                                        mysqld_user=self.cfg.mysqld_user) or manifest.gtid
                if replay:
                    replay = False              # once: a failed replay falls back to the snapshot alone
                    gtid = self.catch_up(store, gtid)
                self.state.update(seed_gtid=gtid or None, rebuild_reason=None)
                self._new_server_id()
                self._note_seed(f"snapshot {manifest.id}", started)
                log.info("restored snapshot %s; the replica will start from GTID %s", manifest.id,
                         gtid or manifest.gtid)
                return "restored"
            except SnapshotError as exc:
                if "checksum" in str(exc) or "corrupt" in str(exc):
                    raise                      # retrying a corrupt object cannot help
                last = exc
            except PilotError as exc:
                last = exc
            log.warning("restore attempt %d failed: %s", attempt, last)
            time.sleep(min(30, 2 ** attempt))
        assert last is not None
        raise last

    def catch_up(self, store, gtid: str) -> str:
        """Replay the binlog archive past the snapshot: a new replica then needs from the primary only what
        the archive has not stored yet, never binlogs the primary may have purged. A replay that fails
        removes the datadir this restore just made and raises: the next attempt takes the snapshot alone."""
        from .pitr_restore import catch_up
        view = self.dcs.get_cluster()
        primary = view.member(view.leader.name) if view.leader else None
        if primary is None or not primary.gtid_executed:
            log.info("not replaying the binlog archive: no primary whose transactions bound it")
            return gtid
        self.announce("restoring", "replaying the binlog archive past the snapshot")
        try:
            have = catch_up(self.cfg, self.flavor, store, self.cfg.datadir, gtid, primary.gtid_executed, log.info)
        except (PilotError, OSError, subprocess.SubprocessError) as exc:
            shutil.rmtree(self.cfg.datadir, ignore_errors=True)
            raise PilotError(f"replaying the binlog archive onto the restored snapshot failed: {exc}; the next "
                             "attempt restores the snapshot alone and replicates the rest") from None
        return have or gtid

    def _note_seed(self, how: str, started: float) -> None:
        """For the node API's metrics (the HA process that serves them is another process)."""
        self.state.update(last_restore={"seconds": round(time.monotonic() - started, 3), "at": time.time(),
                                        "from": how})

    def seed_by_clone(self) -> bool:
        """CLONE INSTANCE FROM a healthy member (clone_seed.py); False when seed_method says store, no member
        can donate, or the clone failed (said in one line): the caller restores from the store."""
        if clone_seed.seed_method(self.cfg, self.flavor) != "clone-remote":
            return False
        view = self.dcs.get_cluster()
        donor, why = clone_seed.choose_donor(view.members, self.cfg.node_name, self.flavor,
                                             view.leader.name if view.leader else None,
                                             allow_primary=self.cfg.seed_method == "clone-remote")
        if donor is None:
            log.info("seed by remote CLONE: %s; restoring from the store", why)
            return False
        log.info("seeding by CLONE INSTANCE FROM %s", why)
        self.announce("restoring", f"cloning {donor.name} ({donor.host}:{donor.port})")
        try:
            gtid = clone_seed.clone_from(self.cfg, self.flavor, donor, datadir=self.cfg.datadir,
                                         user=self.cfg.repl_user, password=self.cfg.repl_password)
        except (PilotError, OSError, subprocess.SubprocessError) as exc:
            log.warning("%s; restoring from the store instead", exc)
            return False
        self.state.update(seed_gtid=gtid or None, rebuild_reason=None)
        self._new_server_id()
        log.info("cloned %s; the replica will start from GTID %s", donor.name, gtid or "-")
        return True

    def _new_server_id(self) -> None:
        """A restored datadir lacks whatever this node wrote as a primary after the snapshot, and the
        replication IO thread skips events carrying its own server_id: it would never get them back
        (seen in the chaos campaign: a rebuilt node ran "caught up" without them). So a restored node
        takes a new server_id, unless the configuration fixes one."""
        if not str(self.cfg.origin.get("server_id", "")).startswith(("chosen at", "derived")):
            log.warning("restored with the configured server_id %s: transactions this node wrote as a primary "
                        "after the snapshot will not replicate back to it; leave server_id unset (0)",
                        self.cfg.server_id)
            return
        old = self.cfg.server_id
        new = old
        while new == old:
            new = random.randint(1, 2 ** 32 - 1)
        self.state.update(server_id=new)
        self.cfg.values["server_id"] = new         # run-mysqld writes my.cnf from this very object
        log.info("new server_id %s (was %s): the restored datadir must fetch its own old writes again", new, old)

    def rebuild(self) -> str:
        try:
            return self._rebuild()
        finally:
            publish_moved_aside(self.dcs, self.cfg)

    def _rebuild(self) -> str:
        reason = self.state.get("rebuild_reason")
        if mysqld.datadir_initialised(self.cfg) or (os.path.isdir(self.cfg.datadir)
                                                    and os.listdir(self.cfg.datadir)):
            aside = self._move_aside()
            log.warning("REBUILD (%s): moved the datadir aside to %s (kept, not deleted)", reason, aside)
        latest = self.dcs.get_latest_snapshot()
        manifest = latest or self.wait_for_snapshot()
        self.restore(manifest)
        self.state.update(rebuild_reason=None)
        return "rebuilt"


def _family(flavor: str) -> str:
    return "mariadb" if flavor == "mariadb" else "mysql"      # MySQL and Percona share XtraBackup


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(ts or 0)))

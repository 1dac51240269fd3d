"""Seeding a replica's datadir by `CLONE INSTANCE FROM` a healthy member (MySQL 8.0.17+): the faster way
than restoring the newest snapshot from the store, which stays the fallback.

The recipient must be a running server, but this node's own mysqld is not running yet (pre-start and
rebuild prepare the datadir before it starts). So a throwaway recipient is initialised and started in a
scratch dir under state_dir, without networking and binlog, with the same plugins as every node (the
donor's active plugins must be active on the recipient). It clones the donor into a second scratch dir
(`DATA DIRECTORY`), is stopped, and the copy is renamed into the datadir the way a restore is: a datadir
holding anything is moved aside, never deleted. The copy carries the donor's GTID set (mysql.gtid_executed,
written at every commit since 8.0.17); the node seeds exactly that set and replicates the rest from the
primary with auto-position.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import List, Optional, Tuple

from . import mysqld
from .errors import PilotError, SnapshotError
from .model import MemberState

log = logging.getLogger(__name__)

ER_SPECIFIC_ACCESS_DENIED = 1227        # the donor's user lacks BACKUP_ADMIN
START_TIMEOUT = 300.0


def seed_method(cfg, flavor) -> str:
    """"clone-remote" or "store": config key seed_method, `auto` resolved by the flavor."""
    method = getattr(cfg, "seed_method", "auto") or "auto"
    if method == "auto":
        return "clone-remote" if flavor.supports_clone else "store"
    if method == "clone-remote" and not flavor.supports_clone:
        raise PilotError(f"seed_method clone-remote needs MySQL 8.0.17 or later; {flavor.name} {flavor.version} "
                         "has no CLONE plugin: set seed_method to auto or store")
    return method


def choose_donor(members: List[MemberState], me: str, flavor, leader: Optional[str], allow_primary: bool = False
                 ) -> Tuple[Optional[MemberState], str]:
    """The member to clone from, and why (or None and why none). A healthy replica with a live session
    and the very same version (CLONE refuses any other), least lagging first. The primary only with
    `allow_primary` (seed_method clone-remote, set on purpose) and no replica qualifying: under `auto` a
    seed never loads the node taking the writes, and the first replicas come from the store."""
    ok, skipped = [], []
    for m in members:
        if m.name == me:
            continue
        if not m.alive:
            # The donor gets the replication password: never a host only a key without a session names.
            skipped.append(f"{m.name} has no live Consul session")
        elif not m.healthy:
            skipped.append(f"{m.name} not healthy")
        elif m.role not in ("replica", "primary"):
            skipped.append(f"{m.name} is {m.role}")
        elif (m.flavor and m.flavor not in ("mysql", "percona")) or (m.version and m.version != flavor.version):
            skipped.append(f"{m.name} runs {m.flavor} {m.version}, not {flavor.name} {flavor.version}")
        elif m.role == "primary" and m.name != leader:
            skipped.append(f"{m.name} says primary but does not hold the lock")
        else:
            ok.append(m)
    replicas = sorted((m for m in ok if m.role == "replica"),
                      key=lambda m: (m.lag_seconds if m.lag_seconds is not None else float("inf"), m.name))
    if replicas:
        return replicas[0], f"healthy replica {replicas[0].name} (lag {replicas[0].lag_seconds}s)"
    primary = next((m for m in ok if m.role == "primary"), None) if allow_primary else None
    if not allow_primary and any(m.role == "primary" for m in ok):
        skipped.append("the primary is not cloned from under seed_method auto")
    if primary is not None:
        return primary, f"the primary {primary.name}: no healthy replica to clone from"
    return None, "no healthy member to clone from" + (f" ({'; '.join(skipped)})" if skipped else "")


def clone_from(cfg, flavor, donor: MemberState, *, datadir: str, user: str, password: str) -> str:
    """Clone `donor` into `datadir` as `user` (who needs BACKUP_ADMIN there). Returns the copy's exact GTID
    set (clone_status leaves it empty for a clone into a DATA DIRECTORY, seen on 9.7). Leaves nothing
    half-done: on failure the scratch dirs are removed and the datadir is as it was."""
    from .snapshot import _check_same_filesystem, _staged_gtid, place_datadir, unplace_datadir
    os.makedirs(cfg.state_dir, exist_ok=True)
    _check_same_filesystem(cfg.state_dir, datadir)
    limit = getattr(cfg, "max_moved_aside", None)
    if os.path.isdir(datadir) and os.listdir(datadir):
        mysqld.check_room_to_move_aside(datadir, limit)
    scratch = os.path.join(cfg.state_dir, f"seed-clone-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
    os.makedirs(scratch)
    mysqld.chown_tree(scratch, cfg.mysqld_user)
    target = os.path.join(scratch, "clone")
    aside, placed = None, False
    try:
        with _recipient(cfg, flavor, scratch) as sock:
            _clone(flavor, sock, donor, user, password, target)
        # The copy carries the donor's replication settings but none of its relay logs: START REPLICA would
        # fail (1872, seen on 9.7). Start it once, privately, to drop them and read its exact GTID set.
        gtid = _staged_gtid(cfg, flavor, "root", cfg.root_password, target,
                            before=["SET GLOBAL super_read_only = OFF", *flavor.reset_replica_all()])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(target, "auto.cnf"))       # the node makes its own server_uuid
        aside = place_datadir(target, datadir, limit)
        placed = True
        mysqld.chown_tree(datadir, cfg.mysqld_user)
        shutil.rmtree(scratch, ignore_errors=True)             # made by this operation
        return gtid
    except BaseException:
        unplace_datadir(scratch, datadir, aside, placed)
        raise


def _clone(flavor, sock: str, donor: MemberState, user: str, password: str, target: str) -> None:
    from .sqlclient import Server
    srv = Server(flavor, socket=sock, user="root", password=None, read_timeout=24 * 3600)
    srv.add_secret(password)
    where = f"{donor.name} ({donor.host}:{donor.port})"
    try:
        srv.execute(flavor.clone_donor_list_sql(donor.host, donor.port))
        t0 = time.monotonic()
        srv.execute(flavor.clone_instance_sql(donor.host, donor.port, user, password, target))
        rows = srv.query(flavor.clone_status_sql())
    except PilotError as exc:
        if getattr(exc, "errno", 0) == ER_SPECIFIC_ACCESS_DENIED:
            raise SnapshotError(f"CLONE INSTANCE FROM {where} refused: user {user!r} lacks BACKUP_ADMIN on the "
                                f"donor; on the primary run GRANT BACKUP_ADMIN ON *.* TO '{user}'@'%', or set "
                                "seed_method: store") from None
        raise SnapshotError(f"CLONE INSTANCE FROM {where} failed: {exc}") from None
    finally:
        srv.close()
    row = rows[-1] if rows else {}
    if str(row.get("state", "")).lower() != "completed":
        raise SnapshotError(f"CLONE INSTANCE FROM {where} ended in state {row.get('state')!r}: "
                            f"{row.get('error_message') or 'no error message'}")
    log.info("cloned %s in %.1fs", where, time.monotonic() - t0)


@contextlib.contextmanager
def _recipient(cfg, flavor, scratch: str):
    """A throwaway server to run CLONE INSTANCE on: a fresh datadir in `scratch`, no networking (the
    clone's own connection to the donor is outgoing), no binlog, root without password over a private
    socket. Yields the socket; stopped on exit."""
    rundir = tempfile.mkdtemp(prefix="mp-seed-")          # short: socket paths are limited to ~107 bytes
    mysqld.chown_tree(rundir, cfg.mysqld_user)
    data = os.path.join(scratch, "recipient")
    errlog = os.path.join(scratch, "recipient.err")
    sock = os.path.join(rundir, "s.sock")
    binary = mysqld.server_binary(cfg, flavor)
    common = [f"--user={cfg.mysqld_user}", f"--datadir={data}", f"--log-error={errlog}",
              "--innodb-buffer-pool-size=32M", "--loose-mysqlx=OFF"]
    proc = None
    try:
        p = subprocess.run([binary, "--no-defaults", *common, "--initialize-insecure"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=START_TIMEOUT)
        if p.returncode != 0:
            raise SnapshotError(f"could not initialise the clone recipient in {data} (exit {p.returncode}): "
                                f"{mysqld.tail(errlog, 4)}")
        proc = subprocess.Popen([binary, "--no-defaults", *common, f"--socket={sock}",
                                 f"--pid-file={os.path.join(scratch, 'recipient.pid')}", "--skip-networking",
                                 "--disable-log-bin", f"--plugin-load-add={';'.join(flavor.plugins())}"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        _wait_socket(flavor, sock, proc, errlog)
        yield sock
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(rundir, ignore_errors=True)


def _wait_socket(flavor, sock: str, proc: subprocess.Popen, errlog: str) -> None:
    from .sqlclient import Server
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            srv = Server(flavor, socket=sock, user="root", password=None, connect_timeout=2)
            try:
                srv.scalar("SELECT 1")
                return
            finally:
                srv.close()
        except PilotError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SnapshotError(f"the clone recipient did not start: {mysqld.tail(errlog, 4) or exc}") from None
            time.sleep(0.2)

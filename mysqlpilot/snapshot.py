"""Snapshot and restore pipelines, flavor-agnostic.

take:    backup tool (xbstream on stdout) | zstd | this process (sha256 + multipart upload)
         or, by the CLONE method (MySQL 8.0.17+): CLONE LOCAL DATA DIRECTORY into a staging dir under
         state_dir, then tar (on stdout) | zstd | this process; the staging dir is removed.
restore: store | this process (sha256) | zstd -d | xbstream/mbstream -x (tar -x for a clone) into a
         scratch dir; prepare (a clone needs none); move into place.
Neither keeps a full local copy of the compressed stream. The upload is completed only when the backup
tool exited 0 and said "completed OK!" and zstd exited 0; otherwise it is aborted, so a truncated
object never becomes visible. A manifest is written last.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from typing import IO, Iterator, List, Optional, Sequence, Tuple

from . import gtid as gtidlib
from . import mysqld
from .errors import PilotError, SnapshotError
from .flavors.base import quote
from .model import SnapshotManifest
from .progress import Progress
from .snapshot_catalog import snapshot_dir
from .store import Store, part_size_for

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


def clone_stream_cmd(staging: str) -> List[str]:
    """The producer of a CLONE snapshot's stream: the staged copy as a tar archive on stdout."""
    return ["tar", "-C", staging, "-cf", "-", "."]


class TarWalk:
    """Follows a tar stream as it passes, header by header, to tell a whole archive from a cut one. A
    producer cut off halfway (even one whose exit status was lost) stops inside a member or before the
    end-of-archive blocks; trailing zeros alone prove nothing, since InnoDB files are full of them."""

    def __init__(self) -> None:
        self.skip = 0               # member data (rounded to 512) still to pass
        self.hdr = b""
        self.zero_blocks = 0
        self.members = 0
        self.bad = ""

    def feed(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n and not self.bad:
            if self.skip:
                k = min(self.skip, n - i)
                self.skip -= k
                i += k
                continue
            if self.zero_blocks >= 2:
                if data[i:].strip(b"\0"):
                    self.bad = "data after the end-of-archive blocks"
                return
            take = data[i:i + 512 - len(self.hdr)]
            self.hdr += take
            i += len(take)
            if len(self.hdr) < 512:
                return
            h, self.hdr = self.hdr, b""
            if h == bytes(512):
                self.zero_blocks += 1
                continue
            if self.zero_blocks:
                self.bad = "a member after a zero block"
                return
            raw = h[124:136]
            try:
                size = int.from_bytes(raw[1:], "big") if raw[0] & 0x80 else int(raw.strip(b"\0 ") or b"0", 8)
            except ValueError:
                self.bad = f"unreadable header of member {self.members + 1}"
                return
            self.members += 1
            self.skip = (size + 511) // 512 * 512

    def complete(self) -> bool:
        return not self.bad and self.zero_blocks >= 2 and not self.skip and not self.hdr and self.members > 0

    def why(self) -> str:
        if self.bad:
            return self.bad
        if self.skip or self.hdr:
            return f"it stops inside member {self.members}"
        return "no end-of-archive blocks" if self.members else "no members"


def _dir_size(path: str) -> int:
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return total


class _Drain(threading.Thread):
    """Collect a pipe (stderr) without letting it fill up and stall the producer."""

    def __init__(self, fh: IO[bytes], limit: int = 1 << 20):
        super().__init__(daemon=True)
        self.fh, self.limit = fh, limit
        self.data = bytearray()

    def run(self) -> None:
        for chunk in iter(lambda: self.fh.read(65536), b""):
            self.data += chunk
            if len(self.data) > self.limit:
                del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class _Count(threading.Thread):
    """Pump producer -> consumer counting bytes (the raw xbstream size)."""

    def __init__(self, src: IO[bytes], dst: IO[bytes], walk: Optional["TarWalk"] = None):
        super().__init__(daemon=True)
        self.src, self.dst = src, dst
        self.n = 0
        self.walk = walk
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            for chunk in iter(lambda: self.src.read(CHUNK), b""):
                self.n += len(chunk)
                if self.walk is not None:
                    self.walk.feed(chunk)
                self.dst.write(chunk)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc
        finally:
            try:
                self.dst.close()
            except OSError:
                pass


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        low = ln.lower()
        if "error" in low or "failed" in low or "fatal" in low:
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def new_snapshot_id(node_name: str, now: Optional[float] = None) -> str:
    # Milliseconds: an operator's `snapshot --force` can follow the periodic one within a second.
    now = now or time.time()
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}.{int(now * 1000) % 1000:03d}Z-{node_name}"


def snapshot_method(cfg, flavor) -> str:
    """"clone" or "backup-tool": config key snapshot_method, `auto` resolved by flavor and version."""
    method = getattr(cfg, "snapshot_method", "auto") or "auto"
    if method == "auto":
        return flavor.default_snapshot_method
    if method == "clone" and not flavor.supports_clone:
        raise SnapshotError(f"snapshot_method clone needs MySQL 8.0.17 or later; {flavor.name} "
                            f"{flavor.version} has no CLONE plugin")
    return method


def _clone_local(cfg, flavor, user: str, password: Optional[str], staging: str) -> Tuple[str, int, str]:
    """CLONE LOCAL DATA DIRECTORY into `staging` (must not exist); (binlog file, position, GTID set) of
    the copy, from performance_schema.clone_status."""
    from .sqlclient import Server
    srv = Server(flavor, socket=cfg.socket, user=user, password=password, read_timeout=24 * 3600)
    try:
        srv.execute(flavor.clone_local_sql(staging))
        rows = srv.query(flavor.clone_status_sql())
        row = rows[-1] if rows else {}
        if str(row.get("state", "")).lower() != "completed":
            raise SnapshotError(f"CLONE LOCAL into {staging} ended in state {row.get('state')!r}: "
                                f"{row.get('error_message') or 'no error message'}")
        bfile, bpos = str(row.get("binlog_file") or ""), int(row.get("binlog_pos") or 0)
        # The copy's GTID set is what this server's binlog holds up to the copy's binlog position: exact by
        # construction. Neither clone_status's GTID_EXECUTED (empty for a LOCAL clone on 9.7) nor the copy's
        # mysql.gtid_executed (seen lagging the data in a campaign: a restore then re-applied a commit the
        # data held, error 1062) is trusted when the binlog can say it.
        if bfile and bpos:
            # gtid_purged too: a file's Previous_gtids need not hold what a restore's SET gtid_purged added.
            purged = srv.gtid_purged()
            gtid = gtidlib.mysql_union_all([binlog_gtids(srv, flavor, bfile, bpos), purged])
        else:
            gtid = ""
    except PilotError as exc:
        raise SnapshotError(f"CLONE LOCAL DATA DIRECTORY into {staging} failed: {exc}") from None
    finally:
        srv.close()
    if not gtid:
        gtid = "".join(str(row.get("gtid") or "").split()) or _staged_gtid(cfg, flavor, user, password, staging)
    return bfile, bpos, gtid


_GTID_NEXT = re.compile(r"GTID_NEXT\s*=\s*'([^']+)'", re.I)


def binlog_gtids(srv, flavor, bfile: str, bpos: int, batch: int = 10000) -> str:
    """The GTID set of this server's binlog up to (bfile, bpos), a transaction boundary: the file's
    Previous_gtids plus every Gtid event before bpos. Read in batches: a binlog file may hold millions of
    events."""
    sets: List[str] = []
    start = 4
    while True:
        rows = srv.query(f"SHOW BINLOG EVENTS IN {quote(bfile)} FROM {int(start)} LIMIT {int(batch)}")
        for r in rows:
            kind, info = str(r.get("Event_type") or ""), str(r.get("Info") or "")
            if int(r.get("Pos") or 0) >= bpos:
                return gtidlib.mysql_union_all(sets)
            if kind == "Previous_gtids":
                sets.append("".join(info.split()))
            elif kind == "Gtid":
                mo = _GTID_NEXT.search(info)
                if mo:
                    sets.append(mo.group(1))
        if len(rows) < batch:
            return gtidlib.mysql_union_all(sets)
        start = int(rows[-1].get("End_log_pos") or 0)


def _staged_gtid(cfg, flavor, user: str, password: Optional[str], staging: str, before: Sequence[str] = ()) -> str:
    """Start the staged copy on a private socket (no network, no binlog), run `before`, read
    @@gtid_executed, stop it. The exact set of the copy: a restore seeds it, so an estimate from the
    source would skip or repeat transactions. The copy's own auto.cnf (new server_uuid) is removed
    afterwards."""
    import signal
    import tempfile
    from .sqlclient import Server
    rundir = tempfile.mkdtemp(prefix="mp-clone-")          # short: socket paths are limited to ~107 bytes
    sock, pidf = os.path.join(rundir, "s.sock"), os.path.join(rundir, "m.pid")
    errlog = os.path.join(os.path.dirname(staging), "staged-mysqld.err")
    mysqld.chown_tree(rundir, cfg.mysqld_user)
    argv = [mysqld.server_binary(cfg, flavor), "--no-defaults", f"--user={cfg.mysqld_user}",
            f"--datadir={staging}", f"--socket={sock}", f"--pid-file={pidf}", f"--log-error={errlog}",
            "--skip-networking", "--disable-log-bin", "--loose-mysqlx=OFF", "--gtid-mode=ON",
            "--enforce-gtid-consistency=ON", "--skip-replica-start", "--innodb-buffer-pool-size=32M",
            "--read-only=ON", "--super-read-only=ON"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            srv = Server(flavor, socket=sock, user=user, password=password, connect_timeout=2)
            try:
                srv.scalar("SELECT 1")
                break
            except PilotError as exc:
                srv.close()
                # Refused login is final: the copy's accounts are the source's (wrong password, not slow).
                if proc.poll() is not None or time.monotonic() > deadline or getattr(exc, "errno", 0) == 1045:
                    raise SnapshotError(f"the staged clone in {staging} did not start to tell its GTID set: "
                                        f"{mysqld.tail(errlog, 4) or exc}") from None
                time.sleep(0.2)
        try:
            srv.execute(list(before))
            return "".join(str(srv.scalar("SELECT @@GLOBAL.gtid_executed") or "").split())
        except PilotError as exc:
            raise SnapshotError(f"the staged clone in {staging}: {exc}") from None
        finally:
            srv.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(staging, "auto.cnf"))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(errlog)
        shutil.rmtree(rundir, ignore_errors=True)


def take_snapshot(cfg, flavor, store: Store, *, user: str = "root", password: Optional[str] = None,
                  node_name: Optional[str] = None, estimate_bytes: Optional[int] = None,
                  from_replica: bool = False) -> SnapshotManifest:
    node_name = node_name or cfg.node_name
    started = time.monotonic()
    method = snapshot_method(cfg, flavor)
    sid = new_snapshot_id(node_name)
    where = snapshot_dir(cfg.cluster, sid)
    key = f"{where}/data.{'tar' if method == 'clone' else 'xbstream'}.zst"
    if store.exists(f"{where}/manifest.json") or store.exists(key):
        raise SnapshotError(f"snapshot {sid} already exists in {store.describe()}; not overwriting it, try again")
    estimate = estimate_bytes if estimate_bytes is not None else _dir_size(cfg.datadir)
    upload = store.begin_upload(key, part_size_for(estimate))
    os.makedirs(cfg.state_dir, exist_ok=True)
    scratch = os.path.join(cfg.state_dir, f"backup-tmp-{sid}")
    os.makedirs(scratch, exist_ok=True)
    sha = hashlib.sha256()
    prog = Progress(f"snapshot {sid} upload to {store.describe()}", total=None)
    procs: List[subprocess.Popen] = []
    ok = False
    position: Optional[Tuple[str, int, str]] = None
    try:
        with mysqld.client_defaults_file(user, password, socket=cfg.socket, dir=cfg.state_dir) as dfile:
            if method == "clone":
                # mysqld (as mysqld_user) creates the staging dir inside our scratch dir.
                mysqld.chown_tree(scratch, cfg.mysqld_user)
                staging = os.path.join(scratch, "clone")
                t0 = time.monotonic()
                position = _clone_local(cfg, flavor, user, password, staging)
                log.info("snapshot %s: CLONE LOCAL done in %.1fs at GTID %s", sid, time.monotonic() - t0,
                         position[2] or "-")
                argv = clone_stream_cmd(staging)
            else:
                argv = flavor.backup_cmd(dfile, cfg.datadir, cfg.socket, target_dir=scratch,
                                         from_replica=from_replica)
            log.info("snapshot %s: %s | zstd -%d into %s", sid, argv[0], cfg.compression_level,
                     store.describe())
            backup = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL)
            procs.append(backup)
            zstd = subprocess.Popen(["zstd", f"-{cfg.compression_level}", "-T0", "-q", "-c"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            procs.append(zstd)
            berr, zerr = _Drain(backup.stderr), _Drain(zstd.stderr)
            berr.start()
            zerr.start()
            pump = _Count(backup.stdout, zstd.stdin, TarWalk() if position is not None else None)
            pump.start()
            for chunk in iter(lambda: zstd.stdout.read(CHUNK), b""):
                sha.update(chunk)
                upload.write(chunk)
                prog.add(len(chunk))
            brc, zrc = backup.wait(), zstd.wait()
            pump.join()
            berr.join(5)
            zerr.join(5)
        btxt = berr.text()
        if brc != 0 or (position is None and not flavor.backup_ok(btxt)):
            raise SnapshotError(f"snapshot {sid}: {argv[0]} failed (exit {brc}): {_first_error(btxt)}")
        if pump.walk is not None and pump.error is None and not pump.walk.complete():
            raise SnapshotError(f"snapshot {sid}: the tar stream of the clone is not a whole archive "
                                f"({pump.n} bytes: {pump.walk.why()})")
        if zrc != 0 or pump.error is not None:
            raise SnapshotError(f"snapshot {sid}: compression failed (zstd exit {zrc}): "
                                f"{_first_error(zerr.text()) if zrc else pump.error}")
        binlog_file, binlog_pos, gtid = position or flavor.parse_backup_position(btxt)
        stored = upload.complete()
        ok = True
        prog.finish()
        manifest = SnapshotManifest(
            id=sid, created=time.time(), source=node_name, object_key=key, bytes=stored, raw_bytes=pump.n,
            sha256=sha.hexdigest(), flavor=flavor.name, version=flavor.version, gtid=gtid,
            binlog_file=binlog_file, binlog_pos=binlog_pos, compression="zstd",
            format="tar" if method == "clone" else "xbstream", tool="clone" if method == "clone" else flavor.backup_tool,
            cluster=cfg.cluster, duration_seconds=round(time.monotonic() - started, 3))
        # The manifest is written last: a snapshot without one does not exist for readers.
        store.put_bytes(f"{where}/manifest.json", manifest.to_json().encode())
        log.info("snapshot %s complete: %.1f MB stored (%.1f MB raw), GTID %s", sid, stored / 1e6,
                 pump.n / 1e6, gtid or "-")
        return manifest
    finally:
        if not ok:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            upload.abort()
            log.error("snapshot %s aborted; nothing was published", sid)
        shutil.rmtree(scratch, ignore_errors=True)      # made by this operation


def verify_snapshot(store: Store, manifest: SnapshotManifest) -> str:
    """Read the whole object and check it against its manifest; returns the progress summary."""
    src = _CheckedRead(store, manifest, "verify")
    for _ in src.chunks():
        pass
    src.check()
    return src.prog.finish()


class _CheckedRead:
    """Streams a snapshot object from the store, hashing and counting it, with progress lines."""

    def __init__(self, store: Store, manifest: SnapshotManifest, what: str):
        self.store, self.manifest, self.what = store, manifest, what
        self.sha = hashlib.sha256()
        self.n = 0
        self.prog = Progress(f"{what} {manifest.id}", total=manifest.bytes)

    def chunks(self) -> Iterator[bytes]:
        src = self.store.open_read(self.manifest.object_key)
        try:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                self.sha.update(chunk)
                self.n += len(chunk)
                self.prog.add(len(chunk))
                yield chunk
        except PilotError:
            raise
        except Exception as exc:  # noqa: BLE001 - network errors mid-download
            raise SnapshotError(f"{self.what} {self.manifest.id}: download from {self.store.describe()} "
                                f"failed: {exc.__class__.__name__}") from None
        finally:
            try:
                src.close()
            except Exception:  # noqa: BLE001
                pass

    def check(self) -> None:
        m, got = self.manifest, self.sha.hexdigest()
        if got != m.sha256 or self.n != m.bytes:
            raise SnapshotError(f"snapshot {m.id} failed its checksum (expected sha256 {m.sha256[:16]}… and "
                                f"{m.bytes} bytes, got {got[:16]}… and {self.n}); it is corrupt: take a new one on "
                                "the primary (`mysqlpilot snapshot --force`), or point replicas at an older one "
                                "(`mysqlpilot snapshot use ID`)")


def restore_snapshot(cfg, flavor, store: Store, manifest: SnapshotManifest, *, datadir: str,
                     mysqld_user: str) -> str:
    """Restore into `datadir`; returns the GTID position to seed. Leaves nothing half-restored."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    os.makedirs(cfg.state_dir, exist_ok=True)
    _check_same_filesystem(cfg.state_dir, datadir)
    limit = getattr(cfg, "max_moved_aside", None)
    if os.path.isdir(datadir) and os.listdir(datadir):
        mysqld.check_room_to_move_aside(datadir, limit)     # before downloading anything
    scratch = os.path.join(cfg.state_dir, f"restore-{manifest.id}-{stamp}")
    os.makedirs(scratch)
    aside: Optional[str] = None
    placed = False
    try:
        _download_extract(flavor, store, manifest, scratch)
        if manifest.format == "tar":
            # A CLONE copy is consistent as it stands: no prepare, and its position is in the manifest.
            gtid = ""
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(scratch, "auto.cnf"))     # the restored node gets its own server_uuid
        else:
            log.info("restore %s: preparing (%s)", manifest.id, flavor.prepare_cmd(scratch)[0])
            t0 = time.monotonic()
            p = subprocess.run(flavor.prepare_cmd(scratch), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
            ptxt = p.stderr.decode("utf-8", "replace")
            if p.returncode != 0 or not flavor.backup_ok(ptxt):
                raise SnapshotError(f"restore {manifest.id}: prepare failed (exit {p.returncode}): "
                                    f"{_first_error(ptxt)}")
            log.info("restore %s: prepared in %.1fs", manifest.id, time.monotonic() - t0)
            _, _, gtid = flavor.read_binlog_info(scratch)
        aside = place_datadir(scratch, datadir, limit)
        placed = True
        if mysqld_user and mysqld_user != _current_user():
            mysqld.chown_tree(datadir, mysqld_user)
        return gtid or manifest.gtid
    except BaseException:
        unplace_datadir(scratch, datadir, aside, placed)
        raise


def place_datadir(new: str, datadir: str, limit: Optional[int]) -> Optional[str]:
    """Rename the ready copy `new` into `datadir`; a datadir holding anything is moved aside first (an
    empty one is removed). Returns the moved-aside path, or None."""
    aside = None
    if os.path.isdir(datadir) and os.listdir(datadir):
        aside = mysqld.move_aside(datadir, limit=limit)
    elif os.path.isdir(datadir):
        os.rmdir(datadir)                   # empty: nothing to keep
    os.makedirs(os.path.dirname(os.path.abspath(datadir)), exist_ok=True)
    try:
        os.rename(new, datadir)
    except BaseException:
        if aside and not os.path.exists(datadir):
            os.rename(aside, datadir)
        raise
    return aside


def unplace_datadir(scratch: str, datadir: str, aside: Optional[str], placed: bool) -> None:
    """Undo a failed restore or seed: remove only what this operation made, put the old datadir back."""
    if placed:
        shutil.rmtree(datadir, ignore_errors=True)   # what we just placed, nothing else
    shutil.rmtree(scratch, ignore_errors=True)       # made by this operation
    if aside and not os.path.exists(datadir):
        os.rename(aside, datadir)                    # put the old datadir back


def _check_same_filesystem(state_dir: str, datadir: str) -> None:
    """Restore renames the prepared copy into place and the old datadir aside; both fail on a mount
    point or across filesystems. Say so before downloading anything."""
    if os.path.ismount(datadir):
        raise PilotError(f"datadir {datadir} is a mount point; restore and rebuild must rename it: mount the "
                         f"volume at a parent (e.g. the state dir) and put the datadir inside it")
    parent = os.path.dirname(os.path.abspath(datadir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if os.stat(parent).st_dev != os.stat(state_dir).st_dev:
        raise PilotError(f"datadir {datadir} and state_dir {state_dir} are on different filesystems; restore "
                         "renames between them: put both on one volume")


def _current_user() -> str:
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


def _download_extract(flavor, store: Store, manifest: SnapshotManifest, target: str) -> None:
    src = _CheckedRead(store, manifest, "restore")
    zstd = subprocess.Popen(["zstd", "-d", "-q", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    argv = ["tar", "-x", "-C", target] if manifest.format == "tar" else flavor.extract_cmd(target)
    ext = subprocess.Popen(argv, stdin=zstd.stdout, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    zstd.stdout.close()          # ext owns it now; zstd gets SIGPIPE if ext dies
    zerr, eerr = _Drain(zstd.stderr), _Drain(ext.stderr)
    zerr.start()
    eerr.start()
    broken = None
    try:
        for chunk in src.chunks():
            if broken is None:
                try:
                    zstd.stdin.write(chunk)
                except BrokenPipeError as exc:
                    broken = exc     # keep reading: the checksum says whether the object is corrupt
    finally:
        try:
            zstd.stdin.close()
        except BrokenPipeError:
            pass
        zrc, erc = zstd.wait(), ext.wait()
        zerr.join(5)
        eerr.join(5)
    src.check()
    if zrc != 0:
        raise SnapshotError(f"snapshot {manifest.id} is corrupt: decompression failed: "
                            f"{_first_error(zerr.text())}; take a new snapshot")
    if erc != 0 or broken is not None:
        raise SnapshotError(f"restore {manifest.id}: unpacking failed: {_first_error(eerr.text())}")
    src.prog.finish()

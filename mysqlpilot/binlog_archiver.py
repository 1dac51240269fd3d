"""The continuous binlog archive: on the lock holder only, the server's own binlog client reads the
binlogs as a replica would (`--read-from-remote-server --raw --stop-never`), so the open binlog is
archived as it grows, and every `archive_interval` the new whole events go to the store as a segment
with its manifest.

The job runs on every node and idles until the node API says this node is the writable primary; it
stops streaming as soon as it is not. A store outage only makes it fall behind: the bytes wait in the
local copy and go up in one later segment from the same offset (a segment is keyed by its start, so a
retry replaces, never duplicates).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from typing import Callable, Dict, List, Optional, Tuple

from . import gtid as gtidlib
from .binlog_catalog import RunManifest, Segment, archived_set, read_runs, run_key, segment_key
from .binlog_events import scan
from .dcs.consul import ConsulDCS
from .errors import PilotError
from .flavors.base import defaults_file_text
from .statefile import StateFile

log = logging.getLogger(__name__)

MAX_SEGMENT = 64 * 1024 * 1024      # one PUT's worth; a backlog goes up in several
ALIVE_EVERY = 10.0                  # seconds between run.json refreshes while nothing else is uploaded


def api_says_primary(cfg) -> bool:
    """The node API's /primary: 200 only for the lock holder with a valid lease, writable."""
    host = "127.0.0.1" if cfg.api_address in ("", "0.0.0.0", "::", "*") else cfg.api_address
    try:
        with urllib.request.urlopen(f"http://{host}:{cfg.api_port}/primary", timeout=2) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - 503, refused, timeout: not (provably) the primary
        return False


def start_set_sql(srv, name: str) -> str:
    """The start set of binlog `name` (its Gtid_list or Previous_gtids event), from the server."""
    for row in srv.query(f"SHOW BINLOG EVENTS IN '{name}' LIMIT 6"):
        if row.get("Event_type") in ("Gtid_list", "Previous_gtids"):
            return str(row.get("Info") or "").strip().strip("[]").replace("\n", "")
    return ""


def first_file(logs: List[Tuple[str, str]], archived: str, dialect: str) -> Tuple[str, str]:
    """(file to stream from, gap): the newest binlog whose start set the archive already holds, so
    that everything after the archive's end is read; else the oldest, and what neither has."""
    if not logs:
        raise PilotError("the server lists no binary logs: is log_bin on?")
    if not archived:
        return logs[0][0], ""
    for name, start in reversed(logs):
        if not start or gtidlib.contains(dialect, archived, start):
            return name, ""
    name, start = logs[0]
    return name, gtidlib.subtract(dialect, start, archived)


class Run:
    """One streaming run on this server: the binlog client's process and the uploads of its files."""

    def __init__(self, cfg, flavor, store, manifest: RunManifest, workdir: str, clock=time.time):
        self.cfg, self.flavor, self.store, self.m, self.dir = cfg, flavor, store, manifest, workdir
        self.clock = clock
        self.sent: Dict[str, int] = {}
        self.proc: Optional[subprocess.Popen] = None
        self.behind_since: Optional[float] = None
        self.last_alive = 0.0
        self.uploaded = 0

    def argv(self, defaults: str) -> List[str]:
        sid = 4_200_000_000 + int(self.m.server_id) % 1_000_000      # never a member's id: a dump thread
        old = self.flavor.dialect == "mariadb" or not self.flavor.at_least(5, 7)    # 5.7 renamed the option
        idopt = "--stop-never-slave-server-id" if old else "--connection-server-id"
        return [self.cfg.binlog_tool or self.flavor.binlog_tool, f"--defaults-extra-file={defaults}",
                "--read-from-remote-server", "--raw", "--stop-never", f"{idopt}={sid}",
                f"--result-file={self.dir}/", self.m.first_file]

    def start(self) -> None:
        os.makedirs(self.dir, mode=0o700)
        try:
            self._start()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)     # made just now; the next tick starts a new run
            raise

    def _start(self) -> None:
        defaults = os.path.join(self.dir, ".client.cnf")
        fd = os.open(defaults, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.client_defaults())
        self.store.put_bytes(run_key(self.cfg.cluster, self.m.id), self.m.to_json().encode())
        err = open(os.path.join(self.dir, ".client.err"), "ab")
        try:
            self.proc = subprocess.Popen(self.argv(defaults), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)
        finally:
            err.close()
        log.info("archive: run %s streams %s from %s on", self.m.id, self.flavor.binlog_tool, self.m.first_file)

    def client_defaults(self) -> str:
        return defaults_file_text("root", self.cfg.root_password, socket=self.cfg.socket)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def why_dead(self) -> str:
        path = os.path.join(self.dir, ".client.err")
        text = open(path, errors="replace").read().strip().splitlines()[-1:] if os.path.exists(path) else []
        return f"exit {self.proc.returncode if self.proc else '?'}" + (f": {text[0]}" if text else "")

    def files(self) -> List[str]:
        return sorted(n for n in os.listdir(self.dir) if not n.startswith("."))

    def upload(self) -> int:
        """Upload every whole event not yet in the store; returns the bytes still waiting."""
        t0 = self.clock()
        names = self.files()
        waiting = 0
        for i, name in enumerate(names):
            path = os.path.join(self.dir, name)
            size = os.path.getsize(path)
            while self.sent.get(name, 0) < size:
                if not self._segment(name, path, size):
                    break
            waiting += size - self.sent.get(name, 0)
            if i + 1 < len(names) and self.sent.get(name, 0) >= size:
                os.unlink(path)             # our copy of a closed file, all in the store
        self.behind_since = None if waiting == 0 else (self.behind_since or t0)
        if waiting == 0 and self.alive() and t0 - self.last_alive >= ALIVE_EVERY:
            self.m.alive_at = t0 - 1.0      # slack for bytes the client had not yet written
            self.store.put_bytes(run_key(self.cfg.cluster, self.m.id), self.m.to_json().encode())
            self.last_alive = t0
        return waiting

    def _segment(self, name: str, path: str, size: int) -> bool:
        start = self.sent.get(name, 0)
        with open(path, "rb") as fh:
            fh.seek(start)
            buf = fh.read(min(size - start, MAX_SEGMENT))
        s = scan(buf, start, self.flavor.dialect)
        if s.end <= start:
            return False                    # only part of an event so far
        if start == 0 and s.txns and s.txns[0].offset > 0:
            # A file's header on its own: every restore reads it, most need nothing else before their start.
            s = scan(buf[:s.txns[0].offset], 0, self.flavor.dialect)
        data = buf[:s.end - start]
        seg = Segment(self.m.id, name, start, s.end, hashlib.sha256(data).hexdigest(), self.clock(),
                      [(t.gtid, t.offset, t.ts) for t in s.txns], s.start_set if start == 0 else None, s.last_ts)
        self.store.put_bytes(segment_key(self.cfg.cluster, self.m.id, name, start), data)
        self.store.put_bytes(segment_key(self.cfg.cluster, self.m.id, name, start, "json"), seg.to_json().encode())
        self.sent[name] = s.end
        self.uploaded += len(data)
        return True

    def drain(self) -> None:
        """After the client exited: upload the rest, close the run's manifest, remove the local copy."""
        while self.upload():
            pass
        self.m.ended = self.clock()
        self.store.put_bytes(run_key(self.cfg.cluster, self.m.id), self.m.to_json().encode())
        shutil.rmtree(self.dir, ignore_errors=True)      # made by this run

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Archiver:
    """The job's loop: a run while this node is the primary, none otherwise."""

    def __init__(self, cfg, flavor, store, connect: Callable[[], object],
                 am_primary: Optional[Callable[[], bool]] = None, clock=time.time,
                 members: Optional[Callable[[], list]] = None):
        self.cfg, self.flavor, self.store, self.connect = cfg, flavor, store, connect
        self.am_primary = am_primary or (lambda: api_says_primary(cfg))
        self.members = members or (lambda: ConsulDCS.from_config(cfg).members())
        self.clock = clock
        self.run: Optional[Run] = None
        self.state = StateFile(cfg.state_dir)
        self.error = ""
        self._reported: object = ("never",)
        self._reported_at = 0.0

    def begin(self) -> Run:
        srv = self.connect()
        try:
            logs = [(r["Log_name"], start_set_sql(srv, r["Log_name"]))
                    for r in srv.query("SHOW BINARY LOGS")]
            server_id = int(srv.scalar("SELECT @@server_id"))
        finally:
            srv.close()
        archived = archived_set(read_runs(self.store, self.cfg.cluster), self.flavor.dialect)
        name, gap = first_file(logs, archived, self.flavor.dialect)
        from .binlog_gap_fill import close_gap      # it subclasses Run
        if gap and close_gap(self.cfg, self.flavor, self.store, self.members(), archived, gap, self.clock):
            archived = archived_set(read_runs(self.store, self.cfg.cluster), self.flavor.dialect)
            name, gap = first_file(logs, archived, self.flavor.dialect)
        now = self.clock()
        rid = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z-{self.cfg.node_name}"
        start = gtidlib.union_all(self.flavor.dialect, [dict(logs)[name]])
        m = RunManifest(rid, self.cfg.node_name, server_id, self.flavor.dialect, now, name, archived, gap, start)
        if gap:
            log.error("archive: GAP: transactions %s are neither in the archive nor in the binlogs of this server "
                      "or any member; a point-in-time restore across them is refused", gap)
        work = os.path.join(self.cfg.state_dir, "archive", rid)
        run = Run(self.cfg, self.flavor, self.store, m, work, self.clock)
        run.start()
        return run

    def end(self, why: str) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        run.stop()
        try:
            run.upload()                        # what the client wrote before it stopped
            run.m.ended = self.clock()
            self.store.put_bytes(run_key(self.cfg.cluster, run.m.id), run.m.to_json().encode())
        except Exception as exc:  # noqa: BLE001 - the store may be down; the next run re-reads from the server
            log.warning("archive: run %s ended without its last upload: %s", run.m.id, exc)
        shutil.rmtree(run.dir, ignore_errors=True)      # made by this run
        log.info("archive: run %s ended: %s", run.m.id, why)

    def tick(self) -> None:
        if not self.am_primary():
            if self.run:
                self.end("this node is no longer the primary")
            self.report(None)
            return
        try:
            if self.run is None:
                self.run = self.begin()
            elif not self.run.alive():
                why = self.run.why_dead()
                self.end(f"the binlog client died ({why})")
                return
            waiting = self.run.upload()
            self.error = ""
            self.report(waiting)
        except Exception as exc:  # noqa: BLE001 - store or server trouble: report, keep the bytes, retry
            self.error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            log.warning("archive: %s (will retry)", self.error)
            self.report(None)

    def report(self, waiting: Optional[int]) -> None:
        r = self.run
        info = None if r is None else {
            "run": r.m.id, "file": (r.files() or [""])[-1], "uploaded_bytes": r.uploaded,
            "waiting_bytes": waiting, "lag_seconds": (round(self.clock() - r.behind_since, 1)
                                                      if r.behind_since else 0.0),
            "gap": r.m.gap, "error": self.error, "at": self.clock()}
        now = self.clock()
        key = None if info is None else (info["run"], info["waiting_bytes"], info["gap"], info["error"])
        if key == self._reported and now - self._reported_at < 5:
            return                                      # spare the state file the HA loop uses too
        self._reported, self._reported_at = key, now
        self.state.update(archive=info)

    def loop(self, stop: threading.Event) -> None:
        interval = float(self.cfg.archive_interval)
        while not stop.is_set():
            self.tick()
            stop.wait(interval)
        self.end("the job is stopping")


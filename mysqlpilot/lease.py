"""The lease and fencing: how long this node may stay writable, and how it stops being writable.

The proof (docs/timing.md):
- A session renew *sent* at t succeeded, so the session was alive after t.
- However a session ends (TTL, a failed or deregistered check, an agent leaving, `failover` destroying
  it), nobody can take the lock for lock_delay after that: Consul's lock-delay, and, because Consul keeps
  lock-delay only in its leader's memory, every candidate's own wait of lock_delay after it first sees
  the key free (ha.py). So no other node can be writable before t + lock_delay.
- The lease ends at t + lock_delay - fence_margin. It is kept in the state file on the boot-time clock,
  so a restarted process, or another hook, knows it; a freeze (SIGSTOP, VM pause) does not stop that clock.
- When it ends, the watchdog fences: kill client connections, set read-only (short lock wait), kill
  again, confirm. If that is not confirmed by t + lock_delay (lease end + fence_margin), it SIGKILLs mysqld.
  That deadline is fixed when the lease is granted: a late watchdog, a void or a new session never moves
  it, and a thread that never talks to mysqld keeps it while the watchdog is blocked on a slow mysqld.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from . import mysqld
from .errors import PilotError
from .statefile import StateFile

log = logging.getLogger(__name__)

KEY = "lease"
WRITER = "writable_session"
WRITER_END = "writable_until"       # end of the last lease granted to the WRITER session
WRITER_MARKED = "writable_marked"   # when WRITER was last marked (a promotion about to turn writes on)
FAILSAFE = "failsafe"               # {session, until, since, by}: promises that cover WRITER's writes (failsafe.py)
ER_LOCK_WAIT_TIMEOUT = 1205


def boottime() -> float:
    """Seconds since boot, counting suspend; the same clock in every process of the machine."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Lease:
    """`until` on the boot-time clock, bound to the session whose renew earned it."""

    def __init__(self, state: StateFile, span: float, clock: Callable[[], float] = boottime):
        self.state = state
        self.span = float(span)
        self.clock = clock

    def _read(self):
        # The file every time: 20 small reads a second are cheap, and a cache keyed on inode and mtime
        # can be fooled (inodes are reused, timestamps coarse).
        return self._parse()

    def _parse(self):
        return self._parse_dict(self.state.read())

    @staticmethod
    def _parse_dict(d):
        lease, writer = d.get(KEY), d.get(WRITER)
        writer = writer if isinstance(writer, str) and writer else None
        if not isinstance(lease, dict) or not isinstance(lease.get("until"), (int, float)):
            return "", 0.0, writer
        return str(lease.get("session") or ""), float(lease["until"]), writer

    def extend(self, sid: str, sent: float) -> None:
        """A renew of `sid` sent at `sent` (this clock) succeeded."""
        until = sent + self.span

        def put(d):
            d[KEY] = {"session": sid, "until": until}
            if d.get(WRITER) == sid:
                d[WRITER_END] = until
        self.state.change(put)

    def void(self, why: str, failsafe: bool = False) -> None:
        """Give up the session's lease; with `failsafe`, the members' promises too (a fence, a stop). A
        session that Consul ended keeps the promises: they, not the session, cover the writes now."""
        if self._read()[1] > 0:
            log.info("lease given up: %s", why)
        self.state.update(**{KEY: {"session": "", "until": 0.0}})
        if failsafe:
            self.end_failsafe()

    # ---- failsafe: promises in place of renews -------------------------------------------------
    def extend_failsafe(self, writer: str, sent: float, by: List[str]) -> bool:
        """Every member that may take the lock promised, on a request sent at `sent`, not to take it for
        lock-delay: `writer`'s writes are covered until sent + span. False when `writer` is no longer the
        session that mysqld's writes belong to (nothing to cover)."""
        until, done = sent + self.span, []

        def put(d):
            if d.get(WRITER) != writer:
                return
            cur = d.get(FAILSAFE) if isinstance(d.get(FAILSAFE), dict) else {}
            going = cur.get("session") == writer and isinstance(cur.get("until"), (int, float)) \
                and cur["until"] >= sent
            d[FAILSAFE] = {"session": writer, "until": max(until, float(cur["until"]) if going else 0.0),
                           "since": float(cur.get("since", sent)) if going else sent, "by": sorted(by)}
            done.append(True)
        self.state.change(put)
        return bool(done)

    def end_failsafe(self) -> None:
        if self.state.get(FAILSAFE) is not None:
            self.state.update(**{FAILSAFE: None})

    @staticmethod
    def _failsafe_until(d) -> float:
        fs, writer = d.get(FAILSAFE), d.get(WRITER)
        if not isinstance(fs, dict) or not writer or fs.get("session") != writer or \
                not isinstance(fs.get("until"), (int, float)):
            return 0.0
        return float(fs["until"])

    def failsafe_left(self) -> float:
        """Seconds the members' promises still cover mysqld's writes (<= 0: none)."""
        until = self._failsafe_until(self.state.read())
        return until - self.clock() if until > 0 else -1.0

    def failsafe_info(self) -> Optional[Dict]:
        """{since, until, by, left} of the promises covering the writes now, or None (status, metrics)."""
        d = self.state.read()
        until = self._failsafe_until(d)
        if until <= 0 or until <= self.clock():
            return None
        fs = d[FAILSAFE]
        return {"since": fs.get("since"), "until": until, "by": list(fs.get("by") or []),
                "left": until - self.clock()}

    def expires_at(self) -> float:
        return self._read()[1]

    def left(self, sid: Optional[str] = None) -> float:
        """Seconds left (<= 0: none). With `sid`, only a lease earned by that session counts."""
        held, until, _ = self._read()
        if until <= 0 or (sid is not None and held != sid):
            return -1.0
        return until - self.clock()

    def mark_writer(self, sid: str) -> None:
        """mysqld is made writable under `sid`: from now on only a lease of that session lets it stay so.
        (A session destroyed by `failover` is replaced by a new one; the new lease must not cover writes.)"""
        now = self.clock()

        def put(d):
            lease = d.get(KEY)
            held = isinstance(lease, dict) and lease.get("session") == sid and \
                isinstance(lease.get("until"), (int, float))
            d.update({WRITER: sid, WRITER_END: float(lease["until"]) if held else 0.0, WRITER_MARKED: now})
        self.state.change(put)

    def left_for_writer(self) -> float:
        return self.left(self._read()[2])

    def writer_view(self, margin: float) -> Tuple[float, float]:
        """(seconds left of the lease that covers mysqld's writes, fence deadline), from one read.

        The deadline is when another node may first hold the lock: that lease's end plus `margin`
        (= t + lock_delay). It is fixed when the lease is granted: a void, a later session or a late
        watchdog does not move it. With no writer marked, the current lease counts."""
        d = self.state.read()
        held, until, writer = self._parse_dict(d)
        if until <= 0 or (writer is not None and held != writer):
            left = -1.0
        else:
            left = until - self.clock()
        end = until
        if writer is not None:
            end = d.get(WRITER_END)
            end = float(end) if isinstance(end, (int, float)) else 0.0
            # Promises (failsafe) cover the same writer on the same terms: whichever ends later counts.
            fs = self._failsafe_until(d)
            if fs > 0:
                left, end = max(left, fs - self.clock()), max(end, fs)
        return left, end + margin

    def fence_deadline(self, margin: float) -> float:
        return self.writer_view(margin)[1]

    def writer_marked_at(self) -> float:
        """When mysqld was last about to be made writable (0: never, as far as this state dir knows)."""
        t = self.state.get(WRITER_MARKED)
        return float(t) if isinstance(t, (int, float)) else 0.0


class Fencer:
    """Make mysqld refuse writes, and prove it; stop mysqld when that cannot be proven in time."""

    def __init__(self, connect: Callable[[], "object"], lease: Lease, cfg, clock: Callable[[], float] = boottime,
                 kill_mysqld: Optional[Callable[[], bool]] = None, mysqld_running: Optional[Callable[[], bool]] = None,
                 on_fence: Optional[Callable[[str, str], None]] = None):
        self.connect = connect              # -> sqlclient.Server with short timeouts
        self.on_fence = on_fence            # (reason, outcome) after every fence: the node's event counters
        self.lease = lease
        self.cfg = cfg
        self.clock = clock
        self.kill_mysqld = kill_mysqld or self._kill_mysqld
        self.mysqld_running = mysqld_running or (lambda: mysqld.mysqld_pid(cfg) is not None)
        self._lock = threading.Lock()
        self._srv = None
        self.last_seen_writable: Optional[bool] = None     # what keep_warm last read
        self._ro_seen_at: Optional[float] = None            # start of the last read that answered read-only

    # A connection kept open, so fencing after a freeze does not wait for a login. It dies after
    # wait_timeout or a mysqld restart, so every use is checked: a failure drops it and the caller
    # retries on a new one (no extra round trip before use: after a freeze every millisecond counts).
    def _conn(self):
        if self._srv is None:
            self._srv = self.connect()
        return self._srv

    def _drop(self) -> None:
        srv, self._srv = self._srv, None
        if srv is not None:
            srv.close()

    def _ask(self, srv) -> bool:
        t = self.clock()
        ro = bool(srv.read_only())
        self._ro_seen_at = t if ro else None
        return ro

    def read_only_since(self, t: float) -> bool:
        """The last answer from mysqld was read-only, to a read sent at or after `t`."""
        seen = self._ro_seen_at
        return seen is not None and seen >= t

    def keep_warm(self) -> None:
        with self._lock:
            try:
                self.last_seen_writable = not self._ask(self._conn())
            except PilotError:
                self.last_seen_writable = None
                self._drop()

    def read_only(self) -> Optional[bool]:
        """mysqld's read_only, or None when it cannot be asked (on a kept and then a new connection)."""
        with self._lock:
            for _ in (1, 2):
                try:
                    return self._ask(self._conn())
                except PilotError:
                    self._drop()
            return None

    def _kill_mysqld(self) -> bool:
        pid = mysqld.mysqld_pid(self.cfg)
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        return True

    def fence(self, reason: str, deadline: float, keep_lease: bool = False) -> str:
        """Returns "read-only" (confirmed), "mysqld down", or "mysqld killed". Never returns with mysqld
        writable. `deadline` is on this fencer's clock: past it, mysqld is killed. `keep_lease`: a
        switchover fences while it still holds the lock, and may have to stay primary."""
        result = self._fence_locked(reason, deadline, keep_lease)
        if self.on_fence is not None:
            self.on_fence(reason, result)
        return result

    def _fence_locked(self, reason: str, deadline: float, keep_lease: bool) -> str:
        with self._lock:
            if not keep_lease and (self.lease.left() > 0 or self.lease.failsafe_left() > 0):
                try:                                          # (an ended lease needs no write: be quick)
                    self.lease.void(f"fencing: {reason}", failsafe=True)
                except OSError as exc:
                    # A full or read-only state dir must not stop the fence itself.
                    log.error("fencing: cannot void the lease in the state file (%s); fencing anyway",
                              exc.strerror or exc)
            if self.clock() >= deadline:
                # Another node may hold the lock already: no read-only attempt while mysqld answers clients.
                killed = self.kill_mysqld()
                log.error("FENCED by stopping mysqld: the deadline had passed %.2fs before the fence began (%s)",
                          self.clock() - deadline, reason)
                self._drop()
                return "mysqld killed" if killed else "mysqld down"
            # The deadline holds even while a statement below blocks (up to the connection's read timeout,
            # longer than a sub-second fence_margin): a thread of its own stops mysqld on time.
            bs = _Backstop(self, deadline, reason)
            bs.start()
            try:
                return self._fence(reason, deadline, bs)
            finally:
                bs.end()
                if keep_lease:
                    # A switchover that gives up turns writes back on without a new promotion mark: its
                    # read-only answer must not excuse a kill at the deadline.
                    self._ro_seen_at = None

    def _fence(self, reason: str, deadline: float, bs: "_Backstop") -> str:
        t0, last, fast = self.clock(), "", True
        while True:
            try:
                srv = self._conn()
                if fast:
                    # One round trip when no commit is in flight (after a freeze every millisecond is
                    # a window for clients); NOWAIT, so a blocked commit costs nothing here.
                    fast = False
                    try:
                        srv.execute("SET SESSION lock_wait_timeout = 0")
                        srv.set_read_only(True)
                    except PilotError as exc:
                        if getattr(exc, "errno", 0) != ER_LOCK_WAIT_TIMEOUT:
                            raise
                # Clients next: a commit waiting for a semi-sync ACK holds up SET GLOBAL read_only, and
                # its client gets an error, not an acknowledgement. Nothing here ends such a wait before
                # read-only is in force (switching semi-sync off would acknowledge a reconnecting client's
                # commit that no replica has): MariaDB's KILL ends it; on MySQL the wait ends with the
                # ACK, or the deadline stops mysqld.
                killed = srv.kill_client_connections()
                srv.execute("SET SESSION lock_wait_timeout = 1")
                srv.set_read_only(True)
                killed += srv.kill_client_connections()
                if self._ask(srv):
                    if bs.end():
                        self._drop()
                        return bs.result()
                    log.warning("FENCED: read-only, confirmed in %.2fs (%s); killed %d client connections",
                                self.clock() - t0, reason, killed)
                    return "read-only"
                last = "read_only still OFF after setting it"
            except PilotError as exc:
                last = str(exc)
                self._drop()
            if bs.fired():
                self._drop()
                return bs.result()
            if not self.mysqld_running():
                log.warning("FENCED: mysqld is not running (%s)", reason)
                return "mysqld down"
            if self.clock() >= deadline:
                killed_it = self.kill_mysqld()
                log.error("FENCED by stopping mysqld: read-only not confirmed in %.2fs (%s): %s",
                          self.clock() - t0, reason, last)
                self._drop()
                return "mysqld killed" if killed_it else "mysqld down"
            time.sleep(0.05)


class _Backstop(threading.Thread):
    """Stops mysqld at the fence's deadline, whatever statement the fence is blocked in."""

    def __init__(self, fencer: Fencer, deadline: float, reason: str):
        super().__init__(name="fence-backstop", daemon=True)
        self.fencer, self.deadline, self.reason = fencer, deadline, reason
        self._gate = threading.Lock()
        self._ended = threading.Event()
        self._killed: Optional[bool] = None          # set once it fired: whether a mysqld was there to kill

    def run(self) -> None:
        clock = self.fencer.clock
        while not self._ended.wait(min(0.02, max(0.0, self.deadline - clock()))):
            if clock() >= self.deadline:
                with self._gate:
                    if self._ended.is_set():
                        return
                    self._killed = self.fencer.kill_mysqld()
                    self._ended.set()
                log.error("FENCED by stopping mysqld: read-only not confirmed by the deadline (%s)", self.reason)
                return

    def end(self) -> bool:
        """Stop it; True when it had already fired (then the fence's own outcome does not count). After
        this returns False it never fires."""
        with self._gate:
            fired = self._killed is not None
            self._ended.set()
            return fired

    def fired(self) -> bool:
        return self._killed is not None

    def result(self) -> str:
        return "mysqld killed" if self._killed else "mysqld down"


class Watchdog(threading.Thread):
    """Fences on time alone: whatever the HA loop is doing, and whichever process made mysqld writable,
    mysqld is not writable once the lease has ended."""

    def __init__(self, lease: Lease, fencer: Fencer, margin: float, tick: float = 0.05,
                 clock: Callable[[], float] = boottime):
        super().__init__(name="fence-watchdog", daemon=True)
        self.lease, self.fencer, self.margin, self.tick, self.clock = lease, fencer, margin, tick, clock
        self._stop_ev = threading.Event()
        self._checked = -1.0          # < 0: not checked since the lease ended
        self._warmed = -1e9
        self._armed: Optional[float] = None     # the deadline the deadline thread keeps
        self._arm_lock = threading.Lock()

    def _rearm(self, old: Optional[float], new: Optional[float]) -> None:
        with self._arm_lock:
            if self._armed == old:
                self._armed = new

    def check_once(self) -> Optional[str]:
        now = self.clock()
        left, deadline = self.lease.writer_view(self.margin)
        if left > 0:
            self._checked = -1.0
            # Armed before any SQL: a read that blocks past the deadline cannot delay the kill.
            with self._arm_lock:
                self._armed = deadline
            if now - self._warmed >= 1.0:
                self._warmed = now
                self.fencer.keep_warm()
            return None
        if now - self._checked < 0.25:
            return None
        first = self._checked < 0
        self._checked = now
        if first and self.fencer.last_seen_writable:
            # It was writable a moment ago: no round trip to ask again (the lease may have ended in a freeze).
            ro = False
        else:
            ro = self.fencer.read_only()
        if ro is True or (ro is None and not self.fencer.mysqld_running()):
            return None
        # A promotion marks its session and checks its lease *before* it turns read_only off: a lease
        # read after seeing mysqld writable sees that promotion (the first read may predate it).
        left, deadline = self.lease.writer_view(self.margin)
        if left > 0:
            self._checked = -1.0
            return None
        # Writable, or cannot tell while mysqld runs: fence. The deadline is when another node could first
        # hold the lock, fixed at the lease's grant; when it has passed (we were frozen or blocked), the
        # fence stops mysqld at once.
        return self.fencer.fence("lease expired: this node cannot prove it holds the leader lock", deadline)

    def keep_deadline_once(self) -> Optional[str]:
        """The deadline thread's step: past the armed deadline, with the lease not renewed and no read-only
        answer since the last promotion mark, stop mysqld. No SQL here, so nothing here can block."""
        with self._arm_lock:
            d = self._armed
        if d is None or self.clock() < d:
            return None
        left, new = self.lease.writer_view(self.margin)
        if left > 0:                      # renewed: keep the new lease's deadline
            self._rearm(d, new)
            return None
        self._rearm(d, None)
        if self.fencer.read_only_since(self.lease.writer_marked_at()):
            return None
        killed = self.fencer.kill_mysqld()
        log.error("FENCED by stopping mysqld: the lease ended and read-only was not confirmed by lease end + "
                  "fence_margin (the fence watchdog is held up by a slow mysqld)")
        return "mysqld killed" if killed else "mysqld down"

    def _keep_deadline(self) -> None:
        while not self._stop_ev.is_set():
            with self._arm_lock:
                d = self._armed
            wait = 0.02 if d is None else min(0.02, max(0.001, d - self.clock()))
            if self._stop_ev.wait(wait):
                return
            try:
                self.keep_deadline_once()
            except Exception as exc:  # noqa: BLE001 - the deadline must outlive any bug
                log.error("fence deadline: %s", exc)
                self._stop_ev.wait(0.02)

    def run(self) -> None:
        threading.Thread(target=self._keep_deadline, name="fence-deadline", daemon=True).start()
        while not self._stop_ev.wait(self.tick):
            try:
                self.check_once()
            except Exception as exc:  # noqa: BLE001 - the watchdog must outlive any bug
                log.error("fence watchdog: %s", exc)

    def stop(self) -> None:
        self._stop_ev.set()


class Heartbeat(threading.Thread):
    """Keeps the node's session and liveness check, and so the lease, from a thread of its own: no slow
    pass, SQL call or snapshot can starve it. `poke()` runs a beat now (the prober saw mysqld die)."""

    def __init__(self, beat: Callable[[], None], interval: float):
        super().__init__(name="heartbeat", daemon=True)
        self.beat, self.interval = beat, interval
        self._wake = threading.Event()
        self._stopped = False

    def run(self) -> None:
        while not self._stopped:
            t0 = time.monotonic()
            self._wake.clear()            # before the beat: a poke during it runs another at once
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - keep beating; the lease lapses on its own if this fails
                log.error("heartbeat: %s", exc)
            self._wake.wait(max(0.05, self.interval - (time.monotonic() - t0)))

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

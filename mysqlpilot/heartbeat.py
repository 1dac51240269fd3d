"""The heartbeat side of a node: the mysqld prober and one heartbeat (liveness check, session renew,
lease), and the crash release. Runs in its own threads (lease.Heartbeat); never decides a role."""
from __future__ import annotations

import logging
import time

from . import mysqld
from .dcs.base import Release
from .errors import PilotError
from .lease import WRITER, boottime

ENDED = "session_ended"            # the session Consul answered is gone, whose lease ride_out keeps

log = logging.getLogger(__name__)

RELEASE_PROOF_WAIT = 1.0         # longest a crashed mysqld's socket and port may take to stop accepting
PID_POLL = 0.1                    # how often the prober looks for mysqld's process (the crash fast path)


class LeaseKeeper:
    def __init__(self, node):
        self.n = node
        self._released_for = ""           # the session whose lock was released after a mysqld crash
        self._registered = False          # the liveness check registered by this process

    def prober(self) -> None:
        """Asks mysqld `SELECT 1` every 0.5 s, and looks for its process every PID_POLL: when the process
        goes, the heartbeat runs at once (the crash fast path) instead of at its next tick."""
        srv, asked, was_running = None, 0.0, True
        while not self.n._stop.wait(PID_POLL):
            running = mysqld.mysqld_pid(self.n.cfg) is not None
            if was_running and not running and self.n._heartbeat is not None:
                self.n._heartbeat.poke()
            was_running = running
            if not running or time.monotonic() - asked < 0.5:
                continue
            asked = time.monotonic()
            try:
                srv = srv or self.n.probe_conn()
                srv.scalar("SELECT 1")
                self.n._sql_ok_at = boottime()
            except PilotError:
                if srv is not None:
                    srv.close()
                srv = None

    def beat(self) -> bool:
        """One heartbeat: pass the liveness check and renew the session, then extend the lease from the
        moment they were sent. When mysqld is gone, give up the lease *before* failing the check, which
        ends the session at once (the fast failover path). True when the lease was extended."""
        alive = self.n.mysqld_alive()
        cid = self.n.cfg.liveness_check_id
        if alive is False:
            if self.n.state.get("starting"):
                return False
            self.n.lease.void("mysqld is not running", failsafe=True)
            self.release_after_crash()
            try:
                self.n.dcs.fail_check(cid, "mysqld is not running")
            except PilotError as exc:
                log.debug("check fail: %s", exc)
            return False
        if alive is None:
            return False         # hung or refusing us: the lease lapses and the watchdog fences
        if self.n.state.get("stopping") and not self.n.sid:
            return False
        sent = boottime()
        try:
            # Persist first: a lease that cannot be written must not be renewed, or the session (and the
            # lock) would live on while the watchdog fences: a write outage with no failover.
            self.n.state.update(beat_sent=sent)
        except OSError as exc:
            self.n.say_once("state", f"cannot write the state file in {self.n.cfg.state_dir} ({exc.strerror or exc}): "
                                    "not renewing the session; the lease lapses, mysqld is fenced and another "
                                    "node takes over; free the disk or fix the state_dir permissions")
            return False
        sid = self.n.sid
        if not sid and not self._registered:
            # No session refers to the check yet: (re-)register it under this node's own service entry
            # (an older version's node-level check is replaced here, never under a live session).
            self.n.catalog.register_liveness()
            self._registered = True
        try:
            self.n.dcs.pass_check(cid, "mysqld answers")
        except PilotError:
            self.n.catalog.register_liveness()
            self.n.dcs.pass_check(cid, "mysqld answers")
        if sid and self.n.dcs.renew_session(sid) is None:
            if self.ride_out(sid):
                return False
            self.n.lease.void("session gone")
            if self.n.state.get("stopping"):
                # pre-stop ended it (or it lapsed during the stop): a stopping node opens no new one.
                log.info("Consul session %s is gone; the node is stopping, so no new one", sid[:8])
                return False
            log.warning("Consul session %s is gone; creating a new one", sid[:8])
            sid = None
        if not sid:
            sid = self.n.dcs.create_session(self.n.cfg.session_ttl, self.n.cfg.lock_delay,
                                            [self.n.cfg.liveness_check_id])
            self.n.state.update(session=sid, **{ENDED: None})
        try:
            self.n.lease.extend(sid, sent)
        except OSError as exc:
            # Written a moment ago, refused now: give the session up so the lock moves (lock-delay applies).
            log.error("cannot persist the lease in %s (%s): ending session %s so another node takes over",
                      self.n.cfg.state_dir, exc.strerror or exc, sid[:8])
            self.n.dcs.destroy_session(sid)
            return False
        if self.n.state.get("starting"):
            self.n.state.update(starting=None)
        return True

    def ride_out(self, sid: str) -> bool:
        """Consul ended the session mysqld's writes belong to (an agent that left the cluster, say) while
        this node is writable. The lease its last renew earned holds however a session ends (lock-delay
        follows every end), so with the failsafe on keep it, let the failsafe ask the members, and open a
        new session only once their promises cover the writes; then the HA loop takes the key back (RETAKE).
        True: not now (no void, no new session in this beat)."""
        if not self.n.cfg.failsafe or self.n.state.get("stopping") or self.n.fencer.last_seen_writable is False:
            return False
        if self.n.state.get(WRITER) != sid or self.n.lease.failsafe_left() > 0:
            return False                   # not our writes' session; or promises cover them: new session now
        if self.n.lease.writer_view(0.0)[0] <= 0:
            return False                   # nothing left to keep: void, and the watchdog fences
        self.n.say_once("session-ended", f"Consul ended session {sid[:8]} while this node is the writable primary; "
                                          "keeping the lease its last renew earned and asking the members to "
                                          "promise (failsafe) before taking the key back")
        self.n.state.update(**{ENDED: sid})     # the pass waits only for a session Consul said is gone
        return True

    def release_after_crash(self) -> None:
        """mysqld is not running and the lease is void: if this node holds the lock, release it with a
        marker, so the best candidate promotes at once. A release has no lock-delay, and none is needed:
        nothing here can write (mysqld always starts read-only, and only a lease turns writes on)."""
        sid = self.n.sid
        if not sid or sid == self._released_for:
            return
        self._released_for = sid         # once per session; failing the check below ends it anyway
        # A SIGKILLed mysqld's main thread shows as a zombie while its other threads still hold the
        # listening sockets, for some milliseconds: give it a moment to let go.
        until = time.monotonic() + RELEASE_PROOF_WAIT
        while mysqld.accepts_connections(self.n.cfg):
            if time.monotonic() >= until:
                # No pid, yet something answers on its socket or port: not provably dead. Take the slow
                # path (the session ends with the check, then lock-delay).
                log.warning("mysqld has no pid but its socket or port still accepts connections after %.1fs; "
                            "not releasing the leader lock early", RELEASE_PROOF_WAIT)
                return
            time.sleep(0.05)
        marker = Release(name=self.n.cfg.node_name, reason="mysqld is not running", at=time.time(),
                         gtid_executed=self.n._last_executed, lock_index=self.n._generation)
        try:
            if self.n.dcs.release_leader(sid, marker):
                log.warning("mysqld is not running: released the leader lock so that the best replica "
                            "promotes now (this node cannot write)")
        except PilotError as exc:
            log.warning("could not release the leader lock (%s); the session ends with the failed check "
                        "instead, and lock-delay applies", exc)

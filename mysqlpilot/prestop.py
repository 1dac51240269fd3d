"""pre-stop (SIGTERM to the container): a primary hands its role over with a switchover before mysqld
stops; a replica ends its session. pre-stop is its own process, started as ContainerPilot stops the watch:
it renews the session first, and tells the watch (stopguard.py's record) so that it may stop its heartbeat."""
from __future__ import annotations

import logging
import time

from . import analysis, stopguard
from .dcs.base import Request
from .errors import PilotError
from .lease import boottime
from .model import FailoverRecord
from .statefile import ha_lock
from .timeouts import PRE_STOP_WAIT

log = logging.getLogger(__name__)


class PreStop:
    def __init__(self, node):
        self.n = node

    def run(self, timeout: float = PRE_STOP_WAIT) -> str:
        """SIGTERM: a primary hands over with a switchover before mysqld stops. Never costs a commit.
        It keeps its own heartbeat: ContainerPilot stops the watch job at the same time."""
        self.n.state.update(stopping=True)
        self.n.start_threads()
        try:
            return self.hand_over_or_leave(timeout)
        finally:
            self.n.stop_threads()

    def hand_over_or_leave(self, timeout: float) -> str:
        with ha_lock(self.n.cfg.state_dir):
            view = self.n.dcs.get_cluster()
            leader = view.leader
            sid = self.n.sid
            if not (leader is not None and sid and leader.session == sid):
                self._leave()
                return "replica stopping"
            if self._renew_now():
                # The SIGTERMed watch keeps its heartbeat until this (stopguard.watch_may_stop).
                stopguard.write_record(self.n.cfg.state_dir, done=False, beating=True)
            target, why = analysis.choose_switchover_target(view.members, self.n.cfg.node_name, None)
            if target is None:
                fenced = self.n.fence(f"stopping; {why}")
                self.n.actions.record(FailoverRecord(
                    kind="shutdown", time=time.time(), old_primary=self.n.cfg.node_name, new_primary=None,
                    reason=f"pre-stop with no replica to hand over to ({why}); the next election is a cold start"))
                if fenced != "read-only":
                    return f"primary stopping with no replica to hand over to ({why}); fence: {fenced}"
                self.n.stop_threads()
                self.n.dcs.release_leader(sid)
                self._leave()
                return f"primary stopping with no replica to hand over to ({why})"
            req = Request(to=target, kind="switchover", reason=f"pre-stop of {self.n.cfg.node_name}: {why}",
                          requested=time.time())
            if not self.n.handover.hand_over(target, req, view):
                return "switchover failed; primary stays until mysqld stops"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.n.dcs.get_cluster().leader
            if leader is not None and leader.name == target:
                self.n.stop_threads()
                self._leave()
                return f"handed over to {target}"
            time.sleep(0.2)
        return f"handed the lock to {target}, which has not taken it yet"

    def _renew_now(self) -> bool:
        """pre-stop is a new process, started as the watch is stopped: renew once before fencing for the
        hand-over, so the fence gets a whole lease rather than what is left of the watch's last one (this
        process's heartbeat renews only once its prober has seen mysqld answer)."""
        srv = None
        try:
            srv = self.n.probe_conn()
            srv.scalar("SELECT 1")
            self.n._sql_ok_at = boottime()
            return self.n.beat()
        except (PilotError, OSError) as exc:
            log.info("pre-stop: no renew before the hand-over (%s); the fence has what is left of the lease", exc)
            return False
        finally:
            if srv is not None:
                srv.close()

    def _leave(self) -> None:
        sid = self.n.sid
        self.n.lease.void("leaving", failsafe=True)
        if sid:
            try:
                self.n.dcs.destroy_session(sid)
            except PilotError:
                pass
        # Stopped on purpose: `status` shows "left", not "down", and forgets it after LEFT_GRACE. No later
        # publish of this container (a last health check, the watch's last pass) may say otherwise.
        self.n.state.update(left=time.time())
        try:
            m = self.n.dcs.member(self.n.cfg.node_name)
            if m is not None:
                m.role, m.healthy, m.updated = "left", False, time.time()
                m.message = f"stopped on purpose (pre-stop at {time.strftime('%H:%M:%S', time.gmtime())} UTC)"
                self.n.dcs.publish_member(None, m)
        except PilotError as exc:
            log.info("pre-stop: could not publish that this node left (%s)", exc)


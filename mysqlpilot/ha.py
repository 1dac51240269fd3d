"""The HA loop (Patroni's ha.py, orchestrator's "recovery" half): observe, decide, act, record.

One `Node` per mysqld. `mysqlpilot watch` runs `Node.run_forever()`: the pass loop, plus the heartbeat
(session, liveness check, lease: heartbeat.py), the mysqld prober and the fence watchdog (lease.py), each
its own thread. A pass reads the world once (observer.py), asks the decisions (analysis.decide), runs one
action from the table (actions.py) and returns what it did. The hooks call single methods. Every pass holds
the node's ha.lock so the loop, on-change and pre-stop never act at the same time.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

from . import analysis, journal, mysqld, stopguard
from .accounts import Accounts, remote_server
from .actions import Actions, Outcome
from .analysis import Policy
from .api_view import PassView, pass_view
from .catalog import Catalog
from .cluster_config import pending_restart
from .dcs.base import Request
from .dcs.consul import ConsulDCS
from .errors import PilotError
from .events import NodeEvents
from .failsafe_keeper import Asker, FailsafeList, PromiseDesk
from .flavors import get_flavor
from .handover import HandOver
from .heartbeat import LeaseKeeper
from .lease import Fencer, Heartbeat, Lease, Watchdog, boottime
from .live_settings import LiveSettings
from .model import LeaderInfo, MemberState
from .node_requests import Restarter
from .observer import Observer
from .prestop import PreStop
from .sqlclient import Server
from .statefile import StateFile, ha_lock
from .timeouts import PRE_STOP_WAIT
from .timing import URGENT_FENCE, Timing

log = logging.getLogger(__name__)

MYSQLD_QUIET_LIMIT = 3.0          # seconds without an answer from mysqld before it counts as hung (no renew)


class Node:
    def __init__(self, cfg, dcs: Optional[ConsulDCS] = None, reload=None):
        """`reload(doc)`: this node's settings loaded with the cluster's document (live_settings.py)."""
        self.cfg = cfg
        self.flavor = get_flavor(cfg.flavor, cfg.flavor_version)
        self.dcs = dcs or ConsulDCS.from_config(cfg)
        self.state = StateFile(cfg.state_dir)
        self.policy = Policy.from_config(cfg)
        self.timing = Timing.from_config(cfg)
        self.lease = Lease(self.state, self.timing.lease)
        self.events = NodeEvents()       # failovers, fences, ... counted where they run (api_metrics.py)
        self.fencer = Fencer(self._fence_conn, self.lease, cfg, on_fence=self._on_fence)
        self.keeper, self.observer = LeaseKeeper(self), Observer(self)
        self.restarter, self.live = Restarter(self), LiveSettings(self, reload)
        self.actions, self.handover = Actions(self), HandOver(self)
        self.catalog = Catalog(self)
        self.accounts = Accounts(cfg, self.flavor, lambda: self.local(read_timeout=2), self.state)
        self.promises, self.failsafe_list = PromiseDesk(self), FailsafeList(self)
        self.consul_seen = None           # failsafe_keeper.ConsulSeen: the last pass's view, for promise requests
        self.leader_index = 0
        # Persisted: on-change and a restarted loop are new processes, and must still know whose
        # failure they are handling (failover budget, semi-sync check, history's old primary).
        self.last_leader: Optional[LeaderInfo] = self._saved_leader()
        self._sql_ok_at = -1e9            # boot-time clock of the prober's last answer from mysqld
        self._stop = threading.Event()
        self._term: Optional[float] = None     # monotonic time of the watch's SIGTERM
        self._ended = ""                  # why the loop ends by itself (a restart that a new loop completes)
        self._threads: List[threading.Thread] = []
        self._heartbeat: Optional[Heartbeat] = None
        self._last_executed = ""          # gtid_executed at the last probe that reached mysqld
        self._generation: Optional[int] = None   # the lock generation this node last saw itself hold
        self._said: Dict[str, str] = {}    # topic -> the last line said of it (one line per change)
        self._due: Optional[float] = None  # seconds until this node's lock-delay wait ends, if it is waiting
        self.api_view: Optional[PassView] = None   # what the node API reads, replaced once per pass
        self.loop_mark: Optional[float] = None     # boot-time clock of the watch loop's last pass attempt

    def _saved_leader(self) -> Optional[LeaderInfo]:
        text = self.state.get("last_leader")
        try:
            return LeaderInfo.from_json(text) if text else None
        except (ValueError, TypeError, AttributeError):
            return None                  # a name only, from an older release, or garbage

    @property
    def sid(self) -> Optional[str]:
        sid = self.state.get("session")
        return sid if isinstance(sid, str) and sid else None

    def say_once(self, topic: str, line: str) -> None:
        """One log line per change of what is said on a topic, not one per pass."""
        if self._said.get(topic) != line:
            self._said[topic] = line
            log.info("%s", line)

    # ---- connections -------------------------------------------------------------------------
    def local(self, read_timeout: float = 30) -> Server:
        return Server(self.flavor, socket=self.cfg.socket, user="root", password=self.cfg.root_password,
                      connect_timeout=2, read_timeout=read_timeout)

    def probe_conn(self) -> Server:
        """For probes: a hung mysqld costs at most the connect timeout, handshake included."""
        return self.local(read_timeout=2)

    def _fence_conn(self) -> Server:
        # A blocked statement returns within this and the fence retries; the fence's deadline does not wait for
        # it (lease.py).
        return Server(self.flavor, socket=self.cfg.socket, user="root", password=self.cfg.root_password,
                      connect_timeout=1, read_timeout=1.5)

    def remote(self, host: str, port: int) -> Server:
        return remote_server(Server, self.flavor, self.cfg, host, port, connect_timeout=2, read_timeout=2)

    # ---- lease, heartbeat, fencing -------------------------------------------------------------
    def lease_left(self) -> float:
        sid = self.sid
        return self.lease.left(sid) if sid else -1.0

    def mysqld_alive(self) -> Optional[bool]:
        """False: mysqld is not running (no process). True: it answered the prober recently. None: it runs
        but does not answer us (hung, or refusing our login)."""
        if mysqld.mysqld_pid(self.cfg) is None:
            return False
        return True if boottime() - self._sql_ok_at < MYSQLD_QUIET_LIMIT else None

    def beat(self) -> bool:
        return self.keeper.beat()

    def fence(self, reason: str, urgent: bool = False, keep_lease: bool = False) -> str:
        """Fence now. Urgent: another node may already hold the lock, so the deadline is short."""
        deadline = boottime() + URGENT_FENCE if urgent else self.lease.fence_deadline(self.cfg.fence_margin)
        result = self.fencer.fence(reason, deadline, keep_lease=keep_lease)
        self.catalog.fenced()
        return result

    def start_threads(self, heartbeat: bool = True) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._threads = [threading.Thread(target=self.keeper.prober, name="mysqld-prober", daemon=True),
                         Watchdog(self.lease, self.fencer, self.cfg.fence_margin)]
        if heartbeat:
            self._heartbeat = Heartbeat(self.beat, self.timing.heartbeat)
            self._threads += [self._heartbeat] + ([Asker(self)] if self.cfg.failsafe else [])
        for t in self._threads:
            t.start()

    def stop_threads(self) -> None:
        self._stop.set()
        for t in self._threads:
            if hasattr(t, "stop"):
                t.stop()
        self._threads = []
        self._heartbeat = None

    # ---- one pass ----------------------------------------------------------------------------
    def run_once(self) -> Outcome:
        """Observe once, decide, run one action, record it, publish; returns what it did."""
        with ha_lock(self.cfg.state_dir):
            seen = self.observer.observe()
            self.live.apply(seen.view.config)          # for the next pass: this one's observation is made
            d = analysis.decide(seen.o)
            outcome = self.actions.run(d, seen)
            if seen.o.leader is not None:
                self.last_leader = seen.o.leader
                if self.state.get("last_leader") != seen.o.leader.to_json():
                    self.state.update(last_leader=seen.o.leader.to_json())
            m, leader = self.publish(seen)
            self.catalog.refresh()
            try:
                journal.flush(self.state, self.dcs)       # fences and rebuilds recorded while Consul was away
            except (PilotError, OSError) as exc:
                self.say_once("journal", f"journal not written to Consul yet: {exc}")
            try:
                self.api_view = pass_view(self, seen, m, leader)
            except Exception as exc:  # noqa: BLE001 - what the API shows must never cost the loop a pass
                self.say_once("api_view", f"node API view not updated: {type(exc).__name__}: {exc}")
        return outcome

    def _on_fence(self, reason: str, result: str) -> None:
        """After every fence (the watchdog's thread too): count it, and queue it for the journal."""
        self.events.fence(reason, result)
        journal.record(self.state, journal.event("fence", self.cfg.node_name, reason, result=result))

    def publish(self, seen) -> Tuple[MemberState, Optional[LeaderInfo]]:
        """Publish this node's member record; returns it and the leader it was judged against."""
        r = seen.report
        probe = self.observer.probe_local() if r.refresh else seen.probe
        leader = seen.view.leader
        if r.refresh:
            leader = self.dcs.get_cluster().leader
            r.healthy, r.role, r.message = self.observer.health_of(probe, leader)
        m = self.observer.member_state(probe, r.healthy, r.role, r.message, seen.o.errant)
        m.pending_restart = pending_restart(self.cfg.cluster_settings, self.state.get("mysqld_settings"),
                                            seen.view.config)
        self.publish_member(probe, m)
        return m, leader

    def publish_member(self, probe: Dict, m: MemberState) -> None:
        if self.state.get("left"):
            return               # pre-stop said this node left; it starts again through pre-start
        if not self.sid and self.state.get("starting") and m.role not in ("down", "starting"):
            # Published without a session, this would read as "down" until the first one exists.
            m.role, m.message = "starting", f"joining: {m.message}"
        try:
            if not probe["up"]:
                # mysqld cannot say what it holds now: keep what it last said, which the election's
                # acknowledged-commit check reads (a crashed primary's position must not read as empty).
                cur = self.dcs.member(m.name)
                if cur is not None:
                    m.gtid_executed, m.gtid_received = cur.gtid_executed, cur.gtid_received
            self.dcs.publish_member(self.sid, m)
        except PilotError as exc:
            log.debug("publish failed: %s", exc)

    # ---- delegates the hooks and tests use ------------------------------------------------------
    def hand_over(self, target: str, req: Optional[Request], view) -> bool:
        return self.handover.hand_over(target, req, view)

    def health_of(self, probe: Dict, leader: Optional[LeaderInfo]) -> Tuple[bool, str, str]:
        return self.observer.health_of(probe, leader)

    def member_state(self, probe: Dict, healthy: bool, role: str, message: str, errant: str = "") -> MemberState:
        return self.observer.member_state(probe, healthy, role, message, errant)

    # ---- the loop ----------------------------------------------------------------------------
    def run_forever(self) -> None:
        # The watchdog first, before any Consul call: a restarted loop of a cut-off primary must fence
        # on the lease it finds in the state file. A short GIL switch interval lets it run within a
        # millisecond of waking (after a freeze) instead of waiting behind the other threads.
        sys.setswitchinterval(0.001)
        self.start_threads()
        log.info("HA loop started for %s (%s); session ttl %ss, lock-delay %ss, lease %ss",
                 self.cfg.node_name, self.cfg.address, self.cfg.session_ttl, self.cfg.lock_delay,
                 self.policy.lease)
        self.loop_mark = boottime()
        started = time.time()
        self.state.update(end_loop=None)          # asked of an earlier loop: this one loaded the settings
        while not self._stop.is_set() and self._term is None and not self._ended:
            t0 = time.monotonic()
            try:
                self.run_once()
            except PilotError as exc:
                log.error("%s", exc)
            except Exception as exc:  # noqa: BLE001 - the loop never dies; the watchdog still guards the lease
                log.exception("HA pass failed unexpectedly: %s", exc)
            self.loop_mark = boottime()          # the loop runs, whether or not the pass succeeded
            self._ended = self.state.get("end_loop") or ""
            if self._ended:
                # A restart asked the loop to end (node_requests.py), whichever hook's pass ran it.
                self.state.update(end_loop=None)
                continue
            wait = max(0.2, self.cfg.loop_wait - (time.monotonic() - t0))
            due, self._due = self._due, None
            if due is not None and due < wait:
                # Lock-delay ends before the watch would return: pass again then, not up to a loop later.
                self._stop.wait(due + 0.01)
                continue
            try:
                # Wake at once when the leader key changes.
                self.dcs.watch_leader(self.leader_index, wait)
            except Exception as exc:  # noqa: BLE001
                log.error("%s", exc)
                self._stop.wait(wait)
        if self._term is not None:
            # Keep the heartbeat until pre-stop, a new process, renews the session itself (stopguard.py).
            why = stopguard.wait_for_pre_stop(self.cfg.state_dir, started, self._term, self._stop)
            log.info("SIGTERM: the HA loop stops (%s)", why)
            self.stop_threads()
        elif self._ended:
            log.warning("the HA loop ends (%s); its job starts a new one", self._ended)
            self.stop_threads()

    def terminate(self) -> None:
        """SIGTERM to the watch: no pass after the current one; run_forever then waits for pre-stop."""
        if self._term is None:
            self._term = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self.stop_threads()

    # ---- hooks -------------------------------------------------------------------------------
    def health_hook(self) -> Tuple[bool, str]:
        """ContainerPilot's health check: report the role and publish it. It never touches the session or
        the liveness check: only the watch's heartbeat does, so that whatever invalidates the session is
        preceded by giving up the lease.

        It is also a second, coarse watchdog: if `watch` is dead (crash-looping, killed), nothing else
        would fence a writable mysqld whose lease ended."""
        try:
            Watchdog(self.lease, self.fencer, self.cfg.fence_margin).check_once()
        except Exception as exc:  # noqa: BLE001 - the report below still runs
            log.error("health: fence check failed: %s", exc)
        probe = self.observer.probe_local()
        leader = self.dcs.get_cluster().leader
        healthy, role, msg = self.observer.health_of(probe, leader)
        self.publish_member(probe, self.observer.member_state(probe, healthy, role, msg))
        return healthy, msg

    def pre_stop(self, timeout: float = PRE_STOP_WAIT) -> str:
        """SIGTERM: a primary hands over with a switchover before mysqld stops (prestop.py)."""
        return PreStop(self).run(timeout)


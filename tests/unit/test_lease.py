"""The lease, the fencer, the watchdog and the heartbeat, driven step by step over fakes (safety items
1-3). Real-server versions of the fencing cases are in tests/integration/test_fencing.py."""
import threading
import time

import pytest

from mysqlpilot import config
from mysqlpilot.errors import PilotError
from mysqlpilot.ha import Node
from mysqlpilot.lease import Fencer, Heartbeat, Lease, Watchdog
from mysqlpilot.sqlclient import SQLError
from mysqlpilot.statefile import StateFile

from .fakes import PartialDCS


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class FakeServer:
    """Records what fencing does; `blocked` makes SET GLOBAL read_only fail as a lock-wait timeout would."""

    def __init__(self, log, ro=False, blocked=0, dead=False, flavor=("mariadb", "10.11")):
        from mysqlpilot.flavors import get_flavor
        self.log, self.ro, self.blocked, self.dead = log, ro, blocked, dead
        self.flavor = get_flavor(*flavor)

    def scalar(self, sql):
        if self.dead:
            raise PilotError("gone")
        return 1

    def _check(self):
        if self.dead:
            raise PilotError("MySQL server has gone away")

    def kill_client_connections(self):
        self._check()
        self.log.append("kill")
        return 2

    def execute(self, sql):
        self._check()
        self.log.append(sql)

    def set_read_only(self, on):
        self._check()
        if self.blocked:
            self.blocked -= 1
            self.log.append("set_ro:timeout")
            raise SQLError("(1205) Lock wait timeout exceeded", 1205)
        self.log.append("set_ro")
        self.ro = on

    def read_only(self):
        self._check()
        return self.ro

    def close(self):
        pass


def make_fencer(tmp_path, srv_factory, clock, running=True):
    events = []
    lease = Lease(StateFile(str(tmp_path)), 3.0, clock=clock)

    def kill():
        events.append("SIGKILL mysqld")
        return True
    f = Fencer(srv_factory, lease, cfg=None, clock=clock, kill_mysqld=kill, mysqld_running=lambda: running)
    return f, lease, events


def test_a_lease_survives_the_process_that_earned_it(tmp_path):
    """Item 1: the lease lives in the state file on the boot-time clock, not in one process's memory."""
    clock = Clock()
    Lease(StateFile(str(tmp_path)), 3.0, clock=clock).extend("s1", clock())
    again = Lease(StateFile(str(tmp_path)), 3.0, clock=clock)        # a restarted watch, or on-change
    assert again.left("s1") == pytest.approx(3.0)
    assert again.left("s2") < 0                  # earned by another session: not ours
    clock.t += 3.01
    assert again.left() < 0


def test_fencing_kills_clients_before_read_only_and_retries_until_confirmed(tmp_path):
    """Item 2: a commit waiting for a semi-sync ACK holds up SET GLOBAL read_only; clients are killed
    first, the statement has a short lock wait, and it is retried until read-only is confirmed."""
    clock, log = Clock(), []
    srv = FakeServer(log, blocked=2)
    f, lease, events = make_fencer(tmp_path, lambda: srv, clock)
    assert f.fence("test", deadline=clock.t + 10) == "read-only"
    assert srv.ro is True and events == []
    # One NOWAIT attempt first (one round trip when nothing is committing), then clients, then the
    # read-only with a lock wait, retried.
    assert log[:3] == ["SET SESSION lock_wait_timeout = 0", "set_ro:timeout", "kill"]
    assert log.index("kill") < log.index("SET SESSION lock_wait_timeout = 1")
    assert log.count("set_ro:timeout") == 2 and log[-1] == "kill"


def releases_a_commit_wait(stmt) -> bool:
    """A statement that can end a commit's wait for its semi-sync ACK (it then commits without one)."""
    text = " ".join(stmt) if isinstance(stmt, list) else str(stmt)
    return "rpl_semi_sync" in text


@pytest.mark.parametrize("flavor", [("mariadb", "10.11"), ("mysql", "8.0.25"), ("mysql", "9.7")])
def test_a_fence_never_releases_a_commits_wait_before_read_only_is_in_force(tmp_path, flavor):
    """Item 3: on MySQL the fence switched semi-sync off (ending a killed commit's wait) while read_only was
    still OFF: a client reconnecting in between committed asynchronously and got OK, and no replica had it.
    Nothing that can release a commit's wait may come before read-only is confirmed."""
    clock, log = Clock(), []
    srv = FakeServer(log, blocked=1, flavor=flavor)      # a commit waits for its ACK, then gets it
    f, _, events = make_fencer(tmp_path, lambda: srv, clock)
    assert f.fence("test", deadline=clock.t + 10) == "read-only" and events == []
    assert log[:3] == ["SET SESSION lock_wait_timeout = 0", "set_ro:timeout", "kill"], log
    first_ro = log.index("set_ro")
    assert not any(releases_a_commit_wait(x) for x in log[:first_ro]), log


@pytest.mark.parametrize("version", ["8.0.25", "9.7"])
def test_a_mysql_fence_whose_commit_never_gets_its_ack_stops_mysqld(tmp_path, version):
    """Item 3: on MySQL a KILL does not end a commit's semi-sync wait (seen on 9.7), so read_only stays
    blocked while no replica acknowledges. Ending the wait would acknowledge the commit's successors without
    a replica; the fence stops mysqld at the deadline instead."""
    clock, log = Clock(), []
    srv = FakeServer(log, blocked=10 ** 6, flavor=("mysql", version))

    def factory():
        clock.t += 0.4                  # every attempt costs time
        return srv
    f, _, events = make_fencer(tmp_path, factory, clock)
    assert f.fence("test", deadline=clock.t + 1.0) == "mysqld killed"
    assert "SIGKILL mysqld" in events
    assert not any(releases_a_commit_wait(x) for x in log), log


def test_fencing_an_idle_primary_takes_one_statement_before_read_only(tmp_path):
    clock, log = Clock(), []
    srv = FakeServer(log)
    f, _, _ = make_fencer(tmp_path, lambda: srv, clock)
    assert f.fence("test", deadline=clock.t + 10) == "read-only"
    assert log[:2] == ["SET SESSION lock_wait_timeout = 0", "set_ro"]


def test_fencing_stops_mysqld_when_read_only_is_not_confirmed_by_the_deadline(tmp_path):
    """Item 2: the self-fencing of last resort."""
    clock, log = Clock(), []
    srv = FakeServer(log, blocked=10 ** 6)

    def factory():
        clock.t += 0.4                  # every attempt costs time
        return srv
    f, lease, events = make_fencer(tmp_path, factory, clock)
    assert f.fence("test", deadline=clock.t + 1.0) == "mysqld killed"
    assert events == ["SIGKILL mysqld"]


def test_fencing_a_mysqld_that_is_gone_needs_no_kill(tmp_path):
    clock = Clock()

    def refuse():
        raise PilotError("cannot connect")
    f, lease, events = make_fencer(tmp_path, refuse, clock, running=False)
    assert f.fence("test", deadline=clock.t + 1.0) == "mysqld down" and events == []


def test_fencing_voids_the_lease_first(tmp_path):
    clock = Clock()
    f, lease, _ = make_fencer(tmp_path, lambda: FakeServer([]), clock)
    lease.extend("s1", clock())
    f.fence("test", deadline=clock.t + 1)
    assert lease.left() < 0


def test_the_kept_fencing_connection_is_checked_not_trusted(tmp_path):
    clock, log = Clock(), []
    made = []

    def factory():
        made.append(FakeServer(log))
        return made[-1]
    f, _, _ = make_fencer(tmp_path, factory, clock)
    f.keep_warm()
    made[0].dead = True                 # wait_timeout closed it, or mysqld restarted
    assert f.fence("test", deadline=clock.t + 1) == "read-only"
    assert len(made) == 2 and made[1].ro is True


def test_watchdog_fences_a_writable_mysqld_it_never_made_writable(tmp_path):
    """Item 1: a restarted watch, or a promotion made by on-change: the watchdog looks at mysqld itself."""
    clock, log = Clock(), []
    srv = FakeServer(log, ro=False)
    f, lease, events = make_fencer(tmp_path, lambda: srv, clock)
    lease.extend("s1", clock() - 3.5)      # left by an earlier process; ended 0.5 s ago, deadline in 0.5 s
    wd = Watchdog(lease, f, margin=1.0, clock=clock)
    assert wd.check_once() == "read-only" and srv.ro is True and events == []
    # Long expired: the deadline (lease end + margin) has passed, another node may hold the lock: stopped.
    srv2 = FakeServer([], ro=False)
    f2, lease2, events2 = make_fencer(tmp_path / "2", lambda: srv2, clock)
    lease2.extend("s1", clock() - 10)
    assert Watchdog(lease2, f2, margin=1.0, clock=clock).check_once() == "mysqld killed"
    assert events2 == ["SIGKILL mysqld"]


def test_watchdog_leaves_a_valid_lease_and_a_read_only_server_alone(tmp_path):
    clock, log = Clock(), []
    srv = FakeServer(log, ro=False)
    f, lease, _ = make_fencer(tmp_path, lambda: srv, clock)
    lease.extend("s1", clock())
    wd = Watchdog(lease, f, margin=1.0, clock=clock)
    assert wd.check_once() is None and srv.ro is False
    clock.t += 3.5
    assert wd.check_once() == "read-only"
    clock.t += 0.3
    assert wd.check_once() is None and "set_ro" in log      # read-only now: checked, not fenced again


def test_a_new_session_does_not_cover_a_primary_made_writable_under_the_old_one(tmp_path):
    """`failover` destroys the primary's session; its heartbeat makes a new session and a lease for it.
    That lease must not keep mysqld writable: the lock belonged to the old session."""
    clock, log = Clock(), []
    srv = FakeServer(log, ro=False)
    f, lease, _ = make_fencer(tmp_path, lambda: srv, clock)
    lease.extend("s1", clock())
    lease.mark_writer("s1")
    wd = Watchdog(lease, f, margin=1.0, clock=clock)
    assert wd.check_once() is None and srv.ro is False
    lease.void("session gone")
    lease.extend("s2", clock())                  # the new session's fresh lease
    assert lease.left() > 0
    assert wd.check_once() == "read-only" and srv.ro is True


def test_a_promotion_between_the_lease_read_and_the_read_only_read_is_not_fenced(tmp_path):
    """Seen in CI: the health hook read the lease just before a promotion marked its session, then found
    mysqld writable and fenced the new primary. The lease is read again after seeing it writable."""
    clock, log = Clock(), []
    srv = FakeServer(log, ro=True)
    f, lease, _ = make_fencer(tmp_path, lambda: srv, clock)
    lease.extend("s1", clock() - 60)
    lease.mark_writer("s1")                        # a previous tenure, long over

    class PromotingServer(FakeServer):
        def read_only(self):
            lease.extend("s2", clock())            # meanwhile: the promotion under a new session
            lease.mark_writer("s2")
            self.ro = False
            return False
    srv = PromotingServer(log, ro=True)
    wd = Watchdog(lease, f, margin=1.0, clock=clock)
    assert wd.check_once() is None and srv.ro is False and "set_ro" not in log


def test_watchdog_fences_when_it_cannot_ask_a_running_mysqld(tmp_path):
    clock = Clock()

    def refuse():
        raise PilotError("hung")
    f, lease, events = make_fencer(tmp_path, refuse, clock, running=True)
    wd = Watchdog(lease, f, margin=1.0, clock=clock)
    clock_ticks = iter(range(100))
    orig = f.clock
    f.clock = lambda: orig() + next(clock_ticks)        # time passes while it retries
    assert wd.check_once() == "mysqld killed" and events == ["SIGKILL mysqld"]


# ---- the heartbeat ---------------------------------------------------------------------------------

class RecordingDCS(PartialDCS):
    def __init__(self, events, clock=None, renew_ok=True):
        self.events, self.clock, self.renew_ok = events, clock, renew_ok

    def pass_check(self, cid, note=""):
        self.events.append("pass")

    def fail_check(self, cid, note=""):
        self.events.append("fail_check")

    def register_check(self, *a, **kw):
        self.events.append("register")

    def renew_session(self, sid):
        self.events.append("renew")
        if self.clock is not None:
            self.clock.t += 2.0          # a slow Consul
        return 10 if self.renew_ok else None

    def create_session(self, *a):
        self.events.append("create")
        return "s-new"

    def release_leader(self, sid, marker=None):
        self.events.append("release")
        return True


def node(tmp_path, dcs):
    env = {"MYSQL_ROOT_PASSWORD": "pw", "MYSQL_REPL_PASSWORD": "pw2", "HOSTNAME": "db1",
           "MYSQLPILOT_STATE_DIR": str(tmp_path)}
    return Node(config.load(None, env=env), dcs=dcs)


def test_mysqld_gone_gives_up_the_lease_before_failing_the_check(tmp_path, monkeypatch):
    """Item 3: failing the check ends the session at once, so the lease goes first."""
    events = []
    n = node(tmp_path, RecordingDCS(events))
    n.state.update(session="s1")
    n.lease.extend("s1", 1e12)
    monkeypatch.setattr(n, "mysqld_alive", lambda: False)
    monkeypatch.setattr("mysqlpilot.mysqld.accepts_connections", lambda cfg, timeout=0.3: False)
    orig_void = n.lease.void
    n.lease.void = lambda why, **kw: (events.append("void"), orig_void(why, **kw))
    n.beat()
    # The release (a primary's fast path, tests/unit/test_ha_interleavings.py) also comes after the void.
    assert events == ["void", "release", "fail_check"] and n.lease.left() < 0


def test_a_hung_mysqld_is_neither_reported_alive_nor_renewed(tmp_path, monkeypatch):
    """Item 3: a probe error (1040, 1135, a hang) never fails the check; the lease just lapses."""
    events = []
    n = node(tmp_path, RecordingDCS(events))
    n.state.update(session="s1")
    monkeypatch.setattr(n, "mysqld_alive", lambda: None)
    n.beat()
    assert events == []


def test_the_lease_counts_from_when_the_renew_was_sent(tmp_path, monkeypatch):
    import mysqlpilot.heartbeat as heartbeat
    clock = Clock()
    events = []
    n = node(tmp_path, RecordingDCS(events, clock=clock))
    n.lease.clock = clock
    monkeypatch.setattr(heartbeat, "boottime", clock)
    n.state.update(session="s1")
    monkeypatch.setattr(n, "mysqld_alive", lambda: True)
    t_sent = clock()
    n.beat()
    assert events == ["pass", "renew"]
    assert n.lease.expires_at() == pytest.approx(t_sent + n.policy.lease)


def test_a_session_that_is_gone_voids_the_lease_and_a_new_one_starts_fresh(tmp_path, monkeypatch):
    events = []
    n = node(tmp_path, RecordingDCS(events, renew_ok=False))
    n.state.update(session="s1")
    n.lease.extend("s1", 1e12)
    monkeypatch.setattr(n, "mysqld_alive", lambda: True)
    n.beat()
    assert events == ["pass", "renew", "create"]
    assert n.sid == "s-new" and n.lease.left("s1") < 0 and n.lease.left("s-new") > 0



def test_a_poke_runs_a_heartbeat_at_once_instead_of_at_the_next_tick():
    """The prober pokes the heartbeat when mysqld's process goes, so the crash path does not wait a tick."""
    beats = threading.Semaphore(0)
    hb = Heartbeat(beats.release, interval=3600)
    hb.start()
    try:
        assert beats.acquire(timeout=10)             # the first beat runs at start
        hb.poke()
        assert beats.acquire(timeout=10)             # not an hour later
    finally:
        hb.stop()
        hb.join(10)
    assert not hb.is_alive()


def test_the_prober_pokes_the_heartbeat_when_mysqlds_process_goes(tmp_path, monkeypatch):
    from mysqlpilot import heartbeat
    n = node(tmp_path, RecordingDCS([]))
    pids = iter([123, 123, None])
    monkeypatch.setattr("mysqlpilot.mysqld.mysqld_pid", lambda cfg: next(pids, None))
    monkeypatch.setattr(heartbeat, "PID_POLL", 0.01)
    monkeypatch.setattr(n, "probe_conn", lambda: (_ for _ in ()).throw(PilotError("no")))
    poked = threading.Event()

    class HB:
        def poke(self):
            poked.set()
            n._stop.set()
    n._heartbeat = HB()
    t = threading.Thread(target=n.keeper.prober, daemon=True)
    t.start()
    assert poked.wait(10)
    t.join(10)


def test_a_slow_pass_cannot_delay_the_heartbeat(tmp_path, monkeypatch):
    """Issue 12: the session and the lease are kept by their own thread; a pass stuck in SQL or Consul
    (here: blocked until the test ends) does not stop the renewals."""
    events = []
    n = node(tmp_path, RecordingDCS(events))
    n.state.update(session="s1")
    monkeypatch.setattr(n, "mysqld_alive", lambda: True)
    stuck = threading.Event()

    def observe():
        stuck.wait(60)
        raise PilotError("released")
    monkeypatch.setattr(n.observer, "observe", observe)
    slow = threading.Thread(target=lambda: pytest.raises(PilotError, n.run_once), daemon=True)
    slow.start()
    hb = Heartbeat(n.beat, 0.05)
    hb.start()
    try:
        deadline = time.monotonic() + 20
        while events.count("renew") < 3:
            assert time.monotonic() < deadline, events
            time.sleep(0.01)
        assert slow.is_alive() and n.lease.left("s1") > 0
    finally:
        stuck.set()
        hb.stop()
        hb.join(10)
        slow.join(10)


def test_the_fence_deadline_holds_while_a_fence_statement_blocks(tmp_path):
    """With a sub-second fence_margin, a statement blocked up to the connection's read timeout (1.5 s)
    would carry the fence past its deadline: mysqld is stopped at the deadline, not when it returns."""
    from mysqlpilot.lease import boottime
    order = []

    class Hanging(FakeServer):
        def set_read_only(self, on):
            time.sleep(1.5)
            order.append("statement returned")
            raise PilotError("read timeout")
    lease = Lease(StateFile(str(tmp_path)), 3.0)
    f = Fencer(lambda: Hanging([]), lease, cfg=None,
               kill_mysqld=lambda: order.append("SIGKILL mysqld") or True, mysqld_running=lambda: True)
    assert f.fence("test", deadline=boottime() + 0.2) == "mysqld killed"
    assert order[0] == "SIGKILL mysqld" and order.count("SIGKILL mysqld") == 1


def test_a_fence_confirmed_before_the_deadline_never_fires_the_backstop(tmp_path):
    from mysqlpilot.lease import boottime
    kills = []
    lease = Lease(StateFile(str(tmp_path)), 3.0)
    f = Fencer(lambda: FakeServer([]), lease, cfg=None, kill_mysqld=lambda: kills.append(1) or True,
               mysqld_running=lambda: True)
    assert f.fence("test", deadline=boottime() + 0.3) == "read-only"
    time.sleep(0.6)
    assert kills == []


# ---- the kill deadline is fixed when the lease is granted (issue 18 item 11) --------------------------

def test_a_late_watchdog_does_not_move_the_kill_deadline(tmp_path):
    """The deadline is lease end + margin, fixed at the grant. A watchdog that comes back after it (frozen,
    or blocked in a slow read) stops mysqld at once: another node may hold the lock by then, so there is
    no read-only attempt that would leave mysqld answering meanwhile."""
    clock, log = Clock(), []
    srv = FakeServer(log, ro=False)
    f, lease, events = make_fencer(tmp_path, lambda: srv, clock)
    lease.extend("s1", clock())
    lease.mark_writer("s1")
    wd = Watchdog(lease, f, margin=1.0, clock=clock)
    assert wd.check_once() is None and srv.ro is False
    clock.t += 3.0 + 1.0 + 0.2                    # back 0.2 s after lease end + margin
    assert wd.check_once() == "mysqld killed" and events == ["SIGKILL mysqld"]
    assert "set_ro" not in log, log


def test_a_new_session_does_not_move_the_kill_deadline_of_the_writes_made_under_the_old_one(tmp_path):
    """`failover` destroyed s1, under which mysqld was made writable; the heartbeat's new session s2 earns a
    later lease. The deadline stays s1's lease end + margin."""
    clock, log = Clock(), []
    srv = FakeServer(log, ro=False)
    f, lease, events = make_fencer(tmp_path, lambda: srv, clock)
    lease.extend("s1", clock())                   # s1's lease ends at t+3: deadline t+4
    lease.mark_writer("s1")
    wd = Watchdog(lease, f, margin=1.0, clock=clock)
    assert wd.check_once() is None
    clock.t += 2.0
    lease.void("session gone")
    lease.extend("s2", clock())                   # ends at t+5
    clock.t += 2.2                                # t+4.2: past s1's deadline
    assert lease.left() > 0
    assert wd.check_once() == "mysqld killed" and events == ["SIGKILL mysqld"]
    assert "set_ro" not in log, log


class SlowServer(FakeServer):
    """A slow mysqld: each read takes `delay` seconds (after the first `fast` ones)."""

    def __init__(self, log, delay, fast=0, **kw):
        super().__init__(log, **kw)
        self.delay, self.fast = delay, fast

    def read_only(self):
        if self.fast > 0:
            self.fast -= 1
        else:
            time.sleep(self.delay)
        return super().read_only()

    def set_read_only(self, on):
        time.sleep(self.delay)
        raise PilotError("read timeout")


def run_watchdog(lease, srv, margin, until):
    from mysqlpilot.lease import boottime
    kills = []
    f = Fencer(lambda: srv, lease, cfg=None, kill_mysqld=lambda: kills.append(boottime()) or True,
               mysqld_running=lambda: True)
    wd = Watchdog(lease, f, margin=margin)
    wd.start()
    try:
        while boottime() < until and not kills:
            time.sleep(0.01)
    finally:
        wd.stop()
        wd.join(10)
    return kills


def test_the_kill_lands_by_lease_end_plus_margin_while_the_watchdog_is_blocked_on_mysqld(tmp_path):
    """keep_warm on a slow mysqld held the watchdog past the lease end; the kill came when it returned
    (lease end + 1.2 s here). A thread that never talks to mysqld keeps the deadline."""
    from mysqlpilot.lease import boottime
    lease = Lease(StateFile(str(tmp_path)), 0.3)
    t0 = boottime()
    lease.extend("s1", t0)
    lease.mark_writer("s1")
    kills = run_watchdog(lease, SlowServer([], delay=1.2, ro=False), margin=0.2, until=t0 + 4)
    assert kills, "never killed"
    assert kills[0] <= t0 + 0.3 + 0.2 + 0.15, f"killed {kills[0] - t0:.2f}s after the grant; deadline 0.5s"


def test_a_blocked_watchdog_does_not_stop_a_mysqld_it_saw_read_only_since_the_last_promotion(tmp_path):
    """The deadline thread kills only what may be writable: a replica whose last read said read-only (and
    no promotion since) is left alone while a slow read blocks past the lease end."""
    from mysqlpilot.lease import boottime
    lease = Lease(StateFile(str(tmp_path)), 1.1)
    t0 = boottime()
    lease.extend("s1", t0)
    kills = run_watchdog(lease, SlowServer([], delay=1.5, fast=1, ro=True), margin=0.2, until=t0 + 2.5)
    assert kills == []


def test_a_full_disk_does_not_stop_a_fence(tmp_path, monkeypatch):
    """Simulator seed 9794: with the state dir full (ENOSPC), voiding the lease at the start of a fence
    raised, and the fence never set read-only (each retry raised again). The void is best effort."""
    import errno
    clock, log = Clock(), []
    srv = FakeServer(log)
    f, lease, events = make_fencer(tmp_path, lambda: srv, clock)
    lease.extend("s1", clock())

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(lease.state, "change", full)
    assert f.fence("test", deadline=clock.t + 10) == "read-only"
    assert srv.ro is True and events == []

"""SIGTERM to `mysqlpilot watch` (ContainerPilot stops the pilot job as pre-stop starts): the watch keeps the
session's heartbeat until pre-stop has renewed it. pre-stop is a new process; when its first renew came more
than check_ttl after the SIGTERM, the liveness check failed, the session ended, and a hand-over became a
failover (CI, test_failover.py::test_scale_down_of_the_primary_hands_over_first)."""
from __future__ import annotations

import os
import threading
import time

import pytest

from mysqlpilot import heartbeat, ha, stopguard
from tests.unit.fakes import FakeDCS, FakeMySQL, give_session, make_node


@pytest.fixture
def watch(tmp_path, monkeypatch):
    dcs = FakeDCS()
    servers = {"n1": FakeMySQL("n1", executed="0-1-5")}
    node = make_node(tmp_path, "n1", dcs, servers, monkeypatch)
    monkeypatch.setattr(heartbeat.mysqld, "mysqld_pid", lambda cfg: 4242)     # mysqld runs
    monkeypatch.setattr(ha.mysqld, "mysqld_pid", lambda cfg: 4242)
    sid = give_session(node, dcs)
    renews = []
    real = dcs.renew_session
    dcs.renew_session = lambda s: (renews.append(time.monotonic()), real(s))[1]
    return node, dcs, sid, renews


def run_terminated(node) -> threading.Thread:
    node.terminate()                   # what the SIGTERM handler does; the loop runs no pass after it
    t = threading.Thread(target=node.run_forever, daemon=True)
    t.start()
    return t


def test_a_sigtermed_watch_keeps_the_session_until_pre_stop_renews_it(watch):
    node, dcs, sid, renews = watch
    t = run_terminated(node)
    time.sleep(1.5)
    assert t.is_alive(), "the watch exited at SIGTERM: nothing renews the session until pre-stop's first beat"
    assert renews, "the SIGTERMed watch stopped renewing the session"
    stopguard.write_record(node.cfg.state_dir, done=False, beating=True, pid=os.getpid())
    t.join(2.0)
    assert not t.is_alive(), "pre-stop renews the session now: the watch should have stopped"
    assert dcs.sessions[sid], "the watch must leave the session to pre-stop, not end it"
    n = len(renews)
    time.sleep(node.timing.heartbeat * 2)
    assert len(renews) == n, "the watch's heartbeat still runs after it stopped"


def test_a_sigtermed_watch_stops_when_pre_stop_is_done(watch):
    node, dcs, sid, renews = watch
    t = run_terminated(node)
    stopguard.write_record(node.cfg.state_dir, done=False, pid=os.getpid())
    time.sleep(0.5)
    assert t.is_alive(), "pre-stop runs but has not renewed yet"
    stopguard.write_record(node.cfg.state_dir, done=True, pid=os.getpid())
    t.join(2.0)
    assert not t.is_alive()


def test_a_sigtermed_watch_with_no_pre_stop_stops_after_the_start_wait(watch, monkeypatch):
    node, dcs, sid, renews = watch
    monkeypatch.setattr(stopguard, "WAIT_FOR_START", 0.8)
    # A record from an earlier stop of this node is not this stop's pre-stop.
    stopguard.write_record(node.cfg.state_dir, done=False, beating=True, pid=os.getpid())
    os.utime(os.path.join(node.cfg.state_dir, stopguard.RECORD))
    rec = stopguard.read_record(node.cfg.state_dir)
    rec["time"] = time.time() - 3600
    with open(os.path.join(node.cfg.state_dir, stopguard.RECORD), "w") as fh:
        import json
        json.dump(rec, fh)
    t = run_terminated(node)
    time.sleep(0.4)
    assert t.is_alive()
    t.join(2.0)
    assert not t.is_alive()


def test_a_stopping_node_never_opens_a_new_session(watch):
    # pre-stop of a replica ends the session while the SIGTERMed watch still beats: no new one.
    node, dcs, sid, renews = watch
    node.state.update(stopping=True)
    dcs.destroy_session(sid)
    node._sql_ok_at = ha.boottime()
    node.beat()
    assert len(dcs.sessions) == 1, "a stopping node opened a new Consul session"

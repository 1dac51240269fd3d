"""Fencing on a real server, MariaDB 10.11 and MySQL 9.7 (safety items 1 and 2): what the unit tests in test_lease.py drive over fakes.

- A commit waiting for a semi-sync ACK that no replica will send blocks SET GLOBAL read_only (seen live:
  two writable nodes for ~10 s). Fencing kills the clients first; the client gets an error, never an
  acknowledgement. MariaDB's KILL ends the wait and read-only is confirmed at once; MySQL's does not, and
  nothing may end the wait before read-only is in force (issue 18 item 3), so mysqld is stopped at the
  deadline. No client reconnecting meanwhile gets an acknowledgement.
- A mysqld that cannot be made read-only (frozen) is SIGKILLed by the deadline.
- A restarted watch whose Consul is unreachable fences a writable mysqld whose lease ended.
"""
import os
import signal
import threading
import time

import pymysql
import pytest

from mysqlpilot import config, mysqld
from mysqlpilot.ha import Node
from mysqlpilot.lease import Fencer, Lease, boottime
from mysqlpilot.sqlclient import SQLError
from mysqlpilot.local.ports import free_port
from mysqlpilot.statefile import StateFile


def fence_conn(inst):
    from mysqlpilot.sqlclient import Server
    return lambda: Server(inst.flavor, socket=inst.cfg.socket, user="root", password=inst.cfg.root_password,
                          connect_timeout=1, read_timeout=1.5)


def blocked_writer(inst, result):
    c = pymysql.connect(host=inst.host, port=inst.port, user="root", password=inst.cfg.root_password,
                        autocommit=True, read_timeout=30)
    try:
        c.cursor().execute("INSERT INTO fence.t VALUES (1)")
        result["outcome"] = "acknowledged"
    except pymysql.err.MySQLError as exc:
        result["outcome"] = f"error {exc.args[0]}"


def writable_semi_sync_primary(inst):
    a = inst.admin()
    f = inst.flavor
    # MySQL 8.0.26+ names: rpl_semi_sync_source_*, wait_no_replica.
    p, r = ("source", "replica") if getattr(f, "new_semisync", False) else ("master", "slave")
    a.set_read_only(False)
    a.execute(["CREATE DATABASE IF NOT EXISTS fence", "CREATE TABLE IF NOT EXISTS fence.t (id INT PRIMARY KEY)"])
    # No replica: every commit waits for an ACK that never comes (timeout far beyond the test).
    a.execute(f.semi_sync_primary(True, 600000) + [f"SET GLOBAL rpl_semi_sync_{p}_wait_no_{r} = ON"])
    a.close()


def wait_state(inst, state, timeout=10):
    a = inst.admin()
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = a.query("SELECT STATE AS s FROM information_schema.PROCESSLIST")
        if any(state in str(r["s"]) for r in rows):
            a.close()
            return
        time.sleep(0.05)
    raise AssertionError(f"no thread reached state {state!r}")


def test_fence_confirms_read_only_past_a_commit_waiting_for_a_semi_sync_ack(server_factory, tmp_path):
    inst = server_factory("p")
    writable_semi_sync_primary(inst)
    result = {}
    t = threading.Thread(target=blocked_writer, args=(inst, result))
    t.start()
    wait_state(inst, "semi-sync ACK")
    # The old fence: SET GLOBAL read_only waits behind that commit (here 1 s of lock wait, then 1205).
    old = inst.admin()
    old.execute("SET SESSION lock_wait_timeout = 1")
    with pytest.raises(Exception, match="1205"):
        old.set_read_only(True)
    old.close()
    lease = Lease(StateFile(str(tmp_path / "st")), 3.0)
    f = Fencer(fence_conn(inst), lease, inst.cfg)
    t0 = time.monotonic()
    if inst.flavor.dialect == "mysql":
        # KILL does not end the wait here, and switching semi-sync off would acknowledge commits no replica
        # has: stopped at the deadline.
        assert f.fence("test", deadline=boottime() + 2) == "mysqld killed"
        t.join(10)
        assert result["outcome"].startswith("error"), result   # never acknowledged
        inst._reap()
        assert mysqld.mysqld_pid(inst.cfg) is None
        return
    assert f.fence("test", deadline=boottime() + 5) == "read-only"
    took = time.monotonic() - t0
    t.join(10)
    assert result["outcome"].startswith("error"), result       # never acknowledged
    srv = inst.admin()
    assert srv.read_only() is True
    # Nobody writes after a confirmed fence, root over TCP included (MySQL: super_read_only; MariaDB:
    # root@'%' has no READ_ONLY ADMIN).
    with pytest.raises(Exception, match="1290"):
        inst.server().execute("INSERT INTO fence.t VALUES (2)")
    assert took < 5, f"fencing took {took:.1f}s"                 # confirmed, not by the kill fallback
    assert mysqld.mysqld_pid(inst.cfg) is not None


def test_no_client_reconnecting_during_the_fence_gets_an_acknowledgement(server_factory, tmp_path):
    """Issue 18 item 3 on the real server: four writers reconnect and INSERT in a loop while a commit waits
    for an ACK and the fence runs. There is no replica, so any acknowledgement would be a commit that no
    replica has (the old MySQL fence switched semi-sync off before read-only was in force)."""
    inst = server_factory("r")
    writable_semi_sync_primary(inst)
    acked, stop = [], threading.Event()

    def writer(k):
        i = 0
        while not stop.is_set():
            i += 1
            try:
                c = pymysql.connect(host=inst.host, port=inst.port, user="root", password=inst.cfg.root_password,
                                    autocommit=True, connect_timeout=1, read_timeout=30)
            except pymysql.err.MySQLError:
                time.sleep(0.01)
                continue
            try:
                c.cursor().execute(f"INSERT INTO fence.t VALUES ({k * 1000000 + i})")
                acked.append(k * 1000000 + i)
            except pymysql.err.MySQLError:
                pass
            finally:
                try:
                    c.close()
                except Exception:  # noqa: BLE001 - killed connection
                    pass

    threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(4)]
    for th in threads:
        th.start()
    try:
        wait_state(inst, "semi-sync ACK")
        lease = Lease(StateFile(str(tmp_path / "st")), 3.0)
        f = Fencer(fence_conn(inst), lease, inst.cfg)
        outcome = f.fence("test", deadline=boottime() + 2)
        assert outcome in ("read-only", "mysqld killed"), outcome
        time.sleep(1.0)                  # the writers go on trying against the fenced or stopped server
    finally:
        stop.set()
        for th in threads:
            th.join(40)
    assert acked == [], f"acknowledged without a replica: {acked[:10]}"
    if outcome == "mysqld killed":
        inst._reap()


def test_a_semi_sync_commit_waits_for_its_ack_without_a_timeout(server_factory):
    """Issue 18 item 9: with the servers' 10 s default the wait expired (during a freeze, at once at thaw),
    the server fell back to async and answered OK for a commit no replica had. What a promotion sets now
    (the flavor's defaults) keeps a commit with no replica waiting past that, until mysqld stops."""
    inst = server_factory("n")
    a = inst.admin()
    a.set_read_only(False)
    a.execute(["CREATE DATABASE IF NOT EXISTS fence", "CREATE TABLE IF NOT EXISTS fence.t (id INT PRIMARY KEY)"])
    a.semi_sync_primary(True)                 # as ha.py's promotion: no timeout argument
    a.close()
    result = {}
    t = threading.Thread(target=blocked_writer, args=(inst, result))
    t.start()
    wait_state(inst, "semi-sync ACK")
    time.sleep(12)                            # past the servers' 10 s default
    assert "outcome" not in result, result   # still waiting: not acknowledged
    inst.kill()
    t.join(40)
    assert result["outcome"].startswith("error"), result


def test_fence_stops_a_mysqld_it_cannot_make_read_only(server_factory, tmp_path):
    inst = server_factory("f")
    inst.admin().set_read_only(False)
    pid = mysqld.mysqld_pid(inst.cfg)
    os.kill(pid, signal.SIGSTOP)             # hung: no login, no statement completes
    try:
        lease = Lease(StateFile(str(tmp_path / "st")), 3.0)
        f = Fencer(fence_conn(inst), lease, inst.cfg)
        assert f.fence("test", deadline=boottime() + 1.0) == "mysqld killed"
        inst._reap()
        assert mysqld.mysqld_pid(inst.cfg) is None
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def test_a_restarted_watch_fences_while_consul_is_unreachable(server_factory):
    """Item 1: the primary is cut off from Consul and its watch restarts: the new process cannot read
    the leader key, yet it fences, from the lease it finds in the state file and mysqld's own state."""
    inst = server_factory("w")
    inst.admin().set_read_only(False)
    dead = free_port("127.0.0.1")                 # nothing listens: every Consul call fails
    cfg = config.load(env=dict(**{
        "MYSQL_ROOT_PASSWORD": inst.cfg.root_password, "MYSQL_REPL_PASSWORD": inst.cfg.repl_password,
        "MYSQLPILOT_DATADIR": inst.cfg.datadir, "MYSQLPILOT_STATE_DIR": inst.cfg.state_dir,
        "MYSQLPILOT_SOCKET": inst.cfg.socket, "MYSQLPILOT_PORT": str(inst.port),
        "MYSQLPILOT_NODE": "w", "CONSUL": f"127.0.0.1:{dead}", "MYSQLPILOT_FLAVOR": inst.cfg.flavor,
        "MYSQLPILOT_FLAVOR_VERSION": inst.cfg.flavor_version, "MYSQLPILOT_MYSQLD": inst.cfg.mysqld_bin or ""}))
    state = StateFile(cfg.state_dir)
    # What the dead watch left: its session and a lease that runs out in a second, which nobody can renew.
    # (One already past lease end + fence_margin is stopped instead: tests/unit/test_lease.py
    # ::test_watchdog_fences_a_writable_mysqld_it_never_made_writable.)
    state.update(session="sid-of-the-dead-watch")
    Lease(state, 3.0).extend("sid-of-the-dead-watch", boottime() - 2.0)
    node = Node(cfg)
    node.start_threads()
    try:
        def read_only():
            # Fencing kills every client connection, ours included, even one in its handshake (MySQL: an
            # SSL EOF while connecting): such a read is "not known yet", and the next one asks again.
            for _ in range(20):
                srv = inst.admin()
                try:
                    return srv.read_only()
                except SQLError:
                    time.sleep(0.05)
                finally:
                    srv.close()
            return None
        deadline = time.time() + 10
        while time.time() < deadline and not read_only():
            time.sleep(0.1)
        assert read_only() is True
        with pytest.raises(Exception):
            node.run_once()                          # the pass itself cannot reach Consul
    finally:
        node.stop()

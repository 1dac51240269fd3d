"""Real servers (MariaDB 10.11, MySQL 9.7): GTID replication, read_only, errors, fencing kills, waits — through
sqlclient.Server."""
from __future__ import annotations

import time

import pymysql
import pytest

from mysqlpilot.errors import PilotError
from mysqlpilot.flavors import quote
from tests.harness.mariadb_server import ROOT_PASSWORD

pytestmark = pytest.mark.integration

APP_ENV = {"MYSQL_DATABASE": "app", "MYSQL_USER": "app", "MYSQL_PASSWORD": "app-pw"}


def make_pair(server_factory):
    """Primary a (writable) and replica b following it by GTID, seeded the way a restore seeds it."""
    a = server_factory("a", env=APP_ENV)
    b = server_factory("b", env=APP_ENV)
    # The replica is driven over its socket as mysqlpilot does: on a read-only MariaDB 10.11 setting
    # gtid_slave_pos writes mysql.gtid_slave_pos, which only READ_ONLY ADMIN (root@localhost) may.
    pa, pb = a.server(), b.admin()
    a.admin().set_read_only(False)
    # b created its own users; drop its own binlog history and start at a's position (as a restore does).
    pb.execute(pb.flavor.reset_binlogs())
    pb.seed_gtid(pa.gtid_executed())
    pb.change_source(a.host, a.port, b.cfg.repl_user, b.cfg.repl_password)
    pb.start_replica()
    return a, b, pa, pb


def test_replica_follows_primary_by_gtid(server_factory):
    a, b, pa, pb = make_pair(server_factory)
    pa.execute(["CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20))",
                "INSERT INTO app.t VALUES (1, 'one'), (2, 'two')",
                "INSERT INTO app.t VALUES (3, 'three')"])
    target = pa.gtid_executed()
    mysql = pa.flavor.dialect == "mysql"
    uuid = str(pa.scalar("SELECT @@GLOBAL.server_uuid")) if mysql else ""
    # MariaDB: domain-server-seq; MySQL: the primary's server-UUID interval set.
    assert target and target.startswith(f"{uuid}:1-" if mysql else f"0-{a.cfg.server_id}-"), target
    assert pb.wait_for_gtid(target, timeout=60), b.error_log_tail()
    assert pb.query("SELECT id, v FROM app.t ORDER BY id") == [
        {"id": 1, "v": "one"}, {"id": 2, "v": "two"}, {"id": 3, "v": "three"}]
    assert pb.flavor.gtid_contains(pb.gtid_executed(), target)
    assert pb.wait_relay_applied(timeout=60)
    assert pb.flavor.gtid_contains(pb.gtid_received(), target)

    st = pb.replica_status()
    assert st is not None
    assert st["io_running"] is True and st["sql_running"] is True, st
    assert st["source_host"] == a.host and st["source_port"] == a.port
    assert st["last_io_errno"] == 0 and st["last_sql_error"] == ""
    assert st["lag_seconds"] is not None and st["lag_seconds"] >= 0
    if mysql:
        # Retrieved_Gtid_Set holds only what the IO thread received (not the seeded gtid_purged): here the
        # three inserts' transactions, all of the primary's UUID.
        assert st["retrieved"] and pb.flavor.gtid_contains(target, st["retrieved"]), st["retrieved"]
    else:
        assert pb.flavor.gtid_contains(st["gtid_io_pos"], target)
    assert st["using_gtid"].lower() == ("1" if mysql else "slave_pos")
    # The replica is read-only; the primary is not.
    assert pb.read_only() is True and pa.read_only() is False
    # A primary has no replica status.
    assert pa.replica_status() is None

    # A GTID that never comes: the wait gives up and says so.
    n = pb.flavor.gtid_count(target) + 100
    beyond = f"{uuid}:1-{n}" if mysql else f"0-{a.cfg.server_id}-{n}"
    assert pb.wait_for_gtid(beyond, timeout=1) is False

    pb.stop_replica()
    st = pb.replica_status()
    assert st["io_running"] is False and st["sql_running"] is False
    pb.reset_replica_all()
    assert pb.replica_status() is None


def test_read_only_blocks_app_user_and_remote_root(server_factory):
    a = server_factory("ro", env=APP_ENV)
    root = a.server()
    local = a.admin()
    local.set_read_only(False)
    root.execute("CREATE TABLE app.w (id INT PRIMARY KEY)")
    app = a.server(user="app", password="app-pw")
    app.execute("INSERT INTO app.w VALUES (1)")

    local.set_read_only(True)
    assert root.read_only() is True
    with pytest.raises(PilotError) as ei:
        app.execute("INSERT INTO app.w VALUES (2)")
    assert "(1290)" in str(ei.value)
    if a.flavor.has_super_read_only:
        # MySQL: super_read_only binds every account, root over TCP and over the socket alike.
        assert int(root.scalar("SELECT @@GLOBAL.super_read_only")) == 1
        for who in (root, local):
            with pytest.raises(PilotError) as ei:
                who.execute("INSERT INTO app.w VALUES (3)")
            assert "(1290)" in str(ei.value) and "super-read-only" in str(ei.value)
        local.set_read_only(False)
        app.execute("INSERT INTO app.w VALUES (5)")
        local.set_read_only(True)
        assert sorted(r["id"] for r in root.query("SELECT id FROM app.w")) == [1, 5]
        return
    # MariaDB 10.11 has no super_read_only and lets READ_ONLY ADMIN write under read_only. GRANT ALL
    # includes it, so bootstrap revokes it from root@'%': remote root is blocked as well...
    with pytest.raises(PilotError) as ei:
        root.execute("INSERT INTO app.w VALUES (3)")
    assert "(1290)" in str(ei.value)
    with pytest.raises(PilotError) as ei:
        root.set_read_only(False)
    assert "READ_ONLY ADMIN" in str(ei.value)
    # ...while root@localhost (the socket mysqlpilot uses) keeps it, so it can toggle read_only.
    local.execute("INSERT INTO app.w VALUES (4)")
    local.set_read_only(False)
    app.execute("INSERT INTO app.w VALUES (5)")
    local.set_read_only(True)
    assert sorted(r["id"] for r in root.query("SELECT id FROM app.w")) == [1, 4, 5]


def test_wrong_password_is_one_line_without_secrets(server_factory):
    a = server_factory("pw")
    bad = a.server(password="not-the-password")
    assert bad.ping() is False
    with pytest.raises(PilotError) as ei:
        bad.version()
    msg = str(ei.value)
    assert "\n" not in msg
    assert f"{a.host}:{a.port}" in msg and "refused user 'root'" in msg and "MYSQL_ROOT_PASSWORD" in msg
    assert "not-the-password" not in msg and ROOT_PASSWORD not in msg

    # A failing statement that echoes a password back is scrubbed.
    srv = a.server()
    with pytest.raises(PilotError) as ei:
        srv.execute("CHANGE MASTER TO MASTER_PASSWORD='s3cr3t-x' nonsense")
    assert "s3cr3t-x" not in str(ei.value) and "(1064)" in str(ei.value)

    # Nothing listens on the next port: named, one line.
    gone = a.server()
    gone.port = a.port + 1 if a.port < 65535 else a.port - 1
    with pytest.raises(PilotError) as ei:
        gone.version()
    assert f"{a.host}:{gone.port}" in str(ei.value) and "\n" not in str(ei.value)


def test_kill_client_connections_spares_replication(server_factory):
    a, b, pa, pb = make_pair(server_factory)
    pa.execute("CREATE TABLE app.k (id INT PRIMARY KEY)")
    assert pb.wait_for_gtid(pa.gtid_executed(), timeout=60)
    client = pymysql.connect(host=a.host, port=a.port, user="app", password="app-pw", autocommit=True)
    with client.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        victim = cur.fetchone()[0]

    killed = pa.kill_client_connections()
    assert killed >= 1
    # KILL CONNECTION is asynchronous: the thread leaves the processlist a moment later.
    deadline = time.monotonic() + 10
    while victim in {r["id"] for r in pa.query(pa.flavor.processlist_sql())}:
        assert time.monotonic() < deadline, f"connection {victim} still listed after KILL"
        time.sleep(0.05)
    with pytest.raises(pymysql.err.OperationalError):
        with client.cursor() as cur:
            cur.execute("SELECT 1")
    client.close()
    # Our own connection and the replica's binlog dump survive: replication keeps flowing.
    assert pa.ping()
    assert any(r["command"].startswith("Binlog Dump") for r in pa.query(pa.flavor.processlist_sql()))
    pa.execute("INSERT INTO app.k VALUES (7)")
    assert pb.wait_for_gtid(pa.gtid_executed(), timeout=60)
    assert pb.query("SELECT id FROM app.k") == [{"id": 7}]
    st = pb.replica_status()
    assert st["io_running"] and st["sql_running"]


def test_semi_sync_switches(server_factory):
    a, b, pa, pb = make_pair(server_factory)
    assert pa.semi_sync_status()["status"] is False
    pa.semi_sync_primary(True, 5000)
    pb.stop_replica()
    pb.semi_sync_replica(True)
    pb.start_replica()
    pa.execute("CREATE TABLE app.s (id INT PRIMARY KEY)")
    assert pb.wait_for_gtid(pa.gtid_executed(), timeout=60)
    st = pa.semi_sync_status()
    assert st["status"] is True and st["clients"] == 1, st
    assert pb.semi_sync_status()["replica_status"] is True
    # No replica acknowledges within the timeout: the primary falls back to async on its own, and
    # this is the status the HA loop reports as a lapsed durability promise.
    pa.semi_sync_primary(True, 300)
    pb.stop_replica()
    pa.execute("INSERT INTO app.s VALUES (1)")
    assert pa.semi_sync_status()["status"] is False
    # The stopped replica's dump thread leaves a moment later (MySQL counts it until then).
    deadline = time.monotonic() + 30
    while (st := pa.semi_sync_status())["clients"] != 0:
        assert time.monotonic() < deadline, st
        time.sleep(0.1)
    assert st["status"] is False, st
    pa.semi_sync_primary(False, 5000)
    assert pa.semi_sync_status()["status"] is False


@pytest.mark.flavors("mysql", reason="GTID_SUBTRACT and server-UUID interval sets are MySQL's; MariaDB's "
                                     "domain-server-seq positions are compared in tests/unit/test_gtid.py")
def test_our_gtid_set_math_agrees_with_the_servers_gtid_subtract(server_factory, flavor):
    """Errant detection subtracts GTID sets; the server's own GTID_SUBTRACT / GTID_SUBSET is the truth."""
    a = server_factory("g")
    srv = a.admin()
    f = srv.flavor
    u1, u2 = "3e11fa47-71ca-11e1-9e33-c80aa9429562", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    sets = ["", f"{u1}:1-5", f"{u1}:1-3:7-9", f"{u1}:2-8,{u2}:1", f"{u2}:1-100:200", f"{u1}:4,{u2}:50-60",
            f"{u1}:1-9,{u2}:1-300", srv.gtid_executed()]
    for x in sets:
        for y in sets:
            theirs = "".join(str(srv.scalar(f"SELECT GTID_SUBTRACT({quote(x)}, {quote(y)})") or "").split())
            mine = f.gtid_subtract(x, y)
            assert f.gtid_contains(mine, theirs) and f.gtid_contains(theirs, mine), (x, y, mine, theirs)
            subset = int(srv.scalar(f"SELECT GTID_SUBSET({quote(y)}, {quote(x)})"))
            assert f.gtid_contains(x, y) is bool(subset), (x, y)
    srv.close()

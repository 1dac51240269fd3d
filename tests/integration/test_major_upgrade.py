"""Issue 24: the major step that can run here, MariaDB 10.11 (Debian 12, the host's) to 11.8 (Debian sid, in
the root scripts/install-deps.sh makes), as docs/runbooks.md ("Rolling upgrade", "Major") has operators do it
on a real cluster under a writer: the replica first, on its own datadir, with `mariadb-upgrade
--skip-write-binlog`; it replicates from the older primary; a switchover moves the role to it; the old
primary is upgraded at once and follows. Nothing acknowledged is lost, no node writes a transaction of its
own, and `status` shows each server's version as the walk goes."""
import os
import subprocess
import sys
import time

import pytest

from tests.harness.app_writer import AppWriter
from tests.harness.cluster import REPO, Cluster

pytestmark = pytest.mark.integration

ROOT = os.environ.get("MYSQLPILOT_MARIADB_SID_ROOT") or os.path.join(REPO, ".cache", "mariadb-sid")
APP_PW = "app-Upgrade-1"
NEW = {"MYSQLPILOT_MYSQLD": os.path.join(REPO, "scripts", "mysqld-sid"), "MYSQLPILOT_MYSQL_ROOT": ROOT,
       "MYSQLPILOT_FLAVOR_VERSION": "11.8"}


def unavailable():
    if os.environ.get("MYSQLPILOT_SKIP_MARIADB_SID") == "1":
        return "MYSQLPILOT_SKIP_MARIADB_SID=1: the MariaDB 11.8 root is switched off"
    if not os.access(os.path.join(ROOT, "usr", "sbin", "mariadbd"), os.X_OK):
        return f"no MariaDB 11.8 root at {ROOT}: run bash scripts/install-deps.sh"
    return None


@pytest.fixture
def cluster(tmp_path, flavor):
    if unavailable():
        pytest.skip(unavailable())
    c = Cluster(str(tmp_path / "cl"), flavor=flavor,
                env={"MYSQL_USER": "app", "MYSQL_PASSWORD": APP_PW, "MYSQL_DATABASE": "up"})
    try:
        c.up(2)
        c.wait_healthy(2, timeout=120)
        yield c
    finally:
        c.down()


def versions(c):
    return {n["name"]: n.get("version") or "" for n in c.status_fast()["nodes"]}


def own_gtids(c, node):
    """The node's own entries in its binlog's GTID state (its server_id's last sequence per domain): a
    replica that writes nothing of its own keeps them as they were."""
    conn = c.connect_socket(node)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@gtid_binlog_state, @@server_id")
            state, sid = cur.fetchone()
    finally:
        conn.close()
    return sorted(g for g in (state or "").split(",") if g and g.split("-")[1] == str(sid))


def upgrade(c, node):
    """The runbook's step for one node: stop it, start it on the new server with its own datadir, run
    mariadb-upgrade without the binlog (its credentials in a 0600 file, never on a command line)."""
    from mysqlpilot.local.cluster import socket_path
    c.cli("local", "kill", node, "--dir", c.dir, "--signal", "TERM")
    env = dict(c.env, **NEW)
    p = subprocess.run([sys.executable, "-m", "mysqlpilot", "local", "start", node, "--dir", c.dir], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    c.wait_for(lambda s: s if c.healthy(s, 2) and versions(c)[node].startswith("11.8") else None, 120,
               f"{node} back on MariaDB 11.8")
    before = own_gtids(c, node)
    cnf = os.path.join(c.dir, f"upgrade-{node}.cnf")
    fd = os.open(cnf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (f"[client]\nuser=root\npassword={c.settings['root_password']}\n"
                  f"socket={socket_path(c.dir, node)}\n").encode())
    os.close(fd)
    up = subprocess.run([os.path.join(REPO, "scripts", "mariadb-upgrade-sid"), f"--defaults-extra-file={cnf}",
                         "--skip-write-binlog"], env=dict(os.environ, MYSQLPILOT_MYSQL_ROOT=ROOT),
                        capture_output=True, text=True, timeout=300)
    assert up.returncode == 0 and "Phase 8/8" in up.stdout, up.stdout + up.stderr
    assert own_gtids(c, node) == before     # the upgrade wrote nothing of its own into the binlog


@pytest.mark.flavors("mariadb", reason="the one major step this machine has is MariaDB 10.11 to 11.8 (MySQL: 9.7 only)")
def test_a_major_upgrade_replica_first_then_a_switchover_then_the_old_primary(cluster):
    c = cluster
    st = c.wait_healthy(2)
    old, rep = st["primary"], next(n["name"] for n in st["nodes"] if n["name"] != st["primary"])
    assert all(v.startswith("10.11") for v in versions(c).values()), versions(c)
    conn = c.connect_socket(old)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE up.t (id INT PRIMARY KEY)")
    conn.close()
    w = AppWriter(c, "up.t", "app", APP_PW)
    w.start()
    try:
        upgrade(c, rep)                                      # 1. the replica, on its own datadir
        v = versions(c)
        assert v[rep].startswith("11.8") and v[old].startswith("10.11"), v
        c.wait_for(lambda s: s if c.healthy(s, 2) else None, 60, f"{rep} replicating from the 10.11 primary")
        out = c.cli("switchover", config=True).stdout          # 2. the role to the upgraded replica
        assert f"switchover done: {rep} is the primary" in out, out
        upgrade(c, old)                                      # 3. the old primary, at once
    finally:
        time.sleep(1)
        w.stop()
    acked = w.ids
    st = c.wait_for(lambda s: s if c.healthy(s, 2) and s["primary"] == rep else None, 60, "both on 11.8")
    assert all(v.startswith("11.8") for v in versions(c).values()), versions(c)
    assert len(acked) > 20, len(acked)
    for name in (old, rep):
        have = c.wait_for(lambda _: (lambda ids: ids if set(acked) <= ids else None)(socket_ids(c, name)), 60,
                          f"every acknowledged write on {name}")
        assert set(acked) <= have
    hist = c.cli("history", config=True).stdout
    assert " rebuild " not in hist and "errant" not in hist, hist


def socket_ids(c, node):
    conn = c.connect_socket(node)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM up.t")
            return {r[0] for r in cur.fetchall()}
    finally:
        conn.close()

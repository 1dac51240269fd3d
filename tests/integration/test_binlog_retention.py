"""Binlogs expire (issue 22, retention on the nodes): with binlog_expire_seconds 20 and snapshots every
10 s, a minute of binlog rotations leaves a bounded binlog list on every node, and a node added afterwards
still restores the newest snapshot and catches up."""
import time

import pytest

from tests.harness.cluster import module_cluster

pytestmark = pytest.mark.integration

EXPIRE = 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, flavor):
    yield from module_cluster(tmp_path_factory, flavor, "binlog", {
        "MYSQL_ROOT_PASSWORD": "root-Secret-5", "MYSQL_REPL_PASSWORD": "repl-Secret-5",
        "MYSQLPILOT_BINLOG_EXPIRE_SECONDS": str(EXPIRE), "MYSQLPILOT_SNAPSHOT_INTERVAL": "10",
        "MYSQLPILOT_SNAPSHOT_CHECK": "5s"}, 2, "--durability", "semi-sync")


def binlogs(c, n):
    return [r[0] for r in c.sql(n["host"], n["port"], "SHOW BINARY LOGS")]


def test_binlogs_stay_bounded_and_a_new_node_still_catches_up(cluster):
    st = cluster.wait_healthy(2)
    p = cluster.node(st, st["primary"])
    var = "binlog_expire_logs_seconds"
    for n in st["nodes"]:
        assert int(cluster.sql(n["host"], n["port"], f"SELECT @@GLOBAL.{var}")[0][0]) == EXPIRE
    cluster.sql(p["host"], p["port"], "CREATE DATABASE IF NOT EXISTS ret")
    cluster.sql(p["host"], p["port"], "CREATE TABLE IF NOT EXISTS ret.t (id INT PRIMARY KEY) ENGINE=InnoDB")
    rotations = 3 * EXPIRE
    for i in range(rotations):
        cluster.sql(p["host"], p["port"], f"INSERT INTO ret.t VALUES ({i})")
        for n in st["nodes"]:
            cluster.sql(n["host"], n["port"], "FLUSH BINARY LOGS")
        time.sleep(1.0)
    for n in st["nodes"]:
        names = binlogs(cluster, n)
        # One file a second: what is younger than EXPIRE stays, plus the open one and some slack for
        # rotation timing; without expiry all `rotations` + earlier ones would be there.
        assert len(names) <= EXPIRE + 8, (n["name"], len(names), names[:3])
    name = cluster.cli("local", "add", "--dir", cluster.dir, "--wait", "--timeout", "300").stdout.strip().splitlines()[-1]
    st3 = cluster.wait_healthy(3, timeout=300)
    nn = cluster.node(st3, name)
    assert cluster.wait_gtid(nn["host"], nn["port"], cluster.gtid_position(p["host"], p["port"]), timeout=60)
    assert int(cluster.sql(nn["host"], nn["port"], "SELECT COUNT(*) FROM ret.t")[0][0]) == rotations

"""One real cluster (MariaDB 10.11 or MySQL 9.7, Consul, the directory store) with TLS between the members
and require_secure_transport, for two issues:
- issue 23: replication and the nodes' probes over TLS, certificates from files (openssl); replicas verify
  the source's certificate and address, a plain TCP client is refused, a failover and a switchover work;
- issue 22: a due snapshot is taken on a healthy replica, not on the primary, while another replica is left
  to promote; the replica is published as snapshotting while it runs, and a new node restores its snapshot.
One cluster for both keeps the suite's time down."""
import re
import threading
import time

import pymysql
import pytest

from mysqlpilot.local.mysql_tls import make_certs
from tests.harness.cluster import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, flavor):
    d = tmp_path_factory.mktemp("tlssnap")
    certs = make_certs(str(d / "certs"))
    c = Cluster(str(d / "cl"), env={"MYSQL_ROOT_PASSWORD": "root-Tls-1", "MYSQL_REPL_PASSWORD": "repl-Tls-1",
                                    "MYSQLPILOT_TLS_CA": certs["ca"], "MYSQLPILOT_TLS_CERT": certs["cert"],
                                    "MYSQLPILOT_TLS_KEY": certs["key"], "MYSQLPILOT_REQUIRE_SECURE_TRANSPORT": "1",
                                    "MYSQLPILOT_SNAPSHOT_INTERVAL": "20", "MYSQLPILOT_SNAPSHOT_CHECK": "2s",
                                    # MySQL would clone a replica instead of restoring the store's snapshot
                                    "MYSQLPILOT_SEED_METHOD": "store"}, flavor=flavor)
    try:
        c.up(3)
        c.wait_healthy(3, timeout=180)
        yield c
    finally:
        c.down()


def replicas_verify_tls(c, st):
    for n in st["nodes"]:
        if n["name"] == st["primary"]:
            continue
        conn = c.connect_socket(n["name"])
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute(c.sql_flavor.replica_status_sql())
                row = cur.fetchone()
        finally:
            conn.close()
        assert row["Master_SSL_Allowed" if "Master_SSL_Allowed" in row else "Source_SSL_Allowed"] == "Yes", row
        verify = row.get("Master_SSL_Verify_Server_Cert", row.get("Source_SSL_Verify_Server_Cert"))
        assert verify == "Yes", row
        assert (row.get("Slave_IO_Running") or row.get("Replica_IO_Running")) == "Yes", row


def test_replicas_replicate_over_verified_tls_and_plain_tcp_is_refused(cluster):
    st = cluster.wait_healthy(3)
    replicas_verify_tls(cluster, st)
    p = cluster.node(st, st["primary"])
    with pytest.raises(pymysql.err.OperationalError) as e:
        pymysql.connect(host=p["host"], port=p["port"], user="root", password="root-Tls-1", connect_timeout=3,
                        ssl_disabled=True).close()
    assert e.value.args[0] in (1045, 3159, 4151), e.value.args


def test_a_failover_and_a_switchover_work_over_tls(cluster):
    st = cluster.wait_healthy(3)
    old = st["primary"]
    cluster.cli("local", "kill", old, "--dir", cluster.dir, "--signal", "KILL")
    st = cluster.wait_healthy(2, timeout=90, primary_not=old)
    cluster.cli("local", "start", old, "--dir", cluster.dir)
    st = cluster.wait_healthy(3, timeout=180)
    replicas_verify_tls(cluster, st)
    # No --to: the switchover picks a replica that is not taking a snapshot (one runs every 20 s here, and a
    # backup's locks can hold up the target's catch-up past the hand-over's wait).
    was = st["primary"]
    cluster.cli("switchover", config=True)
    st = cluster.wait_healthy(3, timeout=90, primary_not=was)
    replicas_verify_tls(cluster, st)


def test_a_due_snapshot_is_taken_on_a_replica_while_another_is_left_to_promote(cluster):
    st = cluster.wait_healthy(3, timeout=180)
    primary = st["primary"]
    replicas = {n["name"] for n in st["nodes"]} - {primary}
    seen, stop = set(), threading.Event()

    def watch():        # who is published as snapshotting, while it runs
        while not stop.is_set():
            try:
                seen.update(n["name"] for n in cluster.status_fast()["nodes"] if n.get("snapshotting"))
            except Exception:  # noqa: BLE001 - a poll that fails is retried
                pass
            stop.wait(0.2)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t0 = time.time() + 0.5       # a snapshot that started before the watcher does not count
    try:
        snap = cluster.wait_for(lambda s: s["snapshot"] if s["snapshot"] and s["snapshot"]["source"] in replicas
                                and s["snapshot"]["created"] > t0 else None, 120, "a snapshot taken on a replica")
    finally:
        stop.set()
        t.join()
    taker = snap["source"]
    assert taker in seen and primary not in seen, seen
    assert "taken here" in cluster.node_log(taker, "snapshot")
    assert "left to replica" in cluster.node_log(primary, "snapshot")
    out = cluster.cli("status", config=True).stdout
    assert f"latest snapshot {snap['id']} taken" in out and f"on {taker}" in out, out
    # A new node restores the replica's snapshot and joins.
    cluster.cli("local", "add", "--dir", cluster.dir)
    st = cluster.wait_healthy(4, timeout=180)
    new = next(n["name"] for n in st["nodes"] if n["name"] not in replicas | {primary})
    log = cluster.node_log(new, "preStart")
    restored = re.search(r"restoring snapshot (\S+)-(node\d+) ", log)
    assert restored and restored.group(2) in replicas, log         # a replica's snapshot (the latest by then)

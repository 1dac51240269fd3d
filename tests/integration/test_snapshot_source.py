"""Issue 22: a due snapshot is taken on a healthy replica, not on the primary, while another replica is left
to promote; the replica is published as snapshotting while it runs, and a new node restores its snapshot.
Real MariaDB or MySQL 9.7, Consul and the directory store."""
import threading

import pytest

from tests.harness.cluster import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, flavor):
    c = Cluster(str(tmp_path_factory.mktemp("snapsrc") / "cl"),
                env={"MYSQL_ROOT_PASSWORD": "root-Src-1", "MYSQL_REPL_PASSWORD": "repl-Src-1",
                     "MYSQLPILOT_SNAPSHOT_INTERVAL": "20", "MYSQLPILOT_SNAPSHOT_CHECK": "2s",
                     "MYSQLPILOT_SEED_METHOD": "store"},      # MySQL would clone a replica instead
                flavor=flavor)
    yield c
    c.down()


def test_a_due_snapshot_is_taken_on_a_replica_while_another_is_left_to_promote(cluster):
    cluster.up(3)
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
    try:
        snap = cluster.wait_for(lambda s: s["snapshot"] if s["snapshot"] and s["snapshot"]["source"] in replicas
                                else None, 120, "a snapshot taken on a replica")
    finally:
        stop.set()
        t.join()
    taker = snap["source"]
    assert seen == {taker}, seen
    assert "taken here" in cluster.node_log(taker, "snapshot")
    assert "left to replica" in cluster.node_log(primary, "snapshot")
    out = cluster.cli("status", config=True).stdout
    assert f"latest snapshot {snap['id']} taken" in out and f"on {taker}" in out, out
    # A new node restores the replica's snapshot and joins.
    cluster.cli("local", "add", "--dir", cluster.dir)
    st = cluster.wait_healthy(4, timeout=180)
    new = next(n["name"] for n in st["nodes"] if n["name"] not in replicas | {primary})
    log = cluster.node_log(new, "preStart")
    assert "restoring snapshot" in log and "-node" in log, log

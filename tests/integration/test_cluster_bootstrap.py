"""Issue 2 end to end: a real cluster (Consul, the server, its snapshots, supervisors) assembles itself.
Once per flavor: MariaDB 10.11 with mariadb-backup, MySQL 9.7 with CLONE (`local up --flavor mysql`)."""
import glob
import os
import time

import pytest

from tests.harness.cluster import Cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path, flavor):
    # These tests are about seeding from the snapshot store; on MySQL seed_method auto would clone a
    # member instead (tested in test_clone_seed.py).
    c = Cluster(str(tmp_path / "cl"), env={"MYSQL_ROOT_PASSWORD": "root-Secret-1",
                                          "MYSQL_REPL_PASSWORD": "repl-Secret-1",
                                          "MYSQLPILOT_SEED_METHOD": "store"}, flavor=flavor)
    yield c
    c.down()


def rows(c, node, q):
    return c.sql(node["host"], node["port"], q)


def test_three_nodes_at_once_one_primary_two_restored_replicas(cluster):
    cluster.up(3)
    st = cluster.wait_healthy(3, timeout=120)
    primaries = [n for n in st["nodes"] if n["role"] == "primary"]
    assert len(primaries) == 1 and primaries[0]["name"] == st["primary"]
    p = primaries[0]
    replicas = [n for n in st["nodes"] if n["name"] != p["name"]]
    assert len(replicas) == 2
    assert all(r["read_only"] is True for r in replicas) and p["read_only"] is False
    assert st["snapshot"] is not None and st["snapshot"]["bytes"] > 0
    # MySQL 8.0.17+ snapshots by CLONE (tar stream), MariaDB by mariadb-backup (xbstream).
    manifest = cluster.snapshot_manifest(st["snapshot"]["id"])
    assert (manifest["tool"], manifest["format"]) == (("clone", "tar") if cluster.flavor == "mysql" else
                                                      ("mariadb-backup", "xbstream")), manifest
    assert manifest["gtid"], manifest
    # The replicas came from the snapshot, not from a fresh init.
    for r in replicas:
        log = cluster.node_log(r["name"], "preStart")
        assert "restored" in log, log[-2000:]
    assert "bootstrapped" in cluster.node_log(p["name"], "preStart")
    # Rows written on the primary reach both replicas.
    rows(cluster, p, "CREATE DATABASE IF NOT EXISTS t1")
    rows(cluster, p, "CREATE TABLE IF NOT EXISTS t1.x (id INT PRIMARY KEY, v VARCHAR(20))")
    rows(cluster, p, "INSERT INTO t1.x VALUES (1,'a'),(2,'b'),(3,'c')")
    deadline = time.monotonic() + 30
    for r in replicas:
        while True:
            got = rows(cluster, r, "SELECT COUNT(*) FROM t1.x")[0][0] if rows(
                cluster, r, "SHOW DATABASES LIKE 't1'") else 0
            if got == 3:
                break
            assert time.monotonic() < deadline, f"{r['name']} has {got} rows"
            time.sleep(0.3)
    # A replica refuses writes from remote accounts, root included (read_only; no READ_ONLY ADMIN).
    import pymysql
    with pytest.raises(pymysql.err.OperationalError) as ei:
        cluster.sql(replicas[0]["host"], replicas[0]["port"], "CREATE DATABASE must_fail")
    assert ei.value.args[0] == 1290, ei.value
    # Secrets stay out of every process's argv and out of every log.
    secrets = ("root-Secret-1", "repl-Secret-1")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().decode(errors="replace")
        except OSError:
            continue
        assert not any(sec in argv for sec in secrets), argv.replace("\0", " ")
    for log_path in glob.glob(os.path.join(cluster.dir, "**", "*.log"), recursive=True):
        with open(log_path, errors="replace") as fh:
            text = fh.read()
        assert not any(sec in text for sec in secrets), log_path
    human = cluster.cli("status", config=True).stdout
    assert p["name"] in human and "primary" in human


def test_replica_waits_for_the_first_snapshot(cluster):
    """The original example's race: replicas started before the first backup never recovered."""
    import consul
    cluster.up(1)
    # Let the bootstrap snapshot finish first: it holds the snapshot lock while it runs.
    cluster.wait_for(lambda st: st if st["snapshot"] else None, 120, "the first snapshot")
    s = cluster.settings
    host, port = s["consul"].split(":")
    kv_root = f"{s.get('consul_prefix', 'mysqlpilot')}/{s.get('cluster', 'mysql')}"
    c = consul.Consul(host=host, port=int(port))
    # Pretend no snapshot exists yet, and hold the snapshot lock so the primary cannot take one.
    sid = c.session.create(ttl=60, lock_delay=0, behavior="release", checks=[])
    deadline = time.monotonic() + 30
    while not c.kv.put(f"{kv_root}/locks/snapshot", "test", acquire=sid):
        assert time.monotonic() < deadline, "snapshot lock never free"
        time.sleep(0.2)
    c.kv.delete(f"{kv_root}/snapshots/latest")
    cluster.cli("local", "add", "--dir", cluster.dir)
    new = "node2"
    deadline = time.monotonic() + 60
    while "waiting for the first snapshot" not in cluster.node_log(new, "preStart"):
        assert time.monotonic() < deadline, cluster.node_log(new, "preStart")
        time.sleep(0.5)
    assert "restored" not in cluster.node_log(new, "preStart")
    # Status says so too, plainly.
    n2 = cluster.wait_for(lambda st: next((n for n in st["nodes"] if n["name"] == new and n["role"] == "waiting"),
                                          None), 30, f"status to show {new} waiting")
    assert not n2["healthy"] and n2["message"].startswith("starting: waiting for the first snapshot"), n2
    # Release: the primary takes its snapshot, the waiting replica restores it and joins.
    c.kv.put(f"{kv_root}/locks/snapshot", "test", release=sid)
    c.session.destroy(sid)
    st = cluster.wait_healthy(2, timeout=180)
    assert "restored" in cluster.node_log(new, "preStart")
    assert cluster.node(st, new)["role"] == "replica"


def test_corrupt_snapshot_is_rejected_and_nothing_is_half_restored(cluster):
    cluster.up(1)
    cluster.wait_healthy(1, timeout=120)
    # The first snapshot runs in the background after the promotion.
    first = cluster.wait_for(lambda st: st["snapshot"], 120, "the first snapshot")["id"]
    # A second one, taken the way an operator would inside the primary's container.
    cluster.cli("local", "exec", "node1", "--dir", cluster.dir, "--", "snapshot", "--force")
    newest = cluster.status()["snapshot"]["id"]
    assert newest != first
    found = glob.glob(os.path.join(cluster.snapshot_path(newest), "data.*.zst"))
    assert len(found) == 1, glob.glob(os.path.join(cluster.dir, "snapshots", "**"), recursive=True)
    path = found[0]
    with open(path, "r+b") as fh:
        fh.seek(os.path.getsize(path) // 2)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0xFF]))
    cluster.cli("local", "add", "--dir", cluster.dir)
    deadline = time.monotonic() + 120
    while "checksum" not in cluster.node_log("node2", "preStart"):
        assert time.monotonic() < deadline, cluster.node_log("node2", "preStart")
        time.sleep(0.5)
    log = cluster.node_log("node2", "preStart")
    err = [line for line in log.splitlines() if "error:" in line and "checksum" in line]
    assert err and "Traceback" not in log, log
    node_dir = os.path.join(cluster.dir, "nodes", "node2")
    data = os.path.join(node_dir, "data")
    assert not os.path.isdir(data) or not os.listdir(data), os.listdir(data)
    assert not glob.glob(os.path.join(node_dir, "state", "restore-*"))
    # The operator checks, points replicas at the intact older snapshot, and the node joins.
    p = cluster.cli("snapshot", "verify", newest, config=True, check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "failed its checksum" in p.stderr, p.stderr
    assert "intact" in cluster.cli("snapshot", "verify", first, config=True).stdout
    cluster.cli("snapshot", "use", first, config=True)
    assert cluster.status()["snapshot"]["id"] == first
    cluster.cli("local", "kill", "node2", "--dir", cluster.dir, "--signal", "KILL", check=False)
    cluster.cli("local", "start", "node2", "--dir", cluster.dir)
    st = cluster.wait_healthy(2, timeout=120)
    assert f"restoring snapshot {first}" in cluster.node_log("node2", "preStart")
    assert cluster.node(st, "node2")["role"] == "replica"


def test_user_errors_are_one_line(tmp_path):
    env = {"MYSQL_ROOT_PASSWORD": "x-secret-x", "MYSQL_REPL_PASSWORD": "y", "CONSUL": "127.0.0.1:1"}
    c = Cluster(str(tmp_path / "none"), env=env)
    p = c.cli("status", check=False)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Consul at 127.0.0.1:1" in lines[0], p.stderr
    p = Cluster(str(tmp_path / "none"), env=dict(env, MYSQLPILOT_SESSION_TTL="3")).cli("status", check=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "session_ttl" in p.stderr


def test_replica_restored_from_an_old_snapshot_follows_a_primary_that_was_itself_restored(cluster):
    """A primary whose binlog starts after the snapshot must still serve replicas restored from that
    snapshot (MariaDB strict mode refuses them, error 1236, unless the restore seeded the binlog state)."""
    cluster.up(2)
    st = cluster.wait_healthy(2, timeout=120)
    restored = next(n["name"] for n in st["nodes"] if n["name"] != st["primary"])
    # A write from the first primary reaches the restored node's binlog: its binlog now shows that
    # server's later GTIDs but not the snapshot's own.
    first = cluster.node(st, st["primary"])
    cluster.sql(first["host"], first["port"], "CREATE DATABASE before_switch")
    cluster.cli("switchover", "--to", restored, config=True)
    st = cluster.wait_healthy(2, timeout=60)
    assert st["primary"] == restored
    p = cluster.node(st, restored)
    cluster.sql(p["host"], p["port"], "CREATE DATABASE after_switch")
    cluster.cli("local", "add", "--dir", cluster.dir)
    st = cluster.wait_healthy(3, timeout=180)
    assert st["primary"] == restored
    assert "restored" in cluster.node_log("node3", "preStart")
    n3 = cluster.node(st, "node3")
    assert cluster.sql(n3["host"], n3["port"], "SHOW DATABASES LIKE 'after_switch'")
    assert "1236" not in cluster.node_log("node3", "pilot")

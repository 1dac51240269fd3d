"""Point-in-time restore from the binlog archive (issue 22), on a real cluster: MariaDB 10.11 or MySQL 9.7,
Consul, and SeaweedFS as the store. Rows are written with known times; `mysqlpilot local restore` builds a
datadir at a chosen second and starts it, and the test reads the rows back from that server."""
import os
import signal
import time

import pymysql
import pytest
import requests

from mysqlpilot.binlog_archiver import first_file, start_set_sql
from mysqlpilot.binlog_catalog import archived_set, read_runs, segment_key
from mysqlpilot.store.s3 import S3Store
from tests.harness.cluster import Cluster, WriteLoad

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, flavor, s3_server):
    bucket = f"pitr-{flavor}-{int(time.time())}"
    s3_server.client().create_bucket(Bucket=bucket)
    c = Cluster(str(tmp_path_factory.mktemp("pitr") / "cl"),
                env={"MYSQL_ROOT_PASSWORD": "root-Pitr-1", "MYSQL_REPL_PASSWORD": "repl-Pitr-1",
                     "MYSQLPILOT_ARCHIVE": "1", "MYSQLPILOT_FAILOVER_BUDGET": "50",
                     "AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key},
                flavor=flavor)
    c.up(3, "--durability", "semi-sync", "--store", "s3", "--s3-endpoint", s3_server.endpoint, "--s3-bucket", bucket)
    c.wait_healthy(3, timeout=120)
    c.store = S3Store(bucket, "mysqlpilot", s3_server.endpoint, "us-east-1", s3_server.access_key,
                      s3_server.secret_key)
    yield c
    c.down()


class ServerLike:
    """The part of sqlclient.Server that start_set_sql uses, over a test connection."""

    def __init__(self, conn):
        self.conn = conn

    def query(self, q):
        with self.conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(q)
            return cur.fetchall()


def purge_all_but_the_current_binlog(c, sql):
    """FLUSH, then PURGE up to the new file. MariaDB keeps a file until its binlog checkpoint passes (a
    PURGE right after the FLUSH skips it), so until only the current file is left."""
    sql("FLUSH BINARY LOGS")

    def purged(_st):
        sql(f"PURGE BINARY LOGS TO '{sql(c.sql_flavor.binlog_status_sql())[0][0]}'")
        return len(sql("SHOW BINARY LOGS")) == 1
    c.wait_for(purged, 30, "only the current binlog left", fast=True)


def primary(c):
    st = c.wait_healthy(3)
    return st, c.node(st, st["primary"])


def primary_sql(c):
    """The primary's member record and a function running one statement there; the test database exists."""
    _, p = primary(c)
    sql = lambda q: c.sql(p["host"], p["port"], q)        # noqa: E731
    sql("CREATE DATABASE IF NOT EXISTS pitr")
    return p, sql


def wait_archived(c, gtid, timeout=60):
    """Until the store's archive holds `gtid` (the primary's position at some moment)."""
    f = c.sql_flavor
    return c.wait_for(lambda _st: f.gtid_contains(archived_set(read_runs(c.store, "local"), f.dialect), gtid),
                      timeout, f"the archive holding {gtid}", fast=True)


def restored_rows(c, name, table, **target):
    args = ["local", "restore", "--dir", c.dir, "--name", name]
    for k, v in target.items():
        args += [f"--{k.replace('_', '-')}", v]
    out = c.cli(*args, timeout=600)
    assert "holds GTID" in out.stdout, out.stdout + out.stderr
    conn = pymysql.connect(unix_socket=os.path.join(c.dir, "restores", name, "mysqld.sock"), user="root",
                           password="root-Pitr-1", connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM {table}")
            return {r[0] for r in cur.fetchall()}
    finally:
        conn.close()


def second(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def test_a_restore_to_the_second_before_a_drop_table_has_every_row_before_it_and_none_after(cluster):
    p, sql = primary_sql(cluster)
    sql("CREATE TABLE pitr.t (id INT PRIMARY KEY, at DOUBLE)")
    for i in range(1, 21):
        sql(f"INSERT INTO pitr.t VALUES ({i}, {time.time()})")
    time.sleep(1.1)
    target = int(time.time())                     # rows 1..20 were committed before this second
    time.sleep(1.1)
    for i in range(21, 26):
        sql(f"INSERT INTO pitr.t VALUES ({i}, {time.time()})")     # after the target: must not come back
    sql("DROP TABLE pitr.t")
    wait_archived(cluster, cluster.gtid_position(p["host"], p["port"]))
    assert restored_rows(cluster, "before-drop", "pitr.t", to_time=second(target)) == set(range(1, 21))
    # status and the metrics say where the archive streams
    out = cluster.cli("status", config=True).stdout
    assert f"binlog archive: streaming on {p['name']}" in out, out
    metrics = requests.get(f"http://{p['api']}/metrics", timeout=5).text
    assert any(ln.startswith("mysqlpilot_archive_streaming{") and ln.endswith(" 1.0") for ln in metrics.splitlines())


def test_a_store_outage_while_archiving_loses_nothing_once_the_store_is_back(cluster, s3_server):
    st, p = primary(cluster)
    load = WriteLoad(cluster, table="pitr.outage", interval=0.02)
    load.setup(p["host"], p["port"])
    load.start()
    time.sleep(2)
    os.kill(s3_server.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(8)                                  # writes go on; the archive cannot upload
    finally:
        os.kill(s3_server.proc.pid, signal.SIGCONT)
    time.sleep(2)
    load.stop()
    assert len(load.acked) > 100 and load.errors == 0, (len(load.acked), load.errors)
    end = cluster.gtid_position(p["host"], p["port"])
    wait_archived(cluster, end)
    runs = read_runs(cluster.store, "local")
    segs = [(f.run, f.name, s.start, s.end) for r in runs for f in r.files for s in f.segments]
    assert len(segs) == len(set(segs)) and all(not f.hole for r in runs for f in r.files)
    assert restored_rows(cluster, "after-outage", "pitr.outage", to_gtid=end) == set(load.acked)


def on_replicas_unlogged(c, st, statement):
    """Run `statement` on every replica over its socket, outside the binlog: a silent divergence."""
    for n in st["nodes"]:
        if n["name"] != st["primary"]:
            conn = c.connect_socket(n["name"])
            try:
                with conn.cursor() as cur:
                    cur.execute("SET SESSION sql_log_bin = 0")
                    cur.execute(statement)
            finally:
                conn.close()


def test_snapshot_verify_restore_proves_a_snapshot_and_names_a_table_that_differs(cluster):
    st, p = primary(cluster)
    sql = lambda q: cluster.sql(p["host"], p["port"], q)        # noqa: E731
    sql("CREATE TABLE pitr.v (id INT PRIMARY KEY, v INT)")
    sql("INSERT INTO pitr.v VALUES (1, 10), (2, 20)")
    sid = cluster.cli("local", "exec", p["name"], "--dir", cluster.dir, "--", "snapshot", "--force").stdout.split()[1]
    sid = sid.rstrip(":")
    verify = ("local", "exec", p["name"], "--dir", cluster.dir, "--", "snapshot", "verify", sid, "--restore")
    out = cluster.cli(*verify)
    assert f"snapshot {sid}: restorable;" in out.stdout and "tables match" in out.stdout, out.stdout + out.stderr
    # snapshot_verify: the job proves the new snapshot before publishing it, and status says so
    cluster.env["MYSQLPILOT_SNAPSHOT_VERIFY"] = "1"
    try:
        cluster.cli("local", "exec", p["name"], "--dir", cluster.dir, "--", "snapshot", "--force")
    finally:
        del cluster.env["MYSQLPILOT_SNAPSHOT_VERIFY"]
    text = cluster.cli("status", config=True).stdout
    assert "proven restorable in" in text and "tables matched node" in text, text
    if cluster.flavor != "mariadb":
        return          # MySQL replicas are super_read_only: no unlogged write can make them differ here
    on_replicas_unlogged(cluster, st, "UPDATE pitr.v SET v = 21 WHERE id = 2")
    try:
        out = cluster.cli(*verify, check=False)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"snapshot {sid}: NOT proven restorable: 1 of" in out.stdout and "pitr.v: restored" in out.stdout, \
            out.stdout + out.stderr
    finally:
        on_replicas_unlogged(cluster, st, "UPDATE pitr.v SET v = 20 WHERE id = 2")


def test_a_restore_to_a_second_after_a_failover_in_the_middle_of_the_writes(cluster):
    st, p = primary(cluster)
    old = st["primary"]
    load = WriteLoad(cluster, table="pitr.fo", interval=0.02)
    load.setup(p["host"], p["port"])
    load.start()
    time.sleep(3)
    cluster.cli("local", "kill", old, "--dir", cluster.dir, "--signal", "KILL")
    st2 = cluster.wait_healthy(2, timeout=60, primary_not=old)
    time.sleep(3)                                     # writes on the new primary
    target = int(time.time())
    time.sleep(2.5)
    load.stop()
    before = {i for i, t in load.acked_at.items() if t < target}
    after_started = {i for i, t in load.acked_at.items() if i > 1 and load.acked_at[i - 1] >= target + 1}
    assert before and after_started
    p2 = cluster.node(st2, st2["primary"])
    wait_archived(cluster, cluster.gtid_position(p2["host"], p2["port"]))
    runs = read_runs(cluster.store, "local")
    assert len({r.manifest.node for r in runs}) >= 2, [r.manifest.id for r in runs]
    have = restored_rows(cluster, "after-failover", "pitr.fo", to_time=second(target))
    assert before <= have, f"{len(before - have)} rows acknowledged before the target are missing"
    assert not (have & after_started), f"rows written after the target came back: {sorted(have & after_started)[:5]}"
    cluster.cli("local", "start", old, "--dir", cluster.dir)
    cluster.wait_healthy(3, timeout=240)


def test_a_new_replica_replays_the_archive_when_the_primary_purged_past_the_snapshot(cluster):
    st, _ = primary(cluster)
    p, sql = primary_sql(cluster)
    snap = cluster.status()["snapshot"]["id"]
    sql("CREATE TABLE pitr.r (id INT PRIMARY KEY)")
    for i in range(1, 31):
        sql(f"INSERT INTO pitr.r VALUES ({i})")
    wait_archived(cluster, cluster.gtid_position(p["host"], p["port"]))
    purge_all_but_the_current_binlog(cluster, sql)   # the primary no longer has what followed the snapshot
    cluster.env["MYSQLPILOT_SEED_METHOD"] = "store"        # MySQL would clone a replica instead
    try:
        cluster.cli("local", "add", "--dir", cluster.dir)
    finally:
        del cluster.env["MYSQLPILOT_SEED_METHOD"]
    new = next(n["name"] for n in cluster.wait_healthy(4, timeout=240)["nodes"]
               if n["name"] not in {m["name"] for m in st["nodes"]})
    log = cluster.node_log(new, "preStart")
    assert f"restoring snapshot {snap}" in log and "archived transactions past the snapshot" in log, log
    assert cluster.status()["snapshot"]["id"] == snap          # no new snapshot was needed
    n = cluster.node(cluster.status(), new)
    assert {r[0] for r in cluster.sql(n["host"], n["port"], "SELECT id FROM pitr.r")} == set(range(1, 31))


def test_a_gap_at_a_new_primarys_start_is_closed_from_another_members_binlogs(cluster):
    # The primary's archiver is frozen; writes go on; the replica about to be promoted purges its binlogs.
    # Its archive run would start past what the archive holds, but the old primary still has those binlogs.
    st, _ = primary(cluster)
    p, sql = primary_sql(cluster)
    sql("CREATE TABLE pitr.g (id INT PRIMARY KEY)")
    wait_archived(cluster, cluster.gtid_position(p["host"], p["port"]))
    frozen = cluster.kill_job(p["name"], "archive", signal.SIGSTOP)
    assert frozen
    try:
        for i in range(1, 21):
            sql(f"INSERT INTO pitr.g VALUES ({i})")
        end = cluster.gtid_position(p["host"], p["port"])
        to = next(n for n in st["nodes"] if n["name"] != p["name"])
        cluster.wait_for(lambda _s: cluster.sql_flavor.gtid_contains(
            cluster.gtid_position(to["host"], to["port"]), end), 30, f"{to['name']} applying the writes")
        tsql = lambda q: cluster.sql(to["host"], to["port"], q)   # noqa: E731
        purge_all_but_the_current_binlog(cluster, tsql)
        conn = cluster.connect_socket(to["name"])
        try:
            srv = ServerLike(conn)
            logs = [(r["Log_name"], start_set_sql(srv, r["Log_name"])) for r in srv.query("SHOW BINARY LOGS")]
        finally:
            conn.close()
        archived = archived_set(read_runs(cluster.store, "local"), cluster.sql_flavor.dialect)
        assert first_file(logs, archived, cluster.sql_flavor.dialect)[1], (logs, archived)   # the setup made a gap
        t0 = time.time()
        cluster.cli("switchover", "--to", to["name"], config=True)
        runs = cluster.wait_for(lambda _s: [r for r in read_runs(cluster.store, "local")
                                            if r.manifest.node == to["name"] and r.manifest.started > t0
                                            and not r.manifest.closes] or None,
                                60, f"{to['name']}'s archive run", fast=True)
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert runs[0].manifest.gap == "", runs[0].manifest
    copies = [r for r in read_runs(cluster.store, "local") if r.manifest.closes]
    assert copies and copies[-1].manifest.node != to["name"], [r.manifest for r in copies]
    # Across the closed gap: a restore to the new primary's position has every row.
    st = cluster.wait_healthy(len(st["nodes"]), timeout=120)
    q = cluster.node(st, st["primary"])
    now = cluster.gtid_position(q["host"], q["port"])
    wait_archived(cluster, now)
    assert restored_rows(cluster, "across-gap", "pitr.g", to_gtid=now) == set(range(1, 21))


def test_a_gap_in_the_archive_is_refused_and_says_what_is_missing(cluster):
    # Writes over a few archive intervals: the current file gets several segments.
    p, sql = primary_sql(cluster)
    sql("CREATE TABLE pitr.h (id INT PRIMARY KEY)")
    for i in range(1, 13):
        sql(f"INSERT INTO pitr.h VALUES ({i})")
        time.sleep(0.4)
    wait_archived(cluster, cluster.gtid_position(p["host"], p["port"]))
    # The newest run: older runs are read only up to where it begins, so nothing else holds these bytes.
    runs = read_runs(cluster.store, "local")
    f = next(f for f in reversed(runs[-1].files) if len(f.segments) >= 3 and f.segments[-1].txns)
    s = f.segments[1]
    cluster.store.delete(segment_key("local", s.run, s.file, s.start, "json"))
    cluster.store.delete(segment_key("local", s.run, s.file, s.start))
    out = cluster.cli("restore", "--to-gtid", f.transactions()[-1].gtid, "--into",
                      os.path.join(cluster.dir, "gap-refused"), config=True, check=False)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"the archive has a gap: bytes {s.start}-{s.end} of {f.name}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not os.path.exists(os.path.join(cluster.dir, "gap-refused"))

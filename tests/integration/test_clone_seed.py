"""Issue 11: a new replica seeded by CLONE INSTANCE FROM a healthy replica (seed_method), on a real MySQL
9.7 cluster (Consul, the servers, their supervisors), and what it replicates afterwards."""
import glob
import os

import pytest

from tests.harness.cluster import Cluster

pytestmark = pytest.mark.integration


@pytest.mark.flavors("mysql", reason="CLONE INSTANCE is MySQL 8.0.17+; MariaDB has no clone plugin and seeds "
                     "from the store only")
def test_new_replica_is_seeded_by_remote_clone_from_a_replica_and_follows_the_primary(tmp_path, flavor):
    c = Cluster(str(tmp_path / "cl"), env={"MYSQL_ROOT_PASSWORD": "root-Secret-1",
                                           "MYSQL_REPL_PASSWORD": "repl-Secret-1",
                                           "MYSQLPILOT_SEED_METHOD": "clone-remote"}, flavor=flavor)
    try:
        c.up(2)
        st = c.wait_healthy(2, timeout=180)
        p = c.node(st, st["primary"])
        donor = next(n for n in st["nodes"] if n["name"] != p["name"])
        c.sql(p["host"], p["port"], "CREATE DATABASE seeded")
        c.sql(p["host"], p["port"], "CREATE TABLE seeded.t (id INT PRIMARY KEY)")
        c.sql(p["host"], p["port"], "INSERT INTO seeded.t VALUES (1), (2), (3)")
        assert c.wait_gtid(donor["host"], donor["port"], c.gtid_position(p["host"], p["port"]), 60)

        c.cli("local", "add", "--dir", c.dir)
        st = c.wait_healthy(3, timeout=240)
        log = c.node_log("node3", "preStart")
        # Cloned from the replica, not from the primary, and the store was not read.
        assert f"seeding by CLONE INSTANCE FROM healthy replica {donor['name']}" in log, log[-3000:]
        assert "pre-start: cloned" in log and "restoring snapshot" not in log, log[-3000:]
        n3 = c.node(st, "node3")
        assert n3["role"] == "replica" and n3["read_only"] is True

        # It follows the primary (auto-position) and ends with exactly the primary's GTID set: the clone's
        # set was seeded, and nothing of its own (no errant transaction) was added.
        c.sql(p["host"], p["port"], "INSERT INTO seeded.t VALUES (4)")
        primary_set = c.gtid_position(p["host"], p["port"])
        assert c.wait_gtid(n3["host"], n3["port"], primary_set, 60)
        assert c.gtid_position(n3["host"], n3["port"]) == primary_set
        assert c.sql(n3["host"], n3["port"], "SELECT COUNT(*) FROM seeded.t")[0][0] == 4
        uuids = {name: c.sql(n["host"], n["port"], "SELECT @@server_uuid")[0][0]
                 for name, n in (("node3", n3), ("donor", donor), ("primary", p))}
        assert len(set(uuids.values())) == 3, uuids          # its own server_uuid, not the donor's
        assert uuids["node3"] not in primary_set
        conn = c.connect(n3["host"], n3["port"])
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW REPLICA STATUS")
                cols = [d[0] for d in cur.description]
                rs = dict(zip(cols, cur.fetchone()))
        finally:
            conn.close()
        assert (rs["Source_Host"], int(rs["Source_Port"]), str(rs["Auto_Position"])) == (p["host"], p["port"], "1")
        # The scratch dirs are gone, and no secret reached the log.
        assert not glob.glob(os.path.join(c.dir, "nodes", "node3", "state", "seed-clone-*"))
        assert "repl-Secret-1" not in log and "root-Secret-1" not in log
    finally:
        c.down()

"""Clients behind the real HAProxy (Debian's 2.6), as `mysqlpilot local up --haproxy` sets it up with
docs/routing.md's checks: writes reach only the primary, reads only replicas, and after a SIGKILL of the
primary's node writes through the same address resume on the new primary. Also the contract ProxySQL's
`mysql_replication_hostgroups` relies on, read with ProxySQL's own monitor queries."""
import threading
import time

import pytest

from tests.harness.cluster import ReadOnlyPoller, module_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, flavor):
    def printed_ports(p):
        assert "haproxy: writes on 127.0.0.1:" in p.stdout, p.stdout
    yield from module_cluster(tmp_path_factory, flavor, "hap", {
        "MYSQL_ROOT_PASSWORD": "root-Secret-4", "MYSQL_REPL_PASSWORD": "repl-Secret-4"}, 3,
        "--durability", "semi-sync", "--haproxy", check=printed_ports)


def kill_node(c, name):
    """SIGKILL every process of the node in this process (a CLI would add its start-up before the signal);
    returns the time by which all of them are gone: no write taken by that node is acknowledged after it."""
    import os
    import signal

    from mysqlpilot.local.cluster import session_pids
    from mysqlpilot.local.consul_agent import _alive
    pids = session_pids(c.registry()["nodes"][name]["pid"])
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # The signal is queued, not yet delivered: a mysqld thread running on another CPU can still send an
    # OK. Count from when every process is gone.
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.005)
    return time.time()


def ports(c):
    return c.registry()["haproxy"]


def served_by(c, port, n=1, timeout=2.0):
    """@@port of the server that answers a new connection through HAProxy's `port`, n times."""
    out = []
    for _ in range(n):
        conn = c.connect("127.0.0.1", port, timeout=timeout)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@port")
                out.append(int(cur.fetchone()[0]))
        finally:
            conn.close()
    return out


class HAProxyWriter(threading.Thread):
    """Inserts through HAProxy's write port, reconnecting on any error; each row records which mysqld
    (@@port) took it, and each acknowledgement its time. Every attempt takes a new id: a write whose OK
    was lost in the kill may still have committed (semi-sync shipped it to the new primary), and retrying
    its id would fail on the duplicate key for ever."""

    def __init__(self, c, port, table):
        super().__init__(daemon=True)
        self.c, self.port, self.table = c, port, table
        self.acked = {}                  # id -> time of the OK
        self.stop_evt = threading.Event()

    def run(self):
        n, conn = 0, None
        while not self.stop_evt.is_set():
            try:
                conn = conn or self.c.connect("127.0.0.1", self.port, timeout=1.0)
                n += 1
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (id, port) VALUES (%s, @@port)", (n,))
                self.acked[n] = time.time()
            except Exception:  # noqa: BLE001 - a failover: reconnect through the same address
                try:
                    conn and conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
                time.sleep(0.05)
            self.stop_evt.wait(0.01)


def test_writes_reach_the_primary_and_reads_the_replicas(cluster):
    st = cluster.wait_healthy(3)
    primary = cluster.node(st, st["primary"])["port"]
    replicas = {n["port"] for n in st["nodes"] if n["name"] != st["primary"]}
    cluster.wait_for(lambda _s: served_by(cluster, ports(cluster)["write"]) == [primary], 20,
                     "HAProxy's write port on the primary", fast=True)
    assert set(served_by(cluster, ports(cluster)["write"], 5)) == {primary}
    # Reads: replicas pass after `rise 2` checks a second apart.
    cluster.wait_for(lambda _s: set(served_by(cluster, ports(cluster)["read"], 6)) == replicas, 20,
                     "HAProxy's read port on both replicas", fast=True)


def test_after_a_sigkill_writes_resume_through_the_same_address_on_the_new_primary_only(cluster):
    st = cluster.wait_healthy(3)
    old = st["primary"]
    old_port = cluster.node(st, old)["port"]
    p = cluster.node(st, old)
    cluster.sql(p["host"], p["port"], "CREATE DATABASE IF NOT EXISTS hap")
    cluster.sql(p["host"], p["port"], "CREATE TABLE IF NOT EXISTS hap.w (id INT PRIMARY KEY, port INT) ENGINE=InnoDB")
    poll = ReadOnlyPoller(cluster, [(n["name"], n["host"], n["port"]) for n in st["nodes"]])
    poll.start()
    w = HAProxyWriter(cluster, ports(cluster)["write"], "hap.w")
    w.start()
    cluster.wait_for(lambda _s: len(w.acked) >= 20, 20, "writes through HAProxy", fast=True)
    t_kill = kill_node(cluster, old)
    try:
        st2 = cluster.wait_healthy(2, timeout=60, primary_not=old)
        new_port = cluster.node(st2, st2["primary"])["port"]
        cluster.wait_for(lambda _s: any(t > t_kill for t in w.acked.values()), 30,
                         "a write through HAProxy after the kill", fast=True)
        first_after = min(t for t in w.acked.values() if t > t_kill)
        time.sleep(1.0)
        w.stop_evt.set()
        w.join(5)
        poll.stop()
        print(f"HAProxy: first write acknowledged through the write port {first_after - t_kill:.2f}s after the SIGKILL")
        assert not poll.violations(), f"two writable nodes at {poll.violations()[:3]}"
        pn = cluster.node(st2, st2["primary"])
        rows = dict(cluster.sql(pn["host"], pn["port"], "SELECT id, port FROM hap.w"))
        missing = [i for i in w.acked if i not in rows]
        assert not missing, f"{len(missing)} writes acknowledged through HAProxy are missing, e.g. {missing[:5]}"
        # Every row was taken by the primary of its time: the old one before the kill, the new one after.
        wrong = [(i, rows[i]) for i, t in w.acked.items()
                 if rows[i] not in (old_port, new_port) or (rows[i] == old_port and t > t_kill)]
        assert not wrong, f"writes through HAProxy taken by a node that was not the primary: {wrong[:5]}"
        assert any(rows[i] == new_port for i in w.acked), "no write reached the new primary"
    finally:
        # Back as a replica whatever happened above: the next test needs three nodes.
        cluster.cli("local", "start", old, "--dir", cluster.dir)
        cluster.wait_healthy(3, timeout=240)


# check_type -> the monitor's query (ProxySQL 2.x, MySQL_Monitor): a server answering 0 is a writer.
PROXYSQL_CHECKS = {
    "read_only": "SELECT @@global.read_only read_only",
    "read_only|innodb_read_only": "SELECT @@global.read_only|@@global.innodb_read_only read_only",
    "super_read_only": "SELECT @@global.super_read_only read_only",                 # MySQL only
    "innodb_read_only": "SELECT @@global.innodb_read_only read_only",
    "read_only&innodb_read_only": "SELECT @@global.read_only&@@global.innodb_read_only read_only",
}


def test_what_proxysql_reads(cluster):
    """ProxySQL's monitor puts the server answering 0 in the writer hostgroup. With the check types
    docs/routing.md recommends exactly one node answers 0: the lock holder. innodb_read_only is set only
    at startup and is 0 on every node, so the two check types built on it alone would make every node a
    writer; the docs say not to use them, and this shows why."""
    st = cluster.wait_healthy(3)
    recommended = ["read_only", "read_only|innodb_read_only"] + (["super_read_only"] if cluster.flavor == "mysql" else [])
    for check in recommended:
        seen = {n["name"]: int(cluster.sql(n["host"], n["port"], PROXYSQL_CHECKS[check])[0][0]) for n in st["nodes"]}
        assert [name for name, ro in seen.items() if ro == 0] == [st["primary"]], (check, seen)
    for check in ("innodb_read_only", "read_only&innodb_read_only"):
        seen = {n["name"]: int(cluster.sql(n["host"], n["port"], PROXYSQL_CHECKS[check])[0][0]) for n in st["nodes"]}
        assert set(seen.values()) == {0}, (check, seen)

"""Issue 3 end to end: failover without loss and without two writable primaries, on a real cluster.

One semi-sync cluster per flavor (MariaDB 10.11, MySQL 9.7) serves the whole module; each test leaves it
with one primary and two replicas.
"""
import json
import os
import time

import pytest

from tests.harness.cluster import Cluster, ReadOnlyPoller, WriteLoad
from tests.harness.dns import query_a

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, flavor):
    c = Cluster(str(tmp_path_factory.mktemp("fo") / "cl"),
                env={"MYSQL_ROOT_PASSWORD": "root-Secret-2", "MYSQL_REPL_PASSWORD": "repl-Secret-2",
                     # this module fails over on purpose more often than the default budget allows
                     "MYSQLPILOT_FAILOVER_BUDGET": "50"}, flavor=flavor)
    c.up(3, "--durability", "semi-sync")
    c.wait_healthy(3, timeout=120)
    yield c
    c.down()


def poller_for(c, st):
    return ReadOnlyPoller(c, [(n["name"], n["host"], n["port"]) for n in st["nodes"]])


def start_load(c, st, table):
    p = c.node(st, st["primary"])
    load = WriteLoad(c, table=table)
    load.setup(p["host"], p["port"])
    load.start()
    deadline = time.monotonic() + 20
    while len(load.acked) < 20:
        assert time.monotonic() < deadline, "write load never got going"
        time.sleep(0.1)
    return load


def assert_all_acked_present(c, st, load):
    p = c.node(st, st["primary"])
    db, table = load.table.split(".")
    have = {r[0] for r in c.sql(p["host"], p["port"], f"SELECT id FROM {load.table}")}
    missing = [i for i in load.acked if i not in have]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:10]}"


def wait_rejoined(c, old, timeout=240):
    return c.wait_for(lambda st: st if st["primary"] and st["primary"] != old and all(
        n["healthy"] for n in st["nodes"]) and len(st["nodes"]) == 3 and sum(
        1 for n in st["nodes"] if n["role"] == "replica") == 2 else None, timeout,
        f"{old} back as a healthy replica")


def test_sigkill_of_the_primary_node(cluster):
    st = cluster.wait_healthy(3)
    old = st["primary"]
    poll = poller_for(cluster, st)
    poll.start()
    load = start_load(cluster, st, "fo.kill")
    t_fault = time.time()
    cluster.cli("local", "kill", old, "--dir", cluster.dir, "--signal", "KILL")
    # At once, before its session ends: status asks the node's API, which is gone (issue 20).
    seen = cluster.node(cluster.status_fast(), old)
    assert seen["role"] in ("unreachable", "down") and not seen["healthy"], seen
    st2 = cluster.wait_healthy(2, timeout=60, primary_not=old)
    t_new = time.time()
    time.sleep(1.0)
    load.stop()
    poll.stop()
    assert not poll.violations(), f"two writable nodes at {poll.violations()[:3]}"
    assert_all_acked_present(cluster, st2, load)
    hist = st2["history"][-1]
    assert hist["kind"] == "failover" and hist["old_primary"] == old and hist["new_primary"] == st2["primary"]
    assert hist["candidates"], hist
    print(f"SIGKILL failover: new primary after {t_new - t_fault:.1f}s")
    # The catalog as clients read it (issue 20): exactly the lock holder under `mysql-primary`, by the
    # health API and by Consul DNS, and the survivors still listed under `mysql` (a node-level check of
    # the dead node hid them all, facts.md "Consul catalog").
    new = cluster.node(st2, st2["primary"])
    dns = cluster.consul_ports()["dns"]
    survivors = sorted((n["host"], n["port"]) for n in st2["nodes"] if n["name"] != old)
    cluster.wait_for(lambda _st: cluster.passing("mysql-primary") == [(new["host"], new["port"])]
                     and query_a("127.0.0.1", dns, "mysql-primary.service.consul") == [new["host"]]
                     and cluster.passing("mysql") == survivors, 30,
                     f"Consul listing exactly {st2['primary']} as mysql-primary", fast=True)
    print(f"SIGKILL failover: the catalog listed only the new primary {time.time() - t_fault:.1f}s after the kill")
    cluster.cli("local", "start", old, "--dir", cluster.dir)
    wait_rejoined(cluster, old)


def test_mysqld_crash_inside_a_live_node(cluster):
    st = cluster.wait_healthy(3)
    old = st["primary"]
    poll = poller_for(cluster, st)
    poll.start()
    load = start_load(cluster, st, "fo.crash")
    t_fault = time.time()
    cluster.kill_mysqld(old)
    # The supervisor restarts mysqld at once (read-only), so the old primary stands in the election
    # too: it wins only if it holds transactions (binlogged, never acknowledged) that no replica has.
    st2 = cluster.wait_for(lambda s: s["history"] and s["history"][-1]["time"] > t_fault
                           and cluster.healthy(s, 2), 60, "an election after the crash")
    load.stop()
    poll.stop()
    assert not poll.violations()
    rec = st2["history"][-1]
    assert rec["kind"] == "failover" and rec["old_primary"] == old, rec
    # Issue 12's fast path: the node released the lock itself; nobody waited for a TTL or lock-delay.
    assert f"primary {old} released the lock (mysqld is not running)" in rec["reason"], rec
    chosen = next(c for c in rec["candidates"] if c["chosen"])
    if rec["new_primary"] == old:
        assert all("behind" in c["why"] for c in rec["candidates"] if not c["chosen"]), rec
    else:
        assert chosen["name"] != old
    assert_all_acked_present(cluster, cluster.wait_healthy(2, timeout=30), load)
    # The node whose mysqld crashed ends as a healthy member, a replica unless it was re-elected.
    st3 = cluster.wait_healthy(3, timeout=240)
    assert cluster.node(st3, old)["role"] == ("primary" if rec["new_primary"] == old else "replica")


def test_sigstop_primary_fences_and_rejoins(cluster):
    """A frozen primary cannot fence while frozen (nothing can); on SIGCONT its watchdog fences it before
    the HA loop does anything else, and it rejoins as a replica with nothing errant."""
    st = cluster.wait_healthy(3)
    old = st["primary"]
    poll = poller_for(cluster, st)
    poll.start()
    cluster.cli("local", "pause", old, "--dir", cluster.dir)
    try:
        st2 = cluster.wait_healthy(2, timeout=60, primary_not=old)
        t_cont = time.time()
    finally:
        cluster.cli("local", "unpause", old, "--dir", cluster.dir)
    st3 = wait_rejoined(cluster, old)
    poll.stop()
    # While it was frozen, and from the moment it was seen read-only again, never two writable nodes.
    before = [(t, w) for t, w in poll.samples if t < t_cont]
    assert all(len(w) <= 1 for _, w in before), [x for x in before if len(x[1]) > 1][:3]
    after = [(t, w) for t, w in poll.samples if t >= t_cont]
    fenced_at = next((t for t, w in after if old not in w), None)
    assert fenced_at is not None
    late = [(t, w) for t, w in after if t > fenced_at and len(w) > 1]
    assert not late, late[:3]
    overlap = [(t, w) for t, w in after if len(w) > 1]
    assert all(old in w for _, w in overlap)
    print(f"SIGSTOP: {len(overlap)} poller samples saw the resumed node writable before it fenced itself")
    oldn = cluster.node(st3, old)
    pn = cluster.node(st3, st3["primary"])
    assert oldn["read_only"] is True and oldn["replicating_from"] == f"{pn['host']}:{pn['port']}"
    assert not oldn["errant"] and st2["primary"] == st3["primary"]
    assert "FENCED" in cluster.node_log(old, "pilot")
    # `mysqlpilot history` (issue 24): the fence, recorded while the node could not reach Consul, and the
    # failover it made room for, in time order.
    rows = json.loads(cluster.cli("history", "--json", "--since", "1h", config=True).stdout)
    fence = [r for r in rows if r["kind"] == "fence" and r["node"] == old]
    over = [r for r in rows if r["kind"] == "failover" and r["what"] == f"{old} -> {st2['primary']}"]
    assert fence and over and rows.index(over[-1]) < rows.index(fence[-1]), rows


def test_switchover_under_write_load_loses_nothing(cluster):
    st = cluster.wait_healthy(3)
    old = st["primary"]
    target = sorted(n["name"] for n in st["nodes"] if n["name"] != old)[0]
    poll = poller_for(cluster, st)
    poll.start()
    load = start_load(cluster, st, "fo.switch")
    p = cluster.cli("switchover", "--to", target, config=True)
    assert "writes were unavailable for" in p.stdout, p.stdout
    st2 = cluster.wait_healthy(3, timeout=60)
    time.sleep(1.0)
    load.stop()
    poll.stop()
    assert st2["primary"] == target
    assert not poll.violations()
    assert_all_acked_present(cluster, st2, load)
    rec = st2["history"][-1]
    assert rec["kind"] == "switchover" and "write_unavailable" in rec["durations"]
    assert cluster.node(st2, old)["role"] == "replica"


def test_failover_command_refuses_while_primary_is_healthy_and_pause_shows(cluster):
    cluster.wait_healthy(3)
    p = cluster.cli("failover", config=True, check=False)
    assert p.returncode == 1 and "alive and healthy" in p.stderr and p.stderr.count("\n") == 1
    cluster.cli("pause", "--reason", "test maintenance", config=True)
    st2 = cluster.status()
    assert st2["paused"] and "PAUSED" in cluster.cli("status", config=True).stdout
    cluster.cli("resume", config=True)
    assert not cluster.status()["paused"]


def _silence(host: str, port: int, table: str) -> None:
    """Drop every packet mysqld at host:port sends over TCP: its replicas stop receiving binlog events,
    while its Consul session (an outgoing connection from another port) and its socket keep working."""
    import subprocess
    script = (f"table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n chain out {{\n"
              f"  type filter hook output priority 0; policy accept;\n  ip saddr {host} tcp sport {port} drop\n"
              " }\n}\n")
    subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True, capture_output=True)


def _unsilence(table: str) -> None:
    import subprocess
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)


def test_manual_failover_refuses_to_lose_commits_unless_forced(cluster):
    """The primary commits something no replica received, then dies. `mysqlpilot failover` names what
    would be lost and refuses; --force promotes the best replica, and the old primary comes back only
    after its datadir (holding that commit) was moved aside."""
    import glob
    st = cluster.wait_healthy(3)
    old = st["primary"]
    o = cluster.node(st, old)
    cluster.cli("pause", "--reason", "test: manual failover", config=True)
    table = f"mptest{os.getpid()}"
    try:
        _silence(o["host"], o["port"], table)
        f = cluster.sql_flavor
        conn = cluster.connect_socket(old)
        with conn.cursor() as cur:
            # Fall back to async after 200 ms (mysqlpilot sets no timeout: the commit would wait forever).
            cur.execute(f.semi_sync_primary(True, 200)[0])
            cur.execute("CREATE DATABASE IF NOT EXISTS fo")
            cur.execute("CREATE TABLE IF NOT EXISTS fo.lost (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO fo.lost VALUES (1)")
            cur.execute(f.gtid_executed_sql())
            pos = "".join(str(cur.fetchone()[0]).split())
        conn.close()
        cluster.wait_for(lambda s: f.gtid_contains(cluster.node(s, old)["gtid_executed"], pos),
                         30, f"{old} to publish {pos}")
        cluster.cli("local", "kill", old, "--dir", cluster.dir, "--signal", "KILL")
        # Stay silent until the replicas have left the dead primary: the kernel keeps retransmitting
        # what its killed mysqld had queued, and would deliver the commit after all.
        cluster.wait_for(lambda s: s["primary"] is None, 60, "the leader key to be free")
        p = cluster.cli("failover", config=True, check=False)
        assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
        assert "no eligible candidate" in p.stderr, p.stderr
        cands = [line for line in p.stdout.splitlines() if "candidate" in line]
        assert len(cands) == 2 and all("NOT eligible" in line for line in cands), p.stdout
        assert "lacks transactions of the old primary" in p.stdout, p.stdout
        assert cluster.status()["primary"] is None
        cluster.cli("failover", "--force", config=True)
        st2 = cluster.wait_healthy(2, timeout=60, primary_not=old)
        assert st2["history"][-1]["kind"] == "manual-failover"
    finally:
        _unsilence(table)
        # Whatever happened above, hand the next test a cluster that can heal itself.
        cluster.cli("resume", config=True, check=False)
        cluster.cli("local", "start", old, "--dir", cluster.dir, check=False)
    st3 = wait_rejoined(cluster, old)
    assert cluster.node(st3, old)["role"] == "replica"
    assert glob.glob(os.path.join(cluster.dir, "nodes", old, "data.aside-*")), "old datadir not kept"
    pn = cluster.node(st3, st3["primary"])
    assert not cluster.sql(pn["host"], pn["port"], "SELECT 1 FROM information_schema.TABLES "
                           "WHERE TABLE_SCHEMA = 'fo' AND TABLE_NAME = 'lost'")


def test_scale_down_of_the_primary_hands_over_first(cluster):
    st = cluster.wait_healthy(3)
    old = st["primary"]
    poll = poller_for(cluster, st)
    poll.start()
    load = start_load(cluster, st, "fo.scaledown")
    cluster.cli("local", "kill", old, "--dir", cluster.dir, "--signal", "TERM")
    st2 = cluster.wait_for(lambda s: s if s["primary"] and s["primary"] != old else None, 60, "new primary")
    time.sleep(1.0)
    load.stop()
    poll.stop()
    assert not poll.violations()
    assert_all_acked_present(cluster, st2, load)
    rec = st2["history"][-1]
    assert rec["kind"] == "switchover" and "pre-stop" in rec["reason"], rec
    # Stopped on purpose: `left`, with no alarm line (issue 20), once its container has stopped.
    left = cluster.wait_for(lambda s: s if cluster.node(s, old)["role"] == "left" else None, 60,
                            f"{old} shown as left", fast=True)
    assert f"! {old}" not in cluster.cli("status", config=True).stdout
    assert left["nodes"] and cluster.node(left, old)["healthy"] is False
    cluster.cli("local", "start", old, "--dir", cluster.dir)
    wait_rejoined(cluster, old)


def test_errant_transactions_move_the_datadir_aside_and_rebuild(cluster):
    import glob
    st = cluster.wait_healthy(3)
    p = cluster.node(st, st["primary"])
    victim = sorted(n["name"] for n in st["nodes"] if n["name"] != st["primary"])[0]
    v = cluster.node(st, victim)
    node_dir = os.path.join(cluster.dir, "nodes", victim)
    # The module's cluster has been through other faults: a datadir moved aside by an earlier test
    # (a crashed primary's unacknowledged commits are errant too) must not count for this one.
    before = set(glob.glob(os.path.join(node_dir, "data.aside-*")))
    # A write straight into a replica by root@localhost (the only account that may lift read_only):
    # an errant GTID. On MySQL, replication runs on regardless (auto-position keeps the replica's extra
    # GTID silently), and read_only = 1 alone leaves super_read_only off: both must be noticed.
    cluster.sql(p["host"], p["port"], "CREATE DATABASE IF NOT EXISTS fo")
    cluster.sql(p["host"], p["port"], "CREATE TABLE IF NOT EXISTS fo.e (id INT PRIMARY KEY)")
    time.sleep(1.0)
    conn = cluster.connect_socket(victim)
    with conn.cursor() as cur:
        cur.execute("SET GLOBAL read_only = 0")
        cur.execute("INSERT INTO fo.e VALUES (1000)")
        cur.execute("SET GLOBAL read_only = 1")
    conn.close()
    cluster.sql(p["host"], p["port"], "INSERT INTO fo.e VALUES (1), (2)")
    deadline = time.monotonic() + 180
    while not set(glob.glob(os.path.join(node_dir, "data.aside-*"))) - before:
        assert time.monotonic() < deadline, cluster.node_log(victim, "pilot")[-3000:]
        time.sleep(0.5)
    log = cluster.node_log(victim, "pilot")
    assert "errant" in log or "1236" in log or "REBUILD" in log, log[-3000:]
    st2 = wait_rejoined(cluster, None)
    assert cluster.node(st2, victim)["role"] == "replica"
    # The rebuilt replica has the primary's rows and not the errant one (once it has caught up).
    pn = cluster.node(st2, st2["primary"])
    pos = cluster.gtid_position(pn["host"], pn["port"])
    assert cluster.wait_gtid(v["host"], v["port"], pos, 60)
    got = {r[0] for r in cluster.sql(v["host"], v["port"], "SELECT id FROM fo.e")}
    assert got == {1, 2}


def test_reinit_rebuilds_a_replica_on_demand_and_keeps_its_old_datadir(cluster):
    """Issue 24: `mysqlpilot reinit NODE` under a writer. The primary is refused in one line; the replica
    moves its datadir aside, restores the newest snapshot, catches up; nothing acknowledged is lost; the
    rebuild is in `history`."""
    import glob
    st = cluster.wait_healthy(3)

    def asides(n):
        return set(glob.glob(os.path.join(cluster.dir, "nodes", n, "data.aside-*")))
    victim = min(sorted(n["name"] for n in st["nodes"] if n["name"] != st["primary"]), key=lambda n: len(asides(n)))
    before = asides(victim)
    p = cluster.cli("reinit", st["primary"], config=True, check=False)
    assert p.returncode == 1 and "is the primary" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    load = start_load(cluster, st, "fo.reinit")
    out = cluster.cli("reinit", victim, "--reason", "test", "--timeout", "400", config=True, timeout=500).stdout
    load.stop()
    assert f"{victim} rebuilt and replicating" in out, out
    assert asides(victim) - before, "the old datadir was not moved aside"
    st2 = cluster.wait_healthy(3, timeout=120)
    assert_all_acked_present(cluster, st2, load)
    rows = json.loads(cluster.cli("history", "--json", "--since", "1h", config=True).stdout)
    assert any(r["kind"] == "rebuild" and r["node"] == victim and "mysqlpilot reinit" in r["reason"]
               for r in rows), rows


def test_primary_cut_off_from_consul_and_its_clients_fences_before_anyone_takes_over(cluster):
    """The split-brain case: neither Consul nor the replicas reach the old primary, so no member can
    promise it anything (failsafe.py): its lease runs out and it fences before the lock can pass to anyone
    else (docs/timing.md). Cut off from Consul alone, it stays primary: tests/integration/test_failsafe.py."""
    st = cluster.wait_healthy(3)
    old = st["primary"]
    poll = poller_for(cluster, st)
    poll.start()
    load = start_load(cluster, st, "fo.partition")
    cluster.cli("local", "partition", old, "--full", "--dir", cluster.dir)
    try:
        st2 = cluster.wait_healthy(2, timeout=90, primary_not=old)
        time.sleep(1.0)
        load.stop()
        poll.stop()
        assert not poll.violations(), f"two writable nodes at {poll.violations()[:3]}"
        assert_all_acked_present(cluster, st2, load)
        log = cluster.node_log(old, "pilot")
        assert "lease expired" in log
    finally:
        cluster.cli("local", "heal", old, "--dir", cluster.dir)
    # Reachable again: read-only (or its mysqld stopped by the fence, and restarted read-only).
    o = cluster.node(st, old)
    ro = cluster.wait_for(lambda _: _read_only(cluster, o), 60, f"{old} reachable again")
    assert ro == 1
    st3 = wait_rejoined(cluster, old)
    assert cluster.node(st3, old)["role"] == "replica"


def _read_only(c, o):
    try:
        return c.sql(o["host"], o["port"], "SELECT @@global.read_only")[0][0]
    except Exception:  # noqa: BLE001 - not reachable yet
        return None

"""Failsafe on real servers (issue 21): a local cluster whose Consul is three real servers and the client
agent the nodes talk to (`local up --consul-servers 3`), under a semi-sync write load. Consul's own faults
(leader killed, every server restarted in turn, every server frozen) cost no failover and no fence; a
primary cut off from Consul alone stays primary on its members' promises and takes the key back; a
replica that dies during an outage ends the promises and the primary fences. Always: no acknowledged
write lost, never two writable nodes. (Cut off from Consul *and* its clients: test_failover.py.)"""
import threading
import time

import pytest

from bench.failover import fences_since, leader_changes, log_offsets
from mysqlpilot.local import consul_cluster as cc
from tests.harness import nodelogs
from tests.harness.cluster import ReadOnlyPoller, WriteLoad, module_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, flavor):
    if flavor != "mariadb":
        # The failsafe runs no SQL of its own (a member's check is a TCP connect): one flavor keeps CI short.
        pytest.skip("failsafe's real-server rows run on MariaDB only")
    yield from module_cluster(tmp_path_factory, flavor, "fs", {
        "MYSQL_ROOT_PASSWORD": "root-Secret-5", "MYSQL_REPL_PASSWORD": "repl-Secret-5",
        "MYSQLPILOT_FAILOVER_BUDGET": "50", "MYSQLPILOT_FAILSAFE": "1"}, 3, "--durability", "semi-sync", "--consul-servers", "3")


class Watch:
    """Load, read-only sampling and log offsets around one fault."""

    def __init__(self, c, table):
        self.c = c
        self.st = c.wait_healthy(3, timeout=180)
        self.primary = self.st["primary"]
        p = c.node(self.st, self.primary)
        self.load = WriteLoad(c, table=table)
        self.load.setup(p["host"], p["port"])
        self.poll = ReadOnlyPoller(c, [(n["name"], n["host"], n["port"]) for n in self.st["nodes"]])
        self.offsets = log_offsets(c)
        self.t0 = time.time()
        self.load.start()
        self.poll.start()
        deadline = time.monotonic() + 20
        while len(self.load.acked) < 20:
            assert time.monotonic() < deadline, "write load never got going"
            time.sleep(0.1)

    def end(self, nodes=3, primary_not=None):
        st = self.c.wait_healthy(nodes, timeout=240, primary_not=primary_not)
        time.sleep(1.0)
        self.load.stop()
        self.poll.stop()
        assert not self.poll.violations(), f"two writable nodes at {self.poll.violations()[:3]}"
        p = self.c.node(st, st["primary"])
        have = {r[0] for r in self.c.sql(p["host"], p["port"], f"SELECT id FROM {self.load.table}")}
        missing = [i for i in self.load.acked if i not in have]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:10]}"
        return st

    def logs(self):
        return "".join(text for _, _, text in nodelogs.read_since(self.c.dir, self.offsets))


def assert_no_failover_no_fence(c, w, st):
    assert st["primary"] == w.primary
    assert not leader_changes(st.get("history") or [], w.t0), st.get("history")
    assert not fences_since(c, w.offsets), fences_since(c, w.offsets)


@pytest.mark.parametrize("fault", ["kill-leader", "rolling-restart", "freeze-3", "freeze-10", "freeze-30"])
def test_consuls_own_faults_cost_no_failover_and_no_fence(cluster, fault):
    w = Watch(cluster, "fs.t_" + fault.replace("-", "_"))
    if fault == "kill-leader":
        cc.kill_leader(cluster.dir)
        time.sleep(5.0)
        for d in cc.server_dirs(cluster.dir):
            if not cc.ConsulAgent.is_running(d):
                cc.restart_server(d)
    elif fault == "rolling-restart":
        cc.rolling_restart(cluster.dir, pause=2.0)
    else:
        cc.freeze(cluster.dir, float(fault.split("-")[1]))
    st = w.end()
    assert_no_failover_no_fence(cluster, w, st)
    if fault in ("freeze-10", "freeze-30"):
        # These outlive the lease many times over: only the promises kept the primary writable.
        assert "FAILSAFE: Consul does not renew the session" in w.logs()


def test_a_primary_cut_off_from_consul_alone_stays_primary_and_takes_the_key_back(cluster):
    w = Watch(cluster, "fs.cut")
    cluster.cli("local", "partition", w.primary, "--dir", cluster.dir)
    try:
        time.sleep(12.0)                      # its session's check lapses (2 s); the key is freed
        during = w.load.acked[-1]
    finally:
        cluster.cli("local", "heal", w.primary, "--dir", cluster.dir)
    # Status shows it primary at once (on promises); the key comes back after Consul's lock-delay.
    deadline = time.monotonic() + 60
    while "took the leader lock back under a new Consul session" not in w.logs():
        assert time.monotonic() < deadline, w.logs()[-4000:]
        time.sleep(0.5)
    st = w.end()
    assert_no_failover_no_fence(cluster, w, st)
    assert w.load.acked[-1] > during
    logs = w.logs()
    assert "FAILSAFE: Consul does not renew the session" in logs
    assert "promised " + w.primary + " not to take it" in logs


def test_a_replica_that_dies_during_an_outage_ends_the_promises_and_the_primary_fences(cluster):
    w = Watch(cluster, "fs.dies")
    victim = next(n["name"] for n in w.st["nodes"] if n["name"] != w.primary)
    freezer = threading.Thread(target=cc.freeze, args=(cluster.dir, 10.0), daemon=True)
    freezer.start()
    time.sleep(2.5)                            # the primary rides on promises by now
    cluster.cli("local", "kill", victim, "--dir", cluster.dir)
    freezer.join(30)
    logs = w.logs()
    assert "FAILSAFE refused" in logs and victim in logs.split("FAILSAFE refused", 1)[1][:400]
    assert fences_since(cluster, w.offsets), "the primary was not fenced after a member could not confirm"
    cluster.cli("local", "start", victim, "--dir", cluster.dir)
    w.end()


def test_a_session_consul_destroys_while_it_answers_costs_no_failover_and_no_fence(cluster):
    """The agent-leave case, on the real Consul: the primary's session is destroyed while Consul answers
    (an agent leaving deregisters its node and ends its sessions the same way). The primary keeps the
    lease its last renew earned, rides on its members' promises, opens a new session and takes the key
    back. Before this, the heartbeat gave the lease up and the primary fenced (the seed-21 campaign)."""
    import consul
    w = Watch(cluster, "fs.t_destroyed")
    s = cluster.settings
    host, port = s["consul"].split(":")
    kv_root = f"{s.get('consul_prefix', 'mysqlpilot')}/{s.get('cluster', 'mysql')}"
    c = consul.Consul(host=host, port=int(port))
    _, item = c.kv.get(f"{kv_root}/leader")
    assert item and item.get("Session"), item
    c.session.destroy(item["Session"])
    time.sleep(6.0)
    st = w.end()
    assert_no_failover_no_fence(cluster, w, st)
    assert "Consul ended session" in w.logs() and "took the leader lock back" in w.logs()

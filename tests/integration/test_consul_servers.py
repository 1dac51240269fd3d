"""`mysqlpilot local up --consul-servers 3`'s Consul (local/consul_cluster.py): three real servers forming a
Raft cluster and the client agent the nodes talk to. A lock taken through the client agent survives a
killed leader, a rolling restart of every server and a freeze of all of them (issue 21's faults, on the
Consul side only; the cluster-level figures are for the failsafe work)."""
import time

import pytest

from mysqlpilot.dcs.consul import ConsulDCS
from mysqlpilot.local import consul_cluster as cc
from mysqlpilot.local.consul_agent import ConsulAgent
from mysqlpilot.model import LeaderInfo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def consul(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("c3"))
    client = cc.start(d, "server", 3, [])
    yield d, client
    cc.stop(d)


def dcs_of(client, name):
    host, port = client.address.rsplit(":", 1)
    return ConsulDCS(host, int(port), "mysqlpilot-test/c3", name)


def lock(d):
    d.register_service("db-pilot", "db-pilot-a", "127.0.0.1", 1)
    d.register_check("live-a", "live a", 30, service_id="db-pilot-a")
    d.pass_check("live-a")
    sid = d.create_session(30, 0, ["live-a"])
    assert d.acquire_leader(sid, LeaderInfo("a", "h", 1))
    return sid


def holder(d, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            leader, _ = d.get_leader()
            return leader.name if leader else None
        except Exception:  # noqa: BLE001 - no leader for a moment: ask again
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_three_servers_elect_one_leader_and_serve_through_the_client_agent(consul):
    d, client = consul
    assert len(cc.server_dirs(d)) == 3
    assert cc.leader_dir(d) in cc.server_dirs(d)
    dcs = dcs_of(client, "a")
    lock(dcs)
    assert holder(dcs) == "a"


def test_the_lock_survives_a_killed_leader_and_its_return(consul):
    d, client = consul
    dcs = dcs_of(client, "a")
    old = cc.kill_leader(d)
    assert not ConsulAgent.is_running(old)
    new = cc.leader_dir(d, timeout=30)
    assert new != old
    assert holder(dcs) == "a"
    cc.restart_server(old)
    assert ConsulAgent.is_running(old) and holder(dcs) == "a"


def test_the_lock_survives_a_rolling_restart_and_a_freeze(consul):
    d, client = consul
    dcs = dcs_of(client, "a")
    cc.rolling_restart(d, pause=1.0)
    assert holder(dcs) == "a"
    t0 = time.monotonic()
    cc.freeze(d, 2.0)
    assert time.monotonic() - t0 >= 2.0
    assert holder(dcs) == "a"

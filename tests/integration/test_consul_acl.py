"""The Consul ACL policy `mysqlpilot docs consul-policy` prints (issue 23), on a real Consul 1.8.7 with
ACLs on and default deny: a token with that policy alone does everything a node and an operator do (the
liveness check, sessions, the leader lock, members, history, the snapshot lock and its publish
transaction, the service ContainerPilot registers and the catalog's), and nothing else: not another
cluster's keys, not another service."""
import subprocess
import sys

import pytest
import requests

from mysqlpilot.dcs.consul import ConsulDCS
from mysqlpilot.errors import PilotError
from mysqlpilot.local.consul_agent import ConsulAgent
from mysqlpilot.model import LeaderInfo, MemberState, SnapshotManifest

pytestmark = pytest.mark.integration

MASTER = "3f1c7d0e-0000-4000-8000-5ec2e7aa0023"


def acl_token(agent, rules):
    h = {"X-Consul-Token": MASTER}
    base = f"http://127.0.0.1:{agent.http_port}/v1/acl"
    r = requests.put(f"{base}/policy", json={"Name": "mysqlpilot-c1", "Rules": rules}, headers=h, timeout=10)
    assert r.status_code == 200, r.text
    r = requests.put(f"{base}/token", json={"Policies": [{"Name": "mysqlpilot-c1"}]}, headers=h, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["SecretID"]


def test_the_shipped_policy_allows_what_the_cluster_does_and_nothing_else(tmp_path):
    acl = ('acl { enabled = true, default_policy = "deny", enable_token_persistence = false, '
           f'tokens {{ master = "{MASTER}", agent = "{MASTER}" }} }}')
    env = {"PATH": "/usr/bin:/bin", "MYSQLPILOT_CONSUL_PREFIX": "mp", "MYSQLPILOT_CLUSTER": "c1",
           "SERVICE_NAME": "db"}
    rules = subprocess.run([sys.executable, "-m", "mysqlpilot", "docs", "consul-policy"], env=env,
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert 'key_prefix "mp/c1/"' in rules
    with ConsulAgent(str(tmp_path), extra_args=["-hcl", acl]) as agent:
        token = acl_token(agent, rules)
        d = ConsulDCS("127.0.0.1", agent.http_port, "mp/c1", "n1", token=token)
        d.register_check("mysqlpilot-n1", "mysqlpilot n1 alive", 10)
        d.pass_check("mysqlpilot-n1", "ok")
        sid = d.create_session(10, 2, ["mysqlpilot-n1"])
        assert d.session_alive(sid) and d.renew_session(sid) is not None
        assert d.acquire_leader(sid, LeaderInfo("n1", "127.0.0.1", 3306))
        assert d.get_leader()[0].name == "n1"
        d.publish_member(sid, MemberState("n1", "127.0.0.1", 3306, role="primary", healthy=True))
        assert [m.name for m in d.get_cluster().members] == ["n1"]
        d.append_history({"kind": "bootstrap", "time": 1.0, "old_primary": None, "new_primary": "n1",
                          "reason": "test"})
        assert d.history()[-1]["new_primary"] == "n1"
        d.set_paused(True, "acl test")
        d.set_paused(False)
        assert d.acquire_lock("snapshot", sid)
        m = SnapshotManifest("s1", 1.0, "n1", "clusters/c1/snapshots/s1/data", 1, 1, "0" * 64, "mariadb", "10.11",
                             "0-1-1", cluster="c1")
        assert d.publish_snapshot(sid, m.__dict__, 0, lock="snapshot")
        d.release_lock("snapshot", sid)
        assert d.get_latest_snapshot().id == "s1"
        for svc in ("db", "db-primary", "db-replica", "db-pilot"):
            d.register_service(svc, f"{svc}-n1", "127.0.0.1", 3306)
            assert [n["id"] for n in d.service_nodes(svc)] == [f"{svc}-n1"]
            d.deregister_service(f"{svc}-n1")
        assert d.release_leader(sid)
        d.destroy_session(sid)
        # Nothing else: another cluster's keys, another service.
        other = ConsulDCS("127.0.0.1", agent.http_port, "mp/c2", "n1", token=token)
        with pytest.raises(PilotError, match="refused the ACL token"):
            other.put_json("leader", {"name": "n1"})
        with pytest.raises(PilotError, match="refused the ACL token"):
            d.register_service("payments", "payments-n1", "127.0.0.1", 5432)
        assert token not in rules

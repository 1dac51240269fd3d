"""Issue 23: every Consul client of the project against an agent with plain HTTP off, HTTPS with
verify_incoming, client certificates from `consul tls`, and default-deny ACLs with a token that has only
the shipped policy. The hooks' adapter (configured the way a node is, from the environment) and the real
ContainerPilot 3.8.0 with the consul line of docker/containerpilot.json5 register, lock and publish; a
client without a certificate gets one line, and no plain-HTTP listener exists. Real Consul 1.8.7."""
import os
import subprocess
import sys
import time

import json5
import pytest
import requests

from mysqlpilot import config
from mysqlpilot.dcs.consul import ConsulDCS
from mysqlpilot.errors import PilotError
from mysqlpilot.local.consul_agent import ConsulAgent
from mysqlpilot.local.consul_tls import make_certs
from mysqlpilot.model import LeaderInfo, SnapshotManifest
from tests.harness.containerpilot import CP, SHIPPED

pytestmark = pytest.mark.integration

MASTER = "5b7a1c2e-0000-4000-8000-5ec2e7aa0023"


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    d = tmp_path_factory.mktemp("consul-tls")
    tls = make_certs(str(d / "certs"))
    acl = ('acl { enabled = true, default_policy = "deny", enable_token_persistence = false, '
           f'tokens {{ master = "{MASTER}", agent = "{MASTER}" }} }}')
    agent = ConsulAgent(str(d / "agent"), extra_args=["-hcl", acl], tls=tls.to_dict()).start()
    env = {"PATH": "/usr/bin:/bin", "MYSQLPILOT_CONSUL_PREFIX": "mp", "MYSQLPILOT_CLUSTER": "c1",
           "SERVICE_NAME": "db"}
    rules = subprocess.run([sys.executable, "-m", "mysqlpilot", "docs", "consul-policy"], env=env,
                           capture_output=True, text=True, timeout=60, check=True).stdout
    h, kw = {"X-Consul-Token": MASTER}, agent.request_tls()
    r = requests.put(f"{agent.url}/v1/acl/policy", json={"Name": "mp-c1", "Rules": rules}, headers=h, timeout=10, **kw)
    assert r.status_code == 200, r.text
    r = requests.put(f"{agent.url}/v1/acl/token", json={"Policies": [{"Name": "mp-c1"}]}, headers=h, timeout=10, **kw)
    assert r.status_code == 200, r.text
    yield agent, tls, r.json()["SecretID"]
    agent.stop()


def node_env(agent, tls, token, tmp_path):
    return {**tls.client_env(), "CONSUL": agent.address, "CONSUL_HTTP_TOKEN": token,
            "MYSQL_ROOT_PASSWORD": "r00t-pw", "MYSQL_REPL_PASSWORD": "repl-pw", "MYSQLPILOT_NODE": "n1",
            "HOSTNAME": "n1", "MYSQLPILOT_CONSUL_PREFIX": "mp", "MYSQLPILOT_CLUSTER": "c1",
            "MYSQLPILOT_STATE_DIR": str(tmp_path / "state")}


def test_no_plain_http_listener(secure):
    agent, _tls, _token = secure
    me = requests.get(f"{agent.url}/v1/agent/self", headers={"X-Consul-Token": MASTER}, timeout=10,
                      **agent.request_tls()).json()
    assert me["DebugConfig"]["HTTPAddrs"] == [] and me["DebugConfig"]["HTTPPort"] == -1
    assert me["DebugConfig"]["HTTPSPort"] == agent.http_port
    with pytest.raises(requests.RequestException):
        requests.get(f"http://{agent.address}/v1/status/leader", timeout=5).raise_for_status()


def test_the_hooks_configured_from_the_environment_lock_and_publish_over_tls(secure, tmp_path):
    agent, tls, token = secure
    cfg = config.load(None, env=node_env(agent, tls, token, tmp_path))
    d = ConsulDCS.from_config(cfg)
    d.register_check("mysqlpilot-n1", "mysqlpilot n1 alive", 10)
    d.pass_check("mysqlpilot-n1", "ok")
    sid = d.create_session(10, 2, ["mysqlpilot-n1"])
    assert d.acquire_leader(sid, LeaderInfo("n1", "127.0.0.1", 3306))
    assert d.get_leader()[0].name == "n1"
    m = SnapshotManifest("s1", 1.0, "n1", "clusters/c1/snapshots/s1/data", 1, 1, "0" * 64, "mariadb", "10.11",
                         "0-1-1", cluster="c1")
    assert d.acquire_lock("snapshot", sid) and d.publish_snapshot(sid, m.__dict__, 0, lock="snapshot")
    # The same, without the client certificate: refused in one line naming the agent.
    env = node_env(agent, tls, token, tmp_path)
    del env["CONSUL_CLIENT_CERT"], env["CONSUL_CLIENT_KEY"]
    bare = ConsulDCS.from_config(config.load(None, env=env))
    with pytest.raises(PilotError) as e:
        bare.get_leader()
    assert agent.address in str(e.value) and "\n" not in str(e.value) and token not in str(e.value)


def test_a_client_certificate_without_its_key_is_one_line_naming_both(secure, tmp_path):
    agent, tls, token = secure
    env = node_env(agent, tls, token, tmp_path)
    del env["CONSUL_CLIENT_KEY"]
    with pytest.raises(config.ConfigError) as e:
        config.load(None, env=env)
    assert "consul_client_cert" in str(e.value) and "CONSUL_CLIENT_KEY" in str(e.value)


@pytest.mark.skipif(CP is None, reason="no ContainerPilot binary (MYSQLPILOT_CONTAINERPILOT)")
def test_containerpilot_registers_its_service_over_tls_with_the_shipped_consul_line(secure, tmp_path):
    agent, tls, token = secure
    env = {**node_env(agent, tls, token, tmp_path), "SERVICE_NAME": "db", "PORT0": "31337", "HOST": "127.0.0.1",
           "PATH": "/usr/bin:/bin"}
    out = tmp_path / "rendered.json5"
    p = subprocess.run([CP, "-config", SHIPPED, "-template", "-out", str(out)], env=env, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    consul_line = json5.loads(out.read_text())["consul"]
    assert consul_line == f"https://{agent.address}"
    # A small config around the shipped consul line: one service, as ContainerPilot registers mysql's.
    small = tmp_path / "cp.json5"
    small.write_text(json5.dumps({
        "consul": consul_line, "logging": {"level": "INFO"}, "control": {"socket": str(tmp_path / "cp.sock")},
        "jobs": [{"name": "db", "exec": ["sleep", "60"], "port": 31337, "interfaces": ["static:127.0.0.1"],
                  "health": {"exec": "true", "interval": 1, "ttl": 5}}]}))
    proc = subprocess.Popen([CP, "-config", str(small)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        h, kw = {"X-Consul-Token": MASTER}, agent.request_tls()
        deadline, passing = time.monotonic() + 30, []
        while time.monotonic() < deadline and not passing:
            passing = requests.get(f"{agent.url}/v1/health/service/db?passing=1", headers=h, timeout=5, **kw).json()
            time.sleep(0.5)
    finally:
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert passing and passing[0]["Service"]["Port"] == 31337, log[-2000:]
    assert token not in log

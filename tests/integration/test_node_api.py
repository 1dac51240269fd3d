"""Issue 20 on a live cluster: every node serves its node API where `status --json` says (`api`); the
lock holder alone passes /primary, the others pass /replica; /metrics parses with prometheus_client's own
parser and carries the cluster and node labels; no secret is served; after a SIGKILL of the primary's
node the new lock holder passes /primary and counts the failover."""
import http.client
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.cluster import Cluster

# One flavor: the API serves what the flavor-neutral Node observed; what differs by flavor (read_only vs
# super_read_only, fencing) has its own tests on both. Saves the MySQL leg a 3-node cluster.
pytestmark = [pytest.mark.integration,
              pytest.mark.flavors("mariadb", reason="the node API is flavor-neutral; fencing and read_only "
                                  "are tested on both flavors in test_fencing.py")]

ROOT_PW, REPL_PW = "root-Secret-api", "repl-Secret-api"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, flavor):
    c = Cluster(str(tmp_path_factory.mktemp("api") / "cl"),
                env={"MYSQL_ROOT_PASSWORD": ROOT_PW, "MYSQL_REPL_PASSWORD": REPL_PW}, flavor=flavor)
    c.up(3)
    c.wait_healthy(3, timeout=120)
    yield c
    c.down()


def call(api: str, path: str, method: str = "GET"):
    host, port = api.rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def metrics(api: str):
    status, text = call(api, "/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out, text


def wait_status(api: str, path: str, want: int, timeout: float = 60):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = call(api, path)
            if last[0] == want:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{api}{path} did not answer {want} within {timeout}s (last: {last})")


def test_every_node_serves_its_role_and_metrics(cluster):
    st = cluster.status()
    primary = st["primary"]
    assert all(n.get("api") for n in st["nodes"]), st["nodes"]
    for n in st["nodes"]:
        api, is_primary = n["api"], n["name"] == primary
        # The API's view can trail `status` by a pass: wait for it rather than for a time.
        wait_status(api, "/primary", 200 if is_primary else 503)
        wait_status(api, "/replica?lag=60", 503 if is_primary else 200)
        assert call(api, "/read-only")[0] == 200
        assert call(api, "/health")[0] == 200 and call(api, "/liveness")[0] == 200
        assert call(api, "/primary", "OPTIONS")[0] == (200 if is_primary else 503)
        assert call(api, "/replica?lag=abc")[0] == 400
        code, body = call(api, "/status")
        assert code == 200 and f'"name": "{n["name"]}"' in body
        series, text = metrics(api)
        for secret in (ROOT_PW, REPL_PW):
            assert secret not in body and secret not in text
        names = {k for k in series if not k.endswith(("_bucket", "_count", "_sum", "_created"))}
        assert len(names) >= 20, sorted(names)
        for samples in series.values():
            for s in samples:
                assert s.labels["cluster"] == cluster.settings.get("cluster", "mysql")
                assert s.labels["node"] == n["name"]
        assert series["mysqlpilot_lock_held"][0].value == (1 if is_primary else 0)
        assert series["mysqlpilot_writable"][0].value == (1 if is_primary else 0)
        if not is_primary:
            assert series["mysqlpilot_replication_io_running"][0].value == 1


def test_after_a_sigkill_failover_the_new_holder_passes_primary(cluster):
    st = cluster.wait_healthy(3)
    old = st["primary"]
    cluster.cli("local", "kill", old, "--dir", cluster.dir, "--signal", "KILL")
    st2 = cluster.wait_healthy(2, timeout=60, primary_not=old)
    new = cluster.node(st2, st2["primary"])
    wait_status(new["api"], "/primary", 200)
    series, _ = metrics(new["api"])
    assert series["mysqlpilot_failovers_total"][0].value >= 1
    assert series["mysqlpilot_failover_duration_seconds_count"][0].value >= 1
    for n in st2["nodes"]:
        if n["name"] not in (old, new["name"]):
            wait_status(n["api"], "/replica", 200)
            assert call(n["api"], "/primary")[0] == 503
    cluster.cli("local", "start", old, "--dir", cluster.dir)
    cluster.wait_healthy(3, timeout=240)

"""The Consul adapter's catalog entries on a real Consul 1.8.7 agent, read the way clients read them:
`/v1/health/service/<name>?passing` and Consul DNS. The whole-cluster case (a SIGKILLed primary's node)
is test_failover.py::test_sigkill_of_the_primary_node."""
import http.server
import threading
import time

import pytest
import requests

from mysqlpilot.dcs.base import ServiceCheck
from tests.harness.consul_server import make_dcs, running_agent
from tests.harness.dns import query_a

pytestmark = pytest.mark.integration


class Verdicts(http.server.BaseHTTPRequestHandler):
    """A stand-in node API: 200 or 503 per path, as the test sets them."""
    codes = {}

    def do_GET(self):  # noqa: N802
        self.send_response(self.codes.get(self.path.split("?")[0], 503))
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def consul_agent():
    """An agent of this module's own: node-level checks other modules leave critical on the shared agent
    would hide every service of its node, which is the very thing tested here."""
    yield from running_agent("mp-consul-cat-")


@pytest.fixture
def api():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Verdicts)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def passing(agent, name):
    r = requests.get(f"http://127.0.0.1:{agent.http_port}/v1/health/service/{name}?passing", timeout=5)
    return sorted(e["Service"]["ID"] for e in r.json())


def wait(pred, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_a_failing_liveness_check_hides_only_its_own_nodes_entry(consul_agent, consul_kv_root):
    """facts.md, "Consul catalog": a node-level check hid every service of the agent. Bound to the node's
    own entry, it hides that entry and nothing else, and a session bound to it still ends with it."""
    svc = f"db{consul_kv_root[-6:]}"
    a, b = make_dcs(consul_agent, consul_kv_root, "a"), make_dcs(consul_agent, consul_kv_root, "b")
    for d, n in ((a, "a"), (b, "b")):
        d.register_service(svc, f"{svc}-{n}", "127.0.0.1", 3306)
        d.register_check(f"live-{svc}-{n}", f"live {n}", 2, service_id=f"{svc}-{n}")
        d.pass_check(f"live-{svc}-{n}")
    sid = a.create_session(10, 0, [f"live-{svc}-a"])
    assert wait(lambda: passing(consul_agent, svc) == [f"{svc}-a", f"{svc}-b"])
    a.fail_check(f"live-{svc}-a")
    assert wait(lambda: passing(consul_agent, svc) == [f"{svc}-b"])
    assert wait(lambda: not a.session_alive(sid))
    checks = requests.get(f"http://127.0.0.1:{consul_agent.http_port}/v1/agent/checks", timeout=5).json()
    assert checks[f"live-{svc}-a"]["ServiceID"] == f"{svc}-a"


def test_role_entries_pass_exactly_while_the_node_api_says_so(consul_agent, consul_kv_root, api):
    svc = f"db{consul_kv_root[-6:]}-primary"
    d = make_dcs(consul_agent, consul_kv_root, "a")
    url = f"http://127.0.0.1:{api.server_address[1]}/primary"
    check = ServiceCheck(http=url, interval=1, timeout=1, deregister_after=60)
    d.register_service(svc, f"{svc}-a", "127.0.0.7", 3306, tags=("primary",), check=check)
    dns_port = consul_agent.ports["-dns-port"]
    assert passing(consul_agent, svc) == []               # a new HTTP check starts critical
    Verdicts.codes["/primary"] = 200
    assert wait(lambda: passing(consul_agent, svc) == [f"{svc}-a"])
    assert query_a("127.0.0.1", dns_port, f"{svc}.service.consul") == ["127.0.0.7"]
    # Refreshing the registration keeps the check's status (catalog.REFRESH relies on it).
    d.register_service(svc, f"{svc}-a", "127.0.0.7", 3306, tags=("primary",), check=check)
    assert passing(consul_agent, svc) == [f"{svc}-a"]
    Verdicts.codes["/primary"] = 503
    assert wait(lambda: passing(consul_agent, svc) == [])
    assert query_a("127.0.0.1", dns_port, f"{svc}.service.consul") == []

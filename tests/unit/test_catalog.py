"""What a node registers in Consul's catalog (catalog.py), over a recording DCS fake. The real agent's
side (a check bound to a service, HTTP checks, ?passing and DNS) is in tests/integration/test_catalog.py
and test_failover.py::test_sigkill_of_the_primary_node."""
from mysqlpilot.lease import boottime

from .fakes import FakeDCS, FakeMySQL, give_session, make_node


class RecordingDCS(FakeDCS):
    def __init__(self):
        super().__init__()
        self.registered, self.removed, self.checks = {}, [], {}

    def register_service(self, name, service_id, address, port, tags=(), check=None):
        self.registered[service_id] = (name, address, port, tuple(tags), check)

    def deregister_service(self, service_id):
        self.removed.append(service_id)
        self.registered.pop(service_id, None)

    def register_check(self, check_id, name, ttl, service_id=None):
        self.checks[check_id] = service_id


def node(tmp_path, monkeypatch, **env):
    dcs = RecordingDCS()
    servers = {"n1": FakeMySQL("n1", executed="0-1-10")}
    env.setdefault("MYSQLPILOT_API_PORT", "8008")
    return dcs, servers, make_node(tmp_path, "n1", dcs, servers, monkeypatch, **env)


def test_the_liveness_check_belongs_to_the_nodes_own_service(tmp_path, monkeypatch):
    """Seen failing before the fix: registered with no service id, a node-level check, whose failure hid
    every service of the agent (facts.md, "Consul catalog")."""
    dcs, servers, n1 = node(tmp_path, monkeypatch)
    servers["n1"].up = True
    n1._sql_ok_at = boottime()
    monkeypatch.setattr("mysqlpilot.mysqld.mysqld_pid", lambda cfg: 123)
    assert n1.beat()
    assert dcs.checks == {"mysqlpilot-n1": "mysql-pilot-n1"}
    name, address, port, tags, check = dcs.registered["mysql-pilot-n1"]
    assert (name, address, port) == ("mysql-pilot", "h-n1", 3306) and check is None


def test_role_entries_carry_http_checks_on_the_node_api(tmp_path, monkeypatch):
    dcs, servers, n1 = node(tmp_path, monkeypatch, MYSQLPILOT_MAX_REPLICA_LAG="15")
    n1.catalog.refresh()
    p, r = dcs.registered["mysql-primary-n1"], dcs.registered["mysql-replica-n1"]
    assert p[0] == "mysql-primary" and p[1:3] == ("h-n1", 3306) and p[4].http == "http://h-n1:8008/primary"
    assert r[0] == "mysql-replica" and r[4].http == "http://h-n1:8008/replica?lag=15"
    assert p[4].deregister_after > 0 and p[4].interval <= 1
    # Not again before REFRESH (an unchanged check keeps its status, but each call is a request).
    dcs.registered.clear()
    n1.catalog.refresh()
    assert dcs.registered == {}


def test_a_fence_takes_the_primary_entry_out_at_once_and_it_comes_back_checked(tmp_path, monkeypatch):
    dcs, servers, n1 = node(tmp_path, monkeypatch)
    give_session(n1, dcs)
    n1.catalog.refresh()
    n1.fence("test")
    assert "mysql-primary-n1" in dcs.removed and "mysql-primary-n1" not in dcs.registered
    n1.catalog.refresh()
    assert dcs.registered["mysql-primary-n1"][4].http.endswith("/primary")


def test_without_the_node_api_the_primary_entry_follows_promotion_and_fence(tmp_path, monkeypatch):
    dcs, servers, n1 = node(tmp_path, monkeypatch, MYSQLPILOT_API_PORT="0")
    n1.catalog.refresh()
    assert dcs.registered == {}
    n1.catalog.promoted()
    assert dcs.registered["mysql-primary-n1"][4] is None
    n1.fence("test")
    assert "mysql-primary-n1" not in dcs.registered


def test_a_pass_refreshes_the_catalog(tmp_path, monkeypatch):
    dcs, servers, n1 = node(tmp_path, monkeypatch)
    give_session(n1, dcs)
    n1.run_once()
    assert {"mysql-primary-n1", "mysql-replica-n1"} <= set(dcs.registered)

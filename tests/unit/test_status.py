"""What status shows an operator, from member states as Consul holds them (a stand-in DCS: pure logic)."""
import time

from mysqlpilot import config, status
from mysqlpilot.observer import SEMI_SYNC_LAPSED
from mysqlpilot.model import LeaderInfo, MemberState

from .fakes import PartialDCS


class FakeDCS(PartialDCS):
    def __init__(self, leader, members):
        self.leader, self._members = leader, members

    def get_leader(self):
        return self.leader, 1

    def members(self):
        return self._members

    def get_latest_snapshot(self):
        return None

    def get_paused(self):
        return None

    def history(self):
        return []


def member(name, role, alive, read_only, message="", **kw):
    m = MemberState(name=name, host="10.0.0." + name[-1], port=3306, role=role, healthy=True,
                    read_only=read_only, message=message, updated=time.time(), **kw)
    m.alive = alive
    return m


def cfg():
    return config.load(None, env={"MYSQL_ROOT_PASSWORD": "x-secret", "MYSQL_REPL_PASSWORD": "y-secret"})


def test_a_dead_node_shows_no_stale_read_only_and_says_why():
    dcs = FakeDCS(LeaderInfo("db2", "10.0.0.2", 3306), [
        member("db1", "primary", False, False, "primary, writable", replicating_from=None),
        member("db2", "primary", True, False, "primary, writable"),
        member("db3", "replica", True, True, "replicating from db2", replicating_from="10.0.0.2:3306",
               lag_seconds=0.0)])
    st = status.gather(cfg(), dcs)
    n = {x["name"]: x for x in st["nodes"]}
    assert st["primary"] == "db2"
    assert (n["db1"]["role"], n["db1"]["healthy"], n["db1"]["read_only"]) == ("down", False, None)
    assert "no live session" in n["db1"]["message"]
    assert (n["db2"]["role"], n["db2"]["read_only"]) == ("primary", False)
    assert n["db3"]["replicating_from"] == "10.0.0.2:3306"
    text = status.render(st)
    row = next(line for line in text.splitlines() if line.startswith("db1 "))
    assert " ? " in row and "OFF" not in row
    assert "! db1: no live session" in text


def test_a_primary_warning_is_shown_though_it_is_healthy():
    dcs = FakeDCS(LeaderInfo("db1", "10.0.0.1", 3306), [member("db1", "primary", True, False, SEMI_SYNC_LAPSED)])
    text = status.render(status.gather(cfg(), dcs))
    assert f"! db1: {SEMI_SYNC_LAPSED}" in text


def test_a_starting_node_says_what_pre_start_is_doing():
    m = member("db2", "restoring", False, None, "restoring snapshot s1 (900 MB), attempt 1")
    m.updated = time.time() - 42
    dcs = FakeDCS(LeaderInfo("db1", "10.0.0.1", 3306), [member("db1", "primary", True, False, "primary, writable"), m])
    st = status.gather(cfg(), dcs)
    n = {x["name"]: x for x in st["nodes"]}["db2"]
    assert (n["role"], n["healthy"]) == ("restoring", False)
    assert n["message"].startswith("starting: restoring snapshot s1") and "(42s ago)" in n["message"]
    assert "! db2: starting: restoring snapshot s1" in status.render(st)


def test_status_lists_each_nodes_api_as_it_published_it():
    dcs = FakeDCS(LeaderInfo("db1", "10.0.0.1", 3306), [
        member("db1", "primary", True, False, "primary, writable", api="10.0.0.1:8008"),
        member("db2", "replica", True, True, "replicating from db1", api="127.0.0.1:9008"),
        member("db3", "replica", True, True, "from a release before the node API")])
    n = {x["name"]: x for x in status.gather(cfg(), dcs)["nodes"]}
    assert (n["db1"]["api"], n["db2"]["api"], n["db3"]["api"]) == ("10.0.0.1:8008", "127.0.0.1:9008", None)

"""Node logic that needs no server: memory across processes, the role and health it reports."""
from mysqlpilot import config
from mysqlpilot.ha import Node
from mysqlpilot.model import LeaderInfo
from mysqlpilot.statefile import StateFile

from .fakes import PartialDCS


def make_node(tmp_path):
    env = {"MYSQL_ROOT_PASSWORD": "rootpw-secret", "MYSQL_REPL_PASSWORD": "replpw-secret", "HOSTNAME": "db2",
           "MYSQLPILOT_STATE_DIR": str(tmp_path)}
    return Node(config.load(None, env=env), dcs=object())


def test_a_new_process_knows_the_primary_it_last_followed(tmp_path):
    assert make_node(tmp_path).last_leader is None
    old = LeaderInfo("db1", "10.0.0.1", 3306, server_id=7, promoted_gtid="0-7-10")
    StateFile(str(tmp_path)).update(last_leader=old.to_json())
    got = make_node(tmp_path).last_leader
    assert (got.name, got.address, got.server_id, got.promoted_gtid) == ("db1", "10.0.0.1:3306", 7, "0-7-10")


def test_an_unreadable_memory_is_ignored(tmp_path):
    for junk in ("db1", '"db1"', "[1]", "{"):
        StateFile(str(tmp_path)).update(last_leader=junk)
        assert make_node(tmp_path).last_leader is None


def test_primary_reports_a_semi_sync_fallback_but_stays_healthy(tmp_path):
    from mysqlpilot.observer import SEMI_SYNC_LAPSED
    node = make_node(tmp_path)
    me = LeaderInfo("db2", "10.0.0.2", 3306)
    probe = {"up": True, "read_only": False, "status": None, "semi_sync": {"status": True, "clients": 2}}
    assert node.health_of(probe, me) == (True, "primary", "primary, writable")
    probe["semi_sync"] = {"status": False, "clients": 0}
    assert node.health_of(probe, me) == (True, "primary", SEMI_SYNC_LAPSED)
    assert "may be lost" in SEMI_SYNC_LAPSED
    # async clusters never probe semi-sync
    del probe["semi_sync"]
    assert node.health_of(probe, me)[2] == "primary, writable"


def test_mysqld_not_answering_reads_as_starting_until_the_first_session(tmp_path):
    node = make_node(tmp_path)
    probe = {"up": False, "read_only": None, "status": None, "error": "no socket"}
    assert node.health_of(probe, None)[:2] == (False, "down")
    StateFile(str(tmp_path)).update(starting=True)       # pre-start ran
    assert node.health_of(probe, None) == (False, "starting", "mysqld is starting")


class RecordingDCS(PartialDCS):
    def __init__(self, members):
        self._members, self.published = members, []

    def member(self, name):
        return next((m for m in self._members if m.name == name), None)

    def publish_member(self, sid, m):
        self.published.append(m)


def test_a_node_whose_mysqld_is_down_keeps_its_last_published_gtids(tmp_path):
    from mysqlpilot.model import MemberState
    node = make_node(tmp_path)
    node.dcs = RecordingDCS([MemberState("db2", "h", 1, gtid_executed="0-1-77", gtid_received="0-1-78")])
    down = {"up": False, "read_only": None, "status": None, "error": "gone"}
    node.publish_member(down, node.member_state(down, False, "down", "mysqld not answering"))
    assert (node.dcs.published[-1].gtid_executed, node.dcs.published[-1].gtid_received) == ("0-1-77", "0-1-78")
    up = {"up": True, "read_only": True, "status": None, "executed": "0-1-80", "received": "0-1-80"}
    node.publish_member(up, node.member_state(up, True, "replica", "ok"))
    assert node.dcs.published[-1].gtid_executed == "0-1-80"


def test_a_node_without_its_first_session_publishes_starting(tmp_path):
    node = make_node(tmp_path)
    node.dcs = RecordingDCS([])
    up = {"up": True, "read_only": True, "status": None, "executed": "0-1-80", "received": "0-1-80"}
    StateFile(str(tmp_path)).update(starting=True)
    node.publish_member(up, node.member_state(up, True, "candidate", "no primary; awaiting election"))
    assert (node.dcs.published[-1].role, node.dcs.published[-1].message) == (
        "starting", "joining: no primary; awaiting election")
    StateFile(str(tmp_path)).update(session="s-1")
    node.publish_member(up, node.member_state(up, True, "candidate", "no primary; awaiting election"))
    assert node.dcs.published[-1].role == "candidate"


def test_without_a_primary_a_node_whose_replication_broke_does_not_call_itself_healthy(tmp_path):
    """Item 10: while no one held the lock, every live node reported itself healthy."""
    node = make_node(tmp_path)
    ok = {"up": True, "read_only": True, "status": {"io_running": False, "sql_running": True}}
    assert node.health_of(ok, None) == (True, "candidate", "no primary; awaiting election")
    broken = {"up": True, "read_only": True,
              "status": {"io_running": False, "sql_running": False, "last_sql_error": "Duplicate entry"}}
    healthy, role, msg = node.health_of(broken, None)
    assert not healthy and "SQL thread stopped: Duplicate entry" in msg

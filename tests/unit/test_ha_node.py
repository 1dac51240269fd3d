"""Node logic that needs no server: memory across processes, the role and health it reports."""
from mysqlpilot import config
from mysqlpilot.ha import Node
from mysqlpilot.model import LeaderInfo
from mysqlpilot.statefile import StateFile


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
    from mysqlpilot.ha import SEMI_SYNC_LAPSED
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

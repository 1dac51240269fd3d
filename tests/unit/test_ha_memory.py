"""What the HA loop remembers across processes: on-change and a restarted loop are new processes."""
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

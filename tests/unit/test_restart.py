"""Issue 24: `mysqlpilot restart` (the walk's plan, the node's restart action) and cluster settings a running
HA loop takes without a restart."""
import logging
import time

import pytest

from mysqlpilot import analysis, config, mysqld
from mysqlpilot import restart_plan as rp
from mysqlpilot.analysis import Observation, decide
from mysqlpilot.errors import PilotError
from mysqlpilot.model import LeaderInfo, MemberState

from .test_ha_interleavings import cluster, give_session, make_primary, replica_of


def member(name, healthy=True, pending=(), nofailover=False, alive=True, role="replica", executed=""):
    return MemberState(name, "h-" + name, 3306, role=role, healthy=healthy, pending_restart=list(pending),
                       nofailover=nofailover, alive=alive, gtid_executed=executed, flavor="mariadb",
                       message="" if healthy else "replication stopped")


THREE = [member("n2"), member("n1", role="primary"), member("n3")]


def kinds(steps):
    return [(s.kind, s.node) for s in steps]


def test_a_rolling_restart_takes_replicas_one_by_one_then_switches_over_then_the_old_primary():
    assert kinds(rp.plan(THREE, "n1", None, True, False)) == [
        ("restart", "n2"), ("restart", "n3"), ("switchover", "n1"), ("restart", "n1")]


def test_one_node_a_replica_restarts_alone_and_the_primary_moves_its_role_first():
    assert kinds(rp.plan(THREE, "n1", "n3", False, False)) == [("restart", "n3")]
    assert kinds(rp.plan(THREE, "n1", "n1", False, False)) == [("switchover", "n1"), ("restart", "n1")]


def test_pending_keeps_only_the_nodes_that_wait_for_a_restart():
    ms = [member("n1", role="primary", pending=["mysqld.max_connections"]), member("n2"),
          member("n3", pending=["lock_delay"])]
    assert kinds(rp.plan(ms, "n1", None, True, True)) == [("restart", "n3"), ("switchover", "n1"), ("restart", "n1")]
    assert kinds(rp.plan(ms, "n1", "n3", False, True)) == [("restart", "n3")]
    with pytest.raises(PilotError, match="no node has settings pending a restart"):
        rp.plan(ms, "n1", "n2", False, True)


@pytest.mark.parametrize("members, primary, node, rolling, says", [
    (THREE, None, None, True, "there is no primary"),
    (THREE, "n1", None, False, "name the node to restart, or pass --rolling"),
    (THREE, "n1", "n9", False, "no member named 'n9'"),
    ([member("n1", role="primary"), member("n2", healthy=False), member("n3")], "n1", "n3", False,
     "n2 is not a healthy replica (replication stopped); fix or forget it"),
    ([member("n1", role="primary"), member("n2", alive=False)], "n1", None, True, "n2 is not a healthy replica"),
    ([member("n1", role="primary")], "n1", None, True, "no replica can take the role"),
    ([member("n1", role="primary"), member("n2", nofailover=True)], "n1", "n1", False,
     "no replica can take the role"),
])
def test_a_walk_that_cannot_be_safe_is_refused_in_one_line_before_any_step(members, primary, node, rolling, says):
    with pytest.raises(PilotError) as e:
        rp.plan(members, primary, node, rolling, False)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_single_replica_cluster_restarts_its_replica_without_a_switchover():
    ms = [member("n1", role="primary"), member("n2", nofailover=True)]
    assert kinds(rp.plan(ms, "n1", "n2", False, False)) == [("restart", "n2")]


def test_caught_up_means_serving_as_a_replica_with_every_transaction_the_primary_had():
    assert rp.caught_up("mariadb", member("n2", executed="0-1-12"), "0-1-12")
    assert not rp.caught_up("mariadb", member("n2", executed="0-1-11"), "0-1-12")
    assert not rp.caught_up("mariadb", member("n2", executed="0-1-12", healthy=False), "0-1-12")
    assert not rp.caught_up("mariadb", member("n2", executed="0-1-12", role="rebuilding"), "0-1-12")
    assert not rp.caught_up("mariadb", None, "0-1-12")
    u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    assert rp.caught_up("mysql", member("n2", executed=f"{u}:1-20"), f"{u}:1-19")


# ---- the decision ----------------------------------------------------------------------------------
def obs(**kw):
    base = dict(me="n2", now=time.time(), mysqld_up=True, read_only=True, have_session=True, lease_left=5.0,
                leader=LeaderInfo("n1", "h-n1", 3306, promoted=True), i_hold_lock=False,
                replicating_from="h-n1:3306", replication_ok=True)
    base.update(kw)
    return Observation(**base)


def test_a_replica_asked_to_restart_restarts_and_a_rebuild_it_needs_comes_first():
    assert decide(obs(restart_asked="asked")).action == analysis.RESTART
    assert decide(obs(restart_asked="asked", needs_rebuild="errant")).action == analysis.REBUILD
    assert decide(obs(restart_asked="asked", leader=LeaderInfo("n1", "h-n1", 3306))).action == analysis.WAIT
    assert decide(obs(restart_asked="asked", mysqld_up=False)).action == analysis.WAIT
    # The leader key free: no restart while an election may need this node.
    assert decide(obs(restart_asked="asked", leader=None, takeover=(False, "not yet"))).action == analysis.WAIT


# ---- the node --------------------------------------------------------------------------------------
def two_nodes(tmp_path, monkeypatch):
    """n1 the primary, n2 its replica following it; mysqld stops are recorded, not done."""
    stopped = []
    monkeypatch.setattr(mysqld, "stop_mysqld", lambda cfg: stopped.append(cfg.node_name))
    dcs, servers, nodes = cluster(tmp_path, monkeypatch)
    n1, n2 = nodes["n1"], nodes["n2"]
    make_primary(dcs, servers, n1)
    replica_of(servers, "n2", "n1")
    give_session(n2, dcs)
    n1.run_once()
    assert n2.run_once().action in (analysis.WAIT, analysis.FOLLOW)
    return dcs, n1, n2, stopped


def test_a_restart_request_restarts_the_replica_once_and_never_the_lock_holder(tmp_path, monkeypatch):
    dcs, n1, n2, stopped = two_nodes(tmp_path, monkeypatch)
    dcs.kv["restart/n2"] = {"by": "ops@host", "at": time.time(), "reason": "new my.cnf"}
    dcs.kv["restart/n1"] = {"by": "ops@host", "at": time.time(), "reason": "wrong node"}
    out = n2.run_once()
    assert out.action == analysis.RESTART and "mysqlpilot restart" in out.reason and "new my.cnf" in out.reason
    assert stopped == ["n2"] and "restart/n2" not in dcs.kv
    assert dcs.journal()[-1]["kind"] == "restart" and n2.events.counts()["restarts"] == 1
    assert dcs.member("n2").role == "restarting" and not dcs.member("n2").healthy
    assert not n2.state.get("end_loop")          # nothing the loop itself must reload
    assert n2.run_once().action != analysis.RESTART and stopped == ["n2"]       # spent: once
    assert n1.run_once().action == analysis.STAY_PRIMARY and "restart/n1" in dcs.kv and stopped == ["n2"]


def test_a_restart_with_timing_pending_ends_the_loop_so_a_new_one_loads_it(tmp_path, monkeypatch):
    dcs, n1, n2, stopped = two_nodes(tmp_path, monkeypatch)
    dcs.kv["config"] = {"values": {"lock_delay": 6}, "mysqld": {"max_connections": "321"}, "version": 1}
    dcs.kv["restart/n2"] = {"by": "ops@host", "at": time.time(), "reason": "pending"}
    assert n2.run_once().action == analysis.RESTART and stopped == ["n2"]
    assert n2.state.get("end_loop") == "restart for lock_delay"
    assert dcs.journal()[-1]["pending"] == "lock_delay, mysqld.max_connections"


# ---- live settings --------------------------------------------------------------------------------
def reloader(node):
    env = {"MYSQL_ROOT_PASSWORD": "pw", "MYSQL_REPL_PASSWORD": "pw2", "HOSTNAME": node.cfg.node_name,
           "MYSQLPILOT_NODE": node.cfg.node_name, "MYSQLPILOT_STATE_DIR": node.cfg.state_dir}
    return lambda doc: config.load(None, env=env, cluster=doc)


def test_a_running_loop_takes_live_keys_on_its_next_pass_and_leaves_the_rest_pending(tmp_path, monkeypatch):
    dcs, n1, n2, _ = two_nodes(tmp_path, monkeypatch)
    n2.live.reload = reloader(n2)
    assert n2.cfg.max_replica_lag != 17 and n2.policy.failover_budget != 5
    dcs.kv["config"] = {"values": {"max_replica_lag": 17, "failover_budget": 5, "lock_delay": 6},
                        "mysqld": {"max_connections": "321"}, "version": 1}
    n2.run_once()
    assert n2.cfg.max_replica_lag == 17 and n2.policy.failover_budget == 5
    assert n2.cfg.origin["max_replica_lag"].startswith("cluster") and n2.cfg.lock_delay != 6
    n2.run_once()
    assert dcs.member("n2").pending_restart == ["lock_delay", "mysqld.max_connections"]
    # Taken away again: the node's own value comes back.
    dcs.kv["config"] = {"values": {"lock_delay": 6}, "mysqld": {"max_connections": "321"}, "version": 2}
    n2.run_once()
    assert n2.cfg.max_replica_lag == config.KEYS["max_replica_lag"].default
    assert n2.cfg.failover_budget == config.KEYS["failover_budget"].default


def test_settings_this_node_would_refuse_are_not_applied_and_it_says_why(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    dcs, n1, n2, _ = two_nodes(tmp_path, monkeypatch)
    n2.live.reload = reloader(n2)
    before = n2.cfg.max_replica_lag
    dcs.kv["config"] = {"values": {"max_replica_lag": -3}, "mysqld": {}, "version": 1}
    n2.run_once()
    assert n2.cfg.max_replica_lag == before
    assert "CLUSTER SETTINGS REFUSED on this node" in caplog.text and "max_replica_lag" in caplog.text
    dcs.kv["config"] = ["not", "a", "document"]
    n2.run_once()
    assert n2.cfg.max_replica_lag == before and "does not hold a cluster configuration" in caplog.text

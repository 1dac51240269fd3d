"""Issue 24: the cluster's settings in Consul. Which keys may be set cluster-wide, mysqld options passed
through (never one mysqlpilot owns), the cluster's value winning over a node's own and said, the whole
result checked as a node loads it, and what waits for a restart."""
import pytest

from mysqlpilot import cluster_config as cc
from mysqlpilot import config
from mysqlpilot.errors import ConfigError

BASE = {"MYSQL_ROOT_PASSWORD": "r", "MYSQL_REPL_PASSWORD": "p"}


@pytest.mark.parametrize("name", ["loop_wait", "durability", "max_replica_lag", "snapshot_interval",
                                  "failover_budget", "log_level", "mysqld.max_connections", "mysqld.long-query-time"])
def test_what_every_node_must_agree_on_may_be_set(name):
    assert cc.settable(name) is None


@pytest.mark.parametrize("name, why", [
    ("root_password", "a secret"), ("node_name", "differs per node"), ("port", "differs per node"),
    ("consul", "says where Consul is"), ("flavor_version", "differs per node"), ("nope", "unknown key"),
    ("mysqld.read_only", "sets read_only itself"), ("mysqld.server-id", "sets server_id itself"),
    ("mysqld.gtid_mode", "sets gtid_mode itself"), ("mysqld.rpl_semi_sync_master_enabled", "itself"),
    ("mysqld.innodb_buffer_pool_size", "set config key innodb_buffer_pool_size"),
    ("mysqld.bad name", "not a mysqld option name")])
def test_the_rest_is_refused_in_one_line_that_says_why(name, why):
    got = cc.settable(name)
    assert got and why in got and name in got and "\n" not in got


def test_set_changes_and_removes_and_counts_versions():
    doc = cc.apply(cc.empty(), [cc.assignment("loop_wait=3"), cc.assignment("mysqld.Max-Connections=500")])
    assert doc == {"values": {"loop_wait": "3"}, "mysqld": {"max_connections": "500"}, "version": 1}
    doc2 = cc.apply(doc, [cc.assignment("loop_wait=")])
    assert doc2["values"] == {} and doc2["version"] == 2
    assert cc.changes(doc, doc2) == ["loop_wait: 3 -> -"]
    with pytest.raises(ConfigError, match="config set mysqld.read_only: mysqlpilot sets read_only itself"):
        cc.assignment("mysqld.read_only=OFF")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        cc.assignment("loop_wait")


def test_the_clusters_value_wins_and_the_node_says_so():
    doc = {"values": {"loop_wait": "5", "max_replica_lag": "20"}, "mysqld": {"max_connections": "500"}, "version": 4}
    cfg = config.load(None, env=dict(BASE, MYSQLPILOT_LOOP_WAIT="3"), cluster=doc)
    assert cfg.loop_wait == 5 and cfg.max_replica_lag == 20
    assert cfg.origin["loop_wait"] == "cluster (Consul, version 4)"
    assert cfg.overridden == ["loop_wait: 3 from $MYSQLPILOT_LOOP_WAIT overridden by the cluster's '5'"]
    assert cfg.mysqld == {"max_connections": "500"}


def test_a_cluster_value_a_node_would_refuse_is_refused_at_load():
    """`config set` loads the result as a node would before writing it: the same cross-checks."""
    bad = {"values": {"service_ttl": "2", "health_interval": "5"}, "mysqld": {}, "version": 1}
    with pytest.raises(ConfigError, match="service_ttl"):
        config.load(None, env=BASE, cluster=bad)
    with pytest.raises(ConfigError, match="sets read_only itself"):
        config.load(None, env=BASE, cluster={"values": {}, "mysqld": {"read_only": "0"}, "version": 1})


def test_mysqld_options_land_in_mycnf_after_mysqlpilots_own():
    from mysqlpilot.flavors import get_flavor
    cfg = config.load(None, env=BASE, cluster={"values": {}, "mysqld": {"max_connections": "500"}, "version": 1})
    text = get_flavor("mariadb", "10.11").mycnf(cfg)
    mysqld = text.split("[client]")[0]
    assert mysqld.rstrip().endswith("max_connections=500") and "read_only=ON" in mysqld


def test_pending_restart_is_what_the_running_processes_did_not_load():
    loaded = {"values": {"loop_wait": "3"}, "mysqld": {}, "version": 1}
    now = {"values": {"loop_wait": "5"}, "mysqld": {"max_connections": "500"}, "version": 2}
    assert cc.pending_restart(loaded, {}, now) == ["loop_wait", "mysqld.max_connections"]
    assert cc.pending_restart(dict(now), {"max_connections": "500"}, now) == []
    assert cc.pending_restart({}, None, None) == []
    assert cc.pending_restart({}, None, "not a document") == []


def test_a_malformed_document_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match="config edit"):
        cc.parse(["not", "a", "mapping"])
    with pytest.raises(ConfigError, match="differs per node"):
        cc.check_document({"values": {"port": "1"}, "mysqld": {}, "version": 1})

"""Issue item 11: when Consul lost its data (no leader, no `initialized`, no `snapshots/latest`), a node
with an empty datadir must not bootstrap a new, empty cluster over a store that holds snapshots: it
restores the newest one and publishes it as latest; a fresh bootstrap needs force_fresh_bootstrap.
Real Consul, a real server of each flavor (MariaDB + mariadb-backup, MySQL 9.7 + CLONE), the local
directory store."""
import os
import time

import pytest

from mysqlpilot.datadir import INIT_KEY, Preparer
from mysqlpilot.dcs.consul import ConsulDCS
from mysqlpilot.errors import PilotError
from mysqlpilot.snapshot import take_snapshot
from mysqlpilot.store.local import LocalStore
from tests.harness.mariadb_server import Instance, flavor_env

pytestmark = pytest.mark.integration


@pytest.fixture
def stored(server_factory, tmp_path, consul_kv_root):
    """Two snapshots of a cluster's primary in a local store; the second holds 7 rows, the first 3. The
    primary belongs to the cluster `new_node` makes nodes of (the same cluster name)."""
    src = server_factory("src", env={"MYSQLPILOT_CLUSTER": consul_kv_root.split("/")[1]})
    adm = src.admin()
    adm.set_read_only(False)
    adm.execute(["CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY)",
                 "INSERT INTO d.t VALUES (1),(2),(3)"])
    store = LocalStore(str(tmp_path / "store"))
    first = take_snapshot(src.cfg, src.flavor, store, password=src.cfg.root_password)
    adm.execute("INSERT INTO d.t VALUES (4),(5),(6),(7)")
    adm.close()
    time.sleep(0.01)
    second = take_snapshot(src.cfg, src.flavor, store, password=src.cfg.root_password)
    assert second.created > first.created
    src.stop()
    return store, first, second


@pytest.fixture
def new_node(consul_agent, consul_kv_root, tmp_path, flavor):
    """A node with an empty datadir, pointed at an empty Consul prefix (its KV is 'gone')."""
    made = []

    def make(name, **env):
        prefix, cluster = consul_kv_root.split("/")
        extra = {"CONSUL": f"127.0.0.1:{consul_agent.http_port}", "MYSQLPILOT_CONSUL_PREFIX": prefix,
                 "MYSQLPILOT_CLUSTER": cluster, "MYSQLPILOT_STORE_PATH": str(tmp_path / "store")}
        extra.update(env)
        inst = Instance(name, "127.0.1.240", str(tmp_path / name), dict(flavor_env(flavor), **extra))
        made.append(inst)
        return inst
    yield make
    for inst in made:
        inst.teardown()


def rows(inst) -> int:
    inst.start()
    srv = inst.admin()
    try:
        return int(srv.scalar("SELECT COUNT(*) FROM d.t"))
    finally:
        srv.close()


def test_an_empty_node_restores_the_newest_stored_snapshot_instead_of_bootstrapping(stored, new_node):
    store, first, second = stored
    node = new_node("fresh")
    dcs = ConsulDCS.from_config(node.cfg)
    assert dcs.get_latest_snapshot() is None and dcs.get_json(INIT_KEY) is None
    assert Preparer(node.cfg).pre_start() == "restored"
    # Re-published as latest, so the other nodes restore the same one; the init key says how.
    assert dcs.get_latest_snapshot().id == second.id
    assert dcs.get_json(INIT_KEY)["restored_from"] == second.id
    assert rows(node) == 7


@pytest.mark.flavors("mariadb", reason="CI time: the choice between restore and bootstrap is flavor-neutral; "
                     "the MySQL leg restores a stored CLONE snapshot in the first test of this module")
def test_a_second_empty_node_waits_for_and_restores_the_same_snapshot(stored, new_node):
    store, first, second = stored
    a, b = new_node("na"), new_node("nb")
    assert Preparer(a.cfg).pre_start() == "restored"
    assert Preparer(b.cfg).pre_start() == "restored"
    assert rows(b) == 7


@pytest.mark.flavors("mariadb", reason="CI time: the choice between restore and bootstrap is flavor-neutral; "
                     "the MySQL leg restores a stored CLONE snapshot in the first test of this module")
def test_force_fresh_bootstrap_starts_an_empty_cluster_and_says_so(stored, new_node, caplog):
    node = new_node("forced", MYSQLPILOT_FORCE_FRESH_BOOTSTRAP="1")
    caplog.set_level("WARNING")
    assert Preparer(node.cfg).pre_start() == "bootstrapped"
    assert "force_fresh_bootstrap" in caplog.text and stored[2].id in caplog.text
    node.start()
    srv = node.admin()
    assert srv.scalar("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'd'") == 0
    srv.close()


@pytest.mark.flavors("mariadb", reason="CI time: the choice between restore and bootstrap is flavor-neutral; "
                     "the MySQL leg restores a stored CLONE snapshot in the first test of this module")
def test_a_new_cluster_in_a_shared_store_bootstraps_instead_of_restoring_another_clusters_data(stored, new_node):
    """Issue 18 item 8: two clusters, one store (same bucket and prefix). A new cluster "other" must not
    'recover' cluster A's newest snapshot (its data and passwords): it bootstraps its own, empty."""
    node = new_node("other0", MYSQLPILOT_CLUSTER="other-" + os.urandom(4).hex())
    assert Preparer(node.cfg).pre_start() == "bootstrapped"
    node.start()
    srv = node.admin()
    try:
        assert srv.scalar("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'd'") == 0
    finally:
        srv.close()


@pytest.mark.flavors("mariadb", reason="CI time: the choice between restore and bootstrap is flavor-neutral; "
                     "the MySQL leg restores a stored CLONE snapshot in the first test of this module")
def test_an_unreadable_store_refuses_to_bootstrap_in_one_line(new_node):
    node = new_node("blind", MYSQLPILOT_STORE="s3", MYSQLPILOT_S3_BUCKET="b",
                    MYSQLPILOT_S3_ENDPOINT="http://127.0.0.1:1", AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")
    with pytest.raises(PilotError) as ei:
        Preparer(node.cfg).pre_start()
    msg = str(ei.value)
    assert "\n" not in msg and "before bootstrapping" in msg and "force_fresh_bootstrap" in msg, msg
    assert not os.path.isdir(os.path.join(node.cfg.datadir, "mysql"))
    assert ConsulDCS.from_config(node.cfg).get_json(INIT_KEY) is None

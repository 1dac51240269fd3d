"""Seeding a replica by CLONE INSTANCE FROM a member (clone_seed.py): the statements, which donor, when
it falls back to the store, and that a failure keeps the datadir and the secret out of the message."""
import os

import pytest

from mysqlpilot.sqlclient import Server as RealServer

from mysqlpilot import clone_seed, config
from mysqlpilot.datadir import Preparer
from mysqlpilot.dcs.base import ClusterView
from mysqlpilot.errors import PilotError, SnapshotError
from mysqlpilot.flavors import get_flavor
from mysqlpilot.model import LeaderInfo, MemberState

from .fakes import PartialDCS

MY97 = get_flavor("mysql", "9.7.4")


def member(name, role="replica", healthy=True, alive=True, lag=0.0, version="9.7.4", flavor="mysql"):
    return MemberState(name=name, host=f"10.0.0.{name[-1]}", port=3306, role=role, healthy=healthy,
                       lag_seconds=lag, flavor=flavor, version=version, alive=alive)


def cfg_for(tmp_path, **env):
    base = {"MYSQL_ROOT_PASSWORD": "r-secret", "MYSQL_REPL_PASSWORD": "p-s3cret", "MYSQLPILOT_NODE": "db4",
            "MYSQLPILOT_STATE_DIR": str(tmp_path / "state"), "MYSQLPILOT_DATADIR": str(tmp_path / "data"),
            "MYSQLPILOT_STORE_PATH": str(tmp_path / "store"), "MYSQLPILOT_MYSQLD_USER": "root",
            "MYSQLPILOT_FLAVOR": "mysql", "MYSQLPILOT_FLAVOR_VERSION": "9.7.4"}
    base.update(env)
    return config.load(None, env=base)


# ---- SQL ---------------------------------------------------------------------------------------
def test_clone_statements():
    assert MY97.clone_donor_list_sql("10.0.0.2", 3307) == ["SET GLOBAL clone_valid_donor_list = '10.0.0.2:3307'"]
    assert MY97.clone_instance_sql("10.0.0.2", 3307, "repl", "p'w", "/s/seed/clone") == [
        "CLONE INSTANCE FROM 'repl'@'10.0.0.2':3307 IDENTIFIED BY 'p\\'w' DATA DIRECTORY = '/s/seed/clone'"]


def test_repl_user_may_donate_only_where_clone_exists(tmp_path):
    cfg = cfg_for(tmp_path)
    assert "GRANT BACKUP_ADMIN ON *.* TO 'repl'@'%'" in MY97.bootstrap_users(cfg)
    for fv in (("mysql", "8.0.16"), ("mysql", "5.7"), ("mariadb", "10.11")):
        assert not any("BACKUP_ADMIN" in s for s in get_flavor(*fv).bootstrap_users(cfg)), fv


def test_recipient_loads_the_plugins_every_node_loads(tmp_path):
    mycnf = dict(MY97.mycnf_options(cfg_for(tmp_path)))
    assert mycnf["plugin-load-add"] == ";".join(MY97.plugins())
    assert "mysql_clone.so" in MY97.plugins()


# ---- which method ------------------------------------------------------------------------------
def test_seed_method_auto_follows_the_flavor(tmp_path):
    cfg = cfg_for(tmp_path)
    assert clone_seed.seed_method(cfg, MY97) == "clone-remote"
    assert clone_seed.seed_method(cfg, get_flavor("mysql", "8.0.16")) == "store"
    assert clone_seed.seed_method(cfg, get_flavor("mariadb", "10.11")) == "store"
    assert clone_seed.seed_method(cfg_for(tmp_path, MYSQLPILOT_SEED_METHOD="store"), MY97) == "store"


def test_clone_remote_without_the_plugin_is_a_one_line_error_naming_the_key(tmp_path):
    cfg = cfg_for(tmp_path, MYSQLPILOT_SEED_METHOD="clone-remote")
    with pytest.raises(PilotError) as ei:
        clone_seed.seed_method(cfg, get_flavor("mysql", "5.7"))
    assert "seed_method" in str(ei.value) and "\n" not in str(ei.value)


def test_unknown_seed_method_is_refused(tmp_path):
    with pytest.raises(PilotError) as ei:
        cfg_for(tmp_path, MYSQLPILOT_SEED_METHOD="rsync")
    assert "seed_method" in str(ei.value)


# ---- which donor -------------------------------------------------------------------------------
def test_donor_is_the_least_lagging_healthy_replica_not_the_primary():
    ms = [member("db1", role="primary"), member("db2", lag=5.0), member("db3", lag=1.0), member("db4")]
    donor, why = clone_seed.choose_donor(ms, "db4", MY97, "db1")
    assert donor.name == "db3" and "replica" in why


def test_donor_skips_unhealthy_dead_other_version_and_starting_members():
    ms = [member("db1", role="primary"), member("db2", healthy=False), member("db3", alive=False),
          member("db5", version="9.6.0"), member("db6", role="restoring"), member("db7", flavor="mariadb")]
    donor, why = clone_seed.choose_donor(ms, "db4", MY97, "db1", allow_primary=True)
    assert donor.name == "db1" and "no healthy replica" in why
    # Under seed_method auto the primary is never a donor: the first replicas restore from the store.
    donor, why = clone_seed.choose_donor(ms, "db4", MY97, "db1")
    assert donor is None and "the primary is not cloned from under seed_method auto" in why


def test_donor_is_never_a_member_without_a_session():
    """Issue 18 item 13: the donor gets the replication password (CLONE INSTANCE ... IDENTIFIED BY), so a
    key without a live session, whose host nobody vouches for, is never one, however healthy it reads."""
    ms = [member("db1", role="primary", alive=False), member("db2", alive=False, lag=0.0)]
    for allow_primary in (False, True):
        donor, why = clone_seed.choose_donor(ms, "db4", MY97, "db1", allow_primary=allow_primary)
        assert donor is None and "db2 has no live Consul session" in why


def test_no_donor_when_nobody_qualifies():
    ms = [member("db1", role="primary", healthy=False), member("db2", healthy=False),
          member("db3", role="primary")]           # says primary, but db1 holds the lock
    donor, why = clone_seed.choose_donor(ms, "db4", MY97, "db1")
    assert donor is None
    assert "db2 not healthy" in why and "db3 says primary" in why


def test_a_node_never_clones_itself():
    donor, _ = clone_seed.choose_donor([member("db4")], "db4", MY97, None)
    assert donor is None


# ---- the decision in the Preparer ---------------------------------------------------------------
class SeedDCS(PartialDCS):
    def __init__(self, members, leader="db1"):
        self.view = ClusterView(leader=LeaderInfo(leader, "10.0.0.1", 3306, session="s") if leader else None,
                                members=members)
        self.kv = {}

    def get_cluster(self):
        return self.view

    def member(self, name):
        return None

    def publish_member(self, sid, state):
        pass

    def put_json(self, rel, value, cas=None):
        self.kv[rel] = value
        return True


def preparer(tmp_path, members, calls, clone_error=None, **env):
    prep = Preparer(cfg_for(tmp_path, **env), dcs=SeedDCS(members))

    def fake_clone(cfg, flavor, donor, *, datadir, user, password):
        calls.append((donor.name, user, password))
        if clone_error:
            raise clone_error
        os.makedirs(os.path.join(datadir, "mysql"))
        return "uuid:1-10"
    return prep, fake_clone


def test_seed_clones_the_chosen_replica_and_seeds_its_gtid(tmp_path, monkeypatch):
    calls = []
    prep, fake = preparer(tmp_path, [member("db1", role="primary"), member("db2")], calls)
    monkeypatch.setattr(clone_seed, "clone_from", fake)
    monkeypatch.setattr("mysqlpilot.datadir.open_store", lambda cfg: pytest.fail("the store was read"))
    assert prep.restore(manifest=None) == "cloned"
    assert calls == [("db2", "repl", "p-s3cret")]
    assert prep.state.get("seed_gtid") == "uuid:1-10" and not prep.state.get("rebuild_reason")


def test_store_method_never_clones(tmp_path, monkeypatch):
    calls = []
    prep, fake = preparer(tmp_path, [member("db2")], calls, MYSQLPILOT_SEED_METHOD="store")
    monkeypatch.setattr(clone_seed, "clone_from", fake)
    assert prep.seed_by_clone() is False and calls == []


def test_no_donor_falls_back_to_the_store(tmp_path, monkeypatch):
    calls = []
    prep, fake = preparer(tmp_path, [member("db2", healthy=False)], calls)
    monkeypatch.setattr(clone_seed, "clone_from", fake)
    assert prep.seed_by_clone() is False and calls == []


def test_a_failed_clone_falls_back_to_the_store_with_one_line_and_no_secret(tmp_path, monkeypatch, caplog):
    calls = []
    err = SnapshotError("CLONE INSTANCE FROM db2 (10.0.0.2:3306) refused: user 'repl' lacks BACKUP_ADMIN")
    prep, fake = preparer(tmp_path, [member("db2")], calls, clone_error=err)
    monkeypatch.setattr(clone_seed, "clone_from", fake)
    caplog.set_level("INFO")
    assert prep.seed_by_clone() is False and calls
    warn = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warn) == 1 and "BACKUP_ADMIN" in warn[0] and "restoring from the store" in warn[0]
    assert not any("p-s3cret" in r.getMessage() for r in caplog.records)


# ---- the clone itself, without a server ----------------------------------------------------------
class FakeServer:
    """Records statements; fails CLONE INSTANCE with the given server error."""
    errno = 0

    def __init__(self, *a, **kw):
        self.real = RealServer(MY97, socket="/nonexistent", user="root")

    def add_secret(self, s):
        self.real.add_secret(s)

    def execute(self, sql):
        from mysqlpilot.sqlclient import SQLError
        if any("CLONE INSTANCE" in s for s in sql):
            raise SQLError(self.real._scrub(f"MySQL at x: CLONE INSTANCE FROM ... failed: (1227) Access denied "
                                            f"while running {sql[0]}"), type(self).errno)

    def query(self, sql):
        return [{"state": "Completed"}]

    def close(self):
        pass


def test_clone_failure_names_the_donor_and_the_grant_and_leaves_the_datadir(tmp_path, monkeypatch):
    import contextlib
    cfg = cfg_for(tmp_path)
    os.makedirs(os.path.join(cfg.datadir, "mysql"))
    with open(os.path.join(cfg.datadir, "ibdata1"), "w") as fh:
        fh.write("old")

    @contextlib.contextmanager
    def no_recipient(cfg, flavor, scratch):
        yield "/nonexistent.sock"
    FakeServer.errno = clone_seed.ER_SPECIFIC_ACCESS_DENIED
    monkeypatch.setattr(clone_seed, "_recipient", no_recipient)
    monkeypatch.setattr("mysqlpilot.sqlclient.Server", FakeServer)
    with pytest.raises(SnapshotError) as ei:
        clone_seed.clone_from(cfg, MY97, member("db2"), datadir=cfg.datadir, user="repl", password="p-s3cret")
    msg = str(ei.value)
    assert "\n" not in msg and "db2 (10.0.0.2:3306)" in msg and "GRANT BACKUP_ADMIN" in msg
    assert "seed_method" in msg and "p-s3cret" not in msg
    # Other errors keep the server's text, secret masked.
    FakeServer.errno = 3862
    with pytest.raises(SnapshotError) as ei:
        clone_seed.clone_from(cfg, MY97, member("db2"), datadir=cfg.datadir, user="repl", password="p-s3cret")
    assert "p-s3cret" not in str(ei.value) and "db2" in str(ei.value)
    # The datadir is untouched and no scratch dir is left behind.
    with open(os.path.join(cfg.datadir, "ibdata1")) as fh:
        assert fh.read() == "old"
    assert not [d for d in os.listdir(cfg.state_dir) if d.startswith("seed-clone-")]
    assert not [d for d in os.listdir(tmp_path) if ".aside-" in d]

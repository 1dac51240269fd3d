"""Issue item 9: a snapshot is published as `snapshots/latest` only by the node that still holds the
leader lock, only over the value it read before the backup, and never moving latest backwards.
Against a real Consul 1.8.7; the backup itself is stood in for (it is not what is tested here)."""
import time

import pytest

from mysqlpilot import config, snapshot_job
from mysqlpilot.dcs.consul import ConsulDCS
from mysqlpilot.model import LeaderInfo, SnapshotManifest
from mysqlpilot.statefile import StateFile
from tests.harness.consul_server import make_dcs

pytestmark = pytest.mark.integration


def live_session(d: ConsulDCS, name: str) -> str:
    cid = f"mysqlpilot-{name}"
    d.register_check(cid, f"live {name}", 30)
    d.pass_check(cid, "ok")
    return d.create_session(10, 0, [cid])


def manifest(sid: str, created: float, gtid: str = "0-1-10", node: str = "a") -> SnapshotManifest:
    return SnapshotManifest(id=sid, created=created, source=node, object_key=f"snapshots/{sid}/data",
                            bytes=1, raw_bytes=1, sha256="0" * 64, flavor="mariadb", version="10.11",
                            gtid=gtid)


def test_publish_needs_the_leader_session_and_the_index_read_before(consul_agent, consul_kv_root):
    a = make_dcs(consul_agent, consul_kv_root, "a")
    b = make_dcs(consul_agent, consul_kv_root, "b")
    sa, sb = live_session(a, "a"), live_session(b, "b")
    assert a.acquire_leader(sa, LeaderInfo("a", "h", 1))
    latest, idx = a.latest_snapshot_with_index()
    assert (latest, idx) == (None, 0)
    # Index 0 means "still absent".
    assert a.publish_snapshot(sa, manifest("s1", 1.0).__dict__, 0) is True
    assert a.publish_snapshot(sa, manifest("s2", 2.0).__dict__, 0) is False
    latest, idx = a.latest_snapshot_with_index()
    assert latest.id == "s1" and idx > 0
    # A session that does not hold the leader lock cannot publish, whatever the index.
    assert b.publish_snapshot(sb, manifest("s-b", 3.0).__dict__, idx) is False
    # A stale index cannot overwrite a newer value.
    assert a.publish_snapshot(sa, manifest("s3", 3.0).__dict__, idx) is True
    assert a.publish_snapshot(sa, manifest("s4", 4.0).__dict__, idx) is False
    assert a.get_latest_snapshot().id == "s3"
    # Deposed: the leader's session is gone; nothing it publishes lands.
    latest, idx = a.latest_snapshot_with_index()
    a.destroy_session(sa)
    assert a.publish_snapshot(sa, manifest("s5", 5.0).__dict__, idx) is False
    assert a.get_latest_snapshot().id == "s3"


def test_a_replicas_snapshot_needs_the_primary_it_followed_still_leading(consul_agent, consul_kv_root):
    """Issue 22: a snapshot taken on a replica is published with the replica's session on the snapshot lock
    and the primary's session checked on the leader key: if the primary changed during the backup, the
    replica's data may hold what the failover lost, and it must not become latest."""
    a = make_dcs(consul_agent, consul_kv_root, "a")
    b = make_dcs(consul_agent, consul_kv_root, "b")
    sa, sb = live_session(a, "a"), live_session(b, "b")
    assert a.acquire_leader(sa, LeaderInfo("a", "h", 1))
    assert b.acquire_lock("snapshot", sb)
    assert b.publish_snapshot(sb, manifest("r1", 1.0, node="b").__dict__, 0, lock="snapshot", leader_session=sa)
    latest, idx = b.latest_snapshot_with_index()
    assert latest.id == "r1"
    # Without the snapshot lock: refused, whoever leads.
    c = make_dcs(consul_agent, consul_kv_root, "c")
    sc = live_session(c, "c")
    assert not c.publish_snapshot(sc, manifest("r2", 2.0, node="c").__dict__, idx, lock="snapshot", leader_session=sa)
    # The primary it followed is deposed during the backup: refused, and latest stays.
    a.destroy_session(sa)
    assert c.acquire_leader(sc, LeaderInfo("c", "h", 1))
    assert not b.publish_snapshot(sb, manifest("r3", 3.0, node="b").__dict__, idx, lock="snapshot",
                                  leader_session=sa)
    assert b.get_latest_snapshot().id == "r1"


@pytest.fixture
def node_cfg(consul_agent, consul_kv_root, tmp_path):
    prefix, cluster = consul_kv_root.split("/")
    return config.load(env={"MYSQL_ROOT_PASSWORD": "r-secret", "MYSQL_REPL_PASSWORD": "p-secret",
                            "CONSUL": f"127.0.0.1:{consul_agent.http_port}", "MYSQLPILOT_CONSUL_PREFIX": prefix,
                            "MYSQLPILOT_CLUSTER": cluster, "MYSQLPILOT_NODE": "a",
                            "MYSQLPILOT_STATE_DIR": str(tmp_path / "state"),
                            "MYSQLPILOT_STORE_PATH": str(tmp_path / "store")})


def primary(cfg):
    d = ConsulDCS.from_config(cfg)
    sid = live_session(d, cfg.node_name)
    assert d.acquire_leader(sid, LeaderInfo(cfg.node_name, "h", 1))
    StateFile(cfg.state_dir).update(session=sid)
    return d, sid


def stand_in_backup(monkeypatch, during=None, **kw):
    """take_snapshot replaced by a 'long backup' that runs `during` halfway."""
    def fake(cfg, flavor, store, **_):
        if during:
            during()
        return manifest(kw.get("id", "new"), kw.get("created", time.time()), kw.get("gtid", "0-1-10"))
    monkeypatch.setattr(snapshot_job, "take_snapshot", fake)


def test_a_primary_deposed_during_its_backup_does_not_publish(node_cfg, consul_agent, consul_kv_root,
                                                               monkeypatch, caplog):
    d, sid = primary(node_cfg)
    d.set_latest_snapshot(manifest("old", time.time() - 100).__dict__)
    other = make_dcs(consul_agent, consul_kv_root, "b")

    def deposed():
        # The lease ran out mid-backup; node b is elected and holds the lock now.
        d.destroy_session(sid)
        sb = live_session(other, "b")
        assert other.acquire_leader(sb, LeaderInfo("b", "h2", 2))
    stand_in_backup(monkeypatch, during=deposed, id="from-deposed")
    caplog.set_level("INFO")
    assert snapshot_job.run_snapshot_job(node_cfg, force=True, dcs=d) is None
    assert d.get_latest_snapshot().id == "old"
    assert "no longer holds the leader lock" in caplog.text


def test_a_snapshot_older_than_the_latest_is_not_published(node_cfg, monkeypatch, caplog):
    d, sid = primary(node_cfg)
    d.set_latest_snapshot(manifest("newer", time.time() + 50).__dict__)
    stand_in_backup(monkeypatch, id="older", created=time.time())
    caplog.set_level("INFO")
    assert snapshot_job.run_snapshot_job(node_cfg, force=True, dcs=d) is None
    assert d.get_latest_snapshot().id == "newer"
    assert "older than the current latest newer" in caplog.text


def test_latest_changed_during_the_backup_is_checked_again(node_cfg, monkeypatch):
    """An operator's `snapshot use OLD` mid-backup: the CAS fails, the value is read again, ours is
    still newer, so it is published. A newer one appearing mid-backup wins instead."""
    d, sid = primary(node_cfg)
    d.set_latest_snapshot(manifest("first", time.time() - 100).__dict__)
    stand_in_backup(monkeypatch, during=lambda: d.set_latest_snapshot(manifest("older", time.time() - 500).__dict__),
                    id="ours")
    got = snapshot_job.run_snapshot_job(node_cfg, force=True, dcs=d)
    assert got is not None and got.id == "ours" and d.get_latest_snapshot().id == "ours"
    stand_in_backup(monkeypatch, during=lambda: d.set_latest_snapshot(manifest("newest", time.time() + 60).__dict__),
                    id="ours2")
    assert snapshot_job.run_snapshot_job(node_cfg, force=True, dcs=d) is None
    assert d.get_latest_snapshot().id == "newest"


def test_a_second_job_of_the_same_node_skips_and_only_the_lock_holder_publishes(node_cfg, consul_agent,
                                                                                 consul_kv_root, monkeypatch):
    """The cause of test_replica_waits_for_the_first_snapshot's flakiness on MySQL: a node's jobs (the
    first-snapshot job, on-change's, the periodic one) share its leader session, and Consul's acquire
    succeeds again for the session that holds the lock. A second job ran beside the first; the first one's
    release freed the lock while the second still ran, the test took the free lock and deleted latest,
    and the second job published anyway (its publish checked the leader session only)."""
    d, sid = primary(node_cfg)
    taken = []

    def second_job_meanwhile():
        taken.append("first")
        stand_in_backup(monkeypatch, during=lambda: taken.append("second"), id="second")
        assert snapshot_job.run_snapshot_job(node_cfg, force=True, dcs=d) is None
    stand_in_backup(monkeypatch, during=second_job_meanwhile, id="first")
    # Re-entrant for the same session: the Consul lock alone cannot tell the two jobs apart.
    assert d.acquire_lock(snapshot_job.LOCK, sid) and d.acquire_lock(snapshot_job.LOCK, sid)
    d.release_lock(snapshot_job.LOCK, sid)
    got = snapshot_job.run_snapshot_job(node_cfg, force=True, dcs=d)
    assert taken == ["first"] and got is not None and d.get_latest_snapshot().id == "first"
    # The publish proves the snapshot lock too: with it held by another session, nothing lands.
    other = make_dcs(consul_agent, consul_kv_root, "t")
    st = live_session(other, "t")
    assert other.acquire_lock(snapshot_job.LOCK, st)
    _, idx = d.latest_snapshot_with_index()
    assert d.publish_snapshot(sid, manifest("unlocked", time.time() + 1).__dict__, idx,
                              lock=snapshot_job.LOCK) is False
    assert d.get_latest_snapshot().id == "first"
    other.release_lock(snapshot_job.LOCK, st)
    assert d.acquire_lock(snapshot_job.LOCK, sid)
    assert d.publish_snapshot(sid, manifest("locked", time.time() + 2).__dict__, idx,
                              lock=snapshot_job.LOCK) is True


def test_publish_sends_the_acl_token(tmp_path):
    """py-consul's txn.put sends no token; ours does: with ACLs on (default deny) the right token
    publishes, a wrong one is a one-line error that never shows the token."""
    from mysqlpilot.errors import PilotError
    from mysqlpilot.local.consul_agent import ConsulAgent
    master = "3f1c7d0e-0000-4000-8000-5ec2e7aa0002"
    acl = ('acl { enabled = true, default_policy = "deny", enable_token_persistence = false, '
           f'tokens {{ master = "{master}", agent = "{master}" }} }}')
    with ConsulAgent(str(tmp_path), extra_args=["-hcl", acl]) as agent:
        d = ConsulDCS("127.0.0.1", agent.http_port, "mp/acl", "a", token=master)
        sid = live_session(d, "a")
        assert d.acquire_leader(sid, LeaderInfo("a", "h", 1))
        assert d.publish_snapshot(sid, manifest("s1", 1.0).__dict__, 0) is True
        assert d.get_latest_snapshot().id == "s1"
        wrong = "bad0bad0-0000-4000-8000-00000000beef"
        bad = ConsulDCS("127.0.0.1", agent.http_port, "mp/acl", "a", token=wrong)
        with pytest.raises(PilotError) as ei:
            bad.publish_snapshot(sid, manifest("s2", 2.0).__dict__, 0)
        assert "\n" not in str(ei.value) and wrong not in str(ei.value)
        assert d.get_latest_snapshot().id == "s1"

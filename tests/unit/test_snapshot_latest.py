"""Issue 18 item 7: a hostile `snapshots/latest` crashed pre-start and the snapshot job, and made the primary
start a forced full snapshot on every pass. Read through the real Consul adapter over a stand-in client."""
import dataclasses
import json

import pytest

from mysqlpilot import analysis, config, snapshot_job
from mysqlpilot.dcs import base
from mysqlpilot.dcs.consul import ConsulDCS
from mysqlpilot.model import LeaderInfo, SnapshotManifest
from mysqlpilot.statefile import StateFile

from .fakes import FakeDCS, FakeMySQL, give_session, make_node

ROOT = "mp/c"
KEY = f"{ROOT}/snapshots/latest"
GOOD = SnapshotManifest(id="s1", created=1000.0, source="n1", object_key="snapshots/s1/data", bytes=1,
                        raw_bytes=1, sha256="0" * 64, flavor="mariadb", version="10.11", gtid="0-1-10")
HOSTILE = [
    b"[1]", b'"s1"', b"42", b"true", b'{"id": "s1"}',
    json.dumps(dict(dataclasses.asdict(GOOD), bytes="big")).encode(),
    json.dumps(dict(dataclasses.asdict(GOOD), created="yesterday")).encode(),
    json.dumps(dict(dataclasses.asdict(GOOD), created=float("nan"))).encode(),
    json.dumps(dict(dataclasses.asdict(GOOD), id="")).encode(),
]


class FakeKV:
    """The part of python-consul's kv the adapter calls. `latest` may be a list: one value per watch."""

    def __init__(self, latest, leader_session="sid1"):
        self.latest = latest if isinstance(latest, list) else [latest]
        self.leader_session = leader_session
        self.puts = []

    def _latest(self, watch):
        raw = self.latest.pop(0) if watch and len(self.latest) > 1 else self.latest[0]
        return {"Key": KEY, "Value": raw, "ModifyIndex": 9} if raw is not None else None

    def get(self, key, index=None, wait=None, recurse=False, consistency=None):
        leader = {"Key": f"{ROOT}/leader", "Value": LeaderInfo("n1", "h-n1", 3306, promoted=True).to_json().encode(),
                  "Session": self.leader_session, "LockIndex": 1}
        if recurse:
            return 10, [it for it in (leader, self._latest(False)) if it and it["Key"].startswith(key)]
        if key == KEY:
            return 10 + (index or 0), self._latest(index is not None)
        if key == f"{ROOT}/leader":
            return 10, leader
        return 10, None

    def put(self, key, value, **kw):
        self.puts.append((key, value, kw))
        return True

    def delete(self, key, **kw):
        return True


def consul_dcs(latest, **kw) -> ConsulDCS:
    d = ConsulDCS("127.0.0.1", 1, ROOT, "n1", dialect="mariadb")
    d.c.kv = FakeKV(latest, **kw)
    return d


@pytest.mark.parametrize("raw", HOSTILE)
def test_a_hostile_latest_reads_as_no_snapshot_with_one_line_naming_the_key(caplog, raw):
    base._warned.clear()
    d = consul_dcs(raw)
    assert d.get_latest_snapshot() is None
    assert d.latest_snapshot_with_index() == (None, 9)        # the CAS base a new snapshot replaces it at
    assert d.wait_latest_snapshot(0, 1)[0] is None
    assert d.get_cluster().latest_snapshot is None
    lines = [r.getMessage() for r in caplog.records if KEY in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines


def test_a_good_latest_is_a_typed_manifest():
    d = consul_dcs(GOOD.to_json().encode())
    for got in (d.get_latest_snapshot(), d.latest_snapshot_with_index()[0], d.wait_latest_snapshot(0, 1)[0],
                d.get_cluster().latest_snapshot):
        assert isinstance(got, SnapshotManifest) and got == GOOD


def node_config(tmp_path, **env):
    base_env = {"MYSQL_ROOT_PASSWORD": "pw", "MYSQL_REPL_PASSWORD": "pw2", "MYSQLPILOT_NODE": "n2",
                "HOSTNAME": "n2", "MYSQLPILOT_STATE_DIR": str(tmp_path / "state"),
                "MYSQLPILOT_DATADIR": str(tmp_path / "data"), "MYSQLPILOT_STORE_PATH": str(tmp_path / "store"),
                "MYSQLPILOT_CONSUL_PREFIX": "mp", "MYSQLPILOT_CLUSTER": "c"}
    base_env.update(env)
    return config.load(None, env=base_env)


@pytest.mark.parametrize("raw", [b"[1]", b'{"id": "s1"}'])
def test_pre_start_waits_past_a_hostile_latest_instead_of_crashing(tmp_path, monkeypatch, raw):
    from mysqlpilot import datadir, mysqld
    monkeypatch.setattr(mysqld, "write_mycnf", lambda cfg, flavor: "")
    cfg = node_config(tmp_path)
    # Pre-start reads it, then watches it: the primary's snapshot replaces the hostile value.
    dcs = consul_dcs([raw, raw, GOOD.to_json().encode()])
    prep = datadir.Preparer(cfg, dcs=dcs)
    restored = []
    monkeypatch.setattr(prep, "restore", lambda m: restored.append(m) or "restored")
    assert prep.pre_start() == "restored" and restored == [GOOD]


class Store:
    def check(self):
        pass


@pytest.mark.parametrize("raw, force", [(b"[1]", True), (b'{"id": "s1", "created": "yesterday"}', False),
                                        (b'"s1"', False)])
def test_the_snapshot_job_replaces_a_hostile_latest_instead_of_crashing_after_the_upload(
        tmp_path, monkeypatch, raw, force):
    cfg = node_config(tmp_path, MYSQLPILOT_NODE="n1", HOSTNAME="n1")
    StateFile(cfg.state_dir).update(session="sid1")
    dcs = consul_dcs(raw)
    published = []
    monkeypatch.setattr(dcs, "publish_snapshot", lambda sid, m, index, lock=None, **kw: published.append((m, index)) or True)
    monkeypatch.setattr(snapshot_job, "open_store", lambda cfg: Store())
    mine = dataclasses.replace(GOOD, id="s2", created=2000.0)
    monkeypatch.setattr(snapshot_job, "take_snapshot", lambda *a, **kw: mine)
    assert snapshot_job.run_snapshot_job(cfg, force=force, dcs=dcs) == mine
    assert published == [(dataclasses.asdict(mine), 9)]        # CAS on the hostile value's index


def primary(tmp_path, monkeypatch, latest):
    """n1 the writable primary, `latest` in snapshots/latest; background snapshots recorded, each failing
    at once (exit 1), as the hostile value made every one of them do."""
    dcs = FakeDCS()
    servers = {"n1": FakeMySQL("n1", executed="0-1-10", read_only=False)}
    n1 = make_node(tmp_path, "n1", dcs, servers, monkeypatch)
    sid = give_session(n1, dcs)
    dcs.acquire_leader(sid, LeaderInfo("n1", "h-n1", 3306, promoted=True, promoted_gtid="0-1-10"))
    if latest is not None:
        dcs.raw["snapshots/latest"] = latest
    spawned = []

    class Proc:
        returncode = 1

        def __init__(self, argv, **kw):
            spawned.append(argv)

        def poll(self):
            return self.returncode
    monkeypatch.setattr("mysqlpilot.actions.subprocess.Popen", Proc)
    return dcs, n1, spawned


@pytest.mark.parametrize("raw", [b"[1]", b'{"id": "s1"}'])
def test_an_unreadable_latest_starts_one_snapshot_not_one_per_pass(tmp_path, monkeypatch, raw):
    dcs, n1, spawned = primary(tmp_path, monkeypatch, raw)
    for _ in range(5):
        assert n1.run_once().action == analysis.STAY_PRIMARY
    assert len(spawned) == 1 and spawned[0][-3:] == ["snapshot", "--force", "--no-wait"]
    # Still unreadable once the retry pause is over: one more, not a storm.
    monkeypatch.setattr("mysqlpilot.actions.SNAPSHOT_RETRY", 0.0)
    for _ in range(2):
        n1.run_once()
    assert len(spawned) == 2


def test_a_readable_latest_starts_no_snapshot(tmp_path, monkeypatch):
    dcs, n1, spawned = primary(tmp_path, monkeypatch, GOOD.to_json().encode())
    for _ in range(3):
        n1.run_once()
    assert spawned == []


# MySQL campaign seed 97: a node seeded by CLONE has no binlogs from before its clone. Promoted before the
# next periodic snapshot (1 h), no snapshot in the store could seed a replica of it: every rebuilt replica
# restored the newest one, got 1236 and waited for an operator's `snapshot --force`.
MYSQL_LATEST = dataclasses.replace(GOOD, flavor="mysql", version="9.7", gtid="3e11fa47-71ca-11e1-9e33-c80aa9429562:1-8", created=2000.0)


@pytest.mark.parametrize("purged, taken", [("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100", True),     # the binlogs start after the snapshot
                                           ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", False),      # the snapshot is still usable
                                           ("", False)])
def test_a_snapshot_is_due_at_once_when_the_newest_cannot_seed_a_replica_of_this_primary(
        tmp_path, monkeypatch, purged, taken):
    cfg = node_config(tmp_path, MYSQLPILOT_NODE="n1", HOSTNAME="n1", MYSQLPILOT_FLAVOR="mysql",
                      MYSQLPILOT_FLAVOR_VERSION="9.7")
    StateFile(cfg.state_dir).update(session="sid1")
    dcs = consul_dcs(MYSQL_LATEST.to_json().encode())
    monkeypatch.setattr(dcs, "publish_snapshot", lambda sid, m, index, lock=None, **kw: True)
    monkeypatch.setattr(snapshot_job, "open_store", lambda cfg: Store())
    monkeypatch.setattr(snapshot_job, "purged_gtids", lambda cfg, flavor: purged)
    monkeypatch.setattr(snapshot_job.time, "time", lambda: 2060.0)       # a minute after the newest
    mine = dataclasses.replace(MYSQL_LATEST, id="s2", created=2060.0)
    monkeypatch.setattr(snapshot_job, "take_snapshot", lambda *a, **kw: mine)
    assert snapshot_job.run_snapshot_job(cfg, dcs=dcs) == (mine if taken else None)


def test_the_snapshot_due_rule_by_binlogs_is_pure():
    assert snapshot_job.unusable_for_replicas(MYSQL_LATEST, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100", "mysql")
    assert not snapshot_job.unusable_for_replicas(MYSQL_LATEST, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-8", "mysql")
    assert not snapshot_job.unusable_for_replicas(MYSQL_LATEST, "", "mysql")
    assert not snapshot_job.unusable_for_replicas(None, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-8", "mysql")
    # Unparseable text is no reason for a full snapshot every minute.
    assert not snapshot_job.unusable_for_replicas(MYSQL_LATEST, "garbage", "mysql")


# CI, stop 30 (MySQL): the first snapshot was published but its job still held the node's job lock (prune,
# unlock), and an operator's `snapshot --force` right then exited 0 having taken nothing.
@pytest.mark.parametrize("wait", [True, False])
def test_a_forced_snapshot_waits_for_the_running_job_then_takes_its_own(tmp_path, monkeypatch, caplog, wait):
    import threading
    from mysqlpilot.statefile import snapshot_job_lock
    caplog.set_level("INFO")
    cfg = node_config(tmp_path, MYSQLPILOT_NODE="n1", HOSTNAME="n1")
    StateFile(cfg.state_dir).update(session="sid1")
    dcs = consul_dcs(GOOD.to_json().encode())
    monkeypatch.setattr(dcs, "publish_snapshot", lambda sid, m, index, lock=None, **kw: True)
    monkeypatch.setattr(snapshot_job, "open_store", lambda cfg: Store())
    mine = dataclasses.replace(GOOD, id="s2", created=2000.0)
    monkeypatch.setattr(snapshot_job, "take_snapshot", lambda *a, **kw: mine)
    held, done = threading.Event(), threading.Event()

    def running_job():
        with snapshot_job_lock(cfg.state_dir) as got:
            assert got
            held.set()
            done.wait(10)
    t = threading.Thread(target=running_job)
    t.start()
    held.wait(5)
    threading.Timer(0.5, done.set).start()
    try:
        got = snapshot_job.run_snapshot_job(cfg, force=True, dcs=dcs, wait=wait)
    finally:
        done.set()
        t.join()
    assert got == (mine if wait else None)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert ("waiting for the snapshot job already running" in said) == wait, said


UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"


@pytest.mark.parametrize("first, taken", [(9, False),       # the archive holds 9..100: replicas replay it
                                          (20, True)])      # 9..19 are nowhere: a new snapshot is needed
def test_with_the_archive_on_a_purge_it_bridges_makes_no_snapshot_urgent(tmp_path, monkeypatch, first, taken):
    from mysqlpilot import binlog_catalog
    from tests.unit.test_pitr_plan import afile, arun
    cfg = node_config(tmp_path, MYSQLPILOT_NODE="n1", HOSTNAME="n1", MYSQLPILOT_FLAVOR="mysql",
                      MYSQLPILOT_FLAVOR_VERSION="9.7", MYSQLPILOT_ARCHIVE="1", MYSQLPILOT_API_PORT="9999")
    StateFile(cfg.state_dir).update(session="sid1")
    dcs = consul_dcs(MYSQL_LATEST.to_json().encode())
    monkeypatch.setattr(dcs, "publish_snapshot", lambda sid, m, index, lock=None, **kw: True)
    monkeypatch.setattr(snapshot_job, "open_store", lambda cfg: Store())
    monkeypatch.setattr(snapshot_job, "purged_gtids", lambda cfg, flavor: f"{UUID}:1-100")
    monkeypatch.setattr(snapshot_job.time, "time", lambda: 2060.0)
    txns = [(f"{UUID}:{n}", 2000 + n) for n in range(first, 121)]
    runs = [arun("r1", 1, [afile("r1", "bin.000002", f"{UUID}:1-{first - 1}", txns)])]
    monkeypatch.setattr(binlog_catalog, "read_runs", lambda store, cluster: runs)
    mine = dataclasses.replace(MYSQL_LATEST, id="s2", created=2060.0)
    monkeypatch.setattr(snapshot_job, "take_snapshot", lambda *a, **kw: mine)
    assert snapshot_job.run_snapshot_job(cfg, dcs=dcs) == (mine if taken else None)

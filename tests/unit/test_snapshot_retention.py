"""Snapshot retention (issue 22): the plan is pure and keeps a run of the newest snapshots; the prune
removes exactly what the plan says, from this cluster's directory only."""
import os
import random

import pytest

from mysqlpilot import config
from mysqlpilot.errors import ConfigError
from mysqlpilot.model import SnapshotManifest
from mysqlpilot.snapshot_catalog import list_snapshots, snapshot_dir
from mysqlpilot.snapshot_retention import Retention, plan, prune
from mysqlpilot.store.local import LocalStore

NOW = 1_000_000.0


def manifest(sid, created, cluster="c"):
    return SnapshotManifest(sid, created, "n1", f"{snapshot_dir(cluster, sid)}/data.xbstream.zst", 3, 3,
                            "0" * 64, "mariadb", "10.11", "0-1-5", cluster=cluster)


def put(store, m, base=None):
    base = base or os.path.dirname(m.object_key)
    store.put_bytes(f"{base}/data.xbstream.zst", b"abc")
    store.put_bytes(f"{base}/manifest.json", m.to_json().encode())


def test_the_plan_keeps_a_run_of_the_newest_and_never_latest_or_anything_newer():
    rnd = random.Random(22)
    for _ in range(3000):
        n = rnd.randint(0, 9)
        snaps = [manifest(f"s{i}", NOW - rnd.randint(0, 100) * 60 - i * 0.001,
                          cluster=rnd.choice(["c", "c", "c", ""])) for i in range(n)]
        rule = Retention(rnd.choice([0, 2, 3, 5]), rnd.choice([0, 600, 3600]))
        latest = rnd.choice([None, "gone"] + [m.id for m in snaps])
        got = plan(snaps, "c", latest, rule, NOW)
        order = sorted(snaps, key=lambda m: m.created, reverse=True)
        assert [v.manifest for v in got] == order
        kept = [v.keep for v in got]
        first_gone = kept.index(False) if False in kept else len(kept)
        if latest in [m.id for m in order]:
            assert all(kept[:[m.id for m in order].index(latest) + 1])
        assert all(kept[:rule.keep]) if rule.keep else all(kept)
        for v in got:
            if not v.keep:
                assert v.manifest.cluster == "c" and v.manifest.id != latest
                assert NOW - v.manifest.created >= rule.keep_seconds or not rule.keep_seconds
        # Only hand-moved manifests (naming no cluster) may stay after the first one that goes.
        assert all(v.manifest.cluster == "" for v in got[first_gone:] if v.keep)


@pytest.mark.parametrize("keep, seconds, latest, gone", [
    (2, 0, "s0", ["s2", "s3", "s4"]),
    (2, 0, "s3", ["s4"]),                        # latest pointed back at s3 by hand: s0..s3 stay
    (2, 150, "s0", ["s3", "s4"]),                # s2 is 120 s old
    (0, 0, "s0", []),
    (5, 0, None, []),
])
def test_the_plan_by_count_age_and_latest(keep, seconds, latest, gone):
    snaps = [manifest(f"s{i}", NOW - 60 * i) for i in range(5)]
    got = plan(snaps, "c", latest, Retention(keep, seconds), NOW)
    assert [v.manifest.id for v in got if not v.keep] == gone
    assert all(v.why for v in got)


def test_prune_removes_only_what_the_plan_says_from_this_clusters_directory(tmp_path):
    st = LocalStore(str(tmp_path / "store"))
    for i in range(5):
        put(st, manifest(f"s{i}", NOW - 60 * i))
    put(st, manifest("x9", NOW - 9999, cluster="other"))                   # another cluster's
    put(st, manifest("old", NOW - 9999, cluster=""), base="snapshots/old")  # the old layout
    put(st, manifest("moved", NOW - 9999, cluster=""), base=snapshot_dir("c", "moved"))   # moved by hand
    st.put_bytes(f"{snapshot_dir('c', 'partial')}/data.xbstream.zst", b"abc")   # an upload with no manifest yet
    before = sorted(st.list(""))
    said = []
    verdicts, removed = prune(st, "c", "s0", Retention(3, 0), NOW, dry_run=True, echo=said.append)
    assert removed == [] and sorted(st.list("")) == before
    assert said == ["would remove snapshot s3 (beyond the newest 3)", "would remove snapshot s4 (beyond the newest 3)"]
    verdicts, removed = prune(st, "c", "s0", Retention(3, 0), NOW, echo=said.append)
    assert removed == ["s3", "s4"]
    assert [m.id for m in list_snapshots(st, "c")] == ["s0", "s1", "s2", "moved"]
    assert set(before) - set(st.list("")) == {f"{snapshot_dir('c', s)}/{f}" for s in ("s3", "s4")
                                               for f in ("data.xbstream.zst", "manifest.json")}
    assert not os.path.exists(tmp_path / "store" / snapshot_dir("c", "s3"))     # no empty directory left
    assert prune(st, "c", "s0", Retention(3, 0), NOW)[1] == []                  # nothing more to do


def test_a_snapshot_that_cannot_be_removed_is_said_and_the_others_still_go(tmp_path):
    st = LocalStore(str(tmp_path / "store"))
    for i in range(4):
        put(st, manifest(f"s{i}", NOW - 60 * i))
    real = st.delete

    def delete(key):
        if "/s2/" in key:
            from mysqlpilot.errors import PilotError
            raise PilotError("snapshot store: Permission denied removing x")
        real(key)
    st.delete = delete
    said = []
    _, removed = prune(st, "c", "s0", Retention(2, 0), NOW, echo=said.append)
    assert removed == ["s3"] and any(line.startswith("snapshot s2 not removed: ") for line in said)


def test_deleting_a_missing_object_is_not_an_error(tmp_path):
    st = LocalStore(str(tmp_path / "store"))
    st.delete("clusters/c/snapshots/nope/manifest.json")


@pytest.mark.parametrize("keep, ok", [("0", True), ("1", False), ("2", True), ("24", True)])
def test_snapshot_keep_of_one_is_refused_in_one_line_naming_the_key(keep, ok):
    env = {"MYSQL_ROOT_PASSWORD": "pw", "MYSQL_REPL_PASSWORD": "pw2", "MYSQLPILOT_NODE": "n1",
           "MYSQLPILOT_SNAPSHOT_KEEP": keep}
    if ok:
        assert config.load(None, env=env).snapshot_keep == int(keep)
    else:
        with pytest.raises(ConfigError, match="config key snapshot_keep is 1") as exc:
            config.load(None, env=env)
        assert "\n" not in str(exc.value)


def test_the_snapshot_job_prunes_after_it_publishes(tmp_path, monkeypatch):
    import dataclasses

    from mysqlpilot import snapshot_job
    from mysqlpilot.statefile import StateFile
    from tests.unit.test_snapshot_latest import GOOD, consul_dcs, node_config
    cfg = node_config(tmp_path, MYSQLPILOT_NODE="n1", HOSTNAME="n1", MYSQLPILOT_SNAPSHOT_KEEP="2")
    StateFile(cfg.state_dir).update(session="sid1")
    st = LocalStore(cfg.store_path)
    for i in range(1, 4):
        put(st, manifest(f"s{i}", NOW - 60 * i))
    mine = dataclasses.replace(manifest("s0", NOW), gtid=GOOD.gtid)
    dcs = consul_dcs(GOOD.to_json().encode())
    monkeypatch.setattr(dcs, "publish_snapshot", lambda sid, m, index, lock=None, **kw: True)
    monkeypatch.setattr(snapshot_job, "take_snapshot", lambda *a, **kw: put(st, mine) or mine)
    assert snapshot_job.run_snapshot_job(cfg, force=True, dcs=dcs) == mine
    assert [m.id for m in list_snapshots(st, "c")] == ["s0", "s1"]
    # Not published (another node leads now): nothing is pruned.
    put(st, manifest("s5", NOW - 600))
    monkeypatch.setattr(dcs, "publish_snapshot", lambda sid, m, index, lock=None, **kw: False)
    snapshot_job.run_snapshot_job(cfg, force=True, dcs=dcs)
    assert [m.id for m in list_snapshots(st, "c")] == ["s0", "s1", "s5"]

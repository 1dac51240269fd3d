"""Issue 18 item 8: every cluster's snapshots under its own name in a shared store; the old layout is
read only where named, never picked blindly. The integration test beside it is
tests/integration/test_consul_data_loss.py::test_a_new_cluster_in_a_shared_store_bootstraps_instead_of_restoring_another_clusters_data."""
import hashlib
import logging
import os
import shutil

import pytest

from mysqlpilot import config as config_mod
from mysqlpilot.datadir import Preparer
from mysqlpilot.errors import PilotError, SnapshotError
from mysqlpilot.model import SnapshotManifest
from mysqlpilot.snapshot_catalog import (find_snapshot, latest_snapshot, list_legacy, list_snapshots, locate,
                                         snapshot_dir)
from mysqlpilot.store.local import LocalStore


def put(store, base, sid, created, cluster=""):
    data = f"data of {sid}".encode()
    key = f"{base}/data.xbstream.zst"
    store.put_bytes(key, data)
    m = SnapshotManifest(sid, created, "db1", key, len(data), len(data), hashlib.sha256(data).hexdigest(),
                         "mariadb", "10.11", "0-1-5", cluster=cluster)
    store.put_bytes(f"{base}/manifest.json", m.to_json().encode())
    return m


@pytest.fixture
def store(tmp_path):
    return LocalStore(str(tmp_path / "store"))


def test_two_clusters_in_one_store_see_only_their_own_snapshots(store):
    a = put(store, snapshot_dir("a", "s-a"), "s-a", 10.0, cluster="a")
    b = put(store, snapshot_dir("b", "s-b"), "s-b", 20.0, cluster="b")
    assert [m.id for m in list_snapshots(store, "a")] == [a.id]
    assert latest_snapshot(store, "a").id == a.id and latest_snapshot(store, "b").id == b.id
    assert latest_snapshot(store, "c") is None
    with pytest.raises(SnapshotError, match="of cluster 'a'"):
        find_snapshot(store, "a", "s-b")


def test_a_manifest_naming_another_cluster_is_skipped_and_refused(store, caplog):
    put(store, snapshot_dir("a", "stray"), "stray", 30.0, cluster="b")      # copied there by hand
    caplog.set_level(logging.WARNING)
    assert list_snapshots(store, "a") == []
    assert "names cluster 'b'" in caplog.text
    with pytest.raises(SnapshotError, match="belongs to cluster 'b'"):
        find_snapshot(store, "a", "stray")
    other = put(store, snapshot_dir("b", "x"), "x", 1.0, cluster="b")
    with pytest.raises(SnapshotError, match="snapshot use ID"):
        locate(store, "a", other)


def test_old_layout_is_found_by_id_but_never_the_latest_and_is_explained_once(store, caplog):
    old = put(store, "snapshots/s-old", "s-old", 5.0)
    caplog.set_level(logging.WARNING)
    assert latest_snapshot(store, "a") is None
    assert find_snapshot(store, "a", "s-old").object_key == old.object_key
    assert [m.id for m in list_legacy(store, "a")] == ["s-old"]
    list_legacy(store, "a")
    assert caplog.text.count("which names no cluster") == 1 and "clusters/a/snapshots/" in caplog.text


def test_a_snapshot_moved_under_the_cluster_name_restores_from_its_new_place(store):
    published = put(store, "snapshots/s-old", "s-old", 5.0)             # what Consul's latest still says
    moved = put(store, snapshot_dir("a", "s-old"), "s-old", 5.0)
    shutil.rmtree(os.path.join(store.root, "snapshots"))
    assert moved.object_key == "clusters/a/snapshots/s-old/data.xbstream.zst"
    got = locate(store, "a", published)
    assert got.object_key == moved.object_key and store.exists(got.object_key)
    # A manifest's own object_key does not matter: the data is read beside the manifest.
    assert find_snapshot(store, "a", "s-old").object_key == moved.object_key


def cfg_for(tmp_path, cluster, **env):
    e = {"MYSQLPILOT_CLUSTER": cluster, "MYSQLPILOT_STORE_PATH": str(tmp_path / "store"),
         "MYSQLPILOT_STATE_DIR": str(tmp_path / "state"), "MYSQLPILOT_DATADIR": str(tmp_path / "data"),
         "MYSQLPILOT_NODE_NAME": "n1", "MYSQLPILOT_ADVERTISE_HOST": "127.0.0.1",
         "MYSQL_ROOT_PASSWORD": "r", "MYSQL_REPL_PASSWORD": "p"}
    e.update(env)
    return config_mod.load(None, env=e)


def test_a_new_cluster_neither_restores_nor_bootstraps_over_old_layout_snapshots(store, tmp_path):
    put(store, "snapshots/s-old", "s-old", 5.0)
    prep = Preparer(cfg_for(tmp_path, "a"), dcs=object())
    with pytest.raises(PilotError) as ei:
        prep.newest_stored_snapshot()
    msg = str(ei.value)
    assert "\n" not in msg and "snapshot use s-old" in msg and "force_fresh_bootstrap" in msg, msg
    forced = Preparer(cfg_for(tmp_path, "a", MYSQLPILOT_FORCE_FRESH_BOOTSTRAP="1"), dcs=object())
    assert forced.newest_stored_snapshot() is None


def test_a_new_cluster_recovers_only_its_own_newest_snapshot(store, tmp_path):
    put(store, snapshot_dir("b", "s-b"), "s-b", 50.0, cluster="b")
    mine = put(store, snapshot_dir("a", "s-a"), "s-a", 10.0, cluster="a")
    put(store, "snapshots/s-old", "s-old", 60.0)
    assert Preparer(cfg_for(tmp_path, "a"), dcs=object()).newest_stored_snapshot().id == mine.id
    with pytest.raises(PilotError, match="old layout"):        # "c" has none of its own: the old ones decide
        Preparer(cfg_for(tmp_path, "c"), dcs=object()).newest_stored_snapshot()
    store.put_bytes("snapshots/s-old/manifest.json", b"{not json")     # unreadable: no longer counts
    assert Preparer(cfg_for(tmp_path, "c"), dcs=object()).newest_stored_snapshot() is None

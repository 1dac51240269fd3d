"""Snapshot stores: part sizing, the local store's atomic publish, the S3 multipart lifecycle (moto)."""
import functools
import os

import boto3
import pytest

from mysqlpilot.errors import PilotError
from mysqlpilot.store.base import MAX_PARTS, MIB, MIN_PART, part_size_for
from mysqlpilot.store.local import LocalStore


@pytest.mark.parametrize("size", [0, 1, 10 * MIB, 50 * 1024 * MIB, 2 * 1024 ** 4, 5 * 1024 ** 4])
def test_part_size_keeps_under_the_part_limit_with_headroom(size):
    ps = part_size_for(size)
    assert ps >= MIN_PART and ps % MIB == 0
    assert (size * 1.5) / ps <= 9000 < MAX_PARTS


def test_local_upload_is_invisible_until_complete_and_abort_leaves_nothing(tmp_path):
    st = LocalStore(str(tmp_path / "s"))
    st.check()
    up = st.begin_upload("snapshots/a/data", 0)
    up.write(b"x" * 10)
    assert not st.exists("snapshots/a/data") and st.list("snapshots/") == []
    up.abort()
    assert os.listdir(tmp_path / "s" / "snapshots" / "a") == []
    up = st.begin_upload("snapshots/a/data", 0)
    up.write(b"abc")
    assert up.complete() == 3 and st.get_bytes("snapshots/a/data") == b"abc"
    assert st.list("snapshots/") == ["snapshots/a/data"]
    with pytest.raises(PilotError):
        st.open_read("../etc/passwd")


def test_a_directory_store_gone_mid_upload_is_a_one_line_error_naming_the_object(tmp_path, caplog):
    # Seen in the chaos campaign (store-down-snapshot, during): the store unmounted under an upload gave a
    # raw FileNotFoundError traceback.
    st = LocalStore(str(tmp_path / "s"))
    st.check()
    up = st.begin_upload("snapshots/a/data", 0)
    up.write(b"x" * 10)
    os.rename(tmp_path / "s", tmp_path / "gone")       # what an unmount looks like from here
    with pytest.raises(PilotError) as err:
        up.complete()
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "s" / "snapshots" / "a" / "data") in msg and "store_path" in msg
    up.abort()
    assert "partial upload" in caplog.text and ".partial-" in caplog.text
    os.rename(tmp_path / "gone", tmp_path / "s")        # the store back: the partial is never listed
    assert st.list("snapshots/") == []
    (tmp_path / "file").write_bytes(b"")               # a store path that cannot be a directory
    with pytest.raises(PilotError, match="store_path"):
        LocalStore(str(tmp_path / "file" / "x")).begin_upload("snapshots/k", 0)


def test_s3_multipart_completes_only_on_complete_and_aborts_cleanly():
    moto = pytest.importorskip("moto")
    from mysqlpilot.store.s3 import S3Store
    with moto.mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bucket-k")
        st = S3Store("bucket-k", "p", None, "us-east-1", "k", "s")
        st.check()
        up = st.begin_upload("x/data", MIN_PART)
        up.write(b"a" * (MIN_PART + 1))           # one part sent
        assert st.pending_uploads() == ["p/x/data"] and not st.exists("x/data")
        up.abort()
        assert st.pending_uploads() == [] and st.list("") == []
        up = st.begin_upload("x/data", MIN_PART)
        up.write(b"b" * (MIN_PART + 5))
        up.write(b"c" * 7)
        assert up.complete() == MIN_PART + 12
        assert st.size("x/data") == MIN_PART + 12 and st.pending_uploads() == []
        small = st.begin_upload("x/small", MIN_PART)
        small.write(b"tiny")
        small.complete()
        assert st.get_bytes("x/small") == b"tiny"
        with pytest.raises(PilotError, match="does not exist"):
            S3Store("nope-bucket", "", None, "us-east-1", "k", "s").check()


def test_s3_parts_in_flight_keep_the_stream_order_and_a_failed_part_leaves_nothing():
    moto = pytest.importorskip("moto")
    import botocore.exceptions
    from mysqlpilot.store.s3 import S3Store
    with moto.mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bucket-p")
        st = S3Store("bucket-p", "p", None, "us-east-1", "k", "s", upload_concurrency=4)
        blocks = [bytes([65 + i]) * MIN_PART for i in range(7)]
        up = st.begin_upload("x/many", MIN_PART)
        for b in blocks:
            up.write(b)
        assert up.complete() == 7 * MIN_PART
        assert st.get_bytes("x/many") == b"".join(blocks) and st.pending_uploads() == []
        up = st.begin_upload("x/broken", MIN_PART)
        real = up._put_part

        def flaky(num, data):
            if num == 3:
                raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3")
            return real(num, data)
        up._put_part = flaky
        with pytest.raises(PilotError, match="cannot reach the S3 endpoint"):
            for b in blocks:
                up.write(b)
            up.complete()
        assert not st.exists("x/broken") and st.pending_uploads() == []


def test_restore_refuses_a_mount_point_datadir_before_downloading(tmp_path):
    from mysqlpilot.snapshot import _check_same_filesystem
    with pytest.raises(PilotError, match="is a mount point"):
        _check_same_filesystem(str(tmp_path), "/proc")
    _check_same_filesystem(str(tmp_path), str(tmp_path / "not" / "yet" / "data"))   # same fs: fine
    if os.stat("/dev/shm").st_dev != os.stat(str(tmp_path)).st_dev:
        with pytest.raises(PilotError, match="different filesystems"):
            _check_same_filesystem(str(tmp_path), "/dev/shm/mp-data")


def test_find_and_verify_a_snapshot_in_the_local_store(tmp_path):
    import hashlib
    from mysqlpilot.errors import SnapshotError
    from mysqlpilot.model import SnapshotManifest
    from mysqlpilot.snapshot import verify_snapshot
    from mysqlpilot.snapshot_catalog import find_snapshot as find
    find_snapshot = functools.partial(find, cluster="c")
    st = LocalStore(str(tmp_path / "s"))
    data = os.urandom(3 * MIB + 7)
    st.put_bytes("snapshots/s1/data.xbstream.zst", data)
    m = SnapshotManifest("s1", 1.0, "db1", "snapshots/s1/data.xbstream.zst", len(data), len(data),
                         hashlib.sha256(data).hexdigest(), "mariadb", "10.11", "0-1-5")
    st.put_bytes("snapshots/s1/manifest.json", m.to_json().encode())
    got = find_snapshot(st, snapshot_id="s1")
    assert got == m and "MB" in verify_snapshot(st, got)
    for bad in ("s2", "../s1", "s1/x"):
        with pytest.raises(SnapshotError, match="snapshot list"):
            find_snapshot(st, snapshot_id=bad)
    st.put_bytes("snapshots/s1/data.xbstream.zst", data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(SnapshotError, match="failed its checksum"):
        verify_snapshot(st, got)
    st.put_bytes("snapshots/s1/data.xbstream.zst", data[:-1])
    with pytest.raises(SnapshotError, match="failed its checksum"):
        verify_snapshot(st, got)
    st.put_bytes("snapshots/s3/manifest.json", b"{not json")
    with pytest.raises(SnapshotError, match="unreadable"):
        find_snapshot(st, snapshot_id="s3")


def test_snapshot_ids_within_one_second_differ_and_sort_by_time():
    from mysqlpilot.snapshot import new_snapshot_id
    a, b = new_snapshot_id("db1", 1795594053.101), new_snapshot_id("db1", 1795594053.734)
    assert a != b and a < b and a.endswith("Z-db1") and "/" not in a

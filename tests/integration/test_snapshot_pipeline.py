"""Snapshot and restore against real servers, to SeaweedFS (S3) and a directory: MariaDB 10.11 with
mariadb-backup (xbstream), MySQL 9.7 with CLONE LOCAL (tar)."""
import os

import pytest

from mysqlpilot import mysqld, snapshot
from mysqlpilot.errors import PilotError, SnapshotError
from mysqlpilot.snapshot import restore_snapshot, take_snapshot
from mysqlpilot.snapshot_catalog import list_snapshots
from mysqlpilot.store.local import LocalStore
from mysqlpilot.store.s3 import S3Store

pytestmark = pytest.mark.integration


@pytest.fixture
def source(server_factory):
    inst = server_factory("snapsrc")
    adm = inst.admin()
    adm.set_read_only(False)
    adm.execute(["CREATE DATABASE IF NOT EXISTS s", "CREATE TABLE s.t (id INT PRIMARY KEY, v TEXT)",
                 "INSERT INTO s.t VALUES " + ",".join(f"({i}, REPEAT('x', 500))" for i in range(1, 2001))])
    adm.close()
    return inst


def s3store(s3_server, bucket, secret=None):
    return S3Store(bucket, "pfx", s3_server.endpoint, "us-east-1", s3_server.access_key,
                   secret or s3_server.secret_key)


def restore_and_count(inst, store, manifest, tmp_path):
    """Restore into a fresh datadir of a new instance config and count the rows there."""
    cfg = inst.cfg.with_overrides(datadir=str(tmp_path / "restored"), state_dir=str(tmp_path / "rstate"),
                                  socket=str(tmp_path / "rstate" / "m.sock"), port=inst.cfg.port + 1,
                                  mycnf=str(tmp_path / "rstate" / "my.cnf"))
    os.makedirs(cfg.state_dir, exist_ok=True)
    gtid = restore_snapshot(cfg, inst.flavor, store, manifest, datadir=cfg.datadir, mysqld_user="root")
    assert gtid and gtid == manifest.gtid
    mysqld.write_mycnf(cfg, inst.flavor)
    proc = mysqld.start_mysqld(cfg, inst.flavor)
    try:
        mysqld.wait_ready(cfg, 60, proc=proc)
        from mysqlpilot.sqlclient import Server
        srv = Server(inst.flavor, socket=cfg.socket, user="root", password=cfg.root_password)
        n = srv.scalar("SELECT COUNT(*) FROM s.t")
        srv.close()
        return int(n)
    finally:
        mysqld.stop_mysqld(cfg)


def test_snapshot_to_s3_and_restore(source, s3_server, s3_bucket, tmp_path):
    store = s3store(s3_server, s3_bucket)
    m = take_snapshot(source.cfg, source.flavor, store, password=source.cfg.root_password)
    assert m.bytes == store.size(m.object_key) and m.raw_bytes > m.bytes > 0
    assert m.gtid and m.flavor == source.flavor.name and len(m.sha256) == 64
    clone = snapshot.snapshot_method(source.cfg, source.flavor) == "clone"
    assert (m.tool, m.format) == (("clone", "tar") if clone else (source.flavor.backup_tool, "xbstream"))
    # The position is the source's own: everything it executed when the copy was taken.
    assert source.flavor.gtid_contains(m.gtid, source.admin().gtid_executed())
    assert [x.id for x in list_snapshots(store, source.cfg.cluster)] == [m.id]
    assert store.pending_uploads() == []
    assert restore_and_count(source, store, m, tmp_path) == 2000


def test_snapshot_to_local_dir_and_restore(source, tmp_path):
    store = LocalStore(str(tmp_path / "store"))
    m = take_snapshot(source.cfg, source.flavor, store, password=source.cfg.root_password)
    assert os.path.exists(tmp_path / "store" / m.object_key)
    assert restore_and_count(source, store, m, tmp_path) == 2000


def test_backup_killed_midstream_leaves_no_object(source, s3_server, s3_bucket, monkeypatch):
    store = s3store(s3_server, s3_bucket)
    clone = snapshot.snapshot_method(source.cfg, source.flavor) == "clone"
    owner, name = (snapshot, "clone_stream_cmd") if clone else (source.flavor, "backup_cmd")
    real = getattr(owner, name)

    def dying(*a, **kw):
        # The real producer (backup tool, or tar of the clone), cut off after some output, its exit
        # status lost: a producer that dies halfway.
        argv = real(*a, **kw)
        return ["sh", "-c", '"$@" | head -c 300000; exit 0', "sh"] + argv
    monkeypatch.setattr(owner, name, dying)
    with pytest.raises(SnapshotError) as ei:
        take_snapshot(source.cfg, source.flavor, store, password=source.cfg.root_password)
    assert "\n" not in str(ei.value)
    assert store.list("") == [] and store.pending_uploads() == []
    # Nothing staged is left behind (a clone's copy is as big as the datadir).
    assert not [d for d in os.listdir(source.cfg.state_dir) if d.startswith("backup-tmp-")]


def test_flipped_byte_is_rejected_and_nothing_half_restored(source, s3_server, s3_bucket, tmp_path):
    store = s3store(s3_server, s3_bucket)
    m = take_snapshot(source.cfg, source.flavor, store, password=source.cfg.root_password)
    data = bytearray(store.get_bytes(m.object_key))
    data[len(data) // 2] ^= 0x01
    store.put_bytes(m.object_key, bytes(data))
    cfg = source.cfg.with_overrides(state_dir=str(tmp_path / "st"))
    target = tmp_path / "dd"
    target.mkdir()
    (target / "keep.txt").write_text("existing data")
    with pytest.raises(SnapshotError) as ei:
        restore_snapshot(cfg, source.flavor, store, m, datadir=str(target), mysqld_user="root")
    assert "checksum" in str(ei.value) and m.id in str(ei.value)
    assert sorted(os.listdir(target)) == ["keep.txt"]
    assert not [d for d in os.listdir(tmp_path / "st") if d.startswith("restore-")]
    assert not list(tmp_path.glob("dd.aside-*"))


def test_store_errors_are_one_line(s3_server, s3_bucket):
    with pytest.raises(PilotError) as ei:
        s3store(s3_server, s3_bucket, secret="wrong-secret-123").check()
    assert "refused access" in str(ei.value) and "wrong-secret-123" not in str(ei.value)
    with pytest.raises(PilotError) as ei:
        s3store(s3_server, "mp-no-such-bucket").check()
    assert "does not exist" in str(ei.value) and "mp-no-such-bucket" in str(ei.value)


@pytest.mark.parametrize("restored", [False, True], ids=["fresh", "restored"])
def test_a_snapshot_records_exactly_the_gtid_set_of_its_data(server_factory, tmp_path, restored):
    """MySQL campaign seed 97: a restored replica re-applied a transaction its data already held (1062,
    duplicate key) because the snapshot recorded a GTID set without the newest commits. The set must be
    the server's own at the copy: here nothing writes during the snapshot, so exactly gtid_executed.
    `restored`: the server was seeded as a restore seeds it (binlogs reset, gtid_purged set) first."""
    inst = server_factory("gtidsrc")
    adm = inst.admin()
    if restored:
        adm.execute(inst.flavor.seed_gtid("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100"
                                          if inst.flavor.dialect == "mysql" else "0-9-100"))
    adm.set_read_only(False)
    adm.execute(["CREATE DATABASE g", "CREATE TABLE g.t (id INT PRIMARY KEY)"])
    for i in range(1, 41):                      # single commits, no binlog rotation in between
        adm.execute(f"INSERT INTO g.t VALUES ({i})")
    want = "".join(adm.gtid_executed().split())
    adm.close()
    m = take_snapshot(inst.cfg, inst.flavor, LocalStore(str(tmp_path / "store")), password=inst.cfg.root_password)
    assert m.gtid == want

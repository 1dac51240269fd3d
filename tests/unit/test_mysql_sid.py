"""The MySQL 9.7 harness pieces that need no server: what scripts/mysqld-sid binds into the sid root, and
how a CLONE snapshot's tar stream is judged complete."""
import io
import os
import subprocess
import tarfile

import pytest

from mysqlpilot.snapshot import TarWalk, clone_stream_cmd

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SID = os.path.join(REPO, "scripts", "mysqld-sid")


def binds(*args, env=None):
    e = dict(os.environ, MYSQLD_SID_PRINT_BINDS="1", **(env or {}))
    e.pop("MYSQLPILOT_MYSQLD_BIND", None) if not env or "MYSQLPILOT_MYSQLD_BIND" not in env else None
    p = subprocess.run(["bash", SID, *args], capture_output=True, text=True, env=e, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_binds_the_node_dirs_named_in_the_defaults_file_once_each(tmp_path):
    node = tmp_path / "node1"
    (node / "state").mkdir(parents=True)
    (node / "data").mkdir()
    sock = tmp_path / "sockets"
    sock.mkdir()
    cnf = node / "state" / "my.cnf"
    cnf.write_text(f"[mysqld]\ndatadir={node}/data\nsocket={sock}/n1.sock\npid_file={node}/state/mysqld.pid\n"
                   f"log_error={node}/state/mysqld.err\nport=3306\n\n[client]\nsocket=/elsewhere/c.sock\n")
    got = binds(f"--defaults-file={cnf}", "--user=root")
    # The datadir and state dir (pid, error log, my.cnf, clone staging) and the socket's dir; the
    # [client] section is not mysqld's.
    assert got == sorted([str(node / "data"), str(node / "state"), str(sock)])


def test_a_dir_below_another_bound_one_is_not_bound_again(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    got = binds(f"--datadir={tmp_path}/a/b", env={"MYSQLPILOT_MYSQLD_BIND": f"{tmp_path}/a"})
    assert got == [str(tmp_path / "a")]


def test_missing_or_relative_paths_are_not_bound(tmp_path):
    assert binds("--datadir=relative/dir", f"--socket={tmp_path}/gone/s.sock", "--initialize-insecure") == []


def _tar_of(tmp_path) -> bytes:
    d = tmp_path / "staged"
    (d / "mysql").mkdir(parents=True)
    # Like InnoDB files: long runs of zeros, so a cut inside one can end in zeros too.
    (d / "ibdata1").write_bytes(os.urandom(7000) + bytes(65536) + os.urandom(3000))
    (d / "mysql" / ("x" * 120 + ".ibd")).write_bytes(b"\1" * 5000)      # a long name: an extra header
    (d / "empty").write_bytes(b"")
    return subprocess.run(clone_stream_cmd(str(d)), capture_output=True, check=True).stdout


def walk(data: bytes, chunk: int = 4096) -> TarWalk:
    w = TarWalk()
    for i in range(0, len(data), chunk):
        w.feed(data[i:i + chunk])
    return w


@pytest.mark.parametrize("chunk", [1, 511, 4096, 1 << 20])
def test_a_whole_tar_stream_is_complete_however_it_is_chunked(tmp_path, chunk):
    data = _tar_of(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert "./ibdata1" in tf.getnames()
    w = walk(data, chunk)
    assert w.complete(), w.why()
    assert w.members >= 4


def test_a_cut_tar_stream_is_not_complete_even_when_it_ends_in_zeros(tmp_path):
    data = _tar_of(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        start = tf.getmember("./ibdata1").offset_data
    first = start + 7168 + 20 * 512               # inside ibdata1's zero run, on a block boundary
    assert data[first - 1024:first] == bytes(1024) and first % 512 == 0
    for cut in (first, 300000 % len(data), len(data) // 2, 512, 0):
        w = walk(data[:cut])
        assert not w.complete(), (cut, w.why())
    assert "inside member" in walk(data[:first]).why()
    assert not walk(data + b"junk" + bytes(508)).complete()


def _fake_server(tmp_path, line, rc=0):
    p = tmp_path / "mysqld"
    p.write_text(f"#!/bin/sh\necho '{line}'\nexit {rc}\n")
    p.chmod(0o755)
    return str(p)


def test_local_up_flavor_mysql_takes_the_version_the_server_reports(tmp_path, monkeypatch):
    from mysqlpilot.errors import PilotError
    from mysqlpilot.local.cluster import mysql_server_settings
    fake = _fake_server(tmp_path, "/usr/sbin/mysqld  Ver 9.7.4-2 for Linux on x86_64 ((Debian))")
    monkeypatch.setenv("MYSQLPILOT_MYSQLD", fake)
    assert mysql_server_settings() == {"flavor_version": "9.7.4", "mysqld_bin": fake}
    monkeypatch.setenv("MYSQLPILOT_MYSQLD", _fake_server(tmp_path, "mysqld  Ver 10.11.6-MariaDB for Linux"))
    with pytest.raises(PilotError, match="is MariaDB, not MySQL"):
        mysql_server_settings()
    monkeypatch.setenv("MYSQLPILOT_MYSQLD", str(tmp_path / "absent"))
    with pytest.raises(PilotError, match="install-deps.sh"):
        mysql_server_settings()

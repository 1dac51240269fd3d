"""Real mariadb-backup through the flavor's argv: stream, extract, prepare, read the position."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from mysqlpilot import mysqld

pytestmark = pytest.mark.integration


@pytest.mark.skipif(not shutil.which("mariadb-backup") or not shutil.which("mbstream"),
                    reason="mariadb-backup not installed")
def test_backup_extract_prepare_and_position(mariadb_factory, tmp_path):
    inst = mariadb_factory("bk")
    srv = inst.admin()
    srv.set_read_only(False)
    srv.execute(["CREATE DATABASE d", "CREATE TABLE d.t (i INT PRIMARY KEY)", "INSERT INTO d.t VALUES (1), (2)"])
    gtid = str(srv.scalar("SELECT @@GLOBAL.gtid_binlog_pos"))
    f = inst.flavor
    out = tmp_path / "restore"
    out.mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # The root password holds a quote and a backslash: the defaults file must carry it intact.
    with mysqld.client_defaults_file("root", inst.cfg.root_password, socket=inst.cfg.socket) as cnf:
        argv = f.backup_cmd(cnf, inst.cfg.datadir, inst.cfg.socket, target_dir=str(scratch))
        assert inst.cfg.root_password not in " ".join(argv)
        backup = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        extract = subprocess.Popen(f.extract_cmd(str(out)), stdin=backup.stdout, stderr=subprocess.PIPE)
        backup.stdout.close()
        err = backup.stderr.read().decode(errors="replace")
        assert backup.wait(timeout=300) == 0, err[-2000:]
        assert extract.wait(timeout=300) == 0, extract.stderr.read()
    assert f.backup_ok(err), err[-2000:]
    file, pos, logged = f.parse_backup_position(err)
    assert file.startswith("mysql-bin.") and pos > 0 and logged == gtid
    assert f.read_binlog_info(str(out)) == (file, pos, gtid)
    prep = subprocess.run(f.prepare_cmd(str(out)), capture_output=True, text=True, timeout=300)
    assert prep.returncode == 0 and f.backup_ok(prep.stderr), prep.stderr[-2000:]
    assert os.path.isdir(out / "d") and os.path.isdir(out / "mysql")

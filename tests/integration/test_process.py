"""Real servers (MariaDB 10.11, MySQL 9.7): the process runner (start, stop, kill, pid file, failure tails,
move aside). For MySQL, mysqld runs through scripts/mysqld-sid: its pid must still be mysqld's own."""
from __future__ import annotations

import configparser
import os
import signal

import pytest

from mysqlpilot import mysqld
from mysqlpilot.errors import PilotError
from tests.harness.mariadb_server import ROOT_PASSWORD

pytestmark = pytest.mark.integration


def test_stop_start_kill_and_pid_file(server_factory, flavor):
    inst = server_factory("p")
    cfg = inst.cfg
    pid = mysqld.mysqld_pid(cfg)
    assert pid == inst.proc.pid
    assert inst.server().version().lower().startswith("10.11" if flavor == "mariadb" else "9.7")
    # Always read-only at start; the written my.cnf says so and the server agrees.
    cp = configparser.ConfigParser(strict=True, interpolation=None)
    cp.read(cfg.mycnf)
    assert cp["mysqld"]["read_only"] == "ON" and cp["mysqld"]["port"] == str(cfg.port)
    assert inst.server().read_only() is True

    srv = inst.admin()
    srv.set_read_only(False)
    srv.execute(["CREATE DATABASE d", "CREATE TABLE d.t (i INT)", "INSERT INTO d.t VALUES (1)"])
    srv.close()
    assert mysqld.stop_mysqld(cfg) is True
    assert mysqld.mysqld_pid(cfg) is None
    assert mysqld.stop_mysqld(cfg) is False          # nothing left to stop
    inst.start()
    srv = inst.server()
    assert srv.read_only() is True                   # restarts read-only too
    assert srv.query("SELECT i FROM d.t") == [{"i": 1}]
    with pytest.raises(PilotError) as ei:             # a second mysqld on the same datadir
        mysqld.start_mysqld(cfg, inst.flavor)
    assert "already running" in str(ei.value)
    srv.close()

    inst.kill()                                       # crash: InnoDB recovers at the next start
    assert mysqld.mysqld_pid(cfg) is None
    inst.start()
    assert inst.server().query("SELECT i FROM d.t") == [{"i": 1}]
    assert inst.socket_server(ROOT_PASSWORD).ping()
    # MariaDB: OS root over the socket still works without a password after bootstrap (unix_socket).
    # MySQL: root@localhost has the password once bootstrapped; without it the socket refuses.
    assert inst.socket_server().ping() is (inst.flavor.name == "mariadb")


def test_failed_start_reports_the_error_log(server_factory):
    inst = server_factory("f")
    inst.stop()
    proc = mysqld.start_mysqld(inst.cfg, inst.flavor, extra_args=["--no-such-option-xyz=1"])
    try:
        with pytest.raises(PilotError) as ei:
            mysqld.wait_ready(inst.cfg, timeout=60, proc=proc)
        msg = str(ei.value)
        assert "no-such-option-xyz" in msg and "\n" not in msg
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def test_init_refuses_an_initialised_datadir_and_move_aside_keeps_it(server_factory):
    inst = server_factory("m")
    inst.stop()
    with pytest.raises(PilotError) as ei:
        mysqld.init_datadir(inst.cfg, inst.flavor)
    assert inst.cfg.datadir in str(ei.value)
    with open(os.path.join(inst.cfg.datadir, "mysql", "marker"), "w") as fh:
        fh.write("kept")
    before = set(os.listdir(inst.cfg.datadir))
    aside = mysqld.move_aside(inst.cfg.datadir)
    assert aside.startswith(inst.cfg.datadir + ".aside-") and not os.path.exists(inst.cfg.datadir)
    assert set(os.listdir(aside)) == before
    assert open(os.path.join(aside, "mysql", "marker")).read() == "kept"
    # A fresh datadir initialises and serves again beside the kept one.
    mysqld.init_datadir(inst.cfg, inst.flavor)
    inst.start()
    assert inst.socket_server().ping()
    second = mysqld.move_aside(os.path.join(inst.base, "does-not-exist"))
    assert second == ""


def test_move_aside_twice_in_one_second_keeps_both(tmp_path):
    for i in range(2):
        d = tmp_path / "data"
        d.mkdir()
        (d / "f").write_text(str(i))
        mysqld.move_aside(str(d))
    kept = sorted(p for p in os.listdir(tmp_path) if p.startswith("data.aside-"))
    assert len(kept) == 2
    assert sorted((tmp_path / k / "f").read_text() for k in kept) == ["0", "1"]


def test_client_defaults_file_is_private_and_removed(tmp_path):
    with mysqld.client_defaults_file("root", "p'w\"x", socket="/s.sock", dir=str(tmp_path)) as path:
        assert os.stat(path).st_mode & 0o777 == 0o600
        text = open(path).read()
        assert "[client]" in text and 'password="p\'w\\"x"' in text
    assert not os.path.exists(path)

"""my.cnf content, backup/prepare/extract argv, and parsing of what backup tools leave behind."""
from __future__ import annotations

import configparser

import pytest

from mysqlpilot.errors import SnapshotError
from mysqlpilot.flavors import defaults_file_text, get_flavor, parse_binlog_info
from tests.unit.test_flavor_sql import ALL, MARIADB, MY56, MY57, MY8022, MY8023, MY84, PERCONA56, cfg_for

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"


def mycnf(fv, **env):
    base = dict(MYSQLPILOT_STATE_DIR="/st", MYSQLPILOT_DATADIR="/data", MYSQLPILOT_PORT="3310",
                MYSQLPILOT_BIND_ADDRESS="127.0.1.9", MYSQLPILOT_SERVER_ID="42")
    base.update(env)
    cfg = cfg_for(*fv, **base)
    cp = configparser.ConfigParser(strict=True, interpolation=None)   # strict: no duplicate keys
    cp.read_string(get_flavor(*fv).mycnf(cfg))
    return cp, cfg


@pytest.mark.parametrize("fv", ALL)
def test_mycnf_common(fv):
    cp, cfg = mycnf(fv)
    m = cp["mysqld"]
    assert m["datadir"] == "/data" and m["socket"] == "/st/mysqld.sock" and m["port"] == "3310"
    assert m["bind-address"] == "127.0.1.9" and m["server_id"] == "42"
    assert m["log_bin"] == "mysql-bin" and m["relay_log"] == "relay-bin" and m["binlog_format"] == "ROW"
    assert m["read_only"] == "ON"
    assert m["skip_name_resolve"] == "ON" and m["innodb_buffer_pool_size"] == "128M"
    assert m["pid_file"] == "/st/mysqld.pid" and m["log_error"] == "/st/mysqld.err"
    assert m["report_host"] == "10.0.0.5" and m["report_port"] == "3310"
    assert ("log_slave_updates" in m) != ("log_replica_updates" in m)
    assert m.get("log_slave_updates", m.get("log_replica_updates")) == "ON"
    assert m.get("skip_slave_start", m.get("skip_replica_start")) == "ON"
    assert ("super_read_only" in m) is get_flavor(*fv).has_super_read_only
    if "super_read_only" in m:
        assert m["super_read_only"] == "ON"
    assert cp["client"]["socket"] == "/st/mysqld.sock"
    assert "r'pw" not in get_flavor(*fv).mycnf(cfg)          # never a secret in my.cnf


def test_mycnf_mariadb_specifics():
    m = mycnf(MARIADB)[0]["mysqld"]
    assert m["gtid_strict_mode"] == "ON" and m["gtid_domain_id"] == "0"
    assert m["rpl_semi_sync_master_enabled"] == "OFF" and m["rpl_semi_sync_slave_enabled"] == "OFF"
    assert "gtid_mode" not in m and "plugin-load-add" not in m and "super_read_only" not in m
    old = mycnf(("mariadb", "10.2"))[0]["mysqld"]
    assert old["plugin-load-add"] == "semisync_master.so;semisync_slave.so"


@pytest.mark.parametrize("fv,plugins,enabled", [
    (MY56, "semisync_master.so;semisync_slave.so", "loose-rpl_semi_sync_master_enabled"),
    (MY57, "semisync_master.so;semisync_slave.so", "loose-rpl_semi_sync_master_enabled"),
    (("mysql", "8.0.16"), "semisync_master.so;semisync_slave.so", "loose-rpl_semi_sync_master_enabled"),
    (MY8023, "semisync_master.so;semisync_slave.so;mysql_clone.so", "loose-rpl_semi_sync_master_enabled"),
    (("mysql", "8.0.26"), "semisync_source.so;semisync_replica.so;mysql_clone.so",
     "loose-rpl_semi_sync_source_enabled"),
    (MY84, "semisync_source.so;semisync_replica.so;mysql_clone.so", "loose-rpl_semi_sync_source_enabled"),
    (("mysql", "9.7"), "semisync_source.so;semisync_replica.so;mysql_clone.so",
     "loose-rpl_semi_sync_source_enabled"),
    (PERCONA56, "semisync_master.so;semisync_slave.so", "loose-rpl_semi_sync_master_enabled"),
])
def test_mycnf_mysql_specifics(fv, plugins, enabled):
    m = mycnf(fv)[0]["mysqld"]
    assert m["gtid_mode"] == "ON" and m["enforce_gtid_consistency"] == "ON"
    assert m["plugin-load-add"] == plugins and m[enabled] == "OFF"
    assert "gtid_strict_mode" not in m
    assert ("master_info_repository" in m) is (fv[1].startswith("5."))
    # The X plugin (8.0+) would make every node on one host listen on 33060.
    assert (m.get("loose-mysqlx") == "OFF") is (not fv[1].startswith("5."))


def test_backup_cmd_mariadb_has_no_password_and_defaults_first():
    cmd = get_flavor(*MARIADB).backup_cmd("/run/c.cnf", "/data", "/st/mysqld.sock", target_dir="/tmp/x")
    assert cmd == ["mariadb-backup", "--defaults-extra-file=/run/c.cnf", "--backup", "--stream=xbstream",
                   "--target-dir=/tmp/x", "--datadir=/data", "--socket=/st/mysqld.sock"]
    replica = get_flavor(*MARIADB).backup_cmd("/c", "/d", "/s", from_replica=True)
    assert replica[1] == "--defaults-extra-file=/c" and replica[-2:] == ["--slave-info", "--safe-slave-backup"]


@pytest.mark.parametrize("fv", [MY56, MY57, PERCONA56])
def test_backup_and_prepare_xtrabackup24(fv):
    f = get_flavor(*fv)
    assert f.backup_tool == "innobackupex"
    cmd = f.backup_cmd("/c.cnf", "/data", "/s.sock", target_dir="/tmp/x")
    assert cmd[:3] == ["innobackupex", "--defaults-extra-file=/c.cnf", "--stream=xbstream"]
    assert cmd[-1] == "/tmp/x" and "--socket=/s.sock" in cmd
    assert f.prepare_cmd("/r") == ["innobackupex", "--apply-log", "/r"]
    assert f.extract_cmd("/r") == ["xbstream", "-x", "-C", "/r"]


@pytest.mark.parametrize("fv", [MY8022, MY8023, MY84])
def test_backup_and_prepare_xtrabackup80(fv):
    f = get_flavor(*fv)
    assert f.backup_tool == "xtrabackup"
    assert f.backup_cmd("/c", "/d", "/s", target_dir="/t") == [
        "xtrabackup", "--defaults-extra-file=/c", "--backup", "--stream=xbstream", "--target-dir=/t",
        "--datadir=/d", "--socket=/s"]
    assert f.prepare_cmd("/r") == ["xtrabackup", "--prepare", "--target-dir=/r"]


def test_prepare_and_extract_mariadb():
    f = get_flavor(*MARIADB)
    assert f.prepare_cmd("/r") == ["mariadb-backup", "--prepare", "--target-dir=/r"]
    assert f.extract_cmd("/r") == ["mbstream", "-x", "-C", "/r"]
    assert f.backup_tool == "mariadb-backup" and f.server_binary == "mariadbd"
    assert get_flavor(*MY84).server_binary == "mysqld"


@pytest.mark.parametrize("fv", ALL)
def test_no_password_ever_in_argv(fv):
    f = get_flavor(*fv)
    argv = f.backup_cmd("/c", "/d", "/s") + f.prepare_cmd("/r") + f.extract_cmd("/r") + \
        f.install_db_cmd(cfg_for(*fv))
    assert not any(a.startswith(("-p", "--password")) for a in argv)
    assert not any("r'pw" in a for a in argv)


def test_backup_ok():
    f = get_flavor(*MARIADB)
    assert f.backup_ok("[00] 2024-01-01 10:00:00 ...\n[00] 2024-01-01 10:00:01 completed OK!\n")
    assert not f.backup_ok("[00] copying\n[00] FATAL ERROR: something\n")
    assert not f.backup_ok("")
    assert not f.backup_ok("completed OK!\n" + "\n".join(f"[01] later line {i}" for i in range(10)))


def test_parse_backup_position():
    f = get_flavor(*MARIADB)
    log = ("[00] 2024-06-01 12:00:00 mariabackup: MySQL binlog position: filename 'mysql-bin.000002', "
           "position '1234', GTID of the last change '0-1-5'\n[00] completed OK!\n")
    assert f.parse_backup_position(log) == ("mysql-bin.000002", 1234, "0-1-5")
    y = get_flavor(*MY57)
    log = (f"xtrabackup: MySQL binlog position: filename 'mysql-bin.000003', position '154', "
           f"GTID of the last change '{U1}:1-5,\n4b2c9d1e-0000-11e1-9e33-c80aa9429562:1-3'\n")
    assert y.parse_backup_position(log) == ("mysql-bin.000003", 154,
                                            f"{U1}:1-5,4b2c9d1e-0000-11e1-9e33-c80aa9429562:1-3")
    assert y.parse_backup_position("MySQL binlog position: filename 'b.000001', position 4\n") == \
        ("b.000001", 4, "")
    assert f.parse_backup_position("no binlog here") == ("", 0, "")


def test_read_binlog_info_both_names(tmp_path):
    f = get_flavor(*MARIADB)
    (tmp_path / "mariadb_backup_binlog_info").write_text("mysql-bin.000007\t385\t0-12-44\n")
    assert f.read_binlog_info(str(tmp_path)) == ("mysql-bin.000007", 385, "0-12-44")
    (tmp_path / "xtrabackup_binlog_info").write_text("mysql-bin.000008\t1\t0-12-45\n")
    assert f.read_binlog_info(str(tmp_path)) == ("mysql-bin.000008", 1, "0-12-45")
    with pytest.raises(SnapshotError) as ei:
        f.read_binlog_info(str(tmp_path / "nope"))
    assert "nope" in str(ei.value)


def test_parse_binlog_info_multiline_mysql_set():
    text = f"mysql-bin.000003\t154\t{U1}:1-5,\n4b2c9d1e-0000-11e1-9e33-c80aa9429562:1-3\n"
    assert parse_binlog_info(text) == ("mysql-bin.000003", 154,
                                       f"{U1}:1-5,4b2c9d1e-0000-11e1-9e33-c80aa9429562:1-3")
    assert parse_binlog_info("mysql-bin.000001\t4\n") == ("mysql-bin.000001", 4, "")
    for bad in ("", "just-a-name\n", "f\tnotanumber\tx"):
        with pytest.raises(SnapshotError):
            parse_binlog_info(bad, "somefile")


def test_defaults_file_text_quotes_password():
    text = defaults_file_text("root", 'p"w\\x', socket="/s.sock")
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(text)
    assert cp["client"]["user"] == '"root"' and cp["client"]["password"] == '"p\\"w\\\\x"'
    assert cp["client"]["socket"] == "/s.sock"
    assert "password" not in defaults_file_text("root", None)

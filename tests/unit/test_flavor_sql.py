"""Statement-by-statement SQL of every supported flavor/version."""
from __future__ import annotations

import pytest

from mysqlpilot import config
from mysqlpilot.errors import ConfigError, PilotError
from mysqlpilot.flavors import get_flavor, quote, quote_ident

MARIADB = ("mariadb", "10.11")
MY56, MY57, MY8022, MY8023, MY84 = ("mysql", "5.6"), ("mysql", "5.7"), ("mysql", "8.0.22"), \
    ("mysql", "8.0.23"), ("mysql", "8.4")
MY97 = ("mysql", "9.7")
PERCONA56, PERCONA57, PERCONA80 = ("percona", "5.6.21-70.0"), ("percona", "5.7"), ("percona", "8.0")
ALL = [MARIADB, MY56, MY57, MY8022, MY8023, MY84, MY97, PERCONA56, PERCONA57, PERCONA80]


def cfg_for(flavor, version, **env):
    base = {"MYSQL_ROOT_PASSWORD": "r'pw", "MYSQL_REPL_PASSWORD": "rp\\w", "MYSQLPILOT_NODE": "n1",
            "MYSQLPILOT_ADVERTISE_HOST": "10.0.0.5", "MYSQLPILOT_FLAVOR": flavor,
            "MYSQLPILOT_FLAVOR_VERSION": version}
    base.update(env)
    return config.load(env=base)


def test_quote_escapes_quote_backslash_and_line_ends():
    assert quote("plain") == "'plain'"
    assert quote("o'k") == "'o\\'k'"
    assert quote("a\\b") == "'a\\\\b'"
    assert quote("x\n;DROP") == "'x\\n;DROP'"
    assert quote("\\'") == "'\\\\\\''"
    assert quote_ident("we`ird") == "`we``ird`"


@pytest.mark.parametrize("name,version,expected", [
    ("mariadb", "10.11", False), ("mysql", "5.6", False), ("mysql", "5.7.7", False), ("mysql", "5.7.8", True),
    ("mysql", "5.7", True), ("mysql", "8.0.22", True), ("mysql", "8.4", True),
    ("percona", "5.6.21-70.0", True), ("percona", "5.6.21-69.0", False), ("percona", "5.6.20-68.0", False),
    ("percona", "5.6.22-71.0", True), ("percona", "5.6", True), ("percona", "5.7.10-1", True),
])
def test_super_read_only_presence(name, version, expected):
    assert get_flavor(name, version).has_super_read_only is expected


@pytest.mark.parametrize("fv", ALL)
def test_set_read_only_order(fv):
    f = get_flavor(*fv)
    on, off = f.set_read_only(True), f.set_read_only(False)
    if f.has_super_read_only:
        assert on == ["SET GLOBAL read_only = ON", "SET GLOBAL super_read_only = ON"]
        assert off == ["SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"]
    else:
        assert on == ["SET GLOBAL read_only = ON"] and off == ["SET GLOBAL read_only = OFF"]


def test_change_source_per_version():
    args = ("db1", 3307, "repl", "p'w")
    assert get_flavor(*MARIADB).change_source(*args) == [
        "CHANGE MASTER TO MASTER_HOST='db1', MASTER_PORT=3307, MASTER_USER='repl', MASTER_PASSWORD='p\\'w', "
        "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"]
    for fv in (MY56, MY57, PERCONA56):
        (sql,) = get_flavor(*fv).change_source(*args)
        assert sql.startswith("CHANGE MASTER TO MASTER_HOST='db1', MASTER_PORT=3307, ")
        assert "MASTER_AUTO_POSITION=1" in sql and "PUBLIC_KEY" not in sql
    (sql,) = get_flavor(*MY8022).change_source(*args)
    assert sql.startswith("CHANGE MASTER TO ") and "MASTER_AUTO_POSITION=1" in sql
    assert "GET_MASTER_PUBLIC_KEY=1" in sql
    for fv in (MY8023, MY84, MY97, PERCONA80):
        (sql,) = get_flavor(*fv).change_source(*args)
        assert sql.startswith("CHANGE REPLICATION SOURCE TO SOURCE_HOST='db1', SOURCE_PORT=3307, "
                              "SOURCE_USER='repl', SOURCE_PASSWORD='p\\'w', ")
        assert "SOURCE_AUTO_POSITION=1" in sql and "GET_SOURCE_PUBLIC_KEY=1" in sql and "MASTER" not in sql


@pytest.mark.parametrize("fv,start,stop,reset,status", [
    (MARIADB, "START SLAVE", "STOP SLAVE", "RESET SLAVE ALL", "SHOW SLAVE STATUS"),
    (MY56, "START SLAVE", "STOP SLAVE", "RESET SLAVE ALL", "SHOW SLAVE STATUS"),
    (MY57, "START SLAVE", "STOP SLAVE", "RESET SLAVE ALL", "SHOW SLAVE STATUS"),
    (PERCONA56, "START SLAVE", "STOP SLAVE", "RESET SLAVE ALL", "SHOW SLAVE STATUS"),
    (MY8022, "START REPLICA", "STOP REPLICA", "RESET REPLICA ALL", "SHOW REPLICA STATUS"),
    (MY8023, "START REPLICA", "STOP REPLICA", "RESET REPLICA ALL", "SHOW REPLICA STATUS"),
    (MY84, "START REPLICA", "STOP REPLICA", "RESET REPLICA ALL", "SHOW REPLICA STATUS"),
    (MY97, "START REPLICA", "STOP REPLICA", "RESET REPLICA ALL", "SHOW REPLICA STATUS"),
    (PERCONA57, "START SLAVE", "STOP SLAVE", "RESET SLAVE ALL", "SHOW SLAVE STATUS"),
    (PERCONA80, "START REPLICA", "STOP REPLICA", "RESET REPLICA ALL", "SHOW REPLICA STATUS"),
])
def test_replica_verbs(fv, start, stop, reset, status):
    f = get_flavor(*fv)
    assert f.start_replica() == [start] and f.stop_replica() == [stop]
    assert f.reset_replica_all() == [reset] and f.replica_status_sql() == status


def test_seed_gtid():
    assert get_flavor(*MARIADB).seed_gtid("0-1-5") == ["RESET MASTER", "SET GLOBAL gtid_binlog_state = '0-1-5'",
                                                       "SET GLOBAL gtid_slave_pos = '0-1-5'"]
    g = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
    for fv in (MY56, MY57, MY8022, MY8023, PERCONA56):
        assert get_flavor(*fv).seed_gtid(g) == ["RESET MASTER", f"SET GLOBAL gtid_purged = '{g}'"]
    for fv in (MY84, MY97):
        assert get_flavor(*fv).seed_gtid(g) == ["RESET BINARY LOGS AND GTIDS", f"SET GLOBAL gtid_purged = '{g}'"]


@pytest.mark.parametrize("fv,status,reset", [
    (MARIADB, "SHOW MASTER STATUS", "RESET MASTER"),
    (MY56, "SHOW MASTER STATUS", "RESET MASTER"), (MY57, "SHOW MASTER STATUS", "RESET MASTER"),
    (("mysql", "8.0"), "SHOW MASTER STATUS", "RESET MASTER"),
    (("mysql", "8.1"), "SHOW MASTER STATUS", "RESET MASTER"),
    (("mysql", "8.2.0"), "SHOW BINARY LOG STATUS", "RESET BINARY LOGS AND GTIDS"),
    (MY84, "SHOW BINARY LOG STATUS", "RESET BINARY LOGS AND GTIDS"),
    (MY97, "SHOW BINARY LOG STATUS", "RESET BINARY LOGS AND GTIDS"),
    (PERCONA56, "SHOW MASTER STATUS", "RESET MASTER"), (PERCONA80, "SHOW MASTER STATUS", "RESET MASTER"),
])
def test_binary_log_statements_per_version(fv, status, reset):
    """8.4 removed SHOW MASTER STATUS and RESET MASTER (8.2 added the new words)."""
    f = get_flavor(*fv)
    assert f.binlog_status_sql() == status and f.reset_binlogs() == [reset]


@pytest.mark.parametrize("fv,sql", [
    (MARIADB, "SELECT @@GLOBAL.read_only AS read_only"),
    (MY56, "SELECT @@GLOBAL.read_only AS read_only"),
    (("percona", "5.6.20-68.0"), "SELECT @@GLOBAL.read_only AS read_only"),
    (PERCONA56, "SELECT @@GLOBAL.super_read_only AS read_only"),
    (MY57, "SELECT @@GLOBAL.super_read_only AS read_only"),
    (MY84, "SELECT @@GLOBAL.super_read_only AS read_only"),
    (MY97, "SELECT @@GLOBAL.super_read_only AS read_only"),
])
def test_fencing_confirms_super_read_only_where_it_exists(fv, sql):
    """read_only alone lets root write on MySQL: a fence is confirmed by super_read_only there."""
    assert get_flavor(*fv).read_only_sql() == sql


@pytest.mark.parametrize("fv,clone,method", [
    (MARIADB, False, "backup-tool"), (MY56, False, "backup-tool"), (MY57, False, "backup-tool"),
    (("mysql", "8.0.16"), False, "backup-tool"), (("mysql", "8.0.17"), True, "clone"),
    (("mysql", "8.0"), True, "clone"), (MY84, True, "clone"), (MY97, True, "clone"),
    (PERCONA56, False, "backup-tool"), (PERCONA57, False, "backup-tool"), (PERCONA80, True, "backup-tool"),
])
def test_snapshot_method_by_flavor_and_version(fv, clone, method):
    from mysqlpilot.snapshot import snapshot_method
    f = get_flavor(*fv)
    assert f.supports_clone is clone and f.default_snapshot_method == method
    assert snapshot_method(cfg_for(*fv), f) == method
    forced = cfg_for(*fv, MYSQLPILOT_SNAPSHOT_METHOD="backup-tool")
    assert snapshot_method(forced, f) == "backup-tool"
    if clone:
        assert snapshot_method(cfg_for(*fv, MYSQLPILOT_SNAPSHOT_METHOD="clone"), f) == "clone"
    else:
        with pytest.raises(ConfigError, match="snapshot_method: clone needs the CLONE plugin"):
            cfg_for(*fv, MYSQLPILOT_SNAPSHOT_METHOD="clone")


def test_clone_statements():
    f = get_flavor(*MY97)
    assert f.clone_local_sql("/st/backup-tmp-x/clone") == ["CLONE LOCAL DATA DIRECTORY = '/st/backup-tmp-x/clone'"]
    assert f.clone_local_sql("/a'b") == ["CLONE LOCAL DATA DIRECTORY = '/a\\'b'"]
    sql = f.clone_status_sql()
    assert "FROM performance_schema.clone_status" in sql
    for col in ("STATE", "BINLOG_FILE", "BINLOG_POSITION", "GTID_EXECUTED", "ERROR_MESSAGE"):
        assert col in sql


def test_mysql_9_is_a_supported_version_and_10_is_not():
    assert cfg_for("mysql", "9.7").flavor_version == "9.7"
    with pytest.raises(ConfigError, match="not a MySQL/Percona version"):
        cfg_for("mysql", "10.11")


def test_gtid_queries_and_waits():
    m = get_flavor(*MARIADB)
    assert m.gtid_executed_sql() == "SELECT @@GLOBAL.gtid_current_pos"
    assert m.wait_for_gtid_sql("0-1-5", 30) == "SELECT MASTER_GTID_WAIT('0-1-5', 30)"
    for fv in (MY56, MY8023, MY84, MY97):
        f = get_flavor(*fv)
        assert f.gtid_executed_sql() == "SELECT @@GLOBAL.gtid_executed"
        assert f.wait_for_gtid_sql("u:1", 2.5).startswith("SELECT WAIT_FOR_EXECUTED_GTID_SET('u:1', ")


def test_semi_sync_names():
    m = get_flavor(*MARIADB)
    assert m.semi_sync_primary(True, 500) == ["SET GLOBAL rpl_semi_sync_master_timeout = 500",
                                              "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC",
                                              "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON",
                                              "SET GLOBAL rpl_semi_sync_master_enabled = ON"]
    assert m.semi_sync_replica(False) == ["SET GLOBAL rpl_semi_sync_slave_enabled = OFF"]
    assert get_flavor(*MY8023).semi_sync_primary(False, 1) == ["SET GLOBAL rpl_semi_sync_master_enabled = OFF"]
    assert get_flavor(*MY84).semi_sync_primary(True, 9) == ["SET GLOBAL rpl_semi_sync_source_timeout = 9",
                                                            "SET GLOBAL rpl_semi_sync_source_wait_point = AFTER_SYNC",
                                                            "SET GLOBAL rpl_semi_sync_source_wait_no_replica = ON",
                                                            "SET GLOBAL rpl_semi_sync_source_enabled = ON"]
    assert get_flavor("percona", "5.6").semi_sync_primary(True, 9) == [
        "SET GLOBAL rpl_semi_sync_master_timeout = 9", "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON",
        "SET GLOBAL rpl_semi_sync_master_enabled = ON"]
    assert get_flavor(*MY84).semi_sync_replica(True) == ["SET GLOBAL rpl_semi_sync_replica_enabled = ON"]
    # Renamed in 8.0.26: the old names are gone from 8.4/9.x.
    assert get_flavor("mysql", "8.0.25").semi_sync_replica(True) == ["SET GLOBAL rpl_semi_sync_slave_enabled = ON"]
    assert get_flavor("mysql", "8.0.26").semi_sync_replica(True) == ["SET GLOBAL rpl_semi_sync_replica_enabled = ON"]
    assert get_flavor(*MY97).semi_sync_primary(False, 9) == ["SET GLOBAL rpl_semi_sync_source_enabled = OFF"]
    assert get_flavor(*MY97).parse_semi_sync_status({"Rpl_semi_sync_source_clients": "1",
                                                     "Rpl_semi_sync_replica_status": "ON"})["replica_status"]
    st = get_flavor(*MY84).parse_semi_sync_status({"Rpl_semi_sync_source_clients": "2",
                                                   "Rpl_semi_sync_source_status": "ON"})
    assert st == {"clients": 2, "status": True, "replica_status": False}
    st = m.parse_semi_sync_status({"Rpl_semi_sync_master_clients": "0", "Rpl_semi_sync_master_status": "OFF",
                                   "Rpl_semi_sync_slave_status": "ON"})
    assert st == {"clients": 0, "status": False, "replica_status": True}


def test_bootstrap_users_mariadb():
    cfg = cfg_for(*MARIADB, MYSQL_DATABASE="shop", MYSQL_USER="app", MYSQL_PASSWORD="a'p")
    sql = get_flavor(*MARIADB).bootstrap_users(cfg)
    assert sql[0] == ("ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING "
                      "PASSWORD('r\\'pw') OR unix_socket")
    assert not any("'root'@'%'" in s for s in sql)          # root is local only (issue 23)
    assert "GRANT SELECT, RELOAD, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO 'mysqlpilot'@'%'" in sql
    assert "CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'rp\\\\w'" in sql
    assert ("GRANT REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR, SLAVE MONITOR ON *.* TO "
            "'repl'@'%'") in sql
    assert "CREATE DATABASE IF NOT EXISTS `shop`" in sql
    assert "GRANT ALL PRIVILEGES ON `shop`.* TO 'app'@'%'" in sql
    older = get_flavor("mariadb", "10.4").bootstrap_users(cfg)
    assert "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'%'" in older
    assert "GRANT SELECT, RELOAD, REPLICATION CLIENT ON *.* TO 'mysqlpilot'@'%'" in older


def test_a_remote_admin_is_kept_only_when_asked_and_read_only_binds_it_on_mariadb():
    cfg = cfg_for(*MARIADB, MYSQLPILOT_REMOTE_ADMIN_USER="root")
    sql = get_flavor(*MARIADB).bootstrap_users(cfg)
    assert "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY 'r\\'pw'" in sql
    # the revoke comes after the grant it trims
    assert sql.index("REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'%'") > \
        sql.index("GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION")
    assert not any("READ_ONLY ADMIN" in s for s in get_flavor("mariadb", "10.4").bootstrap_users(cfg))


def test_bootstrap_users_mysql56_uses_grant_identified_by():
    cfg = cfg_for(*MY56, MYSQL_DATABASE="shop", MYSQL_USER="app", MYSQL_PASSWORD="ap")
    sql = get_flavor(*MY56).bootstrap_users(cfg)
    assert not any("IF NOT EXISTS" in s and "USER" in s for s in sql)
    assert "SET PASSWORD FOR 'root'@'localhost' = PASSWORD('r\\'pw')" in sql
    assert not any("'root'@'%'" in s for s in sql)
    assert any(s.startswith("GRANT SELECT, RELOAD, REPLICATION CLIENT ON *.* TO 'mysqlpilot'@'%' IDENTIFIED BY ")
               for s in sql)
    assert "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'%' IDENTIFIED BY 'rp\\\\w'" in sql
    assert "GRANT ALL PRIVILEGES ON `shop`.* TO 'app'@'%' IDENTIFIED BY 'ap'" in sql
    sql = get_flavor(*MY56).bootstrap_users(cfg_for(*MY56, MYSQLPILOT_REMOTE_ADMIN_USER="root"))
    assert "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' IDENTIFIED BY 'r\\'pw' WITH GRANT OPTION" in sql


@pytest.mark.parametrize("fv", [MY57, MY8022, MY8023, MY84])
def test_bootstrap_users_mysql57_plus(fv):
    cfg = cfg_for(*fv)
    sql = get_flavor(*fv).bootstrap_users(cfg)
    assert sql[0] == "ALTER USER 'root'@'localhost' IDENTIFIED BY 'r\\'pw'"
    assert "CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'rp\\\\w'" in sql
    assert "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'%'" in sql
    assert not any("IDENTIFIED BY" in s and s.startswith("GRANT") for s in sql)
    assert not any("BINLOG MONITOR" in s for s in sql)


def test_install_db_cmd():
    cfg = cfg_for(*MARIADB, MYSQLPILOT_STATE_DIR="/s", MYSQLPILOT_MYSQLD_USER="mysql")
    assert get_flavor(*MARIADB).install_db_cmd(cfg) == [
        "mariadb-install-db", "--defaults-file=/s/my.cnf", "--user=mysql",
        "--auth-root-authentication-method=socket", "--skip-test-db"]
    cfg = cfg_for(*MY8023, MYSQLPILOT_STATE_DIR="/s")
    assert get_flavor(*MY8023).install_db_cmd(cfg) == ["mysqld", "--defaults-file=/s/my.cnf", "--user=mysql",
                                                       "--initialize-insecure"]
    assert get_flavor(*MY56).install_db_cmd(cfg_for(*MY56))[0] == "mysql_install_db"


def test_server_cmd_puts_defaults_file_first():
    cfg = cfg_for(*MARIADB, MYSQLPILOT_STATE_DIR="/s", MYSQLPILOT_MYSQLD_USER="root")
    assert get_flavor(*MARIADB).server_cmd(cfg, "/usr/sbin/mariadbd", ["--x"]) == [
        "/usr/sbin/mariadbd", "--defaults-file=/s/my.cnf", "--user=root", "--x"]


def test_replica_status_normalisation_both_spellings():
    m = get_flavor(*MARIADB)
    assert m.parse_replica_status(None) is None
    st = m.parse_replica_status({
        "Slave_IO_Running": "Connecting", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": None,
        "Master_Host": "h", "Master_Port": 3306, "Last_IO_Errno": 2003, "Last_IO_Error": "cannot connect",
        "Last_SQL_Error": "", "Gtid_IO_Pos": "0-1-9", "Using_Gtid": "Slave_Pos"})
    assert st["io_running"] is False and st["io_state"] == "Connecting" and st["sql_running"] is True
    assert st["lag_seconds"] is None and st["source_host"] == "h" and st["source_port"] == 3306
    assert st["last_io_errno"] == 2003 and st["gtid_io_pos"] == "0-1-9" and st["retrieved"] == "0-1-9"
    f = get_flavor(*MY84)
    st = f.parse_replica_status({
        "Replica_IO_Running": "Yes", "Replica_SQL_Running": "Yes", "Seconds_Behind_Source": 3,
        "Source_Host": "p", "Source_Port": "3307", "Last_IO_Errno": 0,
        "Retrieved_Gtid_Set": "u:1-5,\nv:1-2", "Executed_Gtid_Set": "u:1-4"})
    assert st["io_running"] and st["sql_running"] and st["lag_seconds"] == 3.0
    assert st["source_host"] == "p" and st["source_port"] == 3307
    assert st["retrieved"] == "u:1-5,v:1-2" and st["executed_gtid_set"] == "u:1-4"


def test_flavor_gtid_math_dispatches_on_dialect():
    m, y = get_flavor(*MARIADB), get_flavor(*MY57)
    u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    assert m.gtid_contains("0-1-9", "0-2-5") and m.gtid_subtract("0-1-9", "0-1-5") == "0-1-9"
    assert m.gtid_count("0-1-9,1-1-1") == 10 and m.gtid_union("0-1-3,1-1-4", "0-2-5") == "0-2-5,1-1-4"
    assert y.gtid_contains(f"{u}:1-9", f"{u}:2") and y.gtid_subtract(f"{u}:1-9", f"{u}:1-5") == f"{u}:6-9"
    assert y.gtid_count(f"{u}:1-9") == 9 and y.gtid_union(f"{u}:1-2", f"{u}:3") == f"{u}:1-3"


def test_get_flavor_rejects_unknown():
    with pytest.raises(ConfigError):
        get_flavor("oracle", "1.0")
    with pytest.raises(ConfigError):
        get_flavor("mysql", "5.5")
    with pytest.raises(PilotError):
        get_flavor("mariadb", "latest")


# MariaDB 10.11 documents 0..18446744073709551615 for rpl_semi_sync_master_timeout, MySQL 8.x/9.x
# 0..4294967295 for rpl_semi_sync_{source,master}_timeout: the largest value both accept (~49.7 days).
BOTH_SERVERS_MAX_MS = 4294967295


@pytest.mark.parametrize("fv", ALL)
def test_a_semi_sync_primary_waits_for_its_ack_without_a_timeout(fv):
    """Issue 18 item 9: the servers' 10 s default timeout acknowledged commits after a freeze (the wait had
    expired at thaw, the server fell back to async and answered OK). durability: semi-sync promises no lost
    acknowledged commit, so the wait never times out, and a primary with no replica connected still waits."""
    f = get_flavor(*fv)
    new = f.dialect == "mysql" and getattr(f, "new_semisync", False)
    p, r = ("source", "replica") if new else ("master", "slave")
    sql = f.semi_sync_primary(True)
    assert f"SET GLOBAL rpl_semi_sync_{p}_timeout = {BOTH_SERVERS_MAX_MS}" in sql
    assert f"SET GLOBAL rpl_semi_sync_{p}_wait_no_{r} = ON" in sql
    assert sql[-1] == f"SET GLOBAL rpl_semi_sync_{p}_enabled = ON"       # enabled once the wait is unbounded
    assert f.semi_sync_primary(False) == [f"SET GLOBAL rpl_semi_sync_{p}_enabled = OFF"]


def test_mysql_reports_a_source_refusal_as_13114_and_it_reads_as_1236():
    """MySQL 8.0.23+ sets Last_IO_Errno 13114 (ER_SERVER_SOURCE_FATAL_ERROR_READING_BINLOG) with the source's
    1236 in the text. Read as 13114, the decisions never saw "purged" and re-pointed replication every pass
    instead of rebuilding (seen in the first MySQL chaos campaign, seed 97, fault 19)."""
    from mysqlpilot import analysis
    from mysqlpilot.flavors import get_flavor
    from mysqlpilot.model import LeaderInfo
    f = get_flavor("mysql", "9.7.4")
    st = f.parse_replica_status({
        "Replica_IO_Running": "No", "Replica_SQL_Running": "Yes", "Source_Host": "127.0.1.2", "Source_Port": 3306,
        "Last_IO_Errno": 13114, "Seconds_Behind_Source": None,
        "Last_IO_Error": "Got fatal error 1236 from source when reading data from binary log: 'Cannot replicate "
                         "because the source purged required binary logs. Replicate the missing transactions "
                         "from elsewhere, or provision a new replica from backup.'"})
    assert st["last_io_errno"] == 1236
    o = analysis.Observation(me="n1", now=0.0, mysqld_up=True, read_only=True, have_session=True, lease_left=0.0,
                             leader=LeaderInfo("n2", "127.0.1.2", 3306, promoted=True), i_hold_lock=False,
                             replicating_from="127.0.1.2:3306", replication_ok=False,
                             replication_errno=st["last_io_errno"], replication_error=st["last_io_error"])
    assert analysis.decide(o).action == analysis.REBUILD


def test_replication_over_tls_verifies_the_source_when_a_ca_is_given():
    m = get_flavor(*MARIADB).change_source("10.0.0.1", 3306, "repl", "pw", tls=True, ca="/c/ca.pem")[0]
    assert m.endswith(", MASTER_SSL=1, MASTER_SSL_CA='/c/ca.pem', MASTER_SSL_VERIFY_SERVER_CERT=1"), m
    assert "SSL" not in get_flavor(*MARIADB).change_source("10.0.0.1", 3306, "repl", "pw")[0]
    s = get_flavor("mysql", "9.7").change_source("10.0.0.1", 3306, "repl", "pw", tls=True, ca="/c/ca.pem")[0]
    assert s.endswith(", SOURCE_SSL=1, SOURCE_SSL_CA='/c/ca.pem', SOURCE_SSL_VERIFY_SERVER_CERT=1"), s
    assert get_flavor("mysql", "5.7").change_source("h", 1, "r", "p", tls=True)[0].endswith(", MASTER_SSL=1")

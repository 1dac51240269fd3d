"""Binlogs expire (issue 22): each flavor gets the option its server has, and a retention shorter than
twice the snapshot interval is refused at load time."""
import pytest

from mysqlpilot import config
from mysqlpilot.errors import ConfigError
from mysqlpilot.flavors import get_flavor

ENV = {"MYSQL_ROOT_PASSWORD": "x", "MYSQL_REPL_PASSWORD": "y", "HOSTNAME": "n1"}


@pytest.mark.parametrize("flavor,version,option", [
    ("mariadb", "10.11", ("binlog_expire_logs_seconds", 604800)),
    ("mariadb", "10.5", ("expire_logs_days", 7)),
    ("mysql", "9.7", ("binlog_expire_logs_seconds", 604800)),
    ("mysql", "8.0", ("binlog_expire_logs_seconds", 604800)),
    ("mysql", "5.7", ("expire_logs_days", 7)),
    ("percona", "5.6", ("expire_logs_days", 7)),
])
def test_each_flavor_writes_its_own_option(flavor, version, option):
    cfg = config.load(None, env=dict(ENV, MYSQLPILOT_FLAVOR=flavor, MYSQLPILOT_FLAVOR_VERSION=version))
    assert cfg.binlog_expire_seconds == 604800
    assert f"\n{option[0]}={option[1]}\n" in get_flavor(flavor, version).mycnf(cfg)


def test_days_round_up_never_purge_sooner():
    f = get_flavor("percona", "5.6")
    assert f.binlog_expiry_option(86401) == ("expire_logs_days", 2)
    assert f.binlog_expiry_option(0) == ("expire_logs_days", 0)          # 0: never, on every server
    assert get_flavor("mysql", "9.7").binlog_expiry_option(0) == ("binlog_expire_logs_seconds", 0)


def test_a_retention_shorter_than_two_snapshot_intervals_is_refused():
    with pytest.raises(ConfigError) as e:
        config.load(None, env=dict(ENV, MYSQLPILOT_BINLOG_EXPIRE_SECONDS="3600", MYSQLPILOT_SNAPSHOT_INTERVAL="3600"))
    msg = str(e.value)
    assert "binlog_expire_seconds" in msg and "7200" in msg and "\n" not in msg
    config.load(None, env=dict(ENV, MYSQLPILOT_BINLOG_EXPIRE_SECONDS="7200", MYSQLPILOT_SNAPSHOT_INTERVAL="3600"))
    config.load(None, env=dict(ENV, MYSQLPILOT_BINLOG_EXPIRE_SECONDS="0"))     # never: allowed

"""Bootstrap's first login, before any password exists. MariaDB's install-db (socket authentication)
makes root@localhost and <mysqld user>@localhost, each reachable only by the OS user of that name: the
images run the hooks as the mysqld user (the entrypoint drops root), where logging in as root failed
with error 1698 (found by tests/integration/test_image_mariadb.py)."""
import pwd

from mysqlpilot.flavors import get_flavor


def test_mariadb_logs_in_as_the_os_user_it_runs_as(monkeypatch):
    fl = get_flavor("mariadb", "10.11")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert fl.bootstrap_login() == "root"
    mysql = pwd.getpwnam("mysql") if any(p.pw_name == "mysql" for p in pwd.getpwall()) else None
    uid = mysql.pw_uid if mysql else 65534
    monkeypatch.setattr("os.geteuid", lambda: uid)
    assert fl.bootstrap_login() == pwd.getpwuid(uid).pw_name != "root"


def test_mariadb_install_db_makes_the_mysqld_users_socket_account():
    """The account bootstrap_login names exists because install-db runs with --user=<mysqld user> and
    socket authentication (its second passwordless account is that user's)."""
    class Cfg:
        mycnf, mysqld_user = "/x/my.cnf", "mysql"
    cmd = get_flavor("mariadb", "10.11").install_db_cmd(Cfg)
    assert "--user=mysql" in cmd and "--auth-root-authentication-method=socket" in cmd
    assert not any(a.startswith("--auth-root-socket-user") for a in cmd)     # defaults to --user


def test_mysql_flavors_keep_root(monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 12345)
    for name, ver in (("mysql", "5.6"), ("percona", "5.6"), ("mysql", "8.0")):
        assert get_flavor(name, ver).bootstrap_login() == "root"

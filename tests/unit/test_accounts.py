"""Issue 23: accounts by purpose. The agent's password, what each account may do, and the primary's
move away from root@'%' (made once per term, root@'%' dropped only once no member may still log in with
it); the TCP login falls back to root only when the agent account is refused."""
import logging

import pymysql
import pytest

from mysqlpilot import accounts, config, sqlclient
from mysqlpilot.flavors import get_flavor
from mysqlpilot.model import MemberState

MARIADB = get_flavor("mariadb", "10.11")
MYSQL = get_flavor("mysql", "8.4")


def cfg_of(**env):
    return config.load(None, env={"MYSQL_ROOT_PASSWORD": "r00t", "MYSQL_REPL_PASSWORD": "pw2", **env})


def test_the_agent_password_is_derived_from_roots_one_way_unless_set():
    a = accounts.agent_password(cfg_of())
    assert a == accounts.agent_password(cfg_of()) and "r00t" not in a and len(a) == 32
    assert a != accounts.agent_password(cfg_of(MYSQL_ROOT_PASSWORD="other"))
    assert accounts.agent_password(cfg_of(MYSQLPILOT_AGENT_PASSWORD="mine")) == "mine"


def test_each_account_has_only_what_its_statements_need():
    assert accounts.agent_privileges(MYSQL) == "SELECT, RELOAD, REPLICATION CLIENT"
    assert accounts.agent_privileges(MARIADB) == "SELECT, RELOAD, REPLICATION CLIENT, SLAVE MONITOR"
    assert accounts.monitor_privileges(MYSQL) == "PROCESS, REPLICATION CLIENT"
    sql = accounts.ensure_sql(MYSQL, cfg_of())
    assert not any("monitor" in s for s in sql)           # no password, no monitor account
    sql = accounts.ensure_sql(MYSQL, cfg_of(MYSQL_MONITOR_PASSWORD="m"))
    assert "GRANT PROCESS, REPLICATION CLIENT ON *.* TO 'monitor'@'%'" in sql
    assert not any("ALL PRIVILEGES" in s for s in sql)


class Recorder:
    def __init__(self, remote_root=1):
        self.sql, self.remote_root, self.secrets = [], remote_root, []

    def __call__(self):
        return self

    def add_secret(self, s):
        self.secrets.append(s)

    def execute(self, sql):
        self.sql.append(sql)

    def scalar(self, sql):
        assert "mysql.user" in sql
        return self.remote_root

    def close(self):
        pass


def member(name, scheme=accounts.SCHEME):
    return MemberState(name, "h-" + name, 3306, role="replica", accounts=scheme)


def test_the_primary_makes_the_accounts_once_per_term_and_drops_remote_root_after_the_last_old_member():
    srv = Recorder()
    a = accounts.Accounts(cfg_of(), MARIADB, srv)
    a.on_primary([member("n1"), member("n2", scheme=0)], term=7)
    assert any(s.startswith("CREATE USER IF NOT EXISTS 'mysqlpilot'@'%'") for s in srv.sql)
    assert "DROP USER 'root'@'%'" not in srv.sql           # n2 runs an older version
    assert accounts.agent_password(a.cfg) in srv.secrets
    made = len(srv.sql)
    a.on_primary([member("n1"), member("n2", scheme=0)], term=7)
    assert len(srv.sql) == made                            # once per term
    a.on_primary([member("n1"), member("n2")], term=7)
    assert srv.sql[-1] == "DROP USER 'root'@'%'" and len(srv.sql) == made + 1
    a.on_primary([member("n1"), member("n2")], term=7)
    assert len(srv.sql) == made + 1                        # nothing more to do
    a.on_primary([member("n1"), member("n2")], term=8)
    assert len(srv.sql) == 2 * made + 1                    # a new term makes them again (idempotent)


def test_another_process_of_the_same_node_in_the_same_term_writes_nothing_again():
    """on-change runs the loop in a process of its own: the term is kept in the node's state file."""
    srv, state = Recorder(remote_root=0), {}
    accounts.Accounts(cfg_of(), MARIADB, srv, state).on_primary([member("n1")], term=3)
    made = len(srv.sql)
    assert made and state == {"accounts_term": 3}
    accounts.Accounts(cfg_of(), MARIADB, srv, state).on_primary([member("n1")], term=3)
    assert len(srv.sql) == made


def test_no_drop_when_there_is_no_remote_root_or_it_is_the_configured_admin():
    srv = Recorder(remote_root=0)
    accounts.Accounts(cfg_of(), MYSQL, srv).on_primary([member("n1")], 1)
    assert "DROP USER 'root'@'%'" not in srv.sql
    srv = Recorder(remote_root=1)
    accounts.Accounts(cfg_of(MYSQLPILOT_REMOTE_ADMIN_USER="root"), MYSQL, srv).on_primary([member("n1")], 1)
    assert "DROP USER 'root'@'%'" not in srv.sql
    assert "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION" in srv.sql


def test_nothing_is_written_under_semi_sync():
    """Seen in CI on MySQL 9.7: after a switchover the new primary's CREATE USER waited for an acknowledgement
    (its old primary was leaving) holding the account lock; every login, the loop's own probes included,
    waited behind it and the node looked dead. Under semi-sync the loop leaves the accounts alone."""
    srv = Recorder()
    a = accounts.Accounts(cfg_of(MYSQLPILOT_DURABILITY="semi-sync"), MYSQL, srv)
    for term in (1, 2):
        a.on_primary([member("n1")], term=term)
    assert srv.sql == [] and not a.ensured


def test_a_failing_statement_is_said_once_and_tried_again(caplog):
    class Broken(Recorder):
        def execute(self, sql):
            raise sqlclient.SQLError("MySQL at socket: CREATE USER ... failed: (1290) read-only", 1290)
    caplog.set_level(logging.INFO, logger="mysqlpilot.accounts")
    srv = Broken()
    a = accounts.Accounts(cfg_of(), MYSQL, srv)
    for _ in range(3):
        a.on_primary([member("n1")], 1)
    assert not a.ensured
    assert sum("accounts not brought up to date yet" in r.message for r in caplog.records) == 1


def test_a_tcp_login_falls_back_to_root_only_when_the_agent_is_refused(monkeypatch):
    """A member whose primary is older has no agent account yet (a rolling upgrade): root, as before. A
    refused root then reports the agent's refusal, which is the one to fix."""
    tried = []

    def connect(**kw):
        tried.append(kw["user"])
        if kw["user"] in refuse:
            raise pymysql.err.OperationalError(1045, f"Access denied for user '{kw['user']}'")
        return object()
    monkeypatch.setattr(sqlclient, "connect", connect)
    cfg = cfg_of()
    refuse = {"mysqlpilot"}
    srv = accounts.remote_server(sqlclient.Server, MYSQL, cfg, "10.0.0.2", 3306)
    srv._conn()
    assert tried == ["mysqlpilot", "root"] and srv.user == "root"
    tried.clear()
    refuse = set()
    accounts.remote_server(sqlclient.Server, MYSQL, cfg, "10.0.0.2", 3306)._conn()
    assert tried == ["mysqlpilot"]
    tried.clear()
    refuse = {"mysqlpilot", "root"}
    with pytest.raises(sqlclient.SQLError, match="refused user 'mysqlpilot'"):
        accounts.remote_server(sqlclient.Server, MYSQL, cfg, "10.0.0.2", 3306)._conn()
    assert tried == ["mysqlpilot", "root"]
    tried.clear()
    with pytest.raises(sqlclient.SQLError):       # any other error: no second login
        monkeypatch.setattr(sqlclient, "connect", lambda **kw: (tried.append(kw["user"]), (_ for _ in ()).throw(
            pymysql.err.OperationalError(2003, "Can't connect")))[1])
        accounts.remote_server(sqlclient.Server, MYSQL, cfg, "10.0.0.2", 3306)._conn()
    assert tried == ["mysqlpilot"]

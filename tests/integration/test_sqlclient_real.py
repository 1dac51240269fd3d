"""sqlclient against a real server (MariaDB 10.11, MySQL 9.7): probes bounded by their connect timeout even when mysqld is frozen
(SIGSTOP), and hostile passwords hidden in the server's own error echo."""
import io
import logging
import os
import signal
import time

import pytest

from mysqlpilot import mysqld
from mysqlpilot.flavors.base import quote
from mysqlpilot.logsetup import _Redact
from mysqlpilot.sqlclient import Server, SQLError

pytestmark = pytest.mark.integration


@pytest.fixture
def frozen(server_factory):
    """A started server, then SIGSTOPped: TCP and socket connects still succeed (the kernel accepts
    into the backlog) but nothing ever answers."""
    inst = server_factory("frozen")
    pid = mysqld.mysqld_pid(inst.cfg)
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield inst
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("via", ["tcp", "socket"])
def test_a_probe_of_a_frozen_mysqld_fails_within_its_connect_timeout(frozen, via):
    where = dict(host=frozen.host, port=frozen.port) if via == "tcp" else dict(socket=frozen.cfg.socket)
    srv = Server.for_probe(frozen.flavor, user="root", password=frozen.cfg.root_password, timeout=2, **where)
    assert (srv.connect_timeout, srv.read_timeout, srv.write_timeout) == (2, 2, 2)
    t0 = time.monotonic()
    with pytest.raises(SQLError) as ei:
        srv.query("SELECT 1")
    took = time.monotonic() - t0
    assert took < 3.0, f"probe took {took:.1f}s"
    msg = str(ei.value)
    assert "\n" not in msg and "did not answer within 2s" in msg, msg
    # The same through the constructor flag, and ping() says False just as fast.
    srv = Server(frozen.flavor, user="root", password=frozen.cfg.root_password, connect_timeout=1.5,
                 read_timeout=30, probe=True, **where)
    t0 = time.monotonic()
    assert srv.ping() is False
    assert time.monotonic() - t0 < 2.5


def test_a_non_probe_server_keeps_its_longer_read_timeout():
    from mysqlpilot.flavors import get_flavor
    srv = Server(get_flavor("mariadb", "10.11"), host="127.0.0.1", connect_timeout=2, read_timeout=30)
    assert (srv.read_timeout, srv.write_timeout) == (30, 30)


HOSTILE = ["Zq7'q\\b%s.*(", "\\'Zq7''\\\\\"x"]


@pytest.mark.parametrize("known", [True, False], ids=["secret-known", "secret-unknown"])
def test_a_server_error_echo_of_a_hostile_password_is_masked(server_factory, known):
    """Known secrets are hidden in every form; an unknown one still where SQL puts passwords."""
    inst = server_factory("echo")
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(_Redact(HOSTILE if known else []))
    lg = logging.getLogger("mysqlpilot")
    old_level = lg.level
    lg.addHandler(handler)
    lg.setLevel(logging.DEBUG)
    try:
        adm = inst.admin()
        if known:
            adm._secrets += HOSTILE        # as change_source / bootstrap_users register theirs
        errors = []
        statements = []
        for pw in HOSTILE:
            statements += [f"CHANGE MASTER TO BOGUS MASTER_PASSWORD={quote(pw)}, MASTER_PORT=1",
                           f"CREATE USER 'x'@'%' IDENTIFIED BY {quote(pw)} BOGUS",
                           f"ALTER USER 'x'@'%' IDENTIFIED BY {quote(pw)}"]     # 1396: no such user
        for sql in statements:
            with pytest.raises(SQLError) as ei:
                adm.execute(sql)
            errors.append(str(ei.value))
            logging.getLogger("mysqlpilot.test").error("failed: %s (%r)", ei.value, ei.value)
        adm.close()
    finally:
        lg.removeHandler(handler)
        lg.setLevel(old_level)
    assert any("near" in e for e in errors), errors       # the server really echoed the statement
    assert len(errors) == 6
    for text in errors + [buf.getvalue()]:
        assert "Zq7" not in text, text
    assert "<hidden>" in buf.getvalue() and "BOGUS" in buf.getvalue()

"""Hostile passwords (quotes, backslashes, %, regex metacharacters) never reach an error message or a log
line: not as typed, not SQL-escaped, not inside a repr, whichever statement form carried them.

Every password holds a marker ("Zq7") that no other text contains: it must not survive masking."""
import io
import logging

import pytest

from mysqlpilot import config
from mysqlpilot.flavors import get_flavor
from mysqlpilot.flavors.base import quote
from mysqlpilot.logsetup import _Redact, mask_secrets
from mysqlpilot.sqlclient import Server

MARK = "Zq7"
HOSTILE = [
    MARK + "'quote",
    MARK + "\\back\\slash",
    MARK + "'both\\'",
    MARK + "%s%d%(x)s%%",
    MARK + ".*+?[](){}|^$\\1",
    "it''s" + MARK + "\\\\'\"",
    "\\'" + MARK + "'\\",
]


def _cfg(pw):
    return config.load(None, env={"MYSQL_ROOT_PASSWORD": pw, "MYSQL_REPL_PASSWORD": pw,
                                  "MYSQL_USER": "app", "MYSQL_PASSWORD": pw})


def _statements(pw):
    """Every statement the flavors build that carries a password, in every dialect we ship."""
    cfg = _cfg(pw)
    out = []
    for name, version in (("mariadb", "10.11"), ("mysql", "5.6"), ("mysql", "5.7"), ("mysql", "8.0"),
                          ("mysql", "8.4")):
        fl = get_flavor(name, version)
        out += [s for s in fl.bootstrap_users(cfg) if quote(pw) in s]
        out += fl.change_source("10.0.0.1", 3306, "repl", pw)
    assert out and all(quote(pw) in s for s in out)
    return out


def _forms(text):
    """Ways a statement shows up in text: itself, a server's syntax-error echo of it, repr'd, inside an
    exception tuple."""
    return [text, f"You have an error in your SQL syntax; check the manual near '{text}' at line 1",
            repr(text), str((1064, text)), f"near '{text[:60]}' at line 1"]


@pytest.mark.parametrize("pw", HOSTILE)
def test_scrub_hides_a_known_hostile_password_in_every_statement_form(pw):
    srv = Server(get_flavor("mariadb", "10.11"), host="127.0.0.1", password=pw)
    for stmt in _statements(pw):
        for text in _forms(stmt):
            out = srv._scrub(text)
            assert MARK not in out, (text, out)


@pytest.mark.parametrize("pw", HOSTILE)
def test_scrub_hides_an_unknown_password_after_password_and_identified_by(pw):
    """A secret the Server never saw (say another node's) is still hidden where SQL puts passwords."""
    srv = Server(get_flavor("mariadb", "10.11"), host="127.0.0.1", password="not-this-one")
    for stmt in _statements(pw):
        out = srv._scrub(stmt)
        assert MARK not in out, (stmt, out)
        assert "<hidden>" in out


def test_identified_by_and_set_password_forms_are_masked_without_known_secrets():
    for stmt in ("CREATE USER 'a'@'%' IDENTIFIED BY 'Zq7-plain'",
                 "GRANT ALL ON *.* TO 'a'@'%' IDENTIFIED BY 'Zq7-x' WITH GRANT OPTION",
                 "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('Zq7')",
                 "SET PASSWORD FOR 'root'@'localhost' = PASSWORD('Zq7\\'x')",
                 "SET PASSWORD FOR 'root'@'%' = 'Zq7'",
                 "CHANGE MASTER TO MASTER_PASSWORD = \"Zq7\"",
                 "CHANGE REPLICATION SOURCE TO SOURCE_PASSWORD='Zq7'",
                 "near 'MASTER_PASSWORD='Zq7abcdef"):       # a server echo cut off inside the literal
        assert MARK not in mask_secrets(stmt, ()), stmt
    # Text around the secret stays readable.
    assert mask_secrets("CREATE USER 'a'@'%' IDENTIFIED BY 'Zq7' WITH GRANT OPTION", ()) == \
        "CREATE USER 'a'@'%' IDENTIFIED BY '<hidden>' WITH GRANT OPTION"


def _logger(secrets):
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(logging.Formatter("%(levelname)s [%(node)s] %(message)s"))
    h.addFilter(_Redact(secrets))
    lg = logging.getLogger(f"test-mask-{id(buf)}")
    lg.propagate = False
    lg.handlers = [h]
    lg.setLevel(logging.DEBUG)
    return lg, buf


@pytest.mark.parametrize("pw", HOSTILE)
def test_log_filter_hides_hostile_passwords_as_typed_escaped_and_repr(pw):
    lg, buf = _logger([pw])
    stmt = _statements(pw)[0]
    lg.info("as typed: %s", pw)
    lg.info("repr: %r", pw)
    lg.info("sql-escaped: %s", quote(pw))
    lg.info("statement: %s", stmt)
    lg.info("an exception: %s", Exception(1064, f"near '{quote(pw)}' at line 1"))
    lg.info("no args, percent signs kept literally: " + pw.replace(MARK, "x") + " 100%")
    try:
        raise RuntimeError(f"boom with {pw}")
    except RuntimeError:
        lg.exception("traceback follows")
    out = buf.getvalue()
    assert MARK not in out, out
    assert "100%" in out and "traceback follows" in out and "RuntimeError" in out


def test_log_filter_masks_identified_by_even_without_secrets():
    lg, buf = _logger([])
    lg.info("running %s", "CREATE USER 'x'@'%' IDENTIFIED BY 'Zq7'")
    assert MARK not in buf.getvalue() and "IDENTIFIED BY '<hidden>'" in buf.getvalue()

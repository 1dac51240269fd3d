"""Item 13 of issue 18: no connection mysqlpilot makes ever answers a server's request for the password
in clear text. A tiny fake MySQL server (handshake v10, then an AuthSwitchRequest to a plugin that makes
pymysql send the password as typed) records whether the client answered at all."""
import os
import re
import socket
import struct
import threading

import pytest

from mysqlpilot import mysqld
from mysqlpilot.errors import PilotError
from mysqlpilot.flavors import get_flavor
from mysqlpilot.sqlclient import Server

SECRET = "r00t-s3cret-pw"
FLAVOR = get_flavor("mariadb", "10.11")
# CLIENT_LONG_PASSWORD | FOUND_ROWS | LONG_FLAG | CONNECT_WITH_DB | PROTOCOL_41 | TRANSACTIONS
# | SECURE_CONNECTION | MULTI_RESULTS | PLUGIN_AUTH
CAPS = 0x1 | 0x2 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x20000 | 0x80000
OK = b"\x00\x00\x00\x02\x00\x00\x00"             # affected 0, insert id 0, status AUTOCOMMIT, 0 warnings
# What the switch request carries after the plugin name: dialog's first byte is its question's flags
# (last question, echo off), and "Password: " is the prompt pymysql answers with the password.
SWITCH_DATA = {"mysql_clear_password": b"", "dialog": b"\x05Password: "}


class FakeMySQLServer(threading.Thread):
    """Greets like mysqld, reads the login, asks to switch to `plugin`, and records what comes back."""

    def __init__(self, plugin: str, unix_path: str = ""):
        super().__init__(daemon=True)
        self.plugin = plugin
        if unix_path:
            self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.lsock.bind(unix_path)
        else:
            self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.lsock.bind(("127.0.0.1", 0))
            self.port = self.lsock.getsockname()[1]
        self.lsock.listen(1)
        self.lsock.settimeout(10)
        self.switch_sent = False
        self.answer = None               # the client's reply to the switch request, if any
        self.error = None

    @staticmethod
    def _send(conn, seq, payload):
        conn.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload)

    @staticmethod
    def _recv(conn):
        head = b""
        while len(head) < 4:
            chunk = conn.recv(4 - len(head))
            if not chunk:
                return None, None
            head += chunk
        n, seq = int.from_bytes(head[:3], "little"), head[3]
        body = b""
        while len(body) < n:
            chunk = conn.recv(n - len(body))
            if not chunk:
                return None, None
            body += chunk
        return seq, body

    def run(self):
        try:
            conn, _ = self.lsock.accept()
        except OSError as exc:
            self.error = exc
            return
        conn.settimeout(5)
        try:
            greeting = (b"\x0a" + b"8.0.99-fake\x00" + struct.pack("<I", 7) + b"abcdefgh\x00"
                        + struct.pack("<H", CAPS & 0xFFFF) + bytes([45]) + struct.pack("<H", 2)
                        + struct.pack("<H", CAPS >> 16) + bytes([21]) + b"\x00" * 10 + b"ijklmnopqrst\x00"
                        + b"mysql_native_password\x00")
            self._send(conn, 0, greeting)
            seq, _login = self._recv(conn)
            if seq is None:
                return
            self._send(conn, seq + 1, b"\xfe" + self.plugin.encode() + b"\x00" + SWITCH_DATA[self.plugin])
            self.switch_sent = True
            seq, self.answer = self._recv(conn)
            if seq is None:
                return                    # the client hung up instead of answering: what we want
            self._send(conn, seq + 1, OK)
            while True:                   # SET NAMES and whatever follows: OK to everything
                seq, cmd = self._recv(conn)
                if seq is None or cmd[:1] == b"\x01":      # COM_QUIT
                    return
                self._send(conn, seq + 1, OK)
        except OSError as exc:
            self.error = exc
        finally:
            conn.close()
            self.lsock.close()


@pytest.mark.parametrize("plugin", ["mysql_clear_password", "dialog"])
def test_server_never_sends_the_password_in_clear(plugin):
    """Seen failing before the fix: pymysql answered both switches with the password as typed."""
    fake = FakeMySQLServer(plugin)
    fake.start()
    srv = Server(FLAVOR, host="127.0.0.1", port=fake.port, user="root", password=SECRET, connect_timeout=3)
    with pytest.raises(PilotError) as ei:
        srv.version()
    srv.close()
    fake.join(10)
    assert fake.switch_sent, fake.error
    assert fake.answer is None, f"the client answered the {plugin} switch with {fake.answer!r}"
    msg = str(ei.value)
    assert f"127.0.0.1:{fake.port}" in msg and "clear text" in msg and plugin in msg
    assert SECRET not in msg and "\n" not in msg


def test_the_readiness_probe_never_answers_a_cleartext_switch_either(tmp_path):
    """mysqld._answers logs in with an empty password, but it is a pymysql connection all the same: it
    refuses the switch, and a server that asked counts as answering. Seen failing before the fix."""
    path = os.path.join(str(tmp_path), "fake.sock")
    fake = FakeMySQLServer("mysql_clear_password", unix_path=path)
    fake.start()

    class Cfg:
        socket = path
    assert mysqld._answers(Cfg()) is True
    fake.join(10)
    assert fake.switch_sent, fake.error
    assert fake.answer is None, f"the probe answered the cleartext switch with {fake.answer!r}"


def test_every_pymysql_connection_goes_through_sqlclient():
    """The refusal lives in sqlclient.connect: a direct pymysql.connect elsewhere in the package would
    bypass it. Seen failing before the fix (mysqld._answers)."""
    root = os.path.join(os.path.dirname(__file__), "..", "..", "mysqlpilot")
    offenders = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".py"):
                continue
            p = os.path.join(dirpath, f)
            with open(p, encoding="utf-8") as fh:
                text = fh.read()
            if re.search(r"pymysql\.(connect|Connect|connections\.Connection)\(", text) \
                    and os.path.basename(p) != "sqlclient.py":
                offenders.append(os.path.relpath(p, root))
    assert offenders == []

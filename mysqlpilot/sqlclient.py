"""The only code that talks SQL: one `Server` per mysqld connection (pymysql, autocommit).

Every failure is a one-line PilotError naming the server; passwords never appear in messages or logs
(server error text can echo SQL, e.g. a syntax error inside CHANGE MASTER, so it is scrubbed)."""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import pymysql
import pymysql.cursors

from .errors import PilotError
from .flavors.base import quote
from .logsetup import SecretMask

log = logging.getLogger(__name__)

ER_ACCESS_DENIED = 1045
ER_NO_SUCH_THREAD = 1094
CR_CONNECTION_ERROR = 2002       # socket
CR_CONN_HOST_ERROR = 2003        # tcp
CR_SERVER_GONE = 2006
CR_SERVER_LOST = 2013
CR_AUTH_PLUGIN_CANNOT_LOAD = 2059

_PASSWORD_HINT = {"root": "$MYSQL_ROOT_PASSWORD", "repl": "$MYSQL_REPL_PASSWORD",
                  "mysqlpilot": "$MYSQLPILOT_AGENT_PASSWORD (or root's, which it derives from) and that the "
                                "primary runs this version"}


class SQLError(PilotError):
    """A statement failed; `errno` holds the server/client error number."""

    def __init__(self, message: str, errno: int = 0):
        super().__init__(message)
        self.errno = errno


class CleartextRefused(pymysql.err.OperationalError):
    """A server asked for the password as typed: refused before a byte of it is sent."""
    plugin = ""


class _RefuseCleartext:
    """pymysql answers these plugins with the password as typed (dialog: to a "Password: " prompt), so
    whoever sits at the address (a host named in a Consul key, say) would read it. pymysql calls
    `authenticate` for a plugin in auth_plugin_map instead of its own code: raising there sends nothing."""
    plugin = ""

    def __init__(self, conn):
        self.conn = conn

    def authenticate(self, pkt):
        exc = CleartextRefused(CR_AUTH_PLUGIN_CANNOT_LOAD,
                               f"the server asked for the password in clear text ({self.plugin}); refused")
        exc.plugin = self.plugin
        raise exc


class _RefuseClearPassword(_RefuseCleartext):
    plugin = "mysql_clear_password"


class _RefuseDialog(_RefuseCleartext):
    plugin = "dialog"


# The server names the plugin in its greeting or in an AuthSwitchRequest; pymysql consults this map for both.
REFUSE_CLEARTEXT = {b"mysql_clear_password": _RefuseClearPassword, b"dialog": _RefuseDialog}


# TCP connections to members: with a CA (config key mysql_tls_ca) over TLS, the server's certificate and
# that it names the address verified. Set once per process from the configuration (cli.Context.config).
_TLS: Dict[str, Optional[str]] = {"ca": None}


def configure_tls(ca: Optional[str]) -> None:
    _TLS["ca"] = ca or None


def tcp_tls() -> Dict[str, Any]:
    """pymysql's keyword arguments for a TCP connection to a member."""
    ca = _TLS["ca"]
    return {"ssl_ca": ca, "ssl_verify_cert": True, "ssl_verify_identity": True} if ca else {}


def connect(**kw) -> "pymysql.connections.Connection":
    """pymysql.connect that never sends a password in clear text. Every connection mysqlpilot makes comes
    through here (tests/unit/test_cleartext_refused.py checks)."""
    return pymysql.connect(auth_plugin_map=dict(REFUSE_CLEARTEXT), **kw)


class Server:
    def __init__(self, flavor, host: Optional[str] = None, port: Optional[int] = None,
                 socket: Optional[str] = None, user: str = "root", password: Optional[str] = None,
                 connect_timeout: float = 3, read_timeout: float = 30, probe: bool = False,
                 fallback: Optional[Tuple[str, str]] = None):
        """`probe=True` bounds every read and write (the handshake's included) by connect_timeout too,
        so a hung mysqld (SIGSTOP, stuck I/O) fails the probe within about connect_timeout seconds
        instead of read_timeout. Use it (or `Server.for_probe`) for liveness and GTID probes; keep the
        default for statements that may legitimately run longer. `fallback`: (user, password) tried once
        if the server refuses `user` (accounts.remote_login)."""
        if not host and not socket:
            raise PilotError("Server needs a host and port or a socket path")
        self.flavor = flavor
        self.host = host
        self.port = int(port or 3306)
        self.socket = socket if not host else None
        self.user = user
        self._password = password
        self.connect_timeout = connect_timeout
        self.probe = probe
        # pymysql reads the server's greeting with the read timeout, not the connect timeout.
        self.read_timeout = connect_timeout if probe else read_timeout
        self.write_timeout = self.read_timeout
        self._secrets: List[str] = [p for p in [password, (fallback or ("", ""))[1]] if p]
        self._fallback = fallback
        self._mask_key: Optional[tuple] = None
        self._mask = SecretMask()
        self._c: Optional[pymysql.connections.Connection] = None

    @classmethod
    def for_probe(cls, flavor, *, timeout: float = 2, host: Optional[str] = None, port: Optional[int] = None,
                  socket: Optional[str] = None, user: str = "root", password: Optional[str] = None
                  ) -> "Server":
        """A Server whose connect, read and write timeouts are all `timeout` seconds: every probe of a
        hung or frozen mysqld fails (SQLError) within about `timeout` seconds."""
        return cls(flavor, host=host, port=port, socket=socket, user=user, password=password,
                   connect_timeout=timeout, probe=True)

    def add_secret(self, secret: Optional[str]) -> None:
        """Mask another secret that statements carry (say, a donor's password in CLONE INSTANCE) in
        every error and log line."""
        if secret:
            self._secrets.append(secret)

    # ---- plumbing ----------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}" if self.host else f"socket {self.socket}"

    def __repr__(self) -> str:
        return f"<Server {self.user}@{self.where}>"

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        """Every form of every secret this Server saw (as typed, SQL-escaped, repr'd) and whatever literal
        follows PASSWORD / IDENTIFIED BY in echoed SQL, even a secret we never saw: see logsetup."""
        key = tuple(self._secrets)
        if self._mask_key != key:
            self._mask, self._mask_key = SecretMask(key), key
        return " ".join(self._mask(text).split())

    def _connect_error(self, exc: Exception) -> PilotError:
        code = exc.args[0] if getattr(exc, "args", None) and isinstance(exc.args[0], int) else 0
        msg = self._scrub(exc.args[1] if len(getattr(exc, "args", ())) > 1 else exc)
        if code == CR_SERVER_LOST and "timed out" in str(msg):
            # Connected, but no greeting: mysqld is hung (stopped, stuck on I/O) or badly overloaded.
            return SQLError(f"MySQL at {self.where} did not answer within {self.read_timeout:g}s (hung or "
                            f"overloaded?): {msg}", code)
        if isinstance(exc, CleartextRefused):
            return SQLError(f"MySQL at {self.where} asked for user {self.user}'s password in clear text "
                            f"({exc.plugin}); refused: check that {self.where} is your mysqld and that {self.user!r} uses "
                            "caching_sha2_password, mysql_native_password or ed25519", code)
        if code == ER_ACCESS_DENIED:
            hint = _PASSWORD_HINT.get(self.user, "its password")
            return SQLError(f"MySQL at {self.where} refused user {self.user!r}: wrong password? check {hint}",
                            code)
        if code in (CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR) or not code:
            what = "is mysqld running and reachable?" if self.host else "is mysqld running?"
            return SQLError(f"cannot connect to MySQL at {self.where}: {msg}; {what}", code or CR_CONN_HOST_ERROR)
        return SQLError(f"MySQL at {self.where} refused the connection: ({code}) {msg}", code)

    def _conn(self) -> "pymysql.connections.Connection":
        if self._c is not None:
            return self._c
        kw: Dict[str, Any] = dict(user=self.user, password=self._password or "", autocommit=True,
                                  connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                                  write_timeout=self.write_timeout, charset="utf8mb4",
                                  cursorclass=pymysql.cursors.DictCursor)
        if self.host:
            kw.update(host=self.host, port=self.port, **tcp_tls())
        else:
            kw.update(unix_socket=self.socket)
        try:
            self._c = connect(**kw)
        except pymysql.err.MySQLError as exc:
            if self._fallback and exc.args and exc.args[0] == ER_ACCESS_DENIED:
                # A member whose primary has not made the agent account yet (a rolling upgrade).
                first, mine = self._connect_error(exc), (self.user, self._password)
                (self.user, self._password), self._fallback = self._fallback, None
                try:
                    return self._conn()
                except SQLError:
                    (self.user, self._password), self._fallback = mine, (self.user, self._password)
                    raise first from None
            raise self._connect_error(exc) from None
        except (OSError, RuntimeError) as exc:
            raise self._connect_error(exc) from None
        return self._c

    def _run(self, sql: str, fetch: bool) -> List[Dict[str, Any]]:
        conn = self._conn()
        log.debug("%s: %s", self.where, self._scrub(sql))
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall()) if fetch else []
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            msg = self._scrub(exc.args[1] if len(exc.args) > 1 else exc)
            if code in (CR_SERVER_GONE, CR_SERVER_LOST) or isinstance(exc, pymysql.err.InterfaceError):
                self._drop()
            verb = " ".join(sql.split()[:3]).upper()
            raise SQLError(f"MySQL at {self.where}: {verb} ... failed: ({code}) {msg}", code) from None
        except OSError as exc:
            self._drop()
            raise SQLError(f"MySQL at {self.where}: connection failed: {exc}", CR_SERVER_LOST) from None

    def _drop(self) -> None:
        c, self._c = self._c, None
        if c is not None:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def close(self) -> None:
        self._drop()

    # ---- generic -----------------------------------------------------------------------------
    def ping(self) -> bool:
        try:
            self._run("SELECT 1", True)
            return True
        except PilotError:
            return False

    def execute(self, sql: Union[str, Sequence[str]]) -> None:
        for stmt in ([sql] if isinstance(sql, str) else list(sql)):
            self._run(stmt, False)

    def query(self, sql: str) -> List[Dict[str, Any]]:
        return self._run(sql, True)

    def scalar(self, sql: str) -> Any:
        rows = self.query(sql)
        if not rows:
            return None
        return next(iter(rows[0].values()))

    def version(self) -> str:
        return str(self.scalar("SELECT VERSION()"))

    # ---- roles -------------------------------------------------------------------------------
    def read_only(self) -> bool:
        return bool(int(self.scalar(self.flavor.read_only_sql())))

    def set_read_only(self, on: bool) -> None:
        self.execute(self.flavor.set_read_only(on))

    def kill_client_connections(self, except_users: Iterable[str] = ("system user", "event_scheduler")
                                ) -> int:
        """Kill every client thread except ours, replication and server threads; returns how many."""
        keep = {u.lower() for u in except_users}
        killed = 0
        for row in self.query(self.flavor.processlist_sql()):
            user = str(row.get("user") or "").lower()
            cmd = str(row.get("command") or "")
            if user in keep or cmd in self.flavor.internal_commands:
                continue
            try:
                self.execute(f"KILL CONNECTION {int(row['id'])}")
                killed += 1
            except SQLError as exc:
                if exc.errno != ER_NO_SUCH_THREAD:      # already gone: fine
                    raise
        return killed

    # ---- replication -------------------------------------------------------------------------
    def replica_status(self) -> Optional[Dict[str, Any]]:
        rows = self.query(self.flavor.replica_status_sql())
        return self.flavor.parse_replica_status(rows[0] if rows else None)

    def gtid_executed(self) -> str:
        """MariaDB: @@gtid_current_pos (its position); MySQL: @@gtid_executed."""
        return "".join(str(self.scalar(self.flavor.gtid_executed_sql()) or "").split())

    def gtid_purged(self) -> str:
        """MySQL's @@gtid_purged: what this server's binlogs no longer hold."""
        return "".join(str(self.scalar("SELECT @@GLOBAL.gtid_purged") or "").split())

    def gtid_received(self) -> str:
        """Everything this server has, executed or only received into its relay log."""
        executed = self.gtid_executed()
        st = self.replica_status()
        if not st or not st.get("retrieved"):
            return executed
        return self.flavor.gtid_union(executed, st["retrieved"])

    def wait_for_gtid(self, gtid: str, timeout: float) -> bool:
        """True once this server has executed `gtid` (within timeout seconds)."""
        if not gtid or self.flavor.gtid_contains(self.gtid_executed(), gtid):
            return True
        conn = self._conn()
        sock = getattr(conn, "_sock", None)
        # The wait holds the connection longer than the normal read timeout allows.
        if sock is not None:
            sock.settimeout(max(self.read_timeout, timeout + 10))
        try:
            res = self.scalar(self.flavor.wait_for_gtid_sql(gtid, timeout))
        finally:
            if sock is not None and self._c is conn:
                sock.settimeout(self.read_timeout)
        if res is not None and int(res) == 0:
            return True
        return self.flavor.gtid_contains(self.gtid_executed(), gtid)

    def wait_relay_applied(self, timeout: float, poll: float = 0.1) -> bool:
        """True once the SQL thread has applied everything the IO thread received; False on timeout or
        if the SQL thread is stopped with work left (it would never catch up)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.replica_status()
            if st is None:
                return True
            executed = self.gtid_executed()
            if self.flavor.gtid_contains(executed, st.get("retrieved") or ""):
                return True
            if not st.get("sql_running"):
                log.error("%s: SQL thread stopped with received transactions unapplied: %s", self.where,
                          self._scrub(st.get("last_sql_error") or "no error given"))
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)

    def change_source(self, host: str, port: int, user: str, password: str, tls: bool = False,
                      ca: Optional[str] = None) -> None:
        if password:
            self._secrets.append(password)
        self.execute(self.flavor.change_source(host, port, user, password, tls, ca))

    def start_replica(self) -> None:
        self.execute(self.flavor.start_replica())

    def stop_replica(self) -> None:
        self.execute(self.flavor.stop_replica())

    def reset_replica_all(self) -> None:
        self.execute(self.flavor.reset_replica_all())

    def seed_gtid(self, gtid: str) -> None:
        self.execute(self.flavor.seed_gtid(gtid))

    def bootstrap_users(self, cfg) -> None:
        """Create every account (accounts.py) and the app's on a fresh server (started read-only)."""
        from .accounts import agent_password
        self._secrets += [s for s in cfg.secrets() + [agent_password(cfg)] if s]
        # super_read_only blocks root's CREATE USER too; writes are ours alone during bootstrap.
        self.set_read_only(False)
        try:
            self.execute(self.flavor.bootstrap_users(cfg))
            # Anonymous accounts would shadow 'user'@'%' for local logins.
            for row in self.query("SELECT User AS u, Host AS h FROM mysql.user WHERE User = ''"):
                self.execute(f"DROP USER ''@{quote(row['h'])}")
        finally:
            self.set_read_only(True)

    # ---- semi-sync ---------------------------------------------------------------------------
    def semi_sync_primary(self, enabled: bool, timeout_ms: Optional[int] = None) -> None:
        """`timeout_ms` is for tests: durability semi-sync never lets the ACK wait time out."""
        self.execute(self.flavor.semi_sync_primary(enabled) if timeout_ms is None
                     else self.flavor.semi_sync_primary(enabled, timeout_ms))

    def semi_sync_replica(self, enabled: bool) -> None:
        self.execute(self.flavor.semi_sync_replica(enabled))

    def semi_sync_status(self) -> Dict[str, Any]:
        """{"clients": replicas acknowledging, "status": primary side on, "replica_status": ...}"""
        rows = self.query(self.flavor.semi_sync_status_sql())
        return self.flavor.parse_semi_sync_status(
            {str(r.get("Variable_name")): str(r.get("Value")) for r in rows})

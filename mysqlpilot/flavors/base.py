"""The dialect of one server flavor and version: argv, SQL text and text parsing. No I/O except reading
the small binlog-info file a backup leaves behind."""
from __future__ import annotations

import abc
import os
import re
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import PilotError, SnapshotError

VersionTuple = Tuple[int, int, int]
LATEST = 999      # stands for "newest patch of the series" when a version omits it


def parse_version(version: str) -> Tuple[VersionTuple, Tuple[int, ...]]:
    """``"5.6.21-70.0"`` -> ``((5, 6, 21), (70, 0))``; ``"10.11"`` -> ``((10, 11, LATEST), ())``.

    A series without a patch level ("5.7", "8.0") means its latest release: nobody runs 8.0.0, and the
    config default "8.0" should get the 8.0.22+ syntax. The second part is a vendor release suffix
    (Percona's ``-70.0``), empty if absent."""
    m = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-(\d+(?:\.\d+)*))?", version or "")
    if not m:
        raise PilotError(f"flavor version {version!r} is not a version number such as 10.11 or 8.0.36; "
                         "check flavor_version")
    major = int(m.group(1))
    minor = int(m.group(2)) if m.group(2) else LATEST
    patch = int(m.group(3)) if m.group(3) else LATEST
    rel = tuple(int(x) for x in m.group(4).split(".")) if m.group(4) else ()
    return (major, minor, patch), rel


def quote(value: Any) -> str:
    """A SQL string literal. Escapes backslash and quote (the server runs without NO_BACKSLASH_ESCAPES)
    plus NUL/newlines so a value can never end the statement."""
    s = str(value)
    for a, b in (("\\", "\\\\"), ("'", "\\'"), ("\0", "\\0"), ("\n", "\\n"), ("\r", "\\r"),
                 ("\x1a", "\\Z")):
        s = s.replace(a, b)
    return f"'{s}'"


def source_tls(tls: bool, ca: Optional[str], words: str = "MASTER") -> str:
    """The CHANGE ... TO options for an encrypted replication connection ("" without TLS): with a CA, the
    replica verifies the source's certificate and that it names the source's address."""
    if not tls:
        return ""
    out = f", {words}_SSL=1"
    if ca:
        out += f", {words}_SSL_CA={quote(ca)}, {words}_SSL_VERIFY_SERVER_CERT=1"
    return out


def quote_ident(name: str) -> str:
    return "`" + str(name).replace("`", "``") + "`"


def account(user: str, host: str = "%") -> str:
    return f"{quote(user)}@{quote(host)}"


def option_value(value: Any) -> str:
    """A value for a my.cnf-style option file, double-quoted with escapes (used for passwords)."""
    s = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{s}"'


def defaults_file_text(user: str, password: Optional[str], socket: Optional[str] = None,
                       host: Optional[str] = None, port: Optional[int] = None, ssl_ca: Optional[str] = None) -> str:
    """Content of a 0600 defaults-extra-file for client tools, so no password reaches argv."""
    lines = ["[client]", f"user={option_value(user)}"]
    if password:
        lines.append(f"password={option_value(password)}")
    if socket:
        lines.append(f"socket={socket}")
    if host:
        lines.append(f"host={host}")
    if port:
        lines.append(f"port={int(port)}")
    if ssl_ca:
        lines.append(f"ssl-ca={ssl_ca}")        # TLS to a member, its certificate checked against this CA
    return "\n".join(lines) + "\n"


# The wait for a replica's semi-sync ACK must not time out: a timeout acknowledges commits no replica has
# (after a freeze, at once). The largest value both servers accept, about 49.7 days: MariaDB 10.11 takes
# up to 2^64-1 ms, MySQL 8.x/9.x up to 4294967295 ms.
SEMI_SYNC_NO_TIMEOUT_MS = 4294967295

_POS_RE = re.compile(r"binlog position: filename '([^']*)', position '?(\d+)'?"
                     r"(?:,\s*GTID of the last change '([^']*)')?", re.S)


def _source_errno(errno: int, text: str) -> int:
    """MySQL 8.0.23+ reports the source's refusal as 13114 with the source's code in the text ("Got fatal
    error 1236 from source"): the decisions read the source's code."""
    if errno == 13114:
        m = re.search(r"fatal error (\d+) from (?:source|master)", text)
        if m:
            return int(m.group(1))
    return errno


class Flavor(abc.ABC):
    """One server dialect. Subclasses: MariaDBFlavor, MySQLFlavor (also Percona)."""

    name: str = ""
    dialect: str = ""            # "mariadb" or "mysql": which GTID syntax
    replayed_gtids_sql: str = ""     # besides gtid_executed_sql, where a restore's replayed GTIDs show
    server_binary: str = ""

    def __init__(self, version: str):
        self.version = version
        self.version_tuple, self.release = parse_version(version)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.version}>"

    def at_least(self, *v: int) -> bool:
        return self.version_tuple >= tuple(v) + (0,) * (3 - len(v))

    # ---- capabilities ------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def has_super_read_only(self) -> bool: ...

    @property
    @abc.abstractmethod
    def backup_tool(self) -> str: ...

    @property
    @abc.abstractmethod
    def stream_extractor(self) -> str: ...

    # ---- config and initialisation -----------------------------------------------------------
    def mycnf_options(self, cfg) -> List[Tuple[str, Any]]:
        """[mysqld] options common to every flavor; subclasses append theirs."""
        opts: List[Tuple[str, Any]] = [
            ("datadir", cfg.datadir),
            ("socket", cfg.socket),
            ("port", cfg.port),
            ("bind-address", cfg.bind_address),
            ("server_id", cfg.server_id),
            # A basename, so the binlog index holds relative names and survives a datadir move.
            ("log_bin", "mysql-bin"),
            ("relay_log", "relay-bin"),
            ("binlog_format", "ROW"),
            # Every commit durable on disk before it is acknowledged: failover math assumes it.
            ("sync_binlog", 1),
            self.binlog_expiry_option(int(getattr(cfg, "binlog_expire_seconds", 0) or 0)),
            ("innodb_flush_log_at_trx_commit", 1),
            # Always start read-only; only the lock holder turns writes on.
            ("read_only", "ON"),
        ]
        if self.has_super_read_only:
            opts.append(("super_read_only", "ON"))
        opts += [
            ("innodb_buffer_pool_size", cfg.innodb_buffer_pool_size),
            ("skip_name_resolve", "ON"),
            ("pid_file", os.path.join(cfg.state_dir, "mysqld.pid")),
            ("log_error", os.path.join(cfg.state_dir, "mysqld.err")),
            ("report_host", cfg.advertise_host),
            ("report_port", cfg.port),
        ]
        if getattr(cfg, "mysql_tls_cert", None):
            opts += [("ssl_cert", cfg.mysql_tls_cert), ("ssl_key", cfg.mysql_tls_key)]
            if cfg.mysql_tls_ca:
                opts.append(("ssl_ca", cfg.mysql_tls_ca))
        if getattr(cfg, "require_secure_transport", False):
            opts.append(("require_secure_transport", "ON"))
        return opts


    def binlog_expiry_option(self, seconds: int) -> Tuple[str, Any]:
        """The my.cnf option that has mysqld purge binlogs older than `seconds` (0: never)."""
        if self.binlog_expire_seconds_since is not None and self.at_least(*self.binlog_expire_seconds_since):
            return ("binlog_expire_logs_seconds", seconds)
        return ("expire_logs_days", -(-seconds // 86400))      # whole days, rounded up: never sooner

    # The first version with binlog_expire_logs_seconds (None: none has it); set per flavor.
    binlog_expire_seconds_since: Optional[Tuple[int, ...]] = None

    def mycnf(self, cfg) -> str:
        lines = ["# Written by mysqlpilot; rewritten at every start. Do not edit.", "[mysqld]"]
        # Then the operator's own options (`mysqld.<option>`, never one of ours: cluster_config.OWNED).
        for key, val in self.mycnf_options(cfg) + sorted((getattr(cfg, "mysqld", None) or {}).items()):
            lines.append(f"{key}={val}")
        lines += ["", "[client]", f"socket={cfg.socket}", f"port={cfg.port}", ""]
        return "\n".join(lines)

    @abc.abstractmethod
    def install_db_cmd(self, cfg) -> List[str]: ...

    def bootstrap_login(self) -> str:
        """The account of bootstrap's first connection over the socket, before any password exists: a
        freshly initialised datadir's root@localhost, with no password."""
        return "root"

    def server_cmd(self, cfg, binary: str, extra_args: Sequence[str] = ()) -> List[str]:
        # --defaults-file must come first or mysqld ignores it.
        return [binary, f"--defaults-file={cfg.mycnf}", f"--user={cfg.mysqld_user}", *extra_args]

    # ---- SQL builders ------------------------------------------------------------------------
    def set_read_only(self, on: bool) -> List[str]:
        if not self.has_super_read_only:
            return [f"SET GLOBAL read_only = {'ON' if on else 'OFF'}"]
        if on:
            return ["SET GLOBAL read_only = ON", "SET GLOBAL super_read_only = ON"]
        return ["SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"]

    def read_only_sql(self) -> str:
        # Fencing confirms that nobody can write. Where super_read_only exists, read_only alone still lets
        # root (SUPER / CONNECTION_ADMIN) write, and super_read_only=ON implies read_only=ON.
        if self.has_super_read_only:
            return "SELECT @@GLOBAL.super_read_only AS read_only"
        return "SELECT @@GLOBAL.read_only AS read_only"

    def binlog_status_sql(self) -> str:
        """The binary log position of this server (file, position[, executed GTID set])."""
        return "SHOW MASTER STATUS"

    def reset_binlogs(self) -> List[str]:
        """Drop every binary log (and, on MySQL, the executed GTID set)."""
        return ["RESET MASTER"]

    # ---- snapshot method ---------------------------------------------------------------------
    @property
    def supports_clone(self) -> bool:
        """The CLONE plugin (MySQL 8.0.17+)."""
        return False

    @property
    def default_snapshot_method(self) -> str:
        """"backup-tool" (mariadb-backup / XtraBackup streaming xbstream) or "clone" (CLONE LOCAL DATA
        DIRECTORY, then a tar stream of the copy)."""
        return "backup-tool"

    @abc.abstractmethod
    def bootstrap_users(self, cfg) -> List[str]: ...

    @abc.abstractmethod
    def change_source(self, host: str, port: int, user: str, password: str, tls: bool = False,
                      ca: Optional[str] = None) -> List[str]: ...

    @abc.abstractmethod
    def start_replica(self) -> List[str]: ...

    @abc.abstractmethod
    def stop_replica(self) -> List[str]: ...

    @abc.abstractmethod
    def reset_replica_all(self) -> List[str]: ...

    @abc.abstractmethod
    def seed_gtid(self, gtid: str) -> List[str]: ...

    @abc.abstractmethod
    def replica_status_sql(self) -> str: ...

    @abc.abstractmethod
    def gtid_executed_sql(self) -> str:
        """One row, one column: this server's executed position/set."""

    @abc.abstractmethod
    def semi_sync_primary(self, enabled: bool, timeout_ms: int = SEMI_SYNC_NO_TIMEOUT_MS) -> List[str]:
        """Enabling: AFTER_SYNC, wait also while no replica is connected, and `timeout_ms` (tests only)."""

    @abc.abstractmethod
    def semi_sync_replica(self, enabled: bool) -> List[str]: ...

    @abc.abstractmethod
    def semi_sync_status_sql(self) -> str: ...

    @abc.abstractmethod
    def parse_semi_sync_status(self, rows: Dict[str, str]) -> Dict[str, Any]: ...

    @abc.abstractmethod
    def wait_for_gtid_sql(self, gtid: str, timeout: float) -> str:
        """One row, one column; 0 means reached."""

    def processlist_sql(self) -> str:
        return ("SELECT ID AS id, USER AS user, COMMAND AS command FROM information_schema.PROCESSLIST "
                "WHERE ID <> CONNECTION_ID()")

    # Threads that belong to replication or the server itself: never killed when fencing.
    internal_commands = ("Binlog Dump", "Binlog Dump GTID", "Daemon", "Slave_IO", "Slave_SQL",
                         "Slave_worker", "Register Slave")

    def parse_replica_status(self, row: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        """Normalise a SHOW SLAVE/REPLICA STATUS row (either spelling) to stable keys."""
        if not row:
            return None

        def g(*names: str) -> Any:
            for n in names:
                if n in row and row[n] is not None:
                    return row[n]
            return None

        def num(v: Any) -> Optional[int]:
            try:
                return int(v) if v is not None and v != "" else None
            except (TypeError, ValueError):
                return None

        io = g("Slave_IO_Running", "Replica_IO_Running") or ""
        sql = g("Slave_SQL_Running", "Replica_SQL_Running") or ""
        lag = g("Seconds_Behind_Master", "Seconds_Behind_Source")
        retrieved = _squash(g("Retrieved_Gtid_Set") or "")
        io_pos = _squash(g("Gtid_IO_Pos") or "")
        return {
            "io_running": io == "Yes",
            "io_state": io,
            "sql_running": sql == "Yes",
            "lag_seconds": float(lag) if lag is not None and lag != "" else None,
            "source_host": g("Master_Host", "Source_Host") or "",
            "source_port": num(g("Master_Port", "Source_Port")),
            "source_user": g("Master_User", "Source_User") or "",
            "last_io_errno": _source_errno(num(g("Last_IO_Errno")) or 0, g("Last_IO_Error") or ""),
            "last_io_error": g("Last_IO_Error") or "",
            "last_sql_errno": num(g("Last_SQL_Errno")) or 0,
            "last_sql_error": g("Last_SQL_Error") or "",
            "gtid_io_pos": io_pos if self.dialect == "mariadb" else retrieved,
            "retrieved": retrieved if self.dialect == "mysql" else io_pos,
            "executed_gtid_set": _squash(g("Executed_Gtid_Set") or ""),
            "source_log_file": g("Master_Log_File", "Source_Log_File") or "",
            "read_pos": num(g("Read_Master_Log_Pos", "Read_Source_Log_Pos")),
            "exec_log_file": g("Relay_Master_Log_File", "Relay_Source_Log_File") or "",
            "exec_pos": num(g("Exec_Master_Log_Pos", "Exec_Source_Log_Pos")),
            "using_gtid": str(g("Using_Gtid", "Auto_Position") or ""),
            "sql_state": g("Slave_SQL_Running_State", "Replica_SQL_Running_State") or "",
        }

    # ---- GTID math ---------------------------------------------------------------------------
    def gtid_contains(self, a: str, b: str) -> bool:
        from .. import gtid
        return gtid.contains(self.dialect, a or "", b or "")

    def gtid_subtract(self, a: str, b: str) -> str:
        from .. import gtid
        return gtid.subtract(self.dialect, a or "", b or "")

    def gtid_count(self, a: str) -> int:
        from .. import gtid
        return gtid.count(self.dialect, a or "")

    def gtid_union(self, a: str, b: str) -> str:
        """Everything in either (MariaDB: per-domain highest)."""
        from .. import gtid
        if self.dialect == "mariadb":
            pa, pb = gtid.parse_mariadb(a or ""), gtid.parse_mariadb(b or "")
            for d, v in pb.items():
                if d not in pa or v[1] > pa[d][1]:
                    pa[d] = v
            return gtid.format_mariadb(pa)
        return gtid.mysql_union(a or "", b or "")

    # ---- backup / restore --------------------------------------------------------------------
    @abc.abstractmethod
    def backup_cmd(self, defaults_file: str, datadir: str, socket: str, target_dir: Optional[str] = None,
                   from_replica: bool = False) -> List[str]: ...

    def extract_cmd(self, target_dir: str) -> List[str]:
        """Reads the xbstream on stdin and unpacks it into target_dir (which must be empty)."""
        return [self.stream_extractor, "-x", "-C", target_dir]

    @abc.abstractmethod
    def prepare_cmd(self, backup_dir: str) -> List[str]: ...

    def backup_ok(self, stderr_text: str) -> bool:
        tail = (stderr_text or "").rstrip().splitlines()[-3:]
        return any("completed OK!" in line for line in tail)

    def parse_backup_position(self, stderr_text: str) -> Tuple[str, int, str]:
        """(binlog file, position, GTID) from the backup tool's log; ("", 0, "") if it printed none
        (binlog off). The last match wins."""
        found = None
        for m in _POS_RE.finditer(stderr_text or ""):
            found = m
        if not found:
            return "", 0, ""
        return found.group(1), int(found.group(2)), _squash(found.group(3) or "")

    def read_binlog_info(self, backup_dir: str) -> Tuple[str, int, str]:
        """(binlog file, position, GTID) of a backup, from the file the tool writes next to the data."""
        for name in ("xtrabackup_binlog_info", "mariadb_backup_binlog_info"):
            path = os.path.join(backup_dir, name)
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise SnapshotError(f"cannot read {path}: {exc.strerror}") from None
            return parse_binlog_info(text, path)
        raise SnapshotError(f"backup in {backup_dir} has no xtrabackup_binlog_info or "
                            "mariadb_backup_binlog_info; was the source's binlog enabled?")

    def default_tmp(self) -> str:
        return tempfile.gettempdir()


def _squash(text: str) -> str:
    """GTID sets as servers print them may wrap over lines; remove all whitespace."""
    return re.sub(r"\s+", "", text or "")


def parse_binlog_info(text: str, where: str = "binlog info") -> Tuple[str, int, str]:
    """``"mysql-bin.000002\\t1234\\t0-1-5"``; a MySQL GTID set may continue over further lines."""
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        raise SnapshotError(f"{where} is empty; the backup did not record a binlog position")
    fields = lines[0].split("\t") if "\t" in lines[0] else lines[0].split()
    if len(fields) < 2 or not fields[1].strip().isdigit():
        raise SnapshotError(f"{where}: first line {lines[0][:80]!r} is not 'file<TAB>position[<TAB>gtid]'")
    gtid = "\t".join(fields[2:]) + "".join(lines[1:])
    return fields[0].strip(), int(fields[1]), _squash(gtid)

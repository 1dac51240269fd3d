"""MariaDB 10.x / 11.x dialect."""
from __future__ import annotations

import os
import pwd
from typing import Any, Dict, List, Optional, Tuple

from .base import SEMI_SYNC_NO_TIMEOUT_MS, Flavor, account, quote, quote_ident, source_tls


class MariaDBFlavor(Flavor):
    name = "mariadb"
    dialect = "mariadb"
    binlog_expire_seconds_since = (10, 6, 1)
    server_binary = "mariadbd"
    binlog_tool = "mariadb-binlog"
    # Replayed GTIDs keep their source's server id, so gtid_current_pos may not show them; the binlog does.
    replayed_gtids_sql = "SELECT @@GLOBAL.gtid_binlog_pos"
    client_tool = "mariadb"

    @property
    def has_super_read_only(self) -> bool:
        # MariaDB has no super_read_only. Under read_only, accounts with READ_ONLY ADMIN can still write
        # (checked on 10.11: `GRANT ALL ON *.*` includes it, so root@'%' wrote into a read-only server).
        # See revoke_remote_read_only_admin for how we close that for remote root.
        return False

    @property
    def revoke_remote_read_only_admin(self) -> bool:
        """From 10.11 SUPER no longer implies READ_ONLY ADMIN, so revoking it from a remote admin makes
        read_only bind it too (a fenced primary then refuses its writes). root@localhost keeps
        it: mysqlpilot toggles read_only over the socket. Before 10.11 SUPER implies it: no point."""
        return self.at_least(10, 11)

    @property
    def backup_tool(self) -> str:
        return "mariadb-backup"

    @property
    def stream_extractor(self) -> str:
        return "mbstream"

    def mycnf_options(self, cfg) -> List[Tuple[str, Any]]:
        opts = super().mycnf_options(cfg)
        opts += [
            ("log_slave_updates", "ON"),
            ("gtid_strict_mode", "ON"),
            ("gtid_domain_id", 0),
            ("skip_slave_start", "ON"),
            ("slave_net_timeout", 10),      # notice a dead primary in seconds, not the default 60
        ]
        if self.at_least(10, 3):
            # Built in since 10.3: the variables exist without loading a plugin.
            opts += [("rpl_semi_sync_master_enabled", "OFF"), ("rpl_semi_sync_slave_enabled", "OFF")]
        else:
            opts += [("plugin-load-add", "semisync_master.so;semisync_slave.so"),
                     ("loose-rpl_semi_sync_master_enabled", "OFF"),
                     ("loose-rpl_semi_sync_slave_enabled", "OFF")]
        return opts

    def install_db_cmd(self, cfg) -> List[str]:
        return ["mariadb-install-db", f"--defaults-file={cfg.mycnf}", f"--user={cfg.mysqld_user}",
                "--auth-root-authentication-method=socket", "--skip-test-db"]

    def bootstrap_login(self) -> str:
        """install-db with socket authentication makes two passwordless accounts, reachable only over the
        socket by the OS user of the same name: root@localhost, and <--user>@localhost (the mysqld user,
        with all privileges). The images run the hooks as that user (`mysqlpilot entrypoint` drops root),
        so bootstrap logs in as whichever OS user it runs as; as root@localhost it got error 1698."""
        return "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def bootstrap_users(self, cfg) -> List[str]:
        from ..accounts import ensure_sql      # accounts imports flavors.base
        rp = quote(cfg.root_password)
        out = [
            # Keep OS-root socket login (used before any password exists) and add the password.
            f"ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD({rp}) "
            "OR unix_socket",
        ] + ensure_sql(self, cfg)
        repl = account(cfg.repl_user)
        privs = "REPLICATION SLAVE, REPLICATION CLIENT"
        if self.at_least(10, 5):
            privs += ", BINLOG MONITOR, SLAVE MONITOR"
        out += [
            f"CREATE USER IF NOT EXISTS {repl} IDENTIFIED BY {quote(cfg.repl_password)}",
            f"ALTER USER {repl} IDENTIFIED BY {quote(cfg.repl_password)}",
            f"GRANT {privs} ON *.* TO {repl}",
        ]
        out += _app_user(cfg)
        return out

    def change_source(self, host: str, port: int, user: str, password: str, tls: bool = False,
                      ca: Optional[str] = None) -> List[str]:
        return [f"CHANGE MASTER TO MASTER_HOST={quote(host)}, MASTER_PORT={int(port)}, "
                f"MASTER_USER={quote(user)}, MASTER_PASSWORD={quote(password)}, "
                "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1" + source_tls(tls, ca)]

    def start_replica(self) -> List[str]:
        return ["START SLAVE"]

    def stop_replica(self) -> List[str]:
        return ["STOP SLAVE"]

    def reset_replica_all(self) -> List[str]:
        return ["RESET SLAVE ALL"]

    def seed_gtid(self, gtid: str) -> List[str]:
        # Replication must be stopped; MASTER_USE_GTID=slave_pos then resumes from here. The binlog state
        # is seeded too (only possible while the binlog is empty, i.e. right after a restore): without it
        # this node, once primary, cannot serve replicas restored from the same snapshot - its binlog
        # would not prove the snapshot's GTID, and strict mode refuses them (error 1236).
        return ["RESET MASTER", f"SET GLOBAL gtid_binlog_state = {quote(gtid)}",
                f"SET GLOBAL gtid_slave_pos = {quote(gtid)}"]

    def replica_status_sql(self) -> str:
        return "SHOW SLAVE STATUS"

    def gtid_executed_sql(self) -> str:
        # gtid_current_pos: per domain, the binlog position if this server wrote the last GTID there,
        # else gtid_slave_pos. It is right both for a primary and for a freshly restored replica whose
        # binlog is still empty (gtid_binlog_pos would be "" there).
        return "SELECT @@GLOBAL.gtid_current_pos"

    def semi_sync_primary(self, enabled: bool, timeout_ms: int = SEMI_SYNC_NO_TIMEOUT_MS) -> List[str]:
        # AFTER_SYNC: no other client sees a commit before a replica has it (lossless semi-sync).
        # wait_no_slave: with no replica connected, commits wait rather than turn async.
        out = [f"SET GLOBAL rpl_semi_sync_master_timeout = {int(timeout_ms)}",
               "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC",
               "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON"] if enabled else []
        return out + [f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if enabled else 'OFF'}"]

    def semi_sync_replica(self, enabled: bool) -> List[str]:
        # Takes effect when the IO thread (re)connects.
        return [f"SET GLOBAL rpl_semi_sync_slave_enabled = {'ON' if enabled else 'OFF'}"]

    def semi_sync_status_sql(self) -> str:
        return "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_%'"

    def parse_semi_sync_status(self, rows: Dict[str, str]) -> Dict[str, Any]:
        return _semi_status(rows, "master", "slave")

    def wait_for_gtid_sql(self, gtid: str, timeout: float) -> str:
        # Waits on gtid_slave_pos: meant for replicas. 0 = reached, -1 = timeout.
        return f"SELECT MASTER_GTID_WAIT({quote(gtid)}, {float(timeout):g})"

    def backup_cmd(self, defaults_file: str, datadir: str, socket: str, target_dir: Optional[str] = None,
                   from_replica: bool = False) -> List[str]:
        cmd = ["mariadb-backup", f"--defaults-extra-file={defaults_file}", "--backup", "--stream=xbstream",
               f"--target-dir={target_dir or self.default_tmp()}", f"--datadir={datadir}",
               f"--socket={socket}"]
        if from_replica:
            cmd += ["--slave-info", "--safe-slave-backup"]
        return cmd

    def prepare_cmd(self, backup_dir: str) -> List[str]:
        return ["mariadb-backup", "--prepare", f"--target-dir={backup_dir}"]


def _app_user(cfg) -> List[str]:
    out: List[str] = []
    if cfg.database:
        out.append(f"CREATE DATABASE IF NOT EXISTS {quote_ident(cfg.database)}")
    if cfg.user:
        acct = account(cfg.user)
        out += [f"CREATE USER IF NOT EXISTS {acct} IDENTIFIED BY {quote(cfg.password)}",
                f"ALTER USER {acct} IDENTIFIED BY {quote(cfg.password)}"]
        if cfg.database:
            out.append(f"GRANT ALL PRIVILEGES ON {quote_ident(cfg.database)}.* TO {acct}")
    return out


def _semi_status(rows: Dict[str, str], primary: str, replica: str) -> Dict[str, Any]:
    low = {k.lower(): v for k, v in (rows or {}).items()}

    def on(key: str) -> bool:
        return str(low.get(key, "")).upper() == "ON"

    try:
        clients = int(low.get(f"rpl_semi_sync_{primary}_clients", 0) or 0)
    except ValueError:
        clients = 0
    return {"clients": clients, "status": on(f"rpl_semi_sync_{primary}_status"),
            "replica_status": on(f"rpl_semi_sync_{replica}_status")}

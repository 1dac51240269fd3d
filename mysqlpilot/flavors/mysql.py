"""MySQL 5.6 / 5.7 / 8.x dialect; Percona Server is the same dialect with its own super_read_only history.

Version switches (from the MySQL release notes):
  5.7.6   CREATE USER IF NOT EXISTS, ALTER USER ... IDENTIFIED BY, mysqld --initialize-insecure
  5.7.8   super_read_only (Percona: 5.6.21-70.0)
  8.0.22  START/STOP/RESET REPLICA, SHOW REPLICA STATUS
  8.0.23  CHANGE REPLICATION SOURCE TO ... SOURCE_*
  8.0.26  semisync_source/semisync_replica plugins, rpl_semi_sync_source_*, *_replica_* option names
  8.0.17  the CLONE plugin (mysql_clone.so): CLONE LOCAL DATA DIRECTORY, performance_schema.clone_status
  8.2     RESET BINARY LOGS AND GTIDS, SHOW BINARY LOG STATUS (RESET/SHOW MASTER and CHANGE MASTER,
          START/STOP SLAVE, SHOW SLAVE STATUS are gone in 8.4; 9.x is the same dialect as 8.4)
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from .base import SEMI_SYNC_NO_TIMEOUT_MS, Flavor, account, quote, source_tls
from .mariadb import _app_user, _semi_status


class MySQLFlavor(Flavor):
    name = "mysql"
    dialect = "mysql"
    binlog_expire_seconds_since = (8, 0, 1)
    server_binary = "mysqld"
    binlog_tool = "mysqlbinlog"
    client_tool = "mysql"

    @property
    def has_super_read_only(self) -> bool:
        return self.at_least(5, 7, 8)

    @property
    def xtrabackup_24(self) -> bool:
        return not self.at_least(8, 0)

    @property
    def backup_tool(self) -> str:
        return "innobackupex" if self.xtrabackup_24 else "xtrabackup"

    @property
    def stream_extractor(self) -> str:
        return "xbstream"

    @property
    def replica_words(self) -> bool:        # START REPLICA etc.
        return self.at_least(8, 0, 22)

    @property
    def source_words(self) -> bool:         # CHANGE REPLICATION SOURCE TO
        return self.at_least(8, 0, 23)

    @property
    def new_semisync(self) -> bool:
        return self.at_least(8, 0, 26)

    @property
    def binary_log_words(self) -> bool:     # RESET BINARY LOGS AND GTIDS, SHOW BINARY LOG STATUS
        return self.at_least(8, 2)

    @property
    def supports_clone(self) -> bool:
        return self.at_least(8, 0, 17)

    @property
    def default_snapshot_method(self) -> str:
        # Oracle MySQL 8.0.17+ ships CLONE and no backup tool (XtraBackup is Percona's, and 8.4/9.x have
        # none that streams); 5.6/5.7 have no CLONE and use XtraBackup 2.4.
        return "clone" if self.supports_clone else "backup-tool"

    def binlog_status_sql(self) -> str:
        return "SHOW BINARY LOG STATUS" if self.binary_log_words else "SHOW MASTER STATUS"

    def reset_binlogs(self) -> List[str]:
        return ["RESET BINARY LOGS AND GTIDS" if self.binary_log_words else "RESET MASTER"]

    def clone_local_sql(self, target_dir: str) -> List[str]:
        """A consistent physical copy of this server into target_dir (which must not exist yet)."""
        return [f"CLONE LOCAL DATA DIRECTORY = {quote(target_dir)}"]

    def clone_donor_list_sql(self, host: str, port: int) -> List[str]:
        """On the recipient, before CLONE INSTANCE: the donors it may copy from (a literal host:port)."""
        return [f"SET GLOBAL clone_valid_donor_list = {quote(host + ':' + str(int(port)))}"]

    def clone_instance_sql(self, host: str, port: int, user: str, password: str, target_dir: str) -> List[str]:
        """On the recipient: copy the donor into target_dir (a new directory; the recipient's own datadir
        is left alone, so no restart under a supervisor is needed). The donor's user needs BACKUP_ADMIN,
        the recipient's CLONE_ADMIN."""
        return [f"CLONE INSTANCE FROM {quote(user)}@{quote(host)}:{int(port)} IDENTIFIED BY {quote(password)} "
                f"DATA DIRECTORY = {quote(target_dir)}"]

    def plugins(self) -> List[str]:
        """The plugins every node loads at start. A CLONE recipient loads the same: the donor's active
        plugins must be active on the recipient."""
        p, r = ("source", "replica") if self.new_semisync else ("master", "slave")
        out = [f"semisync_{p}.so", f"semisync_{r}.so"]
        if self.supports_clone:
            # Loaded at start (INSTALL PLUGIN would write mysql.plugin, refused under super_read_only).
            out.append("mysql_clone.so")
        return out

    def clone_status_sql(self) -> str:
        return ("SELECT STATE AS state, ERROR_NO AS error_no, ERROR_MESSAGE AS error_message, "
                "BINLOG_FILE AS binlog_file, BINLOG_POSITION AS binlog_pos, GTID_EXECUTED AS gtid "
                "FROM performance_schema.clone_status")

    def mycnf_options(self, cfg) -> List[Tuple[str, Any]]:
        opts = super().mycnf_options(cfg)
        new = self.new_semisync
        opts += [
            ("log_replica_updates" if new else "log_slave_updates", "ON"),
            ("gtid_mode", "ON"),
            ("enforce_gtid_consistency", "ON"),
            ("skip_replica_start" if new else "skip_slave_start", "ON"),
            ("replica_net_timeout" if new else "slave_net_timeout", 10),
        ]
        if not self.at_least(8, 0):
            # Crash-safe replication (the default from 8.0 on).
            opts += [("master_info_repository", "TABLE"), ("relay_log_info_repository", "TABLE"),
                     ("relay_log_recovery", "ON")]
        p, r = ("source", "replica") if new else ("master", "slave")
        # One plugin-load-add with a ;-list (repeated keys upset ini parsers); loose- options let a
        # build without the plugins still start.
        opts += [("plugin-load-add", ";".join(self.plugins())),
                 (f"loose-rpl_semi_sync_{p}_enabled", "OFF"), (f"loose-rpl_semi_sync_{r}_enabled", "OFF")]
        if self.at_least(8, 0):
            # The X plugin listens on 33060 by default: nodes sharing a host would fight over it.
            opts.append(("loose-mysqlx", "OFF"))
        return opts

    def install_db_cmd(self, cfg) -> List[str]:
        if not self.at_least(5, 7, 6):
            # 5.6 has no --initialize; root@localhost starts with an empty password.
            return ["mysql_install_db", f"--defaults-file={cfg.mycnf}", f"--user={cfg.mysqld_user}",
                    f"--datadir={cfg.datadir}"]
        return [self.server_binary, f"--defaults-file={cfg.mycnf}", f"--user={cfg.mysqld_user}",
                "--initialize-insecure"]

    def bootstrap_users(self, cfg) -> List[str]:
        from ..accounts import ensure_sql      # accounts imports flavors.base
        rp = quote(cfg.root_password)
        repl = account(cfg.repl_user)
        privs = "REPLICATION SLAVE, REPLICATION CLIENT"
        if not self.at_least(5, 7, 6):
            # No CREATE USER IF NOT EXISTS / ALTER USER IDENTIFIED BY: GRANT creates and sets passwords.
            out = [
                f"SET PASSWORD FOR 'root'@'localhost' = PASSWORD({rp})", *ensure_sql(self, cfg),
                f"GRANT {privs} ON *.* TO {repl} IDENTIFIED BY {quote(cfg.repl_password)}",
            ]
            if cfg.database:
                out.append(f"CREATE DATABASE IF NOT EXISTS `{cfg.database.replace('`', '``')}`")
            if cfg.user:
                target = f"`{cfg.database.replace('`', '``')}`.*" if cfg.database else "*.*"
                priv = "ALL PRIVILEGES" if cfg.database else "USAGE"
                out.append(f"GRANT {priv} ON {target} TO {account(cfg.user)} IDENTIFIED BY {quote(cfg.password)}")
            return out
        out = [
            f"ALTER USER 'root'@'localhost' IDENTIFIED BY {rp}", *ensure_sql(self, cfg),
            f"CREATE USER IF NOT EXISTS {repl} IDENTIFIED BY {quote(cfg.repl_password)}",
            f"ALTER USER {repl} IDENTIFIED BY {quote(cfg.repl_password)}",
            f"GRANT {privs} ON *.* TO {repl}",
        ]
        if self.supports_clone:
            # A donor of CLONE INSTANCE (seed_method) lets the replication user copy it.
            out.append(f"GRANT BACKUP_ADMIN ON *.* TO {repl}")
        return out + _app_user(cfg)

    def change_source(self, host: str, port: int, user: str, password: str, tls: bool = False,
                      ca: Optional[str] = None) -> List[str]:
        if self.source_words:
            return [f"CHANGE REPLICATION SOURCE TO SOURCE_HOST={quote(host)}, SOURCE_PORT={int(port)}, "
                    f"SOURCE_USER={quote(user)}, SOURCE_PASSWORD={quote(password)}, "
                    "SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, GET_SOURCE_PUBLIC_KEY=1"
                    + source_tls(tls, ca, "SOURCE")]
        sql = (f"CHANGE MASTER TO MASTER_HOST={quote(host)}, MASTER_PORT={int(port)}, "
               f"MASTER_USER={quote(user)}, MASTER_PASSWORD={quote(password)}, "
               "MASTER_AUTO_POSITION=1, MASTER_CONNECT_RETRY=1" + source_tls(tls, ca))
        if self.at_least(8, 0):
            # caching_sha2_password over plain TCP needs the source's RSA key.
            sql += ", GET_MASTER_PUBLIC_KEY=1"
        return [sql]

    def start_replica(self) -> List[str]:
        return ["START REPLICA" if self.replica_words else "START SLAVE"]

    def stop_replica(self) -> List[str]:
        return ["STOP REPLICA" if self.replica_words else "STOP SLAVE"]

    def reset_replica_all(self) -> List[str]:
        return ["RESET REPLICA ALL" if self.replica_words else "RESET SLAVE ALL"]

    def seed_gtid(self, gtid: str) -> List[str]:
        # gtid_purged can only be set on an empty gtid_executed, hence the reset first.
        return self.reset_binlogs() + [f"SET GLOBAL gtid_purged = {quote(gtid)}"]

    def replica_status_sql(self) -> str:
        return "SHOW REPLICA STATUS" if self.replica_words else "SHOW SLAVE STATUS"

    def gtid_executed_sql(self) -> str:
        return "SELECT @@GLOBAL.gtid_executed"

    def semi_sync_primary(self, enabled: bool, timeout_ms: int = SEMI_SYNC_NO_TIMEOUT_MS) -> List[str]:
        p, r = ("source", "replica") if self.new_semisync else ("master", "slave")
        out = [f"SET GLOBAL rpl_semi_sync_{p}_timeout = {int(timeout_ms)}"] if enabled else []
        if enabled and self.at_least(5, 7):
            out.append(f"SET GLOBAL rpl_semi_sync_{p}_wait_point = AFTER_SYNC")   # 5.6 has AFTER_COMMIT only
        if enabled:
            out.append(f"SET GLOBAL rpl_semi_sync_{p}_wait_no_{r} = ON")   # no replica connected: still wait
        return out + [f"SET GLOBAL rpl_semi_sync_{p}_enabled = {'ON' if enabled else 'OFF'}"]

    def semi_sync_replica(self, enabled: bool) -> List[str]:
        r = "replica" if self.new_semisync else "slave"
        return [f"SET GLOBAL rpl_semi_sync_{r}_enabled = {'ON' if enabled else 'OFF'}"]

    def semi_sync_status_sql(self) -> str:
        return "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_%'"

    def parse_semi_sync_status(self, rows: Dict[str, str]) -> Dict[str, Any]:
        return _semi_status(rows, *(("source", "replica") if self.new_semisync else ("master", "slave")))

    def wait_for_gtid_sql(self, gtid: str, timeout: float) -> str:
        # 0 = reached, 1 = timeout. Needs at least 1s granularity on 5.7 (integer seconds).
        t = max(1, int(round(timeout))) if not self.at_least(8, 0) else float(timeout)
        return f"SELECT WAIT_FOR_EXECUTED_GTID_SET({quote(gtid)}, {t:g})"

    def backup_cmd(self, defaults_file: str, datadir: str, socket: str, target_dir: Optional[str] = None,
                   from_replica: bool = False) -> List[str]:
        tmp = target_dir or self.default_tmp()
        extra = ["--slave-info", "--safe-slave-backup"] if from_replica else []
        if self.xtrabackup_24:
            # innobackupex takes the scratch dir as its positional argument.
            return ["innobackupex", f"--defaults-extra-file={defaults_file}", "--stream=xbstream",
                    f"--datadir={datadir}", f"--socket={socket}", *extra, "--no-timestamp", tmp]
        return ["xtrabackup", f"--defaults-extra-file={defaults_file}", "--backup", "--stream=xbstream",
                f"--target-dir={tmp}", f"--datadir={datadir}", f"--socket={socket}", *extra]

    def prepare_cmd(self, backup_dir: str) -> List[str]:
        if self.xtrabackup_24:
            return ["innobackupex", "--apply-log", backup_dir]
        return ["xtrabackup", "--prepare", f"--target-dir={backup_dir}"]


class PerconaFlavor(MySQLFlavor):
    name = "percona"

    @property
    def default_snapshot_method(self) -> str:
        # Percona images ship XtraBackup for every version: keep one method across 5.6 to 8.x.
        return "backup-tool"

    @property
    def has_super_read_only(self) -> bool:
        if self.at_least(5, 7, 8):
            return True
        if self.version_tuple[:2] != (5, 6):
            return False
        # Percona added it in 5.6.21-70.0; a bare "5.6.21" cannot tell 69.x from 70.x, so assume not.
        if self.version_tuple > (5, 6, 21):
            return True
        return self.version_tuple == (5, 6, 21) and bool(self.release) and self.release >= (70, 0)

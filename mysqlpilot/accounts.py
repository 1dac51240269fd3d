"""The MySQL accounts mysqlpilot keeps, one per purpose (issue 23), and the move away from root@'%'.

- root: the local socket only (bootstrap, fencing, promotion, restores: everything that writes).
- agent (`agent_user`, default mysqlpilot@'%'): what one node asks another over TCP (GTID sets, replica
  status, read_only, waiting for a GTID) and snapshot verification on a replica (FTWRL, CHECKSUM TABLE).
- repl: replication (and the CLONE donor on MySQL), set up by the flavors.
- monitor (`monitor_user`, when `monitor_password` is set): PROCESS, REPLICATION CLIENT, for HAProxy,
  ProxySQL and exporters.
- an optional remote admin (`remote_admin_user`), which `local up` keeps as root@'%' for the tests.

An existing cluster migrates on its own: a primary of this version creates the agent (and monitor) account
and drops root@'%' once every member says it logs in as the agent (MemberState.accounts). Until then a node
that the agent cannot log in to yet (its primary is older) is asked as root, as before."""
from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Callable, List, Optional, Tuple

from .errors import PilotError
from .flavors.base import account, quote

log = logging.getLogger(__name__)

# Published in MemberState.accounts: 2 = this node logs in to the others as the agent account.
SCHEME = 2


def agent_password(cfg) -> str:
    """`agent_password`, or one derived from root's: an upgrade needs no new secret, and the agent's
    password does not give root's away."""
    if cfg.agent_password:
        return cfg.agent_password
    return hmac.new(str(cfg.root_password).encode(), b"mysqlpilot agent account", hashlib.sha256).hexdigest()[:32]


def agent_privileges(flavor) -> str:
    # SELECT and RELOAD: snapshot verification's CHECKSUM TABLE under FLUSH TABLES WITH READ LOCK.
    privs = "SELECT, RELOAD, REPLICATION CLIENT"
    return privs + (", SLAVE MONITOR" if _mariadb_monitor(flavor) else "")


def monitor_privileges(flavor) -> str:
    return "PROCESS, REPLICATION CLIENT" + (", SLAVE MONITOR" if _mariadb_monitor(flavor) else "")


def _mariadb_monitor(flavor) -> bool:
    # From 10.5 REPLICATION CLIENT is BINLOG MONITOR; SHOW SLAVE STATUS needs SLAVE MONITOR.
    return flavor.name == "mariadb" and flavor.at_least(10, 5)


def _grant(flavor, user: str, password: str, privs: str, host: str = "%") -> List[str]:
    acct, pw = account(user, host), quote(password)
    if flavor.name != "mariadb" and not flavor.at_least(5, 7, 6):
        return [f"GRANT {privs} ON *.* TO {acct} IDENTIFIED BY {pw}"]      # 5.6: GRANT creates and sets
    return [f"CREATE USER IF NOT EXISTS {acct} IDENTIFIED BY {pw}", f"ALTER USER {acct} IDENTIFIED BY {pw}",
            f"GRANT {privs} ON *.* TO {acct}"]


def ensure_sql(flavor, cfg) -> List[str]:
    """The agent, monitor and remote admin accounts as configured (idempotent: bootstrap and every new
    primary run it)."""
    out = _grant(flavor, cfg.agent_user, agent_password(cfg), agent_privileges(flavor))
    if cfg.monitor_password:
        out += _grant(flavor, cfg.monitor_user, cfg.monitor_password, monitor_privileges(flavor))
    if cfg.remote_admin_user:
        out += _grant(flavor, cfg.remote_admin_user, cfg.root_password, "ALL PRIVILEGES")
        out[-1] += " WITH GRANT OPTION"
        if getattr(flavor, "revoke_remote_read_only_admin", False):      # MariaDB 10.11+ only
            # From 10.11 SUPER no longer implies READ_ONLY ADMIN: without it read_only binds this account
            # too, so a fenced primary refuses its writes.
            out.append(f"REVOKE READ_ONLY ADMIN ON *.* FROM {account(cfg.remote_admin_user)}")
    return out


def remote_login(cfg) -> Tuple[str, str, Optional[Tuple[str, str]]]:
    """(user, password, fallback) for a TCP login to another member: the agent account, else root as
    before, for a member whose primary has not created the agent account yet (a rolling upgrade)."""
    fallback = None
    if cfg.root_password and cfg.remote_admin_user != cfg.agent_user:
        fallback = ("root", cfg.root_password)
    return cfg.agent_user, agent_password(cfg), fallback


def remote_server(server_cls: Callable, flavor, cfg, host: str, port: int, **kw):
    user, password, fallback = remote_login(cfg)
    return server_cls(flavor, host=host, port=port, user=user, password=password, fallback=fallback, **kw)


class Accounts:
    """On the primary: make the accounts this version expects, then drop root@'%' once no member still
    logs in with it. Once per promotion; the drop waits for the last older member. In the HA loop (one
    pass, a short read timeout), and never under semi-sync: there a CREATE USER waits for a replica's
    acknowledgement holding MySQL's account lock, and every login waits behind it (seen: a primary whose
    replica left mid-statement stopped answering anyone). Semi-sync clusters get the accounts at
    bootstrap; an older one keeps logging in as root until they are made by hand (docs/security.md)."""

    def __init__(self, cfg, flavor, connect: Callable, state=None):
        self.cfg, self.flavor, self.connect = cfg, flavor, connect
        # The lock generation the accounts were made in, kept in the node's state file: on-change runs
        # the loop in a process of its own, and each would write them to the binlog again.
        self.state = state if state is not None else {}
        self.term = -1
        self.remote_root: Optional[bool] = None      # None: not looked yet
        self.said = ""

    @property
    def ensured(self) -> bool:
        return self.state.get("accounts_term") == self.term

    def on_primary(self, members, term: int) -> None:
        self.term = term
        if self.ensured and (self.cfg.remote_admin_user == "root" or self.remote_root is False):
            return
        if self.cfg.durability == "semi-sync":
            self._say("accounts: not changed automatically under semi-sync durability (an account statement "
                      "waiting for a replica's acknowledgement blocks every login); docs/security.md says how")
            return
        try:
            if not self.ensured:
                self._run(ensure_sql(self.flavor, self.cfg))
                self.state.update(accounts_term=term)
                log.info("accounts: %s@'%%' (agent)%s up to date", self.cfg.agent_user,
                         f", {self.cfg.monitor_user}@'%' (monitor)" if self.cfg.monitor_password else "")
            if self.cfg.remote_admin_user != "root":
                self.drop_remote_root(members)
        except PilotError as exc:
            self._say(f"accounts not brought up to date yet (next pass tries again): {exc}")

    def drop_remote_root(self, members) -> None:
        if self.remote_root is None:
            srv = self.connect()
            try:
                self.remote_root = bool(srv.scalar("SELECT COUNT(*) FROM mysql.user WHERE User = 'root' AND Host = '%'"))
            finally:
                srv.close()
        old = sorted(m.name for m in members if (m.accounts or 0) < SCHEME)
        if not self.remote_root or old:
            if self.remote_root:
                self._say(f"root@'%' kept while {', '.join(old)} may still log in with it (an older version)")
            return
        self._run(["DROP USER 'root'@'%'"])
        self.remote_root = False
        log.warning("accounts: dropped root@'%%': every member logs in as %s now; root is local only",
                    self.cfg.agent_user)

    def _run(self, stmts: List[str]) -> None:
        srv = self.connect()
        try:
            for secret in (agent_password(self.cfg), self.cfg.monitor_password, self.cfg.root_password):
                srv.add_secret(secret)
            for stmt in stmts:
                srv.execute(stmt)
        finally:
            srv.close()

    def _say(self, line: str) -> None:
        if line != self.said:
            self.said = line
            log.info("%s", line)

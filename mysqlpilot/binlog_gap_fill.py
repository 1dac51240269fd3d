"""Closing a gap in the binlog archive from another member's binlogs.

A new primary's archive run starts at its newest binlog whose start set the archive holds. When even its
oldest binlog starts past the archive's end (the old primary's archiver fell behind and the new primary
has purged since), the transactions between are missing. Replicas write what they apply to their own
binlogs, so another member may still hold them: its binlogs are copied, from its newest file whose start
set the archive holds to their current end, as a run of their own (`closes` names the gap). The planner
trusts that run only up to where the next run's history begins, as any run. Read over TCP with the
replication account, which may read binlogs and nothing else.
"""
from __future__ import annotations

import logging
import time
from typing import List, Optional

from . import gtid as gtidlib
from .binlog_archiver import Run, first_file, start_set_sql
from .binlog_catalog import RunManifest
from .errors import PilotError
from .flavors.base import defaults_file_text
from .model import MemberState
from .sqlclient import Server

log = logging.getLogger(__name__)

COPY_TIMEOUT = 3600.0       # seconds for one member's binlogs to be read to their end


class CopyRun(Run):
    """One member's binlogs from `first_file` to their end, read once (no --stop-never)."""

    def __init__(self, cfg, flavor, store, manifest: RunManifest, workdir: str, host: str, port: int, clock):
        super().__init__(cfg, flavor, store, manifest, workdir, clock)
        self.host, self.port = host, port

    def client_defaults(self) -> str:
        return defaults_file_text(self.cfg.repl_user, self.cfg.repl_password, host=self.host, port=self.port,
                                  ssl_ca=self.cfg.mysql_tls_ca)

    def argv(self, defaults: str) -> List[str]:
        out = [a for a in super().argv(defaults) if a != "--stop-never"] + ["--to-last-log"]
        if self.flavor.dialect == "mysql" and self.flavor.at_least(8, 0):
            out.insert(2, "--get-server-public-key")      # caching_sha2 over TCP without TLS
        return out


def _binlogs(cfg, flavor, m: MemberState):
    srv = Server(flavor, host=m.host, port=m.port, user=cfg.repl_user, password=cfg.repl_password,
                 connect_timeout=3, read_timeout=30)
    try:
        logs = [(r["Log_name"], start_set_sql(srv, r["Log_name"])) for r in srv.query("SHOW BINARY LOGS")]
        return logs, srv.gtid_executed() or "", int(srv.scalar("SELECT @@server_id"))
    finally:
        srv.close()


def close_gap(cfg, flavor, store, members: List[MemberState], archived: str, gap: str, clock=time.time
              ) -> Optional[str]:
    """Copy the binlogs of a member that holds `gap` and whose binlogs reach back to the archive's end.
    Returns its name, or None (said in one line per member) when none can."""
    import os
    d = flavor.dialect
    for m in members:
        if m.name == cfg.node_name or not m.alive or not (m.host and m.port):
            continue
        try:
            logs, executed, server_id = _binlogs(cfg, flavor, m)
        except PilotError as exc:
            log.info("archive: cannot read %s's binlogs to close the gap: %s", m.name, exc)
            continue
        name, still = first_file(logs, archived, d)
        if still or not gtidlib.contains(d, executed, gap):
            log.info("archive: %s cannot close the gap: %s", m.name,
                     f"its binlogs start past the archive too (it lacks {still})" if still
                     else "it does not hold the missing transactions")
            continue
        now = clock()
        rid = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z-{m.name}-copy"
        manifest = RunManifest(rid, m.name, server_id, d, now, name, archived, "", dict(logs)[name], closes=gap)
        run = CopyRun(cfg, flavor, store, manifest, os.path.join(cfg.state_dir, "archive", rid), m.host, m.port,
                      clock)
        log.warning("archive: closing the gap %s from %s's binlogs (%s on), run %s", gap, m.name, name, rid)
        run.start()
        try:
            run.proc.wait(COPY_TIMEOUT)
        except Exception:  # noqa: BLE001 - a timeout: stop it, keep what was read
            run.stop()
        if run.proc.returncode != 0:
            why = run.why_dead()
            run.drain()
            log.warning("archive: copying %s's binlogs ended early (%s); what was read is in run %s", m.name, why, rid)
            continue
        run.drain()
        log.info("archive: run %s holds %d bytes of %s's binlogs", rid, run.uploaded, m.name)
        return m.name
    return None

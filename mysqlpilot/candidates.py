"""Failover candidates, read fresh from each member's mysqld: the one set the HA loop and
`mysqlpilot failover` rank (analysis.rank_candidates, takeover_turn, designated_turn)."""
from __future__ import annotations

import logging
import socket
from typing import Collection, Dict, List, Optional

from .accounts import remote_server
from .analysis import Candidate
from .errors import PilotError
from .model import STARTING_ROLES, MemberState
from .sqlclient import Server

log = logging.getLogger(__name__)


def probe_candidates(flavor, members: List[MemberState], cfg,
                     extra: Optional[List[Candidate]] = None, old_primary: Optional[str] = None,
                     released_by: Optional[str] = None, count_sessionless: Optional[Collection[str]] = None
                     ) -> List[Candidate]:
    """Fresh failover facts, read from each member's mysqld directly (published state is stale).

    Only members with a live session are asked: a key without one names whatever host its last writer
    chose, and no password of ours must go there. Such a member may still hold the only copy of an
    acknowledged commit (its watch restarting while its mysqld runs), so it counts as unreachable, which
    semi-sync waits for: every one, or those in `count_sessionless` (the rest are given up). Not the old
    primary: a cut-off or frozen one holds only what no replica acknowledged, and waiting for it would
    stall the failover it caused."""
    cands: List[Candidate] = list(extra or [])
    for m in members:
        if m.name == released_by or \
                (not m.alive and (m.name == old_primary or m.role in ("down", "rebuilding") or m.role in STARTING_ROLES)):
            continue
        if not m.alive:
            if count_sessionless is None or m.name in count_sessionless:
                cands.append(Candidate(m.name, False, False, m.nofailover, m.priority, has_session=False))
            continue
        if not (m.host and m.port):
            # Live, but its key is unreadable (dcs/base.parse_member): its data is unknown, and no address
            # of its own is known to ask. Unreachable, which semi-sync waits for.
            cands.append(Candidate(m.name, False, False, m.nofailover, m.priority))
            continue
        try:
            srv = remote_server(Server, flavor, cfg, m.host, m.port, connect_timeout=2, read_timeout=2)
            executed = srv.gtid_executed()
            st = srv.replica_status() or {}
            recv = flavor.gtid_union(executed, st["retrieved"]) if st.get("retrieved") else executed
            srv.close()
            cands.append(candidate_from(m.name, m.nofailover, m.priority, executed, recv, st, flavor))
        except PilotError as exc:
            cands.append(Candidate(m.name, False, False, m.nofailover, m.priority))
            log.info("candidate %s unreachable: %s", m.name, exc)
    snapping = {m.name for m in members if m.snapshotting}
    for c in cands:
        c.was_primary = c.name == old_primary
        c.snapshotting = c.snapshotting or c.name in snapping
        c.gtid_count = flavor.gtid_count(c.gtid_received)
        for o in cands:
            if o.name != c.name and o.reachable:
                c.contains[o.name] = flavor.gtid_contains(c.gtid_received, o.gtid_received)
    return cands


def candidate_from(name: str, nofailover: bool, priority: int, executed: str, received: str,
                   status: Optional[Dict], flavor) -> Candidate:
    st = status or {}
    return Candidate(name, True, True, nofailover, priority, st.get("lag_seconds"), received or executed,
                     caught_up=flavor.gtid_contains(executed, received or ""),
                     sql_running=bool(st.get("sql_running")) if st else True)


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Does anything accept a TCP connection at host:port? Nothing is sent: no credentials, no handshake."""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False

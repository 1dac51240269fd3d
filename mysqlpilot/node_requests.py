"""Requests an operator addresses to one node: `mysqlpilot reinit NODE` and `mysqlpilot restart NODE`.

Each is a key `<kv_root>/reinit/<node>` or `<kv_root>/restart/<node>` that the node's HA loop reads in its one
view of the cluster per pass. The node spends (deletes) the key as the work starts, so it runs once. The lock
holder ignores both: the commands move the primary role away first, and a request may race a promotion.
"""
from __future__ import annotations

import logging
from typing import Callable, Tuple

from . import journal, mysqld
from .cluster_config import pending_restart
from .dcs.base import RESTART_PREFIX

log = logging.getLogger(__name__)


def asked(view, me: str, i_hold: bool, needs_rebuild: str, say: Callable[[str, str], None]) -> Tuple[str, str]:
    """(rebuild reason, restart reason) for this pass: a rebuild it already needs wins."""
    reinit, restart = view.reinit.get(me), view.restart.get(me)
    if i_hold:
        for kind, req in (("reinit", reinit), ("restart", restart)):
            if req is not None:
                say(kind, f"{kind} asked for this node, but it holds the leader lock: a {kind} runs only on a "
                          "replica (mysqlpilot switchover first)")
        return needs_rebuild, ""
    if reinit is not None and not needs_rebuild:
        needs_rebuild = (f"an operator asked for a rebuild (mysqlpilot reinit, by {reinit.get('by') or '?'}): "
                         f"{reinit.get('reason') or 'no reason given'}")
    why = ""
    if restart is not None:
        why = (f"an operator asked for a restart (mysqlpilot restart, by {restart.get('by') or '?'}): "
               f"{restart.get('reason') or 'no reason given'}")
    return needs_rebuild, why


class Restarter:
    """The `restart` action: a clean mysqld stop that run-mysqld follows with a start (with the cluster's
    current settings, so a pending mysqld option lands). Only a replica restarts in place."""

    def __init__(self, node):
        self.n = node

    def do_restart(self, d, seen) -> None:
        me = self.n.cfg.node_name
        # Spent first: a failed delete raises and this pass restarts nothing (else it would restart again).
        self.n.dcs.put_json(RESTART_PREFIX + me, None)
        pending = pending_restart(self.n.cfg.cluster_settings, self.n.state.get("mysqld_settings"), seen.view.config)
        loop = [k for k in pending if not k.startswith("mysqld.")]
        journal.record(self.n.state, journal.event("restart", me, d.reason,
                                                   pending=", ".join(pending) or None))
        self.n.events.count("restarts")
        log.warning("RESTART: %s; stopping mysqld cleanly, run-mysqld starts it again%s", d.reason,
                    f"; the HA loop restarts too, for {', '.join(loop)}" if loop else "")
        seen.report.role, seen.report.healthy, seen.report.message = "restarting", False, d.reason
        mysqld.stop_mysqld(self.n.cfg)
        if loop:
            # Values only a new loop reads (timing, durability): the watch ends after its pass (this may be
            # on-change's pass: hence the state file), and its job's restart policy starts a new one, which
            # loads the cluster's settings. A replica holds no lease.
            self.n.state.update(end_loop="restart for " + ", ".join(loop))

"""Cluster settings a running HA loop takes on its next pass, and those that wait for a restart (issue 24).

The loop loaded the cluster's settings at its start (cli.with_cluster_settings). A later `config set` reaches
it in its view of the cluster (ClusterView.config). Keys read afresh where they are used (the failover
policy, snapshot scheduling and retention, the snapshot job's own settings, the log level) are applied in
place. The rest stay `pending restart` (cluster_config.pending_restart) until `mysqlpilot restart`: timing,
because the lease proof rests on it; durability, because semi-sync is set up at start and promotion; mysqld
options and the store, because a running mysqld and archiver hold them.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional

from . import cluster_config
from .analysis import Policy
from .errors import PilotError

log = logging.getLogger("mysqlpilot.config")

LIVE = frozenset({
    "max_lag_on_failover", "max_replica_lag", "failover_budget", "failover_window", "failover_rearm",
    "snapshot_interval", "snapshot_keep", "snapshot_keep_seconds", "snapshot_verify", "compression_level",
    "s3_upload_concurrency", "snapshot_method", "log_level"})


class LiveSettings:
    """`reload(doc)` loads this node's configuration with the cluster's document `doc` (None: off)."""

    def __init__(self, node, reload: Optional[Callable[[Dict[str, Any]], Any]] = None):
        self.n = node
        self.reload = reload
        self._seen: Any = None

    def apply(self, raw: Any) -> List[str]:
        """Apply the live keys of the stored document `raw`; returns `key: old -> new` for each applied."""
        if self.reload is None or raw is None or raw == self._seen:
            return []
        self._seen = raw
        try:
            doc = cluster_config.parse(raw)
        except PilotError as exc:
            self.n.say_once("live-settings", f"cluster settings not applied: {exc}")
            return []
        cfg = self.n.cfg
        had = dict((cfg.cluster_settings or {}).get("values") or {})
        changed = sorted(k for k in set(doc["values"]) | set(had)
                         if k in LIVE and doc["values"].get(k) != had.get(k))
        if not changed:
            return []
        try:
            new = self.reload(doc)
        except PilotError as exc:
            self.n.say_once("live-settings", f"CLUSTER SETTINGS REFUSED on this node, running with its own: {exc}; "
                                             "fix them with `mysqlpilot config edit`")
            return []
        applied = []
        for k in changed:
            applied.append(f"{k}: {cfg.values.get(k)} -> {new.values.get(k)}")
            cfg.values[k], cfg.origin[k] = new.values.get(k), new.origin.get(k, "")
            if k in doc["values"]:
                had[k] = doc["values"][k]
            else:
                had.pop(k, None)
        # What the loop now runs with: the live keys taken, the others as loaded (still pending restart).
        cfg.cluster_settings = dict(cfg.cluster_settings or cluster_config.empty(), values=had)
        self.n.policy = Policy.from_config(cfg)
        if "log_level" in changed:
            logging.getLogger().setLevel(getattr(logging, str(cfg.log_level).upper(), logging.INFO))
        log.warning("CLUSTER SETTINGS APPLIED without a restart: %s", "; ".join(applied))
        return applied

"""Prometheus metrics of one node, through the official prometheus_client: its exposition format and
escaping, never hand-formatted. A private registry per process (never the global default one) holds one
collector that reads the node at scrape time, so a scrape always sees the live lease and the last pass.

Named the mysqld_exporter and Patroni way: `mysqlpilot_` prefix, base units (`_seconds`, `_bytes`),
counters ending in `_total`; every series labelled `cluster` and `node`. docs/monitoring.md lists them."""
from __future__ import annotations

from typing import Any, Callable, Iterator, List, Optional, Tuple

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from . import mysqld
from .failsafe_keeper import promise_of
from .events import DURATION_BUCKETS

LABELS = ("cluster", "node")
Getter = Callable[["Scrape"], Optional[float]]


class Scrape:
    """Everything one scrape reads, read once: the facts, the pass view, the events, the DCS counters."""

    def __init__(self, source):
        node = source.node
        self.facts = source.facts()
        self.view = source.view()
        self.events = node.events.counts()
        self.hist = node.events.histograms()
        self.fenced = node.events.fenced
        self.dcs = node.dcs
        restore = node.state.get("last_restore")
        self.restore = restore if isinstance(restore, dict) else {}
        self.moved_aside = len(mysqld.moved_aside(node.cfg.datadir))
        self.labels = [node.cfg.cluster, node.cfg.node_name]
        self.api = node.cfg.api_advertised
        self.failsafe = node.lease.failsafe_info() or {}
        self.promise_left = max(0.0, promise_of(node.state.read())[1])
        from .api_view import archive_status
        self.archive = archive_status(node) or {}

    def v(self, attr: str) -> Any:
        return getattr(self.view, attr) if self.view is not None else None

    def replica(self, attr: str) -> Any:
        """A replication fact; None on the primary, where it means nothing (and would set off alerts)."""
        if self.view is None or self.facts.holds_lock or self.view.role == "primary":
            return None
        return getattr(self.view, attr)


def _b(x: Any) -> Optional[float]:
    return None if x is None else float(bool(x))


def _num(x: Any) -> Optional[float]:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


# name, help, value (None: the series is left out: unknown, or not applicable yet)
GAUGES: Tuple[Tuple[str, str, Getter], ...] = (
    ("mysqlpilot_mysqld_up", "1 while the local mysqld answers queries.", lambda s: _b(s.facts.mysqld_up)),
    ("mysqlpilot_primary", "1 while the last pass reported this node's role as primary (the leader key names it).",
     lambda s: None if s.view is None else _b(s.view.role == "primary")),
    ("mysqlpilot_replica", "1 while this node's role is replica.",
     lambda s: None if s.view is None else _b(s.view.role == "replica" and not s.facts.holds_lock)),
    ("mysqlpilot_healthy", "1 while the last pass found this node healthy in its role.", lambda s: _b(s.v("healthy"))),
    ("mysqlpilot_writable", "1 while mysqld is writable (read_only OFF): the last pass's reading, unless the "
     "fencer read it read-only since.", lambda s: _b(s.facts.writable)),
    ("mysqlpilot_lock_held", "1 while this node holds the leader lock under its current Consul session.",
     lambda s: _b(s.facts.holds_lock)),
    ("mysqlpilot_lease_seconds_left", "Seconds left of this node's lease (0: none); writes stop when it ends.",
     lambda s: max(0.0, s.facts.lease_left)),
    ("mysqlpilot_failsafe_active", "1 while this primary's writes are covered by the members' promises, not by "
     "its Consul session (failsafe: Consul does not renew it).", lambda s: _b(bool(s.failsafe))),
    ("mysqlpilot_failsafe_seconds_left", "Seconds the members' last round of promises still covers the writes "
     "(0: none).", lambda s: round(s.failsafe.get("left", 0.0), 3)),
    ("mysqlpilot_failsafe_confirming_members", "Members whose promises cover the writes now.",
     lambda s: float(len(s.failsafe.get("by", [])))),
    ("mysqlpilot_promise_seconds_left", "Seconds this member still keeps its promise not to take the leader lock.",
     lambda s: round(s.promise_left, 3)),
    ("mysqlpilot_fenced", "1 once this node was fenced, until it is primary again or follows the primary.",
     lambda s: _b(s.fenced)),
    ("mysqlpilot_paused", "1 while automatic failover is paused (mysqlpilot pause).", lambda s: _b(s.v("paused"))),
    ("mysqlpilot_cluster_unlocked", "1 while no node holds the leader lock (no primary).",
     lambda s: None if s.view is None else _b(s.view.primary is None)),
    ("mysqlpilot_replication_lag_seconds", "Replication delay in seconds (absent when unknown, and on the primary).",
     lambda s: _num(s.replica("lag_seconds"))),
    ("mysqlpilot_replication_io_running", "1 while the replication IO thread runs (absent on the primary).",
     lambda s: _b(s.replica("io_running"))),
    ("mysqlpilot_replication_sql_running", "1 while the replication SQL thread runs (absent on the primary).",
     lambda s: _b(s.replica("sql_running"))),
    ("mysqlpilot_replication_behind_transactions", "Transactions the primary last published that this node "
     "has not applied (absent when unknown, and on the primary).", lambda s: _num(s.replica("gtids_behind"))),
    ("mysqlpilot_gtid_executed_transactions", "Transactions in gtid_executed (MariaDB: the sum of the "
     "per-domain sequence numbers).", lambda s: _num(s.v("gtid_executed"))),
    ("mysqlpilot_gtid_received_transactions", "Transactions received, applied or still in the relay log.",
     lambda s: _num(s.v("gtid_received"))),
    ("mysqlpilot_failover_budget_left", "Automatic failovers still allowed now (0: the budget is spent).",
     lambda s: _num(s.v("failover_budget_left"))),
    ("mysqlpilot_last_snapshot_timestamp_seconds", "When the newest complete snapshot was taken (epoch).",
     lambda s: _num(s.v("snapshot_created"))),
    ("mysqlpilot_last_snapshot_size_bytes", "Stored (compressed) size of the newest snapshot.",
     lambda s: _num(s.v("snapshot_bytes"))),
    ("mysqlpilot_last_snapshot_duration_seconds", "How long taking the newest snapshot took.",
     lambda s: _num(s.v("snapshot_seconds"))),
    ("mysqlpilot_last_snapshot_verified", "1 when the newest snapshot was proven restorable before it was published "
     "(config key snapshot_verify); absent when it was not checked.", lambda s: _b(s.v("snapshot_verified"))),
    ("mysqlpilot_last_restore_duration_seconds", "How long this node's last seed (snapshot restore or CLONE) took.",
     lambda s: _num(s.restore.get("seconds"))),
    ("mysqlpilot_last_restore_timestamp_seconds", "When this node's last seed finished (epoch).",
     lambda s: _num(s.restore.get("at"))),
    ("mysqlpilot_archive_streaming", "1 while this node streams its binlogs into the archive (the primary, with "
     "config key archive on); absent elsewhere.", lambda s: 1.0 if s.archive else None),
    ("mysqlpilot_archive_lag_seconds", "Seconds the archive has had binlog bytes waiting for upload (0: caught up; "
     "the recovery point of a point-in-time restore).", lambda s: _num(s.archive.get("lag_seconds"))),
    ("mysqlpilot_archive_waiting_bytes", "Binlog bytes streamed here and not yet in the store.",
     lambda s: _num(s.archive.get("waiting_bytes"))),
    ("mysqlpilot_archive_gap", "1 when this archive run began after transactions the archive lacks (a restore "
     "across them is refused).", lambda s: _b(s.archive.get("gap")) if s.archive else None),
    ("mysqlpilot_moved_aside_datadirs", "Moved-aside datadirs beside this node's datadir (max_moved_aside "
     "refuses more).", lambda s: float(s.moved_aside)),
    ("mysqlpilot_dcs_last_seen_timestamp_seconds", "When Consul last answered this node's HA process (epoch).",
     lambda s: _num(getattr(s.dcs, "last_answer", None))),
    ("mysqlpilot_ha_last_pass_timestamp_seconds", "When the HA loop last completed a pass (epoch).",
     lambda s: _num(s.v("published_wall"))),
    ("mysqlpilot_ha_loop_stalled_seconds", "Seconds the HA loop is late for its next pass (/liveness fails "
     "above the lease).", lambda s: s.facts.loop_stalled),
)

COUNTERS: Tuple[Tuple[str, str, Getter], ...] = (
    ("mysqlpilot_failovers", "Failovers (automatic and manual) that made this node primary.",
     lambda s: s.events["failovers"]),
    ("mysqlpilot_switchovers", "Switchovers that made this node primary.", lambda s: s.events["switchovers"]),
    ("mysqlpilot_fences", "Fences run by this node's HA process (watchdog and passes).",
     lambda s: s.events["fences"]),
    ("mysqlpilot_rebuilds", "Rebuilds this node's HA process started (datadir moved aside, snapshot restored).",
     lambda s: s.events["rebuilds"]),
    ("mysqlpilot_restarts", "mysqld restarts this node's HA process ran on request (mysqlpilot restart).",
     lambda s: s.events["restarts"]),
    ("mysqlpilot_failsafe_stretches", "Times this primary began to ride out a Consul outage on its members' "
     "promises.", lambda s: s.events["failsafe_stretches"]),
    ("mysqlpilot_failsafe_retakes", "Times this primary took the leader lock back under a new session after an "
     "outage (no failover).", lambda s: s.events["failsafe_retakes"]),
    ("mysqlpilot_consul_request_errors", "Consul requests of this node's HA process that failed.",
     lambda s: _num(getattr(s.dcs, "request_errors", None))),
)

HISTOGRAM = ("mysqlpilot_failover_duration_seconds", "Each failover or switchover that made this node primary: "
             "from its first sight of the free lock (a hand-over: the old primary's fence) to writable.")


def families(s: Scrape) -> List[Metric]:
    out: List[Metric] = []
    for name, doc, get in GAUGES:
        val = get(s)
        if val is not None:
            g = GaugeMetricFamily(name, doc, labels=LABELS)
            g.add_metric(s.labels, val)
            out.append(g)
    for name, doc, get in COUNTERS:
        val = get(s)
        if val is not None:
            c = CounterMetricFamily(name, doc, labels=LABELS)
            c.add_metric(s.labels, val)
            out.append(c)
    h = HistogramMetricFamily(HISTOGRAM[0], HISTOGRAM[1], labels=LABELS + ("kind",))
    for kind, (cum, n, total) in sorted(s.hist.items()):
        buckets = [(floatToGoString(b), float(c)) for b, c in zip(DURATION_BUCKETS, cum)] + [("+Inf", float(n))]
        h.add_metric(s.labels + [kind], buckets, total)
    out.append(h)
    if s.view is not None:
        info = GaugeMetricFamily("mysqlpilot_node_info", "Always 1; labels say the node's role and API address.",
                                 labels=LABELS + ("role", "api"))
        info.add_metric(s.labels + [s.view.role, s.api], 1.0)
        out.append(info)
    return out


class NodeCollector:
    def __init__(self, source):
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from families(Scrape(self.source))


def registry_for(source) -> CollectorRegistry:
    """A registry of this node's own (auto_describe off: registering reads nothing)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(NodeCollector(source))
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)

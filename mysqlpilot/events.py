"""What this process's HA actions did, counted where they run: failovers, switchovers, fences, rebuilds,
and failover durations. Plain counters (no prometheus_client here: every hook process builds a Node, and
that import costs about 0.1 s of CPU); api_metrics.py exposes them. Thread-safe: the fence watchdog counts
from its own thread."""
from __future__ import annotations

import threading
from typing import Dict, List, Tuple

# Upper bounds (seconds) of the failover-duration histogram: a crash failover takes about lock_delay
# plus a promotion; a switchover well under a second; a slow relay-log apply minutes.
DURATION_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
COUNTED = ("failovers", "switchovers", "fences", "rebuilds", "restarts", "failsafe_stretches", "failsafe_retakes")
TIMED = ("failover", "switchover")


class NodeEvents:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Dict[str, int] = {k: 0 for k in COUNTED}
        # kind -> (count per bucket, cumulative as Prometheus wants it, +Inf excluded; count; sum)
        self._hist: Dict[str, Tuple[List[int], int, float]] = {k: ([0] * len(DURATION_BUCKETS), 0, 0.0)
                                                               for k in TIMED}
        self.fenced = False           # fenced since this node last became primary or followed one

    def count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    def fence(self, reason: str, result: str) -> None:      # noqa: ARG002 - Fencer's on_fence signature
        with self._lock:
            self._counts["fences"] += 1
            self.fenced = True

    def serving(self) -> None:
        """This node became primary or follows one: no longer fenced."""
        self.fenced = False

    def promoted(self, kind: str, seconds: float) -> None:
        """A promotion recorded as `kind` (actions.promote): a failover or switchover is counted and timed."""
        self.serving()
        timed = {"failover": "failover", "manual-failover": "failover", "switchover": "switchover"}.get(kind)
        if timed is None:
            return                     # bootstrap, election, re-promotion: nobody lost a primary
        with self._lock:
            self._counts[timed + "s"] += 1
            buckets, n, total = self._hist[timed]
            buckets = [c + (1 if seconds <= b else 0) for c, b in zip(buckets, DURATION_BUCKETS)]
            self._hist[timed] = (buckets, n + 1, total + seconds)

    def counts(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def histograms(self) -> Dict[str, Tuple[List[int], int, float]]:
        with self._lock:
            return {k: (list(b), n, s) for k, (b, n, s) in self._hist.items()}

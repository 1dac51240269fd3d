"""The simulated network between the nodes, their mysqlds and Consul: partitions (a node cut from
Consul, or two nodes cut from each other: replication and probes between them fail), and slow or
lossy Consul calls of one node (a call that fails, and a call whose effect applied but whose answer
was lost). Faults set it; consul.SimAgent and mysqld.SimConn/SimMySQL.pull read it."""
from __future__ import annotations

from typing import Dict, Set, Tuple


class Net:
    def __init__(self):
        self.pairs: Set[frozenset] = set()           # node pairs cut from each other
        self.consul_cut: Set[str] = set()            # nodes cut from Consul (their agent cannot reach it)
        self.delay: Dict[str, float] = {}            # node -> seconds each Consul call takes
        self.loss: Dict[str, Tuple[float, float]] = {}   # node -> (P(call lost), P(answer lost))

    def cut(self, a: str, b: str) -> bool:
        return bool(self.pairs) and frozenset((a, b)) in self.pairs


def of(world) -> Net:
    n = world.__dict__.get("net")
    if n is None:
        n = world.__dict__["net"] = Net()
    return n

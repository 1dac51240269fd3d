"""One simulated cluster run from one seed: its nodes, mysqlds, Consul, clients, faults and invariants,
over the scheduler (scheduler.py) and the nodes' threads (node.py)."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .consul import SimConsul
from .coverage import Coverage
from .faults import FAULTS, WEIGHTS, Fault, Faults, draw
from .invariants import FINDINGS, Invariants, Violation
from .mysqld import SimMySQL
from .node import SimNode, Threads
from .patch import installed
from .scheduler import Scheduler

__all__ = ["FAULTS", "FINDINGS", "Fault", "Params", "Violation", "World", "params"]


@dataclass
class Params:
    nodes: int = 3
    fault_phase: float = 20.0     # virtual seconds with faults
    settle: float = 60.0          # then at most this long without, until converged ...
    stable: float = 8.0           # ... and still so this long
    durability: Optional[str] = None    # None: each seed draws async or semi-sync
    failsafe: str = "off"               # config key failsafe: "on", "off", or "draw" (each seed draws one)
    fault_gap: Tuple[float, float] = (0.2, 2.0)
    weights: Tuple[float, ...] = WEIGHTS
    # Extra MYSQLPILOT_* settings for every node, e.g. the timing a regression seed was found under.
    settings: Tuple[Tuple[str, str], ...] = ()


# Scenario lengths. "short" is CI's (6,000 seeds in 3 minutes on 2 cores): the same bootstrap, faults
# from 3-6 s to 9 s a little denser (~5 a seed, where "full" has ~14 over 20 s), then the same settle
# (up to 60 s) and convergence check, which must hold 2 s in a row instead of 8. The trade-off: fewer
# faults overlap within one seed (more seeds make up for it), and a flap more than 2 s after calm
# returns goes unseen. The nightly run (--minutes) and the tests keep "full".
SCENARIOS = {"full": {}, "short": {"fault_phase": 9.0, "stable": 2.0, "fault_gap": (0.2, 1.2)}}


def params(faults: str = "", durability: Optional[str] = None, scenario: str = "full",
           failsafe: str = "off") -> Params:
    """Params from the CLI's spelling: faults "freeze=6,failover=6" (weights; unnamed kinds get 0)."""
    p = Params(durability=durability, failsafe=failsafe, **SCENARIOS[scenario])
    if faults:
        w = dict(x.split("=") for x in faults.split(","))
        unknown = set(w) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULTS)}")
        p.weights = tuple(float(w.get(f, 0)) for f in FAULTS)
    return p


class World(Scheduler):
    def __init__(self, seed: int, params: Optional[Params] = None, verbose: bool = False,
                 schedule: Optional[List[Fault]] = None):
        super().__init__()
        self.seed, self.p, self.verbose = seed, params or Params(), verbose
        self.rng = random.Random(seed)
        self.durability = self.p.durability or self.rng.choice(("async", "semi-sync"))
        # Drawn apart from the main stream, so that every seed's other choices stay what they were.
        self.failsafe = self.p.failsafe == "on" or (
            self.p.failsafe == "draw" and random.Random(seed * 7919 + 1).random() < 0.5)
        self.consul = SimConsul(self)
        self.states: Dict[str, str] = {}           # state dir -> the state file's JSON
        self.parsed: Dict[str, Tuple[str, Dict[str, Any]]] = {}   # state dir -> (that JSON, decoded)
        self.names = [f"n{i + 1}" for i in range(self.p.nodes)]
        self.mysqld = {n: SimMySQL(self, n, i) for i, n in enumerate(self.names)}
        self.by_dir: Dict[str, SimNode] = {}
        self.threads = Threads(self)
        self.coverage = Coverage()
        self.writes: Dict[int, Dict[str, Any]] = {}     # write id -> {"node", "gtid", "state"}
        self.acked: Dict[Tuple[str, int], int] = {}     # gtid -> write id
        self.log: List[str] = []
        self.inv = Invariants(self)
        # The fault schedule: drawn from the seed unless given (a replay or a shrink of one).
        # The main stream draws the schedule's seed either way, so a replay's other choices stay the same.
        drawn = draw(random.Random(self.rng.getrandbits(64)), self.names, self.p.fault_phase, self.p.fault_gap,
                     self.p.weights)
        self.plan = list(schedule) if schedule is not None else drawn
        self.faults = Faults(self, self.plan)
        self.faults_on = True
        self.two_writable = 0

    def after_step(self) -> None:
        self.inv.check_now()

    # ---- plumbing used by the patches and the simulated servers ------------------------------------
    def host_to_name(self, host: str) -> str:
        return host[2:] if host and host.startswith("h-") else str(host)

    def frozen(self, name: str) -> bool:
        n = self.nodes.get(name)
        return n is not None and n.frozen_until is not None

    def note(self, line: str) -> None:
        if self.verbose:
            print(f"{self.now:9.3f} {line}")
        self.log.append(f"{self.now:.3f} {line}")
        if len(self.log) > 400:
            del self.log[:100]

    def write_acked(self, wid: int, node: str, g) -> None:
        w = self.writes[wid]
        w["state"], w["gtid"] = "acked", g
        self.acked[g] = wid

    def write_failed(self, wid: int, why: str) -> None:
        self.writes[wid]["state"] = "failed"

    def kill_mysqld(self, name: str) -> bool:
        m = self.mysqld[name]
        if not m.up:
            return False
        self.note(f"{name}: mysqld killed by the fence")
        m.crash("killed by the fence")
        self.mysqld_gone(name)
        self.at(self.rng.uniform(0.5, 3.0), "", "mysqld", lambda: self.start_mysqld(name))
        return True

    def stop_mysqld(self, name: str) -> bool:
        return self.kill_mysqld(name)

    def start_mysqld(self, name: str) -> None:
        m = self.mysqld[name]
        if m.up:
            return
        d = self.nodes[name].cfg.state_dir
        st = json.loads(self.states.get(d, "{}"))
        rebuild = bool(st.get("rebuild_reason"))
        if rebuild:                      # run-mysqld's rebuild: a new datadir (empty here), state cleared
            for k in ("rebuild_reason", "errant", "seed_gtid"):
                st.pop(k, None)
            self.states[d] = json.dumps(st)
        m.start(rebuild=rebuild)
        self.note(f"{name}: mysqld started{' (rebuilt)' if rebuild else ''}")

    def backstop(self, bs) -> None:
        name = bs.fencer.cfg.node_name
        self.at(max(0.0, bs.deadline - self.now), name, "backstop", bs.fire, gen=self.nodes[name].gen)

    # ---- mysqld-side actors: replication and clients ---------------------------------------------------
    def replicate(self, name: str) -> None:
        self.mysqld[name].pull()
        self.at(self.rng.uniform(0.1, 0.4), "", "repl", lambda: self.replicate(name))

    def client(self) -> None:
        name = self.rng.choice(self.names)
        m = self.mysqld[name]
        if m.accepts_writes():
            wid = len(self.writes) + 1
            self.writes[wid] = {"node": name, "gtid": None, "state": "pending", "t": self.now}
            self.writes[wid]["gtid"] = m.commit(wid)
        self.at(self.rng.uniform(0.05, 0.4), "", "client", self.client)

    def became_writable(self, name: str) -> None:
        self.inv.became_writable(name)

    # ---- the nodes' threads (node.Threads), as the simulated servers and faults call them -----------
    def leader_changed(self) -> None:
        self.threads.leader_changed()

    def state_changed(self, state_dir: str) -> None:
        sn = self.by_dir.get(state_dir)
        if sn is not None:
            self.threads.state_changed(sn)

    def mysqld_gone(self, name: str) -> None:
        sn = self.nodes.get(name)
        if sn is not None:
            self.threads.mysqld_gone(sn)

    def start_process(self, sn: SimNode) -> None:
        self.threads.start_process(sn)

    def thaw(self, sn: SimNode) -> None:
        self.threads.thaw(sn)

    def schedule(self, sn: SimNode, thread: str, delay: float) -> None:
        self.threads.schedule(sn, thread, delay)

    def health(self, sn: SimNode) -> None:
        self.threads.health(sn)

    def busy(self, sn: SimNode, thread: str) -> bool:
        return self.threads.busy(sn, thread)

    @property
    def faults_seen(self) -> Dict[str, int]:
        return self.faults.seen

    # ---- a run --------------------------------------------------------------------------------------
    def run(self) -> Optional[Violation]:
        with installed(self):
            try:
                for i, name in enumerate(self.names):
                    sn = self.nodes[name] = SimNode(self, name, i)
                    self.by_dir[sn.cfg.state_dir] = sn
                    self.at(self.rng.uniform(0, 0.5), name, "start", lambda sn=sn: self.start_process(sn))
                    self.at(self.rng.uniform(1, 2), name, "health", lambda sn=sn: self.threads.health(sn))
                    self.at(self.rng.uniform(0, 0.3), "", "repl", lambda n=name: self.replicate(n))
                self.at(1.0, "", "client", self.client)
                self.faults.arm()
                self.run_until(self.p.fault_phase)
                self.faults_on = False
                # Settle until converged for `stable` seconds in a row (or the whole settle time), looked
                # at every half second (a look only reads: it does not change the run).
                # A stopped SQL thread's apply error may outlast the fault phase: the settle time counts
                # from when the last one is gone (the cluster cannot converge before).
                quiet = max([self.p.fault_phase] + [m.sql_error_until for m in self.mysqld.values()])
                since, t = None, self.p.fault_phase
                while t < quiet + self.p.settle:
                    t += 0.5
                    self.run_until(t)
                    if self.inv.converged():
                        since = t if since is None else since
                        if t - since >= self.p.stable:
                            break
                    else:
                        since = None
                self.inv.check_end()
            except Violation as v:
                return v
        return None

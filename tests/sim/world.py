"""One simulated cluster run from one seed: the scheduler, the nodes, the faults and the invariants."""
from __future__ import annotations

import heapq
import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from mysqlpilot import config, ha
from mysqlpilot.errors import PilotError
from mysqlpilot.lease import Watchdog

from .consul import SimAgent, SimConsul
from .faults import FAULTS, WEIGHTS, Fault, Faults, draw
from .invariants import FINDINGS, Invariants, Violation
from .mysqld import SimMySQL
from .patch import SimKilled, SimLock, SimWouldBlock, installed

MAX_DEPTH = 25                    # nested blocking calls (each runs the world while its thread waits)
CHAINS = ("ha", "hb", "wd", "probe", "deadline")   # periodic threads: dropped while frozen, restarted at the thaw
__all__ = ["FAULTS", "FINDINGS", "Fault", "Params", "Violation", "World", "params"]


@dataclass(order=True)
class Event:
    t: float
    seq: int
    node: str = field(compare=False)          # "" for world events
    thread: str = field(compare=False)
    gen: int = field(compare=False)           # process incarnation (process threads) or token
    fn: Callable[[], None] = field(compare=False)


@dataclass
class Params:
    nodes: int = 3
    fault_phase: float = 20.0     # virtual seconds with faults
    settle: float = 60.0          # then at most this long without, until converged ...
    stable: float = 8.0           # ... and still so this long
    durability: Optional[str] = None    # None: each seed draws async or semi-sync
    fault_gap: Tuple[float, float] = (0.2, 2.0)
    weights: Tuple[float, ...] = WEIGHTS


def params(faults: str = "", durability: Optional[str] = None) -> Params:
    """Params from the CLI's spelling: faults "freeze=6,failover=6" (weights; unnamed kinds get 0)."""
    p = Params(durability=durability)
    if faults:
        w = dict(x.split("=") for x in faults.split(","))
        unknown = set(w) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {', '.join(FAULTS)}")
        p.weights = tuple(float(w.get(f, 0)) for f in FAULTS)
    return p


class SimNode:
    """A node: its state dir, its agent, and the current incarnation of its watch process (None: dead)."""

    def __init__(self, world: "World", name: str, idx: int):
        self.w, self.name, self.idx = world, name, idx
        env = {"MYSQL_ROOT_PASSWORD": "pw", "MYSQL_REPL_PASSWORD": "pw2", "HOSTNAME": name,
               "MYSQLPILOT_NODE": name, "MYSQLPILOT_ADVERTISE_HOST": f"h-{name}", "MYSQLPILOT_PORT": "3306",
               "MYSQLPILOT_STATE_DIR": f"/sim/{name}", "MYSQLPILOT_SOCKET": f"/sim/{name}.sock",
               "MYSQLPILOT_FLAVOR": "mysql", "MYSQLPILOT_FLAVOR_VERSION": "8.0",
               "MYSQLPILOT_DURABILITY": world.durability, "MYSQLPILOT_FAILOVER_BUDGET": "1000"}
        self.cfg = config.load(None, env=env)
        self.agent = SimAgent(world.consul, name)
        self.gen = 0
        self.node: Optional[ha.Node] = None
        self.watchdog: Optional[Watchdog] = None
        self.frozen_until: Optional[float] = None
        self.tokens: Dict[str, int] = {}
        self.next_at: Dict[str, float] = {}
        self.ha_mode = "watch"
        self.armed_at: Optional[float] = None

    def pilot(self) -> ha.Node:
        """A Node over this node's state, as a new process would build it."""
        n = ha.Node(self.cfg, dcs=self.agent)
        n.fencer._lock = SimLock()
        n.fencer.kill_mysqld = lambda: self.w.kill_mysqld(self.name)
        return n


class World:
    def __init__(self, seed: int, params: Optional[Params] = None, verbose: bool = False,
                 schedule: Optional[List[Fault]] = None):
        self.seed, self.p, self.verbose = seed, params or Params(), verbose
        self.rng = random.Random(seed)
        self.durability = self.p.durability or self.rng.choice(("async", "semi-sync"))
        self.now = 0.0
        self.heap: List[Event] = []
        self._seq = 0
        self.consul = SimConsul(self)
        self.states: Dict[str, str] = {}           # state dir -> the state file's JSON
        self.names = [f"n{i + 1}" for i in range(self.p.nodes)]
        self.mysqld = {n: SimMySQL(self, n, i) for i, n in enumerate(self.names)}
        self.nodes: Dict[str, SimNode] = {}
        self.by_dir: Dict[str, SimNode] = {}
        # (node, thread, process generation): a new process's threads are not the old one's frames
        self.blocked: Set[Tuple[str, str, int]] = set()
        self.running: Set[Tuple[str, str, int]] = set()
        self.current: Optional[Event] = None
        self.depth = 0
        self.steps = 0
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
        self.depth_capped = 0
        self.two_writable = 0

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

    def leader_changed(self) -> None:
        """Consul's blocking query on the leader key returns: every watching loop passes at once."""
        for sn in self.nodes.values():
            if sn.node is not None and sn.ha_mode == "watch" and not self.busy(sn, "ha"):
                self.schedule(sn, "ha", self.rng.uniform(0.001, 0.02))

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

    # ---- the scheduler ----------------------------------------------------------------------------
    def at(self, delay: float, node: str, thread: str, fn: Callable[[], None], gen: int = -1) -> None:
        self._seq += 1
        heapq.heappush(self.heap, Event(self.now + delay, self._seq, node, thread, gen, fn))

    def schedule(self, sn: SimNode, thread: str, delay: float) -> None:
        """The next step of one thread of a node's watch process (a new token drops any older one)."""
        tok = sn.tokens.get(thread, 0) + 1
        sn.tokens[thread] = tok
        sn.next_at[thread] = self.now + delay
        self.at(delay, sn.name, thread, lambda: self.step(sn, thread, tok), gen=sn.gen)

    def run_until(self, end: float) -> None:
        deferred = []
        while self.heap and self.heap[0].t <= end:
            ev = heapq.heappop(self.heap)
            if (ev.node, ev.thread, ev.gen) in self.blocked:
                deferred.append(ev)
                continue
            self.now = max(self.now, ev.t)
            self.dispatch(ev)
        for ev in deferred:
            heapq.heappush(self.heap, ev)
        self.now = max(self.now, end)

    def dispatch(self, ev: Event) -> None:
        sn = self.nodes.get(ev.node)
        if sn is not None and ev.gen >= 0 and ev.gen != sn.gen:
            return                       # a thread of a killed process
        if sn is not None and sn.frozen_until is not None and ev.thread not in ("thaw", "mysqld"):
            if ev.thread not in CHAINS:
                self.at(sn.frozen_until - self.now + 0.001, ev.node, ev.thread, ev.fn, ev.gen)
            return                       # the frozen node's threads are restarted at the thaw
        prev = self.current
        self.current = ev
        key = (ev.node, ev.thread, ev.gen)
        self.running.add(key)
        try:
            ev.fn()
            self.steps += 1
        except SimKilled:
            pass
        except SimWouldBlock:
            self.at(0.01, ev.node, ev.thread, ev.fn, ev.gen)
        finally:
            self.running.discard(key)
            self.current = prev
        self.inv.check_now()

    def sleep(self, seconds: float) -> None:
        """A blocking call of the current thread: the rest of the world runs meanwhile."""
        ev = self.current
        end = self.now + seconds
        if ev is None or self.depth >= MAX_DEPTH:
            self.depth_capped += ev is not None
            self.now = max(self.now, end)
        else:
            key = (ev.node, ev.thread, ev.gen)
            self.blocked.add(key)
            self.depth += 1
            try:
                self.run_until(end)
                sn = self.nodes.get(ev.node)
                while sn is not None and sn.frozen_until is not None and ev.gen == sn.gen:
                    self.run_until(sn.frozen_until)
            finally:
                self.depth -= 1
                self.blocked.discard(key)
                self.current = ev
        sn = self.nodes.get(ev.node) if ev is not None else None
        if sn is not None and ev.gen >= 0 and ev.gen != sn.gen:
            raise SimKilled()

    # ---- the watch process's threads ----------------------------------------------------------------
    def step(self, sn: SimNode, thread: str, tok: int) -> None:
        if sn.tokens.get(thread) != tok or sn.node is None:
            return
        n = sn.node
        if thread == "ha":
            t0 = self.now
            try:
                n.run_once()
            except PilotError as exc:
                self.note(f"{sn.name}: pass failed: {exc}")
            except Exception as exc:  # noqa: BLE001 - the loop survives it, but the sim reports it
                raise Violation("no-crash", f"{sn.name}: HA pass raised {type(exc).__name__}: {exc}") from exc
            self.note(f"{sn.name}: {n.actions.recent[-1].action}: {n.actions.recent[-1].reason}"
                      if n.actions.recent else f"{sn.name}: pass")
            wait = max(0.2, sn.cfg.loop_wait - (self.now - t0))
            due, n._due = n._due, None
            if due is not None and due < wait:
                sn.ha_mode = "due"
                self.schedule(sn, "ha", due + 0.01)
            else:
                sn.ha_mode = "watch"
                e = self.consul.kv.get("leader")
                changed = (e.modify if e else 0) > n.leader_index or self.consul.index < n.leader_index
                self.schedule(sn, "ha", self.rng.uniform(0.001, 0.02) if changed else wait)
        elif thread == "hb":
            t0 = self.now
            try:
                n.beat()
            except PilotError as exc:
                self.note(f"{sn.name}: heartbeat: {exc}")
            except Exception as exc:  # noqa: BLE001
                raise Violation("no-crash", f"{sn.name}: heartbeat raised {type(exc).__name__}: {exc}") from exc
            self.schedule(sn, "hb", max(0.05, n.timing.heartbeat - (self.now - t0)) * self.rng.uniform(0.95, 1.05))
        elif thread == "probe":
            # The prober's SELECT 1 every 0.5 s; its pid poll (the crash fast path) is mysqld_gone().
            if self.mysqld[sn.name].up:
                n._sql_ok_at = self.now
            self.schedule(sn, "probe", 0.5)
        elif thread == "wd":
            self.watchdog_step(sn)
            self.schedule(sn, "wd", self.watchdog_idle(sn))

    def watchdog_idle(self, sn: SimNode) -> float:
        """When the next 0.05 s tick of the watchdog can act: the ticks between do nothing (a valid
        lease only warms the fence connection each second; an ended one is rechecked every 0.25 s).
        A state file change (state_changed) wakes it at its next tick anyway."""
        wd = sn.watchdog
        left, _ = wd.lease.writer_view(wd.margin)
        if left > 0:
            idle = min(left, 1.0 - (self.now - wd._warmed))
        else:
            idle = 0.25 - (self.now - wd._checked) if wd._checked >= 0 else 0.05
        return max(0.05, idle)

    def state_changed(self, state_dir: str) -> None:
        sn = self.by_dir.get(state_dir)
        if sn is not None and sn.node is not None and sn.next_at.get("wd", 0) > self.now + 0.05 \
                and not self.busy(sn, "wd"):
            self.schedule(sn, "wd", self.rng.uniform(0.0, 0.05))

    def mysqld_gone(self, name: str) -> None:
        """The prober's pid poll (every 0.1 s) sees mysqld gone and pokes the heartbeat."""
        sn = self.nodes.get(name)
        if sn is not None and sn.node is not None and not self.busy(sn, "hb"):
            self.schedule(sn, "hb", self.rng.uniform(0.0, 0.1))

    def watchdog_step(self, sn: SimNode) -> None:
        wd = sn.watchdog
        try:
            wd.keep_deadline_once()
            wd.check_once()
        except Exception as exc:  # noqa: BLE001
            raise Violation("no-crash", f"{sn.name}: watchdog raised {type(exc).__name__}: {exc}") from exc
        armed = wd._armed
        if armed is not None and armed != sn.armed_at and armed > self.now:
            sn.armed_at = armed          # the deadline thread wakes at the armed deadline
            self.at(armed - self.now + 0.001, sn.name, "deadline", lambda: self._deadline(sn, wd), gen=sn.gen)

    def _deadline(self, sn: SimNode, wd: Watchdog) -> None:
        if sn.watchdog is wd:
            wd.keep_deadline_once()

    def start_process(self, sn: SimNode) -> None:
        sn.gen += 1
        sn.node = sn.pilot()
        sn.watchdog = Watchdog(sn.node.lease, sn.node.fencer, sn.cfg.fence_margin)
        sn.armed_at, sn.ha_mode = None, "watch"
        self.restart_threads(sn, first=True)

    def restart_threads(self, sn: SimNode, first: bool = False) -> None:
        """Watchdog first (before any Consul call), then the prober, heartbeat and loop."""
        for th, d in (("wd", 0.0), ("probe", 0.1), ("hb", 0.0005), ("ha", 0.001)):
            if first or not self.busy(sn, th):
                self.schedule(sn, th, d)

    def busy(self, sn: SimNode, thread: str) -> bool:
        """That thread of the node's current process is mid-step (it reschedules itself when done)."""
        key = (sn.name, thread, sn.gen)
        return key in self.running or key in self.blocked

    def health(self, sn: SimNode) -> None:
        """ContainerPilot's health hook, its own process every 2 s: a second, coarse watchdog."""
        try:
            sn.pilot().health_hook()
        except PilotError:
            pass
        except Exception as exc:  # noqa: BLE001
            raise Violation("no-crash", f"{sn.name}: health hook raised {type(exc).__name__}: {exc}") from exc
        self.at(2.0 * self.rng.uniform(0.95, 1.05), sn.name, "health", lambda: self.health(sn))

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

    def thaw(self, sn: SimNode) -> None:
        sn.frozen_until = None
        self.note(f"{sn.name}: thawed")
        if sn.node is not None:
            # The watchdog wins the race at a thaw (its short GIL switch interval): modelled as first.
            self.watchdog_step(sn)
            self.restart_threads(sn)

    def became_writable(self, name: str) -> None:
        self.inv.became_writable(name)

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
                    self.at(self.rng.uniform(1, 2), name, "health", lambda sn=sn: self.health(sn))
                    self.at(self.rng.uniform(0, 0.3), "", "repl", lambda n=name: self.replicate(n))
                self.at(1.0, "", "client", self.client)
                self.faults.arm()
                self.run_until(self.p.fault_phase)
                self.faults_on = False
                # Settle until converged for `stable` seconds in a row (or the whole settle time).
                since, t = None, self.p.fault_phase
                while t < self.p.fault_phase + self.p.settle:
                    t += 1.0
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

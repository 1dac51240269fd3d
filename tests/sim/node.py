"""A simulated node, and the threads of its watch process (the HA loop, heartbeat, prober, watchdog and
its deadline) plus ContainerPilot's health hook, each a chain of scheduler events."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional

from mysqlpilot import config, failsafe, failsafe_keeper, ha
from mysqlpilot.errors import PilotError
from mysqlpilot.failsafe import Ask
from mysqlpilot.failsafe_keeper import Asker
from mysqlpilot.lease import Watchdog

from . import net
from .consul import SimAgent
from .invariants import Violation
from .patch import SimLock

if TYPE_CHECKING:
    from .world import World


class SimNode:
    """A node: its state dir, its agent, and the current incarnation of its watch process (None: dead)."""

    def __init__(self, world: "World", name: str, idx: int):
        self.w, self.name, self.idx = world, name, idx
        env = {"MYSQL_ROOT_PASSWORD": "pw", "MYSQL_REPL_PASSWORD": "pw2", "HOSTNAME": name,
               "MYSQLPILOT_NODE": name, "MYSQLPILOT_ADVERTISE_HOST": f"h-{name}", "MYSQLPILOT_PORT": "3306",
               "MYSQLPILOT_STATE_DIR": f"/sim/{name}", "MYSQLPILOT_SOCKET": f"/sim/{name}.sock",
               "MYSQLPILOT_FLAVOR": "mysql", "MYSQLPILOT_FLAVOR_VERSION": "8.0",
               "MYSQLPILOT_DURABILITY": world.durability, "MYSQLPILOT_FAILOVER_BUDGET": "1000",
               "MYSQLPILOT_FAILSAFE": "1" if world.failsafe else "0", **dict(world.p.settings)}
        self.cfg = config.load(None, env=env)
        # Each setting as a plain attribute: the same values, without Config.__getattr__ on every read
        # (a hot spot). Names the class defines (properties, methods) are left to it.
        self.cfg.__dict__.update({k: v for k, v in self.cfg.values.items()
                                  if k not in self.cfg.__dict__ and not hasattr(type(self.cfg), k)})
        self.agent = SimAgent(world.consul, name)
        self.gen = 0
        self.node: Optional[ha.Node] = None
        self.watchdog: Optional[Watchdog] = None
        self.fs: Optional[Asker] = None
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
        # A member's TCP connect to the primary's mysqld (failsafe): it answers unless cut off or down.
        n.promises.reach = lambda host, port: (lambda p: p in self.w.mysqld and self.w.mysqld[p].up
                                               and not net.of(self.w).cut(self.name, p))(self.w.host_to_name(host))
        return n

    def asker(self, n: ha.Node) -> Asker:
        """The failsafe thread's rounds, each request handed straight to the member's PromiseDesk (the
        node API's HTTP is not modelled): no answer from a dead, frozen or cut-off member."""
        a = Asker(n)

        def ask(name: str, api: str):
            sn = self.w.nodes.get(name)
            if sn is None or sn.node is None or sn.frozen_until is not None or net.of(self.w).cut(self.name, name):
                return False, "no answer"
            body = Ask(n.cfg.cluster, self.name, name, a.t.promise, failsafe_keeper.time.time()).body()
            status, text = sn.node.promises.answer(body, failsafe.sign(a.key, body))
            return status == 200, text
        a.ask = ask
        a.ask_all = lambda asked: {name: ask(name, api) for name, api in sorted(asked.items())}
        return a


class Threads:
    """The periodic threads of every node's watch process. Each step reschedules itself; a new token
    drops any older pending step of that thread (a wake-up replaces the sleep)."""

    def __init__(self, world: "World"):
        self.w = world

    def schedule(self, sn: SimNode, thread: str, delay: float) -> None:
        tok = sn.tokens.get(thread, 0) + 1
        sn.tokens[thread] = tok
        sn.next_at[thread] = self.w.now + delay
        self.w.at(delay, sn.name, thread, lambda: self.step(sn, thread, tok), gen=sn.gen)

    def busy(self, sn: SimNode, thread: str) -> bool:
        """That thread of the node's current process is mid-step (it reschedules itself when done)."""
        key = (sn.name, thread, sn.gen)
        return key in self.w.running or key in self.w.blocked

    def guarded(self, sn: SimNode, what: str, fn) -> None:
        """A call into the code under test, as its thread's loop makes it: a PilotError is survived (and
        noted), anything else is a crash the simulator reports."""
        try:
            fn()
        except PilotError as exc:
            self.w.note(f"{sn.name}: {what} failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - the loop survives it, but the sim reports it
            raise Violation("no-crash", f"{sn.name}: {what} raised {type(exc).__name__}: {exc}") from exc

    def step(self, sn: SimNode, thread: str, tok: int) -> None:
        if sn.tokens.get(thread) != tok or sn.node is None:
            return
        getattr(self, "_" + thread)(sn, sn.node)

    def _ha(self, sn: SimNode, n: ha.Node) -> None:
        w = self.w
        t0 = w.now
        self.guarded(sn, "HA pass", n.run_once)
        w.note(f"{sn.name}: {n.actions.recent[-1].action}: {n.actions.recent[-1].reason}"
               if n.actions.recent else f"{sn.name}: pass")
        wait = max(0.2, sn.cfg.loop_wait - (w.now - t0))
        due, n._due = n._due, None
        if due is not None and due < wait:
            sn.ha_mode = "due"
            self.schedule(sn, "ha", due + 0.01)
        else:
            sn.ha_mode = "watch"       # the blocking query on the leader key: it returns at once if stale
            e = w.consul.kv.get("leader")
            changed = (e.modify if e else 0) > n.leader_index or w.consul.index < n.leader_index
            self.schedule(sn, "ha", w.rng.uniform(0.001, 0.02) if changed else wait)

    def _hb(self, sn: SimNode, n: ha.Node) -> None:
        w = self.w
        t0 = w.now
        self.guarded(sn, "heartbeat", n.beat)
        self.schedule(sn, "hb", max(0.05, n.timing.heartbeat - (w.now - t0)) * w.rng.uniform(0.95, 1.05))

    def _fs(self, sn: SimNode, n: ha.Node) -> None:
        if sn.fs is None:
            return
        self.guarded(sn, "failsafe round", sn.fs.tick)
        self.schedule(sn, "fs", n.timing.heartbeat / 2)

    def _probe(self, sn: SimNode, n: ha.Node) -> None:
        # The prober's SELECT 1 every 0.5 s; its pid poll (the crash fast path) is mysqld_gone().
        if self.w.mysqld[sn.name].up:
            n._sql_ok_at = self.w.now
        self.schedule(sn, "probe", 0.5)

    def _wd(self, sn: SimNode, n: ha.Node) -> None:
        self.watchdog_step(sn)
        self.schedule(sn, "wd", self.watchdog_idle(sn))

    def watchdog_idle(self, sn: SimNode) -> float:
        """When the next 0.05 s tick of the watchdog can act: the ticks between do nothing (a valid
        lease only warms the fence connection each second; an ended one is rechecked every 0.25 s).
        A state file change (state_changed) wakes it at its next tick anyway."""
        wd, now = sn.watchdog, self.w.now
        left, _ = wd.lease.writer_view(wd.margin)
        if left > 0:
            idle = min(left, 1.0 - (now - wd._warmed))
        else:
            idle = 0.25 - (now - wd._checked) if wd._checked >= 0 else 0.05
        return max(0.05, idle)

    def watchdog_step(self, sn: SimNode) -> None:
        wd = sn.watchdog
        try:
            wd.keep_deadline_once()
            wd.check_once()
        except Exception as exc:  # noqa: BLE001 - the watchdog's own loop logs it, but the sim reports it
            raise Violation("no-crash", f"{sn.name}: watchdog raised {type(exc).__name__}: {exc}") from exc
        armed = wd._armed
        if armed is not None and armed != sn.armed_at and armed > self.w.now:
            sn.armed_at = armed          # the deadline thread wakes at the armed deadline
            self.w.at(armed - self.w.now + 0.001, sn.name, "deadline", lambda: self._deadline(sn, wd), gen=sn.gen)

    def _deadline(self, sn: SimNode, wd: Watchdog) -> None:
        if sn.watchdog is wd:
            wd.keep_deadline_once()

    # ---- wake-ups from the rest of the world --------------------------------------------------------
    def state_changed(self, sn: SimNode) -> None:
        """A state file change wakes the watchdog at its next tick if it may have to act sooner than it
        would have (a lease voided or a new writer, not a lease extended: that only moves its deadline
        later, which the deadline thread also finds)."""
        due = sn.next_at.get("wd", 0)
        if sn.node is not None and due > self.w.now + 0.05 and not self.busy(sn, "wd") \
                and self.w.now + self.watchdog_idle(sn) < due:
            self.schedule(sn, "wd", self.w.rng.uniform(0.0, 0.05))

    def mysqld_gone(self, sn: SimNode) -> None:
        """The prober's pid poll (every 0.1 s) sees mysqld gone and pokes the heartbeat."""
        if sn.node is not None and not self.busy(sn, "hb"):
            self.schedule(sn, "hb", self.w.rng.uniform(0.0, 0.1))

    def leader_changed(self) -> None:
        """Consul's blocking query on the leader key returns: every watching loop passes at once."""
        for sn in self.w.nodes.values():
            if sn.node is not None and sn.ha_mode == "watch" and not self.busy(sn, "ha"):
                self.schedule(sn, "ha", self.w.rng.uniform(0.001, 0.02))

    # ---- processes ----------------------------------------------------------------------------------
    def start_process(self, sn: SimNode) -> None:
        sn.gen += 1
        sn.node = sn.pilot()
        sn.watchdog = Watchdog(sn.node.lease, sn.node.fencer, sn.cfg.fence_margin)
        sn.fs = sn.asker(sn.node) if sn.cfg.failsafe else None
        sn.armed_at, sn.ha_mode = None, "watch"
        self.restart_threads(sn, first=True)

    def restart_threads(self, sn: SimNode, first: bool = False) -> None:
        """Watchdog first (before any Consul call), then the prober, heartbeat and loop."""
        for th, d in (("wd", 0.0), ("probe", 0.1), ("hb", 0.0005), ("ha", 0.001), ("fs", 0.2)):
            if first or not self.busy(sn, th):
                self.schedule(sn, th, d)

    def thaw(self, sn: SimNode) -> None:
        sn.frozen_until = None
        self.w.note(f"{sn.name}: thawed")
        if sn.node is not None:
            # The watchdog wins the race at a thaw (its short GIL switch interval): modelled as first.
            self.watchdog_step(sn)
            self.restart_threads(sn)

    def health(self, sn: SimNode) -> None:
        """ContainerPilot's health hook, its own process every 2 s: a second, coarse watchdog."""
        self.guarded(sn, "health hook", lambda: sn.pilot().health_hook())
        self.w.at(2.0 * self.w.rng.uniform(0.95, 1.05), sn.name, "health", lambda: self.health(sn))

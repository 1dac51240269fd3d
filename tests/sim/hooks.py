"""ContainerPilot's hook processes, each killed on its own (faults.py): the health hook is a process of
its own every 2 s (world.health); a kill lands at one of its next SQL or Consul calls (mid-fence,
mid-publish), and ContainerPilot runs the next check at its interval. A container stop runs pre-stop
(its own process, with its own heartbeat, watchdog and prober threads) while the watch job stops; then
mysqld stops and the container starts again later. pre-stop may be killed midway (the container killed
with everything in it)."""
from __future__ import annotations

import json
import random
from typing import Dict, Optional, Set

from mysqlpilot.errors import PilotError
from mysqlpilot.lease import Watchdog

from .invariants import Violation

from .patch import SimKilled


class Hooks:
    def __init__(self, world):
        self.w = world
        self.health_kill_at: Dict[str, int] = {}     # node -> calls of its health hook left before the kill
        self.stopping: Set[str] = set()              # nodes whose container is stopping or stopped

    def kill_health(self, sn, rng: random.Random) -> bool:
        if sn.name in self.health_kill_at:
            return False
        self.health_kill_at[sn.name] = rng.randint(1, 8)
        self.w.note(f"FAULT {sn.name}: the health hook will be killed at its "
                    f"{self.health_kill_at[sn.name]}th call from now")
        return True

    def call(self) -> None:
        """Every SQL or Consul call of the code under test passes here: a hook process marked to die does."""
        ev = self.w.current
        if ev is None or ev.thread != "health" or ev.node not in self.health_kill_at:
            return
        self.health_kill_at[ev.node] -= 1
        if self.health_kill_at[ev.node] > 0:
            return
        del self.health_kill_at[ev.node]
        sn = self.w.nodes[ev.node]
        self.w.note(f"{ev.node}: health hook killed mid-run")
        self.w.at(2.0, ev.node, "health", lambda: self.w.health(sn))      # ContainerPilot's next check
        raise SimKilled()


    # ---- a container stop: pre-stop, then mysqld stops; the container starts again later ------------------
    def stop(self, sn, rng: random.Random, kill_after: Optional[float]) -> bool:
        w = self.w
        if sn.name in self.stopping or sn.node is None or sn.frozen_until is not None:
            return False
        self.stopping.add(sn.name)
        w.note(f"FAULT {sn.name}: container stop (pre-stop{f', killed after {kill_after:.3f}s' if kill_after else ''})")
        sn.gen += 1                      # ContainerPilot stops the watch job as pre-stop starts
        node = sn.pilot()
        sn.node, sn.watchdog, sn.armed_at = node, Watchdog(node.lease, node.fencer, sn.cfg.fence_margin), None
        threads = ("wd", "probe", "hb")
        node.start_threads = lambda heartbeat=True: [w.schedule(sn, th, d) for th, d in zip(threads, (0, 0.1, 0.001))]
        node.stop_threads = lambda: [sn.tokens.__setitem__(th, sn.tokens.get(th, 0) + 1) for th in threads]
        gen = sn.gen
        w.at(0.0, sn.name, "prestop", lambda: self._pre_stop(sn, node, gen), gen=gen)
        if kill_after is not None:
            w.at(kill_after, "", "prestop-kill", lambda: self._killed(sn, gen))
        return True

    def _pre_stop(self, sn, node, gen: int) -> None:
        try:
            said = node.pre_stop(timeout=10.0)
        except PilotError as exc:
            said = f"failed: {exc}"
        except Exception as exc:  # noqa: BLE001
            raise Violation("no-crash", f"{sn.name}: pre-stop raised {type(exc).__name__}: {exc}") from exc
        self.w.note(f"{sn.name}: pre-stop: {said}")
        if sn.gen == gen:
            self._down(sn)

    def _killed(self, sn, gen: int) -> None:
        if sn.gen == gen:
            self.w.note(f"{sn.name}: container killed during pre-stop")
            self._down(sn)

    def _down(self, sn) -> None:
        """Everything in the container is gone; it starts again (run-mysqld, then watch) a few seconds later."""
        w = self.w
        sn.gen += 1
        sn.node, sn.watchdog = None, None
        w.mysqld[sn.name].crash("stopped with its container")
        w.at(w.rng.uniform(1.0, 6.0), "", "container", lambda: self._start(sn))

    def _start(self, sn) -> None:
        w = self.w
        d = sn.cfg.state_dir
        st = json.loads(w.states.get(d, "{}"))
        st.pop("stopping", None)          # run-mysqld's start (datadir.py): stopping cleared
        dict.__setitem__(w.states, d, json.dumps(st))
        self.stopping.discard(sn.name)
        w.start_mysqld(sn.name)
        w.start_process(sn)


def of(world) -> Hooks:
    return world.faults.hooks

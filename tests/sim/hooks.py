"""ContainerPilot's hook processes, each killed on its own (faults.py): the health hook is a process of
its own every 2 s (world.health); a kill lands at one of its next SQL or Consul calls (mid-fence,
mid-publish), and ContainerPilot runs the next check at its interval."""
from __future__ import annotations

import random
from typing import Dict

from .patch import SimKilled


class Hooks:
    def __init__(self, world):
        self.w = world
        self.health_kill_at: Dict[str, int] = {}     # node -> calls of its health hook left before the kill

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


def of(world) -> Hooks:
    return world.faults.hooks

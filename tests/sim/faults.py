"""The faults of one run: a schedule drawn up front from the seed (what shrinking cuts), and how each
kind is injected. Each fault draws its own parameters from its own seed, so dropping one fault from a
schedule leaves the others as they were."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from mysqlpilot.analysis import choose_switchover_target

from .clock import WALL_BASE

if TYPE_CHECKING:
    from .world import SimNode, World

FAULTS = ("kill", "freeze", "session_loss", "mysqld_crash", "switchover", "failover", "delete_leader",
          "consul_restart", "data_loss", "sql_stop")
WEIGHTS = (4, 4, 3, 3, 3, 1, 2, 1, 0.3, 2)


@dataclass(frozen=True)
class Fault:
    t: float          # virtual seconds
    kind: str
    node: str         # the node it hits (world-wide kinds ignore it)
    seed: int         # its own parameters' seed

    def spell(self) -> str:
        return f"{self.t:.3f}:{self.kind}:{self.node}:{self.seed}"

    @staticmethod
    def parse(text: str) -> "Fault":
        t, kind, node, seed = text.split(":")
        return Fault(float(t), kind, node, int(seed))


def draw(rng: random.Random, names: Sequence[str], phase: float, gap: Tuple[float, float],
         weights: Sequence[float]) -> List[Fault]:
    out, t = [], rng.uniform(3.0, 6.0)
    if not any(weights):
        return out
    while t < phase:
        out.append(Fault(round(t, 6), rng.choices(FAULTS, weights=weights)[0], rng.choice(names),
                         rng.getrandbits(32)))
        t += rng.uniform(*gap)
    return out


class Faults:
    """Injects a schedule into a world; counts what each kind did (a fault that found nothing to hit,
    a kill of a dead process, is not counted)."""

    def __init__(self, world: "World", schedule: List[Fault]):
        self.w, self.schedule = world, schedule
        self.seen: dict = {}

    def arm(self) -> None:
        for f in self.schedule:
            self.w.at(f.t, "", "fault", lambda f=f: self.fire(f))

    def fire(self, f: Fault) -> None:
        if not self.w.faults_on:
            return
        if self.inject(f.kind, self.w.nodes[f.node], random.Random(f.seed)):
            self.seen[f.kind] = self.seen.get(f.kind, 0) + 1

    def inject(self, kind: str, sn: "SimNode", rng: random.Random) -> bool:
        w = self.w
        c = w.consul
        leader = c.kv.get("leader")
        if kind == "kill":
            if sn.node is None or sn.frozen_until is not None:
                return False             # a frozen node's supervisor is frozen too
            w.note(f"FAULT {sn.name}: watch process killed")
            sn.gen += 1
            sn.node, sn.watchdog = None, None
            w.at(rng.uniform(0.2, 3.0), sn.name, "restart", lambda: w.start_process(sn))
        elif kind == "freeze":
            if sn.frozen_until is not None:
                return False
            sn.frozen_until = w.now + rng.uniform(0.3, 8.0)
            w.note(f"FAULT {sn.name}: frozen until {sn.frozen_until:.3f}")
            w.at(sn.frozen_until - w.now, sn.name, "thaw", lambda: w.thaw(sn))
        elif kind == "session_loss":
            sids = [s for s, x in c.sessions.items() if x.node == sn.name]
            if not sids:
                return False
            w.note(f"FAULT {sn.name}: Consul ends session {sids[0]}")
            c.invalidate(sids[0], "fault")
        elif kind == "mysqld_crash":
            if not w.mysqld[sn.name].up:
                return False
            w.note(f"FAULT {sn.name}: mysqld crashed")
            w.mysqld[sn.name].crash("crashed")
            w.mysqld_gone(sn.name)
            w.at(rng.uniform(0.5, 5.0), "", "mysqld", lambda: w.start_mysqld(sn.name))
        elif kind in ("switchover", "failover"):
            return self.operator(kind, sn, rng)
        elif kind == "sql_stop":
            m = w.mysqld[sn.name]
            if not (m.up and m.source):
                return False
            m.sql_error_until = w.now + rng.uniform(5.0, 40.0)
            w.note(f"FAULT {sn.name}: SQL thread stops on an apply error until {m.sql_error_until:.3f}")
        elif kind == "delete_leader":
            if leader is None:
                return False
            w.note("FAULT the leader key is deleted (LockIndex starts over)")
            c.delete_key("leader")
        elif kind == "consul_restart":
            w.note("FAULT Consul server restart (lock-delay forgotten)")
            c.restart()
        elif kind == "data_loss":
            w.note("FAULT Consul data loss (index starts over)")
            c.data_loss()
        return True

    def operator(self, kind: str, sn: "SimNode", rng: random.Random) -> bool:
        """`mysqlpilot switchover`/`failover` as run from node sn (failover without the command's own
        checks: the HA code must hold on its own)."""
        w = self.w
        view = sn.agent.get_cluster()
        if view.leader is None and kind == "switchover":
            return False
        old: Optional[str] = view.leader.name if view.leader is not None else \
            next((h.get("new_primary") for h in reversed(view.history) if h.get("new_primary")), None)
        if kind == "switchover":
            target, _ = choose_switchover_target(view.members, old, None)
        else:
            alive = sorted(m.name for m in view.members if m.alive and m.name != old)
            target = rng.choice(alive) if alive else None
        if target is None:
            return False
        w.note(f"FAULT operator {kind} {old} -> {target}")
        sn.agent.put_json("switchover", {"to": target, "from": old,
                                         "kind": "switchover" if kind == "switchover" else "manual-failover",
                                         "reason": f"sim {kind}", "requested": WALL_BASE + w.now,
                                         "lock_index": view.lock_index})
        if kind == "failover" and view.leader is not None:
            sn.agent.destroy_session(view.leader.session)
        return True

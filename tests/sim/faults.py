"""The faults of one run: a schedule drawn up front from the seed (what shrinking cuts), and how each
kind is injected. Each fault draws its own parameters from its own seed, so dropping one fault from a
schedule leaves the others as they were."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from mysqlpilot.analysis import choose_switchover_target

from . import clients, net
from .consul import SimAgent
from .clock import WALL_BASE
from .hooks import Hooks
from .hostile import Hostile, StateStore

if TYPE_CHECKING:
    from .world import SimNode, World

# Every kind heals: a process or mysqld restarts, a freeze thaws, a partition or a lossy link mends, a
# full disk frees, a hostile value is put right, a slow or stopped SQL thread recovers.
FAULTS = ("kill", "freeze", "session_loss", "mysqld_crash", "switchover", "failover", "delete_leader",
          "consul_restart", "data_loss", "sql_stop",
          "partition", "consul_cut", "consul_lossy", "agent_restart", "slow_apply", "disk_full", "hostile",
          "errant", "switchover_stuck", "clock_jump", "health_kill", "stop", "prestop_kill")
WEIGHTS = (4, 4, 3, 3, 3, 1, 2, 1, 0.3, 2,
           2, 2, 2, 1, 1, 1, 1, 0.3, 1, 1, 1, 1, 1)


MAX_LAG = 5.0            # max_lag_on_failover in the sim


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
        self.net = net.of(world)
        world.states = StateStore(world.states)      # a state dir can be made full (disk_full)
        world.states.world = world
        self.hostile = Hostile(world)
        self.operator_agent = SimAgent(world.consul, "operator")
        self.hooks = Hooks(world)

    def arm(self) -> None:
        for sn in self.w.nodes.values():
            # 20 s of faults: a lag over the default 30 s could never build up.
            sn.cfg.max_lag_on_failover = MAX_LAG
        for f in self.schedule:
            self.w.at(f.t, "", "fault", lambda f=f: self.fire(f))
        self.w.at(1.0, "", "client-rt", lambda: clients.with_timeouts(self.w))

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
            if sn.node is None or sn.frozen_until is not None or sn.name in self.hooks.stopping:
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
        elif kind in ("switchover", "failover", "switchover_stuck"):
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
        else:
            return self.inject_more(kind, sn, rng)
        return True

    def heal_after(self, rng: random.Random, lo: float, hi: float, what: str, fn) -> None:
        def heal():
            fn()
            self.w.note(f"HEAL {what}")
        self.w.at(rng.uniform(lo, hi), "", "heal", heal)

    def inject_more(self, kind: str, sn: "SimNode", rng: random.Random) -> bool:
        w, nt = self.w, self.net
        others = [n for n in w.names if n != sn.name]
        if kind == "partition":
            pair = frozenset((sn.name, rng.choice(others)))
            if pair in nt.pairs:
                return False
            nt.pairs.add(pair)
            w.note(f"FAULT partition {'/'.join(sorted(pair))}")
            self.heal_after(rng, 0.5, 12.0, f"partition {'/'.join(sorted(pair))}", lambda: nt.pairs.discard(pair))
        elif kind == "consul_cut":
            if sn.name in nt.consul_cut:
                return False
            nt.consul_cut.add(sn.name)
            w.note(f"FAULT {sn.name} cut from Consul")
            self.heal_after(rng, 0.5, 12.0, f"{sn.name} reaches Consul", lambda: nt.consul_cut.discard(sn.name))
        elif kind == "consul_lossy":
            if sn.name in nt.loss or sn.name in nt.delay:
                return False
            nt.loss[sn.name] = (rng.uniform(0.0, 0.4), rng.uniform(0.0, 0.4))
            nt.delay[sn.name] = rng.choice((0.0, rng.uniform(0.01, 0.3), rng.uniform(0.3, 3.0)))
            w.note(f"FAULT {sn.name}'s Consul calls: lost/answer lost {nt.loss[sn.name][0]:.2f}/"
                   f"{nt.loss[sn.name][1]:.2f}, {nt.delay[sn.name]:.3f}s each")
            self.heal_after(rng, 1.0, 12.0, f"{sn.name}'s Consul calls",
                            lambda: (nt.loss.pop(sn.name, None), nt.delay.pop(sn.name, None)))
        elif kind == "agent_restart":
            if sn.name in nt.consul_cut:
                return False
            w.note(f"FAULT {sn.name}'s Consul agent restarts")
            w.consul.agent_restart(sn.name)
            nt.consul_cut.add(sn.name)
            self.heal_after(rng, 0.3, 3.0, f"{sn.name}'s agent is back", lambda: nt.consul_cut.discard(sn.name))
        elif kind == "slow_apply":
            m = w.mysqld[sn.name]
            if not (m.up and m.source) or m.slow_until > w.now:
                return False
            m.slow_until, m.slow_every = w.now + rng.uniform(5.0, 40.0), rng.uniform(0.5, 4.0)
            w.note(f"FAULT {sn.name}: SQL thread slow (a transaction every {m.slow_every:.1f}s) until "
                   f"{m.slow_until:.3f}")
        elif kind == "disk_full":
            d = sn.cfg.state_dir
            if d in w.states.full:
                return False
            w.states.full.add(d)
            w.note(f"FAULT {sn.name}: state dir full (ENOSPC)")
            self.heal_after(rng, 0.5, 10.0, f"{sn.name}: state dir has room", lambda: w.states.full.discard(d))
        elif kind == "clock_jump":
            offsets = w.__dict__.setdefault("wall_offsets", {})
            if offsets.get(sn.name):
                return False
            offsets[sn.name] = rng.choice((-1, 1)) * rng.choice((rng.uniform(0.5, 30.0), rng.uniform(60.0, 7200.0)))
            w.note(f"FAULT {sn.name}: wall clock stepped {offsets[sn.name]:+.1f}s (monotonic unaffected)")
            self.heal_after(rng, 1.0, 15.0, f"{sn.name}: wall clock stepped back", lambda: offsets.pop(sn.name, None))
        elif kind == "health_kill":
            return self.hooks.kill_health(sn, rng)
        elif kind in ("stop", "prestop_kill"):
            return self.hooks.stop(sn, rng, rng.uniform(0.005, 3.0) if kind == "prestop_kill" else None)
        elif kind == "hostile":
            return self.hostile.inject(sn, rng, self.heal_after)
        elif kind == "errant":
            m = w.mysqld[sn.name]
            if not (m.up and m.ro):
                return False
            m.errant_commit()
            w.note(f"FAULT {sn.name}: an errant transaction (a SUPER client wrote on a read-only replica)")
        else:
            raise ValueError(f"unknown fault kind {kind}")
        return True

    def operator(self, kind: str, sn: "SimNode", rng: random.Random) -> bool:
        """`mysqlpilot switchover`/`failover` as run from node sn (failover without the command's own
        checks: the HA code must hold on its own)."""
        w = self.w
        agent = self.operator_agent     # the operator's own shell: not behind the node's network faults
        view = agent.get_cluster()
        if view.leader is None and kind != "failover":
            return False
        old: Optional[str] = view.leader.name if view.leader is not None else \
            next((h.get("new_primary") for h in reversed(view.history) if h.get("new_primary")), None)
        if kind != "failover":
            target, _ = choose_switchover_target(view.members, old, None)
        else:
            alive = sorted(m.name for m in view.members if m.alive and m.name != old)
            target = rng.choice(alive) if alive else None
        if target is None:
            return False
        w.note(f"FAULT operator {kind} {old} -> {target}")
        if kind == "switchover_stuck":
            # The target then hits an apply error on its next transaction: it cannot catch up in time.
            m = w.mysqld[target]
            m.sql_error_until = w.now + rng.uniform(20.0, 60.0)
            w.note(f"FAULT {target}: SQL thread stops on an apply error until {m.sql_error_until:.3f}")
        agent.put_json("switchover", {"to": target, "from": old,
                                         "kind": "manual-failover" if kind == "failover" else "switchover",
                                         "reason": f"sim {kind}", "requested": WALL_BASE + w.now,
                                         "lock_index": view.lock_index})
        if kind == "failover" and view.leader is not None:
            agent.destroy_session(view.leader.session)
        return True

"""The deterministic simulator of the HA protocol (tests/sim, bench/sim.py; issue 19, first slice).

Each seed runs the real Node code of three nodes on a virtual clock over a simulated Consul and simulated
mysqlds, with faults, and checks the invariants after every step (the defects it finds: test_sim_defects.py).
Known findings (world.FINDINGS) are protocol gaps the simulator found and reports apart; they do not fail
these tests."""
from tests.sim.world import FINDINGS, World, params

SEEDS = 30             # the full scenario; scripts/test.sh's sim leg runs 1,500 seeds of the short one


def violations(seeds, mix=("", None)):
    out = []
    for seed in seeds:
        v = World(seed, params(*mix)).run()
        if v is not None and v.invariant not in FINDINGS:
            out.append((seed, str(v)))
    return out


def test_the_protocol_keeps_its_invariants_over_many_seeds():
    assert violations(range(SEEDS)) == []


def test_a_seed_replays_exactly():
    a, b = World(3), World(3)
    assert (a.run() is None) == (b.run() is None)
    assert a.log == b.log and a.steps == b.steps and a.writes == b.writes


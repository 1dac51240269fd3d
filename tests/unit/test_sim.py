"""The deterministic simulator of the HA protocol (tests/sim, bench/sim.py; issue 19, first slice).

Each seed runs the real Node code of three nodes on a virtual clock over a simulated Consul and simulated
mysqlds, with faults, and checks the invariants after every step. Known findings (world.FINDINGS) are
protocol gaps the simulator found and reports apart; they do not fail these tests."""
from tests.sim.defects import put_back
from tests.sim.world import FINDINGS, World, params

SEEDS = 150            # 30-55 s on this machine, by the load other jobs put on its 2 cores


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


# The fault mix and seed range each defect test uses: `bench/sim.py --seeds N --defect D --faults F
# --durability X` shows the same.
UNION_MIX = ("freeze=6,failover=6,mysqld_crash=3,session_loss=2", "semi-sync")


def test_the_designated_target_that_skipped_the_union_rule_is_found_within_25_seeds():
    """A manual failover to a replica lacking acknowledged commits another replica holds: with the union
    rule skipped for designated targets, it is promoted and the commits are lost (first at seed 21)."""
    found = []
    with put_back("designated-skips-union-rule"):
        for seed in range(25):
            v = World(seed, params(*UNION_MIX)).run()
            if v is not None and v.invariant == "no-acked-loss":
                found.append(seed)
    assert found, "the simulator no longer finds the designated target that skipped the union rule"
    # The fixed code, same seeds and mix: no violation.
    assert violations(range(25), mix=UNION_MIX) == []


ABORT_MIX = ("switchover=6,sql_stop=6,session_loss=6", "async")


def test_the_aborted_switchover_that_turned_writable_is_found_within_30_seeds():
    """A switchover whose target's SQL thread is stopped aborts after HANDOVER_CATCHUP; meanwhile the
    primary's session ended and another node was elected. Turned writable without asking whose lock
    it was, two servers take writes (first at seed 25)."""
    found = []
    with put_back("abort-writable-unconditionally"):
        for seed in range(30):
            v = World(seed, params(*ABORT_MIX)).run()
            if v is not None and v.invariant == "one-writer":
                found.append(seed)
    assert found, "the simulator no longer finds the aborted switchover that turned writable"
    assert violations(range(30), mix=ABORT_MIX) == []

"""Issue 9: a short seeded chaos campaign, drawn from the whole fault catalogue, under semi-sync write load.

bench/chaos.py runs campaigns of any length; CI runs this one: 10 faults, seed 1632, whose draw holds
every kind issue 9 added (partition between the primary and its replicas only, Consul restarted with
its data, a replica's mysqld restarted just before the primary is killed, a switchover under a held
lock, the store going down while a snapshot uploads and during a replica's restore, a forced
manual failover of a healthy primary) beside older ones. The draw is checked first: the same seed must
give the same plan on every machine, so a failure here replays with

    python3 bench/chaos.py --seed 1632 --faults 10

Every check after each fault and at the end must hold: convergence, no acknowledged write missing,
never two writable nodes (outside the thaw window, reported apart), no datadir moved aside without an
errant transaction, no phantom row, replicas' CHECKSUM TABLE equal to the primary's, nothing of the
cluster left running. The run stops at the first violation; its one-line verdict names the fault.
"""

import pytest

from tests.harness.chaos import make_plan, make_schedule, missing_for_chaos, run_chaos, write_json
from tests.harness.cluster import Cluster

pytestmark = pytest.mark.integration

SEED = 1632
PLAN = ["manual-failover", "kill-replica", "crash-mysqld", "kill-watch", "store-down-snapshot", "restart-consul",
        "replica-mysqld-restart-then-kill-primary", "switchover-under-lock", "partition-replicas",
        "store-down-restore"]


def _missing() -> str:
    return missing_for_chaos(campaign=True)


def test_the_campaign_plan_is_a_function_of_the_seed():
    assert make_schedule(10, SEED) == PLAN
    a, b = make_plan(PLAN, SEED), make_plan(list(PLAN), SEED)
    assert a == b
    assert [(s.kind, s.variant) for s in a if s.variant] == [("store-down-snapshot", "during"),
                                                             ("switchover-under-lock", "lock-tables")]
    # Overlaps are seeded too, and only start inside a fault that holds.
    o = make_plan(make_schedule(40, 5), 5, overlap=True)
    assert o == make_plan(make_schedule(40, 5), 5, overlap=True)
    assert any(s.overlap_after is not None for s in o)
    for prev, s in zip(o, o[1:]):
        if s.overlap_after is not None:
            assert prev.kind.startswith(("freeze", "partition")) and prev.overlap_after is None


@pytest.mark.skipif(bool(_missing()), reason=f"needs {_missing()} (scripts/install-deps.sh)")
@pytest.mark.timeout(480)
@pytest.mark.flavors("mariadb", reason="the chaos harness checks convergence with MariaDB SQL (MASTER_GTID_WAIT, gtid_current_pos), and CI has time for one campaign: MySQL failover, fencing and errant rebuilds run in test_failover.py")
def test_a_seeded_campaign_over_the_whole_catalogue_holds_every_check(tmp_path, flavor):
    c = Cluster(str(tmp_path / "cl"), env={"MYSQL_ROOT_PASSWORD": "chaos-Root-9", "MYSQL_REPL_PASSWORD": "chaos-r-9"})
    v = run_chaos(c, make_schedule(10, SEED), nodes=3, seed=SEED, hold=10, writers=3, durability="semi-sync",
                  converge_timeout=60, time_budget=300, final_timeout=60, stop_on_violation=True)
    write_json(v, str(tmp_path / "chaos.json"))
    report = f"{v.render()}\n\nper fault, from history and node logs:\n{v.render_logs()}\n" \
             f"(verdict JSON: {tmp_path / 'chaos.json'}; node logs: {c.dir}/nodes/*/logs/)"
    print(report)
    assert [e.fault for e in v.events] == PLAN[:len(v.events)]
    assert v.ok and not v.violations, v.verdict_line() + "\n\n" + report
    assert len(v.events) == len(PLAN) and v.converged == len(PLAN), report
    assert v.checksums and len(set(v.checksums.values())) == 1, report
    assert not v.leftovers, report

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

On MySQL 9.7 (the flavor fixture's other value) CI runs a short plan instead, the `fences` schedule:
crash-mysqld, freeze-primary (14 s hold: long enough for a failover, so the thawed primary fences with
clients queued on it and is rebuilt by remote CLONE), switchover, manual-failover. Each fences or demotes
a MySQL primary under semi-sync write load, the fence order issue 18 item 3 is about. It is short for
CI's time: the MySQL leg may grow by about 3 minutes, which a 3-node MySQL cluster's start and stop and
four faults fill. (Not a prefix of PLAN: its first six faults hold neither a freeze nor a plain
switchover.) A failure replays with

    python3 bench/chaos.py --flavor mysql --schedule fences --seed 1632

and the full campaign on MySQL is `python3 bench/chaos.py --flavor mysql --faults 30 --seed S`.
"""

import pytest

from tests.harness.chaos import FENCES, make_plan, make_schedule, missing_for_chaos, run_chaos, write_json
from tests.harness.cluster import Cluster

pytestmark = pytest.mark.integration

SEED = 1632
PLAN = ["manual-failover", "kill-replica", "crash-mysqld", "kill-watch", "store-down-snapshot", "restart-consul",
        "replica-mysqld-restart-then-kill-primary", "switchover-under-lock", "partition-replicas",
        "store-down-restore"]

# What each flavor's run is: (schedule name or None for the seeded draw, faults, hold, time budget for the
# faults, bound on the final convergence). MySQL's final wait covers a rebuild by remote CLONE, which
# initialises a throwaway recipient first.
RUNS = {
    "mariadb": (None, PLAN, 10, 300, 60),
    "mysql": ("fences", list(FENCES), 14, 180, 120),
}


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


def test_the_mysql_run_is_the_short_fences_schedule():
    schedule, faults, _, _, _ = RUNS["mysql"]
    assert make_schedule(None, SEED, schedule) == faults
    assert {"crash-mysqld", "freeze-primary", "switchover", "manual-failover"} <= set(faults)
    assert RUNS["mariadb"][1] == make_schedule(10, SEED)


@pytest.mark.timeout(480)
def test_a_seeded_campaign_over_the_whole_catalogue_holds_every_check(tmp_path, flavor):
    # MariaDB: the 10-fault draw, partitions and store faults included; MySQL: the short plan (docstring).
    why = missing_for_chaos(campaign=flavor == "mariadb", flavor=flavor)
    if why:
        pytest.skip(f"needs {why} (scripts/install-deps.sh)")
    schedule, plan, hold, budget, final = RUNS[flavor]
    c = Cluster(str(tmp_path / "cl"), env={"MYSQL_ROOT_PASSWORD": "chaos-Root-9", "MYSQL_REPL_PASSWORD": "chaos-r-9"},
                flavor=flavor)
    v = run_chaos(c, list(plan), nodes=3, seed=SEED, hold=hold, writers=3, durability="semi-sync",
                  converge_timeout=60, schedule=schedule, time_budget=budget, final_timeout=final,
                  stop_on_violation=True)
    write_json(v, str(tmp_path / "chaos.json"))
    report = f"{v.render()}\n\nper fault, from history and node logs:\n{v.render_logs()}\n" \
             f"(verdict JSON: {tmp_path / 'chaos.json'}; node logs: {c.dir}/nodes/*/logs/)"
    print(report)
    # Whether the frozen primary was replaced while frozen (the thaw then fences an old primary) is shown
    # in the report, not asserted: on a loaded 2-core machine the failover can take longer than the hold.
    assert [e.fault for e in v.events] == list(plan)[:len(v.events)]
    assert v.ok and not v.violations, v.verdict_line() + "\n\n" + report
    assert len(v.events) == len(plan) and v.converged == len(plan), report
    assert v.checksums and len(set(v.checksums.values())) == 1, report
    assert not v.leftovers, report

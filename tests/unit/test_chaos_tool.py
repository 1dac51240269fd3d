"""The chaos tool's arithmetic and reporting (issue 9), without a cluster: the seeded plan, write
unavailability from the ledger, percentiles, the one-line verdict and the JSON keys."""
from tests.harness.chaos import (ASYNC_LOSS_BOUND, FAULTS, FaultEvent, Verdict, _stats, async_loss_problem,
                                 longest_gap, make_plan, make_schedule, replay_command)


def _verdict(**kw) -> Verdict:
    base = dict(config={"seed": 7, "faults": ["kill-primary", "switchover"], "durability": "semi-sync",
                        "dir": "/tmp/x/cl", "replay": "python3 bench/chaos.py --seed 7 --faults 2", "nodes": 3,
                        "writers": 4, "hold": 14.0},
                final_primary="node1", acked=100, unknown=2, rejected=1, lost=[], phantom={}, unknown_committed=1,
                samples=50, double_writable=[], convergence_failures=[], nodes={},
                events=[FaultEvent(index=1, fault="kill-primary", target="node1", converged_after=12.0,
                                   unavailable=10.5, rebuilds=1),
                        FaultEvent(index=2, fault="switchover", target="node2", converged_after=2.0,
                                   unavailable=0.5)],
                lost_by={}, errors={}, seconds=60.0, markers={})
    base.update(kw)
    return Verdict(**base)


def test_the_catalogue_holds_every_fault_issue_9_names():
    for kind in ("kill-primary", "kill-replica", "crash-mysqld", "freeze-primary", "partition-primary",
                 "partition-full", "partition-replicas", "restart-consul", "kill-watch",
                 "replica-mysqld-restart-then-kill-primary", "switchover-under-lock", "store-down-snapshot",
                 "store-down-restore", "term-primary", "switchover", "manual-failover"):
        assert kind in FAULTS


def test_plans_replay_from_the_seed_and_draw_from_kinds():
    assert make_schedule(30, 11) == make_schedule(30, 11)
    assert make_schedule(30, 11) != make_schedule(30, 12)
    assert set(make_schedule(50, 3, kinds=["switchover", "kill-watch"])) == {"switchover", "kill-watch"}
    p = make_plan(make_schedule(30, 11), 11, overlap=True, hold=14)
    assert p == make_plan(make_schedule(30, 11), 11, overlap=True, hold=14)
    assert all(s.overlap_after is None for s in make_plan(make_schedule(30, 11), 11))
    for prev, s in zip(p, p[1:]):
        if s.overlap_after is not None:
            assert prev.overlap_after is None and 1.0 <= s.overlap_after <= 12.0


def test_write_unavailability_is_the_longest_gap_around_the_fault():
    acks = [1.0, 1.1, 1.2, 5.0, 5.1, 5.9, 6.1]
    # From the last ack before the fault (1.2) to the first after the gap (5.0).
    assert longest_gap(acks, 2.0, 6.0) == 3.8
    # No ack after the window: up to its end.
    assert longest_gap([1.0], 2.0, 4.0) == 3.0
    assert longest_gap([], 0.0, 1.0) is None


def test_percentiles_are_nearest_rank():
    assert _stats([]) == {"p50": None, "p95": None, "max": None}
    s = _stats([float(x) for x in range(1, 21)])
    assert (s["p50"], s["p95"], s["max"]) == (10.0, 19.0, 20.0)


def test_a_passing_verdict_and_its_json():
    v = _verdict()
    assert v.ok and v.verdict_line().startswith("VERDICT PASS: seed 7, 2 of 2 faults, 2 converged")
    j = v.to_json()
    for key in ("faults", "converged", "acked", "lost", "double_writable_samples", "samples", "seed", "violations"):
        assert key in j
    assert (j["faults"], j["converged"], j["lost"], j["violations"], j["seed"]) == (2, 2, 0, [], 7)
    table = v.render_table()
    assert "kill-primary" in table and "10.5s" in table
    assert v.per_kind()["kill-primary"]["rebuilds"] == 1


def test_the_first_violation_names_seed_fault_and_replay():
    v = _verdict(violations=[{"fault": 1, "kind": "kill-primary", "target": "node1", "check": "lost",
                              "detail": "3 acknowledged ids missing on the primary node2"},
                             {"fault": None, "kind": "", "check": "checksum", "detail": "x"}])
    line = v.verdict_line()
    assert not v.ok
    assert line.startswith("VERDICT FAIL: seed 7, fault 1 of 2 (kill-primary on node1): lost: 3 acknowledged")
    assert "(+1 more)" in line and "replay: python3 bench/chaos.py --seed 7 --faults 2" in line
    assert "/tmp/x/cl" in line


def test_async_losses_within_the_bound_are_reported_not_violations():
    v = _verdict(lost=[5, 6], config={**_verdict().config, "durability": "async"})
    assert v.ok
    assert not _verdict(lost=[5, 6]).ok


def test_async_mode_may_lose_writes_only_at_an_unplanned_failover_and_within_the_bound():
    assert async_loss_problem([("kill-primary", True)], []) is None
    assert async_loss_problem([("kill-primary", True)], [0.3, -0.1]) is None
    # A planned hand-over waits for the new primary to hold everything: no loss, even in async mode.
    for planned in ("switchover", "switchover-under-lock", "term-primary"):
        assert "no unplanned failover" in async_loss_problem([(planned, True)], [0.2])
    # No primary change: nothing may be lost.
    assert "no unplanned failover" in async_loss_problem([("kill-replica", False)], [0.2])
    assert "no unplanned failover" in async_loss_problem([("crash-mysqld", False)], [0.2])
    # One unplanned failover in an overlapping pair is enough.
    assert async_loss_problem([("switchover", True), ("freeze-primary", True)], [0.2]) is None
    # Older than max_lag_on_failover: the replica promoted lagged more than the bound allows.
    assert "beyond the max_lag_on_failover bound" in async_loss_problem([("kill-primary", True)],
                                                                      [ASYNC_LOSS_BOUND + 1])


def test_the_async_report_shows_lost_writes_per_unplanned_failover_beside_the_bound():
    evs = [FaultEvent(index=1, fault="kill-primary", primary_before="node1", primary_after="node2", lost_seen=7,
                      lost_oldest_age=0.4),
           FaultEvent(index=2, fault="switchover", primary_before="node2", primary_after="node3"),
           FaultEvent(index=3, fault="crash-mysqld", primary_before="node3", primary_after="node1", lost_seen=1,
                      lost_oldest_age=0.1),
           FaultEvent(index=4, fault="kill-replica", primary_before="node1", primary_after="node1")]
    v = _verdict(events=evs, lost=list(range(8)), config={**_verdict().config, "durability": "async"})
    d = v.failover_losses()
    assert (d["failovers"], d["lost"], d["per_failover"]["max"], d["oldest_lost_age_max"]) == (2, 8, 7.0, 0.4)
    assert d["bound_s"] == ASYNC_LOSS_BOUND and d["by_kind"]["kill-primary"] == {"failovers": 1, "lost": 7}
    assert v.to_json()["failover_losses"] == d
    out = v.render()
    assert "lost per unplanned failover" in out and f"{ASYNC_LOSS_BOUND:.0f}s" in out
    assert "per unplanned failover" not in _verdict(events=evs).render()


def test_replay_command_carries_what_changes_the_plan():
    assert replay_command(10, 3, None, True, "async", 3, 14.0) == \
        "python3 bench/chaos.py --seed 3 --faults 10 --overlap --durability async"
    assert replay_command(5, 1, None, False, "semi-sync", 3, 10.0, ["switchover"]) == \
        "python3 bench/chaos.py --seed 1 --faults 5 --kinds switchover --hold 10"

"""The simulator's engine (tests/sim: scheduler, runner, shrinking, coverage; bench/sim.py): a seed
replays exactly, with or without a schedule given; a failing seed shrinks to a smaller schedule that
fails the same way; the results are the same whatever the number of workers; the JSON has its keys."""
import json

import pytest

from bench import sim as cli
from tests.sim import coverage
from tests.sim.faults import Fault
from tests.sim.invariants import Violation
from tests.sim.runner import Options, Runner, run_seed, spell, unspell
from tests.sim.shrink import ddmin, shrink
from tests.sim.world import World, params

ABORT = Options(faults="switchover_stuck=3,session_loss=6", durability="async",
                defect="abort-writable-unconditionally")


def trace(w: World):
    v = w.run()
    return (str(v) if v else None), w.log, w.steps, w.writes, w.coverage.to_dict(w.faults_seen)


def test_a_seed_replays_exactly_with_its_own_schedule_given():
    drawn = World(7, params(scenario="short"))
    first = trace(drawn)
    again = World(7, params(scenario="short"), schedule=unspell(spell(drawn.plan)))
    assert drawn.plan and again.plan == drawn.plan
    assert trace(again) == first


def test_a_cut_schedule_replays_exactly_and_the_seed_draws_the_same_otherwise():
    plan = World(7, params(scenario="short")).plan
    cut = plan[::2]
    a, b = World(7, params(scenario="short"), schedule=cut), World(7, params(scenario="short"), schedule=cut)
    assert a.durability == World(7, params(scenario="short")).durability
    assert trace(a) == trace(b)
    assert a.plan == cut


def test_ddmin_finds_the_faults_that_matter():
    plan = [Fault(float(i), "kill", "n1", i) for i in range(16)]
    needed = {plan[3], plan[11]}
    got = ddmin(plan, lambda sub: needed <= set(sub))
    assert got == [plan[3], plan[11]]
    assert ddmin(plan, lambda sub: True) == []


def test_shrinking_keeps_exactly_the_fault_a_failure_needs(monkeypatch):
    # A made-up invariant that breaks once the seed's fifth fault has fired (whatever the models do):
    # the shortest failing schedule is that fault alone, and it replays.
    opts = Options(scenario="short")
    plan = World(11, params(scenario="short")).plan
    needed = plan[4]

    def after_step(self):
        if needed in self.plan and self.now >= needed.t:
            raise Violation("made-up", f"fault {needed.spell()} fired")
    monkeypatch.setattr(World, "after_step", after_step)
    got = shrink(11, opts)
    assert got is not None and got.invariant == "made-up" and got.plan == [needed]
    assert run_seed(11, got.opts)["violation"]["schedule"] == spell([needed])


def test_a_defect_put_back_shrinks_to_a_smaller_schedule_that_fails_the_same_way():
    # The aborted switchover that turned writable, found by this mix (seed 0 when written;
    # tests/unit/test_sim_defects.py holds it to seeds 0-4).
    seed = next((s for s in range(5) if "violation" in run_seed(s, ABORT)), None)
    assert seed is not None, "the mix no longer finds the defect in seeds 0-4"
    full = run_seed(seed, ABORT)["violation"]
    got = shrink(seed, ABORT, budget=12)
    assert got is not None and got.invariant == full["invariant"]
    assert len(got.plan) < full["faults"]
    assert "--schedule" in got.replay and f"--start {seed} --seeds 1" in got.replay
    again = run_seed(seed, got.opts)["violation"]
    assert again["invariant"] == full["invariant"] and again["schedule"] == spell(got.plan)
    # The fixed code passes the shrunk schedule.
    assert "violation" not in run_seed(seed, Options(ABORT.faults, ABORT.durability, schedule=got.opts.schedule))


def test_one_worker_and_two_give_the_same_results():
    opts = Options(scenario="short")
    with Runner(opts, 1) as r:
        one = r.run(40, 6)
    with Runner(opts, 2) as r:
        two = r.run(40, 6)
    assert (one.seeds, one.first, one.last) == (two.seeds, two.first, two.last) == (6, 40, 45)
    assert one.steps == two.steps and one.violations == two.violations and one.findings == two.findings
    assert one.coverage == two.coverage


def test_minutes_with_seeds_runs_at_most_that_many_seeds(tmp_path):
    # CI's form: a seed count, cut short on a slower machine rather than overrun the budget.
    out = tmp_path / "sim.json"
    assert cli.main(["--seeds", "3", "--minutes", "5", "--jobs", "1", "--scenario", "short", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["seeds"] == 3
    out2 = tmp_path / "sim2.json"
    assert cli.main(["--seeds", "500", "--minutes", "0.001", "--jobs", "1", "--scenario", "short",
                     "--json", str(out2)]) == 0
    assert 0 < json.loads(out2.read_text())["seeds"] < 500, "the time limit did not cut the run short"


def test_the_json_has_seeds_steps_seconds_violations_and_coverage(tmp_path):
    out = tmp_path / "sim.json"
    assert cli.main(["--seeds", "2", "--start", "3", "--jobs", "1", "--scenario", "short", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert {"seeds", "steps", "seconds", "violations", "coverage"} <= set(got)
    assert got["seeds"] == 2 and got["steps"] > 0 and got["violations"] == []
    cov = got["coverage"]
    assert set(cov) == {"decisions", "actions", "faults", "never"}
    assert list(cov["actions"]) == coverage.action_rows()
    assert len(cov["decisions"]) == len(coverage.decide_rows()) > 10
    assert any(n > 0 for n in cov["decisions"].values()) and cov["actions"]["stay_primary"] > 0
    for section in ("decisions", "actions", "faults"):
        assert cov["never"][section] == [r for r, n in cov[section].items() if n == 0]


def test_a_violation_in_the_json_names_its_seed_invariant_and_replay(tmp_path):
    out = tmp_path / "sim.json"
    argv = ["--seeds", "1", "--start", "0", "--jobs", "1", "--defect", ABORT.defect, "--faults", ABORT.faults,
            "--durability", "async", "--no-shrink", "--json", str(out)]
    assert cli.main(argv) == 1
    (v,) = json.loads(out.read_text())["violations"]
    assert v["seed"] == 0 and v["invariant"] == "one-writer"
    assert v["replay"].startswith("python3 bench/sim.py --start 0 --seeds 1 --defect")


def test_the_speedups_give_what_the_code_they_stand_in_for_gives():
    from mysqlpilot import gtid, model
    from tests.sim import speedups
    member = model.MemberState(name="a", host="h", port=1, errant=["u:1"], read_only=None, lag_seconds=1.5,
                               alive=False)
    leader = model.LeaderInfo(name="a", host="h", port=1, session="s", promoted_gtid="u:1-3", promoted=True)
    fast = {(obj, name): new for obj, name, new in speedups.speedups()}
    assert len(fast) == 6, "a copied function of mysqlpilot changed: copy it again (speedups.SOURCES)"
    assert fast[(model.MemberState, "to_json")](member) == member.to_json()
    assert fast[(model.LeaderInfo, "to_json")](leader) == leader.to_json()
    for text in ("", "u:1-3", "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5", "junk", "0-1-2"):
        assert fast[(gtid, "problem")]("mysql", text) == gtid.problem("mysql", text)

    def outcome(fn, cls, data):
        try:
            return fn(cls, data)
        except ValueError as exc:
            return str(exc)
    for cls, data in ((model.MemberState, json.loads(member.to_json())), (model.LeaderInfo, {"name": 1}),
                      (model.MemberState, {"host": "h", "port": 1}), (model.LeaderInfo, []),
                      (model.MemberState, {"name": "a", "host": "h", "port": True}),
                      (model.MemberState, {"name": "a", "host": "h", "port": 1, "lag_seconds": 2})):
        assert outcome(fast[(model, "_from_dict")], cls, data) == outcome(model._from_dict, cls, data)
    for kind, v in (("int", 1), ("int", True), ("float", 1), ("Optional[str]", None), ("bool", 1), ("str", "x")):
        assert outcome(lambda k, x: fast[(model, "_check")](k, x, "f"), kind, v) == \
            outcome(lambda k, x: model._check(k, x, "f"), kind, v)


def test_failsafe_is_drawn_per_seed_apart_from_the_main_stream_and_spelled_in_replays():
    drawn = {World(s, params(scenario="short", failsafe="draw")).failsafe for s in range(20)}
    assert drawn == {True, False}
    assert World(7, params(scenario="short", failsafe="on")).plan == World(7, params(scenario="short")).plan
    assert "--failsafe draw" in Options(failsafe="draw", scenario="short").replay(3)
    assert "--failsafe" not in Options(scenario="short").replay(3)


@pytest.mark.parametrize("seed, schedule", [
    # Both stalled for good before the list rule's two ways out (failsafe.listed, FailsafeList.withdraw).
    (268, "4.948442:consul_cut:n3:1479908469,5.58554:mysqld_crash:n1:861781457,5.88952:session_loss:n2:269970876"),
    (712, "3.009052:mysqld_crash:n1:4276949772,4.191902:freeze:n1:3281278470,6.228271:session_loss:n3:2203514850,"
          "7.951571:prestop_kill:n2:3574278448"),
])
def test_failsafe_elections_that_stalled_under_the_list_rule_now_converge(seed, schedule):
    v = World(seed, params(scenario="short", failsafe="on"), schedule=unspell(schedule)).run()
    # What is left is the known data-rule finding (nobody holds every transaction), not the list rule.
    assert v is None or (v.invariant == "stalled" and "failsafe list" not in str(v)), v

"""Issue 13: the fault sequence that lost acknowledged writes, replayed under write load.

Shortened for CI: 3 writers, 60 s convergence bounds, a time budget for the faults (~3.5 min in all
on 2 cores). The hold stays at 14 s: a failover takes ~11.5 s here, so a shorter freeze ends before
anyone takes over, the thawed primary fences itself, and issue 13 is not exercised (a 7 s hold passed
on the code that had the bug; 14 s showed two writable nodes for 10 s after each thaw). The test
checks that at least one frozen primary was replaced while frozen. The safety claims do not shorten:
no acknowledged write lost, never two writable nodes, no row nobody wrote. bench/chaos.py runs the
same schedule or random ones at full length.

One window is counted apart: a frozen node resumes (SIGCONT) with its mysqld and its fence watchdog at
once, and mysqld answers a client queued during the freeze before the watchdog's first statement lands.
Samples in the first THAW_WINDOW (0.5 s) after a SIGCONT that show the thawed node writable are reported
as `thaw_window`, not hidden; any later one is a violation (the bug this replays kept the thawed
primary writable for about 10 s). docs/timing.md, "What remains", states this limit.

MariaDB only in CI, for time: this run takes about 3.5 minutes besides the cluster's start and stop, and
the MySQL leg may grow by about 3 in all, which test_chaos_campaign.py's short MySQL plan (the `fences`
schedule, a 14 s freeze-primary in it) spends.
The harness speaks MySQL: the whole schedule on MySQL 9.7 is

    python3 bench/chaos.py --flavor mysql --schedule issue13
"""

import pytest

from tests.harness.chaos import ISSUE13, missing_for_chaos, run_chaos, write_json
from tests.harness.cluster import Cluster

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
@pytest.mark.flavors("mariadb", reason="CI time: the MySQL leg runs test_chaos_campaign.py's short plan (a 14 s "
                     "freeze-primary in it); the whole schedule on MySQL: bench/chaos.py --flavor mysql --schedule "
                     "issue13")
def test_issue13_schedule_loses_no_acknowledged_write_and_never_has_two_writable_nodes(tmp_path, flavor):
    why = missing_for_chaos(campaign=False, flavor=flavor)
    if why:
        pytest.skip(f"needs {why} (scripts/install-deps.sh)")
    c = Cluster(str(tmp_path / "cl"), env={"MYSQL_ROOT_PASSWORD": "chaos-Root-13", "MYSQL_REPL_PASSWORD": "chaos-r-13"},
                flavor=flavor)
    v = run_chaos(c, list(ISSUE13), nodes=3, seed=13, hold=14, writers=3, durability="semi-sync",
                  converge_timeout=60, schedule="issue13", time_budget=390, final_timeout=60)
    write_json(v, str(tmp_path / "chaos.json"))
    report = f"{v.render()}\n\nper fault, from history and node logs:\n{v.render_logs()}\n" \
             f"(verdict JSON: {tmp_path / 'chaos.json'}; node logs: {c.dir}/nodes/*/logs/)"
    print(report)
    problems = []
    if v.lost:
        problems.append(f"{len(v.lost)} of {v.acked} acknowledged writes lost (by fault window and acking node: "
                        f"{v.lost_by})")
    if v.double_writable:
        problems.append(f"{len(v.double_writable)} of {v.samples} samples saw two writable nodes")
    if v.phantom_count:
        problems.append(f"{v.phantom_count} rows no client wrote or that a node refused")
    if v.final_primary is None:
        problems.append("no primary at the end: acknowledged writes cannot be checked")
    if v.not_run:
        problems.append(f"schedule incomplete within the time budget: not run {v.not_run}")
    if not any(e.taken_over for e in v.events if e.fault == "freeze-primary"):
        problems.append("no frozen primary was replaced while frozen: the hold is too short for this machine's "
                        "failover time, so the run says nothing about issue 13")
    assert not problems, "issue 13 schedule: " + "; ".join(problems) + "\n\n" + report

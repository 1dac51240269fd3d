"""The chaos tool's arithmetic and reporting (issue 9), without a cluster: the seeded plan, write
unavailability from the ledger, percentiles, the one-line verdict and the JSON keys; and what it sends
and reads per server flavor (issue 18: MySQL 9.7), over recorded fake connections."""
import os
import subprocess
import sys

import pymysql
import pytest

from mysqlpilot.flavors import get_flavor
from tests.harness.chaos import (ASYNC_LOSS_BOUND, FAULTS, FLAVOR_BINARIES, FLAVORS, REJECTED_ERRNOS, RESTORE_FAILED,
                                 SEEDED_BY_CLONE, ChaosRun, FaultEvent, Ledger, PrimaryLocator, ReadOnlySampler,
                                 Verdict, Writer, _stats, async_loss_problem, chaos_sql, classify, longest_gap,
                                 make_plan, make_schedule, missing_for_chaos, replay_command)
from tests.harness.cluster import REPO


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


# ---- Consul's own faults (issue 21) ---------------------------------------------------------------------
def test_consul_faults_are_drawn_only_when_consul_is_several_servers():
    from tests.harness.chaos import CONSUL_FAULTS
    # The default draw is what it was: every documented seed replays the same plan.
    assert not set(make_schedule(200, 1)) & set(CONSUL_FAULTS)
    assert set(make_schedule(200, 1, consul_servers=3)) >= set(CONSUL_FAULTS)
    with pytest.raises(ValueError, match="--consul-servers 3"):
        make_schedule(5, 1, kinds=["consul-freeze"])
    assert set(make_schedule(20, 2, kinds=["consul-freeze"], consul_servers=3)) == {"consul-freeze"}


def test_a_consul_freeze_draws_its_length_and_holds_for_overlaps():
    p = make_plan(["consul-freeze"] * 40 + ["kill-primary"], 4, overlap=True)
    assert {s.variant for s in p if s.kind == "consul-freeze"} == {"3s", "10s", "hold"}
    assert any(s.overlap_after is not None for s in p)


def test_replay_command_carries_consul_servers_and_the_failsafe():
    assert replay_command(50, 21, None, False, "semi-sync", 3, 14.0, consul_servers=3, failsafe=True) == \
        "python3 bench/chaos.py --seed 21 --faults 50 --consul-servers 3"
    assert replay_command(50, 21, None, False, "semi-sync", 3, 14.0, failsafe=False) == \
        "python3 bench/chaos.py --seed 21 --faults 50 --no-failsafe"
    assert "--consul-servers" not in replay_command(5, 1, None, False, "semi-sync", 3, 14.0)


# ---- the MySQL flavor (issue 18): what the run asks and how it reads the answers, per flavor ----------------
def test_replay_command_carries_the_flavor():
    assert replay_command(30, 97, None, False, "semi-sync", 3, 14.0, flavor="mysql") == \
        "python3 bench/chaos.py --flavor mysql --seed 97 --faults 30"
    assert replay_command(4, 1632, "fences", False, "semi-sync", 3, 14.0, None, "mysql") == \
        "python3 bench/chaos.py --flavor mysql --schedule fences --seed 1632 --faults 4"
    assert "--flavor" not in replay_command(5, 1, None, False, "semi-sync", 3, 14.0, flavor="mariadb")
    assert replay_command(3, 9, None, False, "semi-sync", 3, 14.0, ["freeze-primary"], writer_timeout=None) == \
        "python3 bench/chaos.py --seed 9 --faults 3 --kinds freeze-primary --writer-timeout 0"


def test_each_flavor_reads_writability_the_way_its_root_writers_are_bound():
    maria, mysql = chaos_sql("mariadb"), chaos_sql("mysql")
    assert maria.read_only == "SELECT @@global.read_only"
    # root has SUPER/CONNECTION_ADMIN on MySQL: only super_read_only stops it, so OFF there means writable.
    assert mysql.read_only == "SELECT @@global.super_read_only"
    # ...which is also what mysqlpilot's fence sets and confirms on MySQL 9.7 (read independently here).
    fl = get_flavor("mysql", "9.7.4")
    assert "super_read_only" in fl.read_only_sql()
    assert fl.set_read_only(True)[-1] == "SET GLOBAL super_read_only = ON"
    assert "super_read_only" not in get_flavor("mariadb", "10.11.6").read_only_sql()
    assert (maria.position, mysql.position) == ("SELECT @@global.gtid_binlog_pos", "SELECT @@global.gtid_executed")
    assert maria.wait.startswith("SELECT MASTER_GTID_WAIT(") and \
        mysql.wait.startswith("SELECT WAIT_FOR_EXECUTED_GTID_SET(")
    with pytest.raises(ValueError):
        chaos_sql("percona")


def _err(code: int, cls=pymysql.err.OperationalError):
    return cls(code, "x")


def test_only_a_read_only_refusal_of_the_flavor_counts_as_rejected():
    assert REJECTED_ERRNOS["mariadb"] == {1290, 1836}
    assert REJECTED_ERRNOS["mysql"] == {1290}
    for flavor in ("mariadb", "mysql"):
        rejected = chaos_sql(flavor).rejected
        assert classify(_err(1290), rejected) == ("rejected", "1290")
        assert classify(_err(1290, pymysql.err.InternalError), rejected)[0] == "rejected"
        # Lost connection, KILL, shutdown, lock wait: the statement may have run.
        for code in (2013, 1317, 1053, 1205, 2006):
            assert classify(_err(code), rejected) == ("unknown", str(code))
        assert classify(TimeoutError(), rejected) == ("unknown", "TimeoutError")
    # MySQL: 1792 comes from a session's transaction_read_only, 1836 from innodb_read_only, never a fence.
    assert classify(_err(1792), chaos_sql("mysql").rejected)[0] == "unknown"
    assert classify(_err(1836), chaos_sql("mysql").rejected)[0] == "unknown"
    assert classify(_err(1836), chaos_sql("mariadb").rejected)[0] == "rejected"
    assert classify(_err(1836))[0] == "rejected"          # the default stays MariaDB's


class _Cur:
    def __init__(self, log, answers):
        self.log, self.answers, self.rows = log, answers, []

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def execute(self, sql, args=None):
        self.log.append((sql, args))
        self.rows = self.answers(sql)

    def fetchone(self):
        return self.rows[0]

    def fetchall(self):
        return self.rows


class _Conn:
    def __init__(self, log, answers):
        self.log, self.answers = log, answers

    def cursor(self):
        return _Cur(self.log, self.answers)

    def close(self):
        pass


class _FakeCluster:
    """What ChaosRun and the sampler touch of tests.harness.cluster.Cluster, with SQL recorded."""
    GTID = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-77,\n8a94f357-aab4-11df-86ab-c80aa9429563:1-3"

    def __init__(self, flavor, dir="/nonexistent"):
        self.flavor, self.dir = flavor, dir
        self.log = []
        self.settings = {"root_password": "pw"}

    def _answers(self, sql):
        if sql.startswith("SELECT id FROM"):
            return [(1,), (2,)]
        if sql.startswith("CHECKSUM TABLE"):
            return [("chaos.ledger", 11), ("chaos.side", 22)]
        if "WAIT" in sql:
            return [(0,)]
        return [(0,)]

    def addresses(self):
        return [("node1", "127.0.1.1", 3306), ("node2", "127.0.1.2", 3306)]

    def node(self, st, name):
        return {"name": name, "host": "127.0.1.1" if name == "node1" else "127.0.1.2", "port": 3306}

    def sql(self, host, port, query, db=None):
        self.log.append((query, None))
        return [(self.GTID,)] if "gtid" in query else [(0,)]

    def connect(self, host, port, timeout=2.0, db=None):
        return _Conn(self.log, self._answers)


def test_the_replicas_catch_up_in_the_flavors_own_gtid_dialect_before_the_checksums():
    for flavor, wait in (("mysql", "WAIT_FOR_EXECUTED_GTID_SET"), ("mariadb", "MASTER_GTID_WAIT")):
        c = _FakeCluster(flavor)
        run = ChaosRun(c, 2, seed=1)
        assert run.sql == chaos_sql(flavor)
        got, why, sums = run.read_ids({"primary": "node1", "nodes": []})
        assert got == {"node1": {1, 2}, "node2": {1, 2}} and not why
        assert sums["node1"] == sums["node2"] == "chaos.ledger=11 chaos.side=22"
        assert c.log[0][0] == chaos_sql(flavor).position
        waits = [(sql, args) for sql, args in c.log if wait in sql]
        # Once, on the replica only, with MySQL's newlines taken out of the GTID set.
        assert waits == [(chaos_sql(flavor).wait, ("".join(_FakeCluster.GTID.split()), 45))]
        assert not any(("MASTER_GTID_WAIT" if flavor == "mysql" else "WAIT_FOR_EXECUTED") in sql for sql, _ in c.log)


def test_the_sampler_and_the_writers_use_the_flavors_query_and_codes():
    c = _FakeCluster("mysql")
    run = ChaosRun(c, 2, seed=1)
    s = ReadOnlySampler(c, c.addresses(), query=run.sql.read_only)
    try:
        log = []
        s._conn = lambda name, host, port: _Conn(log, lambda sql: [(0,)])
        assert s._probe("node1", "127.0.1.1", 3306) is False         # super_read_only OFF: writable
        assert log == [("SELECT @@global.super_read_only", None)]
    finally:
        for p in s.pools.values():
            p.shutdown(wait=False)
    w = Writer(0, c, Ledger(), PrimaryLocator(c), "chaos.ledger", rejected=run.sql.rejected)
    assert w.rejected == frozenset({1290})


def test_the_mysqld_pid_is_read_from_the_nodes_pid_file(tmp_path):
    state = tmp_path / "nodes" / "node2" / "state"
    state.mkdir(parents=True)
    run = ChaosRun(_FakeCluster("mysql", str(tmp_path)), 3, seed=1)
    assert run._mysqld_pid("node2") is None
    (state / "mysqld.pid").write_text("4242\n")
    assert run._mysqld_pid("node2") == 4242


def test_a_store_down_restore_ends_at_a_failed_restore_or_at_a_remote_clone_seed():
    # MySQL seeds an emptied replica by CLONE from another replica (seed_method auto), without the store.
    src = open(os.path.join(REPO, "mysqlpilot", "datadir.py")).read()
    assert '"cloned %s; the replica will start from GTID %s"' in src
    assert '"restore attempt %d failed: %s"' in src
    assert SEEDED_BY_CLONE.search("INFO cloned node3; the replica will start from GTID 3e11fa47-71ca:1-5")
    assert RESTORE_FAILED.search("WARNING restore attempt 2 failed: store unreachable")
    assert not SEEDED_BY_CLONE.search("seeding by CLONE INSTANCE FROM healthy replica node3 (lag 0s)")


def test_the_fences_schedule_and_the_flavors_needs():
    assert make_schedule(None, 5, "fences") == ["crash-mysqld", "freeze-primary", "switchover", "manual-failover"]
    assert make_schedule(2, 5, "fences") == ["crash-mysqld", "freeze-primary"]
    assert set(FLAVOR_BINARIES) == set(FLAVORS) == {"mariadb", "mysql"}
    assert "mariadb-backup" in FLAVOR_BINARIES["mariadb"] and "mbstream" in FLAVOR_BINARIES["mariadb"]
    assert not any(b.startswith("mariadb") or b == "mbstream" for b in FLAVOR_BINARIES["mysql"])
    with pytest.raises(ValueError):
        missing_for_chaos(flavor="percona")


def test_missing_for_chaos_on_mysql_names_the_mysql_server(monkeypatch):
    monkeypatch.setenv("MYSQLPILOT_SKIP_MYSQL", "1")
    assert "MySQL 9.7 (MYSQLPILOT_SKIP_MYSQL=1" in missing_for_chaos(flavor="mysql")
    assert "MySQL 9.7" not in missing_for_chaos(flavor="mariadb")


def test_a_mysql_verdict_says_so():
    v = _verdict(config={**_verdict().config, "flavor": "mysql", "flavor_version": "9.7.4",
                         "replay": "python3 bench/chaos.py --flavor mysql --seed 7 --faults 2"})
    assert v.verdict_line().endswith("samples with two writable nodes, on mysql 9.7.4")
    assert "semi-sync, mysql 9.7.4, 3 nodes" in v.render()
    assert _verdict().verdict_line().endswith("samples with two writable nodes")
    assert "semi-sync, mariadb, 3 nodes" in _verdict().render()
    bad = _verdict(violations=[{"fault": 1, "kind": "kill-primary", "check": "lost", "detail": "x"}],
                   config=v.config)
    assert "replay: python3 bench/chaos.py --flavor mysql --seed 7 --faults 2" in bad.verdict_line()


def _bench(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "bench", "chaos.py"), *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def test_bench_plan_takes_the_flavor_and_prints_the_command_that_runs_it():
    p = _bench("--plan", "--flavor", "mysql", "--faults", "3", "--seed", "9")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1] == "run it: python3 bench/chaos.py --flavor mysql --seed 9 --faults 3"
    p = _bench("--plan", "--schedule", "fences", "--flavor", "mysql", "--overlap")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].split() == ["1", "crash-mysqld", "[replica", "rank", "0.728]"]
    assert p.stdout.strip().splitlines()[-1] == \
        "run it: python3 bench/chaos.py --flavor mysql --schedule fences --seed 1 --faults 4 --overlap"
    assert _bench("--plan", "--faults", "2").stdout.strip().splitlines()[-1] == \
        "run it: python3 bench/chaos.py --seed 1 --faults 2"
    bad = _bench("--plan", "--faults", "2", "--flavor", "percona")
    assert bad.returncode == 2 and "invalid choice: 'percona'" in bad.stderr

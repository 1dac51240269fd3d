"""bench/failover.py's arithmetic and verdicts, without a cluster: floors from a config, percentiles,
settings overrides, FENCED lines, leader changes and the soak verdict."""
import math
from types import SimpleNamespace

import pytest

from bench import failover as fb
from mysqlpilot import config as config_mod


def _cfg(**kw):
    base = dict(session_ttl=10, check_ttl=6, lock_delay=4, fence_margin=1, health_interval=2, loop_wait=1)
    base.update(kw)
    return SimpleNamespace(**base)


def test_heartbeat_interval_is_a_quarter_lease_between_0_2_and_1_second():
    assert fb.heartbeat_interval(_cfg(lock_delay=4, fence_margin=1)) == pytest.approx(0.75)
    assert fb.heartbeat_interval(_cfg(lock_delay=2, fence_margin=0.5)) == pytest.approx(0.375)
    assert fb.heartbeat_interval(_cfg(lock_delay=60, fence_margin=1)) == 1.0
    assert fb.heartbeat_interval(_cfg(lock_delay=1, fence_margin=0.5)) == 0.2


def test_heartbeat_interval_matches_the_config_module_when_it_has_one():
    hb = getattr(config_mod, "heartbeat_interval", None)
    if hb is None:
        pytest.skip("mysqlpilot.config has no heartbeat_interval")
    for ld, fm in ((4, 1), (2, 0.5), (60, 1), (1, 0.5), (3, 0.25)):
        assert fb.heartbeat_interval(_cfg(lock_delay=ld, fence_margin=fm)) == pytest.approx(hb(ld, fm))


def test_floors_follow_the_settings_they_are_given():
    old = fb.floors(_cfg(check_ttl=6, lock_delay=4, fence_margin=1))
    assert old["node SIGKILL"] == pytest.approx(6 - 0.75 / 2 + 4)
    new = fb.floors(_cfg(check_ttl=2.0, lock_delay=2.0, fence_margin=0.5))
    assert new["node SIGKILL"] == pytest.approx(2 - 0.375 / 2 + 2)
    assert old["mysqld crash"] == new["mysqld crash"] == pytest.approx(fb.CRASH_POLL_INTERVAL / 2)
    assert old["switchover"] == 0.0
    assert fb.floors(_cfg(), catch_up=0.12)["switchover"] == pytest.approx(0.12)
    assert set(old) == set(fb.SCENARIOS)


def test_floors_read_a_real_config_with_float_or_int_keys():
    env = {"MYSQL_ROOT_PASSWORD": "x", "MYSQL_REPL_PASSWORD": "x", "MYSQLPILOT_NODE": "n1",
           "MYSQLPILOT_ADVERTISE_HOST": "127.0.0.1", "MYSQLPILOT_SERVER_ID": "1",
           **fb.env_for(fb.settings_overrides("old"))}
    cfg = config_mod.load(None, env=env)
    assert fb.floors(cfg)["node SIGKILL"] == pytest.approx(6 - 0.75 / 2 + 4)


def test_percentile_interpolates_and_ignores_failed_trials():
    vals = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert fb.percentile(vals, 0.5) == pytest.approx(5.5)
    assert fb.percentile(vals, 0.95) == pytest.approx(9.55)
    assert fb.percentile(vals, 1.0) == 10.0
    assert fb.percentile(vals, 0.0) == 1.0
    assert fb.percentile([3.0], 0.95) == 3.0
    assert fb.percentile([2.0, float("nan"), 4.0], 0.5) == pytest.approx(3.0)
    assert math.isnan(fb.percentile([], 0.5))
    assert math.isnan(fb.percentile([float("nan")], 0.5))
    p50, p95, mx, n = fb.summary([5.0, 1.0, float("nan"), 3.0])
    assert (p50, mx, n) == (3.0, 5.0, 3)
    assert p50 <= p95 <= mx


def test_settings_old_new_and_set_overrides():
    old = fb.settings_overrides("old")
    assert old == {"session_ttl": "10", "check_ttl": "6", "lock_delay": "4", "fence_margin": "1",
                   "health_interval": "2"}
    assert fb.settings_overrides("new") == {}
    assert fb.settings_overrides("new", ["check_ttl=3", " lock_delay = 2.5 "]) == {"check_ttl": "3",
                                                                                  "lock_delay": "2.5"}
    assert fb.settings_overrides("old", ["check_ttl=3"])["check_ttl"] == "3"
    env = fb.env_for(old)
    assert env["MYSQLPILOT_CHECK_TTL"] == "6" and env["MYSQLPILOT_HEALTH_INTERVAL"] == "2"
    for bad in (["nosuchkey=1"], ["check_ttl"], ["check_ttl="]):
        with pytest.raises(ValueError):
            fb.settings_overrides("new", bad)
    with pytest.raises(ValueError):
        fb.settings_overrides("fast")


def test_settings_the_config_loader_refuses_are_refused_before_any_cluster_starts():
    with pytest.raises(config_mod.ConfigError):
        fb.validate_overrides(fb.env_for({"lock_delay": "1", "fence_margin": "5"}))
    fb.validate_overrides(fb.env_for(fb.settings_overrides("old")))


def test_fenced_lines_are_found_in_a_node_log():
    text = ("2026-11-26 02:00:00 INFO ha: HA loop started\n"
            "2026-11-26 02:00:01 WARNING lease: FENCED: read-only, confirmed in 0.01s (lease expired); killed 2\n"
            "2026-11-26 02:00:02 ERROR lease: FENCED by stopping mysqld: read-only not confirmed in 1.00s\n"
            "2026-11-26 02:00:03 WARNING ha: PROMOTED: node2 is the writable primary\n")
    got = fb.fenced_lines(text)
    assert len(got) == 2 and all("FENCED" in ln for ln in got)
    assert fb.fenced_lines("") == []


def test_soak_verdict_fails_on_any_failover_or_fence():
    assert fb.soak_verdict(0, 0, writes_ok=100) == (True, [])
    ok, why = fb.soak_verdict(1, 0, writes_ok=100)
    assert not ok and why == ["1 unplanned failover"]
    ok, why = fb.soak_verdict(0, 3, writes_ok=100)
    assert not ok and why == ["3 fences"]
    ok, why = fb.soak_verdict(2, 1, writes_ok=100)
    assert not ok and len(why) == 2
    ok, why = fb.soak_verdict(0, 0, writes_ok=0)
    assert not ok and "no write" in why[0]


def test_leader_changes_count_records_that_moved_the_lock_after_the_start():
    hist = [{"kind": "bootstrap", "time": 10, "old_primary": None, "new_primary": "node1"},
            {"kind": "failover", "time": 120, "old_primary": "node1", "new_primary": "node2"},
            {"kind": "re-promotion", "time": 130, "old_primary": "node2", "new_primary": "node2"},
            {"kind": "election", "time": 140, "old_primary": None, "new_primary": "node3"}]
    got = fb.leader_changes(hist, since=100)
    assert [h["kind"] for h in got] == ["failover", "election"]
    assert fb.leader_changes(hist, since=1000) == []


def test_max_write_gap_counts_the_edges_of_the_soak():
    assert fb.max_gap([1.0, 2.0, 2.5], start=0.0, end=10.0) == pytest.approx(7.5)
    assert fb.max_gap([], start=0.0, end=4.0) == pytest.approx(4.0)
    assert fb.max_gap([0.5, 3.5], start=0.0, end=4.0) == pytest.approx(3.0)

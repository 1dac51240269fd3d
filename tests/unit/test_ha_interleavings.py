"""`Node` driven through the safety issue's interleavings, step by step, over fakes of Consul and mysqld
(tests/unit/fakes.py). Each test names the item it proves."""
import threading

from mysqlpilot import analysis
from mysqlpilot.dcs.base import Request
from mysqlpilot.lease import boottime
from mysqlpilot.model import LeaderInfo, MemberState

from .fakes import FakeDCS, FakeMySQL, give_session, make_node


def cluster(tmp_path, monkeypatch, names=("n1", "n2", "n3"), **env):
    dcs = FakeDCS()
    servers = {n: FakeMySQL(n) for n in names}
    nodes = {n: make_node(tmp_path, n, dcs, servers, monkeypatch, **env) for n in names}
    return dcs, servers, nodes


def make_primary(dcs, servers, node, promoted=True, gtid="0-1-10"):
    sid = give_session(node, dcs)
    me = node.cfg.node_name
    servers[me].ro, servers[me].executed = False, gtid
    dcs.acquire_leader(sid, LeaderInfo(me, f"h-{me}", 3306, promoted=promoted, promoted_gtid=gtid))
    return sid


def primary_and_healthy_replica(tmp_path, monkeypatch):
    """n1 writable primary, n2 its replica, replicating and published healthy (a switchover target)."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    n1, n2 = nodes["n1"], nodes["n2"]
    make_primary(dcs, servers, n1)
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1")
    servers["n2"].replica["io_running"] = True
    dcs.members["n2"] = MemberState("n2", "h-n2", 3306, alive=True, healthy=True)
    return dcs, servers, n1, n2


def lock_delay_passed(node, dcs):
    node.state.update(free_seen={"lock_index": dcs.lock_index, "index": 0, "since": boottime() - 60})


def replica_of(servers, name, leader, executed="0-1-10", retrieved=""):
    s = servers[name]
    s.executed, s.retrieved = executed, retrieved
    s.replica = {"source_host": f"h-{leader}", "source_port": 3306, "io_running": False, "sql_running": True,
                 "lag_seconds": None}


def test_a_switchover_whose_fence_is_not_confirmed_never_releases_the_lock(tmp_path, monkeypatch):
    """Item 2: hand_over released the lock (no lock-delay) after a failed fence."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    n1 = nodes["n1"]
    make_primary(dcs, servers, n1)
    n1.lease.extend(n1.sid, boottime() - n1.policy.lease + 0.2)     # the deadline comes soon
    servers["n1"].fail_read_only = True
    dcs.members["n2"] = MemberState("n2", "h-n2", 3306, alive=True, healthy=True)
    assert n1.hand_over("n2", Request(to="n2"), dcs.get_cluster()) is False
    assert not any(e.startswith("release") for e in dcs.events)
    assert servers["n1"].up is False                # stopped: the self-fencing of last resort
    assert "switchover" not in dcs.kv


def test_a_confirmed_switchover_marks_the_hand_over_so_the_target_skips_lock_delay(tmp_path, monkeypatch):
    dcs, servers, n1, n2 = primary_and_healthy_replica(tmp_path, monkeypatch)
    assert n1.hand_over("n2", Request(to="n2", requested=1e10), dcs.get_cluster())
    assert servers["n1"].ro is True and "release marked" in dcs.events
    # The old primary follows the target at once (issue 12: its semi-sync ACK ends the write gap sooner),
    # and only after the release.
    calls = servers["n1"].calls
    assert "change_source h-n2:3306" in calls and calls.index("change_source h-n2:3306") < calls.index("start_replica")
    # One hand-off marker, in the leader key, written with the release (issue 18): fenced, for this
    # generation, to n2.
    rel = dcs.get_cluster().released
    assert (rel.name, rel.to, rel.kind, rel.lock_index) == ("n1", "n2", "switchover", dcs.lock_index)
    assert rel.fenced_at is not None
    d = n2.run_once()                                # first sight of the free key: no lock-delay wait
    assert d.action == analysis.TAKE_LOCK and servers["n2"].ro is False
    assert dcs.get_cluster().history[-1]["kind"] == "switchover"


def test_a_manual_failover_target_waits_out_lock_delay_itself(tmp_path, monkeypatch):
    """Item 3: `failover` destroys the old primary's session; that primary may not have fenced yet."""
    import time
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    sid1 = make_primary(dcs, servers, nodes["n1"])
    n2 = nodes["n2"]
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1")
    dcs.kv["switchover"] = {"to": "n2", "from": "n1", "kind": "manual-failover", "requested": time.time()}
    dcs.destroy_session(sid1)
    d = n2.run_once()
    assert d.action == analysis.WAIT and "lock-delay" in d.reason
    lock_delay_passed(n2, dcs)
    assert n2.run_once().action == analysis.TAKE_LOCK


def test_candidates_wait_out_lock_delay_even_when_consul_forgot_it(tmp_path, monkeypatch):
    """Consul keeps lock-delay in its leader's memory only: a restarted Consul server lets anyone
    acquire at once. The candidate's own wait still holds."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    sid1 = make_primary(dcs, servers, nodes["n1"])
    n2 = nodes["n2"]
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1")
    dcs.invalidate(sid1)                            # the fake has no lock-delay at all
    d = n2.run_once()
    assert d.action == analysis.WAIT and "lock-delay" in d.reason and servers["n2"].ro
    # The loop's next pass comes when the wait ends, not a whole loop_wait later (issue 12).
    assert 0 < n2._due <= n2.cfg.lock_delay
    lock_delay_passed(n2, dcs)
    assert n2.run_once().action == analysis.TAKE_LOCK and servers["n2"].ro is False


def test_a_failed_promotion_backs_off_instead_of_retaking_the_lock(tmp_path, monkeypatch):
    """Item 7: a replica whose relay log cannot be applied won, released, and took the lock again."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n2",))
    n2 = nodes["n2"]
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1", retrieved="0-1-12")
    servers["n2"].replica["lag_seconds"] = 1.0
    servers["n2"].apply_ok = False
    monkeypatch.setattr("mysqlpilot.actions.PROMOTE_WAIT", 0.1)
    lock_delay_passed(n2, dcs)
    assert n2.run_once().action == analysis.TAKE_LOCK
    assert dcs.events[-2:] == ["acquire n2", "release"] and servers["n2"].ro is True
    lock_delay_passed(n2, dcs)
    d = n2.run_once()
    assert d.action == analysis.WAIT and "standing aside" in d.reason


def test_a_promotion_clears_the_restore_seed(tmp_path, monkeypatch):
    """Item 10: seed_gtid survived promotion, so a later follow ran the seed (RESET MASTER on MySQL)."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n2",))
    n2 = nodes["n2"]
    give_session(n2, dcs)
    n2.state.update(seed_gtid="0-1-5")
    lock_delay_passed(n2, dcs)
    assert n2.run_once().action == analysis.TAKE_LOCK and servers["n2"].ro is False
    assert n2.state.get("seed_gtid") is None


def test_a_follower_never_follows_without_a_completed_errant_check(tmp_path, monkeypatch):
    """Item 8: the errant check was skipped on a connection error, and auto-position keeps extra GTIDs."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    make_primary(dcs, servers, nodes["n1"])
    n2 = nodes["n2"]
    give_session(n2, dcs)
    servers["n2"].executed = "0-2-11"              # extra transactions of its own
    servers["n1"].up = False                       # the check cannot run
    d = n2.run_once()
    assert d.action == analysis.WAIT and "errant" in d.reason
    assert not any(c.startswith("change_source") for c in servers["n2"].calls)


def test_followers_wait_until_the_new_primary_has_applied_its_relay_log(tmp_path, monkeypatch):
    """Item 6: the winner held the lock before applying its relay log, and others holding what it had
    only received were declared errant and rebuilt."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    n1 = nodes["n1"]
    sid1 = make_primary(dcs, servers, n1, promoted=False, gtid="0-1-10")
    servers["n1"].retrieved = "0-1-12"             # received, not applied yet
    n2 = nodes["n2"]
    give_session(n2, dcs)
    servers["n2"].executed = "0-1-12"
    d = n2.run_once()
    assert d.action == analysis.WAIT and "still promoting" in d.reason
    # Promotion done: relay log applied, then the key says so.
    servers["n1"].executed, servers["n1"].retrieved = "0-1-12", ""
    dcs.acquire_leader(sid1, LeaderInfo("n1", "h-n1", 3306, promoted=True, promoted_gtid="0-1-12"))
    d = n2.run_once()
    assert d.action == analysis.FOLLOW, d.reason


def test_a_lagging_replica_holding_more_keeps_its_commits(tmp_path, monkeypatch):
    """Item 5 / issue 13: the caught-up replica lacks what the lagging one holds; it must not win, and
    the lagging one (semi-sync: lag does not exclude) wins and applies its backlog first."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n2", "n3"), MYSQLPILOT_DURABILITY="semi-sync")
    for n in ("n2", "n3"):
        give_session(nodes[n], dcs)
        lock_delay_passed(nodes[n], dcs)
        dcs.members[n] = MemberState(n, f"h-{n}", 3306, alive=True, healthy=True)
    replica_of(servers, "n2", "n1", executed="0-1-10")
    replica_of(servers, "n3", "n1", executed="0-1-8", retrieved="0-1-11")
    servers["n3"].replica["lag_seconds"] = None
    d2 = nodes["n2"].run_once()
    assert d2.action == analysis.WAIT and "lacks transactions that n3 holds" in d2.reason
    d3 = nodes["n3"].run_once()
    assert d3.action == analysis.TAKE_LOCK and servers["n3"].executed == "0-1-11" and servers["n3"].ro is False


def test_a_fence_right_after_a_switchover_is_followed_by_a_re_promotion_not_a_failover(tmp_path, monkeypatch):
    """Seen in CI: the pass that took the lock saw the key free, so the node still remembered the old
    primary; when it was fenced and re-promoted, history recorded a failover."""
    import time as _time
    dcs, servers, n1, n2 = primary_and_healthy_replica(tmp_path, monkeypatch)
    n2.run_once()                                    # n2 remembers n1 as its primary
    assert n1.hand_over("n2", Request(to="n2", requested=_time.time()), dcs.get_cluster())
    assert n2.run_once().action == analysis.TAKE_LOCK
    servers["n2"].ro = True                          # fenced a moment later, lock kept
    assert n2.run_once().action == analysis.PROMOTE
    kinds = [h["kind"] for h in dcs.get_cluster().history]
    assert kinds[-2:] == ["switchover", "re-promotion"], kinds


def test_a_self_re_promotion_is_recorded_as_such_and_spends_no_budget(tmp_path, monkeypatch):
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1",))
    n1 = nodes["n1"]
    make_primary(dcs, servers, n1)
    n1.run_once()
    servers["n1"].ro = True                         # fenced on a lease lapse, kept the lock
    assert n1.run_once().action == analysis.PROMOTE and servers["n1"].ro is False
    rec = dcs.get_cluster().history[-1]
    assert rec["kind"] == "re-promotion"
    assert analysis.failover_budget([rec] * 10, rec["time"], n1.policy)[0]


def test_a_writable_node_without_the_lock_fences_at_once(tmp_path, monkeypatch):
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    make_primary(dcs, servers, nodes["n1"])
    give_session(nodes["n2"], dcs)
    servers["n2"].ro = False
    assert nodes["n2"].run_once().action == analysis.FENCE and servers["n2"].ro is True


def test_hostile_values_in_consul_never_stop_the_loop(tmp_path, monkeypatch):
    """Item 4: a non-numeric request time, a non-object request or history entry, a string priority or
    a null leader raised in every node's loop, so `watch` crash-looped."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    make_primary(dcs, servers, nodes["n1"])
    n2 = nodes["n2"]
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1")
    for raw in (b'{"to": "n2", "requested": "soon"}', b'"switchover"', b"[1]", b"null"):
        dcs.raw["switchover"] = raw
        dcs.raw["history"] = b'[1, "x", {"kind": 5}]'
        assert n2.run_once().action in (analysis.FOLLOW, analysis.WAIT)
    # And whatever still raises, the loop goes on: three passes, each blowing up.
    calls = []

    def boom():
        calls.append(1)
        if len(calls) >= 3:
            n2._stop.set()
        raise TypeError("unexpected")
    monkeypatch.setattr(n2, "run_once", boom)
    monkeypatch.setattr(n2, "start_threads", lambda heartbeat=True: None)
    t = threading.Thread(target=n2.run_forever)
    t.start()
    t.join(20)
    assert not t.is_alive() and len(calls) == 3


def test_a_promotion_longer_than_the_lease_is_not_cut_short(tmp_path, monkeypatch):
    """Smaller item: waits inside a pass were cut short by the lease. The heartbeat now renews from its
    own thread while the relay log is applied for longer than the whole lease."""
    import time as _time
    from mysqlpilot.lease import Heartbeat
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n2",))
    n2 = nodes["n2"]
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1", retrieved="0-1-12")
    servers["n2"].replica["lag_seconds"] = 1.0
    monkeypatch.setattr(n2, "mysqld_alive", lambda: True)
    slow = servers["n2"].wait_relay_applied

    def slow_apply(timeout):
        _time.sleep(n2.policy.lease + 1.0)
        return slow(timeout)
    servers["n2"].wait_relay_applied = slow_apply
    lock_delay_passed(n2, dcs)
    hb = Heartbeat(n2.beat, 0.2)
    hb.start()
    try:
        assert n2.run_once().action == analysis.TAKE_LOCK
    finally:
        hb.stop()
    assert servers["n2"].ro is False and servers["n2"].executed == "0-1-12"
    assert dcs.get_cluster().leader.promoted


def test_the_health_hook_fences_when_watch_is_dead_and_the_lease_ended(tmp_path, monkeypatch):
    """If `watch` cannot run (killed, crash-looping), its watchdog is gone too: the health hook, which
    ContainerPilot runs on its own, fences a writable mysqld whose lease ended."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1",))
    n1 = nodes["n1"]
    make_primary(dcs, servers, n1)
    n1.lease.mark_writer(n1.sid)
    n1.health_hook()
    assert servers["n1"].ro is False                  # lease valid: left alone
    n1.lease.extend(n1.sid, boottime() - 60)          # the heartbeat stopped a minute ago
    n1.health_hook()
    # Long past lease end + fence_margin, when another node may hold the lock: stopped, not set read-only.
    assert servers["n1"].up is False


def test_the_loops_own_fence_keeps_the_deadline_fixed_at_the_lease_grant(tmp_path, monkeypatch):
    """Item 11: the HA loop's fence (a pass that finds the lease lapsed while it holds the lock, pre-stop)
    used max(lease end + margin, now + 0.5) too: a late pass moved the kill past lock-delay."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1",))
    n1 = nodes["n1"]
    make_primary(dcs, servers, n1)
    n1.lease.mark_writer(n1.sid)
    n1.lease.extend(n1.sid, boottime() - n1.policy.lease - n1.cfg.fence_margin - 0.2)
    assert n1.fence("lease lapsed") == "mysqld killed"
    assert servers["n1"].up is False and "read_only=True" not in servers["n1"].calls


def test_a_replica_without_a_session_still_counts_for_what_it_holds(tmp_path, monkeypatch):
    """Item 5: a replica whose watch is restarting (no session) may hold the only copy of an acknowledged
    commit: nobody lacking it may win meanwhile. Issue 18 item 13: it is not asked (no root login to a host
    a key without a session names) but holds the election; once its session is back it is asked. The wait's
    end: tests/unit/test_credentials_live_members.py."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n2", "n3"), MYSQLPILOT_DURABILITY="semi-sync")
    n2 = nodes["n2"]
    give_session(n2, dcs)
    lock_delay_passed(n2, dcs)
    dcs.members["n2"] = MemberState("n2", "h-n2", 3306, alive=True, healthy=True, role="replica")
    dcs.members["n3"] = MemberState("n3", "h-n3", 3306, alive=False, role="replica")   # no session
    replica_of(servers, "n2", "n1", executed="0-1-10")
    replica_of(servers, "n3", "n1", executed="0-1-11")
    d = n2.run_once()
    assert d.action == analysis.WAIT and "n3" in d.reason and "no live Consul session" in d.reason
    dcs.members["n3"].alive = True               # its watch is back
    d = n2.run_once()
    assert d.action == analysis.WAIT and "lacks transactions that n3 holds" in d.reason


def crashed_primary(tmp_path, monkeypatch, durability="async"):
    """n1 primary, n2 its replica that knows n1 as leader; then n1's mysqld process is gone."""
    from mysqlpilot import mysqld
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"), MYSQLPILOT_DURABILITY=durability)
    n1, n2 = nodes["n1"], nodes["n2"]
    sid1 = make_primary(dcs, servers, n1)
    n1.lease.extend(sid1, boottime())
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1")
    servers["n2"].replica["io_running"] = True
    dcs.members["n1"] = MemberState("n1", "h-n1", 3306, alive=True, healthy=True, role="primary",
                                    gtid_executed="0-1-10")
    n1.run_once()                                    # n1 has seen itself hold this lock generation
    n2.run_once()                                    # n2 has seen n1 lead
    n1.run_once()                                    # n1 lists n2 among the members it would ask (failsafe)
    servers["n1"].up = False
    monkeypatch.setattr(n1, "mysqld_alive", lambda: False)
    monkeypatch.setattr(mysqld, "accepts_connections", lambda cfg, timeout=0.3: False)
    return dcs, servers, n1, n2, sid1


import pytest  # noqa: E402


@pytest.mark.parametrize("durability", ["async", "semi-sync"])
def test_a_primary_whose_mysqld_died_releases_the_lock_and_the_best_replica_promotes_at_once(
        tmp_path, monkeypatch, durability):
    """Issue 12: a mysqld crash releases the lock (no lock-delay) instead of waiting for the session to end.
    The released primary is left out of the candidates while its session still lives (semi-sync would
    otherwise count it unreachable and refuse to promote)."""
    dcs, servers, n1, n2, sid1 = crashed_primary(tmp_path, monkeypatch, durability)
    n1.beat()
    assert dcs.events[-2:] == ["release marked", "fail_check"] and n1.lease.left() < 0
    rel = dcs.get_cluster().released
    assert rel is not None and rel.name == "n1" and rel.reason == "mysqld is not running"
    d = n2.run_once()                                # first sight of the free key: no lock-delay wait
    assert d.action == analysis.TAKE_LOCK, d.reason
    assert servers["n2"].ro is False and dcs.get_cluster().leader.name == "n2"
    rec = dcs.get_cluster().history[-1]
    assert rec["kind"] == "failover" and rec["old_primary"] == "n1" and rec["durations"]["leader_free"] < 1
    assert rec["reason"].startswith("primary n1 released the lock (mysqld is not running)")
    n1.beat()                                        # once per session: nothing more to release
    assert dcs.events.count("release marked") == 1


@pytest.mark.parametrize("value", [
    None,                                                        # a plain session end: no marker
    b'{"name": "n1", "released": "yes"}',
    b'{"name": "n1", "released": {"name": 5, "reason": []}}',
    b'not json',
])
def test_without_a_well_formed_release_marker_candidates_wait_out_lock_delay(tmp_path, monkeypatch, value):
    dcs, servers, n1, n2, sid1 = crashed_primary(tmp_path, monkeypatch)
    dcs.invalidate(sid1)
    if value is not None:
        dcs.raw["leader"] = value
    d = n2.run_once()
    assert d.action == analysis.WAIT and "lock-delay" in d.reason and servers["n2"].ro


def test_no_early_release_while_something_still_answers_on_mysqlds_socket(tmp_path, monkeypatch):
    """No pid file is not proof: if the socket or port accepts a connection, take the slow path."""
    from mysqlpilot import mysqld
    dcs, servers, n1, n2, sid1 = crashed_primary(tmp_path, monkeypatch)
    monkeypatch.setattr(mysqld, "accepts_connections", lambda cfg, timeout=0.3: True)
    n1.beat()
    assert "release marked" not in dcs.events and dcs.events[-1] == "fail_check"
    assert dcs.get_cluster().leader.name == "n1"     # the fake's fail_check does not end the session


def test_a_replica_whose_mysqld_died_releases_nothing(tmp_path, monkeypatch):
    from mysqlpilot import mysqld
    dcs, servers, n1, n2, sid1 = crashed_primary(tmp_path, monkeypatch)
    servers["n1"].up = True
    monkeypatch.setattr(n2, "mysqld_alive", lambda: False)
    monkeypatch.setattr(mysqld, "accepts_connections", lambda cfg, timeout=0.3: False)
    n2.beat()
    assert dcs.get_cluster().leader.name == "n1" and "release marked" not in dcs.events


def test_a_socket_still_closing_after_the_crash_delays_the_release_but_does_not_stop_it(tmp_path, monkeypatch):
    """Seen on the bench: a SIGKILLed mysqld's main thread is a zombie (no pid) while its other threads
    still hold the listening socket for some milliseconds."""
    from mysqlpilot import mysqld
    dcs, servers, n1, n2, sid1 = crashed_primary(tmp_path, monkeypatch)
    answers = iter([True, True])
    monkeypatch.setattr(mysqld, "accepts_connections", lambda cfg, timeout=0.3: next(answers, False))
    n1.beat()
    assert "release marked" in dcs.events and dcs.get_cluster().released.name == "n1"


def old_primary_gone(tmp_path, monkeypatch, published):
    """Semi-sync: n1 led, n2 replicated and saw it lead; then n1's session ended, its member key holding
    `published` (raw JSON fields over a good value)."""
    import json
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"), MYSQLPILOT_DURABILITY="semi-sync")
    n2 = nodes["n2"]
    sid1 = make_primary(dcs, servers, nodes["n1"])
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1")
    servers["n2"].replica.update(io_running=True, lag_seconds=0.0)
    n2.run_once()                                    # n2 has seen n1 lead
    dcs.invalidate(sid1)
    servers["n1"].up = False
    dcs.members["n1"] = MemberState("n1", "h-n1", 3306, alive=False, role="primary")
    dcs.raw["members/n1"] = json.dumps(dict(json.loads(dcs.members["n1"].to_json()), **published)).encode()
    lock_delay_passed(n2, dcs)
    return dcs, servers, n2


def test_a_garbage_gtid_in_the_old_primarys_member_key_does_not_stop_the_election(tmp_path, monkeypatch):
    """Issue 18 item 6: the old primary's published GTID went into the semi-sync ranking unparsed, gtid.parse
    raised on every pass, and nobody ever won."""
    dcs, servers, n2 = old_primary_gone(tmp_path, monkeypatch, {"gtid_executed": "garbage",
                                                                "gtid_received": "0-1-1O"})
    d = n2.run_once()
    assert d.action == analysis.TAKE_LOCK, d.reason
    assert servers["n2"].ro is False and dcs.get_cluster().leader.name == "n2"


def test_a_readable_gtid_beside_a_garbage_one_still_guards_the_election(tmp_path, monkeypatch):
    """Only the bad field is dropped: the executed position the old primary published is still a floor."""
    dcs, servers, n2 = old_primary_gone(tmp_path, monkeypatch, {"gtid_executed": "0-1-11",
                                                                "gtid_received": "garbage"})
    d = n2.run_once()
    assert d.action == analysis.WAIT and "lacks transactions of the old primary" in d.reason, d.reason


def test_a_garbage_promoted_gtid_does_not_leave_followers_errant_unknown(tmp_path, monkeypatch):
    """Issue 18 item 6: mariadb_errant parsed the leader key's promoted_gtid on every pass and raised, so a
    follower waited on "errant check" forever."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    make_primary(dcs, servers, nodes["n1"])
    dcs.raw["leader"] = LeaderInfo("n1", "h-n1", 3306, promoted=True, promoted_gtid="0-1-ten").to_json()
    n2 = nodes["n2"]
    give_session(n2, dcs)
    servers["n2"].executed = "0-1-9"
    d = n2.run_once()
    assert d.action == analysis.FOLLOW, d.reason
    assert "change_source h-n1:3306" in servers["n2"].calls


def test_a_semi_sync_promotion_sets_no_timeout_on_the_ack_wait(tmp_path, monkeypatch):
    """Item 9: a promotion passed semi_sync_timeout_ms (10 s by default): a commit waiting for its ACK
    when the node froze longer was acknowledged at thaw without any replica. The statements here are the
    real Server's."""
    from mysqlpilot.sqlclient import Server

    from .fakes import FLAVOR, FakeDCS

    class Recording(FakeMySQL):
        flavor = FLAVOR
        semi_sync_primary = Server.semi_sync_primary
    dcs = FakeDCS()
    servers = {"n2": Recording("n2")}
    n2 = make_node(tmp_path, "n2", dcs, servers, monkeypatch, MYSQLPILOT_DURABILITY="semi-sync")
    give_session(n2, dcs)
    lock_delay_passed(n2, dcs)
    dcs.members["n2"] = MemberState("n2", "h-n2", 3306, alive=True, healthy=True, role="replica")
    replica_of(servers, "n2", "n1", executed="0-1-10")
    assert n2.run_once().action == analysis.TAKE_LOCK and servers["n2"].ro is False
    timeouts = [c for c in servers["n2"].calls if "rpl_semi_sync_master_timeout" in c]
    assert timeouts and all("rpl_semi_sync_master_timeout = 4294967295" in c for c in timeouts), timeouts


def test_a_live_member_whose_key_is_unreadable_blocks_a_semi_sync_election(tmp_path, monkeypatch):
    """Simulator seeds 5825 and 6995: a hostile value in a frozen replica's member key made it vanish from
    the election, and a replica without its acknowledged commit promoted. A live session under an
    unreadable key is a member whose data is unknown: unreachable, which semi-sync waits for."""
    from mysqlpilot.dcs.base import parse_member
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2", "n3"), MYSQLPILOT_DURABILITY="semi-sync")
    n3 = nodes["n3"]
    give_session(n3, dcs)
    sid2 = give_session(nodes["n2"], dcs)
    servers["n3"].executed = "0-1-6"
    dcs.members["n3"] = MemberState("n3", "h-n3", 3306, alive=True, healthy=True)
    dcs.members["n2"] = MemberState("n2", "h-n2", 3306, alive=True, healthy=True)
    dcs.raw["members/n2"] = b""                   # n2 (frozen, session alive) holds 0-1-7; its key says nothing
    lock_delay_passed(n3, dcs)
    real_member = dcs.member
    dcs.member = lambda name: parse_member(f"members/{name}", dcs.raw.get(f"members/{name}"), sid2,
                                           "mariadb") if name == "n2" else real_member(name)
    d = n3.run_once()
    assert d.action != analysis.TAKE_LOCK and servers["n3"].ro is True, d.reason
    assert not any(c.startswith("SELECT") for c in servers["n2"].calls)


def test_a_switchover_to_a_member_whose_key_is_unreadable_is_refused_before_any_fence(tmp_path, monkeypatch):
    """Simulator seed 5961: the target's key was garbage; the primary fenced, then logged in to no address."""
    dcs, servers, n1, n2 = primary_and_healthy_replica(tmp_path, monkeypatch)
    dcs.raw["members/n2"] = b"-1"
    assert n1.hand_over("n2", Request(to="n2"), dcs.get_cluster()) is False
    assert servers["n1"].ro is False and "read_only=True" not in servers["n1"].calls

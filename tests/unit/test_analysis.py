"""The HA state machine and candidate ranking: pure functions, tested exhaustively."""
import itertools

import pytest

from mysqlpilot import analysis as A
from mysqlpilot.analysis import Candidate, Observation, Policy
from mysqlpilot.model import LeaderInfo, MemberState

ME = "n1"
LEADER = LeaderInfo("n2", "127.0.1.2", 3306, server_id=2, session="s2", promoted=True)


def obs(**kw):
    base = dict(me=ME, now=1000.0, mysqld_up=True, read_only=True, have_session=True, lease_left=4.0,
                leader=None, i_hold_lock=False)
    base.update(kw)
    return Observation(**base)


# ---- decide(): every branch --------------------------------------------------------------------

def test_mysqld_down_waits_whatever_else():
    for hold, ro in itertools.product([True, False], [True, False, None]):
        d = A.decide(obs(mysqld_up=False, i_hold_lock=hold, read_only=ro, leader=LEADER))
        assert d.action == A.WAIT and "mysqld" in d.reason


def test_lock_holder_with_expired_lease_fences():
    d = A.decide(obs(i_hold_lock=True, read_only=False, lease_left=0.0))
    assert d.action == A.FENCE and "lease" in d.reason
    d = A.decide(obs(i_hold_lock=True, read_only=False, lease_left=-3))
    assert d.action == A.FENCE


def test_lock_holder_read_only_promotes_writable_stays():
    assert A.decide(obs(i_hold_lock=True, read_only=True)).action == A.PROMOTE
    assert A.decide(obs(i_hold_lock=True, read_only=None)).action == A.PROMOTE
    assert A.decide(obs(i_hold_lock=True, read_only=False)).action == A.STAY_PRIMARY


def test_a_writable_holder_whose_key_was_never_marked_promoted_finishes_its_promotion():
    """Found by the simulator (seed 547 of the short scenario): the promotion turned mysqld writable, then its
    write of promoted=true to the key was lost; as STAY_PRIMARY the key never said promoted and the replicas
    waited 'still promoting' for good."""
    mine = LeaderInfo(ME, "127.0.1.1", 3306, session="s1", promoted=False)
    d = A.decide(obs(i_hold_lock=True, read_only=False, leader=mine))
    assert d.action == A.PROMOTE and "promoted" in d.reason
    done = LeaderInfo(ME, "127.0.1.1", 3306, session="s1", promoted=True)
    assert A.decide(obs(i_hold_lock=True, read_only=False, leader=done)).action == A.STAY_PRIMARY


def test_lock_holder_hands_over_on_request_for_other_node_only():
    assert A.decide(obs(i_hold_lock=True, read_only=False, switchover_to="n3")).action == A.HAND_OVER
    assert A.decide(obs(i_hold_lock=True, read_only=False, switchover_to=ME)).action == A.STAY_PRIMARY


@pytest.mark.parametrize("leader", [None, LEADER])
@pytest.mark.parametrize("ro", [False, None])
def test_writable_without_lock_is_fenced(leader, ro):
    d = A.decide(obs(read_only=ro, leader=leader))
    assert d.action == A.FENCE


def test_replica_follows_leader_until_replicating():
    d = A.decide(obs(leader=LEADER))
    assert d.action == A.FOLLOW and d.target is LEADER
    d = A.decide(obs(leader=LEADER, replicating_from="127.0.1.9:3306", replication_ok=True))
    assert d.action == A.FOLLOW        # replicating from the wrong (old) primary
    d = A.decide(obs(leader=LEADER, replicating_from=LEADER.address, replication_ok=False))
    assert d.action == A.FOLLOW        # right source, broken threads: restart them
    d = A.decide(obs(leader=LEADER, replicating_from=LEADER.address, replication_ok=True))
    assert d.action == A.WAIT and "replicating" in d.reason


def test_errant_or_refused_position_rebuilds():
    d = A.decide(obs(leader=LEADER, errant="0-1-101..0-1-105"))
    assert d.action == A.REBUILD and "0-1-101..0-1-105" in d.reason
    d = A.decide(obs(leader=LEADER, replication_errno=1236, replicating_from=LEADER.address))
    # Reported as errant (seen in the chaos campaign: a same-sequence divergence that only 1236 shows).
    assert d.action == A.REBUILD and "1236" in d.reason and "errant" in d.reason
    d = A.decide(obs(leader=LEADER, replication_errno=1236, replicating_from=LEADER.address,
                     replication_error="Could not find GTID state requested by slave in any binlog files. "
                                       "Probably the slave state is too old and required binlog files have been purged."))
    assert d.action == A.REBUILD and "purged" in d.reason and "errant" not in d.reason
    d = A.decide(obs(leader=LEADER, needs_rebuild="restore failed"))
    assert d.action == A.REBUILD


def test_free_leader_key_rules():
    assert A.decide(obs(stopping=True, takeover=(True, "best"))).action == A.WAIT
    assert A.decide(obs(have_session=False, takeover=(True, "best"))).action == A.WAIT
    assert A.decide(obs(paused=True, takeover=(True, "best"))).action == A.WAIT
    assert A.decide(obs(needs_rebuild="x", takeover=(True, "best"))).action == A.WAIT
    assert A.decide(obs(takeover=(False, "waiting"))).action == A.WAIT
    assert A.decide(obs(takeover=(True, "best candidate"))).action == A.TAKE_LOCK


def test_requests_designate_the_taker_even_when_paused():
    ok = (True, "designated by a switchover/failover request")
    assert A.decide(obs(switchover_to=ME, paused=True, takeover=ok)).action == A.TAKE_LOCK


def test_a_designated_node_takes_the_lock_only_when_its_verdict_allows():
    """Issue 18 item 2: designation no longer skips the data-safety rules (designated_turn decides)."""
    d = A.decide(obs(switchover_to=ME, takeover=(False, "not eligible: lacks transactions that n3 holds")))
    assert d.action == A.WAIT and "n3" in d.reason
    d = A.decide(obs(switchover_to="n3", takeover=(True, "best")))
    assert d.action == A.WAIT and "n3" in d.reason


def test_never_writable_without_lock_exhaustive():
    """Whatever is observed, a node that does not hold the lock never gets PROMOTE/STAY_PRIMARY."""
    for up, ro, sess, leader, stopping, paused, req, take in itertools.product(
            [True, False], [True, False, None], [True, False], [None, LEADER], [True, False],
            [True, False], [None, ME, "n3"], [(True, "x"), (False, "y")]):
        d = A.decide(obs(mysqld_up=up, read_only=ro, have_session=sess, leader=leader, stopping=stopping,
                         paused=paused, switchover_to=req, takeover=take))
        assert d.action not in (A.PROMOTE, A.STAY_PRIMARY, A.HAND_OVER)
        if up and ro is not True:
            assert d.action == A.FENCE


# ---- ranking -------------------------------------------------------------------------------------

def cand(name, n, **kw):
    return Candidate(name, kw.pop("reachable", True), kw.pop("healthy", True), gtid_received=f"0-1-{n}",
                     gtid_count=n, **kw)


def with_contains(cands):
    for c in cands:
        for o in cands:
            if o is not c:
                c.contains[o.name] = c.gtid_count >= o.gtid_count
    return cands


def test_most_advanced_wins_over_priority():
    cs = with_contains([cand("a", 10, priority=500), cand("b", 12, priority=1)])
    r = A.rank_candidates(cs, Policy())
    assert [x.name for x in r if x.rank == 0] == ["b"]
    a = next(x for x in r if x.name == "a")
    # a lacks what b holds: it cannot win, not even after the grace periods.
    assert not a.eligible and "lacks transactions that b holds" in a.why
    # Forced (`failover --force`): ordered, behind b.
    a = next(x for x in A.rank_candidates(cs, Policy(), strict=False) if x.name == "a")
    assert a.eligible and a.rank == 1 and "behind b" in a.why


def test_ties_broken_by_priority_then_name():
    cs = with_contains([cand("c", 10, priority=100), cand("a", 10, priority=100), cand("b", 10, priority=200)])
    r = A.rank_candidates(cs, Policy())
    order = sorted((x for x in r if x.eligible), key=lambda x: x.rank)
    assert [x.name for x in order] == ["b", "a", "c"]


@pytest.mark.parametrize("kw,why", [
    ({"reachable": False}, "unreachable"),
    ({"healthy": False}, "unhealthy"),
    ({"nofailover": True}, "nofailover"),
    ({"lag_seconds": 99.0}, "lag"),
])
def test_ineligible_reasons(kw, why):
    cs = with_contains([cand("x", 5, **kw), cand("y", 50)])
    r = A.rank_candidates(cs, Policy(max_lag_on_failover=30))
    x = next(v for v in r if v.name == "x")
    assert not x.eligible and why in x.why and x.rank == -1
    assert next(v for v in r if v.name == "y").rank == 0


@pytest.mark.parametrize("kw", [{"healthy": False}, {"nofailover": True}, {"lag_seconds": 99.0},
                                {"caught_up": False, "sql_running": False}])
@pytest.mark.parametrize("durability", ["async", "semi-sync"])
def test_an_ineligible_member_holding_more_makes_the_election_wait(kw, durability):
    """Item 5: a lagging, nofailover or unhealthy replica can hold the only copy of an acknowledged
    commit; nobody who lacks it may win (the old code counted only eligible members)."""
    cs = with_contains([cand("x", 50, **kw), cand("y", 5), cand("z", 5)])
    r = {v.name: v for v in A.rank_candidates(cs, Policy(durability=durability, max_lag_on_failover=30))}
    if durability == "semi-sync" and "lag_seconds" in kw:
        assert r["x"].rank == 0           # lag does not exclude under semi-sync: it applies, then promotes
        return
    assert not r["x"].eligible
    for n in ("y", "z"):
        assert not r[n].eligible and "lacks transactions that x holds" in r[n].why
        # and the grace fallback cannot bypass it
        assert not A.my_turn(list(r.values()), n, 1e6, 3.0)[0]


def test_an_unknown_lag_is_not_zero():
    """Items 7 and 10: NULL lag (the source is gone) with a relay backlog is not eligible in async mode,
    and a stopped SQL thread with a backlog never is; a caught-up replica with NULL lag is fine."""
    p = Policy(durability="async")
    backlog = cand("a", 10, lag_seconds=None, caught_up=False)
    r = A.rank_candidates(with_contains([backlog]), p)
    assert not r[0].eligible and "lag unknown" in r[0].why
    r = A.rank_candidates(with_contains([cand("a", 10, lag_seconds=None, caught_up=True)]), p)
    assert r[0].rank == 0
    stopped = cand("a", 10, lag_seconds=None, caught_up=False, sql_running=False)
    for pol in (p, Policy(durability="semi-sync")):
        r = A.rank_candidates(with_contains([stopped]), pol)
        assert not r[0].eligible and "SQL thread stopped" in r[0].why


def test_a_catching_up_node_never_wins_against_one_holding_more():
    """Issue 13's chain: a rebuilt node, still catching up, won when its source died."""
    cs = with_contains([cand("n3", 7, lag_seconds=None, caught_up=False), cand("n1", 12), cand("n2", 12)])
    for pol in (Policy(durability="async"), Policy(durability="semi-sync")):
        r = {v.name: v for v in A.rank_candidates(cs, pol)}
        assert not r["n3"].eligible and r["n1"].rank == 0 and r["n2"].rank == 1


def test_semi_sync_requires_acknowledged_transactions():
    cs = with_contains([cand("a", 10), cand("b", 7)])
    contains = lambda have, need: int(have.split("-")[2]) >= int(need.split("-")[2])
    r = A.rank_candidates(cs, Policy(), must_contain="0-1-9", contains_fn=contains)
    assert next(v for v in r if v.name == "b").eligible is False
    assert next(v for v in r if v.name == "a").rank == 0
    r = A.rank_candidates(cs, Policy(), must_contain="0-1-11", contains_fn=contains)
    assert not any(v.eligible for v in r)


def test_my_turn_grace_steps():
    ranking = [A.Ranked("a", True, "", 0), A.Ranked("b", True, "", 1), A.Ranked("c", True, "", 2),
               A.Ranked("d", False, "unhealthy")]
    assert A.my_turn(ranking, "a", 0.0, 3.0)[0]
    assert not A.my_turn(ranking, "b", 2.9, 3.0)[0]
    ok, why = A.my_turn(ranking, "b", 3.0, 3.0)
    assert ok and "a did not take the lock" in why
    assert not A.my_turn(ranking, "c", 5.9, 3.0)[0]
    assert A.my_turn(ranking, "c", 6.0, 3.0)[0]
    ok, why = A.my_turn(ranking, "d", 100, 3.0)
    assert not ok and "unhealthy" in why
    assert not A.my_turn(ranking, "zz", 100, 3.0)[0]


def test_failover_budget_spends_and_rearms():
    p = Policy(failover_budget=2, failover_window=600, failover_rearm=300)
    h = [{"kind": "failover", "time": 1000.0}]
    assert A.failover_budget(h, 1100, p)[0]
    h.append({"kind": "failover", "time": 1100.0})
    ok, why = A.failover_budget(h, 1200, p)
    assert not ok and "budget spent" in why
    assert A.failover_budget(h, 1400, p)[0]                 # 300s after the last one: re-armed
    h2 = h + [{"kind": "switchover", "time": 1150.0}, {"kind": "bootstrap", "time": 900.0}]
    assert not A.failover_budget(h2, 1200, p)[0]            # only automatic failovers count
    assert A.failover_budget([{"kind": "failover", "time": 0.0}] * 5, 10_000, p)[0]  # out of window


def test_lease_is_lock_delay_minus_fence_margin_whatever_the_ttls():
    """Item 3: the lease no longer assumes sessions end only by TTL."""
    assert Policy(session_ttl=10, check_ttl=6, lock_delay=4, fence_margin=1).lease == 3
    assert Policy(session_ttl=60, check_ttl=30, lock_delay=10, fence_margin=3).lease == 7


# ---- MariaDB errant detection ------------------------------------------------------------------

def parse(s):
    out = {}
    for part in filter(None, (p.strip() for p in s.split(","))):
        d, srv, seq = (int(x) for x in part.split("-"))
        out[d] = (srv, seq)
    return out


@pytest.mark.parametrize("mine,leader_now,promoted,leader_sid,errant", [
    ("0-1-100", "0-2-110", "0-1-100", 2, ""),                 # clean old replica
    ("0-1-105", "0-2-110", "0-1-100", 2, "0-1-105"),          # old primary wrote past the promotion
    ("0-1-105", "0-1-100", "0-1-100", 2, "0-1-105"),          # ahead of the leader
    ("0-2-103", "0-2-110", "0-1-100", 2, ""),                 # replicated from the new primary
    ("0-2-109", "0-3-115", "0-2-107", 3, "0-2-109"),          # was ahead of the promoted node
    ("", "0-2-5", "0-2-5", 2, ""),
    ("0-1-5,1-1-3", "0-2-9", "0-1-5", 2, "1-1-3"),            # a domain the leader never saw
    ("0-1-6", "0-2-9", "0-1-5", 2, "0-1-6"),                  # a single extra transaction
])
def test_mariadb_errant(mine, leader_now, promoted, leader_sid, errant):
    assert A.mariadb_errant(mine, leader_now, promoted, leader_sid, parse) == errant


# ---- switchover target ---------------------------------------------------------------------------

def member(name, **kw):
    base = dict(host="h", port=1, healthy=True, alive=True, priority=100, lag_seconds=0.0)
    base.update(kw)
    return MemberState(name=name, **base)


def test_switchover_target_choice():
    ms = [member("p"), member("a", lag_seconds=3.0), member("b", priority=200, lag_seconds=9.0),
          member("c", healthy=False), member("d", nofailover=True, priority=999)]
    assert A.choose_switchover_target(ms, "p", None)[0] == "b"
    assert A.choose_switchover_target(ms, "p", "a")[0] == "a"
    t, why = A.choose_switchover_target(ms, "p", "c")
    assert t is None and "not healthy" in why
    t, why = A.choose_switchover_target(ms, "p", "zz")
    assert t is None and "not a member" in why
    t, why = A.choose_switchover_target([member("p")], "p", None)
    assert t is None and "no healthy replica" in why


def test_a_switchover_in_a_cluster_halfway_through_a_major_upgrade_keeps_the_older_series_primary():
    """Replication runs from an older source to a newer replica only: whatever order the platform replaces
    tasks in, pre-stop's switchover must not put a newer primary over older replicas."""
    from dataclasses import replace as dc_replace
    new, old = "11.8.3-MariaDB-1-log", "10.11.19-MariaDB-0+deb12u1-log"
    ms = [dc_replace(member("p"), server_version=old), dc_replace(member("a", priority=500), server_version=new),
          dc_replace(member("b"), server_version=old)]
    assert A.choose_switchover_target(ms, "p", None)[0] == "b"
    # Every replica upgraded (the last step of the walk): the best of them, as always.
    ms[2] = dc_replace(ms[2], server_version=new)
    assert A.choose_switchover_target(ms, "p", None)[0] == "a"
    # A patch release is no series: priority and lag decide.
    ms[2] = dc_replace(ms[2], server_version="11.8.2-MariaDB-1-log")
    assert A.choose_switchover_target(ms, "p", None)[0] == "a"
    # A version not published (an older mysqlpilot): no preference from it.
    ms[2] = dc_replace(ms[2], server_version=old)
    ms[1] = dc_replace(ms[1], server_version="")
    assert A.choose_switchover_target(ms, "p", None)[0] == "a"
    assert A.server_series("9.7.4-2") == (9, 7) and A.server_series("garbage") is None


def test_the_failed_primary_ranks_last_among_equals_but_wins_when_ahead():
    cs = with_contains([cand("a", 10), cand("b", 10), cand("c", 10)])
    cs[0].was_primary = True
    r = {x.name: x for x in A.rank_candidates(cs, Policy())}
    assert (r["b"].rank, r["c"].rank, r["a"].rank) == (0, 1, 2)
    assert "failed primary" in r["a"].why
    # It holds a transaction nobody else received: promoting anyone else would throw it away.
    cs = with_contains([cand("a", 11), cand("b", 10), cand("c", 10)])
    cs[0].was_primary = True
    r = {x.name: x for x in A.rank_candidates(cs, Policy())}
    assert r["a"].rank == 0 and "lacks transactions that a holds" in r["b"].why


def test_a_clean_stop_makes_the_next_election_a_cold_start():
    assert not A.after_clean_stop([])
    assert not A.after_clean_stop([{"kind": "shutdown"}, {"kind": "bootstrap"}])
    assert A.after_clean_stop([{"kind": "failover"}, {"kind": "shutdown"}])
    # A shutdown is no automatic failover: it spends no budget.
    hist = [{"kind": "failover", "time": 100.0}, {"kind": "shutdown", "time": 110.0}]
    ok, why = A.failover_budget(hist, 120.0, Policy(failover_budget=2))
    assert ok and why.startswith("1/2")


# ---- the take-over gate and turn (pure) ----------------------------------------------------------

def test_takeover_guard_backs_off_then_spends_the_budget():
    p = Policy(failover_budget=1, failover_window=3600, failover_rearm=1800)
    ok, why = A.takeover_guard(10.0, [], 1000.0, True, p)
    assert not ok and "standing aside" in why
    assert A.takeover_guard(A.PROMOTION_BACKOFF + 1, [], 1000.0, True, p)[0]
    spent = [{"kind": "failover", "time": 900.0}]
    assert not A.takeover_guard(None, spent, 1000.0, True, p)[0]
    assert A.takeover_guard(None, spent, 1000.0, False, p)[0]       # no earlier leader: cold start


def test_rebuild_guard_allows_three_in_ten_minutes():
    assert A.rebuild_guard([], 1000.0)[0]
    assert A.rebuild_guard([990.0, 995.0, "junk"], 1000.0)[0]
    ok, why = A.rebuild_guard([990.0, 995.0, 999.0], 1000.0)
    assert not ok and "snapshot --force" in why
    assert A.rebuild_guard([990.0, 995.0, 999.0], 1000.0 + A.REBUILD_WINDOW)[0]


def test_takeover_turn_refuses_under_semi_sync_while_a_live_member_is_unreachable():
    cs = with_contains([cand("a", 10), cand("b", 10, reachable=False)])
    ok, why, ranking = A.takeover_turn(cs, Policy(durability="semi-sync"), "a", "", None, 0.0)
    assert not ok and "unreachable" in why and ranking == []
    ok, why, ranking = A.takeover_turn(cs, Policy(durability="async"), "a", "", None, 0.0)
    assert ok and ranking[0].name == "a"


def test_every_decision_has_an_action():
    acts = {v for k, v in vars(A).items() if k.isupper() and isinstance(v, str) and k in (
        "FENCE", "TAKE_LOCK", "PROMOTE", "STAY_PRIMARY", "FOLLOW", "REBUILD", "WAIT", "HAND_OVER", "RETAKE", "RESTART")}
    from mysqlpilot.actions import Actions
    table = Actions.table(type("N", (), dict({f"do_{a}": None for a in acts}, guard_takeover=None,
                                             guard_rebuild=None))())
    assert set(table) == acts

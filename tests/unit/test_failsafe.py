"""Failsafe (issue 21): the rules (failsafe.py), the lease arithmetic (lease.extend_failsafe), the decisions
(analysis.RETAKE, promises kept), and whole rounds between Nodes over the project's fakes."""
from __future__ import annotations

import dataclasses
import time

import pytest

from mysqlpilot import analysis, failsafe
from mysqlpilot.analysis import Observation, decide
from mysqlpilot.failsafe import Ask, MemberFacts, grant, listed
from mysqlpilot.failsafe_keeper import CLAIM, PROMISE, Asker
from mysqlpilot.lease import Lease, boottime
from mysqlpilot.model import LeaderInfo
from mysqlpilot.statefile import StateFile
from mysqlpilot.timing import Timing

from .test_ha_interleavings import cluster, give_session, make_primary, replica_of

NOW = 1_700_000_000.0
ASK = Ask("c", "n1", "n2", 2.0, NOW)
OK = MemberFacts(me="n2", cluster="c", now_wall=NOW, writable=False, view_fresh=True, leader="n1", follows="n1",
                 primary_reachable=True)


# ---- who promises -----------------------------------------------------------------------------
@pytest.mark.parametrize("change, why", [
    ({"me": "n3"}, "request for n2"),
    ({"cluster": "other"}, "request for n2"),
    ({"now_wall": NOW + 60}, "stamped"),
    ({"me": "n1"}, "request for n2"),
    ({"claim": True}, "taking or holding"),
    ({"writable": True}, "writable"),
    ({"writable": None}, "cannot tell"),
    ({"leader": "n3"}, "Consul shows n3"),
    ({"request": "n3"}, "switchover/failover to n3 is pending"),
    ({"follows": "n3"}, "follows n3"),
    ({"primary_reachable": False}, "cannot reach n1's mysqld"),
    ({"primary_reachable": None}, "does not know where"),
])
def test_a_member_refuses_when_it_might_take_the_lock_or_follows_another(change, why):
    ok, reason = grant(ASK, dataclasses.replace(OK, **change))
    assert not ok and why in reason


@pytest.mark.parametrize("change", [
    {},                                        # sees n1 hold the lock
    {"leader": None},                          # sees the key free: the primary's session ended
    {"view_fresh": False, "leader": "n3"},     # cannot see Consul: an old view does not refuse
    {"view_fresh": False, "request": "n3"},
])
def test_a_member_promises_when_nothing_it_knows_says_otherwise(change):
    ok, reason = grant(ASK, dataclasses.replace(OK, **change))
    assert ok and "promised n1" in reason


def test_a_primary_does_not_ask_itself():
    assert not grant(dataclasses.replace(ASK, member="n1"), dataclasses.replace(OK, me="n1"))[0]


def test_signatures_bind_the_body_and_the_secret():
    key = failsafe.signing_key("c", "pw2")
    body = ASK.body()
    sig = failsafe.sign(key, body)
    assert failsafe.verify(key, body, sig)
    assert not failsafe.verify(key, body.replace(b'"n2"', b'"n3"'), sig)
    assert not failsafe.verify(failsafe.signing_key("c", "other"), body, sig)
    assert not failsafe.verify(key, body, "")
    assert "pw2" not in sig and b"pw2" not in body


@pytest.mark.parametrize("raw", [b"{}", b"[]", b'{"cluster": "c"}', b"not json",
                                 Ask("c", "n1", "n2", 0.0, NOW).body(), Ask("c", "n1", "n2", 1e6, NOW).body()])
def test_malformed_requests_are_refused(raw):
    with pytest.raises(ValueError):
        Ask.parse(raw)


# ---- who may take the lock --------------------------------------------------------------------
LIST = {"primary": "n1", "members": {"n2": "h2:8008"}, "at": NOW}


@pytest.mark.parametrize("fs, me, released_by, ok", [
    (None, "n9", None, True),                # no list: a new cluster, or Consul lost its data
    (LIST, "n2", None, True),                # listed
    (LIST, "n1", None, True),                # its writer
    (LIST, "n9", None, False),               # joined after the primary last listed: may be forgotten
    (LIST, "n9", "n1", True),                # the writer released the lock itself
    (LIST, "n9", "n2", False),               # someone else's release proves nothing about n1
])
def test_only_listed_members_take_the_lock(fs, me, released_by, ok):
    assert listed(fs, me, released_by)[0] is ok


@pytest.mark.parametrize("writer_read_only, ok", [(True, True), (False, False), (None, False)])
def test_an_unlisted_member_may_take_the_lock_once_the_writer_is_read_only(writer_read_only, ok):
    """Simulator seed 268 (failsafe on): the only node holding every transaction was not listed by the
    last primary, itself read-only by then; the election stalled for good."""
    assert listed(LIST, "n9", None, writer_read_only)[0] is ok


@pytest.mark.parametrize("value, parsed", [
    ({"primary": "n1", "members": {"n2": "h:1"}}, True),
    ({"primary": "n1", "members": {"n2": 5}}, False),
    ({"primary": 3, "members": {}}, False),
    ("n1", False), (None, False),
])
def test_the_list_key_is_parsed_strictly(value, parsed):
    assert (failsafe.parse_list(value) is not None) is parsed


# ---- the arithmetic ---------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def lease_at(tmp_path):
    clock, t = Clock(), Timing()
    lease = Lease(StateFile(str(tmp_path)), t.lease, clock=clock)
    lease.extend("s1", clock.t)
    lease.mark_writer("s1")
    return lease, clock, t


def test_a_full_round_is_worth_a_renew_sent_at_the_same_moment(tmp_path):
    lease, clock, t = lease_at(tmp_path)
    clock.t += t.lease / 2                           # renews stopped: half the lease left
    sent = clock.t
    assert lease.extend_failsafe("s1", sent, ["n2", "n3"])
    left, deadline = lease.writer_view(t.fence_margin)
    assert left == pytest.approx(t.lease) and deadline == pytest.approx(sent + t.promise)
    assert t.promise == t.lock_delay and t.lease + t.fence_margin == t.promise
    clock.t += t.lease + 0.01                        # no further round: the cover ends as a lease would
    assert lease.writer_view(t.fence_margin)[0] < 0


def test_promises_cover_only_the_session_the_writes_belong_to(tmp_path):
    lease, clock, t = lease_at(tmp_path)
    assert not lease.extend_failsafe("s9", clock.t, [])
    assert lease.failsafe_left() < 0
    lease.extend_failsafe("s1", clock.t, [])
    lease.extend("s2", clock.t)
    lease.mark_writer("s2")                          # taken back under a new session: its lease counts now
    assert lease.failsafe_left() < 0 and lease.failsafe_info() is None


def test_a_session_consul_ended_keeps_the_promises_a_fence_ends_them(tmp_path):
    lease, clock, t = lease_at(tmp_path)
    lease.extend_failsafe("s1", clock.t, ["n2"])
    lease.void("session gone")
    assert lease.failsafe_left() > 0 and lease.failsafe_info()["by"] == ["n2"]
    lease.void("fencing", failsafe=True)
    assert lease.failsafe_left() < 0 and lease.writer_view(t.fence_margin)[0] < 0


def test_since_is_kept_while_rounds_follow_each_other(tmp_path):
    lease, clock, t = lease_at(tmp_path)
    lease.extend_failsafe("s1", clock.t, ["n2"])
    first = clock.t
    clock.t += 0.4
    lease.extend_failsafe("s1", clock.t, ["n2"])
    assert lease.failsafe_info()["since"] == first
    clock.t += 5                                     # a gap: the cover ended; a new stretch starts
    lease.extend_failsafe("s1", clock.t, ["n2"])
    assert lease.failsafe_info()["since"] == clock.t


def test_the_timing_leaves_room_for_a_round():
    t = Timing()
    assert t.failsafe_after + t.promise_timeout < t.lease


# ---- decisions --------------------------------------------------------------------------------
def obs(**kw):
    base = dict(me="n1", now=NOW, mysqld_up=True, read_only=False, have_session=True, lease_left=-1.0,
                leader=None, i_hold_lock=False)
    base.update(kw)
    return Observation(**base)


@pytest.mark.parametrize("kw, action, why", [
    ({"failsafe_left": 1.0}, analysis.RETAKE, "taking it back"),
    ({"failsafe_left": 1.0, "have_session": False}, analysis.WAIT, "waiting for a Consul session"),
    ({"failsafe_left": 0.0}, analysis.FENCE, "writable but not holding"),
    ({"failsafe_left": 1.0, "switchover_to": "n2"}, analysis.FENCE, "writable but not holding"),
    ({"failsafe_left": 1.0, "stopping": True}, analysis.FENCE, "writable but not holding"),
    ({"failsafe_left": 1.0, "leader": LeaderInfo("n2", "h", 1, promoted=True)}, analysis.FENCE, "writable"),
    ({"failsafe_left": 1.0, "i_hold_lock": True, "leader": LeaderInfo("n1", "h", 1, promoted=True)},
     analysis.STAY_PRIMARY, "holding"),
    ({"failsafe_left": 0.0, "i_hold_lock": True, "leader": LeaderInfo("n1", "h", 1, promoted=True)},
     analysis.FENCE, "lease expired"),
])
def test_the_primary_on_promises(kw, action, why):
    d = decide(obs(**kw))
    assert d.action == action and why in d.reason


@pytest.mark.parametrize("kw", [{}, {"switchover_to": "n2"}, {"takeover": (True, "best candidate")}])
def test_a_member_that_promised_keeps_off_the_free_lock(kw):
    d = decide(obs(me="n2", read_only=True, promised_left=1.2, promised_to="n1", **kw))
    assert d.action == analysis.WAIT and "promised n1" in d.reason


# ---- whole rounds between Nodes ---------------------------------------------------------------
def wire(nodes, primary):
    """Route the primary's requests straight into each member's PromiseDesk (the HTTP layer is
    test_node_api's), signed as on the wire."""
    asker = Asker(nodes[primary])

    def ask(name, api):
        a = Ask(nodes[primary].cfg.cluster, primary, name, asker.t.promise, time.time())
        body = a.body()
        status, text = nodes[name].promises.answer(body, failsafe.sign(asker.key, body))
        return status == 200, text
    asker.ask = ask
    return asker


def three_nodes(tmp_path, monkeypatch):
    from mysqlpilot import candidates
    monkeypatch.setattr(candidates, "answers", lambda host, port, timeout=1.0: host == "h-n1")
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, MYSQLPILOT_FAILSAFE="1")
    n1 = nodes["n1"]
    sid1 = make_primary(dcs, servers, n1)
    n1.lease.mark_writer(sid1)
    for r in ("n2", "n3"):
        give_session(nodes[r], dcs)
        replica_of(servers, r, "n1")
        servers[r].replica["io_running"] = True
    n1.run_once()
    nodes["n2"].run_once()
    nodes["n3"].run_once()
    n1.run_once()                                    # lists n2 and n3
    assert dcs.get_cluster().failsafe["members"].keys() == {"n2", "n3"}
    return dcs, servers, nodes, sid1


def consul_gone(dcs, n1, sid1):
    dcs.down = True
    t = n1.timing                                    # the last renew got through a round's worth ago
    n1.lease.extend(sid1, boottime() - t.failsafe_after - t.heartbeat / 2)


def test_a_consul_outage_costs_no_fence_and_no_failover(tmp_path, monkeypatch):
    dcs, servers, nodes, sid1 = three_nodes(tmp_path, monkeypatch)
    n1, n2 = nodes["n1"], nodes["n2"]
    asker = wire(nodes, "n1")
    consul_gone(dcs, n1, sid1)
    assert asker.tick() is True
    assert n1.lease.failsafe_left() > n1.timing.lease - 0.1 and n1.lease.failsafe_info()["by"] == ["n2", "n3"]
    assert n2.state.get(PROMISE)["to"] == "n1"
    # Consul is back and ended n1's session: the key is free. n2 sees it, and keeps its promise.
    dcs.down = False
    dcs.invalidate(sid1)
    out = n2.run_once()
    assert out.action == analysis.WAIT and "promised n1" in out.reason and servers["n2"].ro
    # n1 opens a new session and takes the key back: still writable, no promotion, no history record.
    history = list(dcs.get_cluster().history)
    give_session(n1, dcs)
    out = n1.run_once()
    assert out.action == analysis.RETAKE
    v = dcs.get_cluster()
    assert v.leader.name == "n1" and v.leader.session == n1.sid and v.leader.promoted
    assert servers["n1"].ro is False and not n1.events.fenced
    assert v.history == history
    assert n1.lease.writer_view(0.5)[0] > n1.timing.lease / 2   # the new session's lease covers the writes now
    assert n1.run_once().action == analysis.STAY_PRIMARY


def test_one_member_that_cannot_confirm_ends_the_extension(tmp_path, monkeypatch):
    dcs, servers, nodes, sid1 = three_nodes(tmp_path, monkeypatch)
    n1 = nodes["n1"]
    asker = wire(nodes, "n1")
    real = asker.ask
    asker.ask = lambda name, api: (False, "unreachable") if name == "n3" else real(name, api)
    consul_gone(dcs, n1, sid1)
    assert asker.tick() is False
    assert n1.lease.failsafe_left() < 0
    # What the last renew left, no more: the watchdog fences then.
    assert n1.lease.writer_view(0.5)[0] < n1.timing.lease - n1.timing.failsafe_after


def test_a_member_that_sees_an_operators_failover_refuses(tmp_path, monkeypatch):
    dcs, servers, nodes, sid1 = three_nodes(tmp_path, monkeypatch)
    n1, n3 = nodes["n1"], nodes["n3"]
    dcs.kv["switchover"] = {"to": "n3", "origin": "operator", "kind": "manual-failover", "force": True,
                            "lock_index": dcs.lock_index, "at": time.time()}
    n3.run_once()
    asker = wire(nodes, "n1")
    consul_gone(dcs, n1, sid1)
    assert asker.tick() is False and n1.lease.failsafe_left() < 0
    assert n3.state.get(PROMISE) is None


def test_taking_the_lock_and_promising_exclude_each_other(tmp_path, monkeypatch):
    dcs, servers, nodes, sid1 = three_nodes(tmp_path, monkeypatch)
    n2 = nodes["n2"]
    assert n2.promises.claim()[0]
    body = Ask(n2.cfg.cluster, "n1", "n2", 2.0, time.time()).body()
    status, why = n2.promises.answer(body, failsafe.sign(n2.promises.key, body))
    assert status == 409 and "taking or holding" in why
    n2.promises.drop_claim()
    status, _ = n2.promises.answer(body, failsafe.sign(n2.promises.key, body))
    assert status == 200
    ok, why = n2.promises.claim()
    assert not ok and "promised n1" in why and n2.state.get(CLAIM) is None


def test_an_unsigned_request_changes_nothing(tmp_path, monkeypatch):
    dcs, servers, nodes, sid1 = three_nodes(tmp_path, monkeypatch)
    n2 = nodes["n2"]
    body = Ask(n2.cfg.cluster, "n1", "n2", 2.0, time.time()).body()
    assert n2.promises.answer(body, "")[0] == 403
    assert n2.promises.answer(body, failsafe.sign(failsafe.signing_key("mysqlpilot", "guess"), body))[0] == 403
    assert n2.state.get(PROMISE) is None


def test_a_member_joined_after_the_last_list_is_not_a_candidate(tmp_path, monkeypatch):
    """The primary, cut off from Consul, never asked it: it must not take the lock behind its back."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"), MYSQLPILOT_FAILSAFE="1")
    n1, n2 = nodes["n1"], nodes["n2"]
    sid1 = make_primary(dcs, servers, n1)
    n1.lease.mark_writer(sid1)
    n1.run_once()                                    # lists nobody
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1")
    n2.run_once()
    dcs.invalidate(sid1)                             # n1 lost Consul; n2 sees the key free
    n2.state.update(free_seen={"lock_index": dcs.lock_index, "view_index": 0, "at": boottime() - 60})
    out = n2.run_once()
    assert out.action == analysis.WAIT and "not in the failsafe list" in out.reason and servers["n2"].ro
    # Once the list's writer answers read-only (fenced, or following), it keeps nobody off the lock.
    dcs.members["n1"] = dataclasses.replace(dcs.member("n1"), alive=True)
    assert "not in the failsafe list" in n2.run_once().reason          # writable: it may be on promises
    servers["n1"].ro = True
    assert "not in the failsafe list" not in n2.run_once().reason

@pytest.mark.parametrize("change, ok", [
    ({}, True),                                   # the key free (its session lapsed): still the primary
    ({"holds_lock": True, "primary": "n1"}, True),
    ({"primary": "n2"}, False),                   # another holds the lock: never
    ({"writable": False}, False),
    ({"failsafe_left": -1.0}, False),
    ({"mysqld_up": False}, False),
])
def test_the_primary_endpoint_keeps_routing_to_a_primary_on_promises(change, ok):
    from mysqlpilot.api_verdicts import Facts, primary
    f = dataclasses.replace(Facts(name="n1", writable=True, mysqld_up=True, failsafe_left=1.2), **change)
    v = primary(f)
    assert v.ok is ok
    if ok and not f.holds_lock:
        assert "promises" in v.reason


def test_status_shows_a_primary_on_promises_although_its_session_lapsed(monkeypatch):
    from mysqlpilot import status
    from mysqlpilot.model import MemberState
    members = [MemberState("n1", "h1", 3306, role="primary", alive=False, api="h1:8008"),
               MemberState("n2", "h2", 3306, role="replica", alive=True, healthy=True, read_only=True, api="h2:8008")]
    fs = {"active": True, "since": time.time() - 4, "seconds_left": 1.4, "confirmed_by": ["n2"]}
    monkeypatch.setattr(status, "probe_apis", lambda ms: {"n1": ("", {"failsafe": fs}),
                                                            "n2": ("", {"failsafe": {"active": False}})})

    from mysqlpilot import config
    cfg = config.load(None, env={"MYSQLPILOT_NODE": "n2"}, credentials=False)
    from .test_status import FakeDCS
    st = status.gather(cfg, dcs=FakeDCS(None, members))
    assert st["primary"] == "n1" and status.check_code(st) == 0
    n1 = st["nodes"][0]
    assert n1["role"] == "primary" and n1["read_only"] is False and "promises of n2" in n1["message"]
    assert "promises of n2" in status.render(st)


def test_a_read_only_writer_without_the_lock_withdraws_its_list(tmp_path, monkeypatch):
    """Simulator seed 712 (failsafe on): the writer had stopped publishing its member record, so nobody
    could ask its read_only; the unlisted node holding every transaction waited for good."""
    dcs, servers, nodes, sid1 = three_nodes(tmp_path, monkeypatch)
    n1 = nodes["n1"]
    dcs.invalidate(sid1)
    servers["n1"].ro = True                          # fenced
    give_session(n1, dcs)
    n1.run_once()
    assert dcs.get_cluster().failsafe is None


def test_a_writable_writer_keeps_its_list(tmp_path, monkeypatch):
    dcs, servers, nodes, sid1 = three_nodes(tmp_path, monkeypatch)
    n1 = nodes["n1"]
    n1.lease.extend_failsafe(sid1, boottime(), ["n2", "n3"])
    dcs.invalidate(sid1)                             # writable on promises, the key free
    give_session(n1, dcs)
    dcs.down = False
    n1.run_once()
    assert dcs.get_cluster().failsafe is not None


def test_a_session_consul_ends_while_it_answers_costs_no_fence_and_no_failover(tmp_path, monkeypatch):
    """Issue 21's last gap: Consul itself ends the primary's session while it answers (the node's agent left
    the cluster on a restart). The last renew's lease still holds (lock-delay follows every end), so the
    primary keeps it, asks for promises, opens a new session only once they cover, and takes the key back.
    Seen failing on the old code: the heartbeat gave the lease up at "session gone" and the pass fenced."""
    dcs, servers, nodes = three_nodes(tmp_path, monkeypatch)[:3]
    n1, n2 = nodes["n1"], nodes["n2"]
    sid1 = n1.sid
    n1.mysqld_alive = lambda: True
    asker = wire(nodes, "n1")
    dcs.invalidate(sid1)                                  # the agent left: session and lock gone at once
    assert n1.keeper.beat() is False and n1.sid == sid1 and n1.lease.writer_view(0.0)[0] > 0
    out = n1.run_once()
    assert out.action == analysis.WAIT and "Consul ended the session" in out.reason and servers["n1"].ro is False
    # The renew that failed was the last: once 1.5 heartbeats have passed, the failsafe asks.
    n1.lease.extend(sid1, boottime() - n1.timing.failsafe_after - 0.01)
    assert asker.tick() is True and n2.state.get(PROMISE)["to"] == "n1"
    assert nodes["n2"].run_once().action == analysis.WAIT            # n2 keeps off the free key
    assert n1.keeper.beat() is True and n1.sid != sid1               # promises cover: a new session
    history = list(dcs.get_cluster().history)
    assert n1.run_once().action == analysis.RETAKE
    v = dcs.get_cluster()
    assert v.leader.name == "n1" and servers["n1"].ro is False and not n1.events.fenced and v.history == history


def test_an_operators_failover_still_fences_a_primary_whose_session_it_ended(tmp_path, monkeypatch):
    dcs, servers, nodes = three_nodes(tmp_path, monkeypatch)[:3]
    n1 = nodes["n1"]
    sid1 = n1.sid
    dcs.kv["switchover"] = {"to": "n3", "origin": "operator", "kind": "manual-failover", "force": True,
                            "lock_index": dcs.lock_index, "at": time.time()}
    n1.mysqld_alive = lambda: True
    dcs.invalidate(sid1)
    n1.keeper.beat()
    assert n1.run_once().action == analysis.FENCE and servers["n1"].ro is True


def test_a_leader_key_deleted_under_a_live_session_is_still_fenced_for(tmp_path, monkeypatch):
    """Found by the simulator (delete_leader, seeds 19, 91, ...) in the first cut of the session-ended ride
    out: it waited whenever the key was free and the lease ran, but a live session keeps renewing, so the
    lease never ran out while another node took the key. Only a session Consul said is gone is ridden out."""
    dcs, servers, nodes = three_nodes(tmp_path, monkeypatch)[:3]
    n1 = nodes["n1"]
    n1.mysqld_alive = lambda: True
    dcs.leader_session = None                             # the key deleted by hand; n1's session lives
    assert n1.keeper.beat() is True                       # renewed: no "session gone"
    assert n1.run_once().action == analysis.FENCE and servers["n1"].ro is True


def test_a_pass_that_sees_the_key_go_before_the_heartbeat_sees_why_asks_consul_itself(tmp_path, monkeypatch):
    """The HA loop's watch wakes on the key change at once; the heartbeat learns the session is gone only at
    its next beat. Seen failing on the real Consul (test_failsafe.py's destroyed-session test): the pass
    fenced first. Now it asks Consul about the session itself, and waits."""
    dcs, servers, nodes = three_nodes(tmp_path, monkeypatch)[:3]
    n1 = nodes["n1"]
    n1.mysqld_alive = lambda: True
    dcs.invalidate(n1.sid)
    out = n1.run_once()
    assert out.action == analysis.WAIT and "Consul ended the session" in out.reason and servers["n1"].ro is False
    assert n1.keeper.beat() is False                      # the heartbeat rides it out too: no new session yet

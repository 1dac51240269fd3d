"""Issue 18: the paths a fresh review found, each driven through `Node` over the fakes. Each test names its
item; each was seen failing on the code before its fix."""
import errno
import json
import time

from mysqlpilot import analysis
from mysqlpilot.dcs.base import Request
from mysqlpilot.lease import boottime
from mysqlpilot.model import LeaderInfo, MemberState
from mysqlpilot.prestop import PreStop

from .fakes import give_session
from .test_ha_interleavings import cluster, lock_delay_passed, make_primary, primary_and_healthy_replica, replica_of


def test_item1_an_aborted_switchover_never_turns_writable_under_a_new_session(tmp_path, monkeypatch):
    """The target does not catch up; meanwhile `failover --force` destroyed the old primary's session, its
    heartbeat opened a new one (a fresh lease), and the target took the lock. The old primary stays read-only."""
    dcs, servers, n1, n2 = primary_and_healthy_replica(tmp_path, monkeypatch)
    old_sid = n1.sid

    def not_caught_up(gtid, timeout):
        dcs.invalidate(old_sid)
        give_session(n1, dcs)
        sid2 = dcs.create_session(10, 2, [])
        dcs.acquire_leader(sid2, LeaderInfo("n2", "h-n2", 3306, promoted=True))
        return False
    servers["n2"].wait_for_gtid = not_caught_up
    assert n1.hand_over("n2", Request(to="n2"), dcs.get_cluster()) is False
    assert servers["n1"].ro is True


def test_item1_an_aborted_switchover_under_the_same_session_turns_writable_again(tmp_path, monkeypatch):
    dcs, servers, n1, n2 = primary_and_healthy_replica(tmp_path, monkeypatch)
    servers["n2"].wait_for_gtid = lambda gtid, timeout: False
    assert n1.hand_over("n2", Request(to="n2"), dcs.get_cluster()) is False
    assert servers["n1"].ro is False and dcs.get_cluster().leader.name == "n1"


def test_an_aborted_switchover_of_a_holder_that_never_finished_its_promotion_stays_read_only(tmp_path, monkeypatch):
    """Found by the simulator (seed 78, issue 19): a node took the lock, its promotion did not run (too
    little lease left), and a switchover request was handled first and aborted. Turned writable then, it was
    primary with `promoted` false in the key forever: replicas waited for it to finish promoting, and nothing
    recorded the failover. It stays read-only; the next pass promotes it properly."""
    dcs, servers, n1, n2 = primary_and_healthy_replica(tmp_path, monkeypatch)
    leader = dcs.get_cluster().leader
    dcs.acquire_leader(n1.sid, LeaderInfo(leader.name, leader.host, leader.port, promoted=False))
    servers["n1"].ro = True
    servers["n2"].wait_for_gtid = lambda gtid, timeout: False
    assert n1.hand_over("n2", Request(to="n2"), dcs.get_cluster()) is False
    assert servers["n1"].ro is True and dcs.get_cluster().leader.name == "n1"


def three_replicas_after_primary_loss(tmp_path, monkeypatch, durability="async"):
    """n1's session is gone (no marker); n2 has 0-1-10, n3 received 0-1-12; both live and healthy."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2", "n3"), MYSQLPILOT_DURABILITY=durability)
    sid1 = make_primary(dcs, servers, nodes["n1"])
    for n in ("n2", "n3"):
        give_session(nodes[n], dcs)
        dcs.members[n] = MemberState(n, f"h-{n}", 3306, alive=True, healthy=True, role="replica")
    replica_of(servers, "n2", "n1", executed="0-1-10")
    replica_of(servers, "n3", "n1", executed="0-1-10", retrieved="0-1-12")
    servers["n1"].up = False
    dcs.invalidate(sid1)
    return dcs, servers, nodes


def test_item2_a_designated_target_that_lacks_what_another_replica_holds_does_not_promote(tmp_path, monkeypatch):
    dcs, servers, nodes = three_replicas_after_primary_loss(tmp_path, monkeypatch)
    dcs.kv["switchover"] = {"to": "n2", "from": "n1", "kind": "manual-failover", "requested": time.time(),
                            "lock_index": dcs.lock_index}
    n2 = nodes["n2"]
    lock_delay_passed(n2, dcs)
    d = n2.run_once()
    assert d.action == analysis.WAIT and "n3" in d.reason, d.reason
    assert servers["n2"].ro is True and dcs.get_cluster().leader is None
    servers["n2"].retrieved = "0-1-12"                 # it received them too: now it may
    servers["n2"].replica["lag_seconds"] = 1.0
    d = n2.run_once()
    assert d.action == analysis.TAKE_LOCK and dcs.get_cluster().leader.name == "n2", d.reason


def test_item2_a_forced_designation_skips_the_data_rules_on_purpose(tmp_path, monkeypatch):
    dcs, servers, nodes = three_replicas_after_primary_loss(tmp_path, monkeypatch)
    dcs.kv["switchover"] = {"to": "n2", "from": "n1", "kind": "manual-failover", "requested": time.time(),
                            "lock_index": dcs.lock_index, "force": True}
    lock_delay_passed(nodes["n2"], dcs)
    assert nodes["n2"].run_once().action == analysis.TAKE_LOCK


def test_item4_a_lock_index_seen_free_long_ago_does_not_count_when_it_repeats(tmp_path, monkeypatch):
    """n2 saw the empty key (LockIndex 0) at the cluster's start; the key is deleted by hand later, and
    LockIndex is 0 again. Its wait counts from now, not from an hour ago."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    n1, n2 = nodes["n1"], nodes["n2"]
    give_session(n2, dcs)
    n2.state.update(free_seen={"lock_index": 0, "since": boottime() - 3600})
    make_primary(dcs, servers, n1)
    replica_of(servers, "n2", "n1")
    n2.run_once()                                    # follows n1
    dcs.leader_session, dcs.leader_value, dcs.lock_index = None, None, 0      # `consul kv delete`
    d = n2.run_once()
    assert d.action == analysis.WAIT and "lock-delay" in d.reason, d.reason
    assert servers["n2"].ro is True


def test_item4_consul_indexes_going_backwards_reset_the_wait(tmp_path, monkeypatch):
    """Consul's history restarted (data lost, a snapshot restored): no wait remembered before counts."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n2",))
    n2 = nodes["n2"]
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1")
    dcs.index = 1000
    n2.run_once()
    n2.state.update(free_seen=dict(n2.state.get("free_seen"), since=boottime() - 3600))
    dcs.index = 5
    d = n2.run_once()
    assert d.action == analysis.WAIT and "lock-delay" in d.reason, d.reason


def test_item5_a_state_dir_that_takes_no_write_renews_nothing(tmp_path, monkeypatch):
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1",))
    n1 = nodes["n1"]
    make_primary(dcs, servers, n1)
    n1._sql_ok_at = boottime()
    renewed = []
    real_renew = dcs.renew_session
    dcs.renew_session = lambda sid: (renewed.append(sid), real_renew(sid))[1]

    def full(**kw):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(n1.state, "update", full)
    monkeypatch.setattr("mysqlpilot.ha.mysqld.mysqld_pid", lambda cfg: 4242)
    try:
        n1.beat()
    except OSError:
        pass
    assert renewed == []


def released_by_n1(tmp_path, monkeypatch, **marker):
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    n2 = nodes["n2"]
    make_primary(dcs, servers, nodes["n1"])
    give_session(n2, dcs)
    replica_of(servers, "n2", "n1")
    servers["n2"].replica["io_running"] = True
    n2.run_once()
    servers["n1"].up = False
    dcs.leader_session = None
    m = {"name": "n1", "reason": "mysqld is not running", "at": time.time(), "gtid_executed": "0-1-10",
         "lock_index": dcs.lock_index}
    m.update(marker)
    dcs.leader_value = json.dumps({"name": "n1", "released": m})
    return dcs, servers, n2


def test_item10_a_release_marker_of_another_lock_generation_is_not_trusted(tmp_path, monkeypatch):
    dcs, servers, n2 = released_by_n1(tmp_path, monkeypatch)
    dcs.lock_index += 3                              # a marker restored from an older Consul state
    d = n2.run_once()
    assert d.action == analysis.WAIT and "lock-delay" in d.reason, d.reason


def test_item10_an_old_release_marker_is_not_trusted(tmp_path, monkeypatch):
    dcs, servers, n2 = released_by_n1(tmp_path, monkeypatch, at=time.time() - 3600)
    d = n2.run_once()
    assert d.action == analysis.WAIT and "lock-delay" in d.reason, d.reason


def test_item10_a_fresh_marker_of_this_generation_is_trusted(tmp_path, monkeypatch):
    dcs, servers, n2 = released_by_n1(tmp_path, monkeypatch)
    assert n2.run_once().action == analysis.TAKE_LOCK


def test_item12_a_hand_over_to_a_target_that_then_died_does_not_stall_the_others(tmp_path, monkeypatch):
    """n1 handed over to n2 at lock generation g; n2 took the lock (g+1) and died before it cleared the
    request. n3 does not wait on n2."""
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2", "n3"))
    n3 = nodes["n3"]
    give_session(n3, dcs)
    replica_of(servers, "n3", "n1")
    g = dcs.lock_index
    dcs.kv["switchover"] = {"to": "n2", "from": "n1", "kind": "switchover", "requested": time.time(),
                            "handed_over": True, "fenced_at": time.time(), "lock_index": g}
    sid2 = dcs.create_session(10, 2, [])
    dcs.acquire_leader(sid2, LeaderInfo("n2", "h-n2", 3306, promoted=False))
    dcs.invalidate(sid2)
    servers["n2"].up = False
    lock_delay_passed(n3, dcs)
    d = n3.run_once()
    assert d.action == analysis.TAKE_LOCK, d.reason


def test_pre_stop_renews_before_it_fences_for_the_hand_over(tmp_path, monkeypatch):
    """pre-stop is a new process started as ContainerPilot kills the watch: its hand-over fence got only
    what was left of the watch's last lease (its own heartbeat had not renewed yet: a fresh prober has
    not seen mysqld answer), so a read-only that took a moment was cut short by the deadline and mysqld
    stopped (seen once on MySQL under load: a failover where a switchover was asked for)."""
    dcs, servers, n1, n2 = primary_and_healthy_replica(tmp_path, monkeypatch)
    n1.lease.extend(n1.sid, boottime() - 1.4)            # the killed watch's last renew, 1.4 s ago
    n1.lease.mark_writer(n1.sid)
    monkeypatch.setattr(n1, "mysqld_alive", lambda: True)
    deadlines = []

    def fence(reason, deadline, keep_lease=False):
        deadlines.append(deadline - boottime())
        servers["n1"].ro = True
        return "read-only"
    monkeypatch.setattr(n1.fencer, "fence", fence)
    PreStop(n1).hand_over_or_leave(timeout=0.1)
    assert deadlines and deadlines[0] > n1.timing.lease, deadlines

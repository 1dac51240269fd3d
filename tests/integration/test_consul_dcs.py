"""The Consul adapter against a real Consul 1.8.7 agent."""
import json
import os
import threading
import time

import pytest

from mysqlpilot.errors import PilotError
from mysqlpilot.dcs.consul import ConsulDCS
from mysqlpilot.model import LeaderInfo, MemberState, SnapshotManifest
from tests.harness.consul_server import make_dcs

pytestmark = pytest.mark.integration


def live(d, name, ttl=6):
    cid = f"mysqlpilot-{name}"
    d.register_check(cid, f"live {name}", ttl)
    d.pass_check(cid, "ok")
    return cid


def test_session_with_a_critical_check_is_refused_then_works(consul_agent, consul_kv_root):
    d = make_dcs(consul_agent, consul_kv_root, "a")
    d.register_check("mysqlpilot-a", "live a", 6)
    with pytest.raises(PilotError, match="critical"):
        d.create_session(10, 0, ["serfHealth", "mysqlpilot-a"])
    d.pass_check("mysqlpilot-a")
    sid = d.create_session(10, 0, ["serfHealth", "mysqlpilot-a"])
    assert d.renew_session(sid) == 10 and d.session_alive(sid)


def test_exactly_one_of_racing_sessions_wins(consul_agent, consul_kv_root):
    ds = [make_dcs(consul_agent, consul_kv_root, f"r{i}") for i in range(5)]
    sids = [d.create_session(10, 0, [live(d, f"r{i}")]) for i, d in enumerate(ds)]
    results = [None] * 5
    go = threading.Event()

    def race(i):
        go.wait()
        results[i] = ds[i].acquire_leader(sids[i], LeaderInfo(f"r{i}", "h", 1))
    ts = [threading.Thread(target=race, args=(i,)) for i in range(5)]
    for t in ts:
        t.start()
    go.set()
    for t in ts:
        t.join()
    assert results.count(True) == 1
    leader, _ = ds[0].get_leader()
    assert leader.name == f"r{results.index(True)}" and leader.session == sids[results.index(True)]


def test_dead_holder_value_is_not_trusted_and_members_follow_sessions(consul_agent, consul_kv_root):
    d = make_dcs(consul_agent, consul_kv_root, "b")
    sid = d.create_session(10, 0, [live(d, "b")])
    assert d.acquire_leader(sid, LeaderInfo("b", "h", 1))
    d.publish_member(sid, MemberState("b", "h", 1, role="primary"))
    assert [m.alive for m in d.members()] == [True]
    assert d.member("b").alive and d.member("b").role == "primary" and d.member("nobody") is None
    d.destroy_session(sid)
    # behavior release keeps the Value; the reader must see no leader.
    raw = d.c.kv.get(d.key("leader"))[1]
    assert raw["Value"] and not raw.get("Session")
    assert d.get_leader()[0] is None
    assert [m.alive for m in d.members()] == [False]
    assert d.member("b").alive is False


def test_failing_the_linked_check_kills_the_session_at_once_and_lock_delay_holds(consul_agent, consul_kv_root):
    d = make_dcs(consul_agent, consul_kv_root, "c")
    cid = live(d, "c")
    sid = d.create_session(10, 2, ["serfHealth", cid])
    assert d.acquire_leader(sid, LeaderInfo("c", "h", 1))
    leader, idx = d.get_leader()
    d.fail_check(cid, "mysqld died")
    t0 = time.monotonic()
    got, _ = d.watch_leader(idx, 5)            # the blocking read wakes on the change
    assert got is None and time.monotonic() - t0 < 3
    assert d.renew_session(sid) is None
    other = make_dcs(consul_agent, consul_kv_root, "d")
    sid2 = other.create_session(10, 0, [live(other, "d")])
    assert other.acquire_leader(sid2, LeaderInfo("d", "h", 1)) is False   # lock-delay
    deadline = time.monotonic() + 5
    while not other.acquire_leader(sid2, LeaderInfo("d", "h", 1)):
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_history_cas_keeps_every_record(consul_agent, consul_kv_root):
    d = make_dcs(consul_agent, consul_kv_root, "e")
    rec = {"kind": "election", "old_primary": None, "new_primary": "e", "reason": "test"}
    ts = [threading.Thread(target=lambda i=i: d.append_history(dict(rec, time=float(i)))) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(h["time"] for h in d.history()) == [float(i) for i in range(8)]


def test_hostile_values_in_consul_read_as_absent_and_status_still_works(consul_agent, consul_kv_root, tmp_path):
    """Item 4 on the real Consul: with these in the keys, `status --json` failed and a killed primary led
    to no failover (every node's loop raised)."""
    import json
    import subprocess
    import sys
    d = make_dcs(consul_agent, consul_kv_root, "h")
    c = d.c
    c.kv.put(f"{consul_kv_root}/switchover", json.dumps({"to": "h", "requested": "soon"}))
    c.kv.put(f"{consul_kv_root}/history", json.dumps([1, "x", {"kind": "failover", "time": "late"}]))
    c.kv.put(f"{consul_kv_root}/members/m1", json.dumps({"name": "m1", "host": "h", "port": 1, "priority": "hi"}))
    c.kv.put(f"{consul_kv_root}/members/m2", MemberState("m2", "h", 2).to_json())
    c.kv.put(f"{consul_kv_root}/leader", "null")
    c.kv.put(f"{consul_kv_root}/paused", "[]")
    v = d.get_cluster()
    assert v.request is None and v.history == [] and v.leader is None and v.paused is None
    # m1's key does not parse: a member whose data is unknown, so that an election counts it (no address).
    assert [(m.name, m.role, m.host) for m in v.members] == [("m1", "unreadable", ""), ("m2", "unknown", "h")]
    assert d.history() == [] and d.get_request() is None and d.get_paused() is None
    env = {"MYSQL_ROOT_PASSWORD": "x", "MYSQL_REPL_PASSWORD": "y", "MYSQLPILOT_STATE_DIR": str(tmp_path),
           "CONSUL": f"{d.host}:{d.port}", "MYSQLPILOT_CONSUL_PREFIX": consul_kv_root.rsplit("/", 1)[0],
           "MYSQLPILOT_CLUSTER": consul_kv_root.rsplit("/", 1)[1], "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "mysqlpilot", "status", "--json"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert st["primary"] is None and [n["name"] for n in st["nodes"]] == ["m1", "m2"]


def test_flags_cas_and_snapshot_wait(consul_agent, consul_kv_root):
    d = make_dcs(consul_agent, consul_kv_root, "f")
    assert d.put_json("initialized", {"node": "f"}, cas=0) is True
    assert d.put_json("initialized", {"node": "g"}, cas=0) is False
    d.set_paused(True, "maint")
    assert d.get_paused()["reason"] == "maint"
    d.set_paused(False)
    assert d.get_paused() is None
    got, idx = d.wait_latest_snapshot(0, 1)
    assert got is None
    m = SnapshotManifest(id="s1", created=1.0, source="f", object_key="snapshots/s1/data", bytes=1, raw_bytes=1,
                         sha256="0" * 64, flavor="mariadb", version="10.11", gtid="0-1-1")
    threading.Timer(0.5, lambda: d.set_latest_snapshot(m.__dict__.copy())).start()
    t0 = time.monotonic()
    got, _ = d.wait_latest_snapshot(idx, 10)
    assert got == m and time.monotonic() - t0 < 5


def test_unreachable_consul_is_one_line():
    d = ConsulDCS("127.0.0.1", 1, "x/y", "n")
    with pytest.raises(PilotError) as ei:
        d.get_leader()
    assert "cannot reach Consul at 127.0.0.1:1" in str(ei.value) and "\n" not in str(ei.value)


def test_a_refused_acl_token_is_one_line_and_never_shown(tmp_path):
    """A Consul with ACLs on (default deny): a wrong token gets a one-line error naming the address and
    what to check, never the token; the right one works."""
    import subprocess
    import sys
    from mysqlpilot.local.consul_agent import ConsulAgent
    master = "3f1c7d0e-0000-4000-8000-5ec2e7aa0001"
    acl = ('acl { enabled = true, default_policy = "deny", enable_token_persistence = false, '
           f'tokens {{ master = "{master}", agent = "{master}" }} }}')
    with ConsulAgent(str(tmp_path), extra_args=["-hcl", acl]) as agent:
        env = dict(os.environ, CONSUL=f"127.0.0.1:{agent.http_port}", MYSQL_ROOT_PASSWORD="r-secret-9",
                   MYSQL_REPL_PASSWORD="p-secret-9")
        env.pop("MYSQLPILOT_CONFIG", None)
        wrong = "bad0bad0-0000-4000-8000-00000000beef"
        p = subprocess.run([sys.executable, "-m", "mysqlpilot", "status"], env=dict(env, CONSUL_HTTP_TOKEN=wrong),
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
        assert "ACL token" in p.stderr and f"127.0.0.1:{agent.http_port}" in p.stderr, p.stderr
        assert wrong not in p.stderr + p.stdout and "Traceback" not in p.stderr
        p = subprocess.run([sys.executable, "-m", "mysqlpilot", "status", "--json"],
                           env=dict(env, CONSUL_HTTP_TOKEN=master), capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["primary"] is None


def test_a_release_with_a_marker_writes_it_only_for_the_holder_and_skips_lock_delay(consul_agent, consul_kv_root):
    """Issue 12's crash fast path on the real Consul: the marker is written in the same operation as the
    release, only by the holding session, and a release (unlike a session end) leaves no lock-delay."""
    from mysqlpilot.dcs.base import Release
    d = make_dcs(consul_agent, consul_kv_root, "r")
    sid = d.create_session(10, 15, ["serfHealth", live(d, "r")])
    other = make_dcs(consul_agent, consul_kv_root, "s")
    sid2 = other.create_session(10, 0, [live(other, "s")])
    assert d.acquire_leader(sid, LeaderInfo("r", "h", 1))
    marker = Release(name="r", reason="mysqld is not running", at=1.0, gtid_executed="0-1-5")
    assert other.release_leader(sid2, Release(name="s", reason="forged")) is False   # not the holder
    assert d.get_cluster().released is None and d.get_cluster().leader.name == "r"
    assert d.release_leader(sid, marker)
    view = d.get_cluster()
    assert view.leader is None and view.released == marker
    assert other.acquire_leader(sid2, LeaderInfo("s", "h", 2))     # at once: a 15 s lock-delay did not apply
    view = d.get_cluster()
    assert view.leader.name == "s" and view.released is None


def test_forget_deletes_only_a_member_no_session_holds(consul_agent, consul_kv_root):
    """`mysqlpilot forget NODE`: a scaled-down node's key goes at once; a live node's key stays."""
    d = make_dcs(consul_agent, consul_kv_root, "f")
    sid = d.create_session(10, 0, [live(d, "f")])
    d.publish_member(sid, MemberState("f", "h", 1, role="replica"))
    d.publish_member(None, MemberState("gone", "h", 2, role="left"))
    with pytest.raises(PilotError, match="live Consul session"):
        d.forget_member("f")
    d.forget_member("gone")
    assert [m.name for m in d.members()] == ["f"]

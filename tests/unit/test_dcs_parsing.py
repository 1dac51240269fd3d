"""Item 4: every value read from Consul goes through a typed parser; hostile values become "absent" with a
warning and never raise. The real-Consul version is tests/integration/test_hostile_consul_values.py."""
import json

import pytest

from mysqlpilot.dcs import base
from mysqlpilot.model import LeaderInfo, MemberState

GOOD_MEMBER = MemberState("n1", "127.0.1.1", 3306, priority=100).to_json()


@pytest.mark.parametrize("raw", [
    None, b"", b"null", b"[]", b'"n1"', b"{", b"\xff\xfe", b'{"name": "n1"}',
    json.dumps({"name": "n1", "host": "h", "port": "3306"}).encode(),
    json.dumps({"name": "n1", "host": "h", "port": 1, "priority": "high"}).encode(),
    json.dumps({"name": "n1", "host": "h", "port": 1, "healthy": "yes"}).encode(),
    json.dumps({"name": "n1", "host": "h", "port": 1, "errant": "0-1-2"}).encode(),
    json.dumps({"name": ["n1"], "host": "h", "port": 1}).encode(),
])
def test_a_hostile_member_value_is_ignored_not_raised(raw):
    # A member whose data is unknown (it may hold the only copy of an acknowledged commit): counted, with
    # nothing taken from the value; alive as its session says. No value and no session: no member.
    for session in ("sid", None):
        m = base.parse_member("k/members/n1", raw, session)
        if raw in (None, b"") and session is None:
            assert m is None
            continue
        assert m is not None and m.name == "n1" and m.alive == bool(session) and m.role == "unreadable"
        assert (m.host, m.port, m.gtid_executed, m.gtid_received, m.healthy) == ("", 0, "", "", False)


def test_a_good_member_parses_and_liveness_comes_from_the_session():
    m = base.parse_member("k", GOOD_MEMBER.encode(), "sid")
    assert m.name == "n1" and m.priority == 100 and m.alive
    assert base.parse_member("k", GOOD_MEMBER.encode(), None).alive is False


@pytest.mark.parametrize("raw", [b"null", b"{}", b"[1]", b'{"name": 5, "host": "h", "port": 1}',
                                 b'{"name": "a", "host": "h", "port": 1, "promoted": "yes"}'])
def test_a_hostile_leader_value_reads_as_no_leader(raw):
    assert base.parse_leader("k/leader", raw, "sid") is None


def test_a_leader_without_a_session_is_free_whatever_its_value():
    v = LeaderInfo("a", "h", 1, promoted=True).to_json().encode()
    assert base.parse_leader("k", v, None) is None
    assert base.parse_leader("k", v, "sid").session == "sid"


@pytest.mark.parametrize("raw", [b'"switch"', b"[]", b'{"to": 5}', b'{"to": "n2", "requested": "soon"}',
                                 b'{"to": "n2", "lock_index": "7"}', b'{"kind": "switchover"}', b"{"])
def test_a_hostile_request_is_no_request(raw):
    assert base.parse_request("k/switchover", raw) is None


def test_a_request_parses_with_its_from_field():
    r = base.parse_request("k", json.dumps({"to": "n2", "from": "n1", "requested": 5, "unknown": 1,
                                            "lock_index": 7}).encode())
    assert (r.to, r.origin, r.requested, r.lock_index, r.force) == ("n2", "n1", 5.0, 7, False)


def test_history_keeps_the_good_entries_and_drops_the_rest():
    good = {"kind": "failover", "time": 10, "old_primary": "a", "new_primary": "b", "reason": "x"}
    raw = json.dumps([good, "junk", 7, None, {"kind": "failover"}, dict(good, time="late")]).encode()
    h = base.parse_history("k/history", raw)
    assert len(h) == 1 and h[0]["time"] == 10.0
    assert base.parse_history("k", b'{"not": "a list"}') == []


def test_a_bad_value_is_reported_once_per_key_and_problem(caplog):
    base._warned.clear()
    for _ in range(5):
        base.parse_request("k/switchover", b'"nonsense"')
    assert sum("k/switchover" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("dialect, bad", [("mariadb", "garbage"), ("mariadb", "0-1-x"),
                                          ("mysql", "0-1-5"), ("", "not-a-gtid:zz")])
def test_a_garbage_gtid_in_a_member_key_is_dropped_with_one_line_naming_the_key(caplog, dialect, bad):
    """Issue 18 item 6: the old primary's published GTID went into the semi-sync ranking as it was, and
    gtid.parse raised on every pass. Read once here: the member stays, its bad GTID reads as unknown."""
    base._warned.clear()
    raw = json.dumps(dict(json.loads(GOOD_MEMBER), gtid_executed=bad, gtid_received=bad)).encode()
    for _ in range(3):
        m = base.parse_member("k/members/n1", raw, None, dialect=dialect)
        assert m is not None and m.name == "n1" and (m.gtid_executed, m.gtid_received) == ("", "")
    lines = [r.getMessage() for r in caplog.records if "k/members/n1" in r.getMessage()]
    assert len(lines) == 1 and "gtid_executed" in lines[0] and "gtid_received" in lines[0], lines


def test_a_good_gtid_is_kept_in_its_own_dialect():
    maria = json.dumps(dict(json.loads(GOOD_MEMBER), gtid_executed="0-1-5,1-2-9")).encode()
    assert base.parse_member("k", maria, "sid", dialect="mariadb").gtid_executed == "0-1-5,1-2-9"
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
    mysql = json.dumps(dict(json.loads(GOOD_MEMBER), gtid_received=uuid)).encode()
    assert base.parse_member("k", mysql, "sid", dialect="mysql").gtid_received == uuid
    assert base.parse_member("k", mysql, "sid").gtid_received == uuid        # dialect unknown: either


def test_a_garbage_promoted_gtid_in_the_leader_key_reads_as_unknown(caplog):
    """Issue 18 item 6: it left followers in errant_unknown forever (mariadb_errant raised on it)."""
    base._warned.clear()
    v = LeaderInfo("a", "h", 1, promoted=True, promoted_gtid="0-1-five").to_json().encode()
    info = base.parse_leader("k/leader", v, "sid", dialect="mariadb")
    assert info is not None and info.name == "a" and info.promoted and info.promoted_gtid == ""
    assert sum("k/leader" in r.getMessage() and "promoted_gtid" in r.getMessage() for r in caplog.records) == 1

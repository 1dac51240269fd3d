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
    assert base.parse_member("k/members/n1", raw, "sid") is None


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

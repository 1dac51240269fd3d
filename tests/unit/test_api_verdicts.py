"""Each node-API endpoint's verdict table (mysqlpilot/api_verdicts.py), exhaustive over the inputs that
endpoint reads: the expected answer is written out here as the rule the docs state, and every combination
is checked against it."""
import itertools

import pytest

from mysqlpilot.api_verdicts import BAD_REQUEST, NOT_FOUND, OK, UNAVAILABLE, Bounds, Facts, decide, health, \
    liveness, primary, read_only, readiness, replica

PRIMARY_ADDR = "10.0.0.1:3306"


def one_line(v):
    assert v.reason and "\n" not in v.reason
    return v


# ---- /primary ------------------------------------------------------------------------------------
PRIMARY_INPUTS = list(itertools.product((True, False), (1.2, 0.0, -1.0), (True, False), (True, False, None)))


@pytest.mark.parametrize("holds,lease,up,writable", PRIMARY_INPUTS)
def test_primary_only_for_the_writable_lock_holder_with_a_valid_lease(holds, lease, up, writable):
    f = Facts(holds_lock=holds, lease_left=lease, mysqld_up=up, writable=writable, primary="n1" if holds else "n2")
    want = holds and lease > 0 and up and writable is True
    v = one_line(primary(f))
    assert v.status == (OK if want else UNAVAILABLE)
    assert decide("/primary", {}, f) == v == decide("/read-write", {}, f) == decide("/", {}, f)


def test_primary_reasons_say_what_is_missing():
    assert "the primary is n2" in primary(Facts(primary="n2")).reason
    assert "no node holds the lock" in primary(Facts()).reason
    assert "lease" in primary(Facts(holds_lock=True, lease_left=0.0, mysqld_up=True, writable=True)).reason
    assert "promotion" in primary(Facts(holds_lock=True, lease_left=1, mysqld_up=True, writable=False)).reason


# ---- /replica and /read-only ---------------------------------------------------------------------
REPLICA_BOUNDS = (Bounds(), Bounds(lag=10), Bounds(lag_transactions=10), Bounds(lag=10, lag_transactions=10),
                  Bounds(lag=0, lag_transactions=0))
REPLICA_INPUTS = list(itertools.product(
    (False, True),                        # holds the lock
    (True, False),                        # mysqld up
    (False, True, None),                  # writable
    ("n1", None),                         # current primary
    (PRIMARY_ADDR, "10.0.0.9:3306", None),  # the source it follows
    (True, False), (True, False),         # IO, SQL running
    (None, 0.0, 5.0, 100.0),              # lag seconds
    (None, 0, 3, 50),                     # transactions behind
    ("replica", "rebuilding"),
))


def replica_facts(holds, up, writable, prim, following, io, sql, lag, behind, role):
    return Facts(role=role, holds_lock=holds, lease_left=1.0 if holds else -1.0, mysqld_up=up, writable=writable,
                 primary=prim, primary_address=PRIMARY_ADDR if prim else None, following=following,
                 io_running=io, sql_running=sql, lag_seconds=lag, gtids_behind=behind)


def replica_rule(f: Facts, b: Bounds) -> bool:
    """docs/routing.md: a healthy replica of the current primary, within the bounds asked (unknown fails)."""
    within_lag = b.lag is None or (f.lag_seconds is not None and f.lag_seconds <= b.lag)
    within_tx = b.lag_transactions is None or (f.gtids_behind is not None and f.gtids_behind <= b.lag_transactions)
    return (not f.holds_lock and f.mysqld_up and f.role != "rebuilding" and f.writable is False
            and f.primary is not None and f.following == f.primary_address and f.io_running and f.sql_running
            and within_lag and within_tx)


def test_replica_table_is_exhaustively_the_rule():
    for inputs in REPLICA_INPUTS:
        f = replica_facts(*inputs)
        for b in REPLICA_BOUNDS:
            v = one_line(replica(f, b))
            assert v.status == (OK if replica_rule(f, b) else UNAVAILABLE), (inputs, b, v)


def test_read_only_table_is_primary_or_replica():
    for inputs in REPLICA_INPUTS:
        f = replica_facts(*inputs)
        for b in REPLICA_BOUNDS:
            want = primary(f).ok or replica_rule(f, b)
            v = one_line(read_only(f, b))
            assert v.status == (OK if want else UNAVAILABLE), (inputs, b, v)


def test_query_bounds_reach_the_replica_verdict():
    f = replica_facts(False, True, False, "n1", PRIMARY_ADDR, True, True, 5.0, 3, "replica")
    assert decide("/replica", {"lag": ["10"]}, f).status == OK
    assert decide("/replica", {"lag": ["4.5"]}, f).status == UNAVAILABLE
    assert decide("/replica", {"lag_transactions": ["3"]}, f).status == OK
    assert decide("/replica", {"lag_transactions": ["2"]}, f).status == UNAVAILABLE
    assert decide("/read-only", {"lag": ["1"]}, f).status == UNAVAILABLE
    unknown = replica_facts(False, True, False, "n1", PRIMARY_ADDR, True, True, None, None, "replica")
    assert decide("/replica", {}, unknown).status == OK                  # no bound asked: lag not judged
    assert "lag unknown" in decide("/replica", {"lag": ["100"]}, unknown).reason
    assert decide("/replica", {"lag_transactions": ["100"]}, unknown).status == UNAVAILABLE


def test_the_primary_is_not_a_replica_but_is_read_only():
    f = Facts(holds_lock=True, lease_left=1.0, mysqld_up=True, writable=True, primary="n1",
              primary_address=PRIMARY_ADDR)
    assert replica(f).status == UNAVAILABLE and "primary" in replica(f).reason
    assert read_only(f).status == OK
    # The lock holder with its lease ended is neither: its reads may be stale once another node promotes.
    ended = Facts(holds_lock=True, lease_left=-1.0, mysqld_up=True, writable=True, primary="n1")
    assert read_only(ended).status == UNAVAILABLE


# ---- /health, /liveness, /readiness --------------------------------------------------------------
@pytest.mark.parametrize("up", (True, False))
def test_health_is_mysqld_answering(up):
    assert one_line(health(Facts(mysqld_up=up))).status == (OK if up else UNAVAILABLE)


@pytest.mark.parametrize("stalled,lease,ok", [(0.0, 1.5, True), (1.4, 1.5, True), (1.5, 1.5, True),
                                               (1.6, 1.5, False), (30.0, 1.5, False), (3.0, 4.0, True)])
def test_liveness_fails_once_the_loop_stalled_longer_than_its_lease(stalled, lease, ok):
    v = one_line(liveness(Facts(loop_stalled=stalled, lease_span=lease)))
    assert v.status == (OK if ok else UNAVAILABLE)
    assert decide("/liveness", {}, Facts(loop_stalled=stalled, lease_span=lease)) == v


def test_readiness_table():
    for inputs in REPLICA_INPUTS:
        f = replica_facts(*inputs)
        for max_lag in (0.0, 10.0, 1000.0):
            g = Facts(**{**f.__dict__, "max_replica_lag": max_lag})
            want = primary(g).ok if g.holds_lock else replica_rule(g, Bounds(lag=max_lag))
            v = one_line(readiness(g))
            assert v.status == (OK if want else UNAVAILABLE), (inputs, max_lag, v)


# ---- bad requests --------------------------------------------------------------------------------
@pytest.mark.parametrize("path,query,names", [
    ("/replica", {"lag": ["abc"]}, "lag"),
    ("/replica", {"lag": ["-1"]}, "lag"),
    ("/replica", {"lag": ["nan"]}, "lag"),
    ("/replica", {"lag": ["inf"]}, "lag"),
    ("/replica", {"lag": [""]}, "lag"),
    ("/replica", {"lag_transactions": ["1.5"]}, "lag_transactions"),
    ("/replica", {"lag_transactions": ["-3"]}, "lag_transactions"),
    ("/read-only", {"lag": ["1", "2"]}, "lag"),
    ("/replica", {"lagg": ["1"]}, "lagg"),
    ("/primary", {"lag": ["1"]}, "lag"),
])
def test_a_bad_query_is_a_400_naming_the_parameter(path, query, names):
    v = one_line(decide(path, query, Facts()))
    assert v.status == BAD_REQUEST
    assert names in v.reason


def test_an_unknown_path_is_a_404_in_one_line():
    v = one_line(decide("/leader/../etc", {}, Facts()))
    assert v.status == NOT_FOUND and "/primary" in v.reason
    assert decide("/primary/", {}, Facts()).status == UNAVAILABLE        # a trailing slash is the same path

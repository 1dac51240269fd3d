"""Which member takes a due snapshot (issue 22: from a healthy replica by preference), and how a replica that
is taking it ranks as a failover candidate."""
from dataclasses import replace

import pytest

from mysqlpilot import analysis, snapshot_source
from mysqlpilot.analysis import Candidate, Policy
from mysqlpilot.model import MemberState, SnapshotManifest


def m(name, role="replica", lag=0.0, healthy=True, alive=True, nofailover=False, priority=100):
    return MemberState(name, "h", 3306, role=role, healthy=healthy, alive=alive, lag_seconds=lag,
                       nofailover=nofailover, priority=priority)


P = m("p", role="primary", lag=None)


@pytest.mark.parametrize("members, chosen", [
    ([P], None),                                            # no replica
    ([P, m("a")], None),                                    # one replica: it must stay promotable
    ([P, m("a"), m("b")], "a"),                             # two: by name among equals
    ([P, m("a", priority=50), m("b", priority=10)], "b"),   # the least likely to be promoted
    ([P, m("a"), m("b", nofailover=True)], "b"),            # nofailover first: never promoted anyway
    ([P, m("b", nofailover=True)], "b"),                    # ... even alone: it was never promotable
    ([P, m("a", nofailover=True), m("b", nofailover=True)], "a"),
    ([P, m("a"), m("b", lag=31)], None),                    # b lags: a would be the only one left
    ([P, m("a"), m("b", lag=None)], None),                  # lag unknown: not replicating
    ([P, m("a"), m("b", healthy=False)], None),
    ([P, m("a"), m("b", alive=False)], None),
    ([P, m("a"), m("b", role="rebuilding")], None),
    ([P, m("a", lag=5), m("b", lag=1), m("c", lag=3)], "b"),
    ([P, m("a", nofailover=True), m("b", lag=40)], "a"),    # nofailover a: b's state does not matter
])
def test_a_healthy_replica_takes_it_when_another_is_left_to_promote(members, chosen):
    got, why = snapshot_source.choose(members, "p")
    assert got == chosen, why
    assert why


def test_the_primary_takes_over_once_the_chosen_replica_has_had_its_grace():
    latest = SnapshotManifest(id="s", created=1000.0, source="a", object_key="k", bytes=1, raw_bytes=1,
                              sha256="0" * 64, flavor="mariadb", version="10.11", gtid="0-1-1")
    assert snapshot_source.primary_takes_over(None, 0, 3600)
    assert not snapshot_source.primary_takes_over(latest, 1000 + 3600, 3600)          # just due: the replica's
    assert not snapshot_source.primary_takes_over(latest, 1000 + 3600 + snapshot_source.REPLICA_GRACE - 1, 3600)
    assert snapshot_source.primary_takes_over(latest, 1000 + 3600 + snapshot_source.REPLICA_GRACE, 3600)


POL = Policy(durability="semi-sync")


def cand(name, n, snapshotting=False, caught_up=True, priority=100):
    return Candidate(name, True, True, priority=priority, gtid_received=f"0-1-{n}", gtid_count=n,
                     caught_up=caught_up, snapshotting=snapshotting)


def contains(names_counts):
    cs = [cand(*nc[:2], **(nc[2] if len(nc) > 2 else {})) for nc in names_counts]
    for c in cs:
        c.contains = {o.name: c.gtid_count >= o.gtid_count for o in cs if o.name != c.name}
    return cs


def test_a_replica_taking_the_snapshot_goes_last_among_equals():
    r = analysis.rank_candidates(contains([("a", 10, {"snapshotting": True}), ("b", 10)]), POL)
    got = {x.name: x for x in r}
    assert (got["a"].rank, got["b"].rank) == (1, 0) and "snapshot" in got["a"].why
    # it beats the other on priority alone no more, and on caught-up no more
    r = analysis.rank_candidates(contains([("a", 10, {"snapshotting": True, "priority": 900}),
                                           ("b", 10, {"caught_up": False})]), POL)
    assert next(x for x in r if x.name == "b").rank == 0


def test_a_snapshot_never_stalls_a_failover_when_only_the_snapshotting_replica_has_everything():
    r = analysis.rank_candidates(contains([("a", 11, {"snapshotting": True}), ("b", 10)]), POL)
    assert next(x for x in r if x.name == "a").rank == 0
    assert not next(x for x in r if x.name == "b").eligible


def test_a_switchover_picks_another_replica_than_the_one_taking_the_snapshot():
    members = [P, replace(m("a", priority=200), snapshotting=True), m("b")]
    assert analysis.choose_switchover_target(members, "p", None)[0] == "b"
    assert analysis.choose_switchover_target([P, replace(m("a"), snapshotting=True)], "p", None)[0] == "a"


def test_a_restored_replica_drops_the_replication_metadata_its_snapshot_carried(tmp_path, monkeypatch):
    # MySQL 9.7 campaign of issue 22: a snapshot taken on a replica holds that replica's applier metadata
    # (InnoDB tables) naming relay logs that were not copied; START REPLICA failed with 1872 for good.
    from mysqlpilot.model import LeaderInfo
    from tests.unit.fakes import FakeDCS, FakeMySQL, give_session, make_node
    dcs = FakeDCS()
    servers = {"n1": FakeMySQL("n1", executed="0-1-10", read_only=False), "n2": FakeMySQL("n2", executed="0-1-5")}
    n1 = make_node(tmp_path, "n1", dcs, servers, monkeypatch)
    dcs.acquire_leader(give_session(n1, dcs), LeaderInfo("n1", "h-n1", 3306, promoted=True, promoted_gtid="0-1-10"))
    n2 = make_node(tmp_path, "n2", dcs, servers, monkeypatch)
    give_session(n2, dcs)
    n2.state.update(seed_gtid="0-1-5")
    n2.run_once()
    calls = servers["n2"].calls
    follow = next(i for i, c in enumerate(calls) if c.startswith("change_source"))
    assert "reset_replica_all" in calls[:follow] and servers["n2"].seeded == ["0-1-5"], calls

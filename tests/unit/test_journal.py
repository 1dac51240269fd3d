"""The journal (issue 24, `mysqlpilot history`): fences, rebuilds and failsafe episodes are recorded where
they happen, kept in the state file while Consul is away, and moved to `<kv_root>/journal` by the next pass
that reaches it; `history` merges them with the takeover records."""
import time

import pytest

from mysqlpilot import journal
from mysqlpilot.errors import PilotError
from mysqlpilot.statefile import StateFile

from .test_ha_interleavings import cluster, make_primary, replica_of


def test_a_fence_while_consul_is_away_reaches_the_journal_on_the_next_pass_that_reaches_it(tmp_path, monkeypatch):
    dcs, servers, nodes = cluster(tmp_path, monkeypatch)
    n1 = nodes["n1"]
    make_primary(dcs, servers, n1)
    n1.run_once()
    dcs.down = True
    n1._on_fence("lease expired: this node cannot prove it holds the leader lock", "read-only, confirmed")
    assert n1.events.fenced and len(n1.state.get(journal.OUTBOX)) == 1
    with pytest.raises(PilotError):
        n1.run_once()                                  # Consul away: the event stays queued
    assert "journal" not in dcs.kv and len(n1.state.get(journal.OUTBOX)) == 1
    dcs.down = False
    n1.run_once()
    (ev,) = dcs.journal()
    assert ev["kind"] == "fence" and ev["node"] == "n1" and "lease expired" in ev["reason"]
    assert ev["result"] == "read-only, confirmed" and n1.state.get(journal.OUTBOX) is None
    n1.run_once()
    assert len(dcs.journal()) == 1                     # sent once


def test_events_queued_while_a_flush_runs_are_kept_for_the_next(tmp_path):
    state = StateFile(str(tmp_path))
    journal.record(state, journal.event("fence", "n1", "first"))

    class SlowDCS:
        got = []

        def append_journal(self, records, keep):
            self.got += records
            journal.record(state, journal.event("rebuild", "n1", "second"))   # lands during the flush

    assert journal.flush(state, SlowDCS()) == 1
    assert [e["reason"] for e in SlowDCS.got] == ["first"]
    assert [e["reason"] for e in state.get(journal.OUTBOX)] == ["second"]


def test_the_outbox_is_bounded(tmp_path):
    state = StateFile(str(tmp_path))
    for i in range(journal.KEEP_PENDING + 7):
        journal.record(state, journal.event("fence", "n1", f"#{i}"))
    pending = state.get(journal.OUTBOX)
    assert len(pending) == journal.KEEP_PENDING and pending[-1]["reason"] == f"#{journal.KEEP_PENDING + 6}"


def test_a_rebuild_is_journaled(tmp_path, monkeypatch):
    dcs, servers, nodes = cluster(tmp_path, monkeypatch)
    make_primary(dcs, servers, nodes["n1"])
    replica_of(servers, "n2", "n1")
    from mysqlpilot import mysqld
    monkeypatch.setattr(mysqld, "stop_mysqld", lambda cfg: None)

    class D:
        reason = "errant transactions 0-2-5 that the primary does not have"

    from mysqlpilot.dcs.base import ClusterView

    class Seen:
        view = ClusterView()

        class o:
            errant = "0-2-5"

        class report:
            role = healthy = message = None
    nodes["n2"].actions.do_rebuild(D, Seen)
    (ev,) = nodes["n2"].state.get(journal.OUTBOX)
    assert ev["kind"] == "rebuild" and ev["errant"] == "0-2-5" and "errant" in ev["reason"]


def test_history_merges_takeovers_and_events_by_time():
    hist = [{"kind": "failover", "time": 100.0, "old_primary": "n1", "new_primary": "n2", "reason": "n1 gone",
             "durations": {"total": 2.9}}]
    jour = [{"kind": "fence", "time": 99.0, "node": "n1", "reason": "lease expired", "result": "read-only"},
            {"kind": "rebuild", "time": 130.0, "node": "n1", "reason": "errant"}]
    rows = journal.merged(hist, jour)
    assert [r["kind"] for r in rows] == ["fence", "failover", "rebuild"]
    assert rows[1]["what"] == "n1 -> n2" and rows[1]["durations"] == {"total": 2.9}
    assert [r["kind"] for r in journal.merged(hist, jour, since=100.0)] == ["failover", "rebuild"]
    text = journal.render(rows)
    assert "failover" in text and "n1 -> n2" in text and "[total 2.9s]" in text and "result read-only" in text
    assert journal.parse([{"kind": "fence", "time": "x"}, "junk", {"kind": "fence", "time": 1}]) == \
        [{"kind": "fence", "time": 1}]


def test_since_takes_an_age_or_a_local_time_and_names_the_option_otherwise():
    now = time.time()
    assert journal.parse_since("30m", now) == pytest.approx(now - 1800)
    assert journal.parse_since("7d", now) == pytest.approx(now - 7 * 86400)
    assert journal.parse_since("2026-12-04 10:00", now) == time.mktime(time.strptime("2026-12-04 10:00",
                                                                                      "%Y-%m-%d %H:%M"))
    with pytest.raises(ValueError) as e:
        journal.parse_since("yesterday", now)
    assert "--since 'yesterday'" in str(e.value) and "\n" not in str(e.value)


def test_reinit_rebuilds_a_replica_once_and_never_the_lock_holder(tmp_path, monkeypatch):
    """`mysqlpilot reinit NODE` (issue 24) writes reinit/<node>; the node rebuilds on its next pass as it
    does for errant transactions, and the request is spent as the rebuild starts."""
    from mysqlpilot import analysis

    from .test_restart import two_nodes
    dcs, n1, n2, stopped = two_nodes(tmp_path, monkeypatch)
    dcs.kv["reinit/n2"] = {"by": "ops@host", "at": time.time(), "reason": "disk replaced"}
    dcs.kv["reinit/n1"] = {"by": "ops@host", "at": time.time(), "reason": "wrong node"}
    out = n2.run_once()
    assert out.action == analysis.REBUILD and "mysqlpilot reinit" in out.reason and "disk replaced" in out.reason
    assert stopped == ["n2"] and "reinit/n2" not in dcs.kv
    assert n2.state.get("rebuild_reason") and dcs.journal()[-1]["kind"] == "rebuild"
    # The lock holder ignores a request for itself (the command refuses it; one may race a promotion).
    assert n1.run_once().action == analysis.STAY_PRIMARY and "reinit/n1" in dcs.kv and stopped == ["n2"]

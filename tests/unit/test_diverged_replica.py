"""A replica whose data diverged from the primary's: its SQL thread stops on the same transaction with a
duplicate key (1062) or a missing row (1032) however often it is re-pointed. It used to be re-pointed every
pass, forever, unhealthy; it rebuilds now. A stop that goes away (the transaction applies after a restart)
or a transient error (a lock wait, 1205) never rebuilds."""
from mysqlpilot import actions, analysis

from .test_ha_interleavings import cluster, make_primary, replica_of
from .fakes import give_session


def passes(tmp_path, monkeypatch, errno, executed_each_pass, n=6):
    dcs, servers, nodes = cluster(tmp_path, monkeypatch, ("n1", "n2"))
    make_primary(dcs, servers, nodes["n1"], gtid="0-1-30")
    n2 = nodes["n2"]
    give_session(n2, dcs)
    monkeypatch.setattr(actions.mysqld, "stop_mysqld", lambda cfg: None)
    out = []
    for i in range(n):
        replica_of(servers, "n2", "n1", executed=executed_each_pass(i))
        servers["n2"].replica.update(io_running=True, sql_running=False, last_sql_errno=errno,
                                     last_sql_error=f"Error {errno} on the event of 0-1-13")
        d = n2.run_once()
        out.append(d)
        if d.action == analysis.REBUILD:
            break
    return out, n2


def test_a_replica_stopped_on_the_same_transaction_by_a_duplicate_key_rebuilds(tmp_path, monkeypatch):
    out, n2 = passes(tmp_path, monkeypatch, 1062, lambda i: "0-1-12")
    assert out[-1].action == analysis.REBUILD, [d.reason for d in out]
    assert "diverged" in out[-1].reason and "1062" in out[-1].reason
    assert [d.action for d in out[:-1]] == [analysis.FOLLOW] * (len(out) - 1), "it is re-pointed first"
    assert n2.state.get("rebuild_reason") == out[-1].reason


def test_a_replica_stopped_on_the_same_transaction_by_a_missing_row_rebuilds(tmp_path, monkeypatch):
    out, _ = passes(tmp_path, monkeypatch, 1032, lambda i: "0-1-12")
    assert out[-1].action == analysis.REBUILD, [d.reason for d in out]


def test_a_duplicate_key_stop_that_moves_on_after_a_restart_never_rebuilds(tmp_path, monkeypatch):
    out, _ = passes(tmp_path, monkeypatch, 1062, lambda i: f"0-1-{12 + i}")
    assert all(d.action == analysis.FOLLOW for d in out), [d.reason for d in out]


def test_a_transient_apply_error_never_rebuilds(tmp_path, monkeypatch):
    out, _ = passes(tmp_path, monkeypatch, 1205, lambda i: "0-1-12")
    assert all(d.action == analysis.FOLLOW for d in out), [d.reason for d in out]

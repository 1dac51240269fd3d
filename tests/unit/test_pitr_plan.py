"""The binlog reader and the point-in-time restore planner (issue 22), over built binlog bytes."""
from __future__ import annotations

import struct

import pytest

from mysqlpilot import binlog_events as be
from mysqlpilot.binlog_catalog import ArchiveFile, ArchiveRun, RunManifest, Segment
from mysqlpilot.errors import PilotError
from mysqlpilot.pitr_plan import PlanError, Target, plan

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"


def event(etype: int, body: bytes, ts: int = 100, srv: int = 1) -> bytes:
    size = be.HEADER + len(body) + 4                                 # + a CRC32 the reader skips
    return struct.pack("<IBIIIH", ts, etype, srv, size, 0, 0) + body + b"\0\0\0\0"


def maria_gtid(dom: int, srv: int, seq: int, ts: int) -> bytes:
    return event(be.MARIADB_GTID, struct.pack("<QIB", seq, dom, 0) + b"\0" * 6, ts, srv)


def maria_list(entries) -> bytes:
    body = struct.pack("<I", len(entries)) + b"".join(struct.pack("<IIQ", d, s, n) for d, s, n in entries)
    return event(be.MARIADB_GTID_LIST, body)


def mysql_gtid(uuid: str, gno: int, ts: int) -> bytes:
    return event(be.MYSQL_GTID, b"\1" + bytes.fromhex(uuid.replace("-", "")) + struct.pack("<q", gno) + b"\0" * 10, ts)


def mysql_previous(uuid: str, start: int, end: int) -> bytes:
    body = struct.pack("<Q", 1) + bytes.fromhex(uuid.replace("-", "")) + struct.pack("<Qqq", 1, start, end + 1)
    return event(be.MYSQL_PREVIOUS_GTIDS, body)


def query(ts: int = 100) -> bytes:
    return event(2, b"x" * 30, ts)


def test_mariadb_file_yields_start_set_transactions_and_stops_at_a_partial_event():
    data = be.MAGIC + event(15, b"f" * 40) + maria_list([(0, 1, 4)]) + maria_gtid(0, 1, 5, 110) + query(110) \
        + maria_gtid(0, 2, 6, 120) + query(120)
    s = be.scan(data, 0, "mariadb")
    assert s.start_set == "0-1-4" and s.end == len(data) and s.last_ts == 120
    assert [(t.gtid, t.ts) for t in s.txns] == [("0-1-5", 110), ("0-2-6", 120)]
    assert data[s.txns[1].offset:].startswith(maria_gtid(0, 2, 6, 120))
    cut = be.scan(data[:-5], 0, "mariadb")                          # the last event not whole yet
    assert cut.end == s.txns[1].offset + len(maria_gtid(0, 2, 6, 120))
    rest = be.scan(data[cut.end:], cut.end, "mariadb")              # resumes at the boundary
    assert rest.end == len(data) and rest.txns == [] and rest.start_set is None


def test_mysql_file_yields_previous_gtids_and_uuid_transactions():
    data = be.MAGIC + event(15, b"f" * 40) + mysql_previous(U1, 1, 7) + mysql_gtid(U1, 8, 130) + query(130)
    s = be.scan(data, 0, "mysql")
    assert s.start_set == f"{U1}:1-7" and [t.gtid for t in s.txns] == [f"{U1}:8"]


def test_not_a_binlog_and_tagged_gtids_are_refused():
    with pytest.raises(be.BinlogFormatError):
        be.scan(b"nope" + b"\0" * 40, 0, "mysql")
    with pytest.raises(be.BinlogFormatError):
        be.scan(be.MAGIC + event(be.MYSQL_GTID_TAGGED, b"\0" * 40), 0, "mysql")


# ---- the planner over MariaDB runs --------------------------------------------------------------------

def afile(run: str, name: str, start_set, txns, pieces: int = 1) -> ArchiveFile:
    """A file whose transactions are (gtid, ts) at offsets 100, 200, ...; split into `pieces` segments."""
    tx = [(g, 100 * (i + 1), ts) for i, (g, ts) in enumerate(txns)]
    end = 100 * (len(tx) + 1)
    cuts = [0] + [end * k // pieces for k in range(1, pieces)] + [end]
    segs = []
    for a, b in zip(cuts, cuts[1:]):
        segs.append(Segment(run, name, a, b, "0" * 64, 0.0, [t for t in tx if a <= t[1] < b],
                            start_set if a == 0 else None, max([t[2] for t in tx if a <= t[1] < b] or [0])))
    return ArchiveFile(run, name, segs)


def arun(rid: str, started: float, files, alive_at: float = 0.0) -> ArchiveRun:
    return ArchiveRun(RunManifest(rid, "n", 1, "mariadb", started, files[0].name if files else "", alive_at=alive_at),
                      files)


def seqs(n0: int, n1: int, srv: int = 1, ts0: int = 1000):
    return [(f"0-{srv}-{n}", ts0 + n) for n in range(n0, n1 + 1)]


def test_replays_from_the_snapshot_to_the_second_and_no_further():
    runs = [arun("r1", 1, [afile("r1", "bin.1", "", seqs(1, 5)), afile("r1", "bin.2", "0-1-5", seqs(6, 9))])]
    p = plan("mariadb", "0-1-3", runs, Target(time=1007))
    assert [(s.file, s.start, s.stop, s.txns) for s in p.steps] == [("bin.1", 400, 600, 2), ("bin.2", 100, 300, 2)]
    assert p.reached == "0-1-7" and p.last_ts == 1007


def test_a_gtid_target_stops_right_after_it():
    runs = [arun("r1", 1, [afile("r1", "bin.1", "", seqs(1, 9))])]
    p = plan("mariadb", "", runs, Target(gtid="0-1-4"))
    assert p.reached == "0-1-4" and p.steps[0].stop == 500 and p.steps[0].start == 100


def test_segments_of_one_file_read_as_one():
    runs = [arun("r1", 1, [afile("r1", "bin.1", "", seqs(1, 9), pieces=4)])]
    assert plan("mariadb", "", runs, Target(gtid="0-1-9")).steps[0].txns == 9


def test_a_failover_trusts_the_old_run_only_up_to_where_the_new_primarys_history_begins():
    # r1 (old primary) archived 1..12; 11 and 12 never reached n2, which took over after 10 and wrote 0-2-11...
    old = arun("r1", 1, [afile("r1", "bin.1", "", seqs(1, 12))])
    new = arun("r2", 2, [afile("r2", "relay-bin.3", "0-1-8", seqs(9, 10) + seqs(11, 13, srv=2, ts0=2000))])
    p = plan("mariadb", "", [old, new], Target(gtid="0-2-13"))
    assert [(s.run, s.txns, s.last_gtid) for s in p.steps] == [("r1", 8, "0-1-8"), ("r2", 5, "0-2-13")]


def test_transactions_both_runs_hold_are_replayed_once():
    old = arun("r1", 1, [afile("r1", "bin.1", "", seqs(1, 6))])
    new = arun("r2", 2, [afile("r2", "b.1", "0-1-2", seqs(3, 6) + seqs(7, 8, srv=2))])
    p = plan("mariadb", "0-1-1", [old, new], Target(gtid="0-2-8"))
    assert [(s.run, s.start, s.txns) for s in p.steps] == [("r1", 200, 1), ("r2", 100, 6)]
    # a snapshot past the new run's start: the new run's first transactions are skipped, not replayed
    p = plan("mariadb", "0-1-5", [old, new], Target(gtid="0-2-8"))
    assert [(s.run, s.start, s.txns) for s in p.steps] == [("r2", 400, 3)]


def test_a_gap_between_runs_is_refused_and_crossed_only_with_force():
    old = arun("r1", 1, [afile("r1", "bin.1", "", seqs(1, 4))])
    new = arun("r2", 2, [afile("r2", "b.5", "0-1-6", seqs(7, 9))])       # 5 and 6 are nowhere
    with pytest.raises(PlanError, match=r"gap: transactions 0-1-6 come before b.5 \(run r2\)"):
        plan("mariadb", "", [old, new], Target(gtid="0-1-9"))
    p = plan("mariadb", "", [old, new], Target(gtid="0-1-9"), force=True)
    assert p.reached == "0-1-9" and len(p.gaps) == 1


def test_a_missing_segment_is_a_gap():
    f = afile("r1", "bin.1", "", seqs(1, 8), pieces=3)
    del f.segments[1]
    with pytest.raises(PlanError, match="are in no segment"):
        plan("mariadb", "", [arun("r1", 1, [f])], Target(gtid="0-1-8"))


def test_an_archive_that_starts_after_the_snapshot_is_a_gap():
    runs = [arun("r1", 1, [afile("r1", "bin.7", "0-1-50", seqs(51, 60))])]
    with pytest.raises(PlanError, match="gap: transactions 0-1-50 come before"):
        plan("mariadb", "0-1-20", runs, Target(gtid="0-1-55"))


def test_targets_outside_the_archive_are_refused_with_what_it_covers():
    runs = [arun("r1", 1, [afile("r1", "bin.1", "", seqs(1, 5))], alive_at=1010)]
    with pytest.raises(PlanError, match="0-1-9 is not in the archive.*reach 0-1-5"):
        plan("mariadb", "", runs, Target(gtid="0-1-9"))
    with pytest.raises(PlanError, match="past what the archive holds: the archive covers"):
        plan("mariadb", "", runs, Target(time=1011))
    # up to alive_at the archive holds everything the server wrote: a quiet minute is covered
    assert plan("mariadb", "", runs, Target(time=1010)).reached == "0-1-5"


def test_a_target_before_any_archived_transaction_replays_nothing():
    runs = [arun("r1", 1, [afile("r1", "bin.1", "", seqs(1, 5))])]
    p = plan("mariadb", "0-1-2", runs, Target(time=1001))
    assert p.steps == [] and p.reached == "0-1-2"


def test_mysql_sets_follow_the_same_rules():
    tx = [(f"{U1}:{n}", 1000 + n) for n in range(1, 7)]
    f = afile("r1", "bin.1", f"{U1}:1-2", tx[2:])
    p = plan("mysql", f"{U1}:1-3", [ArchiveRun(RunManifest("r1", "n", 1, "mysql", 1, "bin.1"), [f])],
             Target(time=1005))
    assert p.reached == f"{U1}:1-5" and p.steps[0].txns == 2


def test_the_snapshot_for_a_gtid_target_is_the_newest_not_past_it():
    from mysqlpilot.model import SnapshotManifest
    from mysqlpilot.pitr_restore import pick_snapshot

    def snap(sid, created, gtid):
        return SnapshotManifest(sid, created, "n", "k", 1, 1, "0" * 64, "mysql", "9.7", gtid)
    snaps = [snap("a", 1, f"{U1}:1-5"), snap("b", 2, f"{U1}:1-9"), snap("c", 3, f"{U1}:1-20")]
    assert pick_snapshot(snaps, Target(gtid=f"{U1}:12"), "mysql", []).id == "b"     # one GTID: up to it
    assert pick_snapshot(snaps, Target(gtid=f"{U1}:1-9"), "mysql", []).id == "b"    # exactly a snapshot's
    assert pick_snapshot(snaps, Target(gtid=f"{U1}:1-25"), "mysql", []).id == "c"
    assert pick_snapshot(snaps, Target(time=2), "mysql", []).id == "b"
    with pytest.raises(PilotError, match="no snapshot is older than .*the oldest is a"):
        pick_snapshot(snaps, Target(gtid=f"{U1}:3"), "mysql", [])


def test_retention_removes_only_files_the_oldest_kept_snapshot_holds_and_never_the_live_one():
    from mysqlpilot.binlog_retention import unneeded
    old = arun("r1", 1, [afile("r1", "bin.1", "", seqs(1, 5)), afile("r1", "bin.2", "0-1-5", seqs(6, 9))])
    new = arun("r2", 2, [afile("r2", "b.1", "0-1-7", seqs(8, 9) + seqs(10, 12, srv=2)), afile("r2", "b.2", "0-2-12", [])])
    assert [(f.run, f.name) for f in unneeded([old, new], "0-1-6", "mariadb")] == [("r1", "bin.1")]
    assert [(f.run, f.name) for f in unneeded([old, new], "0-2-12", "mariadb")] == [("r1", "bin.1"), ("r1", "bin.2"),
                                                                                    ("r2", "b.1")]
    assert unneeded([old, new], "", "mariadb") == []


def test_a_run_whose_first_files_were_pruned_still_caps_the_run_before_it():
    # r1 archived 1..12 but 11 and 12 were lost in the failover; r2's first file (from 0-1-8) is pruned
    old = arun("r1", 1, [afile("r1", "bin.1", "", seqs(1, 12))])
    new = arun("r2", 2, [afile("r2", "b.2", "0-2-12", seqs(13, 14, srv=2))])
    new.manifest.start_set = "0-1-8"
    with pytest.raises(PlanError, match="gap"):      # 9..12 of the new history are nowhere: never the lost ones
        plan("mariadb", "0-1-5", [old, new], Target(gtid="0-2-14"))


# ---- the archiver's pure parts and its segmenting, over a directory store --------------------------

def test_a_new_run_starts_at_the_newest_binlog_the_archive_holds_or_records_the_gap():
    from mysqlpilot.binlog_archiver import first_file
    logs = [("b.1", ""), ("b.2", "0-1-10"), ("b.3", "0-2-25")]
    assert first_file(logs, "", "mariadb") == ("b.1", "")                 # an empty archive: everything
    assert first_file(logs, "0-1-30", "mariadb") == ("b.3", "")           # resumes where the archive ends
    assert first_file(logs, "0-1-12", "mariadb") == ("b.2", "")
    assert first_file(logs[1:], "0-1-4", "mariadb") == ("b.2", "0-1-10")  # b.1 purged, never archived
    with pytest.raises(PilotError, match="log_bin"):
        first_file([], "", "mariadb")


def test_segments_hold_whole_events_and_a_file_header_goes_up_alone(tmp_path):
    from mysqlpilot.binlog_archiver import Run
    from mysqlpilot.binlog_catalog import read_runs
    from mysqlpilot.store.local import LocalStore

    class Cfg:
        cluster, root_password, socket, binlog_tool, archive_interval = "c", "x", "/s", None, 1.0

    class Flavor:
        dialect, binlog_tool = "mariadb", "mariadb-binlog"

    store = LocalStore(str(tmp_path / "store"))
    run = Run(Cfg(), Flavor(), store, RunManifest("r1", "n1", 1, "mariadb", 1.0, "bin.1"), str(tmp_path / "w"))
    (tmp_path / "w").mkdir()
    head = be.MAGIC + event(15, b"f" * 40) + maria_list([])
    body = maria_gtid(0, 1, 1, 100) + query(100) + maria_gtid(0, 1, 2, 101) + query(101)
    path = tmp_path / "w" / "bin.1"
    path.write_bytes(head + body[:-7])                       # the last event not whole yet
    assert run.upload() == len(query(101)) - 7 and run.behind_since is not None   # the partial event waits
    path.write_bytes(head + body)
    assert run.upload() == 0 and run.behind_since is None
    store.put_bytes("clusters/c/binlogs/r1/run.json", run.m.to_json().encode())
    (f,) = read_runs(store, "c")[0].files
    assert [(s.start, s.end) for s in f.segments][0] == (0, len(head))     # the header alone
    assert not f.hole and f.end == len(head + body) and [t.gtid for t in f.transactions()] == ["0-1-1", "0-1-2"]


def test_a_new_replica_replays_only_what_the_primary_holds():
    # n1 archived 1..12 and died; n2 took over at 10 and has not started its own run yet. A replica restored
    # now must not take 11 and 12: they are not the cluster's history, and n2 would never send them.
    runs = [arun("r1", 1, [afile("r1", "bin.1", "", seqs(1, 12))])]
    p = plan("mariadb", "0-1-3", runs, Target(), within="0-1-10")
    assert p.reached == "0-1-10" and [(s.start, s.stop, s.txns) for s in p.steps] == [(400, 1100, 7)]
    # once n2's run is there, both caps hold: the next run's start set and the primary's set
    new = arun("r2", 2, [afile("r2", "b.3", "0-1-10", seqs(11, 14, srv=2, ts0=2000))])
    p = plan("mariadb", "0-1-3", runs + [new], Target(), within="0-2-13")
    assert [(s.run, s.txns, s.last_gtid) for s in p.steps] == [("r1", 7, "0-1-10"), ("r2", 3, "0-2-13")]
    assert plan("mariadb", "0-1-3", runs, Target()).reached == "0-1-12"      # no cap: all of it


def test_a_gap_is_closed_from_the_member_whose_binlogs_reach_back_and_hold_it(monkeypatch):
    """Which member's binlogs close a new run's gap (the copy itself runs in tests/integration/test_pitr.py)."""
    from types import SimpleNamespace

    from mysqlpilot import binlog_gap_fill as gf
    from mysqlpilot.model import MemberState
    binlogs = {   # name -> (its binlogs with their start sets, its executed set)
        "a": ([("a.7", "0-1-20")], "0-1-40"),                      # starts past the archive (ends at 0-1-10)
        "b": ([("b.1", ""), ("b.2", "0-1-8")], "0-1-12"),           # reaches back, but lacks 13..20
        "c": ([("c.1", ""), ("c.2", "0-1-9"), ("c.3", "0-1-30")], "0-1-40"),
    }
    copied = []

    class Copy:
        def __init__(self, cfg, flavor, store, manifest, workdir, host, port, clock):
            copied.append((manifest.node, manifest.first_file, manifest.closes))
            self.proc = SimpleNamespace(wait=lambda t: 0, returncode=0)
            self.uploaded = 0

        def start(self):
            pass

        def drain(self):
            pass
    monkeypatch.setattr(gf, "CopyRun", Copy)
    monkeypatch.setattr(gf, "_binlogs", lambda cfg, flavor, m: (*binlogs[m.name], 7))
    cfg = SimpleNamespace(node_name="me", state_dir="/nonexistent")
    flavor = SimpleNamespace(dialect="mariadb")
    members = [MemberState(n, "h", 1) for n in ("me", "a", "b")] + [MemberState("d", "h", 1, alive=False),
                                                                    MemberState("c", "h", 1)]
    assert gf.close_gap(cfg, flavor, None, members, "0-1-10", "0-1-20") == "c"
    assert copied == [("c", "c.2", "0-1-20")]
    assert gf.close_gap(cfg, flavor, None, members[:3], "0-1-10", "0-1-20") is None

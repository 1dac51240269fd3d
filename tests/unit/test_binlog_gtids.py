"""The GTID set of a CLONE snapshot, read from the server's binlog up to the copy's position."""
from mysqlpilot.snapshot import binlog_gtids

U1, U2 = "3e11fa47-71ca-11e1-9e33-c80aa9429562", "4e11fa47-71ca-11e1-9e33-c80aa9429562"


class Binlog:
    """SHOW BINLOG EVENTS IN f FROM pos LIMIT n over a list of (pos, end, type, info)."""

    def __init__(self, events):
        self.events, self.asked = events, []

    def query(self, sql):
        self.asked.append(sql)
        start, limit = int(sql.split(" FROM ")[1].split()[0]), int(sql.rsplit(" ", 1)[1])
        rows = [{"Pos": p, "End_log_pos": e, "Event_type": t, "Info": i} for p, e, t, i in self.events if p >= start]
        return rows[:limit]


def events(n):
    out, pos = [(4, 126, "Format_desc", ""), (126, 197, "Previous_gtids", f"{U1}:1-100,\n{U2}:1-5")], 197
    for i in range(1, n + 1):
        out.append((pos, pos + 79, "Gtid", f"SET @@SESSION.GTID_NEXT= '{U2}:{5 + i}'"))
        out.append((pos + 79, pos + 300, "Write_rows", ""))
        out.append((pos + 300, pos + 331, "Xid", "COMMIT /* xid=1 */"))
        pos += 331
    return out


def test_the_set_is_the_previous_gtids_plus_every_transaction_before_the_position():
    ev = events(10)
    boundary = ev[2 + 3 * 7][0]                 # the position where the 8th transaction starts
    assert binlog_gtids(Binlog(ev), None, "mysql-bin.000002", boundary) == f"{U1}:1-100,{U2}:1-12"


def test_at_the_end_of_the_file_every_transaction_counts_and_batches_continue():
    ev = events(10)
    b = Binlog(ev)
    assert binlog_gtids(b, None, "mysql-bin.000002", ev[-1][1], batch=4) == f"{U1}:1-100,{U2}:1-15"
    assert len(b.asked) > 3 and all("LIMIT 4" in q for q in b.asked)


def test_a_clone_snapshot_records_the_binlog_set_and_gtid_purged(monkeypatch, tmp_path):
    """_clone_local: the set is the binlog's up to clone_status's position, plus gtid_purged, not the
    copy's mysql.gtid_executed (seen lagging the data in MySQL campaign seed 97)."""
    from mysqlpilot import snapshot, sqlclient
    from mysqlpilot.flavors import get_flavor

    ev = events(10)

    class Srv(Binlog):
        def __init__(self, *a, **kw):
            super().__init__(ev)

        def execute(self, sql):
            pass

        def gtid_purged(self):
            return f"{U1}:1-100"

        def query(self, sql):
            if "clone_status" in sql:
                return [{"state": "Completed", "binlog_file": "mysql-bin.000002", "binlog_pos": ev[-1][1],
                         "gtid": f"{U1}:1-100,{U2}:1-5"}]
            return super().query(sql)

        def close(self):
            pass

    monkeypatch.setattr(sqlclient, "Server", Srv)
    monkeypatch.setattr(snapshot, "_staged_gtid", lambda *a, **kw: "never asked")

    class Cfg:
        socket = str(tmp_path / "s.sock")

    f, pos, gtid = snapshot._clone_local(Cfg, get_flavor("mysql", "9.7"), "root", "pw", str(tmp_path / "c"))
    assert (f, gtid) == ("mysql-bin.000002", f"{U1}:1-100,{U2}:1-15")

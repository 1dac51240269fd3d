"""Issue item 9, second half: a rebuild loop must not fill the disk with moved-aside datadirs. At
max_moved_aside copies, moving another aside is refused with one line naming the directory and what to
do; nothing is ever deleted; status shows each node's count."""
import os
import time

import pytest

from mysqlpilot import config, mysqld, status
from mysqlpilot.datadir import Preparer, moved_aside_report
from mysqlpilot.errors import PilotError
from mysqlpilot.flavors import get_flavor
from mysqlpilot.model import LeaderInfo, MemberState, SnapshotManifest
from mysqlpilot.snapshot import restore_snapshot
from mysqlpilot.store.local import LocalStore
from tests.unit.test_status import FakeDCS

from .fakes import PartialDCS


def cfg_for(tmp_path, **env):
    base = {"MYSQL_ROOT_PASSWORD": "r-secret", "MYSQL_REPL_PASSWORD": "p-secret", "MYSQLPILOT_NODE": "db2",
            "MYSQLPILOT_STATE_DIR": str(tmp_path / "state"), "MYSQLPILOT_DATADIR": str(tmp_path / "data"),
            "MYSQLPILOT_STORE_PATH": str(tmp_path / "store"), "MYSQLPILOT_MYSQLD_USER": "root"}
    base.update(env)
    return config.load(None, env=base)


def make_datadir(path, initialised=True):
    os.makedirs(os.path.join(path, "mysql") if initialised else path, exist_ok=True)
    with open(os.path.join(path, "ibdata1"), "w") as fh:
        fh.write("data")


def asides(tmp_path):
    return sorted(p for p in os.listdir(tmp_path) if p.startswith("data.aside-"))


def fill_asides(tmp_path, n):
    for i in range(n):
        os.makedirs(tmp_path / f"data.aside-20240101T00000{i}Z" / "mysql")


class PrepDCS(PartialDCS):
    """What Preparer asks of Consul, in memory."""

    def __init__(self):
        self.kv = {}

    def get_leader(self):
        return LeaderInfo("db1", "10.0.0.1", 3306, session="s"), 1

    def get_latest_snapshot(self):
        return None

    def member(self, name):
        return None

    def publish_member(self, sid, state):
        pass

    def put_json(self, rel, value, cas=None):
        self.kv[rel] = value
        return True

    def get_json(self, rel):
        return self.kv.get(rel)


def test_default_cap_is_three():
    assert config.load(None, env={"MYSQL_ROOT_PASSWORD": "x", "MYSQL_REPL_PASSWORD": "y"}).max_moved_aside == 3


def test_move_aside_refuses_at_the_cap_in_one_line_and_deletes_nothing(tmp_path):
    data = str(tmp_path / "data")
    make_datadir(data)
    fill_asides(tmp_path, 3)
    before = asides(tmp_path)
    with pytest.raises(PilotError) as ei:
        mysqld.move_aside(data, limit=3)
    msg = str(ei.value)
    assert "\n" not in msg and data in msg and "max_moved_aside" in msg and "by hand" in msg, msg
    assert asides(tmp_path) == before and os.path.isfile(os.path.join(data, "ibdata1"))
    # Below the cap it moves, as before.
    assert mysqld.move_aside(data, limit=4).startswith(data + ".aside-")
    assert len(asides(tmp_path)) == 4 and not os.path.exists(data)


def test_a_rebuild_loop_stops_at_the_cap_and_keeps_the_datadir(tmp_path):
    cfg = cfg_for(tmp_path)
    dcs = PrepDCS()
    prep = Preparer(cfg, dcs=dcs)
    prep.restore = lambda manifest: "restored"          # the restore itself is not under test
    prep.wait_for_snapshot = lambda: None
    for i in range(3):
        make_datadir(cfg.datadir)
        prep.state.update(rebuild_reason="errant transactions")
        assert prep.rebuild() == "rebuilt"
        time.sleep(0.01)
    assert len(asides(tmp_path)) == 3
    make_datadir(cfg.datadir)
    prep.state.update(rebuild_reason="errant transactions")
    with pytest.raises(PilotError) as ei:
        prep.rebuild()
    assert cfg.datadir in str(ei.value) and "\n" not in str(ei.value)
    assert len(asides(tmp_path)) == 3 and os.path.isfile(os.path.join(cfg.datadir, "ibdata1"))
    # What status reads: this node's count, published by pre-start and rebuild.
    assert dcs.kv["moved_aside/db2"]["count"] == 3 and dcs.kv["moved_aside/db2"]["limit"] == 3


def test_pre_start_with_a_foreign_datadir_refuses_at_the_cap(tmp_path):
    cfg = cfg_for(tmp_path, MYSQLPILOT_MAX_MOVED_ASIDE="1")
    fill_asides(tmp_path, 1)
    make_datadir(cfg.datadir, initialised=False)
    with pytest.raises(PilotError) as ei:
        Preparer(cfg, dcs=PrepDCS()).pre_start()
    assert "max_moved_aside=1" in str(ei.value)
    assert os.path.isfile(os.path.join(cfg.datadir, "ibdata1")) and len(asides(tmp_path)) == 1


def test_restore_checks_the_cap_before_downloading(tmp_path):
    cfg = cfg_for(tmp_path)
    fill_asides(tmp_path, 3)
    make_datadir(cfg.datadir)
    m = SnapshotManifest(id="s1", created=1.0, source="db1", object_key="snapshots/s1/data", bytes=1,
                         raw_bytes=1, sha256="0" * 64, flavor="mariadb", version="10.11", gtid="0-1-1")
    with pytest.raises(PilotError) as ei:
        restore_snapshot(cfg, get_flavor("mariadb", "10.11"), LocalStore(cfg.store_path), m,
                         datadir=cfg.datadir, mysqld_user="root")
    assert "max_moved_aside" in str(ei.value)     # not "snapshot object ... does not exist"
    assert os.path.isfile(os.path.join(cfg.datadir, "ibdata1")) and len(asides(tmp_path)) == 3


def test_moved_aside_report_counts_this_nodes_copies(tmp_path):
    cfg = cfg_for(tmp_path)
    assert moved_aside_report(cfg)["count"] == 0
    fill_asides(tmp_path, 2)
    (tmp_path / "data.aside-not-a-dir").write_text("x")
    (tmp_path / "data2.aside-20240101T000000Z").mkdir()        # another datadir's
    rep = moved_aside_report(cfg)
    assert (rep["count"], rep["limit"]) == (2, 3) and rep["newest"].endswith("data.aside-20240101T000001Z")


class StatusDCS(FakeDCS):
    def __init__(self, leader, members, aside):
        super().__init__(leader, members)
        self.aside = aside

    def moved_aside_counts(self):
        return self.aside


def test_status_shows_moved_aside_datadirs_per_node():
    def m(name, role):
        x = MemberState(name=name, host="10.0.0." + name[-1], port=3306, role=role, healthy=True,
                        read_only=role != "primary", message="ok", updated=time.time())
        return x
    dcs = StatusDCS(LeaderInfo("db1", "10.0.0.1", 3306), [m("db1", "primary"), m("db2", "replica"),
                                                         m("db3", "replica")],
                    {"db2": {"count": 3, "limit": 3, "newest": "/d/data.aside-x", "updated": time.time()},
                     "db3": {"count": 1, "limit": 3, "newest": "/d/data.aside-y", "updated": time.time()}})
    st = status.gather(config.load(None, env={"MYSQL_ROOT_PASSWORD": "x", "MYSQL_REPL_PASSWORD": "y"}), dcs)
    n = {x["name"]: x for x in st["nodes"]}
    assert (n["db1"]["moved_aside"], n["db2"]["moved_aside"], n["db3"]["moved_aside"]) == (None, 3, 1)
    text = status.render(st)
    header = text.splitlines()[1]
    assert "aside" in header
    row = next(line for line in text.splitlines() if line.startswith("db2 "))
    assert " 3 " in row
    assert any(line.startswith("! db2:") and "moved-aside" in line and "max_moved_aside" in line
               for line in text.splitlines()), text

"""What status shows an operator, from member states as Consul holds them (a stand-in DCS: pure logic)."""
import time

from mysqlpilot import config, status
from mysqlpilot.observer import SEMI_SYNC_LAPSED
from mysqlpilot.model import LeaderInfo, MemberState

from .fakes import PartialDCS


class FakeDCS(PartialDCS):
    def __init__(self, leader, members):
        self.leader, self._members = leader, members

    def get_leader(self):
        return self.leader, 1

    def members(self):
        return self._members

    def get_latest_snapshot(self):
        return None

    def get_paused(self):
        return None

    def history(self):
        return []


def member(name, role, alive, read_only, message="", **kw):
    m = MemberState(name=name, host="10.0.0." + name[-1], port=3306, role=role, healthy=True,
                    read_only=read_only, message=message, updated=time.time(), **kw)
    m.alive = alive
    return m


def cfg():
    return config.load(None, env={"MYSQL_ROOT_PASSWORD": "x-secret", "MYSQL_REPL_PASSWORD": "y-secret"})


def test_a_dead_node_shows_no_stale_read_only_and_says_why():
    dcs = FakeDCS(LeaderInfo("db2", "10.0.0.2", 3306), [
        member("db1", "primary", False, False, "primary, writable", replicating_from=None),
        member("db2", "primary", True, False, "primary, writable"),
        member("db3", "replica", True, True, "replicating from db2", replicating_from="10.0.0.2:3306",
               lag_seconds=0.0)])
    st = status.gather(cfg(), dcs)
    n = {x["name"]: x for x in st["nodes"]}
    assert st["primary"] == "db2"
    assert (n["db1"]["role"], n["db1"]["healthy"], n["db1"]["read_only"]) == ("down", False, None)
    assert "no live session" in n["db1"]["message"]
    assert (n["db2"]["role"], n["db2"]["read_only"]) == ("primary", False)
    assert n["db3"]["replicating_from"] == "10.0.0.2:3306"
    text = status.render(st)
    row = next(line for line in text.splitlines() if line.startswith("db1 "))
    assert " ? " in row and "OFF" not in row
    assert "! db1: no live session" in text


def test_a_primary_warning_is_shown_though_it_is_healthy():
    dcs = FakeDCS(LeaderInfo("db1", "10.0.0.1", 3306), [member("db1", "primary", True, False, SEMI_SYNC_LAPSED)])
    text = status.render(status.gather(cfg(), dcs))
    assert f"! db1: {SEMI_SYNC_LAPSED}" in text


def test_a_starting_node_says_what_pre_start_is_doing():
    m = member("db2", "restoring", False, None, "restoring snapshot s1 (900 MB), attempt 1")
    m.updated = time.time() - 42
    dcs = FakeDCS(LeaderInfo("db1", "10.0.0.1", 3306), [member("db1", "primary", True, False, "primary, writable"), m])
    st = status.gather(cfg(), dcs)
    n = {x["name"]: x for x in st["nodes"]}["db2"]
    assert (n["role"], n["healthy"]) == ("restoring", False)
    assert n["message"].startswith("starting: restoring snapshot s1") and "(42s ago)" in n["message"]
    assert "! db2: starting: restoring snapshot s1" in status.render(st)


def test_status_lists_each_nodes_api_as_it_published_it():
    dcs = FakeDCS(LeaderInfo("db1", "10.0.0.1", 3306), [
        member("db1", "primary", True, False, "primary, writable", api="10.0.0.1:8008"),
        member("db2", "replica", True, True, "replicating from db1", api="127.0.0.1:9008"),
        member("db3", "replica", True, True, "from a release before the node API")])
    n = {x["name"]: x for x in status.gather(cfg(), dcs)["nodes"]}
    assert (n["db1"]["api"], n["db2"]["api"], n["db3"]["api"]) == ("10.0.0.1:8008", "127.0.0.1:9008", None)


def test_status_shows_each_nodes_server_version_as_it_read_it():
    # Issue 24: during a rolling upgrade an operator sees which nodes run which server.
    dcs = FakeDCS(LeaderInfo("db1", "10.0.0.1", 3306), [
        member("db1", "primary", True, False, "primary, writable",
               server_version="10.11.6-MariaDB-0+deb12u1-log"),
        member("db2", "replica", True, True, "replicating from db1", server_version="11.4.2-MariaDB"),
        member("db3", "replica", True, True, "from an older release")])
    st = status.gather(cfg(), dcs)
    n = {x["name"]: x for x in st["nodes"]}
    assert (n["db1"]["version"], n["db2"]["version"], n["db3"]["version"]) == (
        "10.11.6-MariaDB-0+deb12u1-log", "11.4.2-MariaDB", None)
    lines = status.render(st).splitlines()
    assert "version" in lines[1].split()
    assert "11.4.2-MariaDB" in next(line for line in lines if line.startswith("db2 "))


def test_the_member_state_carries_the_running_servers_version_not_the_configured_one():
    from types import SimpleNamespace

    from mysqlpilot.observer import Observer
    c = cfg()
    obs = Observer.__new__(Observer)
    obs.n = SimpleNamespace(cfg=c, flavor=SimpleNamespace(name="mariadb", version="10.11"), state={})
    m = obs.member_state({"version": "10.11.9-MariaDB"}, True, "replica", "")
    # The configured version stays what CLONE donor matching compares (CI caught "9.7.4-2, not 9.7.4").
    assert (m.server_version, m.version) == ("10.11.9-MariaDB", "10.11")
    assert obs.member_state({}, False, "down", "").server_version == ""


def api_server(codes):
    """A node API stand-in on loopback answering /health with `codes[0]`."""
    import http.server
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(codes[0])
            self.end_headers()

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_a_node_whose_api_does_not_answer_shows_unreachable_whatever_it_published():
    """Seen failing before: a SIGKILLed primary's node, its session not yet ended, showed "primary,
    writable" for as long as the session lived. Its replica says why it is stuck."""
    import socket
    live = api_server([200])
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))            # bound, never listening: connection refused
    dead_api = f"127.0.0.1:{dead.getsockname()[1]}"
    try:
        dcs = FakeDCS(LeaderInfo("db1", "10.0.0.1", 3306), [
            member("db1", "primary", True, False, "primary, writable", api=dead_api),
            member("db2", "replica", True, True, "replicating from db1", replicating_from="10.0.0.1:3306",
                   api=f"127.0.0.1:{live.server_address[1]}")])
        st = status.gather(cfg(), dcs)
        n = {x["name"]: x for x in st["nodes"]}
        assert n["db1"]["role"] == "unreachable" and not n["db1"]["healthy"] and n["db1"]["read_only"] is None
        assert dead_api in n["db1"]["message"] and "last said: primary" in n["db1"]["message"]
        assert n["db2"]["healthy"] and "its primary db1 is unreachable" in n["db2"]["message"]
        assert status.check_code(st) == 2
    finally:
        live.shutdown()
        dead.close()


def test_a_node_that_left_on_purpose_raises_no_alarm_and_is_dropped_after_the_grace():
    old = member("db3", "left", False, None, "stopped on purpose (pre-stop at 10:00:00 UTC)")
    dcs = FakeDCS(LeaderInfo("db1", "10.0.0.1", 3306), [
        member("db1", "primary", True, False, "primary, writable"),
        member("db2", "replica", True, True, "replicating from db1", replicating_from="10.0.0.1:3306"), old])
    st = status.gather(cfg(), dcs)
    n = {x["name"]: x for x in st["nodes"]}
    assert n["db3"]["role"] == "left" and "! db3" not in status.render(st)
    assert status.check_code(st) == 0
    old.updated = time.time() - status.LEFT_GRACE - 1
    assert [x["name"] for x in status.gather(cfg(), dcs)["nodes"]] == ["db1", "db2"]


def test_check_codes():
    dcs = FakeDCS(LeaderInfo("db1", "10.0.0.1", 3306), [
        member("db1", "primary", True, False, "primary, writable"),
        member("db2", "replica", True, True, "replicating from db1")])
    assert status.check_code(status.gather(cfg(), dcs)) == 0
    dcs._members[1].healthy = False
    assert status.check_code(status.gather(cfg(), dcs)) == 1
    dcs.leader = None
    dcs._members[0].role = "fenced"
    assert status.check_code(status.gather(cfg(), dcs)) == 2


def test_status_and_pause_need_no_mysql_password(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mysqlpilot import cli as cli_mod
    from mysqlpilot.dcs import consul as consul_mod
    dcs = FakeDCS(LeaderInfo("db1", "10.0.0.1", 3306), [member("db1", "primary", True, False, "primary, writable")])
    dcs.set_paused = lambda *a, **kw: None
    monkeypatch.setattr(consul_mod.ConsulDCS, "from_config", classmethod(lambda cls, cfg, **kw: dcs))
    env = {"MYSQLPILOT_STATE_DIR": str(tmp_path), "MYSQL_ROOT_PASSWORD": "", "MYSQL_REPL_PASSWORD": ""}
    for args in (["status", "--check"], ["pause"], ["resume"]):
        r = CliRunner().invoke(cli_mod.main, args, env=env)
        assert r.exit_code == 0 and "required" not in r.output, (args, r.output)
    r = CliRunner().invoke(cli_mod.main, ["failover"], env=env)
    assert r.exit_code != 0 and "root_password is required" in r.output


def test_pre_stop_publishes_left_and_nothing_of_that_container_overwrites_it(tmp_path, monkeypatch):
    """A TERMed replica (scale-down) showed `down` for ever; now pre-stop says `left`, and a last health
    check or pass of the stopping container cannot turn it back."""
    from mysqlpilot.model import MemberState as MS
    from mysqlpilot.prestop import PreStop

    from .fakes import FakeDCS as NodeDCS, FakeMySQL, give_session, make_node
    dcs = NodeDCS()
    servers = {"n2": FakeMySQL("n2", executed="0-1-10")}
    n2 = make_node(tmp_path, "n2", dcs, servers, monkeypatch)
    sid = give_session(n2, dcs)
    dcs.publish_member(sid, MS("n2", "h-n2", 3306, role="replica", healthy=True, message="replicating"))
    PreStop(n2)._leave()
    m = dcs.member("n2")
    assert m.role == "left" and not m.alive and "stopped on purpose" in m.message
    n2.publish_member({"up": True}, MS("n2", "h-n2", 3306, role="replica", healthy=True))
    assert dcs.member("n2").role == "left"


def test_status_says_when_the_newest_snapshot_was_proven_restorable():
    from mysqlpilot.model import SnapshotManifest

    class WithSnap(FakeDCS):
        def get_latest_snapshot(self):
            return SnapshotManifest("s1", time.time(), "db2", "k", 10, 20, "0" * 64, "mariadb", "10.11", "0-1-5",
                                    verified={"ok": True, "seconds": 3.2, "tables": 7, "reference": "db3",
                                              "gtid": "0-1-9"})
    dcs = WithSnap(LeaderInfo("db2", "10.0.0.2", 3306), [member("db2", "primary", True, False, "primary, writable")])
    text = status.render(status.gather(cfg(), dcs))
    assert "proven restorable in 3.2s: 7 tables matched db3 at GTID 0-1-9" in text
    assert SnapshotManifest.from_json(SnapshotManifest("s", 1.0, "n", "k", 1, 1, "0", "m", "v", "g").to_json()).verified is None

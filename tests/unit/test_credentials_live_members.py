"""Item 13 of issue 18: root's password goes only to members with a live Consul session. A member key
without one names whatever host its last writer chose (anyone with write access to the prefix), so it
is never logged in to; with semi-sync it may still hold acknowledged commits, so it holds the election
for as long as a live member's session could take to end, and is then given up like any lost node."""
import time

from mysqlpilot import analysis, candidates, config, ha
from mysqlpilot.dcs.base import Request
from mysqlpilot.lease import boottime
from mysqlpilot.model import MemberState

from .fakes import FLAVOR, FakeDCS, FakeMySQL, PartialDCS, give_session, make_node

CFG = config.load(None, env={"MYSQL_ROOT_PASSWORD": "pw", "MYSQL_REPL_PASSWORD": "pw2"})


def recording(monkeypatch, servers):
    """Wrap the fakes' Server so every host a login goes to is recorded."""
    hosts = []
    import mysqlpilot.candidates as candidates
    inner = candidates.Server

    def server(flavor, host=None, port=None, socket=None, **kw):
        if host:
            hosts.append(host)
        return inner(flavor, host=host, port=port, socket=socket, **kw)
    monkeypatch.setattr(ha, "Server", server)
    monkeypatch.setattr("mysqlpilot.candidates.Server", server)
    return hosts


def two_replicas(tmp_path, monkeypatch, durability):
    """n1 (the old primary) is gone; n2 has a session; n3's key has none (its watch is not running, or
    the key was written by someone else). Both hold the same transactions."""
    dcs = FakeDCS()
    servers = {n: FakeMySQL(n) for n in ("n2", "n3")}
    n2 = make_node(tmp_path, "n2", dcs, servers, monkeypatch, MYSQLPILOT_DURABILITY=durability)
    give_session(n2, dcs)
    n2.state.update(free_seen={"lock_index": dcs.lock_index, "index": 0, "since": boottime() - 60})
    dcs.members["n2"] = MemberState("n2", "h-n2", 3306, alive=True, healthy=True, role="replica")
    dcs.members["n3"] = MemberState("n3", "h-n3", 3306, alive=False, healthy=True, role="replica")
    for n in ("n2", "n3"):
        servers[n].executed = "0-1-10"
        servers[n].replica = {"source_host": "h-n1", "source_port": 3306, "io_running": False,
                              "sql_running": True, "lag_seconds": None}
    return dcs, servers, n2, recording(monkeypatch, servers)


def test_probe_candidates_never_logs_in_to_a_member_without_a_session(monkeypatch):
    """Seen failing before the fix: root logged in to h-n3."""
    servers = {n: FakeMySQL(n, executed="0-1-10") for n in ("n2", "n3")}
    monkeypatch.setattr("mysqlpilot.candidates.Server", lambda flavor, host=None, **kw: servers[host[2:]])
    hosts = recording(monkeypatch, servers)
    members = [MemberState("n2", "h-n2", 3306, alive=True, healthy=True, role="replica"),
               MemberState("n3", "h-n3", 3306, alive=False, healthy=True, role="replica")]
    cands = {c.name: c for c in candidates.probe_candidates(FLAVOR, members, CFG)}
    assert hosts == ["h-n2"]
    # Not asked, so unknown: it counts as unreachable (what it holds cannot be vouched for).
    assert not cands["n3"].reachable and not cands["n3"].has_session
    ranking = {r.name: r for r in analysis.rank_candidates(list(cands.values()), analysis.Policy())}
    assert "no live Consul session" in ranking["n3"].why
    # A caller that gave it up (its wait is over) leaves it out altogether.
    cands = candidates.probe_candidates(FLAVOR, members, CFG, count_sessionless=())
    assert [c.name for c in cands] == ["n2"] and hosts == ["h-n2", "h-n2"]


def test_a_member_without_a_session_holds_a_semi_sync_election_for_a_while_without_being_asked(
        tmp_path, monkeypatch):
    """Seen failing before the fix: n2 logged in to h-n3 as root and took the lock at once."""
    dcs, servers, n2, hosts = two_replicas(tmp_path, monkeypatch, "semi-sync")
    d = n2.run_once()
    assert "h-n3" not in hosts
    assert d.action == analysis.WAIT
    assert "n3" in d.reason and "no live Consul session" in d.reason and "acknowledged" in d.reason
    # Longer than a live member's session could take to end: given up, as a lost node is.
    wait = 2 * n2.policy.session_ttl
    n2.state.update(no_session_since={"n3": boottime() - wait - 1})
    assert n2.run_once().action == analysis.TAKE_LOCK
    assert "h-n3" not in hosts


def test_a_member_that_gets_its_session_back_is_asked_and_counts_for_what_it_holds(tmp_path, monkeypatch):
    """A replica whose watch restarted may hold the only copy of an acknowledged commit: once it has a
    session again it is asked, and nobody lacking what it holds may win."""
    dcs, servers, n2, hosts = two_replicas(tmp_path, monkeypatch, "semi-sync")
    assert n2.run_once().action == analysis.WAIT
    servers["n3"].executed = "0-1-11"
    dcs.members["n3"].alive = True
    d = n2.run_once()
    assert "h-n3" in hosts
    assert d.action == analysis.WAIT and "lacks transactions that n3 holds" in d.reason
    assert "n3" not in (n2.state.get("no_session_since") or {})


def test_async_is_not_held_by_a_member_without_a_session_and_does_not_ask_it(tmp_path, monkeypatch):
    """Async waits for no unreachable member. Seen failing before the fix: root logged in to h-n3."""
    dcs, servers, n2, hosts = two_replicas(tmp_path, monkeypatch, "async")
    assert n2.run_once().action == analysis.TAKE_LOCK
    assert "h-n3" not in hosts


def test_a_switchover_to_a_member_without_a_session_sends_nothing_and_fences_nothing(tmp_path, monkeypatch):
    """The switchover key names the target; its member key names the host. Seen failing before the fix:
    the primary fenced itself, then logged in to h-n2 as root."""
    dcs = FakeDCS()
    servers = {n: FakeMySQL(n, executed="0-1-10") for n in ("n1", "n2")}
    n1 = make_node(tmp_path, "n1", dcs, servers, monkeypatch)
    sid = give_session(n1, dcs)
    servers["n1"].ro = False
    from mysqlpilot.model import LeaderInfo
    dcs.acquire_leader(sid, LeaderInfo("n1", "h-n1", 3306, promoted=True))
    dcs.members["n2"] = MemberState("n2", "h-n2", 3306, alive=False, healthy=True, role="replica")
    hosts = recording(monkeypatch, servers)
    dcs.kv["switchover"] = {"to": "n2", "kind": "switchover", "requested": time.time()}
    assert n1.hand_over("n2", Request(to="n2", requested=time.time()), dcs.get_cluster()) is False
    assert "h-n2" not in hosts
    assert servers["n1"].ro is False and "release" not in dcs.events
    assert "switchover" not in dcs.kv


def operator_failover(tmp_path, monkeypatch, n3_answers: bool):
    """`mysqlpilot failover` with n1 (the old primary) and n3 without a session, n2 live; whether anything
    accepts connections at n3's published address is `n3_answers` (a bare TCP connect, nothing sent)."""
    from click.testing import CliRunner

    from mysqlpilot import cli as cli_mod
    from mysqlpilot.dcs import consul as consul_mod

    servers = {n: FakeMySQL(n, executed="0-1-10") for n in ("n2", "n3")}
    monkeypatch.setattr("mysqlpilot.candidates.Server", lambda flavor, host=None, **kw: servers[host[2:]])
    hosts = recording(monkeypatch, servers)

    class DCS(PartialDCS):
        def get_cluster(self):
            from mysqlpilot.dcs.base import ClusterView
            return ClusterView(lock_index=3, members=[
                MemberState("n1", "h-n1", 3306, alive=False, role="primary"),
                MemberState("n2", "h-n2", 3306, alive=True, healthy=True, role="replica"),
                MemberState("n3", "h-n3", 3306, alive=False, healthy=True, role="replica")])

        def history(self):
            return [{"kind": "failover", "new_primary": "n1"}]

        def put_json(self, *a, **kw):
            raise AssertionError("a request was written")
        def destroy_session(self, sid):
            pass
    written = []
    if not n3_answers:
        DCS.put_json = lambda self, rel, value, cas=None: written.append((rel, value)) or True
        DCS.get_leader = lambda self: (None, 0)
    monkeypatch.setattr(consul_mod.ConsulDCS, "from_config", classmethod(lambda cls, cfg, **kw: DCS()))
    monkeypatch.setattr("mysqlpilot.candidates.answers", lambda host, port, timeout=1.0: n3_answers)
    monkeypatch.setattr("mysqlpilot.commands.operator._wait_for_leader", lambda *a, **kw: None)
    env = {"MYSQL_ROOT_PASSWORD": "r00t-pw", "MYSQL_REPL_PASSWORD": "repl-pw", "HOSTNAME": "n4",
           "MYSQLPILOT_STATE_DIR": str(tmp_path / "state")}
    r = CliRunner().invoke(cli_mod.main, ["failover"], env=env)
    return r, hosts, written


def test_operator_failover_does_not_ask_a_member_without_a_session_and_says_what_to_do(tmp_path, monkeypatch):
    """A member without a session is never logged in to; while something answers at its address it may
    hold commits, so short of --force the command stops in one line naming it. Seen failing before the
    fix: the command logged in to h-n3 as root."""
    r, hosts, _ = operator_failover(tmp_path, monkeypatch, n3_answers=True)
    assert hosts == ["h-n2"]
    assert r.exit_code != 0
    err = r.output.strip().splitlines()[-1]
    assert "n3" in err and "no live Consul session" in err and "--force" in err and "r00t-pw" not in r.output


def test_operator_failover_goes_on_past_a_member_without_a_session_whose_mysqld_is_gone(tmp_path, monkeypatch):
    """The usual manual failover: the dead nodes' keys have no session and nothing answers at their
    address; they hold nothing anyone can get, so they do not stop the command (seen failing: it asked
    for --force, which waives every data rule, in the integration test of the failover budget)."""
    r, hosts, written = operator_failover(tmp_path, monkeypatch, n3_answers=False)
    assert r.exit_code == 0, r.output
    assert hosts == ["h-n2"] and written and written[0][1]["to"] == "n2" and not written[0][1]["force"]

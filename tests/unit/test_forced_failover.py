"""`mysqlpilot failover --force`: what it gives up, said before it acts, and never a replica that is not
replicating unless the operator names it. Seen in the fourth seed-97 MySQL campaign (fault 21): with both
replicas stuck after failed rebuilds, `--force` promoted one holding 8 transactions and no `chaos`
database, and the old primary's data (17,938 acknowledged writes) was moved aside as errant."""
from click.testing import CliRunner

from mysqlpilot import cli as cli_mod
from mysqlpilot.dcs import consul as consul_mod
from mysqlpilot.dcs.base import ClusterView
from mysqlpilot.model import LeaderInfo, MemberState

from .fakes import FakeMySQL, PartialDCS

STUCK = "rebuilt 3 times in 10 minutes; take a fresh snapshot on the primary"


def run(monkeypatch, tmp_path, n3_healthy, args=("failover", "--force")):
    servers = {"n2": FakeMySQL("n2", executed="0-1-8"), "n3": FakeMySQL("n3", executed="0-1-90")}
    monkeypatch.setattr("mysqlpilot.candidates.Server", lambda flavor, host=None, **kw: servers[host[2:]])
    written = []

    class DCS(PartialDCS):
        def get_cluster(self):
            return ClusterView(leader=LeaderInfo("n1", "h-n1", 3306, session="s1", promoted=True), lock_index=3,
                               members=[
                MemberState("n1", "h-n1", 3306, alive=True, healthy=False, role="primary",
                            gtid_executed="0-1-100", message="Too many connections"),
                MemberState("n2", "h-n2", 3306, alive=True, healthy=False, role="rebuilding", message=STUCK),
                MemberState("n3", "h-n3", 3306, alive=True, healthy=n3_healthy,
                            role="candidate" if n3_healthy else "rebuilding",
                            message="no primary; awaiting election" if n3_healthy else STUCK)])

        def history(self):
            return []

        def put_json(self, rel, value, cas=None):
            written.append(value)
            return True

        def destroy_session(self, sid):
            written.append(("destroyed", sid))
    monkeypatch.setattr(consul_mod.ConsulDCS, "from_config", classmethod(lambda cls, cfg, **kw: DCS()))
    monkeypatch.setattr("mysqlpilot.commands.operator._wait_for_leader", lambda *a, **kw: None)
    env = {"MYSQL_ROOT_PASSWORD": "r00t-pw", "MYSQL_REPL_PASSWORD": "repl-pw", "HOSTNAME": "n4",
           "MYSQLPILOT_STATE_DIR": str(tmp_path / "state")}
    return CliRunner().invoke(cli_mod.main, list(args), env=env), written


def test_forced_failover_names_what_it_gives_up(tmp_path, monkeypatch):
    r, written = run(monkeypatch, tmp_path, n3_healthy=True)
    assert r.exit_code == 0, r.output
    assert written[0]["to"] == "n3"
    assert "gives up 10 transactions" in r.output and "n1" in r.output


def test_forced_failover_refuses_a_target_that_is_not_replicating_unless_named(tmp_path, monkeypatch):
    """Seen failing before the fix: it promoted n2, stuck since its third restore."""
    r, written = run(monkeypatch, tmp_path, n3_healthy=False)
    assert r.exit_code != 0 and not written, r.output
    err = r.output.strip().splitlines()[-1]
    assert "no replica or election candidate" in err and "--to" in err and "n3" in err and "Traceback" not in r.output
    # Named on purpose: done, and said how much it costs.
    r, written = run(monkeypatch, tmp_path, n3_healthy=False, args=("failover", "--force", "--to", "n3"))
    assert r.exit_code == 0, r.output
    assert written[0]["to"] == "n3" and "gives up 10 transactions" in r.output

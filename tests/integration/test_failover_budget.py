"""Anti-flapping and the manual failover command, on a real cluster with a budget of one failover."""
import time

import pytest

from tests.harness.cluster import Cluster

pytestmark = pytest.mark.integration


@pytest.mark.flavors("mariadb", reason="CI time: the budget counts failovers in Consul's history, flavor-neutral; "
                     "failovers on MySQL are tested in test_failover.py")
def test_spent_budget_pauses_automatic_failover_until_an_operator_acts(tmp_path, flavor):
    c = Cluster(str(tmp_path / "cl"), env={"MYSQL_ROOT_PASSWORD": "root-Secret-3", "MYSQL_REPL_PASSWORD": "r-3",
                                          "MYSQLPILOT_FAILOVER_BUDGET": "1"}, flavor=flavor)
    try:
        c.up(3)
        st = c.wait_healthy(3, timeout=120)
        first = st["primary"]
        c.cli("local", "kill", first, "--dir", c.dir, "--signal", "KILL")
        st = c.wait_healthy(2, timeout=60, primary_not=first)
        second = st["primary"]
        # The budget (1) is spent: losing the second primary leaves the cluster without one.
        c.cli("local", "kill", second, "--dir", c.dir, "--signal", "KILL")
        st = c.wait_for(lambda s: s if not s["failover"]["automatic"] and s["primary"] is None else None, 60,
                        "automatic failover to switch itself off")
        assert "budget spent" in st["failover"]["budget"]
        assert "automatic failover OFF" in c.cli("status", config=True).stdout
        time.sleep(15)                               # well past detection + lock-delay + grace
        assert c.status()["primary"] is None
        # The operator takes over: the command names the candidates and promotes the best.
        p = c.cli("failover", config=True)
        assert "candidate" in p.stdout and "failover done" in p.stdout
        st = c.status()
        assert st["primary"] not in (None, first, second)
        assert st["history"][-1]["kind"] == "manual-failover"
    finally:
        c.down()

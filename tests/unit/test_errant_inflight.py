"""The MySQL errant check against a primary whose commits wait for a semi-sync ACK (AFTER_SYNC): the
replica has applied the primary's newest transactions, the primary's gtid_executed does not show them
yet. Seen in the fourth seed-97 MySQL campaign (fault 17, partition-replicas): both replicas called the
primary's own in-flight GTIDs errant, moved their data aside and restored an old snapshot, which the
CLONE-seeded primary's binlogs could not serve."""
import re

from mysqlpilot import analysis, gtid
from mysqlpilot.flavors import get_flavor
from mysqlpilot.model import LeaderInfo
from mysqlpilot.observer import Observer

P = "683179c3-ee89-11f1-8c42-02fc00000001"        # the primary's server_uuid
OLD = "f2b47f38-ee88-11f1-9261-02fc00000001"      # an earlier primary


class LeaderServer:
    """The primary's side of the check: gtid_received and MySQL's own GTID_SUBTRACT and server_uuid."""

    def __init__(self, executed):
        self.executed = executed

    def gtid_received(self):
        return self.executed

    def scalar(self, sql):
        if "server_uuid" in sql:
            return P
        a, b = re.findall(r"'([^']*)'", sql)
        return gtid.mysql_subtract(a, b)

    def close(self):
        pass


class NodeStub:
    def __init__(self, leader_executed):
        self.flavor = get_flavor("mysql", "9.7.0")
        self.server = LeaderServer(leader_executed)

    def remote(self, host, port):
        return self.server


LEADER = LeaderInfo("node1", "127.0.1.1", 3306, promoted=True)


def check(mine, leader_executed, replicating=False):
    return Observer(NodeStub(leader_executed)).errant_against(LEADER, mine, replicating=replicating)[0]


def test_the_primarys_own_commits_waiting_for_an_ack_are_not_errant():
    # The replica's IO thread is reconnecting after the partition, so it is not "replicating" now.
    assert check(f"{OLD}:1-7826,{P}:1-1970", f"{OLD}:1-7826,{P}:1-1966") == ""
    assert check(f"{OLD}:1-7826,{P}:1-1970", f"{OLD}:1-7826,{P}:1-1966", replicating=True) == ""


def test_real_errant_transactions_are_still_found():
    # Another server's transactions the primary never had.
    assert check(f"{OLD}:1-7830,{P}:1-1966", f"{OLD}:1-7826,{P}:1-1966") == f"{OLD}:7827-7830"
    # The primary's own UUID, but below what it has committed: a hole it never had is not in flight.
    assert check(f"{P}:1-1970", f"{P}:1-1960:1965-1980") == f"{P}:1961-1964"


def test_the_inflight_tail_rule():
    assert analysis.mysql_inflight_tail(f"{P}:1967-1970", f"{P}:1-1966", P) == ""
    assert analysis.mysql_inflight_tail(f"{P}:1967-1970,{OLD}:9", f"{P}:1-1966", P) == f"{OLD}:9"
    assert analysis.mysql_inflight_tail(f"{P}:5", f"{P}:1-4:6-9", P) == f"{P}:5"
    assert analysis.mysql_inflight_tail(f"{P}:1-3", "", P) == ""      # a primary with nothing committed yet

"""Free-port picks for the servers the tests and `mysqlpilot local` start."""
from mysqlpilot.local.ports import free_ports


def test_ports_are_distinct_and_avoided_ones_are_never_returned():
    first = free_ports(12)
    assert len(first) == 12 and len(set(first)) == 12
    again = free_ports(6, avoid=first)
    assert len(again) == 6 and len(set(again)) == 6 and not set(again) & set(first)

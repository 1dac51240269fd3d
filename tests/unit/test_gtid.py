from __future__ import annotations

import itertools
import random

import pytest

from mysqlpilot import gtid
from mysqlpilot.errors import PilotError

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "4b2c9d1e-0000-11e1-9e33-c80aa9429562"


# ---- MariaDB ---------------------------------------------------------------------------------------

def test_mariadb_parse_and_format():
    assert gtid.parse_mariadb("") == {}
    assert gtid.parse_mariadb(" 0-1-5 , 1-2-9\n") == {0: (1, 5), 1: (2, 9)}
    assert gtid.format_mariadb({1: (2, 9), 0: (1, 5)}) == "0-1-5,1-2-9"
    # gtid_binlog_state style: several servers in one domain, the highest seq wins
    assert gtid.parse_mariadb("0-1-5,0-2-7,0-3-6") == {0: (2, 7)}


@pytest.mark.parametrize("bad", ["0-1", "a-b-c", "0-1-2-3", "0-1-x", "uuid:1-5"])
def test_mariadb_parse_rejects_garbage(bad):
    with pytest.raises(PilotError) as ei:
        gtid.parse_mariadb(bad)
    assert "GTID" in str(ei.value)


@pytest.mark.parametrize("a,b,expected", [
    ("", "", True),
    ("0-1-5", "", True),
    ("", "0-1-5", False),
    ("0-1-5", "0-1-5", True),
    ("0-1-6", "0-1-5", True),
    ("0-1-4", "0-1-5", False),
    ("0-2-6", "0-1-5", True),          # other server at a higher seq: positions cannot tell
    ("0-1-5", "0-1-5,1-1-1", False),   # missing domain
    ("0-1-5,1-3-8", "1-3-8", True),
    ("0-1-5,1-3-7", "0-1-5,1-3-8", False),
])
def test_mariadb_contains(a, b, expected):
    assert gtid.mariadb_contains(a, b) is expected
    assert gtid.contains("mariadb", a, b) is expected


@pytest.mark.parametrize("a,b,expected", [
    ("", "", ""),
    ("", "0-1-5", ""),
    ("0-1-5", "", "0-1-5"),
    ("0-1-5", "0-1-5", ""),
    ("0-1-7", "0-1-5", "0-1-7"),
    ("0-1-4", "0-1-5", ""),
    ("0-2-5", "0-1-5", ""),            # same seq, other server: the documented blind spot
    ("0-1-5,1-2-3", "0-1-5", "1-2-3"),
    ("1-2-3,0-1-9", "0-1-5,1-2-3", "0-1-9"),
])
def test_mariadb_subtract(a, b, expected):
    assert gtid.mariadb_subtract(a, b) == expected
    assert gtid.subtract("mariadb", a, b) == expected


def test_mariadb_count():
    assert gtid.mariadb_count("") == 0
    assert gtid.mariadb_count("0-1-5") == 5
    assert gtid.mariadb_count("0-1-5,1-2-10") == 15
    assert gtid.count("mariadb", "0-9-3") == 3


# ---- MySQL -----------------------------------------------------------------------------------------

def test_mysql_parse_merges_and_normalises():
    assert gtid.parse_mysql("") == {}
    assert gtid.parse_mysql(f"{U1.upper()}:1-5:7") == {U1: [(1, 5), (7, 7)]}
    # adjacent and overlapping intervals merge; order does not matter
    assert gtid.parse_mysql(f"{U1}:6-9:1-5:3-4,{U1}:10") == {U1: [(1, 10)]}
    assert gtid.format_mysql(gtid.parse_mysql(f"{U2}:1-3,{U1}:7:1-5")) == f"{U1}:1-5:7,{U2}:1-3"


def test_mysql_parse_ignores_whitespace_and_newlines():
    text = f" {U1}:1-5,\n{U2}:1-3\n"
    assert gtid.parse_mysql(text) == {U1: [(1, 5)], U2: [(1, 3)]}
    wrapped = f"{U1[:10]}\n{U1[10:]}:1-\n5"
    assert gtid.parse_mysql(wrapped) == {U1: [(1, 5)]}


def test_mysql_tagged_gtids_are_separate_keys():
    gs = gtid.parse_mysql(f"{U1}:1-3:tag_a:1-2:5,{U1}:tag_a:3")
    assert gs == {U1: [(1, 3)], f"{U1}:tag_a": [(1, 3), (5, 5)]}
    assert gtid.mysql_contains(f"{U1}:1-3", f"{U1}:tag_a:1") is False


@pytest.mark.parametrize("bad", [f"{U1}", "nouuid:1-5", f"{U1}:5-3", f"{U1}:0-3", f"{U1}:1-x", "0-1-5"])
def test_mysql_parse_rejects_garbage(bad):
    with pytest.raises(PilotError):
        gtid.parse_mysql(bad)


@pytest.mark.parametrize("a,b,expected", [
    ("", "", True),
    (f"{U1}:1-5", "", True),
    ("", f"{U1}:1", False),
    (f"{U1}:1-5", f"{U1}:2-4", True),
    (f"{U1}:1-5", f"{U1}:1-6", False),
    (f"{U1}:1-5:7-9", f"{U1}:6", False),
    (f"{U1}:1-5:7-9", f"{U1}:1-2:8", True),
    (f"{U1}:1-5,{U2}:1-3", f"{U2}:1-3", True),
    (f"{U1}:1-5", f"{U1}:1-5,{U2}:1", False),
])
def test_mysql_contains(a, b, expected):
    assert gtid.mysql_contains(a, b) is expected
    assert gtid.contains("mysql", a, b) is expected


@pytest.mark.parametrize("a,b,expected", [
    ("", "", ""),
    (f"{U1}:1-5", "", f"{U1}:1-5"),
    (f"{U1}:1-5", f"{U1}:1-5", ""),
    (f"{U1}:1-10", f"{U1}:3-4:8", f"{U1}:1-2:5-7:9-10"),
    (f"{U1}:1-10", f"{U1}:1-3", f"{U1}:4-10"),
    (f"{U1}:1-10", f"{U1}:8-20", f"{U1}:1-7"),
    (f"{U1}:1-5,{U2}:1-3", f"{U1}:1-5", f"{U2}:1-3"),
    (f"{U1}:5", f"{U1}:1-4:6-9", f"{U1}:5"),
    (f"{U1}:1-3", f"{U2}:1-3", f"{U1}:1-3"),
])
def test_mysql_subtract(a, b, expected):
    assert gtid.mysql_subtract(a, b) == expected
    assert gtid.subtract("mysql", a, b) == expected


def test_mysql_count_and_union():
    assert gtid.mysql_count("") == 0
    assert gtid.mysql_count(f"{U1}:1-5:7,{U2}:1-3") == 9
    assert gtid.mysql_union(f"{U1}:1-3", f"{U1}:4-6,{U2}:2") == f"{U1}:1-6,{U2}:2"


def test_mysql_interval_math_matches_python_sets():
    """Subtract/contains against a brute-force model over random small sets."""
    rnd = random.Random(7)

    def rand_set():
        nums = {n for n in range(1, 30) if rnd.random() < 0.4}
        return nums, ",".join(f"{U1}:{n}" for n in sorted(nums))

    for _ in range(300):
        na, a = rand_set()
        nb, b = rand_set()
        diff = gtid.parse_mysql(gtid.mysql_subtract(a, b)).get(U1, [])
        got = set(itertools.chain.from_iterable(range(s, e + 1) for s, e in diff))
        assert got == na - nb
        assert gtid.mysql_contains(a, b) is (nb <= na)
        assert gtid.mysql_count(a) == len(na)

"""GTID arithmetic, pure functions. Two dialects:

* MariaDB positions: ``D-S-N[,D-S-N...]`` (domain, server_id, sequence). A position keeps one GTID per
  domain, and sequence numbers grow monotonically within a domain (gtid_strict_mode), so "has every
  transaction of" means "per domain, a sequence at least as high".

  Limit: a position does not record history. Two servers that both wrote sequence N in a domain (a
  split brain) look identical here except for the server id, and a position that is AHEAD of another
  with a different history is still reported as containing it. ``mariadb_subtract`` reports only
  sequence numbers above the other side's; same-seq divergence and divergence below that point are
  not visible from positions alone (ha.py/analysis.mariadb_errant adds the promotion point for that).

* MySQL GTID sets: ``uuid:1-5:7,uuid2:1-3`` (also 8.3+ tagged ``uuid:tag:1-5``), compared with exact
  interval arithmetic. Whitespace and newlines (as SHOW output wraps them) are ignored.
"""
from __future__ import annotations

import re
from typing import Dict, List, Tuple

from .errors import PilotError

Intervals = List[Tuple[int, int]]          # sorted, merged, inclusive
MySQLSet = Dict[str, Intervals]            # key: lower-case "uuid" or "uuid:tag"
MariaDBPos = Dict[int, Tuple[int, int]]    # domain -> (server_id, seq)

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_TAG = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,31}$")
_WS = re.compile(r"\s+")


def _bad(text: str, why: str) -> PilotError:
    shown = text if len(text) <= 120 else text[:117] + "..."
    return PilotError(f"cannot parse GTID {shown!r}: {why}")


# ---- MariaDB --------------------------------------------------------------------------------------

def parse_mariadb(text: str) -> MariaDBPos:
    """``"0-1-5,1-2-9"`` -> ``{0: (1, 5), 1: (2, 9)}``. If a domain repeats (gtid_binlog_state lists one
    GTID per domain and server), the highest sequence wins."""
    out: MariaDBPos = {}
    for part in _WS.sub("", text or "").split(","):
        if not part:
            continue
        bits = part.split("-")
        if len(bits) != 3 or not all(b.isdigit() for b in bits):
            raise _bad(text, f"{part!r} is not domain-server-sequence")
        dom, srv, seq = (int(b) for b in bits)
        if dom not in out or seq > out[dom][1]:
            out[dom] = (srv, seq)
    return out


def format_mariadb(pos: MariaDBPos) -> str:
    return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(pos.items()))


def mariadb_contains(a: str, b: str) -> bool:
    pa, pb = parse_mariadb(a), parse_mariadb(b)
    return all(dom in pa and pa[dom][1] >= seq for dom, (_srv, seq) in pb.items())


def mariadb_subtract(a: str, b: str) -> str:
    """Entries of ``a`` whose sequence is beyond ``b``'s in the same domain (or whose domain ``b`` lacks)."""
    pa, pb = parse_mariadb(a), parse_mariadb(b)
    return format_mariadb({d: v for d, v in pa.items() if d not in pb or v[1] > pb[d][1]})


def mariadb_count(a: str) -> int:
    """Transactions since the start of each domain: the sum of sequences (sequences start at 1)."""
    return sum(seq for _srv, seq in parse_mariadb(a).values())


# ---- MySQL ----------------------------------------------------------------------------------------

def _merge(iv: Intervals) -> Intervals:
    out: Intervals = []
    for s, e in sorted(iv):
        if out and s <= out[-1][1] + 1:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def parse_mysql(text: str) -> MySQLSet:
    """``"uuid:1-5:7,uuid2:1-3"`` -> ``{"uuid": [(1, 5), (7, 7)], "uuid2": [(1, 3)]}``."""
    raw: Dict[str, Intervals] = {}
    for part in _WS.sub("", text or "").split(","):
        if not part:
            continue
        bits = part.split(":")
        uuid = bits[0].lower()
        if not _UUID.match(uuid):
            raise _bad(text, f"{bits[0]!r} is not a server uuid")
        if len(bits) < 2:
            raise _bad(text, f"{part!r} has no transaction interval")
        key = uuid
        for tok in bits[1:]:
            m = re.match(r"^(\d+)(?:-(\d+))?$", tok)
            if m:
                s = int(m.group(1))
                e = int(m.group(2)) if m.group(2) else s
                if s < 1 or e < s:
                    raise _bad(text, f"interval {tok!r} is empty or starts below 1")
                raw.setdefault(key, []).append((s, e))
            elif _TAG.match(tok):
                key = f"{uuid}:{tok.lower()}"
            else:
                raise _bad(text, f"{tok!r} is neither an interval nor a tag")
    return {k: _merge(v) for k, v in raw.items() if v}


def format_mysql(gs: MySQLSet) -> str:
    parts = []
    for key in sorted(gs):
        if not gs[key]:
            continue
        ivs = ":".join(f"{s}-{e}" if e > s else f"{s}" for s, e in gs[key])
        parts.append(f"{key}:{ivs}")
    return ",".join(parts)


def _iv_subtract(a: Intervals, b: Intervals) -> Intervals:
    out: Intervals = []
    for s, e in a:
        cur = s
        for bs, be in b:
            if be < cur or bs > e:
                continue
            if bs > cur:
                out.append((cur, bs - 1))
            cur = max(cur, be + 1)
            if cur > e:
                break
        if cur <= e:
            out.append((cur, e))
    return out


def mysql_subtract_sets(a: MySQLSet, b: MySQLSet) -> MySQLSet:
    out: MySQLSet = {}
    for key, iv in a.items():
        rest = _iv_subtract(iv, b.get(key, []))
        if rest:
            out[key] = rest
    return out


def mysql_subtract(a: str, b: str) -> str:
    return format_mysql(mysql_subtract_sets(parse_mysql(a), parse_mysql(b)))


def mysql_contains(a: str, b: str) -> bool:
    return not mysql_subtract_sets(parse_mysql(b), parse_mysql(a))


def mysql_count(a: str) -> int:
    return sum(e - s + 1 for iv in parse_mysql(a).values() for s, e in iv)


def mysql_union(a: str, b: str) -> str:
    return mysql_union_all((a, b))


def mysql_union_all(sets) -> str:
    """The union of many GTID set texts (e.g. one per binlog event) in one pass."""
    merged: MySQLSet = {}
    for text in sets:
        for k, iv in parse_mysql(text).items():
            merged.setdefault(k, []).extend(iv)
    return format_mysql({k: _merge(iv) for k, iv in merged.items()})


# ---- dialect switch -------------------------------------------------------------------------------

def contains(dialect: str, a: str, b: str) -> bool:
    """True if ``a`` holds every transaction of ``b``. ``dialect`` is "mariadb" or "mysql"."""
    return mariadb_contains(a, b) if dialect == "mariadb" else mysql_contains(a, b)


def subtract(dialect: str, a: str, b: str) -> str:
    """What ``a`` has that ``b`` lacks, formatted in the dialect; "" if nothing."""
    return mariadb_subtract(a, b) if dialect == "mariadb" else mysql_subtract(a, b)


def union_all(dialect: str, sets) -> str:
    """Everything in any of `sets` (MariaDB: per domain, the highest sequence)."""
    if dialect != "mariadb":
        return mysql_union_all(sets)
    return format_mariadb(parse_mariadb(",".join(s for s in sets if s)))


def count(dialect: str, a: str) -> int:
    return mariadb_count(a) if dialect == "mariadb" else mysql_count(a)


def lacking(dialect: str, a: str, b: str) -> int:
    """How many transactions of ``a`` ``b`` lacks (MariaDB: per domain, the sequences ``b`` is behind)."""
    if dialect != "mariadb":
        return mysql_count(mysql_subtract(a, b))
    pa, pb = parse_mariadb(a), parse_mariadb(b)
    return sum(max(0, seq - pb.get(d, (0, 0))[1]) for d, (_srv, seq) in pa.items())


def problem(dialect: str, text: str) -> str:
    """Why `text` is not a GTID position of `dialect` ("": either dialect will do), or "" if it is one."""
    why = ""
    for d in ([dialect] if dialect else ["mariadb", "mysql"]):
        try:
            parse_mariadb(text) if d == "mariadb" else parse_mysql(text)
            return ""
        except PilotError as exc:
            why = why or str(exc)
    return why

"""Reads a raw binary log's event headers: where each transaction starts, its GTID and its time.

The archive cuts segments only at event boundaries and records, per segment, which transactions it
holds, so that a restore can stop at a second or a GTID by truncating a file at a transaction's start.
Only the v4 header (19 bytes) and the GTID events of both flavors are read; everything else is skipped
by its length. Pure: bytes in, facts out.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import List, Optional

from . import gtid as gtidlib

MAGIC = b"\xfebin"
HEADER = 19
ROTATE, FORMAT_DESCRIPTION = 4, 15
MYSQL_GTID, MYSQL_ANONYMOUS_GTID, MYSQL_PREVIOUS_GTIDS, MYSQL_GTID_TAGGED = 33, 34, 35, 42
MARIADB_GTID, MARIADB_GTID_LIST = 162, 163


class BinlogFormatError(ValueError):
    """The bytes are not a binary log this reader understands."""


@dataclass(frozen=True)
class Txn:
    gtid: str           # one GTID in the dialect's text form
    offset: int         # file offset of its GTID event: truncating the file here leaves it out
    ts: int             # the GTID event's header timestamp (seconds since the epoch, the source's commit)


@dataclass
class Scan:
    end: int                                    # file offset just past the last whole event read
    txns: List[Txn] = field(default_factory=list)
    start_set: Optional[str] = None             # the file's Gtid_list / Previous_gtids: all before it
    last_ts: int = 0                            # newest event timestamp seen (0: none)


def _uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _mariadb_gtid_list(body: bytes) -> str:
    (n,) = struct.unpack_from("<I", body, 0)
    n &= 0x0FFFFFFF                              # the top four bits are flags
    parts = []
    for i in range(n):
        dom, srv, seq = struct.unpack_from("<IIQ", body, 4 + 16 * i)
        parts.append(f"{dom}-{srv}-{seq}")
    return gtidlib.format_mariadb(gtidlib.parse_mariadb(",".join(parts)))


def _mysql_previous(body: bytes) -> str:
    (n,) = struct.unpack_from("<Q", body, 0)
    pos, out = 8, {}
    for _ in range(n):
        sid = _uuid(body[pos:pos + 16])
        (k,) = struct.unpack_from("<Q", body, pos + 16)
        pos += 24
        ivs = []
        for _ in range(k):
            start, end = struct.unpack_from("<qq", body, pos)
            pos += 16
            ivs.append((start, end - 1))         # stored half-open
        out[sid] = ivs
    return gtidlib.format_mysql(out)


def scan(buf: bytes, base: int, dialect: str) -> Scan:
    """Walk the whole events in `buf`, which holds the file's bytes from offset `base` (0: the file's
    start, magic included; otherwise an event boundary). A trailing partial event is left for later."""
    pos = 0
    if base == 0:
        if len(buf) < 4:
            return Scan(end=0)
        if buf[:4] != MAGIC:
            raise BinlogFormatError("no binary log magic at the start of the file")
        pos = 4
    out = Scan(end=base + pos)
    while len(buf) - pos >= HEADER:
        ts, etype, srv, size, _next, _flags = struct.unpack_from("<IBIIIH", buf, pos)
        if size < HEADER:
            raise BinlogFormatError(f"event at offset {base + pos} claims {size} bytes")
        if len(buf) - pos < size:
            break
        body = buf[pos + HEADER:pos + size]
        where = base + pos
        if etype == MARIADB_GTID and dialect == "mariadb":
            seq, dom = struct.unpack_from("<QI", body, 0)
            out.txns.append(Txn(f"{dom}-{srv}-{seq}", where, ts))
        elif etype == MYSQL_GTID and dialect == "mysql":
            gno = struct.unpack_from("<q", body, 17)[0]
            out.txns.append(Txn(f"{_uuid(body[1:17])}:{gno}", where, ts))
        elif etype == MYSQL_GTID_TAGGED:
            raise BinlogFormatError(f"tagged GTID event at offset {where}: tagged GTIDs are not supported")
        elif etype == MARIADB_GTID_LIST and dialect == "mariadb" and out.start_set is None:
            out.start_set = _mariadb_gtid_list(body)
        elif etype == MYSQL_PREVIOUS_GTIDS and dialect == "mysql" and out.start_set is None:
            out.start_set = _mysql_previous(body)
        if ts:
            out.last_ts = max(out.last_ts, ts)
        pos += size
        out.end = base + pos
    return out

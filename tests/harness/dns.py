"""A minimal DNS client (one A query over UDP) for asking Consul's DNS interface what clients resolve,
without a resolver library."""
import random
import socket
import struct
from typing import List


def query_a(server: str, port: int, name: str, timeout: float = 2.0) -> List[str]:
    """The A records `server`:`port` answers for `name` ([] for NXDOMAIN or no answer)."""
    qid = random.randint(0, 0xFFFF)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"
    q += struct.pack(">HH", 1, 1)                       # type A, class IN
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, (server, port))
        data, _ = s.recvfrom(4096)
    rid, flags, qd, an, _ns, _ar = struct.unpack(">HHHHHH", data[:12])
    assert rid == qid, "DNS answer to another query"
    off = 12
    for _ in range(qd):
        off = _skip_name(data, off) + 4
    out = []
    for _ in range(an):
        off = _skip_name(data, off)
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[off:off + 10])
        off += 10
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(data[off:off + 4]))
        off += rdlen
    return sorted(out)


def _skip_name(data: bytes, off: int) -> int:
    while True:
        n = data[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:                            # a compression pointer ends the name
            return off + 2
        off += n + 1

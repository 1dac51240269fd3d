"""Free TCP ports on loopback for the servers `mysqlpilot local` and the tests start."""
from __future__ import annotations

import socket
from typing import List, Sequence


def free_ports(n: int, host: str = "127.0.0.1", avoid: Sequence[int] = ()) -> List[int]:
    """n distinct ports free on host now. The sockets are held open together: picked one at a time,
    the kernel may hand out the same port twice (seen: SeaweedFS's S3 and filer ports collided)."""
    socks: List[socket.socket] = []
    ports: List[int] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            socks.append(s)                 # kept bound even when avoided, so it is not offered again
            s.bind((host, 0))
            port = s.getsockname()[1]
            if port not in avoid:
                ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]

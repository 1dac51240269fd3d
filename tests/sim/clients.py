"""Clients that write and record what they were told: "acked" only on an OK, "failed" on an error,
"unknown" when a client with a read timeout gave up waiting (never "acked" afterwards, whatever the
server does later). The world's own client writes without a read timeout; these add a client that
reconnects after its connection was killed and writes again at once, and clients with a read timeout."""
from __future__ import annotations

from typing import Optional

READ_TIMEOUT = 1.0        # seconds a timing-out client waits for its commit's OK


def write(world, name: str, timeout: Optional[float] = None) -> Optional[int]:
    m = world.mysqld[name]
    if not m.accepts_writes():
        return None
    wid = len(world.writes) + 1
    world.writes[wid] = {"node": name, "gtid": None, "state": "pending", "t": world.now}
    world.writes[wid]["gtid"] = m.commit(wid)
    if timeout is not None:
        world.at(timeout, "", "client-timeout", lambda: gave_up(world, wid))
    return wid


def gave_up(world, wid: int) -> None:
    w = world.writes[wid]
    if w["state"] == "pending":
        w["state"] = "unknown"


def reconnect(world, name: str) -> None:
    """A killed client's pool reconnects within milliseconds and writes again."""
    world.at(world.rng.uniform(0.0005, 0.004), "", "client-retry", lambda: write(world, name))


def with_timeouts(world) -> None:
    """A client with a read timeout: a commit not answered in READ_TIMEOUT is recorded "unknown"."""
    write(world, world.rng.choice(world.names), READ_TIMEOUT)
    world.at(world.rng.uniform(0.1, 0.6), "", "client-rt", lambda: with_timeouts(world))

"""Two faults on what the code under test reads and writes: hostile values in Consul keys (garbage, wrong
types, huge numbers in leader, members/*, switchover, the release marker, history, snapshots/latest), and
a state dir that takes no write (ENOSPC). Each heals: the key gets its value back unless someone wrote it
since, the disk gets room."""
from __future__ import annotations

import errno
import json
import random
from typing import Callable, Set

from mysqlpilot.errors import PilotError

KEYS = ("leader", "members/", "switchover", "release", "history", "snapshots/latest")

VALUES = ("garbage{", "", "null", "[]", "{}", "42", '"a string"', "1e999", str(2 ** 80), "-1", "true",
          json.dumps({"name": 12, "host": None, "port": "x", "server_id": 2 ** 70, "since": "yesterday",
                      "promoted": "yes", "released": [1, 2]}),
          json.dumps({"to": ["n1"], "from": {}, "kind": 7, "lock_index": "3", "requested": 1e308}),
          json.dumps({"name": "n9", "released": {"name": "n9", "at": 1e300, "lock_index": -5, "to": 3,
                                                 "reason": None, "fenced_at": "now"}}),
          json.dumps([{"kind": "failover", "time": "soon"}, 5, None, {"new_primary": ["x"]}]),
          json.dumps({"id": None, "created": -1e308, "object_key": 5, "bytes": "many", "sha256": 1}),
          json.dumps({"name": "n1", "alive": "yes", "gtid_executed": 5, "lag_seconds": "slow",
                      "priority": 2 ** 64, "healthy": [], "role": {}}))


class DiskFull(OSError, PilotError):
    """ENOSPC from a state file write. Also a PilotError so the sim's scheduler reports the pass as
    failed (as the real loop survives it) instead of as a crash."""


class StateStore(dict):
    """The world's state files (state dir -> JSON text); a write into a full dir raises ENOSPC. Only the
    node's processes write through here (run-mysqld's rebuild bookkeeping is the world's own)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.full: Set[str] = set()
        self.world = None

    def __setitem__(self, key, value):
        if key in self.full and self.world is not None and self.world.current is not None \
                and self.world.current.node:
            raise DiskFull(errno.ENOSPC, "No space left on device", key + "/pilot-state.json")
        super().__setitem__(key, value)


class Hostile:
    def __init__(self, world):
        self.w = world

    def inject(self, sn, rng: random.Random, heal_after: Callable) -> bool:
        c = self.w.consul
        which = rng.choice(KEYS)
        key = f"members/{rng.choice(self.w.names)}" if which == "members/" else \
            ("leader" if which == "release" else which)
        value = rng.choice(VALUES)
        e = c.kv.get(key)
        if which == "release":
            if e is None or e.session is not None:
                return False             # a release marker lives only in a free leader key
        before = e.value if e is not None else None
        c.put(key, value)
        mod = c.kv[key].modify
        self.w.note(f"FAULT hostile value in {key}: {value[:60]!r}")

        def heal():
            cur = c.kv.get(key)
            if cur is None or cur.modify != mod:
                return                   # written since: nothing of ours left
            if before is None:
                c.delete_key(key)
            else:
                c.put(key, before)
        heal_after(rng, 0.5, 8.0, f"{key} has its value back", heal)
        return True


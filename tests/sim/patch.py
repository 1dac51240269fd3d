"""Everything the simulation replaces in mysqlpilot, in one place, installed for one run and undone after:
the clock (each module's `time`), mysqld connections, pid and socket probes, the fence backstop thread,
the state file (kept in memory per state dir, surviving a process restart), and background snapshots."""
from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Callable, Dict, Iterator, List, Tuple

from mysqlpilot import actions, candidates, failsafe_keeper, ha, handover, heartbeat, lease, mysqld, observer, prestop, \
    stopguard

from .clock import SimTime
from .coverage import recorders
from .speedups import speedups
from .mysqld import SimConn


class SimKilled(BaseException):
    """The process this frame belongs to was killed while it was blocked (not an Exception: nothing in
    the code under test may catch it)."""


class SimWouldBlock(BaseException):
    """A thread wants a lock another (blocked) thread of the same process holds: the event runs later."""


class SimLock:
    def __init__(self):
        self.held = False

    def __enter__(self):
        if self.held:
            raise SimWouldBlock()
        self.held = True
        return self

    def __exit__(self, *exc):
        self.held = False

    def acquire(self, blocking=True, timeout=-1):
        self.__enter__()
        return True

    def release(self):
        self.held = False


def _copy(v: Any) -> Any:
    """A copy of decoded JSON (faster than copy.deepcopy or another json.loads)."""
    if type(v) is dict:
        out = dict(v)
        for k, x in v.items():
            if type(x) is dict or type(x) is list:
                out[k] = _copy(x)
        return out
    if type(v) is list:
        return [_copy(x) for x in v]
    return v


class MemState:
    """StateFile's API over the world's memory: one JSON text per state dir, as the file holds. Every
    write still goes through json.dumps (what the file would hold); reads decode a text once per change
    (`parsed`, shared by every process of the node) and hand out copies."""

    def __init__(self, store: Dict[str, str], state_dir: str, parsed: Dict[str, Tuple[str, Dict[str, Any]]]):
        self.store, self.dir, self.path = store, state_dir, state_dir + "/pilot-state.json"
        store.setdefault(state_dir, "{}")
        self.parsed = parsed

    def _decoded(self) -> Dict[str, Any]:
        text = self.store[self.dir]
        got = self.parsed.get(self.dir)
        if got is None or got[0] is not text:
            got = self.parsed[self.dir] = (text, json.loads(text))
        return got[1]

    def read(self) -> Dict[str, Any]:
        return _copy(self._decoded())

    def get(self, key: str, default: Any = None) -> Any:
        v = self._decoded().get(key, default)
        return v if v is None or isinstance(v, (str, int, float, bool)) else _copy(v)

    def update(self, **kv: Any) -> None:
        def put(d):
            for k, v in kv.items():
                if v is None:
                    d.pop(k, None)
                else:
                    d[k] = v
        self.change(put)

    def change(self, fn: Callable[[Dict[str, Any]], None]) -> None:
        d = self.read()
        fn(d)
        old = self._decoded()
        if d == old:
            return                       # the same document: the file would not change
        text = json.dumps(d)
        self.store[self.dir] = text
        self.parsed[self.dir] = (text, json.loads(text))
        if any(d.get(k) != old.get(k) for k in LEASE_KEYS):
            WORLD[0].state_changed(self.dir)


# What the watchdog reads of the state file (lease.py): a change elsewhere cannot make it act.
LEASE_KEYS = (lease.KEY, lease.WRITER, lease.WRITER_END, lease.WRITER_MARKED)


class SimBackstop:
    """lease._Backstop without a thread: an event at the fence's deadline that stops mysqld unless the
    fence ended first."""

    def __init__(self, fencer, deadline: float, reason: str):
        self.fencer, self.deadline, self.reason = fencer, deadline, reason
        self._killed = None
        self._ended = False

    def start(self) -> None:
        WORLD[0].backstop(self)

    def fire(self) -> None:
        if not self._ended:
            self._killed = self.fencer.kill_mysqld()
            self._ended = True

    def end(self) -> bool:
        fired = self._killed is not None
        self._ended = True
        return fired

    def fired(self) -> bool:
        return self._killed is not None

    def result(self) -> str:
        return "mysqld killed" if self._killed else "mysqld down"


WORLD: List[Any] = [None]


@contextlib.contextmanager
def installed(world) -> Iterator[None]:
    simtime = SimTime(world)

    def server(flavor, host=None, port=None, socket=None, read_timeout=2, **kw):
        name = socket.rsplit("/", 1)[1].split(".")[0] if socket else world.host_to_name(host)
        return SimConn(world, name, read_timeout)

    def pid(cfg):
        return 1 if world.mysqld[cfg.node_name].up else None

    def accepts(cfg, timeout=0.3):
        return world.mysqld[cfg.node_name].up

    def stop(cfg, timeout=60):
        return world.stop_mysqld(cfg.node_name)

    @contextlib.contextmanager
    def no_lock(state_dir, blocking=True):
        yield True

    patches: List[Tuple[Any, str, Any]] = [(m, "time", simtime) for m in (ha, heartbeat, lease, observer, actions,
                                                                          handover, prestop, failsafe_keeper)]
    patches += [(ha, "Server", server), (candidates, "Server", server), (mysqld, "mysqld_pid", pid),
                (mysqld, "accepts_connections", accepts), (mysqld, "stop_mysqld", stop),
                (lease, "_Backstop", SimBackstop), (actions.Actions, "spawn_snapshot", lambda self, why: None),
                (ha, "StateFile", lambda d: MemState(world.states, d, world.parsed)), (ha, "ha_lock", no_lock),
                (prestop, "ha_lock", no_lock),
                # pre-stop's record tells a SIGTERMed watch it may stop; here the watch stops as pre-stop starts.
                (stopguard, "write_record", lambda *a, **kw: None)]
    patches += recorders(lambda: world.coverage) + speedups()
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    log = logging.getLogger("mysqlpilot")
    level, prev = log.level, WORLD[0]
    for obj, name, new in patches:
        setattr(obj, name, new)
    log.setLevel(logging.CRITICAL + 1 if not world.verbose else logging.DEBUG)
    WORLD[0] = world
    try:
        yield
    finally:
        for obj, name, old in saved:
            setattr(obj, name, old)
        log.setLevel(level)
        WORLD[0] = prev

"""The node's own small state between hook runs (session id, pending GTID seed, rebuild reason).

Hooks are separate processes; this JSON file under state_dir is how they hand facts to each other.
Writes are atomic (rename) and guarded by an fcntl lock. A cached session id is only a hint: callers
check it against Consul before trusting it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from typing import Any, Callable, Dict, Iterator, Optional


class StateFile:
    def __init__(self, state_dir: str):
        self.dir = state_dir
        self.path = os.path.join(state_dir, "pilot-state.json")

    def _read(self) -> Dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "pilot-state.lock"), "a") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lk, fcntl.LOCK_UN)

    def read(self) -> Dict[str, Any]:
        """Every key at once (one file read)."""
        return self._read()

    def get(self, key: str, default: Any = None) -> Any:
        return self._read().get(key, default)

    def update(self, **kv: Any) -> None:
        """Set keys; a value of None removes the key."""
        def put(data: Dict[str, Any]) -> None:
            for k, v in kv.items():
                if v is None:
                    data.pop(k, None)
                else:
                    data[k] = v
        self.change(put)

    def change(self, fn: Callable[[Dict[str, Any]], None]) -> None:
        """Read, let `fn` modify the dict in place, write: one step under the lock (keys that must agree)."""
        with self._locked():
            data = self._read()
            fn(data)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".pilot-state.")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, sort_keys=True)
            os.replace(tmp, self.path)


@contextlib.contextmanager
def ha_lock(state_dir: str, blocking: bool = True) -> Iterator[bool]:
    """Serialise the HA loop, on-change and pre-stop on one node: only one acts on mysqld at a time."""
    with _flock(state_dir, "ha.lock", blocking) as got:
        yield got


@contextlib.contextmanager
def snapshot_job_lock(state_dir: str, on_wait: Optional[Callable[[], None]] = None) -> Iterator[bool]:
    """One snapshot job at a time on this node (False: another one runs; with `on_wait`, it is called and
    the lock waited for instead). All of a node's jobs hold the Consul snapshot lock with the same session,
    its leader session, and Consul's acquire succeeds again for the session that holds it: that lock alone
    cannot keep two jobs of one node apart."""
    with _flock(state_dir, "snapshot.lock", False) as got:
        if got or on_wait is None:
            yield got
            return
    on_wait()
    with _flock(state_dir, "snapshot.lock", True) as got:
        yield got


def snapshot_running(state: "StateFile") -> bool:
    """This node's snapshot job is taking the cluster's snapshot (it records its pid; a killed job's
    leftover entry does not count)."""
    rec = state.get("snapshotting") or {}
    pid = rec.get("pid") if isinstance(rec, dict) else None
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


@contextlib.contextmanager
def _flock(state_dir: str, name: str, blocking: bool) -> Iterator[bool]:
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(state_dir, name), "a") as lk:
        try:
            fcntl.flock(lk, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lk, fcntl.LOCK_UN)

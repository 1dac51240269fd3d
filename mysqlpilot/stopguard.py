"""Keep mysqld running until pre-stop has handed the primary role over, whatever order ContainerPilot's
SIGTERMs arrive in.

The config wires `preStop` as `when: {source: "mysql", once: "stopping"}`, and the `mysql` job waits for
preStop's `stopped` (its stopTimeout) before it SIGTERMs mysqld. ContainerPilot 3.8 has a race there
(jobs/jobs.go): when the preStop job receives the mysql job's `stopping` event before the global
shutdown, it starts pre-stop and then halts at once: it SIGTERMs pre-stop's process group and publishes
`stopped`, and the mysql job SIGTERMs mysqld while the hand-over runs. It happened in about one
shutdown in six with the real binary (tests/unit/test_containerpilot_real.py shows it). So, under
ContainerPilot:

- `mysqlpilot pre-stop` ignores SIGTERM (ContainerPilot's top-level stopTimeout still bounds it with a
  SIGKILL) and records in `<state_dir>/pre-stop.json` that it runs and when it is done;
- `mysqlpilot run-mysqld` does not exec mysqld but runs it as a child in a process group of its own
  (ContainerPilot signals the job's group) that dies with this process (PR_SET_PDEATHSIG, so
  ContainerPilot's SIGKILL still reaches it). On SIGTERM it waits until pre-stop is done, or for one to
  start when none has yet (it is started by the same shutdown), then passes SIGTERM on to mysqld and
  exits with mysqld's status.

Under `mysqlpilot local`'s own supervisor (which has no such race) run-mysqld still execs mysqld.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from typing import Dict, List, Optional

from .mysqld import pid_exists
from .timeouts import PRE_STOP_BUDGET

log = logging.getLogger(__name__)

RECORD = "pre-stop.json"
WAIT_FOR_START = 10.0     # after SIGTERM, how long to wait for a pre-stop that has not started yet


def under_containerpilot(env: Optional[Dict[str, str]] = None) -> bool:
    """ContainerPilot sets CONTAINERPILOT_PID for every process it starts."""
    return bool((os.environ if env is None else env).get("CONTAINERPILOT_PID"))


# Not mysqld._alive: that one reaps, and the guard must leave mysqld's exit status to its parent.
_pid_alive = pid_exists


# ---- pre-stop's record ---------------------------------------------------------------------------
def write_record(state_dir: str, done: bool, pid: Optional[int] = None, beating: bool = False) -> None:
    """`beating`: pre-stop has renewed the session itself, so the SIGTERMed watch may stop its heartbeat."""
    body = {"pid": pid or os.getpid(), "time": time.time(), "done": done, "beating": beating}
    try:
        os.makedirs(state_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".pre-stop.")
        with os.fdopen(fd, "w") as fh:
            json.dump(body, fh)
        os.replace(tmp, os.path.join(state_dir, RECORD))
    except OSError as exc:      # the guard then waits WAIT_FOR_START at most, and goes on
        log.warning("cannot record pre-stop in %s: %s", state_dir, exc.strerror or exc)


def read_record(state_dir: str) -> Optional[Dict]:
    try:
        with open(os.path.join(state_dir, RECORD)) as fh:
            rec = json.load(fh)
        return rec if isinstance(rec, dict) else None
    except (OSError, ValueError):
        return None


def pre_stop_state(rec: Optional[Dict], since: float, pid_alive=_pid_alive) -> str:
    """What the guard should do about a pre-stop record, for a mysqld started at `since` (wall clock):
    'absent' (none of this run yet: wait a little for it), 'running' (wait), 'done' (stop mysqld)."""
    if not rec or float(rec.get("time", 0)) < since:
        return "absent"
    if rec.get("done"):
        return "done"
    pid = rec.get("pid")
    if isinstance(pid, int) and pid > 0 and pid_alive(pid):
        return "running"
    return "done"             # it died without saying so (SIGKILLed): nothing left to wait for


def watch_may_stop(rec: Optional[Dict], since: float, waited: float, pid_alive=_pid_alive,
                   budget: float = PRE_STOP_BUDGET) -> str:
    """For a SIGTERMed `watch` started at `since` (wall clock), `waited` seconds after the SIGTERM: why its
    heartbeat may stop now, or '' to keep it. Until pre-stop (a new process) has renewed the session, the
    watch's heartbeat is the only one: were it to stop, the liveness check would fail after check_ttl and a
    hand-over would turn into a failover."""
    state = pre_stop_state(rec, since, pid_alive)
    if state == "running" and rec and rec.get("beating"):
        return "pre-stop renews the session now"
    return _wait_over(state, waited, WAIT_FOR_START, budget)


def _wait_over(state: str, waited: float, wait_for_start: float, budget: float) -> str:
    """Why a wait on pre-stop (in `state`, `waited` seconds after SIGTERM) is over, or '' to go on waiting."""
    if state == "done":
        return "pre-stop is done"
    if state == "absent" and waited >= wait_for_start:
        return f"no pre-stop started within {wait_for_start:.0f}s"
    if waited >= budget:
        return f"pre-stop still runs after {budget:.0f}s"
    return ""


def wait_for_pre_stop(state_dir: str, since: float, term_at: float, stop: threading.Event) -> str:
    """The SIGTERMed watch's wait (its heartbeat runs meanwhile); returns why it may stop now. `term_at`
    is the monotonic time of the SIGTERM."""
    why = ""
    while not why and not stop.is_set():
        why = watch_may_stop(read_record(state_dir), since, time.monotonic() - term_at)
        if not why:
            stop.wait(0.1)
    return why or "stopped"


def ignore_termination() -> None:
    """pre-stop under ContainerPilot: a SIGTERM to its process group must not cut the hand-over short."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


# ---- run-mysqld's guard --------------------------------------------------------------------------
def _child_setup() -> None:          # in the child, before exec
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)          # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_guarded(argv: List[str], state_dir: str, budget: float = PRE_STOP_BUDGET,
                wait_for_start: float = WAIT_FOR_START) -> int:
    """Run mysqld (argv) as described above; returns the exit status to exit with."""
    started = time.time()
    term_at: List[float] = []

    def on_term(signum, frame) -> None:  # noqa: ARG001
        if not term_at:
            term_at.append(time.monotonic())

    for sig in (signal.SIGTERM, signal.SIGINT):          # before mysqld exists: no SIGTERM is missed
        signal.signal(sig, on_term)
    proc = subprocess.Popen(argv, preexec_fn=_child_setup)
    log.info("mysqld pid %s runs in a process group of its own until pre-stop is done", proc.pid)
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda s, f: proc.send_signal(s))
    forwarded = False
    said = ""
    while True:
        try:
            rc = proc.wait(0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        if term_at and not forwarded:
            state = pre_stop_state(read_record(state_dir), started)
            waited = time.monotonic() - term_at[0]
            if _wait_over(state, waited, wait_for_start, budget):
                log.info("SIGTERM: stopping mysqld (pre-stop %s after %.1fs)", state, waited)
                proc.send_signal(signal.SIGTERM)
                forwarded = True
            elif state != said:
                log.info("SIGTERM: mysqld keeps running while pre-stop is %s", state)
                said = state
    return rc if rc >= 0 else 128 - rc

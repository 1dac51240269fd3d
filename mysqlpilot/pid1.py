"""The image's PID 1: ContainerPilot runs as a child, so the container's exit status says why it ended.

ContainerPilot 3.8 as PID 1 forks a worker and exits 0 whatever the worker did (sup/sup.go), so a node
whose pre-start failed would look like a clean stop, and every stop sleeps out its stopTimeout. With this
parent, the preStartFailed job (`mysqlpilot prestart-failed`) leaves a marker and SIGKILLs ContainerPilot;
the parent sees the marker and exits PRESTART_FAILED (3) within a second or so, and Marathon replaces
the task. Otherwise the parent exits with ContainerPilot's own status (128 + N for signal N).

It forwards the platform's signals to the child and reaps orphans (as PID 1 it inherits them).
"""
from __future__ import annotations

import os
import signal
from typing import Callable, List, Mapping, Optional

PRESTART_FAILED = 3
MARKER_ENV = "MYSQLPILOT_PRESTART_FAILED_FILE"
MARKER_NAME = "prestart-failed"
FORWARD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def marker_path(state_dir: str) -> str:
    return os.path.join(state_dir, MARKER_NAME)


def exit_code(wait_status: int) -> int:
    """A shell's convention: the exit code, or 128 + N for a child killed by signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def verdict(child_status: int, marker_text: Optional[str]) -> int:
    """The container's exit status: PRESTART_FAILED when the preStartFailed job left its marker,
    else the child's."""
    return PRESTART_FAILED if marker_text is not None else exit_code(child_status)


def read_marker(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(2000).strip()
    except FileNotFoundError:
        return None


def clear_marker(path: str) -> None:
    """A marker from an earlier run of this container's volume says nothing about this one."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def supervise(argv: List[str], env: Mapping[str, str], marker: str,
              say: Callable[[str], None]) -> int:
    """Run argv as a child with env; forward signals; reap; return the container's exit status."""
    pending: List[int] = []
    child = {"pid": 0}

    def forward(signum, _frame):
        if child["pid"]:
            try:
                os.kill(child["pid"], signum)
            except ProcessLookupError:
                pass
        else:
            pending.append(signum)            # before the fork returned: delivered right after

    for sig in FORWARD:
        signal.signal(sig, forward)
    pid = os.fork()
    if pid == 0:                              # the child: default dispositions, then ContainerPilot
        try:
            for sig in FORWARD:
                signal.signal(sig, signal.SIG_DFL)
            os.execve(argv[0], argv, dict(env))
        finally:
            os._exit(127)
    child["pid"] = pid
    for sig in pending:
        os.kill(pid, sig)
    while True:                               # a signal's handler runs; Python retries the wait (PEP 475)
        try:
            got, status = os.waitpid(-1, 0)   # our child, or an orphan reparented to PID 1
        except ChildProcessError:
            return 1                          # cannot happen while the child lives; be safe
        if got == pid:
            break
    text = read_marker(marker)
    code = verdict(status, text)
    if text is not None:
        say(f"pre-start failed ({text}); exit {code} so that the platform starts a new task")
    return code


def stop_after_failed_prestart(env: Mapping[str, str], getppid: Callable[[], int] = os.getppid,
                               kill: Callable[[int, int], None] = os.kill) -> str:
    """The preStartFailed job: mark why, then SIGKILL ContainerPilot, which runs nothing yet that needs a
    clean stop (mysqld and the HA loop start only on pre-start's success). Not SIGTERM: ContainerPilot
    3.8 would sleep out its stopTimeout (180 s) first. Returns what it did, for the log; raises
    ValueError (one line) when it is not a job of ContainerPilot, and kills nothing then."""
    raw = env.get("CONTAINERPILOT_PID", "")
    if not raw.isdigit():
        raise ValueError("CONTAINERPILOT_PID is not set: this hook is for ContainerPilot's preStartFailed job "
                         "(docker/containerpilot.json5), not for a shell")
    pid = int(raw)
    if getppid() != pid:
        raise ValueError(f"CONTAINERPILOT_PID={pid} is not this process's parent ({getppid()}); "
                         "not stopping anything")
    marker, note = env.get(MARKER_ENV), ""
    if marker:
        try:
            with open(marker, "w", encoding="utf-8") as fh:
                fh.write("mysqlpilot pre-start exited non-zero; its error is in the log above")
        except OSError as exc:      # the parent then reports ContainerPilot's SIGKILL (137): still non-zero
            note = f" (could not write {marker}: {exc.strerror})"
    kill(pid, signal.SIGKILL)
    return (f"pre-start failed: stopped ContainerPilot (pid {pid}) so that the container exits and the "
            f"platform starts a new task{note}")

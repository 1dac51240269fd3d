"""The image's PID 1 (mysqlpilot/pid1.py, issue 24): ContainerPilot as a child, so that the container's
exit status says why it ended; and the preStartFailed job's hook. Real processes, no mocks of the OS."""
import os
import signal
import subprocess
import sys
import time

import pytest

from mysqlpilot import pid1

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def entry(tmp_path, *cmd, extra=None, timeout=60):
    """`mysqlpilot entrypoint -- CMD` as the parent (as PID 1 would be), with CMD's user left alone."""
    env = dict(os.environ, MYSQLPILOT_STATE_DIR=str(tmp_path / "state"), MYSQLPILOT_ENTRYPOINT_PARENT="1",
               MYSQLPILOT_MYSQLD_USER="root" if os.geteuid() == 0 else "nobody", **(extra or {}))
    env.pop("HOST", None)
    return subprocess.Popen([sys.executable, "-m", "mysqlpilot", "entrypoint", "--", *cmd], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_exit_status_is_the_childs_or_128_plus_its_signal():
    assert pid1.exit_code(0) == 0 and pid1.exit_code(5 << 8) == 5 and pid1.exit_code(signal.SIGKILL) == 137
    assert pid1.verdict(0, "pre-start exited non-zero") == pid1.PRESTART_FAILED == 3
    assert pid1.verdict(signal.SIGKILL, None) == 137


@pytest.mark.parametrize("script, code", [("exit 0", 0), ("exit 5", 5), ("kill -9 $$", 137)])
def test_the_parent_exits_with_its_childs_status(tmp_path, script, code):
    p = entry(tmp_path, "sh", "-c", script)
    out, err = p.communicate(timeout=30)
    assert p.returncode == code, err


def test_the_parent_forwards_sigterm_and_exits_with_the_childs_answer(tmp_path):
    p = entry(tmp_path, "sh", "-c", 'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.1; done')
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 7 and "got-term" in out, err


def test_a_marker_left_by_the_prestart_failed_job_makes_it_exit_3_with_one_line(tmp_path):
    # The child plays ContainerPilot's preStartFailed job: it writes the marker the parent named, then dies.
    p = entry(tmp_path, "sh", "-c", 'echo x > "$MYSQLPILOT_PRESTART_FAILED_FILE"; kill -9 $$')
    out, err = p.communicate(timeout=30)
    assert p.returncode == pid1.PRESTART_FAILED
    lines = [ln for ln in err.splitlines() if "pre-start failed" in ln]
    assert len(lines) == 1 and "new task" in lines[0] and "Traceback" not in err


def test_a_marker_from_an_earlier_run_is_cleared(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / pid1.MARKER_NAME).write_text("old")
    p = entry(tmp_path, "true")
    p.communicate(timeout=30)
    assert p.returncode == 0 and not (tmp_path / "state" / pid1.MARKER_NAME).exists()


def test_the_hook_kills_only_its_own_containerpilot(tmp_path):
    killed = []
    with pytest.raises(ValueError, match="CONTAINERPILOT_PID is not set"):
        pid1.stop_after_failed_prestart({}, getppid=lambda: 10, kill=lambda *a: killed.append(a))
    with pytest.raises(ValueError, match="not this process's parent"):
        pid1.stop_after_failed_prestart({"CONTAINERPILOT_PID": "11"}, getppid=lambda: 10,
                                        kill=lambda *a: killed.append(a))
    assert killed == []
    marker = tmp_path / "m"
    msg = pid1.stop_after_failed_prestart({"CONTAINERPILOT_PID": "10", pid1.MARKER_ENV: str(marker)},
                                          getppid=lambda: 10, kill=lambda *a: killed.append(a))
    assert killed == [(10, signal.SIGKILL)] and marker.exists() and "pid 10" in msg
    # A marker it cannot write still stops ContainerPilot (the parent then reports 137), and says why.
    msg = pid1.stop_after_failed_prestart({"CONTAINERPILOT_PID": "10", pid1.MARKER_ENV: str(tmp_path / "no" / "m")},
                                          getppid=lambda: 10, kill=lambda *a: killed.append(a))
    assert len(killed) == 2 and "could not write" in msg

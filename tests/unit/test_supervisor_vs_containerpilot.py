"""`mysqlpilot local`'s supervisor against the real ContainerPilot 3.8.0, on a config of shell jobs shaped
like docker/containerpilot.json5 (a service job with a preStop on its `stopping`, a long-running loop, a
periodic job with and without a timeout). Both run the same file; the jobs log what they saw; the same
facts must hold for both. No Consul (no job has a port), so no cluster lock is needed.

What is compared (ContainerPilot semantics the shipped config relies on):
- a periodic job runs at start and every interval; without `timeout` it is SIGKILLed at its interval,
  with one it may run longer;
- on SIGTERM every job gets `stopping` at once: the long-running loop is SIGTERMed before preStop is
  done, preStop starts, periodic jobs start no more;
- whatever ignores SIGTERM is SIGKILLed once the top-level stopTimeout has passed.

ContainerPilot queues a periodic job's timer events while a run lasts longer than the interval and then
runs them back to back, even after SIGTERM (its job loop is blocked in the run); the supervisor skips
ticks instead. With the shipped snapshot job that only means a few extra `mysqlpilot snapshot` calls that
find nothing due, so it is not compared.

One thing differs on purpose: ContainerPilot 3.8 often SIGTERMs the service job (and preStop) right after
preStop starts instead of waiting for it (see mysqlpilot/stopguard.py), so "the service is stopped only
after preStop" is asserted for the supervisor alone.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.harness.containerpilot import CP, REPO

SCRIPTS = {
    "svc": "trap 'say TERM; exit 0' TERM; say start; while true; do sleep 0.1; done",
    "loop": "trap 'say TERM; exit 0' TERM; say start; while true; do sleep 0.1; done",
    # pre-stop ignores SIGTERM under ContainerPilot (stopguard.py); so does this one
    "stopper": "trap '' TERM; say start; sleep 2; say end",
    "slow": "say start; sleep 2.5; say end",
    "timed": "say start; sleep 2.5; say end",
    "stubborn": "trap 'say TERM' TERM; say start; while true; do sleep 0.1; done",
}


def config(d, sock: str) -> str:
    for name, body in SCRIPTS.items():
        (d / f"{name}.sh").write_text(f'say() {{ echo "$(date +%s.%N) {name} $1 $$" >> {d}/events.log; }}\n'
                                      f"{body}\n")

    def ex(name):
        return f'["sh", "{d}/{name}.sh"]'
    return f"""{{
  consul: "127.0.0.1:1",
  stopTimeout: 2,
  logging: {{level: "INFO", format: "default", output: "stdout"}},
  jobs: [
    {{name: "pre", exec: ["true"], restarts: "never"}},
    {{name: "svc", exec: {ex("svc")}, when: {{source: "pre", once: "exitSuccess"}}, stopTimeout: "20s"}},
    {{name: "loop", exec: {ex("loop")}, when: {{source: "pre", once: "exitSuccess"}}}},
    {{name: "stopper", exec: {ex("stopper")}, when: {{source: "svc", once: "stopping"}}}},
    {{name: "slow", exec: {ex("slow")}, when: {{interval: "1s"}}}},
    {{name: "timed", exec: {ex("timed")}, when: {{interval: "1s"}}, timeout: "30s"}},
    {{name: "stubborn", exec: {ex("stubborn")}, when: {{source: "pre", once: "exitSuccess"}}}},
  ],
  control: {{socket: "{sock}"}},
}}"""


def run(kind, tmp_path, up_for=4.5):
    d = tmp_path / kind
    d.mkdir()
    log = d / "events.log"
    cfg = d / "cp.json5"
    cfg.write_text(config(d, f"/tmp/mp-cpcmp-{os.getpid()}-{kind}.sock"))
    env = dict(os.environ, MYSQLPILOT_NODE="n1", PYTHONPATH=REPO)
    if kind == "containerpilot":
        argv = [CP, "-config", str(cfg)]
    else:
        argv = [sys.executable, "-m", "mysqlpilot.local.supervisor", "--config", str(cfg), "--node-dir", str(d)]
    p = subprocess.Popen(argv, env=env, stdout=open(d / "out.log", "wb"), stderr=subprocess.STDOUT,
                         start_new_session=True)
    try:
        time.sleep(up_for)
        t_term = time.time()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(60)
        t_exit = time.time()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    events = []
    for line in log.read_text().splitlines():
        t, name, what, pid = line.split()
        events.append((float(t), name, what, int(pid)))
    return {"rc": rc, "term": t_term, "exit": t_exit, "events": events, "out": (d / "out.log").read_text()}


def facts(r):
    ev = r["events"]
    t_term = r["term"]

    def first(name, what):
        return next((t for t, n, w, _ in ev if n == name and w == what), None)

    def count(name, what, after=None):
        return sum(1 for t, n, w, _ in ev if n == name and w == what and (after is None or t > after))
    stubborn_pid = next(pid for t, n, w, pid in ev if n == "stubborn" and w == "start")
    alive = True
    try:
        os.kill(stubborn_pid, 0)
    except ProcessLookupError:
        alive = False
    return {
        "periodic job ran again at its interval": count("slow", "start") >= 2,
        "periodic job without a timeout killed at its interval": count("slow", "end") == 0,
        "periodic job with a timeout ran past its interval": count("timed", "end") >= 1,
        "no periodic start after SIGTERM": count("slow", "start", after=t_term + 0.2) == 0,
        "preStop started on SIGTERM": count("stopper", "start") == 1 and first("stopper", "start") > t_term,
        "preStop ran to its end": count("stopper", "end") == 1,
        "long-running job SIGTERMed before preStop ended":
            first("loop", "TERM") is not None and first("loop", "TERM") < first("stopper", "end"),
        "service SIGTERMed": first("svc", "TERM") is not None,
        "job ignoring SIGTERM was SIGKILLed": first("stubborn", "TERM") is not None and not alive,
        "exited": r["rc"] is not None,
    }


@pytest.mark.skipif(CP is None, reason="no ContainerPilot binary (MYSQLPILOT_CONTAINERPILOT)")
def test_supervisor_does_what_containerpilot_does(tmp_path):
    cp = run("containerpilot", tmp_path)
    sup = run("supervisor", tmp_path)
    f_cp, f_sup = facts(cp), facts(sup)
    assert f_cp == f_sup, (f_cp, f_sup, cp["out"][-3000:], sup["out"][-3000:])
    assert all(f_cp.values()), f_cp
    # The supervisor stops the service only after its preStop, as ContainerPilot means to.
    svc_term = next(t for t, n, w, _ in sup["events"] if n == "svc" and w == "TERM")
    stop_end = next(t for t, n, w, _ in sup["events"] if n == "stopper" and w == "end")
    assert svc_term > stop_end
    # SIGKILL of the stubborn job came after the top-level stopTimeout, not before: both took at least it.
    for r in (cp, sup):
        assert r["exit"] - r["term"] >= 2.0

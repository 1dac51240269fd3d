"""A small ContainerPilot-v3-compatible supervisor for one node of `mysqlpilot local`.

`mysqlpilot local` uses it where the real ContainerPilot is not available. It follows
docker/containerpilot.json5 as ContainerPilot 3.8.0 does on everything that file uses (checked against the
real binary in tests/unit/test_supervisor_vs_containerpilot.py):

- jobs start on events (`exitSuccess`, `healthy`, `changed`, `stopping`, ...); restarts;
- health checks heartbeat a TTL check in Consul, and are killed after their `timeout`;
- a periodic job (`when.interval`) runs at start and then every interval, never two at once; its
  `timeout` defaults to the interval, after which its whole process tree is SIGKILLed;
- on SIGTERM every job gets `stopping` at once: health checks, watches and periodic timers stop, jobs
  triggered by `stopping` (preStop) start, every other job is SIGTERMed at once except a job something
  waits on (the service job: it is SIGTERMed once its preStop exited, or after its own `stopTimeout`);
  once all of that is done, whatever still runs after the top-level `stopTimeout` (default 5 s) is
  SIGKILLed.

Unlike ContainerPilot 3.8, it exits as soon as every job has exited (ContainerPilot sleeps out the whole
stopTimeout first), and it does not put each job in a process group of its own (`local pause/kill` signal
the node's whole group), so "the job's group" is its process tree here.

    python -m mysqlpilot.local.supervisor --config docker/containerpilot.json5 --node-dir DIR
"""
from __future__ import annotations

import argparse
import logging
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from ..dcs.base import ServiceCheck
from ..dcs.consul import ConsulDCS
from ..errors import PilotError
from . import cp_config

log = logging.getLogger("mysqlpilot.supervisor")


def process_tree(pid: int) -> List[int]:
    """pid and all its descendants (from /proc), parents first."""
    children: Dict[int, List[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, i = [pid], 0
    while i < len(out):
        out += children.get(out[i], [])
        i += 1
    return out


def signal_tree(pid: int, sig: int) -> None:
    for p in process_tree(pid):
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


class Job:
    def __init__(self, spec: Dict[str, Any], node: str):
        self.spec = spec
        self.name: str = spec["name"]
        self.exec = spec.get("exec")
        self.when: Dict[str, Any] = spec.get("when") or {}
        self.health: Optional[Dict[str, Any]] = spec.get("health")
        self.port = spec.get("port")
        r = spec.get("restarts", "never")
        self.restarts = -1 if r == "unlimited" else (0 if r in ("never", None) else int(r))
        self.stop_timeout = cp_config.duration(spec.get("stopTimeout"), 10.0)
        every = self.when.get("interval")
        self.interval = cp_config.duration(every) if every else 0.0
        # ContainerPilot: a job's exec timeout; a periodic job's defaults to its interval.
        self.timeout = cp_config.duration(spec.get("timeout"), self.interval)
        self.service_id = f"{self.name}-{node}"
        self.check_id = f"service:{self.service_id}"
        self.proc: Optional[subprocess.Popen] = None
        self.started_once = False
        self.restarted = 0
        self.healthy: Optional[bool] = None
        self.lock = threading.Lock()

    def address(self) -> str:
        for iface in self.spec.get("interfaces") or []:
            if str(iface).startswith("static:") and len(str(iface)) > 7:
                return str(iface)[7:]
        return "127.0.0.1"


class Supervisor:
    def __init__(self, cfg: Dict[str, Any], node_dir: str, env: Dict[str, str]):
        self.cfg = cfg
        self.node_dir = node_dir
        self.env = dict(env, CONTAINERPILOT_PID=str(os.getpid()))   # as ContainerPilot sets for its jobs
        self.node = env.get("MYSQLPILOT_NODE") or env.get("HOSTNAME") or socket.gethostname()
        host, port = str(cfg["consul"]).rsplit(":", 1)
        # As ContainerPilot reads its Consul settings: scheme, CA, client certificate and token from the env.
        cert = (env["CONSUL_CLIENT_CERT"], env.get("CONSUL_CLIENT_KEY", "")) if env.get("CONSUL_CLIENT_CERT") else None
        self.dcs = ConsulDCS(host, int(port), "unused", self.node, scheme=env.get("CONSUL_HTTP_SCHEME") or "http",
                             token=env.get("CONSUL_HTTP_TOKEN") or None, ca=env.get("CONSUL_CACERT") or None,
                             cert=cert)
        self.jobs: Dict[str, Job] = {j["name"]: Job(j, self.node) for j in cfg.get("jobs", [])}
        self.events: "queue.Queue" = queue.Queue()
        self.stopping = threading.Event()
        self.logs = os.path.join(node_dir, "logs")
        os.makedirs(self.logs, exist_ok=True)

    # ---- processes ---------------------------------------------------------------------------
    def argv(self, cmd) -> List[str]:
        parts = [str(c) for c in cmd] if isinstance(cmd, list) else shlex.split(cmd)   # both forms, as CP
        if parts and parts[0] == "mysqlpilot":
            return [sys.executable, "-m", "mysqlpilot"] + parts[1:]   # this checkout, this interpreter
        return parts

    def spawn(self, cmd: str, logname: str) -> subprocess.Popen:
        out = open(os.path.join(self.logs, f"{logname}.log"), "ab")
        try:
            return subprocess.Popen(self.argv(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env, cwd=self.node_dir)
        finally:
            out.close()

    def start_job(self, job: Job) -> None:
        with job.lock:
            if self.stopping.is_set() and (job.when.get("once") != "stopping"):
                return
            if job.proc is not None and job.proc.poll() is None:
                return
            job.started_once = True
            log.info("start job %s: %s", job.name, job.exec)
            job.proc = self.spawn(job.exec, job.name)
            proc = job.proc
        if job.port:
            try:
                check = ServiceCheck(ttl=int(cp_config.duration(job.health.get("ttl"), 10)),
                                     check_id=job.check_id) if job.health else None
                self.dcs.register_service(job.name, job.service_id, job.address(), int(job.port), check=check)
            except PilotError as exc:
                log.error("register %s: %s", job.name, exc)
            if job.health and not getattr(job, "_health_thread", None):
                job._health_thread = threading.Thread(target=self.health_loop, args=(job,), daemon=True)
                job._health_thread.start()
        threading.Thread(target=self.reap, args=(job, proc), daemon=True).start()

    def reap(self, job: Job, proc: subprocess.Popen) -> None:
        try:
            rc = proc.wait(job.timeout or None)
        except subprocess.TimeoutExpired:
            log.warning("%s timeout after %.0fs: killing its process tree", job.name, job.timeout)
            signal_tree(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        log.info("job %s exited %s", job.name, rc)
        self.events.put((job.name, "exitSuccess" if rc == 0 else "exitFailed"))
        if self.stopping.is_set() or job.interval:
            return                        # periodic jobs run on their timer, not on exit
        if job.restarts == -1 or job.restarted < job.restarts:
            job.restarted += 1
            time.sleep(1.0)
            if not self.stopping.is_set():
                self.start_job(job)

    def health_loop(self, job: Job) -> None:
        interval = cp_config.duration(job.health.get("interval"), 5)
        timeout = cp_config.duration(job.health.get("timeout"), interval)
        while not self.stopping.is_set():
            t0 = time.monotonic()
            ok = False
            if job.proc is not None and job.proc.poll() is None:
                try:
                    p = self.spawn(job.health["exec"], f"{job.name}-health")
                    ok = p.wait(timeout) == 0
                except subprocess.TimeoutExpired:
                    signal_tree(p.pid, signal.SIGKILL)
                    p.wait()
            if ok:
                try:
                    self.dcs.pass_check(job.check_id, "ok")     # the heartbeat; never a fail (as ContainerPilot)
                except PilotError as exc:
                    log.warning("heartbeat %s: %s", job.check_id, exc)
            if ok != job.healthy:
                job.healthy = ok
                self.events.put((job.name, "healthy" if ok else "unhealthy"))
            self.stopping.wait(max(0.05, interval - (time.monotonic() - t0)))

    def interval_loop(self, job: Job, every: float) -> None:
        # ContainerPilot runs a periodic job at once, then every interval; a run still going delays the next.
        while not self.stopping.is_set():
            if job.proc is None or job.proc.poll() is not None:
                self.start_job(job)
            if self.stopping.wait(every):
                return

    def watch_loop(self, w: Dict[str, Any]) -> None:
        name = w["name"]
        every = cp_config.duration(w.get("interval"), 10)
        last = None
        while not self.stopping.is_set():
            try:
                cur = sorted((n["id"], n["address"], n["port"]) for n in self.dcs.service_nodes(name, True))
                if cur != last:
                    if last is not None or cur:
                        self.events.put((f"watch.{name}", "changed"))
                    last = cur
            except PilotError as exc:
                log.warning("watch %s: %s", name, exc)
            self.stopping.wait(every)

    # ---- events ------------------------------------------------------------------------------
    def dispatch(self, source: str, event: str) -> None:
        for job in self.jobs.values():
            w = job.when
            if w.get("source") != source:
                continue
            if w.get("once") == event and not job.started_once:
                self.start_job(job)
            elif w.get("each") == event:
                self.start_job(job)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.events.put(("supervisor", "SIGTERM")))
        signal.signal(signal.SIGINT, lambda *_: self.events.put(("supervisor", "SIGTERM")))
        with open(os.path.join(self.node_dir, "supervisor.pid"), "w") as fh:
            fh.write(str(os.getpid()))
        log.info("supervisor for %s starting (%d jobs)", self.node, len(self.jobs))
        for job in self.jobs.values():
            if not job.when:
                self.start_job(job)
            elif job.interval:
                threading.Thread(target=self.interval_loop, args=(job, job.interval), daemon=True).start()
        for w in self.cfg.get("watches", []):
            threading.Thread(target=self.watch_loop, args=(w,), daemon=True).start()
        while True:
            source, event = self.events.get()
            if source == "supervisor" and event == "SIGTERM":
                return self.shutdown()
            log.info("event %s %s", source, event)
            self.dispatch(source, event)

    def shutdown(self) -> int:
        """ContainerPilot's order: every job gets `stopping` at once (see the module docstring)."""
        log.info("SIGTERM: stopping every job")
        self.stopping.set()                  # health checks, watches and periodic timers stop now
        waited_on: Dict[str, List[Job]] = {}
        for j in self.jobs.values():
            if j.when.get("once") == "stopping" and j.when.get("source") in self.jobs:
                waited_on.setdefault(j.when["source"], []).append(j)
        stoppers = [j for js in waited_on.values() for j in js]
        for j in stoppers:
            self.start_job(j)
        for j in self.jobs.values():
            if j.name not in waited_on and j not in stoppers:
                self._term(j)
        for name, deps in waited_on.items():
            src = self.jobs[name]
            deadline = time.monotonic() + src.stop_timeout
            for d in deps:
                if d.proc is not None:
                    try:
                        d.proc.wait(max(0.0, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        log.error("%s still running after %s's stopTimeout (%.0fs); stopping %s anyway",
                                  d.name, name, src.stop_timeout, name)
            self._term(src)
            if src.port:
                try:
                    self.dcs.deregister_service(src.service_id)
                except PilotError:
                    pass
        limit = cp_config.duration(self.cfg.get("stopTimeout"), 5.0)
        deadline = time.monotonic() + limit
        for j in self.jobs.values():
            if j.proc is not None:
                try:
                    j.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for j in self.jobs.values():
            if j.proc is not None and j.proc.poll() is None:
                log.warning("%s still running %.0fs after the jobs stopped: SIGKILL", j.name, limit)
                signal_tree(j.proc.pid, signal.SIGKILL)
                j.proc.wait()
        log.info("stopped")
        return 0

    def _term(self, job: Job) -> None:
        if job.proc is not None and job.proc.poll() is None:
            signal_tree(job.proc.pid, signal.SIGTERM)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="ContainerPilot-compatible supervisor for one local node")
    ap.add_argument("--config", required=True)
    ap.add_argument("--node-dir", required=True)
    args = ap.parse_args(argv)
    os.makedirs(os.path.join(args.node_dir, "logs"), exist_ok=True)
    logging.basicConfig(filename=os.path.join(args.node_dir, "logs", "supervisor.log"), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    env = dict(os.environ)
    try:
        cfg = cp_config.load(args.config, env)
        return Supervisor(cfg, args.node_dir, env).run()
    except PilotError as exc:
        log.error("%s", exc)
        print(f"supervisor: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

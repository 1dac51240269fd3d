"""A small ContainerPilot-v3-compatible supervisor for one node of `mysqlpilot local`.

It follows docker/containerpilot.json5 exactly as the image's ContainerPilot would: jobs started on
events (`exitSuccess`, `healthy`, `changed`, `stopping`, ...), health checks that heartbeat a TTL
check in Consul, periodic jobs, watches of Consul services, restarts, and SIGTERM handling that runs
the `stopping` jobs (pre-stop) before the service job is stopped.

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

from ..dcs.consul import ConsulDCS
from ..errors import PilotError
from . import cp_config

log = logging.getLogger("mysqlpilot.supervisor")


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
        self.env = env
        self.node = env.get("MYSQLPILOT_NODE") or env.get("HOSTNAME") or socket.gethostname()
        host, port = str(cfg["consul"]).rsplit(":", 1)
        self.dcs = ConsulDCS(host, int(port), "unused", self.node, token=env.get("CONSUL_HTTP_TOKEN") or None)
        self.jobs: Dict[str, Job] = {j["name"]: Job(j, self.node) for j in cfg.get("jobs", [])}
        self.events: "queue.Queue" = queue.Queue()
        self.stopping = threading.Event()
        self.logs = os.path.join(node_dir, "logs")
        os.makedirs(self.logs, exist_ok=True)

    # ---- processes ---------------------------------------------------------------------------
    def argv(self, cmd: str) -> List[str]:
        parts = shlex.split(cmd)
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
                self.dcs.register_service(job.name, job.service_id, job.address(), int(job.port),
                                          check_ttl=int(cp_config.duration(job.health.get("ttl"), 10))
                                          if job.health else None, check_id=job.check_id)
            except PilotError as exc:
                log.error("register %s: %s", job.name, exc)
            if job.health and not getattr(job, "_health_thread", None):
                job._health_thread = threading.Thread(target=self.health_loop, args=(job,), daemon=True)
                job._health_thread.start()
        threading.Thread(target=self.reap, args=(job, proc), daemon=True).start()

    def reap(self, job: Job, proc: subprocess.Popen) -> None:
        rc = proc.wait()
        log.info("job %s exited %s", job.name, rc)
        self.events.put((job.name, "exitSuccess" if rc == 0 else "exitFailed"))
        if self.stopping.is_set():
            return
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
                    p.kill()
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
        while not self.stopping.wait(every):
            if job.proc is None or job.proc.poll() is not None:
                self.start_job(job)

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
            elif "interval" in job.when:
                threading.Thread(target=self.interval_loop,
                                 args=(job, cp_config.duration(job.when["interval"], 60)), daemon=True).start()
        for w in self.cfg.get("watches", []):
            threading.Thread(target=self.watch_loop, args=(w,), daemon=True).start()
        while True:
            source, event = self.events.get()
            if source == "supervisor" and event == "SIGTERM":
                return self.shutdown()
            log.info("event %s %s", source, event)
            self.dispatch(source, event)

    def shutdown(self) -> int:
        log.info("SIGTERM: running stopping jobs, then stopping everything")
        services = [j for j in self.jobs.values() if j.port]
        # Jobs triggered by `stopping` (pre-stop) run to completion while mysqld still runs.
        waiters = []
        for j in self.jobs.values():
            src = j.when.get("source")
            if j.when.get("once") == "stopping" and src in self.jobs:
                self.start_job(j)
                waiters.append((j, self.jobs[src].stop_timeout))
        for j, limit in waiters:
            if j.proc is not None:
                try:
                    j.proc.wait(limit)
                except subprocess.TimeoutExpired:
                    log.error("stopping job %s still running after %.0fs; going on", j.name, limit)
        self.stopping.set()
        others = [j for j in self.jobs.values() if not j.port]
        for group in (others, services):           # the service (mysqld) last
            for j in group:
                if j.proc is not None and j.proc.poll() is None:
                    j.proc.terminate()
            for j in group:
                if j.proc is not None:
                    try:
                        j.proc.wait(j.stop_timeout)
                    except subprocess.TimeoutExpired:
                        j.proc.kill()
                        j.proc.wait()
        for j in services:
            try:
                self.dcs.deregister_service(j.service_id)
            except PilotError:
                pass
        log.info("stopped")
        return 0


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

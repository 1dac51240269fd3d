#!/usr/bin/env python3
"""Failover benchmark on a real local cluster (Consul + 3 database servers + supervisors).

Trials (`--trials N`): for each scenario and trial it measures, from the moment of the fault:
  - first write: the first INSERT acknowledged by the new primary. One probe thread per node keeps a
    connection open and tries an INSERT every --probe-period seconds; a write counts only if the node
    that acknowledged it is not the old primary and is the primary the cluster then reports;
  - all replicas repointed: every other live node's replica status shows it replicating (IO and SQL
    threads running) from the new primary, polled over SQL every --probe-period.
Switchover has no fault instant: its "first write" is the write gap, the last write the old primary
acknowledged to the first the new one did, and "repointed" counts from the same start.
Each scenario is printed beside its floor: the part of the time the design cannot avoid with the
settings the cluster ran with (read from its effective config).

Soak (`--soak MINUTES`): the cluster under stress-ng CPU and disk load with a steady writer; counts
unplanned failovers and fences, exits 1 if there were any.

    python3 bench/failover.py --trials 10 [--settings old|new] [--set check_ttl=3] [--durability async]
    python3 bench/failover.py --soak 30 --settings old
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mysqlpilot import config as config_mod  # noqa: E402
from tests.harness import nodelogs  # noqa: E402
from tests.harness.cluster import Cluster  # noqa: E402

SCENARIOS = ("node SIGKILL", "mysqld crash", "switchover")

# How often the node's prober looks for mysqld's process, which bounds how late a crash is noticed.
# Assumed, not imported: keep in step with PID_POLL in mysqlpilot/ha.py (Node._prober).
CRASH_POLL_INTERVAL = 0.1

# The defaults before issue 12 (docs/timing.md of that time), to compare against the current ones.
OLD_SETTINGS = {"session_ttl": 10, "check_ttl": 6, "lock_delay": 4, "fence_margin": 1, "health_interval": 2}

# stress-ng for the soak. --cpu 2: one CPU hog per core of the 2-core machine, at the same priority as
# the cluster, so every thread (heartbeat included) competes for the CPU. --io 1: sync() in a loop, so
# every fsync of InnoDB and the binlog waits behind flushes of the whole page cache. --hdd 1 with 256 MB
# files, in the cluster's directory: writes and reads on the datadirs' own filesystem, bounded in size.
STRESS_ARGS = ("--cpu", "2", "--io", "1", "--hdd", "1", "--hdd-bytes", "256M")


# ---- pure parts (tests/unit/test_failover_bench.py) ------------------------------------------------

def heartbeat_interval(cfg) -> float:
    """As mysqlpilot/ha.py start_threads: four heartbeats per lease, between 0.2 and 1 s."""
    return max(0.2, min(1.0, (float(cfg.lock_delay) - float(cfg.fence_margin)) / 4))


def floors(cfg, catch_up: float = 0.0) -> Dict[str, float]:
    """Seconds each scenario cannot beat with these settings.
    node SIGKILL: the liveness check expires check_ttl after the last heartbeat, which on average came
    half a heartbeat interval before the kill; then nobody may take the lock for lock_delay.
    mysqld crash: noticed on average half a prober poll after it happens (the lock is released, no wait).
    switchover: nothing but the target's catch-up."""
    return {
        "node SIGKILL": float(cfg.check_ttl) - heartbeat_interval(cfg) / 2 + float(cfg.lock_delay),
        "mysqld crash": CRASH_POLL_INTERVAL / 2,
        "switchover": max(0.0, float(catch_up)),
    }


def percentile(vals: Iterable[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN when there is no finite value."""
    s = sorted(v for v in vals if v is not None and math.isfinite(v))
    if not s:
        return float("nan")
    pos = max(0.0, min(1.0, q)) * (len(s) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary(vals: Sequence[float]) -> Tuple[float, float, float, int]:
    """(p50, p95, max, count of finite values)."""
    ok = [v for v in vals if v is not None and math.isfinite(v)]
    return percentile(ok, 0.5), percentile(ok, 0.95), (max(ok) if ok else float("nan")), len(ok)


def settings_overrides(mode: str, sets: Sequence[str] = ()) -> Dict[str, str]:
    """Config keys to set, as key -> value text: `old` gives OLD_SETTINGS, `new` nothing (the current
    defaults); each KEY=VALUE of `sets` goes on top."""
    if mode not in ("old", "new"):
        raise ValueError(f"--settings must be old or new, not {mode!r}")
    out = {k: str(v) for k, v in OLD_SETTINGS.items()} if mode == "old" else {}
    for item in sets:
        key, sep, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or not key or not val:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        if key not in config_mod.KEYS:
            raise ValueError(f"--set {key}: no such config key (see docs/configuration.md)")
        out[key] = val
    return out


def env_for(overrides: Mapping[str, str]) -> Dict[str, str]:
    """The MYSQLPILOT_<KEY> variables that carry `overrides` to every node: the nodes inherit the
    environment of `mysqlpilot local up/start` (local/cluster.py env_of), and ContainerPilot reads its
    own intervals from it only."""
    env = {}
    for key, val in overrides.items():
        names = [e for e in config_mod.KEYS[key].env if e.startswith("MYSQLPILOT_")]
        if not names:
            raise ValueError(f"--set {key}: the key has no MYSQLPILOT_ variable to pass it to the nodes")
        env[names[0]] = val
    return env


def fenced_lines(text: str) -> List[str]:
    """The lines of a node log that report a fence (lease.py logs every one as FENCED...)."""
    return [ln for ln in text.splitlines() if "FENCED" in ln]


def soak_verdict(failovers: int, fences: int, writes_ok: int) -> Tuple[bool, List[str]]:
    """Passed, and why not: any unplanned failover or fence fails; so does a soak that wrote nothing."""
    why = []
    if failovers:
        why.append(f"{failovers} unplanned failover{'s' if failovers != 1 else ''}")
    if fences:
        why.append(f"{fences} fence{'s' if fences != 1 else ''}")
    if writes_ok <= 0:
        why.append("no write was acknowledged")
    return not why, why


def max_gap(ack_times: Sequence[float], start: float, end: float) -> float:
    """Longest stretch of [start, end] without an acknowledged write."""
    pts = [start] + sorted(t for t in ack_times if start <= t <= end) + [end]
    return max(b - a for a, b in zip(pts, pts[1:]))


def leader_changes(history: Sequence[Mapping], since: float) -> List[Mapping]:
    """History records after `since` that moved the lock to another node (a re-promotion keeps it: its
    fence is counted from the logs)."""
    return [h for h in history if float(h.get("time") or 0) >= since
            and h.get("kind") not in ("re-promotion",) and h.get("new_primary") != h.get("old_primary")]


# ---- the cluster -------------------------------------------------------------------------------------

def effective_config(c: Cluster):
    """The config every node runs with: the YAML `local up` wrote, under the MYSQLPILOT_ variables the
    nodes inherit from the environment the bench started them with."""
    return config_mod.load(c.config_path, env={k: v for k, v in c.env.items() if k.startswith("MYSQLPILOT_")})


def validate_overrides(env: Mapping[str, str]) -> None:
    """Fail before starting anything if the config loader refuses these settings."""
    base = {"MYSQL_ROOT_PASSWORD": "x", "MYSQL_REPL_PASSWORD": "x", "MYSQLPILOT_NODE": "bench",
            "MYSQLPILOT_ADVERTISE_HOST": "127.0.0.1", "MYSQLPILOT_SERVER_ID": "1",
            "MYSQLPILOT_STATE_DIR": tempfile.gettempdir()}
    config_mod.load(None, env=dict(base, **env))


def log_offsets(c: Cluster) -> Dict[str, int]:
    return nodelogs.marks(c.dir)


def fences_since(c: Cluster, offsets: Mapping[str, int]) -> List[str]:
    found = []
    for node, path, text in nodelogs.read_since(c.dir, offsets):
        found += [f"{node}/{os.path.basename(path)}: {ln.strip()[:200]}" for ln in fenced_lines(text)]
    return found


_ids = itertools.count(1)


class WriteProbe(threading.Thread):
    """Tries an INSERT on one node every `period` over a kept connection; records every acknowledgement.
    A read-only node refuses at once and the connection stays usable, so the resolution is the period plus
    one round trip."""

    def __init__(self, c: Cluster, name: str, host: str, port: int, period: float):
        super().__init__(daemon=True, name=f"probe-{name}")
        self.c, self.name, self.host, self.port, self.period = c, name, host, port, period
        self.acks: List[float] = []
        self.stop_evt = threading.Event()

    def run(self) -> None:
        import pymysql
        conn = None
        base = time.time_ns()
        while not self.stop_evt.is_set():
            t = time.monotonic()
            try:
                if conn is None:
                    conn = pymysql.connect(host=self.host, port=self.port, user="root",
                                           password=self.c.settings["root_password"], connect_timeout=0.5,
                                           read_timeout=30, write_timeout=2, autocommit=True)
                with conn.cursor() as cur:
                    # Unique across probes and runs; a semi-sync commit may wait here for its ACK.
                    cur.execute("INSERT INTO bench.w VALUES (%s, %s)", (base + next(_ids), 0))
                self.acks.append(time.time())
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] in (1290, 1836):   # read-only: the connection is fine
                    pass
                else:
                    conn = self._drop(conn)
            except Exception:  # noqa: BLE001 - any other failure: reconnect
                conn = self._drop(conn)
            self.stop_evt.wait(max(0.0, self.period - (time.monotonic() - t)))
        self._drop(conn)

    @staticmethod
    def _drop(conn):
        try:
            if conn is not None:
                conn.close()
        except Exception:  # noqa: BLE001
            pass
        return None


def repointed(c: Cluster, nodes: Sequence[Tuple[str, str, int]], primary: Tuple[str, str, int]) -> bool:
    """Every node of `nodes` replicates from `primary` with both threads running (asked over SQL)."""
    from mysqlpilot.sqlclient import Server
    for name, host, port in nodes:
        srv = Server(c.sql_flavor, host=host, port=port, user="root", password=c.settings["root_password"],
                     connect_timeout=0.5, read_timeout=1)
        try:
            st = srv.replica_status()
        except Exception:  # noqa: BLE001 - down or restarting: not repointed yet
            return False
        finally:
            srv.close()
        if not st or not (st["io_running"] and st["sql_running"]) \
                or (st["source_host"], st["source_port"]) != (primary[1], primary[2]):
            return False
    return True


def kill_node(c: Cluster, name: str) -> float:
    """SIGKILL every process of the node (what `local kill --signal KILL` does), in this process, so the
    fault's time is not behind a CLI start-up. Returns when the signal was sent."""
    from mysqlpilot.local.cluster import session_pids
    pids = session_pids(c.registry()["nodes"][name]["pid"])
    t = time.time()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return t


def trial(c: Cluster, scenario: str, period: float, timeout: float = 120) -> Dict:
    st = c.wait_healthy(3, timeout=300)
    old = st["primary"]
    p = c.node(st, old)
    c.sql(p["host"], p["port"], "CREATE DATABASE IF NOT EXISTS bench")
    c.sql(p["host"], p["port"], "CREATE TABLE IF NOT EXISTS bench.w (id BIGINT PRIMARY KEY, n INT)")
    addrs = c.addresses()
    probes = {n: WriteProbe(c, n, h, port, period) for n, h, port in addrs}
    hap = c.registry().get("haproxy")
    via = WriteProbe(c, "haproxy", "127.0.0.1", hap["write"], period) if hap else None
    for pr in [via] if via else []:
        pr.start()
    for pr in probes.values():
        pr.start()
    time.sleep(1.0)                     # connections open and writing before the fault
    out = {"old": old, "new": None, "first_write": float("nan"), "repointed": float("nan"), "note": "",
           "via_haproxy": float("nan")}
    try:
        if scenario == "node SIGKILL":
            t0 = kill_node(c, old)
        elif scenario == "mysqld crash":
            c.kill_mysqld(old)
            t0 = time.time()
        else:
            target = sorted(n for n, _, _ in addrs if n != old)[0]
            t0 = time.time()            # replaced by the old primary's last acknowledged write below
            t_asked = t0
            res = c.cli("switchover", "--to", target, config=True, check=False)
            if res.returncode != 0:
                out["note"] = f"switchover failed: {res.stderr.strip()[-200:]}"
        deadline = time.monotonic() + timeout
        new = None
        t_first = None
        while time.monotonic() < deadline and new is None:
            if scenario == "switchover":
                old_acks = probes[old].acks
                t0 = old_acks[-1] if old_acks else t0
            for n, pr in probes.items():
                acks = [t for t in pr.acks if t > t0]
                if n != old and acks and (t_first is None or acks[0] < t_first):
                    new, t_first = n, acks[0]
            if new is None:
                time.sleep(period)
        if new is None:
            out["note"] = out["note"] or "no write acknowledged by a new primary"
            return out
        # Every node but the new primary and a killed one; the crashed one restarts and must follow too.
        followers = [a for a in addrs if a[0] != new and not (scenario == "node SIGKILL" and a[0] == old)]
        prim = next(a for a in addrs if a[0] == new)
        t_rep = None
        while time.monotonic() < deadline:
            if repointed(c, followers, prim):
                t_rep = time.time()
                break
            time.sleep(period)
        while via is not None and not any(t > t0 for t in via.acks) and time.monotonic() < deadline:
            time.sleep(period)          # the client behind HAProxy may still be reconnecting
        # Honest: the node that acknowledged is the primary the cluster reports.
        final = c.wait_healthy(2 if scenario == "node SIGKILL" else 3, timeout=timeout, primary_not=old)
        if final["primary"] != new:
            out["note"] = f"{new} acknowledged a write but {final['primary']} is the primary: not counted"
            return out
        out.update(new=new, first_write=t_first - t0, repointed=(t_rep - t0) if t_rep else float("nan"))
        if via is not None:
            # Through HAProxy's write port: after t0 only the new primary can acknowledge (the old one is
            # dead, or fenced before its last acknowledged write for a switchover).
            later = [t for t in via.acks if t > t0]
            out["via_haproxy"] = later[0] - t0 if later else float("nan")
            if scenario == "switchover":
                # The old primary takes writes until it is fenced, through HAProxy too: the client's own
                # write gap (its longest stretch without an acknowledgement), as "first write" is for
                # the direct probes.
                out["via_haproxy"] = max_gap(via.acks, t_asked, via.acks[-1]) if later else float("nan")
        if scenario == "switchover":
            rec = final["history"][-1] if final.get("history") else {}
            wu = (rec.get("durations") or {}).get("write_unavailable")
            if wu is not None:
                out["note"] = f"history write_unavailable {float(wu):.2f}s"
        return out
    finally:
        for pr in list(probes.values()) + ([via] if via else []):
            pr.stop_evt.set()
        for pr in list(probes.values()) + ([via] if via else []):
            pr.join(35)
        if scenario == "node SIGKILL":
            c.cli("local", "start", old, "--dir", c.dir)


def settings_line(cfg) -> str:
    return (f"session_ttl {cfg.session_ttl}, check_ttl {cfg.check_ttl}, lock_delay {cfg.lock_delay}, "
            f"fence_margin {cfg.fence_margin}, health_interval {cfg.health_interval}, loop_wait {cfg.loop_wait}"
            f" (heartbeat every {heartbeat_interval(cfg):.2f}s)")


def run_trials(c: Cluster, args) -> int:
    c.up(3, "--durability", args.durability, *(["--haproxy"] if args.haproxy else []))
    cfg = effective_config(c)
    print(f"settings ({args.settings}): {settings_line(cfg)}", flush=True)
    floor = floors(cfg)
    results = {}
    for sc in args.scenario_list:
        fw, rep, hp = [], [], []
        for i in range(args.trials):
            r = trial(c, sc, args.probe_period)
            fw.append(r["first_write"])
            rep.append(r["repointed"])
            hp.append(r["via_haproxy"])
            print(f"  {sc} trial {i + 1}/{args.trials}: {r['old']} -> {r['new'] or '?'}: first write "
                  f"{r['first_write']:.2f}s, all replicas repointed {r['repointed']:.2f}s"
                  + (f", first write through HAProxy {r['via_haproxy']:.2f}s" if args.haproxy else "")
                  + f"{'  (' + r['note'] + ')' if r['note'] else ''}", flush=True)
        results[sc] = (fw, rep, hp)
    print()
    print(f"failover on this machine ({args.flavor}), {args.trials} trials each, durability {args.durability}, "
          f"settings {args.settings}: {settings_line(cfg)}")
    print("first write = fault until the new primary acknowledges an INSERT (switchover: the old primary's "
          "last acknowledged write until the new one's first);")
    print("repointed = the same start until every other live node replicates from the new primary "
          "(mysqld crash: the restarted old primary too);")
    print("floor = what these settings cannot avoid: node SIGKILL check_ttl - heartbeat/2 + lock_delay; "
          f"mysqld crash half the crash poll ({CRASH_POLL_INTERVAL}s, assumed); switchover 0 (catch-up not "
          "measured).")
    print(f"measurement resolution: the probes poll every {args.probe_period * 1000:.0f} ms (plus one round "
          "trip); subtract up to that from each figure.")
    hdr = (f"{'scenario':<14} {'ok':>5} {'first write p50':>16} {'p95':>7} {'max':>7} "
           f"{'repointed p50':>14} {'p95':>7} {'max':>7} {'floor':>7}")
    print(hdr)
    print("-" * len(hdr))
    failed = 0
    for sc, (fw, rep, _hp) in results.items():
        a50, a95, amax, n = summary(fw)
        b50, b95, bmax, _ = summary(rep)
        failed += len(fw) - n
        print(f"{sc:<14} {n:>2}/{len(fw):<2} {a50:>15.2f}s {a95:>6.2f}s {amax:>6.2f}s "
              f"{b50:>13.2f}s {b95:>6.2f}s {bmax:>6.2f}s {floor[sc]:>6.2f}s")
    if args.haproxy:
        print()
        print("the same failovers as a client behind HAProxy sees them (docs/routing.md's checks): first write "
              "acknowledged through the write port, beside the direct first write (the baseline) and the "
              "difference per trial")
        hdr = f"{'scenario':<14} {'ok':>5} {'direct p50':>11} {'HAProxy p50':>12} {'p95':>7} {'max':>7} {'extra p50':>10} {'max':>7}"
        print(hdr)
        print("-" * len(hdr))
        for sc, (fw, _rep, hp) in results.items():
            d50 = summary(fw)[0]
            h50, h95, hmax, n = summary(hp)
            extra = [h - f for h, f in zip(hp, fw)]
            e50, _e95, emax, _ = summary(extra)
            failed += len(hp) - n
            print(f"{sc:<14} {n:>2}/{len(hp):<2} {d50:>10.2f}s {h50:>11.2f}s {h95:>6.2f}s {hmax:>6.2f}s "
                  f"{e50:>9.2f}s {emax:>6.2f}s")
    return 1 if failed else 0


class SoakWriter(threading.Thread):
    """`rate` INSERTs a second on the current primary (found over Consul, in this process); counts what
    was acknowledged and what failed, with the time of each acknowledgement."""

    def __init__(self, c: Cluster, rate: float):
        super().__init__(daemon=True, name="soak-writer")
        self.c, self.period = c, 1.0 / rate
        self.ok, self.failed = 0, 0
        self.acks: List[float] = []
        self.stop_evt = threading.Event()

    def run(self) -> None:
        conn, n, t_next = None, 0, time.monotonic()
        base = time.time_ns()
        while not self.stop_evt.is_set():
            try:
                if conn is None:
                    st = self.c.status_fast()
                    if not st["primary"]:
                        raise RuntimeError("no primary")
                    pn = self.c.node(st, st["primary"])
                    conn = self.c.connect(pn["host"], pn["port"], timeout=5)
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO bench.w VALUES (%s, %s)", (base + n, 1))
                self.ok += 1
                self.acks.append(time.time())
            except Exception:  # noqa: BLE001 - a failed write; find the primary again
                self.failed += 1
                conn = WriteProbe._drop(conn)
            n += 1
            t_next = max(t_next + self.period, time.monotonic())
            self.stop_evt.wait(t_next - time.monotonic())
        WriteProbe._drop(conn)


def run_soak(c: Cluster, args) -> int:
    stress = shutil.which("stress-ng")
    if not stress:
        print("bench/failover.py --soak: stress-ng is not installed; run `bash scripts/install-deps.sh` "
              "(Debian package stress-ng) or `apt-get install stress-ng`", file=sys.stderr)
        return 2
    c.up(3, "--durability", args.durability, *(["--haproxy"] if args.haproxy else []))
    cfg = effective_config(c)
    print(f"settings ({args.settings}): {settings_line(cfg)}", flush=True)
    st = c.wait_healthy(3, timeout=300)
    p = c.node(st, st["primary"])
    c.sql(p["host"], p["port"], "CREATE DATABASE IF NOT EXISTS bench")
    c.sql(p["host"], p["port"], "CREATE TABLE IF NOT EXISTS bench.w (id BIGINT PRIMARY KEY, n INT)")
    offsets = log_offsets(c)
    primaries = [(time.time(), st["primary"])]
    seconds = args.soak * 60
    argv = [stress, *STRESS_ARGS, "--temp-path", c.dir, "--timeout", f"{int(seconds) + 5}s"]
    print(f"soak: {args.soak:g} min, {args.rate:g} writes/s on the primary, load: {' '.join(argv[1:])}",
          flush=True)
    w = SoakWriter(c, args.rate)
    t_start = time.time()
    w.start()
    stress_log = os.path.join(c.dir, "stress-ng.log")
    with open(stress_log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    load_ended = None                    # a soak whose load stopped early proves nothing
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if load_ended is None and proc.poll() is not None:
                load_ended = time.time() - t_start
                print(f"  stress-ng exited ({proc.returncode}) after {load_ended:.0f}s; see {stress_log}",
                      flush=True)
            try:
                cur = c.status_fast()["primary"]
                if cur and cur != primaries[-1][1]:
                    primaries.append((time.time(), cur))
                    print(f"  {time.time() - t_start:7.1f}s primary is now {cur}", flush=True)
            except Exception:  # noqa: BLE001 - Consul slow under load: try again
                pass
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)      # its own session: stress-ng and its workers only
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        w.stop_evt.set()
        w.join(30)
    t_end = time.time()
    history = []
    for _ in range(10):
        try:
            history = c.status_fast()["history"]
            break
        except Exception:  # noqa: BLE001
            time.sleep(1)
    changes = leader_changes(history, t_start)
    failovers = max(len(changes), len(primaries) - 1)
    fences = fences_since(c, offsets)
    gap = max_gap(w.acks, t_start, t_end)
    ok, why = soak_verdict(failovers, fences=len(fences), writes_ok=w.ok)
    if load_ended is not None:
        ok, why = False, why + [f"stress-ng ran only {load_ended:.0f}s of {seconds:.0f}s ({stress_log})"]
    print()
    for h in changes:
        print(f"  failover: {h.get('kind')} {h.get('old_primary')} -> {h.get('new_primary')}: "
              f"{str(h.get('reason'))[:160]}")
    for line in fences:
        print(f"  {line}")
    hdr = f"{'settings':<9} {'minutes':>7} {'writes ok':>10} {'failed':>7} {'failovers':>9} {'fences':>6} " \
          f"{'max write gap':>13}"
    print(f"soak under stress-ng ({args.flavor}, durability {args.durability}): {settings_line(cfg)}")
    print(hdr)
    print("-" * len(hdr))
    print(f"{args.settings:<9} {(t_end - t_start) / 60:>7.1f} {w.ok:>10} {w.failed:>7} {failovers:>9} "
          f"{len(fences):>6} {gap:>12.2f}s")
    print(f"verdict: {'PASS' if ok else 'FAIL: ' + ', '.join(why)}")
    return 0 if ok else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--soak", type=float, default=None, metavar="MINUTES",
                    help="instead of trials: this long under stress-ng load with a steady writer")
    ap.add_argument("--rate", type=float, default=20.0, help="soak: writes per second on the primary")
    ap.add_argument("--settings", default="new", choices=("old", "new"),
                    help="old: the pre-issue-12 defaults (%s); new: the current config defaults" %
                         ", ".join(f"{k} {v}" for k, v in OLD_SETTINGS.items()))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config key for every node, on top of --settings (repeatable)")
    ap.add_argument("--durability", default="semi-sync", choices=("async", "semi-sync"))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--probe-period", type=float, default=0.02,
                    help="seconds between a probe's write attempts and repoint checks (the resolution)")
    ap.add_argument("--haproxy", action="store_true",
                    help="also start HAProxy in front (local up --haproxy) and measure the failover through it")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--flavor", default="mariadb", choices=("mariadb", "mysql"),
                    help="mysql: MySQL 9.7 from the sid root of scripts/install-deps.sh")
    args = ap.parse_args(argv)
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for sc in args.scenario_list:
        if sc not in SCENARIOS:
            ap.error(f"unknown scenario {sc!r}; choose from {', '.join(SCENARIOS)}")
    try:
        env = env_for(settings_overrides(args.settings, args.set))
        validate_overrides(env)
    except (ValueError, config_mod.ConfigError) as exc:
        ap.error(str(exc))
    work = args.dir or tempfile.mkdtemp(prefix="mysqlpilot-bench-")
    # Repeated failovers on purpose: lift the anti-flapping budget (the soak counts every failover too).
    c = Cluster(os.path.join(work, "cl"), env=dict(env, MYSQL_ROOT_PASSWORD="bench-root-pw",
                                                   MYSQL_REPL_PASSWORD="bench-repl-pw",
                                                   MYSQLPILOT_FAILOVER_BUDGET="1000"), flavor=args.flavor)
    try:
        return run_soak(c, args) if args.soak is not None else run_trials(c, args)
    finally:
        c.down()


if __name__ == "__main__":
    sys.exit(main())

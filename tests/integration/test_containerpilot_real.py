"""Issue 10: the real ContainerPilot 3.8.0 running the shipped docker/containerpilot.json5.

1. A Marathon-shaped cluster: three nodes, each started the way the image starts (`mysqlpilot entrypoint`,
   as root, which resolves HOST, gives the state dir to the mysql user, drops privileges with setpriv and
   execs containerpilot with $CONTAINERPILOT), in a UTS namespace of its own with its task's host name,
   with the env Marathon gives a task: HOST (a host name, `localhost`), PORT0, CONSUL, MYSQL_*. Real Consul,
   real MariaDB, the directory store. It elects, takes a snapshot that runs longer than the snapshot job's
   60 s interval under ContainerPilot (only the top-level stopTimeout is shortened, to 20 s, because
   ContainerPilot sleeps it out on every stop; the store is slowed down by a throttling `zstd` on the nodes' PATH
   while a marker file exists), fails over when the primary's node is SIGKILLed, and scales the new
   primary down with SIGTERM without losing an acknowledged commit.
2. The same short scenario (start, elect, SIGTERM the primary) under `mysqlpilot local` with the real
   ContainerPilot and with mysqlpilot's own supervisor; the hooks' traces (MYSQLPILOT_HOOK_TRACE) must show
   the same facts.

The binary: $MYSQLPILOT_CONTAINERPILOT, `containerpilot` on PATH, or ../shared/bin/containerpilot.
Run under `flock /tmp/mysqlpilot-cluster.lock` on shared machines (one cluster at a time).
"""
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pymysql
import pytest
import yaml

from mysqlpilot.local.cluster import _own_hostname, session_pids, signal_session
from mysqlpilot.local.ports import free_port
from tests.harness.cluster import Cluster
from tests.harness.containerpilot import CP, REPO

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CP is None, reason="no ContainerPilot binary (MYSQLPILOT_CONTAINERPILOT)")]

ROOT_PW, REPL_PW = "cp-Root-Secret-10", "cp-Repl-Secret-10"
SLOW_SECONDS = 75          # a snapshot under the slow store lasts at least this: longer than the 60 s interval

THROTTLE = r'''#!{python}
"""zstd, but while {marker} exists a compressing run is a slow store: at most 32 KiB/s, and the end of
the stream is held back until {slow} s have passed. Decompression (restores) is never slowed."""
import os, subprocess, sys, time
real = "{zstd}"
args = sys.argv[1:]
if "-d" in args or "--decompress" in args or not os.path.exists("{marker}"):
    os.execv(real, [real] + args)
t0 = time.monotonic()
with open("{marker}.log", "a") as fh:
    fh.write("slow %d %.3f\n" % (os.getpid(), time.time()))
p = subprocess.Popen([real] + args, stdout=subprocess.PIPE)
out = sys.stdout.buffer
sent = 0
while True:
    chunk = p.stdout.read(16384)
    if not chunk:
        break
    out.write(chunk)
    out.flush()
    sent += len(chunk)
    wait = sent / 32768.0 - (time.monotonic() - t0)
    if wait > 0:
        time.sleep(wait)
rest = {slow} - (time.monotonic() - t0)
if rest > 0:
    time.sleep(rest)
sys.exit(p.wait())
'''


def _cp_pid_alive(pid):
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def read_trace(path):
    out = []
    try:
        with open(path) as fh:
            for line in fh:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return out


class MarathonNode:
    """One task: `mysqlpilot entrypoint` → setpriv → containerpilot, in its own UTS namespace."""

    def __init__(self, base, k, consul, path, user):
        self.name = f"node{k}"
        self.port = free_port("127.0.0.1")
        self.state = os.path.join(base, self.name)
        self.log = os.path.join(base, "logs", f"{self.name}.log")
        self.trace = os.path.join(self.state, "hooks.jsonl")
        self.env = {
            # what Marathon gives every task
            "HOST": "localhost", "MYSQLPILOT_ALLOW_LOOPBACK_HOST": "1",     # every node on this one host
            "PORT0": str(self.port), "HOSTNAME": self.name,
            "CONSUL": consul, "MYSQL_ROOT_PASSWORD": ROOT_PW, "MYSQL_REPL_PASSWORD": REPL_PW,
            "MYSQLPILOT_STORE": "local", "MYSQLPILOT_STORE_PATH": os.path.join(base, "snapshots"),
            "MYSQLPILOT_CLUSTER": "cpreal", "MYSQLPILOT_SNAPSHOT_INTERVAL": "10",
            # what the image sets (paths moved under this test's dir; one machine, several "containers")
            "CONTAINERPILOT": os.path.join(REPO, "docker", "containerpilot.json5"),
            "MYSQLPILOT_STATE_DIR": self.state, "MYSQLPILOT_DATADIR": os.path.join(self.state, "data"),
            "MYSQLPILOT_CP_SOCKET": os.path.join(self.state, "cp.sock"),
            "MYSQLPILOT_BIND_ADDRESS": "127.0.0.1", "MYSQLPILOT_INNODB_BUFFER_POOL_SIZE": "64M",
            # ContainerPilot sleeps out its whole stopTimeout on every stop: 20 s, not 180 s, here
            "MYSQLPILOT_CP_STOP_TIMEOUT": "20",
            "MYSQLPILOT_HOOK_TRACE": self.trace, "PYTHONPATH": REPO, "PATH": path, "LANG": "C.UTF-8",
            "MYSQLPILOT_MYSQLD_USER": user,
            # the test's own writer and checks log in as root over TCP (root is local only by default)
            "MYSQLPILOT_REMOTE_ADMIN_USER": "root",
        }
        self.proc = None

    def start(self):
        name = self.name
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "mysqlpilot", "entrypoint"], env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd="/",
                                         preexec_fn=lambda: _own_hostname(name))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        signal_session(self.pid, signal.SIGKILL)
        self.proc.wait(30)

    def output(self):
        try:
            with open(self.log, errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            return ""


def consul_get(agent, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.http_port}{path}", timeout=5) as r:
        return json.loads(r.read().decode() or "null")


class Writer(threading.Thread):
    """Inserts ids one by one into whichever node is writable; keeps every acknowledged id. A new id per
    attempt: a write whose OK was lost may have committed, and its id would then be taken for ever."""

    def __init__(self, addrs):
        super().__init__(daemon=True)
        self.addrs, self.acked, self.stop_evt, self.n = addrs, [], threading.Event(), 0

    def _writable(self):
        for host, port in self.addrs:
            try:
                c = pymysql.connect(host=host, port=port, user="root", password=ROOT_PW, connect_timeout=1,
                                    read_timeout=2, write_timeout=2, autocommit=True)
                with c.cursor() as cur:
                    cur.execute("SELECT @@global.read_only")
                    if not cur.fetchone()[0]:
                        return c
                c.close()
            except pymysql.MySQLError:
                pass
        return None

    def run(self):
        conn = None
        while not self.stop_evt.is_set():
            try:
                conn = conn or self._writable()
                if conn is None:
                    time.sleep(0.1)
                    continue
                self.n += 1
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO cpt.t (id) VALUES (%s)", (self.n,))
                self.acked.append(self.n)
            except pymysql.MySQLError:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
                time.sleep(0.1)
            time.sleep(0.02)

    def stop(self):
        self.stop_evt.set()
        self.join(10)


@pytest.fixture
def marathon_cluster(consul_agent):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("the entrypoint path needs root and setpriv")
    try:
        pw = pwd.getpwnam("mysql")
    except KeyError:
        pytest.skip("no mysql user")
    base = tempfile.mkdtemp(prefix="mpcp-")
    os.chmod(base, 0o755)
    for d in ("bin", "logs", "snapshots"):
        os.makedirs(os.path.join(base, d))
    os.chown(os.path.join(base, "snapshots"), pw.pw_uid, pw.pw_gid)    # a store the nodes can write
    marker = os.path.join(base, "slow-store")
    with open(marker + ".log", "w"):
        pass
    os.chmod(marker + ".log", 0o666)                 # the throttle, running as mysql, notes its runs here
    with open(os.path.join(base, "bin", "zstd"), "w") as fh:
        fh.write(THROTTLE.format(python=sys.executable, marker=marker, slow=SLOW_SECONDS,
                                 zstd=shutil.which("zstd")))
    os.chmod(os.path.join(base, "bin", "zstd"), 0o755)
    path = os.pathsep.join([os.path.join(base, "bin"), os.path.dirname(sys.executable), os.path.dirname(CP),
                            "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    consul = f"127.0.0.1:{consul_agent.http_port}"
    # The image's user is mysql. Here the interpreter may live where mysql cannot reach it (a virtualenv
    # made from /root/.pyenv): then the nodes keep root, as `mysqlpilot local` does, and only the unit
    # test covers the drop (tests/unit/test_containerpilot_real.py).
    hook = shutil.which("mysqlpilot", path=path) or "mysqlpilot"
    probe = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--",
                            "sh", "-c", f"exec {hook} --help"], cwd="/",     # as ContainerPilot runs a hook
                           env={"PYTHONPATH": REPO, "PATH": path}, capture_output=True)
    user = "mysql" if probe.returncode == 0 else "root"
    nodes = [MarathonNode(base, k, consul, path, user) for k in (1, 2, 3)]
    # The operator's view: `mysqlpilot status` with the cluster's settings.
    op = Cluster(base, env={"MYSQL_ROOT_PASSWORD": ROOT_PW, "MYSQL_REPL_PASSWORD": REPL_PW})
    with open(op.config_path, "w") as fh:
        yaml.safe_dump({"consul": consul, "cluster": "cpreal", "root_password": ROOT_PW,
                        "repl_password": REPL_PW, "store": "local",
                        "store_path": os.path.join(base, "snapshots")}, fh)
    op.marker = marker
    op.user = user
    yield op, nodes
    for n in nodes:
        if n.alive():
            n.kill()
        for pid in session_pids(n.pid) if n.proc else []:
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)


def dump(nodes):
    return "\n".join(f"--- {n.name}\n" + "\n".join(n.output().splitlines()[-40:]) for n in nodes)


def test_marathon_shaped_cluster_under_the_real_containerpilot(marathon_cluster, consul_agent):
    op, nodes = marathon_cluster
    for n in nodes:
        n.start()
    byname = {n.name: n for n in nodes}

    # ---- election, and a first snapshot; then the store turns slow --------------------------------------
    try:
        op.wait_for(lambda st: st if st["primary"] and st.get("snapshot") else None, 240,
                    "a primary and its first snapshot")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{dump(nodes)}") from None
    first = op.status()["snapshot"]["id"]
    open(op.marker, "w").close()
    st = op.wait_healthy(3, timeout=300)
    primary = byname[st["primary"]]
    # HOST was a host name: every node advertises the address it resolves to, and ContainerPilot (which
    # takes only an address) registered each node's service under its own host name at that address.
    assert {x["host"] for x in st["nodes"]} == {"127.0.0.1"}
    assert {x["name"]: x["port"] for x in st["nodes"]} == {n.name: n.port for n in nodes}
    # ContainerPilot registers a service once its own health check first passes (every 2 s here), so a
    # node mysqlpilot already counts as healthy may be a moment behind in the catalog (seen in CI).
    want = {f"mysql-{n.name}": ("127.0.0.1", n.port) for n in nodes}
    deadline = time.monotonic() + 60
    while True:
        svc = {s["ServiceID"]: (s["ServiceAddress"], s["ServicePort"])
               for s in consul_get(consul_agent, "/v1/catalog/service/mysql")}
        if svc == want or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert svc == want, svc
    # ContainerPilot, the hooks and mysqld run as the entrypoint's user, in a state dir that user owns.
    uid = pwd.getpwnam(op.user).pw_uid
    for n in nodes:
        assert os.stat(n.state).st_uid == uid
        with open(f"/proc/{n.pid}/status") as fh:
            uid_line = next(line for line in fh if line.startswith("Uid:"))
        assert uid_line.split()[1:3] == [str(uid)] * 2, f"{n.name}'s ContainerPilot runs as {uid_line}"

    # ---- a snapshot longer than the job's 60 s interval, run by ContainerPilot's snapshot job ------------
    def slow_snapshot_done(st):
        if not st.get("snapshot") or st["snapshot"]["id"] == first:
            return None
        # On whichever node took it: a healthy replica by preference (issue 22), else the primary.
        done = []
        for n in nodes:
            runs = {}
            for ev in read_trace(n.trace):
                if ev.get("hook") == "snapshot":
                    runs.setdefault(ev["pid"], {}).update({ev["event"]: ev})
            done += [r for r in runs.values() if "start" in r and "exit" in r and r["exit"]["rc"] == 0
                     and r["start"]["ppid"] == n.pid and r["exit"]["t"] - r["start"]["t"] > 60]
        return (st, done) if done else None
    try:
        st, done = op.wait_for(slow_snapshot_done, 420, "a snapshot run of more than 60 s to complete")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{dump(nodes)}") from None
    os.unlink(op.marker)
    with open(op.marker + ".log") as fh:
        assert fh.read().strip(), "the store was never slow"
    assert not any("timeout after" in n.output() for n in nodes), "ContainerPilot killed a job at its timeout"
    assert st["snapshot"]["id"] != first

    # ---- failover: the primary's whole node is SIGKILLed -----------------------------------------------
    primary.kill()
    st = op.wait_healthy(2, timeout=180, primary_not=primary.name)
    new = byname[st["primary"]]
    assert new is not primary

    # ---- scale-down of the new primary (SIGTERM), under write load: no acknowledged commit lost -------
    rest = [n for n in nodes if n.alive()]
    op.sql("127.0.0.1", new.port, "CREATE DATABASE IF NOT EXISTS cpt")
    op.sql("127.0.0.1", new.port, "CREATE TABLE IF NOT EXISTS cpt.t (id INT PRIMARY KEY) ENGINE=InnoDB")
    writer = Writer([("127.0.0.1", n.port) for n in rest])
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while len(writer.acked) < 50:
            assert time.monotonic() < deadline, "writes never got going"
            time.sleep(0.1)
        os.kill(new.pid, signal.SIGTERM)            # Marathon's kill: SIGTERM to the task's PID 1
        new.proc.wait(400)
        last = next(n for n in rest if n is not new)
        st = op.wait_for(lambda s: s if s["primary"] == last.name and op.node(s, last.name)["read_only"] is False
                         else None, 120, f"{last.name} writable primary")
        n_before = len(writer.acked)
        deadline = time.monotonic() + 30
        while len(writer.acked) < n_before + 20:
            assert time.monotonic() < deadline, "no writes on the new primary"
            time.sleep(0.1)
    finally:
        writer.stop()
    have = {r[0] for r in op.sql("127.0.0.1", last.port, "SELECT id FROM cpt.t")}
    missing = [i for i in writer.acked if i not in have]
    assert not missing, f"{len(missing)} acknowledged commits lost, e.g. {missing[:10]}\n{dump(nodes)}"
    # It was a hand-over by pre-stop, not a failover after the node vanished.
    hist = op.status()["history"]
    rec = next(h for h in reversed(hist) if h.get("new_primary") == last.name)
    assert rec["kind"] == "switchover" and new.name in (rec.get("reason") or ""), rec
    pre_stop = [e for e in read_trace(new.trace) if e.get("hook") == "pre-stop"]
    assert [e["event"] for e in pre_stop] == ["start", "exit"] and pre_stop[-1]["rc"] == 0, pre_stop
    assert f"handed over to {last.name}" in new.output()


# ---- the same scenario under the real ContainerPilot and under mysqlpilot's supervisor ------------------
def run_local(tmp_path, runner):
    env = {"MYSQL_ROOT_PASSWORD": ROOT_PW, "MYSQL_REPL_PASSWORD": REPL_PW, "MYSQLPILOT_HOOK_TRACE": "1",
           "MYSQLPILOT_CONTAINERPILOT": CP if runner == "containerpilot" else "builtin"}
    c = Cluster(str(tmp_path / runner), env=env)
    try:
        c.up(2, timeout=300)
        st = c.wait_healthy(2, timeout=120)
        reg = c.registry()
        primary = st["primary"]
        other = next(n for n in reg["nodes"] if n != primary)
        assert reg["nodes"][primary]["runner"] == runner
        time.sleep(3)                                # a few health checks and a snapshot tick have run
        t_term = time.time()
        c.cli("local", "kill", primary, "--dir", c.dir, "--signal", "TERM", timeout=420)
        st = c.wait_for(lambda s: s if s["primary"] == other and c.node(s, other)["read_only"] is False
                        else None, 120, f"{other} writable primary")
        hist = st["history"]
        trace = read_trace(os.path.join(c.dir, "nodes", primary, "logs", "hooks.jsonl"))
        return trace, t_term, hist, other
    finally:
        c.down()


def shutdown_facts(trace, t_term, hist, other):
    def evs(hook, event=None):
        return [e for e in trace if e["hook"] == hook and (event is None or e["event"] == event)]
    before = {e["hook"] for e in trace if e["event"] == "start" and e["t"] < t_term} & {
        "pre-start", "run-mysqld", "watch", "health", "snapshot", "pre-stop"}
    ps = evs("pre-stop", "start")
    pe = evs("pre-stop", "exit")
    watch_term = [e for e in evs("watch", "signal") if e["signal"] == "SIGTERM"]
    rec = next((h for h in reversed(hist) if h.get("new_primary") == other), {})
    return {
        "hooks before SIGTERM": sorted(before),
        "pre-start exited 0": [e["rc"] for e in evs("pre-start", "exit")] == [0],
        "pre-stop started once, after SIGTERM": len(ps) == 1 and ps[0]["t"] >= t_term,
        "pre-stop exited 0": [e["rc"] for e in pe] == [0],
        "watch got SIGTERM at once (before pre-stop ended)": bool(watch_term and pe and watch_term[0]["t"] < pe[0]["t"]),
        "no health check started after pre-stop started": bool(ps) and not [
            e for e in evs("health", "start") if e["t"] > ps[0]["t"]],
        "no snapshot started after pre-stop started": bool(ps) and not [
            e for e in evs("snapshot", "start") if e["t"] > ps[0]["t"]],
        "handed over (switchover)": rec.get("kind") == "switchover",
    }


def test_supervisor_and_containerpilot_make_the_hooks_see_the_same(tmp_path):
    seen = {}
    for runner in ("containerpilot", "supervisor"):
        seen[runner] = shutdown_facts(*run_local(tmp_path, runner))
    assert seen["containerpilot"] == seen["supervisor"], seen
    f = seen["containerpilot"]
    assert {"pre-start", "run-mysqld", "watch", "health", "snapshot"} <= set(f["hooks before SIGTERM"]), f
    assert all(v for k, v in f.items() if k != "hooks before SIGTERM"), f


def test_the_failsafe_rides_out_a_consul_freeze_under_the_real_containerpilot(tmp_path):
    """Issue 21 under the shipped ContainerPilot config: three real Consul servers frozen for 10 s (five
    leases) cost no failover and no fence, and nothing acknowledged is lost. ContainerPilot registers the
    services and runs the health hook; the node API the promises travel over is served by `watch`."""
    from mysqlpilot.local import consul_cluster as cc
    from tests.integration.test_failsafe import Watch, assert_no_failover_no_fence
    env = {"MYSQL_ROOT_PASSWORD": ROOT_PW, "MYSQL_REPL_PASSWORD": REPL_PW, "MYSQLPILOT_CONTAINERPILOT": CP,
           "MYSQLPILOT_FAILSAFE": "1", "MYSQLPILOT_FAILOVER_BUDGET": "50"}
    c = Cluster(str(tmp_path / "fs"), env=env)
    try:
        c.up(3, "--durability", "semi-sync", "--consul-servers", "3", timeout=300)
        assert {n["runner"] for n in c.registry()["nodes"].values()} == {"containerpilot"}
        w = Watch(c, "fs.t_cp")
        cc.freeze(c.dir, 10.0)
        st = w.end()
        assert_no_failover_no_fence(c, w, st)
        assert "FAILSAFE: Consul does not renew the session" in w.logs()
    finally:
        c.down()

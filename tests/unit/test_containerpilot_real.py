"""docker/containerpilot.json5 as the real ContainerPilot 3.8.0 reads it, and what it does with it.

`containerpilot -config F -template -out G` renders the config over the environment exactly as the images'
ContainerPilot does. Where behaviour matters the binary runs, with shell jobs and no Consul (the jobs that
matter here register nothing), so these stay fast and need no cluster lock. The binary is
$MYSQLPILOT_CONTAINERPILOT, `containerpilot` on PATH, or ../shared/bin/containerpilot; without one these
tests skip (CI has it).
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import json5
import pytest

from mysqlpilot import config, entrypoint, stopguard, timeouts
from mysqlpilot.local import cp_config
from tests.harness.containerpilot import CP, REPO, SHIPPED

needs_cp = pytest.mark.skipif(CP is None, reason="no ContainerPilot binary (MYSQLPILOT_CONTAINERPILOT)")


def render(env, tmp_path, path=SHIPPED):
    """The config as ContainerPilot itself sees it (its own Go template engine over `env` only)."""
    out = tmp_path / "rendered.json5"
    p = subprocess.run([CP, "-config", path, "-template", "-out", str(out)], env=dict(env), capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    return json5.loads(out.read_text())


def jobs(cfg):
    return {j["name"]: j for j in cfg["jobs"]}


BASE = {"MYSQL_ROOT_PASSWORD": "r00t-pw", "MYSQL_REPL_PASSWORD": "repl-pw", "HOSTNAME": "db1",
        "MYSQLPILOT_STATE_DIR": "/nonexistent/state"}


@needs_cp
@pytest.mark.parametrize("env", [
    {},
    {"SERVICE_NAME": "db", "PORT0": "31000", "HOST": "10.1.2.3", "CONSUL": "consul.svc:8500"},
    {"MYSQLPILOT_PORT": "3307", "PORT0": "31000", "MYSQLPILOT_SNAPSHOT_CHECK": "10s",
     "MYSQLPILOT_CP_SOCKET": "/tmp/x.sock"},
])
def test_our_reader_sees_what_containerpilot_renders(env, tmp_path):
    """`mysqlpilot local`'s supervisor reads the file with its own template code: it must agree."""
    assert cp_config.load(SHIPPED, env) == render(env, tmp_path)


@needs_cp
@pytest.mark.parametrize("check", [None, "10s", "60s", "5m"])
def test_a_snapshot_is_not_killed_at_its_interval(check, tmp_path):
    env = {"MYSQLPILOT_SNAPSHOT_CHECK": check} if check else {}
    snap = next(j for j in render(env, tmp_path)["jobs"] if j["exec"] == "mysqlpilot snapshot")
    interval = cp_config.duration(snap["when"]["interval"])
    assert interval == cp_config.duration(check or "60s")
    # ContainerPilot's timeout of a periodic job defaults to its interval; ours is far above any interval.
    assert cp_config.duration(snap.get("timeout")) >= 12 * 3600 > 100 * interval


@needs_cp
def test_stop_timeouts_fit_the_hand_over_and_mysqlds_shutdown(tmp_path):
    from mysqlpilot import ha
    from mysqlpilot.commands.hooks import pre_stop
    cfg = render({}, tmp_path)
    svc = jobs(cfg)["mysql"]
    assert cfg["stopTimeout"] == timeouts.CP_STOP_TIMEOUT            # seconds, ContainerPilot's top level
    assert render({"MYSQLPILOT_CP_STOP_TIMEOUT": "20"}, tmp_path)["stopTimeout"] == 20
    assert cp_config.duration(svc["stopTimeout"]) == timeouts.PRE_STOP_BUDGET
    # pre-stop's own waits, as the code uses them, fit in the service job's wait for it ...
    opt = next(p for p in pre_stop.params if p.name == "timeout")
    assert opt.default == timeouts.PRE_STOP_WAIT
    assert ha.Node.pre_stop.__defaults__ == (timeouts.PRE_STOP_WAIT,)
    from mysqlpilot import handover
    assert "HANDOVER_CATCHUP" in open(handover.__file__).read().split("def hand_over", 1)[1].split("def ", 1)[0]
    assert timeouts.HANDOVER_CATCHUP + timeouts.PRE_STOP_WAIT + timeouts.FENCE_ALLOWANCE \
        <= cp_config.duration(svc["stopTimeout"])
    # ... and that plus mysqld's shutdown fits before ContainerPilot's SIGKILL, which the platform outlasts.
    assert cp_config.duration(svc["stopTimeout"]) + timeouts.MYSQLD_SHUTDOWN <= cfg["stopTimeout"]
    # ContainerPilot counts stopTimeout from when every job has stopped: at the latest once the mysql job
    # gave up waiting for preStop. The platform's SIGKILL must come after ContainerPilot's own.
    from mysqlpilot.marathon import PLATFORM_GRACE
    assert PLATFORM_GRACE > cp_config.duration(svc["stopTimeout"]) + cfg["stopTimeout"]


@needs_cp
@pytest.mark.parametrize("mp_port", [None, "3307"])
@pytest.mark.parametrize("port0", [None, "31000"])
def test_the_port_containerpilot_registers_is_the_port_mysqld_uses(mp_port, port0, tmp_path):
    env = dict(BASE)
    if mp_port:
        env["MYSQLPILOT_PORT"] = mp_port
    if port0:
        env["PORT0"] = port0
    registered = jobs(render(env, tmp_path))["mysql"]["port"]
    assert registered == config.load(None, env=env).port == int(mp_port or port0 or 3306)


# ---- HOST: ContainerPilot wants an address; the entrypoint gives it one ------------------------------
def run_cp_briefly(env, tmp_path, seconds=3.0):
    """Start ContainerPilot on the shipped config with no `mysqlpilot` on PATH (no hook runs) and no Consul;
    return what it printed before it was stopped or gave up."""
    env = dict(env, PATH="/usr/bin:/bin", CONSUL="127.0.0.1:1", MYSQLPILOT_CP_SOCKET=str(tmp_path / "cp.sock"))
    p = subprocess.Popen([CP, "-config", SHIPPED], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    try:
        out, _ = p.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        p.kill()                      # it would wait out its stopTimeout for jobs that never started
        out, _ = p.communicate(timeout=30)
    return out


@needs_cp
def test_containerpilot_refuses_a_host_name_and_takes_what_the_entrypoint_exports(tmp_path):
    out = run_cp_briefly({"HOST": "localhost"}, tmp_path)
    assert "Unable to parse static ip" in out
    env, note = entrypoint.prepare_env({"HOST": "localhost", entrypoint.ALLOW_LOOPBACK: "1"})
    assert env["HOST"] == "127.0.0.1" and env["MYSQLPILOT_HOST_NAME"] == "localhost" and "localhost" in note
    assert jobs(render(env, tmp_path))["mysql"]["interfaces"] == ["static:127.0.0.1"]
    out = run_cp_briefly(env, tmp_path)
    assert "control: serving at" in out and "Unable to parse" not in out


def test_host_resolution_rules():
    assert entrypoint.prepare_env({"HOST": "10.0.0.7"}) == ({"HOST": "10.0.0.7"}, None)
    assert entrypoint.prepare_env({}) == ({}, None)
    fake = lambda name, *a: [(2, 1, 6, "", ("192.0.2.9", 0))]   # noqa: E731
    env, _ = entrypoint.prepare_env({"HOST": "agent-7.mesos"}, getaddrinfo=fake)
    assert env["HOST"] == "192.0.2.9" and env["MYSQLPILOT_HOST_NAME"] == "agent-7.mesos"
    assert entrypoint.command(()) == ["containerpilot"]
    assert entrypoint.command(("--", "sh", "-c", "x")) == ["sh", "-c", "x"]
    assert entrypoint.drop_argv(102, 105, ["containerpilot"], "/usr/bin/setpriv") == \
        ["/usr/bin/setpriv", "--reuid=102", "--regid=105", "--init-groups", "--", "containerpilot"]


def test_a_host_name_that_resolves_only_to_loopback_is_refused():
    """Debian's /etc/hosts maps the host name to 127.0.1.1: with host networking the node would advertise
    an address no other node reaches. Seen: prepare_env exported HOST=127.0.1.1."""
    import pytest
    only_lo = lambda name, *a: [(2, 1, 6, "", ("127.0.1.1", 0))]   # noqa: E731
    with pytest.raises(entrypoint.EntrypointError) as e:
        entrypoint.prepare_env({"HOST": "agent-7"}, getaddrinfo=only_lo)
    msg = str(e.value)
    assert "HOST='agent-7'" in msg and "127.0.1.1" in msg and "loopback" in msg and "\n" not in msg
    both = lambda name, *a: [(2, 1, 6, "", ("127.0.1.1", 0)), (2, 1, 6, "", ("10.2.3.4", 0))]   # noqa: E731
    assert entrypoint.prepare_env({"HOST": "agent-7"}, getaddrinfo=both)[0]["HOST"] == "10.2.3.4"
    env, _ = entrypoint.prepare_env({"HOST": "agent-7", entrypoint.ALLOW_LOOPBACK: "1"}, getaddrinfo=only_lo)
    assert env["HOST"] == "127.0.1.1"


def cli(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "mysqlpilot", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_entrypoint_exports_the_address_of_a_host_name(tmp_path):
    env = dict(os.environ, HOST="localhost", MYSQLPILOT_STATE_DIR=str(tmp_path / "state"),
               MYSQLPILOT_MYSQLD_USER="root" if os.geteuid() == 0 else "nobody", MYSQLPILOT_ALLOW_LOOPBACK_HOST="1")
    p = cli("entrypoint", "--", "sh", "-c", 'echo "HOST=$HOST NAME=$MYSQLPILOT_HOST_NAME"', env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "HOST=127.0.0.1 NAME=localhost"


def test_an_unresolvable_host_is_one_line_naming_it(tmp_path):
    env = dict(os.environ, HOST="no-such-agent.invalid", MYSQLPILOT_STATE_DIR=str(tmp_path / "state"))
    p = cli("entrypoint", "--", "true", env=env)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "HOST='no-such-agent.invalid'" in lines[0] and "Traceback" not in p.stderr
    assert not (tmp_path / "state").exists()          # stopped before touching anything


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_entrypoint_as_root_gives_the_state_dir_to_the_mysqld_user_and_drops_root(tmp_path):
    import pwd
    try:
        pw = pwd.getpwnam("mysql")
    except KeyError:
        pytest.skip("no mysql user")
    import pathlib
    import tempfile
    base = pathlib.Path(tempfile.mkdtemp(prefix="mp-entry-"))     # pytest's tmp is 0700: not for mysql
    os.chmod(base, 0o755)
    try:
        _drop_root(base, pw)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _drop_root(base, pw):
    state = base / "vol"
    (state / "data").mkdir(parents=True)           # a volume the platform created as root
    (state / "data" / "ibdata1").write_text("x")
    env = dict(os.environ, MYSQLPILOT_STATE_DIR=str(state), HOST="127.0.0.1")
    env.pop("MYSQLPILOT_MYSQLD_USER", None)
    p = cli("entrypoint", "--", "sh", "-c", 'id -u; id -g; touch "$MYSQLPILOT_STATE_DIR/written"', env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(pw.pw_uid), str(pw.pw_gid)]
    for path in (state, state / "data", state / "data" / "ibdata1", state / "written"):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid), path
    p = cli("entrypoint", "--", "true", env=dict(env, MYSQLPILOT_MYSQLD_USER="no-such-user"))
    assert p.returncode == 2 and "MYSQLPILOT_MYSQLD_USER='no-such-user'" in p.stderr and "Traceback" not in p.stderr


# ---- Marathon's probe is read-only ---------------------------------------------------------------------
def test_probe_checks_mysqld_and_never_touches_consul_or_state(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mysqlpilot import cli as cli_mod, sqlclient
    from mysqlpilot.dcs import consul as consul_mod
    from mysqlpilot.errors import PilotError

    def no_dcs(*a, **kw):
        raise AssertionError("the probe called Consul")
    for name in ("__init__", "from_config"):
        monkeypatch.setattr(consul_mod.ConsulDCS, name, no_dcs)
    answers = {"up": True}
    queries = []

    class FakeServer:
        def __init__(self, flavor, socket=None, **kw):
            if not answers["up"]:
                raise PilotError("connection refused")
            self.socket = socket

        def scalar(self, q):
            queries.append((self.socket, q))
            return 1

        def close(self):
            pass
    monkeypatch.setattr(sqlclient, "Server", FakeServer)
    state = tmp_path / "state"
    state.mkdir()
    env = dict(BASE, MYSQLPILOT_STATE_DIR=str(state), MYSQLPILOT_SOCKET="/run/x.sock")
    r = CliRunner().invoke(cli_mod.main, ["probe"], env=env)
    assert r.exit_code == 0, r.output
    assert queries == [("/run/x.sock", "SELECT 1")]
    answers["up"] = False
    r = CliRunner().invoke(cli_mod.main, ["probe"], env=env)
    assert r.exit_code == 1 and "does not answer" in r.output
    assert list(state.iterdir()) == []                  # nothing written


# ---- pre-stop keeps its own session alive ---------------------------------------------------------------
def test_pre_stop_keeps_the_heartbeat_running_while_it_hands_over(tmp_path, monkeypatch):
    from mysqlpilot import ha
    env = dict(BASE, MYSQLPILOT_STATE_DIR=str(tmp_path))
    node = ha.Node(config.load(None, env=env), dcs=object())
    beats = []
    monkeypatch.setattr(node, "beat", lambda: beats.append(time.monotonic()))
    seen = {}

    def slow_pre_stop(timeout):
        time.sleep(2.0)                                  # a hand-over: the watch job is already gone
        seen["during"] = len(beats)
        return "handed over"
    from mysqlpilot.prestop import PreStop
    monkeypatch.setattr(PreStop, "hand_over_or_leave", lambda self, timeout: slow_pre_stop(timeout))
    monkeypatch.setattr(node, "mysqld_alive", lambda: True)
    assert node.pre_stop(5) == "handed over"
    assert seen["during"] >= 2, "no heartbeat ran while pre-stop waited"
    n = len(beats)
    time.sleep(1.0)
    assert len(beats) == n, "the heartbeat outlived pre-stop"


# ---- run-mysqld under ContainerPilot: mysqld outlives a SIGTERM while pre-stop runs ---------------------
def test_pre_stop_state():
    alive = lambda pid: pid == 42        # noqa: E731
    assert stopguard.pre_stop_state(None, 100.0, alive) == "absent"
    assert stopguard.pre_stop_state({"pid": 42, "time": 50.0, "done": False}, 100.0, alive) == "absent"
    assert stopguard.pre_stop_state({"pid": 42, "time": 150.0, "done": False}, 100.0, alive) == "running"
    assert stopguard.pre_stop_state({"pid": 43, "time": 150.0, "done": False}, 100.0, alive) == "done"
    assert stopguard.pre_stop_state({"pid": 42, "time": 150.0, "done": True}, 100.0, alive) == "done"


GUARD = """
import sys
from mysqlpilot import stopguard
sys.exit(stopguard.run_guarded(sys.argv[2:], sys.argv[1], wait_for_start=2.0))
"""


def test_the_guard_passes_sigterm_on_only_once_pre_stop_is_done(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    log = tmp_path / "mysqld.log"
    fake_mysqld = ["sh", "-c", f"trap 'echo TERM >> {log}; exit 0' TERM; echo up >> {log}; "
                   "while true; do sleep 0.1; done"]
    # A pre-stop that runs (this test process stands for it).
    guard = subprocess.Popen([sys.executable, "-c", GUARD, str(state), *fake_mysqld], cwd=REPO,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not (log.exists() and "up" in log.read_text()):
            assert time.monotonic() < deadline and guard.poll() is None
            time.sleep(0.05)
        stopguard.write_record(str(state), done=False)
        os.killpg(guard.pid, signal.SIGTERM)              # what ContainerPilot does to the job's group
        time.sleep(3.0)                                  # longer than the guard's wait for a pre-stop to start
        assert guard.poll() is None and "TERM" not in log.read_text(), "mysqld stopped while pre-stop ran"
        stopguard.write_record(str(state), done=True)
        assert guard.wait(20) == 0
        assert log.read_text().split() == ["up", "TERM"]
    finally:
        if guard.poll() is None:
            os.killpg(guard.pid, signal.SIGKILL)


def test_the_guard_does_not_wait_forever_for_a_pre_stop_that_never_starts(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    log = tmp_path / "mysqld.log"
    fake_mysqld = ["sh", "-c", f"trap 'echo TERM >> {log}; exit 3' TERM; echo up >> {log}; "
                   "while true; do sleep 0.1; done"]
    guard = subprocess.Popen([sys.executable, "-c", GUARD, str(state), *fake_mysqld], cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while not (log.exists() and "up" in log.read_text()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        guard.send_signal(signal.SIGTERM)
        assert guard.wait(30) == 3                       # mysqld's own status
        assert log.read_text().split() == ["up", "TERM"]
    finally:
        if guard.poll() is None:
            guard.kill()


# ---- which supervisor `mysqlpilot local` runs ------------------------------------------------------------
def test_local_picks_the_real_containerpilot_when_it_has_one(tmp_path):
    from mysqlpilot.errors import PilotError
    from mysqlpilot.local.cluster import containerpilot_bin
    fake = tmp_path / "containerpilot"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert containerpilot_bin({"PATH": str(tmp_path)}) == str(fake)
    assert containerpilot_bin({"PATH": "/nonexistent"}) is None
    assert containerpilot_bin({"PATH": str(tmp_path), "MYSQLPILOT_CONTAINERPILOT": "builtin"}) is None
    assert containerpilot_bin({"MYSQLPILOT_CONTAINERPILOT": str(fake)}) == str(fake)
    with pytest.raises(PilotError, match="MYSQLPILOT_CONTAINERPILOT=/no/such/cp is not an executable"):
        containerpilot_bin({"MYSQLPILOT_CONTAINERPILOT": "/no/such/cp"})


@needs_cp
def test_a_consul_token_in_a_file_reaches_containerpilot_as_its_variable(tmp_path):
    """Issue 23: ContainerPilot reads only $CONSUL_HTTP_TOKEN; in `--secrets file` mode the token is in a
    file. Seen failing on the old code: the environment for containerpilot had no CONSUL_HTTP_TOKEN."""
    import pytest
    tok = tmp_path / "consul-token"
    tok.write_text("3f1c7d0e-aaaa-4000-8000-000000000023\n")
    env, _ = entrypoint.prepare_env({"CONSUL_HTTP_TOKEN_FILE": str(tok), "HOST": "10.0.0.7"})
    assert env == {"CONSUL_HTTP_TOKEN": "3f1c7d0e-aaaa-4000-8000-000000000023", "HOST": "10.0.0.7"}
    with pytest.raises(entrypoint.EntrypointError) as e:
        entrypoint.prepare_env({"CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "missing")})
    assert "CONSUL_HTTP_TOKEN_FILE" in str(e.value) and "missing" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(entrypoint.EntrypointError, match="not both"):
        entrypoint.prepare_env({"CONSUL_HTTP_TOKEN_FILE": str(tok), "CONSUL_HTTP_TOKEN": "x"})
    # ContainerPilot, given that environment, renders and starts with it (the token is not in its output).
    out = run_cp_briefly(dict(env, HOST="127.0.0.1"), tmp_path)
    assert "control: serving at" in out and "3f1c7d0e-aaaa" not in out


@needs_cp
def test_a_failed_pre_start_ends_the_container_with_exit_3_in_seconds(tmp_path):
    """Issue 24: a node whose preStart fails must not sit there half-alive. Here pre-start fails on a missing
    root password; the real ContainerPilot runs the shipped config under `mysqlpilot entrypoint` as the
    parent (as PID 1 would be). Seen failing on the old code: ContainerPilot kept running (the test timed
    out). The old way out, a SIGTERM, would sleep out the 180 s stopTimeout; this takes seconds."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "mysqlpilot"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mysqlpilot "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "MYSQL_ROOT_PASSWORD"}
    env.update(PATH=f"{bindir}:{os.path.dirname(CP)}:/usr/bin:/bin", PYTHONPATH=REPO, CONSUL="127.0.0.1:1",
               MYSQLPILOT_CP_SOCKET=str(tmp_path / "cp.sock"), MYSQLPILOT_STATE_DIR=str(tmp_path / "state"),
               MYSQLPILOT_ENTRYPOINT_PARENT="1", CONTAINERPILOT=SHIPPED, HOST="127.0.0.1", HOSTNAME="db1",
               MYSQLPILOT_MYSQLD_USER="root" if os.geteuid() == 0 else "nobody", MYSQL_REPL_PASSWORD="repl-pw")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "mysqlpilot", "entrypoint", "--", CP, "-config", SHIPPED], env=env,
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t0
    out = p.stdout + p.stderr
    assert p.returncode == 3, out
    assert "root_password is required" in out            # pre-start's own one-line reason comes first
    assert "pre-start exited non-zero" in out and "exit 3 so that the platform starts a new task" in out
    assert "Traceback" not in out
    assert took < 90, f"took {took:.0f}s: ContainerPilot waited out its stopTimeout"


def test_over_https_containerpilot_is_told_to_verify_consuls_certificate():
    # ContainerPilot 3.8: InsecureSkipVerify is !CONSUL_HTTP_SSL_VERIFY, so unset means "do not verify".
    assert entrypoint.prepare_env({"CONSUL_HTTP_SCHEME": "https"})[0]["CONSUL_HTTP_SSL_VERIFY"] == "true"
    assert entrypoint.prepare_env({"CONSUL_HTTP_SCHEME": "https", "CONSUL_HTTP_SSL_VERIFY": "false"}
                                  )[0]["CONSUL_HTTP_SSL_VERIFY"] == "false"
    assert "CONSUL_HTTP_SSL_VERIFY" not in entrypoint.prepare_env({"CONSUL_HTTP_SCHEME": "http"})[0]


@needs_cp
@pytest.mark.parametrize("scheme, want", [(None, "consul.svc:8500"), ("http", "http://consul.svc:8500"),
                                          ("https", "https://consul.svc:8500")])
def test_the_consul_line_carries_the_scheme(scheme, want, tmp_path):
    env = {**BASE, "CONSUL": "consul.svc:8500", **({"CONSUL_HTTP_SCHEME": scheme} if scheme else {})}
    assert render(env, tmp_path)["consul"] == want
    assert cp_config.load(SHIPPED, env)["consul"] == want          # our supervisor reads it the same

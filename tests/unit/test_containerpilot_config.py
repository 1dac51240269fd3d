"""docker/containerpilot.json5, the config the images ship, checked the way ContainerPilot reads it: a Go
template over the environment, then JSON5. The renderer here is written independently of
mysqlpilot/local/cp_config.py, so a bug in one does not hide the same bug in the other."""
import os
import re
import sys

import json5
import pytest

from mysqlpilot.cli import main
from mysqlpilot.local import cp_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(REPO, "docker", "containerpilot.json5")
HOOKS = {"pre-start", "run-mysqld", "health", "on-change", "watch", "snapshot", "pre-stop"}

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.S)


def _term(term, env):
    if term.startswith("."):
        return env.get(term[1:], "")
    if term.startswith('"') and term.endswith('"'):
        return term[1:-1]
    raise ValueError(f"unsupported template term {term!r}")


def _pipeline(expr, env):
    """`.A`, `"lit"`, and `X | default Y | default Z` (Go's default: Y when X is empty)."""
    stages = [s.strip() for s in expr.split("|")]
    val = _term(stages[0], env)
    for st in stages[1:]:
        fn, _, arg = st.partition(" ")
        if fn != "default":
            raise ValueError(f"unsupported template function {fn!r}")
        if val == "":
            val = _term(arg.strip(), env)
    return val


def go_render(text, env):
    """The Go-template subset the shipped file uses: pipelines with default, and if/else/end."""
    out, stack, pos = [], [], 0          # stack of (taking_this_branch, parent_active)
    active = True
    for m in _ACTION.finditer(text):
        if active:
            out.append(text[pos:m.start()])
        pos = m.end()
        body = m.group(1)
        if body.startswith("if "):
            stack.append((active, _pipeline(body[3:], env) != ""))
            active = active and stack[-1][1]
        elif body == "else":
            parent, cond = stack[-1]
            active = parent and not cond
        elif body == "end":
            active = stack.pop()[0]
        elif active:
            out.append(_pipeline(body, env))
    assert not stack, "unclosed {{ if }}"
    if active:
        out.append(text[pos:])
    return "".join(out)


def load(env):
    with open(SHIPPED) as fh:
        return json5.loads(go_render(fh.read(), env))


@pytest.mark.parametrize("tpl,env,out", [
    ('{{ .A | default "x" }}', {}, "x"),
    ('{{ .A | default "x" }}', {"A": "a"}, "a"),
    ('{{ .A | default .B | default "z" }}', {"B": "b"}, "b"),
    ('{{ .A | default .B | default "z" }}', {"A": "a", "B": "b"}, "a"),
    ('{{ .A | default .B | default "z" }}', {}, "z"),
    ('<{{ if .H }}s:{{ .H }}{{ else }}eth0{{ end }}>', {"H": "1.2.3.4"}, "<s:1.2.3.4>"),
    ('<{{ if .H }}s:{{ .H }}{{ else }}eth0{{ end }}>', {}, "<eth0>"),
])
def test_the_renderer_itself(tpl, env, out):
    assert go_render(tpl, env) == out


def hook_commands(cmd):
    """The mysqlpilot commands an exec runs: `mysqlpilot X`, or those inside an `sh -c` script."""
    if isinstance(cmd, list):
        assert cmd[:2] == ["sh", "-c"] and len(cmd) == 3, cmd
        subs = re.findall(r"\bmysqlpilot ([a-z-]+)", cmd[2])
        assert subs, f"no mysqlpilot command in {cmd}"
        return subs
    prog, sub = cmd.split()[:2]
    assert prog == "mysqlpilot", cmd
    return [sub]


ENVS = [
    pytest.param({}, id="defaults"),
    pytest.param({"SERVICE_NAME": "db", "PORT0": "31000", "HOST": "10.1.2.3", "CONSUL": "consul.svc:8500",
                  "MYSQLPILOT_HEALTH_INTERVAL": "3", "MYSQLPILOT_SERVICE_TTL": "10"}, id="marathon"),
    pytest.param({"MYSQLPILOT_PORT": "3307"}, id="port-without-PORT0"),
]


@pytest.mark.parametrize("env", ENVS)
def test_shipped_config_parses_and_wires_every_hook(env):
    cfg = load(env)
    assert cfg["consul"] == env.get("CONSUL", "localhost:8500")
    jobs = {j["name"]: j for j in cfg["jobs"]}
    assert len(jobs) == len(cfg["jobs"]), "job names must be unique"
    watches = {w["name"] for w in cfg.get("watches", [])}

    used = set()
    for job in cfg["jobs"]:
        for cmd in (job.get("exec"), (job.get("health") or {}).get("exec")):
            if cmd is None:
                continue
            for sub in hook_commands(cmd):
                assert sub in main.commands, f"job {job['name']} runs `{cmd}`, not a command of mysqlpilot.cli"
                used.add(sub)
        src = (job.get("when") or {}).get("source")
        if src is not None:
            if src.startswith("watch."):
                assert src[len("watch."):] in watches, f"job {job['name']} waits on unknown {src}"
            else:
                assert src in jobs and src != job["name"], f"job {job['name']} waits on unknown job {src}"
    assert HOOKS <= used, f"hooks not wired: {sorted(HOOKS - used)}"

    service = env.get("SERVICE_NAME", "mysql")
    svc = jobs[service]
    assert svc["exec"] == "mysqlpilot run-mysqld"
    assert svc["port"] == int(env.get("MYSQLPILOT_PORT") or env.get("PORT0") or 3306)   # as config.py
    h = svc["health"]
    assert hook_commands(h["exec"]) == ["health"]
    assert cp_config.duration(h["interval"]) < cp_config.duration(h["ttl"])
    assert svc["interfaces"] == [f"static:{env['HOST']}" if "HOST" in env else "eth0"]
    # pre-stop runs while mysqld still runs (on "stopping"), so a primary can hand over first.
    stop = next(j for j in cfg["jobs"] if j["exec"] == "mysqlpilot pre-stop")
    assert stop["when"] == {"source": service, "once": "stopping"}


@pytest.mark.parametrize("env", ENVS)
def test_agrees_with_mysqlpilot_local_reader(env):
    """`mysqlpilot local` runs the same file through its own reader: both must see the same config."""
    assert cp_config.load(SHIPPED, env) == load(env)


def test_a_typo_in_a_hook_would_be_caught(tmp_path, monkeypatch):
    """The wiring check is not vacuous: a misspelt hook fails it."""
    with open(SHIPPED) as fh:
        text = fh.read()
    assert "mysqlpilot pre-stop" in text
    bad = tmp_path / "cp.json5"
    bad.write_text(text.replace("mysqlpilot pre-stop", "mysqlpilot prestop"))
    monkeypatch.setattr(sys.modules[__name__], "SHIPPED", str(bad))
    with pytest.raises(AssertionError, match="prestop"):
        test_shipped_config_parses_and_wires_every_hook({})


def test_the_health_checks_defaults_are_the_configs():
    """ContainerPilot reads these from the environment only: without the variables set, the template's own
    defaults must be the config's, or the loader's check (service_ttl > health_interval) proves nothing."""
    from mysqlpilot import config
    defaults = {k.name: k.default for k in config.SCHEMA}
    health = next(j for j in load({})["jobs"] if "health" in j and hook_commands(j["health"]["exec"]) == ["health"])
    assert health["health"]["interval"] == defaults["health_interval"]
    assert health["health"]["ttl"] == defaults["service_ttl"]


def health_exec():
    svc = next(j for j in load({})["jobs"] if "health" in j)
    return svc["health"]["exec"]


def run_against_api(tmp_path, cmd, path, code):
    """Run `cmd` against a stand-in node API answering `code` on `path` (404 elsewhere), with a stand-in
    `mysqlpilot` on PATH that records its arguments and exits 7. Returns (exit code, what it ran)."""
    import http.server
    import subprocess
    import threading

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(code if self.path == path else 404)
            self.end_headers()

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    stub = tmp_path / "mysqlpilot"
    stub.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/ran\nexit 7\n")
    stub.chmod(0o755)
    (tmp_path / "ran").unlink(missing_ok=True)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "MYSQLPILOT_API_ADDRESS": "127.0.0.1",
           "MYSQLPILOT_API_PORT": str(srv.server_address[1])}
    try:
        rc = subprocess.run(cmd, env=env, timeout=10).returncode
    finally:
        srv.shutdown()
    ran = (tmp_path / "ran").read_text().strip() if (tmp_path / "ran").exists() else None
    return rc, ran


def test_a_healthy_node_is_checked_by_its_api_without_starting_python(tmp_path):
    assert run_against_api(tmp_path, health_exec(), "/read-only", 200) == (0, None)


def test_anything_else_runs_the_full_hook_and_its_verdict_counts(tmp_path):
    """503 (or no API: the HA loop is dead) runs `mysqlpilot health`, which also fences a writable mysqld
    whose lease ended; its exit code is the check's."""
    assert run_against_api(tmp_path, health_exec(), "/read-only", 503) == (7, "health")


def test_the_image_and_marathon_probe_uses_the_api_first(tmp_path):
    """marathon.PROBE_SHELL (the images' HEALTHCHECK and Marathon's check): /health 200 needs no Python;
    otherwise `mysqlpilot probe` decides."""
    from mysqlpilot.marathon import PROBE_SHELL
    assert run_against_api(tmp_path, ["sh", "-c", PROBE_SHELL], "/health", 200) == (0, None)
    assert run_against_api(tmp_path, ["sh", "-c", PROBE_SHELL], "/health", 503) == (7, "probe")

"""ContainerPilot config: the Go-template subset, JSON5, and the shipped file's wiring."""
import os

import pytest

from .test_containerpilot_config import hook_commands

from mysqlpilot.cli import main
from mysqlpilot.errors import PilotError
from mysqlpilot.local import cp_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(REPO, "docker", "containerpilot.json5")


@pytest.mark.parametrize("tpl,env,out", [
    ('{{ .A }}', {"A": "x"}, "x"),
    ('{{ .A | default "d" }}', {}, "d"),
    ('{{ .A | default "d" }}', {"A": ""}, "d"),
    ('{{ .A | default .B | default "z" }}', {"B": "b"}, "b"),
    ('{{ .A | default .B | default "z" }}', {}, "z"),
    ('{{ if .H }}static:{{ .H }}{{ else }}eth0{{ end }}', {"H": "10.0.0.1"}, "static:10.0.0.1"),
    ('{{ if .H }}static:{{ .H }}{{ else }}eth0{{ end }}', {}, "eth0"),
    ('{{ if .H }}yes{{ end }}', {}, ""),
])
def test_template_subset(tpl, env, out):
    assert cp_config.render_template(tpl, env) == out


def test_unsupported_template_is_an_error_naming_the_line():
    with pytest.raises(PilotError, match="line 2"):
        cp_config.render_template('a\n{{ printf "%d" 1 }}', {})


@pytest.mark.parametrize("v,sec", [(5, 5.0), ("5", 5.0), ("5s", 5.0), ("500ms", 0.5), ("2m", 120.0)])
def test_durations(v, sec):
    assert cp_config.duration(v) == sec


def registered_commands():
    names = set(main.commands)
    return names


@pytest.mark.parametrize("env", [
    {},
    {"SERVICE_NAME": "db", "PORT0": "31000", "HOST": "10.1.2.3", "CONSUL": "consul.service:8500"},
])
def test_shipped_config_wires_every_hook(env):
    cfg = cp_config.load(SHIPPED, env)
    assert cfg["consul"]
    jobs = {j["name"]: j for j in cfg["jobs"]}
    service = env.get("SERVICE_NAME", "mysql")
    assert service in jobs and jobs[service]["port"] == int(env.get("PORT0", 3306))
    cmds = registered_commands()
    hooks = set()
    for j in cfg["jobs"]:
        for cmd in [j.get("exec"), (j.get("health") or {}).get("exec")]:
            for sub in hook_commands(cmd) if cmd else []:
                assert sub in cmds, cmd
                hooks.add(sub)
    assert {"pre-start", "run-mysqld", "health", "on-change", "watch", "snapshot", "pre-stop"} <= hooks
    h = jobs[service]["health"]
    assert h["interval"] < h["ttl"]
    assert jobs["preStop"]["when"] == {"source": service, "once": "stopping"}
    assert jobs["onChange"]["when"]["source"] == f"watch.{service}-primary"
    assert [w["name"] for w in cfg["watches"]] == [f"{service}-primary"]
    iface = jobs[service]["interfaces"][0]
    assert iface == (f"static:{env['HOST']}" if "HOST" in env else "eth0")


def test_validation_catches_unknown_sources(tmp_path):
    p = tmp_path / "c.json5"
    p.write_text('{consul: "x:1", jobs: [{name: "a", exec: "true", when: {source: "nope", once: "exitSuccess"}}]}')
    with pytest.raises(PilotError, match="unknown source 'nope'"):
        cp_config.load(str(p), {})
    p.write_text('{jobs: []}')
    with pytest.raises(PilotError, match="'consul' key is required"):
        cp_config.load(str(p), {})

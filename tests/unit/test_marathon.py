"""Marathon: every JSON under marathon/ and the render output validate against Marathon's own schema."""
import glob
import json
import os
import subprocess
import sys

import pytest

from mysqlpilot.commands.marathon import PLACEHOLDER, load_for_render
from mysqlpilot.marathon import render_group

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_DIR = os.path.join(os.path.dirname(REPO), "shared", "marathon-schema")
EXAMPLE = os.path.join(REPO, "marathon", "mysqlpilot.example.yaml")


@pytest.fixture(scope="module")
def validator():
    if not os.path.isdir(SCHEMA_DIR):
        pytest.skip(f"Marathon schema folder {SCHEMA_DIR} is absent (CI puts ../shared beside the clone)")
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4
    with open(os.path.join(SCHEMA_DIR, "Group.json")) as fh:
        group = json.load(fh)
    with open(os.path.join(SCHEMA_DIR, "AppDefinition.json")) as fh:
        app = json.load(fh)
    app_res = Resource.from_contents(app, default_specification=DRAFT4)
    registry = Registry().with_resources([
        ("./AppDefinition.json", app_res),
        (group["id"].rsplit("/", 1)[0] + "/AppDefinition.json", app_res),
    ])
    return Draft4Validator(group, registry=registry)


def errors(validator, doc):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_schema_rejects_a_bad_group(validator):
    bad = {"id": "/x", "apps": [{"id": "/x/a", "instances": "three", "unreachableStrategy": "sometimes"}]}
    assert errors(validator, bad)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "marathon", "*.json"))))
def test_committed_json_is_valid(validator, path):
    with open(path) as fh:
        doc = json.load(fh)
    assert errors(validator, doc) == []


def test_committed_group_is_what_render_produces(monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MYSQL_ROOT_PASSWORD", "MYSQL_REPL_PASSWORD",
                "CONSUL", "MYSQLPILOT_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    out = subprocess.run([sys.executable, "-m", "mysqlpilot", "--config", EXAMPLE, "marathon", "render"],
                         capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert out.returncode == 0, out.stderr
    with open(os.path.join(REPO, "marathon", "mysql-cluster.json")) as fh:
        assert json.loads(out.stdout) == json.load(fh), "re-render marathon/mysql-cluster.json"


@pytest.mark.parametrize("kw", [{}, {"consul_app": False, "instances": 5, "image": "reg/x:1"}])
def test_render_is_valid_and_stateful(validator, kw, monkeypatch):
    monkeypatch.setenv("MYSQL_ROOT_PASSWORD", "Real-Secret-1")
    monkeypatch.setenv("MYSQL_REPL_PASSWORD", "Real-Secret-2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "Real-Secret-3")
    cfg = load_for_render(EXAMPLE)
    group = render_group(cfg, **kw)
    assert errors(validator, group) == []
    text = json.dumps(group)
    for s in ("Real-Secret-1", "Real-Secret-2", "Real-Secret-3", PLACEHOLDER):
        assert s not in text
    app = next(a for a in group["apps"] if a["id"].endswith("/mysql"))
    assert app["instances"] == kw.get("instances", 3)
    assert app["constraints"] == [["hostname", "UNIQUE"]]
    assert app["unreachableStrategy"] == "disabled"
    assert app["upgradeStrategy"]["maximumOverCapacity"] == 0
    assert "residency" in app and any("persistent" in v for v in app["container"]["volumes"])
    assert app["healthChecks"][0]["command"]["value"] == "mysqlpilot health"
    assert app["env"]["MYSQL_ROOT_PASSWORD"] == {"secret": "root-password"}
    assert set(app["secrets"]) >= {"root-password", "repl-password", "s3-secret-key"}
    assert app["portDefinitions"] and app["networks"] == [{"mode": "host"}]
    assert ("dependencies" in app) == kw.get("consul_app", True)



def test_one_persistent_volume_holds_state_dir_and_datadir(monkeypatch):
    """Restore/rebuild rename between the state dir and the datadir: same volume, datadir not a mount."""
    from mysqlpilot import marathon
    monkeypatch.setenv("MYSQL_ROOT_PASSWORD", "x")
    monkeypatch.setenv("MYSQL_REPL_PASSWORD", "y")
    app = render_group(load_for_render(EXAMPLE))["apps"][-1]
    vols = app["container"]["volumes"]
    persistent = [v for v in vols if "persistent" in v]
    assert len(persistent) == 1 and "/" not in persistent[0]["containerPath"]   # Marathon: relative
    mounts = [v["containerPath"] for v in vols if v.get("hostPath") == persistent[0]["containerPath"]]
    assert mounts == [marathon.STATE_DIR] == [app["env"]["MYSQLPILOT_STATE_DIR"]]
    assert os.path.dirname(app["env"]["MYSQLPILOT_DATADIR"]) == marathon.STATE_DIR


@pytest.mark.parametrize("gid,name", [("/mysqlpilot", "consul-mysqlpilot.marathon.mesos:8500"),
                                      ("/prod/db/", "consul-db-prod.marathon.mesos:8500")])
def test_consul_address_is_the_mesos_dns_name_of_the_consul_app(gid, name, monkeypatch):
    monkeypatch.setenv("MYSQL_ROOT_PASSWORD", "x")
    monkeypatch.setenv("MYSQL_REPL_PASSWORD", "y")
    group = render_group(load_for_render(EXAMPLE), group_id=gid)
    ids = [a["id"] for a in group["apps"]]
    assert ids == [f"/{gid.strip('/')}/consul", f"/{gid.strip('/')}/mysql"]
    assert group["apps"][1]["env"]["CONSUL"] == name


def test_cli_writes_the_file_and_keeps_real_secrets_out(tmp_path, validator):
    out = tmp_path / "group.json"
    env = dict(os.environ, PYTHONPATH=REPO, MYSQL_ROOT_PASSWORD="Real-Secret-1", MYSQL_REPL_PASSWORD="Real-Secret-2",
               AWS_SECRET_ACCESS_KEY="Real-Secret-3", CONSUL_HTTP_TOKEN="Real-Secret-4", CONSUL="consul.local:8500")
    env.pop("MYSQLPILOT_CONFIG", None)
    res = subprocess.run([sys.executable, "-m", "mysqlpilot", "--config", EXAMPLE, "marathon", "render",
                          "--no-consul", "--instances", "5", "--mem", "4096", "-o", str(out)],
                         capture_output=True, text=True, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    for s in ("Real-Secret-1", "Real-Secret-2", "Real-Secret-3", "Real-Secret-4"):
        assert s not in text and s not in res.stdout + res.stderr
    group = json.loads(text)
    assert errors(validator, group) == []
    assert [a["id"] for a in group["apps"]] == ["/mysqlpilot/mysql"]
    app = group["apps"][0]
    assert (app["instances"], app["mem"]) == (5, 4096)
    assert app["env"]["CONSUL"] == "consul.local:8500" and "dependencies" not in app
    assert app["env"]["CONSUL_HTTP_TOKEN"] == {"secret": "consul-token"}
    assert app["secrets"]["consul-token"] == {"source": "mysqlpilot/consul-token"}

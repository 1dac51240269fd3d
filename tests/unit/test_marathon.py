"""Marathon: every JSON under marathon/ and the render output validate against Marathon's own schema."""
import glob
import json
import os
import shlex
import stat
import subprocess
import sys

import pytest

from mysqlpilot import config, marathon
from mysqlpilot.commands.marathon import PLACEHOLDER, load_for_render
from mysqlpilot.marathon import RenderError, render_group
from mysqlpilot.timeouts import PLATFORM_GRACE

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_DIR = os.path.join(os.path.dirname(REPO), "shared", "marathon-schema")
EXAMPLE = os.path.join(REPO, "marathon", "mysqlpilot.example.yaml")
SECRET_VARS = ("MYSQL_ROOT_PASSWORD", "MYSQL_REPL_PASSWORD", "MYSQL_PASSWORD", "CONSUL_HTTP_TOKEN",
               "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
REAL = {"MYSQL_ROOT_PASSWORD": "Real-Secret-1", "MYSQL_REPL_PASSWORD": "Real-Secret-2",
        "AWS_SECRET_ACCESS_KEY": "Real-Secret-3", "CONSUL_HTTP_TOKEN": "Real-Secret-4"}
MIN = {"image": "reg/x:1", "consul": "localhost:8500"}


def clean_env(**extra):
    """os.environ without any secret (value or *_FILE) or Consul/config variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in SECRET_VARS + ("CONSUL", "MYSQLPILOT_CONFIG")
           and not (k.endswith("_FILE") and k[:-5] in SECRET_VARS)}
    env.update(PYTHONPATH=REPO, **extra)
    return env


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mysqlpilot", "--config", EXAMPLE, "marathon", "render", *args],
                          capture_output=True, text=True, cwd=REPO, env=env if env is not None else clean_env())


@pytest.fixture
def no_secrets(monkeypatch):
    for var in SECRET_VARS + ("CONSUL", "MYSQLPILOT_CONFIG"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var + "_FILE", raising=False)


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


def committed_render_args():
    """The render line recorded in the example config's header, without its -o."""
    with open(EXAMPLE) as fh:
        line = next(ln for ln in fh if "marathon render" in ln)
    args = shlex.split(line.lstrip("# ").strip())
    args = args[args.index("render") + 1:]
    i = args.index("-o")
    assert args[i + 1] == "marathon/mysql-cluster.json"
    return args[:i] + args[i + 2:]


def test_committed_group_is_what_render_produces():
    out = cli(*committed_render_args())
    assert out.returncode == 0, out.stderr
    with open(os.path.join(REPO, "marathon", "mysql-cluster.json")) as fh:
        assert json.loads(out.stdout) == json.load(fh), "re-render marathon/mysql-cluster.json"


@pytest.mark.parametrize("kw", [MIN, dict(MIN, instances=5, image="reg/y:2"),
                                dict(MIN, consul=None, bundled_consul=True)])
def test_render_is_valid_and_stateful(validator, kw, monkeypatch, no_secrets):
    for var, val in REAL.items():
        monkeypatch.setenv(var, val)
    cfg = load_for_render(EXAMPLE)
    group = render_group(cfg, **kw)
    assert errors(validator, group) == []
    text = json.dumps(group)
    for s in list(REAL.values()) + [PLACEHOLDER]:
        assert s not in text
    app = next(a for a in group["apps"] if a["id"].endswith("/mysql"))
    assert app["container"]["docker"]["image"] == kw["image"]
    assert app["instances"] == kw.get("instances", 3)
    assert app["constraints"] == [["hostname", "UNIQUE"]]
    assert app["unreachableStrategy"] == "disabled"
    assert app["upgradeStrategy"] == {"minimumHealthCapacity": 1, "maximumOverCapacity": 0}
    assert "residency" in app and any("persistent" in v for v in app["container"]["volumes"])
    assert app["healthChecks"][0]["command"]["value"] == marathon.PROBE_SHELL
    assert app["taskKillGracePeriodSeconds"] == PLATFORM_GRACE
    assert app["env"]["MYSQL_ROOT_PASSWORD"] == {"secret": "root-password"}
    assert set(app["secrets"]) >= {"root-password", "repl-password", "s3-secret-key", "consul-token"}
    assert [p["name"] for p in app["portDefinitions"]] == ["mysql", "api"] and app["networks"] == [{"mode": "host"}]
    assert not any(p["port"] for p in app["portDefinitions"]) and "MYSQLPILOT_API_PORT" not in app["env"]
    rc = app["readinessChecks"]
    assert len(rc) == 1 and rc[0]["path"] == "/readiness" and rc[0]["portName"] == "api"
    assert rc[0]["httpStatusCodesForReady"] == [200]
    assert ("dependencies" in app) == kw.get("bundled_consul", False)


def one_at_a_time(instances, min_health, resident=True, over=0.0):
    """Marathon's TaskReplaceActor.computeRestartStrategy (1.4 to 1.9): tasks killed at once."""
    import math
    min_healthy = math.ceil(instances * min_health)
    max_capacity = int(instances * (1 + over))
    kill = max(0, instances - min_healthy)
    if min_healthy == max_capacity and max_capacity <= instances and resident:
        kill = instances - min_healthy + 1
    return kill


def test_upgrades_replace_one_task_at_a_time_at_any_size(no_secrets):
    """minimumHealthCapacity 0.5 (Marathon's default for resident apps) replaces one task at a time only
    up to 3 instances; 1 with maximumOverCapacity 0 does at any size."""
    assert [one_at_a_time(n, 0.5) for n in range(1, 8)] == [1, 1, 1, 2, 2, 3, 3]
    assert [one_at_a_time(n, 1.0) for n in range(1, 8)] == [1] * 7
    app = render_group(load_for_render(EXAMPLE), **MIN, instances=7)["apps"][0]
    us = app["upgradeStrategy"]
    assert one_at_a_time(7, us["minimumHealthCapacity"], over=us["maximumOverCapacity"]) == 1


def test_one_persistent_volume_holds_state_dir_and_datadir(no_secrets):
    """Restore/rebuild rename between the state dir and the datadir: same volume, datadir not a mount."""
    from mysqlpilot import marathon
    app = render_group(load_for_render(EXAMPLE), **MIN)["apps"][-1]
    vols = app["container"]["volumes"]
    persistent = [v for v in vols if "persistent" in v]
    assert len(persistent) == 1 and "/" not in persistent[0]["containerPath"]   # Marathon: relative
    mounts = [v["containerPath"] for v in vols if v.get("hostPath") == persistent[0]["containerPath"]]
    assert mounts == [marathon.STATE_DIR] == [app["env"]["MYSQLPILOT_STATE_DIR"]]
    assert os.path.dirname(app["env"]["MYSQLPILOT_DATADIR"]) == marathon.STATE_DIR


@pytest.mark.parametrize("gid,name", [("/mysqlpilot", "consul-mysqlpilot.marathon.mesos:31850"),
                                      ("/prod/db/", "consul-db-prod.marathon.mesos:31850")])
def test_bundled_consul_address_is_the_mesos_dns_name_of_the_consul_app(gid, name, no_secrets):
    group = render_group(load_for_render(EXAMPLE), image="reg/x:1", bundled_consul=True, group_id=gid)
    ids = [a["id"] for a in group["apps"]]
    assert ids == [f"/{gid.strip('/')}/consul", f"/{gid.strip('/')}/mysql"]
    assert group["apps"][1]["env"]["CONSUL"] == name


def test_bundled_consul_is_schedulable_and_keeps_its_data(validator, no_secrets):
    """Host ports from Mesos's default range and reserved (requirePorts), the cluster ports on loopback and
    no interface template, the data on a persistent volume."""
    from mysqlpilot import marathon
    group = render_group(load_for_render(EXAMPLE), image="reg/x:1", bundled_consul=True)
    assert errors(validator, group) == []
    app = group["apps"][0]
    lo, hi = marathon.MESOS_DEFAULT_PORTS
    ports = [p["port"] for p in app["portDefinitions"]]
    assert ports == list(range(31850, 31854)) and all(lo <= p <= hi for p in ports)
    assert app["requirePorts"] is True
    args = app["args"]
    flag = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("-")}
    assert (flag["-bind"], flag["-client"]) == ("127.0.0.1", "0.0.0.0")
    assert [flag[f] for f in ("-http-port", "-server-port", "-serf-lan-port", "-serf-wan-port")] == \
        [str(p) for p in ports]
    assert flag["-dns-port"] == "-1" and "{{" not in " ".join(args)
    vols = app["container"]["volumes"]
    persistent = [v for v in vols if "persistent" in v]
    assert len(persistent) == 1
    assert [v["containerPath"] for v in vols if v.get("hostPath") == persistent[0]["containerPath"]] == \
        [flag["-data-dir"]] == ["/consul/data"]
    assert "residency" in app and app["upgradeStrategy"]["maximumOverCapacity"] == 0
    assert group["apps"][1]["env"]["CONSUL"].endswith(":31850")
    other = render_group(load_for_render(EXAMPLE), image="reg/x:1", bundled_consul=True, consul_port=31500)
    assert [p["port"] for p in other["apps"][0]["portDefinitions"]] == [31500, 31501, 31502, 31503]


@pytest.mark.parametrize("args,needle", [
    (["--consul", "localhost:8500"], "--image is required"),
    (["--image", "reg/x:1"], "--consul HOST:PORT is required"),
    (["--image", "reg/x:1", "--consul", "c:8500", "--bundled-consul"], "exclude each other"),
    (["--image", "reg/x:1", "--consul", "consul"], "--consul: expected HOST:PORT"),
])
def test_missing_or_contradicting_flags_give_one_line(args, needle):
    res = cli(*args)
    assert res.returncode == 1 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("mysqlpilot: error: ")


@pytest.mark.parametrize("kw,needle", [({"consul": "c:1"}, "--image"), ({"image": "i"}, "--consul"),
                                       ({"image": "i", "consul": "c:1", "secrets": "vault"}, "--secrets")])
def test_render_group_checks_the_same(kw, needle, no_secrets):
    with pytest.raises(RenderError, match=needle):
        render_group(load_for_render(EXAMPLE), **kw)


def test_cli_writes_the_file_and_keeps_real_secrets_out(tmp_path, validator):
    out = tmp_path / "group.json"
    res = cli("--image", "reg/x:1", "--consul", "consul.local:8500", "--instances", "5", "--mem", "4096",
              "-o", str(out), env=clean_env(**REAL))
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    for s in REAL.values():
        assert s not in text and s not in res.stdout + res.stderr
    group = json.loads(text)
    assert errors(validator, group) == []
    assert [a["id"] for a in group["apps"]] == ["/mysqlpilot/mysql"]
    app = group["apps"][0]
    assert (app["instances"], app["mem"]) == (5, 4096)
    assert app["env"]["CONSUL"] == "consul.local:8500" and "dependencies" not in app
    assert app["env"]["CONSUL_HTTP_TOKEN"] == {"secret": "consul-token"}
    assert app["secrets"]["consul-token"] == {"source": "mysqlpilot/consul-token"}


def test_dcos_and_file_modes_never_read_the_secret_files(tmp_path):
    """A *_FILE path on the rendering host is only a sign that the secret is used: never opened."""
    env = clean_env(MYSQL_ROOT_PASSWORD_FILE=str(tmp_path / "absent"), CONSUL_HTTP_TOKEN_FILE=str(tmp_path / "x"))
    for mode in ("dcos", "file"):
        res = cli("--image", "reg/x:1", "--consul", "c:8500", "--secrets", mode, env=env)
        assert res.returncode == 0, res.stderr
        app = json.loads(res.stdout)["apps"][0]
        assert ("CONSUL_HTTP_TOKEN" if mode == "dcos" else "CONSUL_HTTP_TOKEN_FILE") in app["env"]


def test_env_mode_writes_the_values_and_says_who_can_read_them(tmp_path, validator):
    out = tmp_path / "group.json"
    res = cli("--image", "reg/x:1", "--consul", "c:8500", "--secrets", "env", "-o", str(out),
              env=clean_env(**REAL))
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    group = json.loads(out.read_text())
    assert errors(validator, group) == []
    app = group["apps"][0]
    assert "secrets" not in app
    assert app["env"]["MYSQL_ROOT_PASSWORD"] == "Real-Secret-1"
    assert app["env"]["CONSUL_HTTP_TOKEN"] == "Real-Secret-4"
    assert app["env"]["AWS_SECRET_ACCESS_KEY"] == "Real-Secret-3"
    assert "AWS_ACCESS_KEY_ID" not in app["env"]            # not set: nothing to write
    assert not any(isinstance(v, dict) for v in app["env"].values())
    warning = res.stderr
    assert "plain text" in warning and "MYSQL_ROOT_PASSWORD" in warning and "/v2/apps" in warning
    assert "docker inspect" in warning and "ZooKeeper" in warning
    for s in REAL.values():
        assert s not in warning                               # names, never values


def test_env_mode_takes_values_from_files_too(tmp_path):
    (tmp_path / "root").write_text("From-File-1\n")
    env = clean_env(MYSQL_ROOT_PASSWORD_FILE=str(tmp_path / "root"), MYSQL_REPL_PASSWORD="Real-Secret-2")
    res = cli("--image", "reg/x:1", "--consul", "c:8500", "--secrets", "env", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["apps"][0]["env"]["MYSQL_ROOT_PASSWORD"] == "From-File-1"


def test_env_mode_without_the_values_fails_naming_the_variable():
    res = cli("--image", "reg/x:1", "--consul", "c:8500", "--secrets", "env", env=clean_env())
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "$MYSQL_ROOT_PASSWORD" in lines[0]


def test_file_mode_points_at_files_on_a_read_only_mount(validator, tmp_path):
    from mysqlpilot import marathon
    res = cli("--image", "reg/x:1", "--consul", "c:8500", "--secrets", "file", "--secrets-dir", "/srv/pilot",
              env=clean_env(**REAL))
    assert res.returncode == 0, res.stderr
    group = json.loads(res.stdout)
    assert errors(validator, group) == []
    app = group["apps"][0]
    assert "secrets" not in app
    for s in REAL.values():
        assert s not in res.stdout + res.stderr
    env = app["env"]
    for var in SECRET_VARS:
        assert var not in env
    assert env["MYSQL_ROOT_PASSWORD_FILE"] == marathon.SECRETS_MOUNT + "/root-password"
    assert env["CONSUL_HTTP_TOKEN_FILE"] == marathon.SECRETS_MOUNT + "/consul-token"
    assert env["AWS_ACCESS_KEY_ID_FILE"] == marathon.SECRETS_MOUNT + "/s3-access-key"   # store is s3
    assert {"containerPath": marathon.SECRETS_MOUNT, "hostPath": "/srv/pilot", "mode": "RO"} in \
        app["container"]["volumes"]
    assert "/srv/pilot" in res.stderr and "root-password" in res.stderr
    assert "CONSUL_HTTP_TOKEN_FILE" in res.stderr                # ContainerPilot 3.8.0 does not read it
    # and a node given exactly this env (with the files in place) loads its secrets from them
    files = {"root-password": "R-1", "repl-password": "R-2", "consul-token": "T-4", "s3-access-key": "A-5",
             "s3-secret-key": "S-3"}
    for name, val in files.items():
        (tmp_path / name).write_text(val + "\n")
    node_env = {k: (str(tmp_path / os.path.basename(v)) if k.endswith("_FILE") else v)
                for k, v in env.items()}
    cfg = config.load(None, env=dict(node_env, HOSTNAME="n1"))
    assert (cfg.root_password, cfg.repl_password, cfg.consul_token, cfg.s3_access_key, cfg.s3_secret_key) == \
        ("R-1", "R-2", "T-4", "A-5", "S-3")


def test_a_directory_store_is_refused_in_one_line(tmp_path):
    """Issue 24: `store: local` (the default) rendered silently, and each node kept its snapshots on its own
    volume where no replica could find them. Seen failing before: the group was written."""
    cfg_path = tmp_path / "local.yaml"
    cfg_path.write_text(open(EXAMPLE).read().replace("store: s3", "store: local"))
    out = subprocess.run([sys.executable, "-m", "mysqlpilot", "--config", str(cfg_path), "marathon", "render",
                          "--image", "reg/x:1", "--consul", "c:8500", "--secrets", "dcos"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode != 0 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "store" in lines[0] and "s3" in lines[0] and "Traceback" not in out.stderr


def test_a_disabled_node_api_is_refused_in_one_line(tmp_path):
    """Issue 24: the readiness check (the upgrade gate) asks the node API; without it no upgrade could pass."""
    cfg_path = tmp_path / "noapi.yaml"
    cfg_path.write_text(open(EXAMPLE).read() + "\napi_port: 0\n")
    out = subprocess.run([sys.executable, "-m", "mysqlpilot", "--config", str(cfg_path), "marathon", "render",
                          "--image", "reg/x:1", "--consul", "c:8500", "--secrets", "dcos"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1 and "api_port" in lines[0], out.stderr


def test_every_secret_key_has_a_marathon_secret_name_and_renders_in_each_mode():
    """Seen failing before the fix: a monitor password (issue 23) made the render stop with a KeyError."""
    keys = [k.name for k in config.SCHEMA if k.secret and k.env and k.name not in marathon.PER_TASK]
    assert sorted(k for k in keys if k not in marathon.SECRET_NAMES) == []
    env = clean_env(**REAL, MYSQL_MONITOR_PASSWORD="Mon-1", MYSQLPILOT_AGENT_PASSWORD="Agent-1")
    for mode, want in (("dcos", {"secret": "monitor-password"}), ("file", None), ("env", "Mon-1")):
        res = cli("--image", "reg/x:1", "--consul", "c:8500", "--secrets", mode, env=env)
        assert res.returncode == 0, res.stderr
        app = json.loads(res.stdout)["apps"][0]
        if want is None:
            assert app["env"]["MYSQL_MONITOR_PASSWORD_FILE"].endswith("/monitor-password")
        else:
            assert app["env"]["MYSQL_MONITOR_PASSWORD"] == want


def test_render_takes_certificate_paths_that_exist_only_in_the_containers():
    """Seen failing before the fix: the render refused /etc/mysqlpilot/tls/... as unreadable on the rendering
    host, where those files never are. A node still refuses them at start (tests/unit/test_config.py)."""
    env = clean_env(**REAL, CONSUL_HTTP_SCHEME="https", CONSUL_CACERT="/etc/mysqlpilot/tls/ca.pem",
                    MYSQLPILOT_TLS_CERT="/etc/mysqlpilot/tls/server.pem", MYSQLPILOT_TLS_KEY="/etc/mysqlpilot/tls/k.pem")
    for mode in ("dcos", "env"):
        res = cli("--image", "reg/x:1", "--consul", "c:8500", "--secrets", mode, env=env)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["apps"][0]["env"]["MYSQLPILOT_TLS_CERT"] == "/etc/mysqlpilot/tls/server.pem"

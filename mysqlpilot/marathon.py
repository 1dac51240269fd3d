"""Render the Marathon app group from the config, so operators do not hand-edit JSON.

Secrets are referenced by name (Marathon `secrets` + env `{"secret": ...}`); no secret value is ever
written. Per-node settings (name, address, port, server_id) are left to each task: ContainerPilot and
mysqlpilot take them from Marathon's HOST and PORT0 and the container's hostname.

Layout: ONE persistent volume holds the state dir with the datadir inside it. Restore and rebuild rename
directories between the two (scratch -> datadir, datadir -> *.aside-*), which fails across filesystems
and on a mount point, so the datadir must be a plain subdirectory of the same volume.
"""
from __future__ import annotations

from typing import Any, Dict

from . import config as config_mod

# Keys that differ per task or per image; never rendered into the group.
PER_TASK = {"node_name", "advertise_host", "port", "server_id", "datadir", "state_dir", "socket", "mycnf",
            "mysqld_bin", "mysqld_user", "bind_address", "store_path", "priority", "nofailover"}
# The images' layout (docker/*/Dockerfile ENV); tests keep the two in step.
STATE_DIR = "/var/lib/mysqlpilot"
DATADIR = STATE_DIR + "/data"
SECRET_NAMES = {"root_password": "root-password", "repl_password": "repl-password", "password": "app-password",
                "consul_token": "consul-token", "s3_access_key": "s3-access-key", "s3_secret_key": "s3-secret-key"}


def _referenced(cfg, key: str) -> bool:
    """Secrets the deployment needs: those set here, and the S3 keys whenever the store is S3."""
    return bool(cfg.values.get(key)) or (cfg.store == "s3" and key in ("s3_access_key", "s3_secret_key"))


def app_env(cfg) -> Dict[str, Any]:
    env: Dict[str, Any] = {}
    for key in config_mod.SCHEMA:
        if key.name in PER_TASK or not key.env:
            continue
        val = cfg.values.get(key.name)
        if key.secret:
            if _referenced(cfg, key.name):
                env[key.env[0]] = {"secret": SECRET_NAMES[key.name]}
            continue
        if val is None or val == "":
            continue
        env[key.env[0]] = str(val).lower() if isinstance(val, bool) else str(val)
    env["MYSQLPILOT_STATE_DIR"] = STATE_DIR
    env["MYSQLPILOT_DATADIR"] = DATADIR
    return env


def mesos_dns_name(app_id: str) -> str:
    """Mesos-DNS name of a Marathon app: path segments reversed, joined by '-' (/g/consul -> consul-g)."""
    return "-".join(reversed([p for p in app_id.split("/") if p])) + ".marathon.mesos"


def render_group(cfg, *, group_id: str = "/mysqlpilot", instances: int = 3,
                 image: str = "mysqlpilot/percona:5.6", cpus: float = 1.0, mem: int = 2048,
                 disk: int = 20480, consul_app: bool = True, secret_prefix: str = "mysqlpilot") -> Dict[str, Any]:
    gid = "/" + group_id.strip("/")
    env = app_env(cfg)
    if consul_app:
        env["CONSUL"] = f"{mesos_dns_name(gid + '/consul')}:8500"
    secrets = {name: {"source": f"{secret_prefix}/{name}"}
               for key, name in SECRET_NAMES.items() if _referenced(cfg, key)}
    hc_interval = max(5, cfg.health_interval * 5)
    mysql = {
        "id": f"{gid}/mysql",
        "instances": instances,
        "cpus": cpus, "mem": mem, "disk": 0,
        "container": {
            "type": "DOCKER",
            "docker": {"image": image, "forcePullImage": False},
            "volumes": [
                # A persistent local volume pins each task to its agent and keeps its data. Marathon wants
                # a relative path for it, so a second volume mounts it at the absolute state dir.
                {"containerPath": "pilotdata", "mode": "RW", "persistent": {"type": "root", "size": disk}},
                {"containerPath": STATE_DIR, "hostPath": "pilotdata", "mode": "RW"},
            ],
        },
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "mysql"}],
        "env": env,
        "secrets": secrets,
        "constraints": [["hostname", "UNIQUE"]],
        "residency": {"relaunchEscalationTimeoutSeconds": 3600, "taskLostBehavior": "WAIT_FOREVER"},
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0},
        "unreachableStrategy": "disabled",
        # pre-stop hands the primary role over before mysqld stops: give it time.
        "taskKillGracePeriodSeconds": 120,
        "healthChecks": [{
            "protocol": "COMMAND",
            "command": {"value": "mysqlpilot health"},
            "gracePeriodSeconds": 900,
            "intervalSeconds": hc_interval,
            "timeoutSeconds": 10,
            # Report only: Marathon must not kill a lagging replica or a primary mid-failover.
            "maxConsecutiveFailures": 0,
        }],
        "labels": {"mysqlpilot.cluster": cfg.cluster},
    }
    if not secrets:
        del mysql["secrets"]
    if consul_app:
        mysql["dependencies"] = [f"{gid}/consul"]
    apps = [mysql]
    if consul_app:
        apps.insert(0, {
            "id": f"{gid}/consul",
            "instances": 1, "cpus": 0.5, "mem": 256, "disk": 0,
            "container": {"type": "DOCKER", "docker": {"image": "hashicorp/consul:1.8.7"}},
            "networks": [{"mode": "host"}],
            "args": ["agent", "-server", "-bootstrap-expect", "1", "-client", "0.0.0.0", "-ui",
                     "-data-dir", "/consul/data"],
            "portDefinitions": [{"port": 8500, "protocol": "tcp", "name": "http"}],
            "requirePorts": True,
            "healthChecks": [{"protocol": "HTTP", "path": "/v1/status/leader", "portIndex": 0,
                              "gracePeriodSeconds": 60, "intervalSeconds": 10, "timeoutSeconds": 5,
                              "maxConsecutiveFailures": 3}],
            "unreachableStrategy": "disabled",
            "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0},
        })
    return {"id": gid, "apps": apps}

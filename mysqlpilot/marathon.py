"""Render the Marathon app group from the config, so operators do not hand-edit JSON.

Per-node settings (name, address, port, server_id) are left to each task: ContainerPilot and mysqlpilot
take them from Marathon's HOST and PORT0 and the container's hostname.

Secrets, three ways (`secrets=`):
- "dcos": Marathon `secrets` + env `{"secret": name}`. Needs a secrets plugin (DC/OS Enterprise ships
  one; open-source Marathon has none and rejects the field). No value is written.
- "env":  the values themselves in `env`, for clusters without a plugin. Whoever can read the app
  definition reads the passwords (see docs/deploy-marathon.md for the list).
- "file": `<VAR>_FILE` paths in `env`, and a read-only host-path volume that mounts a directory every
  agent holds. No value is written; mysqlpilot's config reads the files.

Consul: an address the nodes use (`consul=`, the default and the production choice), or a single
bundled Consul server (`bundled_consul=True`) on fixed host ports from Mesos's default port range, bound
to loopback for its cluster ports, with a persistent volume for its data.

Layout: ONE persistent volume holds the state dir with the datadir inside it. Restore and rebuild rename
directories between the two (scratch -> datadir, datadir -> *.aside-*), which fails across filesystems
and on a mount point, so the datadir must be a plain subdirectory of the same volume.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from . import config as config_mod
from .errors import PilotError
from .timeouts import PLATFORM_GRACE

# Keys that differ per task or per image; never rendered into the group.
PER_TASK = {"node_name", "advertise_host", "port", "server_id", "datadir", "state_dir", "socket", "mycnf",
            "mysqld_bin", "mysqld_user", "bind_address", "store_path", "priority", "nofailover", "api_port"}
# The images' layout (docker/*/Dockerfile ENV); tests keep the two in step.
STATE_DIR = "/var/lib/mysqlpilot"
DATADIR = STATE_DIR + "/data"
SECRET_NAMES = {"root_password": "root-password", "repl_password": "repl-password", "password": "app-password",
                "consul_token": "consul-token", "s3_access_key": "s3-access-key", "s3_secret_key": "s3-secret-key",
                "agent_password": "agent-password", "monitor_password": "monitor-password"}
SECRET_MODES = ("dcos", "env", "file")
# --secrets file: the directory each agent holds (one file per secret, named as in SECRET_NAMES), mounted
# read-only at SECRETS_MOUNT in the container.
DEFAULT_SECRETS_DIR = "/etc/mysqlpilot/secrets"
SECRETS_MOUNT = "/run/secrets/mysqlpilot"

# The bundled Consul server. Host networking, so its ports are Mesos port resources: fixed ones from the
# default agent port range [31000-32000], so that the nodes' CONSUL address is known at render time.
CONSUL_IMAGE = "hashicorp/consul:1.8.7"
BUNDLED_CONSUL_PORT = 31850        # HTTP; +1 server RPC, +2 Serf LAN, +3 Serf WAN
MESOS_DEFAULT_PORTS = (31000, 32000)
CONSUL_DATA = "/consul/data"       # the image's data dir (its entrypoint passes -data-dir and chowns it)
CONSUL_DISK = 1024                 # MiB, persistent volume for the KV store and raft log


class RenderError(PilotError):
    """A render option is missing or contradicts another; the message names the flag."""


# The image's and Marathon's health check: the node API's /health (mysqld answers, from memory) with curl,
# and `mysqlpilot probe` (a SELECT 1 on the socket) only when the API does not say 200.
PROBE_SHELL = ('curl -fs -m 2 -o /dev/null "http://${MYSQLPILOT_API_ADDRESS:-127.0.0.1}:${MYSQLPILOT_API_PORT:-${PORT1:-8008}}'
               '/health" || exec mysqlpilot probe')


def _referenced(cfg, key: str) -> bool:
    """Secrets the deployment needs: those set here, and the S3 keys whenever the store is S3."""
    return bool(cfg.values.get(key)) or (cfg.store == "s3" and key in ("s3_access_key", "s3_secret_key"))


def secret_keys(cfg, mode: str) -> List[config_mod.Key]:
    """The secret keys the group carries. In env mode only those with a value (there is nothing else
    to write); otherwise every referenced one."""
    keys = [k for k in config_mod.SCHEMA if k.secret and k.env and k.name not in PER_TASK]
    if mode == "env":
        return [k for k in keys if cfg.values.get(k.name) not in (None, "")]
    return [k for k in keys if _referenced(cfg, k.name)]


def app_env(cfg, secrets: str = "dcos") -> Dict[str, Any]:
    if secrets not in SECRET_MODES:
        raise RenderError(f"--secrets must be one of {', '.join(SECRET_MODES)}, got {secrets!r}")
    env: Dict[str, Any] = {}
    for key in config_mod.SCHEMA:
        if key.name in PER_TASK or not key.env or key.secret:
            continue
        val = cfg.values.get(key.name)
        if val is None or val == "":
            continue
        env[key.env[0]] = str(val).lower() if isinstance(val, bool) else str(val)
    for key in secret_keys(cfg, secrets):
        var, name = key.env[0], SECRET_NAMES[key.name]
        if secrets == "dcos":
            env[var] = {"secret": name}
        elif secrets == "file":
            env[var + "_FILE"] = f"{SECRETS_MOUNT}/{name}"
        else:
            env[var] = str(cfg.values[key.name])
    env["MYSQLPILOT_STATE_DIR"] = STATE_DIR
    env["MYSQLPILOT_DATADIR"] = DATADIR
    return env


def mesos_dns_name(app_id: str) -> str:
    """Mesos-DNS name of a Marathon app: path segments reversed, joined by '-' (/g/consul -> consul-g)."""
    return "-".join(reversed([p for p in app_id.split("/") if p])) + ".marathon.mesos"


def check_options(*, image: Optional[str], consul: Optional[str], bundled_consul: bool,
                  secrets: str = "dcos", consul_port: int = BUNDLED_CONSUL_PORT) -> None:
    """Flag errors, each one line naming the flag; checked before anything else is read."""
    if not image:
        raise RenderError("--image is required: the registry/name:tag of the mysqlpilot image your agents pull "
                          "(none is published; build one from docker/)")
    if consul and bundled_consul:
        raise RenderError("--consul and --bundled-consul exclude each other: pick the Consul the nodes use")
    if not consul and not bundled_consul:
        raise RenderError("--consul HOST:PORT is required (the Consul HTTP address every node uses, e.g. "
                          "localhost:8500 for an agent on each Mesos agent), or --bundled-consul to run a "
                          "single Consul server in the group")
    if consul and not config_mod._HOSTPORT.match(consul):
        raise RenderError(f"--consul: expected HOST:PORT, got {consul!r}")
    if secrets not in SECRET_MODES:
        raise RenderError(f"--secrets must be one of {', '.join(SECRET_MODES)}, got {secrets!r}")
    if bundled_consul and not 1 <= consul_port <= 65535 - 3:
        raise RenderError(f"--bundled-consul-port: {consul_port} leaves no room for its 4 ports")


def consul_app(gid: str, port: int = BUNDLED_CONSUL_PORT) -> Dict[str, Any]:
    """One Consul server, pinned to its agent by a persistent volume.

    Its four ports are fixed host ports (requirePorts), so Mesos offers them and nothing else on the
    agent gets them. Server RPC and Serf listen on loopback only (`-bind 127.0.0.1`): this server is a
    cluster of one that no other agent joins, so they need not be reachable, and binding them avoids
    Consul's refusal to pick among several private addresses on a multi-address host. HTTP listens on
    every address (`-client 0.0.0.0`) for the nodes. DNS is off.
    """
    return {
        "id": f"{gid}/consul",
        "instances": 1, "cpus": 0.5, "mem": 256, "disk": 0,
        "container": {
            "type": "DOCKER",
            "docker": {"image": CONSUL_IMAGE, "forcePullImage": False},
            "volumes": [
                {"containerPath": "consuldata", "mode": "RW", "persistent": {"type": "root", "size": CONSUL_DISK}},
                {"containerPath": CONSUL_DATA, "hostPath": "consuldata", "mode": "RW"},
            ],
        },
        "networks": [{"mode": "host"}],
        "args": ["agent", "-server", "-bootstrap-expect", "1", "-ui", "-data-dir", CONSUL_DATA,
                 "-bind", "127.0.0.1", "-client", "0.0.0.0",
                 "-http-port", str(port), "-server-port", str(port + 1),
                 "-serf-lan-port", str(port + 2), "-serf-wan-port", str(port + 3), "-dns-port", "-1"],
        "portDefinitions": [{"port": port, "protocol": "tcp", "name": "http"},
                            {"port": port + 1, "protocol": "tcp", "name": "server"},
                            {"port": port + 2, "protocol": "tcp", "name": "serf-lan"},
                            {"port": port + 3, "protocol": "tcp", "name": "serf-wan"}],
        "requirePorts": True,
        "residency": {"relaunchEscalationTimeoutSeconds": 3600, "taskLostBehavior": "WAIT_FOREVER"},
        "healthChecks": [{"protocol": "HTTP", "path": "/v1/status/leader", "portIndex": 0,
                          "gracePeriodSeconds": 60, "intervalSeconds": 10, "timeoutSeconds": 5,
                          "maxConsecutiveFailures": 3}],
        "unreachableStrategy": "disabled",
        "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0},
    }


def render_group(cfg, *, image: Optional[str] = None, consul: Optional[str] = None, bundled_consul: bool = False,
                 group_id: str = "/mysqlpilot", instances: int = 3, cpus: float = 1.0, mem: int = 2048,
                 disk: int = 20480, secrets: str = "dcos", secrets_dir: str = DEFAULT_SECRETS_DIR,
                 secret_prefix: str = "mysqlpilot", consul_port: int = BUNDLED_CONSUL_PORT) -> Dict[str, Any]:
    check_options(image=image, consul=consul, bundled_consul=bundled_consul, secrets=secrets,
                  consul_port=consul_port)
    if cfg.store != "s3":
        # The group mounts only each task's own persistent volume: a directory store would leave every
        # node's snapshots where no other node can restore them, and replicas wait for one for ever.
        raise RenderError(f"config key store is {cfg.store!r}: on Marathon each node would keep its snapshots on "
                          "its own volume, where no other node can restore them; set store: s3 with s3_bucket "
                          "(and s3_endpoint for a non-AWS store)")
    if not cfg.api_port:
        raise RenderError("config key api_port is 0: Marathon's readiness check (the upgrade gate) and the health "
                          "check ask the node API; leave api_port on (Marathon's PORT1 sets it per task)")
    gid = "/" + group_id.strip("/")
    env = app_env(cfg, secrets)
    env["CONSUL"] = f"{mesos_dns_name(gid + '/consul')}:{consul_port}" if bundled_consul else consul
    volumes: List[Dict[str, Any]] = [
        # A persistent local volume pins each task to its agent and keeps its data. Marathon wants a
        # relative path for it, so a second volume mounts it at the absolute state dir.
        {"containerPath": "pilotdata", "mode": "RW", "persistent": {"type": "root", "size": disk}},
        {"containerPath": STATE_DIR, "hostPath": "pilotdata", "mode": "RW"},
    ]
    if secrets == "file":
        volumes.append({"containerPath": SECRETS_MOUNT, "hostPath": secrets_dir, "mode": "RO"})
    hc_interval = max(5, cfg.health_interval * 5)
    mysql: Dict[str, Any] = {
        "id": f"{gid}/mysql",
        "instances": instances,
        "cpus": cpus, "mem": mem, "disk": 0,
        "container": {
            "type": "DOCKER",
            "docker": {"image": image, "forcePullImage": False},
            "volumes": volumes,
        },
        "networks": [{"mode": "host"}],
        # Two host ports from the offer: PORT0 for mysqld, PORT1 for the node API (config keys port, api_port).
        "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "mysql"},
                            {"port": 0, "protocol": "tcp", "name": "api"}],
        "env": env,
        "constraints": [["hostname", "UNIQUE"]],
        "residency": {"relaunchEscalationTimeoutSeconds": 3600, "taskLostBehavior": "WAIT_FOREVER"},
        # One task at a time, whatever the instance count: for a resident app whose minimum healthy count
        # equals its capacity, Marathon (1.4 to 1.9, TaskReplaceActor.computeRestartStrategy) kills exactly
        # one old task, then the next only when its replacement is healthy. With 0.5 it would replace
        # instances - ceil(instances/2) at once: one only up to 3 instances.
        "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 0},
        "unreachableStrategy": "disabled",
        # pre-stop hands the primary role over, then mysqld shuts down: ContainerPilot's stopTimeout
        # bounds both, and Mesos must not SIGKILL the container before that (mysqlpilot/timeouts.py).
        "taskKillGracePeriodSeconds": PLATFORM_GRACE,
        "healthChecks": [{
            "protocol": "COMMAND",
            # Read-only: `health` is ContainerPilot's job; a second caller would race it. The node API first
            # (no Python start), `mysqlpilot probe` only when it does not answer 200.
            "command": {"value": PROBE_SHELL},
            "gracePeriodSeconds": 900,
            "intervalSeconds": hc_interval,
            "timeoutSeconds": 10,
            # Report only: Marathon must not kill a lagging replica or a primary mid-failover.
            "maxConsecutiveFailures": 0,
        }],
        # The upgrade gate: a replacement counts only once /readiness answers 200 (a replica restored and
        # within max_replica_lag, or the writable primary), and only then is the next old task killed.
        "readinessChecks": [{"name": "restored-and-caught-up", "protocol": "HTTP", "path": "/readiness",
                             "portName": "api", "intervalSeconds": 5, "timeoutSeconds": 3,
                             "httpStatusCodesForReady": [200], "preserveLastResponse": True}],
        "labels": {"mysqlpilot.cluster": cfg.cluster, "mysqlpilot.secrets": secrets},
    }
    if secrets == "dcos":
        refs = {SECRET_NAMES[k.name]: {"source": f"{secret_prefix}/{SECRET_NAMES[k.name]}"}
                for k in secret_keys(cfg, secrets)}
        if refs:
            mysql["secrets"] = refs
    apps = [mysql]
    if bundled_consul:
        mysql["dependencies"] = [f"{gid}/consul"]
        apps.insert(0, consul_app(gid, consul_port))
    return {"id": gid, "apps": apps}


def plain_text_variables(group: Dict[str, Any]) -> List[str]:
    """Variables of the mysql app that carry a secret value in plain text (env mode)."""
    names = {k.env[0] for k in config_mod.SCHEMA if k.secret and k.env}
    out = []
    for app in group.get("apps", []):
        for var, val in app.get("env", {}).items():
            if var in names and isinstance(val, str):
                out.append(var)
    return sorted(out)

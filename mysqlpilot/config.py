"""Configuration: a YAML file overlaid by environment variables, validated at load time.

The schema below is the single source of truth: validation, `Config` attributes and the
configuration reference in docs/ are all generated from it, so they cannot drift apart.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from .errors import ConfigError


@dataclass(frozen=True)
class Key:
    name: str                      # YAML key and Config attribute
    kind: str                      # str | int | float | bool | choice | hostport
    default: Any
    doc: str
    env: Tuple[str, ...] = ()      # environment variables, first one set wins
    secret: bool = False
    required: bool = False
    choices: Tuple[str, ...] = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    group: str = "general"


def _k(name, kind, default, doc, env=(), **kw) -> Key:
    if isinstance(env, str):
        env = (env,)
    return Key(name, kind, default, doc, tuple(env), **kw)


SCHEMA: Tuple[Key, ...] = (
    # identity
    _k("cluster", "str", "mysql", "Cluster name; every node of one cluster uses the same value.",
       "MYSQLPILOT_CLUSTER", group="identity"),
    _k("service_name", "str", "mysql", "Consul service name the nodes register; the primary is also "
       "registered as `<service_name>-primary`.", "SERVICE_NAME", group="identity"),
    _k("node_name", "str", None, "This node's name, unique in the cluster. Defaults to the host name.",
       ("MYSQLPILOT_NODE", "HOSTNAME"), group="identity"),
    _k("advertise_host", "str", None, "Address other nodes and clients use to reach this node's mysqld. "
       "Defaults to Marathon's HOST, then to the address the host name resolves to.",
       ("MYSQLPILOT_ADVERTISE_HOST", "HOST"), group="identity"),
    _k("port", "int", 3306, "TCP port mysqld listens on and advertises. Marathon's PORT0 is honoured so "
       "nodes sharing a host each advertise their own port.", ("MYSQLPILOT_PORT", "PORT0"),
       minimum=1, maximum=65535, group="identity"),
    _k("bind_address", "str", "0.0.0.0", "Address mysqld binds to.", "MYSQLPILOT_BIND_ADDRESS",
       group="identity"),
    _k("server_id", "int", 0, "MySQL server_id; 0 derives a stable one from node name, host and port.",
       "MYSQLPILOT_SERVER_ID", minimum=0, maximum=4294967295, group="identity"),
    _k("priority", "int", 100, "Failover priority tag: among equally advanced candidates the higher "
       "priority wins.", "MYSQLPILOT_PRIORITY", minimum=0, maximum=1000000, group="identity"),
    _k("failsafe", "bool", True, "Ride out Consul outages: while its renews fail, the primary stays writable "
       "as long as every listed member promises over the node API not to take the lock (docs/timing.md, "
       "\"Failsafe\"). Off: the primary fences whenever it cannot renew its session within the lease.",
       "MYSQLPILOT_FAILSAFE", group="timing"),
    _k("nofailover", "bool", False, "Never promote this node automatically.", "MYSQLPILOT_NOFAILOVER",
       group="identity"),
    # credentials
    _k("root_password", "str", None, "Password of the MySQL root user.", "MYSQL_ROOT_PASSWORD",
       secret=True, required=True, group="credentials"),
    _k("database", "str", None, "Application database created on the first primary.", "MYSQL_DATABASE",
       group="credentials"),
    _k("user", "str", None, "Application user created on the first primary.", "MYSQL_USER",
       group="credentials"),
    _k("password", "str", None, "Application user's password.", "MYSQL_PASSWORD", secret=True,
       group="credentials"),
    _k("repl_user", "str", "repl", "Replication user.", "MYSQL_REPL_USER", group="credentials"),
    _k("agent_user", "str", "mysqlpilot", "Account (at '%') one node logs in to another with: GTID sets, replica "
       "status, read_only, snapshot verification; SELECT, RELOAD and REPLICATION CLIENT only (docs/security.md).",
       "MYSQLPILOT_AGENT_USER", group="credentials"),
    _k("agent_password", "str", None, "Its password; every node must agree. Unset: derived from root_password "
       "(a one-way hash), so an upgrade needs no new secret and the agent's password does not reveal root's.",
       "MYSQLPILOT_AGENT_PASSWORD", secret=True, group="credentials"),
    _k("monitor_user", "str", "monitor", "Monitoring account (at '%') for HAProxy, ProxySQL and exporters: "
       "PROCESS and REPLICATION CLIENT only. Made only when monitor_password is set.", "MYSQL_MONITOR_USER",
       group="credentials"),
    _k("monitor_password", "str", None, "The monitoring account's password; set it to have that account.",
       "MYSQL_MONITOR_PASSWORD", secret=True, group="credentials"),
    _k("remote_admin_user", "str", None, "Keep an administrator account by this name at '%' with root's "
       "password and every privilege but writing to a read-only server. Unset (the default): root logs in "
       "over the local socket only, and an existing root@'%' is dropped once every member runs a version that "
       "logs in as agent_user. `mysqlpilot local up` sets it to root for its tests; `--secure` does not.",
       "MYSQLPILOT_REMOTE_ADMIN_USER", group="credentials"),
    _k("repl_password", "str", None, "Replication user's password.", "MYSQL_REPL_PASSWORD", secret=True,
       required=True, group="credentials"),
    # mysqld
    _k("flavor", "choice", "mariadb", "Server flavor.", "MYSQLPILOT_FLAVOR",
       choices=("mariadb", "mysql", "percona"), group="mysqld"),
    _k("flavor_version", "str", "10.11", "Server version the SQL dialect follows, e.g. 10.11, 5.6, 5.7, "
       "8.0, 8.4.", "MYSQLPILOT_FLAVOR_VERSION", group="mysqld"),
    _k("datadir", "str", "/var/lib/mysql", "mysqld data directory.", "MYSQLPILOT_DATADIR", group="mysqld"),
    _k("state_dir", "str", "/var/lib/mysqlpilot", "Where mysqlpilot keeps its own state, lock files "
       "and restore scratch space. Moved-aside datadirs go beside the datadir (`<datadir>.aside-<time>`).", "MYSQLPILOT_STATE_DIR", group="mysqld"),
    _k("socket", "str", None, "mysqld socket; defaults to `<state_dir>/mysqld.sock`.",
       "MYSQLPILOT_SOCKET", group="mysqld"),
    _k("mysqld_bin", "str", None, "mysqld executable; defaults to the flavor's own (mariadbd or mysqld) "
       "found on PATH or in /usr/sbin.", "MYSQLPILOT_MYSQLD", group="mysqld"),
    _k("mycnf", "str", None, "my.cnf that mysqlpilot writes for mysqld; defaults to "
       "`<state_dir>/my.cnf`.", "MYSQLPILOT_MYCNF", group="mysqld"),
    _k("mysqld_user", "str", "mysql", "OS user mysqld runs as; it owns the datadir.", "MYSQLPILOT_MYSQLD_USER",
       group="mysqld"),
    _k("innodb_buffer_pool_size", "str", "128M", "InnoDB buffer pool size written to my.cnf.",
       "MYSQLPILOT_INNODB_BUFFER_POOL_SIZE", group="mysqld"),
    _k("max_moved_aside", "int", 3, "Most moved-aside datadirs (`<datadir>.aside-<time>`) kept beside the "
       "datadir. When this many exist, a rebuild or restore refuses to move another aside and says so, "
       "instead of filling the disk; mysqlpilot never deletes them: remove the ones you no longer need by "
       "hand. `mysqlpilot status` shows each node's count. 0 refuses every move aside.",
       "MYSQLPILOT_MAX_MOVED_ASIDE", minimum=0, maximum=1000, group="mysqld"),
    # consul
    _k("consul", "hostport", "localhost:8500", "Consul agent HTTP address, host:port.", "CONSUL",
       group="consul"),
    _k("consul_scheme", "choice", "http", "http or https for the Consul API.", "CONSUL_HTTP_SCHEME",
       choices=("http", "https"), group="consul"),
    _k("consul_token", "str", None, "Consul ACL token.", "CONSUL_HTTP_TOKEN", secret=True, group="consul"),
    _k("consul_ca", "str", None, "CA bundle to verify Consul's TLS certificate.", "CONSUL_CACERT",
       group="consul"),
    _k("consul_client_cert", "str", None, "Client certificate (PEM file) for a Consul agent with "
       "verify_incoming. The same variable Consul's CLI and ContainerPilot read.", "CONSUL_CLIENT_CERT",
       group="consul"),
    _k("consul_client_key", "str", None, "Its private key (PEM file; keep it 0600). Not a secret value itself: "
       "a path.", "CONSUL_CLIENT_KEY", group="consul"),
    _k("mysql_tls_cert", "str", None, "Server certificate (PEM file) mysqld presents: replication and the nodes' "
       "probes of each other are encrypted with it. Readable by mysqld_user.", "MYSQLPILOT_TLS_CERT", group="tls"),
    _k("mysql_tls_key", "str", None, "Its private key (PEM file, readable by mysqld_user only).",
       "MYSQLPILOT_TLS_KEY", group="tls"),
    _k("mysql_tls_ca", "str", None, "CA bundle (PEM) that issued the members' certificates: replicas and probes "
       "then verify the server's certificate and that it names the member's address.", "MYSQLPILOT_TLS_CA",
       group="tls"),
    _k("require_secure_transport", "bool", False, "mysqld refuses TCP connections without TLS (the socket is "
       "always allowed). Needs mysql_tls_cert.", "MYSQLPILOT_REQUIRE_SECURE_TRANSPORT", group="tls"),
    _k("consul_prefix", "str", "mysqlpilot", "KV prefix; keys live under `<prefix>/<cluster>/`.",
       "MYSQLPILOT_CONSUL_PREFIX", group="consul"),
    # timing
    _k("session_ttl", "int", 10, "Consul session TTL in seconds (Consul allows 10 to 86400). Consul may "
       "keep a dead session up to twice this.", "MYSQLPILOT_SESSION_TTL", minimum=10, maximum=86400,
       group="timing"),
    _k("lock_delay", "float", 2.0, "Seconds nobody may take the lock after a session ends (Consul's "
       "lock-delay, and every candidate's own wait). The primary's lease is lock_delay - fence_margin "
       "seconds from its last session renew, and must be at least 1 s (docs/timing.md).",
       "MYSQLPILOT_LOCK_DELAY", minimum=1, maximum=60, group="timing"),
    _k("fence_margin", "float", 0.5, "Seconds fencing may take: a primary whose lease ended has this long to "
       "confirm read-only before it stops mysqld. At least 0.25 s.", "MYSQLPILOT_FENCE_MARGIN", minimum=0.25,
       maximum=3600, group="timing"),
    _k("health_interval", "int", 2, "Seconds between health hook runs. ContainerPilot reads it from the environment only: set "
       "the variable in containers, not just the YAML key.", "MYSQLPILOT_HEALTH_INTERVAL",
       minimum=1, maximum=600, group="timing"),
    _k("check_ttl", "float", 2.0, "TTL in seconds of the node's liveness check, linked to its session: a node "
       "whose heartbeat stops (node lost, frozen, cut off) loses its session this long after its last beat. "
       "Must be at least twice the heartbeat interval, (lock_delay - fence_margin) / 4.",
       "MYSQLPILOT_CHECK_TTL", minimum=0.5, maximum=3600, group="timing"),
    _k("service_ttl", "int", 6, "TTL in seconds of ContainerPilot's check of the `mysql` service in Consul's "
       "catalog, passed by the health hook every health_interval. It is read from the environment only, "
       "and has no part in failover.", "MYSQLPILOT_SERVICE_TTL", minimum=2, maximum=3600, group="timing"),
    _k("loop_wait", "int", 1, "Longest a blocking watch on the leader key waits before the loop runs "
       "again.", "MYSQLPILOT_LOOP_WAIT", minimum=1, maximum=60, group="timing"),
    _k("failover_grace", "float", 3.0, "Seconds the best failover candidate has to take the lock before "
       "the next best may.", "MYSQLPILOT_FAILOVER_GRACE", minimum=0, maximum=600, group="timing"),
    # failover policy
    _k("durability", "choice", "async", "async or semi-sync. With semi-sync a commit is acknowledged only "
       "once a replica has it, and only a replica that received every acknowledged commit is promoted "
       "automatically. The wait for a replica has no timeout: while no replica acknowledges (all down or cut "
       "off), commits wait instead of falling back to async. Choose async if writes must go on without a "
       "replica.", "MYSQLPILOT_DURABILITY", choices=("async", "semi-sync"), group="failover"),
    _k("max_lag_on_failover", "float", 30.0, "A replica lagging more seconds than this is not promoted "
       "automatically.", "MYSQLPILOT_MAX_LAG_ON_FAILOVER", minimum=0, group="failover"),
    _k("max_replica_lag", "float", 60.0, "The health hook reports a replica unhealthy above this lag "
       "in seconds.", "MYSQLPILOT_MAX_REPLICA_LAG", minimum=0, group="failover"),
    _k("failover_budget", "int", 3, "Automatic failovers allowed per failover_window; when spent, "
       "automatic failover pauses.", "MYSQLPILOT_FAILOVER_BUDGET", minimum=1, maximum=1000,
       group="failover"),
    _k("failover_window", "int", 3600, "Window in seconds for failover_budget.",
       "MYSQLPILOT_FAILOVER_WINDOW", minimum=1, group="failover"),
    _k("failover_rearm", "int", 1800, "Seconds without a failover after which a spent budget re-arms.",
       "MYSQLPILOT_FAILOVER_REARM", minimum=1, group="failover"),
    # snapshots
    _k("store", "choice", "local", "Snapshot store backend: local (a directory) or s3 (S3 API: AWS, "
       "MinIO, Ceph, SeaweedFS, a Manta S3 gateway).", "MYSQLPILOT_STORE", choices=("local", "s3"),
       group="snapshots"),
    _k("store_path", "str", "/var/lib/mysqlpilot/snapshots", "Directory of the local store.",
       "MYSQLPILOT_STORE_PATH", group="snapshots"),
    _k("s3_bucket", "str", None, "S3 bucket (must exist).", "MYSQLPILOT_S3_BUCKET", group="snapshots"),
    _k("s3_prefix", "str", "mysqlpilot", "Object key prefix in the bucket; each cluster keeps its snapshots under `<prefix>/clusters/<cluster>/snapshots/`.", "MYSQLPILOT_S3_PREFIX",
       group="snapshots"),
    _k("s3_endpoint", "str", None, "S3 endpoint URL for non-AWS stores, e.g. http://minio:9000.",
       ("MYSQLPILOT_S3_ENDPOINT", "AWS_ENDPOINT_URL"), group="snapshots"),
    _k("s3_region", "str", "us-east-1", "S3 region.", ("MYSQLPILOT_S3_REGION", "AWS_DEFAULT_REGION"),
       group="snapshots"),
    _k("s3_access_key", "str", None, "S3 access key id.", "AWS_ACCESS_KEY_ID", secret=True,
       group="snapshots"),
    _k("s3_secret_key", "str", None, "S3 secret access key.", "AWS_SECRET_ACCESS_KEY", secret=True,
       group="snapshots"),
    _k("s3_upload_concurrency", "int", 4, "Parts of a snapshot upload in flight at once (memory: this many "
       "parts). bench/upload.py: 4 was 1.4x faster than 1 against SeaweedFS on loopback; a store across a network "
       "gains more.", "MYSQLPILOT_S3_UPLOAD_CONCURRENCY", minimum=1, maximum=32, group="snapshots"),
    _k("snapshot_interval", "int", 3600, "Seconds between periodic snapshots.",
       "MYSQLPILOT_SNAPSHOT_INTERVAL", minimum=10, group="snapshots"),
    _k("snapshot_keep", "int", 24, "Snapshots the store keeps: the newest this many, plus every one younger "
       "than snapshot_keep_seconds, the one new replicas restore (Consul's snapshots/latest) and any newer. "
       "The primary prunes the rest after each snapshot it publishes; `mysqlpilot snapshot prune --dry-run` "
       "shows what would go. At least 2 (a replica may be restoring the previous newest); 0 keeps every "
       "snapshot for ever.", "MYSQLPILOT_SNAPSHOT_KEEP", minimum=0, group="snapshots"),
    _k("snapshot_keep_seconds", "int", 0, "Also keep every snapshot younger than this many seconds "
       "(0: snapshot_keep alone decides).", "MYSQLPILOT_SNAPSHOT_KEEP_SECONDS", minimum=0, group="snapshots"),
    _k("binlog_expire_seconds", "int", 604800, "Binary logs older than this are purged by mysqld itself "
       "(binlog_expire_logs_seconds; expire_logs_days, rounded up, where the server has no seconds). At least "
       "twice snapshot_interval, so that a replica restored from the newest snapshot finds the binlogs since it; "
       "when the primary has purged past the newest snapshot anyway, it takes a snapshot at once. 0 keeps them "
       "for ever (the disk fills).", "MYSQLPILOT_BINLOG_EXPIRE_SECONDS", minimum=0, group="snapshots"),
    _k("archive", "bool", False, "Stream the primary's binlogs into the store as they are written (the "
       "archive a point-in-time restore replays: `mysqlpilot restore --to-time`). Runs on the lock holder only.",
       "MYSQLPILOT_ARCHIVE", group="snapshots"),
    _k("archive_interval", "float", 1.0, "Seconds between the archive's uploads of new binlog events: the "
       "archive's recovery point under steady writes is about this plus one upload.",
       "MYSQLPILOT_ARCHIVE_INTERVAL", minimum=0.2, maximum=60, group="snapshots"),
    _k("snapshot_verify", "bool", False, "Prove each new snapshot restorable before it may become latest: "
       "restore it into a scratch datadir under state_dir, replay the archive to a GTID a healthy replica holds, "
       "and compare every table's checksum with that replica's (`snapshot verify ID --restore` does the same by "
       "hand). Needs room for a second copy of the data on the primary's volume.", "MYSQLPILOT_SNAPSHOT_VERIFY",
       group="snapshots"),
    _k("binlog_tool", "str", None, "The server's binlog client (mariadb-binlog, mysqlbinlog) for the archive "
       "and restores; defaults to the flavor's, on PATH.", "MYSQLPILOT_BINLOG_TOOL", group="snapshots"),
    _k("client_tool", "str", None, "The server's command-line client (mariadb, mysql), which replays binlogs "
       "in a restore; defaults to the flavor's, on PATH.", "MYSQLPILOT_CLIENT_TOOL", group="snapshots"),
    _k("snapshot_wait_timeout", "int", 1800, "How long a new replica waits for the first snapshot "
       "before it gives up.", "MYSQLPILOT_SNAPSHOT_WAIT_TIMEOUT", minimum=1, group="snapshots"),
    _k("snapshot_method", "choice", "auto", "How a snapshot copies the datadir. `backup-tool`: mariadb-backup "
       "(MariaDB) or XtraBackup (MySQL 5.6/5.7, Percona) streaming xbstream. `clone`: MySQL's CLONE plugin "
       "(8.0.17+) copies the datadir into a staging directory under state_dir, streamed as tar. `auto`: clone "
       "for Oracle MySQL 8.0.17 and later, the backup tool for everything else. Either way the stream goes "
       "through zstd into the same store and manifest, and a restore reads whichever the manifest names.",
       "MYSQLPILOT_SNAPSHOT_METHOD", choices=("auto", "backup-tool", "clone"), group="snapshots"),
    _k("seed_method", "choice", "auto", "How a new or rebuilt replica gets its data. `store`: restore the "
       "newest snapshot from the store. `clone-remote`: `CLONE INSTANCE FROM` a healthy replica (the primary "
       "only when no replica is healthy) of the same version, as the replication user (granted BACKUP_ADMIN "
       "at bootstrap), then replicate from the primary; when no member can donate or the clone fails, restore "
       "from the store. MySQL 8.0.17+ only. `auto`: where the flavor has the CLONE plugin, clone from a "
       "healthy replica if there is one, never from the primary; otherwise the store.", "MYSQLPILOT_SEED_METHOD", choices=("auto", "clone-remote", "store"),
       group="snapshots"),
    _k("compression_level", "int", 1, "zstd level for snapshots.", "MYSQLPILOT_COMPRESSION_LEVEL",
       minimum=1, maximum=19, group="snapshots"),
    _k("force_fresh_bootstrap", "bool", False, "Let a node with an empty datadir bootstrap a new, empty "
       "cluster although the snapshot store holds snapshots. Without it, a node that finds no trace of the "
       "cluster in Consul (say Consul lost its data) restores the newest stored snapshot instead and "
       "publishes it as the latest, and refuses to bootstrap while the store cannot be read. Set it for "
       "one start only, when starting over on purpose.", "MYSQLPILOT_FORCE_FRESH_BOOTSTRAP",
       group="snapshots"),
    # node API
    _k("api_address", "str", "0.0.0.0", "Address the node API listens on (the health endpoints HAProxy checks, "
       "`/status`, `/metrics`; served by `watch`). The default, every interface, lets load balancers and "
       "Prometheus on other hosts reach it: it serves no secret and changes nothing. Set 127.0.0.1 (or one "
       "interface's address) to keep it on this host; `status` then lists that address.",
       "MYSQLPILOT_API_ADDRESS", group="api"),
    _k("api_port", "int", 8008, "TCP port of the node API; 0 disables it. 8008 is Patroni's, so HAProxy "
       "templates written for Patroni carry over; it is clear of mysqld (3306, 33060) and Consul (8300-8302, "
       "8500, 8600). Nodes sharing a host need an address or a port each. Marathon's PORT1 (the group's second "
       "port, named api) is honoured.", ("MYSQLPILOT_API_PORT", "PORT1"),
       minimum=0, maximum=65535, group="api"),
    _k("log_level", "choice", "info", "Log level.", "MYSQLPILOT_LOG_LEVEL",
       choices=("debug", "info", "warning", "error"), group="general"),
)

KEYS: Dict[str, Key] = {k.name: k for k in SCHEMA}
# Keys that were removed on purpose: a leftover setting is refused with what to do, not ignored.
REMOVED: Dict[str, Tuple[str, str]] = {
    "semi_sync_timeout_ms": ("MYSQLPILOT_SEMI_SYNC_TIMEOUT_MS",
                             "is no longer supported: with durability semi-sync a commit waits for a replica's "
                             "acknowledgement without a timeout (a timeout acknowledged commits that no replica "
                             "had); remove it, and choose durability async if writes must go on without a "
                             "replica"),
}
_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(key: Key, raw: Any, origin: str) -> Any:
    where = f"{key.name} (from {origin})"
    if raw is None:
        return None
    try:
        if key.kind in ("str", "choice", "hostport"):
            if isinstance(raw, (dict, list)):
                raise ValueError("expected a single value")
            val = str(raw)
        elif key.kind == "int":
            if isinstance(raw, bool):
                raise ValueError
            val = int(str(raw).strip())
        elif key.kind == "float":
            if isinstance(raw, bool):
                raise ValueError
            val = float(str(raw).strip())
            if not math.isfinite(val):
                raise ValueError
        elif key.kind == "bool":
            if isinstance(raw, bool):
                val = raw
            elif str(raw).strip().lower() in _TRUE:
                val = True
            elif str(raw).strip().lower() in _FALSE:
                val = False
            else:
                raise ValueError
        else:  # pragma: no cover - schema bug
            raise AssertionError(key.kind)
    except ValueError:
        shown = "<hidden>" if key.secret else repr(raw)
        raise ConfigError(f"config key {where}: expected {key.kind}, got {shown}") from None
    if key.kind == "choice" and val not in key.choices:
        raise ConfigError(f"config key {where}: must be one of {', '.join(key.choices)}, got {val!r}")
    if key.kind == "hostport" and not _HOSTPORT.match(val):
        raise ConfigError(f"config key {where}: expected host:port, got {val!r}")
    if key.kind in ("int", "float"):
        if key.minimum is not None and val < key.minimum:
            raise ConfigError(f"config key {where}: must be at least {key.minimum:g}, got {val}")
        if key.maximum is not None and val > key.maximum:
            raise ConfigError(f"config key {where}: must be at most {key.maximum:g}, got {val}")
    return val


@dataclass
class Config:
    """Validated settings. Attributes are the schema's key names; `origin` says where each came from."""
    values: Dict[str, Any]
    origin: Dict[str, str] = field(default_factory=dict)
    mysqld: Dict[str, str] = field(default_factory=dict)      # options passed into my.cnf (cluster_config)
    cluster_settings: Dict[str, Any] = field(default_factory=dict)   # the cluster's (Consul) it was loaded with
    overridden: List[str] = field(default_factory=list)       # local settings the cluster's replaced

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(name)

    def redacted(self) -> Dict[str, Any]:
        return {k: ("<hidden>" if KEYS[k].secret and v else v) for k, v in self.values.items()}

    def with_overrides(self, **kw: Any) -> "Config":
        vals = dict(self.values)
        vals.update(kw)
        return Config(vals, dict(self.origin), dict(self.mysqld), self.cluster_settings, list(self.overridden))

    # derived values
    @property
    def kv_root(self) -> str:
        return f"{self.consul_prefix.strip('/')}/{self.cluster}"

    @property
    def consul_host(self) -> str:
        return self.consul.rsplit(":", 1)[0]

    @property
    def consul_port(self) -> int:
        return int(self.consul.rsplit(":", 1)[1])

    @property
    def primary_service(self) -> str:
        return f"{self.service_name}-primary"

    @property
    def check_id(self) -> str:
        """ContainerPilot's TTL check for this node's service job: `service:<name>-<hostname>`."""
        return f"service:{self.service_name}-{self.node_name}"

    @property
    def liveness_check_id(self) -> str:
        """mysqlpilot's own TTL check, linked to the session: passing while mysqld answers."""
        return f"mysqlpilot-{self.node_name}"

    @property
    def address(self) -> str:
        return f"{self.advertise_host}:{self.port}"

    @property
    def api_advertised(self) -> str:
        """host:port where others reach the node API ("" when disabled): the advertised host when it listens
        on every interface, else the address it listens on (a loopback-only API says so)."""
        if not self.api_port:
            return ""
        host = self.advertise_host if self.api_address in ("", "0.0.0.0", "::", "*") else self.api_address
        return f"[{host}]:{self.api_port}" if ":" in host else f"{host}:{self.api_port}"

    def secrets(self) -> List[str]:
        return [str(v) for k, v in self.values.items() if KEYS[k].secret and v]


def _stable_server_id(node: str, host: str, port: int) -> int:
    return (zlib.crc32(f"{node}|{host}|{port}".encode()) % 4294967294) + 1


def _restored_server_id(state_dir: str) -> int:
    """The server_id a restore chose (see datadir.Preparer.restore), kept in the node's state file."""
    from .statefile import StateFile
    try:
        sid = StateFile(state_dir).get("server_id")
    except OSError:          # an operator's machine, or a state dir this user cannot read
        return 0
    return sid if isinstance(sid, int) and not isinstance(sid, bool) and 0 < sid < 2 ** 32 else 0


def _default_host(node: str) -> str:
    try:
        return socket.gethostbyname(node)
    except OSError:
        return "127.0.0.1"


# A secret file is a password or key, not a document: refuse anything larger (a wrong path, say a dump).
SECRET_FILE_MAX = 64 * 1024


def _secret_from_env(key: Key, var: str, env: Mapping[str, str]) -> Optional[Tuple[str, str]]:
    """A secret from $VAR or from the file $VAR_FILE names (Docker's convention, for secrets mounted as
    files). Setting both is an error. Messages name the variables and the path, never the value."""
    file_var = var + "_FILE"
    direct, path = env.get(var), env.get(file_var)
    if direct not in (None, "") and path not in (None, ""):
        raise ConfigError(f"config key {key.name}: set ${var} or ${file_var}, not both")
    if direct not in (None, ""):
        return direct, f"${var}"
    if path in (None, ""):
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read(SECRET_FILE_MAX + 1)
    except OSError as exc:
        raise ConfigError(f"config key {key.name}: cannot read ${file_var} ({path}): "
                          f"{exc.strerror or exc.__class__.__name__}") from None
    if len(data) > SECRET_FILE_MAX:
        raise ConfigError(f"config key {key.name}: ${file_var} ({path}) is larger than {SECRET_FILE_MAX} bytes; "
                          "it should hold only the secret")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config key {key.name}: ${file_var} ({path}) is not UTF-8 text") from None
    text = text.rstrip("\r\n")          # files usually end with a newline; the secret does not
    if text == "":
        return None                      # an empty file counts as unset, so `required` names it
    return text, f"${file_var}"


def load(path: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
         overrides: Optional[Mapping[str, Any]] = None, credentials: bool = True, check_files: bool = True,
         cluster: Optional[Mapping[str, Any]] = None) -> Config:
    """Load YAML at `path` (or $MYSQLPILOT_CONFIG), overlay the environment, validate everything. Without
    `credentials`, the MySQL passwords are not required (for commands that talk only to Consul and the
    node API: status, pause, resume, switchover). Without `check_files`, certificate paths need not be
    readable here (`marathon render`: they name files inside the containers). `cluster`: the cluster's
    settings from Consul (cluster_config), which win over the file and the environment."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("MYSQLPILOT_CONFIG")
    raw: Dict[str, Any] = {}
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist; pass --config or set MYSQLPILOT_CONFIG") \
                from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{at}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        for k in loaded:
            if k in REMOVED:
                raise ConfigError(f"config key {k} (in {path}) {REMOVED[k][1]}")
            if k not in KEYS and not str(k).startswith("mysqld."):
                raise ConfigError(f"config file {path}: unknown key {k!r}; see docs/configuration.md")
        raw = loaded

    for name, (var, why) in REMOVED.items():
        if env.get(var) not in (None, ""):
            raise ConfigError(f"config key {name} (from ${var}) {why}")

    values: Dict[str, Any] = {}
    origin: Dict[str, str] = {}
    overridden: List[str] = []
    for key in SCHEMA:
        val, org = key.default, "default"
        if key.name in raw:
            val, org = raw[key.name], f"{path}"
        for var in key.env:
            if key.secret:
                found = _secret_from_env(key, var, env)
                if found is not None:
                    val, org = found
                    break
            elif env.get(var) not in (None, ""):
                val, org = env[var], f"${var}"
                break
        if cluster and key.name in cluster["values"]:
            mine = _coerce(key, val, org)
            val = cluster["values"][key.name]
            if org != "default" and mine != _coerce(key, val, "the cluster's settings in Consul"):
                overridden.append(f"{key.name}: {mine!r} from {org} overridden by the cluster's {val!r}")
            org = f"cluster (Consul, version {cluster['version']})"
        if overrides and key.name in overrides and overrides[key.name] is not None:
            val, org = overrides[key.name], "command line"
        values[key.name] = _coerce(key, val, org)
        origin[key.name] = org

    for key in SCHEMA:
        if key.required and values[key.name] in (None, "") and (credentials or key.group != "credentials"):
            envs = [n for e in key.env for n in (("$" + e, "$" + e + "_FILE") if key.secret else ("$" + e,))]
            names = " or ".join(envs + [f"{key.name!r} in the config file"])
            raise ConfigError(f"config key {key.name} is required: set {names}")

    cfg = Config(values, origin, _mysqld_options(raw, cluster, path), dict(cluster or {}), overridden)
    _fill_defaults(cfg)
    _cross_check(cfg, check_files)
    return cfg


def _mysqld_options(raw: Mapping[str, Any], cluster: Optional[Mapping[str, Any]], path) -> Dict[str, str]:
    """`mysqld.<option>` from the file, then the cluster's; owned options refused (cluster_config)."""
    from .cluster_config import option_name, settable
    out: Dict[str, str] = {}
    for name, val, where in [(k, v, path) for k, v in raw.items() if str(k).startswith("mysqld.")] + \
            [("mysqld." + k, v, "the cluster's settings in Consul") for k, v in ((cluster or {}).get("mysqld") or {}).items()]:
        why = settable(name)
        if why or "\n" in str(val):
            raise ConfigError(f"config key {why or name + ': a value is one line'} (in {where})")
        out[option_name(name[7:])] = str(val)
    return out


def _fill_defaults(cfg: Config) -> None:
    v = cfg.values
    if not v["node_name"]:
        v["node_name"] = socket.gethostname()
        cfg.origin["node_name"] = "host name"
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", v["node_name"]):
        raise ConfigError(f"config key node_name: {v['node_name']!r} may hold only letters, digits, '.', '_' "
                          "and '-'")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", v["cluster"]):
        # It names the cluster's directory in the snapshot store and its Consul prefix.
        raise ConfigError(f"config key cluster: {v['cluster']!r} may hold only letters, digits, '.', '_' and '-'")
    if not v["advertise_host"]:
        v["advertise_host"] = _default_host(v["node_name"])
        cfg.origin["advertise_host"] = "host name lookup"
    if not v["server_id"]:
        v["server_id"] = _restored_server_id(v["state_dir"])
        cfg.origin["server_id"] = "chosen at the last restore (state file)"
        if not v["server_id"]:
            v["server_id"] = _stable_server_id(v["node_name"], v["advertise_host"], v["port"])
            cfg.origin["server_id"] = "derived from node name, host and port"
    if not v["socket"]:
        v["socket"] = os.path.join(v["state_dir"], "mysqld.sock")
    if not v["mycnf"]:
        v["mycnf"] = os.path.join(v["state_dir"], "my.cnf")


def heartbeat_interval(lock_delay: float, fence_margin: float) -> float:
    from .timing import Timing
    return Timing(lock_delay, fence_margin).heartbeat


def _cross_check(cfg: Config, check_files: bool = True) -> None:
    # The fencing proof (docs/timing.md): refused, not warned about.
    from .timing import Timing
    Timing.from_config(cfg).validate()
    if cfg.health_interval >= cfg.service_ttl:
        raise ConfigError(f"config key service_ttl ({cfg.service_ttl}s) must exceed health_interval "
                          f"({cfg.health_interval}s) or ContainerPilot's service check flaps between runs")
    _check_api(cfg)
    _check_consul_tls(cfg)
    _check_mysql_tls(cfg)
    if check_files:
        _readable(cfg, "consul_ca", "consul_client_cert", "consul_client_key", "mysql_tls_ca", "mysql_tls_cert")
    if cfg.store == "s3" and not cfg.s3_bucket:
        raise ConfigError("config key s3_bucket is required when store is s3: set $MYSQLPILOT_S3_BUCKET")
    if cfg.user and not cfg.password:
        raise ConfigError("config key password is required when user is set: set $MYSQL_PASSWORD")
    if cfg.flavor in ("mysql", "percona") and not re.match(r"^(5\.6|5\.7|8\.\d+|9\.\d+)", cfg.flavor_version):
        raise ConfigError(f"config key flavor_version: {cfg.flavor_version!r} is not a MySQL/Percona version "
                          "(5.6, 5.7, 8.0, 8.4, 9.x)")
    if cfg.snapshot_method == "clone":
        from .flavors import get_flavor
        if not get_flavor(cfg.flavor, cfg.flavor_version).supports_clone:
            raise ConfigError(f"config key snapshot_method: clone needs the CLONE plugin of MySQL 8.0.17 or later; "
                              f"{cfg.flavor} {cfg.flavor_version} has none: use backup-tool or auto")
    if cfg.snapshot_keep == 1:
        raise ConfigError("config key snapshot_keep is 1: a replica restoring the previous snapshot would lose it "
                          "when the next one is taken; keep at least 2 (or 0 to keep every snapshot)")
    if cfg.binlog_expire_seconds and cfg.binlog_expire_seconds < 2 * cfg.snapshot_interval:
        raise ConfigError(f"config key binlog_expire_seconds ({cfg.binlog_expire_seconds}s) is less than twice "
                          f"snapshot_interval ({cfg.snapshot_interval}s): a replica restored from the newest snapshot "
                          "could find the binlogs since it purged; raise binlog_expire_seconds to at least "
                          f"{2 * cfg.snapshot_interval} or take snapshots more often")
    if cfg.archive and not cfg.api_port:
        raise ConfigError("config key archive is on but api_port is 0: the archive streams only while the node "
                          "API says this node is the primary; set api_port (default 8008) or turn archive off")
    if cfg.archive and cfg.binlog_expire_seconds and cfg.binlog_expire_seconds < 600:
        raise ConfigError(f"config key binlog_expire_seconds ({cfg.binlog_expire_seconds}s) is under 600 with "
                          "archive on: a primary could purge binlogs before the archive (or a new primary's "
                          "archiver) has read them; raise it")
    if cfg.flavor == "mariadb" and not re.match(r"^1\d\.\d+", cfg.flavor_version):
        raise ConfigError(f"config key flavor_version: {cfg.flavor_version!r} is not a MariaDB version "
                          "(10.x or 11.x)")


def _both_or_neither(cfg: Config, a: str, b: str, why: str) -> None:
    if bool(getattr(cfg, a)) != bool(getattr(cfg, b)):
        have, lack = (a, b) if getattr(cfg, a) else (b, a)
        raise ConfigError(f"config key {have} is set but {lack} is not: {why} ({KEYS[a].env[0]} and {KEYS[b].env[0]})")


def _readable(cfg: Config, *keys: str) -> None:
    for k in keys:
        path = getattr(cfg, k)
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"config key {k}: cannot read {path}; mount the file or fix the path")


def _check_consul_tls(cfg: Config) -> None:
    _both_or_neither(cfg, "consul_client_cert", "consul_client_key", "a client certificate needs both")
    if (cfg.consul_client_cert or cfg.consul_ca) and cfg.consul_scheme != "https":
        raise ConfigError("config keys consul_ca/consul_client_cert are set but consul_scheme is http: set "
                          "CONSUL_HTTP_SCHEME=https, or they would never be used")


def _check_mysql_tls(cfg: Config) -> None:
    _both_or_neither(cfg, "mysql_tls_cert", "mysql_tls_key", "mysqld needs both")
    if cfg.require_secure_transport and not cfg.mysql_tls_cert:
        raise ConfigError("config key require_secure_transport is on but mysql_tls_cert is not set: every TCP "
                          "client, replication included, would be refused; set MYSQLPILOT_TLS_CERT and _KEY")


def _check_api(cfg: Config) -> None:
    addr = cfg.api_address.strip("[]")
    if addr not in ("", "*"):
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9\-.]*[A-Za-z0-9])?$", addr):
                raise ConfigError(f"config key api_address: {cfg.api_address!r} is neither an IP address nor a host "
                                  "name; use 0.0.0.0 (every interface) or 127.0.0.1 (this host only)") from None
    if cfg.api_port and cfg.api_port == cfg.port:
        raise ConfigError(f"config key api_port ({cfg.api_port}) is mysqld's port; choose another (default 8008) "
                          "or 0 to disable the node API")


def reference_markdown() -> str:
    """The configuration reference for docs/configuration.md, generated from SCHEMA."""
    out = ["# Configuration reference", "",
           "Generated from `mysqlpilot/config.py` by `mysqlpilot docs config-reference`; do not edit by hand.",
           "", "Values come from the YAML file given by `--config` or `$MYSQLPILOT_CONFIG`, overlaid by "
           "environment variables (the first variable listed that is set wins).", "",
           "A secret can also come from a file: set `<VARIABLE>_FILE` to its path (say "
           "`MYSQL_ROOT_PASSWORD_FILE=/run/secrets/mysqlpilot/root-password`) instead of `<VARIABLE>`; setting "
           "both is an error. The file holds only the secret; trailing newlines are dropped.", ""]
    groups: List[str] = []
    for k in SCHEMA:
        if k.group not in groups:
            groups.append(k.group)
    for g in groups:
        out += [f"## {g}", "", "| key | environment | type | default | description |",
                "|---|---|---|---|---|"]
        for k in SCHEMA:
            if k.group != g:
                continue
            kind = k.kind if k.kind != "choice" else " \\| ".join(k.choices)
            dflt = "(required)" if k.required else ("" if k.default is None else f"`{k.default}`")
            envs = ", ".join(f"`{e}`" for e in k.env)
            doc = k.doc + (f" Secret: never logged; `{k.env[0]}_FILE` may name a file that holds it."
                           if k.secret else "")
            out.append(f"| `{k.name}` | {envs} | {kind} | {dflt} | {doc} |")
        out.append("")
    return "\n".join(out)

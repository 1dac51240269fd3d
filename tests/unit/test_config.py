"""Config loading: YAML overlaid by env, validated with one-line errors that name the key."""
import pytest

from mysqlpilot import config
from mysqlpilot.errors import ConfigError

BASE = {"MYSQL_ROOT_PASSWORD": "rootpw-secret", "MYSQL_REPL_PASSWORD": "replpw-secret", "HOSTNAME": "db1"}


def load(env=None, yaml_text=None, tmp_path=None):
    path = None
    if yaml_text is not None:
        path = tmp_path / "c.yaml"
        path.write_text(yaml_text)
    return config.load(str(path) if path else None, env=dict(BASE, **(env or {})))


def test_defaults_and_env_names_of_the_official_images():
    c = load({"MYSQL_DATABASE": "app", "MYSQL_USER": "u", "MYSQL_PASSWORD": "p", "CONSUL": "consul:8500",
              "SERVICE_NAME": "db"})
    assert (c.database, c.user, c.consul, c.service_name) == ("app", "u", "consul:8500", "db")
    assert c.node_name == "db1" and c.repl_user == "repl" and c.port == 3306
    assert c.check_id == "service:db-db1" and c.primary_service == "db-primary"
    assert c.kv_root == "mysqlpilot/mysql"
    assert 1 <= c.server_id < 2 ** 32


def test_marathon_host_and_port0_are_honoured():
    c = load({"HOST": "10.0.0.7", "PORT0": "31002"})
    assert (c.advertise_host, c.port) == ("10.0.0.7", 31002)
    # our own variable wins over Marathon's
    c = load({"HOST": "10.0.0.7", "PORT0": "31002", "MYSQLPILOT_PORT": "3307"})
    assert c.port == 3307


def test_yaml_then_env_overlay(tmp_path):
    c = load({"MYSQLPILOT_SESSION_TTL": "20"}, "cluster: prod\nsession_ttl: 15\nlock_delay: 4\ncheck_ttl: 2\n", tmp_path)
    assert c.cluster == "prod" and c.session_ttl == 20 and c.lock_delay == 4
    assert c.origin["session_ttl"] == "$MYSQLPILOT_SESSION_TTL"


def test_server_id_is_stable_and_distinct():
    a = load({"MYSQLPILOT_NODE": "a", "MYSQLPILOT_ADVERTISE_HOST": "127.0.1.1"})
    b = load({"MYSQLPILOT_NODE": "b", "MYSQLPILOT_ADVERTISE_HOST": "127.0.1.2"})
    a2 = load({"MYSQLPILOT_NODE": "a", "MYSQLPILOT_ADVERTISE_HOST": "127.0.1.1"})
    assert a.server_id == a2.server_id != b.server_id


@pytest.mark.parametrize("env,needle", [
    ({"MYSQL_ROOT_PASSWORD": ""}, "root_password is required"),
    ({"MYSQLPILOT_SESSION_TTL": "5"}, "session_ttl (from $MYSQLPILOT_SESSION_TTL): must be at least 10"),
    ({"MYSQLPILOT_SESSION_TTL": "ten"}, "session_ttl (from $MYSQLPILOT_SESSION_TTL): expected int"),
    ({"CONSUL": "nohostport"}, "consul (from $CONSUL): expected host:port"),
    ({"MYSQLPILOT_DURABILITY": "sync"}, "durability (from $MYSQLPILOT_DURABILITY): must be one of async, "
                                         "semi-sync"),
    ({"MYSQLPILOT_LOCK_DELAY": "4", "MYSQLPILOT_FENCE_MARGIN": "3.5"}, "lock_delay (4s) must exceed fence_margin "
                                                                      "(3.5s) by at least 1s"),
    ({"MYSQLPILOT_FENCE_MARGIN": "0.1"}, "fence_margin (from $MYSQLPILOT_FENCE_MARGIN): must be at least 0.25"),
    ({"MYSQLPILOT_LOCK_DELAY": "nan"}, "lock_delay (from $MYSQLPILOT_LOCK_DELAY): expected float"),
    ({"MYSQLPILOT_LOCK_DELAY": "inf"}, "lock_delay (from $MYSQLPILOT_LOCK_DELAY): expected float"),
    # heartbeat every 0.375 s (a quarter of the 1.5 s lease): a 0.6 s check would end on one late beat
    ({"MYSQLPILOT_CHECK_TTL": "0.6"}, "check_ttl (0.6s) must be at least twice the heartbeat interval (0.375s"),
    ({"MYSQLPILOT_CHECK_TTL": "12"}, "session_ttl (10s) must be at least check_ttl (12s)"),
    ({"MYSQLPILOT_HEALTH_INTERVAL": "6"}, "service_ttl (6s) must exceed health_interval (6s)"),
    ({"MYSQLPILOT_STORE": "s3"}, "s3_bucket is required"),
    ({"MYSQL_USER": "app"}, "password is required when user is set"),
    ({"MYSQLPILOT_NOFAILOVER": "maybe"}, "nofailover"),
    ({"MYSQLPILOT_FLAVOR": "percona", "MYSQLPILOT_FLAVOR_VERSION": "10.11"}, "not a MySQL/Percona version"),
    ({"MYSQLPILOT_NODE": "bad name!"}, "node_name"),
    ({"MYSQLPILOT_CLUSTER": "../other"}, "config key cluster"),     # it names a directory in the store
])
def test_errors_name_the_key(env, needle):
    with pytest.raises(ConfigError) as ei:
        load(env)
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg
    assert "rootpw-secret" not in msg and "replpw-secret" not in msg


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'sesion_ttl'"):
        load(None, "sesion_ttl: 10\n", tmp_path)
    with pytest.raises(ConfigError, match="not valid YAML at line 2"):
        load(None, "a: 1\n b: [\n", tmp_path)
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load(None, "- 1\n", tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(str(tmp_path / "missing.yaml"), env=BASE)


def test_secret_values_are_hidden():
    c = load({"CONSUL_HTTP_TOKEN": "tok-123456"})
    red = c.redacted()
    assert red["root_password"] == "<hidden>" and red["consul_token"] == "<hidden>"
    assert "tok-123456" in c.secrets()


def test_secret_bad_type_is_not_echoed(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load({"MYSQL_ROOT_PASSWORD": ""}, "root_password: [hunter2x, 2]\n", tmp_path)
    assert "root_password" in str(ei.value) and "<hidden>" in str(ei.value)
    assert "hunter2x" not in str(ei.value)


def _file_env(tmp_path, **secrets):
    """Env with the passwords given as *_FILE paths instead of values."""
    env = {"HOSTNAME": "db1"}
    for var, text in secrets.items():
        p = tmp_path / var.lower()
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        env[var + "_FILE"] = str(p)
    return env


def test_secrets_from_files(tmp_path):
    env = _file_env(tmp_path, MYSQL_ROOT_PASSWORD="root-from-file\n", MYSQL_REPL_PASSWORD="repl-from-file",
                    CONSUL_HTTP_TOKEN="tok-from-file\r\n", AWS_SECRET_ACCESS_KEY="s3-from-file\n")
    c = config.load(None, env=env)
    assert (c.root_password, c.repl_password, c.consul_token, c.s3_secret_key) == \
        ("root-from-file", "repl-from-file", "tok-from-file", "s3-from-file")
    assert c.origin["root_password"] == "$MYSQL_ROOT_PASSWORD_FILE"
    assert {"root-from-file", "tok-from-file"} <= set(c.secrets())     # masked in logs like any secret
    assert c.redacted()["consul_token"] == "<hidden>"


def test_secret_file_inner_whitespace_is_kept(tmp_path):
    env = _file_env(tmp_path, MYSQL_ROOT_PASSWORD=" a b \n\n", MYSQL_REPL_PASSWORD="x")
    assert config.load(None, env=env).root_password == " a b "


def test_only_secrets_read_files(tmp_path):
    env = dict(BASE, MYSQLPILOT_CLUSTER_FILE=str(tmp_path / "absent"))
    assert config.load(None, env=env).cluster == "mysql"


@pytest.mark.parametrize("case,needle", [
    ("both", "set $MYSQL_ROOT_PASSWORD or $MYSQL_ROOT_PASSWORD_FILE, not both"),
    ("missing", "cannot read $MYSQL_ROOT_PASSWORD_FILE"),
    ("directory", "cannot read $MYSQL_ROOT_PASSWORD_FILE"),
    ("empty", "root_password is required: set $MYSQL_ROOT_PASSWORD or $MYSQL_ROOT_PASSWORD_FILE"),
    ("binary", "is not UTF-8 text"),
    ("huge", "is larger than"),
])
def test_secret_file_errors_name_the_variable_never_the_value(tmp_path, case, needle):
    p = tmp_path / "root"
    env = dict(BASE)
    del env["MYSQL_ROOT_PASSWORD"]
    env["MYSQL_ROOT_PASSWORD_FILE"] = str(p)
    if case == "both":
        p.write_text("rootpw-secret")
        env["MYSQL_ROOT_PASSWORD"] = "rootpw-secret"
    elif case == "missing":
        pass
    elif case == "directory":
        p.mkdir()
    elif case == "empty":
        p.write_text("\n")
    elif case == "binary":
        p.write_bytes(b"rootpw-secret\xff\xfe")
    elif case == "huge":
        p.write_text("rootpw-secret" * 10000)
    with pytest.raises(ConfigError) as ei:
        config.load(None, env=env)
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg and "rootpw-secret" not in msg
    if case not in ("both", "empty"):
        assert str(p) in msg


def test_a_restore_gives_the_node_a_new_server_id_that_every_later_process_uses(tmp_path):
    """Seen in the chaos campaign (async, seed 2): a node rebuilt from a snapshot kept its server_id, and
    replication skips events carrying the replica's own server_id, so what it had written as a primary
    after the snapshot never came back; it ran "caught up" without those rows."""
    from mysqlpilot import config as C
    from mysqlpilot.datadir import Preparer
    env = {"MYSQL_ROOT_PASSWORD": "x", "MYSQL_REPL_PASSWORD": "y", "MYSQLPILOT_STATE_DIR": str(tmp_path),
           "MYSQLPILOT_NODE": "db1"}
    before = C.load(None, env=env)
    p = Preparer.__new__(Preparer)                # only the state and config parts are exercised
    from mysqlpilot.statefile import StateFile
    p.cfg, p.state = before, StateFile(str(tmp_path))
    p._new_server_id()
    assert before.server_id != C._stable_server_id("db1", before.advertise_host, before.port)
    after = C.load(None, env=env)                 # run-mysqld, watch, health: later processes
    assert after.server_id == before.server_id and after.origin["server_id"].startswith("chosen at")
    # A server_id fixed in the configuration is kept (and the log says what that costs).
    fixed = C.load(None, env=dict(env, MYSQLPILOT_SERVER_ID="42"))
    p.cfg = fixed
    p._new_server_id()
    assert fixed.server_id == 42


def test_the_defaults_keep_the_fencing_proof_and_the_heartbeat_arithmetic():
    """docs/timing.md: lease = lock_delay - fence_margin; four beats per lease; the check outlives a late beat."""
    from mysqlpilot.config import heartbeat_interval
    cfg = load({})
    lease = cfg.lock_delay - cfg.fence_margin
    beat = heartbeat_interval(cfg.lock_delay, cfg.fence_margin)
    assert lease >= 1 and beat == lease / 4 and cfg.check_ttl >= 2 * beat
    assert (cfg.check_ttl, cfg.lock_delay, cfg.fence_margin) == (2.0, 2.0, 0.5)


@pytest.mark.parametrize("where", ["env", "yaml"])
def test_the_semi_sync_timeout_is_gone_and_a_leftover_setting_says_what_to_do(tmp_path, where):
    """Issue 18 item 9: in durability semi-sync the wait for a replica's ACK has no timeout (a timeout
    acknowledged commits that no replica had). A leftover setting is refused in one line, not ignored:
    writes now wait while no replica acknowledges, and the operator should know."""
    with pytest.raises(ConfigError) as e:
        if where == "env":
            load({"MYSQLPILOT_SEMI_SYNC_TIMEOUT_MS": "10000"})
        else:
            load(None, "semi_sync_timeout_ms: 10000\n", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "semi_sync_timeout_ms" in msg and "remove" in msg
    assert ("$MYSQLPILOT_SEMI_SYNC_TIMEOUT_MS" in msg) == (where == "env")
    assert "semi_sync_timeout_ms" not in config.KEYS


def test_a_node_refuses_certificate_paths_it_cannot_read(tmp_path):
    """A node (unlike `marathon render`) must read its certificates: one line naming the key and the path."""
    base = {"MYSQL_ROOT_PASSWORD": "r", "MYSQL_REPL_PASSWORD": "p"}
    for var, key in (("CONSUL_CACERT", "consul_ca"), ("MYSQLPILOT_TLS_CA", "mysql_tls_ca")):
        env = dict(base, **{var: str(tmp_path / "absent.pem")}, CONSUL_HTTP_SCHEME="https")
        with pytest.raises(config.ConfigError, match=f"config key {key}: cannot read {tmp_path}/absent.pem"):
            config.load(None, env=env)
        assert config.load(None, env=env, check_files=False)

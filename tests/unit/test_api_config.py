"""The node API's config keys: api_address and api_port, validated in one line naming the key."""
import pytest

from mysqlpilot import config
from mysqlpilot.errors import ConfigError

BASE = {"MYSQL_ROOT_PASSWORD": "pw", "MYSQL_REPL_PASSWORD": "pw2", "MYSQLPILOT_NODE": "n1",
        "MYSQLPILOT_ADVERTISE_HOST": "10.0.0.5"}


def load(**env):
    return config.load(None, env={**BASE, **env})


def test_defaults_listen_everywhere_on_8008_and_advertise_the_node_host():
    cfg = load()
    assert (cfg.api_address, cfg.api_port) == ("0.0.0.0", 8008)
    assert cfg.api_advertised == "10.0.0.5:8008"


def test_a_loopback_only_api_advertises_the_loopback_address():
    assert load(MYSQLPILOT_API_ADDRESS="127.0.0.1").api_advertised == "127.0.0.1:8008"
    assert load(MYSQLPILOT_API_ADDRESS="::1", MYSQLPILOT_API_PORT="9000").api_advertised == "[::1]:9000"


def test_port_zero_disables_it():
    cfg = load(MYSQLPILOT_API_PORT="0")
    assert cfg.api_port == 0 and cfg.api_advertised == ""


@pytest.mark.parametrize("env,words", [
    ({"MYSQLPILOT_API_PORT": "70000"}, ["api_port", "at most 65535"]),
    ({"MYSQLPILOT_API_PORT": "-1"}, ["api_port", "at least 0"]),
    ({"MYSQLPILOT_API_PORT": "http"}, ["api_port", "expected int"]),
    ({"MYSQLPILOT_API_PORT": "3306"}, ["api_port", "mysqld's port"]),
    ({"MYSQLPILOT_API_ADDRESS": "not an address!"}, ["api_address", "127.0.0.1"]),
])
def test_bad_values_are_refused_in_one_line_naming_the_key(env, words):
    with pytest.raises(ConfigError) as exc:
        load(**env)
    msg = str(exc.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg

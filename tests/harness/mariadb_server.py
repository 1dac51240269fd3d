"""pytest plugin: real database servers on loopback (127.0.1.x, free ports), always torn down.

    inst = server_factory("a")             # initialised, started, users created (read_only=ON)
    srv = inst.server()                    # root over TCP (mysqlpilot.sqlclient.Server)
    inst.stop(); inst.start(); inst.kill()

`server_factory` runs once per flavor of the session-scoped `flavor` fixture: MariaDB 10.11 from Debian,
and Oracle MySQL 9.7 from the Debian sid root of scripts/install-deps.sh, run by scripts/mysqld-sid.
A test that cannot apply to a flavor says so: `@pytest.mark.flavors("mariadb", reason="...")`, and is
skipped with that reason for the others. `mariadb_factory` is the MariaDB-only form (mariadb-backup).
"""
from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
from typing import Dict, List, Optional

import pytest

from mysqlpilot import config, mysqld
from mysqlpilot.flavors import get_flavor
from mysqlpilot.local.ports import free_port
from mysqlpilot.sqlclient import Server

ROOT_PASSWORD = "root-'pw\\1"      # quote and backslash on purpose: exercises escaping
REPL_PASSWORD = "repl-pw-2"
_hosts = itertools.count(1)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAVORS = ("mariadb", "mysql")
MYSQLD_SID = os.path.join(REPO, "scripts", "mysqld-sid")


def mariadbd_available() -> bool:
    return bool(shutil.which("mariadbd") or os.access("/usr/sbin/mariadbd", os.X_OK)) and \
        bool(shutil.which("mariadb-install-db"))


def mysql_root() -> str:
    return os.environ.get("MYSQLPILOT_MYSQL_ROOT") or os.path.join(REPO, ".cache", "mysql-sid")


def flavor_unavailable(name: str) -> Optional[str]:
    """Why this machine cannot run `name` for real, or None."""
    if name == "mariadb":
        return None if mariadbd_available() else "mariadbd / mariadb-install-db not installed"
    if os.environ.get("MYSQLPILOT_SKIP_MYSQL") == "1":
        return "MYSQLPILOT_SKIP_MYSQL=1: the MySQL 9.7 leg is switched off"
    if not os.access(os.path.join(mysql_root(), "usr", "sbin", "mysqld"), os.X_OK):
        return f"no MySQL 9.7 root at {mysql_root()}: run bash scripts/install-deps.sh"
    if os.geteuid() != 0:
        return "scripts/mysqld-sid needs root (mount namespace and chroot)"
    return None


def flavor_env(name: str) -> Dict[str, str]:
    """The settings that make a node of this flavor (environment variables)."""
    if name == "mysql":
        from mysqlpilot.local.cluster import mysql_server_settings
        st = mysql_server_settings()
        return {"MYSQLPILOT_FLAVOR": "mysql", "MYSQLPILOT_FLAVOR_VERSION": st["flavor_version"],
                "MYSQLPILOT_MYSQLD": st["mysqld_bin"]}
    return {"MYSQLPILOT_FLAVOR": "mariadb"}


def pytest_configure(config):
    config.addinivalue_line("markers", "flavors(*names, reason): the test applies to these flavors only; "
                                       "the others skip it with the reason")


def pytest_collection_modifyitems(config, items):
    """CI runs one leg per flavor: $MYSQLPILOT_TEST_FLAVORS (say "mysql") keeps only that flavor's runs of
    the flavored tests; $MYSQLPILOT_TEST_FLAVORED_ONLY=1 also leaves out the tests without a flavor (the
    unit tests, Consul, S3), which the other leg already ran."""
    for item in items:
        # Skipped at collection, not in a fixture: a module's cluster is then never started for a flavor
        # none of its tests runs on (a skip inside the test came after the module fixture's setup).
        cs, mark = getattr(item, "callspec", None), item.get_closest_marker("flavors")
        f = cs.params.get("flavor") if cs is not None else None
        if mark is not None and f is not None and f not in mark.args:
            item.add_marker(pytest.mark.skip(reason=f"not on {f}: "
                                             f"{mark.kwargs.get('reason', 'marked for ' + ', '.join(mark.args))}"))
    want = [f for f in os.environ.get("MYSQLPILOT_TEST_FLAVORS", "").split(",") if f]
    only = os.environ.get("MYSQLPILOT_TEST_FLAVORED_ONLY") == "1"
    if not want and not only:
        return
    keep, drop = [], []
    for item in items:
        cs = getattr(item, "callspec", None)
        f = cs.params.get("flavor") if cs is not None else None
        ok = (not only) if f is None else (not want or f in want)
        (keep if ok else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session", params=FLAVORS)
def flavor(request) -> str:
    """The server flavor a test runs against: every test using it runs once per flavor."""
    reason = flavor_unavailable(request.param)
    if reason:
        pytest.skip(f"{request.param}: {reason}")
    return request.param


@pytest.fixture(autouse=True)
def _flavor_applies(request):
    if "flavor" not in request.fixturenames:
        return
    mark = request.node.get_closest_marker("flavors")
    if mark is None:
        return
    name = request.getfixturevalue("flavor")
    if name not in mark.args:
        pytest.skip(f"not on {name}: {mark.kwargs.get('reason', 'marked for ' + ', '.join(mark.args))}")


class Instance:
    def __init__(self, name: str, host: str, base: str, env_extra: Optional[Dict[str, str]] = None):
        self.name = name
        self.host = host
        self.base = base
        self._sockdir: Optional[str] = None
        state = os.path.join(base, "state")
        env = {
            "MYSQL_ROOT_PASSWORD": ROOT_PASSWORD,
            "MYSQL_REPL_PASSWORD": REPL_PASSWORD,
            "MYSQLPILOT_DATADIR": os.path.join(base, "data"),
            "MYSQLPILOT_STATE_DIR": state,
            "MYSQLPILOT_PORT": str(free_port(host)),
            "MYSQLPILOT_ADVERTISE_HOST": host,
            "MYSQLPILOT_BIND_ADDRESS": host,
            "MYSQLPILOT_MYSQLD_USER": "root",
            "MYSQLPILOT_NODE": name,
            "MYSQLPILOT_INNODB_BUFFER_POOL_SIZE": "32M",
            "MYSQLPILOT_REMOTE_ADMIN_USER": "root",      # the tests drive these servers as root over TCP
        }
        if len(os.path.join(state, "mysqld.sock")) > 100:
            # unix socket paths are limited to ~107 bytes; pytest's tmp paths can be longer.
            self._sockdir = tempfile.mkdtemp(prefix="mp-sock-")
            env["MYSQLPILOT_SOCKET"] = os.path.join(self._sockdir, "mysqld.sock")
        env.update(env_extra or {})
        self.cfg = config.load(env=env)
        self.flavor = get_flavor(self.cfg.flavor, self.cfg.flavor_version)
        self.proc: Optional[subprocess.Popen] = None

    @property
    def port(self) -> int:
        return self.cfg.port

    def server(self, user: str = "root", password: Optional[str] = None, **kw) -> Server:
        if password is None and user == "root":
            password = self.cfg.root_password
        return Server(self.flavor, host=self.host, port=self.port, user=user, password=password, **kw)

    def admin(self) -> Server:
        """root@localhost over the socket, as mysqlpilot connects: the account that may toggle read_only
        (root@'%' lacks READ_ONLY ADMIN on MariaDB 10.11+)."""
        return Server(self.flavor, socket=self.cfg.socket, user="root", password=self.cfg.root_password)

    def socket_server(self, password: Optional[str] = None) -> Server:
        return Server(self.flavor, socket=self.cfg.socket, user="root", password=password)

    def setup(self) -> "Instance":
        mysqld.write_mycnf(self.cfg, self.flavor)
        mysqld.init_datadir(self.cfg, self.flavor)
        self.start()
        srv = self.socket_server()          # OS root over the socket: no password exists yet
        try:
            srv.bootstrap_users(self.cfg)
        finally:
            srv.close()
        return self

    def start(self, timeout: float = 120) -> None:
        mysqld.write_mycnf(self.cfg, self.flavor)
        self.proc = mysqld.start_mysqld(self.cfg, self.flavor)
        mysqld.wait_ready(self.cfg, timeout, self.proc)

    def stop(self, timeout: float = 60) -> None:
        mysqld.stop_mysqld(self.cfg, timeout=timeout)
        self._reap()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        else:
            pid = mysqld.mysqld_pid(self.cfg)
            if pid:
                os.kill(pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def error_log_tail(self, lines: int = 20) -> str:
        return mysqld.tail(mysqld.error_log(self.cfg), lines)

    def teardown(self) -> None:
        try:
            self.stop(timeout=20)
        except Exception:  # noqa: BLE001 - fall back to SIGKILL below
            pass
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        pid = mysqld.mysqld_pid(self.cfg)
        if pid:
            os.kill(pid, signal.SIGKILL)
        if self._sockdir:
            shutil.rmtree(self._sockdir, ignore_errors=True)


def _factory(tmp_path, flavor_name: str):
    made: List[Instance] = []

    def make(name: str, host: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> Instance:
        host = host or f"127.0.1.{(next(_hosts) % 250) + 1}"
        inst = Instance(name, host, str(tmp_path / name), dict(flavor_env(flavor_name), **(env or {})))
        made.append(inst)        # registered before setup so a failed start is still torn down
        try:
            inst.setup()
        except Exception as exc:
            raise AssertionError(f"{flavor_name} instance {name} did not start: {exc}\n{inst.error_log_tail()}") \
                from exc
        return inst

    return made, make


@pytest.fixture
def server_factory(tmp_path, flavor):
    made, make = _factory(tmp_path, flavor)
    try:
        yield make
    finally:
        for inst in reversed(made):
            inst.teardown()


@pytest.fixture
def mariadb_factory(tmp_path):
    if not mariadbd_available():
        pytest.skip("mariadbd / mariadb-install-db not installed")
    made, make = _factory(tmp_path, "mariadb")
    try:
        yield make
    finally:
        for inst in reversed(made):
            inst.teardown()

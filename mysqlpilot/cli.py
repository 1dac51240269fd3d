"""The `mysqlpilot` command: hooks for ContainerPilot and commands for operators.

Expected failures (PilotError) print one line and exit 1; nothing else is caught, so bugs keep their
traceback.
"""
from __future__ import annotations

import importlib
import logging
import os
from typing import Any, Optional

import click

from . import config as config_mod
from .errors import PilotError
from .logsetup import mask_secrets, setup_logging

COMMAND_MODULES = ("hooks", "operator", "reinit", "restart", "snapshots", "archive", "settings", "local", "marathon", "docs",
                   "entrypoint")


class Context:
    """Carries --config to subcommands; loads (and validates) the config only when a command needs it."""

    def __init__(self, config_path: Optional[str]):
        self.config_path = config_path
        self._cfg = None

    def config(self, credentials: bool = True, cluster: bool = True, **overrides: Any) -> config_mod.Config:
        """`credentials=False`: a command that talks only to Consul and the node API needs no password.
        `cluster=False`: this node's own settings only, without asking Consul for the cluster's."""
        if self._cfg is None or overrides or not credentials or not cluster:
            cfg = config_mod.load(self.config_path, overrides=overrides or None, credentials=credentials)
            setup_logging(cfg.log_level, secrets=cfg.secrets())
            if cluster:
                cfg = with_cluster_settings(cfg, lambda doc: config_mod.load(
                    self.config_path, overrides=overrides or None, credentials=credentials, cluster=doc))
            from .sqlclient import configure_tls
            configure_tls(cfg.mysql_tls_ca)
            if overrides or not credentials or not cluster:
                return cfg
            self._cfg = cfg
        return self._cfg


def with_cluster_settings(cfg, reload):
    """`cfg` with the cluster's settings from Consul (cluster_config), or as it is when Consul does not
    answer or the node cannot take them: the node keeps running on its own, and says why."""
    from . import cluster_config
    from .dcs.consul import ConsulDCS
    log = logging.getLogger("mysqlpilot.config")
    try:
        raw = ConsulDCS.from_config(cfg, timeout=2).get_json(cluster_config.KEY)
    except PilotError as exc:
        # Debug only: a command that needs Consul says so itself, in one line; a hook that does not (run-mysqld
        # during an outage) goes on with the node's own settings.
        log.debug("cluster settings not read, running with this node's own: %s", exc)
        return cfg
    try:
        doc = cluster_config.parse(raw)
    except PilotError as exc:
        log.warning("cluster settings not read, running with this node's own: %s", exc)
        return cfg
    if not doc["version"]:
        return cfg
    try:
        merged = reload(doc)
    except PilotError as exc:
        log.error("CLUSTER SETTINGS REFUSED on this node, running with its own: %s; fix them with "
                  "`mysqlpilot config edit`", exc)
        return cfg
    for line in merged.overridden:
        log.warning("CLUSTER SETTING WINS: %s", line)
    return merged


HOOKS = ("pre-start", "run-mysqld", "health", "probe", "on-change", "watch", "snapshot", "pre-stop")


def trace(event: str, **kw: Any) -> None:
    """With MYSQLPILOT_HOOK_TRACE=FILE, every hook appends what it saw (start, SIGTERM, exit) as one JSON
    line: tests compare what ContainerPilot and `mysqlpilot local`'s supervisor made the hooks see."""
    path = os.environ.get("MYSQLPILOT_HOOK_TRACE")
    if not path:
        return
    import json
    import time
    line = json.dumps(dict(kw, t=round(time.time(), 3), pid=os.getpid(), event=event), sort_keys=True) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def _trace_signals(hook: str) -> None:
    import signal

    def on_term(signum, frame) -> None:  # noqa: ARG001
        trace("signal", hook=hook, signal=signal.Signals(signum).name)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(sig, on_term)


class PilotGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        names = getattr(ctx, "_protected_args", None)      # click >= 8.2; older: protected_args
        names = ctx.protected_args if names is None else names
        hook = names[0] if names and names[0] in HOOKS else None
        if hook and os.environ.get("MYSQLPILOT_HOOK_TRACE"):
            trace("start", hook=hook, ppid=os.getppid())
            _trace_signals(hook)
            rc: Any = 1
            try:
                super().invoke(ctx)
                rc = 0
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                raise
            except click.exceptions.Exit as exc:
                rc = exc.exit_code
                raise
            except PilotError as exc:
                rc = 1
                self._report(ctx, exc)
            finally:
                trace("exit", hook=hook, rc=rc)
            return None
        try:
            return super().invoke(ctx)
        except PilotError as exc:
            self._report(ctx, exc)

    @staticmethod
    def _report(ctx: click.Context, exc: PilotError) -> None:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        cfg = getattr(ctx.obj, "_cfg", None)
        msg = mask_secrets(msg, cfg.secrets() if cfg else [])
        click.echo(f"mysqlpilot: error: {msg}", err=True)
        ctx.exit(1)


@click.group(cls=PilotGroup)
@click.option("--config", "config_path", envvar="MYSQLPILOT_CONFIG", type=click.Path(dir_okay=False),
              help="YAML config file (default: $MYSQLPILOT_CONFIG). Environment variables override it.")
@click.version_option(package_name="mysqlpilot")
@click.pass_context
def main(ctx: click.Context, config_path: Optional[str]) -> None:
    """mysqlpilot: a self-operating MySQL/MariaDB cluster on Consul."""
    ctx.obj = Context(config_path)
    if not logging.getLogger().handlers:
        setup_logging(os.environ.get("MYSQLPILOT_LOG_LEVEL", "info"))


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__package__}.commands.{name}")
        except ModuleNotFoundError as exc:
            # Only tolerate the command module itself being absent (built in parallel); never hide a
            # missing dependency inside it.
            if exc.name != f"{__package__}.commands.{name}":
                raise
            continue
        mod.register(main)


_register_all()

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

COMMAND_MODULES = ("hooks", "operator", "snapshots", "local", "marathon", "docs")


class Context:
    """Carries --config to subcommands; loads (and validates) the config only when a command needs it."""

    def __init__(self, config_path: Optional[str]):
        self.config_path = config_path
        self._cfg = None

    def config(self, **overrides: Any) -> config_mod.Config:
        if self._cfg is None or overrides:
            cfg = config_mod.load(self.config_path, overrides=overrides or None)
            setup_logging(cfg.log_level, secrets=cfg.secrets())
            if overrides:
                return cfg
            self._cfg = cfg
        return self._cfg


class PilotGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PilotError as exc:
            msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            obj = ctx.obj
            cfg = getattr(obj, "_cfg", None)
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

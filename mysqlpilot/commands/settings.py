"""`mysqlpilot config show`: the configuration this node would run with, each value with where it came from
(default, the config file, an environment variable, a secret file, derived). Secrets are shown as <hidden>."""
from __future__ import annotations

import json

import click


@click.group("config")
def config_group() -> None:
    """The effective configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: {key: {value, source}}.")
@click.option("--changed", is_flag=True, help="Only the keys not at their default.")
@click.pass_obj
def show(obj, as_json: bool, changed: bool) -> None:
    """Every setting with its value and its source, grouped as docs/configuration.md groups them."""
    from ..config import SCHEMA
    cfg = obj.config(credentials=False)
    shown = cfg.redacted()
    order = {}
    for k in SCHEMA:
        order.setdefault(k.group, len(order))
    rows = sorted(((k.group, k.name, shown[k.name], cfg.origin.get(k.name, "default")) for k in SCHEMA
                   if not changed or cfg.origin.get(k.name, "default") != "default"), key=lambda r: order[r[0]])
    if as_json:
        click.echo(json.dumps({name: {"value": val, "source": src} for _g, name, val, src in rows}, indent=1,
                              sort_keys=True, default=str))
        return
    width = max((len(r[1]) for r in rows), default=10)
    group = None
    for g, name, val, src in rows:
        if g != group:
            click.echo(f"# {g}")
            group = g
        click.echo(f"{name:<{width}}  {'-' if val is None else val!s:<28}  ({src})")


def register(group: click.Group) -> None:
    group.add_command(config_group)

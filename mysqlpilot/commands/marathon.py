"""`mysqlpilot marathon render`: the Marathon app group from the config."""
from __future__ import annotations

import json
import os
from typing import Optional

import click

from .. import config as config_mod

PLACEHOLDER = "<kept in the secret store>"


def load_for_render(config_path: Optional[str]):
    """The renderer references secrets by name, so it must not need their values: stand-ins fill the
    required ones, and are never written out."""
    env = dict(os.environ)
    for k in config_mod.SCHEMA:
        if k.required and k.secret:
            for var in k.env:
                env.setdefault(var, PLACEHOLDER)
    return config_mod.load(config_path, env=env)


@click.group("marathon")
def marathon() -> None:
    """Marathon deployment helpers."""


@marathon.command("render")
@click.option("--instances", default=3, show_default=True, type=int)
@click.option("--image", default="mysqlpilot/percona:5.6", show_default=True)
@click.option("--cpus", default=1.0, show_default=True, type=float)
@click.option("--mem", default=2048, show_default=True, type=int, help="MiB")
@click.option("--disk", default=20480, show_default=True, type=int, help="Persistent volume size, MiB")
@click.option("--group-id", default="/mysqlpilot", show_default=True)
@click.option("--no-consul", is_flag=True, help="Point at an existing Consul ($CONSUL) instead of running one.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout.")
@click.pass_obj
def render(obj, instances, image, cpus, mem, disk, group_id, no_consul, output) -> None:
    """Write the app group JSON (Consul + the mysql app) from the config."""
    from ..marathon import render_group
    cfg = load_for_render(obj.config_path)
    group = render_group(cfg, group_id=group_id, instances=instances, image=image, cpus=cpus, mem=mem,
                         disk=disk, consul_app=not no_consul)
    text = json.dumps(group, indent=2, sort_keys=True) + "\n"
    if output:
        with open(output, "w") as fh:
            fh.write(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


def register(group: click.Group) -> None:
    group.add_command(marathon)

"""`mysqlpilot docs`: docs/configuration.md generated from the config schema, and the Consul ACL policy."""
from __future__ import annotations

import os

import click

from ..errors import PilotError

DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs",
                       "configuration.md")


@click.group("docs")
def docs() -> None:
    """Generated documentation."""


@docs.command("config-reference")
@click.option("--check", is_flag=True, help="Exit 1 if the file differs from the code instead of writing it.")
@click.option("--path", default=DEFAULT, show_default=True)
def config_reference(check: bool, path: str) -> None:
    """Write the configuration reference from mysqlpilot/config.py."""
    from ..config import reference_markdown
    text = reference_markdown() + "\n"
    if check:
        try:
            with open(path, encoding="utf-8") as fh:
                same = fh.read() == text
        except FileNotFoundError:
            same = False
        if not same:
            raise PilotError(f"{path} is out of date with mysqlpilot/config.py; run `mysqlpilot docs "
                             "config-reference`")
        click.echo(f"{path} is up to date")
        return
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    click.echo(f"wrote {path}")


@docs.command("consul-policy")
@click.pass_obj
def consul_policy(obj) -> None:
    """Print the Consul ACL policy this cluster needs (its prefix, sessions, its services), from the
    configuration's consul_prefix, cluster and service_name."""
    from ..consul_policy import policy_hcl
    cfg = obj.config(credentials=False)
    click.echo(policy_hcl(cfg.consul_prefix, cfg.cluster, cfg.service_name), nl=False)


def register(group: click.Group) -> None:
    group.add_command(docs)

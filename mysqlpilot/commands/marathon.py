"""`mysqlpilot marathon render`: the Marathon app group from the config."""
from __future__ import annotations

import json
import os
from typing import Mapping, Optional

import click

from .. import config as config_mod
from .. import marathon as marathon_mod

PLACEHOLDER = "<kept in the secret store>"


def load_for_render(config_path: Optional[str], secrets: str = "dcos", environ: Optional[Mapping[str, str]] = None):
    """The config the group is rendered from.

    dcos and file modes reference secrets by name or path, so they must not need (or read) the values:
    every secret variable that is set, as a value or as a *_FILE path, and every required one, is
    replaced by a stand-in that is never written out. Env mode writes the values, so it loads them the
    way a node would: from the environment, *_FILE, or the config file.
    """
    env = dict(os.environ if environ is None else environ)
    if secrets == "env":
        return config_mod.load(config_path, env=env, check_files=False)
    for k in config_mod.SCHEMA:
        if not k.secret:
            continue
        for var in k.env:
            from_file = env.pop(var + "_FILE", None) not in (None, "")
            given = from_file or env.get(var) not in (None, "")
            if given or k.required:
                env[var] = PLACEHOLDER
    return config_mod.load(config_path, env=env, check_files=False)


ENV_MODE_WARNING = (
    "--secrets env wrote {names} into the app definition in plain text. Anyone who can read it can read "
    "them: every Marathon API or UI user who may read the app (/v2/apps, /v2/groups, /v2/deployments, the "
    "event stream, every kept app version), Marathon's state in ZooKeeper, on each agent whoever may "
    "`docker inspect` the container or read its processes' environment, and readers of this output{file}.")
FILE_MODE_NOTE = (
    "--secrets file: put one file per secret ({names}) in {dir} on every agent that may run a node, "
    "readable by the user the hooks run as.")
FILE_MODE_TOKEN = (
    "--secrets file: ContainerPilot 3.8.0 reads only $CONSUL_HTTP_TOKEN, not CONSUL_HTTP_TOKEN_FILE; its "
    "own service registration needs the token another way (see docs/deploy-marathon.md).")


@click.group("marathon")
def marathon() -> None:
    """Marathon deployment helpers."""


@marathon.command("render")
@click.option("--image", help="Docker image of the mysql app, registry/name:tag. Required: none is published.")
@click.option("--consul", "consul_addr", metavar="HOST:PORT",
              help="Consul HTTP address every node uses (localhost:8500 for an agent on each Mesos agent). "
                   "Required unless --bundled-consul.")
@click.option("--bundled-consul", is_flag=True,
              help="Run a single Consul server in the group instead (persistent volume, fixed ports "
                   "from the Mesos range; needs Mesos-DNS). For trying the group.")
@click.option("--bundled-consul-port", default=marathon_mod.BUNDLED_CONSUL_PORT, show_default=True, type=int,
              help="HTTP port of the bundled Consul; the next three are its server, Serf LAN and WAN ports.")
@click.option("--secrets", "secrets_mode", type=click.Choice(marathon_mod.SECRET_MODES), default="dcos",
              show_default=True,
              help="dcos: Marathon secrets (DC/OS Enterprise). env: the values in plain env (readable by "
                   "anyone who can read the app). file: *_FILE paths into a host directory.")
@click.option("--secrets-dir", default=marathon_mod.DEFAULT_SECRETS_DIR, show_default=True,
              help="--secrets file: directory on every agent holding one file per secret.")
@click.option("--instances", default=3, show_default=True, type=int)
@click.option("--cpus", default=1.0, show_default=True, type=float)
@click.option("--mem", default=2048, show_default=True, type=int, help="MiB")
@click.option("--disk", default=20480, show_default=True, type=int, help="Persistent volume size, MiB")
@click.option("--group-id", default="/mysqlpilot", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout.")
@click.pass_obj
def render(obj, image, consul_addr, bundled_consul, bundled_consul_port, secrets_mode, secrets_dir, instances,
           cpus, mem, disk, group_id, output) -> None:
    """Write the app group JSON (the mysql app, and with --bundled-consul a Consul server) from the config."""
    marathon_mod.check_options(image=image, consul=consul_addr, bundled_consul=bundled_consul,
                               secrets=secrets_mode, consul_port=bundled_consul_port)
    cfg = load_for_render(obj.config_path, secrets_mode)
    group = marathon_mod.render_group(
        cfg, image=image, consul=consul_addr, bundled_consul=bundled_consul, group_id=group_id,
        instances=instances, cpus=cpus, mem=mem, disk=disk, secrets=secrets_mode, secrets_dir=secrets_dir,
        consul_port=bundled_consul_port)
    text = json.dumps(group, indent=2, sort_keys=True) + "\n"
    plain = marathon_mod.plain_text_variables(group)
    if output:
        # A group with values in it is as secret as they are; the others are harmless either way.
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if plain else 0o644)
        if plain:
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)
    if plain:
        click.echo("mysqlpilot: warning: " + ENV_MODE_WARNING.format(
            names=", ".join(plain), file=f" ({output}, mode 0600)" if output else ""), err=True)
    if secrets_mode == "file":
        names = [marathon_mod.SECRET_NAMES[k.name] for k in marathon_mod.secret_keys(cfg, "file")]
        click.echo("mysqlpilot: note: " + FILE_MODE_NOTE.format(names=", ".join(names) or "none",
                                                                   dir=secrets_dir), err=True)
        if cfg.values.get("consul_token"):
            click.echo("mysqlpilot: note: " + FILE_MODE_TOKEN, err=True)


def register(group: click.Group) -> None:
    group.add_command(marathon)

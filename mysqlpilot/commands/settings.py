"""`mysqlpilot config show`: the configuration this node would run with, each value with where it came from
(default, the config file, an environment variable, a secret file, the cluster's settings in Consul,
derived). Secrets are shown as <hidden>. `config set` and `config edit` change the cluster's settings
(cluster_config): the whole result is checked as a node checks its configuration, then written with a
check-and-set, and the change goes into the journal (`mysqlpilot history`)."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

import click
import yaml

from .reinit import requester


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


@config_group.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--reason", default="", help="Why, for the history.")
@click.pass_obj
def set_cmd(obj, assignments, reason: str) -> None:
    """Set cluster-wide settings (KEY= removes one; `mysqld.OPTION=VALUE` passes an option to mysqld)."""
    from ..cluster_config import apply, assignment
    changes = [assignment(a) for a in assignments]
    write_cluster(obj, lambda doc: apply(doc, changes), reason)


@config_group.command("edit")
@click.option("--reason", default="", help="Why, for the history.")
@click.pass_obj
def edit_cmd(obj, reason: str) -> None:
    """Edit the cluster's settings as YAML in $EDITOR (values: and mysqld:)."""
    from ..cluster_config import apply
    from ..errors import ConfigError

    def edited(doc):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
            yaml.safe_dump({"values": doc["values"], "mysqld": doc["mysqld"]}, fh, sort_keys=True)
        try:
            subprocess.run([os.environ.get("EDITOR") or "vi", fh.name], check=True)
            with open(fh.name) as f:
                got = yaml.safe_load(f) or {}
        except (subprocess.CalledProcessError, OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"config edit: {fh.name} not taken ({exc}); nothing written") from None
        finally:
            os.unlink(fh.name)
        if not isinstance(got, dict) or not isinstance(got.get("values") or {}, dict) \
                or not isinstance(got.get("mysqld") or {}, dict):
            raise ConfigError("config edit: expected a mapping with values: and mysqld:; nothing written")
        new = apply(doc, [])
        new["values"] = {k: str(v) for k, v in (got.get("values") or {}).items()}
        new["mysqld"] = {k: str(v) for k, v in (got.get("mysqld") or {}).items()}
        return new
    write_cluster(obj, edited, reason)


def write_cluster(obj, make, reason: str) -> None:
    """Read the cluster's settings, make the new ones, check them as a node would load them (over this
    host's own configuration), write them if nobody else did meanwhile, and record the change."""
    from .. import cluster_config, config as config_mod, journal
    from ..dcs.consul import ConsulDCS
    from ..errors import PilotError
    cfg = obj.config(credentials=False, cluster=False)
    dcs = ConsulDCS.from_config(cfg)
    raw, index = dcs.get_json_indexed(cluster_config.KEY)
    old = cluster_config.parse(raw)
    new = make(old)
    cluster_config.check_document(new)
    config_mod.load(obj.config_path, credentials=False, check_files=False, cluster=new)   # refuses what a node would
    diff = cluster_config.changes(old, new)
    if not diff:
        click.echo("config: no change")
        return
    who = requester()
    new.update(by=who, at=time.time())
    if not dcs.put_json(cluster_config.KEY, new, cas=index):
        raise PilotError("config: the cluster's settings changed while this ran; nothing written, run it again")
    try:
        dcs.append_journal([journal.event("config", who, f"version {new['version']}: {'; '.join(diff)}"
                                          + (f" ({reason})" if reason else ""))])
    except PilotError as exc:
        click.echo(f"config: written, but not recorded in the history: {exc}")
    for line in diff:
        click.echo(f"config: {line}")
    click.echo(f"config: version {new['version']} written; running nodes take what they can on their next "
               "pass, `status` shows what waits for a restart (mysqlpilot restart --rolling --pending)")


def register(group: click.Group) -> None:
    group.add_command(config_group)
